//! Prometheus metrics with the OpenTelemetry MCP semantic conventions' names.
//!
//! A [`Metrics`] registry is fed by the bearer layer ([`OAuth::with_metrics`](crate::OAuth::with_metrics)),
//! by [`McpServer::metrics`](crate::McpServer::metrics) and by [`Metrics::layer`] around any MCP
//! endpoint, and written in the Prometheus text format by [`Metrics::render`] (or served by
//! [`Metrics::router`]). What it counts:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `mcp_server_operation_duration_seconds` | histogram | `mcp_method_name`, `gen_ai_tool_name` (tools/call), `error_type` (failures: an HTTP status, or a JSON-RPC error code that the service marked with [`JsonRpcErrorCode`], or gave [`StreamedOperation::end`] at the end of a stream), `mcp_protocol_version`, `network_transport`, `network_protocol_name` |
//! | `mcp_oauth_auth_results_total` | counter | `result`: `ok` or the reason of the refusal |
//! | `mcp_oauth_policy_decisions_total` | counter | `rule_id`, `effect` (`allow`, `deny`, `step_up`) |
//!
//! The label sets are bounded: a method outside the MCP list counts as `_OTHER`, a tool the
//! server did not [register](Metrics::register_tools) as `_OTHER`, a protocol version outside
//! the known ones as `_OTHER`. No label ever holds a subject, a token, a session or an argument.
//!
//! Recording is a few relaxed atomic additions: nothing allocated, nothing locked. Without a
//! registry the bearer layer pays one branch.
//!
//! ```
//! use mcp_oauth::metrics::Metrics;
//!
//! let metrics = Metrics::new();
//! // .. `oauth.with_metrics(metrics.clone())`, `McpServer::metrics(metrics.clone())` ..
//! let text = metrics.render();
//! assert!(text.contains("# TYPE mcp_server_operation_duration_seconds histogram"));
//! ```
//!
//! Serve it on a listener of its own (loopback, or a network only the scraper reaches), not
//! on the public one; see `docs/metrics.md`.

pub mod encode;
#[cfg(feature = "axum")]
mod layer;
mod streamed;
mod table;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

#[cfg(feature = "axum")]
pub use layer::{OperationLayer, OperationService};
pub use streamed::StreamedOperation;

use encode::{Counter, Histogram, header, label, sample};
use table::NameTable;

/// The methods a client sends a server that get a label of their own.
pub const METHODS: &[&str] = &[
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
    "server/discover",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
];

/// The protocol versions that get a label of their own.
const PROTOCOLS: &[&str] = &[
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];

/// The value for anything outside a bounded list (the OpenTelemetry convention).
pub const OTHER: &str = "_OTHER";

/// How many tool names get a label of their own; later ones count as `_OTHER`.
const MAX_TOOLS: usize = 64;
/// How many policy rule ids get a label of their own.
const MAX_RULES: usize = 128;

/// The HTTP statuses that get an `error_type` of their own; others count as `_OTHER`.
const STATUSES: &[(u16, &str)] = &[
    (400, "400"),
    (401, "401"),
    (403, "403"),
    (404, "404"),
    (405, "405"),
    (406, "406"),
    (408, "408"),
    (413, "413"),
    (415, "415"),
    (429, "429"),
    (500, "500"),
    (502, "502"),
    (503, "503"),
    (504, "504"),
];

/// The JSON-RPC error codes (inside an HTTP 200 answer) that get an `error_type` of their
/// own: the JSON-RPC 2.0 ones, MCP's resource-not-found (-32002) and URL elicitation required
/// (-32042), this library's policy refusal (-32003) and the gateway's rate limit (-32029).
/// Others count as `_OTHER`.
const JSONRPC_CODES: &[(i64, &str)] = &[
    (-32700, "-32700"),
    (-32600, "-32600"),
    (-32601, "-32601"),
    (-32602, "-32602"),
    (-32603, "-32603"),
    (-32002, "-32002"),
    (-32003, "-32003"),
    (-32029, "-32029"),
    (-32042, "-32042"),
];

/// `error_type` values: none, each of [`STATUSES`], `tool_error`, `_OTHER`, each of
/// [`JSONRPC_CODES`].
const ERRORS: usize = STATUSES.len() + 3 + JSONRPC_CODES.len();

/// A method's index in [`METHODS`], or `METHODS.len()` for any other.
pub fn method_index(method: &str) -> usize {
    METHODS
        .iter()
        .position(|m| *m == method)
        .unwrap_or(METHODS.len())
}

/// The label of a method: itself when it is in [`METHODS`], else `_OTHER`.
pub fn method_label(method: &str) -> &'static str {
    METHODS.get(method_index(method)).copied().unwrap_or(OTHER)
}

/// What the bearer layer decided about a request's credentials and scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthResult {
    /// Let through to the service.
    Ok,
    /// No token: 401 without an error code.
    MissingToken,
    /// 401 `invalid_token`: expired, wrong signature, wrong audience, revoked, …
    InvalidToken,
    /// 401 `invalid_token` because the scheme and the token disagree (DPoP-bound token as
    /// `Bearer`, `Bearer` where DPoP is required, …).
    WrongScheme,
    /// 401 `invalid_dpop_proof` or `use_dpop_nonce`.
    InvalidDpopProof,
    /// 403 `insufficient_scope` (a step-up).
    InsufficientScope,
    /// 400 `invalid_request`.
    InvalidRequest,
    /// 413: the body is over the limit.
    TooLarge,
    /// 503: the token or proof could not be checked (keys, introspection, replay cache).
    Unavailable,
}

impl AuthResult {
    const ALL: [Self; 9] = [
        Self::Ok,
        Self::MissingToken,
        Self::InvalidToken,
        Self::WrongScheme,
        Self::InvalidDpopProof,
        Self::InsufficientScope,
        Self::InvalidRequest,
        Self::TooLarge,
        Self::Unavailable,
    ];

    /// Its place in [`AuthResult::ALL`] (the declaration order).
    fn index(self) -> usize {
        self as usize
    }

    /// The `result` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::MissingToken => "missing_token",
            Self::InvalidToken => "invalid_token",
            Self::WrongScheme => "wrong_scheme",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::InsufficientScope => "insufficient_scope",
            Self::InvalidRequest => "invalid_request",
            Self::TooLarge => "too_large",
            Self::Unavailable => "unavailable",
        }
    }
}

/// A policy decision's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyEffect {
    /// The call may go on.
    Allow,
    /// The call is refused.
    Deny,
    /// The call needs more scopes (403 `insufficient_scope`).
    StepUp,
}

impl PolicyEffect {
    const ALL: [Self; 3] = [Self::Allow, Self::Deny, Self::StepUp];

    fn label(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::StepUp => "step_up",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Allow => 0,
            Self::Deny => 1,
            Self::StepUp => 2,
        }
    }
}

/// How an operation ended, for `error_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationError {
    /// It did not fail.
    None,
    /// It was answered with this HTTP status (4xx, 5xx).
    Status(u16),
    /// A `tools/call` answered with `isError: true`.
    ToolError,
    /// Answered with HTTP 200 holding this JSON-RPC error code (`error_type` is the code).
    JsonRpc(i64),
}

/// A response extension saying that the answer (HTTP 200) is this JSON-RPC error code: the
/// [operation layer](Metrics::layer) counts the operation with it as `error_type`, as it
/// counts an HTTP error status. The layer does not read answers; the service behind it, which
/// built the answer, says so (`mcp-oauth gateway` does for every JSON answer it sends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonRpcErrorCode(pub i64);

impl OperationError {
    fn index(self) -> usize {
        match self {
            Self::None => 0,
            Self::Status(status) => STATUSES
                .iter()
                .position(|(s, _)| *s == status)
                .map_or(STATUSES.len() + 2, |i| i + 1),
            Self::ToolError => STATUSES.len() + 1,
            Self::JsonRpc(code) => JSONRPC_CODES
                .iter()
                .position(|(c, _)| *c == code)
                .map_or(STATUSES.len() + 2, |i| STATUSES.len() + 3 + i),
        }
    }
}

/// The `error_type` label of an index (empty: no error).
fn error_label(index: usize) -> &'static str {
    match index {
        0 => "",
        i if i <= STATUSES.len() => STATUSES.get(i - 1).map_or(OTHER, |(_, s)| s),
        i if i == STATUSES.len() + 1 => "tool_error",
        i if i >= STATUSES.len() + 3 => JSONRPC_CODES
            .get(i - STATUSES.len() - 3)
            .map_or(OTHER, |(_, c)| c),
        _ => OTHER,
    }
}

/// What one operation was: the labels of its histogram series.
#[derive(Debug, Clone, Copy)]
pub struct Operation<'a> {
    /// The JSON-RPC method.
    pub method: &'a str,
    /// For `tools/call`: the tool.
    pub tool: Option<&'a str>,
    /// The `MCP-Protocol-Version` the client sent, if any.
    pub protocol_version: Option<&'a str>,
    /// How it ended.
    pub error: OperationError,
}

struct Registry {
    /// `mcp_server_operation_duration_seconds`, by [`Registry::series`]; made on first use.
    operations: Box<[OnceLock<Box<Histogram>>]>,
    auth: [Counter; AuthResult::ALL.len()],
    tools: NameTable<MAX_TOOLS>,
    rules: NameTable<MAX_RULES>,
    /// `[rule][effect]`: the rules as [`Registry::rules`] numbers them, then `_OTHER`, then
    /// no rule (`_NONE`).
    decisions: Box<[[Counter; 3]]>,
    transport: &'static str,
}

/// The method slots: each method, `_OTHER`, then `tools/call` per registered tool and
/// `tools/call` of an unregistered tool.
const METHOD_SLOTS: usize = METHODS.len() + 1 + MAX_TOOLS + 1;
const PROTOCOL_SLOTS: usize = PROTOCOLS.len() + 2;

impl Registry {
    fn new(transport: &'static str) -> Self {
        Self {
            operations: (0..METHOD_SLOTS * PROTOCOL_SLOTS * ERRORS)
                .map(|_| OnceLock::new())
                .collect(),
            auth: Default::default(),
            tools: NameTable::default(),
            rules: NameTable::default(),
            decisions: (0..MAX_RULES + 2).map(|_| Default::default()).collect(),
            transport,
        }
    }

    fn series(&self, op: &Operation<'_>) -> usize {
        let method = method_index(op.method);
        let slot = match (METHODS.get(method), op.tool) {
            (Some(&"tools/call"), Some(tool)) => {
                METHODS.len() + 1 + self.tools.find(tool).unwrap_or(MAX_TOOLS)
            }
            _ => method,
        };
        let protocol = match op.protocol_version {
            None => 0,
            Some(v) => PROTOCOLS
                .iter()
                .position(|p| *p == v)
                .map_or(PROTOCOLS.len() + 1, |i| i + 1),
        };
        (slot * PROTOCOL_SLOTS + protocol) * ERRORS + op.error.index()
    }
}

/// The metrics registry: cheap to clone (an `Arc`), shared by everything it counts for.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Registry>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty registry for a server on TCP (`network_transport="tcp"`).
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Registry::new("tcp")),
        }
    }

    /// Gives these tools a `gen_ai_tool_name` of their own (up to 64 in all; later ones, and
    /// tools never registered, count as `_OTHER`). [`McpServer`](crate::McpServer) registers
    /// its tools; a gateway registers its upstreams' tools as it learns them.
    pub fn register_tools<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        for name in names {
            self.inner.tools.insert(name);
        }
    }

    /// Records one MCP operation that took `elapsed`.
    pub fn operation(&self, op: &Operation<'_>, elapsed: Duration) {
        let index = self.inner.series(op);
        if let Some(slot) = self.inner.operations.get(index) {
            slot.get_or_init(Box::default).observe(elapsed);
        }
    }

    /// Counts one decision of the bearer layer: one relaxed atomic addition.
    #[inline]
    pub fn auth_result(&self, result: AuthResult) {
        if let Some(counter) = self.inner.auth.get(result.index()) {
            counter.inc();
        }
    }

    /// Counts one policy decision made by the rules `rule_ids` (none: no rule applied). Rule
    /// ids come from the configuration, so their number is bounded; past 128 distinct ids
    /// they count as `_OTHER`.
    pub fn policy_decision<S: AsRef<str>>(&self, rule_ids: &[S], effect: PolicyEffect) {
        let registry = &self.inner;
        let count = |row: usize| {
            if let Some(counter) = registry
                .decisions
                .get(row)
                .and_then(|r| r.get(effect.index()))
            {
                counter.inc();
            }
        };
        if rule_ids.is_empty() {
            count(MAX_RULES + 1);
        }
        for rule in rule_ids {
            count(
                registry
                    .rules
                    .find_or_insert(rule.as_ref())
                    .unwrap_or(MAX_RULES),
            );
        }
    }

    /// The `mcp_oauth_auth_results_total` value for `result`.
    pub fn auth_count(&self, result: AuthResult) -> u64 {
        self.inner.auth.get(result.index()).map_or(0, Counter::get)
    }

    /// The metrics in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }

    /// Appends the metrics in the Prometheus text format to `out` (for a program that adds
    /// metrics of its own, written with [`encode`]).
    pub fn render_into(&self, out: &mut String) {
        let registry = &*self.inner;
        const DURATION: &str = "mcp_server_operation_duration_seconds";
        header(
            out,
            DURATION,
            "histogram",
            "MCP request or notification duration as observed on the receiver from the time it was received until the result or ack is sent.",
        );
        for (index, slot) in registry.operations.iter().enumerate() {
            let Some(histogram) = slot.get() else {
                continue;
            };
            let error = index % ERRORS;
            let protocol = index / ERRORS % PROTOCOL_SLOTS;
            let method_slot = index / ERRORS / PROTOCOL_SLOTS;
            let mut labels = String::new();
            match method_slot {
                m if m <= METHODS.len() => {
                    label(
                        &mut labels,
                        "mcp_method_name",
                        METHODS.get(m).copied().unwrap_or(OTHER),
                    );
                }
                m => {
                    label(&mut labels, "mcp_method_name", "tools/call");
                    let tool = registry.tools.get(m - METHODS.len() - 1);
                    label(&mut labels, "gen_ai_tool_name", tool.unwrap_or(OTHER));
                    label(&mut labels, "gen_ai_operation_name", "execute_tool");
                }
            }
            let error = error_label(error);
            if !error.is_empty() {
                label(&mut labels, "error_type", error);
            }
            match protocol {
                0 => {}
                p => label(
                    &mut labels,
                    "mcp_protocol_version",
                    PROTOCOLS.get(p - 1).copied().unwrap_or(OTHER),
                ),
            }
            label(&mut labels, "network_transport", registry.transport);
            label(&mut labels, "network_protocol_name", "http");
            histogram.write(out, DURATION, &labels);
        }
        const AUTH: &str = "mcp_oauth_auth_results_total";
        header(
            out,
            AUTH,
            "counter",
            "Requests the bearer layer let through (result=\"ok\") or refused, by reason.",
        );
        for (result, counter) in AuthResult::ALL.iter().zip(&registry.auth) {
            let mut labels = String::new();
            label(&mut labels, "result", result.label());
            sample(out, AUTH, &labels, counter.get());
        }
        const POLICY: &str = "mcp_oauth_policy_decisions_total";
        header(
            out,
            POLICY,
            "counter",
            "Access policy decisions, by the rule that decided and the effect.",
        );
        for (row, counters) in registry.decisions.iter().enumerate() {
            let rule = match row {
                r if r < MAX_RULES => match registry.rules.get(r) {
                    Some(rule) => rule,
                    None => continue,
                },
                MAX_RULES => OTHER,
                _ => "_NONE",
            };
            for (effect, counter) in PolicyEffect::ALL.iter().zip(counters) {
                let value = counter.get();
                if value == 0 {
                    continue;
                }
                let mut labels = String::new();
                label(&mut labels, "rule_id", rule);
                label(&mut labels, "effect", effect.label());
                sample(out, POLICY, &labels, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonrpc_errors_have_their_code_as_error_type() {
        let metrics = Metrics::new();
        let op = |error| Operation {
            method: "tools/call",
            tool: None,
            protocol_version: None,
            error,
        };
        metrics.operation(
            &op(OperationError::JsonRpc(-32602)),
            Duration::from_millis(1),
        );
        metrics.operation(
            &op(OperationError::JsonRpc(-32602)),
            Duration::from_millis(1),
        );
        metrics.operation(
            &op(OperationError::JsonRpc(-32042)),
            Duration::from_millis(1),
        );
        metrics.operation(&op(OperationError::JsonRpc(7)), Duration::from_millis(1));
        metrics.operation(&op(OperationError::Status(404)), Duration::from_millis(1));
        metrics.operation(&op(OperationError::None), Duration::from_millis(1));
        let text = metrics.render();
        let count = |error: &str| {
            let labels = format!(
                "mcp_method_name=\"tools/call\"{error},network_transport=\"tcp\",network_protocol_name=\"http\""
            );
            text.lines()
                .find_map(|l| {
                    l.strip_prefix(&format!(
                        "mcp_server_operation_duration_seconds_count{{{labels}}} "
                    ))
                })
                .unwrap_or_else(|| panic!("no series {labels} in {text}"))
                .to_owned()
        };
        assert_eq!(count(",error_type=\"-32602\""), "2");
        assert_eq!(count(",error_type=\"-32042\""), "1");
        assert_eq!(count(",error_type=\"_OTHER\""), "1");
        assert_eq!(count(",error_type=\"404\""), "1");
        assert_eq!(count(""), "1");
    }

    #[test]
    fn each_auth_result_has_its_own_counter() {
        let metrics = Metrics::new();
        for (i, result) in AuthResult::ALL.iter().enumerate() {
            assert_eq!(result.index(), i);
            for _ in 0..=i {
                metrics.auth_result(*result);
            }
        }
        for (i, result) in AuthResult::ALL.iter().enumerate() {
            assert_eq!(metrics.auth_count(*result), i as u64 + 1, "{result:?}");
        }
    }

    #[test]
    fn rule_ids_past_the_cap_count_as_other() {
        let metrics = Metrics::new();
        for i in 0..MAX_RULES + 5 {
            metrics.policy_decision(&[format!("rule-{i}")], PolicyEffect::Allow);
        }
        metrics.policy_decision::<&str>(&[], PolicyEffect::Deny);
        let text = metrics.render();
        assert!(
            text.contains("rule_id=\"rule-0\",effect=\"allow\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("rule-130"), "{text}");
        assert!(
            text.contains("rule_id=\"_OTHER\",effect=\"allow\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("rule_id=\"_NONE\",effect=\"deny\"} 1\n"),
            "{text}"
        );
    }
}
