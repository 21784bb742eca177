//! The `jti` replay cache (RFC 9449 §11.1): each proof is accepted once.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::sync::{Mutex, PoisonError};

use aws_lc_rs::digest;

use crate::jose::jws::b64;
use crate::verify::BoxFuture;

/// What a replay cache records for a proof: SHA-256 over the proof key's thumbprint and the
/// proof's `jti`, base64url (43 characters).
///
/// Keying by the key as well as the `jti` keeps one client's proofs from colliding with (or
/// being blocked by) another's, and the hash bounds the size of what is stored whatever the
/// `jti` was.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplayKey(String);

impl ReplayKey {
    pub(crate) fn new(jkt: &str, jti: &str) -> Self {
        let mut ctx = digest::Context::new(&digest::SHA256);
        // Length-prefixed, so that no two (jkt, jti) pairs hash the same input.
        for part in [jkt, jti] {
            ctx.update(&u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        Self(b64(ctx.finish().as_ref()))
    }

    /// The key as text (base64url, no padding).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReplayKey").field(&self.0).finish()
    }
}

/// The replay cache could not answer (a backend is down, or an in-memory cache is full).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReplayCacheError(String);

impl ReplayCacheError {
    /// An error with this message (no secrets: it is logged).
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Remembers which proofs were used, until they could no longer be accepted anyway.
///
/// One method: record a key unless a live record of it exists. A shared backend makes the
/// cache span every instance behind a load balancer: `SET key 1 NX EXAT expires_at` in Redis,
/// `INSERT … ON CONFLICT DO NOTHING` (after deleting lapsed rows) in SQL.
pub trait ReplayCache: Send + Sync + 'static {
    /// Records `key` as used until `expires_at` (Unix seconds) and returns `true`, unless a
    /// record of it is live at `now` (then `false`, and nothing changes).
    ///
    /// It must be atomic across everything that shares the cache: of any number of
    /// concurrent calls with one key, exactly one returns `true`.
    ///
    /// # Errors
    ///
    /// The cache cannot answer; the proof is then refused as unverifiable (503), never
    /// accepted.
    fn insert_if_absent<'a>(
        &'a self,
        key: &'a ReplayKey,
        expires_at: i64,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, ReplayCacheError>>;
}

/// A replay cache in this process's memory, for a single instance.
///
/// It holds at most `capacity` live records. Records lapse when their proof's `iat` leaves
/// the accepted window and are dropped as new ones arrive. When it is full of live records
/// it refuses new proofs ([`ReplayCacheError`], answered 503) rather than forget one that
/// could then be replayed. Default capacity: 100 000 records (a few megabytes).
pub struct MemoryReplayCache {
    capacity: usize,
    inner: Mutex<Records>,
}

#[derive(Default)]
struct Records {
    live: HashMap<ReplayKey, i64>,
    by_expiry: BinaryHeap<Reverse<(i64, ReplayKey)>>,
}

impl Records {
    fn purge(&mut self, now: i64) {
        while let Some(Reverse((expires_at, _))) = self.by_expiry.peek() {
            if *expires_at > now {
                break;
            }
            if let Some(Reverse((expires_at, key))) = self.by_expiry.pop()
                && self.live.get(&key) == Some(&expires_at)
            {
                self.live.remove(&key);
            }
        }
    }
}

impl fmt::Debug for MemoryReplayCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryReplayCache")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

impl Default for MemoryReplayCache {
    fn default() -> Self {
        Self::new(100_000)
    }
}

impl MemoryReplayCache {
    /// A cache of at most `capacity` live records.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Records::default()),
        }
    }

    /// The records held, lapsed ones included until the next insertion drops them.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .live
            .len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert(&self, key: &ReplayKey, expires_at: i64, now: i64) -> Result<bool, ReplayCacheError> {
        let mut records = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        records.purge(now);
        if records.live.get(key).is_some_and(|until| *until > now) {
            return Ok(false);
        }
        if records.live.len() >= self.capacity {
            return Err(ReplayCacheError::new(
                "the in-memory DPoP replay cache is full",
            ));
        }
        records.live.insert(key.clone(), expires_at);
        records.by_expiry.push(Reverse((expires_at, key.clone())));
        Ok(true)
    }
}

impl ReplayCache for MemoryReplayCache {
    fn insert_if_absent<'a>(
        &'a self,
        key: &'a ReplayKey,
        expires_at: i64,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, ReplayCacheError>> {
        let inserted = self.insert(key, expires_at, now);
        Box::pin(async move { inserted })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_keys_and_jtis() {
        let a = ReplayKey::new("jkt", "jti");
        assert_eq!(a, ReplayKey::new("jkt", "jti"));
        assert_ne!(a, ReplayKey::new("jkt", "jtj"));
        assert_ne!(a, ReplayKey::new("jkt2", "jti"));
        // No concatenation ambiguity.
        assert_ne!(ReplayKey::new("ab", "c"), ReplayKey::new("a", "bc"));
        assert_eq!(a.as_str().len(), 43);
    }

    #[test]
    fn a_key_is_recorded_once_until_it_lapses() {
        let cache = MemoryReplayCache::new(10);
        let key = ReplayKey::new("k", "1");
        assert_eq!(cache.insert(&key, 200, 100), Ok(true));
        assert_eq!(cache.insert(&key, 200, 150), Ok(false));
        assert_eq!(cache.insert(&key, 200, 199), Ok(false));
        // Lapsed at its expiry: recorded again.
        assert_eq!(cache.insert(&key, 300, 200), Ok(true));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_full_cache_refuses_rather_than_forgets() {
        let cache = MemoryReplayCache::new(2);
        assert_eq!(cache.insert(&ReplayKey::new("k", "1"), 200, 100), Ok(true));
        assert_eq!(cache.insert(&ReplayKey::new("k", "2"), 150, 100), Ok(true));
        assert!(cache.insert(&ReplayKey::new("k", "3"), 200, 100).is_err());
        // The first one still counts as used.
        assert_eq!(cache.insert(&ReplayKey::new("k", "1"), 200, 120), Ok(false));
        // Once one lapses there is room again, and only the lapsed one was dropped.
        assert_eq!(cache.insert(&ReplayKey::new("k", "3"), 250, 150), Ok(true));
        assert_eq!(cache.insert(&ReplayKey::new("k", "1"), 200, 150), Ok(false));
        assert_eq!(cache.len(), 2);
    }
}
