//! The policy applied to requests: every `tools/call`, `prompts/get` and `resources/read` in
//! a JSON-RPC body is decided with the verified caller as subject, before the MCP service
//! sees it. The bearer layer calls [`Enforcer::check`] once it has read the body.
//!
//! - **Allow**: the request goes on.
//! - **Step-up**: HTTP 403 `insufficient_scope` naming the scopes to ask for (built by the
//!   layer, like the scope policy's step-up).
//! - **Deny**: a JSON-RPC error (code [`POLICY_DENIED`]) in place of the service's answer. It
//!   names the `forbid` rules that refused, or says that no rule permits the call; it never
//!   says whether the tool exists, nor anything about other users.
//!
//! The body is read strictly: a member name repeated anywhere in it (two `arguments`, two
//! `path`s inside them) is refused, so the policy and the service cannot read different
//! values. In a batch, one refused request refuses the whole batch: none of it runs.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::decision::{Decision, Effect, Target};
use super::engine::Policy;
use super::lists::{LIST_METHODS, ListFilter};
use super::principal::Principal;
use super::strict::Strict;
use super::subject::Subject;
use crate::audit::{self, Actor, AuditEvent, AuditLog, Outcome};
use crate::auth::Auth;
use crate::jsonrpc::RpcCall;

/// The JSON-RPC error code of a call the policy refused (in the implementation-defined
/// server-error range of JSON-RPC 2.0 §5.1).
pub const POLICY_DENIED: i64 = -32003;

/// The methods the policy decides.
const DECIDED: [&str; 3] = ["tools/call", "prompts/get", "resources/read"];

/// A [`Policy`] and, optionally, the audit log its decisions go to.
#[derive(Debug, Clone)]
pub(crate) struct Enforcer {
    policy: Policy,
    audit: Option<AuditLog>,
}

/// What the layer does with a body.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Let it through.
    Pass,
    /// 403 `insufficient_scope` naming these scopes.
    StepUp(Vec<String>),
    /// Answer with this JSON-RPC body (HTTP 200), or with 202 and no body when it is `None`
    /// (only notifications were refused).
    Refuse(Option<Bytes>),
    /// The body is not readable as strict JSON-RPC.
    Unreadable,
    /// A call the caller may make, to a tool that needs DPoP, came with a bearer token:
    /// 401 with the DPoP challenge.
    NeedsDpop,
}

impl Enforcer {
    pub(crate) fn new(policy: Policy, audit: Option<AuditLog>) -> Self {
        Self { policy, audit }
    }

    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Decides every call in `body`. `calls` is what the JSON-RPC peek read from it: when no
    /// call is of a decided method, the body is not parsed again. `dpop`: the token came with
    /// the `DPoP` scheme and its proof was verified.
    pub(crate) fn check(
        &self,
        auth: &Auth,
        calls: &[RpcCall<'_>],
        body: &[u8],
        dpop: bool,
        metrics: Option<&crate::metrics::Metrics>,
    ) -> Verdict {
        if !calls.iter().any(|c| DECIDED.contains(&c.method.as_ref())) {
            return Verdict::Pass;
        }
        let started = Instant::now();
        let Ok(Strict(value)) = serde_json::from_slice::<Strict>(body) else {
            return Verdict::Unreadable;
        };
        let (messages, batch) = match &value {
            Value::Array(items) => (items.iter().collect::<Vec<_>>(), true),
            other => (vec![other], false),
        };
        let principal = self.principal(auth);
        let mut refused = false;
        let mut needs_dpop = false;
        let mut step_up = BTreeSet::new();
        let mut answers: Vec<(Option<&Value>, Option<Decision>)> = Vec::new();
        for message in messages {
            let id = message.get("id");
            let Some(method) = message.get("method").and_then(Value::as_str) else {
                continue;
            };
            if !DECIDED.contains(&method) {
                answers.push((id, None));
                continue;
            }
            let empty = Value::Object(Map::new());
            let params = message.get("params").unwrap_or(&empty);
            let decision = match Target::from_request(method, params) {
                Some((target, arguments)) => {
                    let decision = self.policy.decide_as(&principal, target, arguments);
                    self.record(&principal, method, target, arguments, &decision, started);
                    if let Some(metrics) = metrics {
                        metrics.policy_decision(decision.rule_ids(), metric_effect(&decision));
                    }
                    // Only a caller who may make the call learns that its tool needs DPoP.
                    if let Target::Tool(tool) = target
                        && !dpop
                        && decision.effect() != Effect::Deny
                        && self.policy.requires_dpop(tool)
                    {
                        needs_dpop = true;
                    }
                    decision
                }
                None => Decision::deny(format!("{method} without a name")),
            };
            match decision.effect() {
                Effect::Allow => answers.push((id, None)),
                Effect::StepUp => {
                    step_up.extend(decision.missing_scopes().iter().cloned());
                    answers.push((id, None));
                }
                Effect::Deny => {
                    refused = true;
                    answers.push((id, Some(decision)));
                }
            }
        }
        if refused {
            return Verdict::Refuse(refusal(&answers, batch));
        }
        if needs_dpop {
            return Verdict::NeedsDpop;
        }
        if !step_up.is_empty() {
            return Verdict::StepUp(step_up.into_iter().collect());
        }
        Verdict::Pass
    }

    /// What the layer needs to filter the answer to `body` when it holds a list request
    /// (`tools/list`, …) with an id; `None` otherwise. `calls` is what the JSON-RPC peek read:
    /// a body without a list request is not parsed again. `Err` when the body is not strict
    /// JSON (the layer refuses it, as [`check`](Self::check) does).
    pub(crate) fn list_filter(
        &self,
        auth: &Auth,
        calls: &[RpcCall<'_>],
        body: &[u8],
    ) -> Result<Option<ListFilter>, ()> {
        if !calls
            .iter()
            .any(|c| LIST_METHODS.contains(&c.method.as_ref()))
        {
            return Ok(None);
        }
        let Ok(Strict(value)) = serde_json::from_slice::<Strict>(body) else {
            return Err(());
        };
        Ok(ListFilter::for_body(
            &self.policy,
            self.principal(auth),
            &value,
        ))
    }

    /// The caller as the policy sees it, kept with the verified token: built at the token's
    /// first decision, reused while the verified-token cache keeps the token.
    fn principal(&self, auth: &Auth) -> Arc<Principal> {
        self.policy
            .principal_cached(&auth.principal, || Subject::from_auth(auth))
    }

    /// Writes one audit event, when an audit log is configured.
    fn record(
        &self,
        principal: &Principal,
        method: &str,
        target: Target<'_>,
        arguments: Option<&Value>,
        decision: &Decision,
        started: Instant,
    ) {
        let Some(audit) = &self.audit else {
            return;
        };
        let subject = &principal.subject;
        let groups = principal.groups.iter().map(|m| m.group.clone());
        let mut actor = Actor::new(subject.sub()).groups(groups);
        if let Some(email) = subject.email_address() {
            actor = actor.email(email);
        }
        if let Some(client) = subject.client() {
            actor = actor.client_id(client);
        }
        // An allowed call's outcome is the service's answer, which the layer does not read:
        // its line has none.
        let (effect, outcome) = match decision.effect() {
            Effect::Allow => (audit::Decision::allow(), None),
            Effect::StepUp => (
                audit::Decision::step_up(decision.missing_scopes().iter().cloned()),
                Some(Outcome::http(403)),
            ),
            Effect::Deny => (
                audit::Decision::deny(),
                Some(Outcome::http(200).jsonrpc_error(POLICY_DENIED)),
            ),
        };
        let mut event = AuditEvent::new(
            method,
            actor,
            effect.rule_ids(decision.rule_ids().iter().cloned()),
        )
        .duration(started.elapsed());
        if let Some(outcome) = outcome {
            event = event.outcome(outcome);
        }
        event = match target {
            Target::Tool(name) => event.tool(name),
            Target::Prompt(name) => event.prompt(name),
            Target::Resource(uri) => event.resource(uri),
        };
        if let Some(arguments) = arguments {
            event = event.arguments(arguments.clone());
        }
        record_later(audit.clone(), event);
    }
}

/// A decision's effect as the metrics name it.
fn metric_effect(decision: &Decision) -> crate::metrics::PolicyEffect {
    match decision.effect() {
        Effect::Allow => crate::metrics::PolicyEffect::Allow,
        Effect::Deny => crate::metrics::PolicyEffect::Deny,
        Effect::StepUp => crate::metrics::PolicyEffect::StepUp,
    }
}

/// Hands the event to the audit log's queue without waiting on the request path.
fn record_later(audit: AuditLog, event: AuditEvent) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::error!(target: "mcp_oauth::audit", "no async runtime: an audit event was not recorded");
        return;
    };
    runtime.spawn(async move {
        if let Err(e) = audit.record(event).await {
            tracing::error!(target: "mcp_oauth::audit", error = %e, "an audit event was not recorded");
        }
    });
}

/// The JSON-RPC answer to a body with a refused call: an error for each request (a refused
/// one says why; the others say they did not run), `None` when no message had an id.
fn refusal(answers: &[(Option<&Value>, Option<Decision>)], batch: bool) -> Option<Bytes> {
    let errors: Vec<Value> = answers
        .iter()
        .filter_map(|(id, decision)| {
            let id = (*id).filter(|id| !id.is_null())?;
            let (message, rules) = match decision {
                Some(d) => (denial_message(d), d.rule_ids().to_vec()),
                None => (
                    "not run: another request in this batch was refused by the policy".to_owned(),
                    Vec::new(),
                ),
            };
            Some(json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": {"code": POLICY_DENIED, "message": message, "data": {"rule_ids": rules}},
            }))
        })
        .collect();
    let body = match (batch, errors.as_slice()) {
        (_, []) => return None,
        (false, [one]) => one.clone(),
        _ => Value::Array(errors),
    };
    serde_json::to_vec(&body).ok().map(Bytes::from)
}

/// What a refused caller is told: the `forbid` rules that refused, else that nothing permits
/// the call. Never the reason (it may say whether the tool exists, or show argument values).
fn denial_message(decision: &Decision) -> String {
    match decision.rule_ids() {
        [] => "refused by the policy: no rule permits this call".to_owned(),
        ids => format!(
            "refused by the policy: forbidden by rule {}",
            ids.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_answers_each_request_with_an_id() {
        let deny = Decision::deny("tool `x` is not in the server's catalog");
        let (one, two) = (json!(1), json!("b"));
        let body = refusal(&[(Some(&one), Some(deny.clone()))], false).expect("a body");
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["id"], 1);
        assert_eq!(v["error"]["code"], POLICY_DENIED);
        // The reason (which says whether the tool exists) is not shown.
        assert!(!v.to_string().contains("catalog"), "{v}");
        let body = refusal(
            &[(Some(&one), Some(deny.clone())), (Some(&two), None)],
            true,
        )
        .expect("a body");
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v.as_array().map(Vec::len), Some(2));
        assert_eq!(v[1]["id"], "b");
        assert_eq!(refusal(&[(None, Some(deny))], false), None);
    }
}
