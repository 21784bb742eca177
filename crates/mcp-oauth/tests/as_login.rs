//! Sign-in at the embedded authorization server, from the attacker's side (issue 10, review
//! findings F2, F5, F6 and I2):
//!
//! - F2: in proxy mode, a provider URL approved in the attacker's browser and completed in the
//!   victim's browser yields no code; a user who never allowed a client sees the consent page
//!   after the callback; the legitimate flow in one browser still works.
//! - I2: the consent form refuses `Origin: null`.
//! - F6: a registered client that never completed an authorization gets its `/authorize`
//!   errors as a page, not as a redirect; configured and activated clients keep the redirect.
//! - F5: wrong passwords back off, then lock the pending request, with the same words for an
//!   unknown user; the right password before the lock works.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use common::{CHALLENGE, Served, VERIFIER, challenge_of, cookie_header, keep_cookies};
use mcp_oauth::auth_server::{AuthServer, ClientSpec, DevUsers, GrantType, Upstream};
use mcp_oauth::fetch::HttpClient;
use mcp_oauth::testing::hidden_form_fields;
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower::ServiceExt as _;

const RESOURCE: &str = "http://127.0.0.1:9999/mcp";
const GH_CLIENT: &str = "ghapp";
const GH_SECRET: &str = "s3cret";

// --------------------------------------------------------------------------- a GitHub stand-in

/// What the stand-in saw. Who is signed in at "GitHub" is the browser's `gh_user` cookie; like
/// GitHub for an OAuth app the user already authorized, it redirects straight back.
#[derive(Default)]
struct Gh {
    codes: HashMap<String, (String, String)>,
    tokens: HashMap<String, String>,
    token_requests: Vec<HashMap<String, String>>,
    issued: u64,
}

#[derive(Clone, Default)]
struct Github(Arc<Mutex<Gh>>);

fn cookie_of(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

async fn gh_authorize(
    State(gh): State<Github>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(login) = cookie_of(&headers, "gh_user") else {
        return (axum::http::StatusCode::UNAUTHORIZED, "sign in to GitHub").into_response();
    };
    let mut gh = gh.0.lock().unwrap();
    gh.issued += 1;
    let code = format!("ghcode-{}", gh.issued);
    gh.codes.insert(
        code.clone(),
        (login, q.get("code_challenge").cloned().unwrap_or_default()),
    );
    let mut back = url::Url::parse(&q["redirect_uri"]).unwrap();
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", q.get("state").map(String::as_str).unwrap_or(""));
    Redirect::to(back.as_str()).into_response()
}

async fn gh_token(State(gh): State<Github>, Form(form): Form<HashMap<String, String>>) -> Response {
    let mut gh = gh.0.lock().unwrap();
    gh.token_requests.push(form.clone());
    let Some((login, challenge)) = gh.codes.remove(&form["code"]) else {
        return axum::Json(json!({"error": "bad_verification_code"})).into_response();
    };
    if form.get("client_secret").map(String::as_str) != Some(GH_SECRET)
        || challenge_of(&form["code_verifier"]) != challenge
    {
        return axum::Json(json!({"error": "bad_verification_code"})).into_response();
    }
    gh.issued += 1;
    let token = format!("gho_{}", gh.issued);
    gh.tokens.insert(token.clone(), login);
    axum::Json(json!({"access_token": token, "token_type": "bearer", "scope": "read:user"}))
        .into_response()
}

async fn gh_user(State(gh): State<Github>, headers: HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let Some(login) = gh.0.lock().unwrap().tokens.get(token).cloned() else {
        return (axum::http::StatusCode::UNAUTHORIZED, "Bad credentials").into_response();
    };
    axum::Json(json!({"id": format!("gh-{login}"), "login": login, "email": format!("{login}@example.org")}))
        .into_response()
}

async fn start_github() -> (Github, String, Served) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let gh = Github::default();
    let app = axum::Router::new()
        .route("/login/oauth/authorize", get(gh_authorize))
        .route("/login/oauth/access_token", post(gh_token))
        .route("/user", get(gh_user))
        .with_state(gh.clone());
    (gh, origin, Served::app(listener, app))
}

// --------------------------------------------------------------------------- servers and browsers

struct Running {
    issuer: String,
    served: Served,
}

async fn serve(
    builder: impl FnOnce(String) -> mcp_oauth::auth_server::AuthServerBuilder,
) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let server = builder(issuer.clone()).build().await.expect("server");
    let served = Served::app(listener, server.router());
    Running { issuer, served }
}

/// `mcp-oauth proxy --provider github` as in the review: the GitHub preset at the stand-in.
async fn start_proxy(github: &str) -> Running {
    let upstream = Upstream::github_at(github, github, GH_CLIENT, GH_SECRET)
        .http_client(HttpClient::new().unwrap())
        .build()
        .unwrap();
    serve(|issuer| {
        AuthServer::builder(issuer)
            .resource(RESOURCE)
            .upstream(upstream)
            .encryption_key([9u8; 32].as_slice())
    })
    .await
}

/// One answer, read.
struct Reply {
    status: u16,
    location: Option<url::Url>,
    set_cookies: Vec<String>,
    body: String,
}

impl Reply {
    fn query(&self) -> HashMap<String, String> {
        self.location
            .as_ref()
            .expect("a redirect")
            .query_pairs()
            .into_owned()
            .collect()
    }
}

/// A browser: its own cookie jar (by name: every server here is 127.0.0.1, and browsers do
/// not isolate cookies by port), redirects followed by hand.
struct Browser {
    http: reqwest::Client,
    jar: HashMap<String, String>,
}

impl Browser {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            jar: HashMap::new(),
        }
    }

    /// Signed in at the GitHub stand-in as `login`.
    fn at_github_as(login: &str) -> Self {
        let mut browser = Self::new();
        browser.jar.insert("gh_user".into(), login.into());
        browser
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Reply {
        let res = request
            .header("cookie", cookie_header(&self.jar))
            .send()
            .await
            .unwrap();
        keep_cookies(&res, &mut self.jar);
        Reply {
            status: res.status().as_u16(),
            location: res
                .headers()
                .get("location")
                .map(|l| url::Url::parse(l.to_str().unwrap()).unwrap()),
            set_cookies: res
                .headers()
                .get_all("set-cookie")
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect(),
            body: res.text().await.unwrap(),
        }
    }

    async fn get(&mut self, url: &str) -> Reply {
        let request = self.http.get(url);
        self.send(request).await
    }

    async fn post(&mut self, url: &str, form: &[(String, String)], origin: Option<&str>) -> Reply {
        let mut request = self.http.post(url).form(form);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        self.send(request).await
    }

    /// Submits the page's form (hidden fields, plus `extra`) with `decision`, from our origin.
    async fn submit(
        &mut self,
        issuer: &str,
        page: &Reply,
        extra: &[(&str, &str)],
        decision: &str,
    ) -> Reply {
        let mut form = hidden_form_fields(&page.body);
        form.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        form.push(("decision".into(), decision.into()));
        self.post(&format!("{issuer}/authorize"), &form, Some(issuer))
            .await
    }
}

async fn register(issuer: &str, name: &str, redirect: &str) -> String {
    let reg: Value = reqwest::Client::new()
        .post(format!("{issuer}/register"))
        .json(&json!({"client_name": name, "redirect_uris": [redirect], "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reg["client_id"].as_str().expect("registered").to_owned()
}

fn authorize_url(issuer: &str, client_id: &str, redirect: &str, challenge: &str) -> String {
    let mut url = url::Url::parse(&format!("{issuer}/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "client-state")
        .append_pair("scope", "mcp:read mcp:write");
    url.to_string()
}

async fn redeem(issuer: &str, client_id: &str, redirect: &str, code: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", client_id),
            ("redirect_uri", redirect),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap()
}

fn is_page(reply: &Reply) -> bool {
    reply.location.is_none() && reply.body.contains("<form")
}

// --------------------------------------------------------------------------- F2

/// The review's F2 attack, replayed: the attacker approves their own client in their own
/// browser, then has the victim's browser (signed in at GitHub, no cookie of ours) open the
/// provider URL. The callback refuses the state (no binding cookie): no code reaches the
/// attacker, GitHub's code for the victim is never exchanged, and the state is gone, so the
/// attacker cannot complete the victim's callback in their own browser either.
#[tokio::test]
async fn f2_an_approval_completed_in_the_victims_browser_gives_the_attacker_no_code() {
    let (gh, github, gh_served) = start_github().await;
    let proxy = start_proxy(&github).await;
    let attacker_cb = "http://127.0.0.1:20092/attacker-cb";
    let attacker_client = register(&proxy.issuer, "Attacker app", attacker_cb).await;

    // A2: the attacker's own browser, the attacker's own PKCE challenge, approved.
    let mut attacker = Browser::new();
    let page = attacker
        .get(&authorize_url(
            &proxy.issuer,
            &attacker_client,
            attacker_cb,
            CHALLENGE,
        ))
        .await;
    assert!(is_page(&page), "{}", page.body);
    let approved = attacker.submit(&proxy.issuer, &page, &[], "approve").await;
    assert_eq!(approved.status, 302, "{}", approved.body);
    let upstream_url = approved.location.clone().unwrap();
    assert!(upstream_url.as_str().starts_with(&github), "{upstream_url}");

    // V1: the victim's browser opens that URL; GitHub sends it straight back to our callback.
    let mut victim = Browser::at_github_as("victim");
    let at_github = victim.get(upstream_url.as_str()).await;
    let callback = at_github.location.clone().expect("back to the callback");
    assert!(
        callback
            .as_str()
            .starts_with(&format!("{}/oauth/callback?", proxy.issuer))
    );
    let done = victim.get(callback.as_str()).await;
    assert!(
        done.location.is_none(),
        "the callback must not send the victim's browser on: {:?}",
        done.location
    );
    assert_eq!(done.status, 403, "{}", done.body);
    assert!(done.body.contains("another browser"), "{}", done.body);
    assert!(
        gh.0.lock().unwrap().token_requests.is_empty(),
        "the victim's GitHub code was never exchanged"
    );

    // A3: the attacker replays the victim's callback in the browser that holds the binding
    // cookie: the state was consumed by the refused attempt.
    let replay = attacker.get(callback.as_str()).await;
    assert!(replay.location.is_none());
    assert_eq!(replay.status, 400, "{}", replay.body);
    assert!(gh.0.lock().unwrap().token_requests.is_empty());

    proxy.served.stop().await;
    gh_served.stop().await;
}

/// The same attack where the victim's browser does carry the attacker's binding cookie (a
/// page on another loopback port can plant cookies for 127.0.0.1): the victim never allowed
/// the attacker's client, so the consent page comes after the callback, naming the victim's
/// account, and no code is issued without the victim's approval.
#[tokio::test]
async fn f2_with_the_binding_cookie_planted_the_victim_sees_the_consent_page_not_a_code() {
    let (_gh, github, gh_served) = start_github().await;
    let proxy = start_proxy(&github).await;
    let attacker_cb = "http://127.0.0.1:20092/attacker-cb";
    let attacker_client = register(&proxy.issuer, "Attacker app", attacker_cb).await;
    let mut attacker = Browser::new();
    let page = attacker
        .get(&authorize_url(
            &proxy.issuer,
            &attacker_client,
            attacker_cb,
            CHALLENGE,
        ))
        .await;
    let approved = attacker.submit(&proxy.issuer, &page, &[], "approve").await;
    let upstream_url = approved.location.clone().unwrap();
    let binding: Vec<(String, String)> = attacker
        .jar
        .iter()
        .filter(|(k, _)| k.starts_with("mcp_oauth_login_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(binding.len(), 1, "one binding cookie: {:?}", attacker.jar);
    let binding_cookie = approved
        .set_cookies
        .iter()
        .find(|c| c.starts_with(&binding[0].0))
        .unwrap();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(binding_cookie.contains(attribute), "{binding_cookie}");
    }

    let mut victim = Browser::at_github_as("victim");
    victim.jar.extend(binding);
    let callback = victim.get(upstream_url.as_str()).await.location.unwrap();
    let done = victim.get(callback.as_str()).await;
    assert!(
        done.location.is_none(),
        "no code without the victim's consent: {:?}",
        done.location
    );
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(is_page(&done), "{}", done.body);
    assert!(
        done.body.contains("Attacker app") && done.body.contains("victim"),
        "the consent page names the client and the victim's account: {}",
        done.body
    );
    assert!(!done.body.contains("name=\"password\""));
    // The victim denies: the client learns access_denied, and gets no code.
    let denied = victim.submit(&proxy.issuer, &done, &[], "deny").await;
    let answer = denied.query();
    assert_eq!(answer["error"], "access_denied");
    assert!(!answer.contains_key("code"));

    proxy.served.stop().await;
    gh_served.stop().await;
}

/// One browser, one user: the consent page before the provider, the consent page naming the
/// account after it (this user never allowed the client), then our code, which redeems. The
/// next sign-in of the same user and client in that browser asks nothing.
#[tokio::test]
async fn f2_the_legitimate_flow_in_one_browser_still_works() {
    let (_gh, github, gh_served) = start_github().await;
    let proxy = start_proxy(&github).await;
    let redirect = "http://127.0.0.1:33418/callback";
    let client = register(&proxy.issuer, "Good app", redirect).await;
    let mut browser = Browser::at_github_as("alice");

    let page = browser
        .get(&authorize_url(&proxy.issuer, &client, redirect, CHALLENGE))
        .await;
    assert!(
        is_page(&page) && page.body.contains("sign in with"),
        "{}",
        page.body
    );
    let to_github = browser.submit(&proxy.issuer, &page, &[], "approve").await;
    let callback = browser
        .get(to_github.location.unwrap().as_str())
        .await
        .location
        .unwrap();
    let after = browser.get(callback.as_str()).await;
    assert!(is_page(&after), "consent after the sign-in: {}", after.body);
    assert!(after.body.contains("alice"), "{}", after.body);
    assert!(
        after.set_cookies.iter().any(|c| c.contains("Max-Age=0")),
        "the state's binding cookie is cleared: {:?}",
        after.set_cookies
    );
    let back = browser.submit(&proxy.issuer, &after, &[], "approve").await;
    let answer = back.query();
    assert!(back.location.unwrap().as_str().starts_with(redirect));
    assert_eq!(answer["state"], "client-state");
    assert_eq!(answer["iss"], proxy.issuer);
    let tokens = redeem(&proxy.issuer, &client, redirect, &answer["code"]).await;
    assert_eq!(tokens.status(), 200);

    // Again, same browser, same user: no page at all, our code at once.
    let straight = browser
        .get(&authorize_url(&proxy.issuer, &client, redirect, CHALLENGE))
        .await;
    assert_eq!(straight.status, 302, "{}", straight.body);
    let callback = browser
        .get(straight.location.unwrap().as_str())
        .await
        .location
        .unwrap();
    let back = browser.get(callback.as_str()).await;
    assert!(
        back.location
            .as_ref()
            .is_some_and(|l| l.as_str().starts_with(redirect)),
        "{}",
        back.body
    );
    assert!(back.query().contains_key("code"));

    // The consent form of the second step is single use and CSRF-checked like the first.
    proxy.served.stop().await;
    gh_served.stop().await;
}

/// A browser remembers that a client was allowed (its consent cookie), but the user who now
/// signs in at the provider never allowed it (a shared browser, or another account): the
/// consent page comes after the callback, naming that account.
#[tokio::test]
async fn f2_a_user_who_never_allowed_the_client_gets_the_consent_page_after_the_callback() {
    let (_gh, github, gh_served) = start_github().await;
    let proxy = start_proxy(&github).await;
    let redirect = "http://127.0.0.1:33418/callback";
    let client = register(&proxy.issuer, "Shared app", redirect).await;
    let mut browser = Browser::at_github_as("alice");
    let page = browser
        .get(&authorize_url(&proxy.issuer, &client, redirect, CHALLENGE))
        .await;
    let to_github = browser.submit(&proxy.issuer, &page, &[], "approve").await;
    let callback = browser
        .get(to_github.location.unwrap().as_str())
        .await
        .location
        .unwrap();
    let after = browser.get(callback.as_str()).await;
    let back = browser.submit(&proxy.issuer, &after, &[], "approve").await;
    assert!(back.query().contains_key("code"));

    // Bob signs in at GitHub in the same browser.
    browser.jar.insert("gh_user".into(), "bob".into());
    let straight = browser
        .get(&authorize_url(&proxy.issuer, &client, redirect, CHALLENGE))
        .await;
    assert_eq!(straight.status, 302, "this browser allowed the client");
    let callback = browser
        .get(straight.location.unwrap().as_str())
        .await
        .location
        .unwrap();
    let asked = browser.get(callback.as_str()).await;
    assert!(
        asked.location.is_none(),
        "no code for bob without bob's consent"
    );
    assert!(
        is_page(&asked) && asked.body.contains("bob"),
        "{}",
        asked.body
    );

    // Its form is CSRF-checked: without the cookie, or with Origin: null, it is refused.
    let mut form = hidden_form_fields(&asked.body);
    form.push(("decision".into(), "approve".into()));
    let mut stranger = Browser::new();
    let refused = stranger
        .post(&format!("{}/authorize", proxy.issuer), &form, None)
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let refused = browser
        .post(&format!("{}/authorize", proxy.issuer), &form, Some("null"))
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    // Bob allows: a code, and the consent is now his too.
    let back = browser.submit(&proxy.issuer, &asked, &[], "approve").await;
    assert!(back.query().contains_key("code"), "{}", back.body);
    let again = browser.submit(&proxy.issuer, &asked, &[], "approve").await;
    assert!(again.location.is_none(), "single use");

    proxy.served.stop().await;
    gh_served.stop().await;
}

/// I2: the consent form with `Origin: null` (a sandboxed frame on another loopback port) is
/// refused; with our origin it goes on.
#[tokio::test]
async fn i2_the_consent_form_refuses_origin_null() {
    let (_gh, github, gh_served) = start_github().await;
    let proxy = start_proxy(&github).await;
    let redirect = "http://127.0.0.1:33418/callback";
    let client = register(&proxy.issuer, "App", redirect).await;
    let mut browser = Browser::new();
    let page = browser
        .get(&authorize_url(&proxy.issuer, &client, redirect, CHALLENGE))
        .await;
    let mut form = hidden_form_fields(&page.body);
    form.push(("decision".into(), "approve".into()));
    let refused = browser
        .post(&format!("{}/authorize", proxy.issuer), &form, Some("null"))
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.location.is_none());
    let approved = browser
        .post(
            &format!("{}/authorize", proxy.issuer),
            &form,
            Some(&proxy.issuer),
        )
        .await;
    assert_eq!(approved.status, 302, "{}", approved.body);
    proxy.served.stop().await;
    gh_served.stop().await;
}

// --------------------------------------------------------------------------- F6

async fn start_dev(auto_approve: bool) -> Running {
    serve(|issuer| {
        let mut configured = ClientSpec::service("configured", "configured-secret");
        configured.redirect_uris = vec!["https://configured.example/cb".into()];
        configured.grant_types = vec![GrantType::AuthorizationCode];
        AuthServer::builder(issuer)
            .resource(RESOURCE)
            .auto_approve(auto_approve)
            .client(configured)
    })
    .await
}

/// The review's F6 request: a client registered a minute ago with an attacker's URI gets its
/// `/authorize` errors as a page on the issuer, never as a redirect (RFC 9700 §4.11.2).
#[tokio::test]
async fn f6_an_unactivated_registered_clients_error_is_a_page_not_a_redirect() {
    let dev = start_dev(false).await;
    let evil = register(&dev.issuer, "x", "https://evil.example/login").await;
    let mut browser = Browser::new();
    let reply = browser
        .get(&format!(
            "{}/authorize?client_id={evil}&response_type=x",
            dev.issuer
        ))
        .await;
    assert!(
        reply.location.is_none(),
        "redirected to {:?}",
        reply.location
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.contains("response_type"), "{}", reply.body);
    // Other errors too: a missing PKCE challenge, an unknown scope.
    let reply = browser
        .get(&format!(
            "{}/authorize?client_id={evil}&response_type=code&scope=nope",
            dev.issuer
        ))
        .await;
    assert!(
        reply.location.is_none(),
        "redirected to {:?}",
        reply.location
    );
    dev.served.stop().await;
}

/// A configured client, and a registered one after it completed an authorization (its code
/// redeemed), still get their errors at their redirect URI.
#[tokio::test]
async fn f6_configured_and_activated_clients_still_get_the_error_redirect() {
    let dev = start_dev(true).await;
    let mut browser = Browser::new();
    let reply = browser
        .get(&format!(
            "{}/authorize?client_id=configured&response_type=x",
            dev.issuer
        ))
        .await;
    assert_eq!(reply.status, 302, "{}", reply.body);
    assert!(
        reply
            .location
            .as_ref()
            .unwrap()
            .as_str()
            .starts_with("https://configured.example/cb?error=unsupported_response_type")
    );

    let redirect = "http://127.0.0.1:33418/callback";
    let client = register(&dev.issuer, "Used app", redirect).await;
    let code = browser
        .get(&authorize_url(&dev.issuer, &client, redirect, CHALLENGE))
        .await
        .query()["code"]
        .clone();
    assert_eq!(
        redeem(&dev.issuer, &client, redirect, &code).await.status(),
        200
    );
    let reply = browser
        .get(&format!(
            "{}/authorize?client_id={client}&response_type=x",
            dev.issuer
        ))
        .await;
    assert_eq!(reply.status, 302, "{}", reply.body);
    assert_eq!(reply.query()["error"], "unsupported_response_type");
    dev.served.stop().await;
}

// --------------------------------------------------------------------------- F5

/// The strong password of the review's dev server: the login page is not the way in, so
/// every try here is a guess.
const PASSWORD: &str = "Very-Strong-Secret-9f3";
const APP_REDIRECT: &str = "http://127.0.0.1:5555/cb";
const DEV_ISSUER: &str = "http://127.0.0.1:20080";

/// `mcp-oauth dev --user alice:Very-Strong-Secret-9f3`, called in-process (`oneshot`), so
/// that tokio's paused clock is the only clock the backoff reads.
async fn login_app() -> axum::Router {
    let mut app = ClientSpec::service("app", "unused");
    app.client_secret = None;
    app.redirect_uris = vec![APP_REDIRECT.into()];
    app.grant_types = vec![GrantType::AuthorizationCode];
    AuthServer::builder(DEV_ISSUER)
        .resource(RESOURCE)
        .login(Arc::new(DevUsers::new().user("alice", PASSWORD)))
        .rate_limits(None, None, None)
        .client(app)
        .build()
        .await
        .expect("server")
        .router()
}

/// A login page: its hidden fields and the CSRF cookie it set.
struct LoginPage {
    fields: Vec<(String, String)>,
    cookie: String,
}

async fn call(app: &axum::Router, request: axum::http::Request<axum::body::Body>) -> Reply {
    let res = app.clone().oneshot(request).await.unwrap();
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .map(|l| url::Url::parse(l.to_str().unwrap()).unwrap());
    let set_cookies = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    Reply {
        status,
        location,
        set_cookies,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn open_login(app: &axum::Router) -> LoginPage {
    let url = authorize_url(DEV_ISSUER, "app", APP_REDIRECT, CHALLENGE);
    let page = call(
        app,
        axum::http::Request::get(url.strip_prefix(DEV_ISSUER).unwrap())
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    LoginPage {
        fields: hidden_form_fields(&page.body),
        cookie: page.set_cookies[0].split(';').next().unwrap().to_owned(),
    }
}

async fn sign_in(app: &axum::Router, page: &LoginPage, username: &str, password: &str) -> Reply {
    let mut form = page.fields.clone();
    form.extend([
        ("username".to_owned(), username.to_owned()),
        ("password".to_owned(), password.to_owned()),
        ("decision".to_owned(), "approve".to_owned()),
    ]);
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&form)
        .finish();
    call(
        app,
        axum::http::Request::post("/authorize")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", &page.cookie)
            .body(axum::body::Body::from(body))
            .unwrap(),
    )
    .await
}

/// The message a page shows (its error paragraph), or "" without one.
fn message(reply: &Reply) -> String {
    reply
        .body
        .split("class=\"error\"")
        .nth(1)
        .and_then(|rest| rest.split_once('>'))
        .and_then(|(_, rest)| rest.split_once("</p>"))
        .map(|(text, _)| text.to_owned())
        .unwrap_or_default()
}

const WRONG: &str = "Wrong user name or password. Each failed try makes the next one wait longer.";

/// The review's F5 replay (wrong passwords on one pending request, then the right one): two
/// typos are free, then each failure makes the next try wait longer (refused before its time,
/// the right password included, without even checking it), and the fifth failure closes the
/// request for good.
#[tokio::test(start_paused = true)]
async fn f5_wrong_passwords_back_off_then_lock_the_pending_request() {
    let app = login_app().await;
    let page = open_login(&app).await;
    for guess in ["a", "b", "c"] {
        let reply = sign_in(&app, &page, "alice", guess).await;
        assert_eq!((reply.status, message(&reply)), (400, WRONG.to_owned()));
        assert!(reply.location.is_none());
    }
    // Third failure: wait 1 s. Before that, even the right password is refused.
    let early = sign_in(&app, &page, "alice", PASSWORD).await;
    assert!(early.location.is_none(), "no code during the backoff");
    assert_eq!(
        message(&early),
        "Too many failed sign-ins. Try again in 1 s."
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    let reply = sign_in(&app, &page, "alice", "d").await;
    assert_eq!(message(&reply), WRONG);
    let early = sign_in(&app, &page, "alice", "e").await;
    assert_eq!(
        message(&early),
        "Too many failed sign-ins. Try again in 2 s."
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    // Fifth failure: the request is closed.
    let locked = sign_in(&app, &page, "alice", "e").await;
    assert_eq!(locked.status, 400);
    assert!(locked.location.is_none());
    assert!(
        locked.body.contains("this sign-in request is closed") && !locked.body.contains("<form"),
        "{}",
        locked.body
    );
    tokio::time::advance(Duration::from_secs(3600)).await;
    let after = sign_in(&app, &page, "alice", PASSWORD).await;
    assert!(
        after.location.is_none(),
        "a closed request never yields a code"
    );
    assert!(
        after.body.contains("expired or was already used"),
        "{}",
        after.body
    );
}

/// An unknown user name reads, step by step, exactly what a wrong password for a real user
/// reads: the same status and words, the same backoff, the same lock.
#[tokio::test(start_paused = true)]
async fn f5_an_unknown_user_reads_exactly_what_a_wrong_password_reads() {
    let app = login_app().await;
    let (real, unknown) = (open_login(&app).await, open_login(&app).await);
    let mut seen = Vec::new();
    for step in 0..7 {
        let a = sign_in(&app, &real, "alice", "guess").await;
        let b = sign_in(&app, &unknown, "mallory", "guess").await;
        assert_eq!(
            (
                a.status,
                message(&a),
                a.location.is_some(),
                a.body.contains("<form")
            ),
            (
                b.status,
                message(&b),
                b.location.is_some(),
                b.body.contains("<form")
            ),
            "step {step}"
        );
        seen.push(message(&a));
        if step % 2 == 1 {
            tokio::time::advance(Duration::from_secs(60)).await;
        }
    }
    assert!(
        seen.iter()
            .any(|m| m.starts_with("Too many failed sign-ins. Try again"))
    );
}

/// The right password before the lock signs in (after waiting out the backoff), and the
/// account starts afresh.
#[tokio::test(start_paused = true)]
async fn f5_the_right_password_before_the_lock_signs_in() {
    let app = login_app().await;
    let page = open_login(&app).await;
    for guess in ["a", "b", "c"] {
        sign_in(&app, &page, "alice", guess).await;
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    let ok = sign_in(&app, &page, "alice", PASSWORD).await;
    assert_eq!(ok.status, 302, "{}", ok.body);
    assert!(
        ok.location
            .as_ref()
            .unwrap()
            .as_str()
            .starts_with(APP_REDIRECT)
    );
    assert!(ok.query().contains_key("code"));
    let next = open_login(&app).await;
    let typo = sign_in(&app, &next, "alice", "typo").await;
    assert_eq!(
        message(&typo),
        WRONG,
        "the success cleared the account's count"
    );
    let ok = sign_in(&app, &next, "alice", PASSWORD).await;
    assert_eq!(ok.status, 302, "{}", ok.body);
}

/// The backoff is per account too (the per-account bucket of F4): opening a new request, one
/// GET away, does not reset it.
#[tokio::test(start_paused = true)]
async fn f5_a_new_request_does_not_reset_the_accounts_backoff() {
    let app = login_app().await;
    let page = open_login(&app).await;
    for guess in ["a", "b", "c"] {
        sign_in(&app, &page, "alice", guess).await;
    }
    let fresh = open_login(&app).await;
    let early = sign_in(&app, &fresh, "alice", PASSWORD).await;
    assert!(early.location.is_none());
    assert_eq!(
        message(&early),
        "Too many failed sign-ins. Try again in 1 s."
    );
    // Another account on that fresh request is not slowed down by alice's failures.
    let other = sign_in(&app, &fresh, "bob", "x").await;
    assert_eq!(message(&other), WRONG);
}
