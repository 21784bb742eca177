//! `--metrics ADDR` on `mcp-oauth dev`: Prometheus metrics on a listener of their own, never
//! on the public one, counting the requests made.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::process::TempDir;

/// The value of the sample with exactly this name and these labels (`a="x",b="y"`).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_answer_on_their_own_listener_only_and_count_requests() {
    let tmp = TempDir::new("metrics", "dev");
    let dev = support::process::dev(&tmp, "dev", &["--metrics", "127.0.0.1:0"]).await;
    let http = reqwest::Client::new();
    let mcp_url = dev.info["mcp_url"].as_str().expect("mcp_url").to_owned();
    let metrics_url = dev.info["metrics_url"]
        .as_str()
        .expect("metrics_url")
        .to_owned();
    let token = dev.info["token"].as_str().expect("token").to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        match http.get(&metrics_url).send().await {
            Ok(r) if r.status().is_success() => break r,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(25)).await,
            other => panic!("the metrics listener did not answer: {other:?}"),
        }
    };
    assert!(
        first.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
    );
    assert_ne!(
        url::Url::parse(&metrics_url).unwrap().port(),
        url::Url::parse(&mcp_url).unwrap().port(),
        "a listener of its own"
    );

    // The public listener does not serve them.
    let public = url::Url::parse(&mcp_url).unwrap().join("/metrics").unwrap();
    let res = http.get(public).send().await.expect("get");
    assert_eq!(res.status(), 404);

    let post = |token: Option<String>, body: Value| {
        let mut req = http
            .post(&mcp_url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .body(body.to_string());
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    let whoami = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}});
    assert_eq!(post(None, whoami.clone()).await.unwrap().status(), 401);
    assert_eq!(
        post(Some(token.clone()), whoami.clone())
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        post(Some(token.clone()), whoami).await.unwrap().status(),
        200
    );
    let admin = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "admin_action", "arguments": {}}});
    assert_eq!(
        post(Some(token.clone()), admin).await.unwrap().status(),
        403
    );

    let text = http
        .get(&metrics_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        sample(
            &text,
            "mcp_oauth_auth_results_total{result=\"missing_token\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "mcp_oauth_auth_results_total{result=\"ok\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "mcp_oauth_auth_results_total{result=\"insufficient_scope\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "mcp_server_operation_duration_seconds_count{mcp_method_name=\"tools/call\",gen_ai_tool_name=\"whoami\",gen_ai_operation_name=\"execute_tool\",mcp_protocol_version=\"2025-11-25\",network_transport=\"tcp\",network_protocol_name=\"http\"}"
        ),
        Some(2.0),
        "{text}"
    );
    assert!(!text.contains(&token), "no token in the metrics");
    assert!(
        !text.contains("\"dev\""),
        "no subject in the metrics: {text}"
    );
}
