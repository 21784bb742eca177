//! The credential vault on Redis and on PostgreSQL, shared by two gateway instances (two
//! connections): what one puts the other reads, lists and revokes, and concurrent puts of one
//! user from both keep every entry in the user's index. And the pages' sign-out there: a
//! session signed out on one instance is refused by the other. Needs `redis-server`
//! (`scripts/redis-server` installs it; `MCP_OAUTH_REDIS_SERVER` names another binary) and a
//! PostgreSQL server named by `MCP_OAUTH_POSTGRES_URL` (`scripts/postgres-server start`, which
//! `scripts/test` runs).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod browser;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_oauth::auth_server::store::{PostgresStore, RedisStore, Store};
use mcp_oauth_gateway::vault::{EntryKind, Vault, VaultError};

async fn connect(url: &str) -> Arc<dyn Store> {
    connect_with(url, "vault-test:").await
}

async fn connect_with(url: &str, prefix: &str) -> Arc<dyn Store> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match RedisStore::connect(url, prefix).await {
            Ok(store) => return Arc::new(store),
            Err(err) if Instant::now() < deadline => {
                let _ = err;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("redis-server at {url} did not answer: {err}"),
        }
    }
}

/// A `redis-server` on a free loopback port (stopped when the child is dropped), its URL,
/// and its folder.
fn redis_server() -> (tokio::process::Child, String, PathBuf) {
    let binary = std::env::var_os("MCP_OAUTH_REDIS_SERVER")
        .map_or_else(|| PathBuf::from("/usr/bin/redis-server"), PathBuf::from);
    assert!(
        binary.exists(),
        "{} is missing: run scripts/redis-server, or point MCP_OAUTH_REDIS_SERVER at a redis-server binary",
        binary.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!(
        "mcp-oauth-vault-redis-{}-{port}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let server = tokio::process::Command::new(&binary)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start redis-server");
    (server, format!("redis://127.0.0.1:{port}"), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_vault_on_redis() {
    let (_server, url, dir) = redis_server();
    let a = Vault::new(connect(&url).await, &[4; 32]).unwrap();
    let b = Vault::new(connect(&url).await, &[4; 32]).unwrap();
    let stranger = Vault::new(connect(&url).await, &[5; 32]).unwrap();
    shared(a, b, stranger, "alice").await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_vault_on_postgres() {
    let url = std::env::var("MCP_OAUTH_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "MCP_OAUTH_POSTGRES_URL is not set: run `export MCP_OAUTH_POSTGRES_URL=$(scripts/postgres-server start)`, or scripts/test"
        )
    });
    let store = || async {
        Arc::new(PostgresStore::connect(&url).await.expect("postgres")) as Arc<dyn Store>
    };
    let a = Vault::new(store().await, &[4; 32]).unwrap();
    let b = Vault::new(store().await, &[4; 32]).unwrap();
    let stranger = Vault::new(store().await, &[5; 32]).unwrap();
    // A user of this run only: the server may hold other runs' records.
    let user = format!("alice-{}-{:?}", std::process::id(), Instant::now());
    shared(a, b, stranger, &user).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_session_signed_out_on_one_instance_is_refused_by_the_other_on_redis() {
    let (_server, url, dir) = redis_server();
    browser::sign_out_reaches_every_instance(
        connect_with(&url, "pages-test:").await,
        connect_with(&url, "pages-test:").await,
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_session_signed_out_on_one_instance_is_refused_by_the_other_on_postgres() {
    let url = std::env::var("MCP_OAUTH_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "MCP_OAUTH_POSTGRES_URL is not set: run `export MCP_OAUTH_POSTGRES_URL=$(scripts/postgres-server start)`, or scripts/test"
        )
    });
    let store = || async {
        Arc::new(PostgresStore::connect(&url).await.expect("postgres")) as Arc<dyn Store>
    };
    browser::sign_out_reaches_every_instance(store().await, store().await).await;
}

/// Two instances `a` and `b` on one store; `stranger` on it with another key.
async fn shared(a: Vault, b: Vault, stranger: Vault, alice: &str) {
    a.put(alice, "github", EntryKind::UserSecret, b"ghp_alice", None)
        .await
        .unwrap();
    let entry = b
        .get(alice, "github", EntryKind::UserSecret)
        .await
        .unwrap()
        .expect("the other instance reads it");
    assert_eq!(entry.secret.expose(), b"ghp_alice");
    assert!(
        b.get("bob", "github", EntryKind::UserSecret)
            .await
            .unwrap()
            .is_none()
    );

    let mut tasks = Vec::new();
    for i in 0..10 {
        let vault = if i % 2 == 0 { a.clone() } else { b.clone() };
        let alice = alice.to_owned();
        tasks.push(tokio::spawn(async move {
            vault
                .put(&alice, &format!("up{i}"), EntryKind::UserOauth, b"g", None)
                .await
                .unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(a.list(alice).await.unwrap().len(), 11);

    assert!(
        b.revoke(alice, "github", EntryKind::UserSecret)
            .await
            .unwrap()
    );
    assert!(
        a.get(alice, "github", EntryKind::UserSecret)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(a.list(alice).await.unwrap().len(), 10);

    // Another key on the same store does not open the entries.
    assert!(matches!(
        stranger.get(alice, "up0", EntryKind::UserOauth).await,
        Err(VaultError::Unreadable)
    ));
}
