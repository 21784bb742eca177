//! The server's state ([`AuthServer`]): issuer, keys, store, sign-in back-end, scopes,
//! resources, lifetimes, policies and limits; the contract of a sign-in back-end
//! ([`SignIn`]); the RFC 8414 metadata it publishes, and the verifier for its own access
//! tokens.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use url::Url;

use axum::response::Response;
use http::{HeaderMap, StatusCode};

use super::cimd;
use super::client_spec::ClientSpec;
use super::consent_page::Decision;
use super::keys::KeyRing;
use super::pages::error_page;
use super::protocol::{ClientAuthMethod, ErrorCode, GrantType};
use super::rate::{self, RateLimit};
use super::registration::Registration;
use super::store::{self, AuthRequestRecord, ClientRecord, Store};
use super::upstream::{CALLBACK_PATH, ProxyError};
use crate::claims::{Claims, check_issuer};
use crate::error::{ConfigError, VerifyError};
use crate::metadata::AuthorizationServerMetadata;
use crate::secret::Secret;
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

/// The server's state, in the parts the endpoints reach for.
pub(crate) struct Inner {
    /// What the server is and offers: issuer, scopes, resources, lifetimes.
    pub(crate) config: Config,
    /// Clients, codes, tokens, grants: everything that outlives a request.
    pub(crate) store: Arc<dyn Store>,
    /// Signing keys and the revocation cache of the access tokens.
    pub(crate) tokens: Tokens,
    /// Who may register clients, and how clients are found.
    pub(crate) clients: ClientPolicy,
    /// Request-rate limits.
    pub(crate) limits: Limits,
    /// Who the user is: the login form, or an upstream identity provider.
    pub(crate) sign_in: Arc<dyn SignIn>,
    /// Who may sign in and which scopes they get.
    #[cfg(feature = "policy")]
    pub(crate) access: Option<super::access::Access>,
    /// The issuers of the JWT-bearer grant (trusted identity providers, workload issuers):
    /// `None` when the grant is off.
    pub(crate) jwt_bearer: Option<super::jwt_bearer::config::JwtBearer>,
}

/// What the server is and offers.
pub(crate) struct Config {
    pub(crate) issuer: String,
    pub(crate) issuer_url: Url,
    pub(crate) scopes_supported: Vec<String>,
    pub(crate) default_scopes: Vec<String>,
    pub(crate) resources: Vec<String>,
    pub(crate) lifetimes: Lifetimes,
    pub(crate) auto_approve: bool,
    /// `https` issuer: cookies are `Secure` and `__Host-` prefixed.
    pub(crate) secure_cookies: bool,
}

/// The access tokens' keys and revocation cache.
pub(crate) struct Tokens {
    pub(crate) keys: Arc<KeyRing>,
    /// Recent answers to "is this grant revoked?" for the per-request check: revocations made
    /// here are entered at once; "not revoked" is reused for `revocation_recheck`. The grant
    /// ids it holds come from verified tokens, so a fast keyed hash is enough.
    pub(crate) revoked: moka::sync::Cache<String, bool, foldhash::fast::RandomState>,
    /// DPoP proofs at `/token` (RFC 9449 §5): `None` ignores the `DPoP` header and issues
    /// bearer tokens.
    pub(crate) dpop: Option<crate::dpop::DpopVerifier>,
}

/// Who may register clients, and how clients are found.
pub(crate) struct ClientPolicy {
    pub(crate) registration: Registration,
    pub(crate) unused_registration_ttl: Duration,
    /// Client ID Metadata Documents, when enabled.
    pub(crate) cimd: Option<cimd::Resolver>,
}

/// Request-rate limits.
pub(crate) struct Limits {
    pub(crate) token: Option<RateLimit>,
    pub(crate) register: Option<RateLimit>,
    pub(crate) authorize: Option<RateLimit>,
    /// Which peers' forwarded headers name the client address (rate limits, logs).
    pub(crate) trusted_proxies: crate::forwarded::TrustedProxies,
    /// The per-client-id bucket at `/token` and `/revoke` (requests with a client secret).
    pub(crate) per_client: Option<rate::Limiter<String>>,
}

/// A sign-in back-end: how the authorization endpoint learns who the user is. The core
/// (`authorize`) validates the request, shows the login and consent page and issues the code;
/// the back-end is asked at three points:
///
/// - [`begin`](Self::begin): a validated request, before the page: answer at once (sign in
///   automatically, or go to the provider when this browser consented before), or show it;
/// - [`finish`](Self::finish): the page was approved: check the password, or go to the
///   provider; both end in [`approve`](super::respond::approve) with a [`UserIdentity`];
/// - [`resume`](Self::resume) and [`callback`](Self::callback): the way back from a
///   provider (its callback, and the consent page shown after it).
///
/// The back-ends are the login form ([`PasswordSignIn`](super::password::PasswordSignIn),
/// with a [`LoginBackend`](super::LoginBackend)) and an upstream identity provider
/// ([`ProxySignIn`](super::proxy::ProxySignIn)).
///
/// [`UserIdentity`]: super::UserIdentity
pub(crate) trait SignIn: Send + Sync + 'static {
    /// Where the page says the user signs in: `None` here, with a password; or the
    /// provider's name and origin.
    fn provider(&self) -> Option<(&str, String)>;

    /// A validated authorization request, before the login and consent page.
    fn begin<'a>(
        &'a self,
        server: &'a AuthServer,
        headers: &'a HeaderMap,
        request: &'a AuthRequestRecord,
    ) -> BoxFuture<'a, Begin>;

    /// The page's form approved the request (CSRF, client and request already checked). The
    /// request is still pending: the back-end takes it when it goes on.
    fn finish<'a>(
        &'a self,
        server: &'a AuthServer,
        headers: &'a HeaderMap,
        form: &'a Decision,
        request: AuthRequestRecord,
        client: &'a ClientRecord,
    ) -> BoxFuture<'a, Response>;

    /// `POST /authorize` for an id that is no pending request of the page: `None` when the
    /// back-end knows none either (the caller answers as for an expired request).
    fn resume<'a>(
        &'a self,
        _server: &'a AuthServer,
        _headers: &'a HeaderMap,
        _form: &'a Decision,
    ) -> BoxFuture<'a, Option<Response>> {
        Box::pin(async { None })
    }

    /// `GET /oauth/callback`: the provider's answer.
    fn callback<'a>(
        &'a self,
        _server: &'a AuthServer,
        _headers: &'a HeaderMap,
        _query: Option<String>,
    ) -> BoxFuture<'a, Response> {
        Box::pin(async {
            error_page(
                StatusCode::NOT_FOUND,
                "This server does not sign in through another provider.",
            )
        })
    }

    /// A grant was revoked here: revoke what the provider issued for it (proxy mode). Runs on
    /// its own task after the local revocation; failures are the back-end's to log.
    fn revoked<'a>(&'a self, _server: &'a AuthServer, _family: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// The provider's access token of a grant (refreshed when it expired).
    fn upstream_token<'a>(
        &'a self,
        _server: &'a AuthServer,
        _family: &'a str,
    ) -> BoxFuture<'a, Result<Secret, ProxyError>> {
        Box::pin(async { Err(ProxyError::NoTokens) })
    }
}

/// What a back-end does with a validated request before the page.
pub(crate) enum Begin {
    /// Show the login and consent page.
    Page,
    /// This answer instead (a code, or the way to the provider).
    Answer(Response),
    /// Refuse the request with this OAuth error (code, description).
    Refuse(ErrorCode, &'static str),
}

/// The authorization server. Cheap to clone.
#[derive(Clone)]
pub struct AuthServer {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for AuthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthServer")
            .field("issuer", &self.inner.config.issuer)
            .finish_non_exhaustive()
    }
}

impl AuthServer {
    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.inner.config.issuer
    }

    /// The signing keys.
    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.inner.tokens.keys
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The reverse proxies whose forwarded headers name the client address
    /// ([`AuthServerBuilder::trusted_proxies`](super::AuthServerBuilder::trusted_proxies)),
    /// for pages built on this server that count requests per client address as it does.
    pub fn trusted_proxies(&self) -> &crate::forwarded::TrustedProxies {
        &self.inner.limits.trusted_proxies
    }

    /// The resources (MCP endpoint URLs) tokens may be issued for, as configured.
    pub fn resources(&self) -> &[String] {
        &self.inner.config.resources
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
        self.inner.tokens.revoked.insert(family.to_owned(), true);
        self.inner.store.revoke_family(family, until).await?;
        // Upstream (proxy mode) afterwards, on its own task: it never delays or undoes this.
        let server = self.clone();
        let family = family.to_owned();
        tokio::spawn(async move {
            server.inner.sign_in.revoked(&server, &family).await;
        });
        Ok(())
    }

    /// Whether a grant is revoked, for the check on every request: a revocation made here is
    /// known at once; the store is asked at most once per recheck interval otherwise.
    async fn is_family_revoked_cached(&self, family: &str) -> Result<bool, store::StoreError> {
        if let Some(revoked) = self.inner.tokens.revoked.get(family) {
            return Ok(revoked);
        }
        let revoked = self.inner.store.is_family_revoked(family).await?;
        // Never overwrite a revocation entered while the store was being asked.
        let entry = self
            .inner
            .tokens
            .revoked
            .entry(family.to_owned())
            .or_insert(revoked);
        Ok(*entry.value())
    }

    /// The scopes this server grants.
    pub fn scopes_supported(&self) -> &[String] {
        &self.inner.config.scopes_supported
    }

    pub(crate) fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.inner.config.issuer.trim_end_matches('/'))
    }

    /// The RFC 8414 metadata document.
    pub fn metadata(&self) -> AuthorizationServerMetadata {
        let mut m = AuthorizationServerMetadata::new(self.inner.config.issuer.clone());
        m.authorization_endpoint = Some(self.endpoint("/authorize"));
        m.token_endpoint = Some(self.endpoint("/token"));
        if !matches!(self.inner.clients.registration, Registration::Off) {
            m.registration_endpoint = Some(self.endpoint("/register"));
        }
        m.revocation_endpoint = Some(self.endpoint("/revoke"));
        m.jwks_uri = Some(self.endpoint("/jwks"));
        let mut scopes = self.inner.config.scopes_supported.clone();
        scopes.push("offline_access".into());
        m.scopes_supported = Some(scopes);
        m.response_types_supported = Some(vec!["code".into()]);
        m.grant_types_supported = Some(
            GrantType::ALL
                .iter()
                .filter(|g| **g != GrantType::JwtBearer || self.inner.jwt_bearer.is_some())
                .map(|g| g.as_str().to_owned())
                .collect(),
        );
        m.code_challenge_methods_supported = Some(vec!["S256".into()]);
        let auth_methods: Vec<String> = ClientAuthMethod::ALL
            .iter()
            .map(|m| m.as_str().to_owned())
            .collect();
        m.token_endpoint_auth_methods_supported = Some(auth_methods.clone());
        m.client_id_metadata_document_supported = Some(self.inner.clients.cimd.is_some());
        m.authorization_response_iss_parameter_supported = Some(true);
        m.extra
            .insert("response_modes_supported".into(), json!(["query"]));
        m.extra.insert(
            "revocation_endpoint_auth_methods_supported".into(),
            json!(auth_methods),
        );
        // private_key_jwt: the algorithms a client assertion may be signed with.
        let assertion_algs: Vec<&str> = crate::jose::Algorithms::asymmetric()
            .iter()
            .map(crate::jose::Algorithm::as_str)
            .collect();
        for member in [
            "token_endpoint_auth_signing_alg_values_supported",
            "revocation_endpoint_auth_signing_alg_values_supported",
        ] {
            m.extra.insert(member.into(), json!(assertion_algs));
        }
        m.extra
            .insert("subject_types_supported".into(), json!(["public"]));
        if let Some(dpop) = &self.inner.tokens.dpop {
            let algs: Vec<&str> = dpop.algorithms().iter().map(|alg| alg.as_str()).collect();
            m.extra
                .insert("dpop_signing_alg_values_supported".into(), json!(algs));
        }
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
            .issuer(self.inner.config.issuer.clone())
            .key_source(self.inner.tokens.keys.clone())
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
    pub async fn upstream_token(&self, auth: &crate::auth::Auth) -> Result<Secret, ProxyError> {
        if auth.issuer.as_deref() != Some(self.inner.config.issuer.as_str()) {
            return Err(ProxyError::NoTokens);
        }
        let family = auth.claims.str("sid").ok_or(ProxyError::NoTokens)?;
        self.inner.sign_in.upstream_token(self, family).await
    }

    /// Registers a client directly (a pre-registered, confidential client for
    /// `client_credentials`, for example). Returns the secret to hand out, if any.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn add_client(&self, client: ClientSpec) -> Result<(), store::StoreError> {
        let record = client
            .into_record(&self.inner.config.scopes_supported)
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
            check_issuer(&claims, &self.server.inner.config.issuer)?;
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

    /// A revocation made here, or a recent answer of the store, is known at once.
    fn recheck_now(&self, claims: &Claims) -> Option<Result<(), VerifyError>> {
        let Some(sid) = claims.str("sid") else {
            return Some(Ok(()));
        };
        let revoked = self.server.inner.tokens.revoked.get(sid)?;
        Some(if revoked {
            Err(VerifyError::Refused("the grant was revoked".into()))
        } else {
            Ok(())
        })
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
