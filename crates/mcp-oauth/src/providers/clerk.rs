//! Clerk.

use std::sync::Arc;

use serde_json::Value;

use super::{Audience, Common, Provider, ProviderSpec, Vars, base_url, common_setters, required};
use crate::auth::{ClaimMapper, DefaultClaimMapper, UserInfo};
use crate::claims::Claims;
use crate::error::ConfigError;

/// Clerk: issuer = the Frontend API URL, keys at `/.well-known/jwks.json`. OAuth access
/// tokens carry `typ: at+jwt`, which is required: Clerk session tokens are signed by the same
/// key and must not pass for access tokens. Audience bound to the MCP resource, or a
/// configured audience; `insecure_disable_audience_check()` for tokens without `aud`.
///
/// Variable: `MCP_USE_OAUTH_CLERK_FRONTEND_API_URL` (required). Claims: `org_role` (a role),
/// `org_permissions`, `org_id`, `org_slug`; scopes from `scope` or `scp`.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Clerk {
    frontend_api_url: Option<String>,
    audiences: Vec<String>,
    common: Common,
}

impl Clerk {
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

    /// The Frontend API URL (`https://verb-noun-42.clerk.accounts.dev`).
    pub fn frontend_api_url(mut self, url: impl Into<String>) -> Self {
        self.frontend_api_url = Some(url.into());
        self
    }

    /// Another accepted audience.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    common_setters!();
}

/// Clerk claims.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClerkMapper;

impl ClaimMapper for ClerkMapper {
    fn map_user(&self, claims: &Claims) -> UserInfo {
        let mut user = DefaultClaimMapper.map_user(claims);
        user.roles = claims
            .str("org_role")
            .map(|r| vec![r.to_owned()])
            .unwrap_or_default();
        user.permissions = claims.string_list("org_permissions");
        for name in ["email_verified", "org_id", "org_role", "org_slug", "sid"] {
            if let Some(value) = claims.get(name) {
                user.extra.insert(name.to_owned(), value.clone());
            }
        }
        if let Some(org) = claims.get("o").filter(|o| o.is_object()) {
            user.extra.insert("organization".into(), org.clone());
            if user.roles.is_empty()
                && let Some(role) = org.get("rol").and_then(Value::as_str)
            {
                user.roles.push(role.to_owned());
            }
        }
        user
    }
}

impl Provider for Clerk {
    fn spec_with(self, vars: Vars<'_>) -> Result<ProviderSpec, ConfigError> {
        let url = required(
            self.frontend_api_url,
            vars,
            "Clerk frontendApiUrl",
            "MCP_USE_OAUTH_CLERK_FRONTEND_API_URL",
            "Clerk::frontend_api_url",
        )?;
        let issuer = base_url(&url, "Clerk frontendApiUrl")?;
        let spec = ProviderSpec::jwt("clerk", issuer.clone())
            .jwks_url(format!("{issuer}/.well-known/jwks.json"))
            .endpoints(
                format!("{issuer}/oauth/authorize"),
                format!("{issuer}/oauth/token"),
            )
            .scopes_supported(&["profile", "email", "offline_access"])
            .require_at_jwt(true)
            .audience(Audience::resource_or(self.audiences))
            .claim_mapper(Arc::new(ClerkMapper));
        Ok(self.common.finish(spec))
    }
}
