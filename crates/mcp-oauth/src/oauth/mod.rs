//! [`OAuth`]: everything a protected MCP endpoint needs, in one value. The value and what it
//! answers (resource, metadata, layer, start-up check) are here; [`OAuthBuilder`], the one
//! way to configure it (and to fold a provider preset in), is in `builder.rs`.

mod builder;

pub use builder::OAuthBuilder;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;

use crate::authenticator::Authenticator;
use crate::error::ConfigError;
use crate::forwarded::TrustedProxies;
use crate::layer::{BearerAuthLayer, Guard};
#[cfg(feature = "remote")]
use crate::metadata::MetadataMirror;
use crate::metadata::ProtectedResourceMetadata;
use crate::policy::ScopePolicy;
use crate::resource::ResourceUrl;

#[derive(Clone)]
struct Inner {
    /// What the bearer layer needs per request (resource rule, pipeline, policy).
    guard: Arc<Guard>,
    authorization_servers: Vec<String>,
    scopes_supported: Vec<String>,
    resource_name: Option<String>,
    resource_documentation: Option<String>,
    /// `verify_jwt(false)`: `Some(forced)`.
    unverified: Option<bool>,
    /// One mirror per advertised authorization server, in the same order.
    #[cfg(feature = "remote")]
    mirrors: Vec<Arc<MetadataMirror>>,
}

/// An OAuth 2.1 resource-server configuration for one MCP endpoint: its public URL, the
/// authorization servers, the token pipeline and the scope policy. Cheap to clone.
///
/// Use it with [`McpServer::oauth`](crate::server::McpServer::oauth), or directly: the bearer
/// layer is [`OAuth::layer`] and the discovery routes are `OAuth::metadata_router`.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use mcp_oauth::OAuth;
///
/// // An OIDC issuer: keys are found through its discovery document.
/// let oauth = OAuth::oidc("https://auth.example.com", "https://mcp.example.com/mcp")?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct OAuth {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth")
            .field("resource", self.inner.guard.resource())
            .field("authorization_servers", &self.inner.authorization_servers)
            .field("scopes_supported", &self.inner.scopes_supported)
            .field("policy", self.inner.guard.policy())
            .finish_non_exhaustive()
    }
}

impl OAuth {
    /// A builder.
    pub fn builder() -> OAuthBuilder {
        OAuthBuilder::default()
    }

    /// The usual case: JWT access tokens from an OIDC/OAuth issuer, keys found through the
    /// issuer's discovery document, audience bound to `resource`, the issuer's metadata
    /// mirrored on this server. Shorthand for
    /// `OAuth::builder().resource(resource).provider(Oidc::new(issuer)).build()`
    /// ([`Oidc`](crate::providers::Oidc)).
    ///
    /// # Errors
    ///
    /// `issuer` or `resource` is not an acceptable URL.
    #[cfg(feature = "remote")]
    pub fn oidc(
        issuer: impl Into<String>,
        resource: impl Into<String>,
    ) -> Result<Self, ConfigError> {
        Self::builder()
            .resource(resource)
            .provider(crate::providers::Oidc::new(issuer))
            .build()
    }

    /// The configured resource URL.
    pub fn resource(&self) -> &ResourceUrl {
        self.inner.guard.resource()
    }

    /// The resource URL for a request whose TCP peer is `peer` (see
    /// [`forwarded::peer_addr`](crate::forwarded::peer_addr)): the configured one, or, in
    /// trusted-proxy mode and when `peer` is a trusted proxy, the configured path at the
    /// origin that proxy names (the rightmost `X-Forwarded-Host` / `X-Forwarded-Proto`
    /// values, or the `Forwarded` element of the rightmost untrusted hop; see
    /// [`forwarded`](crate::forwarded)). `Host` is never used: without a forwarded host, or
    /// from any other peer, the configured resource stands.
    pub fn resource_for(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Cow<'_, ResourceUrl> {
        self.inner.guard.resource_for(headers, peer)
    }

    /// Refuses to serve on a non-loopback address with unverified signatures
    /// (`verify_jwt(false)`) unless that was forced. [`McpServer`](crate::server::McpServer)
    /// calls this before listening; call it yourself when you serve the layer another way.
    ///
    /// # Errors
    ///
    /// Signatures are not verified and `addr` is not loopback.
    pub fn check_listen_address(&self, addr: std::net::SocketAddr) -> Result<(), ConfigError> {
        match self.inner.unverified {
            Some(false) if !addr.ip().is_loopback() => Err(ConfigError::invalid(
                "verify_jwt",
                format!(
                    "verify_jwt(false) accepts forged tokens, so it is only allowed on loopback, and {addr} is not; verify tokens, or call insecure_force_unverified() on the provider"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Whether trusted-proxy mode is on (some proxy is trusted).
    pub fn trusts_forwarded_headers(&self) -> bool {
        !self.inner.guard.trusted_proxies().is_empty()
    }

    /// The trusted proxies (empty: trusted-proxy mode is off).
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        self.inner.guard.trusted_proxies()
    }

    /// The authorization servers advertised, in order of preference (with
    /// [`OAuthBuilder::issuer`]: the trusted issuers, in the order configured).
    pub fn authorization_servers(&self) -> &[String] {
        &self.inner.authorization_servers
    }

    /// The scopes advertised in the metadata.
    pub fn scopes_supported(&self) -> &[String] {
        &self.inner.scopes_supported
    }

    /// The scope policy.
    pub fn policy(&self) -> &ScopePolicy {
        self.inner.guard.policy()
    }

    /// The token pipeline.
    pub fn authenticator(&self) -> &Authenticator {
        self.inner.guard.authenticator()
    }

    /// The scopes named in a 401 challenge: the baseline of the policy, else the scopes
    /// supported.
    pub fn challenge_scopes(&self) -> &[String] {
        self.inner.guard.challenge_scopes()
    }

    /// Largest body read for the scope policy.
    pub fn max_body_bytes(&self) -> usize {
        self.inner.guard.max_body_bytes()
    }

    /// The protected-resource metadata document for `resource`.
    pub fn metadata_for(&self, resource: &ResourceUrl) -> ProtectedResourceMetadata {
        let mut doc = ProtectedResourceMetadata::new(resource.as_str())
            .authorization_servers(self.inner.authorization_servers.iter().cloned())
            .scopes_supported(self.inner.scopes_supported.iter().cloned());
        doc.resource_name = self.inner.resource_name.clone();
        doc.resource_documentation = self.inner.resource_documentation.clone();
        if let Some(dpop) = self.inner.guard.dpop() {
            doc = doc.dpop(dpop.verifier().algorithms(), dpop.required());
        }
        doc
    }

    /// The DPoP proof verifier, when the resource accepts DPoP-bound tokens
    /// ([`OAuthBuilder::dpop`]).
    pub fn dpop_verifier(&self) -> Option<&crate::dpop::DpopVerifier> {
        self.inner.guard.dpop().map(|dpop| dpop.verifier())
    }

    /// Whether the resource accepts DPoP-bound tokens only ([`OAuthBuilder::require_dpop`]).
    pub fn requires_dpop(&self) -> bool {
        self.inner.guard.dpop().is_some_and(|dpop| dpop.required())
    }

    /// The mirror of the first authorization server's metadata, if enabled.
    #[cfg(feature = "remote")]
    pub fn metadata_mirror(&self) -> Option<&Arc<MetadataMirror>> {
        self.inner.mirrors.first()
    }

    /// The mirrors of every advertised authorization server's metadata, in the order of
    /// [`OAuth::authorization_servers`] (empty when mirroring is off).
    #[cfg(feature = "remote")]
    pub fn metadata_mirrors(&self) -> &[Arc<MetadataMirror>] {
        &self.inner.mirrors
    }

    /// A copy for another endpoint of the same server: the same authorization servers, token
    /// pipeline and scope policy, but `resource` as the URL tokens must be issued for (their
    /// audience), the one the 401 challenge and the protected-resource metadata name. A
    /// gateway serving one upstream per path gives each path its own audience this way.
    #[must_use]
    pub fn with_resource(&self, resource: ResourceUrl) -> Self {
        let mut inner = (*self.inner).clone();
        inner.guard = Arc::new(inner.guard.with_resource(resource));
        Self {
            inner: Arc::new(inner),
        }
    }

    /// A copy with a different scope policy (the [`McpServer`](crate::server::McpServer) adds its
    /// tools' scopes this way).
    #[must_use]
    pub fn with_policy(&self, policy: ScopePolicy) -> Self {
        let mut inner = (*self.inner).clone();
        inner.guard = Arc::new(inner.guard.with_policy(policy, &inner.scopes_supported));
        Self {
            inner: Arc::new(inner),
        }
    }

    /// A copy that decides calls with this access policy (`None`: none) and writes its
    /// decisions to `audit`; see [`OAuthBuilder::access_policy`].
    #[cfg(feature = "policy")]
    #[must_use]
    pub fn with_access_policy(
        &self,
        policy: Option<crate::policy::Policy>,
        audit: Option<crate::audit::AuditLog>,
    ) -> Self {
        let mut inner = (*self.inner).clone();
        let enforcer = policy.map(|p| crate::policy::Enforcer::new(p, audit));
        inner.guard = Arc::new(inner.guard.with_enforcer(enforcer));
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The access policy deciding calls, if any.
    #[cfg(feature = "policy")]
    pub fn access_policy(&self) -> Option<&crate::policy::Policy> {
        self.inner
            .guard
            .enforcer()
            .map(crate::policy::Enforcer::policy)
    }

    /// A copy whose bearer layer counts its results (`mcp_oauth_auth_results_total`) and
    /// whose access policy counts its decisions (`mcp_oauth_policy_decisions_total`) in
    /// `metrics`; see [`metrics`](crate::metrics).
    #[must_use]
    pub fn with_metrics(&self, metrics: crate::metrics::Metrics) -> Self {
        let mut inner = (*self.inner).clone();
        inner.guard = Arc::new(inner.guard.with_metrics(Some(metrics)));
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The registry given to [`OAuth::with_metrics`], if any.
    pub fn metrics(&self) -> Option<&crate::metrics::Metrics> {
        self.inner.guard.metrics()
    }

    /// The bearer layer for this configuration.
    pub fn layer(&self) -> BearerAuthLayer {
        BearerAuthLayer::new(self.inner.guard.clone())
    }

    /// Checks every advertised authorization server as an MCP client would: fetches its
    /// metadata in the discovery order and compares its `issuer` with the advertised string
    /// byte for byte (Python and TypeScript v2 clients refuse a mismatch). Logs an error
    /// naming both strings when they differ, and a warning when PKCE S256 is not advertised.
    /// Every server is checked, even after one fails.
    ///
    /// # Errors
    ///
    /// An issuer differs, or a server's metadata cannot be fetched; the error names each.
    #[cfg(feature = "remote")]
    pub async fn check_authorization_server(&self) -> Result<(), crate::error::ConfigError> {
        let mut failures = Vec::new();
        for (advertised, mirror) in self
            .inner
            .authorization_servers
            .iter()
            .zip(&self.inner.mirrors)
        {
            if let Err(failure) = check_one(advertised, mirror).await {
                failures.push(failure);
            }
        }
        if failures.is_empty() {
            return Ok(());
        }
        Err(ConfigError::invalid(
            "authorization server",
            failures.join("; "),
        ))
    }
}

/// The start-up check of one advertised authorization server; the error's text.
#[cfg(feature = "remote")]
async fn check_one(advertised: &str, mirror: &MetadataMirror) -> Result<(), String> {
    let doc = mirror.refresh_now().await.map_err(|err| {
        tracing::error!(target: "mcp_oauth::startup", issuer = %advertised, error = %err, "cannot fetch the authorization server metadata");
        err.to_string()
    })?;
    if doc.metadata.issuer != advertised {
        tracing::error!(
            target: "mcp_oauth::startup",
            advertised = %advertised,
            fetched = %doc.metadata.issuer,
            url = %doc.url,
            "an entry of authorization_servers in the protected-resource metadata is not byte-equal to the issuer in that authorization server's metadata; MCP clients will refuse to use it"
        );
        return Err(format!(
            "advertised {advertised:?} but the metadata at {} says issuer {:?}",
            doc.url, doc.metadata.issuer
        ));
    }
    if !doc.metadata.supports_pkce_s256() {
        tracing::warn!(target: "mcp_oauth::startup", issuer = %advertised, "the authorization server does not advertise PKCE S256 (code_challenge_methods_supported); MCP clients must refuse it");
    }
    Ok(())
}
