//! WorkOS AuthKit.

use std::sync::Arc;

use super::{Audience, Common, Provider, ProviderSpec, Vars, base_url, common_setters, required};
use crate::auth::{ClaimMapper, DefaultClaimMapper, UserInfo};
use crate::claims::Claims;
use crate::error::ConfigError;

/// WorkOS AuthKit (Connect tokens): issuer `https://<subdomain>` (the full AuthKit host, e.g.
/// `acme.authkit.app`), keys at `/oauth2/jwks`, audience bound to the MCP resource (AuthKit
/// puts the `resource` in `aud`) or an extra audience (the client id);
/// `insecure_disable_audience_check()` turns it off.
///
/// Variable: `MCP_USE_OAUTH_WORKOS_SUBDOMAIN` (required). Claims: `org_id` (as
/// `organization_id`), `sid`, `roles`, `permissions`.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct WorkOs {
    subdomain: Option<String>,
    audiences: Vec<String>,
    common: Common,
}

impl WorkOs {
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

    /// The AuthKit host (`acme.authkit.app`, or a full URL).
    pub fn subdomain(mut self, subdomain: impl Into<String>) -> Self {
        self.subdomain = Some(subdomain.into());
        self
    }

    /// Another accepted audience (the environment's client id, for tokens issued without a
    /// resource).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    common_setters!();
}

/// WorkOS claims.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkOsMapper;

impl ClaimMapper for WorkOsMapper {
    fn map_user(&self, claims: &Claims) -> UserInfo {
        let mut user = DefaultClaimMapper.map_user(claims);
        for (from, to) in [
            ("email_verified", "email_verified"),
            ("org_id", "organization_id"),
            ("sid", "sid"),
            ("role", "role"),
        ] {
            if let Some(value) = claims.get(from) {
                user.extra.insert(to.to_owned(), value.clone());
            }
        }
        user
    }
}

impl Provider for WorkOs {
    fn spec_with(self, vars: Vars<'_>) -> Result<ProviderSpec, ConfigError> {
        let subdomain = required(
            self.subdomain,
            vars,
            "WorkOS subdomain",
            "MCP_USE_OAUTH_WORKOS_SUBDOMAIN",
            "WorkOs::subdomain",
        )?;
        let issuer = base_url(&subdomain, "WorkOS subdomain")?;
        let spec = ProviderSpec::jwt("workos", issuer.clone())
            .jwks_url(format!("{issuer}/oauth2/jwks"))
            .endpoints(
                format!("{issuer}/oauth2/authorize"),
                format!("{issuer}/oauth2/token"),
            )
            .scopes_supported(&["email", "offline_access", "openid", "profile"])
            .audience(Audience::resource_or(self.audiences))
            .claim_mapper(Arc::new(WorkOsMapper));
        Ok(self.common.finish(spec))
    }
}
