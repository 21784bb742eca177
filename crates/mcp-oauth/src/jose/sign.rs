//! Signing keys: generation, PKCS#8 persistence, JWK publication and compact JWS signing.
//!
//! Used by the embedded authorization server and by test helpers; a resource server only
//! ever verifies.

use std::fmt;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaPublicKeyComponents};
use aws_lc_rs::{hmac, rsa};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::jws::b64;
use super::{Algorithm, Algorithms, Jwk, KeyFamily, VerifyingKey, crypto};
use crate::error::ConfigError;
use crate::secret::Secret;

enum Inner {
    Rsa(rsa::KeyPair),
    Ec(EcdsaKeyPair),
    Ed(Box<Ed25519KeyPair>),
    Hmac(Box<hmac::Key>, Secret),
}

/// A private key that signs JWTs with one algorithm.
///
/// `Debug` shows the algorithm and `kid` only.
pub struct SigningKey {
    alg: Algorithm,
    kid: String,
    inner: Inner,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn keygen_err(_: impl fmt::Debug) -> ConfigError {
    ConfigError::InvalidKey("key generation failed".into())
}

impl SigningKey {
    /// Generates a new key for `alg`: RSA 2048 bits, P-256/P-384, Ed25519, or 32 random bytes
    /// for HMAC. The `kid` is the key's RFC 7638 thumbprint (a random id for HMAC).
    ///
    /// # Errors
    ///
    /// Only if the system random source fails.
    pub fn generate(alg: Algorithm) -> Result<Self, ConfigError> {
        let inner = match alg.family() {
            KeyFamily::Rsa => {
                Inner::Rsa(rsa::KeyPair::generate(rsa::KeySize::Rsa2048).map_err(keygen_err)?)
            }
            KeyFamily::Ec => {
                let signing = crypto::ec_signing_alg(alg).ok_or_else(|| keygen_err(alg))?;
                Inner::Ec(EcdsaKeyPair::generate(signing).map_err(keygen_err)?)
            }
            KeyFamily::Okp => Inner::Ed(Box::new(Ed25519KeyPair::generate().map_err(keygen_err)?)),
            KeyFamily::Hmac => {
                let mut secret = [0u8; 32];
                SystemRandom::new().fill(&mut secret).map_err(keygen_err)?;
                return Self::hmac(&secret, alg);
            }
        };
        Ok(Self::with_thumbprint(alg, inner))
    }

    /// A key for an HMAC algorithm from a shared secret of at least 32 bytes.
    ///
    /// # Errors
    ///
    /// `alg` is not HMAC or the secret is too short.
    pub fn hmac(secret: &[u8], alg: Algorithm) -> Result<Self, ConfigError> {
        let h = crypto::hmac_alg(alg)
            .ok_or_else(|| ConfigError::InvalidKey(format!("{alg} is not an HMAC algorithm")))?;
        if secret.len() < 32 {
            return Err(ConfigError::InvalidKey(
                "an HMAC secret needs at least 32 bytes".into(),
            ));
        }
        let mut id = [0u8; 12];
        SystemRandom::new().fill(&mut id).map_err(keygen_err)?;
        Ok(Self {
            alg,
            kid: b64(&id),
            inner: Inner::Hmac(Box::new(hmac::Key::new(h, secret)), Secret::new(secret)),
        })
    }

    /// Reads a PKCS#8 `PRIVATE KEY` PEM for `alg`.
    ///
    /// # Errors
    ///
    /// The PEM cannot be read or holds a key of another type.
    pub fn from_pkcs8_pem(pem: &str, alg: Algorithm) -> Result<Self, ConfigError> {
        let der = super::jwk::pem_body(pem, &["PRIVATE KEY"])?;
        Self::from_pkcs8_der(&der, alg)
    }

    /// Reads a PKCS#8 DER private key for `alg`.
    ///
    /// # Errors
    ///
    /// The key is of another type, or `alg` is HMAC.
    pub fn from_pkcs8_der(der: &[u8], alg: Algorithm) -> Result<Self, ConfigError> {
        let bad = |_| ConfigError::InvalidKey(format!("not a PKCS#8 {alg} private key"));
        let inner = match alg.family() {
            KeyFamily::Rsa => Inner::Rsa(rsa::KeyPair::from_pkcs8(der).map_err(bad)?),
            KeyFamily::Ec => {
                let signing = crypto::ec_signing_alg(alg).ok_or_else(|| keygen_err(alg))?;
                Inner::Ec(EcdsaKeyPair::from_pkcs8(signing, der).map_err(bad)?)
            }
            KeyFamily::Okp => Inner::Ed(Box::new(Ed25519KeyPair::from_pkcs8(der).map_err(bad)?)),
            KeyFamily::Hmac => {
                return Err(ConfigError::InvalidKey(
                    "HMAC keys are shared secrets, not PKCS#8".into(),
                ));
            }
        };
        Ok(Self::with_thumbprint(alg, inner))
    }

    fn with_thumbprint(alg: Algorithm, inner: Inner) -> Self {
        let mut key = Self {
            alg,
            kid: String::new(),
            inner,
        };
        key.kid = key.thumbprint();
        key
    }

    /// Replaces the key id.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = kid.into();
        self
    }

    /// The algorithm.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The private key as PKCS#8 PEM (`None` for HMAC keys).
    ///
    /// # Security Warning
    ///
    /// This is the private key: whoever has it can mint tokens. Store it with owner-only
    /// permissions.
    pub fn to_pkcs8_pem(&self) -> Option<String> {
        let der = match &self.inner {
            Inner::Rsa(key) => key.as_der().ok()?.as_ref().to_vec(),
            Inner::Ec(key) => key.to_pkcs8v1().ok()?.as_ref().to_vec(),
            Inner::Ed(key) => key.to_pkcs8v1().ok()?.as_ref().to_vec(),
            Inner::Hmac(..) => return None,
        };
        let body = STANDARD.encode(der);
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        Some(pem)
    }

    /// The public key as a JWK with `kid`, `alg` and `use: sig` (`None` for HMAC keys).
    pub fn public_jwk(&self) -> Option<Jwk> {
        let mut jwk = self.bare_jwk()?;
        jwk.kid = Some(self.kid.clone());
        jwk.alg = Some(self.alg.as_str().to_owned());
        jwk.use_ = Some("sig".to_owned());
        Some(jwk)
    }

    /// The required members only, as RFC 7638 orders them.
    fn bare_jwk(&self) -> Option<Jwk> {
        Some(match &self.inner {
            Inner::Rsa(key) => {
                let components = RsaPublicKeyComponents::<Vec<u8>>::from(key.public_key());
                Jwk {
                    kty: "RSA".into(),
                    n: Some(b64(&components.n)),
                    e: Some(b64(&components.e)),
                    ..Jwk::default()
                }
            }
            Inner::Ec(key) => {
                let point = key.public_key().as_ref();
                let len = (point.len().saturating_sub(1)) / 2;
                Jwk {
                    kty: "EC".into(),
                    crv: Some(
                        if self.alg == Algorithm::ES256 {
                            "P-256"
                        } else {
                            "P-384"
                        }
                        .into(),
                    ),
                    x: Some(b64(point.get(1..1 + len)?)),
                    y: Some(b64(point.get(1 + len..)?)),
                    ..Jwk::default()
                }
            }
            Inner::Ed(key) => Jwk {
                kty: "OKP".into(),
                crv: Some("Ed25519".into()),
                x: Some(b64(key.public_key().as_ref())),
                ..Jwk::default()
            },
            Inner::Hmac(..) => return None,
        })
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url); empty for HMAC keys.
    fn thumbprint(&self) -> String {
        self.bare_jwk()
            .and_then(|jwk| jwk.thumbprint().ok())
            .unwrap_or_default()
    }

    /// A verifying key for this key's signatures.
    pub fn verifying_key(&self) -> VerifyingKey {
        let kid = Some(self.kid.clone());
        let built = match &self.inner {
            Inner::Hmac(_, secret) => {
                VerifyingKey::hmac(secret.expose(), [self.alg].into_iter().collect(), kid)
            }
            _ => self
                .public_jwk()
                .ok_or_else(|| super::jwk::KeyError("no public key".into()))
                .and_then(|jwk| {
                    VerifyingKey::from_jwk(&jwk, [self.alg].into_iter().collect::<Algorithms>())
                }),
        };
        // A key always verifies its own algorithm: the JWK was built from this very key.
        built.unwrap_or_else(|_| VerifyingKey::empty(Some(self.kid.clone()), self.alg.family()))
    }

    /// Signs `message` (a JWS signing input).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.inner {
            Inner::Rsa(key) => {
                let mut sig = vec![0u8; key.public_modulus_len()];
                match crypto::rsa_padding(self.alg) {
                    Some(padding) if key.sign(padding, &rng, message, &mut sig).is_ok() => sig,
                    _ => Vec::new(),
                }
            }
            Inner::Ec(key) => key
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .unwrap_or_default(),
            Inner::Ed(key) => key.sign(message).as_ref().to_vec(),
            Inner::Hmac(key, _) => hmac::sign(key, message).as_ref().to_vec(),
        }
    }

    /// Signs a JWT: header `{"alg", "typ"?, "kid"}` and the given claims.
    pub fn sign_jwt(&self, typ: Option<&str>, claims: &serde_json::Value) -> String {
        let mut header = serde_json::Map::new();
        header.insert("alg".into(), self.alg.as_str().into());
        if let Some(typ) = typ {
            header.insert("typ".into(), typ.into());
        }
        header.insert("kid".into(), self.kid.clone().into());
        let header = serde_json::Value::Object(header).to_string();
        self.sign_compact(header.as_bytes(), claims.to_string().as_bytes())
    }

    /// Signs raw header and payload bytes as a compact JWS (for tests that need odd headers).
    pub fn sign_compact(&self, header: &[u8], payload: &[u8]) -> String {
        let signing_input = format!("{}.{}", b64(header), b64(payload));
        let signature = self.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", b64(&signature))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::jws::UnverifiedJws;

    #[test]
    fn every_family_round_trips_through_jwk_and_pkcs8() {
        for alg in [
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ] {
            let key = SigningKey::generate(alg).expect("keygen");
            let token = key.sign_jwt(Some("at+jwt"), &serde_json::json!({"sub": "a"}));
            let jws = UnverifiedJws::parse(&token).expect("parses");
            assert_eq!(jws.alg, alg);
            let verifying =
                VerifyingKey::from_jwk(&key.public_jwk().expect("jwk"), Algorithms::default())
                    .expect("jwk");
            assert!(
                verifying.verify(alg, jws.signing_input, &jws.signature),
                "{alg}"
            );
            let pem = key.to_pkcs8_pem().expect("pem");
            let reread = SigningKey::from_pkcs8_pem(&pem, alg).expect("reads back");
            assert_eq!(reread.kid(), key.kid(), "thumbprint is stable for {alg}");
        }
    }

    // Reference keys with their RFC 7638 thumbprints, each computed outside this crate:
    // SHA-256 of the canonical JSON written out below, base64url (Python's hashlib):
    //   python3 -c 'import base64,hashlib,sys; print(base64.urlsafe_b64encode(
    //     hashlib.sha256(sys.argv[1].encode()).digest()).rstrip(b"=").decode())' '<canonical>'
    // The PEMs hold the private keys the RFCs publish (PKCS#8 written by Python's
    // `cryptography` from the JWK members, after checking that the public members follow).

    /// RFC 7517 Appendix A.2's RSA key, whose public part is RFC 7638 §3.1's example.
    const RSA_PEM: &str = concat!(
        "-----BEGIN PRIVATE KEY-----\n",
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDS/HtqCh5sZxBK\n",
        "64+Isldmm032ed2tCZtcSmzZqIAVtaEzvwuFbHhxtt8AC1VPzrPC7VErto8UXG6E\n",
        "NHUvq1Khz8EkQI95tYpFeMFkKIVXifeiSeOEyy2fri1n/Zb7kmwZjgdzmf3IFcCv\n",
        "CX3eWq3v9E3nDoJ/SHhDJDm/7rlgaNBHT8UNbZC/OpjfrxBAyJwC1pKrOzwolmCd\n",
        "hv1zt3TOB0BkfO7qoxC9EvmFqOufWf3UJs6lshIPTyo0vKt2S35sVNaEAji8xAWH\n",
        "pZ5m7R8ziUV3Y1xHCvdc+Swg0dpD4b/EGeIipvDQuzWMXjj5ywUK6v6QSBTxrBqk\n",
        "nMqeoMqDAgMBAAECggEAX4cTteJY/gn4FYPsXB8rdXix5vwsg1FLN5E3EaG6RJoV\n",
        "H+HLLKD9M7dx5oo7GURknchnrRweUkC7hT5fJLM0WbFAKNLWY2vv7B6NqXSzUvxT\n",
        "0/YSfqijwp3RTzlBaCxWp4doFk5N2o8Gy/nHNKroADIkJ46pRUohsXywbReAdYaM\n",
        "wFs9tv8d/cPVY3i07a3t8MN6TNwm0dSawm9v47UiCl3Sk5ZiG7xojPLu4sbg1U2j\n",
        "x4IBTNBznbJSzFHK66jT8bgkuqsk0GjskDJk19Z4qwjwbsnn4j2WBii3RL+Us2lG\n",
        "VkY8fkFzme1z0HbIkfz0Y6mqnOYtqc0X4jfcKoAC8QKBgQDzeL7si8wZegxcKyS/\n",
        "vdMqvzrfsWI7tnbvO/yiPqltZRDIs9AFDG09WfAPbRH7rR5MOYPa6Ocy3k+ioyub\n",
        "xF+Y2FVYO2OMyYIyM6lJeJwUePtc65UhhDKpVaVYSHp03foZVliT3c3wFz29jjXH\n",
        "LwH1HPM4ZVDNe80S+fs7SdVt+wKBgQDd185H1y5ir7RL6aQUvOAi2AwR8XMHareF\n",
        "Z6Ey4bSgK6qdve+hsvK6aqNVlA7V0it3CBOcJ2ljMFw59bmvfvQAVeOJZ+380YSK\n",
        "i+ieLOEqmj1VVLvxPMWDGQh2t5xF7Oxn7WRh3+zWoNvG2QMSB8AhMAb0tScAO6fi\n",
        "8hxvrJ6XGQKBgBuLD15HOmGvcvKCVvfyC4+MbqabtJc4vx+1U5EvMY+UnV93KBNK\n",
        "IpmMMSItnpkwLntFDmuXaYBRsgSeHPLUNlReNNl0boCg0z/GpGIRaObQAO+0HvzZ\n",
        "rbmGXNwt5tyNuBthr0ebEg8VMgDds6vC35/RFJrOq2Nzm/GHoipE4gY9AoGBALPZ\n",
        "QB/X4IAbKBUfDmnNkfxNoMNvNq09pBjgIbyJZRExNXn6wOoblFLzHwXDKZ/Janlu\n",
        "r8852GOUkkBe6THQv2oCN5xvCG6dQVG9CVIq2kTalHy4XEG/3fRheA4e3u+Fm0bK\n",
        "G0aJ7o02DdcQmj+kzutY71q1/i9fLcV8OPeEP3IJAoGAGyM/p6JrXySiz1toFgKb\n",
        "WV+JdI3jQ4ypu9rbMWx3rQJBfmt0FoYzgUIZEVFEcOqwemRN81zoDAaa+Bk0KWNG\n",
        "DjJHZDdDmFhW3AN7lI+puxk/mHZGJ11rxyR8O55XLSe3SPmRfKwZI6yU24ZxvQKF\n",
        "YItdldUKGzO6Ia6zTKhAVRU=\n",
        "-----END PRIVATE KEY-----\n",
    );
    /// RFC 7638 §3.1: the thumbprint of the example RSA key, from the RFC's own text.
    const RSA_THUMBPRINT: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

    /// RFC 7517 Appendix A.2's P-256 key (d = "870MB6gfuTJ4HtUnUvYMyJpr5eUZNP4Bk43bVdj3eAE").
    const EC_PEM: &str = concat!(
        "-----BEGIN PRIVATE KEY-----\n",
        "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg870MB6gfuTJ4HtUn\n",
        "UvYMyJpr5eUZNP4Bk43bVdj3eAGhRANCAAQwoEJM0hwpRIOKLXXJKzfnbqINnwCJ\n",
        "OjtO7oo8Cq/sPuBLZekkVtmIi1Kzeb371R7oae8fD8ZbZllpW2zOCBcj\n",
        "-----END PRIVATE KEY-----\n",
    );
    /// RFC 7638 has no EC example: SHA-256 of
    /// `{"crv":"P-256","kty":"EC","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}`.
    const EC_THUMBPRINT: &str = "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s";

    /// RFC 8037 Appendix A.1's Ed25519 key (d = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A").
    const ED25519_PEM: &str = concat!(
        "-----BEGIN PRIVATE KEY-----\n",
        "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n",
        "-----END PRIVATE KEY-----\n",
    );
    /// RFC 8037 Appendix A.3 gives it, and hashlib agrees: SHA-256 of
    /// `{"crv":"Ed25519","kty":"OKP","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`.
    const ED25519_THUMBPRINT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";

    #[test]
    fn rfc7638_thumbprints_of_reference_keys() {
        for (alg, pem, expected) in [
            (Algorithm::RS256, RSA_PEM, RSA_THUMBPRINT),
            (Algorithm::PS256, RSA_PEM, RSA_THUMBPRINT),
            (Algorithm::ES256, EC_PEM, EC_THUMBPRINT),
            (Algorithm::EdDSA, ED25519_PEM, ED25519_THUMBPRINT),
        ] {
            let key = SigningKey::from_pkcs8_pem(pem, alg).expect("a reference key");
            assert_eq!(key.thumbprint(), expected, "{alg}");
            // The default kid is the thumbprint.
            assert_eq!(key.kid(), expected, "{alg}");
        }
    }

    #[test]
    fn hmac_keys_sign_and_verify_and_never_export() {
        let key = SigningKey::hmac(&[1; 32], Algorithm::HS256).expect("hmac");
        assert!(key.public_jwk().is_none());
        assert!(key.to_pkcs8_pem().is_none());
        let token = key.sign_jwt(None, &serde_json::json!({}));
        let jws = UnverifiedJws::parse(&token).expect("parses");
        assert!(
            key.verifying_key()
                .verify(Algorithm::HS256, jws.signing_input, &jws.signature)
        );
        assert!(SigningKey::hmac(&[1; 8], Algorithm::HS256).is_err());
        assert!(SigningKey::hmac(&[1; 32], Algorithm::RS256).is_err());
    }
}
