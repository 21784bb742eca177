//! `mcp-oauth-gateway`: OAuth in front of any MCP server, local (a stdio child process) or
//! remote (Streamable HTTP), or several at once ([`Gateway::aggregate`]), as one axum router.
//!
//! Why one file of this size: it is the crate's public face (configuration types, the
//! builder and the router it assembles, with their docs); the request handling lives in the
//! modules.
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

mod aggregate;
pub mod approve;
mod audit;
mod children;
pub mod credential_pages;
mod elicit;
mod error;
mod fanout;
mod front;
pub mod gate;
mod health;
mod host;
pub mod identity;
mod isolation;
mod jsonrpc;
mod live;
mod metrics;
mod modern;
mod paths;
mod per_session;
mod rename;
mod reply;
mod sessions;
mod sse;
#[cfg(feature = "test-upstream")]
#[doc(hidden)]
pub mod test_upstream;
mod upstream;
pub mod vault;
mod versions;
mod watch;
pub mod web;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tower_layer::Layer as _;

/// The examples of `docs/gateway.md`, compiled as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/gateway.md")]
pub struct GatewayDocDoctests;

pub use aggregate::valid_upstream_name;
pub use error::GatewayError;
pub use live::Reloaded;
pub use rename::ToolNames;
pub use upstream::{
    ACTION_REQUIRED, ENV_ALLOW_LIST, HttpConfig, HttpTransport, Isolation, SecretHeader,
    StdioConfig, UpstreamConfig, UpstreamCredentials, UserSecret, resolve_secret, user_oauth,
};
pub use versions::SUPPORTED_VERSIONS;

use crate::front::{Inner, Upstream};
use crate::gate::{AllowAll, Gatekeeper};
use crate::live::Kind;
use crate::metrics::Metrics;

/// Between an upstream's name and its tool or prompt name, with several upstreams:
/// `fs__read_file`. Clients accept tool names matching `^[a-zA-Z0-9_-]{1,64}$` only, so `.`
/// and `/` are out.
pub const SEPARATOR: &str = "__";

/// The `_meta` member of a merged list naming the upstreams that could not be listed.
pub const UNAVAILABLE_META: &str = aggregate::UNAVAILABLE_META;

/// Default largest request body: 4 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Builds a [`Gateway`]; see [`Gateway::builder`].
#[must_use]
pub struct GatewayBuilder {
    upstreams: Vec<(String, UpstreamConfig)>,
    audit: Option<mcp_oauth::AuditLog>,
    identity: Option<String>,
    identity_meta: bool,
    identity_key: Option<identity::IdentityKey>,
    identity_groups: Option<identity::GroupsOf>,
    per_user_idle: Duration,
    per_user_max: u64,
    per_session_idle: Duration,
    per_session_max: u64,
    oauth: Option<mcp_oauth::OAuth>,
    no_auth: bool,
    path: String,
    gatekeeper: Arc<dyn Gatekeeper>,
    max_body: usize,
    session_idle: Duration,
    max_sessions: u64,
    ready_timeout: Duration,
    metrics: Option<mcp_oauth::metrics::Metrics>,
    tools: std::collections::HashMap<String, ToolNames>,
}

impl std::fmt::Debug for GatewayBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayBuilder")
            .field("upstreams", &self.upstreams)
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

    /// Counts into this registry (default: a registry of its own), so that a program can
    /// count more in it (a policy's decisions by rule) and serve it where it wants; the
    /// gateway's [`admin_router`](Gateway::admin_router) serves it with the upstream metrics.
    pub fn metrics(mut self, metrics: mcp_oauth::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Write one audit event per request that reaches a decision (the caller, the call, the
    /// decision, the HTTP status and the time it took).
    pub fn audit(mut self, audit: mcp_oauth::AuditLog) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Identity forwarding: every request to an HTTP upstream carries, in the header `name`
    /// (e.g. `X-MCP-Identity`), a JWT the gateway signs for the caller, with the upstream's
    /// URL as its audience and a 60 s lifetime; the key set is served at
    /// [`identity::JWKS_PATH`]. The client's token is still never forwarded. See the
    /// [`identity`] module.
    pub fn identity_header(mut self, name: impl Into<String>) -> Self {
        self.identity = Some(name.into());
        self
    }

    /// Identity forwarding to stdio children: every request sent to a child carries the
    /// caller's identity token (as [`identity_header`](Self::identity_header) makes them, with
    /// the audience `stdio:NAME`) in `params._meta` under [`identity::META_KEY`]. A client's
    /// own value for that member is removed whether or not this is on. Default: off.
    pub fn identity_meta(mut self) -> Self {
        self.identity_meta = true;
        self
    }

    /// The key that signs identity tokens (kept in a file or in the store, so that it
    /// outlives a restart and several instances share it). Default: one made at
    /// [`build`](Self::build), changing with every start.
    pub fn identity_key(mut self, key: identity::IdentityKey) -> Self {
        self.identity_key = Some(key);
        self
    }

    /// The caller's groups in identity tokens (the `groups` claim; none: left out). Default:
    /// [`identity::claimed_groups`], the strings of the token's `groups` and `roles` claims.
    pub fn identity_groups(
        mut self,
        groups: impl Fn(&mcp_oauth::Auth) -> Vec<String> + Send + Sync + 'static,
    ) -> Self {
        self.identity_groups = Some(Arc::new(groups));
        self
    }

    /// With [`Isolation::PerUser`]: a user's child stops after this long without requests
    /// (their sessions end with it). Default: 15 minutes.
    pub fn per_user_idle(mut self, idle: Duration) -> Self {
        self.per_user_idle = idle;
        self
    }

    /// With [`Isolation::PerUser`]: most children at once per upstream; past it the least
    /// recently active user's child stops. Default: 100.
    pub fn per_user_max(mut self, max: u64) -> Self {
        self.per_user_max = max;
        self
    }

    /// With [`Isolation::PerSession`]: a session's child stops after this long without
    /// requests (or after [`session_idle`](Self::session_idle), if shorter). Default: 15
    /// minutes.
    pub fn per_session_idle(mut self, idle: Duration) -> Self {
        self.per_session_idle = idle;
        self
    }

    /// With [`Isolation::PerSession`]: most children at once per upstream; past it new
    /// sessions are refused (503) and running ones keep their child. Default: 100.
    pub fn per_session_max(mut self, max: u64) -> Self {
        self.per_session_max = max;
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
    /// The tools of upstream `upstream` renamed and described as `names` says: with several
    /// upstreams clients see `upstream__NEW` and the new description, with one `NEW` (its
    /// table under its name, or the only table given if the upstream has no name); the policy
    /// and the audit see the upstream's own name (`upstream__tool`, or `tool` with one
    /// upstream), so a rename never lets a call
    /// past a rule written for that name. A tool's own name is not callable once it is
    /// renamed. Prompts likewise ([`ToolNames::rename_prompt`]): `prompts/get` of the new name
    /// gets the upstream's prompt. Checked by [`build`](Self::build): new names fit
    /// `^[a-zA-Z0-9_-]{1,64}$` with the prefix, and no two tools (prompts) of an upstream end
    /// up with the same name.
    pub fn tools(mut self, upstream: impl Into<String>, names: ToolNames) -> Self {
        self.tools.insert(upstream.into(), names);
        self
    }

    /// # Errors
    ///
    /// No OAuth configured (and not [`insecure_no_auth`](Self::insecure_no_auth)), the
    /// upstream's HTTP client cannot be built, or [`tools`](Self::tools) are refused.
    pub fn build(mut self) -> Result<Gateway, GatewayError> {
        if self.oauth.is_none() && !self.no_auth {
            return Err(GatewayError::Config {
                what: "authentication",
                reason: "the gateway needs an OAuth configuration (GatewayBuilder::oauth)".into(),
            });
        }
        let several = self.upstreams.len() > 1;
        if self.upstreams.is_empty() {
            return Err(GatewayError::Config {
                what: "upstreams",
                reason: "the gateway needs at least one upstream".into(),
            });
        }
        if several {
            live::check_names(self.upstreams.iter().map(|(n, _)| n.as_str()))?;
        }
        let registry = self.metrics.take().unwrap_or_default();
        self.oauth = self.oauth.map(|o| o.with_metrics(registry.clone()));
        let metrics = Arc::new(Metrics::new(
            registry,
            self.upstreams
                .iter()
                .map(|(n, config)| (n.clone(), metrics::Transport::of(config)))
                .collect(),
        ));
        let path = match &self.oauth {
            Some(oauth) => oauth.resource().path().to_owned(),
            None => self.path.clone(),
        };
        let signer = if self.identity.is_some() || self.identity_meta {
            let issuer = match &self.oauth {
                Some(oauth) => oauth.resource().origin(),
                None => "urn:mcp-oauth-gateway".to_owned(),
            };
            Some(Arc::new(identity::Signer::new(
                self.identity.as_deref(),
                issuer,
                self.identity_key,
                self.identity_groups,
            )?))
        } else {
            None
        };
        let parts = live::Parts {
            oauth: self.oauth.clone(),
            gatekeeper: self.gatekeeper,
            audit: self.audit,
            max_body: self.max_body,
            ready_timeout: self.ready_timeout,
            metrics: metrics.clone(),
            signer: signer.clone(),
            identity_meta: self.identity_meta,
            per_user_idle: self.per_user_idle,
            per_user_max: self.per_user_max,
            per_session_idle: self.per_session_idle,
            per_session_max: self.per_session_max,
            session_idle: self.session_idle,
            max_sessions: self.max_sessions,
            path: path.clone(),
        };
        let shape = Arc::new(live::Shape::new(parts, self.upstreams, self.tools)?);
        Ok(Gateway {
            shape,
            oauth: self.oauth,
            max_body: self.max_body,
            metrics,
            signer,
            path,
        })
    }
}

/// How long the public `/readyz` reuses its last probe.
const READYZ_REUSE: Duration = Duration::from_secs(2);

/// The gateway: an MCP endpoint that forwards to its upstream (or, built with
/// [`Gateway::aggregate`], to several). Cheap to clone; stdio children stop when the last
/// clone (and the router) is dropped.
#[derive(Clone)]
pub struct Gateway {
    /// One upstream or several, as the last reload left it.
    shape: Arc<live::Shape>,
    oauth: Option<mcp_oauth::OAuth>,
    metrics: Arc<Metrics>,
    /// The largest request body (the operation layer reads up to this).
    max_body: usize,
    signer: Option<Arc<identity::Signer>>,
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
        Self::aggregate([(String::new(), upstream.into())])
    }

    /// A builder for a gateway in front of several named upstreams at once: each upstream's
    /// tools and prompts are exposed as `NAME__tool` ([`SEPARATOR`]), lists are merged, and
    /// calls go to the upstream the name says. Names are 1 to 32 letters, digits or `-`. With
    /// a single upstream this is [`builder`](Self::builder): no prefix.
    pub fn aggregate<I, S>(upstreams: I) -> GatewayBuilder
    where
        I: IntoIterator<Item = (S, UpstreamConfig)>,
        S: Into<String>,
    {
        GatewayBuilder {
            upstreams: upstreams
                .into_iter()
                .map(|(name, config)| (name.into(), config))
                .collect(),
            audit: None,
            identity: None,
            identity_meta: false,
            identity_key: None,
            identity_groups: None,
            per_user_idle: Duration::from_secs(15 * 60),
            per_user_max: 100,
            per_session_idle: Duration::from_secs(15 * 60),
            per_session_max: 100,
            oauth: None,
            no_auth: false,
            path: "/mcp".to_owned(),
            gatekeeper: Arc::new(AllowAll),
            max_body: DEFAULT_MAX_BODY_BYTES,
            session_idle: Duration::from_secs(3600),
            max_sessions: 10_000,
            ready_timeout: Duration::from_secs(30),
            metrics: None,
            tools: std::collections::HashMap::new(),
        }
    }

    /// The path of the MCP endpoint.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// With several upstreams, each one's own endpoint: its name and path (`/NAME/mcp` beside
    /// `/mcp`). There a client sees that upstream alone, under its own names, and needs a
    /// token issued for that path's URL (its audience): a token for one path is refused at
    /// another, and at the merged endpoint, unless its audience covers both. The gatekeeper
    /// and the audit see `NAME__tool` at every path. Empty with one upstream.
    pub fn upstream_paths(&self) -> Vec<(String, String)> {
        match self.shape.current() {
            Kind::One(_) => Vec::new(),
            Kind::Several(live) => live
                .paths()
                .into_iter()
                .map(|(name, path, _)| (name, path))
                .collect(),
        }
    }

    /// The resource URLs (token audiences) of [`upstream_paths`](Self::upstream_paths), for an
    /// authorization server that must issue tokens for them. Empty without OAuth.
    pub fn upstream_resources(&self) -> Vec<String> {
        match self.shape.current() {
            Kind::One(_) => Vec::new(),
            Kind::Several(live) => live
                .paths()
                .into_iter()
                .filter_map(|(_, _, resource)| resource)
                .collect(),
        }
    }

    /// Serves these upstreams from now on, without a restart. Between several upstreams: an
    /// upstream whose configuration is the same as before keeps running as it was, with its
    /// sessions; a changed one is started again (each client session opens its side there
    /// again at its next request); a new one is served at once, at the merged endpoint and at
    /// its own path; a removed one is gone, its child stopped once its last request is done.
    /// Client sessions of the merged endpoint and of the paths that stay are kept. With one
    /// upstream before and after, a changed upstream is started again and its client sessions
    /// end (404: the client initializes again).
    ///
    /// From one upstream to several, or back, the endpoint changes shape
    /// ([`Reloaded::reshaped`]): from one to several, the endpoint becomes the merged one
    /// (names prefixed, `NAME__tool`) and each upstream is served at its own path; from
    /// several to one, the endpoint serves the one upstream under its own names and every
    /// `/NAME/mcp` answers 404. Every upstream is started again under the new shape and every
    /// client session of the old shape ends: its id is answered 404 (session not found), so
    /// the client initializes again and lists the new names. A session never goes on under
    /// names of the other shape. The metrics count each upstream under its name.
    ///
    /// # Errors
    ///
    /// No upstream, a bad or repeated name with several, or an HTTP client that cannot be
    /// built; the gateway then goes on serving what it served.
    pub fn reload<I, S>(&self, upstreams: I) -> Result<Reloaded, GatewayError>
    where
        I: IntoIterator<Item = (S, UpstreamConfig)>,
        S: Into<String>,
    {
        let upstreams = upstreams
            .into_iter()
            .map(|(name, config)| (name.into(), config))
            .collect();
        self.shape.reload(upstreams, None)
    }

    /// [`reload`](Self::reload) with the tools renamed and described as `tools` says from now
    /// on (by upstream name, as [`GatewayBuilder::tools`]; an upstream missing here has its
    /// tools' own names). An upstream whose table changed keeps running; it is listed in
    /// [`Reloaded::renamed`] and clients are told that the tool list changed.
    ///
    /// # Errors
    ///
    /// As [`reload`](Self::reload), and a table that [`GatewayBuilder::build`] would refuse
    /// (a collision, a bad name, an upstream not served); the gateway then goes on serving
    /// what it served.
    pub fn reload_tools<I, S, T, U>(&self, upstreams: I, tools: T) -> Result<Reloaded, GatewayError>
    where
        I: IntoIterator<Item = (S, UpstreamConfig)>,
        S: Into<String>,
        T: IntoIterator<Item = (U, ToolNames)>,
        U: Into<String>,
    {
        let upstreams = upstreams
            .into_iter()
            .map(|(name, config)| (name.into(), config))
            .collect();
        let tools = tools
            .into_iter()
            .map(|(name, names)| (name.into(), names))
            .collect();
        self.shape.reload(upstreams, Some(tools))
    }

    /// The router: the MCP endpoint (CORS, bearer layer, the gateway), the metadata
    /// routes, and `/healthz` and `/readyz` (status only, no details; `/metrics` is on
    /// [`admin_router`](Self::admin_router) only). Serve it with
    /// `into_make_service_with_connect_info::<SocketAddr>()` so that trusted-proxy rules see
    /// the peer.
    pub fn router(&self) -> Router {
        // One upstream or several: looked up at each request (a reload may change it).
        let endpoint = axum::routing::any(live::handle_endpoint).with_state(self.shape.clone());
        let endpoint = host::guard(endpoint, self.oauth.as_ref());
        // Inside the bearer layer: only authenticated requests are read and timed.
        let endpoint = self
            .metrics
            .registry()
            .layer()
            .max_body(self.max_body)
            .layer(endpoint);
        let mut router = match &self.oauth {
            Some(oauth) => Router::new().route_service(&self.path, oauth.layer().layer(endpoint)),
            None => Router::new().route_service(&self.path, endpoint),
        };
        // Each upstream at its own path: looked up at each request (a reload may add some,
        // or go to one upstream, where every such path is 404), by the exact path.
        let own = paths::own_path(&self.path, "{upstream}");
        let handler = axum::routing::any(live::handle_own).with_state(self.shape.clone());
        router = router.route(&own, host::guard(handler, self.oauth.as_ref()));
        let mut router = router.layer(mcp_oauth::routes::mcp_cors());
        if let Some(oauth) = &self.oauth {
            router = router.merge(oauth.metadata_router());
        }
        if self.oauth.is_some() {
            router = router.route(
                &format!("/.well-known/oauth-protected-resource{own}"),
                axum::routing::get(live::handle_own).with_state(self.shape.clone()),
            );
        }
        let router = match &self.signer {
            Some(signer) => {
                // Made at each request: a rotation (IdentityKey::replace) shows at once.
                let signer = signer.clone();
                router.route(
                    identity::JWKS_PATH,
                    axum::routing::get(move || {
                        let jwks = signer.jwks();
                        async move { axum::Json(jwks) }
                    }),
                )
            }
            None => router,
        };
        let gateway = self.clone();
        // Anyone may ask: the answer is probed at most once per READYZ_REUSE, however many ask
        // (concurrent askers wait for the one probe), so /readyz cannot be used to make the
        // gateway connect to its upstreams, or start a stdio child, at a stranger's pace.
        let last: Arc<tokio::sync::Mutex<Option<(std::time::Instant, bool)>>> = Arc::default();
        router
            .route("/healthz", axum::routing::get(|| async { "ok\n" }))
            .route(
                "/readyz",
                axum::routing::get(move || {
                    let (gateway, last) = (gateway.clone(), last.clone());
                    async move {
                        let mut last = last.lock().await;
                        let ready = match *last {
                            Some((at, ready)) if at.elapsed() < READYZ_REUSE => ready,
                            _ => {
                                let ready =
                                    gateway.readiness().await.iter().all(|(_, ready)| *ready);
                                *last = Some((std::time::Instant::now(), ready));
                                ready
                            }
                        };
                        health::readyz_plain(ready)
                    }
                }),
            )
    }

    /// The operator's router, for a separate listener that only operators reach: `/healthz`,
    /// `/readyz` with each upstream's state (JSON), and `/metrics` (Prometheus text). It has
    /// no authentication: bind it to loopback or a private network.
    pub fn admin_router(&self) -> Router {
        let ready = self.clone();
        let metrics = self.metrics.clone();
        Router::new()
            .route("/healthz", axum::routing::get(|| async { "ok\n" }))
            .route(
                "/readyz",
                axum::routing::get(move || {
                    let gateway = ready.clone();
                    async move { health::readyz_detailed(&gateway.readiness().await) }
                }),
            )
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let metrics = metrics.clone();
                    async move { health::metrics_text(metrics.render()) }
                }),
            )
    }

    /// Each upstream's name (empty for the only one) and whether it is ready: a stdio child
    /// running and initialized, an HTTP upstream accepting connections.
    pub async fn readiness(&self) -> Vec<(String, bool)> {
        const PROBE: Duration = Duration::from_secs(2);
        match self.shape.current() {
            Kind::One(one) => vec![(
                one.route.name().as_deref().unwrap_or_default().to_owned(),
                one.route.ready(PROBE).await,
            )],
            Kind::Several(live) => aggregate::readiness(&live.merged(), PROBE)
                .await
                .into_iter()
                .map(|(name, ready)| (name.to_string(), ready))
                .collect(),
        }
    }

    /// What the upstreams offer, as clients of this gateway see it: `{"tools": […],
    /// "prompts": […], "resources": […]}` with every page read (with several upstreams, the
    /// exposed names `NAME__tool`). For checking a policy against the real tool schemas before
    /// serving: it asks through the gateway itself, without a caller, so the gatekeeper must
    /// let an anonymous caller list (an upstream that does not answer a list gives an empty
    /// one).
    ///
    /// # Errors
    ///
    /// The session cannot be opened, or a list answer is not a list.
    pub async fn catalog(&self) -> Result<serde_json::Value, GatewayError> {
        let handle = |method: ::http::Method, session: Option<String>, body: String| async move {
            self.internal(method, session.as_deref(), body).await
        };
        let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"mcp-oauth-gateway-catalog","version":"1"}}}"#;
        let response = handle(::http::Method::POST, None, init.to_owned()).await?;
        let session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| {
                GatewayError::Unavailable(format!(
                    "initialize for the tool list answered {}",
                    response.status()
                ))
            })?;
        let mut catalog = serde_json::Map::new();
        for (method, member) in [
            ("tools/list", "tools"),
            ("prompts/list", "prompts"),
            ("resources/list", "resources"),
        ] {
            let mut items = Vec::new();
            let mut cursor: Option<String> = None;
            for page in 1..=50 {
                let params = match &cursor {
                    Some(cursor) => serde_json::json!({ "cursor": cursor }),
                    None => serde_json::json!({}),
                };
                let body =
                    serde_json::json!({"jsonrpc":"2.0","id":page,"method":method,"params":params});
                let response = handle(
                    ::http::Method::POST,
                    Some(session.clone()),
                    body.to_string(),
                )
                .await?;
                let answer = aggregate::read_answer(response)
                    .await
                    .map_err(GatewayError::Protocol)?;
                let Some(result) = answer.get("result") else {
                    break;
                };
                let list = result
                    .get(member)
                    .and_then(serde_json::Value::as_array)
                    .ok_or_else(|| {
                        GatewayError::Protocol(format!("the answer to {method} is not a list"))
                    })?;
                items.extend(list.iter().cloned());
                cursor = result
                    .get("nextCursor")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned);
                if cursor.is_none() {
                    break;
                }
            }
            catalog.insert(member.to_owned(), serde_json::Value::Array(items));
        }
        let _ = handle(::http::Method::DELETE, Some(session), String::new()).await;
        let view = match self.shape.current() {
            Kind::Several(live) => Some(live.merged()),
            Kind::One(one) => one.view().cloned(),
        };
        if let Some(merged) = view {
            for (kind, member) in [
                (gate::ListKind::Tools, "tools"),
                (gate::ListKind::Prompts, "prompts"),
            ] {
                if let Some(items) = catalog.get(member) {
                    merged.check_renames(kind, items)?;
                }
            }
        }
        Ok(serde_json::Value::Object(catalog))
    }

    /// A request of the gateway itself (no caller, no bearer layer) to its MCP endpoint.
    pub(crate) async fn internal(
        &self,
        method: ::http::Method,
        session: Option<&str>,
        body: String,
    ) -> Result<axum::response::Response, GatewayError> {
        let accept = if method == ::http::Method::GET {
            "text/event-stream"
        } else {
            "application/json, text/event-stream"
        };
        let mut builder = ::http::Request::builder()
            .method(method)
            .uri(self.path.as_str())
            .header(::http::header::CONTENT_TYPE, "application/json")
            .header(::http::header::ACCEPT, accept);
        if let Some(session) = session {
            builder = builder.header("mcp-session-id", session);
        }
        let mut request = builder
            .body(axum::body::Body::from(body))
            .map_err(|e| GatewayError::Protocol(e.to_string()))?;
        request.extensions_mut().insert(aggregate::PolicyNames);
        // Boxed: the endpoints' futures nest deeply, and a caller's own future (the command's
        // start-up, a test) would otherwise carry their whole layout.
        let answer: futures_util::future::BoxFuture<'_, axum::response::Response> =
            match self.shape.current() {
                Kind::One(one) => Box::pin(async move { one.handle(request).await }),
                Kind::Several(live) => Box::pin(aggregate::handle(
                    axum::extract::State(live.merged()),
                    request,
                )),
            };
        Ok(answer.await)
    }

    /// Which lists the upstreams say changed (`notifications/tools/list_changed`, and those
    /// of prompts and resources), as they say it: the gateway keeps a session of its own with
    /// a GET stream (opened again if it ends) and sends each change here. For checking a
    /// policy against an upstream's new tools. Clients get the same notifications on their
    /// own GET streams. The watch stops when the receiver is dropped; after
    /// [`reload`](Self::reload), watch again to hear from new upstreams.
    pub fn list_changes(&self) -> tokio::sync::mpsc::Receiver<gate::ListKind> {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(watch::list_changes(self.clone(), tx));
        rx
    }

    /// The registry the gateway counts into (see [`GatewayBuilder::metrics`]).
    pub fn metrics(&self) -> &mcp_oauth::metrics::Metrics {
        self.metrics.registry()
    }

    /// The metrics in the Prometheus text format (what the admin router's `/metrics` serves).
    pub fn metrics_text(&self) -> String {
        self.metrics.render()
    }

    /// Every upstream's route, now.
    fn routes(&self) -> Vec<isolation::Route> {
        match self.shape.current() {
            Kind::One(one) => vec![one.route.clone()],
            Kind::Several(live) => live
                .merged()
                .members
                .iter()
                .map(|m| m.route.clone())
                .collect(),
        }
    }

    fn inners(&self) -> Vec<Arc<Inner>> {
        self.routes()
            .iter()
            .filter_map(|route| route.shared().cloned())
            .collect()
    }

    /// Waits until every upstream is usable: stdio children started and initialized (an HTTP
    /// upstream is reached per session, so it is ready at once).
    ///
    /// # Errors
    ///
    /// A child is not initialized within `timeout`.
    pub async fn ready(&self, timeout: Duration) -> Result<(), GatewayError> {
        for inner in self.inners() {
            if let Upstream::Stdio(stdio) = &inner.upstream {
                stdio.ready(timeout).await.map_err(|e| match &inner.name {
                    Some(name) => GatewayError::Unavailable(format!("upstream {name}: {e}")),
                    None => e,
                })?;
            }
        }
        Ok(())
    }

    /// How many per-user children run now, over every upstream with
    /// [`Isolation::PerUser`] (idle ones are stopped first).
    pub fn per_user_children(&self) -> u64 {
        self.routes()
            .iter()
            .map(|route| match route {
                isolation::Route::PerUser(per_user) => per_user.count(),
                isolation::Route::Shared(_) | isolation::Route::PerSession(_) => 0,
            })
            .sum()
    }

    /// How many per-session children run now, over every upstream with
    /// [`Isolation::PerSession`] (those of ended or expired sessions are stopped first).
    pub fn per_session_children(&self) -> u64 {
        self.routes()
            .iter()
            .map(|route| match route {
                isolation::Route::PerSession(per_session) => per_session.count(),
                isolation::Route::Shared(_) | isolation::Route::PerUser(_) => 0,
            })
            .sum()
    }

    /// The (first) shared stdio child's process id, when one runs.
    pub fn upstream_pid(&self) -> Option<u32> {
        self.inners()
            .into_iter()
            .find_map(|inner| match &inner.upstream {
                Upstream::Stdio(stdio) => stdio.pid(),
                Upstream::Http(_) => None,
            })
    }

    /// How many times the (first) stdio child was started (1 until it is restarted).
    pub fn upstream_starts(&self) -> u64 {
        self.inners()
            .into_iter()
            .find_map(|inner| match &inner.upstream {
                Upstream::Stdio(stdio) => Some(stdio.starts()),
                Upstream::Http(_) => None,
            })
            .unwrap_or(0)
    }
}
