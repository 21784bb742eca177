//! The demo MCP server's tools: `whoami`, `echo`, and `admin_action` (scope `admin`, a 403
//! step-up over HTTP). bench/server includes this file too (`#[path]`), so that the benchmark
//! measures exactly this server: it must need nothing but `mcp_oauth`, serde and schemars.

use mcp_oauth::server::{McpServer, NoArgs, Tool, ToolContext, ToolError};

#[derive(serde::Deserialize, schemars::JsonSchema)]
pub(crate) struct Echo {
    /// The text to send back.
    pub(crate) text: String,
}

/// The demo server with its three tools.
pub(crate) fn server() -> McpServer {
    McpServer::new("mcp-oauth-demo", env!("CARGO_PKG_VERSION"))
        .instructions("A demo server: whoami shows who you are, echo echoes, admin_action needs the admin scope.")
        .tool(Tool::new("whoami", "Returns the authenticated user and the granted scopes", whoami))
        .tool(Tool::new("echo", "Echoes the text back", |args: Echo, _ctx: ToolContext| async move { args.text }))
        .tool(
            Tool::new("admin_action", "A privileged action: needs the admin scope", |_: NoArgs, ctx: ToolContext| async move {
                let auth = ctx.require_scope(["admin"])?;
                Ok::<_, ToolError>(format!("admin action done by {}", auth.subject()))
            })
            .require_scopes(["admin"]),
        )
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
