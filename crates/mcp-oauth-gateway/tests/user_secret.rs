//! `credentials = { kind = "user-secret" }`: each user's own pasted token, from the vault, as
//! a header to an HTTP upstream or in the environment of the user's own stdio child; a user
//! without one gets the link to the page and never reaches the upstream.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod browser;
mod support;

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use mcp_oauth::auth_server::MemoryStore;
use mcp_oauth_gateway::credential_pages::CredentialPages;
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
    let sink = mcp_oauth::audit::MemorySink::new();
    let audit = mcp_oauth::audit::AuditLog::builder()
        .memory(&sink)
        .build()
        .unwrap();
    let h = Harness::start_with(config, |b| b.audit(audit)).await;

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

    // The token is in no audit line and no metric.
    let lines = sink.lines();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|l| !l.contains("ghp_alice")), "{lines:?}");
    let (admin, _stop) = serve_app(h.gateway.admin_router()).await;
    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("mcp_"), "{metrics}");
    assert!(!metrics.contains("ghp_alice"));
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

    // A revoked token stops alice's child at once; her next request gets the link.
    vault
        .revoke(&user("alice"), "github", EntryKind::UserSecret)
        .await
        .unwrap();
    assert_eq!(h.gateway.per_user_children(), 1, "only bob's child is left");
    let err = call(&again, "pid", json!({})).await.unwrap_err();
    assert!(err.contains(PAGE), "{err}");
    for client in [alice, bob, again] {
        let _ = client.cancel().await;
    }
}

/// Whether process `pid` has ended (gone, or a zombie waiting to be reaped).
#[cfg(target_os = "linux")]
fn ended(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn deleting_a_token_on_its_page_stops_the_users_child_at_once() {
    // The gateway's pages and the gateway share one vault, as in one instance; the pages name
    // users by the issuer of the gateway's tokens, as the gateway does.
    let server = browser::server().await;
    let pages = browser::pages(&server).await;
    let vault = vault();
    let secret = UserSecret::new(vault.clone(), "github", PAGE)
        .env("GITHUB_TOKEN")
        .unwrap();
    let app = CredentialPages::new(pages.clone(), vault.clone(), ISSUER, [secret.clone()])
        .router()
        .merge(pages.router())
        .merge(server.router());
    let config = stdio_upstream()
        .isolation(Isolation::PerUser)
        .user_secret(secret)
        .unwrap();
    let h = Harness::start(config).await;
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
    let alice = h.client("alice").await;
    let bob = h.client("bob").await;
    let alice_pid = call(&alice, "pid", json!({})).await.unwrap();
    let bob_pid = call(&bob, "pid", json!({})).await.unwrap();
    assert!(!ended(&alice_pid) && !ended(&bob_pid));

    // Alice deletes her token on its page, and sends nothing more.
    let path = "/gateway/secrets/github";
    let mut browser = browser::Browser::default();
    assert_eq!(browser.sign_in(&app, path, "alice").await.status, 303);
    let page = browser.get(&app, path).await;
    assert!(page.body.contains("Set on"), "{}", page.body);
    let csrf = mcp_oauth::testing::hidden_form_fields(&page.body)
        .into_iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v)
        .unwrap();
    let form =
        [("csrf", csrf.as_str()), ("action", "delete")].map(|(k, v)| (k.to_owned(), v.to_owned()));
    let deleted = browser.post(&app, path, &form, Some(browser::ORIGIN)).await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    assert!(deleted.body.contains("Deleted."), "{}", deleted.body);

    // Her child ends without any request of hers; bob's child runs on, the same process.
    poll("alice's child to end", || async {
        ended(&alice_pid).then_some(())
    })
    .await;
    assert_eq!(h.gateway.per_user_children(), 1, "only bob's child is left");
    assert!(!ended(&bob_pid));
    assert_eq!(call(&bob, "pid", json!({})).await.unwrap(), bob_pid);
    let err = call(&alice, "pid", json!({})).await.unwrap_err();
    assert!(err.contains(PAGE), "{err}");
    for client in [alice, bob] {
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
        panic!("a user-secret env without per-user isolation is refused");
    };
    assert!(err.to_string().contains("per-user"), "{err}");
    let header_only = UserSecret::new(vault(), "github", PAGE);
    assert!(stdio_upstream().user_secret(header_only).is_err());
}
