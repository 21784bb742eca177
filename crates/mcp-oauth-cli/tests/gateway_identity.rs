//! `mcp-oauth gateway --identity-key store`: instances on one store sign identity tokens with
//! one key, which a restart keeps; `--identity-key file:PATH` likewise with a key file.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use support::gateway;
use support::process::{Run, Served, TempDir, free_port, run_async};

const JWKS_PATH: &str = mcp_oauth::gateway_identity::JWKS_PATH;

/// A gateway on the data folder `data` (its SQLite store and signing keys) in front of the
/// HTTP upstream `upstream`, its log in `data`; the process (killed on drop) and its origin.
async fn start(data: &TempDir, upstream: &str, key: &str) -> (Served, String) {
    let (gateway, origin, _) = start_with_token(data, upstream, key).await;
    (gateway, origin)
}

/// [`start`], with the banner's token.
async fn start_with_token(data: &TempDir, upstream: &str, key: &str) -> (Served, String, String) {
    start_with(data, upstream, key, &[]).await
}

/// [`start_with_token`], with `extra` options.
async fn start_with(
    data: &TempDir,
    upstream: &str,
    key: &str,
    extra: &[&str],
) -> (Served, String, String) {
    start_on(data, "sqlite", upstream, key, extra).await
}

/// `mcp-oauth gateway --port 0 --json --store STORE --data-dir <data>` with an identity
/// header signed with `key`, in front of `upstream`; the process, its origin and the token of
/// its JSON line (empty without one).
async fn start_on(
    data: &TempDir,
    store: &str,
    upstream: &str,
    key: &str,
    extra: &[&str],
) -> (Served, String, String) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!("gateway-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let dir = data.path().to_str().unwrap();
    let mut args = vec!["--port", "0", "--store", store, "--data-dir", dir];
    args.extend_from_slice(extra);
    args.extend(["--identity-header", "X-MCP-Identity", "--identity-key", key]);
    args.extend(["--upstream", upstream]);
    let gateway = gateway::launch(data, &name, &args, &[]).await;
    let origin = gateway.mcp_url().trim_end_matches("/mcp").to_owned();
    let token = gateway.info["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (gateway, origin, token)
}

async fn jwks_text(origin: &str) -> String {
    reqwest::get(format!("{origin}{JWKS_PATH}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
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

type Seen = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// The test upstream over HTTP.
async fn upstream() -> (String, tokio::sync::oneshot::Sender<()>) {
    let (url, stop, _) = recording_upstream().await;
    (url, stop)
}

/// The test upstream over HTTP, keeping every identity token it is sent.
async fn recording_upstream() -> (String, tokio::sync::oneshot::Sender<()>, Seen) {
    let seen = Seen::default();
    let record = seen.clone();
    let app = mcp_oauth_gateway::test_upstream::http_router().layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            if let Some(token) = req.headers().get("x-mcp-identity") {
                record
                    .lock()
                    .unwrap()
                    .push(token.to_str().unwrap().to_owned());
            }
            next.run(req)
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    (format!("http://{addr}/mcp"), stop, seen)
}

#[tokio::test]
async fn instances_on_one_store_publish_one_key_that_a_restart_keeps() {
    let (upstream, _stop, seen) = recording_upstream().await;
    let data = TempDir::new("gw", "identity-store");
    let (first, first_origin, token) = start_with_token(&data, &upstream, "store").await;
    let (second, second_origin) = start(&data, &upstream, "store").await;
    let key = kids(&first_origin).await;
    assert_eq!(key.len(), 1);
    assert_eq!(
        kids(&second_origin).await,
        key,
        "one key for both instances"
    );
    // What the first instance signs verifies with the key set the second publishes.
    let init = reqwest::Client::new()
        .post(format!("{first_origin}/mcp"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), 200);
    let signed = seen
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("an identity token");
    let verifier = mcp_oauth::gateway_identity::IdentityVerifier::with_jwks(
        &first_origin,
        &upstream,
        &jwks_text(&second_origin).await,
    )
    .unwrap();
    assert_eq!(verifier.verify(&signed).await.unwrap().subject, "dev");
    drop((first, second));
    let (_again, origin) = start(&data, &upstream, "store").await;
    assert_eq!(kids(&origin).await, key, "the restart kept it");
    // Another store (another data folder): another key.
    let other = TempDir::new("gw", "identity-store-other");
    let (_other, other_origin) = start(&other, &upstream, "store").await;
    assert_ne!(kids(&other_origin).await, key);
}

/// `mcp-oauth gateway rotate-identity-key` on the data folder `data` (its SQLite store).
async fn rotate(data: &TempDir, extra: &[&str]) -> Run {
    let dir = data.path().to_str().unwrap();
    let mut args = vec!["gateway", "--store", "sqlite", "--data-dir", dir];
    args.extend_from_slice(extra);
    run_async(&args, &[], None).await
}

#[tokio::test]
async fn a_rotation_adds_a_key_that_running_instances_follow() {
    let (upstream, _stop) = upstream().await;
    let data = TempDir::new("gw", "identity-rotate");
    // With --encryption-key (the instances' shared key) the stored record is sealed.
    let sealing = [
        "--encryption-key",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    ];
    let (_running, origin, _) = start_with(&data, &upstream, "store", &sealing).await;
    let before = kids(&origin).await;
    assert_eq!(before.len(), 1);
    let out = rotate(
        &data,
        &[
            sealing[0],
            sealing[1],
            "--identity-key",
            "store",
            "rotate-identity-key",
            "--grace",
            "600",
        ],
    )
    .await;
    let stdout = out.stdout;
    assert_eq!(out.code, 0, "{stdout}{}", out.stderr);
    assert!(stdout.contains("identity key rotated"), "{stdout}");
    assert!(stdout.contains(&before[0]), "{stdout}");
    // The running instance follows the record (it reads it every 30 s): the new key first,
    // the old one still published.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let after = loop {
        let now = kids(&origin).await;
        if now.len() == 2 {
            break now;
        }
        assert!(std::time::Instant::now() < deadline, "still {now:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(after[1], before[0]);
    assert!(stdout.contains(&after[0]), "{stdout}");
    // The store's record is sealed: no private key in the SQLite file.
    let db: Vec<u8> = std::fs::read_dir(data.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".sqlite"))
        .flat_map(|e| std::fs::read(e.path()).unwrap_or_default())
        .collect();
    assert!(!db.is_empty(), "a SQLite file in {}", data.path().display());
    assert!(!String::from_utf8_lossy(&db).contains("PRIVATE KEY"));
    // Nonsense is refused saying what to write; without the key the record does not open.
    for (extra, says) in [
        (
            &["--identity-key", "store", "rotate-identity-key"][..],
            "give --encryption-key",
        ),
        (
            &[
                "--identity-key",
                "store",
                "rotate-identity-key",
                "--grace",
                "5",
            ][..],
            "from 120",
        ),
        (
            &["--identity-key", "file:k.pem", "rotate-identity-key"][..],
            "for --identity-key store",
        ),
        (&["rotate-identity-key"][..], "for --identity-key store"),
    ] {
        let out = rotate(&data, extra).await;
        let stderr = out.stderr;
        assert_ne!(out.code, 0, "{extra:?}");
        assert!(stderr.contains(says), "{extra:?}: {stderr}");
    }
}

#[tokio::test]
async fn a_key_file_is_made_once_and_kept() {
    let (upstream, _stop) = upstream().await;
    let data = TempDir::new("gw", "identity-file");
    let file = data.path().join("identity.pem");
    let source = format!("file:{}", file.display());
    let (first, origin) = start(&data, &upstream, &source).await;
    let key = kids(&origin).await;
    assert!(file.exists());
    drop(first);
    let (_again, origin) = start(&data, &upstream, &source).await;
    assert_eq!(kids(&origin).await, key);
    // A wrong value is refused before anything starts, saying what to write.
    let out = run_async(
        &[
            "gateway",
            "--identity-key",
            "/etc/key.pem",
            "--upstream",
            &upstream,
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
        &[],
        None,
    )
    .await;
    assert_ne!(out.code, 0);
    let stderr = out.stderr;
    assert!(stderr.contains("file:PATH"), "{stderr}");
}

/// A private `redis-server` on a free loopback port, without persistence; killed on drop.
struct Redis {
    child: std::process::Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn redis() -> Redis {
    let binary = std::env::var_os("MCP_OAUTH_REDIS_SERVER")
        .map_or_else(|| PathBuf::from("/usr/bin/redis-server"), PathBuf::from);
    assert!(
        binary.exists(),
        "{} is missing: run scripts/redis-server, or point MCP_OAUTH_REDIS_SERVER at a redis-server binary",
        binary.display()
    );
    let port = free_port();
    let dir = TempDir::new("gw", "identity-redis-data");
    let child = std::process::Command::new(&binary)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let redis = Redis {
        child,
        port,
        _dir: dir,
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    redis
}

/// On Redis: two instances with data folders of their own (their own authorization-server
/// keys) sign identity tokens with the one key the store holds.
#[tokio::test]
async fn instances_on_one_redis_share_the_key() {
    let redis = redis().await;
    let (upstream, _stop) = upstream().await;
    let store = format!("redis://127.0.0.1:{}", redis.port);
    let (a_data, b_data) = (
        TempDir::new("gw", "identity-redis-a"),
        TempDir::new("gw", "identity-redis-b"),
    );
    let (_a, a, _) = start_on(&a_data, &store, &upstream, "store", &[]).await;
    let (_b, b, _) = start_on(&b_data, &store, &upstream, "store", &[]).await;
    let key = kids(&a).await;
    assert_eq!(key.len(), 1);
    assert_eq!(kids(&b).await, key);
}
