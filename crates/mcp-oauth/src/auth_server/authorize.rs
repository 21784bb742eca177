//! The authorization endpoint: validation, the login and consent page, and the code.

use std::collections::HashMap;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, RawQuery, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode, header};
use subtle::ConstantTimeEq as _;

use super::clients::{load_client, resolve_resource};
use super::consent_page::Consent;
use super::cookies::{
    approved_clients, consent_cookie, consent_cookie_name, cookie, csrf_cookie, origin_ok,
    set_csrf_cookie,
};
use super::http::random_token;
use super::pages::error_page;
use super::proxy;
use super::registration::redirect_matches;
use super::respond::{approve, redirect_error};
use super::server::AuthServer;
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
    let trusted = client.expires_at.is_none() && !client.from_metadata_document;
    let fail = |error: &str, description: &str| {
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
            "invalid_request",
            &format!("the parameter {name} appears more than once"),
        );
    }
    if params.get("response_type").copied() != Some("code") {
        return fail("unsupported_response_type", "response_type must be code");
    }
    if !client.allows_grant("authorization_code") {
        return fail(
            "unauthorized_client",
            "this client is not registered for the authorization_code grant",
        );
    }
    let Some(challenge) = params.get("code_challenge").copied() else {
        return fail(
            "invalid_request",
            "code_challenge is required (PKCE with S256)",
        );
    };
    if params.get("code_challenge_method").copied() != Some("S256") {
        return fail("invalid_request", "code_challenge_method must be S256");
    }
    if challenge.len() != 43
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return fail(
            "invalid_request",
            "code_challenge must be the base64url SHA-256 of the verifier (43 characters)",
        );
    }
    if params
        .get("prompt")
        .is_some_and(|p| p.split(' ').any(|p| p == "none"))
        && !server.inner.auto_approve
    {
        return fail(
            "login_required",
            "this server always asks the user to sign in",
        );
    }
    let scope = match params.get("scope").map(|s| parse_scope_list(s)) {
        Some(scopes) if !scopes.is_empty() => scopes,
        _ => client
            .scope
            .as_deref()
            .map(parse_scope_list)
            .unwrap_or_else(|| server.inner.default_scopes.clone()),
    };
    if let Some(bad) = scope
        .iter()
        .find(|s| *s != "offline_access" && !server.inner.scopes_supported.contains(s))
    {
        return fail(
            "invalid_scope",
            &format!("the scope {bad} is not offered by this server"),
        );
    }
    let resource = match resolve_resource(&server, params.get("resource").copied()) {
        Ok(resource) => resource,
        Err(description) => return fail("invalid_target", &description),
    };
    let csrf = csrf_cookie(&server, &headers).unwrap_or_else(random_token);
    let request = AuthRequestRecord {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.clone(),
        state: state.map(str::to_owned),
        scope,
        resource,
        code_challenge: challenge.to_owned(),
        csrf,
        expires_at: now_unix()
            + i64::try_from(server.inner.lifetimes.request.as_secs()).unwrap_or(600),
    };
    if let Some(upstream) = server.inner.upstream.clone() {
        let approved = approved_clients(
            &server,
            cookie(&headers, consent_cookie_name(&server)).as_deref(),
        );
        if server.inner.auto_approve || approved.iter().any(|(id, _)| *id == client.client_id) {
            return proxy::start(&server, &upstream, request).await;
        }
    } else if server.inner.auto_approve {
        return match server.inner.login.auto_login() {
            Some(user) => approve(&server, &request, user, None).await,
            None => fail("access_denied", "no user to sign in automatically"),
        };
    }
    let request_id = random_token();
    if let Err(err) = server
        .inner
        .store
        .put_request(&request_id, request.clone())
        .await
    {
        let (_, error) = err.logged();
        return fail(error, "try again later");
    }
    let action = server.endpoint("/authorize");
    Consent {
        action: &action,
        request_id: &request_id,
        request: &request,
        client: &client,
        cookie: set_csrf_cookie(&server, &request.csrf),
        error: None,
        upstream: server
            .inner
            .upstream
            .as_deref()
            .map(|u| (u.name.as_str(), u.origin())),
        signed_in_as: None,
    }
    .render()
}

/// The form of the login and consent page. `Debug` shows the user name and the decision
/// only: never the password, the CSRF token or the request id.
#[derive(serde::Deserialize)]
pub(crate) struct Decision {
    request_id: String,
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    decision: String,
}

impl std::fmt::Debug for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decision")
            .field("username", &self.username)
            .field("decision", &self.decision)
            .finish_non_exhaustive()
    }
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
        // Proxy mode: the consent page shown after the upstream sign-in.
        if server.inner.upstream.is_some()
            && let Some(response) = proxy::confirm(
                &server,
                &headers,
                &form.request_id,
                &form.csrf,
                form.decision == "approve",
            )
            .await
        {
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
            "access_denied",
            "the user denied the request",
        );
    }
    if let Some(upstream) = server.inner.upstream.clone() {
        // Proxy mode: the consent is given; remember it for this browser, then sign in upstream.
        let request = match server.inner.store.take_request(&form.request_id).await {
            Ok(request) => request,
            Err(err) => return err.into_page(),
        };
        let Some(request) = request else {
            return error_page(
                StatusCode::BAD_REQUEST,
                "This sign-in request was already used. Start again from the application.",
            );
        };
        let approved = approved_clients(
            &server,
            cookie(&headers, consent_cookie_name(&server)).as_deref(),
        );
        let remember = consent_cookie(&server, approved, &request.client_id);
        let mut response = proxy::start(&server, &upstream, request).await;
        if let Some(value) = remember
            .filter(|_| !server.inner.consent_ttl.is_zero())
            .and_then(|c| http::HeaderValue::from_str(&c).ok())
        {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        return response;
    }
    // The page again, with a message. The same words whether the user exists or not.
    let again = |error: &str| {
        let action = server.endpoint("/authorize");
        Consent {
            action: &action,
            request_id: &form.request_id,
            request: &request,
            client: &client,
            cookie: set_csrf_cookie(&server, &request.csrf),
            error: Some(error),
            upstream: None,
            signed_in_as: None,
        }
        .render()
    };
    // Password guessing backs off per account and per request, then locks the request (F5).
    let throttle = &server.inner.login_throttle;
    let wait = throttle.wait(&form.username, &form.request_id);
    if !wait.is_zero() {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return again(&format!("Too many failed sign-ins. Try again in {secs} s."));
    }
    let Some(user) = server
        .inner
        .login
        .authenticate(&form.username, &form.password)
        .await
    else {
        if throttle.fail(&form.username, &form.request_id) {
            let _ = server.inner.store.take_request(&form.request_id).await;
            tracing::warn!(target: "mcp_oauth::auth_server", client_id = %request.client_id, "sign-in request closed after too many failed passwords");
            return error_page(
                StatusCode::BAD_REQUEST,
                "Too many failed sign-ins: this sign-in request is closed. Start again from the application.",
            );
        }
        return again(
            "Wrong user name or password. Each failed try makes the next one wait longer.",
        );
    };
    throttle.succeed(&form.username);
    match server.inner.store.take_request(&form.request_id).await {
        Ok(Some(request)) => {
            tracing::info!(target: "mcp_oauth::auth_server", client_id = %request.client_id, subject = %user.subject, "authorization approved");
            approve(&server, &request, user, None).await
        }
        Err(err) => err.into_page(),
        Ok(None) => error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in request was already used. Start again from the application.",
        ),
    }
}

#[cfg(test)]
mod tests {
    /// Security review 2, F12: `{:?}` of a submitted form holds no secret.
    #[test]
    fn debug_prints_no_password_csrf_or_request_id() {
        let form: super::Decision = serde_json::from_value(serde_json::json!({
            "request_id": "request-id-5b7", "csrf": "csrf-token-2e4",
            "username": "alice", "password": "password-9d1", "decision": "approve"
        }))
        .expect("form");
        let printed = format!("{form:?}");
        for secret in ["request-id-5b7", "csrf-token-2e4", "password-9d1"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(printed.contains("alice"), "{printed}");
    }
}
