//! OAuth 2.0 Protected Resource Metadata (RFC 9728 §2).

use serde::{Deserialize, Serialize};

/// The protected-resource metadata document (RFC 9728 §2).
///
/// ```
/// use mcp_oauth::metadata::ProtectedResourceMetadata;
///
/// let doc = ProtectedResourceMetadata::new("https://mcp.example.com/mcp")
///     .authorization_servers(["https://auth.example.com"])
///     .scopes_supported(["mcp:read"]);
/// assert_eq!(
///     serde_json::to_string(&doc).unwrap(),
///     r#"{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://auth.example.com"],"scopes_supported":["mcp:read"],"bearer_methods_supported":["header"]}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProtectedResourceMetadata {
    /// The resource identifier.
    pub resource: String,
    /// Issuers of authorization servers that issue tokens for this resource.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_servers: Vec<String>,
    /// Scopes needed for basic use (never `offline_access`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    /// How tokens may be presented: only `header` here (never the query string).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bearer_methods_supported: Vec<String>,
    /// Signing algorithms of resource responses, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_signing_alg_values_supported: Vec<String>,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// Documentation URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_documentation: Option<String>,
    /// Policy URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_policy_uri: Option<String>,
    /// Terms of service URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_tos_uri: Option<String>,
    /// The algorithms DPoP proofs may be signed with (RFC 9728 §2, RFC 9449 §5.1); empty when
    /// the resource does not accept DPoP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dpop_signing_alg_values_supported: Vec<String>,
    /// Whether every access token must be DPoP-bound (RFC 9728 §2); absent means `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_bound_access_tokens_required: Option<bool>,
}

impl ProtectedResourceMetadata {
    /// A document for `resource`, presenting tokens in the header only.
    pub fn new(resource: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            authorization_servers: Vec::new(),
            scopes_supported: Vec::new(),
            bearer_methods_supported: vec!["header".into()],
            resource_signing_alg_values_supported: Vec::new(),
            resource_name: None,
            resource_documentation: None,
            resource_policy_uri: None,
            resource_tos_uri: None,
            dpop_signing_alg_values_supported: Vec::new(),
            dpop_bound_access_tokens_required: None,
        }
    }

    /// Sets the authorization servers.
    #[must_use]
    pub fn authorization_servers<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        servers: I,
    ) -> Self {
        self.authorization_servers = servers.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the scopes, dropping `offline_access` (MCP 2026-07-28: servers SHOULD NOT list it).
    #[must_use]
    pub fn scopes_supported<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        scopes: I,
    ) -> Self {
        self.scopes_supported = crate::scope::advertised(scopes);
        self
    }

    /// Advertises DPoP (RFC 9449): the proof algorithms, and whether bound tokens are
    /// required (`dpop_bound_access_tokens_required`, written either way).
    ///
    /// ```
    /// use mcp_oauth::jose::{Algorithm, Algorithms};
    /// use mcp_oauth::metadata::ProtectedResourceMetadata;
    ///
    /// let doc = ProtectedResourceMetadata::new("https://mcp.example.com/mcp")
    ///     .dpop([Algorithm::ES256, Algorithm::EdDSA].into_iter().collect::<Algorithms>(), false);
    /// let json = serde_json::to_value(&doc).unwrap();
    /// assert_eq!(json["dpop_signing_alg_values_supported"], serde_json::json!(["ES256", "EdDSA"]));
    /// assert_eq!(json["dpop_bound_access_tokens_required"], false);
    /// ```
    #[must_use]
    pub fn dpop(mut self, algorithms: crate::jose::Algorithms, required: bool) -> Self {
        self.dpop_signing_alg_values_supported = algorithms
            .iter()
            .map(|alg| alg.as_str().to_owned())
            .collect();
        self.dpop_bound_access_tokens_required = Some(required);
        self
    }

    /// Sets the name.
    #[must_use]
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }

    /// Sets the documentation URL.
    #[must_use]
    pub fn resource_documentation(mut self, url: impl Into<String>) -> Self {
        self.resource_documentation = Some(url.into());
        self
    }
}
