//! The benchmark server: the demo tools of `mcp-oauth dev` (`whoami`, `echo`, `admin_action`)
//! on `McpServer`, with or without OAuth, on 127.0.0.1.
//!
//! ```text
//! bench-server --no-auth                                   # the ceiling: no OAuth at all
//! bench-server --issuer http://127.0.0.1:9000              # JWKS from the issuer's metadata
//! bench-server --issuer ISS --jwks-url URL [--no-token-cache] [--unknown-kid-cooldown SECS]
//!     [--policy FILE] [--port N]  (default 0: a free port)
//! ```
//!
//! `--policy FILE` turns the access policy on (a TOML policy file, e.g. `bench/server/policy.toml`):
//! every call is decided before the tool runs, as with `mcp-oauth dev --policy`.
//!
//! ```text
//! ```
//!
//! Prints one JSON line once listening: `{"mcp_url": "...", "pid": N}`. With OAuth,
//! `GET /bench/stats` answers `{"jwks_fetches": N}` (network fetches of the key set, failed
//! ones included), for the JWKS stampede.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::routing::get;
use mcp_oauth::OAuth;
use mcp_oauth::server::{McpServer, NoArgs, Tool, ToolContext};
use mcp_oauth::verify::{JwksOptions, JwtVerifier, RemoteJwks};

/// The demo server of `mcp-oauth dev`, the same source file: the benchmark measures exactly it.
#[path = "../../../crates/mcp-oauth-cli/src/demo.rs"]
mod demo;

/// A demo server without `admin_action`, whose scope rule needs OAuth.
fn demo_without_auth() -> McpServer {
    McpServer::new("mcp-oauth-demo", "0.1.0")
        .instructions("A demo server: echo echoes.")
        .tool(Tool::new(
            "whoami",
            "Returns nothing without OAuth",
            |_: NoArgs, _ctx: ToolContext| async move { "anonymous" },
        ))
        .tool(Tool::new(
            "echo",
            "Echoes the text back",
            |args: demo::Echo, _ctx: ToolContext| async move { args.text },
        ))
}

#[derive(Default)]
struct Args {
    port: u16,
    no_auth: bool,
    issuer: Option<String>,
    jwks_url: Option<String>,
    no_token_cache: bool,
    unknown_kid_cooldown: Option<u64>,
    policy: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} takes a value"));
        match arg.as_str() {
            "--port" => {
                args.port = value("--port")?
                    .parse()
                    .map_err(|e| format!("--port: {e}"))?;
            }
            "--no-auth" => args.no_auth = true,
            "--issuer" => args.issuer = Some(value("--issuer")?),
            "--jwks-url" => args.jwks_url = Some(value("--jwks-url")?),
            "--no-token-cache" => args.no_token_cache = true,
            "--policy" => args.policy = Some(value("--policy")?),
            "--unknown-kid-cooldown" => {
                args.unknown_kid_cooldown = Some(
                    value("--unknown-kid-cooldown")?
                        .parse()
                        .map_err(|e| format!("--unknown-kid-cooldown: {e}"))?,
                );
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !args.no_auth && args.issuer.is_none() {
        return Err("give --issuer URL (and optionally --jwks-url URL), or --no-auth".into());
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args().map_err(|e| format!("bench-server: {e}"))?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    let addr = listener.local_addr()?;
    let mcp_url = format!("http://{addr}/mcp");

    let mut jwks: Option<Arc<RemoteJwks>> = None;
    let app = if args.no_auth {
        demo_without_auth().app()?
    } else {
        let issuer = args.issuer.unwrap_or_default();
        let mut verifier = JwtVerifier::builder().issuer(issuer.clone());
        verifier = match args.jwks_url {
            Some(url) => verifier.jwks_url(url),
            None => verifier.discover_jwks(),
        };
        if let Some(secs) = args.unknown_kid_cooldown {
            verifier = verifier.jwks_options(
                JwksOptions::default().unknown_kid_cooldown(Duration::from_secs(secs)),
            );
        }
        let verifier = verifier.build()?;
        jwks = verifier.remote_jwks().cloned();
        let mut oauth = OAuth::builder()
            .resource(mcp_url.clone())
            .authorization_server(issuer)
            .scopes_supported(["mcp:read", "mcp:write"])
            .mirror_authorization_server(false)
            .verifier(verifier);
        if args.no_token_cache {
            oauth = oauth.token_cache(None);
        }
        let mut server = demo::server().oauth(oauth.build()?);
        if let Some(file) = &args.policy {
            server = server.policy(mcp_oauth::policy::PolicyConfig::from_file(
                std::path::Path::new(file),
            )?);
        }
        server.app()?
    };
    let app = app.route(
        "/bench/stats",
        get(move || {
            let fetches = jwks.as_ref().map_or(0, |j| j.fetch_count());
            async move { Json(serde_json::json!({ "jwks_fetches": fetches })) }
        }),
    );
    println!(
        "{}",
        serde_json::json!({ "mcp_url": mcp_url, "pid": std::process::id() })
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(mcp_oauth::server::shutdown_signal())
    .await?;
    Ok(())
}
