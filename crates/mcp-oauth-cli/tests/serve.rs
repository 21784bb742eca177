//! `mcp-oauth serve` as a user runs it: the binary in front of a (mock) issuer.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mcp_oauth::testing::{MockIdp, TestKey};
use serde_json::{Value, json};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

async fn wait_ready(http: &reqwest::Client, url: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(res) = http.get(url).send().await
            && res.status().is_success()
        {
            return;
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "mcp-oauth serve exited early"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("mcp-oauth serve did not become ready");
}

#[tokio::test]
async fn serve_protects_the_demo_server() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let port = free_port();
    let mcp_url = format!("http://127.0.0.1:{port}/mcp");
    let child = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
        .args([
            "serve",
            "--issuer",
            idp.issuer(),
            "--mcp-url",
            &mcp_url,
            "--scopes",
            "mcp:read",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut child = Killed(child);
    let http = reqwest::Client::new();
    wait_ready(
        &http,
        &format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp"),
        &mut child.0,
    )
    .await;

    let res = http.post(&mcp_url).send().await.expect("post");
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()["www-authenticate"],
        format!(r#"Bearer resource_metadata="http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp", scope="mcp:read""#).as_str()
    );

    let token = idp
        .token()
        .sub("dana")
        .aud(&mcp_url)
        .scope("mcp:read")
        .sign();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}});
    let res = http
        .post(&mcp_url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 200);
    let reply: Value = res.json().await.expect("json");
    assert_eq!(reply["result"]["structuredContent"]["user"]["id"], "dana");
    drop(child);
    idp.shutdown().await;
}

#[test]
fn missing_issuer_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
        .arg("serve")
        .env_remove("OIDC_ISSUER")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--issuer"), "{stderr}");
}
