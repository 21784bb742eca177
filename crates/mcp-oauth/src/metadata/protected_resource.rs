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
