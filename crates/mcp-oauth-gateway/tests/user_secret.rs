//! `credentials = { kind = "user-secret" }`: each user's own pasted token, from the vault, as
//! a header to an HTTP upstream or in the environment of the user's own stdio child; a user
//! without one gets the link to the page and never reaches the upstream.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use mcp_oauth::auth_server::MemoryStore;
use mcp_oauth_gateway::vault::{EntryKind, Vault};
use mcp_oauth_gateway::{ACTION_REQUIRED, HttpConfig, Isolation, UpstreamCredentials, UserSecret};
use serde_json::json;
use support::*;
use tokio::sync::oneshot;

const PAGE: &str = "https://gateway.example/gateway/secrets/github";

/// Every request's headers, as the upstream saw them.
#[derive(Default)]
struct Seen(Mutex<Vec<http::HeaderMap>>);

async fn record(State(seen): State<Arc<Seen>>, req: Request, next: Next) -> Response {
    seen.0.lock().unwrap().push(req.headers().clone());
    next.run(req).await
}

struct Upstream {
    url: String,
    seen: Arc<Seen>,
    _stop: oneshot::Sender<()>,
}

async fn upstream() -> Upstream {
    let seen = Arc::new(Seen::default());
    let app = mcp_oauth_gateway::test_upstream::http_router()
        .layer(axum::middleware::from_fn_with_state(seen.clone(), record));
    let (addr, stop) = serve_app(app).await;
    Upstream {
        url: format!("http://{addr}/mcp"),
        seen,
        _stop: stop,
    }
}

fn vault() -> Vault {
    Vault::new(Arc::new(MemoryStore::new()), &[9; 32]).unwrap()
}

fn user(sub: &str) -> String {
    format!("{ISSUER}\u{0}{sub}")
}

/// The JSON-RPC error of a refused call: its code, message and link.
fn action_required(body: &serde_json::Value) -> (String, String) {
    let error = &body["error"];
    assert_eq!(error["code"], ACTION_REQUIRED, "{body}");
    let message = error["message"].as_str().unwrap().to_owned();
    let elicitation = &error["data"]["elicitations"][0];
    assert_eq!(elicitation["mode"], "url", "{body}");
    (message, elicitation["url"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn each_user_reaches_an_http_upstream_with_their_own_token_and_without_one_gets_the_link() {
    let up = upstream().await;
    let vault = vault();
    let secret = UserSecret::new(vault.clone(), "github", PAGE)
        .pattern("ghp_[a-z]+")
        .unwrap()
        .header("X-Api-Key", "token {secret}")
        .unwrap();
    let config = HttpConfig::new(&up.url)
        .unwrap()
        .credentials(UpstreamCredentials::user_secret(secret));
    let h = Harness::start(config).await;

    // No token: a JSON-RPC error with the link, never a challenge, and nothing upstream.
    let response = post(&h.url, Some(&h.token("alice")), None, INITIALIZE).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("www-authenticate").is_none());
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["id"], 1);
    let (message, url) = action_required(&body);
    assert_eq!(url, PAGE);
    assert!(message.contains(PAGE), "{message}");
    assert!(
        up.seen.0.lock().unwrap().is_empty(),
        "nothing reached the upstream"
    );

    vault
        .put(
            &user("alice"),
            "github",
            EntryKind::UserSecret,
            b"ghp_alice",
            None,
        )
        .await
        .unwrap();
    let alice = h.client("alice").await;
    assert_eq!(
        call(&alice, "echo", json!({"text": "hi"})).await.unwrap(),
        "hi"
    );
    let inbound = h.token("alice");
    {
        let seen = up.seen.0.lock().unwrap();
        assert!(seen.len() >= 3, "{}", seen.len());
        for headers in seen.iter() {
            assert_eq!(headers["x-api-key"], "token ghp_alice");
            assert!(!headers.contains_key("authorization"), "{headers:?}");
            assert!(
                headers
                    .values()
                    .all(|v| !String::from_utf8_lossy(v.as_bytes()).contains(&inbound)),
                "the inbound token never reaches the upstream"
            );
        }
    }

    // Bob has no token: refused, and the upstream sees nothing of his.
    let before = up.seen.0.lock().unwrap().len();
    let response = post(&h.url, Some(&h.token("bob")), None, INITIALIZE).await;
    let body: serde_json::Value = response.json().await.unwrap();
    action_required(&body);
    assert_eq!(up.seen.0.lock().unwrap().len(), before);

    // Alice's token revoked: her next call is refused with the link, and not sent.
    vault
        .revoke(&user("alice"), "github", EntryKind::UserSecret)
        .await
        .unwrap();
    let err = call(&alice, "echo", json!({"text": "again"}))
        .await
        .unwrap_err();
    assert!(err.contains(PAGE), "{err}");
    assert_eq!(up.seen.0.lock().unwrap().len(), before);
    alice.cancel().await.unwrap();
}

#[tokio::test]
async fn each_users_stdio_child_gets_their_token_in_its_environment() {
    let vault = vault();
    let secret = UserSecret::new(vault.clone(), "github", PAGE)
        .env("GITHUB_TOKEN")
        .unwrap();
    let config = stdio_upstream()
        .isolation(Isolation::PerUser)
        .user_secret(secret)
        .unwrap();
    let h = Harness::start(config).await;

    // No token: the link, and no child.
    let response = post(&h.url, Some(&h.token("alice")), None, INITIALIZE).await;
    let body: serde_json::Value = response.json().await.unwrap();
    let (_, url) = action_required(&body);
    assert_eq!(url, PAGE);
    assert_eq!(h.gateway.per_user_children(), 0);

    for (sub, token) in [("alice", "ghp_alice"), ("bob", "ghp_bob")] {
        vault
            .put(
                &user(sub),
                "github",
                EntryKind::UserSecret,
                token.as_bytes(),
                None,
            )
            .await
            .unwrap();
    }
    let env_of = |text: String| -> serde_json::Value { serde_json::from_str(&text).unwrap() };
    let alice = h.client("alice").await;
    let bob = h.client("bob").await;
    let alice_env = env_of(call(&alice, "get_env", json!({})).await.unwrap());
    assert_eq!(alice_env["GITHUB_TOKEN"], "ghp_alice");
    let bob_env = env_of(call(&bob, "get_env", json!({})).await.unwrap());
    assert_eq!(bob_env["GITHUB_TOKEN"], "ghp_bob");
    let alice_pid = call(&alice, "pid", json!({})).await.unwrap();
    assert_eq!(h.gateway.per_user_children(), 2);

    // A replaced token restarts alice's child with the new one; bob's stays.
    vault
        .put(
            &user("alice"),
            "github",
            EntryKind::UserSecret,
            b"ghp_alice_2",
            None,
        )
        .await
        .unwrap();
    let again = h.client("alice").await;
    let env = env_of(call(&again, "get_env", json!({})).await.unwrap());
    assert_eq!(env["GITHUB_TOKEN"], "ghp_alice_2");
    assert_ne!(call(&again, "pid", json!({})).await.unwrap(), alice_pid);
    assert_eq!(
        env_of(call(&bob, "get_env", json!({})).await.unwrap())["GITHUB_TOKEN"],
        "ghp_bob"
    );

    // A revoked token stops alice's child at her next request, which gets the link.
    vault
        .revoke(&user("alice"), "github", EntryKind::UserSecret)
        .await
        .unwrap();
    let err = call(&again, "pid", json!({})).await.unwrap_err();
    assert!(err.contains(PAGE), "{err}");
    assert_eq!(h.gateway.per_user_children(), 1, "only bob's child is left");
    for client in [alice, bob, again] {
        let _ = client.cancel().await;
    }
}

#[test]
fn a_user_secret_in_env_needs_per_user_isolation() {
    let secret = UserSecret::new(vault(), "github", PAGE)
        .env("GITHUB_TOKEN")
        .unwrap();
    let config = stdio_upstream().user_secret(secret).unwrap();
    let Err(err) = mcp_oauth_gateway::Gateway::builder(config)
        .insecure_no_auth()
        .build()
    else {
        panic!("refused");
    };
    assert!(err.to_string().contains("per-user"), "{err}");
    let header_only = UserSecret::new(vault(), "github", PAGE);
    assert!(stdio_upstream().user_secret(header_only).is_err());
}
