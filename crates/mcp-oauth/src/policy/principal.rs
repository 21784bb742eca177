//! The caller prepared for decisions: its [`Subject`], its Cedar entity (attributes and groups)
//! and its groups with where each came from, built once per verified token and kept with it,
//! so a decision costs one Cedar evaluation rather than rebuilding the user first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cedar_policy::{Entities, Entity};

use super::decision::Target;
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
}

impl Principal {
    /// Most targets whose entities are kept per user.
    pub(crate) const MAX_TARGETS: usize = 64;

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
        }
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
