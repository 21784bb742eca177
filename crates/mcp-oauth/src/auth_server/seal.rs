//! Sealing secrets at rest (AES-256-GCM) and signing cookies (HMAC-SHA-256), with keys derived
//! from one configured 32-byte key.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::ConfigError;

/// A key that seals small secrets at rest (AES-256-GCM, a fresh random nonce per value),
/// derived from a 32-byte root key and a purpose, so one root key serves several uses without
/// one use opening another's values.
///
/// Each sealed value is bound to a context string (authenticated, not encrypted): a value
/// moved to another record, whose context differs, does not open. The authorization server
/// seals upstream tokens with it; the gateway seals its per-user credential vault.
///
/// ```
/// use mcp_oauth::auth_server::SealingKey;
///
/// let key = SealingKey::derive(&[7; 32], "example v1").unwrap();
/// let sealed = key.seal(b"ghp_secret", "user-a/github").unwrap();
/// assert!(!sealed.contains("ghp_secret"));
/// assert_eq!(key.open(&sealed, "user-a/github").as_deref(), Some(&b"ghp_secret"[..]));
/// assert_eq!(key.open(&sealed, "user-b/github"), None);
/// ```
pub struct SealingKey {
    aead: LessSafeKey,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey([redacted])")
    }
}

impl SealingKey {
    /// The key for `purpose` (a fixed label, such as `"gateway vault v1"`) derived from
    /// `root` (exactly 32 secret bytes): `HMAC-SHA-256(root, "mcp-oauth " ‖ purpose)`.
    ///
    /// # Errors
    ///
    /// `root` is not 32 bytes long.
    pub fn derive(root: &[u8], purpose: &str) -> Result<Self, ConfigError> {
        if root.len() != 32 {
            return Err(ConfigError::invalid(
                "encryption key",
                "it must be exactly 32 bytes (for example 32 random bytes, base64-encoded in configuration)",
            ));
        }
        let label = format!("mcp-oauth {purpose}");
        let derived = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, root), label.as_bytes());
        let unbound = UnboundKey::new(&AES_256_GCM, derived.as_ref())
            .map_err(|_| ConfigError::invalid("encryption key", "unusable key"))?;
        Ok(Self {
            aead: LessSafeKey::new(unbound),
        })
    }

    /// `plaintext` sealed for `context`: `base64url(nonce ‖ ciphertext ‖ tag)`. `None` only
    /// when the system has no randomness.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Option<String> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).ok()?;
        let mut data = plaintext.to_vec();
        self.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut data,
            )
            .ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Some(URL_SAFE_NO_PAD.encode(out))
    }

    /// The plaintext of [`SealingKey::seal`], if the value is intact, sealed with this key
    /// and for `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Option<Vec<u8>> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = rest.to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut data)
            .ok()?;
        Some(plain.to_vec())
    }
}

/// Encrypts and authenticates small secrets, bound to a context string (the grant family),
/// so a sealed value moved to another record does not open.
pub struct Sealer {
    aead: SealingKey,
    cookies: hmac::Key,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

impl Sealer {
    /// Derives the encryption and the cookie-signing keys from `key` (32 bytes).
    pub fn new(key: &[u8]) -> Result<Self, ConfigError> {
        let aead = SealingKey::derive(key, "upstream-token sealing v1")?;
        let mac = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, key),
            b"mcp-oauth consent cookie v1",
        );
        Ok(Self {
            aead,
            cookies: hmac::Key::new(hmac::HMAC_SHA256, mac.as_ref()),
        })
    }

    /// `base64url(nonce ‖ ciphertext ‖ tag)`.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Option<String> {
        self.aead.seal(plaintext, context)
    }

    /// The plaintext of [`Sealer::seal`], if the value is intact and sealed for `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Option<Vec<u8>> {
        self.aead.open(sealed, context)
    }

    /// `base64url(payload).base64url(mac)`.
    pub fn sign_cookie(&self, payload: &[u8]) -> String {
        let tag = hmac::sign(&self.cookies, payload);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// `base64url(HMAC(cookie key, purpose ‖ 0 ‖ value))`: ties a browser cookie to a
    /// server-side value (the upstream `state` of a sign-in) without revealing it.
    pub fn mac(&self, purpose: &str, value: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.cookies);
        ctx.update(purpose.as_bytes());
        ctx.update(&[0]);
        ctx.update(value.as_bytes());
        URL_SAFE_NO_PAD.encode(ctx.sign().as_ref())
    }

    /// Whether `tag` is [`Sealer::mac`] of `purpose` and `value` (compared in constant time).
    pub fn verify_mac(&self, purpose: &str, value: &str, tag: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else {
            return false;
        };
        let mut data = Vec::with_capacity(purpose.len() + 1 + value.len());
        data.extend_from_slice(purpose.as_bytes());
        data.push(0);
        data.extend_from_slice(value.as_bytes());
        hmac::verify(&self.cookies, &data, &tag).is_ok()
    }

    /// The payload of a cookie made by [`Sealer::sign_cookie`], if its signature holds.
    pub fn verify_cookie(&self, value: &str) -> Option<Vec<u8>> {
        let (payload, tag) = value.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        hmac::verify(&self.cookies, &payload, &tag).ok()?;
        Some(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_in_their_context_and_intact() {
        let sealer = Sealer::new(&[7; 32]).expect("key");
        let sealed = sealer.seal(b"upstream-token", "family-1").expect("seal");
        assert!(!sealed.contains("upstream-token"));
        assert_eq!(
            sealer.open(&sealed, "family-1").as_deref(),
            Some(&b"upstream-token"[..])
        );
        assert_eq!(
            sealer.open(&sealed, "family-2"),
            None,
            "bound to its context"
        );
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            sealer.open(std::str::from_utf8(&tampered).expect("ascii"), "family-1"),
            None
        );
        assert_ne!(
            sealer.seal(b"x", "c"),
            sealer.seal(b"x", "c"),
            "fresh nonce each time"
        );
        assert_eq!(
            Sealer::new(&[7; 32])
                .expect("key")
                .open(&sealed, "family-1")
                .as_deref(),
            Some(&b"upstream-token"[..])
        );
        assert_eq!(
            Sealer::new(&[8; 32])
                .expect("key")
                .open(&sealed, "family-1"),
            None,
            "another key cannot open it"
        );
        assert!(Sealer::new(&[1; 16]).is_err());
    }

    #[test]
    fn sealing_keys_of_other_purposes_do_not_open_each_other() {
        let tokens = Sealer::new(&[7; 32]).expect("key");
        let sealed = tokens.seal(b"upstream-token", "c").expect("seal");
        let same = SealingKey::derive(&[7; 32], "upstream-token sealing v1").expect("key");
        assert_eq!(
            same.open(&sealed, "c").as_deref(),
            Some(&b"upstream-token"[..]),
            "the server's sealer is this purpose's key"
        );
        let vault = SealingKey::derive(&[7; 32], "gateway vault v1").expect("key");
        assert_eq!(vault.open(&sealed, "c"), None);
        assert!(SealingKey::derive(&[7; 31], "x").is_err());
        assert_eq!(format!("{vault:?}"), "SealingKey([redacted])");
    }

    #[test]
    fn cookies_are_signed() {
        let sealer = Sealer::new(&[7; 32]).expect("key");
        let cookie = sealer.sign_cookie(b"[\"client-a\"]");
        assert_eq!(
            sealer.verify_cookie(&cookie).as_deref(),
            Some(&b"[\"client-a\"]"[..])
        );
        let forged = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(b"[\"client-b\"]"),
            cookie.split('.').nth(1).expect("tag")
        );
        assert_eq!(sealer.verify_cookie(&forged), None);
        assert_eq!(sealer.verify_cookie("garbage"), None);
    }

    #[test]
    fn macs_bind_a_value_and_its_purpose() {
        let sealer = Sealer::new(&[7; 32]).expect("key");
        let tag = sealer.mac("upstream state", "abc");
        assert!(sealer.verify_mac("upstream state", "abc", &tag));
        assert!(!sealer.verify_mac("upstream state", "abd", &tag));
        assert!(!sealer.verify_mac("other purpose", "abc", &tag));
        assert!(!sealer.verify_mac("upstream state", "abc", "not base64!"));
        let other = Sealer::new(&[8; 32]).expect("key");
        assert!(!other.verify_mac("upstream state", "abc", &tag));
        assert!(!tag.contains("abc"));
    }
}
