//! The MCP server the gateway's tests run as a stdio child (feature `test-upstream`).

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match mcp_oauth_gateway::test_upstream::serve_stdio().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("test upstream: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
