//! RFC 7662 token introspection, for opaque access tokens.

use std::time::Duration;

use url::Url;

use super::{BoxFuture, TokenVerifier};
use crate::claims::{Claims, check_issuer};
use crate::error::{ConfigError, FetchErrorKind, VerifyError};
use crate::fetch::{HttpClient, RequestAuth};
use crate::protocol::ClientCredentials;
use crate::secret::Secret;

/// How the resource server authenticates to the introspection endpoint.
#[derive(Debug, Clone)]
enum EndpointAuth {
    /// As an OAuth client (RFC 7662 §2.1).
    Client(ClientCredentials),
    /// A bearer token for the endpoint (some servers protect introspection that way).
    Bearer(Secret),
    /// No authentication.
    None,
}

/// Verifies opaque tokens by asking the authorization server (RFC 7662).
///
/// `active: true` is required; `iss`, when configured and present in the answer, must match.
/// The shared rules then apply as for any verifier, **audience binding included**: an
/// introspection answer without an `aud` naming this resource is refused unless audience
/// binding is relaxed on the [`OAuthBuilder`](crate::OAuthBuilder). `exp` is optional here
/// (the endpoint is the authority), and answers are cached for at most 60 seconds by
/// default so that revocation takes effect quickly.
pub struct IntrospectionVerifier {
    endpoint: Url,
    auth: EndpointAuth,
    issuer: Option<String>,
    client: HttpClient,
    cache_ttl: Duration,
    requires_exp: bool,
}

impl std::fmt::Debug for IntrospectionVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionVerifier")
            .field("endpoint", &self.endpoint.as_str())
            .field("issuer", &self.issuer)
            .field("cache_ttl", &self.cache_ttl)
            .finish_non_exhaustive()
    }
}

/// Builds an [`IntrospectionVerifier`].
#[must_use]
#[derive(Debug)]
pub struct IntrospectionVerifierBuilder {
    endpoint: String,
    auth: EndpointAuth,
    issuer: Option<String>,
    client: Option<HttpClient>,
    cache_ttl: Duration,
    requires_exp: bool,
}

impl IntrospectionVerifier {
    /// A builder for the endpoint URL.
    pub fn builder(endpoint: impl Into<String>) -> IntrospectionVerifierBuilder {
        IntrospectionVerifierBuilder {
            endpoint: endpoint.into(),
            auth: EndpointAuth::None,
            issuer: None,
            client: None,
            cache_ttl: Duration::from_secs(60),
            requires_exp: false,
        }
    }

    async fn introspect<'a>(&'a self, token: &'a str) -> Result<Claims, VerifyError> {
        let mut form: Vec<(&str, &str)> =
            vec![("token", token), ("token_type_hint", "access_token")];
        let auth = match &self.auth {
            EndpointAuth::Client(client) => client.authenticate(&mut form),
            EndpointAuth::Bearer(token) => {
                RequestAuth::Bearer(std::str::from_utf8(token.expose()).unwrap_or_default())
            }
            EndpointAuth::None => RequestAuth::None,
        };
        let fetched = self.client.post_form(&self.endpoint, &form, auth).await.map_err(|err| {
            tracing::warn!(target: "mcp_oauth::introspection", error = %err, "introspection failed");
            match err.kind {
                FetchErrorKind::Status(400) => VerifyError::Refused("introspection refused the request".into()),
                _ => VerifyError::Unavailable("introspection endpoint unavailable".into()),
            }
        })?;
        let mut claims = Claims::from_json_slice(&fetched.body)
            .map_err(|_| {
                VerifyError::Unavailable("introspection answer is not a JSON object".into())
            })?
            .into_map();
        if claims.remove("active") != Some(serde_json::Value::Bool(true)) {
            return Err(VerifyError::Inactive);
        }
        let claims = Claims::new(claims);
        if let Some(issuer) = &self.issuer
            && claims.iss().is_some()
        {
            check_issuer(&claims, issuer)?;
        }
        Ok(claims)
    }
}

impl TokenVerifier for IntrospectionVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Claims, VerifyError>> {
        Box::pin(self.introspect(token))
    }

    fn requires_exp(&self) -> bool {
        self.requires_exp
    }

    fn max_cache_ttl(&self) -> Option<Duration> {
        Some(self.cache_ttl)
    }
}

impl IntrospectionVerifierBuilder {
    /// Authenticates to the endpoint as this OAuth client (RFC 7662 §2.1): HTTP Basic by
    /// default, or the method [`ClientCredentials::with_method`] says. Default: no
    /// authentication.
    pub fn client(mut self, client: ClientCredentials) -> Self {
        self.auth = EndpointAuth::Client(client);
        self
    }

    /// Shorthand for [`IntrospectionVerifierBuilder::client`] with
    /// [`ClientCredentials::new`] (`client_secret_basic`).
    pub fn client_credentials(
        self,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> Self {
        self.client(ClientCredentials::new(client_id, client_secret))
    }

    /// Authenticates to the endpoint with a bearer token instead (some servers protect
    /// introspection that way).
    pub fn bearer_token(mut self, token: impl Into<Secret>) -> Self {
        self.auth = EndpointAuth::Bearer(token.into());
        self
    }

    /// The issuer an answer's `iss`, when present, must equal.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Longest time an answer is reused. Default is 60 seconds; `Duration::ZERO` disables.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Refuse answers without `exp`. Default: off.
    pub fn require_exp(mut self) -> Self {
        self.requires_exp = true;
        self
    }

    /// The HTTP client (default: [`HttpClient::new`]).
    pub fn http_client(mut self, client: HttpClient) -> Self {
        self.client = Some(client);
        self
    }

    /// Builds the verifier.
    ///
    /// # Errors
    ///
    /// The endpoint is not a URL the client may call.
    pub fn build(self) -> Result<IntrospectionVerifier, ConfigError> {
        let endpoint = Url::parse(&self.endpoint).map_err(|e| {
            ConfigError::url("introspection endpoint", &self.endpoint, e.to_string())
        })?;
        let client = match self.client {
            Some(client) => client,
            None => HttpClient::new()?,
        };
        client.check_config_url("introspection endpoint", &endpoint)?;
        Ok(IntrospectionVerifier {
            endpoint,
            auth: self.auth,
            issuer: self.issuer,
            client,
            cache_ttl: self.cache_ttl,
            requires_exp: self.requires_exp,
        })
    }
}
