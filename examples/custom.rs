//! An MCP server protected by an authorization server described in code: its issuer and
//! endpoints, how its tokens are verified, and how their claims map to a user.
//!
//! Run with:
//!
//! ```sh
//! CUSTOM_ISSUER=https://auth.example.com \
//! CUSTOM_AUTHORIZATION_ENDPOINT=https://auth.example.com/authorize \
//! CUSTOM_TOKEN_ENDPOINT=https://auth.example.com/token \
//! CUSTOM_JWKS_URL=https://auth.example.com/keys \
//! MCP_URL=http://127.0.0.1:8080/mcp \
//!     cargo run -p mcp-oauth --example custom
//! ```
//!
//! - `CUSTOM_ISSUER`, `CUSTOM_AUTHORIZATION_ENDPOINT`, `CUSTOM_TOKEN_ENDPOINT`: the
//!   authorization server.
//! - `CUSTOM_JWKS_URL`: where its signing keys are.
//! - `CUSTOM_TENANT` (optional): when set, tokens must also carry `tenant` with this value; a
//!   verify function does that on top of the JWKS check. When unset, the JWKS URL alone
//!   verifies tokens.
//! - `MCP_URL` (optional): the public URL of the MCP endpoint, default
//!   `http://127.0.0.1:8080/mcp`; the server listens on its host and port, or on `MCP_LISTEN`
//!   (`HOST:PORT`, e.g. `0.0.0.0:8080` behind a reverse proxy). A `.env` file is read first.
//!
//! Either way the shared rules apply after verification: `aud` must name `MCP_URL`, and `exp`,
//! `nbf` and `iat` are checked.
//!
//! Tools: `whoami` (the user, with the `tenant` claim as an extra).

mod common;

use std::sync::Arc;

use mcp_oauth::providers::Custom;
use mcp_oauth::server::{McpServer, NoArgs, Tool, ToolContext, ToolError};
use mcp_oauth::verify::{JwtVerifier, TokenVerifier};
use mcp_oauth::{AccessToken, Claims, DefaultClaimMapper, UserInfo, VerifyError};

fn env(name: &str) -> Result<String, String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| format!("set {name}"))
}

/// The generic mapping, plus the `tenant` claim.
fn map_user(claims: &Claims) -> UserInfo {
    use mcp_oauth::ClaimMapper as _;
    let mut user = DefaultClaimMapper.map_user(claims);
    if let Some(tenant) = claims.get("tenant") {
        user.extra.insert("tenant".into(), tenant.clone());
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
    let issuer = env("CUSTOM_ISSUER")?;
    let jwks_url = env("CUSTOM_JWKS_URL")?;

    let provider = Custom::new(
        issuer.clone(),
        env("CUSTOM_AUTHORIZATION_ENDPOINT")?,
        env("CUSTOM_TOKEN_ENDPOINT")?,
    )
    .claim_mapper(map_user);
    let provider = match env("CUSTOM_TENANT") {
        // Your own rule on top of the signature check: a verify function.
        Ok(tenant) => {
            let jwt = Arc::new(
                JwtVerifier::builder()
                    .issuer(issuer)
                    .jwks_url(jwks_url)
                    .build()?,
            );
            provider.verify_fn(move |token: AccessToken| {
                let (jwt, tenant) = (jwt.clone(), tenant.clone());
                async move {
                    let claims = jwt.verify(token.secret()).await?;
                    if claims.str("tenant") != Some(tenant.as_str()) {
                        return Err(VerifyError::Refused("token of another tenant".into()));
                    }
                    Ok(claims)
                }
            })
        }
        // The signature check alone: the JWKS URL.
        Err(_) => provider.jwks_url(jwks_url),
    };

    let server = McpServer::new("mcp-oauth-custom-example", env!("CARGO_PKG_VERSION"))
        .provider(provider)?
        .url(&mcp_url)
        .tool(Tool::new("whoami", "The authenticated user", whoami));
    common::serve(server, &mcp_url).await
}

async fn whoami(_: NoArgs, ctx: ToolContext) -> Result<serde_json::Value, ToolError> {
    let auth = ctx.require_auth()?;
    Ok(serde_json::json!({
        "user": auth.user,
        "tenant": auth.user.extra.get("tenant"),
        "scopes": auth.scopes,
        "permissions": auth.permissions,
        "client_id": auth.client_id,
        "issuer": auth.issuer,
    }))
}
