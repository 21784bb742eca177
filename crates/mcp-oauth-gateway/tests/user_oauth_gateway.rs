//! `user-oauth` through the gateway: each user reaches the upstream with their own sealed
//! token (never the gateway's), a user without one is told where to connect, and a token the
//! upstream refuses is renewed for the next request.

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
}

async fn guard(State(rec): State<Arc<Recorder>>, req: Request, next: Next) -> Response {
    let authorization = req
        .headers()
        .get("authorization")
        .map_or_else(|| "(none)".to_owned(), |v| v.to_str().unwrap().to_owned());
    rec.seen.lock().unwrap().push(authorization.clone());
    let ok = authorization
        .strip_prefix("Bearer ")
        .is_some_and(|t| rec.accepted.lock().unwrap().iter().any(|a| a == t));
    if !ok {
        return (http::StatusCode::UNAUTHORIZED, "token refused").into_response();
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
                let mut seen = seen.lock().unwrap();
                seen.push(form["refresh_token"].clone());
                let access = format!("access-{}", seen.len());
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
        vec![],
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

#[tokio::test]
async fn a_token_the_upstream_refuses_is_renewed_for_the_next_request() {
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
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    let refused = post(&s.h.url, Some(&token), Some(&session), list).await;
    assert!(!refused.status().is_success());
    let again = post(&s.h.url, Some(&token), Some(&session), list).await;
    assert_eq!(again.status(), 200);
    assert!(messages(again).await.last().unwrap()["result"]["tools"].is_array());
    assert_eq!(*s.tokens.refreshes.lock().unwrap(), ["refresh-of-alice"]);
    assert_eq!(
        s.up.rec.seen.lock().unwrap().last().unwrap(),
        "Bearer access-1"
    );
}
