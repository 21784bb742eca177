//! `Gateway::reload`: a gateway of several upstreams changes them while it serves. What did
//! not change keeps running with its sessions; a new upstream is served at once (merged and at
//! its own path); a removed one is gone; a refused reload leaves everything as it was.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use mcp_oauth_gateway::{HttpConfig, UpstreamConfig};
use serde_json::{Value, json};
use support::*;

fn http(addr: std::net::SocketAddr) -> UpstreamConfig {
    HttpConfig::new(&format!("http://{addr}/mcp"))
        .unwrap()
        .into()
}

fn token_for(h: &Harness, audiences: &[&str]) -> String {
    h.key
        .token()
        .iss(ISSUER)
        .sub("alice")
        .scope("mcp:read")
        .claim("aud", json!(audiences))
        .sign()
}

async fn tool_names(h: &Harness, url: &str, token: &str, session: &str) -> Vec<String> {
    let body = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"}).to_string();
    let response = post(url, Some(token), Some(session), body).await;
    assert_eq!(response.status(), 200, "{url}");
    let answer = messages(response).await.pop().unwrap();
    let _ = h;
    answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// A tool call's first text, or the JSON-RPC error's message.
async fn call_raw(
    url: &str,
    token: &str,
    session: &str,
    tool: &str,
    args: Value,
) -> Result<String, String> {
    let body = json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": tool, "arguments": args}});
    let response = post(url, Some(token), Some(session), body.to_string()).await;
    assert_eq!(response.status(), 200, "{tool} at {url}");
    let answer = messages(response)
        .await
        .into_iter()
        .find(|m| m.get("id").is_some())
        .unwrap();
    match answer["result"]["content"][0]["text"].as_str() {
        Some(text) if answer["result"]["isError"] != true => Ok(text.to_owned()),
        _ => Err(answer.to_string()),
    }
}

#[tokio::test]
async fn a_reload_keeps_what_did_not_change_and_serves_what_is_new() {
    let (alpha_addr, _stop_alpha) =
        serve_app(mcp_oauth_gateway::test_upstream::http_router()).await;
    let (gamma_addr, _stop_gamma) =
        serve_app(mcp_oauth_gateway::test_upstream::http_router()).await;
    let h = Harness::several(
        vec![
            ("alpha", http(alpha_addr)),
            ("beta", stdio_upstream().into()),
        ],
        |b| b,
    )
    .await;
    let merged = h.url.clone();
    let own = |name: &str| format!("http://{}/{name}/mcp", h.addr);
    let token = token_for(&h, &[&merged, &own("alpha"), &own("beta"), &own("gamma")]);
    // Sessions opened before the reload: at the merged endpoint and at beta's own path.
    let session = raw_session(&merged, &token).await;
    let beta_session = raw_session(&own("beta"), &token).await;
    let pid = call_raw(&merged, &token, &session, "beta__pid", json!({}))
        .await
        .unwrap();
    assert_eq!(pid, h.gateway.upstream_pid().unwrap().to_string());
    assert!(
        tool_names(&h, &merged, &token, &session)
            .await
            .contains(&"alpha__echo".to_owned())
    );

    // The session's GET stream, open across the reload, hears that the lists changed.
    let stream = reqwest::Client::new()
        .get(&merged)
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);

    let report = h
        .gateway
        .reload([
            ("beta", stdio_upstream().into()),
            ("gamma", http(gamma_addr)),
        ])
        .unwrap();
    let heard = tokio::time::timeout(DEADLINE, async {
        let mut body = stream.bytes_stream();
        let mut text = String::new();
        while let Some(Ok(chunk)) = futures_util::StreamExt::next(&mut body).await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains("notifications/tools/list_changed") {
                break;
            }
        }
        text
    })
    .await
    .unwrap();
    assert!(
        heard.contains("\"method\":\"notifications/tools/list_changed\""),
        "{heard}"
    );
    assert_eq!(report.kept, ["beta"]);
    assert_eq!(report.added, ["gamma"]);
    assert_eq!(report.removed, ["alpha"]);
    assert!(report.changed.is_empty());

    // The same session: beta's child untouched, gamma there, alpha gone.
    assert_eq!(
        call_raw(&merged, &token, &session, "beta__pid", json!({}))
            .await
            .unwrap(),
        pid
    );
    assert_eq!(
        call_raw(
            &merged,
            &token,
            &session,
            "gamma__echo",
            json!({"text": "new"})
        )
        .await
        .unwrap(),
        "new"
    );
    let gone = call_raw(
        &merged,
        &token,
        &session,
        "alpha__echo",
        json!({"text": "x"}),
    )
    .await;
    assert!(gone.unwrap_err().contains("not permitted"));
    let names = tool_names(&h, &merged, &token, &session).await;
    assert!(names.contains(&"gamma__echo".to_owned()), "{names:?}");
    assert!(names.iter().all(|n| !n.starts_with("alpha__")), "{names:?}");
    // beta's own path kept its session; gamma has one now; alpha's is gone.
    assert_eq!(
        call_raw(&own("beta"), &token, &beta_session, "pid", json!({}))
            .await
            .unwrap(),
        pid
    );
    let gamma_session = raw_session(&own("gamma"), &token).await;
    assert_eq!(
        call_raw(
            &own("gamma"),
            &token,
            &gamma_session,
            "echo",
            json!({"text": "g"})
        )
        .await
        .unwrap(),
        "g"
    );
    assert_eq!(
        post(&own("alpha"), Some(&token), None, INITIALIZE)
            .await
            .status(),
        404
    );
    let doc = reqwest::get(format!(
        "http://{}/.well-known/oauth-protected-resource/gamma/mcp",
        h.addr
    ))
    .await
    .unwrap();
    assert_eq!(doc.status(), 200);
    assert_eq!(
        reqwest::get(format!(
            "http://{}/.well-known/oauth-protected-resource/alpha/mcp",
            h.addr
        ))
        .await
        .unwrap()
        .status(),
        404
    );

    // A changed upstream starts again; the client's session goes on (opened there anew).
    let changed = stdio_upstream().env("MCP_OAUTH_RELOAD_TEST", "2");
    let report = h
        .gateway
        .reload([("beta", changed.into()), ("gamma", http(gamma_addr))])
        .unwrap();
    assert_eq!(report.changed, ["beta"]);
    assert_eq!(report.kept, ["gamma"]);
    let new_pid = poll("beta's new child", || async {
        call_raw(&merged, &token, &session, "beta__pid", json!({}))
            .await
            .ok()
            .filter(|p| *p != pid)
    })
    .await;
    assert_eq!(new_pid, h.gateway.upstream_pid().unwrap().to_string());

    // A reload that is refused changes nothing.
    for bad in [
        vec![("beta", stdio_upstream().into())],
        vec![("beta", stdio_upstream().into()), ("a_b", http(gamma_addr))],
        vec![
            ("beta", stdio_upstream().into()),
            ("beta", http(gamma_addr)),
        ],
    ] {
        assert!(h.gateway.reload(bad).is_err());
    }
    assert_eq!(
        call_raw(
            &merged,
            &token,
            &session,
            "gamma__echo",
            json!({"text": "still"})
        )
        .await
        .unwrap(),
        "still"
    );
}

#[tokio::test]
async fn a_gateway_of_one_upstream_refuses_to_reload() {
    let h = Harness::start(stdio_upstream()).await;
    let err = h
        .gateway
        .reload([
            ("a", stdio_upstream().into()),
            ("b", stdio_upstream().into()),
        ])
        .unwrap_err();
    assert!(err.to_string().contains("restart"), "{err}");
}
