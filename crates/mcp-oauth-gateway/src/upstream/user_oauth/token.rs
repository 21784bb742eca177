//! The upstream authorization server's token endpoint: the refresh grant (and the code grant
//! of the consent), with the gateway's client credentials there.

use std::sync::Arc;
use std::time::Duration;

use mcp_oauth::Secret;
use mcp_oauth::net_guard::NetGuard;
use serde_json::{Map, Value};

use super::grant::UpstreamGrant;
use super::pinned::PinnedClient;

/// Largest token endpoint answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// How the gateway authenticates at the upstream's token endpoint.
#[derive(Clone)]
pub struct ClientAuth {
    pub(crate) client_id: String,
    secret: Option<Secret>,
    basic: bool,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("client_id", &self.client_id)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("basic", &self.basic)
            .finish()
    }
}

impl ClientAuth {
    /// A confidential client, with HTTP Basic (`client_secret_basic`).
    pub fn basic(client_id: impl Into<String>, secret: impl Into<Secret>) -> Self {
        Self {
            client_id: client_id.into(),
            secret: Some(secret.into()),
            basic: true,
        }
    }

    /// A confidential client, with the secret in the form (`client_secret_post`).
    pub fn post(client_id: impl Into<String>, secret: impl Into<Secret>) -> Self {
        Self {
            client_id: client_id.into(),
            secret: Some(secret.into()),
            basic: false,
        }
    }

    /// A public client (`none`): its id alone, PKCE protects the code.
    pub fn public(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            secret: None,
            basic: false,
        }
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The secret as text, if there is one.
    pub(crate) fn secret_text(&self) -> Option<String> {
        self.secret
            .as_ref()
            .map(|s| String::from_utf8_lossy(s.expose()).into_owned())
    }
}

/// Why the token endpoint gave no grant.
#[derive(Debug)]
pub(crate) enum TokenError {
    /// A 4xx answer (`invalid_grant`, `invalid_client`, ...): the grant cannot be renewed.
    Refused { status: u16, error: String },
    /// Unreachable, a 5xx, or an answer that is not a usable token: try again later.
    Unavailable(String),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused { status, error } => {
                write!(f, "the token endpoint refused ({status} {error})")
            }
            Self::Unavailable(why) => write!(f, "the token endpoint is unavailable: {why}"),
        }
    }
}

/// A client of one token endpoint.
#[derive(Clone)]
pub(crate) struct TokenEndpoint {
    pub(crate) url: url::Url,
    pub(crate) client: ClientAuth,
    http: Http,
}

/// How the token endpoint is reached.
#[derive(Clone)]
enum Http {
    /// A configured endpoint: as any configured URL.
    Configured(reqwest::Client),
    /// One learnt from the server's metadata: at the address the SSRF guard checks at each
    /// request.
    Pinned(Arc<PinnedClient>),
}

fn form_urlencode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

impl TokenEndpoint {
    /// The endpoint at `url`; with `guard` (an endpoint learnt from a document), each request
    /// goes to the address the guard checks then.
    pub(crate) fn new(
        url: url::Url,
        client: ClientAuth,
        timeout: Duration,
        guard: Option<NetGuard>,
    ) -> Result<Self, crate::GatewayError> {
        let http = match guard {
            Some(guard) => Http::Pinned(Arc::new(PinnedClient::new(guard, url.clone(), timeout))),
            None => Http::Configured(
                reqwest::Client::builder()
                    .timeout(timeout)
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| crate::GatewayError::Config {
                        what: "user-oauth token endpoint client",
                        reason: e.to_string(),
                    })?,
            ),
        };
        Ok(Self { url, client, http })
    }

    /// The refresh grant (RFC 6749 §6).
    pub(crate) async fn refresh(
        &self,
        refresh_token: &str,
        resource: &str,
    ) -> Result<UpstreamGrant, TokenError> {
        self.request(vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("resource", resource),
        ])
        .await
    }

    /// The authorization code grant with PKCE (RFC 6749 §4.1.3, RFC 7636 §4.5).
    pub(crate) async fn redeem_code(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
        resource: &str,
    ) -> Result<UpstreamGrant, TokenError> {
        self.request(vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
            ("resource", resource),
        ])
        .await
    }

    async fn request(&self, mut form: Vec<(&str, &str)>) -> Result<UpstreamGrant, TokenError> {
        let secret = self
            .client
            .secret
            .as_ref()
            .map(|s| String::from_utf8_lossy(s.expose()).into_owned());
        let http = match &self.http {
            Http::Configured(http) => http.clone(),
            Http::Pinned(pinned) => pinned.client().await.map_err(TokenError::Unavailable)?,
        };
        let mut request = http
            .post(self.url.clone())
            .header(http::header::ACCEPT, "application/json");
        match (&secret, self.client.basic) {
            (Some(secret), true) => {
                request = request.basic_auth(
                    form_urlencode(&self.client.client_id),
                    Some(form_urlencode(secret)),
                );
            }
            (Some(secret), false) => {
                form.push(("client_id", &self.client.client_id));
                form.push(("client_secret", secret));
            }
            (None, _) => form.push(("client_id", &self.client.client_id)),
        }
        let response = request
            .form(&form)
            .send()
            .await
            .map_err(|e| TokenError::Unavailable(e.to_string()))?;
        let status = response.status().as_u16();
        let body = crate::upstream::body::read_at_most(response, MAX_ANSWER)
            .await
            .map_err(|e| TokenError::Unavailable(e.to_string()))?;
        let object = serde_json::from_slice::<Map<String, Value>>(&body).ok();
        match status {
            200 => {}
            400..=499 => {
                let error = object
                    .as_ref()
                    .and_then(|o| o.get("error"))
                    .and_then(Value::as_str)
                    .map_or_else(
                        || "no error code".to_owned(),
                        |e| e.chars().take(100).collect(),
                    );
                return Err(TokenError::Refused { status, error });
            }
            status => {
                return Err(TokenError::Unavailable(format!("it answered {status}")));
            }
        }
        let object = object
            .ok_or_else(|| TokenError::Unavailable("the answer is not a JSON object".into()))?;
        grant_from(&object, mcp_oauth_now()).map_err(TokenError::Unavailable)
    }
}

pub(crate) fn mcp_oauth_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The grant of a 200 answer (RFC 6749 §5.1).
fn grant_from(body: &Map<String, Value>, now: i64) -> Result<UpstreamGrant, String> {
    let access_token = body
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("the answer has no access_token")?;
    let token_type = body.get("token_type").and_then(Value::as_str);
    if !token_type.is_some_and(|t| t.eq_ignore_ascii_case("bearer")) {
        return Err(format!(
            "token_type is {}, not Bearer (a DPoP-bound token cannot be sent as a bearer token)",
            token_type.map_or_else(|| "missing".to_owned(), |t| format!("{t:?}"))
        ));
    }
    let expires_at = match body.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_i64()
                .filter(|s| *s >= 0)
                .ok_or("expires_in is not a number of seconds")?
                .saturating_add(now),
        ),
    };
    let refresh_token = body
        .get("refresh_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(Secret::from);
    let scopes = body
        .get("scope")
        .and_then(Value::as_str)
        .map(|s| s.split_ascii_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    Ok(UpstreamGrant::new(
        access_token,
        refresh_token,
        expires_at,
        scopes,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_grant_needs_a_bearer_access_token() {
        assert!(grant_from(&object(r#"{"token_type":"Bearer"}"#), 0).is_err());
        assert!(grant_from(&object(r#"{"access_token":"a","token_type":"DPoP"}"#), 0).is_err());
        assert!(
            grant_from(
                &object(r#"{"access_token":"a","token_type":"bearer","expires_in":-1}"#),
                0
            )
            .is_err()
        );
        let grant = grant_from(
            &object(
                r#"{"access_token":"a","token_type":"bearer","expires_in":60,"refresh_token":"","scope":"x y"}"#,
            ),
            100,
        )
        .unwrap();
        assert_eq!(grant.access_token(), "a");
        assert_eq!(grant.expires_at(), Some(160));
        assert_eq!(
            grant.refresh_token(),
            None,
            "an empty refresh token is none"
        );
        assert_eq!(grant.scopes(), ["x", "y"]);
    }

    #[test]
    fn a_renewal_without_a_refresh_token_keeps_the_old_one() {
        let old = UpstreamGrant::new("a1", Some("r1".into()), Some(10), vec!["x".into()]);
        let renewed = old.renewed(UpstreamGrant::new("a2", None, Some(20), vec![]));
        assert_eq!(renewed.access_token(), "a2");
        assert_eq!(renewed.refresh_token(), Some("r1"));
        assert_eq!(renewed.scopes(), ["x"]);
        let rotated = old.renewed(UpstreamGrant::new("a3", Some("r2".into()), None, vec![]));
        assert_eq!(rotated.refresh_token(), Some("r2"));
    }
}
