//! The authorization endpoint: validation, the login and consent page, and the code.

use std::collections::HashMap;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, RawQuery, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use subtle::ConstantTimeEq as _;

use super::clients::{load_client, resolve_resource};
use super::consent_page::Consent;
use super::consent_page::Decision;
use super::cookies::{csrf_cookie, origin_ok, set_csrf_cookie};
use super::http::random_token;
use super::pages::error_page;
use super::protocol::{ErrorCode, GrantType};
use super::registration::redirect_matches;
use super::respond::redirect_error;
use super::server::{AuthServer, Begin};
use super::store::AuthRequestRecord;
use crate::claims::now_unix;
use crate::scope::parse_scope_list;

/// `GET /authorize`.
pub(crate) async fn show(
    State(server): State<AuthServer>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let mut params: HashMap<&str, &str> = HashMap::new();
    let mut repeated: Option<&str> = None;
    for (k, v) in &pairs {
        if params.insert(k.as_str(), v.as_str()).is_some() {
            repeated.get_or_insert(k.as_str());
        }
    }
    // Until the client and its redirect URI are known to match, nothing is redirected.
    if let Some(name @ ("client_id" | "redirect_uri")) = repeated {
        return error_page(
            StatusCode::BAD_REQUEST,
            &format!("The parameter {name} appears more than once."),
        );
    }
    let Some(client_id) = params.get("client_id").copied().filter(|c| !c.is_empty()) else {
        return error_page(StatusCode::BAD_REQUEST, "The request has no client_id.");
    };
    let client = match load_client(&server, client_id).await {
        Err(err) => return err.into_page(),
        Ok(Ok(client)) => client,
        Ok(Err(reason)) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                &format!("Unknown client: {reason}."),
            );
        }
    };
    let redirect_uri = match params.get("redirect_uri").copied() {
        Some(presented)
            if client
                .redirect_uris
                .iter()
                .any(|r| redirect_matches(r, presented)) =>
        {
            presented.to_owned()
        }
        Some(_) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "The redirect_uri is not registered for this client.",
            );
        }
        None => match client.redirect_uris.as_slice() {
            [only] => only.clone(),
            _ => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "The request has no redirect_uri and the client has several.",
                );
            }
        },
    };
    let state = params.get("state").copied();
    // RFC 9700 §4.11.2: errors are redirected without the user's involvement only to a
    // client the operator configured or one that completed an authorization here; anyone can
    // register a redirect URI, so for the others the error is a page (no open redirect).
    let trusted = client.is_established();
    let fail = |error: ErrorCode, description: &str| {
        if trusted {
            redirect_error(&server, &redirect_uri, state, error, description)
        } else {
            tracing::debug!(target: "mcp_oauth::auth_server", client_id = %client.client_id, %error, "authorization error shown, not redirected: the client never completed an authorization");
            error_page(
                StatusCode::BAD_REQUEST,
                &format!("The application's request was refused ({error}): {description}."),
            )
        }
    };
    if let Some(name) = repeated {
        return fail(
            ErrorCode::InvalidRequest,
            &format!("the parameter {name} appears more than once"),
        );
    }
    if params.get("response_type").copied() != Some("code") {
        return fail(
            ErrorCode::UnsupportedResponseType,
            "response_type must be code",
        );
    }
    if !client.allows_grant(GrantType::AuthorizationCode) {
        return fail(
            ErrorCode::UnauthorizedClient,
            "this client is not registered for the authorization_code grant",
        );
    }
    let Some(challenge) = params.get("code_challenge").copied() else {
        return fail(
            ErrorCode::InvalidRequest,
            "code_challenge is required (PKCE with S256)",
        );
    };
    if params.get("code_challenge_method").copied() != Some("S256") {
        return fail(
            ErrorCode::InvalidRequest,
            "code_challenge_method must be S256",
        );
    }
    if challenge.len() != 43
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return fail(
            ErrorCode::InvalidRequest,
            "code_challenge must be the base64url SHA-256 of the verifier (43 characters)",
        );
    }
    if params
        .get("prompt")
        .is_some_and(|p| p.split(' ').any(|p| p == "none"))
        && !server.inner.config.auto_approve
    {
        return fail(
            ErrorCode::LoginRequired,
            "this server always asks the user to sign in",
        );
    }
    let scope = match params.get("scope").map(|s| parse_scope_list(s)) {
        Some(scopes) if !scopes.is_empty() => scopes,
        _ => client
            .scope
            .as_deref()
            .map(parse_scope_list)
            .unwrap_or_else(|| server.inner.config.default_scopes.clone()),
    };
    if let Some(bad) = scope
        .iter()
        .find(|s| *s != "offline_access" && !server.inner.config.scopes_supported.contains(s))
    {
        return fail(
            ErrorCode::InvalidScope,
            &format!("the scope {bad} is not offered by this server"),
        );
    }
    let resource = match resolve_resource(&server, params.get("resource").copied()) {
        Ok(resource) => resource,
        Err(description) => return fail(ErrorCode::InvalidTarget, &description),
    };
    // RFC 9449 §10: the key the code is bound to; ignored when DPoP is off.
    let dpop_jkt = match params.get("dpop_jkt").copied() {
        Some(jkt) if server.inner.tokens.dpop.is_some() => {
            if !is_thumbprint(jkt) {
                return fail(
                    ErrorCode::InvalidRequest,
                    "dpop_jkt must be the base64url SHA-256 thumbprint of the DPoP key (43 characters)",
                );
            }
            Some(jkt.to_owned())
        }
        _ => None,
    };
    let csrf = csrf_cookie(&server, &headers).unwrap_or_else(random_token);
    let request = AuthRequestRecord {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.clone(),
        state: state.map(str::to_owned),
        scope,
        resource,
        code_challenge: challenge.to_owned(),
        dpop_jkt,
        csrf,
        expires_at: now_unix()
            + i64::try_from(server.inner.config.lifetimes.request.as_secs()).unwrap_or(600),
    };
    match server
        .inner
        .sign_in
        .begin(&server, &headers, &request)
        .await
    {
        Begin::Page => {}
        Begin::Answer(response) => return response,
        Begin::Refuse(error, description) => return fail(error, description),
    }
    let request_id = random_token();
    if let Err(err) = server
        .inner
        .store
        .put_request(&request_id, request.clone())
        .await
    {
        let (_, error) = err.logged();
        return fail(ErrorCode::of_store(error), "try again later");
    }
    let action = server.endpoint("/authorize");
    Consent {
        action: &action,
        request_id: &request_id,
        request: &request,
        client: &client,
        cookie: set_csrf_cookie(&server, &request.csrf),
        error: None,
        upstream: server.inner.sign_in.provider(),
        signed_in_as: None,
    }
    .render()
}

/// `POST /authorize`.
pub(crate) async fn submit(
    State(server): State<AuthServer>,
    headers: HeaderMap,
    form: Result<Form<Decision>, FormRejection>,
) -> Response {
    // A form this page did not send (a field missing or repeated, another content type):
    // the error page, like every error that cannot go back to the client.
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => {
            tracing::debug!(target: "mcp_oauth::auth_server", reason = %rejection.body_text(), "consent form unreadable");
            let status = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            return error_page(
                status,
                "The form could not be read. Open the sign-in again from the application.",
            );
        }
    };
    let request = match server.inner.store.request(&form.request_id).await {
        Ok(request) => request,
        Err(err) => return err.into_page(),
    };
    let Some(request) = request else {
        // A back-end's own page (proxy mode: the consent asked after the provider's answer).
        if let Some(response) = server.inner.sign_in.resume(&server, &headers, &form).await {
            return response;
        }
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in request expired or was already used. Start again from the application.",
        );
    };
    let csrf_cookie = csrf_cookie(&server, &headers).unwrap_or_default();
    let csrf_ok = bool::from(
        form.csrf.as_bytes().ct_eq(request.csrf.as_bytes())
            & csrf_cookie.as_bytes().ct_eq(request.csrf.as_bytes()),
    );
    // The cookie (SameSite=Strict) and the token bound to the request are the CSRF check.
    if !csrf_ok || !origin_ok(&server, &headers) {
        tracing::warn!(target: "mcp_oauth::auth_server", "consent form refused: CSRF check failed");
        return error_page(
            StatusCode::FORBIDDEN,
            "The form could not be verified. Open the sign-in again from the application.",
        );
    }
    let client = match load_client(&server, &request.client_id).await {
        Err(err) => return err.into_page(),
        Ok(Ok(client)) => client,
        Ok(Err(reason)) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                &format!("Unknown client: {reason}."),
            );
        }
    };
    if form.decision != "approve" {
        let _ = server.inner.store.take_request(&form.request_id).await;
        tracing::info!(target: "mcp_oauth::auth_server", client_id = %request.client_id, "authorization denied by the user");
        return redirect_error(
            &server,
            &request.redirect_uri,
            request.state.as_deref(),
            ErrorCode::AccessDenied,
            "the user denied the request",
        );
    }
    server
        .inner
        .sign_in
        .finish(&server, &headers, &form, request, &client)
        .await
}

/// `GET /oauth/callback`: the provider's answer (proxy mode), to the sign-in back-end.
pub(crate) async fn callback(
    State(server): State<AuthServer>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    server
        .inner
        .sign_in
        .callback(&server, &headers, query)
        .await
}

/// An RFC 7638 SHA-256 thumbprint: 43 base64url characters.
fn is_thumbprint(jkt: &str) -> bool {
    jkt.len() == 43
        && jkt
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
