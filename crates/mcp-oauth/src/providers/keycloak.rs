//! Keycloak.

use std::sync::Arc;

use serde_json::Value;

use super::{
    Audience, ClaimIfPresent, Common, Provider, ProviderSpec, Vars, base_url, common_setters,
    deprecated_alias, optional, required,
};
use crate::auth::{ClaimMapper, DefaultClaimMapper, UserInfo};
use crate::claims::Claims;
use crate::error::ConfigError;

/// Keycloak: issuer `<server>/realms/<realm>`, keys at `/protocol/openid-connect/certs`
/// (encryption keys in the set are skipped). Audience bound to the MCP resource, or to the
/// configured audience (a client id); Keycloak adds `aud` only through an audience mapper, so
/// configure one (or `insecure_disable_audience_check()`). Tokens whose `typ` claim is not
/// `Bearer` (refresh and ID tokens) are refused.
///
/// Variables: `MCP_USE_OAUTH_KEYCLOAK_SERVER_URL`, `MCP_USE_OAUTH_KEYCLOAK_REALM` (required),
/// `MCP_USE_OAUTH_KEYCLOAK_AUDIENCE` (older mcp-use docs: `MCP_USE_OAUTH_KEYCLOAK_CLIENT_ID`,
/// still read as the audience when `_AUDIENCE` is unset, with a deprecation warning). Claims: realm roles (`realm_access.roles`) as roles,
/// client roles (`resource_access.<client>.roles`) as `<client>:<role>` permissions.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Keycloak {
    server_url: Option<String>,
    realm: Option<String>,
    audience: Option<String>,
    common: Common,
}

impl Keycloak {
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

    /// The server URL (`https://auth.example.com`).
    pub fn server_url(mut self, url: impl Into<String>) -> Self {
        self.server_url = Some(url.into());
        self
    }

    /// The realm.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// Another accepted audience (a client id put in `aud` by an audience mapper).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    common_setters!();
}

/// Keycloak claims.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeycloakMapper;

impl ClaimMapper for KeycloakMapper {
    fn map_user(&self, claims: &Claims) -> UserInfo {
        let mut user = DefaultClaimMapper.map_user(claims);
        user.nickname = claims.str("preferred_username").map(str::to_owned);
        user.roles = claims
            .get("realm_access")
            .and_then(|r| r.get("roles"))
            .and_then(Value::as_array)
            .map(|roles| {
                roles
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(clients) = claims.get("resource_access").and_then(Value::as_object) {
            for (client, access) in clients {
                for role in access
                    .get("roles")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    user.permissions.push(format!("{client}:{role}"));
                }
            }
        }
        for name in [
            "email_verified",
            "given_name",
            "family_name",
            "realm_access",
            "resource_access",
            "azp",
        ] {
            if let Some(value) = claims.get(name) {
                user.extra.insert(name.to_owned(), value.clone());
            }
        }
        user
    }
}

impl Provider for Keycloak {
    fn spec_with(self, vars: Vars<'_>) -> Result<ProviderSpec, ConfigError> {
        let server = required(
            self.server_url,
            vars,
            "Keycloak server URL",
            "MCP_USE_OAUTH_KEYCLOAK_SERVER_URL",
            "Keycloak::server_url",
        )?;
        let realm = required(
            self.realm,
            vars,
            "Keycloak realm",
            "MCP_USE_OAUTH_KEYCLOAK_REALM",
            "Keycloak::realm",
        )?;
        // Older mcp-use releases checked `aud` against MCP_USE_OAUTH_KEYCLOAK_CLIENT_ID: the
        // same meaning as the audience today, so it is read as one, with a warning.
        let audience = match self.audience {
            Some(audience) => optional(Some(audience), vars, "MCP_USE_OAUTH_KEYCLOAK_AUDIENCE"),
            None => {
                let old = deprecated_alias(
                    vars,
                    "MCP_USE_OAUTH_KEYCLOAK_CLIENT_ID",
                    "MCP_USE_OAUTH_KEYCLOAK_AUDIENCE",
                );
                optional(None, vars, "MCP_USE_OAUTH_KEYCLOAK_AUDIENCE").or(old)
            }
        };
        let realm: String = url::form_urlencoded::byte_serialize(realm.as_bytes())
            .collect::<String>()
            .replace('+', "%20");
        let issuer = format!(
            "{}/realms/{realm}",
            base_url(&server, "Keycloak server URL")?
        );
        let oidc = format!("{issuer}/protocol/openid-connect");
        let spec = ProviderSpec::jwt("keycloak", issuer)
            .jwks_url(format!("{oidc}/certs"))
            .endpoints(format!("{oidc}/auth"), format!("{oidc}/token"))
            .scopes_supported(&["openid", "profile", "email", "offline_access", "roles"])
            .grant_types(&["authorization_code", "refresh_token", "client_credentials"])
            .audience(Audience::resource_or(audience))
            .claim_check(ClaimIfPresent {
                name: "typ",
                value: "Bearer",
            })
            .claim_mapper(Arc::new(KeycloakMapper));
        Ok(self.common.finish(spec))
    }
}
