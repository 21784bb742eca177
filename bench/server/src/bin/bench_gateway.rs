//! The benchmark's gateway with authentication off: `mcp_oauth_gateway::Gateway` with
//! `insecure_no_auth`, on 127.0.0.1 only. The `mcp-oauth gateway` command has no way to turn
//! authentication off (on purpose), so the "gateway, auth off" row of `bench/run --gateway`
//! measures the library's router with this small binary; the rows with auth on run the command.
//!
//! ```text
//! bench-gateway --upstream http://127.0.0.1:PORT/mcp [--port N]   # a Streamable HTTP upstream
//! bench-gateway [--port N] -- CMD ARGS…                           # a stdio upstream
//! ```
//!
//! Prints one JSON line once the upstream is ready and the gateway listens:
//! `{"mcp_url": "...", "pid": N}`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::serve::ListenerExt;
use mcp_oauth_gateway::{Gateway, HttpConfig, StdioConfig, UpstreamConfig};

fn parse_args() -> Result<(u16, UpstreamConfig), String> {
    let mut port = 0u16;
    let mut upstream = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--port" => {
                port = it
                    .next()
                    .ok_or("--port takes a value")?
                    .parse()
                    .map_err(|e| format!("--port: {e}"))?;
            }
            "--upstream" => {
                let url = it.next().ok_or("--upstream takes a URL")?;
                let config = HttpConfig::new(&url).map_err(|e| format!("--upstream: {e}"))?;
                upstream = Some(UpstreamConfig::from(config));
            }
            "--" => {
                let program = it.next().ok_or("-- needs a command")?;
                let args: Vec<String> = it.by_ref().collect();
                upstream = Some(StdioConfig::new(program, args).into());
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let upstream = upstream.ok_or("give --upstream URL or -- CMD ARGS…")?;
    Ok((port, upstream))
}

async fn run() -> Result<(), String> {
    let (port, upstream) = parse_args()?;
    let gateway = Gateway::builder(upstream)
        .insecure_no_auth()
        .build()
        .map_err(|e| e.to_string())?;
    gateway
        .ready(Duration::from_secs(30))
        .await
        .map_err(|e| format!("the upstream did not get ready: {e}"))?;
    // Loopback only: nothing guards this endpoint.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("bind 127.0.0.1:{port}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!(
        "{}",
        serde_json::json!({ "mcp_url": format!("http://{addr}{}", gateway.path()), "pid": std::process::id() })
    );
    // As the command does: without TCP_NODELAY an answer written in pieces waits for the
    // peer's delayed ACK.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        gateway
            .router()
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(mcp_oauth::server::shutdown_signal())
    .await
    .map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-gateway: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
