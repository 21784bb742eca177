//! The per-user credential vault: each user's credentials for the upstreams (a pasted
//! personal token, an upstream OAuth grant), sealed at rest in the gateway's store.
//!
//! An entry is filed under (user, upstream, [`EntryKind`]) and holds a small typed header in
//! the clear ([`EntryHeader`]: upstream, kind, created, updated, expires) and the credential,
//! an opaque blob sealed with AES-256-GCM ([`mcp_oauth::auth_server::SealingKey`]). The
//! header and the user are the blob's associated data, so a blob moved to another user's or
//! upstream's entry, or a header changed in the store, does not open.
//!
//! # Key
//!
//! The sealing key is derived (purpose `"gateway vault v1"`) from one 32-byte root key, the
//! same root key the authorization server seals upstream tokens with (`--encryption-key`, else
//! `encryption.key` in the data folder). Instances that share a store must share that key;
//! with another key the entries do not open ([`VaultError::Unreadable`]) and users enter
//! their credentials again. Rotating the key therefore forgets every entry.
//!
//! # Store
//!
//! Records are [`Kind::Vault`] records of any [`Store`] (memory, SQLite, Redis, PostgreSQL),
//! keyed by SHA-256 hashes: the store never holds a user's name in a key. Besides the entries,
//! each user has an index (the (upstream, kind) pairs they hold), changed under a short lock
//! taken with [`Store::put_if_absent`], so instances sharing the store never lose an entry
//! from it. Listing reads the index and drops what has gone (revoked, expired).
//!
//! No secret reaches `Debug`, a log line or an error: [`VaultSecret`] prints as
//! `VaultSecret([redacted])`.

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcp_oauth::Auth;
use mcp_oauth::auth_server::SealingKey;
use mcp_oauth::auth_server::store::{Kind, Store, StoreError};
use serde::{Deserialize, Serialize};

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum EntryKind {
    /// A token the user pasted on the gateway's page (`kind = "user-secret"`).
    UserSecret,
    /// The user's OAuth grant at the upstream's authorization server (`kind = "user-oauth"`).
    UserOauth,
}

impl EntryKind {
    /// The configuration name: `"user-secret"`, `"user-oauth"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserSecret => "user-secret",
            Self::UserOauth => "user-oauth",
        }
    }
}

/// The clear part of an entry: what it is for and when it was made. Never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EntryHeader {
    /// The upstream's name.
    pub upstream: String,
    /// What the sealed blob is.
    pub kind: EntryKind,
    /// When the entry was first put (Unix seconds); a replacement keeps it.
    pub created_at: i64,
    /// When the entry was last put (Unix seconds).
    pub updated_at: i64,
    /// When the entry lapses (Unix seconds), if ever; the store drops it then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// A credential out of the vault: bytes that never print.
#[derive(Clone)]
pub struct VaultSecret(Vec<u8>);

impl VaultSecret {
    /// The credential.
    ///
    /// # Security
    ///
    /// This is the user's credential for the upstream: send it there only, never log it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for VaultSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VaultSecret([redacted])")
    }
}

/// An entry: its header and its opened credential.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Entry {
    /// What it is for and when it was made.
    pub header: EntryHeader,
    /// The credential.
    pub secret: VaultSecret,
}

/// Why the vault could not answer. Messages never contain a credential or a user.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The store failed (unreachable, or a record that does not decode).
    #[error("credential vault: {0}")]
    Store(#[from] StoreError),
    /// An entry exists but does not open: sealed with another key, or changed in the store.
    /// The user has to enter the credential again.
    #[error("credential vault: an entry does not open (sealed with another key, or altered)")]
    Unreadable,
    /// The user's index stayed locked by another instance for too long.
    #[error("credential vault: the user's entries are being changed elsewhere; try again")]
    Busy,
}

/// The user's entry as stored: the clear header and the sealed blob.
#[derive(Serialize, Deserialize)]
struct Record {
    #[serde(flatten)]
    header: EntryHeader,
    sealed: String,
}

/// The per-user credential vault (see the [module](self) docs); cheap to clone (clones
/// share one vault).
#[derive(Clone)]
pub struct Vault {
    opened: Arc<std::sync::OnceLock<Opened>>,
    /// Told of each entry saved or removed through this vault (any clone), on this instance.
    hooks: Arc<std::sync::Mutex<Vec<Weak<ChangeHook>>>>,
}

/// What [`Vault::on_change`] calls with the user, the upstream and the kind of an entry just
/// saved or removed.
pub(crate) type ChangeHook = dyn Fn(&str, &str, EntryKind) + Send + Sync;

struct Opened {
    store: Arc<dyn Store>,
    key: SealingKey,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Vault([redacted])")
    }
}

/// How long an index lock lives if its holder dies before releasing it.
const LOCK_LIFE: i64 = 10;
/// How long a change waits for another instance's lock.
const LOCK_WAIT: Duration = Duration::from_secs(3);

impl Vault {
    /// A vault in `store`, sealed with a key derived from `root_key` (32 secret bytes; the
    /// authorization server's encryption key).
    ///
    /// # Errors
    ///
    /// `root_key` is not 32 bytes.
    pub fn new(
        store: Arc<dyn Store>,
        root_key: &[u8],
    ) -> Result<Self, mcp_oauth::error::ConfigError> {
        let vault = Self::late();
        vault.open(store, root_key)?;
        Ok(vault)
    }

    /// A vault whose store and key are given later, with [`Vault::open`] (for a program that
    /// configures its upstreams before its store is open). Until then every operation fails
    /// with [`VaultError::Store`] (unavailable).
    pub fn late() -> Self {
        Self {
            opened: Arc::new(std::sync::OnceLock::new()),
            hooks: Arc::default(),
        }
    }

    /// Gives a [`late`](Self::late) vault its store and key (once; a second call changes
    /// nothing).
    ///
    /// # Errors
    ///
    /// `root_key` is not 32 bytes.
    pub fn open(
        &self,
        store: Arc<dyn Store>,
        root_key: &[u8],
    ) -> Result<(), mcp_oauth::error::ConfigError> {
        let key = SealingKey::derive(root_key, "gateway vault v1")?;
        let _ = self.opened.set(Opened { store, key });
        Ok(())
    }

    /// The store the vault is in, once it is open (other per-user records, such as a
    /// `user-oauth` refresh lock, go beside its entries).
    pub fn store(&self) -> Option<&Arc<dyn Store>> {
        self.opened.get().map(|o| &o.store)
    }

    /// Calls `hook` after each entry saved or removed through this vault (any of its clones),
    /// until `hook` is dropped. Other instances sharing the store are not told.
    pub(crate) fn on_change(&self, hook: &Arc<ChangeHook>) {
        let mut hooks = self.hooks.lock().unwrap_or_else(|p| p.into_inner());
        hooks.retain(|h| h.strong_count() > 0);
        hooks.push(Arc::downgrade(hook));
    }

    fn changed(&self, user: &str, upstream: &str, kind: EntryKind) {
        let live: Vec<Arc<ChangeHook>> = self
            .hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for hook in live {
            hook(user, upstream, kind);
        }
    }

    fn parts(&self) -> Result<(&Arc<dyn Store>, &SealingKey), VaultError> {
        self.opened
            .get()
            .map(|o| (&o.store, &o.key))
            .ok_or_else(|| {
                VaultError::Store(StoreError::unavailable(
                    "the credential vault is not open yet",
                ))
            })
    }

    /// The vault's name for the user of a verified request: issuer and subject.
    pub fn user_of(auth: &Auth) -> String {
        Self::user_key(auth.issuer.as_deref().unwrap_or_default(), auth.subject())
    }

    /// The vault's name for the user `subject` of `issuer`: what [`user_of`](Self::user_of)
    /// gives for their tokens (a page that knows the issuer and subject uses this).
    pub fn user_key(issuer: &str, subject: &str) -> String {
        format!("{issuer}\u{0}{subject}")
    }

    /// Saves (or replaces) `user`'s credential for `upstream`, until `expires_at` (Unix
    /// seconds) or for good. A replacement keeps the first `created_at`.
    ///
    /// # Errors
    ///
    /// The store failed, or the user's index stayed locked.
    pub async fn put(
        &self,
        user: &str,
        upstream: &str,
        kind: EntryKind,
        secret: &[u8],
        expires_at: Option<i64>,
    ) -> Result<EntryHeader, VaultError> {
        let (store, sealing) = self.parts()?;
        let now = now();
        let key = entry_key(user, upstream, kind);
        let created_at = match store.get(Kind::Vault, &key).await? {
            Some(stored) => serde_json::from_slice::<Record>(&stored.data)
                .map(|r| r.header.created_at)
                .unwrap_or(now),
            None => now,
        };
        let header = EntryHeader {
            upstream: upstream.to_owned(),
            kind,
            created_at,
            updated_at: now,
            expires_at,
        };
        let sealed = sealing
            .seal(secret, &context(user, &header))
            .ok_or_else(|| StoreError::unavailable("no randomness to seal a vault entry"))?;
        let record = Record {
            header: header.clone(),
            sealed,
        };
        let data = serde_json::to_vec(&record)
            .map_err(|e| StoreError::invalid(format!("a vault entry does not encode: {e}")))?;
        store.put(Kind::Vault, &key, data, expires_at).await?;
        let item = (upstream.to_owned(), kind);
        if !self.index(user).await?.contains(&item) {
            self.change_index(user, |items| {
                if !items.contains(&item) {
                    items.push(item.clone());
                }
            })
            .await?;
        }
        tracing::debug!(target: "mcp_oauth_gateway::vault", upstream, kind = kind.as_str(), "vault entry saved");
        self.changed(user, upstream, kind);
        Ok(header)
    }

    /// `user`'s credential for `upstream`, if there is a live one.
    ///
    /// # Errors
    ///
    /// The store failed, or the entry does not open ([`VaultError::Unreadable`]).
    pub async fn get(
        &self,
        user: &str,
        upstream: &str,
        kind: EntryKind,
    ) -> Result<Option<Entry>, VaultError> {
        let (store, sealing) = self.parts()?;
        let Some(stored) = store
            .get(Kind::Vault, &entry_key(user, upstream, kind))
            .await?
        else {
            return Ok(None);
        };
        let record: Record =
            serde_json::from_slice(&stored.data).map_err(|_| VaultError::Unreadable)?;
        if record.header.upstream != upstream || record.header.kind != kind {
            return Err(VaultError::Unreadable);
        }
        let secret = sealing
            .open(&record.sealed, &context(user, &record.header))
            .ok_or(VaultError::Unreadable)?;
        Ok(Some(Entry {
            header: record.header,
            secret: VaultSecret(secret),
        }))
    }

    /// The headers of `user`'s live entries, by upstream then kind. An entry that does not
    /// open is listed too (so that the user can revoke it).
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn list(&self, user: &str) -> Result<Vec<EntryHeader>, VaultError> {
        let (store, _) = self.parts()?;
        let mut headers = Vec::new();
        for (upstream, kind) in self.index(user).await? {
            let key = entry_key(user, &upstream, kind);
            let Some(stored) = store.get(Kind::Vault, &key).await? else {
                continue;
            };
            if let Ok(record) = serde_json::from_slice::<Record>(&stored.data)
                && record.header.upstream == upstream
                && record.header.kind == kind
            {
                headers.push(record.header);
            }
        }
        headers.sort_by(|a, b| {
            (a.upstream.as_str(), a.kind.as_str()).cmp(&(b.upstream.as_str(), b.kind.as_str()))
        });
        Ok(headers)
    }

    /// Removes `user`'s credential for `upstream`; `true` if there was one.
    ///
    /// # Errors
    ///
    /// The store failed, or the user's index stayed locked (the entry is gone anyway).
    pub async fn revoke(
        &self,
        user: &str,
        upstream: &str,
        kind: EntryKind,
    ) -> Result<bool, VaultError> {
        let (store, _) = self.parts()?;
        let removed = store
            .take(Kind::Vault, &entry_key(user, upstream, kind))
            .await?
            .is_some();
        if removed {
            self.changed(user, upstream, kind);
        }
        self.change_index(user, |items| {
            items.retain(|(u, k)| !(u == upstream && *k == kind));
        })
        .await?;
        if removed {
            tracing::debug!(target: "mcp_oauth_gateway::vault", upstream, kind = kind.as_str(), "vault entry revoked");
        }
        Ok(removed)
    }

    async fn index(&self, user: &str) -> Result<Vec<(String, EntryKind)>, VaultError> {
        let (store, _) = self.parts()?;
        Ok(match store.get(Kind::Vault, &index_key(user)).await? {
            // An index that does not decode lists nothing; the next change rewrites it.
            Some(stored) => serde_json::from_slice(&stored.data).unwrap_or_default(),
            None => Vec::new(),
        })
    }

    /// Changes `user`'s index under the user's lock (shared by every instance of the store).
    async fn change_index(
        &self,
        user: &str,
        change: impl FnOnce(&mut Vec<(String, EntryKind)>),
    ) -> Result<(), VaultError> {
        let (store, _) = self.parts()?;
        let lock = lock_key(user);
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        // This holder's mark: the lock is released only while it is still this holder's (one
        // that outlived LOCK_LIFE must not remove the next holder's lock).
        let mut mark = [0u8; 16];
        aws_lc_rs::rand::fill(&mut mark)
            .map_err(|_| StoreError::unavailable("no randomness for the vault's lock"))?;
        loop {
            if store
                .put_if_absent(Kind::Vault, &lock, mark.to_vec(), Some(now() + LOCK_LIFE))
                .await?
            {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(VaultError::Busy);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let result = async {
            let mut items = self.index(user).await?;
            change(&mut items);
            let data = serde_json::to_vec(&items)
                .map_err(|e| StoreError::invalid(format!("a vault index does not encode: {e}")))?;
            store.put(Kind::Vault, &index_key(user), data, None).await?;
            Ok::<(), VaultError>(())
        }
        .await;
        let released = match store.get(Kind::Vault, &lock).await {
            Ok(Some(held)) if held.data == mark => store.take(Kind::Vault, &lock).await.map(drop),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        result?;
        released?;
        Ok(())
    }
}

/// The associated data of an entry's blob: the user and the whole header.
fn context(user: &str, header: &EntryHeader) -> String {
    let header = serde_json::to_string(header).unwrap_or_default();
    format!("mcp-oauth-gateway vault v1\u{0}{user}\u{0}{header}")
}

fn hash(parts: &[&str]) -> String {
    let mut data = Vec::new();
    for part in parts {
        data.extend_from_slice(&(part.len() as u64).to_be_bytes());
        data.extend_from_slice(part.as_bytes());
    }
    URL_SAFE_NO_PAD.encode(digest(&SHA256, &data).as_ref())
}

fn entry_key(user: &str, upstream: &str, kind: EntryKind) -> String {
    format!("e:{}", hash(&[user, upstream, kind.as_str()]))
}

fn index_key(user: &str) -> String {
    format!("i:{}", hash(&[user]))
}

fn lock_key(user: &str) -> String {
    format!("l:{}", hash(&[user]))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use mcp_oauth::auth_server::MemoryStore;

    use super::*;

    fn vault(store: Arc<dyn Store>, key: u8) -> Vault {
        Vault::new(store, &[key; 32]).expect("vault")
    }

    async fn exercise(store: Arc<dyn Store>) {
        let vault = vault(store.clone(), 7);
        assert!(vault.list("alice").await.expect("list").is_empty());
        assert!(
            vault
                .get("alice", "github", EntryKind::UserSecret)
                .await
                .expect("get")
                .is_none()
        );
        let header = vault
            .put("alice", "github", EntryKind::UserSecret, b"ghp_alice", None)
            .await
            .expect("put");
        assert_eq!(header.upstream, "github");
        assert_eq!(header.created_at, header.updated_at);
        vault
            .put(
                "alice",
                "linear",
                EntryKind::UserOauth,
                b"{\"grant\":1}",
                Some(now() + 3600),
            )
            .await
            .expect("put");
        vault
            .put("bob", "github", EntryKind::UserSecret, b"ghp_bob", None)
            .await
            .expect("put");

        let entry = vault
            .get("alice", "github", EntryKind::UserSecret)
            .await
            .expect("get")
            .expect("alice's entry");
        assert_eq!(entry.secret.expose(), b"ghp_alice");
        assert!(!format!("{entry:?}").contains("ghp_alice"));
        let listed = vault.list("alice").await.expect("list");
        assert_eq!(
            listed
                .iter()
                .map(|h| (h.upstream.as_str(), h.kind))
                .collect::<Vec<_>>(),
            [
                ("github", EntryKind::UserSecret),
                ("linear", EntryKind::UserOauth)
            ]
        );
        assert!(listed[1].expires_at.is_some());
        assert!(
            vault
                .get("alice", "github", EntryKind::UserOauth)
                .await
                .expect("get")
                .is_none(),
            "another kind is another entry"
        );

        // A replacement keeps the creation time and changes the secret.
        let replaced = vault
            .put(
                "alice",
                "github",
                EntryKind::UserSecret,
                b"ghp_alice_2",
                None,
            )
            .await
            .expect("replace");
        assert_eq!(replaced.created_at, header.created_at);
        let entry = vault
            .get("alice", "github", EntryKind::UserSecret)
            .await
            .expect("get")
            .expect("entry");
        assert_eq!(entry.secret.expose(), b"ghp_alice_2");
        assert_eq!(vault.list("alice").await.expect("list").len(), 2);

        // Revoking one user's entry leaves the other user's.
        assert!(
            vault
                .revoke("alice", "github", EntryKind::UserSecret)
                .await
                .expect("revoke")
        );
        assert!(
            !vault
                .revoke("alice", "github", EntryKind::UserSecret)
                .await
                .expect("revoke twice")
        );
        assert!(
            vault
                .get("alice", "github", EntryKind::UserSecret)
                .await
                .expect("get")
                .is_none()
        );
        assert_eq!(vault.list("alice").await.expect("list").len(), 1);
        let bob = vault
            .get("bob", "github", EntryKind::UserSecret)
            .await
            .expect("get")
            .expect("bob's entry");
        assert_eq!(bob.secret.expose(), b"ghp_bob");

        // A second instance on the same store and key reads the same entries.
        let other = self::vault(store.clone(), 7);
        assert_eq!(other.list("bob").await.expect("list").len(), 1);
        // Another key does not open them.
        let stranger = self::vault(store, 8);
        assert!(matches!(
            stranger.get("bob", "github", EntryKind::UserSecret).await,
            Err(VaultError::Unreadable)
        ));
    }

    #[tokio::test]
    async fn entries_are_per_user_upstream_and_kind_in_memory() {
        exercise(Arc::new(MemoryStore::new())).await;
    }

    #[tokio::test]
    async fn entries_are_per_user_upstream_and_kind_in_sqlite() {
        let dir =
            std::env::temp_dir().join(format!("mcp-oauth-vault-{}-{}", std::process::id(), now()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("vault.db");
        let store = mcp_oauth::auth_server::store::SqliteStore::open(&path).expect("sqlite");
        exercise(Arc::new(store)).await;
        // Reopened (a restart), the entries are still there and still open.
        let reopened = mcp_oauth::auth_server::store::SqliteStore::open(&path).expect("reopen");
        let vault = vault(Arc::new(reopened), 7);
        let bob = vault
            .get("bob", "github", EntryKind::UserSecret)
            .await
            .expect("get")
            .expect("entry after a restart");
        assert_eq!(bob.secret.expose(), b"ghp_bob");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_tampered_blob_or_header_does_not_open() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let vault = vault(store.clone(), 7);
        vault
            .put("alice", "github", EntryKind::UserSecret, b"ghp_alice", None)
            .await
            .expect("put");
        let key = entry_key("alice", "github", EntryKind::UserSecret);
        let original = store
            .get(Kind::Vault, &key)
            .await
            .expect("get")
            .expect("record")
            .data;
        let text = String::from_utf8(original.clone()).expect("json");
        assert!(!text.contains("ghp_alice"), "sealed at rest: {text}");
        assert!(!text.contains("alice"), "no user in the record: {text}");

        let mut record: serde_json::Value = serde_json::from_slice(&original).expect("json");
        let sealed = record["sealed"].as_str().expect("sealed").to_owned();
        let mut bytes = sealed.into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        record["sealed"] = String::from_utf8(bytes).expect("ascii").into();
        store
            .put(
                Kind::Vault,
                &key,
                serde_json::to_vec(&record).expect("json"),
                None,
            )
            .await
            .expect("put");
        assert!(matches!(
            vault.get("alice", "github", EntryKind::UserSecret).await,
            Err(VaultError::Unreadable)
        ));

        let mut record: serde_json::Value = serde_json::from_slice(&original).expect("json");
        record["created_at"] = 1.into();
        store
            .put(
                Kind::Vault,
                &key,
                serde_json::to_vec(&record).expect("json"),
                None,
            )
            .await
            .expect("put");
        assert!(
            matches!(
                vault.get("alice", "github", EntryKind::UserSecret).await,
                Err(VaultError::Unreadable)
            ),
            "the header is bound to the blob"
        );
        store
            .put(Kind::Vault, &key, b"not json".to_vec(), None)
            .await
            .expect("put");
        assert!(matches!(
            vault.get("alice", "github", EntryKind::UserSecret).await,
            Err(VaultError::Unreadable)
        ));
        assert_eq!(
            vault.list("alice").await.expect("list"),
            [],
            "a record that does not decode is not listed"
        );
    }

    #[tokio::test]
    async fn another_users_blob_does_not_open_under_ones_own_key() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let vault = vault(store.clone(), 7);
        vault
            .put("bob", "github", EntryKind::UserSecret, b"ghp_bob", None)
            .await
            .expect("put");
        // The store is written by someone who copies Bob's record into Alice's slot.
        let bob = store
            .get(
                Kind::Vault,
                &entry_key("bob", "github", EntryKind::UserSecret),
            )
            .await
            .expect("get")
            .expect("record");
        store
            .put(
                Kind::Vault,
                &entry_key("alice", "github", EntryKind::UserSecret),
                bob.data,
                None,
            )
            .await
            .expect("put");
        assert!(matches!(
            vault.get("alice", "github", EntryKind::UserSecret).await,
            Err(VaultError::Unreadable)
        ));
        // And another upstream's slot of Bob's.
        let bob = store
            .get(
                Kind::Vault,
                &entry_key("bob", "github", EntryKind::UserSecret),
            )
            .await
            .expect("get")
            .expect("record");
        store
            .put(
                Kind::Vault,
                &entry_key("bob", "gitlab", EntryKind::UserSecret),
                bob.data,
                None,
            )
            .await
            .expect("put");
        assert!(matches!(
            vault.get("bob", "gitlab", EntryKind::UserSecret).await,
            Err(VaultError::Unreadable)
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_puts_of_one_user_keep_every_entry_in_the_index() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let a = vault(store.clone(), 7);
        let b = vault(store, 7);
        let mut tasks = Vec::new();
        for i in 0..12 {
            let v = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                v.put(
                    "alice",
                    &format!("up{i}"),
                    EntryKind::UserSecret,
                    b"s",
                    None,
                )
                .await
                .expect("put");
            }));
        }
        for task in tasks {
            task.await.expect("task");
        }
        assert_eq!(a.list("alice").await.expect("list").len(), 12);
    }

    #[tokio::test]
    async fn a_late_vault_is_unavailable_until_opened() {
        let vault = Vault::late();
        assert!(matches!(
            vault.get("alice", "github", EntryKind::UserSecret).await,
            Err(VaultError::Store(_))
        ));
        let clone = vault.clone();
        vault
            .open(Arc::new(MemoryStore::new()), &[7; 32])
            .expect("open");
        clone
            .put("alice", "github", EntryKind::UserSecret, b"s", None)
            .await
            .expect("the clone is opened too");
        assert_eq!(vault.list("alice").await.expect("list").len(), 1);
    }

    #[tokio::test]
    async fn hooks_hear_of_saved_and_removed_entries_until_dropped() {
        let vault = vault(Arc::new(MemoryStore::new()), 2);
        let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = heard.clone();
        let hook: Arc<ChangeHook> = Arc::new(move |user: &str, upstream: &str, kind| {
            sink.lock()
                .expect("lock")
                .push(format!("{user}/{upstream}/{}", kind.as_str()));
        });
        vault.clone().on_change(&hook);
        vault
            .put("alice", "github", EntryKind::UserSecret, b"s", None)
            .await
            .expect("put");
        assert!(
            !vault
                .revoke("bob", "github", EntryKind::UserSecret)
                .await
                .expect("revoke")
        );
        assert!(
            vault
                .revoke("alice", "github", EntryKind::UserSecret)
                .await
                .expect("revoke")
        );
        assert_eq!(
            *heard.lock().expect("lock"),
            ["alice/github/user-secret", "alice/github/user-secret"],
            "a save and a removal; nothing for an entry that was not there"
        );
        drop(hook);
        vault
            .put("alice", "github", EntryKind::UserSecret, b"s", None)
            .await
            .expect("put");
        assert_eq!(
            heard.lock().expect("lock").len(),
            2,
            "a dropped hook is not called"
        );
    }

    #[test]
    fn secrets_and_the_vault_never_print() {
        let secret = VaultSecret(b"ghp_secret".to_vec());
        assert_eq!(format!("{secret:?}"), "VaultSecret([redacted])");
        let vault = vault(Arc::new(MemoryStore::new()), 1);
        assert_eq!(format!("{vault:?}"), "Vault([redacted])");
        assert!(Vault::new(Arc::new(MemoryStore::new()), &[0; 16]).is_err());
    }
}
