//! The access policy at sign-in: whether this user may sign in at all, and which of the
//! requested scopes they may be granted ([`Policy::sign_in`], [`Policy::grant_scopes`]).
//! Applied once the user is known (the login form or the upstream provider), before a code
//! is issued, so that every token of the grant (refreshes included) carries only what the
//! policy allowed.

use serde_json::Value;

use super::login::UserIdentity;
use super::store::AuthRequestRecord;
use crate::audit::{self, Actor, AuditEvent, AuditLog, Outcome};
use crate::policy::{Decision, Policy, Subject};

/// The policy, and the audit log of its decisions.
#[derive(Clone)]
pub(crate) struct Access {
    pub(crate) policy: Policy,
    pub(crate) audit: Option<AuditLog>,
}

/// Why a user gets no code.
pub(crate) enum Refusal {
    /// The policy does not let this user sign in.
    SignIn,
    /// None of the requested scopes may be granted to this user.
    NoScope,
}

/// Where a decision is answered, for the audit log's outcome.
#[derive(Debug, Clone, Copy)]
pub(crate) enum At {
    /// The redirect back to the client (302, a code or `access_denied`).
    Authorize,
    /// The token endpoint (200, or 400 `invalid_grant`).
    Token,
}

impl Refusal {
    /// The `error_description` of the `access_denied` redirect: what happened, never the
    /// rules or another user's data.
    pub(crate) fn description(&self) -> &'static str {
        match self {
            Self::SignIn => {
                "this account is not allowed to sign in here; ask the server's operator for access"
            }
            Self::NoScope => {
                "this account may not be granted any of the requested scopes; ask the server's operator for access"
            }
        }
    }
}

impl Access {
    /// The scopes to grant `user` for `request`: the requested ones the policy allows. The
    /// decision is written to the audit log only when `record` (the consent page shown before
    /// the code asks without recording; the code's decision is the one kept). Called through
    /// [`signed_in_scopes`](super::respond::signed_in_scopes).
    pub(crate) fn decide_and_record(
        &self,
        request: &AuthRequestRecord,
        user: &UserIdentity,
        record: bool,
    ) -> Result<Vec<String>, Refusal> {
        let at = record.then_some(At::Authorize);
        self.decide_for(&request.client_id, &request.scope, user, at)
    }

    /// The same decision for `client_id` asking for `scope` on behalf of `user`, written to
    /// the audit log when `at` says where it is answered (a JWT-bearer grant at `/token`
    /// has no authorization request).
    pub(crate) fn decide_for(
        &self,
        client_id: &str,
        scope: &[String],
        user: &UserIdentity,
        at: Option<At>,
    ) -> Result<Vec<String>, Refusal> {
        let record = at.is_some();
        let subject = subject_of(client_id, user);
        let decision = self.policy.sign_in(&subject);
        if let Some(at) = at {
            self.record("sign_in", &subject, &decision, at);
        }
        if !decision.is_allowed() {
            tracing::info!(target: "mcp_oauth::policy", subject = %subject.sub(), %client_id, reason = %decision.reason(), "sign-in refused by the policy");
            return Err(Refusal::SignIn);
        }
        let grant = self.policy.grant_scopes(&subject, scope);
        if !grant.refused.is_empty() {
            tracing::info!(target: "mcp_oauth::policy", subject = %subject.sub(), refused = %grant.refused.join(" "), "scopes cut by the policy");
        }
        if let Some(audit) = self.audit.as_ref().filter(|_| record) {
            let effect = if grant.granted.is_empty() && !scope.is_empty() {
                audit::Decision::deny()
            } else {
                audit::Decision::allow()
            };
            let event = AuditEvent::new("grant_scopes", actor(&self.policy, &subject), effect.rule_ids(grant.rule_ids.iter().cloned()))
                .arguments(serde_json::json!({"requested": scope, "granted": grant.granted, "refused": grant.refused}));
            record_later(audit.clone(), event);
        }
        if grant.granted.is_empty() && !scope.is_empty() {
            return Err(Refusal::NoScope);
        }
        Ok(grant.granted)
    }

    fn record(&self, method: &str, subject: &Subject, decision: &Decision, at: At) {
        let Some(audit) = &self.audit else {
            return;
        };
        let effect = if decision.is_allowed() {
            audit::Decision::allow()
        } else {
            audit::Decision::deny()
        };
        let event = AuditEvent::new(
            method,
            actor(&self.policy, subject),
            effect.rule_ids(decision.rule_ids().iter().cloned()),
        )
        .outcome(Outcome::http(match at {
            At::Authorize => 302,
            At::Token if decision.is_allowed() => 200,
            At::Token => 400,
        }));
        record_later(audit.clone(), event);
    }
}

/// The user as the policy sees them: the identity's claims (a provider's `email` counts only
/// when `email_verified` is not `false`), its subject, and the client asking.
fn subject_of(client_id: &str, user: &UserIdentity) -> Subject {
    let mut claims = user.claims.clone();
    claims.insert("sub".to_owned(), Value::String(user.subject.clone()));
    Subject::from_claims(&crate::claims::Claims::new(claims)).client_id(client_id.to_owned())
}

fn actor(policy: &Policy, subject: &Subject) -> Actor {
    let groups = policy.groups(subject).into_iter().map(|m| m.group);
    let mut actor = Actor::new(subject.sub()).groups(groups);
    if let Some(email) = subject.email_address() {
        actor = actor.email(email);
    }
    if let Some(client) = subject.client() {
        actor = actor.client_id(client);
    }
    actor
}

fn record_later(audit: AuditLog, event: AuditEvent) {
    tokio::spawn(async move {
        if let Err(e) = audit.record(event).await {
            tracing::error!(target: "mcp_oauth::audit", error = %e, "an audit event was not recorded");
        }
    });
}
