//! The operation layer's `tracing` span, with the OpenTelemetry MCP attribute names. In a
//! test binary of its own: a span's callsite caches whether any subscriber wants it, and a
//! test of another file hitting the same callsite on another thread without a subscriber
//! could make that answer "no" before this test's subscriber is in place.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use tower::{Service as _, ServiceBuilder, ServiceExt as _, service_fn};

fn call(tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {}}})
}

/// The fields of the spans named `mcp`, as a subscriber sees them.
#[derive(Clone, Default)]
struct Spans(std::sync::Arc<std::sync::Mutex<Vec<BTreeMap<String, String>>>>);

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
        let mut spans = self.0.lock().unwrap();
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(spans.len());
        }
        spans.push(fields);
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
        if let Some(fields) = self.0.lock().unwrap().get_mut(index) {
            values.record(&mut Fields(fields));
        }
    }
}

#[tokio::test]
async fn each_operation_runs_in_a_span_with_the_opentelemetry_names() {
    use tracing_subscriber::layer::SubscriberExt as _;

    let spans = Spans::default();
    let _default =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    // Without a registry: the spans only.
    let mut svc = ServiceBuilder::new()
        .layer(mcp_oauth::metrics::OperationLayer::tracing_only())
        .service(service_fn(|_req: Request<Full<Bytes>>| async {
            let mut res = Response::new(Full::new(Bytes::new()));
            *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            Ok::<_, std::convert::Infallible>(res)
        }));
    let req = Request::post("/mcp")
        .header("mcp-protocol-version", "2025-11-25")
        .body(Full::new(Bytes::from(call("search").to_string())))
        .unwrap();
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let spans = spans.0.lock().unwrap().clone();
    assert_eq!(spans.len(), 1, "{spans:?}");
    let span = &spans[0];
    for (name, value) in [
        ("mcp.method.name", "tools/call"),
        ("gen_ai.tool.name", "search"),
        ("gen_ai.operation.name", "execute_tool"),
        ("mcp.protocol.version", "2025-11-25"),
        ("network.transport", "tcp"),
        ("network.protocol.name", "http"),
        ("error.type", "503"),
    ] {
        assert_eq!(
            span.get(name).map(String::as_str),
            Some(value),
            "{name} in {span:?}"
        );
    }
    assert!(
        !span.contains_key("mcp.session.id"),
        "the session id is left out"
    );
}
