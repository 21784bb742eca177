//! The in-memory store: fast, and gone at restart.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Kind, Redeemed, Store, StoreResult, Stored};
use crate::claims::now_unix;
use crate::verify::BoxFuture;

/// One record.
struct Slot {
    data: Vec<u8>,
    expires_at: Option<i64>,
    used: bool,
}

impl Slot {
    fn is_live(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

#[derive(Default)]
struct Tables {
    records: HashMap<(Kind, String), Slot>,
    revoked: HashMap<String, i64>,
    writes: u64,
}

impl Tables {
    /// Drops expired entries every 256 writes, so memory stays bounded by live state.
    fn wrote(&mut self) {
        self.writes += 1;
        if !self.writes.is_multiple_of(256) {
            return;
        }
        let now = now_unix();
        self.records.retain(|_, slot| slot.is_live(now));
        self.revoked.retain(|_, until| *until > now);
    }

    fn live(&mut self, kind: Kind, key: &str, now: i64) -> Option<&mut Slot> {
        self.records
            .get_mut(&(kind, key.to_owned()))
            .filter(|slot| slot.is_live(now))
    }
}

/// Keeps everything in memory, behind one lock.
#[derive(Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryStore")
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<'a, T: Send + 'a>(
        &self,
        f: impl FnOnce(&mut Tables, i64) -> T,
    ) -> BoxFuture<'a, StoreResult<T>> {
        let mut tables = match self.tables.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let value = f(&mut tables, now_unix());
        Box::pin(std::future::ready(Ok(value)))
    }
}

impl Store for MemoryStore {
    fn put<'a>(
        &'a self,
        kind: Kind,
        key: &'a str,
        data: Vec<u8>,
        expires_at: Option<i64>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.with(|t, _| {
            let slot = Slot {
                data,
                expires_at,
                used: false,
            };
            t.records.insert((kind, key.to_owned()), slot);
            t.wrote();
        })
    }

    fn put_if_absent<'a>(
        &'a self,
        kind: Kind,
        key: &'a str,
        data: Vec<u8>,
        expires_at: Option<i64>,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        self.with(|t, now| {
            if t.live(kind, key, now).is_some() {
                return false;
            }
            let slot = Slot {
                data,
                expires_at,
                used: false,
            };
            t.records.insert((kind, key.to_owned()), slot);
            t.wrote();
            true
        })
    }

    fn get<'a>(&'a self, kind: Kind, key: &'a str) -> BoxFuture<'a, StoreResult<Option<Stored>>> {
        self.with(|t, now| {
            t.live(kind, key, now).map(|slot| Stored {
                data: slot.data.clone(),
                used: slot.used,
            })
        })
    }

    fn take<'a>(&'a self, kind: Kind, key: &'a str) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
        self.with(|t, now| {
            t.records
                .remove(&(kind, key.to_owned()))
                .filter(|slot| slot.is_live(now))
                .map(|slot| slot.data)
        })
    }

    fn redeem<'a>(
        &'a self,
        kind: Kind,
        key: &'a str,
    ) -> BoxFuture<'a, StoreResult<Redeemed<Vec<u8>>>> {
        self.with(|t, now| match t.live(kind, key, now) {
            Some(slot) if slot.used => Redeemed::Replayed(slot.data.clone()),
            Some(slot) => {
                slot.used = true;
                Redeemed::Fresh(slot.data.clone())
            }
            None => Redeemed::Missing,
        })
    }

    fn revoke_family<'a>(&'a self, family: &'a str, until: i64) -> BoxFuture<'a, StoreResult<()>> {
        self.with(|t, _| {
            let entry = t.revoked.entry(family.to_owned()).or_insert(until);
            *entry = (*entry).max(until);
            t.wrote();
        })
    }

    fn is_family_revoked<'a>(&'a self, family: &'a str) -> BoxFuture<'a, StoreResult<bool>> {
        self.with(|t, now| t.revoked.get(family).is_some_and(|until| *until > now))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::auth_server::store::{CodeRecord, GrantRecord};

    fn code(expires_at: i64) -> CodeRecord {
        CodeRecord {
            grant: GrantRecord {
                client_id: "c".into(),
                scope: vec![],
                resource: None,
                subject: "u".into(),
                user_claims: Default::default(),
                family: "f".into(),
                dpop_jkt: None,
                expires_at,
            },
            redirect_uri: "http://127.0.0.1/cb".into(),
            code_challenge: "x".into(),
        }
    }

    #[tokio::test]
    async fn codes_are_single_use_and_replays_are_reported() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        store
            .put_code("h", code(now_unix() + 60))
            .await
            .expect("put");
        assert!(matches!(
            store.redeem_code("h").await,
            Ok(Redeemed::Fresh(_))
        ));
        assert!(matches!(
            store.redeem_code("h").await,
            Ok(Redeemed::Replayed(_))
        ));
        assert!(matches!(
            store.redeem_code("other").await,
            Ok(Redeemed::Missing)
        ));
        store
            .put_code("old", code(now_unix() - 1))
            .await
            .expect("put");
        assert!(matches!(
            store.redeem_code("old").await,
            Ok(Redeemed::Missing)
        ));
    }

    #[tokio::test]
    async fn revoked_families_lapse_with_their_tokens() {
        let store = MemoryStore::new();
        store
            .revoke_family("f", now_unix() + 60)
            .await
            .expect("revoke");
        store
            .revoke_family("g", now_unix() - 1)
            .await
            .expect("revoke");
        assert!(store.is_family_revoked("f").await.expect("read"));
        assert!(!store.is_family_revoked("g").await.expect("read"));
    }
}
