//! The DPoP replay cache in a [`Store`], shared by every instance that shares the store.

use std::fmt;
use std::sync::Arc;

use super::{Kind, Store, StoreErrorKind};
use crate::claims::now_unix;
use crate::dpop::{ReplayCache, ReplayCacheError, ReplayKey};
use crate::verify::BoxFuture;

/// A [`ReplayCache`] kept in a [`Store`]: several resource-server instances that share one
/// PostgreSQL, Redis (or Redis Cluster) or SQLite store refuse a DPoP proof that any of them
/// accepted before.
///
/// Each accepted proof is one empty record of [`Kind::DpopProof`] under its
/// [`ReplayKey`], saved with [`Store::put_if_absent`], so of any number of concurrent
/// presentations of one proof, on any instance, exactly one is accepted. The record lapses
/// when the proof's `iat` leaves the verifier's window; stores drop lapsed records by
/// themselves.
///
/// The record's lifetime is counted on the store's clock: a record the verifier wants kept
/// until `expires_at` at its `now` is kept for `expires_at - now` seconds (at least one) from
/// the store's now. A store that cannot answer ([`StoreErrorKind::Unavailable`]) or any
/// other store failure is a [`ReplayCacheError`]: the proof is refused as unverifiable
/// ([`DpopError::Unavailable`](crate::dpop::DpopError::Unavailable), 503), never accepted.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use mcp_oauth::auth_server::{Store, store::StoreReplayCache};
/// use mcp_oauth::dpop::DpopVerifier;
///
/// /// The verifier of one instance: `store` is the `PostgresStore`, `RedisStore` or
/// /// `SqliteStore` every instance connects to.
/// fn verifier(store: Arc<dyn Store>) -> Result<DpopVerifier, mcp_oauth::ConfigError> {
///     DpopVerifier::builder()
///         .replay_cache(Arc::new(StoreReplayCache::new(store)))
///         .build()
/// }
/// # let store: Arc<dyn Store> = Arc::new(mcp_oauth::auth_server::store::MemoryStore::new());
/// # verifier(store).expect("a verifier");
/// ```
#[derive(Clone)]
pub struct StoreReplayCache {
    store: Arc<dyn Store>,
}

impl StoreReplayCache {
    /// A replay cache in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

impl fmt::Debug for StoreReplayCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreReplayCache").finish_non_exhaustive()
    }
}

impl ReplayCache for StoreReplayCache {
    fn insert_if_absent<'a>(
        &'a self,
        key: &'a ReplayKey,
        expires_at: i64,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, ReplayCacheError>> {
        let ttl = expires_at.saturating_sub(now).max(1);
        let until = now_unix().saturating_add(ttl);
        Box::pin(async move {
            self.store
                .put_if_absent(Kind::DpopProof, key.as_str(), Vec::new(), Some(until))
                .await
                .map_err(|err| {
                    let what = match err.kind() {
                        StoreErrorKind::Unavailable => "the DPoP replay cache is unavailable",
                        _ => "the DPoP replay cache failed",
                    };
                    ReplayCacheError::new(format!("{what}: {err}"))
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth_server::store::{MemoryStore, StoreError, StoreResult, Stored};

    fn key(jti: &str) -> ReplayKey {
        ReplayKey::new("thumbprint", jti)
    }

    #[tokio::test]
    async fn a_proof_is_recorded_once_on_the_stores_clock() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let cache = StoreReplayCache::new(Arc::clone(&store));
        // The verifier's clock is far in the past: the record still lives 60 s on the
        // store's clock.
        assert_eq!(
            cache.insert_if_absent(&key("a"), 1_060, 1_000).await,
            Ok(true)
        );
        assert_eq!(
            cache.insert_if_absent(&key("a"), 1_060, 1_000).await,
            Ok(false)
        );
        assert_eq!(
            cache.insert_if_absent(&key("b"), 1_060, 1_000).await,
            Ok(true)
        );
        let stored = store
            .get(Kind::DpopProof, key("a").as_str())
            .await
            .expect("get");
        assert_eq!(
            stored,
            Some(Stored {
                data: Vec::new(),
                used: false
            })
        );
    }

    /// Every primitive is down.
    struct Down;

    impl Store for Down {
        fn put<'a>(
            &'a self,
            _: Kind,
            _: &'a str,
            _: Vec<u8>,
            _: Option<i64>,
        ) -> BoxFuture<'a, StoreResult<()>> {
            Box::pin(async { Err(StoreError::unavailable("test: down")) })
        }
        fn put_if_absent<'a>(
            &'a self,
            _: Kind,
            _: &'a str,
            _: Vec<u8>,
            _: Option<i64>,
        ) -> BoxFuture<'a, StoreResult<bool>> {
            Box::pin(async { Err(StoreError::unavailable("test: down")) })
        }
        fn get<'a>(&'a self, _: Kind, _: &'a str) -> BoxFuture<'a, StoreResult<Option<Stored>>> {
            Box::pin(async { Err(StoreError::unavailable("test: down")) })
        }
        fn take<'a>(&'a self, _: Kind, _: &'a str) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
            Box::pin(async { Err(StoreError::unavailable("test: down")) })
        }
        fn redeem<'a>(
            &'a self,
            _: Kind,
            _: &'a str,
        ) -> BoxFuture<'a, StoreResult<super::super::Redeemed<Vec<u8>>>> {
            Box::pin(async { Err(StoreError::unavailable("test: down")) })
        }
        fn revoke_family<'a>(&'a self, _: &'a str, _: i64) -> BoxFuture<'a, StoreResult<()>> {
            Box::pin(async { Err(StoreError::unavailable("test: down")) })
        }
        fn is_family_revoked<'a>(&'a self, _: &'a str) -> BoxFuture<'a, StoreResult<bool>> {
            Box::pin(async { Err(StoreError::unavailable("test: down")) })
        }
    }

    #[tokio::test]
    async fn a_store_that_is_down_is_an_error_not_an_answer() {
        let cache = StoreReplayCache::new(Arc::new(Down));
        let err = cache
            .insert_if_absent(&key("a"), 1_060, 1_000)
            .await
            .expect_err("down");
        assert_eq!(
            err.to_string(),
            "the DPoP replay cache is unavailable: store: test: down"
        );
    }
}
