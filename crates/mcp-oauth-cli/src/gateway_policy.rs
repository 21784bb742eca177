//! `mcp-oauth gateway --policy FILE`: the policy engine (`mcp_oauth::policy`) as the gateway's
//! decision hook, checked against the tools the upstreams really offer.
//!
//! The policy is compiled once the upstreams are up: the gateway lists their tools, prompts and
//! resources (with several upstreams, under their exposed names `NAME__tool`) and the rules are
//! validated against those schemas, so a rule naming a tool or an argument that does not exist
//! stops the gateway before it serves. Until then the hook lets lists through and refuses every
//! other request (nothing is served before the policy is in place).
//!
//! The policy's rate limits (`[[policy.rate_limit]]`) are checked after a call is allowed:
//! a call over a limit is refused with a JSON-RPC error carrying the time to wait.

use std::path::Path;
use std::sync::{Arc, OnceLock, RwLock};

use mcp_oauth::Auth;
use mcp_oauth::auth_server::store::Store;
use mcp_oauth::policy::{ApprovalCall, Approvers};
use mcp_oauth::policy::{
    Catalog, Effect, Policy, PolicyConfig, RateLimitError, RateLimiter, Subject, Target,
};
use mcp_oauth_gateway::approve::{ApprovalDesk, ApprovalPolicy};
use mcp_oauth_gateway::gate::{Admission, Call, Decision, Gatekeeper, ListKind, Refusal};
use mcp_oauth_gateway::web::Visitor;
use serde_json::Value;

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The JSON-RPC error code of a call refused by a rate limit (in the implementation-defined
/// server error range).
pub(crate) const RATE_LIMITED: i64 = -32029;

/// The gatekeeper; cheap to clone (the clones share the policy once it is set, and see it
/// replaced when the policy file is reloaded).
#[derive(Clone, Default)]
pub(crate) struct PolicyGate {
    policy: Arc<RwLock<Option<Arc<Policy>>>>,
    /// Where decisions are counted by rule (`mcp_oauth_policy_decisions_total`).
    metrics: mcp_oauth::metrics::Metrics,
    /// The rate limits of the policy in force.
    limiter: Arc<RwLock<Option<Arc<RateLimiter>>>>,
    /// Where the buckets are kept, once known (else in memory).
    store: Arc<OnceLock<Arc<dyn Store>>>,
    /// The approval desk (`[[policy.approve]]`), once the pages are built; none with an
    /// external issuer.
    desk: Arc<OnceLock<ApprovalDesk>>,
}

impl PolicyGate {
    /// The registry the decisions are counted in (the gateway's: `GatewayBuilder::metrics`).
    pub(crate) fn metrics(&self) -> &mcp_oauth::metrics::Metrics {
        &self.metrics
    }

    /// The gateway's decision for the policy's on `call`, counted by rule; the rules are
    /// the audit line's.
    fn decided(&self, call: &Call<'_>, decision: &mcp_oauth::policy::Decision) -> Decision {
        call.decided_by(decision.rule_ids().iter().cloned());
        let effect = match decision.effect() {
            Effect::Allow => mcp_oauth::metrics::PolicyEffect::Allow,
            Effect::StepUp => mcp_oauth::metrics::PolicyEffect::StepUp,
            _ => mcp_oauth::metrics::PolicyEffect::Deny,
        };
        self.metrics.policy_decision(decision.rule_ids(), effect);
        gate_decision(decision)
    }

    /// Compiles `config` against `catalog` (what [`mcp_oauth_gateway::Gateway::catalog`]
    /// answers) and puts it in place of the one in force, if any, with its rate limits; on an
    /// error the one in force stays. A reload starts the rate limits afresh when they are
    /// counted in memory (in the store the buckets stay).
    pub(crate) fn install(
        &self,
        config: PolicyConfig,
        catalog: &Value,
        file: &Path,
    ) -> Result<(), String> {
        let limits = config.rate_limits().to_vec();
        let catalog =
            Catalog::from_json(catalog).map_err(|e| format!("the upstreams' tool list: {e}"))?;
        let policy = Policy::new(config, catalog)
            .map_err(|e| format!("--policy {}:\n{e}", file.display()))?;
        self.set_limits(limits);
        let mut slot = self.policy.write().unwrap_or_else(|p| p.into_inner());
        *slot = Some(Arc::new(policy));
        Ok(())
    }

    /// Takes the policy in force out of service: until [`restore`](Self::restore) or
    /// [`install`](Self::install), every call is refused and clients see empty lists. For a
    /// reload that renames every tool (one upstream to several, or back), during which no
    /// compiled rule fits the names.
    pub(crate) fn suspend(&self) -> Option<Arc<Policy>> {
        let mut slot = self.policy.write().unwrap_or_else(|p| p.into_inner());
        slot.take()
    }

    /// Puts back what [`suspend`](Self::suspend) took.
    pub(crate) fn restore(&self, policy: Option<Arc<Policy>>) {
        let mut slot = self.policy.write().unwrap_or_else(|p| p.into_inner());
        *slot = policy;
    }

    /// Sends calls the policy's `[[policy.approve]]` rules name to `desk`.
    pub(crate) fn approve_with(&self, desk: ApprovalDesk) {
        let _ = self.desk.set(desk);
    }

    /// Counts the rate limits in `store` from now on (shared by every instance using it).
    pub(crate) fn count_limits_in(&self, store: Arc<dyn Store>) {
        if self.store.set(store).is_ok() {
            let limits = self.limiter().map(|l| l.limits().to_vec());
            if let Some(limits) = limits {
                self.set_limits(limits);
            }
        }
    }

    fn set_limits(&self, limits: Vec<mcp_oauth::policy::RateLimit>) {
        let limiter = match self.store.get() {
            Some(store) => RateLimiter::shared(limits, store.clone()),
            None => RateLimiter::new(limits),
        };
        let mut slot = self.limiter.write().unwrap_or_else(|p| p.into_inner());
        *slot = Some(Arc::new(limiter));
    }

    /// The caller's groups as the policy in force sees them (its `group_claims`, its
    /// `[policy.groups]`), for identity tokens; before it is in place, the token's `groups`
    /// and `roles` claims.
    pub(crate) fn groups(&self, caller: &Auth) -> Vec<String> {
        match self.current() {
            Some(policy) => {
                // Sorted by group: one group from two sources is named once.
                let mut groups: Vec<String> = policy
                    .groups(&Subject::from_auth(caller))
                    .into_iter()
                    .map(|m| m.group)
                    .collect();
                groups.dedup();
                groups
            }
            None => mcp_oauth_gateway::identity::claimed_groups(caller),
        }
    }

    /// The rate limits in force.
    fn limiter(&self) -> Option<Arc<RateLimiter>> {
        let slot = self.limiter.read().unwrap_or_else(|p| p.into_inner());
        slot.clone()
    }

    /// The policy in force.
    fn current(&self) -> Option<Arc<Policy>> {
        let slot = self.policy.read().unwrap_or_else(|p| p.into_inner());
        slot.clone()
    }
}

/// The policy's decision about `target` for the caller: the verified caller's subject,
/// Cedar entity and groups are prepared at its token's first decision and kept with the token
/// (`Policy::decide_for`), so a call costs one Cedar evaluation.
fn decide(
    policy: &Policy,
    caller: Option<&Auth>,
    target: Target<'_>,
    arguments: Option<&Value>,
) -> mcp_oauth::policy::Decision {
    match caller {
        Some(auth) => policy.decide_for(auth, target, arguments),
        None => policy.decide(&Subject::new("anonymous"), target, arguments),
    }
}

/// Whether the caller sees `target` in a list, prepared as [`decide`] is.
fn visible(policy: &Policy, caller: Option<&Auth>, target: Target<'_>) -> bool {
    match caller {
        Some(auth) => policy.visible_for(auth, target),
        None => policy.visible(&Subject::new("anonymous"), target),
    }
}

fn gate_decision(decision: &mcp_oauth::policy::Decision) -> Decision {
    match decision.effect() {
        Effect::Allow => Decision::Allow,
        Effect::StepUp => Decision::StepUp(decision.missing_scopes().to_vec()),
        _ => Decision::Deny,
    }
}

/// The version of `policy` an approval of a call of `rule` is bound to: a change in the
/// rules, or in this approve rule, is another version (a waiting approval no longer counts).
fn approval_version(policy: &Policy, rule: &mcp_oauth::policy::ApproveRule) -> String {
    mcp_oauth::audit::canonical_sha256(&serde_json::json!([
        policy.cedar_policies(),
        format!("{rule:?}")
    ]))
}

impl ApprovalPolicy for PolicyGate {
    fn approvers(&self, call: &ApprovalCall) -> Option<Vec<Approvers>> {
        let policy = self.current()?;
        let rule = policy.approval(&call.tool)?;
        (approval_version(&policy, rule) == call.policy_version)
            .then(|| rule.approver_list().to_vec())
    }

    fn groups(&self, visitor: &Visitor) -> Vec<String> {
        let Some(policy) = self.current() else {
            return visitor.groups().to_vec();
        };
        let subject = Subject::from_claims(&visitor.to_claims());
        policy
            .groups(&subject)
            .into_iter()
            .map(|m| m.group)
            .collect()
    }
}

impl PolicyGate {
    /// The answer for a call the policy allowed that an approve rule names, if one does.
    async fn approval(&self, caller: Option<&Auth>, call: &Admission<'_>) -> Option<Decision> {
        let ("tools/call", Some(tool)) = (call.method, call.name) else {
            return None;
        };
        let policy = self.current()?;
        let rule = policy.approval(tool)?;
        let reason = format!("approve:{}", rule.id());
        let Some(desk) = self.desk.get() else {
            return Some(Decision::Refuse(Refusal {
                code: mcp_oauth_gateway::approve::APPROVAL_REQUIRED,
                message: format!(
                    "the call of `{tool}` needs a human's approval, and this gateway has no approval page (it verifies an external issuer's tokens)"
                ),
                data: None,
                reason,
            }));
        };
        let arguments = call
            .params
            .and_then(|p| serde_json::from_str::<Value>(p.get()).ok())
            .and_then(|p| p.get("arguments").cloned())
            .unwrap_or(Value::Null);
        let upstream = call.upstream.map(str::to_owned).unwrap_or_else(|| {
            tool.split_once(mcp_oauth_gateway::SEPARATOR)
                .map(|(u, _)| u.to_owned())
                .unwrap_or_default()
        });
        let bound = ApprovalCall::new(
            caller.map_or("anonymous", |a| a.subject()),
            upstream,
            tool,
            &arguments,
            approval_version(&policy, rule),
        );
        Some(desk.admit(&bound, &arguments, rule.id()).await)
    }

    /// The rate limits' answer for an allowed call.
    async fn rate_limited(&self, caller: Option<&Auth>, call: &Admission<'_>) -> Decision {
        {
            let (Some(limiter), "tools/call", Some(tool)) =
                (self.limiter(), call.method, call.name)
            else {
                return Decision::Allow;
            };
            if !limiter.covers(tool) {
                return Decision::Allow;
            }
            let subject = caller.map_or("anonymous", |a| a.subject());
            match limiter.check(subject, tool).await {
                Ok(()) => Decision::Allow,
                Err(RateLimitError::Limited(limited)) => {
                    let wait = limited.retry_after;
                    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                    Decision::Refuse(Refusal {
                        code: RATE_LIMITED,
                        message: format!(
                            "rate limit reached for tool `{tool}`: retry in {seconds} s"
                        ),
                        data: Some(serde_json::json!({
                            "rateLimit": limited.limit,
                            "retryAfter": seconds,
                        })),
                        reason: format!("rate_limit:{}", limited.limit),
                    })
                }
                Err(err) => {
                    tracing::error!(target: "mcp_oauth_cli", "{err}");
                    Decision::Refuse(Refusal {
                        code: -32603,
                        message: "the rate limit cannot be checked; try again later".to_owned(),
                        data: None,
                        reason: "rate_limit:unavailable".to_owned(),
                    })
                }
            }
        }
    }
}

impl Gatekeeper for PolicyGate {
    fn admit<'a>(
        &'a self,
        caller: Option<&'a Auth>,
        call: Admission<'a>,
    ) -> BoxFuture<'a, Decision> {
        Box::pin(async move {
            // Over a rate limit, a call is refused before anyone is asked to approve it.
            let limited = self.rate_limited(caller, &call).await;
            if limited != Decision::Allow {
                return limited;
            }
            self.approval(caller, &call)
                .await
                .unwrap_or(Decision::Allow)
        })
    }

    fn decide(&self, caller: Option<&Auth>, call: &Call<'_>) -> Decision {
        let method = call.method();
        let Some(policy) = self.current() else {
            // Before the policy is in place only the gateway itself asks, for the lists.
            return if ListKind::of_method(method).is_some() {
                Decision::Allow
            } else {
                Decision::Deny
            };
        };
        if ListKind::of_method(method).is_some() {
            return Decision::Allow;
        }
        let params: Value = call
            .params()
            .and_then(|p| serde_json::from_str(p.get()).ok())
            .unwrap_or(Value::Null);
        let str_of = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
        match method {
            "tools/call" | "prompts/get" | "resources/read" => {
                match Target::from_request(method, &params) {
                    Some((target, arguments)) => {
                        self.decided(call, &decide(&policy, caller, target, arguments))
                    }
                    None => Decision::Deny,
                }
            }
            // What may not be read may not be watched.
            "resources/subscribe" | "resources/unsubscribe" => match str_of(&params, "uri") {
                Some(uri) => {
                    self.decided(call, &decide(&policy, caller, Target::Resource(&uri), None))
                }
                None => Decision::Deny,
            },
            // Completing a prompt's or resource's arguments: allowed where the item is visible.
            "completion/complete" => {
                let reference = params.get("ref").cloned().unwrap_or(Value::Null);
                let visible = match reference.get("type").and_then(Value::as_str) {
                    Some("ref/prompt") => str_of(&reference, "name")
                        .is_some_and(|n| visible(&policy, caller, Target::Prompt(&n))),
                    Some("ref/resource") => str_of(&reference, "uri")
                        .is_some_and(|u| visible(&policy, caller, Target::Resource(&u))),
                    _ => false,
                };
                if visible {
                    Decision::Allow
                } else {
                    Decision::Deny
                }
            }
            // Session housekeeping that names no tool, prompt or resource.
            "logging/setLevel" => Decision::Allow,
            _ => Decision::Deny,
        }
    }

    fn filters_lists(&self) -> bool {
        true
    }

    fn keep(&self, caller: Option<&Auth>, list: ListKind, item: &Value) -> bool {
        self.hidden_by(caller, list, item).is_none()
    }

    fn hidden_by(
        &self,
        caller: Option<&Auth>,
        list: ListKind,
        item: &Value,
    ) -> Option<Vec<String>> {
        // No caller: the gateway itself, listing what the upstreams offer to compile a
        // reloaded policy against (`Gateway::catalog`). Every client request of the command's
        // gateway is authenticated, so a client always has one.
        let caller = caller?;
        // No policy in force (a reload that renames every tool, before the new one compiles):
        // a client is shown nothing.
        let Some(policy) = self.current() else {
            return Some(Vec::new());
        };
        let field = |key: &str| item.get(key).and_then(Value::as_str);
        let target = match list {
            ListKind::Tools => field("name").map(Target::Tool),
            ListKind::Prompts => field("name").map(Target::Prompt),
            ListKind::Resources => field("uri").map(Target::Resource),
            // A template is not one resource; reads of what it expands to are decided one by one.
            _ => return None,
        };
        // An item without its name is not shown.
        let Some(target) = target else {
            return Some(Vec::new());
        };
        let decision = policy.list_decision_for(caller, target);
        (decision.effect() == Effect::Deny).then(|| decision.rule_ids().to_vec())
    }
}

/// Reads the policy file (again, on a reload).
pub(crate) fn load(path: &Path) -> Result<PolicyConfig, String> {
    PolicyConfig::from_file(path).map_err(|e| format!("--policy {}:\n{e}", path.display()))
}
