//! OAuth Client ID Metadata Documents: a `client_id` that is an `https` URL names a JSON
//! document describing the client. It is fetched through the SSRF guard (every address the
//! host resolves to must be public, and the connection is pinned to a checked address), with
//! a size and time limit and no redirects, and cached by its HTTP cache headers.
//!
//! Errors shown to the client never say what a name resolved to, nor tell a refused
//! connection from a timeout: "cannot be fetched" covers every network failure.

use std::time::Duration;

use bytes::BytesMut;
use serde_json::{Map, Value};
use url::Url;

use super::registration::client_from_metadata;
use super::store::ClientRecord;
use crate::error::ConfigError;
use crate::fetch::cache_ttl;
use crate::net_guard::{GuardError, NetGuard};

/// The one answer for a document that cannot be reached, whatever the reason (the name does
/// not resolve or is not public, the connection is refused or times out).
const CANNOT_FETCH: &str = "the client metadata document cannot be fetched";

/// Options for Client ID Metadata Documents.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CimdOptions {
    /// Destinations: public `https` by default; tests and private deployments allow hosts.
    pub guard: NetGuard,
    /// Largest document. Default is 5 KiB (the draft's recommendation).
    pub max_bytes: usize,
    /// Fetch timeout. Default is 3 seconds.
    pub timeout: Duration,
}

impl Default for CimdOptions {
    fn default() -> Self {
        Self {
            guard: NetGuard::new(),
            max_bytes: 5 * 1024,
            timeout: Duration::from_secs(3),
        }
    }
}

impl CimdOptions {
    /// Allows documents from `host` or `host:port` even on a private address, over `http`.
    #[must_use]
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        self.guard = self.guard.allow_host(host);
        self
    }
}

#[derive(Clone)]
struct Cached {
    client: ClientRecord,
    ttl: Duration,
}

struct CachedExpiry;

impl moka::Expiry<String, Cached> for CachedExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Cached,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Resolves URL client ids.
pub(crate) struct Resolver {
    options: CimdOptions,
    cache: moka::sync::Cache<String, Cached>,
}

/// Whether `client_id` is to be treated as a metadata document URL.
pub(crate) fn is_document_url(client_id: &str) -> bool {
    client_id.starts_with("https://") || client_id.starts_with("http://")
}

impl Resolver {
    pub(crate) fn new(options: CimdOptions) -> Result<Self, ConfigError> {
        Ok(Self {
            options,
            cache: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .expire_after(CachedExpiry)
                .build(),
        })
    }

    /// The client the document at `client_id` describes.
    pub(crate) async fn resolve(&self, client_id: &str) -> Result<ClientRecord, String> {
        if let Some(hit) = self.cache.get(client_id) {
            return Ok(hit.client);
        }
        let (client, ttl) = self.fetch(client_id).await?;
        if !ttl.is_zero() {
            self.cache.insert(
                client_id.to_owned(),
                Cached {
                    client: client.clone(),
                    ttl,
                },
            );
        }
        Ok(client)
    }

    async fn fetch(&self, client_id: &str) -> Result<(ClientRecord, Duration), String> {
        let url = Url::parse(client_id).map_err(|_| "the client_id is not a URL".to_owned())?;
        if url.fragment().is_some()
            || url.path() == "/"
            || url.path().is_empty()
            || client_id.contains("/./")
            || client_id.contains("/../")
        {
            return Err(
                "a client metadata document URL needs a path and no fragment or dot segments"
                    .into(),
            );
        }
        let addr = match self.options.guard.check(&url).await {
            Ok(addr) => addr,
            // The scheme and the URL's form are the client's own input: say what is wrong.
            Err(err @ (GuardError::Scheme(_) | GuardError::Url(_))) => {
                return Err(format!(
                    "the client metadata document is not fetched: {err}"
                ));
            }
            // Whether the name resolves, and to what, is the network's business: one answer
            // for all of it, so that the page is no oracle for internal names (review 2, F10).
            Err(err) => {
                tracing::debug!(target: "mcp_oauth::auth_server", %url, error = ?err, "client metadata document refused by the network guard");
                return Err(CANNOT_FETCH.to_owned());
            }
        };
        let http = crate::net_guard::pinned_client(&url, addr)
            .timeout(self.options.timeout)
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        let mut response = http
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|err| {
                // Timed out and refused look alike: no port scan through this page.
                tracing::debug!(target: "mcp_oauth::auth_server", %url, timeout = err.is_timeout(), "client metadata document fetch failed");
                CANNOT_FETCH.to_owned()
            })?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(format!(
                "the client metadata document answered {}",
                response.status().as_u16()
            ));
        }
        let headers = response.headers().clone();
        let mut body = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|_| "the client metadata document cannot be read".to_owned())?
        {
            if body.len() + chunk.len() > self.options.max_bytes {
                return Err(format!(
                    "the client metadata document is larger than {} bytes",
                    self.options.max_bytes
                ));
            }
            body.extend_from_slice(&chunk);
        }
        let mut meta: Map<String, Value> = match serde_json::from_slice(&body) {
            Ok(Value::Object(meta)) => meta,
            _ => return Err("the client metadata document is not a JSON object".into()),
        };
        if meta.get("client_id").and_then(Value::as_str) != Some(client_id) {
            return Err("the client_id inside the metadata document is not its URL".into());
        }
        match meta
            .get("token_endpoint_auth_method")
            .and_then(Value::as_str)
        {
            None | Some("none") => {
                meta.insert("token_endpoint_auth_method".into(), "none".into());
            }
            Some(other) => {
                return Err(format!(
                    "token_endpoint_auth_method {other:?} is not supported for metadata-document clients (use none)"
                ));
            }
        }
        meta.entry("grant_types")
            .or_insert_with(|| serde_json::json!(["authorization_code", "refresh_token"]));
        let mut client = client_from_metadata(meta).map_err(|(_, description)| description)?;
        client.client_id = client_id.to_owned();
        client.from_metadata_document = true;
        let ttl = cache_ttl(
            &headers,
            Duration::from_secs(300),
            Duration::ZERO,
            Duration::from_secs(86_400),
        );
        Ok((client, ttl))
    }
}
