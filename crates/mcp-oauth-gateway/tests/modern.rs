//! Protocol 2026-07-28 on the client side: `server/discover`, stateless requests (no
//! `initialize`, no `Mcp-Session-Id`), and `Mcp-Method` / `Mcp-Name` headers that must agree
//! with the body; older versions keep working beside it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use mcp_oauth::Auth;
use mcp_oauth_gateway::HttpConfig;
use mcp_oauth_gateway::gate::{Call, Decision, Gatekeeper};
use serde_json::{Value, json};
use support::*;

const V: &str = "2026-07-28";

/// A raw 2026-07-28 POST: the version header plus `extra` headers.
async fn modern(
    url: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", V)
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

fn discover_body() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "server/discover", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": V,
        "io.modelcontextprotocol/clientInfo": {"name": "modern", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}}}})
}

fn call_body(tool: &str, args: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": tool, "arguments": args,
        "_meta": {"io.modelcontextprotocol/protocolVersion": V}}})
}

/// Counts the calls it is asked about, and denies `get_env`.
#[derive(Clone, Default)]
struct Counting(Arc<AtomicUsize>);

impl Gatekeeper for Counting {
    fn decide(&self, _: Option<&Auth>, call: &Call<'_>) -> Decision {
        self.0.fetch_add(1, Ordering::SeqCst);
        if call.name() == Some("get_env") {
            Decision::Deny
        } else {
            Decision::Allow
        }
    }
}

async fn check_discover_and_a_stateless_call(h: &Harness) {
    let token = h.token("alice");
    let discover = modern(
        &h.url,
        &token,
        &[("mcp-method", "server/discover")],
        discover_body(),
    )
    .await;
    assert_eq!(discover.status(), 200);
    assert!(discover.headers().get("mcp-session-id").is_none());
    let body = messages(discover).await.pop().unwrap();
    let result = &body["result"];
    let versions = result["supportedVersions"].as_array().unwrap();
    for v in [V, "2025-11-25", "2025-06-18"] {
        assert!(versions.iter().any(|s| s == v), "{v} in {body}");
    }
    assert!(result["capabilities"]["tools"].is_object(), "{body}");
    assert_eq!(result["cacheScope"], "private");
    assert!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"].is_string(),
        "{body}"
    );

    let called = modern(
        &h.url,
        &token,
        &[("mcp-method", "tools/call"), ("mcp-name", "echo")],
        call_body("echo", json!({"text": "stateless"})),
    )
    .await;
    assert_eq!(called.status(), 200);
    assert!(called.headers().get("mcp-session-id").is_none());
    let answer = messages(called).await.pop().unwrap();
    assert_eq!(answer["id"], 7);
    assert_eq!(
        answer["result"]["content"][0]["text"], "stateless",
        "{answer}"
    );

    // The older versions keep working on the same gateway.
    let client = h.client("bob").await;
    assert_eq!(
        call(&client, "echo", json!({"text": "old"})).await.unwrap(),
        "old"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn discover_and_stateless_calls_through_a_stdio_upstream() {
    let h = Harness::start(stdio_upstream()).await;
    check_discover_and_a_stateless_call(&h).await;
}

/// Counts the `initialize` requests an HTTP upstream receives.
async fn count_inits(State(n): State<Arc<AtomicUsize>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    if String::from_utf8_lossy(&bytes).contains(r#""method":"initialize""#) {
        n.fetch_add(1, Ordering::SeqCst);
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

#[tokio::test]
async fn discover_and_stateless_calls_through_an_http_upstream_one_session_per_user() {
    let inits = Arc::new(AtomicUsize::new(0));
    let app = mcp_oauth_gateway::test_upstream::http_router().layer(
        axum::middleware::from_fn_with_state(inits.clone(), count_inits),
    );
    let (addr, _stop) = serve_app(app).await;
    let h = Harness::start(HttpConfig::new(&format!("http://{addr}/mcp")).unwrap()).await;
    check_discover_and_a_stateless_call(&h).await;
    // alice (stateless, reused for both requests) and bob (initialize).
    assert_eq!(inits.load(Ordering::SeqCst), 2);
    let carol = modern(
        &h.url,
        &h.token("carol"),
        &[("mcp-method", "tools/list")],
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    )
    .await;
    assert_eq!(carol.status(), 200);
    assert_eq!(inits.load(Ordering::SeqCst), 3, "carol gets her own");
}

#[tokio::test]
async fn a_header_that_lies_about_the_method_or_name_is_refused_before_policy() {
    let asked = Counting::default();
    let h = Harness::with_gatekeeper(stdio_upstream(), asked.clone()).await;
    let token = h.token("mallory");
    let cases: [(&[(&str, &str)], &str); 5] = [
        // A router in front allows tools/list; the body calls a denied tool.
        (
            &[("mcp-method", "tools/list"), ("mcp-name", "get_env")],
            "Mcp-Method",
        ),
        // The header names an allowed tool; the body calls another.
        (
            &[("mcp-method", "tools/call"), ("mcp-name", "echo")],
            "Mcp-Name",
        ),
        (&[("mcp-name", "get_env")], "Mcp-Method"),
        (&[("mcp-method", "tools/call")], "Mcp-Name"),
        (
            &[
                ("mcp-method", "tools/call"),
                ("mcp-method", "tools/list"),
                ("mcp-name", "get_env"),
            ],
            "Mcp-Method",
        ),
    ];
    for (headers, which) in cases {
        let response = modern(&h.url, &token, headers, call_body("get_env", json!({}))).await;
        assert_eq!(response.status(), 400, "{headers:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], -32020, "{body}");
        assert_eq!(body["id"], 7);
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(which), "{headers:?}: {message}");
    }
    assert_eq!(
        asked.0.load(Ordering::SeqCst),
        0,
        "never reached the policy"
    );
    // Honest headers reach the policy, which denies.
    let honest = modern(
        &h.url,
        &token,
        &[("mcp-method", "tools/call"), ("mcp-name", "get_env")],
        call_body("get_env", json!({})),
    )
    .await;
    assert_eq!(honest.status(), 200);
    let body = messages(honest).await.pop().unwrap();
    assert!(body["error"].is_object(), "{body}");
    assert_eq!(asked.0.load(Ordering::SeqCst), 1);
    // Without a token nothing is answered.
    let response = reqwest::Client::new()
        .post(&h.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", V)
        .header("mcp-method", "server/discover")
        .body(discover_body().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn an_unknown_version_is_refused_with_the_versions_spoken() {
    let h = Harness::start(stdio_upstream()).await;
    let response = reqwest::Client::new()
        .post(&h.url)
        .bearer_auth(h.token("alice"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2099-01-01")
        .body(discover_body().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(V) && message.contains("2025-06-18"),
        "{message}"
    );
}
