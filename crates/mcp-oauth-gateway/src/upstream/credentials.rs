//! How the gateway authenticates to an HTTP upstream *as the caller*, never with the caller's
//! own token: the token the gateway verified was issued for the gateway (its audience is the
//! gateway), and passing it on is the confused deputy the MCP specification forbids.
//!
//! Today one kind: [`UpstreamCredentials::token_exchange`], the caller's verified token
//! exchanged at an authorization server (RFC 8693, or Entra's on-behalf-of shape) for a token
//! whose audience is the upstream, reused per caller until shortly before it expires.

use std::fmt;

use http::HeaderValue;
use mcp_oauth::Auth;
use mcp_oauth::exchange::{ExchangeError, TokenExchange};

use crate::error::GatewayError;

/// The upstream's credentials for each caller, made for that caller and sent as
/// `Authorization`: never the caller's own token to the gateway, which was issued for the
/// gateway (passing it on is the confused deputy the MCP specification forbids).
#[derive(Clone)]
#[non_exhaustive]
pub enum UpstreamCredentials {
    /// The caller's verified token exchanged for one meant for the upstream.
    TokenExchange(TokenExchange),
    /// Each user's own token at the upstream's authorization server, granted once through
    /// the gateway's connect page and kept sealed per (user, upstream).
    UserOAuth(super::user_oauth::UserOAuth),
    /// The caller's own token for the upstream, pasted on the gateway's page
    /// ([`UserSecret`](crate::upstream::UserSecret)).
    UserSecret(Box<crate::upstream::UserSecret>),
}

impl fmt::Debug for UpstreamCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TokenExchange(exchange) => {
                f.debug_tuple("TokenExchange").field(exchange).finish()
            }
            Self::UserOAuth(user_oauth) => f.debug_tuple("UserOAuth").field(user_oauth).finish(),
            Self::UserSecret(secret) => f.debug_tuple("UserSecret").field(secret).finish(),
        }
    }
}

impl UpstreamCredentials {
    /// Each caller's token exchanged with `exchange` (its token endpoint, the gateway's client
    /// credentials there, the upstream's audience, resource and scopes).
    ///
    /// ```no_run
    /// use mcp_oauth::exchange::TokenExchange;
    /// use mcp_oauth::protocol::ClientCredentials;
    /// use mcp_oauth_gateway::{HttpConfig, UpstreamCredentials};
    ///
    /// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let exchange = TokenExchange::builder("https://auth.example.com/oauth/token")
    ///     .client(ClientCredentials::new("mcp-gateway", std::env::var("GATEWAY_SECRET")?))
    ///     .resource("https://files.example.com/mcp")
    ///     .scopes(["files:read"])
    ///     .build()?;
    /// let upstream = HttpConfig::new("https://files.example.com/mcp")?
    ///     .credentials(UpstreamCredentials::token_exchange(exchange));
    /// # let _ = upstream; Ok(()) }
    /// ```
    pub fn token_exchange(exchange: TokenExchange) -> Self {
        Self::TokenExchange(exchange)
    }

    /// Each user's own token at the upstream, from `user_oauth` (see
    /// [`user_oauth`](crate::user_oauth)).
    pub fn user_oauth(user_oauth: super::user_oauth::UserOAuth) -> Self {
        Self::UserOAuth(user_oauth)
    }

    /// Each caller's own token, pasted once on the gateway's page.
    pub fn user_secret(secret: crate::upstream::UserSecret) -> Self {
        Self::UserSecret(Box::new(secret))
    }

    /// The header (`Authorization`, unless a user secret names another) for a request made
    /// for `caller`.
    ///
    /// # Errors
    ///
    /// As [`authorization`](Self::authorization); a caller without a user secret gets
    /// [`GatewayError::ActionRequired`].
    pub(crate) async fn header(
        &self,
        caller: Option<&Auth>,
    ) -> Result<(http::HeaderName, HeaderValue), GatewayError> {
        match self {
            Self::UserSecret(secret) => secret.header_for(caller).await,
            Self::TokenExchange(_) | Self::UserOAuth(_) => Ok((
                http::header::AUTHORIZATION,
                self.authorization(caller).await?,
            )),
        }
    }

    /// The `Authorization` value for a request made for `caller`.
    ///
    /// # Errors
    ///
    /// No caller (the gateway runs without OAuth), the exchange was refused
    /// ([`GatewayError::CredentialsRefused`]), or the authorization server is unavailable.
    pub(crate) async fn authorization(
        &self,
        caller: Option<&Auth>,
    ) -> Result<HeaderValue, GatewayError> {
        let exchange = match self {
            Self::TokenExchange(exchange) => exchange,
            Self::UserOAuth(user_oauth) => return user_oauth.authorization(caller).await,
            Self::UserSecret(secret) => return Ok(secret.header_for(caller).await?.1),
        };
        let Some(caller) = caller else {
            return Err(GatewayError::CredentialsRefused(
                "this upstream is reached with the caller's exchanged token, and the request has no verified caller".into(),
            ));
        };
        let token = exchange.exchange(caller).await.map_err(|err| match err {
            ExchangeError::Refused { .. } => GatewayError::CredentialsRefused(err.to_string()),
            ExchangeError::Unavailable(_) => GatewayError::Unavailable(err.to_string()),
            ExchangeError::InvalidAnswer(_) => GatewayError::Protocol(err.to_string()),
            _ => GatewayError::Unavailable(err.to_string()),
        })?;
        let mut value =
            HeaderValue::try_from(format!("Bearer {}", token.access_token())).map_err(|_| {
                GatewayError::Protocol("the exchanged token cannot be sent in a header".into())
            })?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// A copy of `request` to send once more should the upstream refuse the credentials
    /// with a 401: for `user-oauth` only, whose grant is renewed first (`None` for other
    /// kinds, and for a body that cannot be copied).
    pub(crate) fn copy_to_retry(
        &self,
        request: &reqwest::RequestBuilder,
    ) -> Option<reqwest::RequestBuilder> {
        match self {
            Self::UserOAuth(_) => request.try_clone(),
            Self::TokenExchange(_) | Self::UserSecret(_) => None,
        }
    }

    /// What becomes of the upstream's 401 or 403 (`response`) to a request made for `caller`,
    /// `again` being its copy ([`copy_to_retry`](Self::copy_to_retry)):
    ///
    /// - a 401: the credentials are made anew for the next request; with `user-oauth`, whose
    ///   401 means the upstream refused the token before doing anything (its challenge names
    ///   no error, or `invalid_token`), the grant is renewed (single-flight) and the request
    ///   sent once more with the new token, once only: a second 401 is the answer;
    /// - a 403 `insufficient_scope` naming scopes, with `user-oauth`: the user is asked to
    ///   connect again ([`GatewayError::ActionRequired`]), for the scopes granted and those
    ///   named;
    /// - anything else is the answer, unchanged.
    ///
    /// # Errors
    ///
    /// The connect link (a grant gone, more scopes needed), or the renewal failed.
    pub(crate) async fn refused(
        &self,
        client: &reqwest::Client,
        caller: Option<&Auth>,
        response: reqwest::Response,
        again: Option<reqwest::RequestBuilder>,
    ) -> Result<reqwest::Response, GatewayError> {
        let Self::UserOAuth(user_oauth) = self else {
            if response.status() == http::StatusCode::UNAUTHORIZED {
                self.forget(caller);
            }
            return Ok(response);
        };
        let Some(caller) = caller else {
            return Ok(response);
        };
        if response.status() == http::StatusCode::FORBIDDEN {
            return match challenge::insufficient_scope(response.headers()) {
                Some(scopes) => Err(user_oauth.step_up(caller, &scopes).await),
                None => Ok(response),
            };
        }
        user_oauth.refused(caller);
        let Some(Ok(mut request)) = again.map(reqwest::RequestBuilder::build) else {
            return Ok(response);
        };
        if !challenge::token_refused(response.headers()) {
            return Ok(response);
        }
        let renewed = user_oauth.authorization(Some(caller)).await?;
        if request.headers().get(http::header::AUTHORIZATION) == Some(&renewed) {
            // Not renewed (the token endpoint is down and the token has not expired).
            return Ok(response);
        }
        tracing::debug!(target: "mcp_oauth_gateway::upstream", upstream = user_oauth.upstream(), "the upstream refused the user's token (401); renewed, the request is sent once more");
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, renewed);
        let retried = client
            .execute(request)
            .await
            .map_err(super::body::unavailable)?;
        match retried.status() {
            http::StatusCode::UNAUTHORIZED => user_oauth.refused(caller),
            http::StatusCode::FORBIDDEN => {
                if let Some(scopes) = challenge::insufficient_scope(retried.headers()) {
                    return Err(user_oauth.step_up(caller, &scopes).await);
                }
            }
            _ => {}
        }
        Ok(retried)
    }

    /// The upstream refused the credentials made for `caller` (401): the next request gets
    /// fresh ones.
    pub(crate) fn forget(&self, caller: Option<&Auth>) {
        match self {
            Self::TokenExchange(exchange) => {
                if let Some(caller) = caller {
                    exchange.forget(caller);
                }
            }
            Self::UserOAuth(user_oauth) => user_oauth.forget(caller),
            // A pasted token is the user's to replace; nothing is cached.
            Self::UserSecret(_) => {}
        }
    }
}

/// The upstream's `WWW-Authenticate` challenges, as they matter to its credentials.
mod challenge {
    use http::HeaderMap;
    use mcp_oauth::challenge::{ParsedChallenge, parse_www_authenticate};

    /// At most this many scopes are taken from a challenge, each at most this long.
    const MAX_SCOPES: usize = 32;
    const MAX_SCOPE_LEN: usize = 256;

    fn bearer(headers: &HeaderMap) -> impl Iterator<Item = ParsedChallenge> + '_ {
        headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_www_authenticate)
            .filter(|c| c.scheme.eq_ignore_ascii_case("bearer"))
    }

    /// Whether a 401 refuses the token itself (RFC 6750 §3.1): no Bearer challenge names
    /// another error than `invalid_token` (an `invalid_request` would fail again).
    pub(super) fn token_refused(headers: &HeaderMap) -> bool {
        bearer(headers).all(|c| c.param("error").is_none_or(|e| e == "invalid_token"))
    }

    /// The scopes a 403 `insufficient_scope` challenge names (RFC 6750 §3.1, MCP's scope
    /// challenge), if it names any; values that are not scope tokens (RFC 6749 §3.3) are
    /// left out.
    pub(super) fn insufficient_scope(headers: &HeaderMap) -> Option<Vec<String>> {
        let challenge = bearer(headers).find(|c| c.param("error") == Some("insufficient_scope"))?;
        let mut scopes: Vec<String> = Vec::new();
        for scope in challenge.param("scope")?.split(' ') {
            let valid = !scope.is_empty()
                && scope.len() <= MAX_SCOPE_LEN
                && scope
                    .bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
            if valid && !scopes.iter().any(|s| s == scope) && scopes.len() < MAX_SCOPES {
                scopes.push(scope.to_owned());
            }
        }
        (!scopes.is_empty()).then_some(scopes)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn headers(values: &[&str]) -> HeaderMap {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_str(value).expect("value"),
                );
            }
            headers
        }

        #[test]
        fn a_401_refuses_the_token_unless_it_names_another_error() {
            assert!(token_refused(&headers(&[])));
            assert!(token_refused(&headers(&[
                r#"Bearer resource_metadata="https://x/m""#
            ])));
            assert!(token_refused(&headers(&[
                r#"Bearer error="invalid_token", error_description="expired""#
            ])));
            assert!(!token_refused(&headers(&[
                r#"Bearer error="invalid_request""#
            ])));
        }

        #[test]
        fn the_scopes_of_an_insufficient_scope_challenge_are_scope_tokens() {
            let h = headers(&[
                r#"Bearer error="insufficient_scope", scope="notes:write notes:read notes:write", resource_metadata="https://x/m""#,
            ]);
            assert_eq!(
                insufficient_scope(&h),
                Some(vec!["notes:write".to_owned(), "notes:read".to_owned()])
            );
            let odd = headers(&[r#"Bearer error="insufficient_scope", scope="a\"b ok  c\\d""#]);
            assert_eq!(insufficient_scope(&odd), Some(vec!["ok".to_owned()]));
            assert_eq!(
                insufficient_scope(&headers(&[r#"Bearer error="insufficient_scope""#])),
                None,
                "no scope named"
            );
            let many: Vec<String> = (0..100).map(|i| format!("s{i}")).collect();
            let long = "x".repeat(MAX_SCOPE_LEN + 1);
            let flood = format!(
                r#"Bearer error="insufficient_scope", scope="{long} {}""#,
                many.join(" ")
            );
            let taken = insufficient_scope(&headers(&[&flood])).expect("scopes");
            assert_eq!(
                taken,
                many[..MAX_SCOPES],
                "capped, the overlong one left out"
            );
            assert_eq!(
                insufficient_scope(&headers(&[r#"Bearer error="invalid_token", scope="a""#])),
                None
            );
        }
    }
}
