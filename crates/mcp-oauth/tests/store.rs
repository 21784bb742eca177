//! Store conformance: one suite, written against `Arc<dyn Store>`, run for every store.
//!
//! The records are `#[non_exhaustive]`, so they are built from JSON here, as a store would
//! read them back.
//!
//! The Redis cases (feature `redis`) start a private `redis-server` per test, on a free
//! loopback port and without persistence, and kill it when the test ends: Debian's
//! `/usr/bin/redis-server`, which `scripts/redis-server` installs, or the binary that
//! `MCP_OAUTH_REDIS_SERVER` names.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use mcp_oauth::auth_server::store::{
    AuthRequestRecord, ClientRecord, CodeRecord, EntryKind, Kind, MemoryStore, Redeemed,
    RefreshRecord, Store, StoreErrorKind, Stored,
};
use serde_json::{Value, json};

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

/// A client record as dynamic registration writes it: lapsing at `expires_at` (F7).
fn lapsing_client(client_id: &str, expires_at: Option<i64>) -> ClientRecord {
    let mut record = client(client_id, "https://client.example/cb");
    record.expires_at = expires_at;
    record
}

async fn unused_registrations_lapse_and_kept_ones_stay(store: Arc<dyn Store>) {
    let lapsed = lapsing_client("lapsed", Some(now() - 1));
    store.put_client(lapsed).await.expect("put");
    assert_eq!(
        store.client("lapsed").await.expect("read"),
        None,
        "a registration past its expiry is unknown"
    );
    let fresh = lapsing_client("fresh", Some(now() + 600));
    store.put_client(fresh.clone()).await.expect("put");
    assert_eq!(store.client("fresh").await.expect("read"), Some(fresh));
    // The client completed an authorization: kept for good, even past the old expiry.
    let kept = lapsing_client("fresh", None);
    store.put_client(kept.clone()).await.expect("keep");
    assert_eq!(store.client("fresh").await.expect("read"), Some(kept));
}

async fn code_peeks_do_not_consume(store: Arc<dyn Store>) {
    let record = code("f1", now() + 60);
    store.put_code("h1", record.clone()).await.expect("put");
    for _ in 0..2 {
        assert_eq!(
            store.peek_code("h1").await.expect("peek"),
            Redeemed::Fresh(record.clone()),
            "a peek leaves the code unused"
        );
    }
    assert_eq!(
        store.redeem_code("h1").await.expect("redeem after peeks"),
        Redeemed::Fresh(record.clone())
    );
    assert_eq!(
        store.peek_code("h1").await.expect("peek after use"),
        Redeemed::Replayed(record)
    );
    assert_eq!(
        store.peek_code("unknown").await.expect("peek unknown"),
        Redeemed::Missing
    );
    store
        .put_code("old", code("f1", now() - 1))
        .await
        .expect("put");
    assert_eq!(
        store.peek_code("old").await.expect("peek expired"),
        Redeemed::Missing
    );
}

async fn refresh_peeks_tell_used_from_unused(store: Arc<dyn Store>) {
    let record = refresh_token("f1", now() + 600);
    store.put_refresh("h1", record.clone()).await.expect("put");
    assert_eq!(
        store.peek_refresh("h1").await.expect("peek"),
        Redeemed::Fresh(record.clone())
    );
    assert_eq!(
        store.redeem_refresh("h1").await.expect("redeem"),
        Redeemed::Fresh(record.clone())
    );
    assert_eq!(
        store.peek_refresh("h1").await.expect("peek after use"),
        Redeemed::Replayed(record)
    );
    store
        .put_refresh("old", refresh_token("f1", now() - 1))
        .await
        .expect("put");
    assert_eq!(
        store.peek_refresh("old").await.expect("peek expired"),
        Redeemed::Missing
    );
    assert_eq!(
        store.peek_refresh("unknown").await.expect("peek unknown"),
        Redeemed::Missing
    );
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

async fn revocations_are_never_shortened(store: Arc<dyn Store>) {
    store.revoke_family("f", now() + 600).await.expect("revoke");
    store
        .revoke_family("f", now() - 1)
        .await
        .expect("revoke for less");
    assert!(
        store.is_family_revoked("f").await.expect("read"),
        "a shorter revocation keeps the longer one"
    );
    store
        .revoke_family("g", now() - 1)
        .await
        .expect("revoke lapsed");
    store
        .revoke_family("g", now() + 600)
        .await
        .expect("revoke for longer");
    assert!(
        store.is_family_revoked("g").await.expect("read"),
        "a longer revocation replaces a shorter one"
    );
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
        .put_entry(EntryKind::Transaction, "k", &json!({"a": 1}), later)
        .await
        .expect("put");
    store
        .put_entry(EntryKind::Consent, "k", "other kind", later)
        .await
        .expect("put");
    assert_eq!(
        store
            .entry::<Value>(EntryKind::Transaction, "k")
            .await
            .expect("read"),
        Some(json!({"a": 1}))
    );
    assert_eq!(
        store
            .entry::<String>(EntryKind::Consent, "k")
            .await
            .expect("read")
            .as_deref(),
        Some("other kind")
    );
    // A record read as the wrong type is damaged, not missing.
    let err = store
        .entry::<u64>(EntryKind::Consent, "k")
        .await
        .expect_err("a string is no number");
    assert_eq!(err.kind(), StoreErrorKind::Damaged, "{err}");
    store
        .put_entry(EntryKind::Transaction, "k", "replaced", later)
        .await
        .expect("put");
    assert_eq!(
        store
            .take_entry::<String>(EntryKind::Transaction, "k")
            .await
            .expect("take")
            .as_deref(),
        Some("replaced")
    );
    assert_eq!(
        store
            .take_entry::<String>(EntryKind::Transaction, "k")
            .await
            .expect("take"),
        None
    );
    assert_eq!(
        store
            .entry::<String>(EntryKind::Consent, "k")
            .await
            .expect("read")
            .as_deref(),
        Some("other kind")
    );
    store
        .put_entry(EntryKind::UpstreamTokens, "old", "x", now() - 1)
        .await
        .expect("put");
    assert_eq!(
        store
            .entry::<String>(EntryKind::UpstreamTokens, "old")
            .await
            .expect("read"),
        None
    );
    assert_eq!(
        store
            .take_entry::<String>(EntryKind::UpstreamTokens, "old")
            .await
            .expect("take"),
        None
    );
}

/// Keys are the callers' strings, whatever they hold: the proxy's consent key joins subject and
/// client with a NUL, a client assertion's record joins client id and `jti` the same way, and
/// subjects, client ids and `jti`s are the other party's choice.
async fn keys_may_hold_any_character(store: Arc<dyn Store>) {
    let later = now() + 600;
    let keys = [
        "alice\u{0}client",
        "alice\u{0}other",
        "\u{1}b64:YWxpY2U",
        "back\\slash 'quote' \"double\" é 🔑",
    ];
    for (i, key) in keys.iter().enumerate() {
        store
            .put_entry(EntryKind::Consent, key, &json!(i), later)
            .await
            .unwrap_or_else(|e| panic!("put {key:?}: {e}"));
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            store
                .entry::<Value>(EntryKind::Consent, key)
                .await
                .unwrap_or_else(|e| panic!("read {key:?}: {e}")),
            Some(json!(i)),
            "{key:?}"
        );
    }
    assert!(
        store
            .put_if_absent(
                Kind::ClientAssertion,
                "svc\u{0}jti-1",
                Vec::new(),
                Some(later)
            )
            .await
            .expect("first")
    );
    assert!(
        !store
            .put_if_absent(
                Kind::ClientAssertion,
                "svc\u{0}jti-1",
                Vec::new(),
                Some(later)
            )
            .await
            .expect("second"),
        "a key with a NUL is one key"
    );
    assert_eq!(
        store
            .take_entry::<Value>(EntryKind::Consent, "alice\u{0}client")
            .await
            .expect("take"),
        Some(json!(0))
    );
    assert_eq!(
        store
            .entry::<Value>(EntryKind::Consent, "alice\u{0}other")
            .await
            .expect("read"),
        Some(json!(1)),
        "taking one key leaves its neighbour"
    );
}

async fn concurrent_entry_takes_have_one_winner(store: Arc<dyn Store>) {
    store
        .put_entry(EntryKind::Transaction, "state", "t", now() + 600)
        .await
        .expect("put");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .take_entry::<String>(EntryKind::Transaction, "state")
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

/// The primitives themselves, on bytes that are not UTF-8: kinds never collide, a record
/// without an expiry stays, `put` replaces a used record with an unused one.
async fn primitives_keep_bytes_by_kind_and_key(store: Arc<dyn Store>) {
    let bytes = vec![0_u8, 0xff, 0xfe, b'{', 0x80];
    store
        .put(Kind::Consent, "k", bytes.clone(), None)
        .await
        .expect("put");
    store
        .put(Kind::Transaction, "k", b"other".to_vec(), Some(now() + 600))
        .await
        .expect("put");
    assert_eq!(
        store.get(Kind::Consent, "k").await.expect("get"),
        Some(Stored {
            data: bytes.clone(),
            used: false
        })
    );
    assert_eq!(store.get(Kind::Code, "k").await.expect("get"), None);
    assert_eq!(
        store.redeem(Kind::Consent, "k").await.expect("redeem"),
        Redeemed::Fresh(bytes.clone())
    );
    assert_eq!(
        store.get(Kind::Consent, "k").await.expect("get"),
        Some(Stored {
            data: bytes.clone(),
            used: true
        })
    );
    store
        .put(Kind::Consent, "k", b"new".to_vec(), None)
        .await
        .expect("replace");
    assert_eq!(
        store.redeem(Kind::Consent, "k").await.expect("redeem"),
        Redeemed::Fresh(b"new".to_vec()),
        "a replaced record is unused"
    );
    assert_eq!(
        store.take(Kind::Transaction, "k").await.expect("take"),
        Some(b"other".to_vec())
    );
    assert_eq!(
        store.take(Kind::Transaction, "k").await.expect("take"),
        None
    );
    store
        .put(Kind::Request, "old", b"x".to_vec(), Some(now() - 1))
        .await
        .expect("put");
    assert_eq!(store.get(Kind::Request, "old").await.expect("get"), None);
    assert_eq!(
        store.redeem(Kind::Request, "old").await.expect("redeem"),
        Redeemed::Missing
    );
    assert_eq!(store.take(Kind::Request, "old").await.expect("take"), None);
}

async fn put_if_absent_saves_once_until_the_record_lapses(store: Arc<dyn Store>) {
    let later = Some(now() + 600);
    assert!(
        store
            .put_if_absent(Kind::DpopProof, "p", Vec::new(), later)
            .await
            .expect("first")
    );
    assert!(
        !store
            .put_if_absent(Kind::DpopProof, "p", b"other".to_vec(), later)
            .await
            .expect("second"),
        "a live record is not replaced"
    );
    assert_eq!(
        store.get(Kind::DpopProof, "p").await.expect("get"),
        Some(Stored {
            data: Vec::new(),
            used: false
        }),
        "the first record is the one kept"
    );
    assert!(
        store
            .put_if_absent(Kind::Consent, "p", b"c".to_vec(), later)
            .await
            .expect("another kind"),
        "kinds never collide"
    );

    // A record past its expiry is absent: the next call saves over it.
    store
        .put(Kind::DpopProof, "lapsed", b"old".to_vec(), Some(now() - 1))
        .await
        .expect("put");
    assert!(
        store
            .put_if_absent(Kind::DpopProof, "lapsed", b"new".to_vec(), later)
            .await
            .expect("over a lapsed record")
    );
    assert_eq!(
        store.get(Kind::DpopProof, "lapsed").await.expect("get"),
        Some(Stored {
            data: b"new".to_vec(),
            used: false
        })
    );
    assert!(
        !store
            .put_if_absent(Kind::DpopProof, "lapsed", Vec::new(), later)
            .await
            .expect("again"),
        "the record that replaced the lapsed one is live"
    );

    // A record saved already lapsed never blocks the next.
    for _ in 0..2 {
        assert!(
            store
                .put_if_absent(Kind::DpopProof, "stale", Vec::new(), Some(now() - 1))
                .await
                .expect("lapsed on arrival")
        );
    }
    assert_eq!(
        store.get(Kind::DpopProof, "stale").await.expect("get"),
        None
    );

    // A used record that lapsed is replaced by an unused one; a kept record is never replaced.
    store
        .put(Kind::Code, "used", b"x".to_vec(), Some(now() - 1))
        .await
        .expect("put");
    assert!(
        store
            .put_if_absent(Kind::Code, "used", b"y".to_vec(), later)
            .await
            .expect("over a lapsed record")
    );
    assert_eq!(
        store.redeem(Kind::Code, "used").await.expect("redeem"),
        Redeemed::Fresh(b"y".to_vec())
    );
    store
        .put(Kind::Client, "kept", b"k".to_vec(), None)
        .await
        .expect("put");
    assert!(
        !store
            .put_if_absent(Kind::Client, "kept", b"z".to_vec(), later)
            .await
            .expect("over a kept record")
    );
    assert!(
        store
            .put_if_absent(Kind::Client, "forever", b"f".to_vec(), None)
            .await
            .expect("without an expiry")
    );
    assert!(
        !store
            .put_if_absent(Kind::Client, "forever", b"g".to_vec(), later)
            .await
            .expect("again")
    );
    assert_eq!(
        store
            .get(Kind::Client, "forever")
            .await
            .expect("get")
            .map(|s| s.data),
        Some(b"f".to_vec())
    );
}

/// Counts the saves among `n` concurrent `put_if_absent` calls with one key.
async fn put_if_absent_race(store: &Arc<dyn Store>, key: &str, n: usize) -> usize {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let store = Arc::clone(store);
            let key = key.to_owned();
            tokio::spawn(async move {
                store
                    .put_if_absent(
                        Kind::DpopProof,
                        &key,
                        i.to_string().into_bytes(),
                        Some(now() + 600),
                    )
                    .await
                    .expect("put_if_absent")
            })
        })
        .collect();
    let mut saved = 0;
    for task in tasks {
        saved += usize::from(task.await.expect("task"));
    }
    saved
}

async fn concurrent_put_if_absent_has_one_winner(store: Arc<dyn Store>) {
    assert_eq!(put_if_absent_race(&store, "fresh", 50).await, 1);
    // Over a lapsed record too: exactly one replaces it.
    store
        .put(Kind::DpopProof, "lapsed", b"old".to_vec(), Some(now() - 1))
        .await
        .expect("put");
    assert_eq!(put_if_absent_race(&store, "lapsed", 50).await, 1);
    let kept = store
        .get(Kind::DpopProof, "lapsed")
        .await
        .expect("get")
        .expect("the winner's record");
    assert_ne!(kept.data, b"old".to_vec());
}

/// Two DPoP verifiers whose replay caches are one store: a proof one accepted is a replay
/// to the other, and of concurrent presentations across both exactly one is accepted.
async fn dpop_proofs_are_single_use_across_verifiers(store: Arc<dyn Store>) {
    dpop_proofs_are_single_use_across_instances(Arc::clone(&store), store).await;
}

/// Two instances of a resource server, each with its own connection to one backend (`a` and
/// `b`) and a verifier whose replay cache is that connection: a proof one accepted is a
/// replay to the other, and of concurrent presentations across both exactly one is accepted.
async fn dpop_proofs_are_single_use_across_instances(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    use mcp_oauth::auth_server::store::StoreReplayCache;
    use mcp_oauth::dpop::{DpopError, DpopRequest, DpopVerifier};
    use mcp_oauth::testing::TestKey;

    let instance = |store: &Arc<dyn Store>| {
        DpopVerifier::builder()
            .replay_cache(Arc::new(StoreReplayCache::new(Arc::clone(store))))
            .build()
            .expect("verifier")
    };
    let (one, two) = (instance(&a), instance(&b));
    let key = TestKey::es256();
    let jkt = key.public_jwk().unwrap().thumbprint().unwrap();
    let url = url::Url::parse("https://mcp.example.com/mcp").unwrap();
    let proof = |jti: &str| {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk().unwrap()});
        let claims = json!({"jti": jti, "htm": "POST", "htu": url.as_str(), "iat": now()});
        http::HeaderValue::from_str(
            &key.key()
                .sign_compact(header.to_string().as_bytes(), claims.to_string().as_bytes()),
        )
        .unwrap()
    };
    let request = DpopRequest::new(&http::Method::POST, &url).bound_to(&jkt);

    let first = [proof("proof-1")];
    one.verify(&first, &request, now())
        .await
        .expect("accepted by the first instance");
    assert_eq!(
        two.verify(&first, &request, now()).await.unwrap_err(),
        DpopError::Replayed,
        "replayed to the second instance"
    );
    assert_eq!(
        one.verify(&first, &request, now()).await.unwrap_err(),
        DpopError::Replayed
    );

    let second = [proof("proof-2")];
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let verifier = if i % 2 == 0 { one.clone() } else { two.clone() };
            let (headers, url) = (second.clone(), url.clone());
            let jkt = jkt.clone();
            tokio::spawn(async move {
                let request = DpopRequest::new(&http::Method::POST, &url).bound_to(&jkt);
                verifier.verify(&headers, &request, now()).await
            })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => accepted += 1,
            Err(err) => assert_eq!(err, DpopError::Replayed),
        }
    }
    assert_eq!(accepted, 1);
}

/// Two gateway instances with one store share each user's bucket: of 8 calls racing for a
/// burst of 5, exactly 5 pass, across both; the refill (an injected clock, 6 s later) gives
/// one more call to one instance only; another user's bucket is untouched.
#[cfg(feature = "policy")]
async fn rate_limit_buckets_are_shared_across_instances(store: Arc<dyn Store>) {
    use mcp_oauth::policy::{Rate, RateLimit, RateLimitError, RateLimiter};
    let limits =
        || vec![RateLimit::new("writes", ["write_*"], Rate::parse("10/minute").unwrap()).burst(5)];
    // The next minute boundary: never behind the store's clock.
    let start = u64::try_from(now()).unwrap().div_ceil(60) * 60_000;
    let time = Arc::new(AtomicU64::new(start));
    let instance = |store: Arc<dyn Store>| {
        let time = time.clone();
        Arc::new(RateLimiter::shared(limits(), store).clock(move || time.load(Ordering::SeqCst)))
    };
    let (a, b) = (instance(store.clone()), instance(store));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let limiter = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { limiter.check("alice", "write_file").await })
        })
        .collect();
    let mut passed = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(()) => passed += 1,
            Err(RateLimitError::Limited(l)) => assert_eq!(l.limit, "writes"),
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(passed, 5);
    assert!(b.check("bob", "write_file").await.is_ok());
    time.fetch_add(6_000, Ordering::SeqCst);
    let (ra, rb) = tokio::join!(
        a.check("alice", "write_file"),
        b.check("alice", "write_file")
    );
    assert_eq!(
        u8::from(ra.is_ok()) + u8::from(rb.is_ok()),
        1,
        "{ra:?} {rb:?}"
    );
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

async fn memory_store() -> (Arc<dyn Store>, Option<TempDir>) {
    (Arc::new(MemoryStore::new()), None)
}

#[cfg(feature = "sqlite")]
async fn sqlite_memory_store() -> (Arc<dyn Store>, Option<TempDir>) {
    let store = mcp_oauth::auth_server::store::SqliteStore::in_memory().expect("in-memory store");
    (Arc::new(store), None)
}

#[cfg(feature = "sqlite")]
async fn sqlite_file_store() -> (Arc<dyn Store>, Option<TempDir>) {
    let dir = TempDir::new("suite");
    let store =
        mcp_oauth::auth_server::store::SqliteStore::open(dir.path().join("auth.db")).expect("open");
    (Arc::new(store), Some(dir))
}

#[cfg(feature = "redis")]
async fn redis_store() -> (Arc<dyn Store>, redis_support::RedisServer) {
    let server = redis_support::RedisServer::start();
    let store = mcp_oauth::auth_server::store::RedisStore::connect(
        &server.url(),
        &redis_support::fresh_prefix(),
    )
    .await
    .expect("connect");
    (Arc::new(store), server)
}

#[cfg(feature = "redis")]
async fn redis_cluster_store() -> (Arc<dyn Store>, ()) {
    let store = mcp_oauth::auth_server::store::RedisStore::cluster(
        &redis_support::cluster_urls(),
        &redis_support::fresh_prefix(),
    )
    .await
    .expect("connect to the cluster");
    (Arc::new(store), ())
}

#[cfg(feature = "postgres")]
async fn postgres_store() -> (Arc<dyn Store>, postgres_support::Database) {
    let database = postgres_support::Database::create().await;
    let store = mcp_oauth::auth_server::store::PostgresStore::connect(database.url())
        .await
        .expect("connect");
    (Arc::new(store), database)
}

/// Runs every contract test against the store `$make` builds.
macro_rules! conformance {
    ($name:ident, $make:ident) => {
        mod $name {
            macro_rules! case {
                ($test:ident) => {
                    #[tokio::test]
                    async fn $test() {
                        let (store, _guard) = super::$make().await;
                        super::$test(store).await;
                    }
                };
                (concurrent $test:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $test() {
                        let (store, _guard) = super::$make().await;
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
            case!(unused_registrations_lapse_and_kept_ones_stay);
            case!(code_peeks_do_not_consume);
            case!(refresh_peeks_tell_used_from_unused);
            case!(expired_refresh_tokens_are_missing);
            case!(revoked_families_lapse);
            case!(revocations_are_never_shortened);
            case!(concurrent concurrent_code_redemptions_have_one_winner);
            case!(concurrent concurrent_refresh_redemptions_have_one_winner);
            case!(concurrent concurrent_takes_have_one_winner);
            case!(entries_are_kept_by_kind_read_and_taken_once);
            case!(keys_may_hold_any_character);
            case!(concurrent concurrent_entry_takes_have_one_winner);
            case!(primitives_keep_bytes_by_kind_and_key);
            case!(put_if_absent_saves_once_until_the_record_lapses);
            case!(concurrent concurrent_put_if_absent_has_one_winner);
            case!(concurrent dpop_proofs_are_single_use_across_verifiers);
            #[cfg(feature = "policy")]
            case!(concurrent rate_limit_buckets_are_shared_across_instances);
        }
    };
}

conformance!(memory, memory_store);
#[cfg(feature = "sqlite")]
conformance!(sqlite_in_memory, sqlite_memory_store);
#[cfg(feature = "sqlite")]
conformance!(sqlite_file, sqlite_file_store);
#[cfg(feature = "redis")]
conformance!(redis, redis_store);
#[cfg(feature = "redis")]
conformance!(redis_cluster, redis_cluster_store);
#[cfg(feature = "postgres")]
conformance!(postgres, postgres_store);

// ---- SQLite only -----------------------------------------------------------------------

#[cfg(feature = "sqlite")]
mod sqlite_only {
    use super::*;
    use mcp_oauth::auth_server::store::SqliteStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_connections_to_one_file_accept_a_dpop_proof_once() {
        let dir = TempDir::new("dpop");
        let path = dir.path().join("auth.db");
        let a: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).expect("open a"));
        let b: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).expect("open b"));
        dpop_proofs_are_single_use_across_instances(a, b).await;
    }

    #[tokio::test]
    async fn data_survives_closing_and_reopening_the_file() {
        let dir = TempDir::new("reopen");
        let path = dir.path().join("nested").join("auth.db");
        let stored_client = client("c", "https://client.example/cb");
        let stored_request = request(now() + 600);
        let stored_code = code("f1", now() + 60);
        let stored_refresh = refresh_token("f1", now() + 600);
        {
            let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).expect("open"));
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

        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).expect("reopen"));
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
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).expect("open"));
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
        let _store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).expect("reopen"));
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

    fn client_rows(path: &Path) -> Vec<String> {
        let conn = rusqlite::Connection::open(path).expect("open raw");
        let mut rows: Vec<String> = conn
            .prepare("SELECT key FROM records WHERE kind = 'client'")
            .expect("prepare")
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        rows.sort();
        rows
    }

    #[tokio::test]
    async fn lapsed_registrations_are_purged_from_the_file() {
        let dir = TempDir::new("lapse");
        let path = dir.path().join("auth.db");
        {
            let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).expect("open"));
            for record in [
                lapsing_client("lapsed", Some(now() - 1)),
                lapsing_client("pending", Some(now() + 600)),
                lapsing_client("kept", None),
            ] {
                store.put_client(record).await.expect("put");
            }
        }
        assert_eq!(client_rows(&path), ["kept", "lapsed", "pending"]);
        // Opening purges what lapsed; nothing else.
        let _store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).expect("reopen"));
        assert_eq!(client_rows(&path), ["kept", "pending"]);
    }

    #[tokio::test]
    async fn a_version_2_file_keeps_its_clients_after_the_migration() {
        let dir = TempDir::new("v2");
        let path = dir.path().join("auth.db");
        let old = client("old", "https://client.example/cb");
        let code_at = now() + 60;
        {
            // The version 2 layout of the clients table, with one client in it.
            let conn = rusqlite::Connection::open(&path).expect("create");
            conn.execute_batch(
                "CREATE TABLE clients (client_id TEXT PRIMARY KEY NOT NULL, data TEXT NOT NULL) STRICT;
                 CREATE TABLE requests (id TEXT PRIMARY KEY NOT NULL, expires_at INTEGER NOT NULL, data TEXT NOT NULL) STRICT;
                 CREATE TABLE codes (hash TEXT PRIMARY KEY NOT NULL, expires_at INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL) STRICT;
                 CREATE TABLE refresh_tokens (hash TEXT PRIMARY KEY NOT NULL, expires_at INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL) STRICT;
                 CREATE TABLE revoked_families (family TEXT PRIMARY KEY NOT NULL, until INTEGER NOT NULL) STRICT;
                 CREATE TABLE entries (kind TEXT NOT NULL, key TEXT NOT NULL, expires_at INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (kind, key)) STRICT;
                 PRAGMA user_version = 2;",
            )
            .expect("schema v2");
            conn.execute(
                "INSERT INTO clients (client_id, data) VALUES ('old', ?1)",
                [serde_json::to_string(&old).expect("json")],
            )
            .expect("insert");
            // A used code, an unused refresh token, a revocation and a consent.
            conn.execute(
                "INSERT INTO codes (hash, expires_at, used, data) VALUES ('h', ?1, 1, ?2)",
                rusqlite::params![
                    code_at,
                    serde_json::to_string(&code("f1", code_at)).expect("json")
                ],
            )
            .expect("insert");
            conn.execute(
                "INSERT INTO refresh_tokens (hash, expires_at, used, data) VALUES ('rt', ?1, 0, ?2)",
                rusqlite::params![now() + 600, serde_json::to_string(&refresh_token("f1", now() + 600)).expect("json")],
            )
            .expect("insert");
            conn.execute(
                "INSERT INTO revoked_families (family, until) VALUES ('f0', ?1)",
                [now() + 600],
            )
            .expect("insert");
            conn.execute(
                "INSERT INTO entries (kind, key, expires_at, data) VALUES ('consent', 'alice:c', ?1, '{}')",
                [now() + 600],
            )
            .expect("insert");
        }
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).expect("open and migrate"));
        assert_eq!(store.client("old").await.expect("read"), Some(old));
        assert_eq!(
            store.redeem_code("h").await.expect("redeem"),
            Redeemed::Replayed(code("f1", code_at)),
            "the used flag survives the migration"
        );
        assert!(matches!(
            store.redeem_refresh("rt").await.expect("redeem"),
            Redeemed::Fresh(_)
        ));
        assert!(store.is_family_revoked("f0").await.expect("read"));
        assert_eq!(
            store
                .entry::<Value>(EntryKind::Consent, "alice:c")
                .await
                .expect("read"),
            Some(json!({}))
        );
        let lapsed = lapsing_client("new", Some(now() - 1));
        store.put_client(lapsed).await.expect("put");
        assert_eq!(store.client("new").await.expect("read"), None);
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

// ---- Redis only ------------------------------------------------------------------------

/// A private `redis-server` per test: on 127.0.0.1, a free port, no persistence, its files in
/// a temp dir, killed when the guard drops.
#[cfg(feature = "redis")]
mod redis_support {
    use std::io::{Read as _, Write as _};
    use std::net::{TcpListener, TcpStream};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use super::TempDir;

    /// Debian's `redis-server`, installed by `scripts/redis-server`.
    const DEFAULT_BINARY: &str = "/usr/bin/redis-server";

    /// How long a server may take to answer `PING`.
    const READY_WITHIN: Duration = Duration::from_secs(10);

    /// Held while a server picks its port and starts, so that two tests of this binary never
    /// race for one port.
    static STARTING: Mutex<()> = Mutex::new(());

    /// The variable that names the test cluster's nodes.
    const CLUSTER_VAR: &str = "MCP_OAUTH_REDIS_CLUSTER";

    /// The nodes of the Redis Cluster `scripts/redis-cluster start` made (comma-separated
    /// URLs in `MCP_OAUTH_REDIS_CLUSTER`); a test without one fails with what to do. Tests
    /// share the cluster, each under a [`fresh_prefix`].
    pub(crate) fn cluster_urls() -> Vec<String> {
        let urls = std::env::var(CLUSTER_VAR).unwrap_or_else(|_| {
            panic!(
                "{CLUSTER_VAR} is not set: the Redis Cluster store tests need a cluster. Run \
                 `export {CLUSTER_VAR}=$(scripts/redis-cluster start)` (three primaries on \
                 loopback; `scripts/redis-cluster stop \"${CLUSTER_VAR}\"` stops them), or \
                 scripts/test, which does both"
            )
        });
        urls.split(',').map(str::to_owned).collect()
    }

    /// A key prefix no other store in this process uses.
    pub(crate) fn fresh_prefix() -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        format!(
            "test-{}-{}:",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        )
    }

    pub(crate) struct RedisServer {
        child: Child,
        port: u16,
        _dir: TempDir,
    }

    impl RedisServer {
        pub(crate) fn start() -> Self {
            Self::start_with(&[])
        }

        /// Starts a server with extra `--option value` arguments.
        pub(crate) fn start_with(extra: &[&str]) -> Self {
            let binary = std::env::var_os("MCP_OAUTH_REDIS_SERVER")
                .map_or_else(|| PathBuf::from(DEFAULT_BINARY), PathBuf::from);
            assert!(
                binary.exists(),
                "{} is missing: run scripts/redis-server (installs Debian's redis-server), \
                 or point MCP_OAUTH_REDIS_SERVER at a redis-server binary",
                binary.display()
            );
            let _starting = STARTING.lock().unwrap_or_else(|e| e.into_inner());
            let mut failures = Vec::new();
            for _attempt in 0..3 {
                let dir = TempDir::new("redis");
                let port = free_port();
                let log = dir.path().join("redis.log");
                let mut child = Command::new(&binary)
                    .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                    .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                    .arg("--dir")
                    .arg(dir.path())
                    .arg("--logfile")
                    .arg(&log)
                    .args(extra)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start redis-server");
                match wait_until_ready(&mut child, port) {
                    Ok(()) => {
                        return Self {
                            child,
                            port,
                            _dir: dir,
                        };
                    }
                    Err(why) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        let log = std::fs::read_to_string(&log).unwrap_or_default();
                        failures.push(format!("port {port}: {why}\n{log}"));
                    }
                }
            }
            panic!("redis-server did not start:\n{}", failures.join("\n"));
        }

        pub(crate) fn port(&self) -> u16 {
            self.port
        }

        pub(crate) fn url(&self) -> String {
            format!("redis://127.0.0.1:{}/0", self.port)
        }

        /// A plain connection, to look at what the store wrote.
        pub(crate) fn raw(&self) -> ::redis::Connection {
            ::redis::Client::open(self.url())
                .expect("url")
                .get_connection()
                .expect("raw connection")
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    pub(crate) fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port()
    }

    /// Polls with `PING` until the server answers, it exits, or [`READY_WITHIN`] passes.
    fn wait_until_ready(child: &mut Child, port: u16) -> Result<(), String> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("redis-server exited: {status}"));
            }
            if answers_ping(port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("no answer to PING within {READY_WITHIN:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn answers_ping(port: u16) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut reply = [0_u8; 64];
        let n = stream.read(&mut reply).unwrap_or(0);
        // A server with a password answers, too: it is up.
        reply[..n].starts_with(b"+PONG") || reply[..n].starts_with(b"-NOAUTH")
    }
}

#[cfg(feature = "redis")]
mod redis_only {
    use std::time::{Duration, Instant};

    use super::redis_support::{RedisServer, free_port};
    use super::*;
    use mcp_oauth::auth_server::store::{RedisStore, StoreErrorKind};

    /// How long a connection attempt may take before a test calls it a hang: a guard against
    /// endless retries, far above the store's own connection timeout, never a speed bound.
    const HANG_GUARD: Duration = Duration::from_secs(60);

    fn raw_keys(conn: &mut ::redis::Connection) -> Vec<String> {
        let mut keys: Vec<String> = ::redis::cmd("KEYS").arg("*").query(conn).expect("KEYS");
        keys.sort();
        keys
    }

    fn expire_time(conn: &mut ::redis::Connection, key: &str) -> i64 {
        ::redis::cmd("EXPIRETIME")
            .arg(key)
            .query(conn)
            .expect("EXPIRETIME")
    }

    /// Writes one record of each kind, all lapsing at `expires_at`.
    async fn one_of_each(store: &dyn Store, expires_at: i64) {
        store
            .put_client(client("c", "https://client.example/cb"))
            .await
            .expect("client");
        store
            .put_request("r", request(expires_at))
            .await
            .expect("request");
        store
            .put_code("h", code("f", expires_at))
            .await
            .expect("code");
        store
            .put_refresh("h", refresh_token("f", expires_at))
            .await
            .expect("refresh");
        store.revoke_family("f", expires_at).await.expect("revoke");
        store
            .put_entry(EntryKind::Consent, "alice:c", &json!({}), expires_at)
            .await
            .expect("consent");
        store
            .put_entry(EntryKind::Transaction, "s", &json!({}), expires_at)
            .await
            .expect("transaction");
        store
            .put_entry(EntryKind::UpstreamTokens, "f", "sealed", expires_at)
            .await
            .expect("upstream tokens");
    }

    /// The keys [`one_of_each`] writes that expire, without the prefix: each its own key in
    /// a hash tag.
    const EXPIRING: [&str; 7] = [
        "code:{h}",
        "consent:{alice:c}",
        "refresh:{h}",
        "request:{r}",
        "revoked:{f}",
        "transaction:{s}",
        "upstream_tokens:{f}",
    ];

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_instances_share_state_and_redeem_a_code_once() {
        let server = RedisServer::start();
        let a: Arc<dyn Store> = Arc::new(
            RedisStore::connect(&server.url(), "mcp-oauth:")
                .await
                .expect("instance a"),
        );
        let b: Arc<dyn Store> = Arc::new(
            RedisStore::connect(&server.url(), "mcp-oauth:")
                .await
                .expect("instance b"),
        );

        let registered = client("c", "https://client.example/cb");
        a.put_client(registered.clone()).await.expect("register");
        assert_eq!(b.client("c").await.expect("read"), Some(registered));
        b.put_entry(EntryKind::Consent, "alice:c", &json!({}), now() + 600)
            .await
            .expect("consent");
        assert!(
            a.entry::<Value>(EntryKind::Consent, "alice:c")
                .await
                .expect("read")
                .is_some()
        );
        b.revoke_family("f0", now() + 600).await.expect("revoke");
        assert!(a.is_family_revoked("f0").await.expect("read"));

        let record = code("f1", now() + 60);
        a.put_code("h", record.clone()).await.expect("put");
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
        assert_eq!(
            b.redeem_code("h").await.expect("redeem"),
            Redeemed::Replayed(record)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_instances_accept_a_dpop_proof_once_and_redis_forgets_it() {
        let server = RedisServer::start();
        let a = RedisStore::connect(&server.url(), "mcp-oauth:")
            .await
            .expect("a");
        let b = RedisStore::connect(&server.url(), "mcp-oauth:")
            .await
            .expect("b");
        dpop_proofs_are_single_use_across_instances(Arc::new(a), Arc::new(b)).await;

        // Each accepted proof is one hash-tagged key that Redis expires by itself.
        let mut conn = server.raw();
        let keys = raw_keys(&mut conn);
        assert_eq!(keys.len(), 2, "{keys:?}");
        for key in keys {
            assert!(key.starts_with("mcp-oauth:dpop_proof:{"), "{key}");
            assert!(key.ends_with('}'), "{key}");
            assert!(expire_time(&mut conn, &key) > now(), "{key} expires");
        }
    }

    #[tokio::test]
    async fn every_key_carries_the_prefix() {
        let server = RedisServer::start();
        let a: Arc<dyn Store> = Arc::new(
            RedisStore::connect(&server.url(), "deploy-a:")
                .await
                .expect("connect a"),
        );
        let b: Arc<dyn Store> = Arc::new(
            RedisStore::connect(&server.url(), "deploy-b:")
                .await
                .expect("connect b"),
        );
        one_of_each(a.as_ref(), now() + 600).await;

        let mut expected: Vec<String> = EXPIRING
            .iter()
            .chain(&["client:{c}"])
            .map(|key| format!("deploy-a:{key}"))
            .collect();
        expected.sort();
        assert_eq!(raw_keys(&mut server.raw()), expected);

        // Another deployment on the same Redis sees none of it.
        assert_eq!(b.client("c").await.expect("read"), None);
        assert_eq!(b.request("r").await.expect("read"), None);
        assert_eq!(b.redeem_code("h").await.expect("redeem"), Redeemed::Missing);
        assert_eq!(b.refresh("h").await.expect("read"), None);
        assert!(!b.is_family_revoked("f").await.expect("read"));
        assert_eq!(
            b.take_entry::<Value>(EntryKind::Transaction, "s")
                .await
                .expect("take"),
            None
        );
        assert!(a.request("r").await.expect("read").is_some());
    }

    #[tokio::test]
    async fn every_record_with_an_expiry_gets_it_in_redis() {
        let server = RedisServer::start();
        let store: Arc<dyn Store> = Arc::new(
            RedisStore::connect(&server.url(), "p:")
                .await
                .expect("connect"),
        );
        let expires_at = now() + 600;
        one_of_each(store.as_ref(), expires_at).await;

        let mut raw = server.raw();
        for key in EXPIRING {
            assert_eq!(
                expire_time(&mut raw, &format!("p:{key}")),
                expires_at,
                "{key}"
            );
        }
        assert_eq!(expire_time(&mut raw, "p:client:{c}"), -1, "clients stay");

        // Redeeming does not touch the expiry.
        store.redeem_code("h").await.expect("redeem");
        assert_eq!(expire_time(&mut raw, "p:code:{h}"), expires_at);
    }

    #[tokio::test]
    async fn an_unused_registration_expires_in_redis_until_it_is_kept() {
        let server = RedisServer::start();
        let store: Arc<dyn Store> = Arc::new(
            RedisStore::connect(&server.url(), "p:")
                .await
                .expect("connect"),
        );
        let expires_at = now() + 600;
        store
            .put_client(lapsing_client("c", Some(expires_at)))
            .await
            .expect("register");
        let mut raw = server.raw();
        assert_eq!(expire_time(&mut raw, "p:client:{c}"), expires_at);
        // The client completed an authorization: kept, without an expiry.
        store
            .put_client(lapsing_client("c", None))
            .await
            .expect("keep");
        assert_eq!(expire_time(&mut raw, "p:client:{c}"), -1);
        assert!(store.client("c").await.expect("read").is_some());
    }

    #[tokio::test]
    async fn a_lapsed_client_is_unknown_even_if_redis_still_has_it() {
        let server = RedisServer::start();
        let store: Arc<dyn Store> = Arc::new(
            RedisStore::connect(&server.url(), "p:")
                .await
                .expect("connect"),
        );
        // Written without a TTL or `exp` field (another instance's clock, or an older version).
        let lapsed = serde_json::to_string(&lapsing_client("c", Some(now() - 1))).expect("json");
        let _: () = ::redis::cmd("HSET")
            .arg("p:client:{c}")
            .arg("data")
            .arg(lapsed)
            .arg("used")
            .arg("0")
            .query(&mut server.raw())
            .expect("HSET");
        assert_eq!(store.client("c").await.expect("read"), None);
    }

    #[tokio::test]
    async fn records_are_gone_from_redis_after_their_expiry() {
        let server = RedisServer::start();
        let store: Arc<dyn Store> = Arc::new(
            RedisStore::connect(&server.url(), "p:")
                .await
                .expect("connect"),
        );
        one_of_each(store.as_ref(), now() + 1).await;

        let mut raw = server.raw();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if raw_keys(&mut raw) == ["p:client:{c}"] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "still there after 5 s: {:?}",
                raw_keys(&mut raw)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            store.redeem_code("h").await.expect("redeem"),
            Redeemed::Missing
        );
        assert!(!store.is_family_revoked("f").await.expect("read"));
    }

    #[tokio::test]
    async fn a_revocation_keeps_its_longest_expiry_in_redis() {
        let server = RedisServer::start();
        let store: Arc<dyn Store> = Arc::new(
            RedisStore::connect(&server.url(), "p:")
                .await
                .expect("connect"),
        );
        let long = now() + 600;
        store.revoke_family("f", long).await.expect("revoke");
        store.revoke_family("f", now() + 60).await.expect("revoke");
        let mut raw = server.raw();
        assert_eq!(expire_time(&mut raw, "p:revoked:{f}"), long);
        store.revoke_family("f", long + 60).await.expect("revoke");
        assert_eq!(expire_time(&mut raw, "p:revoked:{f}"), long + 60);

        // A revocation that has already lapsed leaves nothing behind.
        store.revoke_family("g", now() - 1).await.expect("revoke");
        assert_eq!(raw_keys(&mut raw), ["p:revoked:{f}"]);
    }

    #[tokio::test]
    async fn records_past_their_time_are_ignored_even_if_redis_still_has_them() {
        // A server whose clock runs behind Redis's: Redis still keeps the key, the record
        // says it lapsed.
        let server = RedisServer::start();
        let store: Arc<dyn Store> = Arc::new(
            RedisStore::connect(&server.url(), "p:")
                .await
                .expect("connect"),
        );
        let mut raw = server.raw();
        let lapsed = serde_json::to_string(&code("f", now() - 5)).expect("json");
        let _: () = ::redis::cmd("HSET")
            .arg("p:code:{h}")
            .arg("data")
            .arg(lapsed)
            .arg("used")
            .arg("0")
            .query(&mut raw)
            .expect("HSET");
        assert_eq!(
            store.redeem_code("h").await.expect("redeem"),
            Redeemed::Missing
        );
        // The record's `exp` field has passed by this machine's clock.
        let _: () = ::redis::cmd("HSET")
            .arg("p:transaction:{s}")
            .arg("data")
            .arg("v")
            .arg("used")
            .arg("0")
            .arg("exp")
            .arg(now() - 5)
            .query(&mut raw)
            .expect("HSET");
        assert_eq!(
            store
                .entry::<Value>(EntryKind::Transaction, "s")
                .await
                .expect("read"),
            None
        );
        let _: () = ::redis::cmd("SET")
            .arg("p:revoked:{f}")
            .arg(now() - 5)
            .query(&mut raw)
            .expect("SET");
        assert!(!store.is_family_revoked("f").await.expect("read"));
    }

    #[tokio::test]
    async fn damaged_records_are_errors_that_do_not_quote_them() {
        let server = RedisServer::start();
        let store: Arc<dyn Store> = Arc::new(
            RedisStore::connect(&server.url(), "p:")
                .await
                .expect("connect"),
        );
        let _: () = ::redis::cmd("HSET")
            .arg("p:client:{c}")
            .arg("data")
            .arg(r#"{"client_id": "secret-looking-value"}"#)
            .query(&mut server.raw())
            .expect("HSET");
        let err = store.client("c").await.expect_err("damaged");
        assert_eq!(err.kind(), StoreErrorKind::Damaged);
        let message = err.to_string();
        assert!(
            message.starts_with("store: cannot read a client: damaged record"),
            "{message}"
        );
        assert!(!message.contains("secret-looking-value"), "{message}");
    }

    #[tokio::test]
    async fn the_password_stays_out_of_debug_and_errors() {
        let server = RedisServer::start_with(&["--requirepass", "hunter2-secret"]);
        let port = server.port();
        let store =
            RedisStore::connect(&format!("redis://:hunter2-secret@127.0.0.1:{port}/0"), "p:")
                .await
                .expect("connect with the password");
        assert_eq!(
            format!("{store:?}"),
            format!(r#"RedisStore {{ addr: "127.0.0.1:{port}", db: 0, prefix: "p:" }}"#)
        );
        let store: Arc<dyn Store> = Arc::new(store);
        store
            .put_client(client("c", "https://client.example/cb"))
            .await
            .expect("write");

        // One attempt, not the connection manager's retries (which never end on their own):
        // the timeout is a hang guard, far above the store's own 3 s connection timeout.
        let err = tokio::time::timeout(
            HANG_GUARD,
            RedisStore::connect(&format!("redis://:wrong-secret@127.0.0.1:{port}/0"), "p:"),
        )
        .await
        .expect("a wrong password fails instead of being retried")
        .expect_err("a wrong password");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "store: redis: cannot connect to 127.0.0.1:{port}: "
            )),
            "{message}"
        );
        assert!(!message.contains("wrong-secret"), "{message}");
    }

    #[tokio::test]
    async fn an_unreachable_server_fails_at_once_naming_its_address() {
        let port = free_port();
        let err = tokio::time::timeout(
            HANG_GUARD,
            RedisStore::connect(&format!("redis://127.0.0.1:{port}"), "p:"),
        )
        .await
        .expect("an unreachable server fails instead of being retried")
        .expect_err("nobody listens");
        assert!(
            err.to_string().starts_with(&format!(
                "store: redis: cannot connect to 127.0.0.1:{port}: "
            )),
            "{err}"
        );

        // "At once" counted, not timed: a server that hangs up on every connection is
        // connected to exactly once.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = connections.clone();
        let hang_up = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(stream);
            }
        });
        let err = tokio::time::timeout(
            HANG_GUARD,
            RedisStore::connect(&format!("redis://127.0.0.1:{port}"), "p:"),
        )
        .await
        .expect("a server that hangs up fails instead of being retried")
        .expect_err("the server hangs up");
        hang_up.abort();
        assert!(
            err.to_string().starts_with(&format!(
                "store: redis: cannot connect to 127.0.0.1:{port}: "
            )),
            "{err}"
        );
        assert_eq!(
            connections.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "connect retried"
        );

        let err = RedisStore::connect("not a url", "p:")
            .await
            .expect_err("a bad url");
        assert!(
            err.to_string()
                .starts_with("store: redis: invalid connection url"),
            "{err}"
        );
    }
}

// ---- PostgreSQL only -------------------------------------------------------------------

/// A database of its own per test, on the server `MCP_OAUTH_POSTGRES_URL` names (started by
/// `scripts/postgres-server start`, which `scripts/test` runs): created for the test, dropped
/// when the guard drops. The server itself is never stopped here.
#[cfg(feature = "postgres")]
mod postgres_support {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};

    use tokio_postgres::NoTls;

    /// The variable that names the server.
    const URL_VAR: &str = "MCP_OAUTH_POSTGRES_URL";

    pub(crate) struct Database {
        admin: String,
        name: String,
        url: String,
    }

    /// The server's URL; a test without one fails with what to do.
    pub(crate) fn server_url() -> String {
        std::env::var(URL_VAR).unwrap_or_else(|_| {
            panic!(
                "{URL_VAR} is not set: the PostgreSQL store tests need a server. Run \
                 `export {URL_VAR}=$(scripts/postgres-server start)` (installs Debian's \
                 postgresql when missing; `scripts/postgres-server stop \"${URL_VAR}\"` \
                 stops it), or scripts/test, which does both"
            )
        })
    }

    async fn admin(url: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {URL_VAR} ({url}): {e}"));
        tokio::spawn(connection);
        client
    }

    impl Database {
        pub(crate) async fn create() -> Self {
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let admin_url = server_url();
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let name = format!(
                "mcp_oauth_test_{}_{}_{nanos}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            admin(&admin_url)
                .await
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create a database");
            let mut url = url::Url::parse(&admin_url).expect("a postgres:// url");
            url.set_path(&name);
            Self {
                admin: admin_url,
                name,
                url: url.to_string(),
            }
        }

        pub(crate) fn url(&self) -> &str {
            &self.url
        }

        /// A plain connection to this database, to look at what the store wrote.
        pub(crate) async fn raw(&self) -> tokio_postgres::Client {
            admin(&self.url).await
        }
    }

    impl Drop for Database {
        fn drop(&mut self) {
            // On a thread of its own: this may run inside the test's runtime.
            let (admin_url, name) = (self.admin.clone(), self.name.clone());
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    admin(&admin_url)
                        .await
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await
                })
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) && !std::thread::panicking() {
                panic!("cannot drop the test database {}", self.name);
            }
        }
    }
}

#[cfg(feature = "postgres")]
mod postgres_only {
    use super::postgres_support::Database;
    use super::*;
    use mcp_oauth::auth_server::store::PostgresStore;

    /// The test CA of the server (`scripts/postgres-server ca "$MCP_OAUTH_POSTGRES_URL"`,
    /// which scripts/test exports); a test without one fails with what to do.
    fn test_ca() -> String {
        std::env::var("MCP_OAUTH_POSTGRES_CA").unwrap_or_else(|_| {
            panic!(
                "MCP_OAUTH_POSTGRES_CA is not set: the PostgreSQL TLS test needs the CA of the \
                 test server. Run `export MCP_OAUTH_POSTGRES_CA=$(scripts/postgres-server ca \
                 \"$MCP_OAUTH_POSTGRES_URL\")`, or scripts/test, which does it"
            )
        })
    }

    /// TLS as a managed database needs it: `sslmode=verify-full` with the CA is encrypted
    /// (the server says so), and every way a certificate can be wrong is refused, `require`
    /// included (stricter than libpq, which trusts any certificate there).
    #[tokio::test]
    async fn tls_is_used_when_asked_and_the_certificate_is_verified() {
        let database = Database::create().await;
        let ca = test_ca();
        let url = database.url();
        let store = PostgresStore::connect(&format!(
            "{url}?sslmode=verify-full&sslrootcert={ca}&application_name=tls-test"
        ))
        .await
        .expect("TLS with the test CA");
        let store: Arc<dyn Store> = Arc::new(store);
        let registered = client("c", "https://client.example/cb");
        store.put_client(registered.clone()).await.expect("put");
        assert_eq!(store.client("c").await.expect("read"), Some(registered));
        let encrypted: Vec<bool> = database
            .raw()
            .await
            .query(
                "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.application_name = 'tls-test'",
                &[],
            )
            .await
            .expect("pg_stat_ssl")
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert!(
            !encrypted.is_empty() && encrypted.iter().all(|ssl| *ssl),
            "the store's connections are TLS: {encrypted:?}"
        );

        // The platform's roots do not know the test CA; `require` verifies as well.
        for mode in ["verify-full", "require", "verify-ca"] {
            let err = PostgresStore::connect(&format!("{url}?sslmode={mode}"))
                .await
                .expect_err("an unknown CA");
            assert!(
                err.to_string().contains("certificate"),
                "sslmode={mode}: {err}"
            );
        }
        // The right CA, the wrong name: the certificate names 127.0.0.1 only.
        let by_name = url.replacen("127.0.0.1", "localhost", 1);
        let err =
            PostgresStore::connect(&format!("{by_name}?sslmode=verify-full&sslrootcert={ca}"))
                .await
                .expect_err("another host name");
        assert!(err.to_string().contains("certificate"), "{err}");
        // The password never shows, whatever fails.
        let with_password = url.replacen("postgres@", "postgres:hunter2@", 1);
        let err = PostgresStore::connect(&format!("{with_password}?sslmode=require"))
            .await
            .expect_err("an unknown CA");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_instances_accept_a_dpop_proof_once() {
        let database = Database::create().await;
        let a = PostgresStore::connect(database.url()).await.expect("a");
        let b = PostgresStore::connect(database.url()).await.expect("b");
        dpop_proofs_are_single_use_across_instances(Arc::new(a), Arc::new(b)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_instances_share_state_and_redeem_a_code_once() {
        let database = Database::create().await;
        // Two instances set up the schema at once: one creates it, the other finds it.
        let (a, b) = tokio::join!(
            PostgresStore::connect(database.url()),
            PostgresStore::connect(database.url())
        );
        let a: Arc<dyn Store> = Arc::new(a.expect("instance a"));
        let b: Arc<dyn Store> = Arc::new(b.expect("instance b"));

        let registered = client("c", "https://client.example/cb");
        a.put_client(registered.clone()).await.expect("register");
        assert_eq!(b.client("c").await.expect("read"), Some(registered));
        b.put_entry(EntryKind::Consent, "alice:c", &json!({}), now() + 600)
            .await
            .expect("consent");
        assert!(
            a.entry::<Value>(EntryKind::Consent, "alice:c")
                .await
                .expect("read")
                .is_some()
        );
        b.revoke_family("f0", now() + 600).await.expect("revoke");
        assert!(a.is_family_revoked("f0").await.expect("read"));

        let record = code("f1", now() + 60);
        a.put_code("h", record.clone()).await.expect("put");
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
        assert_eq!(
            b.redeem_code("h").await.expect("redeem"),
            Redeemed::Replayed(record)
        );
    }

    #[tokio::test]
    async fn records_are_rows_keyed_by_hash_with_their_expiry() {
        let database = Database::create().await;
        let store: Arc<dyn Store> = Arc::new(
            PostgresStore::connect(database.url())
                .await
                .expect("connect"),
        );
        let expires_at = now() + 600;
        store
            .put_code("h", code("f", expires_at))
            .await
            .expect("code");
        store
            .put_client(client("c", "https://client.example/cb"))
            .await
            .expect("client");
        store.revoke_family("f", expires_at).await.expect("revoke");
        store.revoke_family("f", now() + 60).await.expect("shorter");
        let raw = database.raw().await;
        let rows = raw
            .query(
                "SELECT kind, key, expires_at, used FROM mcp_oauth_records ORDER BY kind",
                &[],
            )
            .await
            .expect("rows");
        let rows: Vec<(String, String, Option<i64>, bool)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        assert_eq!(
            rows,
            [
                ("client".into(), "c".into(), None, false),
                ("code".into(), "h".into(), Some(expires_at), false),
            ]
        );
        let until: i64 = raw
            .query_one(
                "SELECT until FROM mcp_oauth_revoked_families WHERE family = 'f'",
                &[],
            )
            .await
            .expect("revocation")
            .get(0);
        assert_eq!(until, expires_at, "a revocation is never shortened");
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let database = Database::create().await;
        drop(
            PostgresStore::connect(database.url())
                .await
                .expect("create"),
        );
        database
            .raw()
            .await
            .batch_execute("INSERT INTO mcp_oauth_schema (version) VALUES (2)")
            .await
            .expect("a newer version");
        let err = PostgresStore::connect(database.url())
            .await
            .expect_err("refused");
        assert!(
            err.to_string()
                .ends_with("database schema version 2 is newer than this build supports (1)"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn damaged_records_are_errors_that_do_not_quote_them() {
        let database = Database::create().await;
        let store: Arc<dyn Store> = Arc::new(
            PostgresStore::connect(database.url())
                .await
                .expect("connect"),
        );
        database
            .raw()
            .await
            .batch_execute(
                "INSERT INTO mcp_oauth_records (kind, key, data) \
                 VALUES ('client', 'c', convert_to('{\"client_id\": \"secret-looking-value\"}', 'UTF8'))",
            )
            .await
            .expect("insert");
        let err = store.client("c").await.expect_err("damaged");
        let message = err.to_string();
        assert!(
            message.starts_with("store: cannot read a client: damaged record"),
            "{message}"
        );
        assert!(!message.contains("secret-looking-value"), "{message}");
    }

    #[tokio::test]
    async fn an_unreachable_server_fails_naming_its_address_not_the_password() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let err = PostgresStore::connect(&format!(
            "postgres://mcp:hunter2-secret@127.0.0.1:{port}/auth"
        ))
        .await
        .expect_err("nobody listens");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "store: postgres: cannot connect to 127.0.0.1:{port}/auth as mcp: "
            )),
            "{message}"
        );
        assert!(!message.contains("hunter2-secret"), "{message}");
    }
}

#[cfg(feature = "redis")]
mod redis_cluster_only {
    use super::redis_support::{cluster_urls, fresh_prefix};
    use super::*;
    use mcp_oauth::auth_server::store::RedisStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_instances_accept_a_dpop_proof_once() {
        let prefix = fresh_prefix();
        let a = RedisStore::cluster(&cluster_urls(), &prefix)
            .await
            .expect("a");
        let b = RedisStore::cluster(&cluster_urls(), &prefix)
            .await
            .expect("b");
        dpop_proofs_are_single_use_across_instances(Arc::new(a), Arc::new(b)).await;
    }

    /// Every key on every primary (a node's `KEYS` sees its own slots only).
    fn keys_by_node(prefix: &str) -> Vec<Vec<String>> {
        cluster_urls()
            .iter()
            .map(|url| {
                let mut conn = ::redis::Client::open(url.as_str())
                    .expect("url")
                    .get_connection()
                    .expect("a node");
                let mut keys: Vec<String> = ::redis::cmd("KEYS")
                    .arg(format!("{prefix}*"))
                    .query(&mut conn)
                    .expect("KEYS");
                keys.sort();
                keys
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn records_spread_over_the_primaries_and_a_grant_stays_together() {
        let prefix = fresh_prefix();
        let store: Arc<dyn Store> = Arc::new(
            RedisStore::cluster(&cluster_urls(), &prefix)
                .await
                .expect("connect"),
        );
        assert_eq!(cluster_urls().len(), 3, "three primaries");
        for i in 0..30 {
            store
                .put_code(&format!("h{i}"), code("f1", now() + 60))
                .await
                .expect("put");
        }
        store
            .revoke_family("f1", now() + 600)
            .await
            .expect("revoke");
        store
            .put_entry(EntryKind::UpstreamTokens, "f1", "sealed", now() + 600)
            .await
            .expect("upstream tokens");
        let by_node = keys_by_node(&prefix);
        assert_eq!(
            by_node.iter().filter(|keys| !keys.is_empty()).count(),
            3,
            "30 codes land on every primary: {by_node:?}"
        );
        let revoked = format!("{prefix}revoked:{{f1}}");
        let sealed = format!("{prefix}upstream_tokens:{{f1}}");
        assert!(
            by_node
                .iter()
                .any(|keys| keys.contains(&revoked) && keys.contains(&sealed)),
            "the keys of grant f1 share a node: {by_node:?}"
        );
        // Every script works on every node.
        for i in 0..30 {
            assert!(matches!(
                store.redeem_code(&format!("h{i}")).await.expect("redeem"),
                Redeemed::Fresh(_)
            ));
        }
        assert!(store.is_family_revoked("f1").await.expect("read"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_instances_share_state_and_redeem_a_code_once() {
        let prefix = fresh_prefix();
        let a: Arc<dyn Store> = Arc::new(
            RedisStore::cluster(&cluster_urls(), &prefix)
                .await
                .expect("instance a"),
        );
        // The other instance knows one node only: it finds the rest.
        let b: Arc<dyn Store> = Arc::new(
            RedisStore::cluster(&cluster_urls()[2..], &prefix)
                .await
                .expect("instance b"),
        );
        let registered = client("c", "https://client.example/cb");
        a.put_client(registered.clone()).await.expect("register");
        assert_eq!(b.client("c").await.expect("read"), Some(registered));
        let record = code("f1", now() + 60);
        a.put_code("h", record.clone()).await.expect("put");
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
    async fn debug_names_the_nodes_and_no_password() {
        let store = RedisStore::cluster(&cluster_urls(), "p:")
            .await
            .expect("connect");
        let printed = format!("{store:?}");
        for url in cluster_urls() {
            assert!(
                printed.contains(url.trim_start_matches("redis://")),
                "{printed}"
            );
        }
        let err = RedisStore::cluster(&[] as &[&str], "p:")
            .await
            .expect_err("no nodes");
        assert_eq!(
            err.to_string(),
            "store: redis: a cluster needs at least one node url"
        );
    }
}
