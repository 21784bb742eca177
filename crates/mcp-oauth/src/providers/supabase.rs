//! Supabase Auth.

use std::sync::Arc;

use serde_json::Value;

use super::{Audience, Common, Provider, ProviderSpec, Vars, base_url, common_setters, optional};
use crate::auth::{ClaimMapper, UserInfo};
use crate::claims::Claims;
use crate::error::ConfigError;
use crate::jose::Algorithm;
use crate::secret::Secret;

/// Supabase Auth: issuer `<base>/auth/v1`, keys at `/auth/v1/.well-known/jwks.json` (ES256 and
/// RS256), and, when a JWT secret is set, legacy HS256 tokens checked against that secret
/// only. Supabase puts `aud: "authenticated"` in its tokens, so that value is accepted as
/// well as the MCP resource.
///
/// Variables: `MCP_USE_OAUTH_SUPABASE_PROJECT_ID` (hosted) or `MCP_USE_OAUTH_SUPABASE_URL`
/// (self-hosted, local: it wins), and optionally `MCP_USE_OAUTH_SUPABASE_JWT_SECRET`.
/// Claims: `user_metadata` (name, username, avatar), `role` (as a role), `aal` (as the
/// permission `aal:<level>`), `amr`, `session_id`, `is_anonymous`.
///
/// `Debug` never prints the JWT secret (it mints any token), only whether one is set.
#[derive(Clone, Default)]
#[must_use]
pub struct Supabase {
    project_id: Option<String>,
    url: Option<String>,
    jwt_secret: Option<String>,
    common: Common,
}

impl std::fmt::Debug for Supabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supabase")
            .field("project_id", &self.project_id)
            .field("url", &self.url)
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("common", &self.common)
            .finish()
    }
}

impl Supabase {
    /// Nothing set: every value comes from the environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// All values from the environment, checked now.
    ///
    /// # Errors
    ///
    /// Neither a project id nor a URL is set.
    pub fn from_env() -> Result<Self, ConfigError> {
        super::from_env(Self::new())
    }

    /// The project reference (`abcdefghijklmnopqrst`): `https://<id>.supabase.co`.
    pub fn project_id(mut self, id: impl Into<String>) -> Self {
        self.project_id = Some(id.into());
        self
    }

    /// The Supabase URL (self-hosted, or `http://localhost:54321` locally); wins over the
    /// project id.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The legacy JWT secret (HS256, at least 32 bytes).
    pub fn jwt_secret(mut self, secret: impl Into<String>) -> Self {
        self.jwt_secret = Some(secret.into());
        self
    }

    common_setters!();
}

/// Supabase claims.
#[derive(Debug, Clone, Copy, Default)]
pub struct SupabaseMapper;

impl ClaimMapper for SupabaseMapper {
    fn map_user(&self, claims: &Claims) -> UserInfo {
        let meta = claims.get("user_metadata").and_then(Value::as_object);
        let meta_str = |name: &str| {
            meta.and_then(|m| m.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let mut user = UserInfo::new(
            claims
                .sub()
                .or_else(|| claims.str("user_id"))
                .unwrap_or_default(),
        );
        user.email = claims
            .str("email")
            .filter(|e| !e.is_empty())
            .map(str::to_owned);
        user.name = meta_str("name").or_else(|| meta_str("full_name"));
        user.username = meta_str("username");
        user.picture = meta_str("avatar_url");
        user.roles = claims
            .str("role")
            .map(|r| vec![r.to_owned()])
            .unwrap_or_default();
        user.permissions = claims
            .str("aal")
            .map(|a| vec![format!("aal:{a}")])
            .unwrap_or_default();
        for name in [
            "aal",
            "amr",
            "session_id",
            "is_anonymous",
            "app_metadata",
            "phone",
        ] {
            if let Some(value) = claims.get(name) {
                user.extra.insert(name.to_owned(), value.clone());
            }
        }
        user
    }
}

impl Provider for Supabase {
    fn spec_with(self, vars: Vars<'_>) -> Result<ProviderSpec, ConfigError> {
        let url = optional(self.url, vars, "MCP_USE_OAUTH_SUPABASE_URL");
        let project = optional(self.project_id, vars, "MCP_USE_OAUTH_SUPABASE_PROJECT_ID");
        let base = match (url, project) {
            (Some(url), _) => base_url(&url, "Supabase URL")?,
            (None, Some(project)) => {
                base_url(&format!("{project}.supabase.co"), "Supabase project id")?
            }
            (None, None) => {
                return Err(ConfigError::missing(
                    "Supabase project id or URL",
                    "set MCP_USE_OAUTH_SUPABASE_PROJECT_ID (hosted) or MCP_USE_OAUTH_SUPABASE_URL (self-hosted/local), or pass Supabase::project_id / Supabase::url",
                ));
            }
        };
        let secret = optional(self.jwt_secret, vars, "MCP_USE_OAUTH_SUPABASE_JWT_SECRET");
        if secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err(ConfigError::invalid(
                "Supabase JWT secret",
                "it must be at least 32 bytes (Dashboard → Project Settings → API → JWT Settings)",
            ));
        }
        let issuer = format!("{base}/auth/v1");
        let spec = ProviderSpec::jwt("supabase", issuer.clone())
            .jwks_url(format!("{issuer}/.well-known/jwks.json"))
            .endpoints(
                format!("{issuer}/oauth/authorize"),
                format!("{issuer}/oauth/token"),
            )
            .algorithms([Algorithm::ES256, Algorithm::RS256].into_iter().collect())
            .hmac_secret(secret.map(Secret::from))
            .audience(Audience::resource_or(["authenticated"]))
            .claim_mapper(Arc::new(SupabaseMapper));
        Ok(self.common.finish(spec))
    }
}
