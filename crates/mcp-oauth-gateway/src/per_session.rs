//! `per-session` isolation for stdio upstreams: each MCP session of a client gets a child
//! process of its own, started by the client's `initialize` and stopped when the session ends
//! (`DELETE`), expires (no request for the idle time), or the gateway stops. Nothing is shared
//! between two sessions, even of one user. A stateless client (protocol 2026-07-28, no
//! session) gets one child per principal instead.
//!
//! At the cap, new sessions are refused (503) rather than stopping a running session's child:
//! otherwise opening sessions would be a way to end other users' sessions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::{Method, StatusCode};
use mcp_oauth::Auth;

use crate::children::Children;
use crate::front::{self, Inner};
use crate::jsonrpc::{self, Kind};
use crate::modern;
use crate::sessions::principal;

/// The children of a per-session upstream, keyed by the client's session id.
pub(crate) struct PerSession {
    pub(crate) name: Option<Arc<str>>,
    make: Box<dyn Fn() -> Arc<Inner> + Send + Sync>,
    children: Children,
    max: u64,
    max_body: usize,
    /// Held while a child is added, so that the cap is exact.
    adding: Mutex<()>,
}

impl PerSession {
    /// `idle`: a session's child stops after this long without requests (the session's own
    /// idle time applies too: the shorter wins).
    pub(crate) fn new(
        name: Option<Arc<str>>,
        make: impl Fn() -> Arc<Inner> + Send + Sync + 'static,
        idle: Duration,
        max: u64,
        max_body: usize,
    ) -> Self {
        Self {
            name,
            make: Box::new(make),
            children: Children::new(idle, None),
            max,
            max_body,
            adding: Mutex::new(()),
        }
    }

    /// Children running now (after dropping those of expired sessions).
    pub(crate) fn count(&self) -> u64 {
        self.children.run_pending_tasks();
        self.children.entry_count()
    }

    /// A new child, unless the cap is reached.
    fn start_child(&self) -> Option<Arc<Inner>> {
        let _one_at_a_time = self.adding.lock().unwrap_or_else(|p| p.into_inner());
        (self.count() < self.max).then(|| (self.make)())
    }

    pub(crate) async fn handle(&self, request: Request) -> Response {
        let session = request
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(Arc::<str>::from);
        if let Some(id) = session {
            return self.in_session(id, request).await;
        }
        if modern::is_modern(request.headers()) {
            // Stateless: one child per principal, under a key no session id can take (ids
            // are hex).
            let key: Arc<str> = Arc::from(format!(
                "stateless\u{0}{}",
                principal(request.extensions().get::<Auth>())
            ));
            let inner = match self.children.get(&key) {
                Some(inner) => inner,
                None => match self.start_child() {
                    Some(inner) => {
                        self.children.insert(key, inner.clone());
                        inner
                    }
                    None => return self.full(),
                },
            };
            return front::handle(State(inner), request).await;
        }
        if request.method() != Method::POST {
            return sessionless(request.method());
        }
        // Only an `initialize` starts a child; anything else is refused without one.
        let (parts, body) = request.into_parts();
        if let Some(refusal) = front::refuse_post_headers(&parts.headers) {
            return refusal;
        }
        let Ok(bytes) = axum::body::to_bytes(body, self.max_body).await else {
            return crate::reply::rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                jsonrpc::INVALID_REQUEST,
                &format!("the body is larger than {} bytes", self.max_body),
            );
        };
        match jsonrpc::parse(&bytes) {
            Err(err) => {
                return crate::reply::rpc_error(
                    StatusCode::BAD_REQUEST,
                    None,
                    err.code(),
                    &err.to_string(),
                );
            }
            Ok(m) if m.kind == Kind::Request && m.method.as_deref() == Some("initialize") => {}
            Ok(m) => {
                return crate::reply::rpc_error(
                    StatusCode::BAD_REQUEST,
                    m.id.map(|id| id.get()),
                    jsonrpc::INVALID_REQUEST,
                    "no Mcp-Session-Id: start a session with initialize first",
                );
            }
        }
        let request = Request::from_parts(parts, Body::from(bytes));
        let Some(inner) = self.start_child() else {
            return self.full();
        };
        let response = front::handle(State(inner.clone()), request).await;
        let id = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok());
        if let (true, Some(id)) = (response.status().is_success(), id) {
            self.children.insert(Arc::from(id), inner);
        }
        // Else the child is dropped here, which stops it.
        response
    }

    async fn in_session(&self, id: Arc<str>, request: Request) -> Response {
        let Some(inner) = self.children.get(&id) else {
            return front::session_not_found();
        };
        let delete = request.method() == Method::DELETE;
        let response = front::handle(State(inner.clone()), request).await;
        // Ended by the client, or expired inside the child: the child stops with it (another
        // principal's 404 leaves it running).
        let ended =
            (delete && response.status().is_success()) || inner.sessions.find(&id).is_none();
        if ended {
            self.children.invalidate(&id);
            // Drops the cache's own references now, which stops the child.
            self.children.run_pending_tasks();
        }
        response
    }

    fn full(&self) -> Response {
        crate::reply::rpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            jsonrpc::INTERNAL_ERROR,
            &format!(
                "the most sessions with their own upstream process ({}) are running; try again later",
                self.max
            ),
        )
    }
}

/// A GET or DELETE without a session (or another method): nothing to stream or end.
fn sessionless(method: &Method) -> Response {
    match *method {
        Method::GET => crate::reply::rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            jsonrpc::INVALID_REQUEST,
            "no Mcp-Session-Id: start a session with initialize first",
        ),
        Method::DELETE => crate::reply::rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            jsonrpc::INVALID_REQUEST,
            "no Mcp-Session-Id to end",
        ),
        _ => front::method_not_allowed(),
    }
}
