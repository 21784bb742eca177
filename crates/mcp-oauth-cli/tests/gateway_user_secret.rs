//! `mcp-oauth gateway` with `credentials = { kind = "user-secret" }`: a user without a token
//! gets the link to the page (and the upstream sees nothing), and the pages ask to sign in.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

use support::gateway;
use support::process::{TempDir, free_port};

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
    let port = free_port();
    let tmp = TempDir::new("gw", "secret");
    let file = tmp.path().join("gateway.toml");
    std::fs::write(
        &file,
        format!(
            "[[upstream]]\nname = \"github\"\nurl = \"http://{upstream}/mcp\"\ncredentials = {{ kind = \"user-secret\", pattern = \"ghp_[a-z]{{8}}\", header = \"X-Api-Key\", format = \"token {{secret}}\" }}\n"
        ),
    )
    .unwrap();
    let (port_arg, data) = (port.to_string(), tmp.data());
    let args = [
        "--store",
        "memory",
        "--port",
        &port_arg,
        "--data-dir",
        data.to_str().unwrap(),
        "--config",
        file.to_str().unwrap(),
    ];
    let gateway = gateway::launch(&tmp, "gateway", &args, &[]).await;
    let (url, token) = (&gateway.mcp_url(), &gateway.token());

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
}
