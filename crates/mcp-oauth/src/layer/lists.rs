//! The answer to a request with a list in it (`tools/list`, `prompts/list`, `resources/list`,
//! `resources/templates/list`), when an access policy is on: read and filtered
//! ([`ListFilter`](crate::policy::ListFilter)) before it goes to the caller, so that any MCP
//! server behind the layer shows each caller only what it may use.
//!
//! - A JSON answer (`application/json`) is read whole; an SSE answer (`text/event-stream`)
//!   event by event until every request of the body has its answer (the server should end
//!   the stream there; what it sends after is dropped) or the stream ends.
//! - The request went on without `Accept-Encoding`, so the answer comes uncompressed; a
//!   compressed one, one of another type, one longer than the body limit, or one that cannot
//!   be read is withheld: HTTP 502 with a JSON-RPC error for each list request.
//! - A non-2xx answer is not a result and goes on untouched.
//!
//! Requests without a list never come here.

use bytes::Bytes;
use http::Response;
#[cfg(feature = "policy")]
use http_body::Body;
use http_body_util::Full;

use crate::verify::BoxFuture;

/// The list filter a request's answer goes through.
#[cfg(feature = "policy")]
pub(super) type ListFilterBox = Box<crate::policy::ListFilter>;
/// Without the `policy` feature there is no list filter.
#[cfg(not(feature = "policy"))]
pub(super) type ListFilterBox = std::convert::Infallible;

/// The answer as it came (`Ok`: no filter, or not a result), or the future that reads and
/// filters it (`Err`).
#[cfg(not(feature = "policy"))]
pub(super) fn list_answer<ResBody>(
    response: Response<ResBody>,
    filter: Option<ListFilterBox>,
    _limit: usize,
) -> Result<Response<ResBody>, BoxFuture<'static, Response<Full<Bytes>>>> {
    match filter {
        None => Ok(response),
        Some(never) => match never {},
    }
}

/// The answer as it came (`Ok`: no filter, or not a result), or the future that reads and
/// filters it (`Err`).
#[cfg(feature = "policy")]
pub(super) fn list_answer<ResBody>(
    response: Response<ResBody>,
    filter: Option<ListFilterBox>,
    limit: usize,
) -> Result<Response<ResBody>, BoxFuture<'static, Response<Full<Bytes>>>>
where
    ResBody: Body<Data = Bytes> + Send + 'static,
{
    let Some(filter) = filter else {
        return Ok(response);
    };
    if !response.status().is_success() {
        return Ok(response);
    }
    Err(Box::pin(filtered(response, filter, limit)))
}

#[cfg(feature = "policy")]
async fn filtered<ResBody>(
    response: Response<ResBody>,
    mut filter: ListFilterBox,
    limit: usize,
) -> Response<Full<Bytes>>
where
    ResBody: Body<Data = Bytes> + Send + 'static,
{
    use crate::policy::ListError;

    let (mut parts, body) = response.into_parts();
    let encoded = parts
        .headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    let kind = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    let outcome = match (encoded, kind.as_deref()) {
        (true, _) => Err(ListError::Unreadable("the answer is compressed")),
        (false, Some("text/event-stream")) => read_sse(body, &mut filter, limit).await,
        (false, Some("application/json")) => match read_all(body, limit).await {
            Ok(bytes) if bytes.is_empty() => Ok(bytes),
            Ok(bytes) => filter.filter_json(&bytes),
            Err(e) => Err(e),
        },
        (false, _) => match read_all(body, limit).await {
            Ok(bytes) if bytes.is_empty() => Ok(bytes),
            Ok(_) => Err(ListError::Unreadable(
                "the answer is neither JSON nor an SSE stream",
            )),
            Err(e) => Err(e),
        },
    };
    match outcome {
        Ok(bytes) => {
            parts.headers.remove(http::header::CONTENT_LENGTH);
            parts.headers.remove(http::header::CONTENT_ENCODING);
            Response::from_parts(parts, Full::new(bytes))
        }
        Err(error) => {
            tracing::warn!(target: "mcp_oauth::policy", reason = error.reason(), "a list answer was withheld: it could not be checked against the access policy");
            let mut response = Response::new(Full::new(filter.withheld()));
            *response.status_mut() = http::StatusCode::BAD_GATEWAY;
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            response
        }
    }
}

/// The whole body, up to `limit` bytes.
#[cfg(feature = "policy")]
async fn read_all<B>(body: B, limit: usize) -> Result<Bytes, crate::policy::ListError>
where
    B: Body<Data = Bytes>,
{
    use http_body_util::BodyExt as _;

    let mut body = std::pin::pin!(body);
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.as_mut().frame().await {
        let Ok(frame) = frame else {
            return Err(crate::policy::ListError::Unreadable("the answer broke off"));
        };
        if let Ok(data) = frame.into_data() {
            if out.len().saturating_add(data.len()) > limit {
                return Err(crate::policy::ListError::TooLarge);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// An SSE body, filtered event by event until every request has its answer.
#[cfg(feature = "policy")]
async fn read_sse<B>(
    body: B,
    filter: &mut crate::policy::ListFilter,
    limit: usize,
) -> Result<Bytes, crate::policy::ListError>
where
    B: Body<Data = Bytes>,
{
    use http_body_util::BodyExt as _;

    let mut body = std::pin::pin!(body);
    let mut sse = crate::policy::SseFilter::default();
    let mut read = 0usize;
    while !filter.answered() {
        let Some(frame) = body.as_mut().frame().await else {
            break;
        };
        let Ok(frame) = frame else {
            return Err(crate::policy::ListError::Unreadable("the answer broke off"));
        };
        if let Ok(data) = frame.into_data() {
            read = read.saturating_add(data.len());
            if read > limit {
                return Err(crate::policy::ListError::TooLarge);
            }
            sse.push(filter, &data)?;
        }
    }
    Ok(sse.finish())
}
