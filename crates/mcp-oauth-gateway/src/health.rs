//! The answers of `/readyz` and `/metrics`.

use ::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// `/readyz` on the public listener: 200 `ready` or 503 `not ready`, nothing more (upstream
/// names and addresses are for operators).
pub(crate) fn readyz_plain(ready: bool) -> Response {
    if ready {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// `/readyz` on the admin listener: the same status, and each upstream's state as JSON.
pub(crate) fn readyz_detailed(upstreams: &[(String, bool)]) -> Response {
    let ready = upstreams.iter().all(|(_, r)| *r);
    let body = serde_json::json!({
        "ready": ready,
        "upstreams": upstreams
            .iter()
            .map(|(name, ready)| serde_json::json!({ "name": name, "ready": ready }))
            .collect::<Vec<_>>(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// `/metrics`: the Prometheus text format, version 0.0.4.
pub(crate) fn metrics_text(text: String) -> Response {
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
