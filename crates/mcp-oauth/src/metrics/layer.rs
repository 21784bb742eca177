//! [`OperationLayer`]: times each MCP request that reaches the service and runs it inside a
//! `tracing` span carrying the OpenTelemetry MCP attribute names.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Either, Full, Limited};
use pin_project_lite::pin_project;
use tracing::Instrument as _;

use super::{Metrics, Operation, OperationError, PROTOCOLS, StreamedOperation, method_label};
use crate::jsonrpc::peek_jsonrpc;
use crate::verify::BoxFuture;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Times the MCP requests that reach the service into
/// `mcp_server_operation_duration_seconds`, each in a span named `mcp` (target
/// `mcp_oauth::mcp`) with `mcp.method.name`, `gen_ai.tool.name`, `mcp.protocol.version`,
/// `network.transport` and, when it fails, `error.type`. Made by [`Metrics::layer`].
///
/// The layer reads a POST body (up to the bearer layer's limit, 4 MiB by default: larger
/// bodies get 413) to find the method; put it inside the bearer layer, so that only
/// authenticated requests are read and timed (the bearer layer counts the others).
///
/// Without a registry ([`OperationLayer::tracing_only`]) it reads nothing and costs nothing
/// unless the span is enabled (`RUST_LOG=mcp_oauth::mcp=info`).
#[derive(Debug, Clone)]
pub struct OperationLayer {
    metrics: Option<Metrics>,
    max_body: usize,
}

impl OperationLayer {
    /// Reads bodies of up to `bytes` (default: the bearer layer's default, 4 MiB); a larger
    /// body is answered 413. Give it the limit of the service behind it.
    #[must_use]
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The layer that only makes the spans, when they are enabled.
    pub fn tracing_only() -> Self {
        Self {
            metrics: None,
            max_body: crate::layer::DEFAULT_MAX_BODY_BYTES,
        }
    }
}

impl Metrics {
    /// The layer that times MCP operations; see [`OperationLayer`].
    pub fn layer(&self) -> OperationLayer {
        OperationLayer {
            metrics: Some(self.clone()),
            max_body: crate::layer::DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// A router answering `GET /metrics` with [`Metrics::render`], for a listener of its own.
    ///
    /// ```no_run
    /// # async fn run() -> std::io::Result<()> {
    /// let metrics = mcp_oauth::metrics::Metrics::new();
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:9464").await?;
    /// axum::serve(listener, metrics.router()).await
    /// # }
    /// ```
    pub fn router(&self) -> axum::Router {
        let metrics = self.clone();
        axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move { metrics.response() }
            }),
        )
    }

    /// The `/metrics` answer: [`Metrics::render`] with the Prometheus text content type.
    pub fn response(&self) -> axum::response::Response {
        let mut response = axum::response::Response::new(axum::body::Body::from(self.render()));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        response
    }
}

impl<S> tower_layer::Layer<S> for OperationLayer {
    type Service = OperationService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OperationService {
            inner,
            metrics: self.metrics.clone(),
            max_body: self.max_body,
        }
    }
}

/// The service of [`OperationLayer`].
#[derive(Debug, Clone)]
pub struct OperationService<S> {
    inner: S,
    metrics: Option<Metrics>,
    max_body: usize,
}

pin_project! {
    /// The response future of [`OperationService`]: the service's own when nothing is
    /// timed or traced, else the timed one.
    #[project = FutureProj]
    pub enum OperationFuture<F, T, E> {
        /// Passed through.
        Direct {
            #[pin]
            fut: F,
        },
        /// Read, timed and traced.
        Timed {
            fut: BoxFuture<'static, Result<T, E>>,
        },
    }
}

impl<F, ResBody, E> Future for OperationFuture<F, Response<Either<ResBody, Full<Bytes>>>, E>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<Either<ResBody, Full<Bytes>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            FutureProj::Direct { fut } => {
                Poll::Ready(ready!(fut.poll(cx)).map(|r| r.map(Either::Left)))
            }
            FutureProj::Timed { fut } => fut.as_mut().poll(cx),
        }
    }
}

/// 413 with a JSON-RPC error (-32600, no id), as an MCP service answers a body over its limit.
fn too_large(max_body: usize) -> Response<Full<Bytes>> {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":null,"error":{{"code":-32600,"message":"the body is larger than {max_body} bytes, or could not be read"}}}}"#
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = http::StatusCode::PAYLOAD_TOO_LARGE;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The protocol version label of a header value: a known version, else `_OTHER`.
fn protocol_label(value: &str) -> &'static str {
    PROTOCOLS
        .iter()
        .find(|p| **p == value)
        .copied()
        .unwrap_or(super::OTHER)
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for OperationService<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<Either<ResBody, Full<Bytes>>>;
    type Error = S::Error;
    type Future = OperationFuture<S::Future, Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // DEBUG: the span costs a read of the body, which a server logging at INFO (the
        // default) should not pay unless it asks for the spans.
        let traced = tracing::enabled!(target: "mcp_oauth::mcp", tracing::Level::DEBUG);
        if req.method() != Method::POST || (self.metrics.is_none() && !traced) {
            return OperationFuture::Direct {
                fut: self.inner.call(req),
            };
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = self.metrics.clone();
        let max_body = self.max_body;
        let fut = Box::pin(async move {
            let started = Instant::now();
            let (parts, body) = req.into_parts();
            let Ok(collected) = Limited::new(body, max_body).collect().await else {
                return Ok(too_large(max_body).map(Either::Right));
            };
            let bytes = collected.to_bytes();
            let protocol = parts
                .headers
                .get("mcp-protocol-version")
                .and_then(|v| v.to_str().ok())
                .map(protocol_label);
            let calls = peek_jsonrpc(&bytes).unwrap_or_default();
            let first = calls.first();
            let method = first.map_or("", |c| method_label(&c.method));
            let tool = first.and_then(|c| c.tool.as_deref());
            let span = tracing::debug_span!(
                target: "mcp_oauth::mcp",
                "mcp",
                otel.name = method,
                otel.kind = "server",
                mcp.method.name = method,
                gen_ai.tool.name = tool,
                gen_ai.operation.name = tool.map(|_| "execute_tool"),
                mcp.protocol.version = protocol,
                network.transport = "tcp",
                network.protocol.name = "http",
                error.type = tracing::field::Empty,
                jsonrpc.request.id = tracing::field::Empty,
            );
            let req = Request::from_parts(parts, ReqBody::from(bytes.clone()));
            let mut response = inner.call(req).instrument(span.clone()).await?;
            if let Some(streamed) = response.extensions_mut().remove::<StreamedOperation>() {
                // Observed when the stream ends, with its error type.
                let calls: Vec<(String, Option<String>)> = calls
                    .iter()
                    .map(|c| {
                        (
                            c.method.clone().into_owned(),
                            c.tool.as_deref().map(Into::into),
                        )
                    })
                    .collect();
                streamed.arm(Box::new(move |error, ended| {
                    match error {
                        OperationError::Status(status) => {
                            span.record("error.type", status);
                        }
                        OperationError::JsonRpc(code) => {
                            span.record("error.type", code);
                        }
                        OperationError::ToolError => {
                            span.record("error.type", "tool_error");
                        }
                        OperationError::None => {}
                    }
                    let Some(metrics) = metrics else { return };
                    let elapsed = ended.saturating_duration_since(started);
                    for (method, tool) in &calls {
                        metrics.operation(
                            &Operation {
                                method,
                                tool: tool.as_deref(),
                                protocol_version: protocol,
                                error,
                            },
                            elapsed,
                        );
                    }
                }));
                return Ok(response.map(Either::Left));
            }
            let elapsed = started.elapsed();
            let status = response.status();
            let error = if status.is_client_error() || status.is_server_error() {
                span.record("error.type", status.as_str());
                OperationError::Status(status.as_u16())
            } else if let Some(super::JsonRpcErrorCode(code)) = response.extensions().get() {
                span.record("error.type", code);
                OperationError::JsonRpc(*code)
            } else {
                OperationError::None
            };
            let Some(metrics) = metrics else {
                return Ok(response.map(Either::Left));
            };
            for call in &calls {
                metrics.operation(
                    &Operation {
                        method: &call.method,
                        tool: call.tool.as_deref(),
                        protocol_version: protocol,
                        error,
                    },
                    elapsed,
                );
            }
            Ok(response.map(Either::Left))
        });
        OperationFuture::Timed { fut }
    }
}
