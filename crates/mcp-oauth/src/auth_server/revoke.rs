//! RFC 7009 token revocation: a refresh token or an access token revokes its whole grant.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};

use super::clients::{authenticate_client, form_params};
use super::http::{hash_hex, oauth_error};
use super::protocol::ErrorCode;
use super::server::AuthServer;
use crate::claims::now_unix;

/// `POST /revoke`. Always 200 for an authenticated client (RFC 7009 §2.2: an invalid token
/// is not an error), whatever the token was.
pub(crate) async fn revoke(
    State(server): State<AuthServer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match form_params(&headers, &body) {
        Ok(form) => form,
        Err(error) => return error.into_response(),
    };
    let client = match authenticate_client(&server, &headers, &form).await {
        Ok(client) => client,
        Err(error) => return error.into_response(),
    };
    let Some(token) = form.get("token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            "token is missing",
        );
    };
    let until = now_unix()
        + i64::try_from(server.inner.config.lifetimes.refresh_token.as_secs())
            .unwrap_or(i64::MAX / 2);
    let family = match server.inner.store.refresh(&hash_hex(token)).await {
        Ok(Some(record)) if record.client_id == client.client_id => Some(record.family),
        Ok(_) => access_token_family(&server, token, &client.client_id).await,
        Err(err) => return err.into_response(),
    };
    if let Some(family) = family {
        if let Err(err) = server.revoke_family(&family, until).await {
            return err.into_response();
        }
        tracing::info!(target: "mcp_oauth::auth_server", client_id = %client.client_id, "grant revoked");
    }
    StatusCode::OK.into_response()
}

/// The grant of one of our own access tokens issued to `client_id`, if it verifies.
async fn access_token_family(server: &AuthServer, token: &str, client_id: &str) -> Option<String> {
    let jws = crate::jose::dangerous::decode_unverified(token).ok()?;
    jws.verify_with(&server.inner.tokens.keys.verifying_keys())
        .ok()?;
    (jws.claims.iss() == Some(server.inner.config.issuer.as_str())
        && jws.claims.client_id() == Some(client_id))
    .then(|| jws.claims.str("sid").map(str::to_owned))
    .flatten()
}
