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
//!   `http://127.0.0.1:8080/mcp`; the server listens on its host and port.
//!
//! Only OAuth access tokens (`typ: at+jwt`) are accepted: Clerk session tokens are signed by
//! the same key and are refused. The OAuth application must issue JWT (not opaque `oat_`)
//! access tokens whose `aud` names `MCP_URL`.
//!
//! Tools: `whoami` (the user and the organization: `org_id`, `org_role`, `org_slug`,
//! `org_permissions`), and `org_admin_action`, which needs the organization role `org:admin`.

use mcp_oauth::providers::Clerk;
use mcp_oauth::server::{McpServer, NoArgs, Tool, ToolContext, ToolError};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mcp_url = std::env::var("MCP_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "http://127.0.0.1:8080/mcp".to_owned());
    let url = url::Url::parse(&mcp_url)?;
    let addr = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port_or_known_default().unwrap_or(8080)
    );

    let server = McpServer::new("mcp-oauth-clerk-example", env!("CARGO_PKG_VERSION"))
        .oauth(Clerk::from_env()?)
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
    println!("MCP endpoint: {mcp_url}");
    server.listen(addr).await?;
    Ok(())
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
