//! An MCP server protected by Clerk.
//!
//! Run with:
//!
//! ```sh
//! MCP_USE_OAUTH_CLERK_FRONTEND_API_URL=https://verb-noun-42.clerk.accounts.dev \
//! MCP_URL=http://127.0.0.1:8080/mcp \
//!     cargo run -p mcp-oauth --example clerk
//! ```
//!
//! - `MCP_USE_OAUTH_CLERK_FRONTEND_API_URL`: the Frontend API URL
//!   (`https://verb-noun-42.clerk.accounts.dev` in development, `https://clerk.example.com` in
//!   production); it is the issuer.
//! - `MCP_URL` (optional): the public URL of the MCP endpoint, default
//!   `http://127.0.0.1:8080/mcp`; the server listens on its host and port, or on `MCP_LISTEN`
//!   (`HOST:PORT`, e.g. `0.0.0.0:8080` behind a reverse proxy). A `.env` file is read first.
//!
//! Only OAuth access tokens (`typ: at+jwt`) are accepted: Clerk session tokens are signed by
//! the same key and are refused. The OAuth application must issue JWT (not opaque `oat_`)
//! access tokens whose `aud` names `MCP_URL`.
//!
//! Tools: `whoami` (the user and the organization: `org_id`, `org_role`, `org_slug`,
//! `org_permissions`), and `org_admin_action`, which needs the organization role `org:admin`.

mod common;

use mcp_oauth::providers::Clerk;
use mcp_oauth::server::{McpServer, NoArgs, Tool, ToolContext, ToolError};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::exit_code(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    common::init()?;
    let mcp_url = common::mcp_url()?;

    let server = McpServer::new("mcp-oauth-clerk-example", env!("CARGO_PKG_VERSION"))
        .provider(Clerk::from_env()?)?
        .url(&mcp_url)
        .tool(Tool::new("whoami", "The authenticated Clerk user", whoami))
        .tool(Tool::new(
            "org_admin_action",
            "Needs the organization role org:admin",
            |_: NoArgs, ctx: ToolContext| async move {
                let auth = ctx.require_auth()?;
                if !auth.user.roles.iter().any(|role| role == "org:admin") {
                    return Err(ToolError::new(
                        "this tool needs the organization role org:admin",
                    ));
                }
                Ok(format!("organization updated by {}", auth.subject()))
            },
        ));
    common::serve(server, &mcp_url).await
}

async fn whoami(_: NoArgs, ctx: ToolContext) -> Result<serde_json::Value, ToolError> {
    let auth = ctx.require_auth()?;
    let extra = &auth.user.extra;
    Ok(serde_json::json!({
        "user": auth.user,
        "scopes": auth.scopes,
        "permissions": auth.permissions,
        "organization": {
            "id": extra.get("org_id"),
            "role": extra.get("org_role"),
            "slug": extra.get("org_slug"),
        },
        "client_id": auth.client_id,
        "issuer": auth.issuer,
    }))
}
