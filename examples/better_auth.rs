//! An MCP server protected by Better Auth (`@better-auth/oauth-provider`).
//!
//! Run with:
//!
//! ```sh
//! MCP_USE_OAUTH_BETTER_AUTH_URL=http://localhost:3000/api/auth \
//! MCP_URL=http://127.0.0.1:8080/mcp \
//!     cargo run -p mcp-oauth --example better_auth
//! ```
//!
//! - `MCP_USE_OAUTH_BETTER_AUTH_URL`: Better Auth's URL including its base path
//!   (`https://app.example.com/api/auth`); it is the issuer, keys at `<URL>/jwks`.
//! - `MCP_URL` (optional): the public URL of the MCP endpoint, default
//!   `http://127.0.0.1:8080/mcp`; the server listens on its host and port.
//!
//! Better Auth issues a JWT access token (EdDSA, `typ: at+jwt`) only when the client sends a
//! `resource`: list `MCP_URL` in the plugin's `validAudiences`. Without it the token is opaque.
//!
//! The claim mapping is replaced here (mcp-use's `getUserInfo`): the profile and a `role` come
//! from claims added with the plugin's `customAccessTokenClaims`.
//!
//! Tools: `whoami`.

use mcp_oauth::providers::BetterAuth;
use mcp_oauth::server::{McpServer, NoArgs, Tool, ToolContext, ToolError};
use mcp_oauth::{Claims, UserInfo};

/// The user from the token: `sub`, and the claims `customAccessTokenClaims` adds.
fn map_user(claims: &Claims) -> UserInfo {
    let text = |name: &str| claims.str(name).map(str::to_owned);
    let mut user = UserInfo::new(claims.sub().unwrap_or_default());
    user.email = text("email");
    user.name = text("name");
    user.picture = text("picture");
    user.roles = claims.string_list("role");
    for name in ["azp", "sid"] {
        if let Some(value) = claims.get(name) {
            user.extra.insert(name.to_owned(), value.clone());
        }
    }
    user
}

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

    let server = McpServer::new("mcp-oauth-better-auth-example", env!("CARGO_PKG_VERSION"))
        .oauth(BetterAuth::from_env()?.user_mapper(map_user))
        .url(&mcp_url)
        .tool(Tool::new(
            "whoami",
            "The authenticated Better Auth user",
            whoami,
        ));
    println!("MCP endpoint: {mcp_url}");
    server.listen(addr).await?;
    Ok(())
}

async fn whoami(_: NoArgs, ctx: ToolContext) -> Result<serde_json::Value, ToolError> {
    let auth = ctx.require_auth()?;
    Ok(serde_json::json!({
        "user": auth.user,
        "scopes": auth.scopes,
        "permissions": auth.permissions,
        "client_id": auth.client_id,
        "issuer": auth.issuer,
    }))
}
