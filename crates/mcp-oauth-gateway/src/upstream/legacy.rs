//! The HTTP+SSE transport of MCP 2024-11-05, for upstreams that predate Streamable HTTP: the
//! gateway opens `GET URL` as an event stream, reads its `endpoint` event (where to POST
//! messages), and receives every answer on that stream. Each client session has a stream of
//! its own, so request ids need no rewriting.
//!
//! The endpoint must be on the upstream URL's origin: a stream that names another host (to
//! make the gateway send its credentials and its callers' messages elsewhere) is refused.
//!
//! To the rest of the gateway a legacy session looks like a Streamable HTTP one: a request's
//! answer is an event stream of the messages routed to it (its progress, then its response),
//! other messages from the upstream go to the request in flight, or to the session's GET
//! stream when none is.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{HeaderMap, StatusCode, header};
use tokio::sync::mpsc;

use crate::error::GatewayError;
use crate::jsonrpc::{self, Kind};

/// How long the upstream has to send its `endpoint` event.
const ENDPOINT_WAIT: Duration = Duration::from_secs(10);
/// How long the upstream has to answer `initialize` on the stream.
const INIT_WAIT: Duration = Duration::from_secs(60);
/// Messages waiting for a slow reader before the upstream stream is read no further.
const BUFFER: usize = 64;
/// Largest event read from the upstream stream.
const MAX_EVENT: usize = 16 * 1024 * 1024;

#[derive(Default)]
struct Routes {
    /// Requests in flight: the id's JSON text, and where their messages go.
    pending: Vec<(String, mpsc::Sender<Bytes>)>,
    /// The session's GET stream, when the client has one open.
    standalone: Option<mpsc::Sender<Bytes>>,
    closed: bool,
}

/// One client session's connection to a legacy upstream.
pub(crate) struct Legacy {
    /// Where messages are POSTed (from the `endpoint` event).
    endpoint: reqwest::Url,
    routes: Arc<Mutex<Routes>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Legacy {
    fn drop(&mut self) {
        // Closing the stream ends the session upstream (the 2024-11-05 way).
        self.reader.abort();
    }
}

/// The endpoint an `endpoint` event names, if it is on the origin of `base`.
pub(crate) fn same_origin_endpoint(
    base: &reqwest::Url,
    data: &str,
) -> Result<reqwest::Url, GatewayError> {
    let endpoint = base.join(data.trim()).map_err(|e| {
        GatewayError::Protocol(format!(
            "the legacy SSE upstream's endpoint {data:?} is not a URL: {e}"
        ))
    })?;
    if endpoint.origin() != base.origin() {
        return Err(GatewayError::Protocol(format!(
            "the legacy SSE upstream's endpoint {endpoint} is not on the upstream's origin ({}); refused",
            base.origin().ascii_serialization()
        )));
    }
    Ok(endpoint)
}

/// Reads SSE events from a byte stream: `(event, data)` pairs.
struct Events {
    buffer: String,
}

impl Events {
    /// Adds `chunk`; returns the events it completes. `Err` past [`MAX_EVENT`].
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<(String, String)>, GatewayError> {
        self.buffer.extend(
            String::from_utf8_lossy(chunk)
                .chars()
                .filter(|c| *c != '\r'),
        );
        let mut out = Vec::new();
        while let Some(end) = self.buffer.find("\n\n") {
            let block: String = self.buffer.drain(..end + 2).collect();
            let mut event = String::from("message");
            let mut data: Option<String> = None;
            for line in block.lines() {
                let (field, value) = match line.split_once(':') {
                    Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                    None => (line, ""),
                };
                match field {
                    "event" => value.clone_into(&mut event),
                    "data" => match &mut data {
                        Some(d) => {
                            d.push('\n');
                            d.push_str(value);
                        }
                        None => data = Some(value.to_owned()),
                    },
                    _ => {}
                }
            }
            if let Some(data) = data {
                out.push((event, data));
            }
        }
        if self.buffer.len() > MAX_EVENT {
            return Err(GatewayError::Protocol(
                "the legacy SSE upstream sent an event larger than 16 MiB".into(),
            ));
        }
        Ok(out)
    }
}

fn lock(routes: &Mutex<Routes>) -> std::sync::MutexGuard<'_, Routes> {
    routes.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends one upstream message where it belongs: a response to its request (which then
/// ends), anything else to the request in flight or the GET stream.
fn route(routes: &Mutex<Routes>, message: Bytes) {
    let Ok(parsed) = jsonrpc::parse(&message) else {
        tracing::debug!(target: "mcp_oauth_gateway::upstream", "the legacy SSE upstream sent a message that is not JSON-RPC; dropped");
        return;
    };
    let mut routes = lock(routes);
    if parsed.kind == Kind::Response {
        let id = parsed.id.map(|id| id.get().to_owned()).unwrap_or_default();
        if let Some(at) = routes.pending.iter().position(|(p, _)| *p == id) {
            let (_, tx) = routes.pending.remove(at);
            let _ = tx.try_send(message);
        }
        return;
    }
    let target = routes
        .pending
        .iter()
        .map(|(_, tx)| tx)
        .find(|tx| !tx.is_closed())
        .or(routes.standalone.as_ref());
    if let Some(tx) = target {
        let _ = tx.try_send(message);
    }
}

/// An upstream answer made by the gateway: `status`, and an event stream of `rx`'s messages.
fn stream_response(rx: mpsc::Receiver<Bytes>) -> reqwest::Response {
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        let message = rx.recv().await?;
        let mut event = Vec::with_capacity(message.len() + 8);
        event.extend_from_slice(b"data: ");
        event.extend_from_slice(&message);
        event.extend_from_slice(b"\n\n");
        Some((Ok::<_, std::io::Error>(Bytes::from(event)), rx))
    });
    let mut response = http::Response::new(reqwest::Body::wrap_stream(events));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    reqwest::Response::from(response)
}

fn status_response(status: StatusCode) -> reqwest::Response {
    let mut response = http::Response::new(reqwest::Body::from(Bytes::new()));
    *response.status_mut() = status;
    reqwest::Response::from(response)
}

impl Legacy {
    /// Opens the stream at `url` and waits for its `endpoint` event.
    pub(crate) async fn connect(
        client: &reqwest::Client,
        url: &reqwest::Url,
        headers: HeaderMap,
    ) -> Result<Self, GatewayError> {
        let response = client
            .get(url.clone())
            .headers(headers)
            .header(header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|e| GatewayError::Unavailable(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(GatewayError::Protocol(format!(
                "the upstream refused both Streamable HTTP and the legacy SSE stream (GET answered {})",
                response.status()
            )));
        }
        let mut body = response.bytes_stream();
        let mut events = Events {
            buffer: String::new(),
        };
        let mut early = Vec::new();
        let endpoint = tokio::time::timeout(ENDPOINT_WAIT, async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| GatewayError::Unavailable(e.to_string()))?;
                for (event, data) in events.push(&chunk)? {
                    if event == "endpoint" {
                        return same_origin_endpoint(url, &data);
                    }
                    early.push(data);
                }
            }
            Err(GatewayError::Protocol(
                "the legacy SSE upstream closed its stream before naming its endpoint".into(),
            ))
        })
        .await
        .map_err(|_| {
            GatewayError::Protocol(format!(
                "the legacy SSE upstream sent no endpoint event within {} s",
                ENDPOINT_WAIT.as_secs()
            ))
        })??;
        let routes = Arc::new(Mutex::new(Routes::default()));
        let read = routes.clone();
        let reader = tokio::spawn(async move {
            for data in early {
                route(&read, Bytes::from(data));
            }
            while let Some(Ok(chunk)) = body.next().await {
                let Ok(list) = events.push(&chunk) else {
                    break;
                };
                for (event, data) in list {
                    if event == "message" {
                        route(&read, Bytes::from(data));
                    }
                }
            }
            let mut routes = lock(&read);
            routes.closed = true;
            routes.pending.clear();
            routes.standalone = None;
        });
        Ok(Self {
            endpoint,
            routes,
            reader,
        })
    }

    /// POSTs `body` to the endpoint. A request's answer is the stream of its messages; a
    /// notification or response gets 202. A closed stream is a lost session.
    pub(crate) async fn post(
        &self,
        client: &reqwest::Client,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<reqwest::Response, GatewayError> {
        let request_id = jsonrpc::parse(&body)
            .ok()
            .filter(|m| m.kind == Kind::Request)
            .and_then(|m| m.id.map(|id| id.get().to_owned()));
        let rx = {
            let mut routes = lock(&self.routes);
            if routes.closed {
                return Err(GatewayError::SessionGone);
            }
            request_id.map(|id| {
                let (tx, rx) = mpsc::channel(BUFFER);
                routes.pending.retain(|(p, _)| *p != id);
                routes.pending.push((id, tx));
                rx
            })
        };
        let sent = client
            .post(self.endpoint.clone())
            .headers(headers)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| GatewayError::Unavailable(e.without_url().to_string()));
        let status = match sent {
            Ok(response) => response.status(),
            Err(err) => {
                drop(rx);
                self.forget_closed();
                return Err(err);
            }
        };
        if !status.is_success() {
            drop(rx);
            self.forget_closed();
            return Ok(status_response(status));
        }
        Ok(match rx {
            Some(rx) => stream_response(rx),
            None => status_response(StatusCode::ACCEPTED),
        })
    }

    /// Drops the routes of requests whose answer nobody waits for.
    fn forget_closed(&self) {
        lock(&self.routes).pending.retain(|(_, tx)| !tx.is_closed());
    }

    /// Sends `initialize` and waits for its answer on the stream, then
    /// `notifications/initialized`; returns the answer.
    pub(crate) async fn initialize(
        &self,
        client: &reqwest::Client,
        headers: HeaderMap,
        init: Bytes,
    ) -> Result<Bytes, GatewayError> {
        let response = self.post(client, headers.clone(), init).await?;
        if !response.status().is_success() {
            return Err(GatewayError::Protocol(format!(
                "the legacy SSE upstream refused initialize with {}",
                response.status()
            )));
        }
        let body = tokio::time::timeout(INIT_WAIT, super::body::read_capped(response))
            .await
            .map_err(|_| {
                GatewayError::Protocol(format!(
                    "the legacy SSE upstream did not answer initialize within {} s",
                    INIT_WAIT.as_secs()
                ))
            })??;
        let sse = http::HeaderValue::from_static("text/event-stream");
        let answer = super::body::messages(Some(&sse), &body)
            .into_iter()
            .find(|m| jsonrpc::parse(m).is_ok_and(|m| m.kind == Kind::Response))
            .ok_or_else(|| {
                GatewayError::Protocol(
                    "the legacy SSE upstream closed its stream before answering initialize".into(),
                )
            })?;
        let initialized = jsonrpc::encode_request(None, "notifications/initialized", None);
        let ack = self.post(client, headers, initialized).await?;
        if !ack.status().is_success() {
            return Err(GatewayError::Protocol(format!(
                "the legacy SSE upstream refused notifications/initialized with {}",
                ack.status()
            )));
        }
        Ok(answer)
    }

    /// Ends the session: closes the upstream stream (the 2024-11-05 way to end one).
    pub(crate) fn close(&self) {
        self.reader.abort();
        let mut routes = lock(&self.routes);
        routes.closed = true;
        routes.pending.clear();
        routes.standalone = None;
    }

    /// The session's GET stream: the upstream's messages that belong to no request.
    pub(crate) fn stream(&self) -> reqwest::Response {
        let (tx, rx) = mpsc::channel(BUFFER);
        let mut routes = lock(&self.routes);
        if routes.closed {
            return status_response(StatusCode::NOT_FOUND);
        }
        routes.standalone = Some(tx);
        stream_response(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_must_be_on_the_upstreams_origin() {
        let base = reqwest::Url::parse("http://127.0.0.1:8000/sse").expect("url");
        let ok = same_origin_endpoint(&base, "/messages?sessionId=1").expect("relative");
        assert_eq!(ok.as_str(), "http://127.0.0.1:8000/messages?sessionId=1");
        assert!(same_origin_endpoint(&base, "http://127.0.0.1:8000/m").is_ok());
        for evil in [
            "http://127.0.0.1:8001/messages",
            "https://127.0.0.1:8000/messages",
            "http://evil.example/messages",
            "//evil.example/messages",
            "http://127.0.0.1:8000@evil.example/messages",
        ] {
            let err = same_origin_endpoint(&base, evil).expect_err(evil);
            assert!(err.to_string().contains("origin"), "{evil}: {err}");
        }
    }

    #[test]
    fn events_are_read_across_chunks() {
        let mut events = Events {
            buffer: String::new(),
        };
        assert!(
            events
                .push(b"event: endpoint\r\nda")
                .expect("ok")
                .is_empty()
        );
        assert_eq!(
            events
                .push(b"ta: /m?s=1\r\n\r\n: ping\n\ndata: {\"a\":1}\n\n")
                .expect("ok"),
            [
                ("endpoint".to_owned(), "/m?s=1".to_owned()),
                ("message".to_owned(), "{\"a\":1}".to_owned())
            ]
        );
    }
}
