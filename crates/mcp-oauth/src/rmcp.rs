//! Glue for rmcp: the `Auth` extractor for `#[tool]` functions, the transport settings that
//! fit an OAuth-protected endpoint, and session-to-subject binding.
//!
//! rmcp passes each HTTP request's [`http::request::Parts`] to handlers; the bearer layer
//! put [`Auth`] into those parts' extensions. This module reads it back:
//!
//! ```
//! use mcp_oauth::Auth;
//! use rmcp::{ErrorData, handler::server::wrapper::Parameters, model::CallToolResult, tool, tool_router};
//!
//! #[derive(Clone)]
//! struct Server;
//!
//! #[tool_router(server_handler)]
//! impl Server {
//!     #[tool(description = "Who is calling")]
//!     async fn whoami(&self, auth: Auth) -> Result<CallToolResult, ErrorData> {
//!         Ok(CallToolResult::success(vec![rmcp::model::ContentBlock::text(auth.subject())]))
//!     }
//! }
//! ```
//!
//! Wrap the `StreamableHttpService` with [`OAuth::layer`](crate::OAuth::layer) (and, when
//! sessions are on, [`SessionBindingLayer`]) and serve [`OAuth::metadata_router`](crate::OAuth::metadata_router)
//! next to it.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ::rmcp::handler::server::common::{AsRequestContext, FromContextPart};
use ::rmcp::model::ErrorData;
use ::rmcp::service::{RequestContext, RoleServer};
use ::rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};

use crate::auth::Auth;
use crate::oauth::OAuth;
use crate::verify::BoxFuture;

const SESSION_HEADER: &str = "mcp-session-id";

impl<C: AsRequestContext> FromContextPart<C> for Auth {
    fn from_context_part(context: &mut C) -> Result<Self, ErrorData> {
        auth_from_context(context.as_request_context()).ok_or_else(|| {
            ErrorData::invalid_request(
                "no verified access token on this request: put the mcp-oauth BearerAuthLayer in front of the MCP service",
                None,
            )
        })
    }
}

/// `Option<Auth>` as an rmcp extractor: `None` when the request was not authenticated.
#[derive(Debug, Clone)]
pub struct MaybeAuth(pub Option<Auth>);

impl<C: AsRequestContext> FromContextPart<C> for MaybeAuth {
    fn from_context_part(context: &mut C) -> Result<Self, ErrorData> {
        Ok(Self(auth_from_context(context.as_request_context())))
    }
}

/// The [`Auth`] of the HTTP request behind an rmcp request, if it was authenticated.
pub fn auth_from_context(context: &RequestContext<RoleServer>) -> Option<Auth> {
    context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Auth>())
        .cloned()
}

/// rmcp transport settings for an endpoint protected by `oauth`: the resource's host (and
/// the loopback names) allowed in `Host`, stateless, JSON responses.
///
/// In trusted-proxy mode ([`OAuthBuilder::trusted_proxies`](crate::OAuthBuilder::trusted_proxies))
/// rmcp's `Host` allow-list is off: the proxy decides which public hosts reach this server,
/// and the `Host` it passes varies with its configuration. This costs no audience binding:
/// the audience check never reads `Host`, only the configured resource or a trusted proxy's
/// forwarded origin. What the allow-list guards against (DNS rebinding, a browser sending
/// requests to a local server under another name) still needs a bearer token, which a
/// browser does not attach on its own.
pub fn streamable_http_config(oauth: &OAuth) -> StreamableHttpServerConfig {
    let mut hosts = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Some(host) = oauth.resource().url().host_str() {
        hosts.push(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        );
    }
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true);
    if oauth.trusts_forwarded_headers() {
        // The public host comes from the proxy and varies; the proxy is the gate, and the
        // audience follows only what a trusted proxy forwarded (see the docs above).
        return config.disable_allowed_hosts();
    }
    config.with_allowed_hosts(hosts)
}

/// Binds each MCP session to the principal (issuer and subject) whose token created it, and
/// refuses the session id to anyone else (404, as for an unknown session, so a client
/// starts a new one). Apply it inside the bearer layer, around the rmcp service.
///
/// MCP security best practices: "MCP Servers MUST NOT use sessions for authentication";
/// rmcp itself does not bind sessions to credentials.
#[derive(Debug, Clone)]
pub struct SessionBindingLayer {
    bindings: moka::sync::Cache<String, Arc<str>>,
}

impl SessionBindingLayer {
    /// Bindings live as long as their session is used, up to `idle` without use.
    pub fn new(idle: Duration) -> Self {
        Self {
            bindings: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(idle)
                .build(),
        }
    }
}

impl Default for SessionBindingLayer {
    /// One hour of idleness.
    fn default() -> Self {
        Self::new(Duration::from_secs(3600))
    }
}

impl<S> tower_layer::Layer<S> for SessionBindingLayer {
    type Service = SessionBinding<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionBinding {
            inner,
            bindings: self.bindings.clone(),
        }
    }
}

/// See [`SessionBindingLayer`].
#[derive(Debug, Clone)]
pub struct SessionBinding<S> {
    inner: S,
    bindings: moka::sync::Cache<String, Arc<str>>,
}

fn principal(auth: &Auth) -> Arc<str> {
    Arc::from(format!(
        "{}\u{0}{}",
        auth.issuer.as_deref().unwrap_or_default(),
        auth.subject()
    ))
}

fn session_refused() -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from_static(
        br#"{"error":"session_not_found","error_description":"this session does not exist for the caller; start a new one"}"#,
    )));
    *res.status_mut() = StatusCode::NOT_FOUND;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

impl<S, B, ResBody> tower_service::Service<Request<B>> for SessionBinding<S>
where
    S: tower_service::Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Either<ResBody, Full<Bytes>>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let bindings = self.bindings.clone();
        Box::pin(async move {
            let who = req.extensions().get::<Auth>().map(principal);
            let session = req
                .headers()
                .get(SESSION_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let is_delete = req.method() == http::Method::DELETE;
            if let Some(session) = &session {
                let owner = bindings.get(session);
                let allowed = matches!((&owner, &who), (Some(owner), Some(who)) if owner == who);
                if !allowed {
                    tracing::warn!(target: "mcp_oauth::session", "session id presented by a principal that did not create it, or unknown");
                    return Ok(session_refused().map(Either::Right));
                }
            }
            let res = inner.call(req).await?;
            match (
                &session,
                res.headers()
                    .get(SESSION_HEADER)
                    .and_then(|v| v.to_str().ok()),
                who,
            ) {
                (None, Some(created), Some(who)) => bindings.insert(created.to_owned(), who),
                (Some(session), _, _) if is_delete && res.status().is_success() => {
                    bindings.invalidate(session)
                }
                _ => {}
            }
            Ok(res.map(Either::Left))
        })
    }
}
