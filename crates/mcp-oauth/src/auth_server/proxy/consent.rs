//! Consent in proxy mode, recorded per user and client on the server and asked after the
//! callback when missing (one of the two defences against a sign-in completed in someone
//! else's browser; the other is the binding cookie, in `cookies`).

use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq as _;

use super::state::ProxySignIn;
use super::tokens::store_tokens;
use crate::auth_server::clients::load_client;
use crate::auth_server::consent_page::Consent;
use crate::auth_server::cookies::{
    CONSENT_BINDING, append_cookie, binding_cookie, is_bound, origin_ok,
};
use crate::auth_server::http::{hash_hex, random_token};
use crate::auth_server::login::UserIdentity;
use crate::auth_server::pages::error_page;
use crate::auth_server::protocol::ErrorCode;
use crate::auth_server::respond::{approve, redirect_error, signed_in_scopes};
use crate::auth_server::server::AuthServer;
use crate::auth_server::store::{AuthRequestRecord, EntryKind};
use crate::claims::now_unix;

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
    // Records without scopes (written before consent was checked) do not decode: none.
    let entry = server
        .inner
        .store
        .entry::<ConsentRecord>(EntryKind::Consent, &consent_key(subject, client_id))
        .await
        .ok()??;
    Some(entry.scope)
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
async fn record_consent(
    server: &AuthServer,
    proxy: &ProxySignIn,
    subject: &str,
    request: &AuthRequestRecord,
) {
    let ttl = i64::try_from(proxy.consent_ttl.as_secs()).unwrap_or(0);
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
    if let Err(err) = server
        .inner
        .store
        .put_entry(
            EntryKind::Consent,
            &consent_key(subject, &request.client_id),
            &ConsentRecord { scope },
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
    proxy: &ProxySignIn,
    mut request: AuthRequestRecord,
    user: UserIdentity,
    family: String,
    sealed: String,
) -> Response {
    let client = match load_client(server, &request.client_id).await {
        Err(err) => return err.into_page(),
        Ok(Ok(client)) => client,
        Ok(Err(reason)) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                &format!("Unknown client: {reason}."),
            );
        }
    };
    // A user the policy refuses is not asked to consent; the page shows only the scopes the
    // policy grants this user.
    match signed_in_scopes(server, &request, &user, false) {
        Ok(scope) => request.scope = scope,
        Err(refused) => return *refused,
    }
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
        now_unix() + i64::try_from(server.inner.config.lifetimes.request.as_secs()).unwrap_or(600);
    let stored = server
        .inner
        .store
        .put_entry(
            EntryKind::Transaction,
            &signed_in_key(&id),
            &pending,
            expires,
        )
        .await;
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
        cookie: binding_cookie(server, &proxy.sealer, CONSENT_BINDING, &id, true),
        error: None,
        upstream: Some((proxy.upstream.name.as_str(), proxy.upstream.origin())),
        signed_in_as: Some(&account),
    }
    .render()
}

/// `POST /authorize` for a consent page shown after the callback: `None` when `id` is not
/// such a page (the caller answers as for an expired request).
pub(crate) async fn confirm(
    server: &AuthServer,
    proxy: &ProxySignIn,
    headers: &HeaderMap,
    id: &str,
    csrf: &str,
    allow: bool,
) -> Option<Response> {
    let key = signed_in_key(id);
    let entry = server
        .inner
        .store
        .entry::<SignedIn>(EntryKind::Transaction, &key)
        .await;
    let pending = match entry {
        Ok(entry) => entry?,
        Err(err) => return Some(err.into_page()),
    };
    let token_ok = bool::from(csrf.as_bytes().ct_eq(pending.request.csrf.as_bytes()));
    if !token_ok
        || !is_bound(server, &proxy.sealer, headers, CONSENT_BINDING, id)
        || !origin_ok(server, headers)
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
        .take_entry::<SignedIn>(EntryKind::Transaction, &key)
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
        redirect_error(
            server,
            &request.redirect_uri,
            request.state.as_deref(),
            ErrorCode::AccessDenied,
            "the user denied the request",
        )
    } else if let Err(err) = store_tokens(server, &pending.family, pending.sealed).await {
        tracing::error!(target: "mcp_oauth::proxy", error = %err, "cannot store upstream tokens");
        redirect_error(
            server,
            &request.redirect_uri,
            request.state.as_deref(),
            ErrorCode::TemporarilyUnavailable,
            "try again later",
        )
    } else {
        record_consent(server, proxy, &pending.subject, &request).await;
        tracing::info!(target: "mcp_oauth::proxy", client_id = %request.client_id, subject = %pending.subject, "authorization approved after the upstream sign-in");
        let user = UserIdentity {
            subject: pending.subject,
            claims: pending.claims,
        };
        approve(server, &request, user, Some(pending.family)).await
    };
    append_cookie(
        &mut response,
        &binding_cookie(server, &proxy.sealer, CONSENT_BINDING, id, false),
    );
    Some(response)
}
