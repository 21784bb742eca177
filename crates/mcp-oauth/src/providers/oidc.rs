//! Any OIDC / OAuth 2.1 issuer, configured by its issuer alone.

use std::sync::Arc;

use super::{Audience, Common, Provider, ProviderSpec, Vars, common_setters};
use crate::auth::ClaimMapper;
use crate::error::ConfigError;

/// A generic OIDC issuer: endpoints and keys come from its discovery document (fetched in the
/// MCP discovery order on first use), the audience is bound to the MCP resource.
#[derive(Clone)]
#[must_use]
pub struct Oidc {
    issuer: String,
    audiences: Vec<String>,
    require_at_jwt: bool,
    mapper: Option<Arc<dyn ClaimMapper>>,
    common: Common,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Oidc {
    /// The issuer, exactly as tokens carry it.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences: Vec::new(),
            require_at_jwt: false,
            mapper: None,
            common: Common::default(),
        }
    }

    /// Another accepted audience.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Require the RFC 9068 `typ: at+jwt` header.
    pub fn require_at_jwt(mut self) -> Self {
        self.require_at_jwt = true;
        self
    }

    /// The claim mapping (default: the generic one).
    pub fn claim_mapper(mut self, mapper: impl ClaimMapper) -> Self {
        self.mapper = Some(Arc::new(mapper));
        self
    }

    common_setters!();
}

impl Provider for Oidc {
    fn spec_with(self, _vars: Vars<'_>) -> Result<ProviderSpec, ConfigError> {
        url::Url::parse(&self.issuer)
            .map_err(|e| ConfigError::url("OIDC issuer", &self.issuer, e.to_string()))?;
        let mut spec = ProviderSpec::jwt("oidc", self.issuer)
            .require_at_jwt(self.require_at_jwt)
            .audience(Audience::resource_or(self.audiences));
        if let Some(mapper) = self.mapper {
            spec = spec.claim_mapper(mapper);
        }
        Ok(self.common.finish(spec))
    }
}
