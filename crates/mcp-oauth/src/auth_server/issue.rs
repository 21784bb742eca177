//! What the token endpoint hands out, for every grant (the three of `token.rs` and the
//! JWT-bearer grant): the RFC 6749 §5.1 answer, and DPoP at `/token` (RFC 9449 §5): the
//! request's proof, and the binding a grant may carry to a key.

use std::time::Duration;

use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq as _;

use super::http::{TokenError, err, json_response};
use super::protocol::ErrorCode;
use super::server::AuthServer;
use crate::claims::now_unix;
use crate::dpop::{DpopError, DpopProof, DpopRequest};

/// The RFC 6749 §5.1 answer, with the bound resource (RFC 8707 §2.2) when there is one;
/// `token_type` is `DPoP` for a bound access token (RFC 9449 §5).
pub(crate) fn token_response(
    access_token: String,
    scope: &[String],
    resource: Option<&str>,
    refresh: Option<String>,
    ttl: Duration,
    bound: bool,
) -> Response {
    let mut body = Map::new();
    body.insert("access_token".into(), json!(access_token));
    body.insert(
        "token_type".into(),
        json!(if bound { "DPoP" } else { "Bearer" }),
    );
    body.insert("expires_in".into(), json!(ttl.as_secs()));
    body.insert("scope".into(), json!(scope.join(" ")));
    if let Some(resource) = resource {
        body.insert("resource".into(), json!(resource));
    }
    if let Some(refresh) = refresh {
        body.insert("refresh_token".into(), json!(refresh));
    }
    json_response(StatusCode::OK, &Value::Object(body))
}

/// The request's DPoP proof, checked (RFC 9449 §5, §4.3) against `POST` and the token
/// endpoint's URL as the metadata names it: `None` when DPoP is off here (the header is
/// ignored) or the request has no `DPoP` header.
pub(crate) async fn dpop_proof(
    server: &AuthServer,
    headers: &HeaderMap,
) -> Result<Option<DpopProof>, TokenError> {
    let Some(verifier) = &server.inner.tokens.dpop else {
        return Ok(None);
    };
    if !headers.contains_key(DPOP) {
        return Ok(None);
    }
    let url = url::Url::parse(&server.endpoint("/token"))
        .map_err(|_| err(ErrorCode::ServerError, "the token endpoint URL is invalid"))?;
    let request = DpopRequest::new(&Method::POST, &url);
    verifier
        .verify(headers.get_all(DPOP), &request, now_unix())
        .await
        .map(Some)
        .map_err(dpop_error)
}

/// A refused proof: 400 `invalid_dpop_proof`, or `use_dpop_nonce` with a fresh nonce in
/// `DPoP-Nonce`; 503 when the replay cache could not answer (RFC 9449 §5, §8).
fn dpop_error(error: DpopError) -> TokenError {
    let description = error.public_description();
    match error {
        DpopError::UseNonce { nonce, .. } => TokenError {
            dpop_nonce: Some(nonce),
            ..err(ErrorCode::UseDpopNonce, description)
        },
        DpopError::Unavailable(reason) => {
            tracing::warn!(target: "mcp_oauth::auth_server", %reason, "DPoP replay cache unavailable");
            TokenError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                ..err(ErrorCode::TemporarilyUnavailable, "try again later")
            }
        }
        _ => err(ErrorCode::InvalidDpopProof, description),
    }
}

/// A bound grant (a code with `dpop_jkt`, a bound refresh token) is honoured only with a
/// proof by its key; `what` names it in the error.
pub(crate) fn check_binding(
    bound: Option<&str>,
    proof: Option<&DpopProof>,
    what: &str,
) -> Result<(), TokenError> {
    let Some(jkt) = bound else {
        return Ok(());
    };
    match proof {
        None => Err(err(
            ErrorCode::InvalidDpopProof,
            format!("the {what} is bound to a DPoP key: send a DPoP proof signed by that key"),
        )),
        Some(proof) if bool::from(proof.jkt().as_bytes().ct_eq(jkt.as_bytes())) => Ok(()),
        Some(_) => Err(err(
            ErrorCode::InvalidGrant,
            format!("the {what} is bound to another DPoP key"),
        )),
    }
}

/// The `DPoP` request header.
const DPOP: http::HeaderName = http::HeaderName::from_static("dpop");
