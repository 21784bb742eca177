//! `mcp-oauth gateway` with `credentials = { kind = "user-secret" }`: a user without a token
//! gets the link to the page (and the upstream sees nothing), and the pages ask to sign in.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

type Seen = Arc<Mutex<Vec<http::HeaderMap>>>;

async fn record(State(seen): State<Seen>, req: Request, next: Next) -> Response {
    seen.lock().unwrap().push(req.headers().clone());
    next.run(req).await
}

#[tokio::test]
async fn a_user_without_a_token_gets_the_link_to_the_page() {
    let seen: Seen = Arc::default();
    let app = mcp_oauth_gateway::test_upstream::http_router()
        .layer(axum::middleware::from_fn_with_state(seen.clone(), record));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    // The gateway's port, fixed so that its page links are right.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("mcp-oauth-cli-gw-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.toml");
    std::fs::write(
        &file,
        format!(
            "[[upstream]]\nname = \"github\"\nurl = \"http://{upstream}/mcp\"\ncredentials = {{ kind = \"user-secret\", pattern = \"ghp_[a-z]{{8}}\", header = \"X-Api-Key\", format = \"token {{secret}}\" }}\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
        .args(["gateway", "--json", "--store", "memory", "--port"])
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(60),
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line),
    )
    .await
    .expect("the gateway printed its JSON line in time")
    .unwrap();
    let info: Value = serde_json::from_str(&line).unwrap();
    let url = info["mcp_url"].as_str().unwrap();
    let token = info["token"].as_str().unwrap();

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":7,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.headers().get("www-authenticate").is_none());
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["id"], 7);
    assert_eq!(body["error"]["code"], -32042, "{body}");
    let page = format!("http://127.0.0.1:{port}/gateway/secrets/github");
    assert_eq!(
        body["error"]["data"]["elicitations"][0]["url"], page,
        "{body}"
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing reached the upstream"
    );

    // The pages send a browser without a session to sign in at the gateway's own server.
    for path in [
        page.clone(),
        format!("http://127.0.0.1:{port}/gateway/connections"),
    ] {
        let response = client.get(&path).send().await.unwrap();
        assert_eq!(response.status(), 303, "{path}");
        let location = response.headers()["location"].to_str().unwrap();
        assert!(
            location.starts_with(&format!("http://127.0.0.1:{port}/authorize?")),
            "{location}"
        );
    }
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}
