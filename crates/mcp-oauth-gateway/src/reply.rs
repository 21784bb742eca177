//! The JSON answers the gateway's endpoints write themselves: a JSON-RPC message with its
//! HTTP status, marked for the metrics when it is an error.

use ::http::{HeaderValue, StatusCode, header};
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;

use crate::jsonrpc;

/// `body` as `application/json` with `status`.
pub(crate) fn json(status: StatusCode, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body.clone()));
    *response.status_mut() = status;
    crate::metrics::mark_jsonrpc_error(&mut response, &body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A JSON-RPC error answer to request `id` with `status`.
pub(crate) fn rpc_error(
    status: StatusCode,
    id: Option<&str>,
    code: i64,
    message: &str,
) -> Response {
    json(status, jsonrpc::error_response(id, code, message))
}
