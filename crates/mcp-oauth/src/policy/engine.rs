//! The engine: the rules and Cedar files compiled into one Cedar policy set, validated against
//! the schema generated from the catalog, and one decision function for calls and lists.
//!
//! Why one file of this size: building the policy set, deciding and explaining all read the
//! same compiled state (entities, the partial evaluation for lists) and must agree on it;
//! about a third of the file is its tests.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use cedar_policy::{
    ActionConstraint, Authorizer, Context as CedarContext, Entities, Entity, EntityUid,
    Policy as CedarPolicy, PolicyId, PolicySet, Request, RestrictedExpression, Schema,
    ValidationMode, Validator,
};
use miette::Diagnostic;
use serde_json::Value;

use super::args;
use super::catalog::Catalog;
use super::cedar_file::{add_cedar_file, locate};
use super::compile::{self, Shapes};
use super::config::{ClaimKind, PolicyConfig, Who};
use super::decision::{Decision, Effect, Explanation, ScopeGrant, Target};
use super::error::{Origin, PolicyError, Problems};
use super::glob::glob;
use super::parts::{Names, Scope, Sets, Targets, id_str, uid};
use super::principal::{Principal, PrincipalCache};
use super::subject::{GroupSource, Membership, Subject};

/// A checked policy, ready to decide. Cheap to clone.
///
/// ```
/// use mcp_oauth::policy::{Catalog, Policy, PolicyConfig, Subject, Target, ToolInfo, Effect};
/// use serde_json::json;
///
/// let config = PolicyConfig::from_toml(r#"
/// [policy.arguments]
/// root = "/srv"
/// paths = ["path"]
///
/// [[policy.rule]]
/// id = "staff-read-docs"
/// who = { email_domains = ["example.com"] }
/// tools = ["read_file"]
/// args.path = { under = "/srv/docs" }
/// "#, "policy.toml")?;
/// let catalog = Catalog::new().tool(ToolInfo::new("read_file", json!({
///     "type": "object", "properties": {"path": {"type": "string"}}})));
/// let policy = Policy::new(config, catalog)?;
///
/// let alice = Subject::new("u-1").email("alice@example.com");
/// let ok = policy.decide(&alice, Target::Tool("read_file"), Some(&json!({"path": "docs/a.md"})));
/// assert_eq!(ok.effect(), Effect::Allow);
/// assert_eq!(ok.rule_ids(), ["staff-read-docs"]);
/// let escape = policy.decide(&alice, Target::Tool("read_file"), Some(&json!({"path": "docs/../../etc/passwd"})));
/// assert_eq!(escape.effect(), Effect::Deny);
/// # Ok::<(), mcp_oauth::policy::PolicyError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Policy {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: PolicyConfig,
    catalog: Catalog,
    shapes: Shapes,
    schema_text: String,
    cedar_text: String,
    set: PolicySet,
    step_up: HashMap<String, Vec<String>>,
    governs_sign_in: bool,
    governs_grants: bool,
    names: Names,
    targets: Targets,
    sets: Sets,
    authorizer: Authorizer,
    /// Tells this policy's [`Principal`]s from another's.
    id: u64,
}

/// The decision kept in `memo` under `key`, else `decide()`'s (then kept there).
fn remembered(
    memo: Option<&Principal>,
    key: Option<super::principal::DecisionKey>,
    decide: impl FnOnce() -> Decision,
) -> Decision {
    let (Some(memo), Some(key)) = (memo, key) else {
        return decide();
    };
    if let Some(decision) = memo.decided(&key) {
        return decision;
    }
    let decision = decide();
    memo.keep_decision(key, &decision);
    decision
}

/// The next [`Inner::id`].
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The arguments of one decision: unknown (a list), or known.
enum Args<'a> {
    Unknown,
    Known(Option<&'a Value>),
}

impl Policy {
    /// Compiles the rules, reads the Cedar files, generates the schema from the catalog, and
    /// validates every policy against it.
    ///
    /// # Errors
    ///
    /// Every problem found, each naming its rule id and line: a rule naming an unknown tool,
    /// an argument the tool does not have, a claim never present, a group never assigned, a
    /// Cedar syntax error, or anything Cedar's validator rejects.
    pub fn new(config: PolicyConfig, catalog: Catalog) -> Result<Self, PolicyError> {
        let names = Names::new()?;
        let mut problems = Problems::default();
        config.check_settings(&mut problems);
        let shapes = Shapes::new(&config, &catalog);
        let schema_text = compile::schema_text(&config, &shapes);
        let schema = match Schema::from_cedarschema_str(&schema_text) {
            Ok((schema, _warnings)) => schema,
            Err(e) => {
                problems.push(
                    None,
                    &Origin::default(),
                    format!("the generated Cedar schema is invalid: {e}"),
                );
                return Err(into_error(problems));
            }
        };

        let ctx = compile::Context {
            config: &config,
            catalog: &catalog,
            shapes: &shapes,
        };
        for (group, who, origin) in &config.groups {
            check_group_who(group, who, origin, &config, &mut problems);
        }
        for pattern in &config.dpop_tools {
            if !catalog.tools().any(|t| glob(pattern, t.name())) {
                problems.push(
                    None,
                    &Origin::default(),
                    format!("require_dpop: `{pattern}` matches no tool the server lists"),
                );
            }
        }
        for limit in &config.rate_limits {
            for pattern in &limit.tools {
                if !catalog.tools().any(|t| glob(pattern, t.name())) {
                    problems.push(
                        Some(&limit.id),
                        &Origin::default(),
                        format!("rate_limit: `{pattern}` matches no tool the server lists"),
                    );
                }
            }
        }
        for rule in &config.approve {
            for pattern in rule.tools() {
                if !catalog.tools().any(|t| glob(pattern, t.name())) {
                    problems.push(
                        Some(rule.id()),
                        &Origin::default(),
                        format!("approve: `{pattern}` matches no tool the server lists"),
                    );
                }
            }
        }
        let mut set = PolicySet::new();
        let mut origins: HashMap<String, (Origin, Option<String>)> = HashMap::new();
        let mut step_up = HashMap::new();
        let mut cedar_text = String::new();
        let mut scopes: Vec<(CedarPolicy, Scope)> = Vec::new();
        for (kind, rule, origin) in &config.rules {
            let Some(compiled) = ctx.compile(*kind, rule, origin, &mut problems) else {
                continue;
            };
            match CedarPolicy::parse(Some(PolicyId::new(&compiled.id)), &compiled.text) {
                Ok(policy) => {
                    let scope = Scope {
                        actions: Some(vec![compiled.action.to_owned()]),
                        targets: compiled.targets.clone(),
                    };
                    scopes.push((policy.clone(), scope));
                    if set.add(policy).is_err() {
                        problems.push(Some(&compiled.id), origin, "two rules have this id");
                    }
                }
                Err(e) => problems.push(
                    Some(&compiled.id),
                    origin,
                    format!("compiled to Cedar that does not parse ({e}); please report this"),
                ),
            }
            cedar_text.push_str(&compiled.text);
            cedar_text.push('\n');
            origins.insert(compiled.id.clone(), (origin.clone(), None));
            if !compiled.step_up.is_empty() {
                step_up.insert(compiled.id, compiled.step_up);
            }
        }
        for (file, text) in &config.cedar {
            add_cedar_file(&ctx, file, text, &mut set, &mut origins, &mut problems);
            cedar_text.push_str(text);
            cedar_text.push('\n');
        }

        let validation = Validator::new(schema).validate(&set, ValidationMode::Strict);
        for error in validation.validation_errors() {
            let id = id_str(error.policy_id());
            let origin = locate(error, origins.get(&id));
            let mut message = error.to_string();
            if let Some(help) = error.help() {
                message.push_str(&format!(" ({help})"));
            }
            problems.push(Some(&id), &origin, message);
        }
        for warning in validation.validation_warnings() {
            let cedar_policy::ValidationWarning::ImpossiblePolicy(impossible) = warning else {
                continue;
            };
            let id = id_str(impossible.policy_id());
            let origin = locate(warning, origins.get(&id));
            problems.push(
                Some(&id),
                &origin,
                "this rule can never apply: it tests an attribute or argument that is never present (check the spelling against the schema), or contradicts itself",
            );
        }
        if problems.len() > 0 {
            return Err(into_error(problems));
        }

        let governs = |action: &EntityUid| {
            set.policies().any(|p| match p.action_constraint() {
                ActionConstraint::Any => true,
                ActionConstraint::Eq(a) => &a == action,
                ActionConstraint::In(list) => list.contains(action),
            })
        };
        for policy in set.policies() {
            if !scopes.iter().any(|(p, _)| p.id() == policy.id()) {
                let actions = match policy.action_constraint() {
                    ActionConstraint::Any => None,
                    ActionConstraint::Eq(a) => Some(vec![a.id().unescaped().to_owned()]),
                    ActionConstraint::In(list) => {
                        Some(list.iter().map(|a| a.id().unescaped().to_owned()).collect())
                    }
                };
                scopes.push((
                    policy.clone(),
                    Scope {
                        actions,
                        targets: None,
                    },
                ));
            }
        }
        let sets = Sets::new(&scopes, &catalog)
            .map_err(|e| PolicyError::one(None, Origin::default(), e))?;
        let targets = Targets::new(&names, &config.server, &catalog)
            .map_err(|e| PolicyError::one(None, Origin::default(), e))?;
        let governs_sign_in = governs(&names.sign_in);
        let governs_grants = governs(&names.grant_scope);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                catalog,
                shapes,
                schema_text,
                cedar_text,
                set,
                step_up,
                governs_sign_in,
                governs_grants,
                names,
                targets,
                sets,
                authorizer: Authorizer::new(),
                id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            }),
        })
    }

    /// The same rules checked against a new catalog (when the server's tools change).
    ///
    /// # Errors
    ///
    /// As [`Policy::new`]: for example a rule names a tool that is gone. Keep the old policy
    /// in that case.
    pub fn with_catalog(&self, catalog: Catalog) -> Result<Self, PolicyError> {
        Self::new(self.inner.config.clone(), catalog)
    }

    /// The catalog the policy was checked against.
    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// The generated Cedar schema (`.cedarschema` syntax).
    pub fn cedar_schema(&self) -> &str {
        &self.inner.schema_text
    }

    /// The Cedar policies: the compiled rules, then the Cedar files.
    pub fn cedar_policies(&self) -> &str {
        &self.inner.cedar_text
    }

    /// Decides a `tools/call`, `prompts/get` or `resources/read` with its arguments (`None`
    /// when the request had none). Arguments are canonicalised first; a path leaving the root
    /// or a malformed URL is a deny that says so.
    pub fn decide(
        &self,
        subject: &Subject,
        target: Target<'_>,
        arguments: Option<&Value>,
    ) -> Decision {
        self.evaluate(subject, target, Args::Known(arguments)).0
    }

    /// [`decide`](Self::decide) for the caller the bearer layer verified, as
    /// [`Subject::from_auth`] describes it. The caller's subject, Cedar entity and groups are
    /// built at the first decision about its token and kept with it (the verified-token cache
    /// hands out the same [`Auth`](crate::Auth) for every request with that token), so a
    /// decision costs one Cedar evaluation instead of describing the user to Cedar again. The
    /// decision is kept there too, by target and canonical arguments (at most 64 per token,
    /// none for canonical arguments over 256 bytes of JSON): the same call again is answered
    /// without Cedar, with the same decision, since Cedar reads nothing else.
    pub fn decide_for(
        &self,
        auth: &crate::Auth,
        target: Target<'_>,
        arguments: Option<&Value>,
    ) -> Decision {
        let principal = self.principal_cached(&auth.principal, || Subject::from_auth(auth));
        self.decide_as(&principal, target, arguments)
    }

    /// [`visible`](Self::visible) for the caller the bearer layer verified, prepared once per
    /// token as [`decide_for`](Self::decide_for) does.
    pub fn visible_for(&self, auth: &crate::Auth, target: Target<'_>) -> bool {
        self.list_decision_for(auth, target).effect != Effect::Deny
    }

    /// [`list_decision`](Self::list_decision) for the caller the bearer layer verified,
    /// prepared once per token as [`decide_for`](Self::decide_for) does.
    pub fn list_decision_for(&self, auth: &crate::Auth, target: Target<'_>) -> Decision {
        let principal = self.principal_cached(&auth.principal, || Subject::from_auth(auth));
        self.list_decision_as(&principal, target)
    }

    /// Whether a list (`tools/list`, …) shows this item to this user: the same decision as a
    /// call, with the arguments unknown. An item is shown when some arguments could make the
    /// call allowed (or a step-up), and hidden when none could. It never hides what some
    /// arguments make callable; it may show an item whose argument rules contradict each other.
    pub fn visible(&self, subject: &Subject, target: Target<'_>) -> bool {
        self.evaluate(subject, target, Args::Unknown).0.effect != Effect::Deny
    }

    /// The list decision for one item, with its reason (`visible` is `effect != Deny`).
    pub fn list_decision(&self, subject: &Subject, target: Target<'_>) -> Decision {
        self.evaluate(subject, target, Args::Unknown).0
    }

    /// [`decide`](Self::decide) with the user's groups and the canonical arguments.
    pub fn explain(
        &self,
        subject: &Subject,
        target: Target<'_>,
        arguments: Option<&Value>,
    ) -> Explanation {
        let (decision, arguments) = self.evaluate(subject, target, Args::Known(arguments));
        Explanation {
            decision,
            groups: self.groups(subject),
            arguments,
        }
    }

    /// The user prepared for many decisions: the subject, its Cedar entity and its groups,
    /// built once (the bearer layer keeps it with the verified token).
    pub(crate) fn principal(&self, subject: Subject) -> Principal {
        Principal {
            policy: self.inner.id,
            user: self.user_entity(&subject),
            targets: std::sync::Mutex::default(),
            decisions: std::sync::Mutex::default(),
            groups: self.groups(&subject),
            subject,
        }
    }

    /// A principal for this user that this policy built: the one cached with the token when
    /// this policy made it, else a new one.
    pub(crate) fn principal_cached(
        &self,
        cache: &PrincipalCache,
        subject: impl FnOnce() -> Subject,
    ) -> Arc<Principal> {
        cache.get(self.inner.id, || self.principal(subject()))
    }

    /// [`decide`](Self::decide) for a prepared user.
    pub(crate) fn decide_as(
        &self,
        principal: &Principal,
        target: Target<'_>,
        arguments: Option<&Value>,
    ) -> Decision {
        self.evaluate_as(
            &principal.subject,
            self.principal_entities(principal, target),
            target,
            Args::Known(arguments),
            self.memo(principal),
        )
        .0
    }

    /// [`visible`](Self::visible) for a prepared user.
    pub(crate) fn visible_as(&self, principal: &Principal, target: Target<'_>) -> bool {
        self.list_decision_as(principal, target).effect != Effect::Deny
    }

    /// [`list_decision`](Self::list_decision) for a prepared user.
    pub(crate) fn list_decision_as(&self, principal: &Principal, target: Target<'_>) -> Decision {
        self.evaluate_as(
            &principal.subject,
            self.principal_entities(principal, target),
            target,
            Args::Unknown,
            self.memo(principal),
        )
        .0
    }

    /// Where decisions about `principal` are kept: the principal itself, when this policy
    /// built it (another policy's rules may decide otherwise).
    fn memo<'p>(&self, principal: &'p Principal) -> Option<&'p Principal> {
        (principal.policy == self.inner.id).then_some(principal)
    }

    /// Whether calls to this tool need a DPoP-bound token with a valid proof
    /// ([`PolicyConfig::require_dpop`]).
    pub fn requires_dpop(&self, tool: &str) -> bool {
        self.inner
            .config
            .dpop_tools
            .iter()
            .any(|pattern| glob(pattern, tool))
    }

    /// Whether this user may sign in. Without any sign-in rule (no `[[policy.sign_in]]` and no
    /// Cedar policy for `Action::"sign_in"`), everyone the identity provider accepts may.
    pub fn sign_in(&self, subject: &Subject) -> Decision {
        if !self.inner.governs_sign_in {
            return Decision {
                effect: Effect::Allow,
                rule_ids: Vec::new(),
                missing_scopes: Vec::new(),
                reason: "no rule governs sign-in".to_owned(),
            };
        }
        let n = &self.inner.names;
        let resource = uid(&n.server, &self.inner.config.server);
        let entities = match self.entities(self.user_entity(subject).as_ref(), None) {
            Ok(e) => e,
            Err(reason) => return Decision::deny(reason),
        };
        self.cedar(
            subject,
            &entities,
            &n.sign_in,
            &resource,
            CedarContext::empty(),
        )
    }

    /// Cuts the requested scopes to those the policy grants this user. Without any grant rule
    /// (no `[[policy.grant]]` and no Cedar policy for `Action::"grant_scope"`), every
    /// requested scope is granted.
    pub fn grant_scopes<S: AsRef<str>>(&self, subject: &Subject, requested: &[S]) -> ScopeGrant {
        let mut grant = ScopeGrant::default();
        if !self.inner.governs_grants {
            grant.granted = requested.iter().map(|s| s.as_ref().to_owned()).collect();
            return grant;
        }
        let entities = match self.entities(self.user_entity(subject).as_ref(), None) {
            Ok(e) => e,
            Err(_) => {
                grant.refused = requested.iter().map(|s| s.as_ref().to_owned()).collect();
                return grant;
            }
        };
        let n = &self.inner.names;
        let mut ids = BTreeSet::new();
        for scope in requested {
            let scope = scope.as_ref();
            let decision = self.cedar(
                subject,
                &entities,
                &n.grant_scope,
                &uid(&n.scope, scope),
                CedarContext::empty(),
            );
            if decision.is_allowed() {
                ids.extend(decision.rule_ids);
                grant.granted.push(scope.to_owned());
            } else {
                grant.refused.push(scope.to_owned());
            }
        }
        grant.rule_ids = ids.into_iter().collect();
        grant
    }

    /// The `[[policy.approve]]` rule a call of `tool` falls under (the first that matches
    /// its name and annotations), if any: the call then waits for a human's approval.
    pub fn approval(&self, tool: &str) -> Option<&super::ApproveRule> {
        // Asked for every call: no catalog lookup unless a rule names the tool and needs an
        // annotation.
        self.inner.config.approve.iter().find(|rule| {
            rule.tools().iter().any(|p| glob(p, tool))
                && rule.annotation().is_none_or(|wanted| {
                    self.inner
                        .catalog
                        .tools()
                        .find(|t| t.name() == tool)
                        .is_some_and(|t| t.annotations().iter().any(|(n, on)| *n == wanted && *on))
                })
        })
    }

    /// The user's groups and where each came from: `group_claims`, `[policy.groups]`, or
    /// [`Subject::group`].
    pub fn groups(&self, subject: &Subject) -> Vec<Membership> {
        let mut out = BTreeSet::new();
        for claim in &self.inner.config.group_claims {
            for group in subject.claim_strings(claim) {
                out.insert(Membership {
                    group,
                    source: GroupSource::Claim(claim.clone()),
                });
            }
        }
        for (group, who, _) in &self.inner.config.groups {
            if who_matches(who, subject, &self.inner.config) {
                out.insert(Membership {
                    group: group.clone(),
                    source: GroupSource::Policy,
                });
            }
        }
        for (group, source) in subject.given_groups() {
            out.insert(Membership {
                group: group.clone(),
                source: GroupSource::Given(source.clone()),
            });
        }
        out.into_iter().collect()
    }

    fn evaluate(&self, subject: &Subject, target: Target<'_>, args: Args<'_>) -> (Decision, Value) {
        let user = self.user_entity(subject);
        let entities = self.entities(user.as_ref(), Some(target)).map(Arc::new);
        self.evaluate_as(subject, entities, target, args, None)
    }

    /// The entities of a decision about a prepared user: made once per target and kept with
    /// the principal (up to [`Principal::MAX_TARGETS`] targets).
    fn principal_entities(
        &self,
        principal: &Principal,
        target: Target<'_>,
    ) -> Result<Arc<Entities>, String> {
        if let Some(entities) = principal.entities_for(target) {
            return Ok(entities);
        }
        let entities = Arc::new(self.entities(principal.user.as_ref(), Some(target))?);
        principal.keep_entities(target, &entities);
        Ok(entities)
    }

    /// [`evaluate`](Self::evaluate) with the user's entity built beforehand (a [`Principal`]);
    /// with `memo`, a decision already made there for the same target and canonical
    /// arguments is given again, and a new one kept there.
    fn evaluate_as(
        &self,
        subject: &Subject,
        entities: Result<Arc<Entities>, String>,
        target: Target<'_>,
        args: Args<'_>,
        memo: Option<&Principal>,
    ) -> (Decision, Value) {
        let n = &self.inner.names;
        let catalog = &self.inner.catalog;
        let (action, resource_type, known) = match target {
            Target::Tool(name) => (&n.call_tool, &n.tool, catalog.get_tool(name).is_some()),
            Target::Prompt(name) => (&n.get_prompt, &n.prompt, catalog.has_prompt(name)),
            Target::Resource(uri) => (&n.read_resource, &n.resource, catalog.has_resource(uri)),
        };
        if !known {
            return (
                Decision::deny(format!("{target} is not in the server's catalog")),
                Value::Null,
            );
        }
        let resource = uid(resource_type, target.name());
        let entities = match entities {
            Ok(e) => e,
            Err(reason) => return (Decision::deny(reason), Value::Null),
        };
        let Args::Known(arguments) = args else {
            let key = memo.and_then(|_| Principal::decision_key(target, None));
            return (
                remembered(memo, key, || {
                    self.partial(&entities, subject, action, &resource)
                }),
                Value::Null,
            );
        };
        let Target::Tool(tool) = target else {
            // A prompt's or resource's decision reads no arguments.
            let key = memo.and_then(|_| Principal::decision_key(target, Some(&Value::Null)));
            return (
                remembered(memo, key, || {
                    self.cedar(subject, &entities, action, &resource, CedarContext::empty())
                }),
                Value::Null,
            );
        };
        let (combinations, canonical) = match args::canonical_args(
            &self.inner.shapes,
            &self.inner.config.root,
            tool,
            arguments,
        ) {
            Ok(c) => c,
            Err(reason) => return (Decision::deny(reason), Value::Null),
        };
        let key = memo.and_then(|_| Principal::decision_key(target, Some(&canonical)));
        if let (Some(memo), Some(key)) = (memo, &key)
            && let Some(decision) = memo.decided(key)
        {
            return (decision, canonical);
        }
        let decision =
            self.decide_combinations(subject, &entities, action, &resource, combinations);
        if let (Some(memo), Some(key), Ok(decision)) = (memo, key, &decision) {
            memo.keep_decision(key, decision);
        }
        (decision.unwrap_or_else(|d| d), canonical)
    }

    /// The decision on a tool call: one Cedar evaluation per combination of array elements,
    /// a deny as soon as one denies. `Err`: a decision not to be kept (the arguments could not
    /// be given to Cedar).
    fn decide_combinations(
        &self,
        subject: &Subject,
        entities: &Entities,
        action: &EntityUid,
        resource: &EntityUid,
        combinations: Vec<Vec<(String, RestrictedExpression)>>,
    ) -> Result<Decision, Decision> {
        let mut rule_ids = BTreeSet::new();
        let mut missing = BTreeSet::new();
        let mut last_reason = String::new();
        for pairs in combinations {
            let context = RestrictedExpression::new_record(pairs)
                .map_err(|e| e.to_string())
                .and_then(|record| {
                    CedarContext::from_pairs([("args".to_owned(), record)])
                        .map_err(|e| e.to_string())
                });
            let context = match context {
                Ok(c) => c,
                Err(e) => {
                    return Err(Decision::deny(format!(
                        "the arguments cannot be checked: {e}"
                    )));
                }
            };
            let decision = self.cedar(subject, entities, action, resource, context);
            match decision.effect {
                Effect::Deny => return Ok(decision),
                Effect::StepUp => missing.extend(decision.missing_scopes),
                Effect::Allow => {}
            }
            rule_ids.extend(decision.rule_ids);
            last_reason = decision.reason;
        }
        let rule_ids: Vec<String> = rule_ids.into_iter().collect();
        Ok(if missing.is_empty() {
            Decision {
                effect: Effect::Allow,
                rule_ids,
                missing_scopes: Vec::new(),
                reason: last_reason,
            }
        } else {
            let missing: Vec<String> = missing.into_iter().collect();
            Decision {
                effect: Effect::StepUp,
                reason: format!("permitted once the token has {}", missing.join(" ")),
                rule_ids,
                missing_scopes: missing,
            }
        })
    }

    /// The user's entity: its attributes and its groups as parents. The same for every
    /// decision about this user, so the layer builds it once per token ([`Principal`]).
    fn user_entity(&self, subject: &Subject) -> Result<Entity, String> {
        let n = &self.inner.names;
        let mut attrs = HashMap::new();
        let s = |v: &str| RestrictedExpression::new_string(v.to_owned());
        attrs.insert("sub".to_owned(), s(subject.sub()));
        if let Some(email) = subject.email_address() {
            attrs.insert("email".to_owned(), s(email));
        }
        if let Some(domain) = subject.email_domain() {
            attrs.insert("email_domain".to_owned(), s(domain));
        }
        if let Some(client) = subject.client() {
            attrs.insert("client_id".to_owned(), s(client));
        }
        attrs.insert(
            "scopes".to_owned(),
            RestrictedExpression::new_set(subject.scope_set().iter().map(|v| s(v))),
        );
        let mut claims = Vec::new();
        for (name, kind) in &self.inner.config.claims {
            match kind {
                ClaimKind::String => {
                    if let Some(Value::String(v)) = subject.claim(name) {
                        claims.push((name.clone(), s(v)));
                    }
                }
                ClaimKind::Set => claims.push((
                    name.clone(),
                    RestrictedExpression::new_set(subject.claim_strings(name).iter().map(|v| s(v))),
                )),
            }
        }
        attrs.insert(
            "claims".to_owned(),
            RestrictedExpression::new_record(claims)
                .map_err(|e| format!("the user's claims: {e}"))?,
        );
        let parents: HashSet<EntityUid> = self
            .groups(subject)
            .into_iter()
            .map(|m| uid(&n.group, &m.group))
            .collect();
        Entity::new(uid(&n.user, subject.sub()), attrs, parents)
            .map_err(|e| format!("the user cannot be described to Cedar: {e}"))
    }

    /// The user (with groups) and the target entity.
    fn entities(
        &self,
        user: Result<&Entity, &String>,
        target: Option<Target<'_>>,
    ) -> Result<Entities, String> {
        let mut entities = vec![user.map_err(Clone::clone)?.clone()];
        if let Some(target) = target {
            let entity = match target {
                Target::Tool(name) => self.inner.targets.tools.get(name),
                Target::Prompt(name) => self.inner.targets.prompts.get(name),
                Target::Resource(uri) => self.inner.targets.resources.get(uri),
            };
            entities.push(
                entity
                    .cloned()
                    .ok_or_else(|| format!("{target} is not in the server's catalog"))?,
            );
        }
        Entities::from_entities(entities, None).map_err(|e| format!("entities: {e}"))
    }

    /// The policies that can be about this action and resource.
    fn set_for(&self, action: &EntityUid, resource: &EntityUid) -> &PolicySet {
        let action = action.id().unescaped();
        let sets = &self.inner.sets;
        sets.by_target
            .get(action)
            .and_then(|targets| targets.get(resource.id().unescaped()))
            .or_else(|| sets.by_action.get(action))
            .unwrap_or(&self.inner.set)
    }

    /// One Cedar request, step-up scopes applied.
    fn cedar(
        &self,
        subject: &Subject,
        entities: &Entities,
        action: &EntityUid,
        resource: &EntityUid,
        context: CedarContext,
    ) -> Decision {
        let principal = uid(&self.inner.names.user, subject.sub());
        let request = match Request::new(principal, action.clone(), resource.clone(), context, None)
        {
            Ok(r) => r,
            Err(e) => return Decision::deny(format!("the request cannot be checked: {e}")),
        };
        let response =
            self.inner
                .authorizer
                .is_authorized(&request, self.set_for(action, resource), entities);
        let mut ids: Vec<String> = response.diagnostics().reason().map(id_str).collect();
        ids.sort();
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|e| e.to_string())
            .collect();
        if response.decision() == cedar_policy::Decision::Deny {
            let reason = if ids.is_empty() {
                let mut reason = "no rule permits this".to_owned();
                if !errors.is_empty() {
                    reason.push_str(&format!(
                        " (rules that failed to evaluate: {})",
                        errors.join("; ")
                    ));
                }
                reason
            } else {
                format!("forbidden by {}", ids.join(", "))
            };
            return Decision {
                effect: Effect::Deny,
                rule_ids: ids,
                missing_scopes: Vec::new(),
                reason,
            };
        }
        // Allowed by Cedar: a permit with no step-up, or all of them lack scopes.
        let mut best: Option<Vec<String>> = None;
        for id in &ids {
            let needed = self
                .inner
                .step_up
                .get(id)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let lacking: Vec<String> = needed
                .iter()
                .filter(|s| !subject.scope_set().contains(*s))
                .cloned()
                .collect();
            if best.as_ref().is_none_or(|b| lacking.len() < b.len()) {
                best = Some(lacking);
            }
        }
        let lacking = best.unwrap_or_default();
        if lacking.is_empty() {
            Decision {
                effect: Effect::Allow,
                reason: format!("permitted by {}", ids.join(", ")),
                rule_ids: ids,
                missing_scopes: Vec::new(),
            }
        } else {
            Decision {
                effect: Effect::StepUp,
                reason: format!("permitted once the token has {}", lacking.join(" ")),
                rule_ids: ids,
                missing_scopes: lacking,
            }
        }
    }

    /// A list decision: the arguments unknown, so rules that depend on them stay possible.
    fn partial(
        &self,
        entities: &Entities,
        subject: &Subject,
        action: &EntityUid,
        resource: &EntityUid,
    ) -> Decision {
        let request = Request::builder()
            .principal(uid(&self.inner.names.user, subject.sub()))
            .action(action.clone())
            .resource(resource.clone())
            .build();
        let response = self.inner.authorizer.is_authorized_partial(
            &request,
            self.set_for(action, resource),
            entities,
        );
        let of_effect = |policies: &mut dyn Iterator<Item = CedarPolicy>, effect| {
            let mut ids: Vec<String> = policies
                .filter(|p| p.effect() == effect)
                .map(|p| id_str(p.id()))
                .collect();
            ids.sort();
            ids.dedup();
            ids
        };
        match response.decision() {
            Some(cedar_policy::Decision::Deny) => {
                let ids = of_effect(
                    &mut response.definitely_satisfied(),
                    cedar_policy::Effect::Forbid,
                );
                let reason = if ids.is_empty() {
                    "no rule could permit this, whatever the arguments".to_owned()
                } else {
                    format!("forbidden by {} whatever the arguments", ids.join(", "))
                };
                Decision {
                    effect: Effect::Deny,
                    rule_ids: ids,
                    missing_scopes: Vec::new(),
                    reason,
                }
            }
            decided => {
                let ids = of_effect(
                    &mut response.may_be_determining(),
                    cedar_policy::Effect::Permit,
                );
                Decision {
                    effect: Effect::Allow,
                    reason: if decided.is_some() {
                        format!("permitted by {}", ids.join(", "))
                    } else {
                        format!(
                            "may be permitted by {}, depending on the arguments",
                            ids.join(", ")
                        )
                    },
                    rule_ids: ids,
                    missing_scopes: Vec::new(),
                }
            }
        }
    }
}

fn into_error(problems: Problems) -> PolicyError {
    match problems.into_result() {
        Err(e) => e,
        Ok(()) => PolicyError::one(None, Origin::default(), "the policy is invalid"),
    }
}

/// A group's `who` is matched in Rust (groups are the user's parents, fixed before Cedar runs).
fn who_matches(who: &Who, subject: &Subject, config: &PolicyConfig) -> bool {
    let email = subject.email_address();
    if email.is_some_and(|e| who.emails_lower().iter().any(|x| x == e)) {
        return true;
    }
    if subject
        .email_domain()
        .is_some_and(|d| who.domains_lower().iter().any(|x| x == d))
    {
        return true;
    }
    if who.subject_ids().iter().any(|s| s == subject.sub()) {
        return true;
    }
    if subject
        .client()
        .is_some_and(|c| who.client_ids().iter().any(|x| x == c))
    {
        return true;
    }
    for (claim, values) in who.claim_values() {
        if config.claims.contains_key(claim)
            && subject
                .claim_strings(claim)
                .iter()
                .any(|v| values.contains(v))
        {
            return true;
        }
    }
    // Groups named inside a group: those from claims and given ones.
    let mut direct: Vec<String> = config
        .group_claims
        .iter()
        .flat_map(|c| subject.claim_strings(c))
        .collect();
    direct.extend(subject.given_groups().iter().map(|(g, _)| g.clone()));
    who.group_names().iter().any(|g| direct.contains(g))
}

fn check_group_who(
    group: &str,
    who: &Who,
    origin: &Origin,
    config: &PolicyConfig,
    problems: &mut Problems,
) {
    let label = format!("group {group}");
    for name in who.empty_lists() {
        problems.push(
            Some(&label),
            origin,
            format!("`{name}` is empty, which would match nobody; leave it out or list someone"),
        );
    }
    for (claim, _) in who.claim_values() {
        if !config.claims.contains_key(claim) {
            problems.push(
                Some(&label),
                origin,
                format!(
                    "claim `{claim}` is not declared under [policy.claims], so it is never present"
                ),
            );
        }
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Policy>();
}
