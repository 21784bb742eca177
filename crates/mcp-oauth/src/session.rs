//! Session binding: each MCP session (`Mcp-Session-Id`) belongs to the principal whose token
//! created it. A tower middleware of its own, beside the bearer layer
//! ([`layer`](crate::layer)); it reads the [`Auth`] the bearer layer put in the request and
//! needs nothing from rmcp.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};

use crate::auth::Auth;
use crate::challenge::json_error;
use crate::verify::BoxFuture;

const SESSION_HEADER: &str = "mcp-session-id";

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
    json_error(
        StatusCode::NOT_FOUND,
        br#"{"error":"session_not_found","error_description":"this session does not exist for the caller; start a new one"}"#,
    )
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
