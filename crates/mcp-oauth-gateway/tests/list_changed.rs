//! An upstream's `notifications/tools/list_changed` reaches the clients' GET streams (at the
//! merged endpoint and at the upstream's own path) and the gateway's own watch
//! (`Gateway::list_changes`), and the lists show the change under the names the merge gives.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use futures_util::StreamExt as _;
use mcp_oauth_gateway::gate::ListKind;
use serde_json::{Value, json};
use support::*;

fn token_for(h: &Harness, audiences: &[&str]) -> String {
    h.key
        .token()
        .iss(ISSUER)
        .sub("alice")
        .scope("mcp:read")
        .claim("aud", json!(audiences))
        .sign()
}

async fn rpc(url: &str, token: &str, session: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
    let response = post(url, Some(token), Some(session), body.to_string()).await;
    assert_eq!(response.status(), 200, "{method} at {url}");
    messages(response)
        .await
        .into_iter()
        .find(|m| m.get("id").is_some())
        .unwrap()
}

async fn tool_names(url: &str, token: &str, session: &str) -> Vec<String> {
    let answer = rpc(url, token, session, "tools/list", json!({})).await;
    answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// A session's GET stream, read until it says `needle` (or the deadline passes).
async fn stream_says(
    url: &str,
    token: &str,
    session: &str,
) -> impl std::future::Future<Output = String> {
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "GET {url}");
    async move {
        let mut body = response.bytes_stream();
        let mut text = String::new();
        let read = async {
            while let Some(Ok(chunk)) = body.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk));
                if text.contains("notifications/tools/list_changed") {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(DEADLINE, read).await;
        text
    }
}

#[tokio::test]
async fn an_upstreams_list_change_reaches_clients_and_the_gateway() {
    let h = Harness::several(
        vec![
            ("alpha", stdio_upstream().into()),
            ("beta", stdio_upstream().into()),
        ],
        |b| b,
    )
    .await;
    let merged = h.url.clone();
    let alpha = format!("http://{}/alpha/mcp", h.addr);
    let token = token_for(&h, &[&merged, &alpha]);
    let session = raw_session(&merged, &token).await;
    let alpha_session = raw_session(&alpha, &token).await;
    assert!(
        !tool_names(&merged, &token, &session)
            .await
            .contains(&"alpha__extra".to_owned())
    );
    let merged_stream = stream_says(&merged, &token, &session).await;
    let alpha_stream = stream_says(&alpha, &token, &alpha_session).await;
    let mut changes = h.gateway.list_changes();

    // The gateway's watch opens in the background: toggle until it hears one (each toggle
    // flips `extra`; the clients' streams are open already and hear the first).
    let mut toggles = 0;
    let started = std::time::Instant::now();
    let heard = loop {
        toggles += 1;
        let said = rpc(
            &merged,
            &token,
            &session,
            "tools/call",
            json!({"name": "alpha__toggle", "arguments": {}}),
        )
        .await;
        assert!(
            said["result"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .starts_with("extra"),
            "{said}"
        );
        if let Ok(Some(kind)) =
            tokio::time::timeout(std::time::Duration::from_millis(200), changes.recv()).await
        {
            break kind;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the gateway's watch heard no change"
        );
    };
    assert_eq!(heard, ListKind::Tools);
    assert!(
        merged_stream
            .await
            .contains("\"method\":\"notifications/tools/list_changed\"")
    );
    assert!(
        alpha_stream
            .await
            .contains("\"method\":\"notifications/tools/list_changed\"")
    );

    // The lists follow, under the merged names at /mcp and the upstream's own at /alpha/mcp.
    let listed = toggles % 2 == 1;
    let names = tool_names(&merged, &token, &session).await;
    assert_eq!(
        names.contains(&"alpha__extra".to_owned()),
        listed,
        "{names:?}"
    );
    assert!(!names.contains(&"beta__extra".to_owned()), "{names:?}");
    let own = tool_names(&alpha, &token, &alpha_session).await;
    assert_eq!(own.contains(&"extra".to_owned()), listed, "{own:?}");
}
