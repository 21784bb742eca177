//! Auth0.

use std::sync::Arc;

use super::{Common, Provider, ProviderSpec, Vars, base_url, common_setters, required};
use crate::auth::{ClaimMapper, DefaultClaimMapper, UserInfo};
use crate::authenticator::audience::Audience;
use crate::claims::Claims;
use crate::error::ConfigError;

/// Auth0: issuer `https://<domain>/` (with the trailing slash), keys at
/// `/.well-known/jwks.json`, audience bound to the MCP resource **and** the API identifier
/// (Auth0 issues JWT access tokens only for an API `audience`).
///
/// Variables: `MCP_USE_OAUTH_AUTH0_DOMAIN`, `MCP_USE_OAUTH_AUTH0_AUDIENCE` (both required).
/// Claims: `permissions` (RBAC), `roles` (or a namespaced `…/roles` claim), `org_id`.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Auth0 {
    domain: Option<String>,
    audience: Option<String>,
    common: Common,
}

impl Auth0 {
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

    /// The tenant domain (`tenant.eu.auth0.com`, a custom domain, or a full URL).
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// The API identifier tokens are issued for.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    common_setters!();
}

/// Auth0's claims: roles from `roles` or the first namespaced claim ending in `/roles`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Auth0Mapper;

impl ClaimMapper for Auth0Mapper {
    fn map_user(&self, claims: &Claims) -> UserInfo {
        let mut user = DefaultClaimMapper.map_user(claims);
        if user.roles.is_empty()
            && let Some((name, _)) = claims
                .iter()
                .find(|(k, v)| k.ends_with("/roles") && v.is_array())
        {
            user.roles = claims.string_list(name);
        }
        for name in ["email_verified", "updated_at", "org_id", "org_name", "gty"] {
            if let Some(value) = claims.get(name) {
                user.extra.insert(name.to_owned(), value.clone());
            }
        }
        user
    }
}

impl Provider for Auth0 {
    fn spec_with(self, vars: Vars<'_>) -> Result<ProviderSpec, ConfigError> {
        let domain = required(
            self.domain,
            vars,
            "Auth0 domain",
            "MCP_USE_OAUTH_AUTH0_DOMAIN",
            "Auth0::domain",
        )?;
        let audience = required(
            self.audience,
            vars,
            "Auth0 audience",
            "MCP_USE_OAUTH_AUTH0_AUDIENCE",
            "Auth0::audience",
        )?;
        let base = base_url(&domain, "Auth0 domain")?;
        let spec = ProviderSpec::jwt("auth0", format!("{base}/"))
            .jwks_url(format!("{base}/.well-known/jwks.json"))
            .endpoints(format!("{base}/authorize"), format!("{base}/oauth/token"))
            .scopes_supported(&["openid", "profile", "email", "offline_access"])
            .audience(Audience::resource_or([audience]))
            .claim_mapper(Arc::new(Auth0Mapper));
        Ok(self.common.finish(spec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn claims(v: Value) -> Claims {
        Claims::new(v.as_object().cloned().unwrap_or_default())
    }

    #[test]
    fn urls_and_errors() {
        let none = |_: &str| None;
        let spec = Auth0::new()
            .domain("tenant.auth0.com")
            .audience("https://api")
            .spec_with(&none)
            .expect("spec");
        assert_eq!(spec.issuer, "https://tenant.auth0.com/");
        assert_eq!(
            spec.jwks_url.as_deref(),
            Some("https://tenant.auth0.com/.well-known/jwks.json")
        );
        let spec = Auth0::new()
            .domain("https://tenant.auth0.com")
            .audience("a")
            .spec_with(&none)
            .expect("spec");
        assert_eq!(
            spec.issuer, "https://tenant.auth0.com/",
            "no https://https://"
        );
        let err = Auth0::new()
            .audience("a")
            .spec_with(&none)
            .expect_err("no domain");
        assert!(
            err.to_string().contains("MCP_USE_OAUTH_AUTH0_DOMAIN"),
            "{err}"
        );
        let err = Auth0::new()
            .domain("d.example")
            .spec_with(&none)
            .expect_err("no audience");
        assert!(
            err.to_string().contains("MCP_USE_OAUTH_AUTH0_AUDIENCE"),
            "{err}"
        );
    }

    #[test]
    fn namespaced_roles_and_permissions() {
        let user = Auth0Mapper.map_user(&claims(serde_json::json!({
            "sub": "auth0|1", "permissions": ["read:a"], "https://example.com/roles": ["doctor"], "org_id": "org_1"
        })));
        assert_eq!(user.roles, vec!["doctor"]);
        assert_eq!(user.permissions, vec!["read:a"]);
        assert_eq!(
            user.extra.get("org_id").and_then(Value::as_str),
            Some("org_1")
        );
    }
}
