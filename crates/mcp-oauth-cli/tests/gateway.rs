//! `mcp-oauth gateway` as a user runs it, in front of the rmcp test server: over stdio (this
//! very test binary is the command: started with `MCP_OAUTH_TEST_UPSTREAM_STDIO` set, it
//! serves MCP on stdin/stdout) and over Streamable HTTP (served by the test on 127.0.0.1).
//! `harness = false`: `main` picks the role, then runs the tests one after the other.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mcp_oauth::testing::{MockIdp, TestKey};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

use support::gateway::{self, call, client, echo};
use support::process::{TempDir, env, run_async};

const UPSTREAM_ROLE: &str = "MCP_OAUTH_TEST_UPSTREAM_STDIO";

async fn unauthenticated(url: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#)
        .send()
        .await
        .unwrap()
}

/// The embedded authorization server in front of a stdio command: the banner's token works,
/// the command's environment holds only the allow-list and what `--env` / `--pass-env` give.
async fn embedded_server_and_a_stdio_command() {
    let tmp = TempDir::new("gw", "stdio");
    let me = std::env::current_exe().unwrap();
    let me = me.to_str().unwrap();
    let gateway = gateway::start(
        &tmp,
        "gateway",
        &[
            "--env",
            &format!("{UPSTREAM_ROLE}=1"),
            "--env",
            "FROM_REFERENCE=${GW_TEST_PARENT_SECRET}",
            "--pass-env",
            "GW_TEST_PASSED",
            "--",
            me,
        ],
        &env(&[
            ("GW_TEST_PARENT_SECRET", "resolved-from-env"),
            ("GW_TEST_PASSED", "passed"),
            ("GW_TEST_NOT_PASSED", "must-not-leak"),
        ]),
    )
    .await;
    let url = gateway.mcp_url();
    let token = &gateway.token();
    let mcp = client(&url, token).await;
    assert_eq!(echo(&mcp, "echo", "through").await.unwrap(), "through");
    let env: serde_json::Map<String, Value> =
        serde_json::from_str(&call(&mcp, "get_env", json!({})).await.unwrap()).unwrap();
    assert_eq!(env["FROM_REFERENCE"], "resolved-from-env");
    assert_eq!(env["GW_TEST_PASSED"], "passed");
    assert!(!env.contains_key("GW_TEST_NOT_PASSED"), "{env:?}");
    assert!(!env.contains_key("GW_TEST_PARENT_SECRET"), "{env:?}");
    mcp.cancel().await.unwrap();

    let res = unauthenticated(&url).await;
    assert_eq!(res.status(), 401);
    let origin = url.trim_end_matches("/mcp");
    assert_eq!(
        res.headers()["www-authenticate"],
        format!(r#"Bearer resource_metadata="{origin}/.well-known/oauth-protected-resource/mcp", scope="mcp:read mcp:write""#).as_str()
    );
    let as_metadata: Value =
        reqwest::get(format!("{origin}/.well-known/oauth-authorization-server"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(as_metadata["issuer"], origin);
    drop(gateway);
}

/// An external issuer in front of a Streamable HTTP upstream: its tokens work, the
/// upstream gets the configured header and never the client's Authorization.
async fn an_issuer_and_an_http_upstream() {
    let seen: Arc<Mutex<Vec<http::HeaderMap>>> = Arc::default();
    let record = seen.clone();
    let app = mcp_oauth_gateway::test_upstream::http_router().layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            record.lock().unwrap().push(req.headers().clone());
            next.run(req)
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream: SocketAddr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");

    let upstream_url = format!("http://{upstream}/mcp");
    let tmp = TempDir::new("gw", "issuer");
    let gateway = gateway::start(
        &tmp,
        "gateway",
        &[
            "--issuer",
            idp.issuer(),
            "--scopes",
            "mcp:read",
            "--upstream",
            &upstream_url,
            "--upstream-header",
            "X-Upstream-Key: ${GW_TEST_UPSTREAM_KEY}",
        ],
        &env(&[("GW_TEST_UPSTREAM_KEY", "upstream-key-value")]),
    )
    .await;
    let url = gateway.mcp_url();
    let token = idp.token().aud(&url).scope("mcp:read").sign();
    let mcp = client(&url, &token).await;
    assert_eq!(echo(&mcp, "echo", "remote").await.unwrap(), "remote");
    mcp.cancel().await.unwrap();
    let res = unauthenticated(&url).await;
    assert_eq!(res.status(), 401);
    // No sign-in of its own: the gateway's pages say they cannot be used, and why.
    let pages = reqwest::get(url.replace("/mcp", "/gateway/approve?ticket=x"))
        .await
        .unwrap();
    assert_eq!(pages.status(), 503);
    let text = pages.text().await.unwrap();
    assert!(
        text.contains("no sign-in of its own") && text.contains(idp.issuer()),
        "{text}"
    );
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    for headers in &seen {
        assert!(!headers.contains_key("authorization"), "{headers:?}");
        assert_eq!(headers["x-upstream-key"], "upstream-key-value");
    }
    drop(gateway);
    idp.shutdown().await;
    server.abort();
}

/// Mistakes are refused before anything starts, with what to do.
async fn bad_invocations_are_refused() {
    for (args, expected) in [
        (vec!["gateway", "--port", "0"], "no MCP server to protect"),
        (
            vec![
                "gateway",
                "--port",
                "0",
                "--upstream",
                "http://127.0.0.1:9/mcp",
                "--",
                "x",
            ],
            "not both",
        ),
        (
            vec!["gateway", "--port", "0", "--upstream", "ftp://h/mcp"],
            "not an http or https URL",
        ),
        (
            vec!["gateway", "--config", "/nonexistent/gateway.toml"],
            "cannot read the configuration file /nonexistent/gateway.toml",
        ),
    ] {
        let out = run_async(&args, &[], None).await;
        assert_ne!(out.code, 0, "{args:?}");
        let stderr = out.stderr;
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// A configuration file with two upstreams (this binary as a stdio command, and the test
/// server over HTTP), an audit file and an admin listener; then `check` and `--print-config`
/// on it.
async fn a_config_file_with_two_upstreams() {
    let app = mcp_oauth_gateway::test_upstream::http_router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream: SocketAddr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let tmp = TempDir::new("gw", "config");
    let dir = tmp.path();
    let me = std::env::current_exe().unwrap();
    let audit = dir.join("audit.jsonl");
    let file = dir.join("gateway.toml");
    let text = format!(
        r#"# two upstreams
[[upstream]]
name = "local"
command = [{me}]
env = {{ {UPSTREAM_ROLE} = "1" }}

[[upstream]]
name = "remote"
url = "http://{upstream}/mcp"
headers = {{ "X-Upstream-Key" = "${{GW_TEST_CONFIG_KEY}}" }}

[audit]
file = {audit}

[admin]
listen = "127.0.0.1:0"
"#,
        me = toml_string(me.to_str().unwrap()),
        audit = toml_string(audit.to_str().unwrap()),
    );
    std::fs::write(&file, &text).unwrap();
    let path = file.to_str().unwrap();

    let gateway = gateway::start(
        &tmp,
        "gateway",
        &["--config", path],
        &env(&[("GW_TEST_CONFIG_KEY", "k")]),
    )
    .await;
    let url = gateway.mcp_url();
    let token = &gateway.token();
    let mcp = client(&url, token).await;
    let tools = mcp.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert!(
        names.contains(&"local__echo") && names.contains(&"remote__echo"),
        "{names:?}"
    );
    assert_eq!(echo(&mcp, "local__echo", "a").await.unwrap(), "a");
    assert_eq!(echo(&mcp, "remote__echo", "b").await.unwrap(), "b");
    mcp.cancel().await.unwrap();
    let admin = gateway.info["admin_url"].as_str().unwrap();
    let metrics = reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "mcp_gateway_requests_total{mcp_method_name=\"tools/call\",outcome=\"forwarded\"} 2"
        ),
        "{metrics}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let lines = loop {
        let content = std::fs::read_to_string(&audit).unwrap_or_default();
        let calls: Vec<Value> = content
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["method"] == "tools/call")
            .collect();
        if calls.len() >= 2 {
            break calls;
        }
        assert!(Instant::now() < deadline, "audit lines: {content}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(lines[0]["tool"], "local__echo", "{lines:?}");
    assert_eq!(lines[1]["upstream"], "remote", "{lines:?}");
    drop(gateway);

    let key = env(&[("GW_TEST_CONFIG_KEY", "k")]);
    let out = run_async(&["gateway", "check", "--config", path], &key, None).await;
    let stdout = out.stdout;
    assert_eq!(out.code, 0, "{stdout}{}", out.stderr);
    assert!(stdout.contains("upstream      local: "), "{stdout}");
    assert!(stdout.contains("headers X-Upstream-Key"), "{stdout}");
    assert!(!stdout.contains("GW_TEST_CONFIG_KEY") || !stdout.contains("= \"k\""));
    // Without the variable: exit status 2, the variable named.
    let out = run_async(&["gateway", "check", "--config", path], &[], None).await;
    assert_eq!(out.code, 2);
    let stderr = out.stderr;
    assert!(
        stderr.contains("upstream remote: header X-Upstream-Key")
            && stderr.contains("GW_TEST_CONFIG_KEY"),
        "{stderr}"
    );
    // A misspelled key: its line and the key meant.
    let typo = dir.join("typo.toml");
    std::fs::write(
        &typo,
        format!("{text}\n[admin]\nlisen = \"127.0.0.1:1\"\n")
            .replace("[admin]\nlisten = \"127.0.0.1:0\"\n", ""),
    )
    .unwrap();
    let out = run_async(
        &["gateway", "check", "--config", typo.to_str().unwrap()],
        &[],
        None,
    )
    .await;
    assert_eq!(out.code, 2);
    let stderr = out.stderr;
    assert!(
        stderr.contains("unknown key `lisen` in [admin] (did you mean `listen`?)"),
        "{stderr}"
    );
    assert!(stderr.contains("typo.toml:"), "{stderr}");
    // The identity header cannot be the upstream credential's.
    let bad = dir.join("identity.toml");
    std::fs::write(&bad, format!("identity_header = \"Authorization\"\n{text}")).unwrap();
    let out = run_async(
        &["gateway", "check", "--config", bad.to_str().unwrap()],
        &key,
        None,
    )
    .await;
    assert_eq!(out.code, 2);
    let stderr = out.stderr;
    assert!(
        stderr.contains("identity_header: identity header: authorization is kept"),
        "{stderr}"
    );
    // --print-config: the command line's --port wins, references stay as written.
    let out = run_async(
        &["gateway", "--config", path, "--port", "9", "--print-config"],
        &[],
        None,
    )
    .await;
    assert_eq!(out.code, 0);
    let printed = out.stdout;
    assert!(printed.contains("port = 9\n"), "{printed}");
    assert!(
        printed.contains("\"X-Upstream-Key\" = \"${GW_TEST_CONFIG_KEY}\""),
        "{printed}"
    );
    server.abort();
}

/// `--upstreams-from .mcp.json`: a desktop client's servers (one stdio, one Streamable HTTP
/// with a header from the environment, one disabled) served by the gateway under their names;
/// `check` lists them, and a legacy SSE server is taken as one.
async fn upstreams_from_a_desktop_client_file() {
    let app = mcp_oauth_gateway::test_upstream::http_router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream: SocketAddr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let tmp = TempDir::new("gw", "mcpjson");
    let dir = tmp.path();
    let me = std::env::current_exe().unwrap();
    let file = dir.join(".mcp.json");
    let servers = json!({"mcpServers": {
        "local_tools": {"command": me, "env": {UPSTREAM_ROLE: "1"}, "autoApprove": []},
        "remote": {"type": "http", "url": format!("http://{upstream}/mcp"), "headers": {"X-Upstream-Key": "${env:GW_TEST_MCPJSON_KEY}"}},
        "off": {"command": "/nonexistent", "disabled": true},
    }});
    std::fs::write(&file, servers.to_string()).unwrap();
    let path = file.to_str().unwrap();

    let gateway = gateway::start(
        &tmp,
        "gateway",
        &["--upstreams-from", path],
        &env(&[("GW_TEST_MCPJSON_KEY", "k")]),
    )
    .await;
    let token = &gateway.token();
    let mcp = client(&gateway.mcp_url(), token).await;
    let tools = mcp.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.retain(|n| n.ends_with("__echo"));
    names.sort_unstable();
    assert_eq!(names, ["local-tools__echo", "remote__echo"]);
    assert_eq!(echo(&mcp, "local-tools__echo", "a").await.unwrap(), "a");
    assert_eq!(echo(&mcp, "remote__echo", "b").await.unwrap(), "b");
    mcp.cancel().await.unwrap();
    drop(gateway);

    let config = dir.join("gateway.toml");
    std::fs::write(&config, format!("upstreams_from = {}\n", toml_string(path))).unwrap();
    let check = ["gateway", "check", "--config", config.to_str().unwrap()];
    let out = run_async(&check, &env(&[("GW_TEST_MCPJSON_KEY", "k")]), None).await;
    let stdout = out.stdout;
    assert_eq!(out.code, 0, "{stdout}{}", out.stderr);
    assert!(stdout.contains("upstream      local-tools: "), "{stdout}");
    assert!(stdout.contains("upstream      remote: "), "{stdout}");
    assert!(!stdout.contains("upstream      off"), "{stdout}");

    // A legacy SSE server is taken as one (HTTP+SSE only).
    let sse = dir.join("sse.json");
    std::fs::write(
        &sse,
        r#"{"mcpServers": {"old": {"type": "sse", "url": "http://127.0.0.1:1/sse"}}}"#,
    )
    .unwrap();
    std::fs::write(
        &config,
        format!("upstreams_from = {}\n", toml_string(sse.to_str().unwrap())),
    )
    .unwrap();
    let out = run_async(&check, &[], None).await;
    let stdout = out.stdout;
    assert_eq!(out.code, 0, "{stdout}");
    assert!(stdout.contains("legacy HTTP+SSE"), "{stdout}");
    server.abort();
}

/// A policy file decides calls and filters lists; a rule naming a tool the upstream does not
/// have stops the gateway before it serves.
async fn a_policy_file_decides_and_is_checked_against_the_tools() {
    let me = std::env::current_exe().unwrap();
    let me = me.to_str().unwrap();
    let tmp = TempDir::new("gw", "policy");
    let dir = tmp.path();
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        "[policy]\n\n[[policy.rule]]\nid = \"echo-for-all\"\ntools = [\"echo\"]\n\n[[policy.rule]]\nid = \"env-needs-admin\"\ntools = [\"get_env\"]\nstep_up_scopes = [\"admin\"]\n\n[[policy.rate_limit]]\nid = \"echo-hourly\"\ntools = [\"echo\"]\nrate = \"1/hour\"\nburst = 2\n",
    )
    .unwrap();
    let role = format!("{UPSTREAM_ROLE}=1");
    let audit = dir.join("audit.jsonl");
    let _ = std::fs::remove_file(&audit);
    let gateway = gateway::start(
        &tmp,
        "gateway",
        &[
            "--audit",
            audit.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--admin-listen",
            "127.0.0.1:0",
            "--env",
            &role,
            "--",
            me,
        ],
        &[],
    )
    .await;
    let url = gateway.mcp_url();
    let token = &gateway.token();
    let mcp = client(&url, token).await;
    let tools = mcp.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["echo", "get_env"],
        "only what the policy lets the user call"
    );
    assert_eq!(echo(&mcp, "echo", "allowed").await.unwrap(), "allowed");
    // The rate limit: a burst of 2 echo calls an hour per user, then a JSON-RPC error with
    // the time to wait (the upstream is not called); lists are never limited.
    assert_eq!(echo(&mcp, "echo", "second").await.unwrap(), "second");
    let mut third = CallToolRequestParams::new("echo");
    third = third.with_arguments(json!({"text": "third"}).as_object().unwrap().clone());
    let refused = mcp
        .call_tool(third)
        .await
        .expect_err("over the limit")
        .to_string();
    assert!(
        refused.contains("rate limit reached for tool `echo`") && refused.contains("retry in "),
        "{refused}"
    );
    assert_eq!(
        mcp.list_all_tools().await.unwrap().len(),
        2,
        "lists are not limited"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("rate_limit:echo-hourly")) {
            break line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no audit line for the refusal: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let event: Value = serde_json::from_str(&line).unwrap();
    assert!(
        line.contains(r#""deny""#) && line.contains(r#""echo""#),
        "{event}"
    );
    let mut pid = CallToolRequestParams::new("pid");
    pid = pid.with_arguments(serde_json::Map::new());
    assert!(mcp.call_tool(pid).await.is_err(), "no rule permits pid");
    mcp.cancel().await.unwrap();
    // get_env needs a scope the token lacks: 403 insufficient_scope naming it.
    let http = reqwest::Client::new();
    let init = http
        .post(&url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#)
        .send()
        .await
        .unwrap();
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let step_up = http
        .post(&url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .body(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_env","arguments":{}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(step_up.status(), 403);
    let challenge = step_up.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#) && challenge.contains("admin"),
        "{challenge}"
    );
    // Each decision counted under the rule that made it (the rules allowed echo three times;
    // the rate limit refused the third afterwards).
    let admin = gateway.info["admin_url"].as_str().unwrap();
    let metrics = reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "mcp_oauth_policy_decisions_total{rule_id=\"echo-for-all\",effect=\"allow\"} 3\n",
        "mcp_oauth_policy_decisions_total{rule_id=\"env-needs-admin\",effect=\"step_up\"} 1\n",
        "mcp_oauth_policy_decisions_total{rule_id=\"_NONE\",effect=\"deny\"} 1\n",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    // The audit lines name the same rules.
    let deadline = Instant::now() + Duration::from_secs(10);
    let events: Vec<Value> = loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        if text.contains("env-needs-admin") {
            break text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "no audit line for the step-up: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let rules = |effect: &str, tool: &str| -> Vec<Value> {
        events
            .iter()
            .filter(|e| {
                e["method"] == "tools/call"
                    && e["decision"]["effect"] == effect
                    && e.to_string().contains(&format!("\"{tool}\""))
            })
            .map(|e| e["decision"]["rule_ids"].clone())
            .collect()
    };
    assert_eq!(rules("allow", "echo"), vec![json!(["echo-for-all"]); 2]);
    assert_eq!(rules("step_up", "get_env"), [json!(["env-needs-admin"])]);
    assert_eq!(rules("deny", "echo"), [json!(["rate_limit:echo-hourly"])]);
    drop(gateway);

    std::fs::write(
        &policy,
        "[policy]\n\n[[policy.rule]]\nid = \"typo\"\ntools = [\"ech0\"]\n",
    )
    .unwrap();
    let args = [
        "--policy",
        policy.to_str().unwrap(),
        "--env",
        &role,
        "--",
        me,
    ];
    let out = gateway::run(&tmp.data(), &args, &[]).await;
    assert_ne!(out.code, 0);
    let stderr = out.stderr;
    assert!(
        stderr.contains("typo") && stderr.contains("ech0"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing was served");
}

/// A DPoP proof by `key` for `POST url` with `token` (and `nonce`).
fn dpop_proof(key: &TestKey, url: &str, token: &str, nonce: Option<&str>) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut jwk = serde_json::to_value(mcp_oauth::jose::Jwk {
        kid: None,
        alg: None,
        use_: None,
        ..key.public_jwk().unwrap()
    })
    .unwrap();
    jwk.as_object_mut().unwrap().retain(|_, v| !v.is_null());
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut claims = json!({
        "jti": format!("gw-cli-{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
        "htm": "POST", "htu": url, "iat": iat,
        "ath": mcp_oauth::dpop::access_token_hash(token),
    });
    if let Some(nonce) = nonce {
        claims["nonce"] = nonce.into();
    }
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
    key.key()
        .sign_compact(header.to_string().as_bytes(), claims.to_string().as_bytes())
}

/// `dpop = "required"` and `dpop_nonce = true` in the configuration file, with an external
/// issuer: a token bound to the client's key works with a proof carrying the gateway's
/// nonce; without the nonce the answer names one; as Bearer it is refused; the upstream never
/// sees the `DPoP` header.
async fn a_config_file_with_dpop_required_and_nonces() {
    let seen: Arc<Mutex<Vec<http::HeaderMap>>> = Arc::default();
    let record = seen.clone();
    let app = mcp_oauth_gateway::test_upstream::http_router().layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            record.lock().unwrap().push(req.headers().clone());
            next.run(req)
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream: SocketAddr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let tmp = TempDir::new("gw", "dpop");
    let dir = tmp.path();
    let file = dir.join("gateway.toml");
    let text = format!(
        "issuer = {issuer}\nscopes = \"mcp:read\"\ndpop = \"required\"\ndpop_nonce = true\n\n[[upstream]]\nurl = \"http://{upstream}/mcp\"\n",
        issuer = toml_string(idp.issuer()),
    );
    std::fs::write(&file, &text).unwrap();
    let gateway = gateway::start(&tmp, "gateway", &["--config", file.to_str().unwrap()], &[]).await;
    let url = gateway.mcp_url();
    let prm: Value = reqwest::get(format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        url.trim_end_matches("/mcp")
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(prm["dpop_bound_access_tokens_required"], true, "{prm}");

    let client = TestKey::es256();
    let jkt = client.public_jwk().unwrap().thumbprint().unwrap();
    let token = idp
        .token()
        .aud(&url)
        .scope("mcp:read")
        .claim("cnf", json!({"jkt": jkt}))
        .sign();
    let send = |authorization: String, proof: Option<String>| {
        let mut request = reqwest::Client::new()
            .post(&url)
            .header("authorization", authorization)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#);
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        request.send()
    };
    let res = send(
        format!("DPoP {token}"),
        Some(dpop_proof(&client, &url, &token, None)),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 401);
    let challenge = res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains(", DPoP error=\"use_dpop_nonce\""),
        "{challenge}"
    );
    let nonce = res.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    assert!(seen.lock().unwrap().is_empty());
    let res = send(
        format!("DPoP {token}"),
        Some(dpop_proof(&client, &url, &token, Some(&nonce))),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let res = send(format!("Bearer {token}"), None).await.unwrap();
    assert_eq!(res.status(), 401);
    let challenge = res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    for headers in &seen {
        assert!(!headers.contains_key("dpop"), "{headers:?}");
        assert!(!headers.contains_key("authorization"), "{headers:?}");
    }
    drop(gateway);
    idp.shutdown().await;
    server.abort();
}

fn toml_string(value: &str) -> String {
    serde_json::to_string(value).unwrap()
}

type Test = (&'static str, fn() -> Pin<Box<dyn Future<Output = ()>>>);

/// A browser of the approval page: reqwest without redirects, its cookies kept by hand.
struct PageBrowser {
    http: reqwest::Client,
    cookies: std::collections::BTreeMap<String, String>,
}

impl PageBrowser {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: std::collections::BTreeMap::new(),
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> (u16, Option<String>, String) {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let response = request.header("cookie", cookie).send().await.unwrap();
        for set in response.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let (name, value) = set.split(';').next().unwrap().split_once('=').unwrap();
            if set.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        (status, location, response.text().await.unwrap())
    }
}

/// `[[policy.approve]]` end to end: the call waits with a link; the user signs in on the
/// gateway's page (auto-approve: the first local user), approves, and the identical call
/// passes once, with `approved_by` in its audit line.
async fn a_policy_approve_rule_waits_for_the_approval_page() {
    let me = std::env::current_exe().unwrap();
    let me = me.to_str().unwrap();
    let tmp = TempDir::new("gw", "approve");
    let dir = tmp.path();
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        "[[policy.rule]]\nid = \"echo-for-all\"\ntools = [\"echo\"]\n\n[[policy.approve]]\nid = \"echo-approved\"\ntools = [\"echo\"]\n",
    )
    .unwrap();
    let audit = dir.join("audit.jsonl");
    let _ = std::fs::remove_file(&audit);
    let role = format!("{UPSTREAM_ROLE}=1");
    let gateway = gateway::start(
        &tmp,
        "gateway",
        &[
            "--auto-approve",
            "--audit",
            audit.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--env",
            &role,
            "--",
            me,
        ],
        &[],
    )
    .await;
    let url = gateway.mcp_url();
    let token = &gateway.token();
    let mcp = client(&url, token).await;
    let mut params = CallToolRequestParams::new("echo");
    params = params.with_arguments(json!({"text": "approved"}).as_object().unwrap().clone());
    // This client declared no URL-mode elicitation: a tool error result naming the link.
    let waiting = mcp.call_tool(params.clone()).await.expect("a tool result");
    assert_eq!(waiting.is_error, Some(true), "{waiting:?}");
    let waiting = serde_json::to_value(&waiting).unwrap()["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    let link = waiting
        .split("open ")
        .nth(1)
        .and_then(|rest| rest.split(", then").next())
        .unwrap_or_else(|| panic!("no link in {waiting}"))
        .to_owned();
    let origin = url.trim_end_matches("/mcp").to_owned();
    assert!(
        link.starts_with(&format!("{origin}/gateway/approve?ticket=")),
        "{link}"
    );

    // Sign in on the page (the authorization server's auto-approve), then approve.
    let mut browser = PageBrowser::new();
    let mut next = link.clone();
    let mut page = String::new();
    for _ in 0..6 {
        let (status, location, body) = browser.send(browser.http.get(&next)).await;
        match location {
            Some(location) if status / 100 == 3 => {
                next = if location.starts_with('/') {
                    format!("{origin}{location}")
                } else {
                    location
                };
            }
            _ => {
                assert_eq!(status, 200, "{next}: {body}");
                page = body;
                break;
            }
        }
    }
    assert_eq!(next, link, "back on the approval page");
    assert!(
        page.contains("{&quot;text&quot;:&quot;approved&quot;}"),
        "{page}"
    );
    let mut form = mcp_oauth::testing::hidden_form_fields(&page);
    form.push(("decision".to_owned(), "approve".to_owned()));
    let (status, _, body) = browser
        .send(
            browser
                .http
                .post(format!("{origin}/gateway/approve"))
                .header("origin", &origin)
                .form(&form),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Approved"), "{body}");

    let result = mcp.call_tool(params.clone()).await.expect("approved once");
    assert_eq!(
        serde_json::to_value(&result).unwrap()["content"][0]["text"],
        "approved"
    );
    let again = mcp.call_tool(params).await.expect("a tool result");
    assert_eq!(again.is_error, Some(true), "once: {again:?}");
    mcp.cancel().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        if text.lines().any(|l| l.contains("\"approved_by\"")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no approved_by in the audit: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(gateway);
}

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if std::env::var_os(UPSTREAM_ROLE).is_some() {
        // The gateway started this binary as its stdio upstream.
        return match runtime.block_on(mcp_oauth_gateway::test_upstream::serve_stdio()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    let tests: [Test; 8] = [
        ("a_policy_approve_rule_waits_for_the_approval_page", || {
            Box::pin(a_policy_approve_rule_waits_for_the_approval_page())
        }),
        ("upstreams_from_a_desktop_client_file", || {
            Box::pin(upstreams_from_a_desktop_client_file())
        }),
        ("a_config_file_with_dpop_required_and_nonces", || {
            Box::pin(a_config_file_with_dpop_required_and_nonces())
        }),
        (
            "a_policy_file_decides_and_is_checked_against_the_tools",
            || Box::pin(a_policy_file_decides_and_is_checked_against_the_tools()),
        ),
        ("a_config_file_with_two_upstreams", || {
            Box::pin(a_config_file_with_two_upstreams())
        }),
        ("embedded_server_and_a_stdio_command", || {
            Box::pin(embedded_server_and_a_stdio_command())
        }),
        ("an_issuer_and_an_http_upstream", || {
            Box::pin(an_issuer_and_an_http_upstream())
        }),
        ("bad_invocations_are_refused", || {
            Box::pin(bad_invocations_are_refused())
        }),
    ];
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let started = Instant::now();
    let mut ran = 0;
    for (name, test) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        println!("test {name} ...");
        runtime.block_on(test());
        println!("test {name} ... ok");
        ran += 1;
    }
    println!("{ran} passed in {:.1} s", started.elapsed().as_secs_f64());
    ExitCode::SUCCESS
}
