//! `mcp-oauth gateway` with `credentials = { kind = "user-oauth", … }`: a user who has not
//! connected is told where (the JSON-RPC action-required error with the link), and nothing
//! reaches the upstream; the connect link asks a visitor to sign in first; the gateway
//! publishes its Client ID Metadata Document.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use support::gateway;
use support::process::TempDir;

#[tokio::test]
async fn a_user_oauth_upstream_asks_to_connect_and_publishes_the_client_metadata() {
    // The upstream counts what reaches it.
    let reached = Arc::new(AtomicUsize::new(0));
    let seen = reached.clone();
    let app = mcp_oauth_gateway::test_upstream::http_router().layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            seen.fetch_add(1, Ordering::SeqCst);
            next.run(req)
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let tmp = TempDir::new("gw", "user-oauth");
    let file = tmp.path().join("gateway.toml");
    std::fs::write(
        &file,
        format!(
            r#"[[upstream]]
name = "notes"
url = "http://{upstream}/mcp"
credentials = {{ kind = "user-oauth", client_id = "gateway", authorization_endpoint = "http://127.0.0.1:9/authorize", token_endpoint = "http://127.0.0.1:9/token", scopes = ["notes:read"] }}
"#
        ),
    )
    .unwrap();
    let gateway = gateway::start(&tmp, "gateway", &["--config", file.to_str().unwrap()], &[]).await;
    let (url, token) = (gateway.mcp_url(), gateway.token());
    let origin = url.trim_end_matches("/mcp").to_owned();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The first call: the link, and nothing upstream.
    let answer = http
        .post(&url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32042, "{body}");
    let link = format!("{origin}/gateway/connect/notes");
    assert_eq!(
        body["error"]["data"]["elicitations"][0]["url"],
        link.as_str(),
        "{body}"
    );
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "nothing reached the upstream"
    );

    // The link: sign in first, then back to it.
    let connect = http.get(&link).send().await.unwrap();
    assert_eq!(connect.status(), 303);
    let location = connect.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("/gateway/sign-in?return=%2Fgateway%2Fconnect%2Fnotes"),
        "{location}"
    );

    // The gateway's client metadata document.
    let doc: Value = http
        .get(format!("{origin}/gateway/oauth-client.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc["client_id"],
        format!("{origin}/gateway/oauth-client.json").as_str()
    );
    assert_eq!(
        doc["redirect_uris"][0],
        format!("{origin}/gateway/connect/notes/callback").as_str()
    );
    drop(gateway);
    server.abort();
}
