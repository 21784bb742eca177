//! An upstream identity provider (proxy mode): how it is configured ([`UpstreamBuilder`], the
//! presets for Google, GitHub, Okta, Entra ID and any OIDC issuer), how the proxy learns who
//! signed in ([`Identity`]) and authenticates to it ([`UpstreamAuth`]), and its token
//! endpoint.

use std::sync::Arc;

use serde_json::{Map, Value};
use url::Url;

use super::protocol::ClientAuthMethod;
use crate::error::ConfigError;
use crate::fetch::{HttpClient, RequestAuth};
use crate::secret::Secret;
use crate::verify::{JwtVerifier, TokenVerifier};

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

impl UpstreamAuth {
    /// The client authentication method this names.
    pub(crate) const fn method(self) -> ClientAuthMethod {
        match self {
            Self::Post => ClientAuthMethod::ClientSecretPost,
            Self::Basic => ClientAuthMethod::ClientSecretBasic,
        }
    }
}

pub(crate) enum Verifier {
    IdToken(JwtVerifier),
    UserInfo(Url),
    AccessToken(Arc<dyn TokenVerifier>),
}

/// An upstream identity provider, ready to use.
pub struct Upstream {
    pub(crate) name: String,
    pub(crate) authorization_endpoint: Url,
    pub(crate) token_endpoint: Url,
    pub(crate) client_id: String,
    pub(crate) client_secret: Option<Secret>,
    pub(crate) scopes: Vec<String>,
    pub(crate) extra: Vec<(String, String)>,
    pub(crate) auth: UpstreamAuth,
    pub(crate) pkce: bool,
    pub(crate) verifier: Verifier,
    pub(crate) http: HttpClient,
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

fn form_or_json(body: &[u8]) -> Map<String, Value> {
    if let Ok(Value::Object(map)) = serde_json::from_slice(body) {
        return map;
    }
    // GitHub answers form-encoded unless asked for JSON.
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect()
}

/// A request to the provider's token endpoint, authenticated as the upstream client.
pub(crate) async fn token_request(
    upstream: &Upstream,
    form: &[(&str, &str)],
) -> Result<Map<String, Value>, ProxyError> {
    let secret = upstream
        .client_secret
        .as_ref()
        .map(|s| String::from_utf8_lossy(s.expose()).into_owned());
    let mut fields: Vec<(&str, &str)> = form.to_vec();
    let auth = match (upstream.auth.method(), &secret) {
        (ClientAuthMethod::ClientSecretBasic, Some(secret)) => {
            RequestAuth::Basic(&upstream.client_id, secret)
        }
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
