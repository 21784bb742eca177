//! The server's state ([`AuthServer`]) and how it is built ([`AuthServerBuilder`]): issuer,
//! keys, store, sign-in, scopes, resources, lifetimes, policies and limits; the RFC 8414
//! metadata it publishes, and the verifier for its own access tokens.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use url::Url;

use super::cimd::{self, CimdOptions};
use super::client_spec::ClientSpec;
use super::keys::KeyRing;
use super::login::{self, DevUsers, LoginBackend};
use super::rate::{self, RateLimit};
use super::registration::Registration;
use super::seal;
use super::store::{self, MemoryStore, Store};
use super::upstream::{CALLBACK_PATH, Upstream};
use crate::claims::{Claims, check_issuer};
use crate::error::{ConfigError, VerifyError};
use crate::jose::Algorithm;
use crate::metadata::AuthorizationServerMetadata;
use crate::verify::{BoxFuture, JwtVerifier, TokenVerifier};

/// Lifetimes of what the server issues.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Lifetimes {
    /// Access tokens. Default is 1 hour.
    pub access_token: Duration,
    /// Refresh tokens (each rotation starts a new one). Default is 30 days.
    pub refresh_token: Duration,
    /// Authorization codes. Default is 60 seconds.
    pub code: Duration,
    /// A pending authorization request at the login page. Default is 10 minutes.
    pub request: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            access_token: Duration::from_secs(3600),
            refresh_token: Duration::from_secs(30 * 86_400),
            code: Duration::from_secs(60),
            request: Duration::from_secs(600),
        }
    }
}

pub(crate) struct Inner {
    pub(crate) issuer: String,
    pub(crate) issuer_url: Url,
    pub(crate) keys: Arc<KeyRing>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) login: Arc<dyn LoginBackend>,
    pub(crate) scopes_supported: Vec<String>,
    pub(crate) default_scopes: Vec<String>,
    pub(crate) resources: Vec<String>,
    pub(crate) lifetimes: Lifetimes,
    pub(crate) auto_approve: bool,
    pub(crate) registration: Registration,
    pub(crate) unused_registration_ttl: Duration,
    pub(crate) cimd: Option<cimd::Resolver>,
    pub(crate) secure_cookies: bool,
    pub(crate) token_limit: Option<RateLimit>,
    pub(crate) register_limit: Option<RateLimit>,
    pub(crate) authorize_limit: Option<RateLimit>,
    /// Which peers' forwarded headers name the client address (rate limits, logs).
    pub(crate) trusted_proxies: crate::forwarded::TrustedProxies,
    /// The per-client-id bucket at `/token` and `/revoke` (requests with a client secret).
    pub(crate) client_limiter: Option<rate::Limiter<String>>,
    pub(crate) upstream: Option<Arc<Upstream>>,
    pub(crate) sealer: Option<seal::Sealer>,
    pub(crate) consent_ttl: Duration,
    /// Recent answers to "is this grant revoked?" for the per-request check: revocations made
    /// here are entered at once; "not revoked" is reused for `revocation_recheck`.
    pub(crate) revoked: moka::sync::Cache<String, bool>,
    /// One lock per grant whose upstream tokens are being refreshed (single flight).
    pub(crate) upstream_refreshes: moka::sync::Cache<String, Arc<tokio::sync::Mutex<()>>>,
    /// Failed sign-ins at the login form, per account and per pending request (F5).
    pub(crate) login_throttle: login::Throttle,
}

/// The authorization server. Cheap to clone.
#[derive(Clone)]
pub struct AuthServer {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for AuthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthServer")
            .field("issuer", &self.inner.issuer)
            .finish_non_exhaustive()
    }
}

/// Builds an [`AuthServer`].
#[must_use]
pub struct AuthServerBuilder {
    issuer: String,
    keys: Option<Arc<KeyRing>>,
    store: Option<Arc<dyn Store>>,
    login: Option<Arc<dyn LoginBackend>>,
    scopes_supported: Vec<String>,
    default_scopes: Option<Vec<String>>,
    resources: Vec<String>,
    lifetimes: Lifetimes,
    auto_approve: bool,
    registration: Registration,
    unused_registration_ttl: Duration,
    cimd: Option<CimdOptions>,
    clients: Vec<ClientSpec>,
    token_limit: Option<RateLimit>,
    register_limit: Option<RateLimit>,
    authorize_limit: Option<RateLimit>,
    client_limit: Option<RateLimit>,
    trusted_proxies: crate::forwarded::TrustedProxies,
    upstream: Option<Upstream>,
    encryption_key: Option<crate::secret::Secret>,
    consent_ttl: Duration,
    revocation_recheck: Duration,
}

/// How long an answer of the revocation cache lives: a revocation as long as an access token
/// of the grant can still be presented (the access-token lifetime), "not revoked" for the
/// configured recheck interval.
struct RevokedExpiry {
    revoked: Duration,
    recheck: Duration,
}

impl moka::Expiry<String, bool> for RevokedExpiry {
    fn expire_after_create(
        &self,
        _family: &String,
        revoked: &bool,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(if *revoked { self.revoked } else { self.recheck })
    }

    fn expire_after_update(
        &self,
        family: &String,
        revoked: &bool,
        updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(family, revoked, updated_at)
    }
}

impl AuthServer {
    /// A builder for the server whose issuer identifier is `issuer`
    /// (`http://127.0.0.1:8080`). Endpoints live under the issuer's path.
    pub fn builder(issuer: impl Into<String>) -> AuthServerBuilder {
        AuthServerBuilder {
            issuer: issuer.into(),
            keys: None,
            store: None,
            login: None,
            scopes_supported: vec!["mcp:read".into(), "mcp:write".into()],
            default_scopes: None,
            resources: Vec::new(),
            lifetimes: Lifetimes::default(),
            auto_approve: false,
            registration: Registration::Open,
            unused_registration_ttl: Duration::from_secs(86_400),
            cimd: Some(CimdOptions::default()),
            clients: Vec::new(),
            token_limit: Some(RateLimit::new(120, 60)),
            register_limit: Some(RateLimit::new(1, 20)),
            authorize_limit: Some(RateLimit::new(120, 60)),
            client_limit: Some(RateLimit::new(120, 60)),
            trusted_proxies: crate::forwarded::TrustedProxies::default(),
            upstream: None,
            encryption_key: None,
            consent_ttl: Duration::from_secs(30 * 86_400),
            revocation_recheck: Duration::from_secs(1),
        }
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The signing keys.
    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.inner.keys
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The resources (MCP endpoint URLs) tokens may be issued for, as configured.
    pub fn resources(&self) -> &[String] {
        &self.inner.resources
    }

    /// The redirect URI to register at the upstream provider (proxy mode):
    /// `<issuer>/oauth/callback`.
    pub fn upstream_callback_url(&self) -> String {
        self.endpoint(CALLBACK_PATH)
    }

    /// Revokes a grant: in the store, and at once for this process's per-request checks
    /// (even when the store write fails, this process refuses the grant from now on).
    pub(crate) async fn revoke_family(
        &self,
        family: &str,
        until: i64,
    ) -> Result<(), store::StoreError> {
        self.inner.revoked.insert(family.to_owned(), true);
        self.inner.store.revoke_family(family, until).await
    }

    /// Whether a grant is revoked, for the check on every request: a revocation made here is
    /// known at once; the store is asked at most once per recheck interval otherwise.
    async fn is_family_revoked_cached(&self, family: &str) -> Result<bool, store::StoreError> {
        if let Some(revoked) = self.inner.revoked.get(family) {
            return Ok(revoked);
        }
        let revoked = self.inner.store.is_family_revoked(family).await?;
        // Never overwrite a revocation entered while the store was being asked.
        let entry = self
            .inner
            .revoked
            .entry(family.to_owned())
            .or_insert(revoked);
        Ok(*entry.value())
    }

    /// The scopes this server grants.
    pub fn scopes_supported(&self) -> &[String] {
        &self.inner.scopes_supported
    }

    pub(crate) fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.inner.issuer.trim_end_matches('/'))
    }

    /// The RFC 8414 metadata document.
    pub fn metadata(&self) -> AuthorizationServerMetadata {
        let mut m = AuthorizationServerMetadata::new(self.inner.issuer.clone());
        m.authorization_endpoint = Some(self.endpoint("/authorize"));
        m.token_endpoint = Some(self.endpoint("/token"));
        if !matches!(self.inner.registration, Registration::Off) {
            m.registration_endpoint = Some(self.endpoint("/register"));
        }
        m.revocation_endpoint = Some(self.endpoint("/revoke"));
        m.jwks_uri = Some(self.endpoint("/jwks"));
        let mut scopes = self.inner.scopes_supported.clone();
        scopes.push("offline_access".into());
        m.scopes_supported = Some(scopes);
        m.response_types_supported = Some(vec!["code".into()]);
        m.grant_types_supported = Some(vec![
            "authorization_code".into(),
            "refresh_token".into(),
            "client_credentials".into(),
        ]);
        m.code_challenge_methods_supported = Some(vec!["S256".into()]);
        let auth_methods = vec![
            "none".to_owned(),
            "client_secret_basic".to_owned(),
            "client_secret_post".to_owned(),
        ];
        m.token_endpoint_auth_methods_supported = Some(auth_methods.clone());
        m.client_id_metadata_document_supported = Some(self.inner.cimd.is_some());
        m.authorization_response_iss_parameter_supported = Some(true);
        m.extra
            .insert("response_modes_supported".into(), json!(["query"]));
        m.extra.insert(
            "revocation_endpoint_auth_methods_supported".into(),
            json!(auth_methods),
        );
        m.extra
            .insert("subject_types_supported".into(), json!(["public"]));
        m.extra.insert(
            "service_documentation".into(),
            json!("https://modelcontextprotocol.io/specification/2025-11-25/basic/authorization"),
        );
        m
    }

    /// A verifier for this server's access tokens: signature against the current key ring
    /// (rotation included), `iss`, `typ: at+jwt`, and revocation of the grant (`sid`).
    ///
    /// # Errors
    ///
    /// Only if the verifier cannot be built (it always can).
    pub fn verifier(&self) -> Result<impl TokenVerifier, ConfigError> {
        let jwt = JwtVerifier::builder()
            .issuer(self.inner.issuer.clone())
            .key_source(self.inner.keys.clone())
            .require_at_jwt_typ()
            .build()?;
        Ok(LocalVerifier {
            jwt,
            server: self.clone(),
        })
    }

    /// Registers a client directly (a pre-registered, confidential client for
    /// `client_credentials`, for example). Returns the secret to hand out, if any.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn add_client(&self, client: ClientSpec) -> Result<(), store::StoreError> {
        let record = client
            .into_record(&self.inner.scopes_supported)
            .map_err(|e| store::StoreError::invalid(e.to_string()))?;
        self.inner.store.put_client(record).await
    }
}

struct LocalVerifier<V> {
    jwt: V,
    server: AuthServer,
}

impl<V: TokenVerifier> TokenVerifier for LocalVerifier<V> {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Claims, VerifyError>> {
        Box::pin(async move {
            let claims = self.jwt.verify(token).await?;
            check_issuer(&claims, &self.server.inner.issuer)?;
            self.check_not_revoked(&claims).await?;
            Ok(claims)
        })
    }

    /// Revocation takes effect at once, cached tokens included.
    fn rechecks(&self) -> bool {
        true
    }

    fn recheck<'a>(&'a self, claims: &'a Claims) -> BoxFuture<'a, Result<(), VerifyError>> {
        Box::pin(self.check_not_revoked(claims))
    }
}

impl<V> LocalVerifier<V> {
    async fn check_not_revoked(&self, claims: &Claims) -> Result<(), VerifyError> {
        let Some(sid) = claims.str("sid") else {
            return Ok(());
        };
        let revoked = self
            .server
            .is_family_revoked_cached(sid)
            .await
            .map_err(|e| VerifyError::Unavailable(e.to_string()))?;
        if revoked {
            return Err(VerifyError::Refused("the grant was revoked".into()));
        }
        Ok(())
    }
}

impl AuthServerBuilder {
    /// The signing keys (default: an ephemeral ES256 key).
    pub fn keys(mut self, keys: Arc<KeyRing>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// The store (default: [`MemoryStore`]). `SqliteStore` (feature `sqlite`) keeps clients
    /// and refresh tokens across restarts; `RedisStore` (feature `redis`) shares them between
    /// instances, which must then also share the signing keys and the encryption key.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Who may sign in (default: the single development user `dev` / `dev`).
    pub fn login(mut self, login: Arc<dyn LoginBackend>) -> Self {
        self.login = Some(login);
        self
    }

    /// The scopes clients may ask for (`offline_access` is always accepted). Default:
    /// `mcp:read mcp:write`.
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes_supported = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Scopes granted when a request names none (default: all supported ones).
    pub fn default_scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.default_scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// A resource (RFC 8707) tokens may be issued for. The first one is the default for
    /// requests that name none. With none configured, a request that names a resource is
    /// refused (`invalid_target`) and tokens carry no `aud`: an audience is never a URL the
    /// client chose.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resources.push(resource.into());
        self
    }

    /// Lifetimes of tokens, codes and pending requests.
    pub fn lifetimes(mut self, lifetimes: Lifetimes) -> Self {
        self.lifetimes = lifetimes;
        self
    }

    /// Skip the login and consent page: every valid authorization request is approved at
    /// once for the login back-end's automatic user. For tests only.
    pub fn auto_approve(mut self, on: bool) -> Self {
        self.auto_approve = on;
        self
    }

    /// Dynamic client registration (RFC 7591): `true` is [`Registration::Open`], `false`
    /// [`Registration::Off`]. Default: open. See [`Self::registration`].
    pub fn dynamic_registration(mut self, on: bool) -> Self {
        self.registration = if on {
            Registration::Open
        } else {
            Registration::Off
        };
        self
    }

    /// Who may register clients (RFC 7591). Default: [`Registration::Open`], which registers
    /// only clients that act for a user; machine clients (`client_credentials`) come from
    /// [`Self::client`] or a registration with [`Registration::InitialAccessToken`].
    pub fn registration(mut self, registration: Registration) -> Self {
        self.registration = registration;
        self
    }

    /// How long a dynamically registered client that never redeems an authorization code
    /// stays registered. Default is 24 hours. Clients registered with the initial access
    /// token and configured clients never lapse.
    pub fn unused_registration_ttl(mut self, ttl: Duration) -> Self {
        self.unused_registration_ttl = ttl;
        self
    }

    /// Client ID Metadata Documents; `None` turns them off. Default: on, public `https`
    /// addresses only.
    pub fn client_metadata_documents(mut self, options: Option<CimdOptions>) -> Self {
        self.cimd = options;
        self
    }

    /// Request-rate limits per client address (`None` turns one off). Defaults: token and
    /// revocation 120 per minute with bursts of 60; registration 1 per minute, bursts of 20;
    /// the authorization endpoint 120 per minute, bursts of 60. Limits need the server to be
    /// served with connection info (`into_make_service_with_connect_info::<SocketAddr>()`);
    /// without it, all callers share one bucket.
    pub fn rate_limits(
        mut self,
        token: Option<RateLimit>,
        register: Option<RateLimit>,
        authorize: Option<RateLimit>,
    ) -> Self {
        self.token_limit = token;
        self.register_limit = register;
        self.authorize_limit = authorize;
        self
    }

    /// The request-rate limit per client id at the token and revocation endpoints, counted
    /// for requests that present a client secret, before the secret is checked (`None`
    /// turns it off). It bounds guessing a client's secret from many addresses. Default: 120
    /// per minute, bursts of 60.
    pub fn client_rate_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.client_limit = limit;
        self
    }

    /// Reverse proxies whose forwarded headers name the client address, for the rate limits
    /// and the logs: for a request whose TCP peer is one of them, the client is the rightmost
    /// address of `X-Forwarded-For` (or `Forwarded`, see
    /// [`TrustedProxies::header`](crate::forwarded::TrustedProxies::header)) that is not a
    /// trusted proxy; see [`crate::forwarded`]. Default: none (the TCP peer is the client,
    /// and behind a proxy every client shares the proxy's buckets).
    pub fn trusted_proxies(mut self, proxies: crate::forwarded::TrustedProxies) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// Proxy mode: users sign in at this upstream identity provider instead of the local
    /// login form (see [`proxy`](crate::auth_server::proxy)). Needs [`Self::encryption_key`].
    pub fn upstream(mut self, upstream: Upstream) -> Self {
        self.upstream = Some(upstream);
        self
    }

    /// The 32-byte key that seals upstream tokens at rest (AES-256-GCM) and signs the consent
    /// cookie. Keep it secret and stable: another key cannot open tokens sealed with this one,
    /// and every instance sharing a store needs the same key.
    pub fn encryption_key(mut self, key: impl Into<crate::secret::Secret>) -> Self {
        self.encryption_key = Some(key.into());
        self
    }

    /// How long a browser's consent to a client is remembered (proxy mode). Default is 30
    /// days; `Duration::ZERO` asks every time.
    pub fn consent_ttl(mut self, ttl: Duration) -> Self {
        self.consent_ttl = ttl;
        self
    }

    /// How long the per-request revocation check reuses a "not revoked" answer of the store.
    /// Default is 1 second; `Duration::ZERO` asks the store on every request. Revocations
    /// made through this server (revocation endpoint, code replay, refresh reuse) take effect
    /// at once whatever this is: it only bounds how late this instance sees a revocation made
    /// by another instance sharing the store.
    pub fn revocation_recheck(mut self, interval: Duration) -> Self {
        self.revocation_recheck = interval;
        self
    }

    /// A pre-registered client. Checked by [`Self::build`].
    pub fn client(mut self, client: ClientSpec) -> Self {
        self.clients.push(client);
        self
    }

    /// Builds the server.
    ///
    /// # Errors
    ///
    /// The issuer is not an acceptable URL, a scope is invalid, or a configured client is
    /// inconsistent (a machine client without a secret or scopes, a scope not offered, an
    /// authentication method that does not fit its secret).
    pub async fn build(self) -> Result<AuthServer, ConfigError> {
        let issuer_url = Url::parse(&self.issuer)
            .map_err(|e| ConfigError::url("issuer", &self.issuer, e.to_string()))?;
        if issuer_url.query().is_some() || issuer_url.fragment().is_some() {
            return Err(ConfigError::url(
                "issuer",
                &self.issuer,
                "an issuer has no query or fragment (RFC 8414 §2)",
            ));
        }
        if issuer_url.scheme() != "https" && !crate::resource::is_loopback_url(&issuer_url) {
            return Err(ConfigError::url(
                "issuer",
                &self.issuer,
                "an authorization server is https (loopback excepted)",
            ));
        }
        if let Some(bad) = self
            .scopes_supported
            .iter()
            .find(|s| !crate::scope::is_valid_scope(s))
        {
            return Err(ConfigError::invalid(
                "scope",
                format!("{bad:?} is not a valid scope token"),
            ));
        }
        let keys = match self.keys {
            Some(keys) => keys,
            None => Arc::new(KeyRing::ephemeral(Algorithm::ES256)?),
        };
        let store: Arc<dyn Store> = match self.store {
            Some(store) => store,
            None => Arc::new(MemoryStore::new()),
        };
        for client in self.clients {
            store
                .put_client(client.into_record(&self.scopes_supported)?)
                .await
                .map_err(|e| ConfigError::invalid("client", e.to_string()))?;
        }
        let cimd = match self.cimd {
            Some(options) => Some(cimd::Resolver::new(options)?),
            None => None,
        };
        let sealer = match (&self.upstream, &self.encryption_key) {
            (_, Some(key)) => Some(seal::Sealer::new(key.expose())?),
            (Some(_), None) => {
                return Err(ConfigError::missing(
                    "encryption key",
                    "proxy mode stores upstream tokens encrypted: call AuthServerBuilder::encryption_key with 32 secret bytes",
                ));
            }
            (None, None) => None,
        };
        let issuer = self.issuer.clone();
        Ok(AuthServer {
            inner: Arc::new(Inner {
                secure_cookies: issuer_url.scheme() == "https",
                issuer,
                issuer_url,
                keys,
                store,
                login: self.login.unwrap_or_else(|| Arc::new(DevUsers::default())),
                default_scopes: self
                    .default_scopes
                    .unwrap_or_else(|| self.scopes_supported.clone()),
                scopes_supported: self.scopes_supported,
                resources: self.resources,
                lifetimes: self.lifetimes,
                auto_approve: self.auto_approve,
                registration: self.registration,
                unused_registration_ttl: self.unused_registration_ttl,
                cimd,
                token_limit: self.token_limit,
                register_limit: self.register_limit,
                authorize_limit: self.authorize_limit,
                client_limiter: self
                    .client_limit
                    .map(|limit| rate::Limiter::new(limit, &self.trusted_proxies)),
                trusted_proxies: self.trusted_proxies,
                upstream: self.upstream.map(Arc::new),
                sealer,
                consent_ttl: self.consent_ttl,
                revoked: moka::sync::Cache::builder()
                    .max_capacity(100_000)
                    .expire_after(RevokedExpiry {
                        revoked: self.lifetimes.access_token,
                        recheck: self.revocation_recheck,
                    })
                    .build(),
                upstream_refreshes: moka::sync::Cache::builder()
                    .max_capacity(10_000)
                    .time_to_idle(Duration::from_secs(120))
                    .build(),
                login_throttle: login::Throttle::new(),
            }),
        })
    }
}
