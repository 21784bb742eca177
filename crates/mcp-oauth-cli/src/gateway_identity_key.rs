//! `mcp-oauth gateway --identity-key`: where the key that signs identity tokens
//! (`--identity-header`, `--identity-meta`) is kept, so that it outlives a restart and every
//! instance signs with the same one.
//!
//! - `file:PATH`: a PKCS#8 PEM file (made, owner-only, when absent); further keys after the
//!   first are published but sign nothing (a rotation).
//! - `store`: in the authorization server's store (`--store`), made once by whichever instance
//!   starts first (`put_if_absent`) and read by the others.
//!
//! Without it, the key is made at each start.

use std::path::PathBuf;
use std::sync::Arc;

use mcp_oauth::auth_server::store::{Kind, Store};
use mcp_oauth_gateway::identity::IdentityKey;

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

/// The key from `source`; `store` is the authorization server's (`None` with `--issuer`).
pub(crate) async fn load(
    source: &KeySource,
    store: Option<&Arc<dyn Store>>,
) -> Result<IdentityKey, String> {
    match source {
        KeySource::File(path) => {
            IdentityKey::from_file(path).map_err(|e| format!("--identity-key: {e}"))
        }
        KeySource::Store => match store {
            Some(store) => from_store(store.as_ref()).await,
            None => Err(
                "--identity-key store: with --issuer the gateway has no store; use --identity-key file:PATH (the same file on every instance)"
                    .to_owned(),
            ),
        },
    }
}

/// The key kept in `store`, made and put there first when there is none: of several
/// instances starting at once, one puts its key and every one reads that one.
pub(crate) async fn from_store(store: &dyn Store) -> Result<IdentityKey, String> {
    let failed = |e: &dyn std::fmt::Display| format!("--identity-key store: {e}");
    let made = IdentityKey::generate().map_err(|e| failed(&e))?;
    let put = store
        .put_if_absent(Kind::GatewayKey, RECORD, made.to_pem().into_bytes(), None)
        .await
        .map_err(|e| failed(&e))?;
    if put {
        return Ok(made);
    }
    let stored = store
        .get(Kind::GatewayKey, RECORD)
        .await
        .map_err(|e| failed(&e))?
        .ok_or_else(|| failed(&"the stored key vanished; start again"))?;
    let pem = String::from_utf8(stored.data).map_err(|_| failed(&"the stored key is not text"))?;
    IdentityKey::from_pem(&pem).map_err(|e| failed(&e))
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
            from_store(store.as_ref()),
            from_store(store.as_ref()),
            from_store(store.as_ref())
        );
        let (a, b, c) = (a.expect("a"), b.expect("b"), c.expect("c"));
        assert_eq!(a.kid(), b.kid());
        assert_eq!(b.kid(), c.kid());
        assert_eq!(a.jwks(), c.jwks());
        // A restart reads it back.
        let again = load(&KeySource::Store, Some(&store)).await.expect("again");
        assert_eq!(again.kid(), a.kid());
        assert!(load(&KeySource::Store, None).await.is_err());
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
        let a = from_store(first.as_ref()).await.expect("a");
        let b = from_store(second.as_ref()).await.expect("b");
        assert_eq!(a.kid(), b.kid());
        drop((first, second));
        // The restarted instance reads the same key.
        let reopened: Arc<dyn Store> = Arc::new(SqliteStore::open(&file).expect("reopened"));
        assert_eq!(
            load(&KeySource::Store, Some(&reopened))
                .await
                .expect("c")
                .kid(),
            a.kid()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
