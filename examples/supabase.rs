//! An MCP server protected by Supabase Auth (its OAuth 2.1 server).
//!
//! Run with:
//!
//! ```sh
//! MCP_USE_OAUTH_SUPABASE_PROJECT_ID=abcdefghijklmnopqrst \
//! MCP_URL=http://127.0.0.1:8080/mcp \
//!     cargo run -p mcp-oauth --example supabase
//! ```
//!
//! - `MCP_USE_OAUTH_SUPABASE_PROJECT_ID`: the project reference, for a hosted project
//!   (`https://<id>.supabase.co`), or
//! - `MCP_USE_OAUTH_SUPABASE_URL`: the Supabase URL, self-hosted or local
//!   (`http://localhost:54321` after `supabase start`); it wins over the project id.
//! - `MCP_USE_OAUTH_SUPABASE_JWT_SECRET` (optional): the legacy JWT secret, for projects still
//!   signing with HS256. Projects on asymmetric keys (ES256, RS256) need none.
//! - `MCP_URL` (optional): the public URL of the MCP endpoint, default
//!   `http://127.0.0.1:8080/mcp`; the server listens on its host and port.
//!
//! Supabase puts `aud: "authenticated"` in its tokens, which is accepted as well as the MCP URL.
//!
//! Tools: `whoami` (the user from `user_metadata`, the role, the assurance level `aal`, the
//! session), and `sensitive_action`, which needs a multi-factor session (`aal2`, mapped to the
//! permission `aal:aal2`).

use mcp_oauth::providers::Supabase;
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

    let server = McpServer::new("mcp-oauth-supabase-example", env!("CARGO_PKG_VERSION"))
        .oauth(Supabase::from_env()?)
        .url(&mcp_url)
        .tool(Tool::new(
            "whoami",
            "The authenticated Supabase user",
            whoami,
        ))
        .tool(Tool::new(
            "sensitive_action",
            "Needs a multi-factor (aal2) session",
            |_: NoArgs, ctx: ToolContext| async move {
                let auth = ctx.require_scope(["aal:aal2"])?;
                Ok::<_, ToolError>(format!("done for {}", auth.subject()))
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
        "aal": extra.get("aal"),
        "session_id": extra.get("session_id"),
        "is_anonymous": extra.get("is_anonymous"),
        "client_id": auth.client_id,
        "issuer": auth.issuer,
    }))
}
