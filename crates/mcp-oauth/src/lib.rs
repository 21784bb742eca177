//! OAuth 2.1 for MCP servers, the Rust way: verify bearer tokens, answer with spec-exact
//! challenges, publish the discovery metadata, and hand the verified user to your tools.
//!
//! MCP servers that speak HTTP are OAuth 2.1 *resource servers*. This crate is that part:
//! RFC 9728 protected-resource metadata, RFC 6750 challenges (401 without an error code when
//! no token came, 401 `invalid_token`, 403 `insufficient_scope` with every scope the
//! operation needs), JWT verification against a hardened JWKS cache, static keys, HMAC
//! secrets, RFC 7662 introspection or your own function, audience binding (RFC 8707) on by
//! default, per-tool step-up, and an MCP server on rmcp's Streamable HTTP transport.
//!
//! # Example
//!
//! An MCP server whose tools need a token from an OIDC issuer:
//!
//! ```no_run
//! use mcp_oauth::{McpServer, NoArgs, OAuth, Tool, ToolContext};
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct Echo { text: String }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let oauth = OAuth::oidc("https://auth.example.com", "https://mcp.example.com/mcp")?;
//! McpServer::new("demo", "1.0.0")
//!     .oauth(oauth)
//!     .tool(Tool::new("whoami", "Who is calling", |_: NoArgs, ctx: ToolContext| async move {
//!         format!("you are {}", ctx.auth().map(|a| a.subject()).unwrap_or("nobody"))
//!     }))
//!     .tool(Tool::new("echo", "Echo the text", |args: Echo, _ctx: ToolContext| async move { args.text }))
//!     .listen("127.0.0.1:8080")
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Or put the layer and the metadata routes in front of any axum router:
//!
//! ```
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{Router, routing::post};
//! use mcp_oauth::{Auth, OAuth};
//!
//! let oauth = OAuth::oidc("https://auth.example.com", "https://mcp.example.com/mcp")?;
//! let app: Router = Router::new()
//!     .route("/mcp", post(|auth: Auth| async move { format!("hello {}", auth.subject()) }))
//!     .layer(oauth.layer())
//!     .merge(oauth.metadata_router());
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//!
//! | feature | default | what |
//! |---|---|---|
//! | `remote` | yes | remote JWKS, introspection, metadata mirror (reqwest with rustls) |
//! | `axum` | yes | metadata routes, CORS, the axum extractor for [`Auth`] |
//! | `rmcp` | yes | [`McpServer`] (module [`server`]) and the rmcp `Auth` extractor |
//! | `auth-server` | no | [`auth_server`]: an embedded OAuth 2.1 authorization server |
//! | `sqlite` | no | `auth_server::store::SqliteStore`: the server's state in a SQLite file |
//! | `redis` | no | `auth_server::store::RedisStore`: state shared by several instances behind a load balancer |
//! | `policy` | no | [`policy::Policy`]: who may sign in, which scopes, which tools and arguments (Cedar) |
//! | `test-util` | no | [`testing`]: keys and token builders for tests |

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audit;
mod auth;
#[cfg(feature = "auth-server")]
pub mod auth_server;
pub mod authenticator;
#[cfg(all(feature = "axum", feature = "remote"))]
pub mod browser_proxy;
pub mod challenge;
mod claims;
pub mod dpop;
pub mod error;
#[cfg(feature = "remote")]
pub mod exchange;
#[cfg(feature = "remote")]
pub mod fetch;
pub mod forwarded;
#[cfg(feature = "remote")]
pub mod gateway_identity;
pub mod jose;
pub mod jsonrpc;
pub mod layer;
pub mod metadata;
pub mod metrics;
#[cfg(feature = "remote")]
pub mod net_guard;
mod oauth;
pub mod policy;
pub mod protocol;
#[cfg(feature = "remote")]
pub mod providers;
#[cfg(feature = "remote")]
mod refresh;
pub mod resource;
#[cfg(feature = "rmcp")]
pub mod rmcp;
#[cfg(feature = "axum")]
pub mod routes;
pub mod scope;
mod secret;
#[cfg(feature = "rmcp")]
pub mod server;
pub mod session;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod verify;

#[cfg(feature = "axum")]
pub use auth::MissingAuth;
/// The README's examples, compiled as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// The examples of `docs/providers.md`, compiled as doctests.
#[cfg(all(doctest, feature = "rmcp"))]
#[doc = include_str!("../../../docs/providers.md")]
pub struct ProvidersDocDoctests;

/// The examples of `docs/token-exchange.md`, compiled as doctests.
#[cfg(all(doctest, feature = "rmcp"))]
#[doc = include_str!("../../../docs/token-exchange.md")]
pub struct TokenExchangeDocDoctests;

/// The examples of `docs/extensions.md`, compiled as doctests.
#[cfg(all(doctest, feature = "rmcp", feature = "postgres"))]
#[doc = include_str!("../../../docs/extensions.md")]
pub struct ExtensionsDocDoctests;

/// The examples of `docs/proxy.md`, compiled as doctests.
#[cfg(all(doctest, feature = "rmcp", feature = "auth-server"))]
#[doc = include_str!("../../../docs/proxy.md")]
pub struct ProxyDocDoctests;

/// The examples of `docs/metrics.md`, compiled as doctests.
#[cfg(all(doctest, feature = "rmcp"))]
#[doc = include_str!("../../../docs/metrics.md")]
pub struct MetricsDocDoctests;

/// The examples of `docs/browser-proxy.md`, compiled as doctests.
#[cfg(all(doctest, feature = "axum", feature = "remote"))]
#[doc = include_str!("../../../docs/browser-proxy.md")]
pub struct BrowserProxyDocDoctests;

pub use audit::AuditLog;
pub use auth::{
    AsyncClaimMapper, Auth, AuthInfo, ClaimMapper, DefaultClaimMapper, InsufficientScope,
    MapUserError, UserInfo,
};
pub use claims::Claims;
pub use error::{ConfigError, FetchError, VerifyError, VerifyErrorKind};
pub use oauth::{OAuth, OAuthBuilder};
pub use policy::ScopePolicy;
pub use resource::ResourceUrl;
pub use secret::{AccessToken, Secret};
#[cfg(feature = "rmcp")]
pub use server::{McpServer, NoArgs, Tool, ToolContext, ToolError};
pub use verify::JwtVerifier;
