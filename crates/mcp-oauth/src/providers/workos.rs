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
/// Variable: `MCP_USE_OAUTH_WORKOS_SUBDOMAIN` (required): the full AuthKit host. A bare
/// subdomain (`acme`, as older mcp-use releases took it) means `acme.authkit.app`, with a
/// warning; a custom AuthKit domain is given in full. Claims: `org_id` (as
/// `organization_id`), `sid`, `roles`, `permissions`.
///
/// Variables of older mcp-use releases: `MCP_USE_OAUTH_WORKOS_CLIENT_ID` (a pre-registered
/// client, without dynamic registration) is refused with an error saying what to do instead;
/// `MCP_USE_OAUTH_WORKOS_API_KEY` (for calls to the WorkOS API from tools) is not read, with
/// a warning: token verification needs no key.
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

    /// The AuthKit host (`acme.authkit.app`, or a full URL; a bare `acme` means
    /// `acme.authkit.app`).
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
        refuse_retired(vars)?;
        let issuer = base_url(&authkit_host(&subdomain)?, "WorkOS subdomain")?;
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

/// The AuthKit host of `value`: a bare subdomain (one DNS label, as older mcp-use releases
/// took it) becomes `<label>.authkit.app`, with a warning; anything else is kept (a full
/// host, a custom domain, a URL), never turned into `https://<label>`.
fn authkit_host(value: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    if value.contains(['.', ':', '/']) {
        return Ok(value.to_owned());
    }
    let label_ok = !value.is_empty()
        && value.len() <= 63
        && !value.starts_with('-')
        && !value.ends_with('-')
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !label_ok {
        return Err(ConfigError::url(
            "WorkOS subdomain",
            value,
            "give the full AuthKit host from the WorkOS dashboard (Domains), e.g. your-company.authkit.app",
        ));
    }
    let host = format!("{}.authkit.app", value.to_ascii_lowercase());
    tracing::warn!(
        target: "mcp_oauth::config",
        subdomain = value,
        host = %host,
        "MCP_USE_OAUTH_WORKOS_SUBDOMAIN (or WorkOs::subdomain) holds a bare subdomain: it is taken as {host}; set the full AuthKit host (WorkOS dashboard, Domains) to silence this, or your custom AuthKit domain if you use one"
    );
    Ok(host)
}

/// The WorkOS variables of older mcp-use releases: `_CLIENT_ID` selected a mode this preset
/// does not have (refused, saying what to do); `_API_KEY` was never used to verify tokens
/// (a warning).
fn refuse_retired(vars: Vars<'_>) -> Result<(), ConfigError> {
    let set = |name: &str| vars(name).is_some_and(|v| !v.trim().is_empty());
    if set("MCP_USE_OAUTH_WORKOS_CLIENT_ID") {
        return Err(ConfigError::invalid(
            "MCP_USE_OAUTH_WORKOS_CLIENT_ID",
            "this variable of older mcp-use releases (a pre-registered client instead of dynamic registration) is not read: \
             remove it and enable Dynamic Client Registration in the WorkOS dashboard (Connect, Configuration), \
             keeping MCP_USE_OAUTH_WORKOS_SUBDOMAIN; to accept tokens whose aud is a client id, pass it with WorkOs::audience; \
             for a pre-registered client without dynamic registration, run proxy mode (mcp-oauth proxy --provider oidc \
             --issuer https://<your AuthKit host> --client-id <id>; see docs/proxy.md)",
        ));
    }
    if set("MCP_USE_OAUTH_WORKOS_API_KEY") {
        tracing::warn!(
            target: "mcp_oauth::config",
            "MCP_USE_OAUTH_WORKOS_API_KEY is not read: verifying WorkOS tokens needs no API key, and MCP_USE_OAUTH_WORKOS_SUBDOMAIN is the only WorkOS variable; \
             if your tools call the WorkOS API, have them read the key under a name of your own (e.g. WORKOS_API_KEY) and remove this one"
        );
    }
    Ok(())
}
