//! Who is calling, for an MCP server behind `mcp-oauth gateway` with identity forwarding.
//!
//! The gateway never passes the client's token on. With `--identity-header X-MCP-Identity` it
//! sends an HTTP upstream, on every request, a short-lived JWT it signs for the caller (with
//! `--identity-meta`, a stdio child gets the same token in `params._meta` under
//! [`META_KEY`]). [`IdentityVerifier`] checks one: ES256 by a key of the gateway's key set
//! (served at [`JWKS_PATH`] on the gateway), `iss` the gateway's URL, `aud` this upstream
//! (its URL, or `stdio:NAME`), `exp` in the future (60 s after `iat`), `sub` present; and gives
//! the caller as a [`ForwardedIdentity`].
//!
//! ```no_run
//! use mcp_oauth::gateway_identity::IdentityVerifier;
//!
//! # async fn demo(headers: http::HeaderMap) -> Result<(), Box<dyn std::error::Error>> {
//! // Once, at start-up: the gateway's public URL, and this server's URL as the gateway names it.
//! let identities = IdentityVerifier::new("https://mcp.example.com", "http://10.0.0.7:3000/mcp")?;
//!
//! // Per request:
//! let token = headers.get("x-mcp-identity").ok_or("no identity")?.to_str()?;
//! let caller = identities.verify(token).await?;
//! println!("{} ({:?}) calls with {:?}", caller.subject, caller.email, caller.scopes);
//! let admin = caller.groups.iter().any(|g| g == "admins");
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use crate::claims::{Claims, check_times, now_unix};
use crate::error::{ConfigError, VerifyError};
use crate::jose::Algorithm;
use crate::verify::{JwtVerifier, TokenVerifier as _};

/// Where the gateway serves the public key set of its identity tokens.
pub const JWKS_PATH: &str = "/.well-known/mcp-gateway-jwks.json";

/// The `params._meta` member that carries the caller's identity token to a stdio child.
pub const META_KEY: &str = "mcp-oauth/identity";

/// The caller, as the gateway vouches for them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ForwardedIdentity {
    /// The caller's subject (`sub`).
    pub subject: String,
    /// Their email, when the gateway knew it.
    pub email: Option<String>,
    /// The scopes of the token they presented to the gateway.
    pub scopes: Vec<String>,
    /// The OAuth client they came with, when known.
    pub client_id: Option<String>,
    /// Their groups as the gateway sees them (the `groups` claim: from the token's groups or
    /// roles claims, or the gateway's policy); empty when it named none.
    pub groups: Vec<String>,
    /// Every claim of the identity token.
    pub claims: Claims,
}

/// Verifies the gateway's identity tokens for one upstream; see the [module docs](self).
/// Cheap to clone; the gateway's key set is fetched when needed and cached.
#[derive(Clone)]
pub struct IdentityVerifier {
    jwt: Arc<JwtVerifier>,
    audience: String,
    leeway: Duration,
}

impl std::fmt::Debug for IdentityVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityVerifier")
            .field("issuer", &self.jwt.issuer())
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl IdentityVerifier {
    /// Tokens of the gateway at `gateway_url` (its public URL: the origin of its MCP
    /// endpoint, which is its `iss`), for the upstream named `audience` (its URL as the
    /// gateway is configured with it, or `stdio:NAME`). The key set is fetched from
    /// `{gateway_url}`[`JWKS_PATH`].
    ///
    /// # Errors
    ///
    /// `gateway_url` is not an absolute URL, or `audience` is empty.
    pub fn new(gateway_url: &str, audience: &str) -> Result<Self, ConfigError> {
        let issuer = origin(gateway_url)?;
        let jwt = JwtVerifier::builder()
            .issuer(issuer.clone())
            .algorithms([Algorithm::ES256])
            .jwks_url(format!("{issuer}{JWKS_PATH}"))
            .build()?;
        Self::with_verifier(jwt, audience)
    }

    /// As [`IdentityVerifier::new`], with the key set given (the JSON the gateway serves at
    /// [`JWKS_PATH`]) instead of fetched.
    ///
    /// # Errors
    ///
    /// `gateway_url` is not an absolute URL, `audience` is empty, or `jwks` is not a key set.
    pub fn with_jwks(gateway_url: &str, audience: &str, jwks: &str) -> Result<Self, ConfigError> {
        let jwt = JwtVerifier::builder()
            .issuer(origin(gateway_url)?)
            .algorithms([Algorithm::ES256])
            .jwks_json(jwks)
            .build()?;
        Self::with_verifier(jwt, audience)
    }

    fn with_verifier(jwt: JwtVerifier, audience: &str) -> Result<Self, ConfigError> {
        if audience.trim().is_empty() {
            return Err(ConfigError::Invalid {
                field: "identity audience",
                reason:
                    "it is empty: give this upstream's URL as the gateway names it, or stdio:NAME"
                        .into(),
            });
        }
        Ok(Self {
            jwt: Arc::new(jwt),
            audience: audience.to_owned(),
            leeway: Duration::from_secs(5),
        })
    }

    /// Clock-skew allowance for `exp` and `iat`. Default: 5 s (the tokens live 60 s).
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The caller of the request that carried `token`.
    ///
    /// # Errors
    ///
    /// The token is not the gateway's (signature, algorithm, issuer), not for this upstream
    /// (`aud`), expired or issued in the future, or has no `sub`;
    /// [`VerifyError::Unavailable`] when the gateway's key set cannot be fetched.
    pub async fn verify(&self, token: &str) -> Result<ForwardedIdentity, VerifyError> {
        let claims = self.jwt.verify(token).await?;
        if !claims.audiences()?.contains(&self.audience.as_str()) {
            return Err(VerifyError::InvalidAudience);
        }
        check_times(&claims, now_unix(), self.leeway, true)?;
        let subject = claims
            .sub()
            .filter(|s| !s.is_empty())
            .ok_or(VerifyError::MissingClaim("sub"))?
            .to_owned();
        Ok(ForwardedIdentity {
            subject,
            email: claims.str("email").map(str::to_owned),
            scopes: claims.scopes(),
            client_id: claims.str("client_id").map(str::to_owned),
            groups: claims.string_list("groups"),
            claims,
        })
    }
}

/// The origin of `url` (scheme, host, port): the gateway's `iss`.
fn origin(url: &str) -> Result<String, ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidUrl {
        field: "gateway URL",
        value: url.to_owned(),
        reason,
    };
    let parsed = url::Url::parse(url.trim()).map_err(|e| invalid(e.to_string()))?;
    match parsed.origin() {
        origin @ url::Origin::Tuple(..) => Ok(origin.ascii_serialization()),
        url::Origin::Opaque(_) => Err(invalid("not an http(s) URL".into())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::jose::SigningKey;

    const GATEWAY: &str = "https://gw.example";
    const AUD: &str = "http://10.0.0.7:3000/mcp";

    fn sign(key: &SigningKey, alg: &str, claims: serde_json::Value) -> String {
        let header = json!({"alg": alg, "typ": "JWT", "kid": "k1"});
        key.sign_compact(header.to_string().as_bytes(), claims.to_string().as_bytes())
    }

    fn setup() -> (SigningKey, IdentityVerifier) {
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        let mut jwk = serde_json::to_value(key.public_jwk().unwrap()).unwrap();
        jwk["kid"] = json!("k1");
        let jwks = json!({"keys": [jwk]}).to_string();
        (
            key,
            IdentityVerifier::with_jwks(GATEWAY, AUD, &jwks).unwrap(),
        )
    }

    fn claims(now: i64) -> serde_json::Value {
        json!({"iss": GATEWAY, "aud": AUD, "sub": "alice", "email": "alice@example.com",
               "scope": "mcp:read mcp:write", "client_id": "c1", "groups": ["staff", "admins"],
               "iat": now, "exp": now + 60, "jti": "j"})
    }

    #[tokio::test]
    async fn the_gateways_token_gives_the_caller() {
        let (key, verifier) = setup();
        let caller = verifier
            .verify(&sign(&key, "ES256", claims(now_unix())))
            .await
            .unwrap();
        assert_eq!(caller.subject, "alice");
        assert_eq!(caller.email.as_deref(), Some("alice@example.com"));
        assert_eq!(caller.scopes, ["mcp:read", "mcp:write"]);
        assert_eq!(caller.client_id.as_deref(), Some("c1"));
        assert_eq!(caller.groups, ["staff", "admins"]);
        // Without the claim: no groups.
        let mut plain = claims(now_unix());
        plain.as_object_mut().unwrap().remove("groups");
        let caller = verifier.verify(&sign(&key, "ES256", plain)).await.unwrap();
        assert!(caller.groups.is_empty());
    }

    #[tokio::test]
    async fn tokens_for_others_old_ones_and_forgeries_are_refused() {
        let (key, verifier) = setup();
        let now = now_unix();
        let mut other_aud = claims(now);
        other_aud["aud"] = json!("http://10.0.0.8:3000/mcp");
        let mut other_iss = claims(now);
        other_iss["iss"] = json!("https://evil.example");
        let mut expired = claims(now - 120);
        expired["exp"] = json!(now - 60);
        let mut no_sub = claims(now);
        no_sub.as_object_mut().unwrap().remove("sub");
        let mut no_exp = claims(now);
        no_exp.as_object_mut().unwrap().remove("exp");
        assert!(matches!(
            verifier.verify(&sign(&key, "ES256", other_aud)).await,
            Err(VerifyError::InvalidAudience)
        ));
        assert!(matches!(
            verifier.verify(&sign(&key, "ES256", expired)).await,
            Err(VerifyError::Expired)
        ));
        assert!(matches!(
            verifier.verify(&sign(&key, "ES256", no_sub)).await,
            Err(VerifyError::MissingClaim("sub"))
        ));
        assert!(matches!(
            verifier.verify(&sign(&key, "ES256", other_iss)).await,
            Err(VerifyError::InvalidIssuer { .. })
        ));
        assert!(verifier.verify(&sign(&key, "ES256", no_exp)).await.is_err());
        // Another key with the same kid, and an unsigned token.
        let stranger = SigningKey::generate(Algorithm::ES256).unwrap();
        assert!(
            verifier
                .verify(&sign(&stranger, "ES256", claims(now)))
                .await
                .is_err()
        );
        let b64 = |v: serde_json::Value| {
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                v.to_string(),
            )
        };
        let unsigned = format!("{}.{}.", b64(json!({"alg": "none"})), b64(claims(now)));
        assert!(verifier.verify(&unsigned).await.is_err());
    }

    #[test]
    fn configuration_mistakes_are_named() {
        assert!(IdentityVerifier::new("not a url", AUD).is_err());
        assert!(IdentityVerifier::new(GATEWAY, " ").is_err());
        let verifier = IdentityVerifier::new("https://gw.example/mcp", AUD).unwrap();
        assert_eq!(verifier.jwt.issuer(), "https://gw.example");
    }
}
