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
//!   `http://127.0.0.1:8080/mcp`; the server listens on its host and port, or on `MCP_LISTEN`
//!   (`HOST:PORT`, e.g. `0.0.0.0:8080` behind a reverse proxy). A `.env` file is read first.
//!
//! Supabase puts `aud: "authenticated"` in its tokens, which is accepted as well as the MCP URL.
//!
//! Tools: `whoami` (the user from `user_metadata`, the role, the assurance level `aal`, the
//! session), and `sensitive_action`, which needs a multi-factor session (`aal2`, mapped to the
//! permission `aal:aal2`).

mod common;

use mcp_oauth::providers::Supabase;
use mcp_oauth::server::{McpServer, NoArgs, Tool, ToolContext, ToolError};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::exit_code(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    common::init()?;
    let mcp_url = common::mcp_url()?;

    let server = McpServer::new("mcp-oauth-supabase-example", env!("CARGO_PKG_VERSION"))
        .provider(Supabase::from_env()?)?
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
    common::serve(server, &mcp_url).await
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
