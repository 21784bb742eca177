//! Reading an upstream's answers: a whole body up to a size limit, and the JSON-RPC messages
//! in it (JSON or SSE). Shared by the Streamable HTTP and the legacy SSE transports.

use bytes::Bytes;
use http::HeaderValue;

use crate::error::GatewayError;
use crate::sse;

/// Largest upstream answer read whole (`initialize`, filtered lists).
const MAX_READ: usize = 16 * 1024 * 1024;

pub(crate) fn unavailable(e: reqwest::Error) -> GatewayError {
    // The URL is configuration, not a secret; the error text carries no header.
    GatewayError::Unavailable(e.without_url().to_string())
}

/// The JSON-RPC messages of an answer body (JSON or SSE).
pub(crate) fn messages(content_type: Option<&HeaderValue>, body: &[u8]) -> Vec<Bytes> {
    let is_sse = content_type
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if is_sse {
        let text = String::from_utf8_lossy(body);
        sse::event_data(&text)
            .into_iter()
            .filter(|d| !d.trim().is_empty())
            .map(Bytes::from)
            .collect()
    } else {
        vec![Bytes::copy_from_slice(body)]
    }
}

/// Reads an upstream body whole, up to [`MAX_READ`].
pub(crate) async fn read_capped(response: reqwest::Response) -> Result<Bytes, GatewayError> {
    read_at_most(response, MAX_READ).await
}

/// Reads a body whole, refusing it as soon as it grows past `limit` bytes (a hostile server
/// cannot make the gateway hold more).
pub(crate) async fn read_at_most(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, GatewayError> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(unavailable)? {
        if out.len() + chunk.len() > limit {
            return Err(GatewayError::Protocol(format!(
                "the answer is larger than {limit} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_as_json_or_sse() {
        let sse = HeaderValue::from_static("text/event-stream");
        let json = HeaderValue::from_static("application/json");
        let body = b"id: 0\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n";
        assert_eq!(
            messages(Some(&sse), body),
            [Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":1,"result":{}}"#
            )]
        );
        assert_eq!(messages(Some(&json), b"{}"), [Bytes::from_static(b"{}")]);
    }
}
