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

/// A fresh folder under the system's temporary directory, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "mcp-oauth-serve-{name}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `mcp-oauth serve` with `args`, none of the variables it reads inherited, stdout discarded
/// and stderr kept for [`stop`].
fn spawn_serve(args: &[&str], dir: Option<&std::path::Path>) -> Killed {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"));
    command.arg("serve").args(args);
    for name in [
        "OIDC_ISSUER",
        "MCP_URL",
        "OIDC_AUDIENCE",
        "OIDC_SCOPES",
        "MCP_LISTEN",
    ] {
        command.env_remove(name);
    }
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    Killed(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
    )
}

/// Stops the server and returns what it wrote on stderr.
fn stop(mut child: Killed) -> String {
    let mut stderr = child.0.stderr.take().expect("stderr");
    drop(child);
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut text).expect("read stderr");
    text
}

/// Runs `mcp-oauth serve` to its end off the runtime's threads (the mock issuer keeps
/// answering meanwhile) and returns its exit success and stderr.
async fn serve_fails(args: &[&str], dir: Option<&std::path::Path>) -> String {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let dir = dir.map(std::path::Path::to_owned);
    let out = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"));
        command.arg("serve").args(&args);
        for name in [
            "OIDC_ISSUER",
            "MCP_URL",
            "OIDC_AUDIENCE",
            "OIDC_SCOPES",
            "MCP_LISTEN",
        ] {
            command.env_remove(name);
        }
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        command.stdin(Stdio::null()).output().expect("run")
    })
    .await
    .expect("join");
    assert!(!out.status.success(), "mcp-oauth serve should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn metadata(http: &reqwest::Client, port: u16) -> Value {
    http.get(format!(
        "http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp"
    ))
    .send()
    .await
    .expect("get")
    .json()
    .await
    .expect("json")
}

async fn whoami(http: &reqwest::Client, mcp_url: &str, token: &str) -> reqwest::Response {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}});
    http.post(mcp_url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.to_string())
        .send()
        .await
        .expect("post")
}

#[tokio::test]
async fn without_scopes_the_issuers_resource_scopes_are_advertised() {
    // The mock issuer lists openid, mcp:read and mcp:write; the demo's admin_action needs
    // admin, which it does not list.
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let port = free_port();
    let mcp_url = format!("http://127.0.0.1:{port}/mcp");
    let mut child = spawn_serve(&["--issuer", idp.issuer(), "--mcp-url", &mcp_url], None);
    let http = reqwest::Client::new();
    wait_ready(
        &http,
        &format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp"),
        &mut child.0,
    )
    .await;

    let doc = metadata(&http, port).await;
    assert_eq!(doc["scopes_supported"], json!(["mcp:read", "mcp:write"]));
    let res = http.post(&mcp_url).send().await.expect("post");
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()["www-authenticate"],
        format!(r#"Bearer resource_metadata="http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp", scope="mcp:read mcp:write""#).as_str()
    );
    let stderr = stop(child);
    assert!(
        stderr.contains(r#"requires the scope "admin""#) && stderr.contains("OIDC_SCOPES"),
        "{stderr}"
    );
    idp.shutdown().await;
}

#[tokio::test]
async fn without_scopes_or_issuer_metadata_the_error_says_to_set_oidc_scopes() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    idp.set_metadata_status(Some(404));
    let mcp_url = format!("http://127.0.0.1:{}/mcp", free_port());
    let stderr = serve_fails(&["--issuer", idp.issuer(), "--mcp-url", &mcp_url], None).await;
    assert!(
        stderr.contains("cannot read the issuer's metadata to choose the scopes")
            && stderr.contains("set OIDC_SCOPES"),
        "{stderr}"
    );
    idp.shutdown().await;
}

#[tokio::test]
async fn a_public_listener_without_a_public_url_is_refused() {
    // Refused before anything is bound or fetched: the issuer is never asked.
    let listen = format!("0.0.0.0:{}", free_port());
    let stderr = serve_fails(
        &[
            "--issuer",
            "http://127.0.0.1:9/",
            "--scopes",
            "mcp:read",
            "--listen",
            &listen,
        ],
        None,
    )
    .await;
    assert!(
        stderr.contains(&format!(
            "no public URL: --listen {listen} is not a loopback address"
        )) && stderr.contains("set --mcp-url (MCP_URL)"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_listen_address_is_apart_from_the_public_url() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let public = "https://mcp.example.com/mcp";
    let mut child = spawn_serve(
        &[
            "--issuer",
            idp.issuer(),
            "--mcp-url",
            public,
            "--listen",
            &listen,
            "--scopes",
            "mcp:read",
        ],
        None,
    );
    let http = reqwest::Client::new();
    wait_ready(
        &http,
        &format!("http://{listen}/.well-known/oauth-protected-resource/mcp"),
        &mut child.0,
    )
    .await;
    let doc = metadata(&http, port).await;
    assert_eq!(doc["resource"], public);
    let token = idp.token().aud(public).scope("mcp:read").sign();
    let res = whoami(&http, &format!("http://{listen}/mcp"), &token).await;
    assert_eq!(res.status(), 200);
    drop(child);
    idp.shutdown().await;
}

#[tokio::test]
async fn a_static_public_key_verifies_without_discovery() {
    // The issuer is never fetched: nothing listens there.
    let issuer = format!("http://127.0.0.1:{}", free_port());
    let key = TestKey::es256();
    let dir = TempDir::new("public-key");
    let pem = dir.0.join("key.pem");
    std::fs::write(&pem, key.public_key_pem().expect("pem")).expect("write");
    let jwks = dir.0.join("jwks.json");
    std::fs::write(
        &jwks,
        serde_json::to_string(&TestKey::jwks(&[&key])).expect("json"),
    )
    .expect("write");
    let jwk = dir.0.join("jwk.json");
    std::fs::write(
        &jwk,
        serde_json::to_string(&key.public_jwk().expect("jwk")).expect("json"),
    )
    .expect("write");

    for file in [&pem, &jwks, &jwk] {
        let port = free_port();
        let mcp_url = format!("http://127.0.0.1:{port}/mcp");
        let mut child = spawn_serve(
            &[
                "--issuer",
                &issuer,
                "--mcp-url",
                &mcp_url,
                "--scopes",
                "mcp:read",
                "--public-key",
                file.to_str().expect("utf-8 path"),
            ],
            None,
        );
        let http = reqwest::Client::new();
        wait_ready(
            &http,
            &format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp"),
            &mut child.0,
        )
        .await;
        let token = key
            .token()
            .iss(&issuer)
            .sub("erin")
            .aud(&mcp_url)
            .scope("mcp:read")
            .exp_in(300)
            .sign();
        let res = whoami(&http, &mcp_url, &token).await;
        assert_eq!(res.status(), 200, "{}", file.display());
        let reply: Value = res.json().await.expect("json");
        assert_eq!(reply["result"]["structuredContent"]["user"]["id"], "erin");

        let other = TestKey::es256()
            .token()
            .iss(&issuer)
            .aud(&mcp_url)
            .scope("mcp:read")
            .exp_in(300)
            .sign();
        let res = whoami(&http, &mcp_url, &other).await;
        assert_eq!(res.status(), 401, "{}", file.display());
        drop(child);
    }

    let private = dir.0.join("private.pem");
    std::fs::write(&private, key.key().to_pkcs8_pem().expect("pem")).expect("write");
    let stderr = serve_fails(
        &[
            "--issuer",
            &issuer,
            "--scopes",
            "mcp:read",
            "--public-key",
            private.to_str().expect("utf-8 path"),
        ],
        None,
    )
    .await;
    assert!(
        stderr.contains("a private key does not belong here"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_dotenv_file_in_the_current_directory_is_read() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let port = free_port();
    let mcp_url = format!("http://127.0.0.1:{port}/mcp");
    let dir = TempDir::new("dotenv");
    std::fs::write(
        dir.0.join(".env"),
        format!(
            "# what mcp-use users keep in .env\nOIDC_ISSUER={}\nMCP_URL={mcp_url}\nexport OIDC_SCOPES=\"mcp:read mcp:write\"\n",
            idp.issuer()
        ),
    )
    .expect("write");
    let mut child = spawn_serve(&[], Some(&dir.0));
    let http = reqwest::Client::new();
    wait_ready(
        &http,
        &format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp"),
        &mut child.0,
    )
    .await;
    let doc = metadata(&http, port).await;
    assert_eq!(doc["resource"], mcp_url.as_str());
    assert_eq!(doc["authorization_servers"], json!([idp.issuer()]));
    assert_eq!(doc["scopes_supported"], json!(["mcp:read", "mcp:write"]));
    drop(child);

    // A malformed line stops the command, named by its number and variable, not its value.
    std::fs::write(
        dir.0.join(".env"),
        format!(
            "OIDC_ISSUER={}\nOIDC_SCOPES=mcp:read mcp:write\n",
            idp.issuer()
        ),
    )
    .expect("write");
    let stderr = serve_fails(&[], Some(&dir.0)).await;
    assert!(
        stderr.contains(".env: line 2 (setting OIDC_SCOPES) is not NAME=value"),
        "{stderr}"
    );
    assert!(!stderr.contains("mcp:write"), "{stderr}");
    idp.shutdown().await;
}

#[tokio::test]
async fn repeated_issuers_are_each_trusted_with_their_own_keys() {
    let a = MockIdp::start(TestKey::es256()).await.expect("idp a");
    let b = MockIdp::start(TestKey::rs256()).await.expect("idp b");
    let port = free_port();
    let mcp_url = format!("http://127.0.0.1:{port}/mcp");
    let mut child = spawn_serve(
        &[
            "--issuer",
            b.issuer(),
            "--issuer",
            a.issuer(),
            "--mcp-url",
            &mcp_url,
            "--scopes",
            "mcp:read",
        ],
        None,
    );
    let http = reqwest::Client::new();
    wait_ready(
        &http,
        &format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp"),
        &mut child.0,
    )
    .await;
    let doc = metadata(&http, port).await;
    assert_eq!(
        doc["authorization_servers"],
        json!([b.issuer(), a.issuer()])
    );
    for (idp, sub) in [(&a, "ann"), (&b, "bob")] {
        let token = idp.token().sub(sub).aud(&mcp_url).scope("mcp:read").sign();
        let res = whoami(&http, &mcp_url, &token).await;
        assert_eq!(res.status(), 200, "{sub}");
        let reply: Value = res.json().await.expect("json");
        assert_eq!(reply["result"]["structuredContent"]["user"]["id"], sub);
    }
    // A's key claiming B, and an issuer nobody configured: refused, nothing fetched for it.
    let hits = a.jwks_hits() + b.jwks_hits();
    for token in [
        a.key().token().iss(b.issuer()).aud(&mcp_url).sign(),
        a.key()
            .token()
            .iss("http://127.0.0.1:1/evil")
            .aud(&mcp_url)
            .sign(),
    ] {
        let res = whoami(&http, &mcp_url, &token).await;
        assert_eq!(res.status(), 401);
        let challenge = res.headers()["www-authenticate"].to_str().expect("ascii");
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{challenge}"
        );
    }
    assert!(
        a.jwks_hits() + b.jwks_hits() <= hits + 1,
        "at most B's refresh for an unknown kid"
    );
    stop(child);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_public_key_with_several_issuers_is_refused() {
    let stderr = serve_fails(
        &[
            "--issuer",
            "http://127.0.0.1:1",
            "--issuer",
            "http://127.0.0.1:2",
            "--public-key",
            "/nonexistent.pem",
            "--scopes",
            "mcp:read",
        ],
        None,
    )
    .await;
    assert!(
        stderr.contains("--public-key gives the keys of one issuer"),
        "{stderr}"
    );
}
