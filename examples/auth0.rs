//! An MCP server protected by Auth0.
//!
//! Run with:
//!
//! ```sh
//! MCP_USE_OAUTH_AUTH0_DOMAIN=your-tenant.us.auth0.com \
//! MCP_USE_OAUTH_AUTH0_AUDIENCE=https://api.example.com \
//! MCP_URL=http://127.0.0.1:8080/mcp \
//!     cargo run -p mcp-oauth --example auth0
//! ```
//!
//! - `MCP_USE_OAUTH_AUTH0_DOMAIN`: the tenant domain (`your-tenant.us.auth0.com`, a custom
//!   domain, or a full `https://` URL). The issuer is `https://<domain>/`, with its slash.
//! - `MCP_USE_OAUTH_AUTH0_AUDIENCE`: the identifier of the Auth0 API that represents this
//!   server. Auth0 issues JWT access tokens only for an API.
//! - `MCP_URL` (optional): the public URL of the MCP endpoint, default
//!   `http://127.0.0.1:8080/mcp`; the server listens on its host and port, or on `MCP_LISTEN`
//!   (`HOST:PORT`, e.g. `0.0.0.0:8080` behind a reverse proxy). A `.env` file is read first.
//!   Tokens are accepted when their `aud` names this URL or the API identifier.
//!
//! Tools: `whoami` (the mapped user: roles from `roles` or a namespaced `…/roles` claim, RBAC
//! `permissions`, `org_id`), and `read_messages`, which needs `read:messages` as a scope or,
//! with RBAC's "Add Permissions in the Access Token", as a permission.

mod common;

use mcp_oauth::providers::Auth0;
use mcp_oauth::server::{McpServer, NoArgs, Tool, ToolContext, ToolError};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::exit_code(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    common::init()?;
    let mcp_url = common::mcp_url()?;

    let server = McpServer::new("mcp-oauth-auth0-example", env!("CARGO_PKG_VERSION"))
        .provider(Auth0::from_env()?)?
        .url(&mcp_url)
        .tool(Tool::new("whoami", "The authenticated Auth0 user", whoami))
        .tool(
            Tool::new(
                "read_messages",
                "Reads messages: needs read:messages",
                |_: NoArgs, ctx: ToolContext| async move {
                    let auth = ctx.require_auth()?;
                    Ok::<_, ToolError>(format!("no new messages for {}", auth.subject()))
                },
            )
            .require_scopes(["read:messages"]),
        );
    common::serve(server, &mcp_url).await
}

async fn whoami(_: NoArgs, ctx: ToolContext) -> Result<serde_json::Value, ToolError> {
    let auth = ctx.require_auth()?;
    Ok(serde_json::json!({
        "user": auth.user,
        "roles": auth.user.roles,
        "scopes": auth.scopes,
        "permissions": auth.permissions,
        "organization": auth.user.extra.get("org_id"),
        "client_id": auth.client_id,
        "issuer": auth.issuer,
    }))
}
