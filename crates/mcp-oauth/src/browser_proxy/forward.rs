//! `POST <base>/proxy`: forwards one `GET` or `POST` for a browser and wraps the answer in
//! `{status, statusText, headers, body}`.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde_json::{Map, Value, json};

use super::client::{Failure, Outbound, TARGET};
use super::{Shared, error, error_with, refused};

/// Request headers forwarded; every other one is dropped.
const REQUEST_HEADERS: [&str; 4] = ["accept", "authorization", "content-type", "dpop"];

/// Response headers passed back; every other one (`set-cookie` first) is dropped.
const RESPONSE_HEADERS: [&str; 7] = [
    "cache-control",
    "content-type",
    "dpop-nonce",
    "expires",
    "pragma",
    "retry-after",
    "www-authenticate",
];

pub(super) async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if !shared.authenticated(&parts) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    // A JSON content type makes cross-site calls preflighted, so that a cookie-based
    // `authenticate` hook cannot be driven by a plain HTML form.
    let is_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        );
    }
    let envelope = match read_envelope(body, shared.max_request_bytes).await {
        Ok(envelope) => envelope,
        Err((status, message)) => return error(status, message),
    };
    let Some(raw_url) = envelope
        .get("url")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
    else {
        return error(StatusCode::BAD_REQUEST, "Missing url parameter");
    };
    let url = match shared.accept_target(raw_url) {
        Ok(url) => url,
        Err((status, message)) => return error(status, message),
    };
    let method = match envelope.get("method") {
        None | Some(Value::Null) => Method::GET,
        Some(Value::String(m)) if m.eq_ignore_ascii_case("GET") => Method::GET,
        Some(Value::String(m)) if m.eq_ignore_ascii_case("POST") => Method::POST,
        Some(_) => {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "Only GET and POST are allowed",
            );
        }
    };
    let mut headers = match request_headers(envelope.get("headers")) {
        Ok(headers) => headers,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let body = match (&method, envelope.get("body")) {
        (&Method::POST, Some(body)) if !body.is_null() => Some(encode_body(body, &mut headers)),
        _ => None,
    };
    let request = Outbound {
        method,
        url,
        headers,
        body,
        url_accepted: true,
    };
    let sent = tokio::time::timeout(
        shared.timeout,
        shared.send(request, Some(shared.max_response_bytes)),
    )
    .await;
    let failed = |details: String| {
        error_with(
            StatusCode::BAD_GATEWAY,
            "OAuth proxy request failed",
            json!({ "details": details }),
        )
    };
    let answer = match sent {
        Ok(Ok(answer)) => answer,
        Err(_) => {
            return error(StatusCode::GATEWAY_TIMEOUT, "OAuth proxy request timed out");
        }
        Ok(Err(Failure::Refused(refusal))) => return refused(refusal),
        Ok(Err(Failure::Network(details))) => return failed(details),
        Ok(Err(Failure::TooLarge(limit))) => {
            return failed(format!("the response is larger than {limit} bytes"));
        }
        Ok(Err(Failure::TooManyRedirects(max))) => {
            return failed(format!("more than {max} redirects"));
        }
    };
    let mut passed = Map::new();
    for name in RESPONSE_HEADERS {
        let values: Vec<&str> = answer
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if !values.is_empty() {
            passed.insert(name.into(), values.join(", ").into());
        }
    }
    Json(json!({
        "status": answer.status.as_u16(),
        "statusText": answer.status.canonical_reason().unwrap_or_default(),
        "headers": passed,
        "body": decode_body(&answer.headers, &answer.body),
    }))
    .into_response()
}

/// The JSON object of the request, or the status and message to answer.
async fn read_envelope(
    body: Body,
    limit: usize,
) -> Result<Map<String, Value>, (StatusCode, String)> {
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request body larger than {limit} bytes"),
            ));
        }
        Err(_) => {
            return Err((
                StatusCode::BAD_REQUEST,
                "Cannot read the request body".into(),
            ));
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(envelope)) => Ok(envelope),
        _ => Err((StatusCode::BAD_REQUEST, "Invalid JSON body".into())),
    }
}

/// The allowed request headers of the envelope; others are dropped. The error is the message
/// for a 400.
fn request_headers(given: Option<&Value>) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    let Some(Value::Object(given)) = given else {
        return Ok(headers);
    };
    let mut dropped = 0usize;
    for (name, value) in given {
        let lower = name.to_ascii_lowercase();
        let Some(allowed) = REQUEST_HEADERS.iter().find(|h| **h == lower) else {
            dropped += 1;
            continue;
        };
        let Some(value) = value.as_str() else {
            dropped += 1;
            continue;
        };
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("Invalid value for header {allowed}"))?;
        headers.insert(HeaderName::from_static(allowed), value);
    }
    if dropped > 0 {
        tracing::debug!(target: TARGET, dropped, "request headers not forwarded");
    }
    Ok(headers)
}

/// mcp-use's body rules: a string as is; an object as a form (fields in name order) when the
/// content type says so; anything else as JSON, with `Content-Type: application/json` when none was given.
fn encode_body(body: &Value, headers: &mut HeaderMap) -> Bytes {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.is_empty() {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    match body {
        Value::String(text) => Bytes::from(text.clone()),
        Value::Object(fields) if content_type.starts_with("application/x-www-form-urlencoded") => {
            // In name order: a JSON object's order is not the same in every build (a
            // dependency may turn on serde_json's `preserve_order`), the form's must be.
            let mut fields: Vec<_> = fields.iter().collect();
            fields.sort_unstable_by_key(|(name, _)| name.as_str());
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            for (name, value) in fields {
                match value {
                    Value::String(text) => form.append_pair(name, text),
                    other => form.append_pair(name, &other.to_string()),
                };
            }
            Bytes::from(form.finish())
        }
        other => Bytes::from(other.to_string()),
    }
}

/// JSON when the upstream says JSON and it parses, text otherwise, `null` when empty.
fn decode_body(headers: &HeaderMap, body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
    if is_json && let Ok(value) = serde_json::from_slice(body) {
        return value;
    }
    String::from_utf8_lossy(body).into_owned().into()
}
