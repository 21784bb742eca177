//! `mcp-oauth dev` with an access policy, as a user runs it: `--policy demo` keeps the banner's
//! `whoami` working while refusing what the demo rules refuse, `--allow-domain` refuses a user
//! at sign-in, `--audit` writes the decisions, and a broken policy stops the start.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(20);

struct Dev {
    child: Child,
    info: Value,
    dir: PathBuf,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mcp-oauth-cli-policy-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn start(name: &str, extra: &[&str]) -> Dev {
    let dir = temp_dir(name);
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
        .args(["dev", "--port", "0", "--json", "--data-dir"])
        .arg(&dir)
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
    let dev = Dev { child, info, dir };
    let http = reqwest::Client::new();
    let prm = format!("{}/.well-known/oauth-protected-resource/mcp", dev.issuer());
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if http
            .get(&prm)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return dev;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("mcp-oauth dev did not become ready");
}

impl Dev {
    fn url(&self) -> &str {
        self.info["mcp_url"].as_str().expect("mcp_url")
    }

    fn issuer(&self) -> &str {
        self.info["issuer"].as_str().expect("issuer")
    }

    fn token(&self) -> &str {
        self.info["token"].as_str().expect("token")
    }

    /// A token from `mcp-oauth token` (the dev server's key) for `sub` with `scope`.
    fn mint(&self, sub: &str, scope: &str) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
            .args(["token", "--sub", sub, "--scope", scope, "--data-dir"])
            .arg(&self.dir)
            .output()
            .expect("token");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf8")
            .trim()
            .to_owned()
    }

    async fn rpc(&self, token: &str, body: Value) -> (u16, Value) {
        let res = reqwest::Client::new()
            .post(self.url())
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

    async fn call(&self, token: &str, tool: &str, arguments: Value) -> (u16, Value) {
        self.rpc(
            token,
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}),
        )
        .await
    }
}

#[tokio::test]
async fn the_demo_policy_keeps_whoami_and_refuses_what_its_rules_refuse() {
    let audit = temp_dir("audit-file").with_extension("jsonl");
    let dev = start(
        "demo",
        &["--policy", "demo", "--audit", audit.to_str().expect("path")],
    )
    .await;
    // The README's quick start: the banner token calls whoami.
    let (status, body) = dev.call(dev.token(), "whoami", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["structuredContent"]["user"]["id"], "dev");
    let (_, body) = dev.call(dev.token(), "echo", json!({"text": "hi"})).await;
    assert_eq!(body["result"]["content"][0]["text"], "hi", "{body}");
    let (status, body) = dev
        .call(dev.token(), "echo", json!({"text": "secret"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["error"]["data"]["rule_ids"],
        json!(["no-echo-secrets"]),
        "{body}"
    );
    // The list shows the dev user what it may call: not admin_action (admins only).
    let (_, body) = dev
        .rpc(
            dev.token(),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .await;
    let names: Vec<&str> = body["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["whoami", "echo"]);
    // The admin scope alone is not enough: the admins group is.
    let eve = dev.mint("eve", "mcp:read admin");
    let (_, body) = dev.call(&eve, "admin_action", json!({})).await;
    assert!(body["error"].is_object(), "{body}");
    let admin = dev.mint("admin", "mcp:read admin");
    let (status, body) = dev.call(&admin, "admin_action", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"]["content"][0]["text"],
        "admin action done by admin"
    );

    let deadline = Instant::now() + DEADLINE;
    let lines = loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        if lines.len() >= 5 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let _ = std::fs::remove_file(&audit);
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert!(lines.iter().any(|l| l["tool"] == "echo"
        && l["decision"]["effect"] == "deny"
        && l["decision"]["rule_ids"] == json!(["no-echo-secrets"])));
}

#[tokio::test]
async fn without_a_policy_every_tool_is_listed() {
    let dev = start("none", &[]).await;
    let (_, body) = dev
        .rpc(
            dev.token(),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .await;
    assert_eq!(body["result"]["tools"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn allow_domain_refuses_a_user_outside_it_at_sign_in() {
    let dev = start("allow", &["--allow-domain", "other.org", "--auto-approve"]).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let registered: Value = http
        .post(format!("{}/register", dev.issuer()))
        .json(&json!({"redirect_uris": ["http://127.0.0.1/callback"], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("json");
    let client = registered["client_id"].as_str().expect("client_id");
    let mut url = url::Url::parse(&format!("{}/authorize", dev.issuer())).expect("url");
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client)
        .append_pair("redirect_uri", "http://127.0.0.1:40000/callback")
        .append_pair("state", "s")
        .append_pair(
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        )
        .append_pair("code_challenge_method", "S256")
        .append_pair("scope", "mcp:read")
        .append_pair("resource", dev.url());
    let res = http.get(url).send().await.expect("authorize");
    assert_eq!(res.status(), 302);
    let location = res.headers()["location"].to_str().expect("ascii");
    let back: std::collections::HashMap<String, String> = url::Url::parse(location)
        .expect("url")
        .query_pairs()
        .into_owned()
        .collect();
    // The dev user is dev@example.com.
    assert_eq!(
        back.get("error").map(String::as_str),
        Some("access_denied"),
        "{location}"
    );
    assert!(!back.contains_key("code"));
}

#[test]
fn a_policy_that_does_not_fit_the_tools_stops_the_start_naming_the_rule() {
    let dir = temp_dir("typo");
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("typo.toml");
    std::fs::write(
        &file,
        "[[policy.rule]]\nid = \"echo-hi\"\ntools = [\"echo\"]\nargs.txt = { one_of = [\"hi\"] }\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
        .args(["dev", "--port", "0", "--json", "--policy"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .expect("run");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("echo-hi") && err.contains("txt"), "{err}");
}

/// `mcp-oauth serve --policy demo` in front of an issuer known by its public key: the tool
/// rules decide (the issuer signs users in, so sign-in rules do not apply here).
#[tokio::test]
async fn serve_enforces_the_tool_rules_of_its_policy() {
    use mcp_oauth::testing::TestKey;

    let dir = temp_dir("serve");
    std::fs::create_dir_all(&dir).expect("dir");
    let key = TestKey::es256();
    let pem = dir.join("key.pem");
    std::fs::write(&pem, key.public_key_pem().expect("pem")).expect("write");
    let issuer = "http://127.0.0.1:9/";
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mcp_url = format!("http://127.0.0.1:{port}/mcp");
    let child = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
        .args([
            "serve",
            "--issuer",
            issuer,
            "--mcp-url",
            &mcp_url,
            "--scopes",
            "mcp:read",
        ])
        .args(["--policy", "demo", "--public-key"])
        .arg(&pem)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let dev = Dev {
        child,
        info: json!({"mcp_url": mcp_url, "issuer": format!("http://127.0.0.1:{port}")}),
        dir,
    };
    let http = reqwest::Client::new();
    let prm = format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp");
    let deadline = Instant::now() + DEADLINE;
    while !http
        .get(&prm)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            Instant::now() < deadline,
            "mcp-oauth serve did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let token = |sub: &str, email: &str| {
        key.token()
            .iss(issuer)
            .sub(sub)
            .aud(&mcp_url)
            .claim("email", email)
            .scope("mcp:read")
            .exp_in(300)
            .sign()
    };
    let staff = token("u-1", "ann@example.com");
    let (status, body) = dev.call(&staff, "echo", json!({"text": "hi"})).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["content"][0]["text"], "hi", "{body}");
    let outsider = token("u-2", "olaf@elsewhere.org");
    let (_, body) = dev.call(&outsider, "echo", json!({"text": "hi"})).await;
    assert_eq!(body["error"]["code"], -32003, "{body}");
    let (_, body) = dev.call(&outsider, "whoami", json!({})).await;
    assert_eq!(
        body["result"]["structuredContent"]["user"]["id"], "u-2",
        "{body}"
    );
}
