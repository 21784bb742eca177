//! The span of each request the gateway sends upstream, with the OpenTelemetry MCP attribute
//! names, as a child of the client request's span. In a test binary of its own: a span's
//! callsite caches whether any subscriber wants it, and a test of another file hitting the
//! same callsite on another thread without a subscriber could make that answer "no" first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use support::*;
use tracing_subscriber::layer::SubscriberExt as _;

/// One span named `mcp`: its target, its fields, and its parent's target.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    parent: Option<String>,
    fields: BTreeMap<String, String>,
}

/// The spans named `mcp`, as a subscriber sees them.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Seen>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S> tracing_subscriber::Layer<S> for Spans
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if attrs.metadata().name() != "mcp" {
            return;
        }
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let span = ctx.span(id);
        let parent = span
            .as_ref()
            .and_then(|s| s.parent())
            .map(|p| p.metadata().target().to_owned());
        let mut spans = self.0.lock().unwrap();
        if let Some(span) = span {
            span.extensions_mut().insert(spans.len());
        }
        spans.push(Seen {
            target: attrs.metadata().target().to_owned(),
            parent,
            fields,
        });
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let Some(index) = ctx
            .span(id)
            .and_then(|s| s.extensions().get::<usize>().copied())
        else {
            return;
        };
        if let Some(seen) = self.0.lock().unwrap().get_mut(index) {
            values.record(&mut Fields(&mut seen.fields));
        }
    }
}

impl Spans {
    /// The upstream spans seen so far (target `mcp_oauth_gateway::upstream`).
    fn upstream(&self) -> Vec<Seen> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.target == "mcp_oauth_gateway::upstream")
            .cloned()
            .collect()
    }
}

fn call_body(id: u32, tool: &str) -> String {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": {"text": "x"}}})
    .to_string()
}

fn assert_fields(seen: &Seen, expected: &[(&str, &str)]) {
    for (name, value) in expected {
        assert_eq!(
            seen.fields.get(*name).map(String::as_str),
            Some(*value),
            "{name} in {seen:?}"
        );
    }
}

/// An HTTP upstream that opens sessions and answers every request after that with 500.
fn failing_upstream() -> axum::Router {
    axum::Router::new().route(
        "/mcp",
        axum::routing::post(|body: String| async move {
            use axum::response::IntoResponse as _;
            if body.contains("\"initialize\"") {
                let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "result": {
                    "protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                    "serverInfo": {"name": "failing", "version": "1"}}});
                (
                    [
                        ("content-type", "application/json"),
                        ("mcp-session-id", "s1"),
                    ],
                    init.to_string(),
                )
                    .into_response()
            } else if !body.contains("\"id\"") {
                http::StatusCode::ACCEPTED.into_response()
            } else {
                http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }),
    )
}

#[tokio::test]
async fn each_upstream_request_runs_in_a_client_span_under_the_clients() {
    let spans = Spans::default();
    let _default =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));

    // An HTTP upstream: the call, in a span of its own under the client request's span.
    let remote = serve_app(mcp_oauth_gateway::test_upstream::http_router()).await;
    let upstream = mcp_oauth_gateway::HttpConfig::new(&format!("http://{}/mcp", remote.0)).unwrap();
    let h = Harness::start(upstream).await;
    let token = h.token("alice");
    let session = raw_session(&h.url, &token).await;
    let answer =
        messages(post(&h.url, Some(&token), Some(&session), call_body(7, "echo")).await).await;
    assert_eq!(answer[0]["result"]["content"][0]["text"], "x", "{answer:?}");
    let seen = spans.upstream();
    let call = seen
        .iter()
        .find(|s| s.fields.get("mcp.method.name").map(String::as_str) == Some("tools/call"))
        .unwrap_or_else(|| panic!("a span of the upstream call: {seen:?}"));
    assert_fields(
        call,
        &[
            ("otel.kind", "client"),
            ("otel.name", "tools/call"),
            ("gen_ai.tool.name", "echo"),
            ("gen_ai.operation.name", "execute_tool"),
            ("jsonrpc.request.id", "7"),
            ("network.transport", "tcp"),
            ("network.protocol.name", "http"),
        ],
    );
    assert!(!call.fields.contains_key("error.type"), "{call:?}");
    assert_eq!(
        call.parent.as_deref(),
        Some("mcp_oauth::mcp"),
        "a child of the client request's span: {call:?}"
    );
    let server = spans
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.target == "mcp_oauth::mcp")
        .filter(|s| s.fields.get("mcp.method.name").map(String::as_str) == Some("tools/call"))
        .count();
    assert_eq!(server, 1, "one client request, one server span");
    assert_eq!(
        seen.iter()
            .filter(|s| s.fields.get("mcp.method.name").map(String::as_str) == Some("tools/call"))
            .count(),
        1,
        "one upstream request, one client span: {seen:?}"
    );
    drop(h);

    // A stdio upstream: `pipe`, and no HTTP.
    let h = Harness::start(stdio_upstream()).await;
    let token = h.token("alice");
    let session = raw_session(&h.url, &token).await;
    messages(post(&h.url, Some(&token), Some(&session), call_body(8, "echo")).await).await;
    let seen = spans.upstream();
    let call = seen
        .iter()
        .find(|s| s.fields.get("jsonrpc.request.id").map(String::as_str) == Some("8"))
        .unwrap_or_else(|| panic!("a span of the stdio call: {seen:?}"));
    assert_fields(
        call,
        &[("network.transport", "pipe"), ("gen_ai.tool.name", "echo")],
    );
    assert!(
        !call.fields.contains_key("network.protocol.name"),
        "{call:?}"
    );
    assert_eq!(call.parent.as_deref(), Some("mcp_oauth::mcp"), "{call:?}");
    drop(h);

    // An upstream that fails the call: its status is the span's error.type.
    let failing = serve_app(failing_upstream()).await;
    let upstream =
        mcp_oauth_gateway::HttpConfig::new(&format!("http://{}/mcp", failing.0)).unwrap();
    let h = Harness::start(upstream).await;
    let token = h.token("alice");
    let session = raw_session(&h.url, &token).await;
    let refused = post(&h.url, Some(&token), Some(&session), call_body(9, "echo")).await;
    assert_eq!(refused.status(), 502);
    let seen = spans.upstream();
    let call = seen
        .iter()
        .find(|s| s.fields.get("jsonrpc.request.id").map(String::as_str) == Some("9"))
        .unwrap_or_else(|| panic!("a span of the failed call: {seen:?}"));
    assert_fields(call, &[("error.type", "500")]);
}
