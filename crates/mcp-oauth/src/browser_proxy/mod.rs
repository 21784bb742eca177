//! Browser proxy routes: let a web page run OAuth discovery and token requests against
//! servers that send no CORS headers, like mcp-use's `mountOAuthProxy`, with an SSRF guard on
//! every URL the server fetches.
//!
//! - `GET <base>/metadata?url=<metadata URL>[&mcp_url=<MCP URL>]`: fetches OAuth metadata.
//!   When `url` is a protected-resource metadata URL (RFC 9728) and `mcp_url` is given, the
//!   MCP endpoint is POSTed to first and the `resource_metadata` parameter of its
//!   `WWW-Authenticate` challenge (RFC 9728 §5.1) is followed; then `url`, then fallbacks on
//!   the MCP server's origin (`/.well-known/oauth-protected-resource<path>` and the root
//!   form, or `/.well-known/oauth-authorization-server`, or
//!   `/.well-known/openid-configuration`, matching the kind of `url`). The first 2xx JSON
//!   object is the answer (200).
//! - `POST <base>/proxy` with a JSON body `{url, method = "GET", body?, headers?}`: forwards
//!   one `GET` or `POST` and answers 200 `{status, statusText, headers, body}`.
//!
//! Both routes answer CORS from any origin (`GET, POST, OPTIONS`, any request header, every
//! response header exposed, no credentials).
//!
//! # What is checked
//!
//! Every URL fetched (the `url` and `mcp_url` given, the discovered `resource_metadata` URL,
//! every fallback and every redirect hop) goes through the [`validate_target`] hook and the
//! [`NetGuard`]: the host is resolved, every address must be public (loopback, private,
//! link-local, CGNAT, metadata addresses and the like are refused), and the connection is
//! pinned to the checked address so that DNS cannot answer differently at connect time.
//! Redirects are followed by hand (at most 3 by default) and each `Location` is checked the
//! same way. A refusal answers 403 `{"error":"Target URL not allowed","host":..,"reason":..}`
//! and nothing is sent to the refused address.
//!
//! Only the request headers `accept`, `authorization`, `content-type` and `dpop` are
//! forwarded; only `cache-control`, `content-type`, `dpop-nonce`, `expires`, `pragma`,
//! `retry-after` and `www-authenticate` come back (never `set-cookie`). Request envelopes are
//! limited to 64 KiB, responses to 1 MiB, and each route call to 10 seconds.
//!
//! [`validate_target`]: BrowserProxyBuilder::validate_target
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::body::Body;
//! use http::{Request, StatusCode};
//! use mcp_oauth::browser_proxy::BrowserProxy;
//! use tower::ServiceExt;
//!
//! let app = BrowserProxy::builder().base_path("/oauth").build()?.router();
//!
//! // The cloud metadata address is refused before any connection is tried.
//! let res = app
//!     .clone()
//!     .oneshot(Request::get("/oauth/metadata?url=http://169.254.169.254/latest/meta-data").body(Body::empty())?)
//!     .await?;
//! assert_eq!(res.status(), StatusCode::FORBIDDEN);
//!
//! let res = app.oneshot(Request::get("/oauth/metadata").body(Body::empty())?).await?;
//! assert_eq!(res.status(), StatusCode::BAD_REQUEST);
//! # Ok(()) }
//! ```
//!
//! # Deployment
//!
//! These routes make requests on behalf of any page that can reach them. Mount them only
//! where needed, give an [`authenticate`](BrowserProxyBuilder::authenticate) hook (or a layer
//! of your own) when the server is reachable by others, and a
//! [`validate_target`](BrowserProxyBuilder::validate_target) allow-list when the set of
//! authorization servers is known. Outbound requests ignore `HTTP_PROXY`/`HTTPS_PROXY`: a
//! forward proxy would resolve names again and defeat the address pinning.

mod client;
mod forward;
mod metadata;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::request::Parts;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer, ExposeHeaders};
use url::Url;

use crate::error::ConfigError;
use crate::net_guard::NetGuard;

/// Default base path of the routes.
pub const DEFAULT_BASE_PATH: &str = "/oauth";
/// Default limit on the `POST <base>/proxy` request body: 64 KiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Default limit on an upstream response body: 1 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Default time budget of one route call, redirects and fallbacks included: 10 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of redirects followed: 3.
pub const DEFAULT_MAX_REDIRECTS: usize = 3;

type AuthenticateFn = dyn Fn(&Parts) -> bool + Send + Sync;
type ValidateTargetFn = dyn Fn(&Url) -> bool + Send + Sync;

/// The browser proxy routes (see the [module docs](self)). Cheap to clone.
#[derive(Clone)]
pub struct BrowserProxy {
    shared: Arc<Shared>,
}

/// Builds a [`BrowserProxy`].
#[must_use]
pub struct BrowserProxyBuilder {
    /// The configuration as given; [`BrowserProxyBuilder::build`] checks it.
    config: Shared,
}

/// The configuration of the routes, shared by every call.
struct Shared {
    base_path: String,
    guard: NetGuard,
    authenticate: Option<Arc<AuthenticateFn>>,
    validate_target: Option<Arc<ValidateTargetFn>>,
    timeout: Duration,
    max_request_bytes: usize,
    max_response_bytes: usize,
    max_redirects: usize,
}

impl Default for BrowserProxyBuilder {
    fn default() -> Self {
        Self {
            config: Shared {
                base_path: DEFAULT_BASE_PATH.into(),
                guard: NetGuard::new().allow_http(),
                authenticate: None,
                validate_target: None,
                timeout: DEFAULT_TIMEOUT,
                max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
                max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
                max_redirects: DEFAULT_MAX_REDIRECTS,
            },
        }
    }
}

impl BrowserProxyBuilder {
    /// Where the routes live: `<base>/metadata` and `<base>/proxy`. Default is `/oauth`.
    /// Must be empty or start with `/`; a trailing `/` is dropped.
    pub fn base_path(mut self, path: impl Into<String>) -> Self {
        self.config.base_path = path.into();
        self
    }

    /// Decides whether a call may use the proxy at all, from its method, URI and headers
    /// (an API key, a session cookie checked in memory, ...). `false` answers
    /// 401 `{"error":"Unauthorized"}`. Default is no check. For an asynchronous check, put
    /// a middleware layer on [`BrowserProxy::router`] instead.
    pub fn authenticate<F>(mut self, hook: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        self.config.authenticate = Some(Arc::new(hook));
        self
    }

    /// Decides whether a URL may be fetched. Called for every URL before it is fetched: the
    /// `url` and `mcp_url` given, the discovered metadata URL, fallbacks and every redirect
    /// hop. `false` answers 403 `{"error":"Target URL not allowed"}`. Default is no check
    /// (the network guard still applies).
    pub fn validate_target<F>(mut self, hook: F) -> Self
    where
        F: Fn(&Url) -> bool + Send + Sync + 'static,
    {
        self.config.validate_target = Some(Arc::new(hook));
        self
    }

    /// The SSRF guard for every fetched URL. Default is `NetGuard::new().allow_http()`:
    /// `http` and `https`, public addresses only. Pass `NetGuard::new()` for `https` only,
    /// and [`NetGuard::allow_host`] for a private host you trust.
    pub fn guard(mut self, guard: NetGuard) -> Self {
        self.config.guard = guard;
        self
    }

    /// Time budget of one route call, all its fetches, redirects and fallbacks included.
    /// Default is 10 seconds.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Largest `POST <base>/proxy` request body. Default is 64 KiB.
    pub fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.config.max_request_bytes = bytes;
        self
    }

    /// Largest upstream response body. Default is 1 MiB.
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.config.max_response_bytes = bytes;
        self
    }

    /// Redirects followed per fetch, each one checked like the first URL. Default is 3.
    pub fn max_redirects(mut self, redirects: usize) -> Self {
        self.config.max_redirects = redirects;
        self
    }

    /// Builds the proxy.
    ///
    /// # Errors
    ///
    /// The base path does not start with `/` or holds a route parameter, wildcard, query or
    /// fragment; the timeout or a body limit is zero.
    pub fn build(mut self) -> Result<BrowserProxy, ConfigError> {
        let config = &mut self.config;
        config.base_path = config.base_path.trim_end_matches('/').to_owned();
        let base_path = &config.base_path;
        if !base_path.is_empty() && !base_path.starts_with('/') {
            return Err(ConfigError::invalid(
                "base path",
                format!("{base_path:?} must start with '/'"),
            ));
        }
        if base_path.contains(['{', '}', '*', '?', '#', ':']) {
            return Err(ConfigError::invalid(
                "base path",
                format!("{base_path:?} must be a plain path"),
            ));
        }
        if config.timeout.is_zero() {
            return Err(ConfigError::invalid("timeout", "must not be zero"));
        }
        if config.max_request_bytes == 0 || config.max_response_bytes == 0 {
            return Err(ConfigError::invalid("body limit", "must not be zero"));
        }
        Ok(BrowserProxy {
            shared: Arc::new(self.config),
        })
    }
}

impl BrowserProxy {
    /// A builder with the defaults.
    pub fn builder() -> BrowserProxyBuilder {
        BrowserProxyBuilder::default()
    }

    /// The base path of the routes, without a trailing `/`.
    pub fn base_path(&self) -> &str {
        &self.shared.base_path
    }

    /// The routes, with their CORS layer; merge them into your application.
    pub fn router(&self) -> Router {
        let base = &self.shared.base_path;
        Router::new()
            .route(&format!("{base}/metadata"), get(metadata::handle))
            .route(&format!("{base}/proxy"), post(forward::handle))
            .layer(cors())
            .with_state(self.shared.clone())
    }
}

/// mcp-use's policy: any origin, `GET, POST, OPTIONS`, any request header, every response
/// header exposed, one day of preflight caching, no credentials.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers(AllowHeaders::any())
        .expose_headers(ExposeHeaders::any())
        .max_age(Duration::from_secs(86_400))
}

impl Shared {
    fn authenticated(&self, parts: &Parts) -> bool {
        self.authenticate.as_ref().is_none_or(|hook| hook(parts))
    }

    fn target_allowed(&self, url: &Url) -> bool {
        self.validate_target.as_ref().is_none_or(|hook| hook(url))
    }

    /// A URL from the browser, parsed and accepted by the hook; else the status and message
    /// to answer (400 or 403).
    fn accept_target(&self, raw: &str) -> Result<Url, (StatusCode, &'static str)> {
        let url = parse_target(raw).map_err(|message| (StatusCode::BAD_REQUEST, message))?;
        if !self.target_allowed(&url) {
            return Err((StatusCode::FORBIDDEN, "Target URL not allowed"));
        }
        Ok(url)
    }
}

/// A JSON error body `{"error": message}`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// A JSON error body with more fields.
fn error_with(status: StatusCode, message: &str, extra: Value) -> Response {
    let mut body = json!({ "error": message });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    (status, Json(body)).into_response()
}

/// The 403 for a refused URL.
fn refused(refusal: client::Refusal) -> Response {
    error_with(
        StatusCode::FORBIDDEN,
        "Target URL not allowed",
        json!({ "host": refusal.host, "reason": refusal.reason }),
    )
}

/// Parses a URL from the browser; the error is mcp-use's message for a 400.
fn parse_target(raw: &str) -> Result<Url, &'static str> {
    let url = Url::parse(raw).map_err(|_| "Invalid URL format")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("Invalid protocol");
    }
    Ok(url)
}

impl fmt::Debug for BrowserProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.debug("BrowserProxy", f)
    }
}

impl fmt::Debug for BrowserProxyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.debug("BrowserProxyBuilder", f)
    }
}

impl Shared {
    /// The configuration, hooks as whether they are set, under the name `name`.
    fn debug(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("base_path", &self.base_path)
            .field("guard", &self.guard)
            .field("authenticate", &self.authenticate.is_some())
            .field("validate_target", &self.validate_target.is_some())
            .field("timeout", &self.timeout)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_redirects", &self.max_redirects)
            .finish()
    }
}
