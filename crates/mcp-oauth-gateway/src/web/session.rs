//! The session cookie of the gateway's pages: sealed, short-lived, one per browser.

use http::HeaderMap;
use mcp_oauth::auth_server::page_kit::{cookie, hash_hex};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Pages;

/// The sealing context of a session (another sealed value of the gateway does not open as one).
const CONTEXT: &str = "mcp-oauth-gateway page session v1";
/// What a form token is a MAC of (with the session's id).
pub(super) const FORM_PURPOSE: &str = "mcp-oauth-gateway page form";

/// Who is signed in on a page request: what the gateway's authorization server said about
/// them when they signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visitor {
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
    client: String,
    /// The token's identity claims (for the policy's `group_claims`).
    #[serde(default)]
    claims: Map<String, Value>,
    /// The session's random id (form tokens are bound to it).
    sid: String,
    /// Unix seconds.
    exp: i64,
}

impl Visitor {
    pub(super) fn new(claims: &mcp_oauth::Claims, client: &str, sid: String, exp: i64) -> Self {
        let verified = claims
            .as_map()
            .get("email_verified")
            .and_then(Value::as_bool)
            != Some(false);
        Self {
            sub: claims.sub().unwrap_or_default().to_owned(),
            email: claims.str("email").filter(|_| verified).map(str::to_owned),
            groups: claims.string_list("groups"),
            client: client.to_owned(),
            claims: super::identity_claims(claims.as_map()),
            sid,
            exp,
        }
    }

    /// The user's subject (`sub`), as in their tokens.
    pub fn subject(&self) -> &str {
        &self.sub
    }

    /// Their email, unless the server said it is not verified.
    pub fn email(&self) -> Option<&str> {
        self.email.as_deref()
    }

    /// The groups of the token's `groups` claim.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// The client the session was made for ([`super::CLIENT_ID`]).
    pub fn client(&self) -> &str {
        &self.client
    }

    /// The identity claims of the token they signed in with (`sub`, `email`, `groups`, …;
    /// not `iss`, `aud`, `exp` and the like).
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// The claims as a [`mcp_oauth::Claims`] (for `Subject::from_claims`).
    pub fn to_claims(&self) -> mcp_oauth::Claims {
        let mut map = self.claims.clone();
        map.insert("sub".into(), Value::String(self.sub.clone()));
        map.insert("client_id".into(), Value::String(self.client.clone()));
        mcp_oauth::Claims::new(map)
    }

    /// When the session ends (Unix seconds).
    pub fn expires_at(&self) -> i64 {
        self.exp
    }

    pub(super) fn session_id(&self) -> &str {
        &self.sid
    }

    /// The form token of this session: put it in every form ([`Self::csrf_field`]) and check
    /// it with [`Pages::check_form`].
    pub fn csrf_token(&self, pages: &Pages) -> String {
        pages
            .sealer()
            .map(|s| s.mac(FORM_PURPOSE, &self.sid))
            .unwrap_or_default()
    }

    /// The hidden form field `csrf` with [`Self::csrf_token`].
    pub fn csrf_field(&self, pages: &Pages) -> String {
        format!(
            "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
            super::escape(&self.csrf_token(pages))
        )
    }
}

/// The session cookie's name.
pub(super) fn name(pages: &Pages) -> &'static str {
    if pages.0.secure {
        "__Host-mcp_gateway_session"
    } else {
        "mcp_gateway_session"
    }
}

/// `Set-Cookie` attributes for this gateway's cookies.
pub(super) fn attributes(pages: &Pages, max_age: u64) -> String {
    let secure = if pages.0.secure { "; Secure" } else { "" };
    format!("; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

/// The store's name for the revocation of a session (a grant family of its own: the store's
/// revocations outlive nothing and are never shortened).
fn revocation(visitor: &Visitor) -> String {
    format!("gateway-pages-session:{}", hash_hex(&visitor.sid))
}

/// Records that `visitor`'s session has ended, until the cookie's own expiry, on every
/// instance that shares the store.
pub(super) async fn revoke(pages: &Pages, visitor: &Visitor) -> Result<(), String> {
    let Some(sign_in) = &pages.0.sign_in else {
        return Ok(());
    };
    sign_in
        .server
        .store()
        .revoke_family(&revocation(visitor), visitor.exp)
        .await
        .map_err(|e| format!("the store: {e}"))
}

/// Whether `visitor`'s session was signed out (on any instance sharing the store).
pub(super) async fn is_revoked(pages: &Pages, visitor: &Visitor) -> Result<bool, String> {
    let Some(sign_in) = &pages.0.sign_in else {
        return Ok(true);
    };
    sign_in
        .server
        .store()
        .is_family_revoked(&revocation(visitor))
        .await
        .map_err(|e| format!("the store: {e}"))
}

/// The user of an intact, unexpired session cookie of this gateway, if the request carries
/// one (whether it was signed out is [`is_revoked`]).
pub(super) fn read(pages: &Pages, headers: &HeaderMap) -> Option<Visitor> {
    let sealer = pages.sealer()?;
    let value = cookie(headers, name(pages))?;
    let plain = sealer.open(&value, CONTEXT)?;
    let visitor: Visitor = serde_json::from_slice(&plain).ok()?;
    (visitor.exp > pages.now() && !visitor.sub.is_empty()).then_some(visitor)
}

/// `Set-Cookie` for a session of `visitor`.
pub(super) fn set(pages: &Pages, visitor: &Visitor) -> Option<String> {
    let sealer = pages.sealer()?;
    let plain = serde_json::to_vec(visitor).ok()?;
    let sealed = sealer.seal(&plain, CONTEXT)?;
    Some(format!(
        "{}={sealed}{}",
        name(pages),
        attributes(pages, pages.0.session_ttl.as_secs())
    ))
}

/// `Set-Cookie` that ends the session.
pub(super) fn clear(pages: &Pages) -> String {
    format!("{}={}", name(pages), attributes(pages, 0))
}
