//! An MCP server whose users sign in with Google, through the OAuth proxy: Google has no
//! dynamic client registration, so MCP clients register here, each user approves each client
//! on our consent page, signs in at Google, and the client gets this server's tokens. A tool
//! calls Google's API as the user with the upstream token, which never leaves the server.
//!
//! Run with:
//!
//! ```sh
//! GOOGLE_CLIENT_ID=123-abc.apps.googleusercontent.com \
//! GOOGLE_CLIENT_SECRET=GOCSPX-... \
//! MCP_OAUTH_ENCRYPTION_KEY="$(openssl rand -base64 32)" \
//!     cargo run -p mcp-oauth --example google_proxy --features auth-server
//! ```
//!
//! - `GOOGLE_CLIENT_ID`, `GOOGLE_CLIENT_SECRET`: a "Web application" OAuth client in the Google
//!   Cloud console, with `<PUBLIC_URL>/oauth/callback` as an authorized redirect URI.
//! - `MCP_OAUTH_ENCRYPTION_KEY`: 32 bytes, base64. It seals Google's tokens at rest and signs
//!   the consent cookie; keep it stable (tokens sealed with another key cannot be opened).
//! - `PUBLIC_URL` (optional): this server's public base URL, default
//!   `http://127.0.0.1:8080`. The MCP endpoint is `<PUBLIC_URL>/mcp`; the server listens on
//!   its host and port, or on `MCP_LISTEN` (`HOST:PORT`, e.g. `0.0.0.0:8080` behind a reverse
//!   proxy). A `.env` file is read first.
//!
//! Tools: `whoami`, and `google_profile`, which reads the caller's Google profile with the
//! upstream token.

mod common;

use std::sync::Arc;

use base64::Engine as _;
use mcp_oauth::auth_server::{AuthServer, MemoryStore, Upstream};
use mcp_oauth::server::{McpServer, NoArgs, Tool, ToolContext, ToolError};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::exit_code(run().await)
}

fn var(name: &str) -> Result<String, String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| format!("set {name} (see the top of examples/google_proxy.rs)"))
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    common::init()?;
    let given = std::env::var("PUBLIC_URL")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let public = given
        .clone()
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let public = public.trim_end_matches('/');
    let mcp_url = format!("{public}/mcp");
    // A PUBLIC_URL that is not a URL, or MCP_LISTEN on a public address without one, fails
    // here, first.
    common::check_public_url(given.is_some(), "PUBLIC_URL", &mcp_url)?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(var("MCP_OAUTH_ENCRYPTION_KEY")?.trim())
        .map_err(|e| format!("MCP_OAUTH_ENCRYPTION_KEY is not base64: {e}"))?;

    let google =
        Upstream::google(var("GOOGLE_CLIENT_ID")?, var("GOOGLE_CLIENT_SECRET")?).build()?;
    let auth = AuthServer::builder(public)
        .upstream(google)
        .encryption_key(key)
        // One instance; use SqliteStore (feature `sqlite`) to survive restarts, or RedisStore
        // (feature `redis`) to share state between instances.
        .store(Arc::new(MemoryStore::new()))
        .resource(mcp_url.clone())
        .build()
        .await?;
    println!(
        "redirect URI to register at Google: {}",
        auth.upstream_callback_url()
    );

    let server = McpServer::new("mcp-oauth-google-proxy-example", env!("CARGO_PKG_VERSION"))
        .auth_server(auth)
        .tool(Tool::new("whoami", "The signed-in Google user", whoami))
        .tool(Tool::new(
            "google_profile",
            "Reads your Google profile with your Google token (which stays on the server)",
            google_profile,
        ));
    common::serve(server, &mcp_url).await
}

async fn whoami(_: NoArgs, ctx: ToolContext) -> Result<serde_json::Value, ToolError> {
    let auth = ctx.require_auth()?;
    Ok(serde_json::json!({ "user": auth.user, "scopes": auth.scopes, "client_id": auth.client_id }))
}

async fn google_profile(_: NoArgs, ctx: ToolContext) -> Result<serde_json::Value, ToolError> {
    let token = ctx.upstream_token().await?;
    let response = reqwest::Client::new()
        .get("https://openidconnect.googleapis.com/v1/userinfo")
        .bearer_auth(String::from_utf8_lossy(token.expose()))
        .send()
        .await
        .map_err(|e| ToolError::new(format!("Google did not answer: {e}")))?;
    if !response.status().is_success() {
        return Err(ToolError::new(format!(
            "Google answered {}",
            response.status()
        )));
    }
    response
        .json()
        .await
        .map_err(|e| ToolError::new(format!("Google's answer is not JSON: {e}")))
}
