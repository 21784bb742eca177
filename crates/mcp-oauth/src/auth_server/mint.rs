//! Access tokens: what one is for ([`Grant`]) and how it is signed.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::http::random_token;
use super::server::AuthServer;
use crate::claims::now_unix;

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

/// Signs an access token for a grant.
pub(crate) fn mint(server: &AuthServer, grant: &Grant<'_>) -> String {
    mint_bound(server, grant, None)
}

/// Signs an access token for a grant, bound to the key with thumbprint `jkt` when given
/// (`cnf.jkt`, RFC 9449 §6.1).
pub(crate) fn mint_bound(server: &AuthServer, grant: &Grant<'_>, jkt: Option<&str>) -> String {
    let now = now_unix();
    let ttl = grant
        .ttl
        .unwrap_or(server.inner.config.lifetimes.access_token);
    let mut claims: Map<String, Value> = grant.user_claims.clone();
    claims.insert("iss".into(), json!(server.inner.config.issuer));
    claims.insert("sub".into(), json!(grant.subject));
    if let Some(resource) = grant.resource {
        claims.insert("aud".into(), json!(resource));
    }
    claims.insert("iat".into(), json!(now));
    claims.insert(
        "exp".into(),
        json!(now + i64::try_from(ttl.as_secs()).unwrap_or(3600)),
    );
    claims.insert("jti".into(), json!(random_token()));
    claims.insert("client_id".into(), json!(grant.client_id));
    claims.insert("scope".into(), json!(grant.scope.join(" ")));
    claims.insert("sid".into(), json!(grant.family));
    if let Some(jkt) = jkt {
        claims.insert("cnf".into(), json!({ "jkt": jkt }));
    }
    server
        .inner
        .tokens
        .keys
        .active()
        .sign_jwt(Some("at+jwt"), &Value::Object(claims))
}

impl AuthServer {
    /// Mints an access token directly (for `mcp-oauth token` and for tests).
    pub fn mint_access_token(&self, grant: &Grant<'_>) -> String {
        mint(self, grant)
    }

    /// Mints an access token bound to the key whose RFC 7638 thumbprint is `jkt`
    /// (`cnf.jkt`, RFC 9449 §6.1): a resource server accepts it only with the `DPoP` scheme
    /// and a proof signed by that key.
    pub fn mint_bound_access_token(&self, grant: &Grant<'_>, jkt: &str) -> String {
        mint_bound(self, grant, Some(jkt))
    }
}
