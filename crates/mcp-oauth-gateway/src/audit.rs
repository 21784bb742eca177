//! Audit events: one per client request that reaches a decision (forwarded, denied or sent to
//! step-up), written through the library's audit log (`mcp_oauth::audit`).

use std::time::Duration;

use ::http::StatusCode;
use mcp_oauth::Auth;
use mcp_oauth::audit::{Actor, AuditEvent, AuditLog, Decision as Recorded, Outcome};

use serde_json::value::RawValue;

use crate::gate::Decision;

/// What the audit event says about the call (owned where `Call` is lazy, so that it can be
/// held across an await).
pub(crate) struct Called<'a> {
    pub(crate) method: &'a str,
    pub(crate) name: Option<String>,
    pub(crate) params: Option<&'a RawValue>,
    /// The rules that decided ([`crate::gate::Call::decided_by`]).
    pub(crate) rule_ids: Vec<String>,
    /// For a filtered list: the rules that hid items.
    pub(crate) hidden: crate::gate::HiddenBy,
}

/// Records the decision on `call` and what the client got. A log that has stopped is
/// reported in the log, never to the client.
#[allow(clippy::too_many_arguments)] // one event's fields
pub(crate) async fn record(
    audit: &AuditLog,
    auth: Option<&Auth>,
    session: &str,
    call: &Called<'_>,
    upstream: Option<&str>,
    decision: &Decision,
    status: StatusCode,
    elapsed: Duration,
) {
    let mut actor = Actor::new(auth.map_or("anonymous", |a| a.subject()));
    if let Some(client) = auth.and_then(|a| a.client_id.clone()) {
        actor = actor.client_id(client);
    }
    // The rules that decided: a rate limit's refusal is its own; a filtered list's are
    // those that hid items.
    let recorded = match decision {
        Decision::Allow | Decision::Approved(_) => Recorded::allow(),
        Decision::Deny => Recorded::deny(),
        Decision::StepUp(scopes) => Recorded::step_up(scopes.iter().cloned()),
        Decision::Refuse(_) => Recorded::deny(),
    };
    let recorded = match decision {
        Decision::Refuse(refusal) => recorded.rule_ids([refusal.reason.clone()]),
        _ => {
            let mut rules = call.rule_ids.clone();
            for rule in call.hidden.take() {
                if !rules.contains(&rule) {
                    rules.push(rule);
                }
            }
            recorded.rule_ids(rules)
        }
    };
    let method = call.method;
    let mut event = AuditEvent::new(method, actor, recorded)
        .session(session)
        .outcome(Outcome::http(status.as_u16()))
        .duration(elapsed);
    if let Some(name) = call.name.as_deref() {
        event = match method {
            "tools/call" => event.tool(name),
            "prompts/get" => event.prompt(name),
            m if m.starts_with("resources/") => event.resource(name),
            _ => event,
        };
    }
    if let Some(upstream) = upstream {
        event = event.upstream(upstream);
    }
    if let Decision::Approved(approver) = decision {
        event = event.approved_by(approver);
    }
    if method == "tools/call"
        && let Some(arguments) = call
            .params
            .and_then(|p| crate::jsonrpc::member(p, "arguments"))
            .and_then(|a| serde_json::from_str(a.get()).ok())
    {
        event = event.arguments(arguments);
    }
    if let Err(err) = audit.record(event).await {
        tracing::error!(target: "mcp_oauth_gateway::audit", "cannot record an audit event: {err}");
    }
}
