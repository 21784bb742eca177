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
use ::rmcp::model::ErrorData;
use ::rmcp::service::{RequestContext, RoleServer};
use ::rmcp::transport::streamable_http_server::StreamableHttpServerConfig;

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
