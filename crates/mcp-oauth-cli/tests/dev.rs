//! `mcp-oauth dev` and `mcp-oauth token` as a user runs them: the banner's token works, the
//! whole OAuth flow works through the login page, tokens survive a restart, Ctrl-C stops it.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Dev {
    child: Child,
    info: Value,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcp-oauth-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn start(dir: &Path, extra: &[&str]) -> Dev {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
        .args(["dev", "--port", "0", "--json", "--data-dir"])
        .arg(dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    let info: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
    Dev { child, info }
}

impl Dev {
    fn url(&self) -> &str {
        self.info["mcp_url"].as_str().expect("mcp_url")
    }

    fn issuer(&self) -> &str {
        self.info["issuer"].as_str().expect("issuer")
    }

    async fn ready(&self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let prm = format!("{}/.well-known/oauth-protected-resource/mcp", self.issuer());
        while Instant::now() < deadline {
            if http
                .get(&prm)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("mcp-oauth dev did not become ready");
    }
}

async fn call(http: &reqwest::Client, url: &str, token: &str, tool: &str) -> (u16, Value) {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {}}});
    let res = http
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.to_string())
        .send()
        .await
        .expect("post");
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

fn hidden_fields(html: &str) -> HashMap<String, String> {
    mcp_oauth::testing::hidden_form_fields(html)
        .into_iter()
        .collect()
}

#[tokio::test]
async fn the_printed_token_works_and_step_up_is_403() {
    let dir = temp_dir("banner");
    let dev = start(&dir, &[]);
    let http = reqwest::Client::new();
    dev.ready(&http).await;
    let token = dev.info["token"].as_str().expect("token");
    let (status, body) = call(&http, dev.url(), token, "whoami").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["structuredContent"]["user"]["id"], "dev");
    let (status, _) = call(&http, dev.url(), token, "admin_action").await;
    assert_eq!(status, 403);
    // `mcp-oauth token` mints with the same key.
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
        .args([
            "token",
            "--sub",
            "root",
            "--scope",
            "mcp:read admin",
            "--data-dir",
        ])
        .arg(&dir)
        .output()
        .expect("token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let minted = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned();
    let (status, body) = call(&http, dev.url(), &minted, "admin_action").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["result"]["content"][0]["text"]
            .as_str()
            .expect("text")
            .contains("root")
    );
    drop(dev);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_whole_flow_through_the_login_page() {
    let dir = temp_dir("flow");
    let dev = start(&dir, &["--user", "alice:secret"]);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    dev.ready(&http).await;
    let issuer = dev.issuer();
    let reg: Value = http
        .post(format!("{issuer}/register"))
        .json(&json!({"redirect_uris": ["http://127.0.0.1/callback"], "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"], "client_name": "cli test"}))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("json");
    let client_id = reg["client_id"].as_str().expect("client_id");
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let redirect = "http://127.0.0.1:41234/callback";
    let mut authorize = url::Url::parse(&format!("{issuer}/authorize")).expect("url");
    authorize.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect),
        ("state", "s"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
        ("resource", dev.url()),
        ("scope", "mcp:read"),
    ]);
    let page = http.get(authorize.as_str()).send().await.expect("page");
    let cookie = page.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("cookie")
        .to_owned();
    let fields = hidden_fields(&page.text().await.expect("html"));
    let mut form: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    form.extend([
        ("username", "alice"),
        ("password", "secret"),
        ("decision", "approve"),
    ]);
    let res = http
        .post(format!("{issuer}/authorize"))
        .header("cookie", cookie)
        .form(&form)
        .send()
        .await
        .expect("submit");
    assert_eq!(res.status(), 302);
    let location =
        url::Url::parse(res.headers()["location"].to_str().expect("ascii")).expect("url");
    let params: HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(params["iss"], issuer);
    let tokens: Value = http
        .post(format!("{issuer}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &params["code"]),
            ("client_id", client_id),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
            ("resource", dev.url()),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let (status, body) = call(
        &http,
        dev.url(),
        tokens["access_token"].as_str().expect("at"),
        "whoami",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["structuredContent"]["user"]["id"], "alice");
    assert_eq!(
        body["result"]["structuredContent"]["user"]["email"],
        "alice@example.com"
    );
    drop(dev);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn tokens_survive_a_restart() {
    let dir = temp_dir("restart");
    let http = reqwest::Client::new();
    let first = start(&dir, &[]);
    first.ready(&http).await;
    let token = first.info["token"].as_str().expect("token").to_owned();
    let first_url = first.url().to_owned();
    let reg: Value = http
        .post(format!("{}/register", first.issuer()))
        .json(&json!({"redirect_uris": ["http://127.0.0.1/callback"], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("json");
    let client_id = reg["client_id"].as_str().expect("client_id").to_owned();
    drop(first);
    // Same folder, same port: the signing key is the same, so the old token still verifies.
    let port = url::Url::parse(&first_url)
        .expect("url")
        .port()
        .expect("port")
        .to_string();
    let second = start_port(&dir, &port);
    second.ready(&http).await;
    let (status, body) = call(&http, second.url(), &token, "whoami").await;
    assert_eq!(status, 200, "{body}");
    // The client registered before the restart is still known (SQLite store).
    let mut authorize = url::Url::parse(&format!("{}/authorize", second.issuer())).expect("url");
    authorize.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", "http://127.0.0.1:5000/callback"),
        (
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        ),
        ("code_challenge_method", "S256"),
    ]);
    let page = http
        .get(authorize.as_str())
        .send()
        .await
        .expect("authorize");
    assert_eq!(
        page.status(),
        200,
        "{}",
        page.text().await.unwrap_or_default()
    );
    drop(second);
    let _ = std::fs::remove_dir_all(&dir);
}

fn start_port(dir: &Path, port: &str) -> Dev {
    // The port was just released by the previous server; retry briefly if it lingers.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
            .args(["dev", "--port", port, "--json", "--data-dir"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        if let Ok(info) = serde_json::from_str::<Value>(&line) {
            return Dev { child, info };
        }
        let _ = child.wait();
        assert!(Instant::now() < deadline, "port {port} did not come free");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(unix)]
#[tokio::test]
async fn ctrl_c_stops_it_cleanly() {
    let dir = temp_dir("sigint");
    let mut dev = start(&dir, &[]);
    let http = reqwest::Client::new();
    dev.ready(&http).await;
    let status = Command::new("kill")
        .args(["-INT", &dev.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = dev.child.try_wait().expect("wait") {
            break exit;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_flags_explain_themselves() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
        .args(["dev", "--port", "0", "--user", "nopassword", "--data-dir"])
        .arg(temp_dir("flags"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--user takes NAME:PASSWORD"));
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
        .args(["token", "--data-dir", "/nonexistent/mcp-oauth"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("mcp-oauth dev"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `mcp-oauth <args>` expecting it to refuse at once: its stderr. A command that is
/// still running after the deadline (it accepted the flags and serves) is killed and fails
/// the test.
fn refused(args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} was accepted: it is still running");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} was accepted: {stderr}");
    stderr
}

/// Security review 2, F4: the CLI listens on the network only behind an https public URL.
#[test]
fn a_non_loopback_listen_address_needs_an_https_public_url() {
    let dir = temp_dir("listen");
    let data = dir.to_str().expect("path");
    for extra in [
        &[][..],
        &["--public-url", "http://mcp.example.com"][..],
        &["--public-url", "not a url"][..],
    ] {
        let mut args = vec!["dev", "--listen", "0.0.0.0:0", "--data-dir", data];
        args.extend_from_slice(extra);
        let stderr = refused(&args);
        assert!(
            stderr.contains("not a loopback address") && stderr.contains("--public-url https://"),
            "{extra:?}: {stderr}"
        );
    }
    let stderr = refused(&[
        "proxy",
        "--provider",
        "github",
        "--client-id",
        "ghapp",
        "--client-secret",
        "s3cret",
        "--listen",
        "[::]:0",
        "--data-dir",
        data,
    ]);
    assert!(stderr.contains("--public-url https://"), "{stderr}");
    assert!(
        !dir.exists(),
        "nothing is written before the flags are checked"
    );
}

#[test]
fn a_bad_listen_address_or_trusted_proxy_says_what_to_write() {
    let dir = temp_dir("cidr");
    let data = dir.to_str().expect("path");
    for (flag, value, says) in [
        ("--trusted-proxy", "10.0.0.0/33", "0 to 32"),
        ("--trusted-proxy", "10.0.0.1/8", "the network is 10.0.0.0/8"),
        ("--trusted-proxy", "proxy.internal", "not an IP address"),
        ("--listen", "localhost:8080", "IP:PORT"),
    ] {
        let stderr = refused(&["dev", flag, value, "--data-dir", data]);
        assert!(stderr.contains(says), "{flag} {value}: {stderr}");
    }
}

#[tokio::test]
async fn listen_and_trusted_proxy_serve_on_the_given_address() {
    let dir = temp_dir("listen-ok");
    let dev = start(
        &dir,
        &["--listen", "127.0.0.1:0", "--trusted-proxy", "127.0.0.1"],
    );
    assert!(
        dev.issuer().starts_with("http://127.0.0.1:"),
        "{}",
        dev.issuer()
    );
    let http = reqwest::Client::new();
    dev.ready(&http).await;
    drop(dev);
    let _ = std::fs::remove_dir_all(&dir);
}
