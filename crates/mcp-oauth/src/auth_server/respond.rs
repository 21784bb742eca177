//! The answers that send the browser back to the client: a code for an approved request, or
//! an error, at the client's redirect URI with `iss` (RFC 9207).

use axum::response::{IntoResponse, Redirect, Response};
use http::{StatusCode, header};
use url::Url;

use super::http::{hash_hex, random_token};
use super::login::UserIdentity;
use super::pages::error_page;
use super::protocol::ErrorCode;
use super::server::AuthServer;
use super::store::{AuthRequestRecord, CodeRecord, GrantRecord};
use crate::claims::now_unix;

/// A `302 Found` to `url`, not cached.
pub(crate) fn found(url: &str) -> Response {
    let mut response = Redirect::to(url).into_response();
    *response.status_mut() = StatusCode::FOUND;
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

/// The client's redirect URI with these parameters added, `iss` included (RFC 9207).
pub(crate) fn redirect_to(
    server: &AuthServer,
    redirect_uri: &str,
    params: &[(&str, &str)],
) -> Response {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return error_page(StatusCode::BAD_REQUEST, "the redirect URI is not a URL");
    };
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in params {
            query.append_pair(k, v);
        }
        query.append_pair("iss", &server.inner.config.issuer);
    }
    found(url.as_str())
}

pub(crate) fn redirect_error(
    server: &AuthServer,
    redirect_uri: &str,
    state: Option<&str>,
    error: ErrorCode,
    description: &str,
) -> Response {
    let mut params = vec![
        ("error", error.as_str()),
        ("error_description", description),
    ];
    if let Some(state) = state {
        params.push(("state", state));
    }
    redirect_to(server, redirect_uri, &params)
}

/// Issues a code for an approved request (in the given grant family, or a new one) and sends
/// the browser back to the client.
pub(crate) async fn approve(
    server: &AuthServer,
    request: &AuthRequestRecord,
    user: UserIdentity,
    family: Option<String>,
) -> Response {
    #[cfg(feature = "policy")]
    let scope = match &server.inner.access {
        Some(access) => match access.decide(request, &user) {
            Ok(scope) => scope,
            Err(refusal) => {
                return redirect_error(
                    server,
                    &request.redirect_uri,
                    request.state.as_deref(),
                    ErrorCode::AccessDenied,
                    refusal.description(),
                );
            }
        },
        None => request.scope.clone(),
    };
    #[cfg(not(feature = "policy"))]
    let scope = request.scope.clone();
    let code = random_token();
    let record = CodeRecord {
        grant: GrantRecord {
            client_id: request.client_id.clone(),
            scope,
            resource: request.resource.clone(),
            subject: user.subject,
            user_claims: user.claims,
            family: family.unwrap_or_else(random_token),
            dpop_jkt: request.dpop_jkt.clone(),
            expires_at: now_unix()
                + i64::try_from(server.inner.config.lifetimes.code.as_secs()).unwrap_or(60),
        },
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
    };
    if let Err(err) = server.inner.store.put_code(&hash_hex(&code), record).await {
        let (_, error) = err.logged();
        return redirect_error(
            server,
            &request.redirect_uri,
            request.state.as_deref(),
            ErrorCode::of_store(error),
            "try again later",
        );
    }
    let mut params = vec![("code", code.as_str())];
    if let Some(state) = &request.state {
        params.push(("state", state));
    }
    redirect_to(server, &request.redirect_uri, &params)
}
