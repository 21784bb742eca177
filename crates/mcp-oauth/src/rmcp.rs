//! Glue for rmcp: the `Auth` extractor for `#[tool]` functions and the transport settings that
//! fit an OAuth-protected endpoint. (Session-to-subject binding, which needs nothing from
//! rmcp, is [`session`](crate::session).)
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
//! sessions are on, [`SessionBindingLayer`](crate::session::SessionBindingLayer)) and serve [`OAuth::metadata_router`](crate::OAuth::metadata_router)
//! next to it.

use ::rmcp::handler::server::common::{AsRequestContext, FromContextPart};
use ::rmcp::model::ProgressNotificationParam;
use ::rmcp::transport::streamable_http_server::StreamableHttpServerConfig;

// The rmcp items `server/` builds on, spelled once here: an rmcp upgrade touches this file.
pub(crate) use ::rmcp::ServerHandler;
pub(crate) use ::rmcp::handler::server::common::schema_for_input;
pub(crate) use ::rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    Implementation, JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities,
    ServerConfig, Tool as ToolModel,
};
pub(crate) use ::rmcp::service::{RequestContext, RoleServer};
pub(crate) use ::rmcp::transport::streamable_http_server::StreamableHttpService;
pub(crate) use ::rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

use crate::auth::Auth;
use crate::oauth::OAuth;

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
    let config = base_config();
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
    if oauth.trusts_forwarded_headers() {
        // The public host comes from the proxy and varies; the proxy is the gate, and the
        // audience follows only what a trusted proxy forwarded (see the docs above).
        return config.disable_allowed_hosts();
    }
    config.with_allowed_hosts(hosts)
}

fn base_config() -> StreamableHttpServerConfig {
    StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
}

/// rmcp's transport settings for a server without OAuth (rmcp's defaults), with `sessions`
/// and `json_response` as asked.
pub(crate) fn transport_config(
    oauth: Option<&OAuth>,
    sessions: bool,
    json_response: bool,
) -> StreamableHttpServerConfig {
    let config = match oauth {
        Some(oauth) => streamable_http_config(oauth),
        None => StreamableHttpServerConfig::default(),
    };
    config
        .with_legacy_session_mode(sessions)
        .with_json_response(json_response)
}

/// The rmcp request behind a tool call, kept inside the glue: a
/// [`ToolContext`](crate::server::ToolContext) asks it for what tools need (the HTTP
/// request's parts, cancellation, progress notifications) without naming an rmcp type.
#[derive(Debug, Clone)]
pub(crate) struct McpRequest(RequestContext<RoleServer>);

impl McpRequest {
    pub(crate) fn new(context: RequestContext<RoleServer>) -> Self {
        Self(context)
    }

    /// The verified caller, if the bearer layer ran.
    pub(crate) fn auth(&self) -> Option<Auth> {
        auth_from_context(&self.0)
    }

    /// The HTTP request's head (method, URI, headers, extensions).
    pub(crate) fn parts(&self) -> Option<&http::request::Parts> {
        self.0.extensions.get::<http::request::Parts>()
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.0.ct.is_cancelled()
    }

    pub(crate) async fn cancelled(&self) {
        self.0.ct.cancelled().await;
    }

    /// Sends `notifications/progress` when the client asked for progress (a progress token
    /// in `_meta`); otherwise nothing.
    pub(crate) async fn notify_progress(
        &self,
        progress: f64,
        total: Option<f64>,
        message: Option<String>,
    ) -> Result<(), String> {
        let Some(token) = self.0.meta.get_progress_token() else {
            return Ok(());
        };
        let mut param = ProgressNotificationParam::new(token, progress);
        if let Some(total) = total {
            param = param.with_total(total);
        }
        if let Some(message) = message {
            param = param.with_message(message);
        }
        self.0
            .peer
            .notify_progress(param)
            .await
            .map_err(|err| err.to_string())
    }
}
