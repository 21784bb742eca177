//! Identity forwarding: a short-lived JWT that the gateway signs for each request it sends to
//! an HTTP upstream, in a header of its own (never `Authorization`, never the client's token),
//! saying who the caller is; for a stdio child, when asked, the same token in each request's
//! `params._meta` under [`META_KEY`]. The upstream verifies it with the gateway's key set,
//! served at [`JWKS_PATH`].
//!
//! Header `{"alg":"ES256","typ":"JWT","kid":…}`; claims `iss` (the gateway), `aud` (the
//! upstream's URL; for a stdio child `stdio:NAME`, its upstream name, or `stdio:upstream`
//! for the one unnamed upstream), `sub`, `scope`, `client_id` and `email` when known, `iat`,
//! `exp` (60 s later) and a random `jti`. The key is an ECDSA P-256 key made when the gateway starts: it
//! changes with every start, so an upstream looks the `kid` up again when it does not know it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::http::{HeaderName, HeaderValue};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcp_oauth::Auth;
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

/// Signs identity tokens.
pub(crate) struct Signer {
    /// The header of HTTP upstreams' identity tokens; `None`: only stdio children get them.
    pub(crate) header: Option<HeaderName>,
    issuer: String,
    key: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("header", &self.header)
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
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
    pub(crate) fn new(header: Option<&str>, issuer: String) -> Result<Self, GatewayError> {
        let header = header.map(header_name).transpose()?;
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| {
            GatewayError::Config {
                what: "identity key",
                reason: "cannot generate an ECDSA P-256 key".into(),
            }
        })?;
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.public_key().as_ref());
        let kid = b64(digest.as_ref().get(..12).unwrap_or_default());
        Ok(Self {
            header,
            issuer,
            key,
            kid,
            rng: SystemRandom::new(),
        })
    }

    /// The public key set (JWKS).
    pub(crate) fn jwks(&self) -> Value {
        // An uncompressed point: 0x04, x (32 bytes), y (32 bytes).
        let point = self.key.public_key().as_ref();
        let x = point.get(1..33).unwrap_or_default();
        let y = point.get(33..65).unwrap_or_default();
        json!({"keys": [{
            "kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y),
            "kid": self.kid, "alg": "ES256", "use": "sig"
        }]})
    }

    /// An identity token for `caller`, for the upstream at `audience`, as a header value;
    /// see [`Signer::token_text`].
    pub(crate) fn token(&self, caller: Option<&Auth>, audience: &str) -> Option<HeaderValue> {
        HeaderValue::try_from(self.token_text(caller, audience)?).ok()
    }

    /// An identity token for `caller`, for the upstream at `audience`; `None` without a
    /// caller (no authentication) or when signing fails (then it is left out, and the
    /// upstream sees no identity rather than a wrong one).
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
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self.key.sign(&self.rng, signing_input.as_bytes()).ok()?;
        Some(format!("{signing_input}.{}", b64(signature.as_ref())))
    }
}
