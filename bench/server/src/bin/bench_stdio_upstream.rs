//! The stdio upstream of `bench/run --gateway`: the gateway crate's test server (tools `echo`,
//! `get_env`, `slow`, …) speaking MCP on stdin/stdout, the same server the gateway's tests run.

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match mcp_oauth_gateway::test_upstream::serve_stdio().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench-stdio-upstream: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
