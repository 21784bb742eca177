//! `mcp-oauth gateway --identity-key`: where the key that signs identity tokens
//! (`--identity-header`, `--identity-meta`) is kept, so that it outlives a restart and every
//! instance signs with the same one.
//!
//! - `file:PATH`: a PKCS#8 PEM file (made, owner-only, when absent); further keys after the
//!   first are published but sign nothing (a rotation).
//! - `store`: in the authorization server's store (`--store`), made once by whichever instance
//!   starts first (`put_if_absent`) and read by the others; sealed when `--encryption-key` is
//!   given (a key the instances sharing the store share by configuration; the data folder's
//!   own key is per instance unless the folder is shared, so it does not seal this record).
//!   `mcp-oauth gateway rotate-identity-key` adds a new signing key and keeps the old one
//!   published for a grace time; running instances read the record every
//!   [`FOLLOW_EVERY`] and follow it.
//!
//! Without it, the key is made at each start.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mcp_oauth::auth_server::SealingKey;
use mcp_oauth::auth_server::store::{Kind, Store};
use mcp_oauth_gateway::identity::IdentityKey;

/// How often a running gateway reads the stored key again (to follow a rotation).
pub(crate) const FOLLOW_EVERY: Duration = Duration::from_secs(30);

/// The purpose the record's sealing key is derived for, from the encryption key.
const SEAL_PURPOSE: &str = "gateway identity key v1";

/// The sealing key of the stored record, from the gateway's encryption key.
pub(crate) fn sealing_key(encryption_key: &[u8]) -> Result<SealingKey, String> {
    SealingKey::derive(encryption_key, SEAL_PURPOSE)
        .map_err(|e| format!("--identity-key store: the encryption key: {e}"))
}

/// The store record's key (kind [`Kind::GatewayKey`]).
const RECORD: &str = "identity";

/// Where the identity key is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeySource {
    /// A PEM file.
    File(PathBuf),
    /// The authorization server's store.
    Store,
}

/// Reads the option's value.
pub(crate) fn parse(value: &str) -> Result<KeySource, String> {
    let value = value.trim();
    if value == "store" {
        return Ok(KeySource::Store);
    }
    match value.strip_prefix("file:") {
        Some(path) if !path.trim().is_empty() => Ok(KeySource::File(PathBuf::from(path.trim()))),
        _ => Err(format!(
            "--identity-key {value:?}: write file:PATH (a PEM key file, made when absent) or store (kept in --store, shared by every instance on it)"
        )),
    }
}

/// The key from `source`; `store` is the authorization server's (`None` with `--issuer`),
/// `seal` seals its record. A key from the store is then followed: a task reads the record
/// every [`FOLLOW_EVERY`] and puts a rotated key in place.
pub(crate) async fn load(
    source: &KeySource,
    store: Option<&Arc<dyn Store>>,
    seal: Option<SealingKey>,
) -> Result<IdentityKey, String> {
    match source {
        KeySource::File(path) => {
            IdentityKey::from_file(path).map_err(|e| format!("--identity-key: {e}"))
        }
        KeySource::Store => match store {
            Some(store) => {
                let key = from_store(store.as_ref(), seal.as_ref()).await?;
                follow(store.clone(), seal, key.clone());
                Ok(key)
            }
            None => Err(
                "--identity-key store: with --issuer the gateway has no store; use --identity-key file:PATH (the same file on every instance)"
                    .to_owned(),
            ),
        },
    }
}

/// The sealing key of the stored record (`--identity-key store` with the gateway's own store):
/// derived from `--encryption-key` when it is given; `None` otherwise (the record is then kept
/// in the clear, as the instances may each have their own data folder's key).
pub(crate) fn seal_of(
    args: &crate::gateway_args::GatewayArgs,
    source: &KeySource,
    has_store: bool,
) -> Result<Option<SealingKey>, String> {
    if *source != KeySource::Store || !has_store || args.login_options.encryption_key.is_none() {
        return Ok(None);
    }
    let dir = crate::data_dir::resolve(args.dev.data_dir.clone());
    let key = args.login_options.encryption_key(&dir)?;
    sealing_key(key.expose()).map(Some)
}

/// `mcp-oauth gateway rotate-identity-key`, on the store the options name.
pub(crate) async fn rotate_command(
    args: &crate::gateway_args::GatewayArgs,
    grace: u64,
) -> Result<std::process::ExitCode, Box<dyn std::error::Error>> {
    let source = args.identity_key.as_deref().map(parse).transpose()?;
    if source != Some(KeySource::Store) {
        return Err("rotate-identity-key is for --identity-key store (a key file rotates by writing the new key first in it, the old one after)".into());
    }
    if args.dev.store == crate::store_arg::StoreArg::Memory {
        return Err("rotate-identity-key: --store memory lives in the gateway's process; give the store the gateway uses (sqlite, redis, postgres)".into());
    }
    let dir = crate::data_dir::resolve(args.dev.data_dir.clone());
    let store = args.dev.store.open(&dir, None, "mcp-oauth:").await?;
    let seal = seal_of(args, &KeySource::Store, true)?;
    let (was, now) = rotate(store.as_ref(), seal.as_ref(), Duration::from_secs(grace)).await?;
    println!(
        "identity key rotated: {now} signs (running gateways follow within {} s); {was} stays in the key set for {grace} s",
        FOLLOW_EVERY.as_secs()
    );
    Ok(std::process::ExitCode::SUCCESS)
}

fn failed(e: &dyn std::fmt::Display) -> String {
    format!("--identity-key store: {e}")
}

/// The keys of the record `text`.
fn open_record(text: &str, seal: Option<&SealingKey>) -> Result<IdentityKey, String> {
    if seal.is_none() && text.starts_with("sealed:") {
        return Err(failed(
            &"the stored key is sealed: give --encryption-key (or MCP_OAUTH_ENCRYPTION_KEY), the key every instance on this store shares",
        ));
    }
    IdentityKey::from_record(text, seal).map_err(|e| failed(&e))
}

/// The stored record's text, if there is one.
async fn record(store: &dyn Store) -> Result<Option<String>, String> {
    let Some(stored) = store
        .get(Kind::GatewayKey, RECORD)
        .await
        .map_err(|e| failed(&e))?
    else {
        return Ok(None);
    };
    String::from_utf8(stored.data)
        .map(Some)
        .map_err(|_| failed(&"the stored key is not text"))
}

/// The key kept in `store`, made and put there first when there is none: of several
/// instances starting at once, one puts its key and every one reads that one. The record is
/// sealed with `seal`; one kept unsealed (before the gateway sealed it) is sealed now.
pub(crate) async fn from_store(
    store: &dyn Store,
    seal: Option<&SealingKey>,
) -> Result<IdentityKey, String> {
    let made = IdentityKey::generate().map_err(|e| failed(&e))?;
    let text = made.to_record(seal).map_err(|e| failed(&e))?;
    let put = store
        .put_if_absent(Kind::GatewayKey, RECORD, text.into_bytes(), None)
        .await
        .map_err(|e| failed(&e))?;
    if put {
        return Ok(made);
    }
    let text = record(store)
        .await?
        .ok_or_else(|| failed(&"the stored key vanished; start again"))?;
    let key = open_record(&text, seal)?;
    if seal.is_some() && !text.starts_with("sealed:") {
        let sealed = key.to_record(seal).map_err(|e| failed(&e))?;
        store
            .put(Kind::GatewayKey, RECORD, sealed.into_bytes(), None)
            .await
            .map_err(|e| failed(&e))?;
    }
    Ok(key)
}

/// `mcp-oauth gateway rotate-identity-key`: a new signing key in the stored record, the one
/// signing until now published for `grace` more. The key ids, old then new.
pub(crate) async fn rotate(
    store: &dyn Store,
    seal: Option<&SealingKey>,
    grace: Duration,
) -> Result<(String, String), String> {
    let text = record(store).await?.ok_or_else(|| {
        failed(
            &"there is no key in the store yet: start the gateway once with --identity-key store",
        )
    })?;
    let key = open_record(&text, seal)?;
    let rotated = key.rotated(grace).map_err(|e| failed(&e))?;
    let text = rotated.to_record(seal).map_err(|e| failed(&e))?;
    store
        .put(Kind::GatewayKey, RECORD, text.into_bytes(), None)
        .await
        .map_err(|e| failed(&e))?;
    Ok((key.kid(), rotated.kid()))
}

/// Reads the stored record again every [`FOLLOW_EVERY`] and puts its keys in place when it
/// changed (a rotation). A record that cannot be read is logged and the keys kept.
fn follow(store: Arc<dyn Store>, seal: Option<SealingKey>, key: IdentityKey) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(FOLLOW_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut seen: Option<String> = None;
        loop {
            tick.tick().await;
            if let Err(e) = follow_once(store.as_ref(), seal.as_ref(), &key, &mut seen).await {
                tracing::warn!(target: "mcp_oauth_gateway", "{e}; the identity key in use stays");
            }
        }
    });
}

/// One reading of the record for [`follow`]; `seen` is the text read last time.
async fn follow_once(
    store: &dyn Store,
    seal: Option<&SealingKey>,
    key: &IdentityKey,
    seen: &mut Option<String>,
) -> Result<(), String> {
    let Some(text) = record(store).await? else {
        return Ok(());
    };
    if seen.as_deref() == Some(text.as_str()) {
        return Ok(());
    }
    let stored = open_record(&text, seal)?;
    if stored.jwks() != key.jwks() || stored.kid() != key.kid() {
        key.replace(&stored);
    }
    *seen = Some(text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_oauth::auth_server::store::{MemoryStore, SqliteStore};

    #[test]
    fn the_option_names_a_file_or_the_store() {
        assert_eq!(parse("store"), Ok(KeySource::Store));
        assert_eq!(
            parse("file:/etc/mcp/identity.pem"),
            Ok(KeySource::File("/etc/mcp/identity.pem".into()))
        );
        for bad in ["", "file:", "/etc/mcp/identity.pem", "redis://x"] {
            let err = parse(bad).expect_err(bad);
            assert!(err.contains("file:PATH") && err.contains("store"), "{err}");
        }
    }

    async fn shared_by_every_instance(store: Arc<dyn Store>) {
        // Instances starting at once on one store: one key for all.
        let (a, b, c) = tokio::join!(
            from_store(store.as_ref(), None),
            from_store(store.as_ref(), None),
            from_store(store.as_ref(), None)
        );
        let (a, b, c) = (a.expect("a"), b.expect("b"), c.expect("c"));
        assert_eq!(a.kid(), b.kid());
        assert_eq!(b.kid(), c.kid());
        assert_eq!(a.jwks(), c.jwks());
        // A restart reads it back.
        let again = load(&KeySource::Store, Some(&store), None)
            .await
            .expect("again");
        assert_eq!(again.kid(), a.kid());
        assert!(load(&KeySource::Store, None, None).await.is_err());
    }

    #[tokio::test]
    async fn the_store_keeps_one_key_for_every_instance() {
        shared_by_every_instance(Arc::new(MemoryStore::new())).await;
    }

    #[tokio::test]
    async fn two_instances_on_one_sqlite_file_share_the_key() {
        let dir = std::env::temp_dir().join(format!("mcp-idkey-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("store.db");
        let first: Arc<dyn Store> = Arc::new(SqliteStore::open(&file).expect("first"));
        let second: Arc<dyn Store> = Arc::new(SqliteStore::open(&file).expect("second"));
        let a = from_store(first.as_ref(), None).await.expect("a");
        let b = from_store(second.as_ref(), None).await.expect("b");
        assert_eq!(a.kid(), b.kid());
        drop((first, second));
        // The restarted instance reads the same key.
        let reopened: Arc<dyn Store> = Arc::new(SqliteStore::open(&file).expect("reopened"));
        assert_eq!(
            load(&KeySource::Store, Some(&reopened), None)
                .await
                .expect("c")
                .kid(),
            a.kid()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_rotation_signs_with_a_new_key_publishes_both_and_stays_sealed() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        // A record kept unsealed by an older gateway is sealed at the next start.
        let old = IdentityKey::generate().expect("key");
        store
            .put(Kind::GatewayKey, RECORD, old.to_pem().into_bytes(), None)
            .await
            .expect("put");
        let seal = sealing_key(&[3; 32]).expect("seal");
        let running = from_store(store.as_ref(), Some(&seal)).await.expect("load");
        assert_eq!(running.kid(), old.kid());
        let text = record(store.as_ref()).await.expect("read").expect("there");
        assert!(
            text.starts_with("sealed:") && !text.contains("PRIVATE KEY"),
            "{text}"
        );
        // Without the encryption key, or with another: the message says what to give.
        let err = from_store(store.as_ref(), None).await.expect_err("sealed");
        assert!(err.contains("give --encryption-key"), "{err}");
        let other = sealing_key(&[4; 32]).expect("seal");
        let err = from_store(store.as_ref(), Some(&other))
            .await
            .expect_err("other key");
        assert!(err.contains("encryption key"), "{err}");

        let (was, now) = rotate(store.as_ref(), Some(&seal), Duration::from_secs(3600))
            .await
            .expect("rotate");
        assert_eq!(was, old.kid());
        assert_ne!(now, was);
        // A running instance follows the record at its next reading.
        let mut seen = None;
        follow_once(store.as_ref(), Some(&seal), &running, &mut seen)
            .await
            .expect("follow");
        assert_eq!(running.kid(), now);
        let kids: Vec<String> = running.jwks()["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .filter_map(|k| k["kid"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(kids, [now.clone(), was.clone()]);
        // A restart reads the rotated record.
        let restarted = from_store(store.as_ref(), Some(&seal))
            .await
            .expect("restart");
        assert_eq!(restarted.kid(), now);
        // Nothing in the store: the rotation says to start the gateway first.
        let empty = MemoryStore::new();
        let err = rotate(&empty, Some(&seal), Duration::from_secs(3600))
            .await
            .expect_err("empty");
        assert!(err.contains("start the gateway once"), "{err}");
    }
}
