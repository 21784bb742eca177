//! The chained consent: a signed-in user connects their account at the upstream's
//! authorization server, once, and the grant is sealed for that user.
//!
//! The flow is the authorization code grant with PKCE (S256) and `resource` = the upstream.
//! Its `state` is random, single use, kept 10 minutes in the store (any instance can finish
//! the flow) and bound twice:
//!
//! - to the **browser** that started it: a random value in an `HttpOnly`, `SameSite=Lax`
//!   cookie scoped to the callback path, whose SHA-256 is kept with the state. A callback
//!   opened in another browser (an attacker's link, or an attacker's own authorization
//!   forwarded to a victim) is refused, so nobody's upstream account is bound to someone
//!   else's gateway user;
//! - to the **user** signed in when it started: the callback must be finished by the same
//!   signed-in user, and the grant is sealed for that user only.
//!
//! The PKCE verifier never leaves the gateway (it is kept with the state), the gateway's own
//! tokens never go to the upstream's server, and when the server sends `iss` (RFC 9207) it
//! must be the discovered issuer (mix-up protection).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use mcp_oauth::auth_server::page_kit::cookie;
use mcp_oauth::auth_server::store::Kind;
use serde::{Deserialize, Serialize};

use super::grant::UpstreamGrant;
use super::token::TokenError;
use super::{EntryKind, UserOAuth, digest, hex, now, vault_failed};
use crate::GatewayError;

/// How long a started connection may take.
const STATE_LIFE: i64 = 600;
/// The cookie that binds a connection to the browser that started it.
const COOKIE: &str = "mcp_gateway_connect";

/// A connection in progress, as kept in the store under the hash of its state.
#[derive(Serialize, Deserialize)]
struct Pending {
    upstream: String,
    user: String,
    /// SHA-256 (hex) of the browser's cookie value.
    browser: String,
    verifier: String,
}

/// Where to send the browser to connect, and the cookie that binds the flow to it.
#[derive(Debug)]
pub struct ConnectStart {
    location: String,
    set_cookie: HeaderValue,
}

impl ConnectStart {
    /// The upstream's authorization URL.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The `Set-Cookie` value to send with the redirect.
    pub fn set_cookie(&self) -> &HeaderValue {
        &self.set_cookie
    }

    /// A `303 See Other` to the authorization URL, with the cookie, never cached.
    pub fn into_response(self) -> axum::response::Response {
        let mut response = axum::response::Response::new(axum::body::Body::empty());
        *response.status_mut() = StatusCode::SEE_OTHER;
        let headers = response.headers_mut();
        if let Ok(location) = HeaderValue::try_from(self.location) {
            headers.insert(header::LOCATION, location);
        }
        headers.insert(header::SET_COOKIE, self.set_cookie);
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        response
    }
}

/// Why a connection could not be finished. The messages say what to do and never carry a
/// token, a code or a state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// No `state`, or one that is unknown, expired or already used.
    #[error(
        "this connection is unknown, expired or already finished; start again from the connect page"
    )]
    UnknownState,
    /// The state was started in another browser, by another user, or for another upstream.
    #[error(
        "this connection was started in another browser or by another user; start again from the connect page"
    )]
    NotYours,
    /// The authorization server answered with an error (the user declined, say).
    #[error(
        "the upstream's authorization server did not grant access ({0}); start again from the connect page"
    )]
    Denied(String),
    /// The answer names another issuer than the upstream's server (RFC 9207).
    #[error("the answer does not come from the upstream's authorization server (iss mismatch)")]
    WrongIssuer,
    /// The answer has no code.
    #[error("the answer has no authorization code")]
    NoCode,
    /// The token endpoint refused the code.
    #[error(
        "the upstream's authorization server refused the code ({0}); start again from the connect page"
    )]
    Refused(String),
    /// The store, the vault or the upstream's server is unavailable.
    #[error(transparent)]
    Unavailable(#[from] GatewayError),
}

impl ConnectError {
    /// The HTTP status of the page that reports it.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Refused(_) | Self::Denied(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

fn random() -> Result<String, GatewayError> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| GatewayError::Unavailable("no randomness for the connect flow".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn state_key(state: &str) -> String {
    format!("user-oauth-state:{}", hex(&digest(state)))
}

/// How long the scopes an upstream asked for (a 403 `insufficient_scope`) wait for the user
/// to connect again.
const STEP_UP_LIFE: i64 = 3600;

/// Where the scopes an upstream asked for wait for `user`'s next connection to it.
fn step_up_key(upstream: &str, user: &str) -> String {
    format!("user-oauth-step-up:{upstream}:{}", hex(&digest(user)))
}

/// `extra` added to `scopes`, each once, in order.
fn union(scopes: &mut Vec<String>, extra: &[String]) {
    for scope in extra {
        if !scopes.contains(scope) {
            scopes.push(scope.clone());
        }
    }
}

impl UserOAuth {
    /// The upstream's name.
    pub fn upstream(&self) -> &str {
        &self.inner.upstream
    }

    /// Starts a connection for the signed-in `user` (the vault's name for them,
    /// [`Vault::user_of`](crate::vault::Vault::user_of)): the authorization URL and the
    /// browser-binding cookie.
    ///
    /// # Errors
    ///
    /// The upstream's server cannot be discovered, or the store is unavailable.
    pub async fn start_connect(&self, user: &str) -> Result<ConnectStart, GatewayError> {
        let inner = &*self.inner;
        let (resolved, _) = self.resolved().await?;
        let state = random()?;
        let verifier = random()?;
        let browser = random()?;
        let challenge = URL_SAFE_NO_PAD.encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref(),
        );
        let pending = Pending {
            upstream: inner.upstream.clone(),
            user: user.to_owned(),
            browser: hex(&digest(&browser)),
            verifier,
        };
        let data = serde_json::to_vec(&pending).unwrap_or_default();
        let stored = self
            .store()?
            .put_if_absent(
                Kind::Transaction,
                &state_key(&state),
                data,
                Some(now().saturating_add(STATE_LIFE)),
            )
            .await
            .map_err(super::store_failed)?;
        if !stored {
            return Err(GatewayError::Unavailable(
                "a fresh connect state collided; try again".into(),
            ));
        }
        let mut scopes = if inner.scopes.is_empty() {
            resolved.scopes.clone()
        } else {
            inner.scopes.clone()
        };
        // After the upstream's 403 `insufficient_scope`: the scopes asked for before, those
        // granted and those it named (MCP's step-up: the union, never fewer).
        let stepped_up = self.stepped_up(user).await?;
        if !stepped_up.is_empty() {
            if let Ok(Some(grant)) = self.load(user).await {
                union(&mut scopes, grant.scopes());
            }
            union(&mut scopes, &stepped_up);
        }
        let mut location = resolved.authorization_endpoint.clone();
        {
            let mut query = location.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", resolved.client.client_id())
                .append_pair("redirect_uri", &inner.discovery.redirect_uri())
                .append_pair("state", &state)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256")
                .append_pair("resource", inner.resource.as_str());
            if !scopes.is_empty() {
                query.append_pair("scope", &scopes.join(" "));
            }
        }
        let secure = if inner.discovery.redirect_uri().starts_with("https:") {
            "; Secure"
        } else {
            ""
        };
        let set_cookie = HeaderValue::try_from(format!(
            "{COOKIE}={browser}; Path={}; Max-Age={STATE_LIFE}; HttpOnly; SameSite=Lax{secure}",
            super::callback_path(&inner.upstream)
        ))
        .map_err(|_| GatewayError::Protocol("the connect cookie is not a header value".into()))?;
        Ok(ConnectStart {
            location: location.into(),
            set_cookie,
        })
    }

    /// Finishes a connection at the callback, for the signed-in `user`, with the callback's
    /// query string and the request's headers (the browser-binding cookie): the state is
    /// used up, checked against the browser and the user, the code exchanged (with the PKCE
    /// verifier) and the grant sealed for `user`.
    ///
    /// # Errors
    ///
    /// See [`ConnectError`].
    pub async fn finish_connect(
        &self,
        user: &str,
        query: &str,
        headers: &HeaderMap,
    ) -> Result<UpstreamGrant, ConnectError> {
        let inner = &*self.inner;
        let param = |name: &str| {
            url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let state = param("state").ok_or(ConnectError::UnknownState)?;
        // Used up first: whatever happens next, this state is never accepted again.
        let pending = self
            .store()?
            .take(Kind::Transaction, &state_key(&state))
            .await
            .map_err(super::store_failed)?
            .and_then(|data| serde_json::from_slice::<Pending>(&data).ok())
            .ok_or(ConnectError::UnknownState)?;
        let browser = cookie(headers, COOKIE).map(|value| hex(&digest(&value)));
        let same_browser = browser.is_some_and(|b| {
            aws_lc_rs::constant_time::verify_slices_are_equal(
                b.as_bytes(),
                pending.browser.as_bytes(),
            )
            .is_ok()
        });
        if pending.upstream != inner.upstream || pending.user != user || !same_browser {
            tracing::warn!(target: "mcp_oauth_gateway::upstream", upstream = %inner.upstream, "a connect callback for another browser, user or upstream was refused");
            return Err(ConnectError::NotYours);
        }
        if let Some(error) = param("error") {
            let error: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            return Err(ConnectError::Denied(error));
        }
        let (resolved, token) = self.resolved().await?;
        match (param("iss"), &resolved.issuer) {
            (Some(iss), Some(issuer))
                if iss.trim_end_matches('/') != issuer.trim_end_matches('/') =>
            {
                return Err(ConnectError::WrongIssuer);
            }
            (None, Some(_)) if resolved.iss_parameter => return Err(ConnectError::WrongIssuer),
            _ => {}
        }
        let code = param("code").ok_or(ConnectError::NoCode)?;
        let grant = token
            .redeem_code(
                &code,
                &inner.discovery.redirect_uri(),
                &pending.verifier,
                inner.resource.as_str(),
            )
            .await
            .map_err(|err| match err {
                TokenError::Refused { error, .. } => ConnectError::Refused(error),
                err @ TokenError::Unavailable(_) => {
                    ConnectError::Unavailable(GatewayError::Unavailable(err.to_string()))
                }
            })?;
        inner
            .vault
            .put(
                user,
                &inner.upstream,
                EntryKind::UserOauth,
                &grant.encode(),
                None,
            )
            .await
            .map_err(vault_failed)?;
        tracing::info!(target: "mcp_oauth_gateway::upstream", upstream = %inner.upstream, "a user connected their account at the upstream");
        if let Ok(store) = self.store() {
            let _ = store
                .take(Kind::Transaction, &step_up_key(&inner.upstream, user))
                .await;
        }
        Ok(grant)
    }

    /// The upstream answered a request made with `caller`'s grant with a 403
    /// `insufficient_scope` naming `scopes`: they are kept (an hour, added to any kept
    /// before) for the user's next connection, which asks for them with those granted, and
    /// the user is sent to connect again. The grant stays in use until then.
    pub(crate) async fn step_up(
        &self,
        caller: &mcp_oauth::Auth,
        scopes: &[String],
    ) -> GatewayError {
        let inner = &*self.inner;
        let user = super::user_key(caller);
        let mut wanted = match self.stepped_up(&user).await {
            Ok(wanted) => wanted,
            Err(err) => return err,
        };
        union(&mut wanted, scopes);
        let kept = match self.store() {
            Ok(store) => store
                .put(
                    Kind::Transaction,
                    &step_up_key(&inner.upstream, &user),
                    serde_json::to_vec(&wanted).unwrap_or_default(),
                    Some(now().saturating_add(STEP_UP_LIFE)),
                )
                .await
                .map_err(super::store_failed),
            Err(err) => Err(err),
        };
        if let Err(err) = kept {
            return err;
        }
        tracing::info!(target: "mcp_oauth_gateway::upstream", upstream = %inner.upstream, scopes = %scopes.join(" "), "the upstream wants more scopes of a user's account (403 insufficient_scope); the user is asked to connect again");
        let url = self.connect_url();
        GatewayError::ActionRequired {
            message: format!(
                "the upstream {} needs more access to your account there ({}): connect it again at {url}, then try again",
                inner.upstream,
                scopes.join(" ")
            ),
            url,
        }
    }

    /// The scopes the upstream asked for since `user` last connected.
    async fn stepped_up(&self, user: &str) -> Result<Vec<String>, GatewayError> {
        let kept = self
            .store()?
            .get(Kind::Transaction, &step_up_key(&self.inner.upstream, user))
            .await
            .map_err(super::store_failed)?;
        Ok(kept
            .and_then(|k| serde_json::from_slice::<Vec<String>>(&k.data).ok())
            .unwrap_or_default())
    }

    /// The `Set-Cookie` value that removes the browser-binding cookie (after the callback).
    pub fn clear_connect_cookie(&self) -> HeaderValue {
        HeaderValue::try_from(format!(
            "{COOKIE}=; Path={}; Max-Age=0; HttpOnly; SameSite=Lax",
            super::callback_path(&self.inner.upstream)
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}
