//! An in-process browser for the gateway's pages: a cookie jar, requests sent to an axum
//! router as a service (no sockets), and the sign-in at the gateway's own authorization
//! server (its login form) done the way a user does it.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use mcp_oauth::auth_server::{AuthServer, DevUsers};
use mcp_oauth_gateway::web::{self, Pages, SignedIn};

/// The gateway's (and its authorization server's) URL in these tests.
pub const ORIGIN: &str = "http://127.0.0.1:20080";
pub const PASSWORD: &str = "Very-Strong-Secret-9f3";
pub const KEY: [u8; 32] = [7; 32];

/// The gateway's authorization server with the users alice, bob and carol.
pub async fn server() -> AuthServer {
    AuthServer::builder(ORIGIN)
        .resource(format!("{ORIGIN}/mcp"))
        .login(Arc::new(
            DevUsers::new()
                .user("alice", PASSWORD)
                .user("bob", PASSWORD)
                .user("carol", PASSWORD),
        ))
        .rate_limits(None, None, None)
        .build()
        .await
        .expect("server")
}

pub async fn pages(server: &AuthServer) -> Pages {
    Pages::embedded(server.clone(), ORIGIN, &KEY)
        .await
        .expect("pages")
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: String,
}

impl Reply {
    /// The path (and query) of the `Location`, which must be on [`ORIGIN`].
    pub fn local_location(&self) -> String {
        let location = self.location.clone().expect("a Location");
        location
            .strip_prefix(ORIGIN)
            .unwrap_or_else(|| panic!("{location} is not on {ORIGIN}"))
            .to_owned()
    }
}

/// One browser: its cookies.
#[derive(Default, Clone)]
pub struct Browser {
    pub cookies: BTreeMap<String, String>,
}

pub async fn send(app: &Router, request: http::Request<Body>) -> Reply {
    let mut service = app.clone();
    let res = tower_service::Service::call(&mut service, request)
        .await
        .expect("infallible");
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .map(|l| l.to_str().expect("ascii").to_owned());
    let set_cookies = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect();
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .expect("body");
    Reply {
        status,
        location,
        set_cookies,
        body: String::from_utf8(body.to_vec()).expect("utf-8"),
    }
}

impl Browser {
    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, reply: &Reply) {
        for set in &reply.set_cookies {
            let pair = set.split(';').next().unwrap_or_default();
            let (name, value) = pair.split_once('=').expect("name=value");
            if set.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    /// `GET` of a path or of a URL on [`ORIGIN`].
    pub async fn get(&mut self, app: &Router, url: &str) -> Reply {
        let path = url.strip_prefix(ORIGIN).unwrap_or(url);
        let request = http::Request::get(path)
            .header("cookie", self.cookie_header())
            .body(Body::empty())
            .expect("request");
        let reply = send(app, request).await;
        self.keep(&reply);
        reply
    }

    /// A form `POST`, with `origin` as its `Origin` header when given.
    pub async fn post(
        &mut self,
        app: &Router,
        path: &str,
        form: &[(String, String)],
        origin: Option<&str>,
    ) -> Reply {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut request = http::Request::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", self.cookie_header());
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let reply = send(app, request.body(Body::from(body)).expect("request")).await;
        self.keep(&reply);
        reply
    }

    /// Opens `path`, signs in as `user` at the authorization server it is sent to, and stops
    /// at the gateway's callback (its reply: the redirect back, with the session cookie).
    pub async fn sign_in(&mut self, app: &Router, path: &str, user: &str) -> Reply {
        let first = self.get(app, path).await;
        assert_eq!(first.status, 303, "{first:?}");
        let authorize = first.location.clone().expect("to the authorization server");
        assert!(
            authorize.starts_with(&format!("{ORIGIN}/authorize?")),
            "{authorize}"
        );
        let login = self.get(app, &authorize).await;
        assert_eq!(login.status, 200, "{}", login.body);
        let mut form = mcp_oauth::testing::hidden_form_fields(&login.body);
        form.extend([
            ("username".to_owned(), user.to_owned()),
            ("password".to_owned(), PASSWORD.to_owned()),
            ("decision".to_owned(), "approve".to_owned()),
        ]);
        let answer = self.post(app, "/authorize", &form, Some(ORIGIN)).await;
        let callback = answer.location.clone().unwrap_or_else(|| {
            panic!(
                "the login did not redirect: {} {}",
                answer.status, answer.body
            )
        });
        assert!(
            callback.starts_with(&format!("{ORIGIN}/gateway/signed-in?")),
            "{callback}"
        );
        self.get(app, &callback).await
    }
}

/// A page that says who is signed in.
pub async fn whoami(State(pages): State<Pages>, SignedIn(user): SignedIn) -> Response {
    let body = format!(
        "<p id=\"who\">{}|{}|{}</p>",
        web::escape(user.subject()),
        web::escape(user.client()),
        user.csrf_token(&pages)
    );
    pages.page(http::StatusCode::OK, "Who", &body)
}

pub fn app(server: &mcp_oauth::auth_server::AuthServer, pages: &Pages) -> Router {
    Router::new()
        .route("/gateway/whoami", get(whoami).post(whoami))
        .with_state(pages.clone())
        .merge(pages.router())
        .merge(server.router())
}

pub fn who(reply: &Reply) -> String {
    reply
        .body
        .split("<p id=\"who\">")
        .nth(1)
        .and_then(|r| r.split_once("</p>"))
        .map(|(w, _)| w.to_owned())
        .unwrap_or_default()
}

pub async fn signed_in(app: &Router, user: &str) -> Browser {
    let mut browser = Browser::default();
    let back = browser.sign_in(app, "/gateway/whoami?x=1", user).await;
    assert_eq!(back.status, 303, "{back:?}");
    assert_eq!(back.local_location(), "/gateway/whoami?x=1");
    browser
}

pub fn cookie_headers(browser: &Browser) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    let value = browser
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    headers.insert("cookie", value.parse().expect("header"));
    headers
}

/// Two gateway instances (each its own authorization server and pages) on `a` and `b`, two
/// handles on one store, with the same pages key: a session signed out on one is refused by
/// the other.
pub async fn sign_out_reaches_every_instance(
    a: Arc<dyn mcp_oauth::auth_server::Store>,
    b: Arc<dyn mcp_oauth::auth_server::Store>,
) {
    let instance = |store: Arc<dyn mcp_oauth::auth_server::Store>| async move {
        let server = mcp_oauth::auth_server::AuthServer::builder(ORIGIN)
            .resource(format!("{ORIGIN}/mcp"))
            .login(Arc::new(
                mcp_oauth::auth_server::DevUsers::new().user("alice", PASSWORD),
            ))
            .rate_limits(None, None, None)
            .store(store)
            .build()
            .await
            .expect("server");
        let pages = pages(&server).await;
        (app(&server, &pages), pages)
    };
    let (first, _) = instance(a).await;
    let (second, second_pages) = instance(b).await;
    let mut alice = signed_in(&first, "alice").await;
    let copy = alice.clone();
    // The session works on both instances.
    let page = alice.get(&second, "/gateway/whoami").await;
    assert_eq!(page.status, 200, "{page:?}");
    let token = who(&page).rsplit('|').next().expect("token").to_owned();
    assert_eq!(
        copy.clone().get(&first, "/gateway/whoami").await.status,
        200
    );

    let out = alice
        .post(
            &second,
            web::SIGN_OUT_PATH,
            &[("csrf".to_owned(), token)],
            Some(ORIGIN),
        )
        .await;
    assert_eq!(out.status, 200, "{out:?}");
    for app in [&first, &second] {
        let reply = copy.clone().get(app, "/gateway/whoami").await;
        assert_eq!(reply.status, 303, "{reply:?}");
    }
    assert!(second_pages.visitor(&cookie_headers(&copy)).await.is_none());
}
