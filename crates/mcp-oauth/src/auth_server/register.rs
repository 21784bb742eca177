//! RFC 7591 dynamic client registration, and the redirect-URI rules every client follows.
//!
//! What a registration may do depends on the server's [`Registration`] policy:
//!
//! - anyone may register a client that acts for a user (`authorization_code`,
//!   `refresh_token`) while registration is [`Registration::Open`];
//! - a client that acts for itself (`client_credentials`, a "machine client") is registered
//!   only with the operator's initial access token ([`Registration::InitialAccessToken`],
//!   RFC 7591 §3: `Authorization: Bearer <token>`), and must name its `scope`;
//! - the body is `application/json` (415 otherwise, so that a browser must preflight it) of
//!   at most 8 KiB; members this server does not know are dropped, not stored or echoed;
//! - a registration that never redeems an authorization code lapses after
//!   `AuthServerBuilder::unused_registration_ttl` (24 hours by default).

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq as _;

use super::http::{hash_hex, json_response, oauth_error, random_token};
use super::protocol::ErrorCode;
use super::registration::{METADATA_LIMIT, Registration, client_from_registration};
use super::server::AuthServer;
use crate::claims::now_unix;

/// Whether the request carries `Content-Type: application/json` (parameters allowed).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// Why a registration without the right initial access token is refused: the description
/// and the `WWW-Authenticate` challenge (RFC 6750 §3).
type Refusal = (&'static str, &'static str);

/// The initial access token check (RFC 7591 §3): `Ok(true)` when the request carries the
/// operator's token, `Ok(false)` when registration is open (and no token is needed).
fn initial_access(server: &AuthServer, headers: &HeaderMap) -> Result<bool, Refusal> {
    let expected = match &server.inner.clients.registration {
        Registration::InitialAccessToken(token) => token,
        _ => return Ok(false),
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(presented) = presented else {
        return Err((
            "registration needs the initial access token of this server's operator",
            "Bearer realm=\"register\"",
        ));
    };
    // Both sides hashed: the comparison is constant-time whatever their lengths.
    let matches = hash_hex(presented)
        .as_bytes()
        .ct_eq(hash_hex_bytes(expected.expose()).as_bytes());
    if bool::from(matches) {
        return Ok(true);
    }
    Err((
        "the initial access token is not valid",
        "Bearer realm=\"register\", error=\"invalid_token\"",
    ))
}

fn refused(description: &str, challenge: &'static str) -> Response {
    let mut response = oauth_error(
        StatusCode::UNAUTHORIZED,
        ErrorCode::InvalidToken,
        description,
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// [`hash_hex`] of raw bytes.
fn hash_hex_bytes(value: &[u8]) -> String {
    hash_hex(&String::from_utf8_lossy(value))
}

pub(crate) async fn register(
    State(server): State<AuthServer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if matches!(server.inner.clients.registration, Registration::Off) {
        return oauth_error(
            StatusCode::FORBIDDEN,
            ErrorCode::AccessDenied,
            "dynamic client registration is disabled on this server",
        );
    }
    let operator = match initial_access(&server, &headers) {
        Ok(operator) => operator,
        Err((description, challenge)) => return refused(description, challenge),
    };
    if !is_json(&headers) {
        return oauth_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::InvalidClientMetadata,
            "the request must be application/json (RFC 7591 §3.1)",
        );
    }
    if body.len() > METADATA_LIMIT {
        return oauth_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::InvalidClientMetadata,
            &format!(
                "client metadata is limited to {} KiB",
                METADATA_LIMIT / 1024
            ),
        );
    }
    let meta: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(Value::Object(meta)) => meta,
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidClientMetadata,
                "the body must be a JSON object of client metadata (RFC 7591)",
            );
        }
    };
    let offered = operator.then_some(server.inner.config.scopes_supported.as_slice());
    let mut client = match client_from_registration(meta, offered) {
        Ok(client) => client,
        Err((error, description)) => {
            return oauth_error(StatusCode::BAD_REQUEST, error, &description);
        }
    };
    client.client_id = random_token();
    let secret = client
        .token_endpoint_auth_method
        .uses_secret()
        .then(random_token);
    client.secret_hash = secret.as_deref().map(hash_hex);
    // A registration the operator made (initial access token) stays; others lapse unless
    // the client completes an authorization in time.
    if !operator {
        let ttl = i64::try_from(server.inner.clients.unused_registration_ttl.as_secs())
            .unwrap_or(i64::MAX / 2);
        client.expires_at = Some(now_unix().saturating_add(ttl));
    }
    if let Err(err) = server.inner.store.put_client(client.clone()).await {
        let (status, error) = err.logged();
        return oauth_error(status, error, "registration is unavailable right now");
    }
    tracing::info!(target: "mcp_oauth::auth_server", client_id = %client.client_id, name = ?client.client_name, "client registered");
    let mut out = client.metadata.clone();
    out.insert("client_id".into(), json!(client.client_id));
    out.insert("client_id_issued_at".into(), json!(client.issued_at));
    if let Some(secret) = secret {
        out.insert("client_secret".into(), json!(secret));
        out.insert("client_secret_expires_at".into(), json!(0));
    }
    out.insert("redirect_uris".into(), json!(client.redirect_uris));
    out.insert(
        "token_endpoint_auth_method".into(),
        json!(client.token_endpoint_auth_method),
    );
    out.insert("grant_types".into(), json!(client.grant_types));
    out.insert("response_types".into(), json!(["code"]));
    out.insert("application_type".into(), json!(client.application_type));
    if let Some(name) = &client.client_name {
        out.insert("client_name".into(), json!(name));
    }
    if let Some(scope) = &client.scope {
        out.insert("scope".into(), json!(scope));
    }
    json_response(StatusCode::CREATED, &Value::Object(out))
}
