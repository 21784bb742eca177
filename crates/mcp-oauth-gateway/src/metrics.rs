//! The gateway's metrics, written in the Prometheus text format with the library's registry
//! ([`mcp_oauth::metrics`]): the client side (`mcp_server_operation_duration_seconds`,
//! authentication results, policy decisions) is the library's; this module adds the upstream
//! side: `mcp_client_operation_duration_seconds` per upstream, upstream errors, stdio
//! processes and restarts, and the gateway's request outcomes.
//!
//! Labels are bounded: MCP methods outside the known list count as `_OTHER`, upstream names
//! are the configured ones, and no label holds a subject, a session or a tool argument.
//! Recording is relaxed atomic additions; nothing is locked or allocated.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use mcp_oauth::metrics::encode::{Counter, Histogram, header, label, sample};
use mcp_oauth::metrics::{METHODS, OTHER, method_index};

/// Answers up to this size are looked at for a JSON-RPC error.
const ERROR_PEEK: usize = 64 * 1024;

/// Marks `response` (HTTP 200, its JSON `body`) with the JSON-RPC error code it holds, if any,
/// for the operation histogram's `error_type` ([`mcp_oauth::metrics::JsonRpcErrorCode`]).
/// Cheap for the common answer: a scan for `"error"` of bodies up to 64 KiB, parsed only
/// when it is there.
pub(crate) fn mark_jsonrpc_error(response: &mut axum::response::Response, body: &[u8]) {
    if !response.status().is_success() || body.len() > ERROR_PEEK || !holds(body, b"\"error\"") {
        return;
    }
    if let Ok(message) = crate::jsonrpc::parse(body)
        && message.result.is_none()
        && let Some(code) = error_code(&message)
    {
        response
            .extensions_mut()
            .insert(mcp_oauth::metrics::JsonRpcErrorCode(code));
    }
}

fn holds(bytes: &[u8], needle: &[u8]) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle)
}

/// The `code` of a message's `error`, if it has one.
fn error_code(message: &crate::jsonrpc::Message<'_>) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Error {
        code: i64,
    }
    serde_json::from_str::<Error>(message.error?.get())
        .ok()
        .map(|e| e.code)
}

/// How an answer whose last message is `data` (a stdio child's response) ended, for
/// `error_type`: its JSON-RPC error code when it is an error. A scan for `"error"`, parsed
/// only when it is there (and the message is at most 64 KiB).
pub(crate) fn answer_error(data: &[u8]) -> mcp_oauth::metrics::OperationError {
    use mcp_oauth::metrics::OperationError;
    if data.len() > ERROR_PEEK || !holds(data, b"\"error\"") {
        return OperationError::None;
    }
    crate::jsonrpc::parse(data)
        .ok()
        .filter(|m| m.result.is_none())
        .and_then(|m| error_code(&m))
        .map_or(OperationError::None, OperationError::JsonRpc)
}

/// Whether `data`, one message of a streamed answer (an SSE event's data), is the response to
/// the request whose id is `id` (its JSON text), and then how it ended for `error_type`.
/// A peek: a message without `"result"` or `"error"` in it (a progress or log notification)
/// is not parsed, nor is one over 64 KiB (its error, if any, is not read).
pub(crate) fn streamed_answer(data: &[u8], id: &str) -> Option<mcp_oauth::metrics::OperationError> {
    use mcp_oauth::metrics::OperationError;
    let maybe_error = holds(data, b"\"error\"");
    if !maybe_error && !holds(data, b"\"result\"") {
        return None;
    }
    if data.len() > ERROR_PEEK {
        // Too large to parse again: a result (the common large answer) or an error left
        // unread; either way, not known to be the response.
        return None;
    }
    let message = crate::jsonrpc::parse(data).ok()?;
    if message.kind != crate::jsonrpc::Kind::Response || message.id.map(|i| i.get()) != Some(id) {
        return None;
    }
    Some(match error_code(&message) {
        Some(code) if maybe_error => OperationError::JsonRpc(code),
        _ => OperationError::None,
    })
}

/// The `tracing` span of one request the gateway sends upstream number `upstream`: named
/// `mcp` (target `mcp_oauth_gateway::upstream`, level DEBUG, as the client request's span)
/// with `otel.kind` client and the OpenTelemetry MCP attributes `mcp.method.name`,
/// `gen_ai.tool.name` (and `gen_ai.prompt.name`, `mcp.resource.uri`) as the upstream knows
/// it, `jsonrpc.request.id`, `network.transport` (`pipe` or `tcp`) and `error.type` when it
/// fails ([`upstream_failed`]); a child of the current span (the client request's). Costs
/// nothing unless enabled (`RUST_LOG=mcp_oauth_gateway::upstream=debug`).
pub(crate) fn upstream_span(
    transport: Transport,
    method: &str,
    params: Option<&serde_json::value::RawValue>,
    id: Option<&str>,
) -> tracing::Span {
    let method = mcp_oauth::metrics::method_label(method);
    let span = tracing::debug_span!(
        target: "mcp_oauth_gateway::upstream",
        "mcp",
        otel.name = method,
        otel.kind = "client",
        mcp.method.name = method,
        gen_ai.tool.name = tracing::field::Empty,
        gen_ai.operation.name = tracing::field::Empty,
        gen_ai.prompt.name = tracing::field::Empty,
        mcp.resource.uri = tracing::field::Empty,
        jsonrpc.request.id = id.map(|id| id.trim_matches('"')),
        network.transport = match transport {
            Transport::Pipe => "pipe",
            Transport::Tcp => "tcp",
        },
        network.protocol.name = (transport == Transport::Tcp).then_some("http"),
        error.type = tracing::field::Empty,
    );
    if !span.is_disabled()
        && let Some(name) = crate::jsonrpc::params_name(params)
    {
        match method {
            "tools/call" => {
                span.record("gen_ai.tool.name", name.as_str());
                span.record("gen_ai.operation.name", "execute_tool");
            }
            "prompts/get" => {
                span.record("gen_ai.prompt.name", name.as_str());
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                span.record("mcp.resource.uri", name.as_str());
            }
            _ => {}
        }
    }
    span
}

/// Notes on an upstream request's span that it failed: `error` is an HTTP status, or
/// `_OTHER` (the upstream could not be reached, or its process ended).
pub(crate) fn upstream_failed(span: &tracing::Span, error: Option<http::StatusCode>) {
    match error {
        Some(status) => span.record("error.type", status.as_str()),
        None => span.record("error.type", mcp_oauth::metrics::OTHER),
    };
}

/// What happened to a client request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Sent upstream and answered.
    Forwarded,
    /// Refused by the decision hook.
    Denied,
    /// Refused with 403 insufficient_scope.
    StepUp,
    /// The upstream failed (unreachable, exited, answered an error status).
    UpstreamError,
}

impl Outcome {
    const ALL: [Self; 4] = [
        Self::Forwarded,
        Self::Denied,
        Self::StepUp,
        Self::UpstreamError,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Forwarded => "forwarded",
            Self::Denied => "denied",
            Self::StepUp => "step_up",
            Self::UpstreamError => "upstream_error",
        }
    }
}

fn method_label(index: usize) -> &'static str {
    METHODS.get(index).copied().unwrap_or(OTHER)
}

/// How the gateway reaches an upstream (`network_transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// A child process's stdin and stdout.
    Pipe,
    /// Streamable HTTP.
    Tcp,
}

/// How many upstreams get series of their own (those the gateway starts with, then those
/// reloads add, in order); later ones are not counted.
const MAX_UPSTREAMS: usize = 256;

impl Transport {
    /// How the gateway reaches the upstream `config` configures.
    pub(crate) fn of(config: &crate::UpstreamConfig) -> Self {
        match config {
            crate::UpstreamConfig::Stdio(_) => Self::Pipe,
            crate::UpstreamConfig::Http(_) => Self::Tcp,
        }
    }
}

/// One upstream's series.
struct UpstreamSeries {
    name: Box<str>,
    /// [`Transport`] as a number (a reload may change how the upstream is reached).
    transport: std::sync::atomic::AtomicU8,
    /// Per method (the index of [`METHODS`], then `_OTHER`).
    latency: Box<[Histogram]>,
    errors: Counter,
    /// Stdio children running now.
    processes: AtomicI64,
    /// Stdio children started again after one ended.
    restarts: Counter,
}

impl UpstreamSeries {
    fn transport(&self) -> Transport {
        match self.transport.load(Ordering::Relaxed) {
            0 => Transport::Pipe,
            _ => Transport::Tcp,
        }
    }
}

/// The gateway's metrics.
pub(crate) struct Metrics {
    registry: mcp_oauth::metrics::Metrics,
    /// `[method][outcome]`.
    requests: Vec<[AtomicU64; 4]>,
    /// Filled in order, each slot once: recording reads without a lock.
    upstreams: Box<[std::sync::OnceLock<UpstreamSeries>]>,
}

impl Metrics {
    pub(crate) fn new(
        registry: mcp_oauth::metrics::Metrics,
        upstreams: Vec<(String, Transport)>,
    ) -> Self {
        let methods = METHODS.len() + 1;
        let metrics = Self {
            registry,
            requests: (0..methods).map(|_| Default::default()).collect(),
            upstreams: (0..MAX_UPSTREAMS)
                .map(|_| std::sync::OnceLock::new())
                .collect(),
        };
        for (name, transport) in upstreams {
            metrics.upstream(&name, transport);
        }
        metrics
    }

    /// The number of the upstream `name` in the metrics, giving it series when it has none
    /// (an upstream a reload adds); `usize::MAX` (not counted) past [`MAX_UPSTREAMS`].
    pub(crate) fn upstream(&self, name: &str, transport: Transport) -> usize {
        let code = match transport {
            Transport::Pipe => 0,
            Transport::Tcp => 1,
        };
        for (index, slot) in self.upstreams.iter().enumerate() {
            let series = slot.get_or_init(|| UpstreamSeries {
                name: name.into(),
                transport: std::sync::atomic::AtomicU8::new(code),
                latency: (0..=METHODS.len()).map(|_| Histogram::default()).collect(),
                errors: Counter::default(),
                processes: AtomicI64::new(0),
                restarts: Counter::default(),
            });
            if *series.name == *name {
                series.transport.store(code, Ordering::Relaxed);
                return index;
            }
        }
        usize::MAX
    }

    fn series(&self) -> impl Iterator<Item = &UpstreamSeries> {
        self.upstreams.iter().map_while(std::sync::OnceLock::get)
    }

    fn upstream_series(&self, upstream: usize) -> Option<&UpstreamSeries> {
        self.upstreams
            .get(upstream)
            .and_then(std::sync::OnceLock::get)
    }

    /// Gives the tools of a `tools/list` result (its JSON text) a `gen_ai_tool_name` of their
    /// own in the operation histogram (the library's table: up to 64 names).
    pub(crate) fn tools_listed(&self, result: &str) {
        #[derive(serde::Deserialize)]
        struct Listed<'a> {
            #[serde(borrow, default)]
            tools: Vec<Named<'a>>,
        }
        #[derive(serde::Deserialize)]
        struct Named<'a> {
            #[serde(borrow)]
            name: std::borrow::Cow<'a, str>,
        }
        if let Ok(listed) = serde_json::from_str::<Listed<'_>>(result) {
            self.registry
                .register_tools(listed.tools.iter().map(|t| t.name.as_ref()));
        }
    }

    /// The library registry the bearer layer and the operation layer count into.
    pub(crate) fn registry(&self) -> &mcp_oauth::metrics::Metrics {
        &self.registry
    }

    pub(crate) fn request(&self, method: &str, outcome: Outcome) {
        if let Some(row) = self.requests.get(method_index(method))
            && let Some(counter) = Outcome::ALL
                .iter()
                .position(|o| *o == outcome)
                .and_then(|i| row.get(i))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One call to upstream number `upstream` took `elapsed` (until its answer began).
    pub(crate) fn upstream_call(&self, upstream: usize, method: &str, elapsed: Duration) {
        if let Some(histogram) = self
            .upstream_series(upstream)
            .and_then(|u| u.latency.get(method_index(method)))
        {
            histogram.observe(elapsed);
        }
    }

    pub(crate) fn upstream_error(&self, upstream: usize) {
        if let Some(u) = self.upstream_series(upstream) {
            u.errors.inc();
        }
    }

    /// A stdio child of upstream number `upstream` started: it counts as running until the
    /// guard is dropped (the child ended, or the upstream was stopped). `again`: it replaces
    /// one that ended.
    pub(crate) fn process_started(
        self: &std::sync::Arc<Self>,
        upstream: usize,
        again: bool,
    ) -> ProcessGuard {
        if let Some(u) = self.upstream_series(upstream) {
            u.processes.fetch_add(1, Ordering::Relaxed);
            if again {
                u.restarts.inc();
            }
        }
        ProcessGuard {
            metrics: self.clone(),
            upstream,
        }
    }

    /// The Prometheus text exposition: the library's metrics, then the gateway's.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        self.registry.render_into(&mut out);
        const CLIENT: &str = "mcp_client_operation_duration_seconds";
        header(
            &mut out,
            CLIENT,
            "histogram",
            "The duration of an MCP request the gateway sent an upstream, until the start of its answer.",
        );
        for upstream in self.series() {
            for (index, histogram) in upstream.latency.iter().enumerate() {
                if histogram.count() == 0 {
                    continue;
                }
                let mut labels = String::new();
                label(&mut labels, "mcp_method_name", method_label(index));
                label(&mut labels, "upstream", &upstream.name);
                label(
                    &mut labels,
                    "network_transport",
                    match upstream.transport() {
                        Transport::Pipe => "pipe",
                        Transport::Tcp => "tcp",
                    },
                );
                histogram.write(&mut out, CLIENT, &labels);
            }
        }
        const REQUESTS: &str = "mcp_gateway_requests_total";
        header(
            &mut out,
            REQUESTS,
            "counter",
            "Client requests by MCP method and outcome.",
        );
        for (index, row) in self.requests.iter().enumerate() {
            for (outcome, counter) in Outcome::ALL.iter().zip(row) {
                let value = counter.load(Ordering::Relaxed);
                if value > 0 {
                    let mut labels = String::new();
                    label(&mut labels, "mcp_method_name", method_label(index));
                    label(&mut labels, "outcome", outcome.label());
                    sample(&mut out, REQUESTS, &labels, value);
                }
            }
        }
        const ERRORS: &str = "mcp_gateway_upstream_errors_total";
        header(
            &mut out,
            ERRORS,
            "counter",
            "Failed calls to each upstream.",
        );
        for upstream in self.series() {
            let mut labels = String::new();
            label(&mut labels, "upstream", &upstream.name);
            sample(&mut out, ERRORS, &labels, upstream.errors.get());
        }
        let stdio = || self.series().filter(|u| u.transport() == Transport::Pipe);
        const PROCESSES: &str = "mcp_gateway_stdio_processes";
        header(
            &mut out,
            PROCESSES,
            "gauge",
            "Stdio upstream processes running now.",
        );
        for upstream in stdio() {
            let mut labels = String::new();
            label(&mut labels, "upstream", &upstream.name);
            let running = upstream.processes.load(Ordering::Relaxed).max(0);
            sample(&mut out, PROCESSES, &labels, running.unsigned_abs());
        }
        const RESTARTS: &str = "mcp_gateway_stdio_restarts_total";
        header(
            &mut out,
            RESTARTS,
            "counter",
            "Stdio upstream processes started again after one ended.",
        );
        for upstream in stdio() {
            let mut labels = String::new();
            label(&mut labels, "upstream", &upstream.name);
            sample(&mut out, RESTARTS, &labels, upstream.restarts.get());
        }
        out
    }
}

/// A running stdio child, counted in `mcp_gateway_stdio_processes` while it lives.
pub(crate) struct ProcessGuard {
    metrics: std::sync::Arc<Metrics>,
    upstream: usize,
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        if let Some(u) = self.metrics.upstream_series(self.upstream) {
            u.processes.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_buckets_render() {
        let metrics = std::sync::Arc::new(Metrics::new(
            mcp_oauth::metrics::Metrics::new(),
            vec![
                ("fs".into(), Transport::Pipe),
                ("we\"b".into(), Transport::Tcp),
            ],
        ));
        metrics.request("tools/call", Outcome::Forwarded);
        metrics.request("tools/call", Outcome::Forwarded);
        metrics.request("secret/method-of-a-user", Outcome::Denied);
        metrics.upstream_call(0, "tools/call", Duration::from_millis(15));
        metrics.upstream_call(7, "tools/call", Duration::from_millis(3));
        metrics.upstream_error(1);
        let first = metrics.process_started(0, false);
        let second = metrics.process_started(0, true);
        drop(first);
        let text = metrics.render();
        assert!(text.contains(
            "mcp_gateway_requests_total{mcp_method_name=\"tools/call\",outcome=\"forwarded\"} 2\n"
        ));
        assert!(text.contains(
            "mcp_gateway_requests_total{mcp_method_name=\"_OTHER\",outcome=\"denied\"} 1\n"
        ));
        assert!(!text.contains("secret/method"));
        assert!(text.contains("mcp_gateway_upstream_errors_total{upstream=\"we\\\"b\"} 1\n"));
        let labels = "mcp_method_name=\"tools/call\",upstream=\"fs\",network_transport=\"pipe\"";
        assert!(text.contains(&format!(
            "mcp_client_operation_duration_seconds_bucket{{{labels},le=\"0.01\"}} 0\n"
        )));
        assert!(text.contains(&format!(
            "mcp_client_operation_duration_seconds_bucket{{{labels},le=\"0.02\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "mcp_client_operation_duration_seconds_count{{{labels}}} 1\n"
        )));
        assert!(text.contains("mcp_gateway_stdio_processes{upstream=\"fs\"} 1\n"));
        assert!(text.contains("mcp_gateway_stdio_restarts_total{upstream=\"fs\"} 1\n"));
        assert!(!text.contains("mcp_gateway_stdio_processes{upstream=\"we"));
        drop(second);
        assert!(
            metrics
                .render()
                .contains("mcp_gateway_stdio_processes{upstream=\"fs\"} 0\n")
        );
        // The library's metrics come first, in the same exposition.
        assert!(text.contains("# TYPE mcp_server_operation_duration_seconds histogram"));
    }
}
