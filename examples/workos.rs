//! An MCP server protected by WorkOS AuthKit.
//!
//! Run with:
//!
//! ```sh
//! MCP_USE_OAUTH_WORKOS_SUBDOMAIN=your-company.authkit.app \
//! MCP_URL=http://127.0.0.1:8080/mcp \
//!     cargo run -p mcp-oauth --example workos
//! ```
//!
//! - `MCP_USE_OAUTH_WORKOS_SUBDOMAIN`: the full AuthKit host (`your-company.authkit.app`, or
//!   a custom domain); the issuer is `https://<host>`, keys at `/oauth2/jwks`.
//! - `MCP_URL` (optional): the public URL of the MCP endpoint, default
//!   `http://127.0.0.1:8080/mcp`; the server listens on its host and port, or on `MCP_LISTEN`
//!   (`HOST:PORT`, e.g. `0.0.0.0:8080` behind a reverse proxy). A `.env` file is read first.
//!   AuthKit puts the `resource` the client asked for in `aud`, and that must be this URL.
//!
//! In the WorkOS dashboard, enable Dynamic Client Registration (or Client ID Metadata
//! Documents) for MCP clients to register.
//!
//! Tools: `whoami` (the user, the organization from `org_id`, the consent id `sid`).

mod common;

use mcp_oauth::providers::WorkOs;
use mcp_oauth::server::{McpServer, NoArgs, Tool, ToolContext, ToolError};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::exit_code(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    common::init()?;
    let mcp_url = common::mcp_url()?;

    let server = McpServer::new("mcp-oauth-workos-example", env!("CARGO_PKG_VERSION"))
        .provider(WorkOs::from_env()?)?
        .url(&mcp_url)
        .tool(Tool::new("whoami", "The authenticated WorkOS user", whoami));
    common::serve(server, &mcp_url).await
}

async fn whoami(_: NoArgs, ctx: ToolContext) -> Result<serde_json::Value, ToolError> {
    let auth = ctx.require_auth()?;
    Ok(serde_json::json!({
        "user": auth.user,
        "scopes": auth.scopes,
        "permissions": auth.permissions,
        "organization_id": auth.user.extra.get("organization_id"),
        "client_id": auth.client_id,
        "issuer": auth.issuer,
    }))
}
