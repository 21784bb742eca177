//! The caller prepared for decisions: its [`Subject`], its Cedar entity (attributes and groups)
//! and its groups with where each came from, built once per verified token and kept with it,
//! so a decision costs one Cedar evaluation rather than rebuilding the user first; and the
//! decisions already made for it, so the same call again costs no Cedar evaluation at all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cedar_policy::{Entities, Entity};

use super::decision::{Decision, Target};
use super::subject::{Membership, Subject};

/// A user as one policy sees it (made by [`Policy::principal`](super::Policy::principal)).
#[derive(Debug)]
pub(crate) struct Principal {
    /// The policy that built it: another policy's groups and claims may differ.
    pub(crate) policy: u64,
    pub(crate) subject: Subject,
    /// The entity, or why the user cannot be described to Cedar (every decision denies).
    pub(crate) user: Result<Entity, String>,
    pub(crate) groups: Vec<Membership>,
    /// The entities of decisions about each target this user asked for (the user and the
    /// target), so a decision only runs Cedar.
    pub(crate) targets: Mutex<HashMap<(u8, String), Arc<Entities>>>,
    /// Decisions already made about this user (see [`DecisionKey`]).
    pub(crate) decisions: Mutex<HashMap<DecisionKey, Decision>>,
}

/// What a decision about one prepared user depends on besides the user and the policy: the
/// target, and the canonical arguments as JSON text (what the Cedar context is built from;
/// `None` for a list's decision, whose arguments are unknown). Cedar's evaluation reads
/// nothing else (no clock, no request data), so the same key always gets the same decision.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct DecisionKey {
    target: (u8, String),
    arguments: Option<String>,
}

impl Principal {
    /// Most targets whose entities are kept per user.
    pub(crate) const MAX_TARGETS: usize = 64;

    /// Most decisions kept per user.
    pub(crate) const MAX_DECISIONS: usize = 64;

    /// Longest canonical arguments (JSON text, bytes) whose decision is kept: a call with
    /// longer ones is decided by Cedar each time, so that a user's cache stays small.
    pub(crate) const MAX_KEPT_ARGUMENTS: usize = 256;

    /// The key of a decision about `target` with these canonical arguments (`None`: a list's
    /// decision); `None` when the arguments are too long to be kept.
    pub(crate) fn decision_key(
        target: Target<'_>,
        arguments: Option<&serde_json::Value>,
    ) -> Option<DecisionKey> {
        let arguments = match arguments {
            Some(arguments) => {
                let text = arguments.to_string();
                if text.len() > Self::MAX_KEPT_ARGUMENTS {
                    return None;
                }
                Some(text)
            }
            None => None,
        };
        Some(DecisionKey {
            target: Self::key(target),
            arguments,
        })
    }

    /// The decision kept under `key`.
    pub(crate) fn decided(&self, key: &DecisionKey) -> Option<Decision> {
        let decisions = self.decisions.lock().unwrap_or_else(|e| e.into_inner());
        decisions.get(key).cloned()
    }

    /// Keeps `decision` under `key`, while fewer than [`Self::MAX_DECISIONS`] are.
    pub(crate) fn keep_decision(&self, key: DecisionKey, decision: &Decision) {
        let mut decisions = self.decisions.lock().unwrap_or_else(|e| e.into_inner());
        if decisions.len() < Self::MAX_DECISIONS {
            decisions.insert(key, decision.clone());
        }
    }

    fn key(target: Target<'_>) -> (u8, String) {
        let kind = match target {
            Target::Tool(_) => 0,
            Target::Prompt(_) => 1,
            Target::Resource(_) => 2,
        };
        (kind, target.name().to_owned())
    }

    /// The entities kept for this target.
    pub(crate) fn entities_for(&self, target: Target<'_>) -> Option<Arc<Entities>> {
        let targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        targets.get(&Self::key(target)).cloned()
    }

    /// Keeps the entities for this target, while fewer than [`Self::MAX_TARGETS`] are.
    pub(crate) fn keep_entities(&self, target: Target<'_>, entities: &Arc<Entities>) {
        let mut targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        if targets.len() < Self::MAX_TARGETS {
            targets.insert(Self::key(target), entities.clone());
        }
    }
}

/// The principal kept with a verified token ([`AuthInfo`](crate::AuthInfo)): the verified-token
/// cache hands out the same `AuthInfo` for every request with that token, so the principal is
/// built at its first decision and reused until the token leaves the cache.
#[derive(Debug, Default)]
pub(crate) struct PrincipalCache(OnceLock<Arc<Principal>>);

/// A copy starts empty: a copied `AuthInfo` may be changed (its scopes, say), and a principal
/// built from the original would then describe someone else.
impl Clone for PrincipalCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PrincipalCache {
    /// The cached principal when policy `policy` built it, else `make()` (cached when the
    /// slot is free).
    pub(crate) fn get(&self, policy: u64, make: impl FnOnce() -> Principal) -> Arc<Principal> {
        if let Some(cached) = self.0.get() {
            if cached.policy == policy {
                return cached.clone();
            }
            // Another policy filled the slot (two layers with different policies on one
            // token): build, and do not cache.
            return Arc::new(make());
        }
        let principal = Arc::new(make());
        // Two first requests at once both build; the first to finish is kept.
        let _ = self.0.set(principal.clone());
        principal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(policy: u64, sub: &str) -> Principal {
        Principal {
            policy,
            subject: Subject::new(sub),
            user: Err(String::new()),
            groups: Vec::new(),
            targets: Mutex::default(),
            decisions: Mutex::default(),
        }
    }

    /// The caller of `claims`, as the bearer layer hands it out.
    fn auth(claims: serde_json::Value) -> crate::Auth {
        crate::AuthInfo::from_claims(
            crate::claims::Claims::new(claims.as_object().cloned().unwrap_or_default()),
            crate::AccessToken::new("t"),
            &|_: &crate::claims::Claims| crate::UserInfo::default(),
            Arc::new(crate::scope::ScopeHierarchy::new()),
        )
        .into()
    }

    /// `echo` allowed for "hi" and "hello", forbidden for "HI", and for writers only with the
    /// `write` scope (a step-up); `note` (no argument rule) allowed to everyone.
    fn policy() -> crate::policy::Policy {
        use crate::policy::{Catalog, Policy, PolicyConfig, ToolInfo};
        let text = r#"
[[policy.rule]]
id = "echo-greetings"
tools = ["echo"]
args.text = { one_of = ["hi", "hello"] }

[[policy.rule]]
id = "no-shouting"
effect = "forbid"
tools = ["echo"]
args.text = { one_of = ["HI"] }

[[policy.rule]]
id = "echo-write"
tools = ["echo"]
args.text = { one_of = ["write"] }
step_up_scopes = ["write"]

[[policy.rule]]
id = "notes"
tools = ["note"]
"#;
        let config = PolicyConfig::from_toml(text, "policy.toml").unwrap();
        let schema = serde_json::json!({
            "type": "object", "properties": {"text": {"type": "string"}}});
        let catalog = Catalog::new()
            .tool(ToolInfo::new("echo", schema.clone()))
            .tool(ToolInfo::new("note", schema))
            .tool(ToolInfo::new("rm", serde_json::json!({"type": "object"})));
        Policy::new(config, catalog).unwrap()
    }

    fn kept(auth: &crate::Auth) -> usize {
        let principal = auth.principal.0.get().expect("prepared");
        principal.decisions.lock().unwrap().len()
    }

    #[test]
    fn a_kept_decision_is_the_decision_cedar_makes() {
        use crate::policy::{Subject, Target};
        use serde_json::json;
        let policy = policy();
        let caller = auth(json!({"sub": "u-1", "scope": "read"}));
        let slow = |target: Target<'_>, args: Option<&serde_json::Value>| {
            policy.decide(&Subject::from_auth(&caller), target, args)
        };
        let calls = [
            ("echo", json!({"text": "hi"})),
            ("echo", json!({"text": "HI"})),
            ("echo", json!({"text": "hello"})),
            ("echo", json!({"text": "bye"})),
            ("echo", json!({"text": "write"})),
            ("echo", json!({})),
            ("note", json!({"text": "HI"})),
            ("note", json!({"text": "anything"})),
            ("rm", json!({})),
            ("gone", json!({})),
        ];
        // Twice: the first time decided by Cedar and kept, the second time from what was kept.
        for round in 0..2 {
            for (tool, args) in &calls {
                let target = Target::Tool(tool);
                let decision = policy.decide_for(&caller, target, Some(args));
                assert_eq!(decision, slow(target, Some(args)), "{round}: {tool} {args}");
                assert_eq!(
                    policy.list_decision_for(&caller, target),
                    policy.list_decision(&Subject::from_auth(&caller), target),
                    "{round}: list {tool}"
                );
            }
        }
        // Kept: the calls and list decisions Cedar made (not those of a target outside the
        // catalog, denied before Cedar).
        assert!(kept(&caller) > 0);
        let before = kept(&caller);
        let hi = json!({"text": "hi"});
        assert!(
            policy
                .decide_for(&caller, Target::Tool("echo"), Some(&hi))
                .is_allowed()
        );
        let shout = json!({"text": "HI"});
        assert!(
            !policy
                .decide_for(&caller, Target::Tool("echo"), Some(&shout))
                .is_allowed()
        );
        assert_eq!(
            kept(&caller),
            before,
            "the same calls again are not kept twice"
        );
        // The step-up depends on the token's scopes: another caller, another answer.
        let writer = auth(json!({"sub": "u-1", "scope": "read write"}));
        let write = json!({"text": "write"});
        assert!(
            policy
                .decide_for(&writer, Target::Tool("echo"), Some(&write))
                .is_allowed()
        );
        assert!(
            !policy
                .decide_for(&caller, Target::Tool("echo"), Some(&write))
                .is_allowed()
        );
    }

    #[test]
    fn long_arguments_and_another_policys_user_are_decided_by_cedar() {
        use crate::policy::{Subject, Target};
        use serde_json::json;
        let policy = policy();
        let caller = auth(json!({"sub": "u-1"}));
        let long = json!({"text": "h".repeat(Principal::MAX_KEPT_ARGUMENTS)});
        let echo = Target::Tool("echo");
        for _ in 0..2 {
            assert_eq!(
                policy.decide_for(&caller, echo, Some(&long)),
                policy.decide(&Subject::from_auth(&caller), echo, Some(&long))
            );
        }
        assert_eq!(kept(&caller), 0, "arguments this long are not kept");
        // A user prepared by one policy keeps nothing another policy decides.
        let other = self::policy();
        let principal = policy.principal(Subject::from_auth(&caller));
        let hi = json!({"text": "hi"});
        assert!(other.decide_as(&principal, echo, Some(&hi)).is_allowed());
        assert!(principal.decisions.lock().unwrap().is_empty());
        assert!(policy.decide_as(&principal, echo, Some(&hi)).is_allowed());
        assert_eq!(principal.decisions.lock().unwrap().len(), 1);
    }

    #[test]
    fn the_first_principal_is_kept_for_its_policy_only() {
        let cache = PrincipalCache::default();
        let first = cache.get(1, || principal(1, "a"));
        let again = cache.get(1, || panic!("built again"));
        assert!(Arc::ptr_eq(&first, &again));
        let other = cache.get(2, || principal(2, "b"));
        assert_eq!(other.subject.sub(), "b");
        assert!(Arc::ptr_eq(&cache.get(1, || panic!("built again")), &first));
    }
}
