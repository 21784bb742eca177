//! Store conformance: one suite, written against `Arc<dyn Store>`, run for every store.
//!
//! The records are `#[non_exhaustive]`, so they are built from JSON here, as a store would
//! read them back.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use mcp_oauth::auth_server::store::{
    AuthRequestRecord, ClientRecord, CodeRecord, EntryKind, MemoryStore, Redeemed, RefreshRecord,
    Store,
};
use serde_json::json;

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("seconds fit in i64")
}

fn client(client_id: &str, redirect_uri: &str) -> ClientRecord {
    serde_json::from_value(json!({
        "client_id": client_id,
        "secret_hash": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "redirect_uris": [redirect_uri],
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["authorization_code", "refresh_token"],
        "application_type": "web",
        "client_name": "Conformance",
        "scope": "mcp:read mcp:write",
        "metadata": { "logo_uri": "https://client.example/logo.png", "contacts": ["a@example.com"] },
        "issued_at": 1_700_000_000,
        "from_metadata_document": false
    }))
    .expect("a client record")
}

fn request(expires_at: i64) -> AuthRequestRecord {
    serde_json::from_value(json!({
        "client_id": "c",
        "redirect_uri": "http://127.0.0.1:9/cb",
        "state": "xyz",
        "scope": ["mcp:read"],
        "resource": "https://mcp.example/mcp",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "csrf": "csrf-token",
        "expires_at": expires_at
    }))
    .expect("a request record")
}

fn code(family: &str, expires_at: i64) -> CodeRecord {
    serde_json::from_value(json!({
        "client_id": "c",
        "redirect_uri": "http://127.0.0.1:9/cb",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "scope": ["mcp:read", "offline_access"],
        "resource": "https://mcp.example/mcp",
        "subject": "alice",
        "user_claims": { "email": "alice@example.com", "name": "Alice" },
        "family": family,
        "expires_at": expires_at
    }))
    .expect("a code record")
}

fn refresh_token(family: &str, expires_at: i64) -> RefreshRecord {
    serde_json::from_value(json!({
        "client_id": "c",
        "scope": ["mcp:read"],
        "resource": "https://mcp.example/mcp",
        "subject": "alice",
        "user_claims": { "email": "alice@example.com" },
        "family": family,
        "expires_at": expires_at
    }))
    .expect("a refresh record")
}

// ---- the contract ------------------------------------------------------------------------

async fn clients_are_saved_read_and_replaced(store: Arc<dyn Store>) {
    assert_eq!(store.client("c").await.expect("read"), None);
    let first = client("c", "https://client.example/cb");
    store.put_client(first.clone()).await.expect("put");
    assert_eq!(store.client("c").await.expect("read"), Some(first));

    let second = client("c", "https://client.example/other");
    store.put_client(second.clone()).await.expect("replace");
    assert_eq!(store.client("c").await.expect("read"), Some(second));
    assert_eq!(store.client("unknown").await.expect("read"), None);
}

async fn requests_are_read_then_taken_once(store: Arc<dyn Store>) {
    let live = request(now() + 600);
    store.put_request("r1", live.clone()).await.expect("put");
    assert_eq!(store.request("r1").await.expect("read"), Some(live.clone()));
    assert_eq!(
        store.request("r1").await.expect("read again"),
        Some(live.clone()),
        "reading does not consume"
    );
    assert_eq!(store.take_request("r1").await.expect("take"), Some(live));
    assert_eq!(store.take_request("r1").await.expect("take again"), None);
    assert_eq!(store.request("r1").await.expect("read after take"), None);
    assert_eq!(store.take_request("unknown").await.expect("take"), None);
}

async fn expired_requests_are_gone(store: Arc<dyn Store>) {
    store
        .put_request("old", request(now() - 1))
        .await
        .expect("put");
    assert_eq!(store.request("old").await.expect("read"), None);
    assert_eq!(store.take_request("old").await.expect("take"), None);
}

async fn codes_are_fresh_then_replayed(store: Arc<dyn Store>) {
    let record = code("f1", now() + 60);
    store.put_code("h1", record.clone()).await.expect("put");
    assert_eq!(
        store.redeem_code("h1").await.expect("redeem"),
        Redeemed::Fresh(record.clone())
    );
    assert_eq!(
        store.redeem_code("h1").await.expect("redeem again"),
        Redeemed::Replayed(record.clone())
    );
    assert_eq!(
        store.redeem_code("h1").await.expect("redeem a third time"),
        Redeemed::Replayed(record)
    );
    assert_eq!(
        store.redeem_code("unknown").await.expect("redeem unknown"),
        Redeemed::Missing
    );
}

async fn expired_codes_are_missing(store: Arc<dyn Store>) {
    store
        .put_code("old", code("f1", now() - 1))
        .await
        .expect("put");
    assert_eq!(
        store.redeem_code("old").await.expect("redeem"),
        Redeemed::Missing
    );
    assert_eq!(
        store.redeem_code("old").await.expect("redeem again"),
        Redeemed::Missing
    );
}

async fn refresh_tokens_are_fresh_then_replayed(store: Arc<dyn Store>) {
    let record = refresh_token("f1", now() + 600);
    store.put_refresh("h1", record.clone()).await.expect("put");
    assert_eq!(
        store.redeem_refresh("h1").await.expect("redeem"),
        Redeemed::Fresh(record.clone())
    );
    assert_eq!(
        store.redeem_refresh("h1").await.expect("redeem again"),
        Redeemed::Replayed(record)
    );
    assert_eq!(
        store
            .redeem_refresh("unknown")
            .await
            .expect("redeem unknown"),
        Redeemed::Missing
    );
}

async fn refresh_peek_does_not_consume(store: Arc<dyn Store>) {
    let record = refresh_token("f1", now() + 600);
    store.put_refresh("h1", record.clone()).await.expect("put");
    assert_eq!(
        store.refresh("h1").await.expect("peek"),
        Some(record.clone())
    );
    assert_eq!(
        store.refresh("h1").await.expect("peek again"),
        Some(record.clone())
    );
    assert_eq!(
        store
            .redeem_refresh("h1")
            .await
            .expect("redeem after peeks"),
        Redeemed::Fresh(record.clone())
    );
    // Revoking a rotated-out token must still find its family.
    assert_eq!(
        store.refresh("h1").await.expect("peek after use"),
        Some(record)
    );
    assert_eq!(store.refresh("unknown").await.expect("peek unknown"), None);
}

async fn expired_refresh_tokens_are_missing(store: Arc<dyn Store>) {
    store
        .put_refresh("old", refresh_token("f1", now() - 1))
        .await
        .expect("put");
    assert_eq!(store.refresh("old").await.expect("peek"), None);
    assert_eq!(
        store.redeem_refresh("old").await.expect("redeem"),
        Redeemed::Missing
    );
}

async fn revoked_families_lapse(store: Arc<dyn Store>) {
    store
        .revoke_family("live", now() + 600)
        .await
        .expect("revoke");
    store
        .revoke_family("lapsed", now() - 1)
        .await
        .expect("revoke");
    assert!(store.is_family_revoked("live").await.expect("read"));
    assert!(!store.is_family_revoked("lapsed").await.expect("read"));
    assert!(!store.is_family_revoked("never").await.expect("read"));
}

/// Counts the outcomes of `n` concurrent redemptions: (fresh, replayed, missing).
async fn race<T, F, Fut>(n: usize, mut redeem: F) -> (usize, usize, usize)
where
    T: Send + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Redeemed<T>> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(redeem())).collect();
    let mut counts = (0, 0, 0);
    for task in tasks {
        match task.await.expect("task") {
            Redeemed::Fresh(_) => counts.0 += 1,
            Redeemed::Replayed(_) => counts.1 += 1,
            Redeemed::Missing => counts.2 += 1,
        }
    }
    counts
}

async fn concurrent_code_redemptions_have_one_winner(store: Arc<dyn Store>) {
    store
        .put_code("h", code("f1", now() + 60))
        .await
        .expect("put");
    let counts = race(50, || {
        let store = Arc::clone(&store);
        async move { store.redeem_code("h").await.expect("redeem") }
    })
    .await;
    assert_eq!(counts, (1, 49, 0));
}

async fn concurrent_refresh_redemptions_have_one_winner(store: Arc<dyn Store>) {
    store
        .put_refresh("h", refresh_token("f1", now() + 600))
        .await
        .expect("put");
    let counts = race(50, || {
        let store = Arc::clone(&store);
        async move { store.redeem_refresh("h").await.expect("redeem") }
    })
    .await;
    assert_eq!(counts, (1, 49, 0));
}

async fn concurrent_takes_have_one_winner(store: Arc<dyn Store>) {
    store
        .put_request("r", request(now() + 600))
        .await
        .expect("put");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.take_request("r").await.expect("take") })
        })
        .collect();
    let mut taken = 0;
    for task in tasks {
        taken += usize::from(task.await.expect("task").is_some());
    }
    assert_eq!(taken, 1);
}

async fn entries_are_kept_by_kind_read_and_taken_once(store: Arc<dyn Store>) {
    let later = now() + 600;
    store
        .put_entry(EntryKind::Transaction, "k", "{\"a\":1}".into(), later)
        .await
        .expect("put");
    store
        .put_entry(EntryKind::Consent, "k", "other kind".into(), later)
        .await
        .expect("put");
    assert_eq!(
        store
            .entry(EntryKind::Transaction, "k")
            .await
            .expect("read")
            .as_deref(),
        Some("{\"a\":1}")
    );
    assert_eq!(
        store
            .entry(EntryKind::Consent, "k")
            .await
            .expect("read")
            .as_deref(),
        Some("other kind")
    );
    store
        .put_entry(EntryKind::Transaction, "k", "replaced".into(), later)
        .await
        .expect("put");
    assert_eq!(
        store
            .take_entry(EntryKind::Transaction, "k")
            .await
            .expect("take")
            .as_deref(),
        Some("replaced")
    );
    assert_eq!(
        store
            .take_entry(EntryKind::Transaction, "k")
            .await
            .expect("take"),
        None
    );
    assert_eq!(
        store
            .entry(EntryKind::Consent, "k")
            .await
            .expect("read")
            .as_deref(),
        Some("other kind")
    );
    store
        .put_entry(EntryKind::UpstreamTokens, "old", "x".into(), now() - 1)
        .await
        .expect("put");
    assert_eq!(
        store
            .entry(EntryKind::UpstreamTokens, "old")
            .await
            .expect("read"),
        None
    );
    assert_eq!(
        store
            .take_entry(EntryKind::UpstreamTokens, "old")
            .await
            .expect("take"),
        None
    );
}

async fn concurrent_entry_takes_have_one_winner(store: Arc<dyn Store>) {
    store
        .put_entry(EntryKind::Transaction, "state", "t".into(), now() + 600)
        .await
        .expect("put");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .take_entry(EntryKind::Transaction, "state")
                    .await
                    .expect("take")
            })
        })
        .collect();
    let mut taken = 0;
    for task in tasks {
        taken += usize::from(task.await.expect("task").is_some());
    }
    assert_eq!(taken, 1);
}

// ---- the stores under test -------------------------------------------------------------

/// A folder under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "mcp-oauth-store-{name}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn memory_store() -> (Arc<dyn Store>, Option<TempDir>) {
    (Arc::new(MemoryStore::new()), None)
}

#[cfg(feature = "sqlite")]
fn sqlite_memory_store() -> (Arc<dyn Store>, Option<TempDir>) {
    let store = mcp_oauth::auth_server::store::SqliteStore::in_memory().expect("in-memory store");
    (Arc::new(store), None)
}

#[cfg(feature = "sqlite")]
fn sqlite_file_store() -> (Arc<dyn Store>, Option<TempDir>) {
    let dir = TempDir::new("suite");
    let store =
        mcp_oauth::auth_server::store::SqliteStore::open(dir.path().join("auth.db")).expect("open");
    (Arc::new(store), Some(dir))
}

/// Runs every contract test against the store `$make` builds.
macro_rules! conformance {
    ($name:ident, $make:ident) => {
        mod $name {
            macro_rules! case {
                ($test:ident) => {
                    #[tokio::test]
                    async fn $test() {
                        let (store, _dir) = super::$make();
                        super::$test(store).await;
                    }
                };
                (concurrent $test:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $test() {
                        let (store, _dir) = super::$make();
                        super::$test(store).await;
                    }
                };
            }

            case!(clients_are_saved_read_and_replaced);
            case!(requests_are_read_then_taken_once);
            case!(expired_requests_are_gone);
            case!(codes_are_fresh_then_replayed);
            case!(expired_codes_are_missing);
            case!(refresh_tokens_are_fresh_then_replayed);
            case!(refresh_peek_does_not_consume);
            case!(expired_refresh_tokens_are_missing);
            case!(revoked_families_lapse);
            case!(concurrent concurrent_code_redemptions_have_one_winner);
            case!(concurrent concurrent_refresh_redemptions_have_one_winner);
            case!(concurrent concurrent_takes_have_one_winner);
            case!(entries_are_kept_by_kind_read_and_taken_once);
            case!(concurrent concurrent_entry_takes_have_one_winner);
        }
    };
}

conformance!(memory, memory_store);
#[cfg(feature = "sqlite")]
conformance!(sqlite_in_memory, sqlite_memory_store);
#[cfg(feature = "sqlite")]
conformance!(sqlite_file, sqlite_file_store);

// ---- SQLite only -----------------------------------------------------------------------

#[cfg(feature = "sqlite")]
mod sqlite_only {
    use super::*;
    use mcp_oauth::auth_server::store::SqliteStore;

    #[tokio::test]
    async fn data_survives_closing_and_reopening_the_file() {
        let dir = TempDir::new("reopen");
        let path = dir.path().join("nested").join("auth.db");
        let stored_client = client("c", "https://client.example/cb");
        let stored_request = request(now() + 600);
        let stored_code = code("f1", now() + 60);
        let stored_refresh = refresh_token("f1", now() + 600);
        {
            let store = SqliteStore::open(&path).expect("open");
            store.put_client(stored_client.clone()).await.expect("put");
            store
                .put_request("r", stored_request.clone())
                .await
                .expect("put");
            store
                .put_code("used", stored_code.clone())
                .await
                .expect("put");
            store
                .put_code("unused", stored_code.clone())
                .await
                .expect("put");
            assert_eq!(
                store.redeem_code("used").await.expect("redeem"),
                Redeemed::Fresh(stored_code.clone())
            );
            store
                .put_refresh("rt", stored_refresh.clone())
                .await
                .expect("put");
            store
                .revoke_family("f0", now() + 600)
                .await
                .expect("revoke");
        }

        let store = SqliteStore::open(&path).expect("reopen");
        assert_eq!(store.client("c").await.expect("read"), Some(stored_client));
        assert_eq!(
            store.take_request("r").await.expect("take"),
            Some(stored_request)
        );
        assert_eq!(
            store.redeem_code("used").await.expect("redeem"),
            Redeemed::Replayed(stored_code.clone()),
            "the used flag survives"
        );
        assert_eq!(
            store.redeem_code("unused").await.expect("redeem"),
            Redeemed::Fresh(stored_code)
        );
        assert_eq!(
            store.redeem_refresh("rt").await.expect("redeem"),
            Redeemed::Fresh(stored_refresh)
        );
        assert!(store.is_family_revoked("f0").await.expect("read"));
        drop(store);
        drop(dir);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_database_file_is_private() {
        use std::os::unix::fs::PermissionsExt as _;

        let dir = TempDir::new("mode");
        let path = dir.path().join("auth.db");
        let store = SqliteStore::open(&path).expect("open");
        store
            .put_code("h", code("f1", now() + 60))
            .await
            .expect("put");
        // The WAL and shared-memory files exist while the store is open (WAL mode).
        for file in [
            path.clone(),
            path.with_extension("db-wal"),
            path.with_extension("db-shm"),
        ] {
            let meta = std::fs::metadata(&file).expect("the file exists");
            assert_eq!(
                meta.permissions().mode() & 0o777,
                0o600,
                "{}",
                file.display()
            );
        }
        drop(store);

        // A file that already existed with a looser mode is tightened on open.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let _store = SqliteStore::open(&path).expect("reopen");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_connections_to_one_file_redeem_a_code_once() {
        // Two stores on one file stand for two processes: only the database serializes them.
        let dir = TempDir::new("two");
        let path = dir.path().join("auth.db");
        let a: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).expect("open a"));
        let b: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).expect("open b"));
        a.put_code("h", code("f1", now() + 60)).await.expect("put");
        let mut turn = 0_usize;
        let counts = race(50, || {
            turn += 1;
            let store = if turn.is_multiple_of(2) {
                Arc::clone(&a)
            } else {
                Arc::clone(&b)
            };
            async move { store.redeem_code("h").await.expect("redeem") }
        })
        .await;
        assert_eq!(counts, (1, 49, 0));
    }

    #[tokio::test]
    async fn errors_name_the_path_that_failed() {
        let dir = TempDir::new("bad");
        let path = dir.path().join("not-a-db");
        std::fs::write(&path, vec![b'x'; 4096]).expect("write");
        let err = SqliteStore::open(&path).expect_err("not a database");
        let message = err.to_string();
        assert!(message.starts_with("store: sqlite: cannot"), "{message}");
        assert!(message.contains("not-a-db"), "{message}");
    }
}
