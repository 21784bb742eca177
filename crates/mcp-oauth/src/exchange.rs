//! A verified caller's token exchanged for one meant for another service: RFC 8693 token
//! exchange, or the RFC 7523 JWT-bearer grant in Microsoft Entra's on-behalf-of shape.
//!
//! A server (or the gateway) that calls another API *as the user* must not pass the user's
//! token on: it was issued for this server (its audience is this server), and a server that
//! accepts tokens meant for others is the confused deputy RFC 8707 and the MCP specification
//! forbid. Instead it asks the authorization server for a token with the other service's
//! audience, presenting the user's token as the subject:
//!
//! ```text
//! POST {token_endpoint}                      (client authentication: ClientCredentials)
//! grant_type=urn:ietf:params:oauth:grant-type:token-exchange
//! subject_token=<the caller's access token>
//! subject_token_type=urn:ietf:params:oauth:token-type:access_token
//! requested_token_type=urn:ietf:params:oauth:token-type:access_token
//! audience=<the other service> & resource=<its URL> & scope=<its scopes>
//! ```
//!
//! Answers are reused per caller (subject, client and scopes of the verified token) until
//! shortly before they expire; concurrent requests of one caller make one exchange. A refusal
//! is not remembered (the next request asks again), nor is an outage.
//!
//! ```no_run
//! use mcp_oauth::exchange::TokenExchange;
//! use mcp_oauth::protocol::ClientCredentials;
//!
//! # async fn demo(auth: mcp_oauth::Auth) -> Result<(), Box<dyn std::error::Error>> {
//! let exchange = TokenExchange::builder("https://auth.example.com/oauth/token")
//!     .client(ClientCredentials::new("mcp-server", std::env::var("CLIENT_SECRET")?))
//!     .audience("https://api.example.com")
//!     .scopes(["files:read"])
//!     .build()?;
//! let token = exchange.exchange(&auth).await?;
//! // `Authorization: Bearer {token.access_token()}` on the request to api.example.com.
//! # let _ = token; Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use url::Url;

use crate::auth::Auth;
use crate::claims::now_unix;
use crate::error::{ConfigError, FetchErrorKind};
use crate::fetch::HttpClient;
use crate::protocol::ClientCredentials;
use crate::secret::Secret;

/// RFC 8693 §3: the token type of an OAuth 2.0 access token.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// RFC 8693 §3: a JWT (some servers issue exchanged access tokens as this type).
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// RFC 8693 §2.1: the token-exchange grant type.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 7523 §2.1: the JWT-bearer grant type (Entra's on-behalf-of flow).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How long before its expiry an exchanged token is no longer handed out: 30 seconds.
pub const DEFAULT_EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// How long an exchanged token without `expires_in` is reused at most: 5 minutes.
pub const DEFAULT_MAX_REUSE: Duration = Duration::from_secs(300);

/// Which grant asks for the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExchangeGrant {
    /// RFC 8693 token exchange (the default).
    TokenExchange,
    /// RFC 7523 JWT-bearer with `requested_token_use=on_behalf_of`: Microsoft Entra's
    /// on-behalf-of flow. The caller's token must be a JWT; the audience is in the scopes
    /// (`api://<app>/.default`).
    OnBehalfOf,
}

/// A token obtained for the other service.
#[derive(Clone)]
pub struct ExchangedToken {
    access_token: Secret,
    expires_at: Option<i64>,
    scope: Option<String>,
    issued_token_type: Option<String>,
}

impl std::fmt::Debug for ExchangedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangedToken")
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .field("issued_token_type", &self.issued_token_type)
            .finish_non_exhaustive()
    }
}

impl ExchangedToken {
    /// The access token, for `Authorization: Bearer …` on the other service.
    pub fn access_token(&self) -> &str {
        std::str::from_utf8(self.access_token.expose()).unwrap_or_default()
    }

    /// When it expires (Unix seconds), if the authorization server said.
    pub fn expires_at(&self) -> Option<i64> {
        self.expires_at
    }

    /// The scopes granted, if the authorization server said (RFC 8693 §2.2.1).
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The `issued_token_type` of an RFC 8693 answer.
    pub fn issued_token_type(&self) -> Option<&str> {
        self.issued_token_type.as_deref()
    }
}

/// Why no token was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExchangeError {
    /// The authorization server refused the exchange (a 4xx answer, RFC 6749 §5.2): this
    /// caller's token cannot be exchanged (`invalid_grant`), the client may not exchange
    /// (`unauthorized_client`, `invalid_client`), or the target is unknown (`invalid_target`).
    Refused {
        /// The HTTP status.
        status: u16,
        /// The OAuth error code (`invalid_request` when the answer had none).
        error: String,
        /// The `error_description`, if any.
        description: Option<String>,
    },
    /// The authorization server could not be reached, or failed (5xx, timeout): try later.
    Unavailable(String),
    /// The answer is not a usable token: not JSON, no `access_token`, a token type other than
    /// `Bearer`, an `issued_token_type` that is not an access token.
    InvalidAnswer(String),
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused {
                status,
                error,
                description,
            } => {
                write!(f, "the token exchange was refused ({status} {error}")?;
                if let Some(description) = description {
                    write!(f, ": {description}")?;
                }
                f.write_str(")")
            }
            Self::Unavailable(why) => write!(f, "the token exchange is unavailable: {why}"),
            Self::InvalidAnswer(why) => {
                write!(f, "the token exchange answer is not usable: {why}")
            }
        }
    }
}

impl std::error::Error for ExchangeError {}

/// One caller's reusable answer, and the lock that makes one exchange at a time for them.
type Slot = Arc<tokio::sync::Mutex<Option<ExchangedToken>>>;

/// Exchanges verified callers' tokens for tokens meant for one other service. Cheap to
/// clone; clones share the reuse cache.
#[derive(Clone)]
pub struct TokenExchange {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Url,
    client: ClientCredentials,
    grant: ExchangeGrant,
    audiences: Vec<String>,
    resources: Vec<String>,
    scope: Option<String>,
    http: HttpClient,
    margin: Duration,
    max_reuse: Duration,
    slots: moka::sync::Cache<String, Slot>,
}

impl std::fmt::Debug for TokenExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenExchange")
            .field("endpoint", &self.inner.endpoint.as_str())
            .field("client", &self.inner.client)
            .field("grant", &self.inner.grant)
            .field("audiences", &self.inner.audiences)
            .field("resources", &self.inner.resources)
            .field("scope", &self.inner.scope)
            .finish_non_exhaustive()
    }
}

/// Configures a [`TokenExchange`].
#[must_use]
#[derive(Debug)]
pub struct TokenExchangeBuilder {
    endpoint: String,
    client: Option<ClientCredentials>,
    grant: ExchangeGrant,
    audiences: Vec<String>,
    resources: Vec<String>,
    scopes: Vec<String>,
    http: Option<HttpClient>,
    margin: Duration,
    max_reuse: Duration,
    max_callers: u64,
}

impl TokenExchange {
    /// A builder for the authorization server's token endpoint.
    pub fn builder(token_endpoint: impl Into<String>) -> TokenExchangeBuilder {
        TokenExchangeBuilder {
            endpoint: token_endpoint.into(),
            client: None,
            grant: ExchangeGrant::TokenExchange,
            audiences: Vec::new(),
            resources: Vec::new(),
            scopes: Vec::new(),
            http: None,
            margin: DEFAULT_EXPIRY_MARGIN,
            max_reuse: DEFAULT_MAX_REUSE,
            max_callers: 10_000,
        }
    }

    /// A token for the other service, for this verified caller: reused while it has more
    /// than the margin left, else exchanged (one exchange at a time per caller).
    ///
    /// # Errors
    ///
    /// The authorization server refused, failed or answered something unusable.
    pub async fn exchange(&self, caller: &Auth) -> Result<ExchangedToken, ExchangeError> {
        let slot = self.inner.slots.get_with(caller_key(caller), Slot::default);
        let mut reusable = slot.lock().await;
        if let Some(token) = reusable.as_ref()
            && self.reusable(token, now_unix())
        {
            return Ok(token.clone());
        }
        *reusable = None;
        let token = self.request(caller.access_token.secret()).await?;
        if self.reusable(&token, now_unix()) {
            *reusable = Some(token.clone());
        }
        Ok(token)
    }

    /// Forgets this caller's token (after the other service refused it, say).
    pub fn forget(&self, caller: &Auth) {
        self.inner.slots.invalidate(&caller_key(caller));
    }

    fn reusable(&self, token: &ExchangedToken, now: i64) -> bool {
        let margin = i64::try_from(self.inner.margin.as_secs()).unwrap_or(i64::MAX);
        token.expires_at.is_some_and(|exp| exp - margin > now)
    }

    async fn request(&self, subject_token: &str) -> Result<ExchangedToken, ExchangeError> {
        let inner = &*self.inner;
        let mut form: Vec<(&str, &str)> = match inner.grant {
            ExchangeGrant::TokenExchange => vec![
                ("grant_type", TOKEN_EXCHANGE_GRANT),
                ("subject_token", subject_token),
                ("subject_token_type", ACCESS_TOKEN_TYPE),
                ("requested_token_type", ACCESS_TOKEN_TYPE),
            ],
            ExchangeGrant::OnBehalfOf => vec![
                ("grant_type", JWT_BEARER_GRANT),
                ("assertion", subject_token),
                ("requested_token_use", "on_behalf_of"),
            ],
        };
        form.extend(inner.audiences.iter().map(|a| ("audience", a.as_str())));
        form.extend(inner.resources.iter().map(|r| ("resource", r.as_str())));
        if let Some(scope) = &inner.scope {
            form.push(("scope", scope));
        }
        let auth = inner.client.authenticate(&mut form);
        let (status, answer) = inner
            .http
            .post_form_answer(&inner.endpoint, &form, auth)
            .await
            .map_err(|e| match e.kind {
                FetchErrorKind::TooLarge { limit } => {
                    ExchangeError::InvalidAnswer(format!("the answer is larger than {limit} bytes"))
                }
                kind => ExchangeError::Unavailable(kind.to_string()),
            })?;
        let body = crate::claims::parse_json_object(&answer.body).ok();
        match status {
            200 => {}
            400..=499 => {
                let text = |name: &str| {
                    body.as_ref()
                        .and_then(|b| b.get(name))
                        .and_then(Value::as_str)
                        .map(|s| s.chars().take(200).collect::<String>())
                };
                return Err(ExchangeError::Refused {
                    status,
                    error: text("error").unwrap_or_else(|| "invalid_request".to_owned()),
                    description: text("error_description"),
                });
            }
            status => {
                return Err(ExchangeError::Unavailable(format!(
                    "the token endpoint answered {status}"
                )));
            }
        }
        let body =
            body.ok_or_else(|| ExchangeError::InvalidAnswer("not a JSON object".to_owned()))?;
        token_from(&body, inner.max_reuse)
    }
}

/// Who the answer may be reused for: the same subject, through the same client, with the
/// same scopes (a token exchanged for a more privileged client of the same user is not
/// handed to a less privileged one).
fn caller_key(caller: &Auth) -> String {
    let mut scopes = caller.scopes.clone();
    scopes.sort_unstable();
    format!(
        "{}\u{0}{}\u{0}{}",
        caller.subject(),
        caller.client_id.as_deref().unwrap_or_default(),
        scopes.join(" ")
    )
}

/// The token of a 200 answer (RFC 6749 §5.1, RFC 8693 §2.2.1).
fn token_from(
    body: &Map<String, Value>,
    max_reuse: Duration,
) -> Result<ExchangedToken, ExchangeError> {
    let invalid = |why: &str| ExchangeError::InvalidAnswer(why.to_owned());
    let access_token = body
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("no access_token"))?;
    let token_type = body.get("token_type").and_then(Value::as_str);
    if !token_type.is_some_and(|t| t.eq_ignore_ascii_case("bearer")) {
        return Err(ExchangeError::InvalidAnswer(format!(
            "token_type is {}, not Bearer (a DPoP-bound or non-access token cannot be sent as a bearer token)",
            token_type.map_or_else(|| "missing".to_owned(), |t| format!("{t:?}"))
        )));
    }
    let issued_token_type = body.get("issued_token_type").and_then(Value::as_str);
    if let Some(issued) = issued_token_type
        && issued != ACCESS_TOKEN_TYPE
        && issued != JWT_TOKEN_TYPE
    {
        return Err(ExchangeError::InvalidAnswer(format!(
            "issued_token_type {issued:?} is not an access token"
        )));
    }
    let now = now_unix();
    let max_reuse = i64::try_from(max_reuse.as_secs()).unwrap_or(i64::MAX);
    let expires_at = match body.get("expires_in") {
        None | Some(Value::Null) => now.checked_add(max_reuse),
        Some(value) => {
            let secs = value
                .as_i64()
                .filter(|s| *s >= 0)
                .ok_or_else(|| invalid("expires_in is not a number of seconds"))?;
            now.checked_add(secs)
        }
    };
    Ok(ExchangedToken {
        access_token: Secret::from(access_token),
        expires_at,
        scope: body.get("scope").and_then(Value::as_str).map(str::to_owned),
        issued_token_type: issued_token_type.map(str::to_owned),
    })
}

impl TokenExchangeBuilder {
    /// How this server authenticates to the token endpoint. Required: an exchange is made by
    /// a known client.
    pub fn client(mut self, client: ClientCredentials) -> Self {
        self.client = Some(client);
        self
    }

    /// The grant (default [`ExchangeGrant::TokenExchange`]).
    pub fn grant(mut self, grant: ExchangeGrant) -> Self {
        self.grant = grant;
        self
    }

    /// A logical name of the other service (RFC 8693 `audience`); may be repeated.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The other service's URL (RFC 8707 `resource`); may be repeated.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resources.push(resource.into());
        self
    }

    /// The scopes to ask for.
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// The HTTP client (default: [`HttpClient::new`], https only except loopback).
    pub fn http_client(mut self, http: HttpClient) -> Self {
        self.http = Some(http);
        self
    }

    /// How long before its expiry a token is exchanged again (default 30 s).
    pub fn expiry_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// How long a token without `expires_in` is reused (default 5 minutes;
    /// `Duration::ZERO`: not reused).
    pub fn max_reuse(mut self, max_reuse: Duration) -> Self {
        self.max_reuse = max_reuse;
        self
    }

    /// How many callers' tokens are kept at most (default 10,000; the least recently used
    /// go first).
    pub fn max_callers(mut self, max_callers: u64) -> Self {
        self.max_callers = max_callers;
        self
    }

    /// Builds it.
    ///
    /// # Errors
    ///
    /// The endpoint is not an absolute URL, no client is configured, the on-behalf-of grant
    /// has audiences or resources (Entra takes the target in the scopes), or no target at all
    /// is named.
    pub fn build(self) -> Result<TokenExchange, ConfigError> {
        let endpoint = Url::parse(&self.endpoint).map_err(|e| {
            ConfigError::invalid("token exchange endpoint", format!("{}: {e}", self.endpoint))
        })?;
        let client = self.client.ok_or_else(|| {
            ConfigError::invalid(
                "token exchange",
                "no client: set .client(ClientCredentials::new(id, secret))",
            )
        })?;
        if self.grant == ExchangeGrant::OnBehalfOf
            && !(self.audiences.is_empty() && self.resources.is_empty())
        {
            return Err(ConfigError::invalid(
                "token exchange",
                "the on-behalf-of grant names its target in the scopes (api://<app>/.default), not in audience or resource",
            ));
        }
        if self.audiences.is_empty() && self.resources.is_empty() && self.scopes.is_empty() {
            return Err(ConfigError::invalid(
                "token exchange",
                "no target: set .audience(..), .resource(..) or .scopes(..), or the token would be issued for this server again",
            ));
        }
        let http = match self.http {
            Some(http) => http,
            None => HttpClient::new()?,
        };
        Ok(TokenExchange {
            inner: Arc::new(Inner {
                endpoint,
                client,
                grant: self.grant,
                audiences: self.audiences,
                resources: self.resources,
                scope: (!self.scopes.is_empty()).then(|| self.scopes.join(" ")),
                http,
                margin: self.margin,
                max_reuse: self.max_reuse,
                slots: moka::sync::Cache::builder()
                    .max_capacity(self.max_callers)
                    .time_to_idle(Duration::from_secs(3600))
                    .build(),
            }),
        })
    }
}
