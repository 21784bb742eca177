//! Identity forwarding: a short-lived JWT that the gateway signs for each request it sends to
//! an HTTP upstream, in a header of its own (never `Authorization`, never the client's token),
//! saying who the caller is; for a stdio child, when asked, the same token in each request's
//! `params._meta` under [`META_KEY`]. The upstream verifies it with the gateway's key set,
//! served at [`JWKS_PATH`].
//!
//! Header `{"alg":"ES256","typ":"JWT","kid":…}`; claims `iss` (the gateway), `aud` (the
//! upstream's URL; for a stdio child `stdio:NAME`, its upstream name, or `stdio:upstream`
//! for the one unnamed upstream), `sub`, `scope`, `client_id`, `email` and `groups` when
//! known, `iat`, `exp` (60 s later) and a random `jti`.
//!
//! The key is an ECDSA P-256 key, its `kid` the RFC 7638 thumbprint. By default it is made
//! when the gateway starts (it changes with every start); an [`IdentityKey`] read from a file
//! or from the store keeps it across restarts and shares it between instances. A key file
//! may hold further keys after the first: they are published (so tokens they signed still
//! verify) but sign nothing, which is how a key is rotated without a gap.
//!
//! A key kept in a store is a record ([`IdentityKey::to_record`]): the keys with, for each
//! published one, until when it is published; sealed with AES-256-GCM when a sealing key is
//! given. [`IdentityKey::rotated`] makes a new signing key and keeps the old one published
//! for a grace time; [`IdentityKey::replace`] swaps the keys of a running gateway (every clone
//! of an `IdentityKey` shares them), which is how every instance on the store follows.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::http::{HeaderName, HeaderValue};
use mcp_oauth::Auth;
use mcp_oauth::auth_server::SealingKey;
use mcp_oauth::jose::{Algorithm, SigningKey};
use serde_json::{Value, json};

use crate::GatewayError;

pub use mcp_oauth::gateway_identity::{JWKS_PATH, META_KEY};

/// The audience of the identity tokens of the stdio upstream `name` (`None`: the one unnamed
/// upstream).
pub(crate) fn stdio_audience(name: Option<&str>) -> String {
    format!("stdio:{}", name.unwrap_or("upstream"))
}

/// How long an identity token is valid.
const TTL: Duration = Duration::from_secs(60);

/// The key that signs identity tokens, with the keys that are only published (previous
/// ones, during a rotation). Cheap to clone; the clones share the keys, which
/// [`replace`](Self::replace) swaps for all of them.
#[derive(Clone)]
pub struct IdentityKey {
    keys: Arc<RwLock<Arc<Keys>>>,
}

/// The keys at one moment.
struct Keys {
    signing: SigningKey,
    published: Vec<Published>,
}

/// A key that signs nothing but is in the key set, until `until` (Unix time) when given.
struct Published {
    key: SigningKey,
    until: Option<u64>,
}

impl std::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityKey")
            .field("kid", &self.kid())
            .field("published", &self.keys().published.len())
            .finish_non_exhaustive()
    }
}

/// The context sealed records are bound to.
const SEAL_CONTEXT: &str = "mcp-oauth gateway identity key v1";
/// How a sealed record begins.
const SEALED: &str = "sealed:";

/// Now, in Unix seconds (0 if the clock is before 1970).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A stored record's keys.
#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    /// The signing key first, then the published ones.
    keys: Vec<RecordKey>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct RecordKey {
    pem: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    until: Option<u64>,
}

fn key_error(reason: impl Into<String>) -> GatewayError {
    GatewayError::Config {
        what: "identity key",
        reason: reason.into(),
    }
}

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";

impl IdentityKey {
    /// A new key, in memory only (it dies with the process).
    ///
    /// # Errors
    ///
    /// The system random source failed.
    pub fn generate() -> Result<Self, GatewayError> {
        let key = SigningKey::generate(Algorithm::ES256)
            .map_err(|_| key_error("cannot generate an ECDSA P-256 key"))?;
        Ok(Self::of(key, Vec::new()))
    }

    fn of(signing: SigningKey, published: Vec<Published>) -> Self {
        Self {
            keys: Arc::new(RwLock::new(Arc::new(Keys { signing, published }))),
        }
    }

    /// The keys now.
    fn keys(&self) -> Arc<Keys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes every clone of this key (the gateway's signer among them) use the keys of
    /// `with` from now on.
    pub fn replace(&self, with: &IdentityKey) {
        let keys = with.keys();
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
    }

    /// A new signing key; the one signing now stays published for `grace` (tokens it signed
    /// still verify), and the published keys whose time is not over stay as they are.
    ///
    /// # Errors
    ///
    /// The system random source failed.
    pub fn rotated(&self, grace: Duration) -> Result<Self, GatewayError> {
        let new = SigningKey::generate(Algorithm::ES256)
            .map_err(|_| key_error("cannot generate an ECDSA P-256 key"))?;
        let now = unix_now();
        let keys = self.keys();
        let copy = |key: &SigningKey| {
            key.to_pkcs8_pem()
                .and_then(|pem| SigningKey::from_pkcs8_pem(&pem, Algorithm::ES256).ok())
                .ok_or_else(|| key_error("cannot copy the signing key"))
        };
        let mut published = vec![Published {
            key: copy(&keys.signing)?,
            until: Some(now.saturating_add(grace.as_secs())),
        }];
        for old in keys
            .published
            .iter()
            .filter(|p| p.until.is_none_or(|u| u > now))
        {
            published.push(Published {
                key: copy(&old.key)?,
                until: old.until,
            });
        }
        Ok(Self::of(new, published))
    }

    /// The record a store keeps: every key with until when it is published, as JSON; sealed
    /// (AES-256-GCM, `sealed:` then base64url) when `seal` is given. What
    /// [`from_record`](Self::from_record) reads back.
    ///
    /// # Security Warning
    ///
    /// Unsealed, it holds the private keys in the clear.
    pub fn to_record(&self, seal: Option<&SealingKey>) -> Result<String, GatewayError> {
        let keys = self.keys();
        let mut record = Record {
            keys: Vec::with_capacity(1 + keys.published.len()),
        };
        let pem = |key: &SigningKey| {
            key.to_pkcs8_pem()
                .ok_or_else(|| key_error("cannot write the key as PEM"))
        };
        record.keys.push(RecordKey {
            pem: pem(&keys.signing)?,
            until: None,
        });
        for published in &keys.published {
            record.keys.push(RecordKey {
                pem: pem(&published.key)?,
                until: published.until,
            });
        }
        let json = serde_json::to_string(&record).map_err(|e| key_error(e.to_string()))?;
        match seal {
            None => Ok(json),
            Some(seal) => seal
                .seal(json.as_bytes(), SEAL_CONTEXT)
                .map(|sealed| format!("{SEALED}{sealed}"))
                .ok_or_else(|| key_error("cannot seal the key")),
        }
    }

    /// The keys of a stored record ([`to_record`](Self::to_record)), or of PEM text (a record
    /// kept before records were JSON); `seal` opens a sealed record.
    ///
    /// # Errors
    ///
    /// A sealed record without `seal` or that does not open with it, or keys that are not
    /// P-256 keys (the error says which).
    pub fn from_record(text: &str, seal: Option<&SealingKey>) -> Result<Self, GatewayError> {
        let text = text.trim();
        if text.starts_with(PEM_BEGIN) {
            return Self::from_pem(text);
        }
        let opened;
        let json = match text.strip_prefix(SEALED) {
            Some(sealed) => {
                let seal = seal.ok_or_else(|| {
                    key_error("the stored key is sealed: give the gateway the encryption key it was sealed with")
                })?;
                opened = seal.open(sealed, SEAL_CONTEXT).ok_or_else(|| {
                    key_error("the stored key does not open with this encryption key (instances sharing a store must share it)")
                })?;
                std::str::from_utf8(&opened).map_err(|_| key_error("the stored key is not text"))?
            }
            None => text,
        };
        let record: Record = serde_json::from_str(json)
            .map_err(|e| key_error(format!("the stored key is not a key record: {e}")))?;
        let mut keys = record.keys.into_iter().enumerate().map(|(index, k)| {
            SigningKey::from_pkcs8_pem(&k.pem, Algorithm::ES256)
                .map(|key| (key, k.until))
                .map_err(|e| {
                    key_error(format!(
                        "stored key {} is not an ECDSA P-256 PKCS#8 private key: {e}",
                        index + 1
                    ))
                })
        });
        let (signing, _) = keys
            .next()
            .ok_or_else(|| key_error("the stored key record holds no key"))??;
        let published = keys
            .map(|k| k.map(|(key, until)| Published { key, until }))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::of(signing, published))
    }

    /// The keys of `pem`: PKCS#8 `PRIVATE KEY` blocks of ECDSA P-256 keys, the first signing,
    /// the others only published.
    ///
    /// # Errors
    ///
    /// No block, or one that is not a P-256 private key (the error says which).
    pub fn from_pem(pem: &str) -> Result<Self, GatewayError> {
        let mut keys = Vec::new();
        for (index, block) in pem.split(PEM_BEGIN).skip(1).enumerate() {
            let key = SigningKey::from_pkcs8_pem(&format!("{PEM_BEGIN}{block}"), Algorithm::ES256)
                .map_err(|e| {
                    key_error(format!(
                        "key {} is not an ECDSA P-256 PKCS#8 private key: {e} (make one with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`)",
                        index + 1
                    ))
                })?;
            keys.push(key);
        }
        let mut keys = keys.into_iter();
        let signing = keys.next().ok_or_else(|| {
            key_error(format!(
                "no `{PEM_BEGIN}` block (write an ECDSA P-256 key in PKCS#8 PEM)"
            ))
        })?;
        let published = keys.map(|key| Published { key, until: None }).collect();
        Ok(Self::of(signing, published))
    }

    /// The key kept in the file at `path` (PEM, see [`from_pem`](Self::from_pem)); when the
    /// file does not exist, a new key is made and written there, readable by its owner only.
    ///
    /// # Errors
    ///
    /// The file cannot be read or written, or does not hold a P-256 key.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, GatewayError> {
        let path = path.as_ref();
        let io = |e: std::io::Error| key_error(format!("{}: {e}", path.display()));
        match std::fs::read_to_string(path) {
            Ok(pem) => Self::from_pem(&pem)
                .map_err(|e| key_error(format!("{}: {}", path.display(), config_reason(&e)))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate()?;
                let pem = key.to_pem();
                let mut options = std::fs::OpenOptions::new();
                // Never over a file another process wrote meanwhile: read that one instead.
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt as _;
                    options.mode(0o600);
                }
                match options.open(path) {
                    Ok(mut file) => {
                        use std::io::Write as _;
                        file.write_all(pem.as_bytes()).map_err(io)?;
                        file.sync_all().map_err(io)?;
                        Ok(key)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::from_pem(&std::fs::read_to_string(path).map_err(io)?)
                    }
                    Err(e) => Err(io(e)),
                }
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Every key as PKCS#8 PEM, the signing one first: what [`from_pem`](Self::from_pem)
    /// reads back.
    ///
    /// # Security Warning
    ///
    /// These are the private keys: whoever has them can vouch for any user to the upstreams.
    pub fn to_pem(&self) -> String {
        let keys = self.keys();
        std::iter::once(&keys.signing)
            .chain(keys.published.iter().map(|p| &p.key))
            .filter_map(SigningKey::to_pkcs8_pem)
            .collect()
    }

    /// The signing key's id (its RFC 7638 thumbprint).
    pub fn kid(&self) -> String {
        self.keys().signing.kid().to_owned()
    }

    /// The public key set: the signing key, then the published ones whose time is not over.
    pub fn jwks(&self) -> Value {
        let keys = self.keys();
        let now = unix_now();
        let keys: Vec<Value> = std::iter::once(&keys.signing)
            .chain(
                keys.published
                    .iter()
                    .filter(|p| p.until.is_none_or(|until| until > now))
                    .map(|p| &p.key),
            )
            .filter_map(SigningKey::public_jwk)
            .filter_map(|jwk| serde_json::to_value(jwk).ok())
            .collect();
        json!({ "keys": keys })
    }

    /// Signs `claims` as a JWT with the signing key.
    fn sign(&self, claims: &Value) -> String {
        self.keys().signing.sign_jwt(Some("JWT"), claims)
    }
}

fn config_reason(err: &GatewayError) -> String {
    match err {
        GatewayError::Config { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// The groups an identity token names for a caller.
pub type GroupsOf = Arc<dyn Fn(&Auth) -> Vec<String> + Send + Sync>;

/// The default groups of a caller: the strings of the token's `groups` and `roles` claims
/// (a string or an array), without repeats.
pub fn claimed_groups(caller: &Auth) -> Vec<String> {
    let mut groups: Vec<String> = Vec::new();
    for claim in ["groups", "roles"] {
        for group in caller.claims.string_list(claim) {
            if !groups.contains(&group) {
                groups.push(group);
            }
        }
    }
    groups
}

/// Signs identity tokens.
pub(crate) struct Signer {
    /// The header of HTTP upstreams' identity tokens; `None`: only stdio children get them.
    pub(crate) header: Option<HeaderName>,
    issuer: String,
    key: IdentityKey,
    groups: GroupsOf,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("header", &self.header)
            .field("issuer", &self.issuer)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn random_hex(bytes: usize) -> Option<String> {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).ok()?;
    Some(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The header name for identity tokens, if it can be one: a valid header name other than
/// `Authorization` and `Cookie` (kept for the upstream's own credential).
///
/// # Errors
///
/// What is wrong with it, and an example of a good one.
pub fn header_name(header: &str) -> Result<HeaderName, GatewayError> {
    let header = HeaderName::try_from(header).map_err(|_| GatewayError::Config {
        what: "identity header",
        reason: format!("{header:?} is not a header name (write e.g. X-MCP-Identity)"),
    })?;
    if header == ::http::header::AUTHORIZATION || header == ::http::header::COOKIE {
        return Err(GatewayError::Config {
            what: "identity header",
            reason: format!(
                "{header} is kept for the upstream's own credential; use a header of its own, e.g. X-MCP-Identity"
            ),
        });
    }
    Ok(header)
}

impl Signer {
    /// A signer with `key` (`None`: one made now) naming the caller's groups with `groups`
    /// (`None`: [`claimed_groups`]).
    pub(crate) fn new(
        header: Option<&str>,
        issuer: String,
        key: Option<IdentityKey>,
        groups: Option<GroupsOf>,
    ) -> Result<Self, GatewayError> {
        let header = header.map(header_name).transpose()?;
        let key = match key {
            Some(key) => key,
            None => IdentityKey::generate()?,
        };
        Ok(Self {
            header,
            issuer,
            key,
            groups: groups.unwrap_or_else(|| Arc::new(claimed_groups)),
        })
    }

    /// The public key set (JWKS).
    pub(crate) fn jwks(&self) -> Value {
        self.key.jwks()
    }

    /// An identity token for `caller`, for the upstream at `audience`, as a header value;
    /// see [`Signer::token_text`].
    pub(crate) fn token(&self, caller: Option<&Auth>, audience: &str) -> Option<HeaderValue> {
        HeaderValue::try_from(self.token_text(caller, audience)?).ok()
    }

    /// An identity token for `caller`, for the upstream at `audience`; `None` without a
    /// caller (no authentication) or when the clock or the random source fails (then it is
    /// left out, and the upstream sees no identity rather than a wrong one).
    pub(crate) fn token_text(&self, caller: Option<&Auth>, audience: &str) -> Option<String> {
        let caller = caller?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        let mut claims = json!({
            "iss": self.issuer,
            "aud": audience,
            "sub": caller.subject(),
            "iat": now,
            "exp": now + TTL.as_secs(),
            "jti": random_hex(16)?,
        });
        let object = claims.as_object_mut()?;
        if !caller.scopes.is_empty() {
            object.insert("scope".into(), Value::String(caller.scopes.join(" ")));
        }
        if let Some(client) = &caller.client_id {
            object.insert("client_id".into(), Value::String(client.clone()));
        }
        if let Some(email) = caller.claims.str("email") {
            object.insert("email".into(), Value::String(email.to_owned()));
        }
        let groups = (self.groups)(caller);
        if !groups.is_empty() {
            object.insert("groups".into(), json!(groups));
        }
        Some(self.key.sign(&claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_made_once_and_read_back() {
        let dir = std::env::temp_dir().join(format!(
            "mcp-gw-idkey-{}",
            random_hex(8).unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("identity.pem");
        let made = IdentityKey::from_file(&path).expect("made");
        let again = IdentityKey::from_file(&path).expect("read");
        assert_eq!(made.kid(), again.kid());
        assert_eq!(made.jwks(), again.jwks());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A rotation: the new key first signs, the old one stays published.
        let new = IdentityKey::generate().expect("new");
        std::fs::write(&path, format!("{}{}", new.to_pem(), made.to_pem())).expect("write");
        let rotated = IdentityKey::from_file(&path).expect("rotated");
        assert_eq!(rotated.kid(), new.kid());
        let kids: Vec<&str> = rotated.jwks()["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .filter_map(|k| k["kid"].as_str())
            .map(|k| {
                if k == new.kid() {
                    "new"
                } else if k == made.kid() {
                    "old"
                } else {
                    "?"
                }
            })
            .collect();
        assert_eq!(kids, ["new", "old"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn what_is_not_a_p256_key_is_named() {
        let Err(GatewayError::Config { reason, .. }) = IdentityKey::from_pem("hello") else {
            panic!("accepted");
        };
        assert!(
            reason.contains("no `-----BEGIN PRIVATE KEY-----` block"),
            "{reason}"
        );
        let ed = SigningKey::generate(Algorithm::EdDSA)
            .expect("ed25519")
            .to_pkcs8_pem()
            .expect("pem");
        let good = IdentityKey::generate().expect("key").to_pem();
        let Err(GatewayError::Config { reason, .. }) =
            IdentityKey::from_pem(&format!("{good}{ed}"))
        else {
            panic!("accepted");
        };
        assert!(
            reason.starts_with("key 2 is not an ECDSA P-256"),
            "{reason}"
        );
    }
}
