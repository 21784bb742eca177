//! Which scopes a request needs: a baseline for every request, plus more per JSON-RPC
//! method and per tool, read from the request body (by [`jsonrpc`](crate::jsonrpc)) before it
//! reaches the MCP service so that a missing scope is an HTTP 403 step-up challenge, not a
//! tool error in a 200.

use std::collections::HashMap;

use crate::jsonrpc::RpcCall;

/// Scope requirements (all-of) for the MCP endpoint.
///
/// ```
/// use mcp_oauth::ScopePolicy;
///
/// let policy = ScopePolicy::new()
///     .require(["mcp:read"])
///     .tool("delete_file", ["files:write"])
///     .method("resources/read", ["files:read"]);
/// assert!(policy.needs_body());
/// ```
#[derive(Debug, Clone, Default)]
pub struct ScopePolicy {
    baseline: Vec<String>,
    methods: Scopes,
    tools: Scopes,
}

/// Scopes by method or tool name, looked up on every request (a fast keyed hash: the names
/// are configuration).
type Scopes = HashMap<String, Vec<String>, foldhash::fast::RandomState>;

fn push_unique(into: &mut Vec<String>, scopes: impl IntoIterator<Item = impl Into<String>>) {
    for scope in scopes {
        let scope = scope.into();
        if !into.contains(&scope) {
            into.push(scope);
        }
    }
}

impl ScopePolicy {
    /// No requirements beyond a valid token.
    pub fn new() -> Self {
        Self::default()
    }

    /// Scopes every request needs.
    #[must_use]
    pub fn require<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        push_unique(&mut self.baseline, scopes);
        self
    }

    /// Scopes a JSON-RPC method needs (in addition to the baseline).
    #[must_use]
    pub fn method<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        method: impl Into<String>,
        scopes: I,
    ) -> Self {
        push_unique(self.methods.entry(method.into()).or_default(), scopes);
        self
    }

    /// Scopes a `tools/call` of this tool needs (in addition to the baseline and to
    /// whatever `tools/call` itself needs).
    #[must_use]
    pub fn tool<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        tool: impl Into<String>,
        scopes: I,
    ) -> Self {
        push_unique(self.tools.entry(tool.into()).or_default(), scopes);
        self
    }

    /// The baseline scopes.
    pub fn baseline(&self) -> &[String] {
        &self.baseline
    }

    /// Whether the body must be read to decide (some method or tool has its own scopes).
    pub fn needs_body(&self) -> bool {
        !self.methods.is_empty() || !self.tools.is_empty()
    }

    /// Every scope the given calls need: baseline, then per method, then per tool.
    pub fn required_for(&self, calls: &[RpcCall<'_>]) -> Vec<String> {
        let mut scopes = self.baseline.clone();
        for call in calls {
            if let Some(extra) = self.methods.get(&*call.method) {
                push_unique(&mut scopes, extra.iter().cloned());
            }
            if let Some(extra) = call.tool.as_deref().and_then(|tool| self.tools.get(tool)) {
                push_unique(&mut scopes, extra.iter().cloned());
            }
        }
        scopes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(method: &'static str, tool: Option<&'static str>) -> RpcCall<'static> {
        RpcCall {
            method: method.into(),
            tool: tool.map(Into::into),
        }
    }

    #[test]
    fn required_scopes_are_the_union_in_order() {
        let policy = ScopePolicy::new()
            .require(["base"])
            .method("tools/call", ["call"])
            .tool("admin_action", ["admin", "base"]);
        assert_eq!(
            policy.required_for(&[call("tools/list", None)]),
            vec!["base"]
        );
        assert_eq!(
            policy.required_for(&[call("tools/call", Some("admin_action"))]),
            vec!["base", "call", "admin"]
        );
        assert_eq!(
            policy.required_for(&[call("tools/call", Some("echo"))]),
            vec!["base", "call"]
        );
    }
}
