//! `kind = "user-secret"`: each user's own token for the upstream (a personal access token),
//! pasted once on the gateway's page, kept sealed in the [`Vault`], and sent for that user
//! only: as a header to an HTTP upstream, or in the environment of the user's own stdio child
//! (`per-user` isolation).
//!
//! A user without a token never reaches the upstream: the call is answered with a JSON-RPC
//! error (code [`ACTION_REQUIRED`]) whose message and `data` carry the link to the page.

use std::fmt;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use mcp_oauth::Auth;

use crate::error::GatewayError;
use crate::vault::{EntryKind, Vault, VaultError, VaultSecret};

/// The JSON-RPC error code of a call that needs the user to act in a browser first (paste a
/// token, connect an account): MCP's "URL elicitation required" code, with its `data` shape
/// (`elicitations: [{ mode: "url", url, message, elicitationId }]`).
pub const ACTION_REQUIRED: i64 = -32042;

/// Where the user's token goes.
#[derive(Debug, Clone)]
enum Target {
    /// An HTTP upstream's header, the value made from `format` (`{secret}` replaced).
    Header { name: HeaderName, format: String },
    /// An environment variable of the user's stdio child.
    Env(String),
}

/// Each user's own token for one upstream (`kind = "user-secret"`), pasted once on the
/// gateway's page, kept sealed in the [`Vault`], and sent for that user only: as a header to
/// an HTTP upstream ([`UpstreamCredentials::user_secret`](crate::UpstreamCredentials::user_secret)),
/// or in the environment of the user's own stdio child
/// ([`StdioConfig::user_secret`](crate::StdioConfig::user_secret)). A user without one never
/// reaches the upstream: the call is answered with a JSON-RPC error
/// ([`ACTION_REQUIRED`](crate::ACTION_REQUIRED)) carrying the link to the page.
#[derive(Clone)]
pub struct UserSecret {
    vault: Vault,
    upstream: Arc<str>,
    /// `None`: the default check (1 to 4096 printable ASCII characters, no space).
    pattern: Option<regex::Regex>,
    page: String,
    target: Target,
}

impl fmt::Debug for UserSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserSecret")
            .field("upstream", &self.upstream)
            .field("pattern", &self.pattern.as_ref().map(regex::Regex::as_str))
            .field("page", &self.page)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl UserSecret {
    /// The tokens users paste for the upstream `upstream` (its name, as in the vault), kept
    /// in `vault`. `page` is the URL of the page where a user pastes theirs (sent to users who
    /// have none). Sent as `Authorization: Bearer {secret}` until [`header`](Self::header) or
    /// [`env`](Self::env) says otherwise; any value is accepted until
    /// [`pattern`](Self::pattern) says otherwise.
    pub fn new(vault: Vault, upstream: impl Into<Arc<str>>, page: impl Into<String>) -> Self {
        Self {
            vault,
            upstream: upstream.into(),
            pattern: None,
            page: page.into(),
            target: Target::Header {
                name: http::header::AUTHORIZATION,
                format: "Bearer {secret}".to_owned(),
            },
        }
    }

    /// The pattern a pasted token must match, whole (`ghp_[A-Za-z0-9]{36}`). Default: 1 to
    /// 4096 printable ASCII characters without spaces.
    ///
    /// # Errors
    ///
    /// Not a regular expression.
    pub fn pattern(mut self, pattern: &str) -> Result<Self, GatewayError> {
        self.pattern = Some(regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
            GatewayError::Config {
                what: "user-secret pattern",
                reason: format!("{pattern:?} is not a regular expression: {e}"),
            }
        })?);
        Ok(self)
    }

    /// Sends the token in the header `name`, as `format` with `{secret}` replaced (for an
    /// HTTP upstream). Default: `Authorization`, `Bearer {secret}`.
    ///
    /// # Errors
    ///
    /// `name` is not a header name, or `format` lacks `{secret}`.
    pub fn header(mut self, name: &str, format: &str) -> Result<Self, GatewayError> {
        let name = HeaderName::try_from(name).map_err(|_| GatewayError::Config {
            what: "user-secret header",
            reason: format!("{name:?} is not a header name"),
        })?;
        if !format.contains("{secret}") {
            return Err(GatewayError::Config {
                what: "user-secret format",
                reason: format!("{format:?} does not contain {{secret}}"),
            });
        }
        self.target = Target::Header {
            name,
            format: format.to_owned(),
        };
        Ok(self)
    }

    /// Puts the token in the environment variable `name` of the user's own stdio child (the
    /// upstream must run with `per-user` isolation).
    ///
    /// # Errors
    ///
    /// `name` is empty or holds `=` or NUL.
    pub fn env(mut self, name: &str) -> Result<Self, GatewayError> {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(GatewayError::Config {
                what: "user-secret env",
                reason: format!("{name:?} is not an environment variable name"),
            });
        }
        self.target = Target::Env(name.to_owned());
        Ok(self)
    }

    /// The upstream's name in the vault.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// The page where users paste their token.
    pub fn page(&self) -> &str {
        &self.page
    }

    /// The vault the tokens are kept in.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// Whether a pasted `value` may be stored (it matches the pattern, whole).
    pub fn accepts(&self, value: &str) -> bool {
        match &self.pattern {
            Some(pattern) => pattern.is_match(value),
            None => {
                (1..=4096).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic())
            }
        }
    }

    /// The environment variable the token goes in, for a stdio child.
    pub(crate) fn env_name(&self) -> Option<&str> {
        match &self.target {
            Target::Env(name) => Some(name),
            Target::Header { .. } => None,
        }
    }

    /// The caller's token, or the error that sends them to the page.
    pub(crate) async fn secret_of(
        &self,
        caller: Option<&Auth>,
    ) -> Result<VaultSecret, GatewayError> {
        let Some(caller) = caller else {
            return Err(GatewayError::CredentialsRefused(
                "this upstream is reached with each user's own token, and the request has no verified caller".into(),
            ));
        };
        let user = Vault::user_of(caller);
        match self
            .vault
            .get(&user, &self.upstream, EntryKind::UserSecret)
            .await
        {
            Ok(Some(entry)) => Ok(entry.secret),
            Ok(None) => Err(self.action_required("no token is set for you")),
            Err(VaultError::Unreadable) => {
                tracing::warn!(target: "mcp_oauth_gateway::vault", upstream = %self.upstream, "a user's token does not open (another encryption key?); the user is asked to set it again");
                Err(self.action_required("your token can no longer be read"))
            }
            Err(err) => Err(GatewayError::Unavailable(err.to_string())),
        }
    }

    /// The header for a request made for `caller`.
    pub(crate) async fn header_for(
        &self,
        caller: Option<&Auth>,
    ) -> Result<(HeaderName, HeaderValue), GatewayError> {
        let Target::Header { name, format } = &self.target else {
            return Err(GatewayError::Config {
                what: "user-secret",
                reason: "an HTTP upstream takes the token in a header, not in env".into(),
            });
        };
        let secret = self.secret_of(caller).await?;
        let text = std::str::from_utf8(secret.expose()).map_err(|_| {
            self.action_required("your token cannot be sent in a header; set it again")
        })?;
        let mut value = HeaderValue::try_from(format.replace("{secret}", text)).map_err(|_| {
            self.action_required("your token cannot be sent in a header; set it again")
        })?;
        value.set_sensitive(true);
        Ok((name.clone(), value))
    }

    fn action_required(&self, why: &str) -> GatewayError {
        GatewayError::ActionRequired {
            message: format!(
                "the upstream {} needs your own token: {why}; set it at {}",
                self.upstream, self.page
            ),
            url: self.page.clone(),
        }
    }
}

/// The JSON-RPC `error.data` of an [`ACTION_REQUIRED`] error (a missing credential, a call
/// waiting for approval): MCP's URL elicitation shape, its id derived from the link.
pub(crate) fn action_data(message: &str, url: &str) -> serde_json::Value {
    let id = elicitation_id(url);
    serde_json::json!({
        "elicitations": [{
            "mode": "url",
            "elicitationId": id,
            "url": url,
            "message": message,
        }]
    })
}

/// The `elicitationId` of the URL-mode elicitation of `url`: 96 bits of its SHA-256.
pub(crate) fn elicitation_id(url: &str) -> String {
    use aws_lc_rs::digest::{SHA256, digest};
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        digest(&SHA256, url.as_bytes())
            .as_ref()
            .get(..12)
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use mcp_oauth::auth_server::MemoryStore;
    use mcp_oauth::scope::ScopeHierarchy;
    use mcp_oauth::{AccessToken, AuthInfo, Claims, UserInfo};

    use super::*;

    fn auth(sub: &str) -> Auth {
        let claims = serde_json::json!({ "iss": "https://as.example", "sub": sub });
        let claims = Claims::new(claims.as_object().cloned().unwrap_or_default());
        Auth::from(AuthInfo::from_user(
            claims,
            AccessToken::new("gateway-token"),
            UserInfo::new(sub),
            Arc::new(ScopeHierarchy::default()),
        ))
    }

    fn secret() -> UserSecret {
        let vault = Vault::new(Arc::new(MemoryStore::new()), &[3; 32]).expect("vault");
        UserSecret::new(vault, "github", "https://gw.example/gateway/secrets/github")
    }

    #[test]
    fn the_pattern_matches_the_whole_value() {
        let s = secret().pattern("ghp_[A-Za-z0-9]{4}").expect("pattern");
        assert!(s.accepts("ghp_abcd"));
        assert!(!s.accepts("ghp_abcde"), "longer");
        assert!(!s.accepts("xghp_abcd"), "prefix");
        assert!(!s.accepts("ghp_abcd\nx"), "another line");
        assert!(secret().pattern("(").is_err());
        let default = secret();
        assert!(default.accepts("tok_123"));
        assert!(!default.accepts(""));
        assert!(!default.accepts("has space"));
    }

    #[test]
    fn header_and_env_are_checked() {
        assert!(secret().header("X Bad", "{secret}").is_err());
        assert!(secret().header("X-Api-Key", "no placeholder").is_err());
        assert!(secret().env("A=B").is_err());
        assert_eq!(
            secret().env("GITHUB_TOKEN").expect("env").env_name(),
            Some("GITHUB_TOKEN")
        );
    }

    #[tokio::test]
    async fn a_user_without_a_token_gets_the_link_and_a_user_with_one_gets_the_header() {
        let s = secret()
            .header("X-Api-Key", "token {secret}")
            .expect("header");
        let alice = auth("alice");
        let Err(GatewayError::ActionRequired { message, url }) = s.header_for(Some(&alice)).await
        else {
            panic!("expected the link");
        };
        assert_eq!(url, "https://gw.example/gateway/secrets/github");
        assert!(message.contains(&url), "{message}");
        s.vault()
            .put(
                &Vault::user_of(&alice),
                "github",
                EntryKind::UserSecret,
                b"abc",
                None,
            )
            .await
            .expect("put");
        let (name, value) = s.header_for(Some(&alice)).await.expect("header");
        assert_eq!(name, "x-api-key");
        assert_eq!(value, "token abc");
        assert!(value.is_sensitive());
        let bob = auth("bob");
        assert!(matches!(
            s.header_for(Some(&bob)).await,
            Err(GatewayError::ActionRequired { .. })
        ));
        assert!(matches!(
            s.header_for(None).await,
            Err(GatewayError::CredentialsRefused(_))
        ));
    }
}
