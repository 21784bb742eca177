//! [`OAuthBuilder`]: the one way to configure the resource server, its token pipeline
//! included, and to fold a provider preset in.
//!
//! Why one file of this size: it is the only builder of the resource server, so every
//! setting is a documented method here.

use std::sync::Arc;
use std::time::Duration;

use super::{Inner, OAuth};
use crate::auth::{AsyncClaimMapper, ClaimMapper, Mapping};
#[cfg(feature = "remote")]
use crate::authenticator::issuers::merge_audience;
use crate::authenticator::issuers::{BuildContext, check_issuer_url};
use crate::authenticator::{Audience, Authenticator, Issuer, TokenCacheOptions, Trusted};
use crate::dpop::DpopVerifier;
use crate::error::ConfigError;
#[cfg(feature = "remote")]
use crate::fetch::HttpClient;
use crate::forwarded::TrustedProxies;
use crate::layer::{DEFAULT_MAX_BODY_BYTES, Guard, ResourceDpop};
#[cfg(feature = "remote")]
use crate::metadata::MetadataMirror;
use crate::policy::ScopePolicy;
use crate::resource::ResourceUrl;
use crate::scope::{ScopeHierarchy, is_valid_scope};
use crate::verify::TokenVerifier;

/// Builds an [`OAuth`] configuration.
#[must_use]
pub struct OAuthBuilder {
    resource: Option<String>,
    insecure_http: bool,
    trusted_proxies: TrustedProxies,
    authorization_servers: Vec<String>,
    scopes_supported: Vec<String>,
    policy: ScopePolicy,
    hierarchy: ScopeHierarchy,
    verifier: Option<Arc<dyn TokenVerifier>>,
    mapper: Option<Mapping>,
    audience: Audience,
    /// Several trusted issuers, chosen by `iss` (in place of `verifier` / `provider`).
    issuers: Vec<Issuer>,
    leeway: Duration,
    max_token_bytes: usize,
    cache: Option<TokenCacheOptions>,
    resource_name: Option<String>,
    resource_documentation: Option<String>,
    max_body_bytes: usize,
    mirror: bool,
    dpop: Option<DpopVerifier>,
    dpop_required: bool,
    #[cfg(feature = "remote")]
    client: Option<HttpClient>,
    #[cfg(feature = "remote")]
    provider: Option<Result<crate::providers::ProviderSpec, ConfigError>>,
    /// The presets' configured metadata, by issuer, served when that issuer publishes none.
    #[cfg(feature = "remote")]
    mirror_fallback: Vec<(String, crate::metadata::AuthorizationServerMetadata)>,
    /// The preset's `userinfo` endpoint, for profile claims the tokens lack.
    #[cfg(feature = "remote")]
    userinfo: Option<Arc<crate::providers::userinfo::UserinfoClaims>>,
    /// The access policy deciding calls, and the audit log of its decisions.
    #[cfg(feature = "policy")]
    access_policy: Option<crate::policy::Policy>,
    #[cfg(feature = "policy")]
    audit: Option<crate::audit::AuditLog>,
}

impl Default for OAuthBuilder {
    fn default() -> Self {
        Self {
            resource: None,
            insecure_http: false,
            trusted_proxies: TrustedProxies::default(),
            authorization_servers: Vec::new(),
            scopes_supported: Vec::new(),
            policy: ScopePolicy::new(),
            hierarchy: ScopeHierarchy::new(),
            verifier: None,
            mapper: None,
            audience: Audience::default(),
            issuers: Vec::new(),
            leeway: crate::claims::DEFAULT_LEEWAY,
            max_token_bytes: crate::authenticator::DEFAULT_MAX_TOKEN_BYTES,
            cache: Some(TokenCacheOptions::default()),
            resource_name: None,
            resource_documentation: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            mirror: true,
            dpop: None,
            dpop_required: false,
            #[cfg(feature = "remote")]
            client: None,
            #[cfg(feature = "remote")]
            provider: None,
            #[cfg(feature = "remote")]
            mirror_fallback: Vec::new(),
            #[cfg(feature = "remote")]
            userinfo: None,
            #[cfg(feature = "policy")]
            access_policy: None,
            #[cfg(feature = "policy")]
            audit: None,
        }
    }
}

impl OAuthBuilder {
    /// The public URL of the MCP endpoint (`https://mcp.example.com/mcp`). Required.
    ///
    /// # Deployment
    ///
    /// Behind a reverse proxy this is the URL clients use, not the address the server
    /// listens on. It is never taken from the `Host` header; with
    /// [`Self::trusted_proxies`], its origin may come from a trusted proxy's forwarded
    /// headers.
    pub fn resource(mut self, url: impl Into<String>) -> Self {
        self.resource = Some(url.into());
        self
    }

    /// Accept a plain `http` resource URL on a non-loopback host (a private network).
    pub fn insecure_http_resource(mut self) -> Self {
        self.insecure_http = true;
        self
    }

    /// Trusted-proxy mode for a proxy on the same host: the same as
    /// [`Self::trusted_proxies`] with [`TrustedProxies::loopback`] (`127.0.0.0/8`, `::1`).
    ///
    /// Earlier versions believed `X-Forwarded-Host` from any peer, took its first (possibly
    /// client-supplied) value and fell back to `Host`; this now believes loopback peers only,
    /// takes the value the proxy wrote and never uses `Host`. A proxy on another host needs
    /// [`Self::trusted_proxies`].
    pub fn trust_forwarded_headers(self) -> Self {
        self.trusted_proxies(TrustedProxies::loopback())
    }

    /// Trusted-proxy mode: for a request whose TCP peer is one of `proxies`, the public
    /// origin is the one the proxy names in its forwarded headers (the configured path is
    /// kept). The metadata, the challenges and the audience check then follow the request.
    /// Requests from any other peer, or without a forwarded host, use the configured
    /// resource; `Host` is never used. Default: off.
    ///
    /// The peer address comes from axum's `ConnectInfo<SocketAddr>`: serve with
    /// `into_make_service_with_connect_info::<SocketAddr>()` (as
    /// [`McpServer`](crate::server::McpServer) does); without it no proxy is trusted.
    ///
    /// # Deployment
    ///
    /// The proxy that connects to this server must set (or append to) `X-Forwarded-Host` and
    /// `X-Forwarded-Proto` (or `Forwarded` with `host=`/`proto=`, see
    /// [`TrustedProxies::header`]). One that passes a client's header through unchanged
    /// lets the client choose which audience its token is checked against. See
    /// [`forwarded`](crate::forwarded) for the exact rules.
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// An authorization server (issuer URL) to advertise, in order of preference. The first
    /// one's metadata is mirrored at this server's root `/.well-known/` paths (see
    /// [`routes`](crate::routes)). It must be byte-equal to the `issuer` in that server's
    /// metadata; see [`OAuth::check_authorization_server`]. With [`Self::issuer`] the
    /// advertised servers are the trusted issuers, and this is refused.
    pub fn authorization_server(mut self, issuer: impl Into<String>) -> Self {
        self.authorization_servers.push(issuer.into());
        self
    }

    /// The scopes advertised in the metadata (`offline_access` is dropped, as MCP
    /// 2026-07-28 asks). Default: none.
    pub fn scopes_supported<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        scopes: I,
    ) -> Self {
        self.scopes_supported = crate::scope::advertised(scopes);
        self
    }

    /// Scopes every request needs.
    pub fn require_scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.policy = self.policy.require(scopes);
        self
    }

    /// Scopes a JSON-RPC method needs; refused with HTTP 403 before the MCP service runs.
    pub fn method_scopes<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        method: impl Into<String>,
        scopes: I,
    ) -> Self {
        self.policy = self.policy.method(method, scopes);
        self
    }

    /// Scopes a tool needs; a `tools/call` without them is refused with HTTP 403 and a
    /// challenge naming every scope the call needs (step-up).
    pub fn tool_scopes<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        tool: impl Into<String>,
        scopes: I,
    ) -> Self {
        self.policy = self.policy.tool(tool, scopes);
        self
    }

    /// Replaces the scope policy.
    pub fn scope_policy(mut self, policy: ScopePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Decides every `tools/call`, `prompts/get` and `resources/read` with this access
    /// policy, the verified caller as subject: a refused call gets a JSON-RPC error, a call
    /// whose rule needs step-up scopes the token lacks gets HTTP 403 `insufficient_scope`.
    /// Build the policy with the server's tools ([`Catalog`](crate::policy::Catalog)), so
    /// that its rules are checked against them. Default is no access policy.
    ///
    /// The layer cannot see the lists the service answers: filter `tools/list` in your
    /// handler with [`Policy::visible`](crate::policy::Policy::visible) and
    /// [`Subject::from_auth`](crate::policy::Subject::from_auth) (an
    /// [`McpServer`](crate::server::McpServer) does it itself). See `docs/policy.md`.
    #[cfg(feature = "policy")]
    pub fn access_policy(mut self, policy: crate::policy::Policy) -> Self {
        self.access_policy = Some(policy);
        self
    }

    /// Writes one line per access-policy decision to this audit log. Default is none; it
    /// records nothing without an [`access_policy`](Self::access_policy).
    #[cfg(feature = "policy")]
    pub fn audit(mut self, audit: crate::audit::AuditLog) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Which scopes imply which (used by the policy and the `Auth` helpers).
    pub fn scope_hierarchy(mut self, hierarchy: ScopeHierarchy) -> Self {
        self.hierarchy = hierarchy;
        self
    }

    /// A trusted issuer, with its own verifier (keys), audiences and claim mapping; call it
    /// once per issuer. A token is verified by the issuer its `iss` names and by no other;
    /// a token whose `iss` is not one of them is refused (401 `invalid_token`) before any
    /// key is fetched. See [`issuers`](crate::authenticator::issuers).
    ///
    /// The issuers are advertised in `authorization_servers` of the protected-resource
    /// metadata in the order of these calls: put first the one MCP clients should use (they
    /// commonly take the first), whose metadata is also mirrored at this server's root
    /// `/.well-known/` paths. The start-up check
    /// ([`OAuth::check_authorization_server`]) checks every one.
    ///
    /// With one or more issuers, the one-issuer settings ([`Self::verifier`],
    /// [`Self::provider`], [`Self::audience`], [`Self::audience_prefix`],
    /// [`Self::insecure_disable_audience_check`], [`Self::claim_mapper`],
    /// [`Self::async_claim_mapper`], [`Self::authorization_server`]) are refused at build:
    /// each issuer carries its own. Leeway, token size, cache and scope settings are shared.
    /// Default: no issuer list (the one verifier of [`Self::verifier`] or the preset).
    pub fn issuer(mut self, issuer: Issuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// The token verifier. Required, unless [`Self::issuer`] or [`Self::provider`] gives it.
    pub fn verifier(mut self, verifier: impl TokenVerifier) -> Self {
        self.verifier = Some(Arc::new(verifier));
        self
    }

    /// The claim mapping (default: [`DefaultClaimMapper`](crate::auth::DefaultClaimMapper)).
    pub fn claim_mapper(mut self, mapper: impl ClaimMapper) -> Self {
        self.mapper = Some(Mapping::Now(Arc::new(mapper)));
        self
    }

    /// A claim mapping that may wait (a database, the provider's user API), in place of
    /// [`OAuthBuilder::claim_mapper`] and the preset's mapping. It runs once per token, after
    /// every check, and its user is cached with the token; see
    /// [`AsyncClaimMapper`](crate::auth::AsyncClaimMapper).
    pub fn async_claim_mapper(mut self, mapper: impl AsyncClaimMapper) -> Self {
        self.mapper = Some(Mapping::Later(Arc::new(mapper)));
        self
    }

    /// Another accepted audience, compared exactly (an Auth0 API identifier, a Keycloak
    /// client id, an Entra application id URI).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience.add_extra(audience.into());
        self
    }

    /// Also accept an `aud` that is a path-boundary prefix of the resource
    /// (`https://h/api` for `https://h/api/mcp`).
    pub fn audience_prefix(mut self) -> Self {
        self.audience.allow_prefix();
        self
    }

    /// Turns the audience check off. Tokens any service of the issuer received are then
    /// accepted here (the confused-deputy problem the MCP specification forbids); only for
    /// providers that cannot issue audience-bound tokens.
    pub fn insecure_disable_audience_check(mut self) -> Self {
        self.audience = Audience::Disabled;
        self
    }

    /// Clock-skew allowance for `exp`, `nbf`, `iat`. Default is 60 seconds.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Largest token accepted. Default is 8 KiB.
    pub fn max_token_bytes(mut self, limit: usize) -> Self {
        self.max_token_bytes = limit;
        self
    }

    /// The verified-token cache; `None` turns it off. Default: 10,000 entries, 5 minutes,
    /// never beyond `exp`.
    pub fn token_cache(mut self, options: Option<TokenCacheOptions>) -> Self {
        self.cache = options;
        self
    }

    /// `resource_name` in the metadata.
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }

    /// `resource_documentation` in the metadata.
    pub fn resource_documentation(mut self, url: impl Into<String>) -> Self {
        self.resource_documentation = Some(url.into());
        self
    }

    /// Accepts DPoP-bound tokens (RFC 9449): the `Authorization: DPoP <token>` scheme, with
    /// each request's proof checked by `verifier` against the token's `cnf.jkt`, this method
    /// and the public URL (the resource's origin and the request path, never `Host`). Bearer
    /// tokens stay accepted unless [`Self::require_dpop`]. The challenges then carry a `DPoP
    /// algs="…"` challenge after the `Bearer` one, and the metadata lists
    /// `dpop_signing_alg_values_supported`. See [`dpop`](crate::dpop) and
    /// `docs/extensions.md`.
    ///
    /// Default: off. A token bound to a key (`cnf.jkt`) presented as `Bearer` is refused
    /// either way, so turning DPoP off never turns a bound token into a bearer token.
    ///
    /// # Deployment
    ///
    /// The verifier's replay cache must be shared by every instance behind one load
    /// balancer (`StoreReplayCache`), or a proof accepted by one instance can be replayed to
    /// another within its minute.
    pub fn dpop(mut self, verifier: DpopVerifier) -> Self {
        self.dpop = Some(verifier);
        self
    }

    /// Accepts DPoP-bound tokens only: a `Bearer` token is refused (401 `invalid_token`), and
    /// the metadata says `dpop_bound_access_tokens_required: true`. Turns DPoP on with the
    /// default [`DpopVerifier`] when [`Self::dpop`] was not called. Default: off.
    pub fn require_dpop(mut self) -> Self {
        self.dpop_required = true;
        self
    }

    /// Largest JSON-RPC body read for the scope policy. Default is 4 MiB.
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = limit;
        self
    }

    /// Whether to mirror the authorization servers' metadata on this server: the first one's
    /// at `/.well-known/oauth-authorization-server` and `/.well-known/openid-configuration`,
    /// each one's at the path-inserted variants for its issuer path (see
    /// [`routes`](crate::routes)). The start-up check
    /// ([`OAuth::check_authorization_server`]) uses the mirrors, so it checks nothing when this
    /// is off. Default: on.
    pub fn mirror_authorization_server(mut self, mirror: bool) -> Self {
        self.mirror = mirror;
        self
    }

    /// The HTTP client for metadata fetches.
    #[cfg(feature = "remote")]
    pub fn http_client(mut self, client: HttpClient) -> Self {
        self.client = Some(client);
        self
    }

    /// A provider preset: its issuer (advertised unless authorization servers are set), its
    /// verifier (unless one is set), audience rule, claim mapping and scopes (unless set).
    /// Unset preset values are read from the process environment now.
    #[cfg(feature = "remote")]
    pub fn provider(self, provider: impl crate::providers::Provider) -> Self {
        self.provider_with(provider, &crate::providers::process_env)
    }

    /// As [`Self::provider`], with the preset's variables read from `vars`.
    #[cfg(feature = "remote")]
    pub fn provider_with(
        mut self,
        provider: impl crate::providers::Provider,
        vars: crate::providers::Vars<'_>,
    ) -> Self {
        self.provider = Some(provider.spec_with(vars));
        self
    }

    /// Folds a preset into the builder; returns the `verify_jwt(false)` state (forced or not)
    /// and the preset's claim checks.
    #[cfg(feature = "remote")]
    fn apply_provider(
        &mut self,
    ) -> Result<(Option<bool>, Vec<crate::claims::ClaimIfPresent>), ConfigError> {
        let Some(spec) = self.provider.take() else {
            return Ok((None, Vec::new()));
        };
        let spec = spec?;
        if self.authorization_servers.is_empty() {
            self.authorization_servers.push(spec.issuer.clone());
        }
        if let Some(fallback) = spec.configured_metadata() {
            self.mirror_fallback.push((spec.issuer.clone(), fallback));
        }
        if self.scopes_supported.is_empty() {
            self.scopes_supported = crate::scope::advertised(spec.scopes_supported.iter().cloned());
        }
        if self.mapper.is_none() {
            self.mapper = Some(Mapping::Now(spec.mapper.clone()));
        }
        self.audience = merge_audience(self.audience.clone(), &spec.audience);
        let mut unverified = None;
        if self.verifier.is_none() {
            let built = crate::providers::pipeline::spec_pipeline(&spec, self.client.as_ref())?;
            unverified = built.unverified;
            self.userinfo = built.userinfo;
            self.verifier = Some(built.verifier);
        }
        if unverified.is_some() {
            tracing::warn!(
                target: "mcp_oauth::startup",
                provider = spec.name,
                "verify_jwt(false): token signatures are NOT checked; anyone can forge a token. Development only."
            );
        }
        Ok((unverified, spec.claim_checks))
    }

    /// Builds the token pipeline alone (the verifier, the preset, audience, leeway, token
    /// size, cache, claim mapping, scope hierarchy), for transports other than HTTP or to
    /// check tokens by hand. Without a resource the audience rule still applies: set
    /// [`Self::audience`] values, or turn it off.
    ///
    /// # Errors
    ///
    /// No verifier; an invalid preset.
    pub fn build_authenticator(mut self) -> Result<Authenticator, ConfigError> {
        self.pipeline().map(|(authenticator, _)| authenticator)
    }

    /// Folds the preset in and builds the pipeline; also returns the `verify_jwt(false)`
    /// state.
    fn pipeline(&mut self) -> Result<(Authenticator, Option<bool>), ConfigError> {
        if !self.issuers.is_empty() {
            return self.issuers_pipeline().map(|a| (a, None));
        }
        #[cfg(feature = "remote")]
        let (unverified, claim_checks) = self.apply_provider()?;
        #[cfg(not(feature = "remote"))]
        let (unverified, claim_checks): (Option<bool>, Vec<crate::claims::ClaimIfPresent>) =
            (None, Vec::new());
        let verifier = self.verifier.clone().ok_or_else(|| {
            ConfigError::missing(
                "verifier",
                "call OAuthBuilder::verifier (for example a JwtVerifier), or use OAuth::oidc",
            )
        })?;
        let mut rules = Trusted::single(verifier);
        rules.audience = self.audience.clone();
        rules.claim_checks = claim_checks;
        if let Some(mapper) = &self.mapper {
            rules.mapper = mapper.clone();
        }
        #[cfg(feature = "remote")]
        {
            rules.userinfo = self.userinfo.clone();
        }
        let authenticator = self.shared(Authenticator::with_trusted(vec![rules], false));
        Ok((authenticator, unverified))
    }

    /// The settings every issuer shares.
    fn shared(&self, authenticator: Authenticator) -> Authenticator {
        authenticator
            .hierarchy(Arc::new(self.hierarchy.clone()))
            .leeway(self.leeway)
            .max_token_bytes(self.max_token_bytes)
            .cache(self.cache)
    }

    /// The pipeline of several trusted issuers, chosen by `iss`; they become the advertised
    /// authorization servers, in order.
    fn issuers_pipeline(&mut self) -> Result<Authenticator, ConfigError> {
        let default_audience = matches!(&self.audience, Audience::Resource { extra, prefix } if extra.is_empty() && !prefix);
        #[cfg(feature = "remote")]
        let provider = self.provider.is_some();
        #[cfg(not(feature = "remote"))]
        let provider = false;
        let conflict = [
            (self.verifier.is_some(), "verifier"),
            (provider, "provider"),
            (self.mapper.is_some(), "claim_mapper"),
            (!default_audience, "audience"),
            (
                !self.authorization_servers.is_empty(),
                "authorization_server",
            ),
        ]
        .into_iter()
        .find_map(|(set, name)| set.then_some(name));
        if let Some(name) = conflict {
            return Err(ConfigError::invalid(
                "issuer",
                format!(
                    "OAuthBuilder::{name} configures the one-issuer case and cannot be combined with OAuthBuilder::issuer; set it on each Issuer instead (Issuer::{})",
                    match name {
                        "verifier" => "new",
                        "provider" => "provider",
                        "authorization_server" =>
                            "jwks / discover: the issuers are the advertised servers",
                        other => other,
                    }
                ),
            ));
        }
        let ctx = BuildContext {
            #[cfg(feature = "remote")]
            client: self.client.clone(),
        };
        let mut trusted = Vec::with_capacity(self.issuers.len());
        for issuer in std::mem::take(&mut self.issuers) {
            let built = issuer.build(&ctx)?;
            let url = built.trusted.issuer.clone().unwrap_or_default();
            if self.authorization_servers.contains(&url) {
                return Err(ConfigError::invalid(
                    "issuer",
                    format!("{url:?} is configured twice; give each trusted issuer once"),
                ));
            }
            #[cfg(feature = "remote")]
            if let Some(fallback) = built.fallback {
                self.mirror_fallback.push((url.clone(), fallback));
            }
            self.authorization_servers.push(url);
            trusted.push(built.trusted);
        }
        Ok(self.shared(Authenticator::with_trusted(trusted, true)))
    }

    /// Builds the configuration.
    ///
    /// # Errors
    ///
    /// No resource or verifier; an invalid resource, issuer or scope.
    pub fn build(mut self) -> Result<OAuth, ConfigError> {
        let (authenticator, unverified) = self.pipeline()?;
        let resource = self.resource.ok_or_else(|| {
            ConfigError::missing("resource", "call OAuthBuilder::resource with the public URL of the MCP endpoint, e.g. https://mcp.example.com/mcp")
        })?;
        let resource = if self.insecure_http {
            ResourceUrl::parse_insecure(&resource)?
        } else {
            ResourceUrl::parse(&resource)?
        };
        for issuer in &self.authorization_servers {
            check_issuer_url(issuer)?;
        }
        let all_scopes = self.scopes_supported.iter().chain(self.policy.baseline());
        if let Some(bad) = all_scopes.into_iter().find(|s| !is_valid_scope(s)) {
            return Err(ConfigError::invalid(
                "scope",
                format!("{bad:?} is not a valid scope token (RFC 6749 §3.3)"),
            ));
        }
        #[cfg(feature = "remote")]
        let mut mirrors = Vec::new();
        #[cfg(feature = "remote")]
        if self.mirror && !self.authorization_servers.is_empty() {
            let client = match self.client {
                Some(client) => client,
                None => HttpClient::new()?,
            };
            for issuer in &self.authorization_servers {
                let url = url::Url::parse(issuer)
                    .map_err(|e| ConfigError::url("authorization server", issuer, e.to_string()))?;
                client.check_config_url("authorization server", &url)?;
                let mirror = MetadataMirror::new(url, client.clone());
                let fallback = self.mirror_fallback.iter().find(|(i, _)| i == issuer);
                mirrors.push(Arc::new(match fallback {
                    Some((_, fallback)) => mirror.with_fallback(fallback.clone()),
                    None => mirror,
                }));
            }
        }
        #[cfg(not(feature = "remote"))]
        let _ = self.mirror;
        let guard = Guard::new(
            resource,
            self.trusted_proxies,
            Arc::new(authenticator),
            self.policy,
            &self.scopes_supported,
            self.max_body_bytes,
        );
        let dpop = match (self.dpop, self.dpop_required) {
            (Some(verifier), required) => Some(ResourceDpop::new(verifier, required)),
            (None, true) => Some(ResourceDpop::new(DpopVerifier::builder().build()?, true)),
            (None, false) => None,
        };
        let guard = guard.with_dpop(dpop);
        #[cfg(feature = "policy")]
        let guard = match self.access_policy {
            Some(policy) => {
                guard.with_enforcer(Some(crate::policy::Enforcer::new(policy, self.audit)))
            }
            None => guard,
        };
        Ok(OAuth {
            inner: Arc::new(Inner {
                guard: Arc::new(guard),
                authorization_servers: self.authorization_servers,
                scopes_supported: self.scopes_supported,
                resource_name: self.resource_name,
                resource_documentation: self.resource_documentation,
                unverified,
                #[cfg(feature = "remote")]
                mirrors,
            }),
        })
    }
}
