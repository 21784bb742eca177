//! `user-oauth` through the gateway: each user reaches the upstream with their own sealed
//! token (never the gateway's), a user without one is told where to connect, a token the
//! upstream refuses is renewed and the call sent once more (once only), and a 403
//! `insufficient_scope` sends the user to connect again for more scopes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post as post_route;
use axum::{Form, Json, Router};
use mcp_oauth::auth_server::store::{MemoryStore, Store};
use mcp_oauth::scope::ScopeHierarchy;
use mcp_oauth::{AccessToken, Auth, AuthInfo, Claims, DefaultClaimMapper};
use mcp_oauth_gateway::user_oauth::{ClientAuth, UpstreamGrant, UserOAuth};
use mcp_oauth_gateway::vault::Vault;
use mcp_oauth_gateway::{HttpConfig, UpstreamCredentials};
use serde_json::json;
use support::*;
use tokio::sync::oneshot;

#[derive(Default)]
struct Recorder {
    /// The `Authorization` of every request.
    seen: Mutex<Vec<String>>,
    /// The tokens the upstream accepts.
    accepted: Mutex<Vec<String>>,
    /// The scopes a request needs, when set: every request with a token not in `wide` is
    /// refused with a 403 `insufficient_scope` naming them.
    needs: Mutex<Option<String>>,
    /// The tokens granted after a new consent (with every scope).
    wide: Mutex<Vec<String>>,
    /// Refuse every token, renewed ones too.
    refuse_all: Mutex<bool>,
}

async fn guard(State(rec): State<Arc<Recorder>>, req: Request, next: Next) -> Response {
    let authorization = req
        .headers()
        .get("authorization")
        .map_or_else(|| "(none)".to_owned(), |v| v.to_str().unwrap().to_owned());
    rec.seen.lock().unwrap().push(authorization.clone());
    let ok = !*rec.refuse_all.lock().unwrap()
        && authorization
            .strip_prefix("Bearer ")
            .is_some_and(|t| rec.accepted.lock().unwrap().iter().any(|a| a == t));
    if !ok {
        return (
            http::StatusCode::UNAUTHORIZED,
            [(
                "www-authenticate",
                r#"Bearer error="invalid_token", error_description="token refused""#,
            )],
            "token refused",
        )
            .into_response();
    }
    let wide = rec.wide.lock().unwrap().contains(&authorization);
    if let Some(scope) = rec.needs.lock().unwrap().clone()
        && !wide
    {
        let challenge = format!(r#"Bearer error="insufficient_scope", scope="{scope}""#);
        return (
            http::StatusCode::FORBIDDEN,
            [("www-authenticate", challenge)],
            "more scopes needed",
        )
            .into_response();
    }
    next.run(req).await
}

struct Upstream {
    url: String,
    rec: Arc<Recorder>,
    _stop: oneshot::Sender<()>,
}

async fn upstream() -> Upstream {
    let rec = Arc::new(Recorder::default());
    let app = mcp_oauth_gateway::test_upstream::http_router()
        .layer(axum::middleware::from_fn_with_state(rec.clone(), guard));
    let (addr, stop) = serve_app(app).await;
    Upstream {
        url: format!("http://{addr}/mcp"),
        rec,
        _stop: stop,
    }
}

/// The upstream's token endpoint: each refresh makes `access-N`, which the upstream accepts.
struct TokenEndpoint {
    url: String,
    refreshes: Arc<Mutex<Vec<String>>>,
    _stop: oneshot::Sender<()>,
}

async fn token_endpoint(rec: Arc<Recorder>) -> TokenEndpoint {
    let refreshes = Arc::new(Mutex::new(Vec::new()));
    let seen = refreshes.clone();
    let app = Router::new().route(
        "/token",
        post_route(move |Form(form): Form<HashMap<String, String>>| {
            let seen = seen.clone();
            let rec = rec.clone();
            async move {
                let access =
                    if form.get("grant_type").map(String::as_str) == Some("authorization_code") {
                        // A new consent: its token has every scope.
                        let access = format!("consented-{}", form["code"]);
                        rec.wide.lock().unwrap().push(format!("Bearer {access}"));
                        access
                    } else {
                        let mut seen = seen.lock().unwrap();
                        seen.push(form["refresh_token"].clone());
                        format!("access-{}", seen.len())
                    };
                rec.accepted.lock().unwrap().push(access.clone());
                Json(json!({"access_token": access, "token_type": "Bearer", "expires_in": 3600}))
            }
        }),
    );
    let (addr, stop) = serve_app(app).await;
    TokenEndpoint {
        url: format!("http://{addr}/token"),
        refreshes,
        _stop: stop,
    }
}

fn caller(sub: &str) -> Auth {
    let serde_json::Value::Object(map) = json!({"sub": sub, "iss": ISSUER}) else {
        unreachable!("an object")
    };
    Auth::from(AuthInfo::from_claims(
        Claims::new(map),
        AccessToken::new("unused"),
        &DefaultClaimMapper,
        Arc::new(ScopeHierarchy::new()),
    ))
}

struct Setup {
    up: Upstream,
    tokens: TokenEndpoint,
    user_oauth: UserOAuth,
    h: Harness,
}

async fn setup() -> Setup {
    let up = upstream().await;
    let tokens = token_endpoint(up.rec.clone()).await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let user_oauth = UserOAuth::builder("notes", &up.url)
        .endpoints("https://notes.example.com/authorize", &tokens.url)
        .client(ClientAuth::public("gateway"))
        .public_url("https://gw.example.com")
        .store(store.clone())
        .vault(Vault::new(store, &[9; 32]).unwrap())
        .build()
        .unwrap();
    let config = HttpConfig::new(&up.url)
        .unwrap()
        .credentials(UpstreamCredentials::user_oauth(user_oauth.clone()));
    let h = Harness::start(config).await;
    Setup {
        up,
        tokens,
        user_oauth,
        h,
    }
}

async fn connected(s: &Setup, sub: &str, token: &str) {
    s.up.rec.accepted.lock().unwrap().push(token.to_owned());
    let grant = UpstreamGrant::new(
        token,
        Some(format!("refresh-of-{sub}").into()),
        Some(i64::MAX / 2),
        vec!["notes:read".to_owned()],
    );
    s.user_oauth.keep(&caller(sub), &grant).await.unwrap();
}

#[tokio::test]
async fn a_user_who_never_connected_is_told_where_and_nothing_reaches_the_upstream() {
    let s = setup().await;
    let response = post(&s.h.url, Some(&s.h.token("alice")), None, INITIALIZE).await;
    assert_eq!(response.status(), 200, "a JSON-RPC error the client shows");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["code"],
        mcp_oauth_gateway::ACTION_REQUIRED,
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("https://gw.example.com/gateway/connect/notes"),
        "{body}"
    );
    assert_eq!(
        body["error"]["data"]["elicitations"][0]["url"],
        "https://gw.example.com/gateway/connect/notes",
        "{body}"
    );
    assert!(s.up.rec.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn each_user_reaches_the_upstream_with_their_own_token_only() {
    let s = setup().await;
    connected(&s, "alice", "up-alice").await;
    connected(&s, "bob", "up-bob").await;
    let alice = s.h.client("alice").await;
    assert_eq!(
        call(&alice, "echo", json!({"text": "a"})).await.unwrap(),
        "a"
    );
    let seen = s.up.rec.seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|a| a == "Bearer up-alice"), "{seen:?}");
    let bob = s.h.client("bob").await;
    assert_eq!(call(&bob, "echo", json!({"text": "b"})).await.unwrap(), "b");
    let seen = s.up.rec.seen.lock().unwrap().clone();
    assert!(seen.iter().any(|a| a == "Bearer up-bob"), "{seen:?}");
    assert!(
        seen.iter()
            .all(|a| a == "Bearer up-alice" || a == "Bearer up-bob"),
        "the gateway's own tokens never reach the upstream: {seen:?}"
    );
    // Carol has no grant: refused before the upstream.
    let before = seen.len();
    let response = post(&s.h.url, Some(&s.h.token("carol")), None, INITIALIZE).await;
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/gateway/connect/notes")
    );
    assert_eq!(s.up.rec.seen.lock().unwrap().len(), before);
    alice.cancel().await.unwrap();
    bob.cancel().await.unwrap();
}

const LIST: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;

#[tokio::test]
async fn a_token_the_upstream_refuses_is_renewed_and_the_call_sent_once_more() {
    let s = setup().await;
    connected(&s, "alice", "up-alice").await;
    let token = s.h.token("alice");
    let session = raw_session(&s.h.url, &token).await;
    // The upstream revokes it.
    s.up.rec
        .accepted
        .lock()
        .unwrap()
        .retain(|t| t != "up-alice");
    let before = s.up.rec.seen.lock().unwrap().len();
    let answer = post(&s.h.url, Some(&token), Some(&session), LIST).await;
    assert_eq!(answer.status(), 200, "the call succeeds");
    assert!(messages(answer).await.last().unwrap()["result"]["tools"].is_array());
    assert_eq!(
        *s.tokens.refreshes.lock().unwrap(),
        ["refresh-of-alice"],
        "one refresh"
    );
    assert_eq!(
        s.up.rec.seen.lock().unwrap()[before..],
        ["Bearer up-alice", "Bearer access-1"],
        "the refused request, then the same once more with the renewed token"
    );
    // The next call uses the renewed token straight away.
    let again = post(&s.h.url, Some(&token), Some(&session), LIST).await;
    assert_eq!(again.status(), 200);
    assert_eq!(s.tokens.refreshes.lock().unwrap().len(), 1);
    assert_eq!(
        s.up.rec.seen.lock().unwrap()[before..],
        ["Bearer up-alice", "Bearer access-1", "Bearer access-1"]
    );
}

#[tokio::test]
async fn a_second_401_after_the_retry_is_the_answer_not_a_loop() {
    let s = setup().await;
    connected(&s, "alice", "up-alice").await;
    let token = s.h.token("alice");
    let session = raw_session(&s.h.url, &token).await;
    // The upstream now refuses every token, the renewed ones too.
    *s.up.rec.refuse_all.lock().unwrap() = true;
    let before = s.up.rec.seen.lock().unwrap().len();
    let answer = post(&s.h.url, Some(&token), Some(&session), LIST).await;
    assert!(!answer.status().is_success(), "{}", answer.status());
    assert_eq!(s.tokens.refreshes.lock().unwrap().len(), 1, "one refresh");
    assert_eq!(
        s.up.rec.seen.lock().unwrap().len() - before,
        2,
        "the request and one retry, no more"
    );
}

#[tokio::test]
async fn a_403_insufficient_scope_asks_the_user_to_connect_again_for_the_union_of_scopes() {
    let s = setup().await;
    connected(&s, "alice", "up-alice").await;
    let token = s.h.token("alice");
    let session = raw_session(&s.h.url, &token).await;
    *s.up.rec.needs.lock().unwrap() = Some("notes:write".to_owned());
    let call = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}"#;
    let before = s.up.rec.seen.lock().unwrap().len();
    let answer = post(&s.h.url, Some(&token), Some(&session), call).await;
    assert_eq!(answer.status(), 200, "a JSON-RPC error the client shows");
    let body = messages(answer).await.pop().unwrap();
    assert_eq!(body["id"], 3, "{body}");
    assert_eq!(
        body["error"]["code"],
        mcp_oauth_gateway::ACTION_REQUIRED,
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("notes:write"), "{message}");
    assert_eq!(
        body["error"]["data"]["elicitations"][0]["url"],
        "https://gw.example.com/gateway/connect/notes",
        "{body}"
    );
    assert_eq!(
        s.up.rec.seen.lock().unwrap().len() - before,
        1,
        "no retry of a 403"
    );
    assert!(
        s.tokens.refreshes.lock().unwrap().is_empty(),
        "no refresh for a 403"
    );

    // The connection asks for the scopes granted and those the upstream named.
    let start = s
        .user_oauth
        .start_connect(&format!("{ISSUER}\u{0}alice"))
        .await
        .unwrap();
    let location = url::Url::parse(start.location()).unwrap();
    let scope = location
        .query_pairs()
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned());
    assert_eq!(scope.as_deref(), Some("notes:read notes:write"));

    // Alice consents; the scopes kept for her are dropped, and her call goes through.
    let state = location
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let cookie = start
        .set_cookie()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    let mut browser = http::HeaderMap::new();
    browser.insert("cookie", cookie.parse().unwrap());
    s.user_oauth
        .finish_connect(
            &format!("{ISSUER}\u{0}alice"),
            &format!("state={state}&code=c1"),
            &browser,
        )
        .await
        .unwrap();
    let answer = post(&s.h.url, Some(&token), Some(&session), call).await;
    assert_eq!(answer.status(), 200);
    let body = messages(answer).await.pop().unwrap();
    assert_eq!(body["result"]["content"][0]["text"], "x", "{body}");
    assert_eq!(
        s.up.rec.seen.lock().unwrap().last().unwrap(),
        "Bearer consented-c1"
    );
    let again = s
        .user_oauth
        .start_connect(&format!("{ISSUER}\u{0}alice"))
        .await
        .unwrap();
    assert!(
        !again.location().contains("scope="),
        "the step-up is done: {}",
        again.location()
    );
    // Bob, who met no 403, is asked for the configured scopes only (none here).
    let bob = s
        .user_oauth
        .start_connect(&format!("{ISSUER}\u{0}bob"))
        .await
        .unwrap();
    assert!(!bob.location().contains("scope="), "{}", bob.location());
}
