//! An OAuth 2.1 authorization server, embeddable: the development server behind
//! `mcp-oauth dev`, and the core the OAuth proxy builds on.
//!
//! | endpoint | what |
//! |---|---|
//! | `GET /.well-known/oauth-authorization-server`, `/.well-known/openid-configuration` | RFC 8414 metadata |
//! | `GET /jwks` | the public signing keys |
//! | `GET /authorize` | validates the request (PKCE S256 required, exact redirect URI with the RFC 8252 loopback rule, `resource`), then shows the login and consent page, or answers at once with auto-approve |
//! | `POST /authorize` | the page's form: CSRF-checked, then a code (single use, 60 s) back to the client, with `iss` (RFC 9207) |
//! | `POST /token` | `authorization_code` (client, redirect URI, PKCE and resource checked before the code is used; a second use revokes the grant), `refresh_token` (rotation; reuse revokes the family), `client_credentials` (only machine clients the operator made, with their own scopes); the client authenticates with the method it registered |
//! | `POST /register` | RFC 7591 dynamic registration, per the [`Registration`] policy: `application/json` of at most 8 KiB, unknown members dropped, unused registrations lapse after 24 h |
//! | `POST /revoke` | RFC 7009 |
//!
//! # CORS
//!
//! Cross-origin browser access is allowed per endpoint, never with credentials (cookies are
//! not sent, and no response carries `Access-Control-Allow-Credentials`):
//!
//! | endpoint | CORS | why |
//! |---|---|---|
//! | metadata, `/jwks` | any origin, `GET` | public documents; browser-based MCP clients discover the server |
//! | `/token`, `/revoke` | any origin, `POST`, headers `Authorization`, `Content-Type` | browser-based MCP clients redeem codes, refresh and revoke; the client authenticates in the request itself (PKCE, secret), and a cross-origin page has neither |
//! | `/register` | as `/token` | browser-based MCP clients register; the body must be `application/json`, which a browser sends cross-origin only after a preflight, and open registration yields no client that gets tokens without a user |
//! | `/authorize`, the proxy callback | none | pages a browser navigates to; the consent form is CSRF-protected and only same-origin |
//!
//! # Resources
//!
//! Tokens name their resource (RFC 8707) in `aud`. With resources configured
//! ([`AuthServerBuilder::resource`]), a request's `resource` must be one of them, and the
//! first is the default. With none configured, a request naming a `resource` is refused
//! (`invalid_target`) and tokens carry no `aud`: the audience is never a URL the client chose.
//!
//! `client_id`s that are `https` URLs are Client ID Metadata Documents: fetched through an SSRF
//! guard, size- and time-limited, cached by their HTTP cache headers.
//!
//! Access tokens are JWTs (`typ: at+jwt`) with `iss`, `sub`, `aud` (the RFC 8707 resource),
//! `exp`, `iat`, `jti`, `scope`, `client_id` and `sid` (the grant, for revocation). Refresh
//! tokens and codes are random, and stored only as their SHA-256.

mod authorize;
mod cimd;
mod keys;
mod login;
mod pages;
pub mod proxy;
mod rate;
mod register;
mod revoke;
mod seal;
pub mod store;
mod token;

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};
use url::Url;

pub use cimd::CimdOptions;
pub use keys::KeyRing;
pub use login::{DevUsers, LoginBackend, UserIdentity};
pub use proxy::{Identity, ProxyError, Upstream, UpstreamAuth, UpstreamBuilder};
pub use rate::RateLimit;
pub use register::Registration;
pub use store::{MemoryStore, Store};

use crate::claims::{Claims, check_issuer, now_unix};
use crate::error::{ConfigError, VerifyError};
use crate::jose::Algorithm;
use crate::jose::jws::b64;
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
    pub(crate) upstream: Option<Arc<proxy::Upstream>>,
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
    upstream: Option<proxy::Upstream>,
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
        self.endpoint(proxy::CALLBACK_PATH)
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

    /// The routes: metadata (at the well-known paths, path-inserted when the issuer has a
    /// path), JWKS, authorize, token, register, revoke, each with the CORS policy the
    /// [module docs](self) list.
    pub fn router(&self) -> Router {
        let base = self
            .inner
            .issuer_url
            .path()
            .trim_end_matches('/')
            .to_owned();
        let limited = |router: axum::routing::MethodRouter<AuthServer>,
                       limit: Option<RateLimit>| match limit {
            Some(limit) => router.layer(axum::middleware::from_fn_with_state(
                rate::Limiter::new(limit, &self.inner.trusted_proxies),
                rate::limit,
            )),
            None => router,
        };
        let endpoints = Router::new()
            .route(
                "/authorize",
                limited(
                    get(authorize::show).post(authorize::submit),
                    self.inner.authorize_limit,
                ),
            )
            .route(
                "/token",
                limited(post(token::token), self.inner.token_limit)
                    .layer(crate::routes::token_endpoint_cors()),
            )
            .route(
                "/register",
                limited(post(register::register), self.inner.register_limit)
                    .layer(crate::routes::token_endpoint_cors()),
            )
            .route(
                "/revoke",
                limited(post(revoke::revoke), self.inner.token_limit)
                    .layer(crate::routes::token_endpoint_cors()),
            )
            .route("/jwks", get(jwks).layer(crate::routes::metadata_cors()))
            .route(
                proxy::CALLBACK_PATH,
                limited(get(proxy::callback), self.inner.authorize_limit),
            );
        let endpoints = if base.is_empty() {
            endpoints
        } else {
            Router::new().nest(&base, endpoints)
        };
        let mut router = endpoints;
        for well_known in [
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration",
        ] {
            router = router.route(
                &format!("{well_known}{base}"),
                get(metadata).layer(crate::routes::metadata_cors()),
            );
        }
        if !base.is_empty() {
            router = router.route(
                &format!("{base}/.well-known/openid-configuration"),
                get(metadata).layer(crate::routes::metadata_cors()),
            );
        }
        // CORS is per route (see the module docs): none on the pages a browser navigates to.
        router
            .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
            .layer(axum::middleware::map_response(too_large))
            .with_state(self.clone())
    }

    /// Mints an access token directly (for `mcp-oauth token` and for tests).
    pub fn mint_access_token(&self, grant: &Grant<'_>) -> String {
        token::mint(self, grant)
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

    /// The upstream access token of the user behind `auth` (proxy mode), to call the
    /// provider's API on the user's behalf: refreshed at the provider when it expired. It is
    /// never the token the MCP client sent.
    ///
    /// # Security Warning
    ///
    /// This token acts as the user at the provider. Never log it or return it to a client.
    ///
    /// # Errors
    ///
    /// Not a proxy grant of this server, the grant was revoked, or the provider refused the
    /// refresh.
    pub async fn upstream_token(
        &self,
        auth: &crate::Auth,
    ) -> Result<crate::secret::Secret, ProxyError> {
        if auth.issuer.as_deref() != Some(self.inner.issuer.as_str()) {
            return Err(ProxyError::NoTokens);
        }
        let family = auth.claims.str("sid").ok_or(ProxyError::NoTokens)?;
        proxy::upstream_token(self, family).await
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

/// A client the operator configures (pre-registered). `Debug` shows no secret.
///
/// A client with `client_credentials` among its grant types is a machine client: it needs
/// a secret and its own [`scopes`](Self::scopes), the only ones its tokens may carry.
#[derive(Clone, Default)]
pub struct ClientSpec {
    /// The client id.
    pub client_id: String,
    /// The secret (confidential client), or none (public).
    pub client_secret: Option<String>,
    /// Redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Grant types.
    pub grant_types: Vec<String>,
    /// Display name.
    pub client_name: Option<String>,
    /// The scopes `client_credentials` tokens of this client may carry (each one the server
    /// offers). Required for a machine client; there is no implicit "every scope".
    pub scopes: Vec<String>,
    /// How the client authenticates at the token and revocation endpoints:
    /// `client_secret_basic` or `client_secret_post` with a secret, `none` without. Default
    /// (`None`): `client_secret_basic` with a secret, `none` without.
    pub token_endpoint_auth_method: Option<String>,
}

impl std::fmt::Debug for ClientSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSpec")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("redirect_uris", &self.redirect_uris)
            .field("grant_types", &self.grant_types)
            .field("client_name", &self.client_name)
            .field("scopes", &self.scopes)
            .field(
                "token_endpoint_auth_method",
                &self.token_endpoint_auth_method,
            )
            .finish()
    }
}

impl ClientSpec {
    /// A confidential machine client for `client_credentials` (HTTP Basic authentication).
    /// Give it its scopes with [`Self::scopes`].
    pub fn service(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: Some(client_secret.into()),
            grant_types: vec!["client_credentials".into()],
            ..Self::default()
        }
    }

    /// The scopes this client's `client_credentials` tokens may carry.
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// How the client authenticates (`client_secret_basic`, `client_secret_post` or `none`).
    pub fn auth_method(mut self, method: impl Into<String>) -> Self {
        self.token_endpoint_auth_method = Some(method.into());
        self
    }

    fn into_record(self, offered: &[String]) -> Result<store::ClientRecord, ConfigError> {
        let bad = |msg: String| ConfigError::invalid("client", msg);
        let id = &self.client_id;
        let method = match (self.token_endpoint_auth_method, &self.client_secret) {
            (Some(m), _) => m,
            (None, Some(_)) => "client_secret_basic".into(),
            (None, None) => "none".into(),
        };
        match (method.as_str(), self.client_secret.is_some()) {
            ("client_secret_basic" | "client_secret_post", true) | ("none", false) => {}
            _ => {
                return Err(bad(format!(
                    "client {id:?}: token_endpoint_auth_method {method:?} does not fit a client {} a secret",
                    if self.client_secret.is_some() {
                        "with"
                    } else {
                        "without"
                    }
                )));
            }
        }
        let machine = self.grant_types.iter().any(|g| g == "client_credentials");
        let machine_scopes = if machine {
            if self.client_secret.is_none() {
                return Err(bad(format!(
                    "client {id:?}: client_credentials needs a client secret"
                )));
            }
            if self.scopes.is_empty() {
                return Err(bad(format!(
                    "client {id:?} may use client_credentials but has no scopes: give it its scopes with ClientSpec::scopes"
                )));
            }
            if let Some(s) = self.scopes.iter().find(|s| !offered.contains(s)) {
                return Err(bad(format!(
                    "client {id:?}: the scope {s:?} is not offered by this server"
                )));
            }
            Some(self.scopes)
        } else {
            None
        };
        Ok(store::ClientRecord {
            secret_hash: self.client_secret.as_deref().map(hash_hex),
            token_endpoint_auth_method: method,
            client_id: self.client_id,
            redirect_uris: self.redirect_uris,
            grant_types: self.grant_types,
            application_type: "web".into(),
            client_name: self.client_name,
            scope: None,
            metadata: Map::new(),
            issued_at: now_unix(),
            from_metadata_document: false,
            machine_scopes,
            expires_at: None,
        })
    }
}

/// What an access token is for.
#[derive(Debug, Clone)]
pub struct Grant<'a> {
    /// The user (or the client, for `client_credentials`).
    pub subject: &'a str,
    /// The client.
    pub client_id: &'a str,
    /// Granted scopes.
    pub scope: &'a [String],
    /// The audience (RFC 8707 resource).
    pub resource: Option<&'a str>,
    /// Identity claims (email, name, …).
    pub user_claims: &'a Map<String, Value>,
    /// The grant family, for revocation.
    pub family: &'a str,
    /// Lifetime (default: the server's access-token lifetime).
    pub ttl: Option<Duration>,
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
    /// login form (see [`proxy`]). Needs [`Self::encryption_key`].
    pub fn upstream(mut self, upstream: proxy::Upstream) -> Self {
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

/// Largest request body of any endpoint.
const BODY_LIMIT: usize = 64 * 1024;

/// A body over [`BODY_LIMIT`] (refused by the limit layer, or by the handler when the body is
/// chunked) is answered in the endpoint's own error format: the error page at the
/// authorization endpoint, RFC 6749 §5.2 / RFC 7591 §3.2.2 JSON elsewhere.
async fn too_large(uri: http::Uri, response: Response) -> Response {
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("text/plain"));
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE || !plain {
        return response;
    }
    let path = uri.path();
    if path.ends_with("/authorize") {
        return pages::error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "The form is too large. Open the sign-in again from the application.",
        );
    }
    let error = if path.ends_with("/register") {
        "invalid_client_metadata"
    } else {
        "invalid_request"
    };
    oauth_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        error,
        &format!("the request body is larger than {} KiB", BODY_LIMIT / 1024),
    )
}

async fn metadata(axum::extract::State(server): axum::extract::State<AuthServer>) -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::to_value(server.metadata()).unwrap_or(Value::Null),
    )
}

async fn jwks(axum::extract::State(server): axum::extract::State<AuthServer>) -> Response {
    let mut response = json_response(
        StatusCode::OK,
        &serde_json::to_value(server.inner.keys.jwks()).unwrap_or(Value::Null),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// 32 random bytes, base64url: codes, tokens, ids, CSRF tokens.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // The system random source does not fail on supported platforms; an all-zero value
    // would be caught by uniqueness checks in the store long before it mattered.
    let _ = SystemRandom::new().fill(&mut bytes);
    b64(&bytes)
}

/// SHA-256, hex: how codes, refresh tokens and client secrets are stored.
pub(crate) fn hash_hex(value: &str) -> String {
    digest::digest(&digest::SHA256, value.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// An RFC 6749 §5.2 error response.
pub(crate) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}
