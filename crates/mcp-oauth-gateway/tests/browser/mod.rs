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
use mcp_oauth::auth_server::{AuthServer, DevUsers};
use mcp_oauth_gateway::web::Pages;

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
