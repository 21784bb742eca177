//! What every example does around its provider: `.env`, log setup, reading `MCP_URL` and
//! `MCP_LISTEN`, turning an error into an exit code, and serving.
//!
//! Each example includes this file with `mod common;`. Cargo builds each example as its own
//! crate and does not build `examples/common/` as an example.
//!
//! - `.env` in the current directory is read first when there is one (as mcp-use users
//!   expect): each `NAME=value` line sets `NAME` unless the environment already has it. A
//!   malformed line stops the example with its line number and variable, never its value.
//! - `MCP_URL`: the public URL of the MCP endpoint, the one clients use.
//! - `MCP_LISTEN` (optional): the address to listen on, as `HOST:PORT`, when it is not the
//!   host and port of `MCP_URL`: behind a reverse proxy, `MCP_LISTEN=0.0.0.0:8080` with
//!   `MCP_URL=https://mcp.example.com/mcp`. An address other than loopback needs `MCP_URL`.

// Each example is its own crate and uses only some of these helpers: the rest would warn.
#![allow(dead_code)]

use std::error::Error;
use std::path::Path;
use std::process::ExitCode;

use mcp_oauth::fetch::HttpClient;
use mcp_oauth::metadata::discover;
use mcp_oauth::scope::default_advertisement;
use mcp_oauth::server::McpServer;

// `.env` is read exactly as the `mcp-oauth` command reads it.
#[path = "../../crates/mcp-oauth-cli/src/dotenv.rs"]
mod dotenv;
// So is a listen address judged.
#[path = "../../crates/mcp-oauth-cli/src/listen.rs"]
mod listen;
use listen::is_loopback;

/// The public URL of the MCP endpoint when `MCP_URL` is unset or blank.
pub(crate) const DEFAULT_MCP_URL: &str = "http://127.0.0.1:8080/mcp";

/// Reads `.env`, then sets up logging.
///
/// # Errors
///
/// `.env` exists but cannot be read, or a line of it is not `NAME=value`.
pub(crate) fn init() -> Result<(), Box<dyn Error>> {
    let read = dotenv::load(Path::new(".env"))?.is_some();
    init_tracing();
    if read {
        tracing::debug!("read environment variables from .env");
    }
    Ok(())
}

/// Logs to stderr, at the level `RUST_LOG` asks for, `info` by default.
pub(crate) fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The public URL of the MCP endpoint: `MCP_URL` (blank counts as unset), default
/// [`DEFAULT_MCP_URL`].
///
/// # Errors
///
/// It is not a URL, or `MCP_LISTEN` is not loopback while `MCP_URL` is unset (no public URL).
pub(crate) fn mcp_url() -> Result<String, Box<dyn Error>> {
    let public = env("MCP_URL");
    let mcp_url = public.clone().unwrap_or_else(|| DEFAULT_MCP_URL.to_owned());
    check_public_url(public.is_some(), "MCP_URL", &mcp_url)?;
    Ok(mcp_url)
}

/// Refuses a listen address other than loopback when the public URL was not given (`name`
/// is the variable that gives it).
///
/// # Errors
///
/// `mcp_url` is not a URL, or the listen address is public and no public URL was given.
pub(crate) fn check_public_url(
    given: bool,
    name: &str,
    mcp_url: &str,
) -> Result<(), Box<dyn Error>> {
    let listen = listen_addr(mcp_url)?;
    if !given && !is_loopback(&listen) {
        return Err(format!(
            "no public URL: {listen} is not a loopback address, so clients reach this server through another URL; set {name} to it (the https URL of your reverse proxy)"
        )
        .into());
    }
    Ok(())
}

/// The `host:port` to listen on for the public URL `url`: `MCP_LISTEN` when set, else the
/// host and port of `url` (the scheme's port when it has none).
///
/// # Errors
///
/// `url` is not a URL.
pub(crate) fn listen_addr(url: &str) -> Result<String, url::ParseError> {
    if let Some(listen) = env("MCP_LISTEN") {
        return Ok(listen.trim().to_owned());
    }
    let url = url::Url::parse(url)?;
    Ok(format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port_or_known_default().unwrap_or(8080)
    ))
}

/// The scopes to advertise: `OIDC_SCOPES` when set; else the resource scopes the issuer's
/// metadata lists (never `openid`, `offline_access` or the other OpenID Connect identity
/// scopes), or, when it lists none, `tool_scopes`. Tool scopes missing from a list the issuer
/// publishes are left out with a warning: issuers such as oidc-provider refuse a client
/// registration that names a scope they do not support.
///
/// # Errors
///
/// The issuer's metadata cannot be read, or no scope results: an empty advertisement makes
/// the TypeScript SDK clients and the MCP Inspector ask for no scope, which issuers such as
/// oidc-provider refuse. Both errors say to set `OIDC_SCOPES`.
pub(crate) async fn advertised_scopes(
    issuer: &str,
    tool_scopes: &[&str],
) -> Result<Vec<String>, Box<dyn Error>> {
    const SET: &str = "set OIDC_SCOPES to the scopes clients should ask for, e.g. OIDC_SCOPES=\"mcp:read mcp:write\"";
    if let Some(scopes) = env("OIDC_SCOPES") {
        return Ok(scopes.split_whitespace().map(str::to_owned).collect());
    }
    let url = url::Url::parse(issuer)?;
    let metadata = discover(&HttpClient::new()?, &url)
        .await
        .map_err(|e| {
            format!(
                "cannot read the issuer's metadata to choose the scopes to advertise ({e}): {SET}"
            )
        })?
        .metadata;
    let (scopes, left_out) =
        default_advertisement(metadata.scopes_supported.as_deref(), tool_scopes);
    for scope in &left_out {
        tracing::warn!(
            scope,
            "a tool requires this scope, which the issuer's scopes_supported does not list: it is not advertised; set OIDC_SCOPES if the issuer grants it"
        );
    }
    if scopes.is_empty() {
        return Err(format!(
            "the issuer's metadata offers no resource scope and the tools require none, so clients would ask for no scope: {SET}"
        )
        .into());
    }
    tracing::info!(scopes = %scopes.join(" "), "advertised scopes (set OIDC_SCOPES to choose)");
    Ok(scopes)
}

/// Listens on `MCP_LISTEN`, else the host and port of `mcp_url`; prints
/// `MCP endpoint: <mcp_url>` and `listening on: <address>` (the port the system chose for
/// `:0`) on stdout, which the tests wait for; then serves `server` until Ctrl-C or SIGTERM.
///
/// # Errors
///
/// `mcp_url` is not a URL, or listening or serving failed.
pub(crate) async fn serve(server: McpServer, mcp_url: &str) -> Result<(), Box<dyn Error>> {
    let addr = listen_addr(mcp_url)?;
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    println!("MCP endpoint: {mcp_url}");
    println!("listening on: {}", listener.local_addr()?);
    server
        .serve(listener, mcp_oauth::server::shutdown_signal())
        .await?;
    Ok(())
}

/// The exit code for what `run` returned: on an error, prints `error: <err>` on stderr and
/// fails.
pub(crate) fn exit_code(result: Result<(), Box<dyn Error>>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
