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
    /// Bind the token to a DPoP key (RFC 9449): its RFC 7638 SHA-256 thumbprint, which goes
    /// in `cnf.jkt`. The token is then accepted only as `Authorization: DPoP <token>` with a
    /// `DPoP` proof signed by that key, by a server run with `--dpop allowed` or `required`.
    /// (A thumbprint is base64url and may start with '-'.)
    #[arg(long, value_name = "THUMBPRINT", allow_hyphen_values = true)]
    dpop_jkt: Option<String>,
    /// Print {"access_token", "token_type", "claims"} as JSON instead of the bare token.
    #[arg(long)]
    json: bool,
}

/// A thumbprint as `--dpop-jkt` takes it: 43 base64url characters.
fn check_jkt(jkt: &str) -> Result<(), String> {
    let ok = jkt.len() == 43
        && jkt
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--dpop-jkt {jkt:?} is not a key thumbprint: give the RFC 7638 SHA-256 thumbprint of the client's public JWK, 43 base64url characters"
        ))
    }
}

pub(crate) async fn run(args: TokenArgs) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(jkt) = &args.dpop_jkt {
        check_jkt(jkt)?;
    }
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
    let grant = Grant {
        subject: &args.sub,
        client_id: &args.client_id,
        scope: &scope,
        resource: Some(&audience),
        user_claims: &claims,
        family: "mcp-oauth-token",
        ttl: Some(Duration::from_secs(args.ttl)),
    };
    let token = match &args.dpop_jkt {
        Some(jkt) => server.mint_bound_access_token(&grant, jkt),
        None => server.mint_access_token(&grant),
    };
    let token_type = if args.dpop_jkt.is_some() {
        "DPoP"
    } else {
        "Bearer"
    };
    if args.json {
        let decoded = mcp_oauth::jose::dangerous::decode_unverified(&token)?;
        println!(
            "{}",
            json!({ "access_token": token, "token_type": token_type, "claims": decoded.claims.as_map() })
        );
    } else {
        println!("{token}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        token: TokenArgs,
    }

    /// One thumbprint in 64 starts with '-' (base64url): it is still the option's value.
    #[test]
    fn a_thumbprint_may_start_with_a_hyphen() {
        let jkt = "-M2xQf0b7h1f6Yb7Sx3m1ZJ7m4a3b2c1d0e9f8g7h6i";
        let cli = Cli::try_parse_from(["token", "--dpop-jkt", jkt, "--json"]).expect("parse");
        assert_eq!(cli.token.dpop_jkt.as_deref(), Some(jkt));
        assert!(cli.token.json);
    }
}
