//! The authorization server's signing keys: generated once, kept in a data folder so that
//! tokens survive a restart, and rotated without breaking the tokens already issued.
//!
//! Layout of the folder:
//!
//! ```text
//! keys/keys.json      {"active": "<kid>", "keys": [{"kid", "alg", "created_at", "retire_at"}]}
//! keys/<kid>.pem      the PKCS#8 private key (mode 0600)
//! ```
//!
//! After [`KeyRing::rotate`], the previous key stays in the JWKS (and keeps verifying) until
//! its `retire_at`, which is at least the longest life of a token it signed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::claims::now_unix;
use crate::error::ConfigError;
use crate::error::VerifyError;
use crate::jose::{Algorithm, JwkSet, KeySet, SigningKey};
use crate::verify::{BoxFuture, KeySource};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyEntry {
    kid: String,
    alg: String,
    created_at: i64,
    #[serde(default)]
    retire_at: Option<i64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    active: String,
    keys: Vec<KeyEntry>,
}

struct Ring {
    active: Arc<SigningKey>,
    published: Vec<(Arc<SigningKey>, Option<i64>)>,
    verifying: Arc<KeySet>,
}

impl Ring {
    fn new(active: Arc<SigningKey>, published: Vec<(Arc<SigningKey>, Option<i64>)>) -> Self {
        let verifying = Arc::new(KeySet::new(
            published.iter().map(|(k, _)| k.verifying_key()).collect(),
        ));
        Self {
            active,
            published,
            verifying,
        }
    }
}

/// Signing keys: the active one signs, every published one verifies.
pub struct KeyRing {
    dir: Option<PathBuf>,
    ring: RwLock<Ring>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("dir", &self.dir)
            .field("active", &self.active().kid())
            .finish()
    }
}

fn io_err(path: &Path, err: impl std::fmt::Display) -> ConfigError {
    ConfigError::invalid("data folder", format!("{}: {err}", path.display()))
}

/// Writes a file atomically (temporary file, then rename), with owner-only permissions.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), ConfigError> {
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(|e| io_err(&tmp, e))?;
        file.write_all(contents).map_err(|e| io_err(&tmp, e))?;
        file.sync_all().map_err(|e| io_err(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
}

impl KeyRing {
    /// A ring with one new key that lives in memory only (tokens die with the process).
    ///
    /// # Errors
    ///
    /// Key generation failed.
    pub fn ephemeral(alg: Algorithm) -> Result<Self, ConfigError> {
        let key = Arc::new(SigningKey::generate(alg)?);
        Ok(Self {
            dir: None,
            ring: RwLock::new(Ring::new(key.clone(), vec![(key, None)])),
        })
    }

    /// Opens the ring kept in `dir/keys`, creating it (with a new `alg` key) when absent.
    /// Retired keys past their `retire_at` are dropped.
    ///
    /// # Errors
    ///
    /// The folder cannot be created or read, or a key file is damaged.
    pub fn open(dir: impl AsRef<Path>, alg: Algorithm) -> Result<Self, ConfigError> {
        let dir = dir.as_ref().join("keys");
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| io_err(&dir, e))?;
        }
        let manifest_path = dir.join("keys.json");
        if !manifest_path.exists() {
            let ring = Self {
                dir: Some(dir),
                ring: RwLock::new(Ring::new(Arc::new(SigningKey::generate(alg)?), Vec::new())),
            };
            let active = ring.active();
            ring.save(
                &[KeyEntry {
                    kid: active.kid().to_owned(),
                    alg: alg.as_str().to_owned(),
                    created_at: now_unix(),
                    retire_at: None,
                }],
                &active,
            )?;
            return Self::open(
                ring.dir
                    .as_deref()
                    .and_then(Path::parent)
                    .unwrap_or(Path::new(".")),
                alg,
            );
        }
        let text =
            std::fs::read_to_string(&manifest_path).map_err(|e| io_err(&manifest_path, e))?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| io_err(&manifest_path, e))?;
        let now = now_unix();
        let mut published = Vec::new();
        let mut active = None;
        for entry in manifest
            .keys
            .iter()
            .filter(|e| e.retire_at.is_none_or(|t| t > now) || e.kid == manifest.active)
        {
            let alg: Algorithm = entry
                .alg
                .parse()
                .map_err(|_| io_err(&manifest_path, format!("unknown alg {}", entry.alg)))?;
            let path = dir.join(format!("{}.pem", safe_name(&entry.kid)));
            let pem = std::fs::read_to_string(&path).map_err(|e| io_err(&path, e))?;
            let key = Arc::new(SigningKey::from_pkcs8_pem(&pem, alg)?.with_kid(entry.kid.clone()));
            if entry.kid == manifest.active {
                active = Some(key.clone());
            }
            published.push((key, entry.retire_at));
        }
        let active = active.ok_or_else(|| io_err(&manifest_path, "the active key is missing"))?;
        Ok(Self {
            dir: Some(dir),
            ring: RwLock::new(Ring::new(active, published)),
        })
    }

    fn save(&self, entries: &[KeyEntry], new_key: &SigningKey) -> Result<(), ConfigError> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let pem = new_key
            .to_pkcs8_pem()
            .ok_or_else(|| ConfigError::InvalidKey("the key cannot be exported".into()))?;
        write_private(
            &dir.join(format!("{}.pem", safe_name(new_key.kid()))),
            pem.as_bytes(),
        )?;
        let manifest = Manifest {
            active: new_key.kid().to_owned(),
            keys: entries.to_vec(),
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| ConfigError::invalid("keys", e.to_string()))?;
        write_private(&dir.join("keys.json"), &json)
    }

    fn read<T>(&self, f: impl FnOnce(&Ring) -> T) -> T {
        match self.ring.read() {
            Ok(ring) => f(&ring),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// The key that signs new tokens.
    pub fn active(&self) -> Arc<SigningKey> {
        self.read(|r| r.active.clone())
    }

    /// The keys that verify (the active one and those not yet retired).
    pub fn verifying_keys(&self) -> Arc<KeySet> {
        self.read(|r| r.verifying.clone())
    }

    /// The public JWKS document.
    pub fn jwks(&self) -> JwkSet {
        let now = now_unix();
        self.read(|r| JwkSet {
            keys: r
                .published
                .iter()
                .filter(|(_, retire)| retire.is_none_or(|t| t > now))
                .filter_map(|(k, _)| k.public_jwk())
                .collect(),
        })
    }

    /// Generates a new active key; the previous one keeps verifying for `keep_for` seconds
    /// (at least the longest token life), then leaves the JWKS.
    ///
    /// # Errors
    ///
    /// Key generation or saving failed.
    pub fn rotate(&self, keep_for: i64) -> Result<Arc<SigningKey>, ConfigError> {
        let alg = self.active().alg();
        let key = Arc::new(SigningKey::generate(alg)?);
        let now = now_unix();
        let mut ring = match self.ring.write() {
            Ok(ring) => ring,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut published: Vec<(Arc<SigningKey>, Option<i64>)> = ring
            .published
            .iter()
            .filter(|(_, retire)| retire.is_none_or(|t| t > now))
            .map(|(k, retire)| (k.clone(), Some(retire.unwrap_or(now + keep_for))))
            .collect();
        published.push((key.clone(), None));
        let entries: Vec<KeyEntry> = published
            .iter()
            .map(|(k, retire)| KeyEntry {
                kid: k.kid().to_owned(),
                alg: k.alg().as_str().to_owned(),
                created_at: now,
                retire_at: *retire,
            })
            .collect();
        self.save(&entries, &key)?;
        *ring = Ring::new(key.clone(), published);
        Ok(key)
    }
}

/// Key ids come from thumbprints (base64url), but never trust a file name.
fn safe_name(kid: &str) -> String {
    kid.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl KeySource for KeyRing {
    fn keys<'a>(
        &'a self,
        _kid: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Arc<KeySet>, VerifyError>> {
        Box::pin(std::future::ready(Ok(self.verifying_keys())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("mcp-oauth-keys-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn keys_persist_and_rotation_keeps_the_old_key_until_retired() {
        let dir = temp_dir("rotate");
        let ring = KeyRing::open(&dir, Algorithm::ES256).expect("open");
        let first = ring.active().kid().to_owned();
        let again = KeyRing::open(&dir, Algorithm::ES256).expect("reopen");
        assert_eq!(again.active().kid(), first, "the key survives a restart");
        let token = ring.active().sign_jwt(None, &serde_json::json!({"a": 1}));

        let second = again.rotate(3600).expect("rotate");
        assert_ne!(second.kid(), first);
        let reopened = KeyRing::open(&dir, Algorithm::ES256).expect("reopen");
        assert_eq!(reopened.active().kid(), second.kid());
        assert_eq!(reopened.jwks().keys.len(), 2, "the old key stays published");
        let jws = crate::jose::dangerous::decode_unverified(&token).expect("decode");
        assert!(
            jws.verify_with(&reopened.verifying_keys()).is_ok(),
            "old tokens still verify"
        );

        reopened.rotate(0).expect("rotate with no grace");
        let last = KeyRing::open(&dir, Algorithm::ES256).expect("reopen");
        let kids: Vec<String> = last.jwks().keys.into_iter().filter_map(|k| k.kid).collect();
        assert!(
            !kids.contains(&second.kid().to_owned()),
            "a key retired now leaves the JWKS"
        );
        assert!(kids.contains(&first), "a key keeps its own retirement time");
        assert_eq!(kids.len(), 2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join("keys").join("keys.json"))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "key files are private");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
