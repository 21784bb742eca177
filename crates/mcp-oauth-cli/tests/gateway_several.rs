//! `mcp-oauth gateway` with several upstreams named on the command line (`--upstream
//! NAME=URL`, `--stdio 'NAME=CMD ARGS…'`), each also at its own path `/NAME/mcp` with its own
//! token audience; `--print-config` turning them into `[[upstream]]` tables that `gateway
//! check` accepts. `harness = false`: started with [`STDIO_ROLE`] as an argument, this binary
//! is the stdio MCP server the gateway runs.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod support;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Instant;

use serde_json::{Value, json};

use support::gateway::{self, Client, client, echo};
use support::process::{TempDir, run_async};

const STDIO_ROLE: &str = "--serve-as-stdio-upstream";

async fn tool_names(client: &Client) -> Vec<String> {
    let tools = client.list_all_tools().await.unwrap();
    tools.iter().map(|t| t.name.to_string()).collect()
}

/// A token of the dev server in `data` for `aud`, as `mcp-oauth token` mints it.
async fn token_for(data: &std::path::Path, aud: &str) -> String {
    let data = data.to_str().unwrap();
    let out = run_async(
        &["token", "--sub", "alice", "--aud", aud, "--data-dir", data],
        &[],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.stdout.trim().to_owned()
}

async fn initialize_status(url: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn several_upstreams_named_on_the_command_line() {
    let app = mcp_oauth_gateway::test_upstream::http_router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let remote: SocketAddr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let me = std::env::current_exe().unwrap();
    let stdio = format!(
        "local={} {STDIO_ROLE}",
        shlex::try_quote(me.to_str().unwrap()).unwrap()
    );
    let http = format!("remote=http://{remote}/mcp");
    let tmp = TempDir::new("gw", "several");
    let data = tmp.data();
    let upstreams = ["--upstream", http.as_str(), "--stdio", stdio.as_str()];

    let gateway = gateway::start(&tmp, "gateway", &upstreams, &[]).await;
    let info = &gateway.info;
    let merged = info["mcp_url"].as_str().unwrap().to_owned();
    let base = merged.trim_end_matches("/mcp").to_owned();
    let (remote_url, local_url) = (format!("{base}/remote/mcp"), format!("{base}/local/mcp"));
    assert_eq!(
        info["upstream_urls"],
        json!([remote_url, local_url]),
        "{info}"
    );

    // The merged endpoint, with the banner's token: both upstreams, prefixed.
    let token = &gateway.token();
    let mcp = client(&merged, token).await;
    let names = tool_names(&mcp).await;
    for name in ["local__echo", "remote__echo"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    assert_eq!(echo(&mcp, "local__echo", "a").await.unwrap(), "a");
    assert_eq!(echo(&mcp, "remote__echo", "b").await.unwrap(), "b");
    mcp.cancel().await.unwrap();

    // Each upstream at its own path, with a token for that path only.
    for (url, other) in [(&remote_url, &local_url), (&local_url, &remote_url)] {
        let own = token_for(&data, url).await;
        assert_eq!(
            initialize_status(other, &own).await,
            401,
            "{url} token at {other}"
        );
        assert_eq!(
            initialize_status(&merged, &own).await,
            401,
            "{url} token at {merged}"
        );
        assert_eq!(
            initialize_status(url, token).await,
            401,
            "the merged token at {url}"
        );
        let mcp = client(url, &own).await;
        let names = tool_names(&mcp).await;
        assert!(names.iter().any(|n| n == "echo"), "{names:?}");
        assert!(names.iter().all(|n| !n.contains("__")), "{names:?}");
        assert_eq!(echo(&mcp, "echo", url).await.unwrap(), url.as_str());
        mcp.cancel().await.unwrap();
        let doc: Value = reqwest::get(format!(
            "{base}/.well-known/oauth-protected-resource{}",
            url.trim_start_matches(&base)
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(doc["resource"], url.as_str(), "{doc}");
    }
    drop(gateway);

    // --print-config: the named upstreams as [[upstream]] tables, which check accepts.
    let mut args = vec!["gateway", "--port", "8080"];
    args.extend(upstreams);
    args.push("--print-config");
    let out = run_async(&args, &[], None).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let printed = out.stdout;
    assert!(
        printed.contains(&format!(
            "[[upstream]]\nname = \"remote\"\nurl = \"http://{remote}/mcp\"\n"
        )),
        "{printed}"
    );
    assert!(
        printed.contains(&format!(
            "[[upstream]]\nname = \"local\"\ncommand = [{}, \"{STDIO_ROLE}\"]\n",
            serde_json::to_string(me.to_str().unwrap()).unwrap()
        )),
        "{printed}"
    );
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("printed.toml");
    std::fs::write(&file, &printed).unwrap();
    let out = run_async(
        &["gateway", "check", "--config", file.to_str().unwrap()],
        &[],
        None,
    )
    .await;
    let stdout = out.stdout;
    assert_eq!(out.code, 0, "{stdout}{}", out.stderr);
    assert!(
        stdout.contains("upstream      local: ") && stdout.contains("alone at /local/mcp"),
        "{stdout}"
    );

    // What cannot be told apart is refused before anything starts.
    for (args, expected) in [
        (
            vec![
                "--upstream",
                "http://127.0.0.1:9/mcp",
                "--upstream",
                "http://127.0.0.1:8/mcp",
            ],
            "name each one",
        ),
        (
            vec![
                "--upstream",
                "a=http://127.0.0.1:9/mcp",
                "--stdio",
                "a=server",
            ],
            "two upstreams are named \"a\"",
        ),
        (
            vec!["--stdio", "a=server", "--env", "K=v"],
            "--env is for a single unnamed upstream",
        ),
    ] {
        let mut all = vec!["gateway", "--port", "0"];
        all.extend(&args);
        let out = run_async(&all, &[], None).await;
        assert_ne!(out.code, 0, "{args:?}");
        let stderr = out.stderr;
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    server.abort();
}

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if std::env::args().any(|a| a == STDIO_ROLE) {
        // The gateway started this binary as its stdio upstream.
        return match runtime.block_on(mcp_oauth_gateway::test_upstream::serve_stdio()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let started = Instant::now();
    let name = "several_upstreams_named_on_the_command_line";
    if filter.as_deref().is_some_and(|f| !name.contains(f)) {
        return ExitCode::SUCCESS;
    }
    println!("test {name} ...");
    runtime.block_on(several_upstreams_named_on_the_command_line());
    println!(
        "test {name} ... ok ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
