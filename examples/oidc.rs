//! An MCP server protected by any OIDC / OAuth 2.1 issuer.
//!
//! Run with:
//!
//! ```sh
//! OIDC_ISSUER=https://auth.example.com MCP_URL=http://127.0.0.1:8080/mcp \
//!     cargo run -p mcp-oauth --example oidc
//! ```
//!
//! - `OIDC_ISSUER`: the issuer URL; its keys are found through its discovery document.
//! - `MCP_URL` (optional): the public URL of the MCP endpoint, default
//!   `http://127.0.0.1:8080/mcp`; the server listens on its host and port, or on `MCP_LISTEN`
//!   (`HOST:PORT`, e.g. `0.0.0.0:8080` behind a reverse proxy). A `.env` file is read first.
//! - `OIDC_AUDIENCE` (optional): another accepted `aud` (an API identifier, a client id).
//! - `OIDC_SCOPES` (optional): the scopes advertised, space-separated. Default: the resource
//!   scopes of the issuer's metadata (never `openid`, `offline_access` or the other OpenID
//!   Connect identity scopes), or, when it lists none, the scopes the tools require
//!   (`admin`). If the metadata cannot be read or no scope results, the example stops and
//!   says to set `OIDC_SCOPES`: with no scope advertised, the TypeScript SDK clients and the
//!   MCP Inspector ask for none, and issuers such as oidc-provider refuse them.
//!
//! Tools: `whoami` (the user and scopes), `echo`, and `admin_action`, which needs the
//! scope `admin`: a token without it gets HTTP 403 with a step-up challenge.

mod common;

use mcp_oauth::OAuth;
use mcp_oauth::server::{McpServer, NoArgs, Tool, ToolContext, ToolError};
use mcp_oauth::verify::JwtVerifier;

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Echo {
    /// The text to send back.
    text: String,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::exit_code(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    common::init()?;

    let issuer = env("OIDC_ISSUER")
        .ok_or("set OIDC_ISSUER to the issuer URL of your authorization server")?;
    let mcp_url = common::mcp_url()?;

    let verifier = JwtVerifier::builder()
        .issuer(issuer.clone())
        .discover_jwks()
        .build()?;
    let mut oauth = OAuth::builder()
        .resource(mcp_url.clone())
        .authorization_server(issuer.clone())
        .verifier(verifier);
    if let Some(audience) = env("OIDC_AUDIENCE") {
        oauth = oauth.audience(audience);
    }

    let tools = [
        Tool::new(
            "whoami",
            "Returns the authenticated user and the granted scopes",
            whoami,
        ),
        Tool::new(
            "echo",
            "Echoes the text back",
            |args: Echo, _ctx: ToolContext| async move { args.text },
        ),
        Tool::new(
            "admin_action",
            "A privileged action: needs the admin scope",
            |_: NoArgs, ctx: ToolContext| async move {
                let auth = ctx.require_scope(["admin"])?;
                Ok::<_, ToolError>(format!("admin action done by {}", auth.subject()))
            },
        )
        .require_scopes(["admin"]),
    ];
    let tool_scopes: Vec<&str> = tools
        .iter()
        .flat_map(|t| t.scopes().iter().map(String::as_str))
        .collect();
    let scopes = common::advertised_scopes(&issuer, &tool_scopes).await?;
    let oauth = oauth.scopes_supported(scopes).build()?;

    let server = tools.into_iter().fold(
        McpServer::new("mcp-oauth-oidc-example", env!("CARGO_PKG_VERSION")).oauth(oauth),
        McpServer::tool,
    );
    common::serve(server, &mcp_url).await
}

async fn whoami(_: NoArgs, ctx: ToolContext) -> Result<serde_json::Value, ToolError> {
    let auth = ctx.require_auth()?;
    Ok(serde_json::json!({
        "user": auth.user,
        "scopes": auth.scopes,
        "permissions": auth.permissions,
        "client_id": auth.client_id,
        "issuer": auth.issuer,
        "expires_at": auth.expires_at,
    }))
}
