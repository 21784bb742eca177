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
use mcp_oauth_gateway::gate::{Call, Decision, Gatekeeper};
use mcp_oauth_gateway::{HttpConfig, UNAVAILABLE_META};
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
    check_results_are_reshaped(h, &token).await;

    // The older versions keep working on the same gateway.
    let client = h.client("bob").await;
    assert_eq!(
        call(&client, "echo", json!({"text": "old"})).await.unwrap(),
        "old"
    );
    client.cancel().await.unwrap();
}

/// An older-version upstream's results, as a 2026-07-28 client gets them: every result with
/// `resultType`, the lists' with `ttlMs` and `cacheScope`, streamed answers too (and their
/// events without ids: 2026-07-28 has no resumability); an older client's results untouched.
async fn check_results_are_reshaped(h: &Harness, token: &str) {
    let called = modern(
        &h.url,
        token,
        &[("mcp-method", "tools/call"), ("mcp-name", "echo")],
        call_body("echo", json!({"text": "shaped"})),
    )
    .await;
    let answer = messages(called).await.pop().unwrap();
    assert_eq!(answer["result"]["resultType"], "complete", "{answer}");
    assert!(answer["result"].get("ttlMs").is_none(), "{answer}");
    assert!(answer["result"].get("cacheScope").is_none(), "{answer}");

    let listed = modern(
        &h.url,
        token,
        &[("mcp-method", "tools/list")],
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list",
               "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": V}}}),
    )
    .await;
    let listed = messages(listed).await.pop().unwrap();
    let result = &listed["result"];
    assert!(
        result["tools"].as_array().is_some_and(|t| !t.is_empty()),
        "{listed}"
    );
    assert_eq!(result["resultType"], "complete", "{listed}");
    assert_eq!(result["ttlMs"], 0, "{listed}");
    assert_eq!(result["cacheScope"], "private", "{listed}");

    // A streamed answer (progress first): each event's result reshaped, no event ids.
    let slow = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "slow", "arguments": {"steps": 2, "step_ms": 10},
        "_meta": {"progressToken": "p", "io.modelcontextprotocol/protocolVersion": V}}});
    let streamed = modern(
        &h.url,
        token,
        &[("mcp-method", "tools/call"), ("mcp-name", "slow")],
        slow,
    )
    .await;
    assert_eq!(streamed.status(), 200);
    let kind = streamed.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(kind.starts_with("text/event-stream"), "{kind}");
    let text = streamed.text().await.unwrap();
    assert!(
        !text.lines().any(|l| l.starts_with("id:")),
        "no event ids in 2026-07-28: {text}"
    );
    let last = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str::<Value>(d.trim()).unwrap())
        .next_back()
        .unwrap();
    assert_eq!(last["id"], 3, "{text}");
    assert_eq!(last["result"]["resultType"], "complete", "{text}");
    assert!(text.contains("notifications/progress"), "{text}");

    // An older client's list is the upstream's own shape.
    let old = h.token("dave");
    let session = raw_session(&h.url, &old).await;
    let listed = post(
        &h.url,
        Some(&old),
        Some(&session),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    )
    .await;
    let listed = messages(listed).await.pop().unwrap();
    assert!(listed["result"]["tools"].is_array(), "{listed}");
    assert!(listed["result"].get("resultType").is_none(), "{listed}");
    assert!(listed["result"].get("ttlMs").is_none(), "{listed}");
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
    // alice (stateless, reused for all her requests), dave and bob (initialize).
    assert_eq!(inits.load(Ordering::SeqCst), 3);
    let carol = modern(
        &h.url,
        &h.token("carol"),
        &[("mcp-method", "tools/list")],
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    )
    .await;
    assert_eq!(carol.status(), 200);
    assert_eq!(inits.load(Ordering::SeqCst), 4, "carol gets her own");
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

/// A Streamable HTTP test upstream on 127.0.0.1, as an upstream configuration.
async fn http_member() -> (
    mcp_oauth_gateway::UpstreamConfig,
    tokio::sync::oneshot::Sender<()>,
) {
    let (addr, stop) = serve_app(mcp_oauth_gateway::test_upstream::http_router()).await;
    let config = HttpConfig::new(&format!("http://{addr}/mcp")).unwrap();
    (config.into(), stop)
}

#[tokio::test]
async fn discover_and_stateless_calls_through_several_upstreams() {
    let (remote, _stop) = http_member().await;
    let h = Harness::several(
        vec![("local", stdio_upstream().into()), ("remote", remote)],
        |b| b,
    )
    .await;
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
    assert!(result["_meta"].get(UNAVAILABLE_META).is_none(), "{body}");

    // A stateless list and calls to each upstream, by the prefixed names the client sees.
    let listed = modern(
        &h.url,
        &token,
        &[("mcp-method", "tools/list")],
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list",
               "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": V}}}),
    )
    .await;
    assert_eq!(listed.status(), 200);
    let listed = messages(listed).await.pop().unwrap();
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for name in ["local__echo", "remote__echo"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    assert_eq!(listed["result"]["resultType"], "complete", "{listed}");
    assert_eq!(listed["result"]["ttlMs"], 0, "{listed}");
    assert_eq!(listed["result"]["cacheScope"], "private", "{listed}");
    for tool in ["local__echo", "remote__echo"] {
        let called = modern(
            &h.url,
            &token,
            &[("mcp-method", "tools/call"), ("mcp-name", tool)],
            call_body(tool, json!({"text": tool})),
        )
        .await;
        assert_eq!(called.status(), 200);
        assert!(called.headers().get("mcp-session-id").is_none());
        let answer = messages(called).await.pop().unwrap();
        assert_eq!(answer["result"]["content"][0]["text"], tool, "{answer}");
        assert_eq!(answer["result"]["resultType"], "complete", "{answer}");
    }
    // Without a token nothing is answered, not even discover.
    let anonymous = reqwest::Client::new()
        .post(&h.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", V)
        .header("mcp-method", "server/discover")
        .body(discover_body().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    // The older versions keep working on the same endpoint.
    let client = h.client("bob").await;
    assert_eq!(
        call(&client, "remote__echo", json!({"text": "old"}))
            .await
            .unwrap(),
        "old"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn one_upstream_down_degrades_discover_instead_of_failing_it() {
    // A port where nothing listens (bound, then released).
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let down = HttpConfig::new(&format!("http://{closed}/mcp")).unwrap();
    let h = Harness::several(
        vec![("local", stdio_upstream().into()), ("down", down.into())],
        |b| b,
    )
    .await;
    let token = h.token("alice");
    let discover = modern(
        &h.url,
        &token,
        &[("mcp-method", "server/discover")],
        discover_body(),
    )
    .await;
    assert_eq!(discover.status(), 200);
    let body = messages(discover).await.pop().unwrap();
    assert_eq!(body["result"]["_meta"][UNAVAILABLE_META], json!(["down"]));
    assert!(body["result"]["supportedVersions"].is_array(), "{body}");
    let called = modern(
        &h.url,
        &token,
        &[("mcp-method", "tools/call"), ("mcp-name", "local__echo")],
        call_body("local__echo", json!({"text": "still here"})),
    )
    .await;
    let answer = messages(called).await.pop().unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "still here");
}

#[tokio::test]
async fn through_several_upstreams_a_lying_header_is_refused_before_policy() {
    let asked = Counting::default();
    let (remote, _stop) = http_member().await;
    let gatekeeper = asked.clone();
    let h = Harness::several(
        vec![("local", stdio_upstream().into()), ("remote", remote)],
        move |b| b.gatekeeper(gatekeeper),
    )
    .await;
    let token = h.token("mallory");
    let cases: [&[(&str, &str)]; 3] = [
        // The upstream's own name, not the one the client sees.
        &[("mcp-method", "tools/call"), ("mcp-name", "get_env")],
        // Another upstream's tool of the same name.
        &[
            ("mcp-method", "tools/call"),
            ("mcp-name", "remote__get_env"),
        ],
        &[("mcp-method", "tools/list"), ("mcp-name", "local__get_env")],
    ];
    for headers in cases {
        let response = modern(
            &h.url,
            &token,
            headers,
            call_body("local__get_env", json!({})),
        )
        .await;
        assert_eq!(response.status(), 400, "{headers:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], -32020, "{body}");
        assert_eq!(body["id"], 7);
    }
    assert_eq!(
        asked.0.load(Ordering::SeqCst),
        0,
        "never reached the policy"
    );
    let honest = modern(
        &h.url,
        &token,
        &[("mcp-method", "tools/call"), ("mcp-name", "local__echo")],
        call_body("local__echo", json!({"text": "ok"})),
    )
    .await;
    assert_eq!(honest.status(), 200);
    assert_eq!(asked.0.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn at_an_upstreams_own_path_mcp_name_is_the_name_seen_there() {
    let (remote, _stop) = http_member().await;
    let h = Harness::several(
        vec![("local", stdio_upstream().into()), ("remote", remote)],
        |b| b,
    )
    .await;
    let own = format!("http://{}/remote/mcp", h.addr);
    let token = h
        .key
        .token()
        .iss(ISSUER)
        .aud(&own)
        .sub("alice")
        .scope("mcp:read")
        .sign();
    let called = modern(
        &own,
        &token,
        &[("mcp-method", "tools/call"), ("mcp-name", "echo")],
        call_body("echo", json!({"text": "own path"})),
    )
    .await;
    assert_eq!(called.status(), 200);
    let answer = messages(called).await.pop().unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "own path");
    let lying = modern(
        &own,
        &token,
        &[("mcp-method", "tools/call"), ("mcp-name", "remote__echo")],
        call_body("echo", json!({"text": "x"})),
    )
    .await;
    assert_eq!(lying.status(), 400);
}
