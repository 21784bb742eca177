//! The gateway's counters and histograms, written in the Prometheus text format.
//!
//! Labels are bounded: MCP methods outside the known list count as `other`, upstream names are
//! the configured ones, and no label holds a subject, a session or a tool argument.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The methods that get a label of their own.
const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
];

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

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn method_index(method: &str) -> usize {
    METHODS
        .iter()
        .position(|m| *m == method)
        .unwrap_or(METHODS.len())
}

fn method_label(index: usize) -> &'static str {
    METHODS.get(index).copied().unwrap_or("other")
}

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// The gateway's metrics. Cheap to update (atomics; one short lock per upstream call).
pub(crate) struct Metrics {
    /// `[method][outcome]`.
    requests: Vec<[AtomicU64; 4]>,
    /// Per upstream (index as configured), per method.
    latency: Mutex<Vec<Vec<Histogram>>>,
    upstream_errors: Vec<AtomicU64>,
    upstreams: Vec<String>,
}

impl Metrics {
    pub(crate) fn new(upstreams: Vec<String>) -> Self {
        let methods = METHODS.len() + 1;
        Self {
            requests: (0..methods).map(|_| Default::default()).collect(),
            latency: Mutex::new(
                upstreams
                    .iter()
                    .map(|_| (0..methods).map(|_| Histogram::default()).collect())
                    .collect(),
            ),
            upstream_errors: upstreams.iter().map(|_| AtomicU64::new(0)).collect(),
            upstreams,
        }
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
        let seconds = elapsed.as_secs_f64();
        let mut latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let Some(histogram) = latency
            .get_mut(upstream)
            .and_then(|per| per.get_mut(method_index(method)))
        else {
            return;
        };
        if histogram.counts.is_empty() {
            histogram.counts = vec![0; BUCKETS.len()];
        }
        for (bound, count) in BUCKETS.iter().zip(histogram.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        histogram.sum += seconds;
        histogram.count += 1;
    }

    pub(crate) fn upstream_error(&self, upstream: usize) {
        if let Some(counter) = self.upstream_errors.get(upstream) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP mcp_gateway_requests_total Client requests by MCP method and outcome.\n",
        );
        out.push_str("# TYPE mcp_gateway_requests_total counter\n");
        for (index, row) in self.requests.iter().enumerate() {
            for (outcome, counter) in Outcome::ALL.iter().zip(row) {
                let value = counter.load(Ordering::Relaxed);
                if value > 0 {
                    let _ = writeln!(
                        out,
                        "mcp_gateway_requests_total{{mcp_method_name=\"{}\",outcome=\"{}\"}} {value}",
                        method_label(index),
                        outcome.label()
                    );
                }
            }
        }
        out.push_str("# HELP mcp_gateway_upstream_errors_total Failed calls to each upstream.\n");
        out.push_str("# TYPE mcp_gateway_upstream_errors_total counter\n");
        for (name, counter) in self.upstreams.iter().zip(&self.upstream_errors) {
            let _ = writeln!(
                out,
                "mcp_gateway_upstream_errors_total{{upstream=\"{}\"}} {}",
                escape(name),
                counter.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP mcp_client_operation_duration_seconds Time from sending a request upstream to the start of its answer.\n");
        out.push_str("# TYPE mcp_client_operation_duration_seconds histogram\n");
        let latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        for (name, per) in self.upstreams.iter().zip(latency.iter()) {
            for (index, histogram) in per.iter().enumerate() {
                if histogram.count == 0 {
                    continue;
                }
                let labels = format!(
                    "upstream=\"{}\",mcp_method_name=\"{}\"",
                    escape(name),
                    method_label(index)
                );
                for (bound, count) in BUCKETS.iter().zip(&histogram.counts) {
                    let _ = writeln!(
                        out,
                        "mcp_client_operation_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                    );
                }
                let _ = writeln!(
                    out,
                    "mcp_client_operation_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                    histogram.count
                );
                let _ = writeln!(
                    out,
                    "mcp_client_operation_duration_seconds_sum{{{labels}}} {}",
                    histogram.sum
                );
                let _ = writeln!(
                    out,
                    "mcp_client_operation_duration_seconds_count{{{labels}}} {}",
                    histogram.count
                );
            }
        }
        out
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_buckets_render() {
        let metrics = Metrics::new(vec!["fs".into(), "we\"b".into()]);
        metrics.request("tools/call", Outcome::Forwarded);
        metrics.request("tools/call", Outcome::Forwarded);
        metrics.request("secret/method-of-a-user", Outcome::Denied);
        metrics.upstream_call(0, "tools/call", Duration::from_millis(3));
        metrics.upstream_call(7, "tools/call", Duration::from_millis(3));
        metrics.upstream_error(1);
        let text = metrics.render();
        assert!(text.contains(
            "mcp_gateway_requests_total{mcp_method_name=\"tools/call\",outcome=\"forwarded\"} 2"
        ));
        assert!(text.contains(
            "mcp_gateway_requests_total{mcp_method_name=\"other\",outcome=\"denied\"} 1"
        ));
        assert!(!text.contains("secret/method"));
        assert!(text.contains("mcp_gateway_upstream_errors_total{upstream=\"we\\\"b\"} 1"));
        assert!(text.contains("upstream=\"fs\",mcp_method_name=\"tools/call\",le=\"0.0025\"} 0"));
        assert!(text.contains("upstream=\"fs\",mcp_method_name=\"tools/call\",le=\"0.005\"} 1"));
        assert!(text.contains(
            "mcp_client_operation_duration_seconds_count{upstream=\"fs\",mcp_method_name=\"tools/call\"} 1"
        ));
    }
}
