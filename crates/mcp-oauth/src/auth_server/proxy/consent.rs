//! The two defences of proxy mode against a sign-in completed in someone else's browser:
//! a cookie binding each sign-in step to the browser that started it, and consent recorded per
//! user and client on the server, asked after the callback when missing.

use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq as _;

use super::super::pages::{Consent, error_page};
use super::super::store::{AuthRequestRecord, EntryKind};
use super::super::{AuthServer, UserIdentity, hash_hex, random_token};
use super::{Upstream, store_tokens};
use crate::claims::now_unix;

/// What a sign-in cookie binds: the upstream `state` of a transaction.
pub(super) const STATE_BINDING: &str = "upstream state";
/// What a sign-in cookie binds: a signed-in user's consent step, by its id.
const CONSENT_BINDING: &str = "consent after sign-in";

/// The cookie binding one sign-in step to the browser. Its name is per sign-in, so that
/// several sign-ins can run in one browser at once.
fn binding_cookie_name(server: &AuthServer, purpose: &str, id: &str) -> String {
    let prefix = if server.inner.secure_cookies {
        "__Host-mcp_oauth_login_"
    } else {
        "mcp_oauth_login_"
    };
    let hash = hash_hex(&format!("{purpose}\u{0}{id}"));
    format!("{prefix}{}", hash.get(..16).unwrap_or(&hash))
}

/// The cookie's value: an HMAC of the id under the cookie key (the hash of it without one).
fn binding_tag(server: &AuthServer, purpose: &str, id: &str) -> String {
    match &server.inner.sealer {
        Some(sealer) => sealer.mac(purpose, id),
        None => hash_hex(&format!("{purpose}\u{0}{id}")),
    }
}

/// Whether the request carries the binding cookie of this sign-in step.
pub(super) fn is_bound(server: &AuthServer, headers: &HeaderMap, purpose: &str, id: &str) -> bool {
    let Some(value) =
        super::super::authorize::cookie(headers, &binding_cookie_name(server, purpose, id))
    else {
        return false;
    };
    match &server.inner.sealer {
        Some(sealer) => sealer.verify_mac(purpose, id, &value),
        None => bool::from(
            value
                .as_bytes()
                .ct_eq(binding_tag(server, purpose, id).as_bytes()),
        ),
    }
}

/// `Set-Cookie` for the binding cookie (`max_age` 0 removes it). `Lax`: the provider's
/// redirect to the callback is a cross-site top-level navigation, which must carry it.
pub(super) fn binding_cookie(server: &AuthServer, purpose: &str, id: &str, set: bool) -> String {
    let secure = if server.inner.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let (value, max_age) = if set {
        (
            binding_tag(server, purpose, id),
            server.inner.lifetimes.request.as_secs(),
        )
    } else {
        (String::new(), 0)
    };
    format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
        binding_cookie_name(server, purpose, id)
    )
}

pub(super) fn append_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// A consent recorded on the server: what this user allowed this client.
#[derive(Serialize, Deserialize)]
struct ConsentRecord {
    scope: Vec<String>,
}

fn consent_key(subject: &str, client_id: &str) -> String {
    format!("{subject}\u{0}{client_id}")
}

/// The scopes this user allowed this client (a live consent), if any.
async fn consented_scopes(
    server: &AuthServer,
    subject: &str,
    client_id: &str,
) -> Option<Vec<String>> {
    let entry = server
        .inner
        .store
        .entry(EntryKind::Consent, &consent_key(subject, client_id))
        .await
        .ok()??;
    // Records without scopes (written before consent was checked) count as none.
    serde_json::from_str::<ConsentRecord>(&entry)
        .ok()
        .map(|c| c.scope)
}

/// Whether this user allowed this client every scope of the request.
pub(super) async fn has_consent(
    server: &AuthServer,
    subject: &str,
    request: &AuthRequestRecord,
) -> bool {
    consented_scopes(server, subject, &request.client_id)
        .await
        .is_some_and(|allowed| request.scope.iter().all(|s| allowed.contains(s)))
}

/// Records that this user allowed this client the request's scopes (for the consent TTL).
async fn record_consent(server: &AuthServer, subject: &str, request: &AuthRequestRecord) {
    let ttl = i64::try_from(server.inner.consent_ttl.as_secs()).unwrap_or(0);
    if ttl == 0 {
        return;
    }
    let mut scope = consented_scopes(server, subject, &request.client_id)
        .await
        .unwrap_or_default();
    for s in &request.scope {
        if !scope.contains(s) {
            scope.push(s.clone());
        }
    }
    let Ok(value) = serde_json::to_string(&ConsentRecord { scope }) else {
        return;
    };
    if let Err(err) = server
        .inner
        .store
        .put_entry(
            EntryKind::Consent,
            &consent_key(subject, &request.client_id),
            value,
            now_unix() + ttl,
        )
        .await
    {
        tracing::warn!(target: "mcp_oauth::proxy", error = %err, "cannot record a consent");
    }
}

/// A signed-in user waiting at the consent page (after the callback), kept under
/// [`signed_in_key`]. The upstream tokens stay sealed in here until the user allows.
#[derive(Serialize, Deserialize)]
struct SignedIn {
    request: AuthRequestRecord,
    subject: String,
    claims: Map<String, Value>,
    family: String,
    sealed: String,
}

fn signed_in_key(id: &str) -> String {
    format!("signed-in:{}", hash_hex(id))
}

/// The consent page for a user who signed in upstream but never allowed this client.
pub(super) async fn ask_consent(
    server: &AuthServer,
    upstream: &Upstream,
    mut request: AuthRequestRecord,
    user: UserIdentity,
    family: String,
    sealed: String,
) -> Response {
    let client = match super::super::authorize::load_client(server, &request.client_id).await {
        Err(err) => return err.into_page(),
        Ok(Ok(client)) => client,
        Ok(Err(reason)) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                &format!("Unknown client: {reason}."),
            );
        }
    };
    let id = random_token();
    request.csrf = random_token();
    let account = ["preferred_username", "email", "name"]
        .iter()
        .find_map(|k| user.claims.get(*k).and_then(Value::as_str))
        .unwrap_or(&user.subject)
        .to_owned();
    let pending = SignedIn {
        request,
        subject: user.subject,
        claims: user.claims,
        family,
        sealed,
    };
    let expires =
        now_unix() + i64::try_from(server.inner.lifetimes.request.as_secs()).unwrap_or(600);
    let stored = match serde_json::to_string(&pending) {
        Ok(value) => server
            .inner
            .store
            .put_entry(EntryKind::Transaction, &signed_in_key(&id), value, expires)
            .await
            .map_err(|e| e.to_string()),
        Err(err) => Err(err.to_string()),
    };
    if let Err(err) = stored {
        tracing::error!(target: "mcp_oauth::proxy", error = %err, "cannot store a pending consent");
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The sign-in is unavailable right now; try again later.",
        );
    }
    let action = server.endpoint("/authorize");
    Consent {
        action: &action,
        request_id: &id,
        request: &pending.request,
        client: &client,
        cookie: binding_cookie(server, CONSENT_BINDING, &id, true),
        error: None,
        upstream: Some((upstream.name.as_str(), upstream.origin())),
        signed_in_as: Some(&account),
    }
    .render()
}

/// `POST /authorize` for a consent page shown after the callback: `None` when `id` is not
/// such a page (the caller answers as for an expired request).
pub(crate) async fn confirm(
    server: &AuthServer,
    headers: &HeaderMap,
    id: &str,
    csrf: &str,
    allow: bool,
) -> Option<Response> {
    let key = signed_in_key(id);
    let entry = match server.inner.store.entry(EntryKind::Transaction, &key).await {
        Ok(entry) => entry?,
        Err(err) => return Some(err.into_page()),
    };
    let pending: SignedIn = serde_json::from_str(&entry).ok()?;
    let token_ok = bool::from(csrf.as_bytes().ct_eq(pending.request.csrf.as_bytes()));
    if !token_ok
        || !is_bound(server, headers, CONSENT_BINDING, id)
        || !super::super::authorize::origin_ok(server, headers)
    {
        tracing::warn!(target: "mcp_oauth::proxy", "consent form refused: CSRF check failed");
        return Some(error_page(
            StatusCode::FORBIDDEN,
            "The form could not be verified. Open the sign-in again from the application.",
        ));
    }
    let taken = match server
        .inner
        .store
        .take_entry(EntryKind::Transaction, &key)
        .await
    {
        Ok(taken) => taken,
        Err(err) => return Some(err.into_page()),
    };
    let Some(_) = taken else {
        return Some(error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in request was already used. Start again from the application.",
        ));
    };
    let request = pending.request;
    let mut response = if !allow {
        tracing::info!(target: "mcp_oauth::proxy", client_id = %request.client_id, "authorization denied by the user");
        super::super::authorize::redirect_error(
            server,
            &request.redirect_uri,
            request.state.as_deref(),
            "access_denied",
            "the user denied the request",
        )
    } else if let Err(err) = store_tokens(server, &pending.family, pending.sealed).await {
        tracing::error!(target: "mcp_oauth::proxy", error = %err, "cannot store upstream tokens");
        super::super::authorize::redirect_error(
            server,
            &request.redirect_uri,
            request.state.as_deref(),
            "temporarily_unavailable",
            "try again later",
        )
    } else {
        record_consent(server, &pending.subject, &request).await;
        tracing::info!(target: "mcp_oauth::proxy", client_id = %request.client_id, subject = %pending.subject, "authorization approved after the upstream sign-in");
        let user = UserIdentity {
            subject: pending.subject,
            claims: pending.claims,
        };
        super::super::authorize::approve(server, &request, user, Some(pending.family)).await
    };
    append_cookie(
        &mut response,
        &binding_cookie(server, CONSENT_BINDING, id, false),
    );
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn server(issuer: &str) -> AuthServer {
        AuthServer::builder(issuer)
            .encryption_key([7u8; 32].as_slice())
            .build()
            .await
            .expect("server")
    }

    fn sent(cookie: &str) -> HeaderMap {
        let pair = cookie.split(';').next().unwrap_or_default();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(pair).expect("ascii"));
        headers
    }

    #[tokio::test]
    async fn https_issuers_bind_with_a_host_prefixed_secure_cookie() {
        let server = server("https://as.example").await;
        let set = binding_cookie(&server, STATE_BINDING, "state-1", true);
        assert!(set.starts_with("__Host-mcp_oauth_login_"), "{set}");
        for attribute in [
            "; Path=/",
            "; HttpOnly",
            "; SameSite=Lax",
            "; Secure",
            "; Max-Age=600",
        ] {
            assert!(set.contains(attribute), "{set}");
        }
        assert!(
            !set.contains("state-1"),
            "the state itself is not in the cookie"
        );
        assert!(is_bound(&server, &sent(&set), STATE_BINDING, "state-1"));
        assert!(!is_bound(&server, &sent(&set), STATE_BINDING, "state-2"));
        assert!(!is_bound(&server, &sent(&set), CONSENT_BINDING, "state-1"));
        assert!(!is_bound(
            &server,
            &HeaderMap::new(),
            STATE_BINDING,
            "state-1"
        ));
        let clear = binding_cookie(&server, STATE_BINDING, "state-1", false);
        assert!(clear.contains("=; ") && clear.contains("Max-Age=0") && clear.contains("; Secure"));
        // Another key (another server) does not accept this server's cookie.
        let other = AuthServer::builder("https://as.example")
            .encryption_key([8u8; 32].as_slice())
            .build()
            .await
            .expect("server");
        assert!(!is_bound(&other, &sent(&set), STATE_BINDING, "state-1"));
    }

    #[tokio::test]
    async fn loopback_http_issuers_bind_without_the_prefix_or_secure() {
        let server = server("http://127.0.0.1:8080").await;
        let set = binding_cookie(&server, STATE_BINDING, "state-1", true);
        assert!(set.starts_with("mcp_oauth_login_"), "{set}");
        assert!(set.contains("; HttpOnly") && set.contains("; SameSite=Lax"));
        assert!(!set.contains("Secure"));
        assert!(is_bound(&server, &sent(&set), STATE_BINDING, "state-1"));
    }
}
