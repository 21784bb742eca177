//! Proxy mode: the authorization server signs users in at an upstream identity provider that
//! has no dynamic client registration (Google, GitHub, Okta, Entra ID, any OIDC issuer).
//!
//! MCP clients register with this server, each with its own client id. The browser leg is:
//!
//! ```text
//! client ─▶ /authorize (checked like any request) ─▶ consent page (once per browser and client)
//!        ─▶ upstream /authorize (our client id, PKCE, a random single-use state kept here,
//!           and a cookie binding that state to this browser)
//!        ─▶ /oauth/callback (refused without the binding cookie) ─▶ code exchanged upstream,
//!           user identified ─▶ consent page again if THIS user never allowed this client
//!        ─▶ upstream tokens sealed ─▶ client redirect URI with OUR code, state and iss
//! ```
//!
//! Two defences keep a sign-in from being completed in someone else's browser (a login CSRF
//! that would hand the victim's account to whoever approved the client):
//!
//! - `start` sets a cookie (`__Host-` prefixed on `https` issuers; `HttpOnly; SameSite=Lax`)
//!   carrying an HMAC of the upstream `state`; the callback consumes the state first, then
//!   refuses it unless the cookie matches. A browser that was sent the provider's URL by
//!   someone else has no such cookie, and the state is gone for everyone.
//! - Consent is recorded on the server per user and client (with the scopes allowed). After
//!   the callback, a user without a recorded consent for the client sees the consent page,
//!   naming the account they signed in with, before any code is issued.
//!
//! The client then gets **our** tokens (audience = the MCP resource); upstream tokens never
//! leave this server. They are stored sealed with AES-256-GCM under a configured key, and
//! tool code asks for them with [`AuthServer::upstream_token`](super::AuthServer::upstream_token).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use url::Url;

use super::pages::error_page;
use super::store::{AuthRequestRecord, EntryKind};
use super::{AuthServer, UserIdentity, hash_hex, random_token};
use crate::claims::{Claims, check_times, now_unix};
use crate::error::ConfigError;
use crate::fetch::{HttpClient, RequestAuth};
use crate::jose::jws::b64;
use crate::secret::Secret;
use crate::verify::{JwtVerifier, TokenVerifier};

mod consent;

pub(crate) use consent::confirm;
use consent::{STATE_BINDING, append_cookie, ask_consent, binding_cookie, has_consent, is_bound};

/// Where the provider sends the browser back, under the issuer: the redirect URI to register
/// at the provider. The same path as mcp-use's proxy, so an existing registration keeps working.
pub const CALLBACK_PATH: &str = "/oauth/callback";

/// How the proxy learns who signed in upstream.
#[derive(Clone)]
#[non_exhaustive]
pub enum Identity {
    /// The `id_token` of the token response (OpenID Connect), verified: signature against the
    /// provider's JWKS, `iss`, `aud` = our upstream client id, `exp`.
    IdToken {
        /// The issuer of the ID tokens.
        issuer: String,
        /// The provider's JWKS URL.
        jwks_url: String,
    },
    /// A user-info endpoint called with the upstream access token (GitHub's `/user`, an OIDC
    /// `userinfo`). The JSON answer's `id` or `sub` is the subject.
    UserInfo {
        /// The URL.
        url: String,
    },
    /// Your verifier applied to the upstream access token (a JWT the provider issued for your
    /// API), returning the claims.
    AccessToken(Arc<dyn TokenVerifier>),
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::IdToken { issuer, jwks_url } => f
                .debug_struct("IdToken")
                .field("issuer", issuer)
                .field("jwks_url", jwks_url)
                .finish(),
            Self::UserInfo { url } => f.debug_struct("UserInfo").field("url", url).finish(),
            Self::AccessToken(_) => f.write_str("AccessToken"),
        }
    }
}

/// How the proxy authenticates to the upstream token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpstreamAuth {
    /// `client_secret_post` (the default; what mcp-use's proxy does).
    Post,
    /// `client_secret_basic`.
    Basic,
}

enum Verifier {
    IdToken(JwtVerifier),
    UserInfo(Url),
    AccessToken(Arc<dyn TokenVerifier>),
}

/// An upstream identity provider, ready to use.
pub struct Upstream {
    pub(crate) name: String,
    authorization_endpoint: Url,
    token_endpoint: Url,
    client_id: String,
    client_secret: Option<Secret>,
    scopes: Vec<String>,
    extra: Vec<(String, String)>,
    auth: UpstreamAuth,
    pkce: bool,
    verifier: Verifier,
    http: HttpClient,
}

impl Upstream {
    /// The origin of the provider's authorization endpoint.
    pub(crate) fn origin(&self) -> String {
        self.authorization_endpoint.origin().ascii_serialization()
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field(
                "authorization_endpoint",
                &self.authorization_endpoint.as_str(),
            )
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Configures an [`Upstream`]. Built like mcp-use's `oauthProxy` (endpoints, client id and
/// secret, scopes, extra authorize parameters, how to verify), or from a preset.
#[derive(Clone)]
#[must_use]
pub struct UpstreamBuilder {
    name: String,
    authorization_endpoint: String,
    token_endpoint: String,
    client_id: String,
    client_secret: Option<Secret>,
    scopes: Vec<String>,
    extra: Vec<(String, String)>,
    auth: UpstreamAuth,
    pkce: bool,
    identity: Option<Identity>,
    http: Option<HttpClient>,
}

impl std::fmt::Debug for UpstreamBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBuilder")
            .field("name", &self.name)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

impl Upstream {
    /// Any provider: its display name, endpoints and our client id at it. Scopes default to
    /// `openid email profile`.
    pub fn builder(
        name: impl Into<String>,
        authorization_endpoint: impl Into<String>,
        token_endpoint: impl Into<String>,
        client_id: impl Into<String>,
    ) -> UpstreamBuilder {
        UpstreamBuilder {
            name: name.into(),
            authorization_endpoint: authorization_endpoint.into(),
            token_endpoint: token_endpoint.into(),
            client_id: client_id.into(),
            client_secret: None,
            scopes: strings(&["openid", "email", "profile"]),
            extra: Vec::new(),
            auth: UpstreamAuth::Post,
            pkce: true,
            identity: None,
            http: None,
        }
    }

    /// Google: OpenID Connect, the user from the verified `id_token`; asks for offline access
    /// so that upstream tokens can be refreshed.
    pub fn google(
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> UpstreamBuilder {
        Self::builder(
            "Google",
            "https://accounts.google.com/o/oauth2/v2/auth",
            "https://oauth2.googleapis.com/token",
            client_id,
        )
        .client_secret(client_secret)
        .extra_authorize_param("access_type", "offline")
        .extra_authorize_param("prompt", "consent")
        .identity(Identity::IdToken {
            issuer: "https://accounts.google.com".into(),
            jwks_url: "https://www.googleapis.com/oauth2/v3/certs".into(),
        })
    }

    /// GitHub (OAuth apps): opaque tokens, the user from the `/user` API.
    pub fn github(
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> UpstreamBuilder {
        Self::github_at(
            "https://github.com",
            "https://api.github.com",
            client_id,
            client_secret,
        )
    }

    /// GitHub at other base URLs (GitHub Enterprise Server, or a local stand-in in tests).
    pub fn github_at(
        web: &str,
        api: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> UpstreamBuilder {
        let web = web.trim_end_matches('/');
        let api = api.trim_end_matches('/');
        Self::builder(
            "GitHub",
            format!("{web}/login/oauth/authorize"),
            format!("{web}/login/oauth/access_token"),
            client_id,
        )
        .client_secret(client_secret)
        .scopes(["read:user", "user:email"])
        .identity(Identity::UserInfo {
            url: format!("{api}/user"),
        })
    }

    /// Okta, with a custom authorization server (`default` for the built-in one).
    pub fn okta(
        domain: &str,
        authorization_server: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> UpstreamBuilder {
        let base = if domain.starts_with("http://") || domain.starts_with("https://") {
            domain.trim_end_matches('/').to_owned()
        } else {
            format!("https://{}", domain.trim_end_matches('/'))
        };
        let issuer = format!("{base}/oauth2/{authorization_server}");
        Self::builder(
            "Okta",
            format!("{issuer}/v1/authorize"),
            format!("{issuer}/v1/token"),
            client_id,
        )
        .client_secret(client_secret)
        .identity(Identity::IdToken {
            jwks_url: format!("{issuer}/v1/keys"),
            issuer,
        })
    }

    /// Microsoft Entra ID (v2.0 endpoints) of one tenant (its id, not `common`: the ID token's
    /// issuer names the tenant).
    pub fn entra(
        tenant_id: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> UpstreamBuilder {
        let base = format!("https://login.microsoftonline.com/{tenant_id}");
        Self::builder(
            "Microsoft",
            format!("{base}/oauth2/v2.0/authorize"),
            format!("{base}/oauth2/v2.0/token"),
            client_id,
        )
        .client_secret(client_secret)
        .scopes(["openid", "email", "profile", "offline_access"])
        .identity(Identity::IdToken {
            issuer: format!("{base}/v2.0"),
            jwks_url: format!("{base}/discovery/v2.0/keys"),
        })
    }

    /// Any OpenID Connect issuer: endpoints and keys from its discovery document (fetched
    /// now), the user from the `id_token`.
    ///
    /// # Errors
    ///
    /// The discovery document cannot be fetched or lacks an endpoint.
    pub async fn oidc(
        issuer: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
        http: &HttpClient,
    ) -> Result<UpstreamBuilder, ConfigError> {
        let url = Url::parse(issuer)
            .map_err(|e| ConfigError::url("upstream issuer", issuer, e.to_string()))?;
        let doc = crate::metadata::discover(http, &url)
            .await
            .map_err(|e| ConfigError::invalid("upstream issuer", e.to_string()))?;
        let m = doc.metadata;
        let need = |value: Option<String>, name: &'static str| {
            value.ok_or_else(|| {
                ConfigError::invalid("upstream issuer", format!("its metadata has no {name}"))
            })
        };
        let authorize = need(m.authorization_endpoint, "authorization_endpoint")?;
        let token = need(m.token_endpoint, "token_endpoint")?;
        let jwks = need(m.jwks_uri, "jwks_uri")?;
        Ok(Self::builder(
            url.host_str().unwrap_or("OpenID provider").to_owned(),
            authorize,
            token,
            client_id,
        )
        .client_secret(client_secret)
        .identity(Identity::IdToken {
            issuer: m.issuer,
            jwks_url: jwks,
        })
        .http_client(http.clone()))
    }
}

impl UpstreamBuilder {
    /// Our client secret at the provider. An empty secret means none: a public client at the provider, PKCE only.
    pub fn client_secret(mut self, secret: impl Into<Secret>) -> Self {
        self.client_secret = Some(secret.into()).filter(|s| !s.expose().is_empty());
        self
    }

    /// The scopes asked of the provider.
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// An extra authorize parameter (`access_type=offline`, Auth0's `audience`, …).
    pub fn extra_authorize_param(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }

    /// How the user is identified.
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// The upstream authorization and token endpoints (for a local stand-in in tests).
    pub fn endpoints(
        mut self,
        authorization_endpoint: impl Into<String>,
        token_endpoint: impl Into<String>,
    ) -> Self {
        self.authorization_endpoint = authorization_endpoint.into();
        self.token_endpoint = token_endpoint.into();
        self
    }

    /// Client authentication at the token endpoint (default `client_secret_post`).
    pub fn token_auth(mut self, auth: UpstreamAuth) -> Self {
        self.auth = auth;
        self
    }

    /// PKCE on the upstream leg (default on; every provider here supports it).
    pub fn pkce(mut self, on: bool) -> Self {
        self.pkce = on;
        self
    }

    /// The HTTP client for the token exchange, keys and user API.
    pub fn http_client(mut self, http: HttpClient) -> Self {
        self.http = Some(http);
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// An endpoint is not an acceptable URL, or no identity source is set.
    pub fn build(self) -> Result<Upstream, ConfigError> {
        let http = match self.http {
            Some(http) => http,
            None => HttpClient::new()?,
        };
        let parse = |field: &'static str, value: &str| -> Result<Url, ConfigError> {
            let url =
                Url::parse(value).map_err(|e| ConfigError::url(field, value, e.to_string()))?;
            http.check_config_url(field, &url)?;
            Ok(url)
        };
        let authorization_endpoint = parse(
            "upstream authorization endpoint",
            &self.authorization_endpoint,
        )?;
        let token_endpoint = parse("upstream token endpoint", &self.token_endpoint)?;
        if self.client_id.trim().is_empty() {
            return Err(ConfigError::missing(
                "upstream client id",
                "register an application at the provider and pass its client id",
            ));
        }
        let verifier = match self.identity {
            Some(Identity::IdToken { issuer, jwks_url }) => Verifier::IdToken(
                JwtVerifier::builder()
                    .issuer(issuer)
                    .jwks_url(jwks_url)
                    .http_client(http.clone())
                    .build()?,
            ),
            Some(Identity::UserInfo { url }) => {
                Verifier::UserInfo(parse("upstream user-info URL", &url)?)
            }
            Some(Identity::AccessToken(verifier)) => Verifier::AccessToken(verifier),
            None => {
                return Err(ConfigError::missing(
                    "upstream identity",
                    "say how the user is identified: Identity::IdToken (OIDC), Identity::UserInfo or Identity::AccessToken",
                ));
            }
        };
        Ok(Upstream {
            name: self.name,
            authorization_endpoint,
            token_endpoint,
            client_id: self.client_id,
            client_secret: self.client_secret,
            scopes: self.scopes,
            extra: self.extra,
            auth: self.auth,
            pkce: self.pkce,
            verifier,
            http,
        })
    }
}

/// A pending upstream authorization, kept server-side under the hash of its `state`.
#[derive(Debug, Serialize, Deserialize)]
struct Transaction {
    request: AuthRequestRecord,
    verifier: String,
}

/// What the proxy keeps of the upstream tokens, sealed.
#[derive(Serialize, Deserialize)]
struct UpstreamTokens {
    access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
}

/// Why the upstream leg failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The provider refused or could not be reached.
    #[error("the identity provider: {0}")]
    Upstream(String),
    /// The provider's answer did not identify a user.
    #[error("the user could not be identified: {0}")]
    Identity(String),
    /// No upstream tokens for this grant (not a proxy grant, revoked, or expired).
    #[error("no upstream tokens for this grant")]
    NoTokens,
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
}

fn pkce_challenge(verifier: &str) -> String {
    b64(digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref())
}

/// Sends the browser to the provider, remembering the request under a fresh state, and
/// binds that state to this browser with a cookie.
pub(crate) async fn start(
    server: &AuthServer,
    upstream: &Upstream,
    request: AuthRequestRecord,
) -> Response {
    let state = random_token();
    let verifier = random_token();
    let record = Transaction {
        request,
        verifier: verifier.clone(),
    };
    let Ok(value) = serde_json::to_string(&record) else {
        return error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The sign-in could not be started.",
        );
    };
    let expires =
        now_unix() + i64::try_from(server.inner.lifetimes.request.as_secs()).unwrap_or(600);
    if let Err(err) = server
        .inner
        .store
        .put_entry(EntryKind::Transaction, &hash_hex(&state), value, expires)
        .await
    {
        return err.into_page();
    }
    let mut url = upstream.authorization_endpoint.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code");
        q.append_pair("client_id", &upstream.client_id);
        q.append_pair("redirect_uri", &server.endpoint(CALLBACK_PATH));
        q.append_pair("state", &state);
        if !upstream.scopes.is_empty() {
            q.append_pair("scope", &upstream.scopes.join(" "));
        }
        if upstream.pkce {
            q.append_pair("code_challenge", &pkce_challenge(&verifier));
            q.append_pair("code_challenge_method", "S256");
        }
        for (k, v) in &upstream.extra {
            q.append_pair(k, v);
        }
    }
    let mut response = super::authorize::found(url.as_str());
    append_cookie(
        &mut response,
        &binding_cookie(server, STATE_BINDING, &state, true),
    );
    response
}

/// `GET /oauth/callback`: the provider's answer.
pub(crate) async fn callback(
    State(server): State<AuthServer>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(upstream) = server.inner.upstream.clone() else {
        return error_page(
            StatusCode::NOT_FOUND,
            "This server does not sign in through another provider.",
        );
    };
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let Some(state) = params.get("state") else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The provider's answer has no state.",
        );
    };
    let taken = server
        .inner
        .store
        .take_entry(EntryKind::Transaction, &hash_hex(state))
        .await;
    let taken = match taken {
        Ok(taken) => taken,
        Err(err) => return err.into_page(),
    };
    let Some(tx) = taken.and_then(|v| serde_json::from_str::<Transaction>(&v).ok()) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in expired or was already completed. Start again from the application.",
        );
    };
    // The state is consumed whatever follows: an answer that arrives in another browser
    // (the upstream code of whoever signed in there) can never be completed later.
    let mut response = if is_bound(&server, &headers, STATE_BINDING, state) {
        complete(&server, &upstream, tx, &params).await
    } else {
        tracing::warn!(target: "mcp_oauth::proxy", client_id = %tx.request.client_id, "upstream callback refused: the sign-in was started in another browser");
        error_page(
            StatusCode::FORBIDDEN,
            "This sign-in was started in another browser, or this browser did not keep its \
             cookie. Nothing was shared. Start again from the application, in this browser.",
        )
    };
    append_cookie(
        &mut response,
        &binding_cookie(&server, STATE_BINDING, state, false),
    );
    response
}

/// The callback of a transaction started in this browser: the code exchanged upstream, the
/// user identified, then our code, or first the consent page when this user never allowed
/// this client.
async fn complete(
    server: &AuthServer,
    upstream: &Upstream,
    tx: Transaction,
    params: &HashMap<String, String>,
) -> Response {
    let request = tx.request;
    let fail = |error: &str, description: &str| {
        super::authorize::redirect_error(
            server,
            &request.redirect_uri,
            request.state.as_deref(),
            error,
            description,
        )
    };
    if let Some(error) = params.get("error") {
        tracing::info!(target: "mcp_oauth::proxy", %error, "the provider refused the sign-in");
        let code = if error == "access_denied" {
            "access_denied"
        } else {
            "server_error"
        };
        return fail(code, "the identity provider did not sign the user in");
    }
    let Some(code) = params.get("code") else {
        return fail("server_error", "the identity provider's answer has no code");
    };
    let (tokens, user) = match exchange(server, upstream, code, &tx.verifier).await {
        Ok(result) => result,
        Err(err) => {
            tracing::warn!(target: "mcp_oauth::proxy", error = %err, "upstream sign-in failed");
            return fail(
                "server_error",
                "the sign-in at the identity provider failed",
            );
        }
    };
    let family = random_token();
    let sealed = match seal_tokens(server, &family, &tokens) {
        Ok(sealed) => sealed,
        Err(err) => {
            tracing::error!(target: "mcp_oauth::proxy", error = %err, "cannot seal upstream tokens");
            return fail("temporarily_unavailable", "try again later");
        }
    };
    tracing::info!(target: "mcp_oauth::proxy", client_id = %request.client_id, subject = %user.subject, "upstream sign-in completed");
    if !server.inner.auto_approve && !has_consent(server, &user.subject, &request).await {
        return ask_consent(server, upstream, request, user, family, sealed).await;
    }
    if let Err(err) = store_tokens(server, &family, sealed).await {
        tracing::error!(target: "mcp_oauth::proxy", error = %err, "cannot store upstream tokens");
        return fail("temporarily_unavailable", "try again later");
    }
    super::authorize::approve(server, &request, user, Some(family)).await
}

fn form_or_json(body: &[u8]) -> Map<String, Value> {
    if let Ok(Value::Object(map)) = serde_json::from_slice(body) {
        return map;
    }
    // GitHub answers form-encoded unless asked for JSON.
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect()
}

async fn token_request(
    upstream: &Upstream,
    form: &[(&str, &str)],
) -> Result<Map<String, Value>, ProxyError> {
    let secret = upstream
        .client_secret
        .as_ref()
        .map(|s| String::from_utf8_lossy(s.expose()).into_owned());
    let mut fields: Vec<(&str, &str)> = form.to_vec();
    let auth = match (upstream.auth, &secret) {
        (UpstreamAuth::Basic, Some(secret)) => RequestAuth::Basic(&upstream.client_id, secret),
        (_, secret) => {
            fields.push(("client_id", &upstream.client_id));
            if let Some(secret) = secret {
                fields.push(("client_secret", secret));
            }
            RequestAuth::None
        }
    };
    let fetched = upstream
        .http
        .post_form(&upstream.token_endpoint, &fields, auth)
        .await
        .map_err(|e| ProxyError::Upstream(e.kind.to_string()))?;
    let answer = form_or_json(&fetched.body);
    if let Some(error) = answer.get("error").and_then(Value::as_str) {
        return Err(ProxyError::Upstream(format!(
            "token endpoint error {error}"
        )));
    }
    Ok(answer)
}

fn tokens_from(
    answer: &Map<String, Value>,
    previous_refresh: Option<String>,
) -> Result<UpstreamTokens, ProxyError> {
    let access_token = answer
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or_else(|| ProxyError::Upstream("no access_token in the answer".into()))?
        .to_owned();
    let expires_at = answer
        .get("expires_in")
        .and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .map(|secs| now_unix() + secs);
    let refresh_token = answer
        .get("refresh_token")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or(previous_refresh);
    Ok(UpstreamTokens {
        access_token,
        refresh_token,
        expires_at,
    })
}

async fn exchange(
    server: &AuthServer,
    upstream: &Upstream,
    code: &str,
    verifier: &str,
) -> Result<(UpstreamTokens, UserIdentity), ProxyError> {
    let redirect_uri = server.endpoint(CALLBACK_PATH);
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri.as_str()),
    ];
    if upstream.pkce {
        form.push(("code_verifier", verifier));
    }
    let answer = token_request(upstream, &form).await?;
    let tokens = tokens_from(&answer, None)?;
    let user = identify(upstream, &answer, &tokens.access_token).await?;
    Ok((tokens, user))
}

/// The identity claims kept from the provider.
fn user_from(claims: &Map<String, Value>, subject: String) -> UserIdentity {
    let mut out = Map::new();
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .map(|s| Value::String(s.to_owned()))
    };
    for (from, to) in [
        ("email", "email"),
        ("name", "name"),
        ("preferred_username", "preferred_username"),
        ("login", "preferred_username"),
        ("picture", "picture"),
        ("avatar_url", "picture"),
    ] {
        if let Some(value) = text(from) {
            out.entry(to.to_owned()).or_insert(value);
        }
    }
    if let Some(verified) = claims.get("email_verified").filter(|v| v.is_boolean()) {
        out.insert("email_verified".into(), verified.clone());
    }
    UserIdentity {
        subject,
        claims: out,
    }
}

async fn identify(
    upstream: &Upstream,
    answer: &Map<String, Value>,
    access_token: &str,
) -> Result<UserIdentity, ProxyError> {
    match &upstream.verifier {
        Verifier::IdToken(verifier) => {
            let id_token = answer
                .get("id_token")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ProxyError::Identity(
                        "no id_token in the answer (is the openid scope asked?)".into(),
                    )
                })?;
            let claims = verifier
                .verify(id_token)
                .await
                .map_err(|e| ProxyError::Identity(e.to_string()))?;
            let for_us = claims
                .audiences()
                .map_err(|e| ProxyError::Identity(e.to_string()))?
                .contains(&upstream.client_id.as_str());
            if !for_us {
                return Err(ProxyError::Identity(
                    "the id_token was issued to another client".into(),
                ));
            }
            check_times(&claims, now_unix(), Duration::from_secs(60), true)
                .map_err(|e| ProxyError::Identity(e.to_string()))?;
            let subject = claims
                .sub()
                .ok_or_else(|| ProxyError::Identity("the id_token has no sub".into()))?
                .to_owned();
            Ok(user_from(claims.as_map(), subject))
        }
        Verifier::UserInfo(url) => {
            let fetched = upstream
                .http
                .get_json_with(url, RequestAuth::Bearer(access_token))
                .await
                .map_err(|e| ProxyError::Identity(format!("user API: {}", e.kind)))?;
            let Ok(Value::Object(user)) = serde_json::from_slice::<Value>(&fetched.body) else {
                return Err(ProxyError::Identity(
                    "the user API answer is not a JSON object".into(),
                ));
            };
            let subject = match (user.get("id"), user.get("sub")) {
                (Some(Value::Number(n)), _) => n.to_string(),
                (Some(Value::String(s)), _) | (None, Some(Value::String(s))) => s.clone(),
                _ => return Err(ProxyError::Identity("the user API answer has no id".into())),
            };
            Ok(user_from(&user, subject))
        }
        Verifier::AccessToken(verifier) => {
            let claims: Claims = verifier
                .verify(access_token)
                .await
                .map_err(|e| ProxyError::Identity(e.to_string()))?;
            let subject = claims
                .sub()
                .ok_or_else(|| ProxyError::Identity("the access token has no sub".into()))?
                .to_owned();
            Ok(user_from(claims.as_map(), subject))
        }
    }
}

/// The upstream tokens sealed for their grant family.
fn seal_tokens(
    server: &AuthServer,
    family: &str,
    tokens: &UpstreamTokens,
) -> Result<String, ProxyError> {
    let sealer = server.inner.sealer.as_ref().ok_or(ProxyError::NoTokens)?;
    let plain = serde_json::to_vec(tokens).map_err(|e| ProxyError::Store(e.to_string()))?;
    sealer
        .seal(&plain, family)
        .ok_or_else(|| ProxyError::Store("sealing failed".into()))
}

async fn save_tokens(
    server: &AuthServer,
    family: &str,
    tokens: &UpstreamTokens,
) -> Result<(), ProxyError> {
    let sealed = seal_tokens(server, family, tokens)?;
    store_tokens(server, family, sealed).await
}

async fn store_tokens(server: &AuthServer, family: &str, sealed: String) -> Result<(), ProxyError> {
    let until = now_unix()
        + i64::try_from(server.inner.lifetimes.refresh_token.as_secs()).unwrap_or(i64::MAX / 2);
    server
        .inner
        .store
        .put_entry(
            EntryKind::UpstreamTokens,
            family,
            json!({ "sealed": sealed }).to_string(),
            until,
        )
        .await
        .map_err(|e| ProxyError::Store(e.to_string()))
}

/// The upstream access token of a grant, refreshed at the provider first when it expired
/// (and a refresh token was issued). Concurrent calls for one grant in this process refresh
/// once: the others wait and read the renewed tokens.
pub(crate) async fn upstream_token(
    server: &AuthServer,
    family: &str,
) -> Result<Secret, ProxyError> {
    let Some(upstream) = &server.inner.upstream else {
        return Err(ProxyError::NoTokens);
    };
    let tokens = load_tokens(server, family).await?;
    if is_fresh(&tokens) {
        return Ok(Secret::from(tokens.access_token));
    }
    let lock = server
        .inner
        .upstream_refreshes
        .get_with(family.to_owned(), || Arc::new(tokio::sync::Mutex::new(())));
    let _guard = lock.lock().await;
    // Another call may have refreshed while this one waited.
    let tokens = load_tokens(server, family).await?;
    if is_fresh(&tokens) {
        return Ok(Secret::from(tokens.access_token));
    }
    let Some(refresh) = tokens.refresh_token.clone() else {
        return Err(ProxyError::Upstream(
            "the upstream token expired and the provider issued no refresh token: the user signs in again".into(),
        ));
    };
    let answer = token_request(
        upstream,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await?;
    let renewed = tokens_from(&answer, Some(refresh))?;
    save_tokens(server, family, &renewed).await?;
    Ok(Secret::from(renewed.access_token))
}

/// Valid for at least 30 more seconds, or without a stated expiry (GitHub OAuth app tokens).
fn is_fresh(tokens: &UpstreamTokens) -> bool {
    tokens.expires_at.is_none_or(|exp| exp > now_unix() + 30)
}

/// The sealed upstream tokens of a live grant, opened.
async fn load_tokens(server: &AuthServer, family: &str) -> Result<UpstreamTokens, ProxyError> {
    let Some(sealer) = &server.inner.sealer else {
        return Err(ProxyError::NoTokens);
    };
    if server
        .inner
        .store
        .is_family_revoked(family)
        .await
        .map_err(|e| ProxyError::Store(e.to_string()))?
    {
        return Err(ProxyError::NoTokens);
    }
    let entry = server
        .inner
        .store
        .entry(EntryKind::UpstreamTokens, family)
        .await
        .map_err(|e| ProxyError::Store(e.to_string()))?
        .ok_or(ProxyError::NoTokens)?;
    let sealed = serde_json::from_str::<Value>(&entry)
        .ok()
        .and_then(|v| v.get("sealed").and_then(Value::as_str).map(str::to_owned))
        .ok_or(ProxyError::NoTokens)?;
    let plain = sealer.open(&sealed, family).ok_or_else(|| {
        ProxyError::Store("the sealed tokens do not open (another encryption key?)".into())
    })?;
    serde_json::from_slice(&plain).map_err(|e| ProxyError::Store(e.to_string()))
}

/// The consent cookie's name.
pub(crate) fn consent_cookie_name(server: &AuthServer) -> &'static str {
    if server.inner.secure_cookies {
        "__Host-mcp_oauth_consent"
    } else {
        "mcp_oauth_consent"
    }
}

/// Client ids this browser approved (still valid), from the signed consent cookie.
pub(crate) fn approved_clients(server: &AuthServer, cookie: Option<&str>) -> Vec<(String, i64)> {
    let (Some(sealer), Some(cookie)) = (&server.inner.sealer, cookie) else {
        return Vec::new();
    };
    let now = now_unix();
    sealer
        .verify_cookie(cookie)
        .and_then(|payload| serde_json::from_slice::<Vec<(String, i64)>>(&payload).ok())
        .map(|list| list.into_iter().filter(|(_, until)| *until > now).collect())
        .unwrap_or_default()
}

/// The `Set-Cookie` value remembering consent for `client_id` in this browser.
pub(crate) fn consent_cookie(
    server: &AuthServer,
    mut approved: Vec<(String, i64)>,
    client_id: &str,
) -> Option<String> {
    let sealer = server.inner.sealer.as_ref()?;
    let ttl = i64::try_from(server.inner.consent_ttl.as_secs()).unwrap_or(0);
    approved.retain(|(id, _)| id != client_id);
    approved.push((client_id.to_owned(), now_unix() + ttl));
    // Keep the cookie small: the 20 most recent approvals.
    let skip = approved.len().saturating_sub(20);
    let approved: Vec<(String, i64)> = approved.into_iter().skip(skip).collect();
    let payload = serde_json::to_vec(&approved).ok()?;
    let secure = if server.inner.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    Some(format!(
        "{}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={ttl}{secure}",
        consent_cookie_name(server),
        sealer.sign_cookie(&payload)
    ))
}
