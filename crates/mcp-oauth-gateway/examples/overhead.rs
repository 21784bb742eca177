//! How much time the gateway adds to a call: `tools/call echo` at concurrency 1, direct to the
//! rmcp test server over Streamable HTTP, then through the gateway (bearer token verified)
//! to the same server, then through the gateway to the test server as a stdio child.
//! Prints the median and the 99th percentile of each; everything on 127.0.0.1.
//!
//! Run with `cargo run --release -p mcp-oauth-gateway --features test-upstream --example overhead`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // a measuring tool

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::serve::ListenerExt;
use mcp_oauth::OAuth;
use mcp_oauth::testing::TestKey;
use mcp_oauth::verify::JwtVerifier;
use mcp_oauth_gateway::{Gateway, HttpConfig, StdioConfig, UpstreamConfig};

const CALLS: usize = 3000;
const WARMUP: usize = 300;
const ISSUER: &str = "https://issuer.test";

async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        // Without TCP_NODELAY, an answer written in several pieces (SSE) waits for the
        // peer's delayed ACK: 40 ms per call on Linux.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

async fn gateway(upstream: UpstreamConfig, key: &TestKey) -> (String, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let verifier = JwtVerifier::builder()
        .issuer(ISSUER)
        .jwk(&key.public_jwk().unwrap())
        .build()
        .unwrap();
    let oauth = OAuth::builder()
        .resource(url.clone())
        .authorization_server(ISSUER)
        .scopes_supported(["mcp:read"])
        .verifier(verifier)
        .mirror_authorization_server(false)
        .build()
        .unwrap();
    let gateway = Gateway::builder(upstream).oauth(oauth).build().unwrap();
    gateway.ready(Duration::from_secs(30)).await.unwrap();
    let app = gateway.router();
    tokio::spawn(async move {
        // Without TCP_NODELAY, an answer written in several pieces (SSE) waits for the
        // peer's delayed ACK: 40 ms per call on Linux.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let token = key
        .token()
        .iss(ISSUER)
        .aud(&url)
        .sub("bench")
        .scope("mcp:read")
        .sign();
    (url, token)
}

async fn measure(name: &str, url: &str, token: Option<&str>) {
    let http = reqwest::Client::new();
    let post = |body: String, session: Option<String>| {
        let mut request = http
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request.send()
    };
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#;
    let response = post(init.to_owned(), None).await.unwrap();
    let session = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    response.bytes().await.unwrap();
    post(
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned(),
        session.clone(),
    )
    .await
    .unwrap();
    let mut times = Vec::with_capacity(CALLS);
    for i in 0..(WARMUP + CALLS) {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"hello"}}}}}}"#
        );
        let start = Instant::now();
        let response = post(body, session.clone()).await.unwrap();
        let bytes = response.bytes().await.unwrap();
        let elapsed = start.elapsed();
        assert!(String::from_utf8_lossy(&bytes).contains("hello"));
        if i >= WARMUP {
            times.push(elapsed);
        }
    }
    times.sort();
    let p = |q: f64| times[((times.len() as f64 - 1.0) * q) as usize].as_micros();
    println!("{name:<32} p50 {:>6} µs   p99 {:>6} µs", p(0.5), p(0.99));
}

#[tokio::main]
async fn main() {
    let key = TestKey::es256();
    let upstream = serve(mcp_oauth_gateway::test_upstream::http_router()).await;
    let direct = format!("http://{upstream}/mcp");
    measure("direct (rmcp, Streamable HTTP)", &direct, None).await;
    let (url, token) = gateway(HttpConfig::new(&direct).unwrap().into(), &key).await;
    measure("gateway → HTTP upstream", &url, Some(&token)).await;
    let program = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .join("../mcp-oauth-gateway-test-upstream");
    let (url, token) = gateway(StdioConfig::new(program, Vec::<String>::new()).into(), &key).await;
    measure("gateway → stdio child", &url, Some(&token)).await;
}
