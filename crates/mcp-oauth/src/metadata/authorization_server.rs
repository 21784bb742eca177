//! OAuth 2.0 Authorization Server Metadata (RFC 8414 §2), discovery and the mirror.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An authorization server's metadata. The fields this crate acts on are typed; everything
/// else is kept in `extra`, so nothing is lost when the document is passed on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuthorizationServerMetadata {
    /// The issuer identifier.
    pub issuer: String,
    /// Authorization endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    /// Token endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// Dynamic client registration endpoint (RFC 7591).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_endpoint: Option<String>,
    /// The JWK Set URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Introspection endpoint (RFC 7662).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
    /// Revocation endpoint (RFC 7009).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    /// Scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes_supported: Option<Vec<String>>,
    /// Response types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_types_supported: Option<Vec<String>>,
    /// Grant types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_types_supported: Option<Vec<String>>,
    /// PKCE methods; MCP clients need `S256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// Token endpoint client authentication methods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    /// Client ID Metadata Documents support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id_metadata_document_supported: Option<bool>,
    /// RFC 9207 `iss` in authorization responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_response_iss_parameter_supported: Option<bool>,
    /// Every other member, unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl AuthorizationServerMetadata {
    /// Metadata with only the issuer set.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            authorization_endpoint: None,
            token_endpoint: None,
            registration_endpoint: None,
            jwks_uri: None,
            introspection_endpoint: None,
            revocation_endpoint: None,
            scopes_supported: None,
            response_types_supported: None,
            grant_types_supported: None,
            code_challenge_methods_supported: None,
            token_endpoint_auth_methods_supported: None,
            client_id_metadata_document_supported: None,
            authorization_response_iss_parameter_supported: None,
            extra: Map::new(),
        }
    }

    /// Whether PKCE with S256 is advertised (MCP clients must refuse to proceed otherwise).
    pub fn supports_pkce_s256(&self) -> bool {
        self.code_challenge_methods_supported
            .as_ref()
            .is_some_and(|m| m.iter().any(|m| m == "S256"))
    }
}

#[cfg(feature = "remote")]
pub use remote::{DiscoveredMetadata, MetadataMirror, discover};

#[cfg(feature = "remote")]
mod remote {
    use std::time::Duration;

    use bytes::Bytes;
    use url::Url;

    use super::AuthorizationServerMetadata;
    use crate::error::{FetchError, FetchErrorKind};
    use crate::fetch::{HttpClient, cache_ttl};
    use crate::refresh::{RefreshRules, Refreshing, Unavailable};
    use crate::resource::authorization_server_metadata_urls;

    /// A metadata document as fetched.
    #[derive(Debug, Clone)]
    pub struct DiscoveredMetadata {
        /// The URL it came from.
        pub url: Url,
        /// The parsed document.
        pub metadata: AuthorizationServerMetadata,
        /// The body exactly as served, for mirroring without loss.
        pub raw: Bytes,
        pub(crate) ttl: Duration,
    }

    /// Fetches an issuer's metadata in the MCP discovery order (RFC 8414 path-inserted,
    /// OIDC path-inserted, OIDC path-appended; or RFC 8414 then OIDC for a root issuer),
    /// moving to the next URL on a 4xx answer.
    ///
    /// # Errors
    ///
    /// Every URL answered 4xx, or one failed otherwise (5xx, network, invalid JSON).
    pub async fn discover(
        client: &HttpClient,
        issuer: &Url,
    ) -> Result<DiscoveredMetadata, FetchError> {
        let mut last = None;
        for url in authorization_server_metadata_urls(issuer) {
            match client.get_json(&url).await {
                Ok(fetched) => {
                    let metadata: AuthorizationServerMetadata =
                        serde_json::from_slice(&fetched.body).map_err(|e| FetchError {
                            url: url.to_string(),
                            kind: FetchErrorKind::Parse(e.to_string()),
                        })?;
                    let ttl = cache_ttl(
                        &fetched.headers,
                        Duration::from_secs(3600),
                        Duration::from_secs(60),
                        Duration::from_secs(86_400),
                    );
                    return Ok(DiscoveredMetadata {
                        url,
                        metadata,
                        raw: fetched.body,
                        ttl,
                    });
                }
                Err(err) if matches!(err.kind, FetchErrorKind::Status(400..=499)) => {
                    last = Some(err)
                }
                Err(err) => return Err(err),
            }
        }
        Err(last.unwrap_or_else(|| FetchError {
            url: issuer.to_string(),
            kind: FetchErrorKind::Refused("no discovery URL for this issuer".into()),
        }))
    }

    /// An upstream issuer's metadata, fetched on demand and cached (its `Cache-Control`
    /// within 1 minute to 24 hours, default 1 hour), single-flight, served stale for up to
    /// 24 hours while the upstream is down.
    ///
    /// With a [fallback](Self::with_fallback) (a provider configured with its endpoints),
    /// an issuer that publishes no metadata (every discovery URL answers 4xx) is served the
    /// fallback document instead of an error; it is asked again every 5 minutes, so metadata
    /// published later replaces the fallback.
    #[derive(Debug)]
    pub struct MetadataMirror {
        issuer: Url,
        client: HttpClient,
        cache: Refreshing<DiscoveredMetadata>,
        fallback: Option<AuthorizationServerMetadata>,
    }

    /// How long a fallback document is served before the issuer is asked again.
    const FALLBACK_TTL: Duration = Duration::from_secs(300);

    impl MetadataMirror {
        /// A mirror of `issuer`'s metadata.
        pub fn new(issuer: Url, client: HttpClient) -> Self {
            let rules = RefreshRules {
                stale_if_error: Duration::from_secs(86_400),
                retry_after_error: Duration::from_secs(5),
            };
            Self {
                issuer,
                client,
                cache: Refreshing::new(rules),
                fallback: None,
            }
        }

        /// The document served when the issuer publishes no metadata (see the type's docs).
        #[must_use]
        pub fn with_fallback(mut self, fallback: AuthorizationServerMetadata) -> Self {
            self.fallback = Some(fallback);
            self
        }

        /// The issuer mirrored.
        pub fn issuer(&self) -> &Url {
            &self.issuer
        }

        /// The metadata, from cache when fresh.
        ///
        /// # Errors
        ///
        /// The upstream cannot be reached and nothing usable is cached.
        pub async fn get(&self) -> Result<std::sync::Arc<DiscoveredMetadata>, FetchError> {
            self.cache
                .get(|| self.fetch(), |_| false, Duration::MAX)
                .await
                .map_err(|Unavailable(err)| self.unavailable(err))
        }

        /// Fetches now, ignoring the cache.
        ///
        /// # Errors
        ///
        /// The upstream cannot be reached.
        pub async fn refresh_now(&self) -> Result<std::sync::Arc<DiscoveredMetadata>, FetchError> {
            self.cache
                .refresh_now(|| self.fetch())
                .await
                .map_err(|Unavailable(err)| self.unavailable(err))
        }

        /// Network fetches so far.
        pub fn fetch_count(&self) -> u64 {
            self.cache.fetch_count()
        }

        async fn fetch(&self) -> Result<(DiscoveredMetadata, Duration), FetchError> {
            match (discover(&self.client, &self.issuer).await, &self.fallback) {
                (Ok(doc), _) => {
                    let ttl = doc.ttl;
                    Ok((doc, ttl))
                }
                // Every discovery URL answered 4xx: the issuer publishes no metadata.
                (Err(err), Some(fallback))
                    if matches!(err.kind, FetchErrorKind::Status(400..=499)) =>
                {
                    tracing::debug!(target: "mcp_oauth::metadata", issuer = %self.issuer, "the issuer publishes no metadata; serving the configured endpoints");
                    let raw = serde_json::to_vec(fallback).map_err(|e| FetchError {
                        url: self.issuer.to_string(),
                        kind: FetchErrorKind::Parse(e.to_string()),
                    })?;
                    let doc = DiscoveredMetadata {
                        url: self.issuer.clone(),
                        metadata: fallback.clone(),
                        raw: Bytes::from(raw),
                        ttl: FALLBACK_TTL,
                    };
                    Ok((doc, FALLBACK_TTL))
                }
                (Err(err), _) => Err(err),
            }
        }

        fn unavailable(&self, err: Option<FetchError>) -> FetchError {
            err.unwrap_or_else(|| FetchError {
                url: self.issuer.to_string(),
                kind: FetchErrorKind::Network("metadata unavailable".into()),
            })
        }
    }
}
