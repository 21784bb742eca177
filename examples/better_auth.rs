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
//!   `http://127.0.0.1:8080/mcp`; the server listens on its host and port, or on `MCP_LISTEN`
//!   (`HOST:PORT`, e.g. `0.0.0.0:8080` behind a reverse proxy). A `.env` file is read first.
//!
//! Better Auth issues a JWT access token (EdDSA, `typ: at+jwt`) only when the client sends a
//! `resource`: list `MCP_URL` in the plugin's `validAudiences`. Without it the token is opaque.
//!
//! The claim mapping is replaced here (mcp-use's `getUserInfo`): the profile and a `role` come
//! from claims added with the plugin's `customAccessTokenClaims`.
//!
//! Tools: `whoami`.

mod common;

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
    common::exit_code(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    common::init()?;
    let mcp_url = common::mcp_url()?;

    let server = McpServer::new("mcp-oauth-better-auth-example", env!("CARGO_PKG_VERSION"))
        .provider(BetterAuth::from_env()?.claim_mapper(map_user))?
        .url(&mcp_url)
        .tool(Tool::new(
            "whoami",
            "The authenticated Better Auth user",
            whoami,
        ));
    common::serve(server, &mcp_url).await
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
