//! `Gateway::reload`: a gateway changes its upstreams while it serves. Between several, what
//! did not change keeps running with its sessions; a new upstream is served at once (merged
//! and at its own path); a removed one is gone; from one upstream to several and back the
//! endpoint changes shape and the old shape's sessions end; a refused reload leaves
//! everything as it was.

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

/// Reloads that must be refused: no upstream, a name outside the pattern, a name twice.
fn every_bad_reload_is_refused(h: &Harness, addr: std::net::SocketAddr) {
    for bad in [
        vec![],
        vec![("beta", stdio_upstream().into()), ("a_b", http(addr))],
        vec![("beta", stdio_upstream().into()), ("beta", http(addr))],
    ] {
        assert!(h.gateway.reload(bad).is_err());
    }
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
    every_bad_reload_is_refused(&h, gamma_addr);
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

/// A session id's answer at `url`: its status, and the error's message if any.
async fn status_of(url: &str, token: &str, session: &str) -> (u16, String) {
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}).to_string();
    let response = post(url, Some(token), Some(session), body).await;
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Whether a GET stream ends (the gateway closed it) before the deadline.
async fn ends(stream: reqwest::Response) -> bool {
    tokio::time::timeout(DEADLINE, async {
        let mut body = stream.bytes_stream();
        while let Some(chunk) = futures_util::StreamExt::next(&mut body).await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn a_reload_goes_from_one_upstream_to_several_and_back() {
    let (alpha_addr, _stop_alpha) =
        serve_app(mcp_oauth_gateway::test_upstream::http_router()).await;
    let h = Harness::several(vec![("alpha", http(alpha_addr))], |b| b).await;
    let merged = h.url.clone();
    let own = |name: &str| format!("http://{}/{name}/mcp", h.addr);
    let token = token_for(&h, &[&merged, &own("alpha"), &own("beta")]);

    // One upstream: its own names at /mcp, no path of its own.
    let one = raw_session(&merged, &token).await;
    assert_eq!(
        call_raw(&merged, &token, &one, "echo", json!({"text": "one"}))
            .await
            .unwrap(),
        "one"
    );
    assert!(h.gateway.upstream_paths().is_empty());
    assert_eq!(
        post(&own("alpha"), Some(&token), None, INITIALIZE)
            .await
            .status(),
        404
    );

    // To several: /mcp merges, with prefixes; each upstream at its own path.
    let report = h
        .gateway
        .reload([
            ("alpha", http(alpha_addr)),
            ("beta", stdio_upstream().into()),
        ])
        .unwrap();
    assert!(report.reshaped);
    assert_eq!(report.changed, ["alpha"]);
    assert_eq!(report.added, ["beta"]);
    assert!(report.removed.is_empty() && report.kept.is_empty());
    // The session of the old shape is gone: the client initializes again.
    let (status, text) = status_of(&merged, &token, &one).await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("start a new one with initialize"), "{text}");
    let merged_session = raw_session(&merged, &token).await;
    let names = tool_names(&h, &merged, &token, &merged_session).await;
    assert!(names.contains(&"alpha__echo".to_owned()), "{names:?}");
    assert!(names.contains(&"beta__pid".to_owned()), "{names:?}");
    assert!(!names.contains(&"echo".to_owned()), "{names:?}");
    assert_eq!(
        call_raw(
            &merged,
            &token,
            &merged_session,
            "alpha__echo",
            json!({"text": "merged"})
        )
        .await
        .unwrap(),
        "merged"
    );
    let several_pid = call_raw(&merged, &token, &merged_session, "beta__pid", json!({}))
        .await
        .unwrap();
    // The unprefixed name of the old shape is no tool now.
    let old_name = call_raw(
        &merged,
        &token,
        &merged_session,
        "echo",
        json!({"text": "x"}),
    )
    .await;
    assert!(old_name.unwrap_err().contains("not permitted"));
    let alpha_session = raw_session(&own("alpha"), &token).await;
    assert_eq!(
        call_raw(
            &own("alpha"),
            &token,
            &alpha_session,
            "echo",
            json!({"text": "own"})
        )
        .await
        .unwrap(),
        "own"
    );
    assert_eq!(h.gateway.upstream_paths().len(), 2);

    // Back to one: /mcp serves beta under its own names; every /NAME/mcp is 404.
    let report = h
        .gateway
        .reload([("beta", stdio_upstream().into())])
        .unwrap();
    assert!(report.reshaped);
    assert_eq!(report.changed, ["beta"]);
    assert_eq!(report.removed, ["alpha"]);
    let (status, _) = status_of(&merged, &token, &merged_session).await;
    assert_eq!(status, 404);
    let back = raw_session(&merged, &token).await;
    let names = tool_names(&h, &merged, &token, &back).await;
    assert!(names.contains(&"pid".to_owned()), "{names:?}");
    assert!(names.iter().all(|n| !n.contains("__")), "{names:?}");
    let one_pid = call_raw(&merged, &token, &back, "pid", json!({}))
        .await
        .unwrap();
    // Started again under the new shape.
    assert_ne!(one_pid, several_pid);
    assert_eq!(one_pid, h.gateway.upstream_pid().unwrap().to_string());
    assert!(h.gateway.upstream_paths().is_empty());
    // A removed upstream's path, and a kept one's, no longer answer: not with the session
    // opened there, not with a new initialize, not their metadata.
    let (status, _) = status_of(&own("alpha"), &token, &alpha_session).await;
    assert_eq!(status, 404);
    for name in ["alpha", "beta"] {
        assert_eq!(
            post(&own(name), Some(&token), None, INITIALIZE)
                .await
                .status(),
            404,
            "{name}"
        );
        let doc = reqwest::get(format!(
            "http://{}/.well-known/oauth-protected-resource/{name}/mcp",
            h.addr
        ))
        .await
        .unwrap();
        assert_eq!(doc.status(), 404, "{name}");
    }

    // A refused reload keeps the one upstream as it was.
    every_bad_reload_is_refused(&h, alpha_addr);
    assert_eq!(
        call_raw(&merged, &token, &back, "pid", json!({}))
            .await
            .unwrap(),
        one_pid
    );
    assert_eq!(
        post(&own("beta"), Some(&token), None, INITIALIZE)
            .await
            .status(),
        404
    );

    // The same upstream again: kept, with its child and its sessions.
    let report = h
        .gateway
        .reload([("beta", stdio_upstream().into())])
        .unwrap();
    assert_eq!(report.kept, ["beta"]);
    assert!(!report.reshaped);
    assert_eq!(
        call_raw(&merged, &token, &back, "pid", json!({}))
            .await
            .unwrap(),
        one_pid
    );

    // A GET stream of the old shape ends at the switch.
    let stream = reqwest::Client::new()
        .get(&merged)
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &back)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    h.gateway
        .reload([
            ("beta", stdio_upstream().into()),
            ("alpha", http(alpha_addr)),
        ])
        .unwrap();
    assert!(
        ends(stream).await,
        "the old shape's GET stream is still open"
    );
    let (status, _) = status_of(&merged, &token, &back).await;
    assert_eq!(status, 404);
    let again = raw_session(&own("beta"), &token).await;
    assert_ne!(
        call_raw(&own("beta"), &token, &again, "pid", json!({}))
            .await
            .unwrap(),
        one_pid
    );
}

#[tokio::test]
async fn a_gateway_of_one_upstream_changes_it_and_ends_its_sessions() {
    let h = Harness::start(stdio_upstream()).await;
    let token = token_for(&h, &[&h.url]);
    let session = raw_session(&h.url, &token).await;
    let pid = call_raw(&h.url, &token, &session, "pid", json!({}))
        .await
        .unwrap();
    // A table for another upstream is refused, and nothing changed.
    let err = h
        .gateway
        .reload_tools(
            [("up", stdio_upstream().into())],
            [(
                "other",
                mcp_oauth_gateway::ToolNames::new().rename("pid", "p"),
            )],
        )
        .unwrap_err();
    assert!(err.to_string().contains("not the upstream (up)"), "{err}");
    assert_eq!(
        call_raw(&h.url, &token, &session, "pid", json!({}))
            .await
            .unwrap(),
        pid
    );
    // A table for the one upstream: its tool renamed, no prefix; the endpoint now renames,
    // so its sessions end and the upstream starts again.
    let report = h
        .gateway
        .reload_tools(
            [("up", stdio_upstream().into())],
            [("up", mcp_oauth_gateway::ToolNames::new().rename("pid", "p"))],
        )
        .unwrap();
    assert_eq!(report.renamed, ["up"]);
    assert_eq!(report.changed, ["up"]);
    let (status, _) = status_of(&h.url, &token, &session).await;
    assert_eq!(status, 404);
    let session = raw_session(&h.url, &token).await;
    let names = tool_names(&h, &h.url, &token, &session).await;
    assert!(names.contains(&"p".to_owned()), "{names:?}");
    assert!(!names.contains(&"pid".to_owned()), "{names:?}");
    let renamed_pid = call_raw(&h.url, &token, &session, "p", json!({}))
        .await
        .unwrap();
    assert_ne!(renamed_pid, pid);
    assert!(
        call_raw(&h.url, &token, &session, "pid", json!({}))
            .await
            .unwrap_err()
            .contains("not permitted")
    );
    // The same table again: kept, the session too.
    let report = h
        .gateway
        .reload_tools(
            [("up", stdio_upstream().into())],
            [("up", mcp_oauth_gateway::ToolNames::new().rename("pid", "p"))],
        )
        .unwrap();
    assert_eq!(report.kept, ["up"]);
    assert_eq!(
        call_raw(&h.url, &token, &session, "p", json!({}))
            .await
            .unwrap(),
        renamed_pid
    );
    let pid = renamed_pid;
    let report = h
        .gateway
        .reload([(
            "up",
            stdio_upstream().env("MCP_OAUTH_RELOAD_TEST", "2").into(),
        )])
        .unwrap();
    // Changed, started again, with its table as before.
    assert_eq!(report.changed, ["up"]);
    assert!(report.added.is_empty() && report.removed.is_empty());
    assert!(!report.reshaped);
    let (status, _) = status_of(&h.url, &token, &session).await;
    assert_eq!(status, 404);
    let session = raw_session(&h.url, &token).await;
    assert_ne!(
        call_raw(&h.url, &token, &session, "p", json!({}))
            .await
            .unwrap(),
        pid
    );
}
