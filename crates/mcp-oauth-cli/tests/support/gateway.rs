//! `mcp-oauth gateway` as a child process (a [`Served`]: its JSON line, its log, killed when
//! dropped), and an MCP client of it.

use std::ffi::{OsStr, OsString};
use std::path::Path;

use rmcp::ServiceExt as _;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

use serde_json::{Value, json};

use super::process::{Run, Served, TempDir, run_async};

/// An MCP client session (rmcp) with a gateway.
pub type Client = rmcp::service::RunningService<rmcp::RoleClient, ()>;

/// `mcp-oauth gateway --port 0 --json --store memory --data-dir <tmp>/data ARGS` with `env`,
/// its JSON line read; its log in `<tmp>/<name>.log`.
pub async fn start<A: AsRef<OsStr>>(
    tmp: &TempDir,
    name: &str,
    args: &[A],
    env: &[(String, String)],
) -> Served {
    let mut all: Vec<OsString> = ["--port", "0", "--store", "memory", "--data-dir"]
        .map(OsString::from)
        .to_vec();
    all.push(tmp.data().into());
    all.extend(args.iter().map(|a| a.as_ref().to_owned()));
    launch(tmp, name, &all, env).await
}

/// `mcp-oauth gateway --json ARGS` with `env` (`ARGS` choose the port, the store and the
/// data folder), its JSON line read; its log in `<tmp>/<name>.log`.
pub async fn launch<A: AsRef<OsStr>>(
    tmp: &TempDir,
    name: &str,
    args: &[A],
    env: &[(String, String)],
) -> Served {
    let mut all: Vec<OsString> = vec!["gateway".into(), "--json".into()];
    all.extend(args.iter().map(|a| a.as_ref().to_owned()));
    Served::started(tmp, name, &all, env).await
}

/// `mcp-oauth gateway --port 0 --store memory --data-dir DATA ARGS` with `env`, run to its end
/// off the runtime's threads (upstreams the test serves keep answering): for a start that
/// must be refused.
pub async fn run(data: &Path, args: &[&str], env: &[(String, String)]) -> Run {
    let data = data.to_str().expect("a UTF-8 data folder");
    let mut all = vec![
        "gateway",
        "--port",
        "0",
        "--store",
        "memory",
        "--data-dir",
        data,
    ];
    all.extend_from_slice(args);
    run_async(&all, env, None).await
}

/// An MCP client of `url` sending `Authorization: Bearer <token>`, initialized.
pub async fn client(url: &str, token: &str) -> Client {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).auth_header(token.to_owned()),
    );
    ().serve(transport).await.expect("MCP client")
}

/// An MCP client of the gateway's `mcp_url` with the token of its JSON line.
pub async fn client_of(gateway: &Served) -> Client {
    client(&gateway.mcp_url(), &gateway.token()).await
}

/// Calls `tool` with `args` (a JSON object, or `null` for none) through `client`: the text of
/// the result's first content (empty without one), or the error's message.
pub async fn call(client: &Client, tool: &str, args: Value) -> Result<String, String> {
    let mut params = CallToolRequestParams::new(tool.to_owned());
    if let Value::Object(map) = args {
        params = params.with_arguments(map);
    }
    let result = client.call_tool(params).await.map_err(|e| e.to_string())?;
    Ok(
        serde_json::to_value(&result).expect("a result as JSON")["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// [`call`] of an echo tool with `{"text": text}`.
pub async fn echo(client: &Client, tool: &str, text: &str) -> Result<String, String> {
    call(client, tool, json!({ "text": text })).await
}
