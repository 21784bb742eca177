//! A custom provider: your issuer and endpoints, your verifier or a JWKS, your claim mapping.

use std::future::Future;
use std::sync::Arc;

use super::{Audience, Common, Provider, ProviderSpec, Vars, Verification, common_setters};
use crate::auth::ClaimMapper;
use crate::claims::Claims;
use crate::error::{ConfigError, VerifyError};
use crate::secret::AccessToken;
use crate::verify::{FnVerifier, TokenVerifier};

/// A provider described in code (mcp-use's `oauthCustomProvider`): an issuer, its
/// authorization and token endpoints, and a way to verify tokens: a verify function (or any
/// [`TokenVerifier`]), or a JWKS URL, which is then used for real. The shared rules apply
/// either way (audience bound to the MCP resource, `exp`, `nbf`, `iat`).
///
/// When the issuer publishes no metadata (RFC 8414 and OpenID discovery both answer 4xx),
/// the server's mirrored `/.well-known/oauth-authorization-server` (and
/// `/.well-known/openid-configuration`) serves the configured endpoints, scopes and grant
/// types instead of a 502 (see [`ProviderSpec::configured_metadata`]).
///
/// ```
/// use mcp_oauth::Claims;
/// use mcp_oauth::providers::Custom;
///
/// let provider = Custom::new("https://auth.example.com", "https://auth.example.com/authorize", "https://auth.example.com/token")
///     .jwks_url("https://auth.example.com/keys")
///     .scopes_supported(["files:read"]);
/// # let _ = provider;
/// ```
#[derive(Clone)]
#[must_use]
pub struct Custom {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    verifier: Option<Arc<dyn TokenVerifier>>,
    jwks_url: Option<String>,
    mapper: Option<Arc<dyn ClaimMapper>>,
    grant_types: Option<Vec<String>>,
    audiences: Vec<String>,
    registration_endpoint: Option<String>,
    userinfo_endpoint: Option<String>,
    common: Common,
}

impl std::fmt::Debug for Custom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Custom")
            .field("issuer", &self.issuer)
            .field("jwks_url", &self.jwks_url)
            .finish_non_exhaustive()
    }
}

impl Custom {
    /// A provider with this issuer and endpoints.
    pub fn new(
        issuer: impl Into<String>,
        authorization_endpoint: impl Into<String>,
        token_endpoint: impl Into<String>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            authorization_endpoint: authorization_endpoint.into(),
            token_endpoint: token_endpoint.into(),
            verifier: None,
            jwks_url: None,
            mapper: None,
            grant_types: None,
            audiences: Vec::new(),
            registration_endpoint: None,
            userinfo_endpoint: None,
            common: Common::default(),
        }
    }

    /// Verify tokens with this async function (it returns the claims, or an error).
    pub fn verify_fn<F, Fut>(self, f: F) -> Self
    where
        F: Fn(AccessToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Claims, VerifyError>> + Send + 'static,
    {
        self.verifier(FnVerifier::new(f))
    }

    /// Verify tokens with this verifier.
    pub fn verifier(mut self, verifier: impl TokenVerifier) -> Self {
        self.verifier = Some(Arc::new(verifier));
        self
    }

    /// Verify JWTs against this JWKS URL.
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.jwks_url = Some(url.into());
        self
    }

    /// The claim mapping (default: the generic one).
    pub fn claim_mapper(mut self, mapper: impl ClaimMapper) -> Self {
        self.mapper = Some(Arc::new(mapper));
        self
    }

    /// The grant types advertised (default: `authorization_code`, `refresh_token`).
    pub fn grant_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, grants: I) -> Self {
        self.grant_types = Some(grants.into_iter().map(Into::into).collect());
        self
    }

    /// Another accepted audience.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The provider's dynamic client registration endpoint (RFC 7591), advertised in the
    /// metadata served when the issuer publishes none. Without it, MCP clients need a client
    /// id registered by hand.
    pub fn registration_endpoint(mut self, url: impl Into<String>) -> Self {
        self.registration_endpoint = Some(url.into());
        self
    }

    /// The provider's OpenID Connect `userinfo` endpoint. After a token is verified, profile
    /// claims it lacks (`email`, `email_verified`, `name`, `given_name`, `family_name`,
    /// `preferred_username`, `nickname`, `picture`) are filled from `userinfo`, called with
    /// the token as bearer: once per token (the verified-token cache keeps the result), only
    /// when one of them is missing, never replacing a claim the token has, and only when the
    /// answer's `sub` is the token's. If the call fails, the token is still accepted with its
    /// own claims (a warning is logged). It is also advertised as `userinfo_endpoint` in the
    /// metadata served when the issuer publishes none. Default: none (no call).
    pub fn userinfo_endpoint(mut self, url: impl Into<String>) -> Self {
        self.userinfo_endpoint = Some(url.into());
        self
    }

    common_setters!();
}

impl Provider for Custom {
    fn spec_with(self, _vars: Vars<'_>) -> Result<ProviderSpec, ConfigError> {
        for (field, value) in [
            ("custom issuer", &self.issuer),
            (
                "custom authorization endpoint",
                &self.authorization_endpoint,
            ),
            ("custom token endpoint", &self.token_endpoint),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::missing(field, "pass it to Custom::new"));
            }
            url::Url::parse(value).map_err(|e| ConfigError::url(field, value, e.to_string()))?;
        }
        for (field, value) in [
            ("custom registration endpoint", &self.registration_endpoint),
            ("custom userinfo endpoint", &self.userinfo_endpoint),
        ] {
            if let Some(value) = value {
                let url = url::Url::parse(value)
                    .map_err(|e| ConfigError::url(field, value, e.to_string()))?;
                if url.scheme() != "https"
                    && !(url.scheme() == "http" && crate::resource::is_loopback_url(&url))
                {
                    return Err(ConfigError::url(
                        field,
                        value,
                        "use https (plain http only for a loopback stand-in)",
                    ));
                }
            }
        }
        let verification = match (self.verifier, &self.jwks_url) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    "custom provider",
                    "give a verify function or a JWKS URL, not both",
                ));
            }
            (Some(verifier), None) => Verification::Custom(verifier),
            (None, Some(_)) => Verification::Jwt,
            (None, None) => {
                return Err(ConfigError::missing(
                    "custom provider verifier",
                    "call Custom::verify_fn (or Custom::verifier) or Custom::jwks_url",
                ));
            }
        };
        let mut spec = ProviderSpec::jwt("custom", self.issuer)
            .endpoints(self.authorization_endpoint, self.token_endpoint)
            .scopes_supported(&["openid", "profile", "email"])
            .audience(Audience::resource_or(self.audiences))
            .verification(verification);
        spec.jwks_url = self.jwks_url;
        spec.registration_endpoint = self.registration_endpoint;
        spec.userinfo_endpoint = self.userinfo_endpoint;
        spec.metadata_fallback = true;
        if let Some(grant_types) = self.grant_types {
            spec.grant_types = grant_types;
        }
        if let Some(mapper) = self.mapper {
            spec = spec.claim_mapper(mapper);
        }
        Ok(self.common.finish(spec))
    }
}
