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
    UserSecret(crate::upstream::UserSecret),
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
        Self::UserSecret(secret)
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
