//! [`McpServer`]: an MCP server on rmcp's Streamable HTTP transport with OAuth in front.
//!
//! ```no_run
//! use mcp_oauth::OAuth;
//! use mcp_oauth::server::{McpServer, NoArgs, Tool, ToolContext, ToolError};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let oauth = OAuth::oidc("https://auth.example.com", "http://127.0.0.1:8080/mcp")?;
//! McpServer::new("demo", "1.0.0")
//!     .oauth(oauth)
//!     .tool(Tool::new("whoami", "Who is calling", |_: NoArgs, ctx: ToolContext| async move {
//!         let auth = ctx.require_auth()?;
//!         Ok::<_, ToolError>(serde_json::json!({ "sub": auth.subject(), "scopes": auth.scopes }))
//!     }))
//!     .tool(
//!         Tool::new("admin_action", "Privileged", |_: NoArgs, _ctx: ToolContext| async move { "done" })
//!             .require_scopes(["admin"]),
//!     )
//!     .listen("127.0.0.1:8080")
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Requests go through, in order: CORS, the bearer layer (401/403 before anything else,
//! including method routing), session binding when sessions are on, then rmcp.
//! The discovery routes are public.

mod handler;
mod tool;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::{TcpListener, ToSocketAddrs};
use tower_layer::Layer as _;

pub use tool::{IntoToolResult, NoArgs, Tool, ToolContext, ToolError};

use crate::error::ConfigError;
use crate::oauth::OAuth;
use crate::rmcp::{LocalSessionManager, StreamableHttpService, transport_config};
use crate::routes::mcp_cors;
use crate::session::SessionBindingLayer;

/// How the MCP endpoint is protected: [`McpServer::oauth`] or [`McpServer::provider`].
#[derive(Debug, Clone)]
enum OAuthSource {
    /// A complete configuration.
    Ready(OAuth),
    /// A provider preset, already checked; the server supplies the resource URL.
    Provider(Box<crate::providers::ProviderSpec>),
}

/// The server could not be built or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A configuration value is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A tool definition is unusable.
    #[error("tool {name:?}: {reason}")]
    Tool {
        /// The tool.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The access policy does not fit the server's tools (each problem names its rule).
    #[cfg(feature = "policy")]
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// Binding or serving failed.
    #[error("server I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// An MCP server: tools, optional OAuth, served over Streamable HTTP.
#[must_use]
#[derive(Debug, Clone)]
pub struct McpServer {
    name: String,
    version: String,
    title: Option<String>,
    instructions: Option<String>,
    oauth: Option<OAuthSource>,
    url: Option<String>,
    tools: Vec<Tool>,
    path: Option<String>,
    sessions: bool,
    json_response: bool,
    #[cfg(feature = "auth-server")]
    auth_server: Option<crate::auth_server::AuthServer>,
    #[cfg(feature = "policy")]
    access_policy: Option<crate::policy::PolicyConfig>,
    #[cfg(feature = "policy")]
    audit: Option<crate::audit::AuditLog>,
    metrics: Option<crate::metrics::Metrics>,
}

impl McpServer {
    /// A server with this name and version, no tools, no OAuth, stateless.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            title: None,
            instructions: None,
            oauth: None,
            url: None,
            tools: Vec::new(),
            path: None,
            sessions: false,
            json_response: true,
            #[cfg(feature = "auth-server")]
            auth_server: None,
            #[cfg(feature = "policy")]
            access_policy: None,
            #[cfg(feature = "policy")]
            audit: None,
            metrics: None,
        }
    }

    /// Counts into `metrics`: each MCP operation's duration
    /// (`mcp_server_operation_duration_seconds`, with this server's tools as
    /// `gen_ai_tool_name`), the bearer layer's results and the access policy's decisions.
    /// Serve them with [`Metrics::router`](crate::metrics::Metrics::router) on a listener of
    /// their own; see [`metrics`](crate::metrics).
    ///
    /// ```no_run
    /// use mcp_oauth::metrics::Metrics;
    /// use mcp_oauth::server::McpServer;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let metrics = Metrics::new();
    /// let admin = tokio::net::TcpListener::bind("127.0.0.1:9464").await?;
    /// tokio::spawn(axum::serve(admin, metrics.router()).into_future());
    /// McpServer::new("demo", "1.0.0")
    ///     .metrics(metrics)
    ///     .listen("127.0.0.1:8080")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Serves `server` (an embedded [`AuthServer`](crate::auth_server::AuthServer), in proxy
    /// mode or with its own login) on the same app, and, unless [`McpServer::oauth`] says
    /// otherwise, protects the MCP endpoint with its tokens: resource = the server's first
    /// [`resource`](crate::auth_server::AuthServerBuilder::resource) (else as for a preset),
    /// signature checked against its key ring, revoked grants refused.
    ///
    /// Tools then reach the user's upstream token with [`ToolContext::upstream_token`].
    ///
    /// ```no_run
    /// use mcp_oauth::auth_server::{AuthServer, MemoryStore, Upstream};
    /// use mcp_oauth::server::{McpServer, NoArgs, Tool, ToolContext, ToolError};
    /// use std::sync::Arc;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let google = Upstream::google("123.apps.googleusercontent.com", "GOCSPX-…").build()?;
    /// let auth = AuthServer::builder("https://mcp.example.com")
    ///     .upstream(google)
    ///     .encryption_key(std::env::var("MCP_OAUTH_ENCRYPTION_KEY")?.into_bytes())
    ///     .store(Arc::new(MemoryStore::new()))
    ///     .resource("https://mcp.example.com/mcp")
    ///     .build()
    ///     .await?;
    /// McpServer::new("calendar", "1.0.0")
    ///     .auth_server(auth)
    ///     .tool(Tool::new("calendar", "Calls the provider as the user", |_: NoArgs, ctx: ToolContext| async move {
    ///         let token = ctx.upstream_token().await?;
    ///         // reqwest::Client::new().get(…).bearer_auth(String::from_utf8_lossy(token.expose()))
    ///         Ok::<_, ToolError>(format!("{} bytes of upstream token", token.expose().len()))
    ///     }))
    ///     .listen("127.0.0.1:8080")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "auth-server")]
    pub fn auth_server(mut self, server: crate::auth_server::AuthServer) -> Self {
        self.auth_server = Some(server);
        self
    }

    /// Decides every tool call with this access policy, the verified caller as subject, and
    /// shows each caller in `tools/list` only the tools it may call. The rules are checked
    /// against the server's tools when the app is built ([`McpServer::app`], `listen`,
    /// `serve`): a rule naming an unknown tool or argument stops the server with an error
    /// naming the rule. Needs OAuth. Default is no access policy.
    ///
    /// A refused call gets a JSON-RPC error (code
    /// [`POLICY_DENIED`](crate::policy::POLICY_DENIED)); a call whose rule has step-up
    /// scopes the token lacks gets HTTP 403 `insufficient_scope` naming them. See
    /// `docs/policy.md`.
    ///
    /// ```
    /// use mcp_oauth::policy::PolicyConfig;
    /// use mcp_oauth::server::{McpServer, NoArgs, Tool, ToolContext};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let policy = PolicyConfig::from_toml(r#"
    /// [[policy.rule]]
    /// id = "staff-whoami"
    /// who = { email_domains = ["example.com"] }
    /// tools = ["whoami"]
    /// "#, "policy.toml")?;
    /// let server = McpServer::new("demo", "1.0.0")
    ///     .tool(Tool::new("whoami", "Who is calling", |_: NoArgs, ctx: ToolContext| async move {
    ///         ctx.auth().map(|a| a.subject().to_owned()).unwrap_or_default()
    ///     }))
    ///     .policy(policy);
    /// // A rule naming a tool the server does not have is an error, not a silent deny.
    /// let typo = PolicyConfig::from_toml(r#"
    /// [[policy.rule]]
    /// id = "typo"
    /// tools = ["whoamii"]
    /// "#, "policy.toml")?;
    /// let err = server.clone().policy(typo).check_policy().unwrap_err();
    /// assert!(err.to_string().contains("typo"), "{err}");
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "policy")]
    pub fn policy(mut self, config: crate::policy::PolicyConfig) -> Self {
        self.access_policy = Some(config);
        self
    }

    /// Writes one line per access-policy decision to this audit log (see
    /// [`audit`](crate::audit)). Default is none.
    #[cfg(feature = "policy")]
    pub fn audit(mut self, audit: crate::audit::AuditLog) -> Self {
        self.audit = Some(audit);
        self
    }

    /// The access policy compiled against the server's tools: `None` without
    /// [`McpServer::policy`].
    ///
    /// # Errors
    ///
    /// The rules do not fit the tools (each problem names its rule and line), or a tool's
    /// arguments type has no object schema.
    #[cfg(feature = "policy")]
    pub fn check_policy(&self) -> Result<Option<crate::policy::Policy>, ServerError> {
        use crate::policy::{Catalog, Policy, ToolInfo};

        let Some(config) = &self.access_policy else {
            return Ok(None);
        };
        let mut catalog = Catalog::new();
        for tool in &self.tools {
            let schema = tool.schema.clone().map_err(|reason| ServerError::Tool {
                name: tool.name.clone(),
                reason,
            })?;
            let schema = serde_json::Value::Object((*schema).clone());
            catalog = catalog.tool(ToolInfo::new(tool.name.clone(), schema));
        }
        Ok(Some(Policy::new(config.clone(), catalog)?))
    }

    /// Protects the MCP endpoint with a ready [`OAuth`] configuration (the endpoint's path is
    /// its resource URL's path).
    pub fn oauth(mut self, oauth: OAuth) -> Self {
        self.oauth = Some(OAuthSource::Ready(oauth));
        self
    }

    /// Protects the MCP endpoint with a provider preset, whose resource URL is
    /// [`McpServer::url`], else `MCP_URL`, else, when listening on loopback,
    /// `http://<listen address><path>`. Unset preset values are read from the process
    /// environment now.
    ///
    /// ```no_run
    /// use mcp_oauth::McpServer;
    /// use mcp_oauth::providers::Auth0;
    ///
    /// # fn main() -> Result<(), mcp_oauth::ConfigError> {
    /// let server = McpServer::new("demo", "1.0.0")
    ///     .url("https://mcp.example.com/mcp")
    ///     .provider(Auth0::new().domain("tenant.auth0.com").audience("https://api.example.com"))?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// The preset is invalid or misses a required value (the error names the variable):
    /// reported here, where it enters, not when the server starts.
    pub fn provider(
        mut self,
        preset: impl crate::providers::Provider,
    ) -> Result<Self, ConfigError> {
        self.oauth = Some(OAuthSource::Provider(Box::new(preset.spec()?)));
        Ok(self)
    }

    /// The public URL of the MCP endpoint, for provider presets (`https://mcp.example.com/mcp`).
    ///
    /// # Deployment
    ///
    /// Behind a reverse proxy this is the URL clients use, not the listen address.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Adds a tool.
    pub fn tool(mut self, tool: Tool) -> Self {
        self.tools.push(tool);
        self
    }

    /// A human-readable title.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Instructions for clients.
    pub fn instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = Some(instructions.into());
        self
    }

    /// The endpoint's path when there is no OAuth (default `/mcp`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Legacy stateful sessions (`Mcp-Session-Id`) for clients on protocol versions before
    /// 2026-07-28. Default: off (stateless). When on, each session is bound to the principal
    /// that created it.
    pub fn sessions(mut self, on: bool) -> Self {
        self.sessions = on;
        self
    }

    /// Answer with JSON instead of an SSE stream when a request has a single response.
    /// Default: on.
    pub fn json_response(mut self, on: bool) -> Self {
        self.json_response = on;
        self
    }

    fn endpoint_path(&self, oauth: Option<&OAuth>) -> String {
        if let Some(oauth) = oauth {
            return oauth.resource().path().to_owned();
        }
        if let Some(path) = self
            .url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .map(|u| u.path().to_owned())
        {
            return path;
        }
        self.path.clone().unwrap_or_else(|| "/mcp".to_owned())
    }

    /// The OAuth configuration, with a preset's resource URL filled in (`listening` is the
    /// listen address, once known).
    fn resolve_oauth(&self, listening: Option<SocketAddr>) -> Result<Option<OAuth>, ServerError> {
        let spec = match &self.oauth {
            #[cfg(feature = "auth-server")]
            None if self.auth_server.is_some() => None,
            None => return Ok(None),
            Some(OAuthSource::Ready(oauth)) => return Ok(Some(oauth.clone())),
            Some(OAuthSource::Provider(spec)) => Some((**spec).clone()),
        };
        #[cfg(feature = "auth-server")]
        if let (None, Some(server)) = (&spec, &self.auth_server) {
            let resource = match server.resources().first() {
                Some(resource) => resource.clone(),
                None => self.resource_url(listening)?,
            };
            return Ok(Some(
                OAuth::builder()
                    .resource(resource)
                    .authorization_server(server.issuer())
                    .scopes_supported(server.scopes_supported().iter().cloned())
                    .verifier(server.verifier()?)
                    .mirror_authorization_server(false)
                    .build()?,
            ));
        }
        let Some(spec) = spec else {
            return Ok(None);
        };
        let resource = self.resource_url(listening)?;
        Ok(Some(
            OAuth::builder().resource(resource).provider(spec).build()?,
        ))
    }

    /// [`McpServer::url`], else `MCP_URL`, else on loopback `http://<listen address><path>`.
    fn resource_url(&self, listening: Option<SocketAddr>) -> Result<String, ServerError> {
        let path = self.endpoint_path(None);
        match (
            &self.url,
            crate::providers::process_env("MCP_URL"),
            listening,
        ) {
            (Some(url), _, _) => Ok(url.clone()),
            (None, Some(url), _) => Ok(url),
            (None, None, Some(addr)) if addr.ip().is_loopback() => {
                Ok(format!("http://{addr}{path}"))
            }
            _ => Err(ServerError::Config(ConfigError::missing(
                "MCP URL",
                "OAuth needs the public URL of the MCP endpoint: call McpServer::url or set MCP_URL (only a loopback listener can do without)",
            ))),
        }
    }

    /// The axum app: the MCP endpoint and, with OAuth, the discovery routes. Add your own
    /// routes to it; protect them with [`OAuth::layer`].
    ///
    /// # Errors
    ///
    /// A tool's arguments type has no object schema, two tools share a name, or a tool needs
    /// scopes on a server without OAuth.
    pub fn app(&self) -> Result<Router, ServerError> {
        self.router(self.resolve_oauth(None)?)
    }

    fn router(&self, oauth: Option<OAuth>) -> Result<Router, ServerError> {
        let mut policy = oauth.as_ref().map(|o| o.policy().clone());
        for (i, tool) in self.tools.iter().enumerate() {
            if let Err(reason) = &tool.schema {
                return Err(ServerError::Tool {
                    name: tool.name.clone(),
                    reason: format!("the arguments type needs an object schema: {reason}"),
                });
            }
            if self
                .tools
                .iter()
                .skip(i + 1)
                .any(|other| other.name == tool.name)
            {
                return Err(ServerError::Tool {
                    name: tool.name.clone(),
                    reason: "two tools have this name".into(),
                });
            }
            match (&mut policy, tool.scopes.is_empty()) {
                (_, true) => {}
                (Some(policy), false) => {
                    *policy =
                        std::mem::take(policy).tool(tool.name.clone(), tool.scopes.iter().cloned())
                }
                (None, false) => {
                    return Err(ServerError::Tool {
                        name: tool.name.clone(),
                        reason: "it requires scopes but the server has no OAuth configured".into(),
                    });
                }
            }
        }
        let oauth = oauth.as_ref().zip(policy).map(|(o, p)| o.with_policy(p));
        #[cfg(feature = "policy")]
        let access = self.check_policy()?;
        #[cfg(feature = "policy")]
        let oauth = match (oauth, &access) {
            (Some(oauth), Some(policy)) => {
                Some(oauth.with_access_policy(Some(policy.clone()), self.audit.clone()))
            }
            (None, Some(_)) => {
                return Err(ServerError::Config(ConfigError::invalid(
                    "policy",
                    "an access policy decides for a signed-in caller: configure OAuth (McpServer::oauth, provider or auth_server) too",
                )));
            }
            (oauth, None) => oauth,
        };
        #[cfg_attr(not(feature = "policy"), allow(unused_mut))]
        let mut handler = handler::Handler::new(self)?;
        // The list shows what the calls allow: the server's policy, else one the OAuth
        // configuration brought (`OAuthBuilder::access_policy`).
        #[cfg(feature = "policy")]
        if let Some(policy) =
            access.or_else(|| oauth.as_ref().and_then(|o| o.access_policy().cloned()))
        {
            handler = handler.with_policy(policy);
        }
        let oauth = match &self.metrics {
            Some(metrics) => {
                metrics.register_tools(self.tools.iter().map(|t| t.name.as_str()));
                oauth.map(|o| o.with_metrics(metrics.clone()))
            }
            None => oauth,
        };
        let config = transport_config(oauth.as_ref(), self.sessions, self.json_response);
        let service = StreamableHttpService::new(
            move || Ok(handler.clone()),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        let service = match &self.metrics {
            Some(metrics) => metrics.layer(),
            None => crate::metrics::OperationLayer::tracing_only(),
        }
        .max_body(
            oauth
                .as_ref()
                .map_or(crate::layer::DEFAULT_MAX_BODY_BYTES, OAuth::max_body_bytes),
        )
        .layer(service);
        let path = self.endpoint_path(oauth.as_ref());
        // One CORS policy per kind of route, applied once: `mcp_cors` on the MCP endpoint
        // only; the metadata routes and the authorization server's routes carry their own.
        let router = match &oauth {
            None => Router::new()
                .route_service(&path, service)
                .layer(mcp_cors()),
            Some(oauth) if self.sessions => {
                let protected = oauth
                    .layer()
                    .layer(SessionBindingLayer::default().layer(service));
                Router::new()
                    .route_service(&path, protected)
                    .layer(mcp_cors())
                    .merge(oauth.metadata_router())
            }
            Some(oauth) => Router::new()
                .route_service(&path, oauth.layer().layer(service))
                .layer(mcp_cors())
                .merge(oauth.metadata_router()),
        };
        #[cfg(feature = "auth-server")]
        let router = match &self.auth_server {
            Some(server) => router.merge(server.router()),
            None => router,
        };
        Ok(router)
    }

    /// Binds `addr`, serves until Ctrl-C (or SIGTERM), then shuts down gracefully.
    ///
    /// # Errors
    ///
    /// [`McpServer::app`] failed or the address cannot be bound.
    pub async fn listen(self, addr: impl ToSocketAddrs) -> Result<(), ServerError> {
        let listener = TcpListener::bind(addr).await?;
        self.serve(listener, shutdown_signal()).await
    }

    /// Serves on `listener` until `shutdown` completes.
    ///
    /// # Errors
    ///
    /// [`McpServer::app`] failed or serving failed.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let local = listener.local_addr()?;
        let oauth = self.resolve_oauth(Some(local))?;
        if let Some(oauth) = &oauth {
            oauth.check_listen_address(local)?;
        }
        let path = self.endpoint_path(oauth.as_ref());
        let app = self.router(oauth.clone())?;
        if let Some(oauth) = oauth {
            tokio::spawn(async move {
                let _ = oauth.check_authorization_server().await;
            });
        }
        tracing::info!(target: "mcp_oauth::server", %local, %path, "MCP server listening");
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await?;
        Ok(())
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
