//! JSON Web Keys (RFC 7517, RFC 7518 §6, RFC 8037) and the verifying keys built from them.

use std::fmt;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use aws_lc_rs::{constant_time, digest, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use super::{Algorithm, Algorithms, KeyFamily, crypto};
use crate::error::{ConfigError, VerifyError};

/// A JSON Web Key, as found in a JWKS document or published by this crate.
///
/// Only public members are modelled; a private member (`d`, `p`, …) in input is ignored and
/// never serialised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `RSA`, `EC`, `OKP` or `oct`.
    pub kty: String,
    /// Key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The algorithm this key is meant for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Intended use: `sig` or `enc`.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Permitted operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ops: Option<Vec<String>>,
    /// RSA modulus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA public exponent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// Curve: `P-256`, `P-384`, `Ed25519`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// EC x coordinate, or the OKP public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y coordinate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
}

impl Jwk {
    /// The key's RFC 7638 JWK thumbprint: SHA-256 over the required members (RSA: `e`,
    /// `kty`, `n`; EC: `crv`, `kty`, `x`, `y`; OKP: `crv`, `kty`, `x`) in lexicographic
    /// order without whitespace, base64url without padding. It is the `jkt` of RFC 9449
    /// (DPoP) and the default `kid` of [`SigningKey`](super::SigningKey).
    ///
    /// The members are hashed as they are written, so the thumbprint names this exact JWK;
    /// optional members (`kid`, `alg`, `use`, …) do not change it.
    ///
    /// ```
    /// use mcp_oauth::jose::Jwk;
    ///
    /// // RFC 7638 §3.1.
    /// let jwk = Jwk { kty: "RSA".into(), e: Some("AQAB".into()), n: Some("0vx7agoebGcQSuu".into()), ..Jwk::default() };
    /// assert_eq!(jwk.thumbprint()?.len(), 43);
    /// let named = Jwk { kid: Some("2011-04-29".into()), ..jwk.clone() };
    /// assert_eq!(named.thumbprint()?, jwk.thumbprint()?);
    /// # Ok::<(), mcp_oauth::jose::KeyError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A required member is missing, or the key type has no thumbprint here (`oct`, whose
    /// `k` is never modelled, or an unknown type).
    pub fn thumbprint(&self) -> Result<String, KeyError> {
        fn member<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, KeyError> {
            value
                .as_deref()
                .ok_or_else(|| key_err(format!("member {name} is missing")))
        }
        let members: Vec<(&str, &str)> = match self.kty.as_str() {
            "RSA" => vec![
                ("e", member(&self.e, "e")?),
                ("kty", "RSA"),
                ("n", member(&self.n, "n")?),
            ],
            "EC" => vec![
                ("crv", member(&self.crv, "crv")?),
                ("kty", "EC"),
                ("x", member(&self.x, "x")?),
                ("y", member(&self.y, "y")?),
            ],
            "OKP" => vec![
                ("crv", member(&self.crv, "crv")?),
                ("kty", "OKP"),
                ("x", member(&self.x, "x")?),
            ],
            other => {
                return Err(key_err(format!(
                    "no thumbprint for key type {:?}",
                    crate::error::truncate(other)
                )));
            }
        };
        let mut canonical = String::from("{");
        for (i, (name, value)) in members.iter().enumerate() {
            if i > 0 {
                canonical.push(',');
            }
            // Names and values as JSON strings: the members are base64url or registered
            // names, for which this is the identity, and anything else is escaped.
            canonical.push_str(&serde_json::Value::from(*name).to_string());
            canonical.push(':');
            canonical.push_str(&serde_json::Value::from(*value).to_string());
        }
        canonical.push('}');
        Ok(URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes())))
    }
}

/// A JWK Set document (RFC 7517 §5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    /// The keys.
    pub keys: Vec<Jwk>,
}

enum Check {
    Public(ParsedPublicKey),
    Hmac(Box<hmac::Key>),
}

/// A key ready to verify signatures, for one or more algorithms of a single family.
///
/// Public keys are parsed once, when the key is built, so a verification is the signature
/// check alone.
pub struct VerifyingKey {
    kid: Option<String>,
    family: KeyFamily,
    checks: Vec<(Algorithm, Check)>,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("algorithms", &self.algorithms())
            .finish()
    }
}

/// Why a JWK could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub(crate) String);

impl From<KeyError> for ConfigError {
    fn from(err: KeyError) -> Self {
        ConfigError::InvalidKey(err.0)
    }
}

fn key_err(reason: impl Into<String>) -> KeyError {
    KeyError(reason.into())
}

fn b64_member(value: Option<&String>, name: &str) -> Result<Vec<u8>, KeyError> {
    let value = value.ok_or_else(|| key_err(format!("member {name} is missing")))?;
    URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .map_err(|_| key_err(format!("member {name} is not base64url")))
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default()
}

/// The algorithms a key may be used with: those of its family that are allowed, narrowed to
/// the declared one if the key declares one.
fn candidate_algs(
    family: KeyFamily,
    declared: Option<Algorithm>,
    allowed: Algorithms,
) -> Result<Vec<Algorithm>, KeyError> {
    let algs: Vec<Algorithm> = allowed
        .iter()
        .filter(|alg| alg.family() == family)
        .filter(|alg| declared.is_none_or(|d| d == *alg))
        .collect();
    if algs.is_empty() {
        return Err(key_err(match declared {
            Some(alg) => format!("algorithm {alg} is not allowed"),
            None => format!("no allowed algorithm for a {family:?} key"),
        }));
    }
    Ok(algs)
}

impl VerifyingKey {
    /// Builds a verifying key from a JWK, for the algorithms in `allowed` that fit it.
    ///
    /// # Errors
    ///
    /// The key is for encryption, its members are invalid, its type is unknown, or no allowed
    /// algorithm fits it. `oct` keys are refused unless `allowed` holds an HMAC algorithm.
    pub fn from_jwk(jwk: &Jwk, allowed: Algorithms) -> Result<Self, KeyError> {
        if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
            return Err(key_err("key is not for signatures (use)"));
        }
        if let Some(ops) = &jwk.key_ops
            && !ops.iter().any(|op| op == "verify")
        {
            return Err(key_err("key_ops does not allow verify"));
        }
        let declared = match jwk.alg.as_deref() {
            None => None,
            Some(name) => Some(
                name.parse::<Algorithm>()
                    .map_err(|_| key_err(format!("unknown alg {name:?}")))?,
            ),
        };
        let kid = jwk.kid.clone();
        match jwk.kty.as_str() {
            "RSA" => {
                let n = b64_member(jwk.n.as_ref(), "n")?;
                let e = b64_member(jwk.e.as_ref(), "e")?;
                let components = RsaPublicKeyComponents {
                    n: strip_leading_zeros(&n),
                    e: strip_leading_zeros(&e),
                };
                let mut checks = Vec::new();
                for alg in candidate_algs(KeyFamily::Rsa, declared, allowed)? {
                    let params =
                        crypto::rsa_params(alg).ok_or_else(|| key_err("not an RSA algorithm"))?;
                    let parsed = components
                        .to_parsed_public_key(params)
                        .map_err(|_| key_err("invalid RSA public key"))?;
                    checks.push((alg, Check::Public(parsed)));
                }
                Ok(Self {
                    kid,
                    family: KeyFamily::Rsa,
                    checks,
                })
            }
            "EC" => {
                let (alg, verify_alg, len): (
                    Algorithm,
                    &'static signature::EcdsaVerificationAlgorithm,
                    usize,
                ) = match jwk.crv.as_deref() {
                    Some("P-256") => (Algorithm::ES256, &signature::ECDSA_P256_SHA256_FIXED, 32),
                    Some("P-384") => (Algorithm::ES384, &signature::ECDSA_P384_SHA384_FIXED, 48),
                    other => return Err(key_err(format!("unsupported EC curve {other:?}"))),
                };
                if declared.is_some_and(|d| d != alg) {
                    return Err(key_err("alg does not match the curve"));
                }
                if !allowed.contains(alg) {
                    return Err(key_err(format!("algorithm {alg} is not allowed")));
                }
                let x = b64_member(jwk.x.as_ref(), "x")?;
                let y = b64_member(jwk.y.as_ref(), "y")?;
                if x.len() != len || y.len() != len {
                    return Err(key_err("EC coordinates have the wrong length"));
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let parsed = ParsedPublicKey::new(verify_alg, point)
                    .map_err(|_| key_err("EC point is not on the curve"))?;
                Ok(Self {
                    kid,
                    family: KeyFamily::Ec,
                    checks: vec![(alg, Check::Public(parsed))],
                })
            }
            "OKP" => {
                if jwk.crv.as_deref() != Some("Ed25519") {
                    return Err(key_err(format!("unsupported OKP curve {:?}", jwk.crv)));
                }
                if declared.is_some_and(|d| d != Algorithm::EdDSA) {
                    return Err(key_err("alg does not match the curve"));
                }
                if !allowed.contains(Algorithm::EdDSA) {
                    return Err(key_err("algorithm EdDSA is not allowed"));
                }
                let x = b64_member(jwk.x.as_ref(), "x")?;
                if x.len() != 32 {
                    return Err(key_err("Ed25519 key has the wrong length"));
                }
                let parsed = ParsedPublicKey::new(&signature::ED25519, x)
                    .map_err(|_| key_err("invalid Ed25519 key"))?;
                Ok(Self {
                    kid,
                    family: KeyFamily::Okp,
                    checks: vec![(Algorithm::EdDSA, Check::Public(parsed))],
                })
            }
            "oct" => Err(key_err(
                "symmetric (oct) keys are never taken from a key set; configure a shared secret instead",
            )),
            other => Err(key_err(format!("unsupported key type {other:?}"))),
        }
    }

    /// Builds a verifying key from a PEM public key (`PUBLIC KEY` / SubjectPublicKeyInfo, or
    /// `RSA PUBLIC KEY` / PKCS#1) for one algorithm.
    ///
    /// # Errors
    ///
    /// The PEM cannot be read, `alg` is an HMAC algorithm, or the key does not fit `alg`.
    pub fn from_pem(pem: &str, alg: Algorithm, kid: Option<String>) -> Result<Self, KeyError> {
        let der = pem_body(pem, &["PUBLIC KEY", "RSA PUBLIC KEY"])?;
        Self::from_der(&der, alg, kid)
    }

    /// Builds a verifying key from DER (SubjectPublicKeyInfo; PKCS#1 for RSA; the raw point
    /// for EC; the raw 32 bytes for Ed25519) for one algorithm.
    ///
    /// # Errors
    ///
    /// `alg` is an HMAC algorithm or the key does not fit it.
    pub fn from_der(der: &[u8], alg: Algorithm, kid: Option<String>) -> Result<Self, KeyError> {
        let verify_alg: &'static dyn signature::VerificationAlgorithm = match alg {
            Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
            Algorithm::EdDSA => &signature::ED25519,
            other => match crypto::rsa_params(other) {
                Some(params) => params,
                None => {
                    return Err(key_err(
                        "HMAC algorithms take a shared secret, not a public key",
                    ));
                }
            },
        };
        let parsed = ParsedPublicKey::new(verify_alg, der)
            .map_err(|_| key_err(format!("the key is not a valid {alg} public key")))?;
        Ok(Self {
            kid,
            family: alg.family(),
            checks: vec![(alg, Check::Public(parsed))],
        })
    }

    /// Builds an HMAC key from a shared secret, for the given HMAC algorithms.
    ///
    /// # Errors
    ///
    /// The secret is shorter than 32 bytes, or `allowed` holds no HMAC algorithm.
    pub fn hmac(secret: &[u8], allowed: Algorithms, kid: Option<String>) -> Result<Self, KeyError> {
        if secret.len() < 32 {
            return Err(key_err(
                "an HMAC secret needs at least 32 bytes (RFC 7518 §3.2)",
            ));
        }
        let checks: Vec<(Algorithm, Check)> = allowed
            .iter()
            .filter_map(|alg| {
                crypto::hmac_alg(alg)
                    .map(|h| (alg, Check::Hmac(Box::new(hmac::Key::new(h, secret)))))
            })
            .collect();
        if checks.is_empty() {
            return Err(key_err("no HMAC algorithm is allowed"));
        }
        Ok(Self {
            kid,
            family: KeyFamily::Hmac,
            checks,
        })
    }

    /// A key that verifies nothing.
    pub(crate) fn empty(kid: Option<String>, family: KeyFamily) -> Self {
        Self {
            kid,
            family,
            checks: Vec::new(),
        }
    }

    /// The key id, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The key family.
    pub fn family(&self) -> KeyFamily {
        self.family
    }

    /// The algorithms this key verifies.
    pub fn algorithms(&self) -> Algorithms {
        self.checks.iter().map(|(alg, _)| *alg).collect()
    }

    /// Whether this key verifies `alg`.
    pub fn supports(&self, alg: Algorithm) -> bool {
        self.checks.iter().any(|(a, _)| *a == alg)
    }

    /// Checks `signature` over `message` with `alg`. `false` when `alg` is not one of this
    /// key's algorithms.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        let Some((_, check)) = self.checks.iter().find(|(a, _)| *a == alg) else {
            return false;
        };
        match check {
            Check::Public(key) => key.verify_sig(message, signature).is_ok(),
            Check::Hmac(key) => {
                let expected = hmac::sign(key, message);
                constant_time::verify_slices_are_equal(expected.as_ref(), signature).is_ok()
            }
        }
    }
}

/// Reads the body of the first PEM block with one of the given labels.
pub(crate) fn pem_body(pem: &str, labels: &[&str]) -> Result<Vec<u8>, KeyError> {
    for label in labels {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        let Some(start) = pem.find(&begin) else {
            continue;
        };
        let rest = pem.get(start + begin.len()..).unwrap_or_default();
        let Some(stop) = rest.find(&end) else {
            return Err(key_err(format!("PEM block {label} is not terminated")));
        };
        let body: String = rest
            .get(..stop)
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        return STANDARD
            .decode(body)
            .map_err(|_| key_err(format!("PEM block {label} is not base64")));
    }
    Err(key_err(format!(
        "no PEM block labelled {}",
        labels.join(" or ")
    )))
}

/// A set of verifying keys, looked up by `kid` and algorithm.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
}

impl KeySet {
    /// A set of the given keys.
    pub fn new(keys: Vec<VerifyingKey>) -> Self {
        Self { keys }
    }

    /// Parses a JWKS document, keeping the usable keys for `allowed` (HMAC never) and at
    /// most `max_keys` of them. Returns the set and the number of keys skipped.
    ///
    /// # Errors
    ///
    /// The document is not a JSON object with a `keys` array and unique member names.
    pub fn from_jwks_json(
        bytes: &[u8],
        allowed: Algorithms,
        max_keys: usize,
    ) -> Result<(Self, usize), KeyError> {
        // An object (never the array form a derived struct would also take), its member
        // names unique, so that every reader of the document sees the same `keys`.
        let not_a_set = || key_err("not a JWK Set (an object with a keys array)");
        let mut doc = crate::claims::parse_json_object(bytes).map_err(|()| not_a_set())?;
        let Some(serde_json::Value::Array(members)) = doc.remove("keys") else {
            return Err(not_a_set());
        };
        let allowed = allowed.without_hmac();
        let mut keys = Vec::new();
        let mut skipped = 0;
        for value in members {
            if keys.len() >= max_keys {
                skipped += 1;
                continue;
            }
            let parsed = serde_json::from_value::<Jwk>(value)
                .map_err(|_| key_err("invalid JWK"))
                .and_then(|jwk| VerifyingKey::from_jwk(&jwk, allowed));
            match parsed {
                Ok(key) => keys.push(key),
                Err(err) => {
                    skipped += 1;
                    tracing::debug!(target: "mcp_oauth::jwks", reason = %err, "skipping a key of the key set");
                }
            }
        }
        Ok((Self { keys }, skipped))
    }

    pub(crate) fn keys_vec(self) -> Vec<VerifyingKey> {
        self.keys
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The algorithms some key of the set verifies.
    pub fn algorithms(&self) -> Algorithms {
        self.keys
            .iter()
            .flat_map(|k| k.algorithms().iter())
            .collect()
    }

    /// Whether a key with this `kid` is in the set.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid() == Some(kid))
    }

    /// The key for a token header's `kid` and `alg`.
    ///
    /// With a `kid`, the key with that id (or, when no key has one, the only key for `alg`
    /// that has no id). Without a `kid`, the only key for `alg`; several candidates are
    /// ambiguous and refused.
    ///
    /// # Errors
    ///
    /// [`VerifyError::UnknownKey`] when nothing matches; [`VerifyError::UnsupportedAlgorithm`]
    /// when the `kid` names a key of another family (an algorithm-confusion attempt).
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Result<&VerifyingKey, VerifyError> {
        if let Some(kid) = kid {
            if let Some(key) = self.keys.iter().find(|k| k.kid() == Some(kid)) {
                return if key.supports(alg) {
                    Ok(key)
                } else {
                    Err(VerifyError::unsupported_alg(alg.as_str()))
                };
            }
            let mut unnamed = self
                .keys
                .iter()
                .filter(|k| k.kid().is_none() && k.supports(alg));
            return match (unnamed.next(), unnamed.next()) {
                (Some(key), None) => Ok(key),
                _ => Err(VerifyError::unknown_key(Some(kid))),
            };
        }
        let mut candidates = self.keys.iter().filter(|k| k.supports(alg));
        match (candidates.next(), candidates.next()) {
            (Some(key), None) => Ok(key),
            _ => Err(VerifyError::unknown_key(None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encryption_keys_and_oct_keys_are_refused() {
        // Keys that are valid but for `use` / `key_ops`: each is accepted as it is, and
        // refused for the member under test, with that member as the reason.
        for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
            let key = crate::jose::SigningKey::generate(alg).expect("keygen");
            let valid = key.public_jwk().expect("a public key");
            assert!(
                VerifyingKey::from_jwk(&valid, Algorithms::default()).is_ok(),
                "{alg}: the control key is valid"
            );
            for (use_, key_ops) in [
                (Some("sig"), None),
                (None, Some(vec!["verify"])),
                (None, Some(vec!["sign", "verify"])),
            ] {
                let jwk = Jwk {
                    use_: use_.map(str::to_owned),
                    key_ops: key_ops.map(|ops| ops.into_iter().map(str::to_owned).collect()),
                    ..valid.clone()
                };
                assert!(
                    VerifyingKey::from_jwk(&jwk, Algorithms::default()).is_ok(),
                    "{alg}: use {use_:?}, key_ops {:?}",
                    jwk.key_ops
                );
            }
            let enc = Jwk {
                use_: Some("enc".into()),
                ..valid.clone()
            };
            let err = VerifyingKey::from_jwk(&enc, Algorithms::default()).expect_err("use enc");
            assert_eq!(err.to_string(), "key is not for signatures (use)", "{alg}");
            for ops in [vec!["sign"], vec!["encrypt", "wrapKey"], vec![]] {
                let jwk = Jwk {
                    key_ops: Some(ops.iter().map(|op| (*op).to_owned()).collect()),
                    ..valid.clone()
                };
                let err = VerifyingKey::from_jwk(&jwk, Algorithms::default())
                    .expect_err("key_ops without verify");
                assert_eq!(
                    err.to_string(),
                    "key_ops does not allow verify",
                    "{alg}: {ops:?}"
                );
            }
        }
        // An oct key is refused for its type (the JWK type has no `k` member to be missing),
        // even where HMAC is allowed.
        let oct = Jwk {
            kty: "oct".into(),
            ..Jwk::default()
        };
        for allowed in [Algorithms::default(), Algorithms::hmac()] {
            let err = VerifyingKey::from_jwk(&oct, allowed).expect_err("oct");
            assert!(
                err.to_string().contains("(oct) keys are never taken"),
                "{err}"
            );
        }
    }

    #[test]
    fn short_hmac_secrets_are_refused() {
        assert!(VerifyingKey::hmac(b"short", Algorithms::hmac(), None).is_err());
        let key = VerifyingKey::hmac(&[7; 32], Algorithms::hmac(), None).expect("32 bytes");
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &[7; 32]), b"msg");
        assert!(key.verify(Algorithm::HS256, b"msg", tag.as_ref()));
        assert!(!key.verify(Algorithm::HS256, b"other", tag.as_ref()));
        assert!(!key.verify(Algorithm::RS256, b"msg", tag.as_ref()));
    }

    #[test]
    fn jwks_parsing_skips_bad_keys_and_never_keeps_oct() {
        let doc = br#"{"keys":[{"kty":"oct","k":"AAAA"},{"kty":"XYZ"},{"kty":"EC","crv":"P-521"},"junk"]}"#;
        let (set, skipped) =
            KeySet::from_jwks_json(doc, Algorithms::default(), 10).expect("valid doc");
        assert!(set.is_empty());
        assert_eq!(skipped, 4);
        assert!(KeySet::from_jwks_json(b"[]", Algorithms::default(), 10).is_err());
        assert!(KeySet::from_jwks_json(b"{}", Algorithms::default(), 10).is_err());
        // The array form a derived struct would read as `{"keys": []}`, and a second `keys`
        // member that another reader would take instead of the first, are no key sets.
        assert!(KeySet::from_jwks_json(b"[[]]", Algorithms::default(), 10).is_err());
        assert!(
            KeySet::from_jwks_json(br#"{"keys":[],"keys":5}"#, Algorithms::default(), 10).is_err()
        );
        assert!(KeySet::from_jwks_json(br#"{"keys":5}"#, Algorithms::default(), 10).is_err());
    }

    #[test]
    fn pem_reader_finds_labelled_blocks() {
        let pem = "junk\n-----BEGIN PUBLIC KEY-----\nAAEC\nAw==\n-----END PUBLIC KEY-----\n";
        assert_eq!(
            pem_body(pem, &["PUBLIC KEY"]).expect("block"),
            vec![0, 1, 2, 3]
        );
        assert!(pem_body(pem, &["PRIVATE KEY"]).is_err());
        assert!(pem_body("-----BEGIN PUBLIC KEY-----\nAAEC", &["PUBLIC KEY"]).is_err());
    }
}
