//! `per-session` isolation: each MCP session gets a stdio child of its own, stopped when the
//! session ends, expires, or the gateway stops.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::time::Duration;

use mcp_oauth_gateway::Isolation;
use serde_json::json;
use support::*;

/// Whether process `pid` has ended (gone, or a zombie waiting to be reaped).
#[cfg(target_os = "linux")]
fn ended(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

async fn wait_ended(pid: &str) {
    #[cfg(target_os = "linux")]
    poll("the child's process to end", || async {
        ended(pid).then_some(())
    })
    .await;
    #[cfg(not(target_os = "linux"))]
    let _ = pid;
}

const PID: &str =
    r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"pid","arguments":{}}}"#;

/// The pid of the child behind `session`.
async fn pid(url: &str, token: &str, session: &str) -> String {
    let response = post(url, Some(token), Some(session), PID).await;
    assert_eq!(response.status(), 200);
    let answer = messages(response).await.pop().unwrap();
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_owned()
}

async fn delete(url: &str, token: &str, session: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .delete(url)
        .bearer_auth(token)
        .header("mcp-session-id", session)
        .send()
        .await
        .unwrap()
        .status()
}

fn per_session() -> mcp_oauth_gateway::StdioConfig {
    stdio_upstream().isolation(Isolation::PerSession)
}

#[tokio::test]
async fn each_session_gets_a_child_stopped_when_it_ends() {
    let h = Harness::start(per_session()).await;
    assert_eq!(h.gateway.upstream_pid(), None, "no shared child");
    assert_eq!(
        h.gateway.per_session_children(),
        0,
        "children start on demand"
    );
    let token = h.token("alice");
    let one = raw_session(&h.url, &token).await;
    let two = raw_session(&h.url, &token).await;
    let (pid_one, pid_two) = (
        pid(&h.url, &token, &one).await,
        pid(&h.url, &token, &two).await,
    );
    assert_ne!(pid_one, pid_two, "two sessions of one user, two children");
    assert_eq!(pid(&h.url, &token, &one).await, pid_one);
    assert_eq!(h.gateway.per_session_children(), 2);

    assert_eq!(delete(&h.url, &token, &one).await, 200);
    wait_ended(&pid_one).await;
    assert_eq!(h.gateway.per_session_children(), 1);
    assert_eq!(
        post(&h.url, Some(&token), Some(&one), PID).await.status(),
        404
    );
    assert_eq!(
        pid(&h.url, &token, &two).await,
        pid_two,
        "the other lives on"
    );

    // Sampling and progress go through a session's own child, with an rmcp client.
    let client = h.client("bob").await;
    assert_eq!(
        call(&client, "ask_llm", json!({"question": "q"}))
            .await
            .unwrap(),
        "sampled by bob"
    );
    assert_eq!(h.gateway.per_session_children(), 2);
    client.cancel().await.unwrap();

    // The gateway stopping stops the children.
    drop(h);
    wait_ended(&pid_two).await;
}

#[tokio::test]
async fn an_expired_sessions_child_is_stopped_without_a_request() {
    let h = Harness::start_with(per_session(), |b| {
        b.per_session_idle(Duration::from_secs(1))
    })
    .await;
    let token = h.token("alice");
    let session = raw_session(&h.url, &token).await;
    let child = pid(&h.url, &token, &session).await;
    wait_ended(&child).await;
    poll("the expired child to be dropped", || async {
        (h.gateway.per_session_children() == 0).then_some(())
    })
    .await;
    assert_eq!(
        post(&h.url, Some(&token), Some(&session), PID)
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn past_the_cap_new_sessions_are_refused_and_running_ones_kept() {
    let h = Harness::start_with(per_session(), |b| b.per_session_max(1)).await;
    let (alice, mallory) = (h.token("alice"), h.token("mallory"));
    let session = raw_session(&h.url, &alice).await;
    let child = pid(&h.url, &alice, &session).await;
    for _ in 0..3 {
        let refused = post(&h.url, Some(&mallory), None, INITIALIZE).await;
        assert_eq!(refused.status(), 503);
        let body: serde_json::Value = refused.json().await.unwrap();
        assert!(
            body["error"]["message"].as_str().unwrap().contains('1'),
            "{body}"
        );
    }
    assert_eq!(
        pid(&h.url, &alice, &session).await,
        child,
        "alice keeps hers"
    );
    assert_eq!(delete(&h.url, &alice, &session).await, 200);
    let next = raw_session(&h.url, &mallory).await;
    assert_ne!(pid(&h.url, &mallory, &next).await, child);
}

#[tokio::test]
async fn strangers_can_neither_use_nor_stop_a_sessions_child_nor_start_one_without_initialize() {
    let h = Harness::start(per_session()).await;
    let (alice, mallory) = (h.token("alice"), h.token("mallory"));
    let session = raw_session(&h.url, &alice).await;
    let child = pid(&h.url, &alice, &session).await;
    // Another user's session id: unknown to them, for calls, the stream and DELETE.
    assert_eq!(
        post(&h.url, Some(&mallory), Some(&session), PID)
            .await
            .status(),
        404
    );
    let stream = reqwest::Client::new()
        .get(&h.url)
        .bearer_auth(&mallory)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 404);
    assert_eq!(delete(&h.url, &mallory, &session).await, 404);
    assert_eq!(pid(&h.url, &alice, &session).await, child, "still running");
    // A guessed id.
    assert_eq!(
        post(&h.url, Some(&mallory), Some(&"0".repeat(32)), PID)
            .await
            .status(),
        404
    );
    // Requests without a session that are not initialize start nothing.
    let before = h.gateway.per_session_children();
    for body in [PID, "not json", "[]"] {
        let response = post(&h.url, Some(&mallory), None, body).await;
        assert_eq!(response.status(), 400, "{body}");
    }
    assert_eq!(
        delete(&h.url, &mallory, "").await,
        404,
        "an empty id is nobody's"
    );
    assert_eq!(h.gateway.per_session_children(), before);
    // Without a token, nothing at all.
    assert_eq!(post(&h.url, None, None, INITIALIZE).await.status(), 401);
    assert_eq!(h.gateway.per_session_children(), before);
}

#[tokio::test]
async fn a_stateless_client_gets_one_child_per_user() {
    let h = Harness::start(per_session()).await;
    let stateless = |token: String| {
        let url = h.url.clone();
        async move {
            let response = reqwest::Client::new()
                .post(&url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", "tools/call")
                .header("mcp-name", "pid")
                .body(PID)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert!(response.headers().get("mcp-session-id").is_none());
            let answer = messages(response).await.pop().unwrap();
            answer["result"]["content"][0]["text"]
                .as_str()
                .unwrap_or_else(|| panic!("{answer}"))
                .to_owned()
        }
    };
    let alice = stateless(h.token("alice")).await;
    assert_eq!(stateless(h.token("alice")).await, alice);
    assert_ne!(stateless(h.token("bob")).await, alice);
    assert_eq!(h.gateway.per_session_children(), 2);
}
