//! An MCP server protected by Keycloak.
//!
//! Run with:
//!
//! ```sh
//! MCP_USE_OAUTH_KEYCLOAK_SERVER_URL=https://auth.example.com \
//! MCP_USE_OAUTH_KEYCLOAK_REALM=demo \
//! MCP_URL=http://127.0.0.1:8080/mcp \
//!     cargo run -p mcp-oauth --example keycloak
//! ```
//!
//! - `MCP_USE_OAUTH_KEYCLOAK_SERVER_URL`: the server URL (`https://auth.example.com`, or
//!   `http://localhost:8080` for a local Keycloak).
//! - `MCP_USE_OAUTH_KEYCLOAK_REALM`: the realm; the issuer is `<server>/realms/<realm>`.
//! - `MCP_USE_OAUTH_KEYCLOAK_AUDIENCE` (optional): another accepted `aud`, such as a client id.
//! - `MCP_URL` (optional): the public URL of the MCP endpoint, default
//!   `http://127.0.0.1:8080/mcp`; the server listens on its host and port, or on `MCP_LISTEN`
//!   (`HOST:PORT`, e.g. `0.0.0.0:8080` behind a reverse proxy). A `.env` file is read first.
//!
//! Keycloak puts an `aud` in access tokens only through a mapper: add an Audience mapper
//! (to a client scope the MCP clients get) whose included audience is `MCP_URL`, or set
//! `MCP_USE_OAUTH_KEYCLOAK_AUDIENCE` to the audience it includes.
//!
//! Tools: `whoami` (realm roles as roles, client roles as `<client>:<role>` permissions), and
//! `admin_action`, which needs the realm role `admin`.

mod common;

use mcp_oauth::providers::Keycloak;
use mcp_oauth::server::{McpServer, NoArgs, Tool, ToolContext, ToolError};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::exit_code(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    common::init()?;
    let mcp_url = common::mcp_url()?;

    let server = McpServer::new("mcp-oauth-keycloak-example", env!("CARGO_PKG_VERSION"))
        .provider(Keycloak::from_env()?)?
        .url(&mcp_url)
        .tool(Tool::new(
            "whoami",
            "The authenticated Keycloak user",
            whoami,
        ))
        .tool(Tool::new(
            "admin_action",
            "Needs the realm role admin",
            |_: NoArgs, ctx: ToolContext| async move {
                let auth = ctx.require_auth()?;
                if !auth.user.roles.iter().any(|role| role == "admin") {
                    return Err(ToolError::new("this tool needs the realm role admin"));
                }
                Ok(format!("admin action done by {}", auth.subject()))
            },
        ));
    common::serve(server, &mcp_url).await
}

async fn whoami(_: NoArgs, ctx: ToolContext) -> Result<serde_json::Value, ToolError> {
    let auth = ctx.require_auth()?;
    Ok(serde_json::json!({
        "user": auth.user,
        "realm_roles": auth.user.roles,
        "client_roles": auth.permissions,
        "scopes": auth.scopes,
        "client_id": auth.client_id,
        "issuer": auth.issuer,
    }))
}
