//! Several trusted issuers at one resource server: [`Issuer`], and how a token finds its own.
//!
//! Each trusted issuer has its own verifier (keys), audience rule and claim mapping. A token
//! is sent to the issuer its `iss` claim names, read from the payload before any signature
//! check, and only that issuer's verifier sees it:
//!
//! - the `iss` must be one of the configured issuers, compared byte for byte; any other value
//!   (missing, not a string, unknown, a near miss) is refused with `invalid_token` before a
//!   key is looked up, so a token naming an issuer of the attacker's choice never makes this
//!   server fetch anything;
//! - verifiers are never tried in turn: a token signed by issuer A's key that claims issuer B
//!   is checked against B's keys only, and refused;
//! - the verifier checks `iss` again on the verified claims, so the choice made on the
//!   unverified payload is confirmed by the signature;
//! - the verified-token cache answers a token only when the whole token is equal to the one
//!   verified, and with the rules of the issuer that verified it.
//!
//! Tokens must be JWTs (compact JWS) to be routed: with several issuers an opaque token has no
//! `iss` to read and is refused. An introspection verifier can be one of the issuers for
//! JWT-shaped tokens it knows; opaque tokens need a one-issuer configuration.

use std::sync::Arc;

use crate::auth::{AsyncClaimMapper, ClaimMapper, DefaultClaimMapper, Mapping};
use crate::claims::{ClaimIfPresent, Claims};
use crate::error::{ConfigError, VerifyError};
#[cfg(feature = "remote")]
use crate::fetch::HttpClient;
use crate::verify::{JwtVerifier, JwtVerifierBuilder, TokenVerifier};

use super::audience::Audience;

/// One trusted issuer: its issuer URL (exactly as its tokens carry it in `iss`), how its
/// tokens are verified, the audiences it may use and how its claims become a user. Give
/// several to [`OAuthBuilder::issuer`](crate::OAuthBuilder::issuer); see the
/// [module docs](self) for how a token finds its issuer.
///
/// Defaults, as for a one-issuer configuration: `aud` must name the resource, the default
/// claim mapping.
///
/// ```
/// use mcp_oauth::authenticator::Issuer;
/// use mcp_oauth::{JwtVerifier, OAuth};
///
/// # use mcp_oauth::jose::{Algorithm, SigningKey};
/// # let key_a = SigningKey::generate(Algorithm::ES256)?.public_jwk().ok_or("no jwk")?;
/// # let key_b = SigningKey::generate(Algorithm::ES256)?.public_jwk().ok_or("no jwk")?;
/// let oauth = OAuth::builder()
///     .resource("https://mcp.example.com/mcp")
///     // First: the issuer clients should prefer.
///     .issuer(Issuer::jwt("https://login.example.com", JwtVerifier::builder().jwk(&key_a)))
///     .issuer(
///         Issuer::jwt("https://partner.example.org", JwtVerifier::builder().jwk(&key_b))
///             .audience("api://mcp"),
///     )
///     .build()?;
/// assert_eq!(
///     oauth.authorization_servers(),
///     ["https://login.example.com", "https://partner.example.org"]
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub struct Issuer {
    issuer: String,
    source: Source,
    audience: Audience,
    mapper: Option<Mapping>,
}

enum Source {
    Verifier(Arc<dyn TokenVerifier>),
    Jwt(Box<JwtVerifierBuilder>),
    #[cfg(feature = "remote")]
    Provider(Box<Result<crate::providers::ProviderSpec, ConfigError>>),
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    fn with(issuer: String, source: Source) -> Self {
        Self {
            issuer,
            source,
            audience: Audience::default(),
            mapper: None,
        }
    }

    /// JWTs signed by the keys at `jwks_url` (fetched and cached; see
    /// [`RemoteJwks`](crate::verify::RemoteJwks)), with the default algorithms.
    #[cfg(feature = "remote")]
    pub fn jwks(issuer: impl Into<String>, jwks_url: impl Into<String>) -> Self {
        Self::jwt(issuer, JwtVerifier::builder().jwks_url(jwks_url))
    }

    /// JWTs signed by the keys named by the `jwks_uri` of the issuer's metadata, found in the
    /// MCP discovery order on first use.
    #[cfg(feature = "remote")]
    pub fn discover(issuer: impl Into<String>) -> Self {
        Self::jwt(issuer, JwtVerifier::builder().discover_jwks())
    }

    /// JWTs checked by this verifier builder (static keys, a JWKS URL with options, an HMAC
    /// secret, `at+jwt`); its issuer is set to `issuer`, and the
    /// [`http_client`](crate::OAuthBuilder::http_client) of the configuration is used unless
    /// it has its own.
    pub fn jwt(issuer: impl Into<String>, verifier: JwtVerifierBuilder) -> Self {
        Self::with(issuer.into(), Source::Jwt(Box::new(verifier)))
    }

    /// Tokens checked by any verifier: an
    /// [`IntrospectionVerifier`](crate::verify::IntrospectionVerifier), an embedded
    /// authorization server's, your own. It receives only JWTs whose `iss` is `issuer`, and
    /// must check that `iss` itself, as the other verifiers do; verified claims with another
    /// `iss` are refused.
    pub fn new(issuer: impl Into<String>, verifier: impl TokenVerifier) -> Self {
        Self::with(issuer.into(), Source::Verifier(Arc::new(verifier)))
    }

    /// A provider preset as one of the issuers: its issuer, verifier, audience rule, claim
    /// checks and claim mapping (the methods below add to or replace them). Unset preset
    /// values are read from the process environment now. `verify_jwt(false)` is refused among
    /// several issuers. The preset's scopes are not advertised: set
    /// [`OAuthBuilder::scopes_supported`](crate::OAuthBuilder::scopes_supported).
    #[cfg(feature = "remote")]
    pub fn provider(provider: impl crate::providers::Provider) -> Self {
        Self::provider_with(provider, &crate::providers::process_env)
    }

    /// As [`Self::provider`], with the preset's variables read from `vars`.
    #[cfg(feature = "remote")]
    pub fn provider_with(
        provider: impl crate::providers::Provider,
        vars: crate::providers::Vars<'_>,
    ) -> Self {
        let spec = provider.spec_with(vars);
        let issuer = spec.as_ref().map(|s| s.issuer.clone()).unwrap_or_default();
        Self::with(issuer, Source::Provider(Box::new(spec)))
    }

    /// The issuer URL, as its tokens carry it.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Another audience accepted from this issuer, compared exactly (an API identifier, a
    /// client id). The resource itself is always accepted.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience.add_extra(audience.into());
        self
    }

    /// Also accept from this issuer an `aud` that is a path-boundary prefix of the resource.
    pub fn audience_prefix(mut self) -> Self {
        self.audience.allow_prefix();
        self
    }

    /// Turns the audience check off for this issuer's tokens (see
    /// [`OAuthBuilder::insecure_disable_audience_check`](crate::OAuthBuilder::insecure_disable_audience_check)).
    pub fn insecure_disable_audience_check(mut self) -> Self {
        self.audience = Audience::Disabled;
        self
    }

    /// This issuer's claim mapping (default: the preset's, else
    /// [`DefaultClaimMapper`]).
    pub fn claim_mapper(mut self, mapper: impl ClaimMapper) -> Self {
        self.mapper = Some(Mapping::Now(Arc::new(mapper)));
        self
    }

    /// This issuer's claim mapping, one that may wait (see
    /// [`OAuthBuilder::async_claim_mapper`](crate::OAuthBuilder::async_claim_mapper)).
    pub fn async_claim_mapper(mut self, mapper: impl AsyncClaimMapper) -> Self {
        self.mapper = Some(Mapping::Later(Arc::new(mapper)));
        self
    }

    /// The rules of this issuer, checked.
    #[cfg_attr(not(feature = "remote"), allow(unused_mut))] // a preset changes them
    pub(crate) fn build(self, ctx: &BuildContext) -> Result<Built, ConfigError> {
        let mut claim_checks = Vec::new();
        let mut audience = self.audience;
        let mut mapper = self.mapper;
        #[cfg(feature = "remote")]
        let mut userinfo = None;
        #[cfg(feature = "remote")]
        let mut fallback = None;
        let verifier: Arc<dyn TokenVerifier> = match self.source {
            Source::Verifier(verifier) => verifier,
            Source::Jwt(builder) => Arc::new(ctx.jwt(*builder, &self.issuer)?),
            #[cfg(feature = "remote")]
            Source::Provider(spec) => {
                let spec = (*spec)?;
                let built = crate::providers::pipeline::spec_pipeline(&spec, ctx.client.as_ref())?;
                if built.unverified.is_some() {
                    return Err(ConfigError::invalid(
                        "issuer",
                        format!(
                            "{:?}: verify_jwt(false) is not allowed among several trusted issuers; verify its tokens",
                            spec.issuer
                        ),
                    ));
                }
                audience = merge_audience(audience, &spec.audience);
                mapper = mapper.or_else(|| Some(Mapping::Now(spec.mapper.clone())));
                claim_checks = spec.claim_checks.clone();
                userinfo = built.userinfo;
                fallback = spec.configured_metadata();
                built.verifier
            }
        };
        // After the source: a preset that failed says why, not that its issuer is empty.
        check_issuer_url(&self.issuer)?;
        let trusted = Trusted {
            issuer: Some(self.issuer),
            verifier,
            audience,
            mapper: mapper.unwrap_or_else(|| Mapping::Now(Arc::new(DefaultClaimMapper))),
            claim_checks,
            #[cfg(feature = "remote")]
            userinfo,
        };
        Ok(Built {
            trusted,
            #[cfg(feature = "remote")]
            fallback,
        })
    }
}

/// An issuer's rules, and the metadata its preset serves when the issuer publishes none.
pub(crate) struct Built {
    pub(crate) trusted: Trusted,
    #[cfg(feature = "remote")]
    pub(crate) fallback: Option<crate::metadata::AuthorizationServerMetadata>,
}

/// What every issuer's rules are built with.
pub(crate) struct BuildContext {
    #[cfg(feature = "remote")]
    pub(crate) client: Option<HttpClient>,
}

impl BuildContext {
    fn jwt(&self, builder: JwtVerifierBuilder, issuer: &str) -> Result<JwtVerifier, ConfigError> {
        let builder = builder.issuer(issuer.to_owned());
        #[cfg(feature = "remote")]
        let builder = match &self.client {
            Some(client) => builder.default_http_client(client.clone()),
            None => builder,
        };
        builder.build()
    }
}

/// A preset's audience rule folded into the one set on the issuer (or the builder).
#[cfg(feature = "remote")]
pub(crate) fn merge_audience(mut rule: Audience, preset: &Audience) -> Audience {
    match (preset, &mut rule) {
        (
            Audience::Resource {
                extra: values,
                prefix: preset_prefix,
            },
            Audience::Resource { extra, prefix },
        ) => {
            extra.extend(values.iter().cloned());
            *prefix |= *preset_prefix;
        }
        (Audience::Disabled, rule) => *rule = Audience::Disabled,
        (_, Audience::Disabled) => {}
    }
    rule
}

/// An issuer URL must be an absolute URL without query or fragment (RFC 8414 §2).
pub(crate) fn check_issuer_url(issuer: &str) -> Result<(), ConfigError> {
    let url = url::Url::parse(issuer)
        .map_err(|e| ConfigError::url("authorization server", issuer, e.to_string()))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::url(
            "authorization server",
            issuer,
            "an issuer has no query or fragment (RFC 8414 §2)",
        ));
    }
    Ok(())
}

/// The rules of one trusted issuer, as the pipeline runs them.
pub(crate) struct Trusted {
    /// The `iss` routed here; `None` in a one-issuer configuration, where every token goes
    /// to the one verifier (which checks `iss` itself, or has none: introspection, opaque).
    pub(crate) issuer: Option<String>,
    pub(crate) verifier: Arc<dyn TokenVerifier>,
    pub(crate) audience: Audience,
    pub(crate) mapper: Mapping,
    pub(crate) claim_checks: Vec<ClaimIfPresent>,
    /// Profile claims from the provider's `userinfo`, for tokens that lack them.
    #[cfg(feature = "remote")]
    pub(crate) userinfo: Option<Arc<crate::providers::userinfo::UserinfoClaims>>,
}

impl Trusted {
    /// The one-issuer rules around `verifier`, with the defaults.
    pub(crate) fn single(verifier: Arc<dyn TokenVerifier>) -> Self {
        Self {
            issuer: None,
            verifier,
            audience: Audience::default(),
            mapper: Mapping::Now(Arc::new(DefaultClaimMapper)),
            claim_checks: Vec::new(),
            #[cfg(feature = "remote")]
            userinfo: None,
        }
    }

    /// The verified claims name this issuer (when routed by `iss`): the verifier confirmed
    /// the choice made on the unverified payload. Claims without `iss` (an introspection
    /// answer that omits it) stand on the routing alone.
    pub(crate) fn confirm(&self, claims: &Claims) -> Result<(), VerifyError> {
        match (&self.issuer, claims.iss()) {
            (Some(expected), Some(found)) if expected != found => Err(VerifyError::InvalidIssuer {
                expected: expected.clone(),
                found: Some(crate::error::truncate(found)),
            }),
            _ => Ok(()),
        }
    }
}

/// The trusted issuer a token names: its position in `trusted`. Reads `iss` from the
/// payload without checking the signature (the chosen verifier checks it), with the strict
/// parser verification uses (duplicate member names refused).
pub(crate) fn route(trusted: &[Trusted], token: &str) -> Result<usize, VerifyError> {
    let jws = crate::jose::jws::UnverifiedJws::parse(token)?;
    let claims = jws.claims()?;
    let found = claims.iss();
    trusted
        .iter()
        .position(|t| t.issuer.is_some() && t.issuer.as_deref() == found)
        .ok_or_else(|| VerifyError::InvalidIssuer {
            expected: format!("one of the {} trusted issuers", trusted.len()),
            found: found.map(crate::error::truncate),
        })
}
