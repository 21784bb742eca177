//! Better Auth (`@better-auth/oauth-provider`).

use std::sync::Arc;

use super::{Common, Provider, ProviderSpec, Vars, base_url, common_setters, required};
use crate::auth::{ClaimMapper, DefaultClaimMapper, UserInfo};
use crate::claims::Claims;
use crate::error::ConfigError;

/// Better Auth: issuer = the auth URL including its base path
/// (`http://localhost:3000/api/auth`), keys at `<auth URL>/jwks` (EdDSA by default), access
/// tokens `typ: at+jwt` (required: Better Auth's JWT-plugin session tokens share the key),
/// audience bound to the MCP resource (Better Auth issues JWTs only for a `resource`).
///
/// Variable: `MCP_USE_OAUTH_BETTER_AUTH_URL` (required). Claims: the generic mapping plus
/// `azp`, `sid`, `email_verified`; replace it with [`BetterAuth::claim_mapper`].
#[derive(Clone, Default)]
#[must_use]
pub struct BetterAuth {
    auth_url: Option<String>,
    mapper: Option<Arc<dyn ClaimMapper>>,
    common: Common,
}

impl std::fmt::Debug for BetterAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BetterAuth")
            .field("auth_url", &self.auth_url)
            .finish_non_exhaustive()
    }
}

impl BetterAuth {
    /// Nothing set: every value comes from the environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// All values from the environment, checked now.
    ///
    /// # Errors
    ///
    /// A required variable is missing.
    pub fn from_env() -> Result<Self, ConfigError> {
        super::from_env(Self::new())
    }

    /// The auth URL with its base path (`https://app.example.com/api/auth`).
    pub fn auth_url(mut self, url: impl Into<String>) -> Self {
        self.auth_url = Some(url.into());
        self
    }

    /// Your own claim mapping, replacing the default one (mcp-use's `getUserInfo`).
    pub fn claim_mapper(mut self, mapper: impl ClaimMapper) -> Self {
        self.mapper = Some(Arc::new(mapper));
        self
    }

    common_setters!();
}

/// Better Auth's default claims.
#[derive(Debug, Clone, Copy, Default)]
pub struct BetterAuthMapper;

impl ClaimMapper for BetterAuthMapper {
    fn map_user(&self, claims: &Claims) -> UserInfo {
        let mut user = DefaultClaimMapper.map_user(claims);
        for name in ["azp", "sid", "email_verified"] {
            if let Some(value) = claims.get(name) {
                user.extra.insert(name.to_owned(), value.clone());
            }
        }
        user
    }
}

impl Provider for BetterAuth {
    fn spec_with(self, vars: Vars<'_>) -> Result<ProviderSpec, ConfigError> {
        let url = required(
            self.auth_url,
            vars,
            "Better Auth authURL",
            "MCP_USE_OAUTH_BETTER_AUTH_URL",
            "BetterAuth::auth_url",
        )?;
        let issuer = base_url(&url, "Better Auth authURL")?;
        let spec = ProviderSpec::jwt("better-auth", issuer.clone())
            .jwks_url(format!("{issuer}/jwks"))
            .endpoints(
                format!("{issuer}/oauth2/authorize"),
                format!("{issuer}/oauth2/token"),
            )
            .scopes_supported(&["openid", "profile", "email", "offline_access"])
            .grant_types(&["authorization_code", "client_credentials", "refresh_token"])
            .require_at_jwt(true)
            .claim_mapper(self.mapper.unwrap_or_else(|| Arc::new(BetterAuthMapper)));
        Ok(self.common.finish(spec))
    }
}
