//! Proxy mode end to end over real HTTP, against local stand-ins of a Google-like OpenID
//! provider and of GitHub: consent before the upstream redirect, PKCE and single-use state on
//! the upstream leg, our own tokens for the client, upstream tokens sealed and reachable only
//! through the server.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use common::{CHALLENGE, Served, VERIFIER, challenge_of, cookie_header, keep_cookies, whoami};
use mcp_oauth::ResourceUrl;
use mcp_oauth::auth_server::store::{EntryKind, MemoryStore, Store};
use mcp_oauth::auth_server::{AuthServer, Identity, Upstream};
use mcp_oauth::authenticator::Authenticator;
use mcp_oauth::fetch::HttpClient;
use mcp_oauth::server::{McpServer, NoArgs, Tool, ToolContext, ToolError};
use mcp_oauth::testing::{TestKey, hidden_form_fields};
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const RESOURCE: &str = "http://127.0.0.1:9999/mcp";
const REDIRECT: &str = "http://127.0.0.1:33418/callback";
const UPSTREAM_CLIENT: &str = "proxy-client";
const UPSTREAM_SECRET: &str = "proxy-secret";

/// What the stand-in saw and what it hands out.
#[derive(Default)]
struct Seen {
    authorize: Vec<HashMap<String, String>>,
    token: Vec<HashMap<String, String>>,
    codes: HashMap<String, (String, String)>,
    issued: u64,
    deny: bool,
    expires_in: Option<i64>,
}

#[derive(Clone)]
struct Upstreamish {
    origin: String,
    key: TestKey,
    seen: Arc<Mutex<Seen>>,
    github: bool,
    user_calls: Arc<AtomicU64>,
}

async fn up_authorize(
    State(up): State<Upstreamish>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut seen = up.seen.lock().unwrap();
    seen.authorize.push(q.clone());
    let redirect = q.get("redirect_uri").cloned().unwrap_or_default();
    let state = q.get("state").cloned().unwrap_or_default();
    if seen.deny {
        return Redirect::to(&format!("{redirect}?error=access_denied&state={state}"))
            .into_response();
    }
    let code = format!("upstream-code-{}", seen.authorize.len());
    seen.codes.insert(
        code.clone(),
        (
            q.get("code_challenge").cloned().unwrap_or_default(),
            redirect.clone(),
        ),
    );
    Redirect::to(&format!("{redirect}?code={code}&state={state}")).into_response()
}

async fn up_token(
    State(up): State<Upstreamish>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut seen = up.seen.lock().unwrap();
    seen.token.push(form.clone());
    if form.get("client_id").map(String::as_str) != Some(UPSTREAM_CLIENT)
        || form.get("client_secret").map(String::as_str) != Some(UPSTREAM_SECRET)
    {
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    seen.issued += 1;
    let n = seen.issued;
    let answer = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = form.get("code").cloned().unwrap_or_default();
            let Some((challenge, redirect)) = seen.codes.remove(&code) else {
                return (
                    axum::http::StatusCode::BAD_REQUEST,
                    axum::Json(json!({"error": "invalid_grant"})),
                )
                    .into_response();
            };
            if challenge_of(
                form.get("code_verifier")
                    .map(String::as_str)
                    .unwrap_or_default(),
            ) != challenge
                || form.get("redirect_uri") != Some(&redirect)
            {
                return (
                    axum::http::StatusCode::BAD_REQUEST,
                    axum::Json(json!({"error": "invalid_grant"})),
                )
                    .into_response();
            }
            let id_token = up
                .key
                .token()
                .iss(&up.origin)
                .sub("google-user-42")
                .aud(UPSTREAM_CLIENT)
                .claim("email", "grace@example.com")
                .claim("name", "Grace")
                .sign();
            json!({"access_token": format!("upstream-access-{n}"), "refresh_token": format!("upstream-refresh-{n}"), "expires_in": seen.expires_in.unwrap_or(3600), "token_type": "Bearer", "id_token": id_token})
        }
        Some("refresh_token") => {
            json!({"access_token": format!("upstream-access-{n}"), "expires_in": 3600, "token_type": "Bearer"})
        }
        _ => {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "unsupported_grant_type"})),
            )
                .into_response();
        }
    };
    let wants_json = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("json"));
    if up.github && !wants_json {
        // GitHub answers form-encoded unless asked for JSON.
        let form: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair(
                "access_token",
                answer["access_token"].as_str().unwrap_or_default(),
            )
            .append_pair("token_type", "bearer")
            .finish();
        return (
            [("content-type", "application/x-www-form-urlencoded")],
            form,
        )
            .into_response();
    }
    axum::Json(if up.github { json!({"access_token": answer["access_token"], "token_type": "bearer", "scope": "read:user"}) } else { answer }).into_response()
}

async fn up_user(State(up): State<Upstreamish>, headers: HeaderMap) -> Response {
    up.user_calls.fetch_add(1, Ordering::SeqCst);
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !auth.starts_with("Bearer upstream-access-") {
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "Bad credentials"})),
        )
            .into_response();
    }
    axum::Json(json!({"id": 583231, "login": "octocat", "name": "The Octocat", "email": "octocat@github.example", "avatar_url": "https://avatars.example/u/583231"})).into_response()
}

async fn up_jwks(State(up): State<Upstreamish>) -> Response {
    axum::Json(serde_json::to_value(TestKey::jwks(&[&up.key])).unwrap()).into_response()
}

async fn start_upstream(github: bool) -> (Upstreamish, Served) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    let up = Upstreamish {
        origin,
        key: TestKey::rs256(),
        seen: Arc::default(),
        github,
        user_calls: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/authorize", get(up_authorize))
        .route("/login/oauth/authorize", get(up_authorize))
        .route("/token", post(up_token))
        .route("/login/oauth/access_token", post(up_token))
        .route("/user", get(up_user))
        .route("/jwks", get(up_jwks))
        .with_state(up.clone());
    (up, Served::app(listener, app))
}

struct Proxy {
    server: AuthServer,
    resource: String,
    store: Arc<dyn Store>,
    issuer: String,
    http: reqwest::Client,
    _served: Served,
}

async fn start_proxy(upstream: Upstream) -> Proxy {
    start_proxy_serving(upstream, None).await
}

/// The proxy alone (its resource is [`RESOURCE`]), or, with `mcp`, the proxy and that MCP
/// server on one port (the resource is then `<issuer>/mcp`).
async fn start_proxy_serving(upstream: Upstream, mcp: Option<McpServer>) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let resource = match mcp {
        Some(_) => format!("{issuer}/mcp"),
        None => RESOURCE.to_owned(),
    };
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let server = AuthServer::builder(issuer.clone())
        .resource(resource.clone())
        .store(store.clone())
        .upstream(upstream)
        .encryption_key([9u8; 32].as_slice())
        .build()
        .await
        .expect("proxy");
    let app = match mcp {
        Some(mcp) => mcp.auth_server(server.clone()).app().expect("app"),
        None => server.router(),
    };
    let served = Served::app(listener, app);
    // Redirects are followed by hand, keeping cookies, like a browser.
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client");
    Proxy {
        server,
        resource,
        store,
        issuer,
        http,
        _served: served,
    }
}

fn google_like(up: &Upstreamish) -> Upstream {
    Upstream::builder(
        "Google",
        format!("{}/authorize", up.origin),
        format!("{}/token", up.origin),
        UPSTREAM_CLIENT,
    )
    .client_secret(UPSTREAM_SECRET)
    .extra_authorize_param("access_type", "offline")
    .identity(Identity::IdToken {
        issuer: up.origin.clone(),
        jwks_url: format!("{}/jwks", up.origin),
    })
    .build()
    .expect("upstream")
}

fn location(res: &reqwest::Response) -> url::Url {
    url::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap()
}

fn query(url: &url::Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

impl Proxy {
    async fn register(&self) -> String {
        let reg: Value = self
            .http
            .post(format!("{}/register", self.issuer))
            .json(&json!({"redirect_uris": ["http://127.0.0.1/callback"], "token_endpoint_auth_method": "none", "client_name": "Proxy test client", "grant_types": ["authorization_code", "refresh_token"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        reg["client_id"].as_str().unwrap().to_owned()
    }

    fn authorize_url(&self, client_id: &str) -> String {
        let mut url = url::Url::parse(&format!("{}/authorize", self.issuer)).unwrap();
        url.query_pairs_mut().extend_pairs([
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("state", "client-state"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("resource", self.resource.as_str()),
            ("scope", "mcp:read"),
        ]);
        url.to_string()
    }

    /// Follows redirects from `url` until the client's redirect URI, submitting the consent
    /// form when it appears. Returns the callback query, every URL visited, and how many
    /// consent pages were shown: the one before the provider (once per browser and client)
    /// and the one after the callback (once per user and client).
    async fn browse(
        &self,
        url: String,
        jar: &mut HashMap<String, String>,
    ) -> (HashMap<String, String>, Vec<String>, usize) {
        let mut visited = vec![url.clone()];
        let mut consented = 0;
        let mut res = self
            .http
            .get(&url)
            .header("cookie", cookie_header(jar))
            .send()
            .await
            .unwrap();
        for _ in 0..10 {
            keep_cookies(&res, jar);
            if res.status() == 200 {
                let html = res.text().await.unwrap();
                let after_sign_in = html.contains("You signed in with <strong>");
                assert!(
                    html.contains("Proxy test client")
                        && (after_sign_in || html.contains("you sign in with <strong>")),
                    "{html}"
                );
                assert!(
                    !html.contains("name=\"password\""),
                    "no password on a proxy consent page"
                );
                consented += 1;
                let mut form = hidden_form_fields(&html);
                form.push(("decision".into(), "approve".into()));
                res = self
                    .http
                    .post(format!("{}/authorize", self.issuer))
                    .header("cookie", cookie_header(jar))
                    .form(&form)
                    .send()
                    .await
                    .unwrap();
                continue;
            }
            assert!(
                matches!(res.status().as_u16(), 302 | 303),
                "{}",
                res.text().await.unwrap_or_default()
            );
            let next = location(&res);
            visited.push(next.to_string());
            if next.as_str().starts_with(REDIRECT) {
                return (query(&next), visited, consented);
            }
            res = self
                .http
                .get(next.as_str())
                .header("cookie", cookie_header(jar))
                .send()
                .await
                .unwrap();
        }
        panic!("too many redirects: {visited:?}");
    }

    async fn exchange(&self, client_id: &str, code: &str) -> Value {
        let res = self
            .http
            .post(format!("{}/token", self.issuer))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("client_id", client_id),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
                ("resource", self.resource.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    async fn auth(&self, token: &str) -> mcp_oauth::Auth {
        Authenticator::new(self.server.verifier().unwrap())
            .authenticate(token, &ResourceUrl::parse(&self.resource).unwrap())
            .await
            .expect("our token verifies")
    }
}

#[tokio::test]
async fn a_client_signs_in_through_the_upstream_and_gets_our_tokens() {
    let (up, _up_stop) = start_upstream(false).await;
    let proxy = start_proxy(google_like(&up)).await;
    let client = proxy.register().await;
    let mut jar = HashMap::new();
    let (callback, visited, consented) = proxy.browse(proxy.authorize_url(&client), &mut jar).await;
    assert_eq!(
        consented, 2,
        "the consent page comes before the upstream redirect, and again after the callback \
         for a user who never allowed this client"
    );
    assert_eq!(callback["state"], "client-state");
    assert_eq!(callback["iss"], proxy.issuer);

    // The upstream leg: our client id, our callback, a fresh state, PKCE S256, extra params.
    let seen = up.seen.lock().unwrap().authorize[0].clone();
    assert_eq!(seen["client_id"], UPSTREAM_CLIENT);
    assert_eq!(
        seen["redirect_uri"],
        format!("{}/oauth/callback", proxy.issuer)
    );
    assert_eq!(seen["redirect_uri"], proxy.server.upstream_callback_url());
    assert_eq!(seen["code_challenge_method"], "S256");
    assert_eq!(seen["access_type"], "offline");
    assert_eq!(seen["scope"], "openid email profile");
    assert_ne!(
        seen["state"], "client-state",
        "the upstream state is ours, not the client's"
    );
    assert_ne!(
        seen["code_challenge"], CHALLENGE,
        "PKCE on both legs, with different verifiers"
    );
    let upstream_token_form = up.seen.lock().unwrap().token[0].clone();
    assert!(upstream_token_form.contains_key("code_verifier"));

    let tokens = proxy.exchange(&client, &callback["code"]).await;
    let everything = format!("{tokens}{visited:?}{callback:?}");
    assert!(
        !everything.contains("upstream-access") && !everything.contains("upstream-refresh"),
        "upstream tokens never reach the client"
    );
    let auth = proxy.auth(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(auth.subject(), "google-user-42");
    assert_eq!(auth.user.email.as_deref(), Some("grace@example.com"));
    assert_eq!(auth.claims.str("aud"), Some(RESOURCE));
    assert_eq!(auth.issuer.as_deref(), Some(proxy.issuer.as_str()));

    // Tool code reaches the upstream token through the server, and only there.
    let upstream = proxy
        .server
        .upstream_token(&auth)
        .await
        .expect("upstream token");
    assert_eq!(upstream.expose(), b"upstream-access-1");

    // The consent is remembered for this browser and client, and on the server for this user
    // and client: the next time, straight upstream and straight back.
    let (callback, _, consented) = proxy.browse(proxy.authorize_url(&client), &mut jar).await;
    assert_eq!(consented, 0);
    assert!(callback.contains_key("code"));
    // Another client still needs consent in the same browser, and from the same user.
    let other = proxy.register().await;
    let (_, _, consented) = proxy.browse(proxy.authorize_url(&other), &mut jar).await;
    assert_eq!(consented, 2);
}

#[tokio::test]
async fn upstream_tokens_are_sealed_at_rest() {
    let (up, _up_stop) = start_upstream(false).await;
    let proxy = start_proxy(google_like(&up)).await;
    let client = proxy.register().await;
    let (callback, _, _) = proxy
        .browse(proxy.authorize_url(&client), &mut HashMap::new())
        .await;
    let tokens = proxy.exchange(&client, &callback["code"]).await;
    let auth = proxy.auth(tokens["access_token"].as_str().unwrap()).await;
    let family = auth.claims.str("sid").unwrap().to_owned();
    let stored = proxy
        .store
        .entry::<serde_json::Value>(EntryKind::UpstreamTokens, &family)
        .await
        .unwrap()
        .expect("stored")
        .to_string();
    assert!(
        !stored.contains("upstream-access") && !stored.contains("upstream-refresh"),
        "sealed: {stored}"
    );

    // A server with another key cannot open them.
    let stranger = AuthServer::builder(proxy.issuer.clone())
        .store(proxy.store.clone())
        .upstream(google_like(&up))
        .encryption_key([1u8; 32].as_slice())
        .build()
        .await
        .unwrap();
    assert!(stranger.upstream_token(&auth).await.is_err());

    let first = proxy.server.upstream_token(&auth).await.unwrap();
    assert_eq!(first.expose(), b"upstream-access-1");
}

#[tokio::test]
async fn an_expired_upstream_token_is_refreshed_upstream() {
    let (up, _up_stop) = start_upstream(false).await;
    up.seen.lock().unwrap().expires_in = Some(0);
    let proxy = start_proxy(google_like(&up)).await;
    let client = proxy.register().await;
    let (callback, _, _) = proxy
        .browse(proxy.authorize_url(&client), &mut HashMap::new())
        .await;
    let tokens = proxy.exchange(&client, &callback["code"]).await;
    let auth = proxy.auth(tokens["access_token"].as_str().unwrap()).await;
    up.seen.lock().unwrap().expires_in = None;
    // Eight tool calls at once: one refresh at the provider, the same renewed token for all.
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (server, auth) = (proxy.server.clone(), auth.clone());
        calls.spawn(async move { server.upstream_token(&auth).await.expect("refreshed") });
    }
    while let Some(renewed) = calls.join_next().await {
        assert_eq!(renewed.unwrap().expose(), b"upstream-access-2");
    }
    let refreshes = up
        .seen
        .lock()
        .unwrap()
        .token
        .iter()
        .filter(|form| form["grant_type"] == "refresh_token")
        .count();
    assert_eq!(refreshes, 1, "single flight");
    let last = up.seen.lock().unwrap().token.last().cloned().unwrap();
    assert_eq!(last["grant_type"], "refresh_token");
    assert_eq!(last["refresh_token"], "upstream-refresh-1");
    // Fresh now: no new call.
    let calls = up.seen.lock().unwrap().token.len();
    assert_eq!(
        proxy.server.upstream_token(&auth).await.unwrap().expose(),
        b"upstream-access-2"
    );
    assert_eq!(up.seen.lock().unwrap().token.len(), calls);
    // A revoked grant has no upstream token any more.
    let res = proxy
        .http
        .post(format!("{}/revoke", proxy.issuer))
        .form(&[
            ("token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", client.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(proxy.server.upstream_token(&auth).await.is_err());
}

#[tokio::test]
async fn upstream_state_is_single_use_and_errors_reach_the_client_safely() {
    let (up, _up_stop) = start_upstream(false).await;
    let proxy = start_proxy(google_like(&up)).await;
    let client = proxy.register().await;
    let mut jar = HashMap::new();
    let (_, visited, _) = proxy.browse(proxy.authorize_url(&client), &mut jar).await;
    let callback = visited
        .iter()
        .find(|u| u.starts_with(&format!("{}/oauth/callback?", proxy.issuer)))
        .expect("our callback was visited")
        .clone();
    // Replaying the provider's answer: the state is gone.
    let res = proxy.http.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none(), "never redirected");
    // A forged state: same.
    let res = proxy
        .http
        .get(format!(
            "{}/oauth/callback?code=x&state=forged",
            proxy.issuer
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
    // The provider refuses: the client gets access_denied with its state and our iss.
    up.seen.lock().unwrap().deny = true;
    let (callback, _, _) = proxy.browse(proxy.authorize_url(&client), &mut jar).await;
    assert_eq!(callback["error"], "access_denied");
    assert_eq!(callback["state"], "client-state");
    assert_eq!(callback["iss"], proxy.issuer);
}

#[tokio::test]
async fn consent_needs_the_csrf_cookie_and_can_be_denied() {
    let (up, _up_stop) = start_upstream(false).await;
    let proxy = start_proxy(google_like(&up)).await;
    let client = proxy.register().await;
    let res = proxy
        .http
        .get(proxy.authorize_url(&client))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains(&up.origin),
        "{csp}"
    );
    let html = res.text().await.unwrap();
    let mut form = hidden_form_fields(&html);
    form.push(("decision".into(), "approve".into()));
    // Without the cookie (a cross-site post), nothing goes upstream.
    let res = proxy
        .http
        .post(format!("{}/authorize", proxy.issuer))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(up.seen.lock().unwrap().authorize.is_empty());
    // Deny: back to the client, nothing upstream.
    let mut jar = HashMap::new();
    let res = proxy
        .http
        .get(proxy.authorize_url(&client))
        .send()
        .await
        .unwrap();
    keep_cookies(&res, &mut jar);
    let mut form = hidden_form_fields(&res.text().await.unwrap());
    form.push(("decision".into(), "deny".into()));
    let res = proxy
        .http
        .post(format!("{}/authorize", proxy.issuer))
        .header("cookie", cookie_header(&jar))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(query(&location(&res))["error"], "access_denied");
    assert!(up.seen.lock().unwrap().authorize.is_empty());
}

#[tokio::test]
async fn github_opaque_tokens_and_the_user_api() {
    let (up, _up_stop) = start_upstream(true).await;
    let http = HttpClient::new().unwrap();
    let upstream = Upstream::github_at(&up.origin, &up.origin, UPSTREAM_CLIENT, UPSTREAM_SECRET)
        .http_client(http)
        .build()
        .unwrap();
    let proxy = start_proxy(upstream).await;
    let client = proxy.register().await;
    let (callback, _, _) = proxy
        .browse(proxy.authorize_url(&client), &mut HashMap::new())
        .await;
    let tokens = proxy.exchange(&client, &callback["code"]).await;
    let auth = proxy.auth(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(auth.subject(), "583231");
    assert_eq!(auth.user.username.as_deref(), Some("octocat"));
    assert_eq!(
        auth.user.picture.as_deref(),
        Some("https://avatars.example/u/583231")
    );
    assert_eq!(up.user_calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        up.seen.lock().unwrap().authorize[0]["scope"],
        "read:user user:email"
    );
    assert_eq!(
        proxy.server.upstream_token(&auth).await.unwrap().expose(),
        b"upstream-access-1"
    );
}

#[tokio::test]
async fn proxy_mode_needs_an_encryption_key() {
    let (up, _up_stop) = start_upstream(false).await;
    let err = AuthServer::builder("http://127.0.0.1:1")
        .upstream(google_like(&up))
        .build()
        .await
        .expect_err("no key");
    assert!(err.to_string().contains("encryption_key"), "{err}");
    let err = Upstream::builder("X", "https://x.example/a", "https://x.example/t", "id")
        .build()
        .expect_err("no identity");
    assert!(err.to_string().contains("Identity::IdToken"), "{err}");
}

/// A tool that calls the provider's user API as the caller, with the upstream token.
fn upstream_profile(user_api: String) -> Tool {
    Tool::new(
        "upstream_profile",
        "Reads the caller's profile at the identity provider",
        move |_: NoArgs, ctx: ToolContext| {
            let user_api = user_api.clone();
            async move {
                let token = ctx.upstream_token().await?;
                let profile: Value = reqwest::Client::new()
                    .get(&user_api)
                    .bearer_auth(String::from_utf8_lossy(token.expose()))
                    .send()
                    .await
                    .map_err(|e| ToolError::new(e.to_string()))?
                    .json()
                    .await
                    .map_err(|e| ToolError::new(e.to_string()))?;
                Ok::<_, ToolError>(json!({ "login": profile["login"] }))
            }
        },
    )
}

async fn call_tool(proxy: &Proxy, token: &str, tool: &str) -> (u16, Value) {
    let res = proxy
        .http
        .post(&proxy.resource)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {}}}))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn tools_on_an_mcp_server_call_the_provider_with_the_upstream_token() {
    let (up, _up_stop) = start_upstream(false).await;
    let mcp = McpServer::new("proxied", "1.0.0")
        .tool(upstream_profile(format!("{}/user", up.origin)))
        .tool(whoami());
    let proxy = start_proxy_serving(google_like(&up), Some(mcp)).await;

    // The MCP endpoint is protected by the embedded server: its challenge, its metadata.
    let res = proxy.http.post(&proxy.resource).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let prm: Value = proxy
        .http
        .get(format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            proxy.issuer
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["resource"], proxy.resource);
    assert_eq!(prm["authorization_servers"][0], proxy.issuer);

    let client = proxy.register().await;
    let mut jar = HashMap::new();
    let (callback, _, _) = proxy.browse(proxy.authorize_url(&client), &mut jar).await;
    let tokens = proxy.exchange(&client, &callback["code"]).await;
    let ours = tokens["access_token"].as_str().unwrap();

    let (status, body) = call_tool(&proxy, ours, "whoami").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["structuredContent"]["sub"], "google-user-42");
    let calls = up.user_calls.load(Ordering::SeqCst);
    let (status, body) = call_tool(&proxy, ours, "upstream_profile").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"]["structuredContent"]["login"], "octocat",
        "the provider accepted the upstream token: {body}"
    );
    assert_eq!(up.user_calls.load(Ordering::SeqCst), calls + 1);
    assert!(!body.to_string().contains("upstream-access"));

    // After revocation our token is refused at the door, and the upstream token is gone.
    let res = proxy
        .http
        .post(format!("{}/revoke", proxy.issuer))
        .form(&[
            ("token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", client.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (status, _) = call_tool(&proxy, ours, "upstream_profile").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn without_a_proxy_grant_tools_get_a_clear_error_and_no_token() {
    // A token of this server that did not come through the upstream (minted directly): the
    // tool gets an error result naming the problem, never another token.
    let (up, _up_stop) = start_upstream(false).await;
    let mcp =
        McpServer::new("proxied", "1.0.0").tool(upstream_profile(format!("{}/user", up.origin)));
    let proxy = start_proxy_serving(google_like(&up), Some(mcp)).await;
    let scope = vec!["mcp:read".to_owned()];
    let claims = serde_json::Map::new();
    let token = proxy
        .server
        .mint_access_token(&mcp_oauth::auth_server::Grant {
            subject: "someone",
            client_id: "direct",
            scope: &scope,
            resource: Some(&proxy.resource),
            user_claims: &claims,
            family: "not-a-proxy-grant",
            ttl: None,
        });
    let (status, body) = call_tool(&proxy, &token, "upstream_profile").await;
    assert_eq!(status, 200, "{body}");
    let text = body.to_string();
    assert!(text.contains("upstream token is unavailable"), "{text}");
    assert_eq!(up.user_calls.load(Ordering::SeqCst), 0);
}
