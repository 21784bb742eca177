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

/// The sign-in policy for a user the sign-in back-end just identified: the scopes to grant for
/// `request` (all those requested without an access policy), or the `access_denied` redirect
/// to send when the policy refuses the user or every requested scope. The decision goes to the
/// audit log when `record` (the consent page asks first without recording; the code's
/// decision is the one kept). The one place the login form and the proxy apply the policy.
pub(crate) fn signed_in_scopes(
    server: &AuthServer,
    request: &AuthRequestRecord,
    user: &UserIdentity,
    record: bool,
) -> Result<Vec<String>, Box<Response>> {
    #[cfg(feature = "policy")]
    if let Some(access) = &server.inner.access {
        return access
            .decide_and_record(request, user, record)
            .map_err(|refusal| {
                Box::new(redirect_error(
                    server,
                    &request.redirect_uri,
                    request.state.as_deref(),
                    ErrorCode::AccessDenied,
                    refusal.description(),
                ))
            });
    }
    #[cfg(not(feature = "policy"))]
    let _ = (server, user, record);
    Ok(request.scope.clone())
}

/// Issues a code for an approved request (in the given grant family, or a new one) and sends
/// the browser back to the client.
pub(crate) async fn approve(
    server: &AuthServer,
    request: &AuthRequestRecord,
    user: UserIdentity,
    family: Option<String>,
) -> Response {
    let scope = match signed_in_scopes(server, request, &user, true) {
        Ok(scope) => scope,
        Err(refused) => return *refused,
    };
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
