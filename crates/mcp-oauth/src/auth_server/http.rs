//! The HTTP helpers every endpoint shares: the RFC 6749 §5.2 JSON error and the JSON answer,
//! the body limit, random tokens and the hashes they are stored as.

use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::pages;
use super::protocol::ErrorCode;
use crate::jose::jws::b64;

/// Largest request body of any endpoint.
pub(crate) const BODY_LIMIT: usize = 64 * 1024;

/// A body over [`BODY_LIMIT`] (refused by the limit layer, or by the handler when the body is
/// chunked) is answered in the endpoint's own error format: the error page at the
/// authorization endpoint, RFC 6749 §5.2 / RFC 7591 §3.2.2 JSON elsewhere.
pub(crate) async fn too_large(uri: http::Uri, response: Response) -> Response {
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("text/plain"));
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE || !plain {
        return response;
    }
    let path = uri.path();
    if path.ends_with("/authorize") {
        return pages::error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "The form is too large. Open the sign-in again from the application.",
        );
    }
    let error = if path.ends_with("/register") {
        ErrorCode::InvalidClientMetadata
    } else {
        ErrorCode::InvalidRequest
    };
    oauth_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        error,
        &format!("the request body is larger than {} KiB", BODY_LIMIT / 1024),
    )
}

/// 32 random bytes, base64url: codes, tokens, ids, CSRF tokens.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // The system random source does not fail on supported platforms; an all-zero value
    // would be caught by uniqueness checks in the store long before it mattered.
    let _ = SystemRandom::new().fill(&mut bytes);
    b64(&bytes)
}

/// SHA-256, hex: how codes, refresh tokens and client secrets are stored.
pub fn hash_hex(value: &str) -> String {
    digest::digest(&digest::SHA256, value.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// An RFC 6749 §5.2 error response.
pub(crate) fn oauth_error(
    status: StatusCode,
    error: impl AsRef<str>,
    description: &str,
) -> Response {
    json_response(
        status,
        &json!({ "error": error.as_ref(), "error_description": description }),
    )
}

/// An RFC 6749 §5.2 error of the token, revocation and registration endpoints, with the
/// status it is answered with (and `WWW-Authenticate: Basic` when the client used Basic).
pub(crate) struct TokenError {
    pub(crate) status: StatusCode,
    pub(crate) error: ErrorCode,
    pub(crate) description: String,
    pub(crate) basic_challenge: bool,
    /// A fresh nonce for the `DPoP-Nonce` header of a `use_dpop_nonce` answer.
    pub(crate) dpop_nonce: Option<String>,
}

pub(crate) fn err(error: ErrorCode, description: impl Into<String>) -> TokenError {
    TokenError {
        status: StatusCode::BAD_REQUEST,
        error,
        description: description.into(),
        basic_challenge: false,
        dpop_nonce: None,
    }
}

impl TokenError {
    pub(crate) fn into_response(self) -> Response {
        let mut response = oauth_error(self.status, self.error, &self.description);
        if self.basic_challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"token\""),
            );
        }
        if let Some(nonce) = self.dpop_nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
            response
                .headers_mut()
                .insert(crate::challenge::DPOP_NONCE, nonce);
        }
        response
    }
}
