//! `mcp-oauth gateway --identity-key store`: instances on one store sign identity tokens with
//! one key, which a restart keeps; `--identity-key file:PATH` likewise with a key file.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const JWKS_PATH: &str = mcp_oauth::gateway_identity::JWKS_PATH;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcp-oauth-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A gateway on the data folder `data` (its SQLite store and signing keys) in front of the
/// HTTP upstream `upstream`; the child (killed on drop) and its origin.
async fn start(data: &Path, upstream: &str, key: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
        .args(["gateway", "--port", "0", "--json", "--store", "sqlite"])
        .arg("--data-dir")
        .arg(data)
        .args(["--identity-header", "X-MCP-Identity", "--identity-key", key])
        .args(["--upstream", upstream])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    tokio::time::timeout(
        Duration::from_secs(60),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .expect("the gateway printed its JSON line in time")
    .expect("read");
    let info: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
    let url = info["mcp_url"].as_str().unwrap();
    (child, url.trim_end_matches("/mcp").to_owned())
}

async fn kids(origin: &str) -> Vec<String> {
    let set: Value = reqwest::get(format!("{origin}{JWKS_PATH}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

async fn upstream() -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, mcp_oauth_gateway::test_upstream::http_router())
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    (format!("http://{addr}/mcp"), stop)
}

#[tokio::test]
async fn instances_on_one_store_publish_one_key_that_a_restart_keeps() {
    let (upstream, _stop) = upstream().await;
    let data = temp_dir("identity-store");
    let (first, first_origin) = start(&data, &upstream, "store").await;
    let (second, second_origin) = start(&data, &upstream, "store").await;
    let key = kids(&first_origin).await;
    assert_eq!(key.len(), 1);
    assert_eq!(
        kids(&second_origin).await,
        key,
        "one key for both instances"
    );
    drop((first, second));
    let (_again, origin) = start(&data, &upstream, "store").await;
    assert_eq!(kids(&origin).await, key, "the restart kept it");
    // Another store (another data folder): another key.
    let other = temp_dir("identity-store-other");
    let (_other, other_origin) = start(&other, &upstream, "store").await;
    assert_ne!(kids(&other_origin).await, key);
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&other);
}

#[tokio::test]
async fn a_key_file_is_made_once_and_kept() {
    let (upstream, _stop) = upstream().await;
    let data = temp_dir("identity-file");
    let file = data.join("identity.pem");
    let source = format!("file:{}", file.display());
    let (first, origin) = start(&data, &upstream, &source).await;
    let key = kids(&origin).await;
    assert!(file.exists());
    drop(first);
    let (_again, origin) = start(&data, &upstream, &source).await;
    assert_eq!(kids(&origin).await, key);
    // A wrong value is refused before anything starts, saying what to write.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
        .args([
            "gateway",
            "--identity-key",
            "/etc/key.pem",
            "--upstream",
            &upstream,
        ])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("file:PATH"), "{stderr}");
    let _ = std::fs::remove_dir_all(&data);
}
