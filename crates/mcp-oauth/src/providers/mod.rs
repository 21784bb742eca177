//! Provider presets: Auth0, WorkOS, Supabase, Keycloak, Clerk, Better Auth, a custom provider
//! and any OIDC issuer.
//!
//! A preset is data on the one verification pipeline, never a copy of it: an issuer, where the
//! keys are, the algorithms, the audience rule, the claim mapping, the scopes to advertise.
//! [`OAuthBuilder::provider`](crate::OAuthBuilder::provider) applies it.
//!
//! Each preset reads the same environment variables as mcp-use (`MCP_USE_OAUTH_*`); a value
//! set in code wins over the environment, and a missing required value is an error naming the
//! field and the variable to set.
//!
//! ```no_run
//! use mcp_oauth::OAuth;
//! use mcp_oauth::providers::Auth0;
//!
//! # fn main() -> Result<(), mcp_oauth::ConfigError> {
//! // MCP_USE_OAUTH_AUTH0_DOMAIN and MCP_USE_OAUTH_AUTH0_AUDIENCE from the environment:
//! let oauth = OAuth::builder()
//!     .resource("https://mcp.example.com/mcp")
//!     .provider(Auth0::from_env()?)
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! # Test seam
//!
//! Every preset takes its base address as a full URL as well as a bare host: a domain such as
//! `http://127.0.0.1:4000` points the preset at a local stand-in of the provider (plain `http`
//! is accepted for loopback addresses only).

mod auth0;
mod better_auth;
mod clerk;
mod custom;
mod keycloak;
mod oidc;
#[cfg(feature = "remote")]
pub(crate) mod pipeline;
mod supabase;
#[cfg(feature = "remote")]
pub(crate) mod userinfo;
mod workos;

use std::sync::Arc;

pub use auth0::{Auth0, Auth0Mapper};
pub use better_auth::{BetterAuth, BetterAuthMapper};
pub use clerk::{Clerk, ClerkMapper};
pub use custom::Custom;
pub use keycloak::{Keycloak, KeycloakMapper};
pub use oidc::Oidc;
pub use supabase::{Supabase, SupabaseMapper};
pub use workos::{WorkOs, WorkOsMapper};

use crate::auth::{ClaimMapper, DefaultClaimMapper};
use crate::authenticator::audience::Audience;
use crate::claims::ClaimIfPresent;
use crate::error::ConfigError;
use crate::jose::Algorithms;
use crate::secret::Secret;
use crate::verify::TokenVerifier;

/// Where a preset's variables come from: the process environment, or a function (tests,
/// configuration files).
pub type Vars<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads a variable from the process environment, ignoring empty values.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// How tokens are verified.
#[derive(Clone)]
#[non_exhaustive]
pub enum Verification {
    /// JWTs against the preset's JWKS (and an HMAC secret, if any).
    Jwt,
    /// Your own verifier.
    Custom(Arc<dyn TokenVerifier>),
    /// No signature check at all (development only; see `verify_jwt(false)`).
    Unverified,
}

impl std::fmt::Debug for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Jwt => "Jwt",
            Self::Custom(_) => "Custom",
            Self::Unverified => "Unverified",
        })
    }
}

/// Everything a preset contributes to an [`OAuth`](crate::OAuth) configuration.
#[derive(Clone)]
#[non_exhaustive]
pub struct ProviderSpec {
    /// Short name, for logs and errors (`"auth0"`).
    pub name: &'static str,
    /// The issuer, exactly as tokens carry it.
    pub issuer: String,
    /// The JWKS URL (`None`: found through the issuer's metadata).
    pub jwks_url: Option<String>,
    /// The authorization endpoint.
    pub authorization_endpoint: Option<String>,
    /// The token endpoint.
    pub token_endpoint: Option<String>,
    /// Scopes advertised in the protected-resource metadata.
    pub scopes_supported: Vec<String>,
    /// Grant types the provider supports.
    pub grant_types: Vec<String>,
    /// Accepted signature algorithms (asymmetric).
    pub algorithms: Algorithms,
    /// An HS256 shared secret (legacy Supabase).
    pub hmac_secret: Option<Secret>,
    /// Require the RFC 9068 `typ: at+jwt` header (keeps session tokens signed by the same
    /// key out).
    pub require_at_jwt: bool,
    /// The audience rule.
    pub audience: Audience,
    /// Claims that must have a given value when present.
    pub claim_checks: Vec<ClaimIfPresent>,
    /// How tokens are verified.
    pub verification: Verification,
    /// Claims to user.
    pub mapper: Arc<dyn ClaimMapper>,
    /// Forces `verify_jwt(false)` off loopback (see the preset docs).
    pub force_unverified: bool,
    /// The dynamic client registration endpoint (RFC 7591), if the provider has one.
    pub registration_endpoint: Option<String>,
    /// The OpenID Connect `userinfo` endpoint: profile claims the access token lacks are
    /// filled from it (see [`Custom::userinfo_endpoint`]).
    pub userinfo_endpoint: Option<String>,
    /// Serve the configured endpoints as the authorization server's metadata when the issuer
    /// publishes none (see [`ProviderSpec::configured_metadata`]).
    pub metadata_fallback: bool,
}

impl std::fmt::Debug for ProviderSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSpec")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("jwks_url", &self.jwks_url)
            .field("audience", &self.audience)
            .field("verification", &self.verification)
            .finish_non_exhaustive()
    }
}

impl ProviderSpec {
    /// A preset whose tokens are JWTs from `issuer`, with the defaults: keys found through
    /// the issuer's metadata, the default algorithms, audience bound to the resource, no
    /// advertised scopes, `authorization_code` and `refresh_token`, the default claim
    /// mapping. The setters below change one field each.
    pub fn jwt(name: &'static str, issuer: impl Into<String>) -> Self {
        Self {
            name,
            issuer: issuer.into(),
            jwks_url: None,
            authorization_endpoint: None,
            token_endpoint: None,
            scopes_supported: Vec::new(),
            grant_types: strings(&["authorization_code", "refresh_token"]),
            algorithms: Algorithms::default(),
            hmac_secret: None,
            require_at_jwt: false,
            audience: Audience::default(),
            claim_checks: Vec::new(),
            verification: Verification::Jwt,
            mapper: Arc::new(DefaultClaimMapper),
            force_unverified: false,
            registration_endpoint: None,
            userinfo_endpoint: None,
            metadata_fallback: false,
        }
    }

    /// The authorization server metadata (RFC 8414 §2) these settings describe: the issuer,
    /// the authorization, token and registration endpoints, the JWKS and `userinfo` URLs,
    /// the scopes and grant types; `response_types_supported: ["code"]` and
    /// `code_challenge_methods_supported: ["S256"]` (OAuth 2.1 and MCP clients require
    /// PKCE S256, so the provider must support it). `None` unless
    /// [`metadata_fallback`](Self::metadata_fallback) is set and both endpoints are known.
    pub fn configured_metadata(&self) -> Option<crate::metadata::AuthorizationServerMetadata> {
        if !self.metadata_fallback {
            return None;
        }
        let mut doc = crate::metadata::AuthorizationServerMetadata::new(self.issuer.clone());
        doc.authorization_endpoint = Some(self.authorization_endpoint.clone()?);
        doc.token_endpoint = Some(self.token_endpoint.clone()?);
        doc.registration_endpoint = self.registration_endpoint.clone();
        doc.jwks_uri = self.jwks_url.clone();
        if !self.scopes_supported.is_empty() {
            doc.scopes_supported = Some(self.scopes_supported.clone());
        }
        doc.response_types_supported = Some(strings(&["code"]));
        doc.grant_types_supported = Some(self.grant_types.clone());
        doc.code_challenge_methods_supported = Some(strings(&["S256"]));
        if let Some(userinfo) = &self.userinfo_endpoint {
            doc.extra.insert(
                "userinfo_endpoint".into(),
                serde_json::Value::String(userinfo.clone()),
            );
        }
        Some(doc)
    }

    /// The JWKS URL (default: found through the issuer's metadata).
    #[must_use]
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.jwks_url = Some(url.into());
        self
    }

    /// The authorization and token endpoints.
    #[must_use]
    pub fn endpoints(mut self, authorization: impl Into<String>, token: impl Into<String>) -> Self {
        self.authorization_endpoint = Some(authorization.into());
        self.token_endpoint = Some(token.into());
        self
    }

    /// The scopes advertised in the protected-resource metadata.
    #[must_use]
    pub fn scopes_supported(mut self, scopes: &[&str]) -> Self {
        self.scopes_supported = strings(scopes);
        self
    }

    /// The grant types the provider supports.
    #[must_use]
    pub fn grant_types(mut self, grant_types: &[&str]) -> Self {
        self.grant_types = strings(grant_types);
        self
    }

    /// The accepted (asymmetric) signature algorithms.
    #[must_use]
    pub fn algorithms(mut self, algorithms: Algorithms) -> Self {
        self.algorithms = algorithms;
        self
    }

    /// An HS256 shared secret (legacy Supabase).
    #[must_use]
    pub fn hmac_secret(mut self, secret: Option<Secret>) -> Self {
        self.hmac_secret = secret;
        self
    }

    /// Require the RFC 9068 `typ: at+jwt` header.
    #[must_use]
    pub fn require_at_jwt(mut self, require: bool) -> Self {
        self.require_at_jwt = require;
        self
    }

    /// The audience rule.
    #[must_use]
    pub fn audience(mut self, audience: Audience) -> Self {
        self.audience = audience;
        self
    }

    /// A claim that must have a given value when present.
    #[must_use]
    pub fn claim_check(mut self, check: ClaimIfPresent) -> Self {
        self.claim_checks.push(check);
        self
    }

    /// How tokens are verified (default: JWTs against the keys).
    #[must_use]
    pub fn verification(mut self, verification: Verification) -> Self {
        self.verification = verification;
        self
    }

    /// The claim mapping.
    #[must_use]
    pub fn claim_mapper(mut self, mapper: Arc<dyn ClaimMapper>) -> Self {
        self.mapper = mapper;
        self
    }
}

/// A provider preset.
pub trait Provider {
    /// The preset's data, with unset values read from `vars`.
    ///
    /// # Errors
    ///
    /// A required value is missing (the error names the field and the variable) or invalid.
    fn spec_with(self, vars: Vars<'_>) -> Result<ProviderSpec, ConfigError>;

    /// The preset's data, with unset values read from the process environment.
    ///
    /// # Errors
    ///
    /// As [`Provider::spec_with`].
    fn spec(self) -> Result<ProviderSpec, ConfigError>
    where
        Self: Sized,
    {
        self.spec_with(&process_env)
    }
}

impl Provider for ProviderSpec {
    fn spec_with(self, _vars: Vars<'_>) -> Result<ProviderSpec, ConfigError> {
        Ok(self)
    }
}

/// Settings every preset shares: advertised scopes, `verify_jwt`, the audience override.
#[derive(Debug, Clone, Default)]
pub(crate) struct Common {
    pub(crate) scopes_supported: Option<Vec<String>>,
    pub(crate) unverified: bool,
    pub(crate) force_unverified: bool,
    pub(crate) audience_off: bool,
}

macro_rules! common_setters {
    () => {
        /// The scopes advertised in the protected-resource metadata (replaces the preset's
        /// default list; `offline_access` is never advertised).
        pub fn scopes_supported<I: IntoIterator<Item = S>, S: Into<String>>(
            mut self,
            scopes: I,
        ) -> Self {
            self.common.scopes_supported = Some(scopes.into_iter().map(Into::into).collect());
            self
        }

        /// `verify_jwt(false)`: **development only**. Tokens are decoded without any signature
        /// check (issuer, audience and expiry are still checked), so anyone can forge one. Allowed
        /// only when the server listens on loopback, unless
        /// [`insecure_force_unverified`](Self::insecure_force_unverified); a warning is logged
        /// once at start.
        pub fn verify_jwt(mut self, verify: bool) -> Self {
            self.common.unverified = !verify;
            self
        }

        /// Allows `verify_jwt(false)` on a non-loopback address too. Never in production.
        pub fn insecure_force_unverified(mut self) -> Self {
            self.common.force_unverified = true;
            self
        }

        /// Turns the audience check off: tokens any service of this issuer received are then
        /// accepted here. Only for tenants that cannot put an audience in access tokens.
        pub fn insecure_disable_audience_check(mut self) -> Self {
            self.common.audience_off = true;
            self
        }
    };
}
pub(crate) use common_setters;

impl Common {
    /// Fills the shared parts of a spec.
    pub(crate) fn finish(self, mut spec: ProviderSpec) -> ProviderSpec {
        if let Some(scopes) = self.scopes_supported {
            spec.scopes_supported = scopes;
        }
        if self.unverified {
            spec.verification = Verification::Unverified;
            spec.force_unverified = self.force_unverified;
        }
        if self.audience_off {
            spec.audience = Audience::Disabled;
        }
        spec
    }
}

/// A preset's `from_env`: `preset` (nothing set in code) with every value from the process
/// environment, checked now.
pub(crate) fn from_env<P: Provider + Clone>(preset: P) -> Result<P, ConfigError> {
    preset.clone().spec()?;
    Ok(preset)
}

/// A required value: set in code, else from `var`, else an error in mcp-use's words.
pub(crate) fn required(
    value: Option<String>,
    vars: Vars<'_>,
    what: &'static str,
    var: &str,
    setter: &str,
) -> Result<String, ConfigError> {
    value
        .filter(|v| !v.trim().is_empty())
        .or_else(|| vars(var).filter(|v| !v.trim().is_empty()))
        .map(|v| v.trim().to_owned())
        .ok_or_else(|| {
            ConfigError::missing(
                what,
                format!("set the {var} environment variable or pass it with {setter}"),
            )
        })
}

/// An optional value: set in code, else from `var`.
pub(crate) fn optional(value: Option<String>, vars: Vars<'_>, var: &str) -> Option<String> {
    value
        .filter(|v| !v.trim().is_empty())
        .or_else(|| vars(var).filter(|v| !v.trim().is_empty()))
        .map(|v| v.trim().to_owned())
}

/// A variable from older mcp-use docs that meant the same as `current`: its value when
/// `current` is unset, with a warning naming `current` (and a warning that it is ignored when
/// both are set).
pub(crate) fn deprecated_alias(vars: Vars<'_>, old: &str, current: &str) -> Option<String> {
    let value = vars(old).filter(|v| !v.trim().is_empty())?;
    if vars(current).is_some_and(|v| !v.trim().is_empty()) {
        tracing::warn!(
            target: "mcp_oauth::config",
            old,
            current,
            "{old} is deprecated and ignored because {current} is set; remove {old}"
        );
        return None;
    }
    tracing::warn!(
        target: "mcp_oauth::config",
        old,
        current,
        "{old} is deprecated; it is read as {current} for now: rename it to {current}"
    );
    Some(value.trim().to_owned())
}

/// `https://<host>` from a bare host, or the URL as given (`https://…`, or `http://…` for a
/// local stand-in), without a trailing slash. Never `https://https://…`.
pub(crate) fn base_url(value: &str, field: &'static str) -> Result<String, ConfigError> {
    let value = value.trim();
    let (scheme, rest) = match (
        value.strip_prefix("https://"),
        value.strip_prefix("http://"),
    ) {
        (Some(rest), _) => ("https", rest),
        (None, Some(rest)) => ("http", rest),
        (None, None) => ("https", value),
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Err(ConfigError::url(field, value, "no host"));
    }
    let with_scheme = format!("{scheme}://{rest}");
    let url =
        url::Url::parse(&with_scheme).map_err(|e| ConfigError::url(field, value, e.to_string()))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::url(field, value, "no host"));
    }
    if url.scheme() == "http" && !crate::resource::is_loopback_url(&url) {
        return Err(ConfigError::url(
            field,
            value,
            "plain http is only accepted for loopback stand-ins; use https",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::url(field, value, "no query or fragment"));
    }
    Ok(with_scheme)
}

/// The default scopes a preset starts from.
pub(crate) fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_never_double_the_scheme() {
        assert_eq!(
            base_url("tenant.auth0.com", "d").ok().as_deref(),
            Some("https://tenant.auth0.com")
        );
        assert_eq!(
            base_url("https://tenant.auth0.com/", "d").ok().as_deref(),
            Some("https://tenant.auth0.com")
        );
        assert_eq!(
            base_url(" http://127.0.0.1:4000 ", "d").ok().as_deref(),
            Some("http://127.0.0.1:4000")
        );
        assert!(base_url("http://tenant.auth0.com", "d").is_err());
        assert!(base_url("https://", "d").is_err());
        assert!(base_url("https://x.example/?a=b", "d").is_err());
    }

    #[test]
    fn code_wins_over_the_environment() {
        let vars = |name: &str| (name == "V").then(|| "from-env".to_owned());
        assert_eq!(
            required(Some("code".into()), &vars, "x", "V", "x()")
                .ok()
                .as_deref(),
            Some("code")
        );
        assert_eq!(
            required(None, &vars, "x", "V", "x()").ok().as_deref(),
            Some("from-env")
        );
        let err =
            required(None, &vars, "Auth0 domain", "MISSING", "Auth0::domain").expect_err("missing");
        assert_eq!(
            err.to_string(),
            "Auth0 domain is required: set the MISSING environment variable or pass it with Auth0::domain"
        );
    }
}
