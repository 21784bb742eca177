//! How an [`AuthServer`] is built ([`AuthServerBuilder`]): every option with its default,
//! checked once in [`AuthServerBuilder::build`], and the sign-in back-end chosen there.

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::cimd::{self, CimdOptions};
use super::client_spec::ClientSpec;
use super::jwt_bearer::{JwtBearer, TrustedIdp, WorkloadIssuer};
use super::keys::KeyRing;
use super::login::{DevUsers, LoginBackend};
use super::password::PasswordSignIn;
use super::proxy::ProxySignIn;
use super::rate::{self, RateLimit};
use super::registration::Registration;
use super::seal;
use super::server::{AuthServer, ClientPolicy, Config, Inner, Lifetimes, Limits, SignIn, Tokens};
use super::store::StoreReplayCache;
use super::store::{MemoryStore, Store};
use super::upstream::Upstream;
use crate::dpop::DpopVerifier;
use crate::error::ConfigError;
use crate::jose::Algorithm;

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
    dpop: Option<Option<DpopVerifier>>,
    #[cfg(feature = "policy")]
    access: Option<super::access::Access>,
    trusted_idps: Vec<TrustedIdp>,
    workload_issuers: Vec<WorkloadIssuer>,
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
            dpop: None,
            #[cfg(feature = "policy")]
            access: None,
            trusted_idps: Vec::new(),
            workload_issuers: Vec::new(),
        }
    }
}

impl AuthServerBuilder {
    /// The signing keys (default: an ephemeral ES256 key).
    pub fn keys(mut self, keys: Arc<KeyRing>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// DPoP-bound tokens (RFC 9449) for clients that send a `DPoP` proof to `/token`: the
    /// access token carries `cnf.jkt` and `token_type` is `DPoP`; a public client's refresh
    /// token is bound to the key too, and a `dpop_jkt` on `/authorize` binds the code. Proofs
    /// are checked with the default [`DpopVerifier`] settings, used proofs remembered in the
    /// server's store (so instances sharing a store share the replay cache).
    /// `dpop_signing_alg_values_supported` is in the metadata. Default: off (the `DPoP`
    /// header is ignored and tokens are bearer tokens, as RFC 9449 §5 allows).
    pub fn dpop(mut self, on: bool) -> Self {
        self.dpop = on.then_some(None);
        self
    }

    /// [`Self::dpop`] with a verifier of your own: other algorithms, server nonces
    /// ([`DpopVerifierBuilder::nonces`](crate::dpop::DpopVerifierBuilder::nonces)), or a
    /// replay cache of your choosing (give several instances a shared one, such as a
    /// [`StoreReplayCache`] over their store).
    pub fn dpop_verifier(mut self, verifier: DpopVerifier) -> Self {
        self.dpop = Some(Some(verifier));
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

    /// Decides who may sign in ([`Policy::sign_in`](crate::policy::Policy::sign_in)) and
    /// cuts the scopes each user is granted to what
    /// [`Policy::grant_scopes`](crate::policy::Policy::grant_scopes) allows, once the user is
    /// known (login form or upstream provider) and before a code is issued. A refused user
    /// is sent back to the client with `error=access_denied`. Each decision is written to
    /// `audit` when given. Default: everyone the login back-end accepts, every requested
    /// scope.
    #[cfg(feature = "policy")]
    pub fn policy(
        mut self,
        policy: crate::policy::Policy,
        audit: Option<crate::audit::AuditLog>,
    ) -> Self {
        self.access = Some(super::access::Access { policy, audit });
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

    /// An enterprise identity provider whose Identity Assertion JWT Authorization Grants
    /// (ID-JAG, MCP's Enterprise-Managed Authorization) this server accepts with the
    /// JWT-bearer grant (RFC 7523) at `/token`; see [`TrustedIdp`] for what is checked. The
    /// grant is offered (in `grant_types_supported`) once a provider or a workload issuer is
    /// configured, and only clients registered for it may use it
    /// ([`ClientSpec::grant_types`]). With [`Self::policy`], the user is run through the
    /// sign-in policy, as at the login page. An assertion bound to a key (`cnf.jkt`) needs
    /// [`Self::dpop`] on, and the request's DPoP proof by that key.
    pub fn trusted_idp(mut self, idp: TrustedIdp) -> Self {
        self.trusted_idps.push(idp);
        self
    }

    /// A workload identity issuer whose tokens this server accepts with the JWT-bearer grant
    /// at `/token`, each for the client its subject is mapped to; see [`WorkloadIssuer`].
    pub fn workload_issuer(mut self, issuer: WorkloadIssuer) -> Self {
        self.workload_issuers.push(issuer);
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
    /// authentication method that does not fit its secret), or a trusted issuer of the
    /// JWT-bearer grant has no keys, is configured twice, or maps no client.
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
        // The key is checked whenever it is given, even when no back-end needs it.
        let sealer = match &self.encryption_key {
            Some(key) => Some(seal::Sealer::new(key.expose())?),
            None => None,
        };
        let sign_in: Arc<dyn SignIn> = match (self.upstream, sealer) {
            (Some(upstream), Some(sealer)) => {
                Arc::new(ProxySignIn::new(upstream, sealer, self.consent_ttl))
            }
            (Some(_), None) => {
                return Err(ConfigError::missing(
                    "encryption key",
                    "proxy mode stores upstream tokens encrypted: call AuthServerBuilder::encryption_key with 32 secret bytes",
                ));
            }
            (None, _) => Arc::new(PasswordSignIn::new(
                self.login.unwrap_or_else(|| Arc::new(DevUsers::default())),
            )),
        };
        let dpop = match self.dpop {
            Some(Some(verifier)) => Some(verifier),
            Some(None) => Some(
                DpopVerifier::builder()
                    .replay_cache(Arc::new(StoreReplayCache::new(store.clone())))
                    .build()?,
            ),
            None => None,
        };
        let jwt_bearer = JwtBearer::new(&self.issuer, self.trusted_idps, self.workload_issuers)?;
        let issuer = self.issuer.clone();
        Ok(AuthServer {
            inner: Arc::new(Inner {
                config: Config {
                    secure_cookies: issuer_url.scheme() == "https",
                    issuer,
                    issuer_url,
                    default_scopes: self
                        .default_scopes
                        .unwrap_or_else(|| self.scopes_supported.clone()),
                    scopes_supported: self.scopes_supported,
                    resources: self.resources,
                    lifetimes: self.lifetimes,
                    auto_approve: self.auto_approve,
                },
                store,
                tokens: Tokens {
                    keys,
                    revoked: moka::sync::Cache::builder()
                        .max_capacity(100_000)
                        .expire_after(RevokedExpiry {
                            revoked: self.lifetimes.access_token,
                            recheck: self.revocation_recheck,
                        })
                        .build_with_hasher(foldhash::fast::RandomState::default()),
                    dpop,
                },
                clients: ClientPolicy {
                    registration: self.registration,
                    unused_registration_ttl: self.unused_registration_ttl,
                    cimd,
                },
                limits: Limits {
                    token: self.token_limit,
                    register: self.register_limit,
                    authorize: self.authorize_limit,
                    per_client: self
                        .client_limit
                        .map(|limit| rate::Limiter::new(limit, &self.trusted_proxies)),
                    trusted_proxies: self.trusted_proxies,
                },
                sign_in,
                #[cfg(feature = "policy")]
                access: self.access,
                jwt_bearer,
            }),
        })
    }
}
