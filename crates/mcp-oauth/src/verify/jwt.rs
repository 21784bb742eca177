//! JWT access-token verification: against a remote JWKS, static keys, or an HMAC secret.

use std::sync::Arc;

#[cfg(feature = "remote")]
use super::jwks::{JwksLocation, JwksOptions, RemoteJwks};
use super::{BoxFuture, KeySource, TokenVerifier};
use crate::claims::{Claims, check_issuer};
use crate::error::{ConfigError, VerifyError};
#[cfg(feature = "remote")]
use crate::fetch::HttpClient;
use crate::jose::jws::UnverifiedJws;
use crate::jose::{Algorithm, Algorithms, Jwk, KeyFamily, KeySet, VerifyingKey};
use crate::secret::Secret;

enum Keys {
    Static(Arc<KeySet>),
    Source(Arc<dyn KeySource>),
}

/// Verifies JWT access tokens: signature with an allowed algorithm and a key of the matching
/// family, then `iss` (exact match) and, optionally, the RFC 9068 `typ`.
///
/// Asymmetric algorithms are checked against the configured keys (a remote JWKS or static
/// keys); HMAC algorithms only ever against the configured shared secret, never against a
/// key set, so an attacker cannot turn a public key into an HMAC secret.
///
/// ```no_run
/// use mcp_oauth::verify::JwtVerifier;
///
/// let verifier = JwtVerifier::builder()
///     .issuer("https://example.us.auth0.com/")
///     .jwks_url("https://example.us.auth0.com/.well-known/jwks.json")
///     .build()?;
/// # Ok::<(), mcp_oauth::ConfigError>(())
/// ```
pub struct JwtVerifier {
    issuer: String,
    algorithms: Algorithms,
    keys: Option<Keys>,
    #[cfg(feature = "remote")]
    remote: Option<Arc<RemoteJwks>>,
    hmac: Option<KeySet>,
    typ: Option<&'static str>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.issuer)
            .field("algorithms", &self.algorithms)
            .field("hmac", &self.hmac.is_some())
            .field("typ", &self.typ)
            .finish_non_exhaustive()
    }
}

/// Builds a [`JwtVerifier`].
#[must_use]
pub struct JwtVerifierBuilder {
    issuer: Option<String>,
    algorithms: Option<Algorithms>,
    jwks_url: Option<String>,
    discover: bool,
    static_keys: Vec<VerifyingKey>,
    static_errors: Vec<ConfigError>,
    hmac_secret: Option<Secret>,
    hmac_algorithms: Algorithms,
    typ: Option<&'static str>,
    source: Option<Arc<dyn KeySource>>,
    #[cfg(feature = "remote")]
    client: Option<HttpClient>,
    #[cfg(feature = "remote")]
    jwks_options: JwksOptions,
}

impl JwtVerifier {
    /// A builder with the defaults: asymmetric algorithms only, no `typ` check.
    pub fn builder() -> JwtVerifierBuilder {
        JwtVerifierBuilder {
            issuer: None,
            algorithms: None,
            jwks_url: None,
            discover: false,
            static_keys: Vec::new(),
            static_errors: Vec::new(),
            hmac_secret: None,
            hmac_algorithms: [Algorithm::HS256].into_iter().collect(),
            typ: None,
            source: None,
            #[cfg(feature = "remote")]
            client: None,
            #[cfg(feature = "remote")]
            jwks_options: JwksOptions::default(),
        }
    }

    /// The issuer this verifier accepts.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The remote key set, if this verifier uses one (to read its fetch count, or warm it).
    #[cfg(feature = "remote")]
    pub fn remote_jwks(&self) -> Option<&Arc<RemoteJwks>> {
        self.remote.as_ref()
    }

    async fn check(&self, token: &str) -> Result<Claims, VerifyError> {
        let jws = UnverifiedJws::parse(token)?;
        let allowed = match (&self.hmac, jws.alg.family()) {
            (Some(set), KeyFamily::Hmac) => set.algorithms().contains(jws.alg),
            (None, KeyFamily::Hmac) => false,
            _ => self.algorithms.contains(jws.alg),
        };
        if !allowed {
            return Err(VerifyError::unsupported_alg(jws.alg.as_str()));
        }
        if let Some(expected) = self.typ {
            check_typ(jws.header.typ.as_deref(), expected)?;
        }
        let kid = jws.header.kid.as_deref();
        let verified = if jws.alg.family() == KeyFamily::Hmac {
            let set = self
                .hmac
                .as_ref()
                .ok_or_else(|| VerifyError::unsupported_alg(jws.alg.as_str()))?;
            set.find(kid, jws.alg)?
                .verify(jws.alg, jws.signing_input, &jws.signature)
        } else {
            match &self.keys {
                None => return Err(VerifyError::unsupported_alg(jws.alg.as_str())),
                Some(Keys::Static(set)) => {
                    set.find(kid, jws.alg)?
                        .verify(jws.alg, jws.signing_input, &jws.signature)
                }
                Some(Keys::Source(source)) => {
                    let set = source.keys(kid).await?;
                    set.find(kid, jws.alg)?
                        .verify(jws.alg, jws.signing_input, &jws.signature)
                }
            }
        };
        if !verified {
            return Err(VerifyError::InvalidSignature);
        }
        let claims = jws.claims()?;
        check_issuer(&claims, &self.issuer)?;
        Ok(claims)
    }
}

impl TokenVerifier for JwtVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Claims, VerifyError>> {
        Box::pin(self.check(token))
    }
}

impl JwtVerifierBuilder {
    /// The issuer (`iss`) tokens must carry, compared byte for byte. Required.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The asymmetric algorithms accepted. Default: RS256/384/512, PS256/384/512,
    /// ES256/384, EdDSA. HMAC algorithms here are ignored: use [`Self::hmac_secret`].
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(
            algorithms
                .into_iter()
                .collect::<Algorithms>()
                .without_hmac(),
        );
        self
    }

    /// Fetch keys from this JWKS URL (cached; see [`RemoteJwks`]).
    #[cfg(feature = "remote")]
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.jwks_url = Some(url.into());
        self
    }

    /// Find the JWKS URL in the issuer's metadata (`jwks_uri`), fetched in the MCP discovery
    /// order on first use.
    #[cfg(feature = "remote")]
    pub fn discover_jwks(mut self) -> Self {
        self.discover = true;
        self
    }

    /// Cache rules for the remote key set.
    #[cfg(feature = "remote")]
    pub fn jwks_options(mut self, options: JwksOptions) -> Self {
        self.jwks_options = options;
        self
    }

    /// The HTTP client for the key set (default: [`HttpClient::new`]).
    #[cfg(feature = "remote")]
    pub fn http_client(mut self, client: HttpClient) -> Self {
        self.client = Some(client);
        self
    }

    /// The configuration's client, unless [`Self::http_client`] set one.
    #[cfg(feature = "remote")]
    pub(crate) fn default_http_client(mut self, client: HttpClient) -> Self {
        self.client.get_or_insert(client);
        self
    }

    /// A static public key in PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`) for `alg`.
    pub fn public_key_pem(mut self, pem: &str, alg: Algorithm, kid: Option<&str>) -> Self {
        match VerifyingKey::from_pem(pem, alg, kid.map(str::to_owned)) {
            Ok(key) => self.static_keys.push(key),
            Err(err) => self.static_errors.push(err.into()),
        }
        self
    }

    /// A static public key as a JWK.
    pub fn jwk(mut self, jwk: &Jwk) -> Self {
        let allowed = self.algorithms.unwrap_or_default();
        match VerifyingKey::from_jwk(jwk, allowed) {
            Ok(key) => self.static_keys.push(key),
            Err(err) => self.static_errors.push(err.into()),
        }
        self
    }

    /// Static public keys from a JWKS document (JSON text).
    pub fn jwks_json(mut self, json: &str) -> Self {
        let allowed = self.algorithms.unwrap_or_default();
        match KeySet::from_jwks_json(json.as_bytes(), allowed, usize::MAX) {
            Ok((set, _)) if set.is_empty() => self
                .static_errors
                .push(ConfigError::InvalidKey("the JWKS has no usable key".into())),
            Ok((set, _)) => self.static_keys.extend(set.keys_vec()),
            Err(err) => self.static_errors.push(err.into()),
        }
        self
    }

    /// Keys that can change at run time (an in-process key ring, a custom cache).
    pub fn key_source(mut self, source: Arc<dyn KeySource>) -> Self {
        self.source = Some(source);
        self
    }

    /// A ready verifying key.
    pub fn key(mut self, key: VerifyingKey) -> Self {
        self.static_keys.push(key);
        self
    }

    /// Accept HS256 tokens signed with this shared secret (at least 32 bytes). This path is
    /// separate: HMAC tokens are only ever checked against this secret, never a key set.
    pub fn hmac_secret(mut self, secret: impl Into<Secret>) -> Self {
        self.hmac_secret = Some(secret.into());
        self
    }

    /// The HMAC algorithms accepted with [`Self::hmac_secret`]. Default: HS256.
    pub fn hmac_algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.hmac_algorithms = algorithms
            .into_iter()
            .filter(|a| a.family() == KeyFamily::Hmac)
            .collect();
        self
    }

    /// Require the RFC 9068 header `typ: at+jwt` (or `application/at+jwt`). Default: off,
    /// since several providers issue access tokens with `typ: JWT`.
    pub fn require_at_jwt_typ(mut self) -> Self {
        self.typ = Some("at+jwt");
        self
    }

    /// Builds the verifier.
    ///
    /// # Errors
    ///
    /// No issuer; no key source; a JWKS URL that is not https (loopback excepted); an invalid
    /// static key or secret.
    pub fn build(self) -> Result<JwtVerifier, ConfigError> {
        if let Some(err) = self.static_errors.into_iter().next() {
            return Err(err);
        }
        let issuer = self.issuer.filter(|i| !i.is_empty()).ok_or_else(|| {
            ConfigError::missing(
                "issuer",
                "call JwtVerifierBuilder::issuer with the issuer URL tokens carry in `iss`",
            )
        })?;
        let algorithms = self.algorithms.unwrap_or_default();
        let hmac = match &self.hmac_secret {
            None => None,
            Some(secret) => Some(KeySet::new(vec![VerifyingKey::hmac(
                secret.expose(),
                self.hmac_algorithms,
                None,
            )?])),
        };
        let mut keys = None;
        if !self.static_keys.is_empty() {
            keys = Some(Keys::Static(Arc::new(KeySet::new(self.static_keys))));
        }
        if let Some(source) = self.source {
            if keys.is_some() {
                return Err(ConfigError::invalid(
                    "keys",
                    "use either static keys or a key source, not both",
                ));
            }
            keys = Some(Keys::Source(source));
        }
        #[cfg(feature = "remote")]
        let mut remote = None;
        #[cfg(feature = "remote")]
        {
            let location = match (self.jwks_url, self.discover) {
                (Some(url), _) => {
                    let url = url::Url::parse(&url)
                        .map_err(|e| ConfigError::url("JWKS URL", &url, e.to_string()))?;
                    Some(JwksLocation::Url(url))
                }
                (None, true) => {
                    let url = url::Url::parse(&issuer).map_err(|e| {
                        ConfigError::url(
                            "issuer",
                            &issuer,
                            format!("discovery needs a URL issuer: {e}"),
                        )
                    })?;
                    Some(JwksLocation::Discover(url))
                }
                (None, false) => None,
            };
            if let Some(location) = location {
                if keys.is_some() {
                    return Err(ConfigError::invalid(
                        "keys",
                        "use one key source: static keys, a JWKS or a key source",
                    ));
                }
                let client = match self.client {
                    Some(client) => client,
                    None => HttpClient::new()?,
                };
                match &location {
                    JwksLocation::Url(url) => client.check_config_url("JWKS URL", url)?,
                    JwksLocation::Discover(url) => client.check_config_url("issuer", url)?,
                }
                let jwks = Arc::new(RemoteJwks::new(
                    location,
                    client,
                    self.jwks_options,
                    algorithms,
                ));
                remote = Some(jwks.clone());
                keys = Some(Keys::Source(jwks));
            }
        }
        #[cfg(not(feature = "remote"))]
        let _ = (self.jwks_url, self.discover);
        if keys.is_none() && hmac.is_none() {
            return Err(ConfigError::missing(
                "keys",
                "give a JWKS URL (jwks_url or discover_jwks), static keys (public_key_pem, jwk, jwks_json) or an HMAC secret",
            ));
        }
        Ok(JwtVerifier {
            issuer,
            algorithms,
            keys,
            #[cfg(feature = "remote")]
            remote,
            hmac,
            typ: self.typ,
        })
    }
}

/// The JOSE header `typ` names `expected`, with or without the `application/` prefix (RFC 7515
/// §4.1.9), compared without regard to case.
pub(crate) fn check_typ(typ: Option<&str>, expected: &'static str) -> Result<(), VerifyError> {
    let typ = typ.unwrap_or_default();
    let typ = typ.strip_prefix("application/").unwrap_or(typ);
    if typ.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(VerifyError::InvalidType { expected })
    }
}
