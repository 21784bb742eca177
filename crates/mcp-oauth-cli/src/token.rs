//! `mcp-oauth token`: mint an access token with the dev server's signing key.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use mcp_oauth::auth_server::{AuthServer, Grant, KeyRing};
use serde_json::json;

use crate::data_dir::{self, DevState};

/// Options of `mcp-oauth token`.
#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    /// Subject (`sub`).
    #[arg(long, default_value = "dev")]
    sub: String,
    /// Scopes, space-separated.
    #[arg(long, default_value = "mcp:read mcp:write")]
    scope: String,
    /// Audience (`aud`) [default: the MCP URL of the last `mcp-oauth dev`].
    #[arg(long)]
    aud: Option<String>,
    /// Issuer (`iss`) [default: the issuer of the last `mcp-oauth dev`].
    #[arg(long)]
    iss: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    /// `client_id` claim.
    #[arg(long, default_value = "mcp-oauth-cli")]
    client_id: String,
    /// The data folder of `mcp-oauth dev` (same default).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print {"access_token", "claims"} as JSON instead of the bare token.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: TokenArgs) -> Result<(), Box<dyn std::error::Error>> {
    let dir = data_dir::resolve(args.data_dir);
    let state = match (&args.iss, &args.aud) {
        (Some(iss), Some(aud)) => DevState {
            issuer: iss.clone(),
            mcp_url: aud.clone(),
            alg: String::new(),
        },
        _ => DevState::load(&dir)?,
    };
    if !dir.join("keys").join("keys.json").exists() {
        return Err(format!(
            "no signing keys in {}: run `mcp-oauth dev` first (or pass --data-dir)",
            dir.display()
        )
        .into());
    }
    let alg = state
        .alg
        .parse()
        .unwrap_or(mcp_oauth::jose::Algorithm::ES256);
    let keys = std::sync::Arc::new(KeyRing::open(&dir, alg)?);
    let issuer = args.iss.unwrap_or(state.issuer);
    let audience = args.aud.unwrap_or(state.mcp_url);
    let server = AuthServer::builder(issuer)
        .keys(keys)
        .client_metadata_documents(None)
        .build()
        .await?;
    let scope: Vec<String> = args.scope.split_whitespace().map(str::to_owned).collect();
    let claims = serde_json::Map::new();
    let token = server.mint_access_token(&Grant {
        subject: &args.sub,
        client_id: &args.client_id,
        scope: &scope,
        resource: Some(&audience),
        user_claims: &claims,
        family: "mcp-oauth-token",
        ttl: Some(Duration::from_secs(args.ttl)),
    });
    if args.json {
        let decoded = mcp_oauth::jose::dangerous::decode_unverified(&token)?;
        println!(
            "{}",
            json!({ "access_token": token, "claims": decoded.claims.as_map() })
        );
    } else {
        println!("{token}");
    }
    Ok(())
}
