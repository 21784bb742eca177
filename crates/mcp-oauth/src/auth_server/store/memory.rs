//! The in-memory store: fast, and gone at restart.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{
    AuthRequestRecord, ClientRecord, CodeRecord, EntryKind, Redeemed, RefreshRecord, Store,
    StoreResult,
};
use crate::claims::now_unix;
use crate::verify::BoxFuture;

#[derive(Default)]
struct Tables {
    clients: HashMap<String, ClientRecord>,
    requests: HashMap<String, AuthRequestRecord>,
    codes: HashMap<String, (CodeRecord, bool)>,
    refresh: HashMap<String, (RefreshRecord, bool)>,
    revoked: HashMap<String, i64>,
    entries: HashMap<(EntryKind, String), (String, i64)>,
    writes: u64,
}

impl Tables {
    /// Drops expired entries every 256 writes, so memory stays bounded by live state.
    fn purge(&mut self) {
        self.writes += 1;
        if !self.writes.is_multiple_of(256) {
            return;
        }
        let now = now_unix();
        self.clients.retain(|_, c| c.is_live(now));
        self.requests.retain(|_, r| r.expires_at > now);
        self.codes.retain(|_, (c, _)| c.expires_at > now);
        self.refresh.retain(|_, (r, _)| r.expires_at > now);
        self.revoked.retain(|_, until| *until > now);
        self.entries.retain(|_, (_, expires_at)| *expires_at > now);
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

    fn with<T>(&self, f: impl FnOnce(&mut Tables) -> T) -> T {
        let mut tables = match self.tables.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut tables)
    }
}

fn ready<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, StoreResult<T>> {
    Box::pin(std::future::ready(Ok(value)))
}

fn peek<T: Clone>(entry: Option<&(T, bool)>, expires_at: impl Fn(&T) -> i64) -> Redeemed<T> {
    match entry {
        Some((record, _)) if expires_at(record) <= now_unix() => Redeemed::Missing,
        Some((record, true)) => Redeemed::Replayed(record.clone()),
        Some((record, false)) => Redeemed::Fresh(record.clone()),
        None => Redeemed::Missing,
    }
}

fn redeem<T: Clone>(entry: Option<&mut (T, bool)>, expires_at: impl Fn(&T) -> i64) -> Redeemed<T> {
    match entry {
        Some((record, _)) if expires_at(record) <= now_unix() => Redeemed::Missing,
        Some((record, used)) if *used => Redeemed::Replayed(record.clone()),
        Some((record, used)) => {
            *used = true;
            Redeemed::Fresh(record.clone())
        }
        None => Redeemed::Missing,
    }
}

impl Store for MemoryStore {
    fn put_client(&self, client: ClientRecord) -> BoxFuture<'_, StoreResult<()>> {
        self.with(|t| {
            t.purge();
            t.clients.insert(client.client_id.clone(), client);
        });
        ready(())
    }

    fn client<'a>(
        &'a self,
        client_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<ClientRecord>>> {
        let now = now_unix();
        ready(self.with(|t| t.clients.get(client_id).filter(|c| c.is_live(now)).cloned()))
    }

    fn put_request<'a>(
        &'a self,
        id: &'a str,
        request: AuthRequestRecord,
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.with(|t| {
            t.purge();
            t.requests.insert(id.to_owned(), request);
        });
        ready(())
    }

    fn request<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<AuthRequestRecord>>> {
        let now = now_unix();
        ready(self.with(|t| t.requests.get(id).filter(|r| r.expires_at > now).cloned()))
    }

    fn take_request<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<AuthRequestRecord>>> {
        let now = now_unix();
        ready(self.with(|t| t.requests.remove(id).filter(|r| r.expires_at > now)))
    }

    fn put_code<'a>(&'a self, hash: &'a str, code: CodeRecord) -> BoxFuture<'a, StoreResult<()>> {
        self.with(|t| {
            t.purge();
            t.codes.insert(hash.to_owned(), (code, false));
        });
        ready(())
    }

    fn redeem_code<'a>(
        &'a self,
        hash: &'a str,
    ) -> BoxFuture<'a, StoreResult<Redeemed<CodeRecord>>> {
        ready(self.with(|t| redeem(t.codes.get_mut(hash), |c| c.expires_at)))
    }

    fn peek_code<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, StoreResult<Redeemed<CodeRecord>>> {
        ready(self.with(|t| peek(t.codes.get(hash), |c| c.expires_at)))
    }

    fn put_refresh<'a>(
        &'a self,
        hash: &'a str,
        token: RefreshRecord,
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.with(|t| {
            t.purge();
            t.refresh.insert(hash.to_owned(), (token, false));
        });
        ready(())
    }

    fn redeem_refresh<'a>(
        &'a self,
        hash: &'a str,
    ) -> BoxFuture<'a, StoreResult<Redeemed<RefreshRecord>>> {
        ready(self.with(|t| redeem(t.refresh.get_mut(hash), |r| r.expires_at)))
    }

    fn peek_refresh<'a>(
        &'a self,
        hash: &'a str,
    ) -> BoxFuture<'a, StoreResult<Redeemed<RefreshRecord>>> {
        ready(self.with(|t| peek(t.refresh.get(hash), |r| r.expires_at)))
    }

    fn refresh<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, StoreResult<Option<RefreshRecord>>> {
        let now = now_unix();
        ready(self.with(|t| {
            t.refresh
                .get(hash)
                .map(|(r, _)| r)
                .filter(|r| r.expires_at > now)
                .cloned()
        }))
    }

    fn revoke_family<'a>(&'a self, family: &'a str, until: i64) -> BoxFuture<'a, StoreResult<()>> {
        self.with(|t| {
            t.purge();
            let entry = t.revoked.entry(family.to_owned()).or_insert(until);
            *entry = (*entry).max(until);
        });
        ready(())
    }

    fn is_family_revoked<'a>(&'a self, family: &'a str) -> BoxFuture<'a, StoreResult<bool>> {
        let now = now_unix();
        ready(self.with(|t| t.revoked.get(family).is_some_and(|until| *until > now)))
    }

    fn put_entry<'a>(
        &'a self,
        kind: EntryKind,
        key: &'a str,
        value: String,
        expires_at: i64,
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.with(|t| {
            t.purge();
            t.entries
                .insert((kind, key.to_owned()), (value, expires_at));
        });
        ready(())
    }

    fn entry<'a>(
        &'a self,
        kind: EntryKind,
        key: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<String>>> {
        let now = now_unix();
        ready(self.with(|t| {
            t.entries
                .get(&(kind, key.to_owned()))
                .filter(|(_, exp)| *exp > now)
                .map(|(v, _)| v.clone())
        }))
    }

    fn take_entry<'a>(
        &'a self,
        kind: EntryKind,
        key: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<String>>> {
        let now = now_unix();
        ready(self.with(|t| {
            t.entries
                .remove(&(kind, key.to_owned()))
                .filter(|(_, exp)| *exp > now)
                .map(|(v, _)| v)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(expires_at: i64) -> CodeRecord {
        CodeRecord {
            client_id: "c".into(),
            redirect_uri: "http://127.0.0.1/cb".into(),
            code_challenge: "x".into(),
            scope: vec![],
            resource: None,
            subject: "u".into(),
            user_claims: Default::default(),
            family: "f".into(),
            expires_at,
        }
    }

    #[tokio::test]
    async fn codes_are_single_use_and_replays_are_reported() {
        let store = MemoryStore::new();
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
