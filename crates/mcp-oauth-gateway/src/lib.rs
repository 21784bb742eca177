//! `mcp-oauth-gateway`: OAuth in front of any MCP server, local (a stdio child process) or
//! remote (Streamable HTTP), as one axum router.
//!
//! Clients speak MCP Streamable HTTP to the gateway (protocol versions 2025-03-26, 2025-06-18
//! and 2025-11-25); every request passes the bearer layer of [`mcp_oauth`] first (verified
//! tokens, RFC 9728 metadata, exact challenges), then the session binding (a session belongs
//! to the principal whose token opened it), then the [`gate::Gatekeeper`] (allow, deny or
//! step-up per call, list filtering), and only then goes upstream. The client's
//! `Authorization` header never reaches the upstream; an HTTP upstream gets the credential
//! configured for it, if any.
//!
//! ```no_run
//! use mcp_oauth::OAuth;
//! use mcp_oauth_gateway::{Gateway, StdioConfig};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let oauth = OAuth::oidc("https://auth.example.com", "http://127.0.0.1:8080/mcp")?;
//! let upstream = StdioConfig::new("npx", ["-y", "@modelcontextprotocol/server-everything"])
//!     .pass_env("NODE_EXTRA_CA_CERTS");
//! let gateway = Gateway::builder(upstream).oauth(oauth).build()?;
//! use axum::serve::ListenerExt as _;
//! // TCP_NODELAY: SSE answers are written in pieces and must not wait for delayed ACKs.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080")
//!     .await?
//!     .tap_io(|tcp| {
//!         let _ = tcp.set_nodelay(true);
//!     });
//! axum::serve(
//!     listener,
//!     gateway.router().into_make_service_with_connect_info::<std::net::SocketAddr>(),
//! )
//! .await?;
//! # Ok(()) }
//! ```
//!
//! See `docs/gateway.md` for the security model and what is not built yet.

#![forbid(unsafe_code)]

mod error;
mod front;
pub mod gate;
mod jsonrpc;
mod sessions;
mod sse;
#[cfg(feature = "test-upstream")]
#[doc(hidden)]
pub mod test_upstream;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tower_layer::Layer as _;

/// The examples of `docs/gateway.md`, compiled as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/gateway.md")]
pub struct GatewayDocDoctests;

pub use error::GatewayError;
pub use front::SUPPORTED_VERSIONS;
pub use upstream::{
    ENV_ALLOW_LIST, HttpConfig, SecretHeader, StdioConfig, UpstreamConfig, resolve_secret,
};

use crate::front::{Inner, Upstream};
use crate::gate::{AllowAll, Gatekeeper};
use crate::sessions::Sessions;

/// Default largest request body: 4 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Builds a [`Gateway`]; see [`Gateway::builder`].
#[must_use]
pub struct GatewayBuilder {
    upstream: UpstreamConfig,
    oauth: Option<mcp_oauth::OAuth>,
    no_auth: bool,
    path: String,
    gatekeeper: Arc<dyn Gatekeeper>,
    max_body: usize,
    session_idle: Duration,
    max_sessions: u64,
    ready_timeout: Duration,
}

impl std::fmt::Debug for GatewayBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayBuilder")
            .field("upstream", &self.upstream)
            .field("oauth", &self.oauth)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl GatewayBuilder {
    /// The resource server configuration: the MCP endpoint is served at its resource path,
    /// behind its bearer layer, with its metadata routes. Required unless
    /// [`insecure_no_auth`](Self::insecure_no_auth).
    pub fn oauth(mut self, oauth: mcp_oauth::OAuth) -> Self {
        self.oauth = Some(oauth);
        self
    }

    /// Serves without authentication (every caller is the same anonymous principal). For
    /// measurements and loopback experiments only.
    pub fn insecure_no_auth(mut self) -> Self {
        self.no_auth = true;
        self
    }

    /// The endpoint path without OAuth. Default: `/mcp` (with OAuth: the resource's path).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The decision hook for every call and list. Default: [`AllowAll`].
    pub fn gatekeeper(mut self, gatekeeper: impl Gatekeeper) -> Self {
        self.gatekeeper = Arc::new(gatekeeper);
        self
    }

    /// Largest request body; larger ones get 413. Default: [`DEFAULT_MAX_BODY_BYTES`].
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// A session unused this long ends. Default: one hour.
    pub fn session_idle(mut self, idle: Duration) -> Self {
        self.session_idle = idle;
        self
    }

    /// Most sessions kept at once (the least recently used go first). Default: 10 000.
    pub fn max_sessions(mut self, max: u64) -> Self {
        self.max_sessions = max;
        self
    }

    /// How long a request waits for a stdio child that is (re)starting. Default: 30 s.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Builds the gateway. A stdio child is started at once, so this must run inside a
    /// Tokio runtime.
    ///
    /// # Errors
    ///
    /// No OAuth configured (and not [`insecure_no_auth`](Self::insecure_no_auth)), or the
    /// upstream's HTTP client cannot be built.
    pub fn build(self) -> Result<Gateway, GatewayError> {
        if self.oauth.is_none() && !self.no_auth {
            return Err(GatewayError::Config {
                what: "authentication",
                reason: "the gateway needs an OAuth configuration (GatewayBuilder::oauth)".into(),
            });
        }
        let sessions = Sessions::new(self.session_idle, self.max_sessions);
        let upstream = match &self.upstream {
            UpstreamConfig::Stdio(config) => Upstream::Stdio(upstream::stdio::Stdio::start(
                config.clone(),
                sessions.clone(),
            )),
            UpstreamConfig::Http(config) => Upstream::Http(upstream::http::Http::new(config)?),
        };
        let path = match &self.oauth {
            Some(oauth) => oauth.resource().path().to_owned(),
            None => self.path.clone(),
        };
        Ok(Gateway {
            inner: Arc::new(Inner {
                upstream,
                gatekeeper: self.gatekeeper,
                sessions,
                oauth: self.oauth,
                max_body: self.max_body,
                ready_timeout: self.ready_timeout,
            }),
            path,
        })
    }
}

/// The gateway: an MCP endpoint that forwards to one upstream. Cheap to clone; the stdio
/// child stops when the last clone (and the router) is dropped.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
    path: String,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A builder for a gateway in front of `upstream`.
    pub fn builder(upstream: impl Into<UpstreamConfig>) -> GatewayBuilder {
        GatewayBuilder {
            upstream: upstream.into(),
            oauth: None,
            no_auth: false,
            path: "/mcp".to_owned(),
            gatekeeper: Arc::new(AllowAll),
            max_body: DEFAULT_MAX_BODY_BYTES,
            session_idle: Duration::from_secs(3600),
            max_sessions: 10_000,
            ready_timeout: Duration::from_secs(30),
        }
    }

    /// The path of the MCP endpoint.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The router: the MCP endpoint (CORS, bearer layer, the gateway) and the metadata
    /// routes. Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so that
    /// trusted-proxy rules see the peer.
    pub fn router(&self) -> Router {
        let endpoint = axum::routing::any(front::handle).with_state(self.inner.clone());
        match &self.inner.oauth {
            Some(oauth) => Router::new()
                .route_service(&self.path, oauth.layer().layer(endpoint))
                .layer(mcp_oauth::routes::mcp_cors())
                .merge(oauth.metadata_router()),
            None => Router::new()
                .route_service(&self.path, endpoint)
                .layer(mcp_oauth::routes::mcp_cors()),
        }
    }

    /// Waits until the upstream is usable: a stdio child started and initialized (an HTTP
    /// upstream is reached per session, so it is ready at once).
    ///
    /// # Errors
    ///
    /// The child is not initialized within `timeout`.
    pub async fn ready(&self, timeout: Duration) -> Result<(), GatewayError> {
        match &self.inner.upstream {
            Upstream::Stdio(stdio) => stdio.ready(timeout).await.map(drop),
            Upstream::Http(_) => Ok(()),
        }
    }

    /// The stdio child's process id, when one runs.
    pub fn upstream_pid(&self) -> Option<u32> {
        match &self.inner.upstream {
            Upstream::Stdio(stdio) => stdio.pid(),
            Upstream::Http(_) => None,
        }
    }

    /// How many times a stdio child was started (1 until it is restarted).
    pub fn upstream_starts(&self) -> u64 {
        match &self.inner.upstream {
            Upstream::Stdio(stdio) => stdio.starts(),
            Upstream::Http(_) => 0,
        }
    }
}
