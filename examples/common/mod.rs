//! What every example does around its provider: log setup, reading `MCP_URL`, turning an
//! error into an exit code, and serving on the host and port of the public URL.
//!
//! Each example includes this file with `mod common;`. Cargo builds each example as its own
//! crate and does not build `examples/common/` as an example.

// Each example is its own crate and uses only some of these helpers: the rest would warn.
#![allow(dead_code)]

use std::error::Error;
use std::process::ExitCode;

use mcp_oauth::server::McpServer;

/// The public URL of the MCP endpoint when `MCP_URL` is unset or blank.
pub(crate) const DEFAULT_MCP_URL: &str = "http://127.0.0.1:8080/mcp";

/// Logs to stderr, at the level `RUST_LOG` asks for, `info` by default.
pub(crate) fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

/// The public URL of the MCP endpoint: `MCP_URL` (blank counts as unset), default
/// [`DEFAULT_MCP_URL`].
///
/// # Errors
///
/// It is not a URL.
pub(crate) fn mcp_url() -> Result<String, url::ParseError> {
    let mcp_url = std::env::var("MCP_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_MCP_URL.to_owned());
    listen_addr(&mcp_url)?;
    Ok(mcp_url)
}

/// The `host:port` to listen on for the public URL `url` (the scheme's port when it has
/// none).
///
/// # Errors
///
/// `url` is not a URL.
pub(crate) fn listen_addr(url: &str) -> Result<String, url::ParseError> {
    let url = url::Url::parse(url)?;
    Ok(format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port_or_known_default().unwrap_or(8080)
    ))
}

/// Prints `MCP endpoint: <mcp_url>` on stdout (the interop tests wait for this line), then
/// serves `server` on the host and port of `mcp_url` until Ctrl-C.
///
/// # Errors
///
/// `mcp_url` is not a URL, or listening or serving failed.
pub(crate) async fn serve(server: McpServer, mcp_url: &str) -> Result<(), Box<dyn Error>> {
    let addr = listen_addr(mcp_url)?;
    println!("MCP endpoint: {mcp_url}");
    server.listen(addr).await?;
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
