//! The gateway in front of a stdio child (the rmcp test server), driven by rmcp's Streamable
//! HTTP client and by raw requests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use mcp_oauth::Auth;
use mcp_oauth_gateway::gate::{Call, Decision, Gatekeeper, ListKind};
use rmcp::model::{CallToolRequestParams, ClientRequest, Request};
use rmcp::service::PeerRequestOptions;
use serde_json::json;
use support::*;

#[tokio::test]
async fn calls_and_lists_work_through_the_gateway() {
    let h = Harness::start(stdio_upstream()).await;
    let client = h.client("alice").await;
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(
        names,
        [
            "echo",
            "get_env",
            "pid",
            "slow",
            "cancelled",
            "ask_llm",
            "meta",
            "toggle"
        ]
    );
    assert_eq!(
        call(&client, "echo", json!({"text": "hi"})).await.unwrap(),
        "hi"
    );
    let info = client.peer_info().unwrap();
    assert_eq!(
        info.server_info.as_ref().unwrap().name,
        "gateway-test-upstream"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn the_child_environment_is_cleared_except_the_allow_list() {
    // Cargo sets these for the test process; the child must not inherit them.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
    let upstream = stdio_upstream()
        .env("UPSTREAM_API_KEY", "configured-value")
        .pass_env("CARGO_PKG_NAME");
    let h = Harness::start(upstream).await;
    let client = h.client("alice").await;
    let env: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&call(&client, "get_env", json!({})).await.unwrap()).unwrap();
    assert_eq!(env["UPSTREAM_API_KEY"], "configured-value");
    assert_eq!(env["CARGO_PKG_NAME"], "mcp-oauth-gateway");
    assert!(!env.contains_key("CARGO_MANIFEST_DIR"), "{env:?}");
    for name in env.keys() {
        let allowed = mcp_oauth_gateway::ENV_ALLOW_LIST.contains(&name.as_str())
            || ["UPSTREAM_API_KEY", "CARGO_PKG_NAME"].contains(&name.as_str());
        assert!(allowed, "{name} leaked into the child's environment");
    }
    if let Some(path) = std::env::var_os("PATH") {
        assert_eq!(env["PATH"], path.to_string_lossy().as_ref());
    }
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn two_sessions_share_one_child_without_mixing_responses() {
    let h = Harness::start(stdio_upstream()).await;
    let alice = h.client("alice").await;
    let bob = h.client("bob").await;
    let pid_a = call(&alice, "pid", json!({})).await.unwrap();
    let pid_b = call(&bob, "pid", json!({})).await.unwrap();
    assert_eq!(pid_a, pid_b, "one child for both sessions");
    assert_eq!(h.gateway.upstream_starts(), 1, "no per-session spawn");
    let calls = (0..25).flat_map(|i| {
        let (alice, bob) = (&alice, &bob);
        [
            Box::pin(async move {
                (
                    format!("alice-{i}"),
                    call(alice, "echo", json!({"text": format!("alice-{i}")})).await,
                )
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = _>>>,
            Box::pin(async move {
                (
                    format!("bob-{i}"),
                    call(bob, "echo", json!({"text": format!("bob-{i}")})).await,
                )
            }),
        ]
    });
    for (sent, got) in futures_util::future::join_all(calls).await {
        assert_eq!(got.unwrap(), sent);
    }
    alice.cancel().await.unwrap();
    bob.cancel().await.unwrap();
}

#[tokio::test]
async fn progress_and_cancellation_pass_through() {
    let h = Harness::start(stdio_upstream()).await;
    let client = h.client("alice").await;
    // Progress to the end.
    let done = call(&client, "slow", json!({"steps": 3, "step_ms": 10}))
        .await
        .unwrap();
    assert_eq!(done, "done after 3 steps");
    assert_eq!(*client.service().progress.lock().unwrap(), [0.0, 1.0, 2.0]);
    // Cancelled half-way: the child sees the cancellation.
    client.service().progress.lock().unwrap().clear();
    let params = CallToolRequestParams::new("slow").with_arguments(
        json!({"steps": 1000, "step_ms": 20})
            .as_object()
            .unwrap()
            .clone(),
    );
    let handle = client
        .send_cancellable_request(
            ClientRequest::CallToolRequest(Request::new(params)),
            PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    poll("a progress notification", || async {
        (!client.service().progress.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    handle.cancel(Some("enough".into())).await.unwrap();
    poll("the child to see the cancellation", || async {
        (call(&client, "cancelled", json!({})).await.unwrap() == "1").then_some(())
    })
    .await;
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn sampling_requests_go_back_to_the_calling_session() {
    let h = Harness::start(stdio_upstream()).await;
    let alice = h.client("alice").await;
    let bob = h.client("bob").await;
    assert_eq!(
        call(&alice, "ask_llm", json!({"question": "6*7?"}))
            .await
            .unwrap(),
        "sampled by alice"
    );
    assert_eq!(
        call(&bob, "ask_llm", json!({"question": "6*7?"}))
            .await
            .unwrap(),
        "sampled by bob"
    );
    alice.cancel().await.unwrap();
    bob.cancel().await.unwrap();
}

#[tokio::test]
async fn a_sampling_request_is_refused_rather_than_guessed_between_two_active_users() {
    let h = Harness::start(stdio_upstream()).await;
    let alice = h.client("alice").await;
    let bob = h.client("bob").await;
    // Alice keeps a call in flight; the child cannot say whose its sampling request is.
    let peer = alice.peer().clone();
    let slow = tokio::spawn(async move {
        let params = CallToolRequestParams::new("slow").with_arguments(
            json!({"steps": 1000, "step_ms": 20})
                .as_object()
                .unwrap()
                .clone(),
        );
        peer.call_tool(params).await.map_err(|e| e.to_string())
    });
    poll("alice's call to be running", || async {
        (!alice.service().progress.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    let refused = call(&bob, "ask_llm", json!({"question": "q"})).await;
    let text = format!("{refused:?}");
    assert!(text.contains("cannot tell which client"), "{text}");
    assert!(!text.contains("sampled by"), "{text}");
    slow.abort();
    alice.cancel().await.unwrap();
    bob.cancel().await.unwrap();
}

#[tokio::test]
async fn a_killed_child_is_restarted_and_the_next_call_works() {
    let h = Harness::start(stdio_upstream()).await;
    let client = h.client("alice").await;
    let first = call(&client, "pid", json!({})).await.unwrap();
    assert_eq!(
        Some(first.parse::<u32>().unwrap()),
        h.gateway.upstream_pid()
    );
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &first])
        .status()
        .unwrap();
    assert!(killed.success());
    // The same client session goes on: the session is the gateway's, not the child's.
    let second = poll("a restarted child", || async {
        call(&client, "pid", json!({}))
            .await
            .ok()
            .filter(|pid| *pid != first)
    })
    .await;
    assert_ne!(second, first);
    assert_eq!(h.gateway.upstream_starts(), 2);
    assert_eq!(
        call(&client, "echo", json!({"text": "back"}))
            .await
            .unwrap(),
        "back"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_call_in_flight_when_the_child_dies_gets_an_error() {
    let h = Harness::start(stdio_upstream()).await;
    let client = h.client("alice").await;
    let pid = call(&client, "pid", json!({})).await.unwrap();
    let peer = client.peer().clone();
    let slow = tokio::spawn(async move {
        let params = CallToolRequestParams::new("slow").with_arguments(
            json!({"steps": 1000, "step_ms": 20})
                .as_object()
                .unwrap()
                .clone(),
        );
        peer.call_tool(params).await.map_err(|e| e.to_string())
    });
    poll("the slow call to be running", || async {
        (!client.service().progress.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success()
    );
    let err = slow.await.unwrap().unwrap_err();
    assert!(err.contains("exited before answering"), "{err}");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn dropping_the_gateway_kills_the_child() {
    let h = Harness::start(stdio_upstream()).await;
    h.gateway.ready(DEADLINE).await.unwrap();
    let pid = h.gateway.upstream_pid().unwrap().to_string();
    drop(h);
    poll("the child to be gone", || async {
        let alive = std::process::Command::new("kill")
            .args(["-0", &pid])
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success();
        // A zombie still answers kill -0 until reaped; its state says it is dead.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        (!alive || state.split_whitespace().nth(2) == Some("Z")).then_some(())
    })
    .await;
}

/// Denies `get_env` and hides it from lists; asks for the `admin` scope for `slow`.
struct Rules;

impl Gatekeeper for Rules {
    fn decide(&self, caller: Option<&Auth>, call: &Call<'_>) -> Decision {
        assert!(
            caller.is_some_and(|c| c.subject() == "alice"),
            "the verified user is given"
        );
        match (call.method(), call.name()) {
            ("tools/call", Some("get_env")) => Decision::Deny,
            ("tools/call", Some("slow")) => Decision::StepUp(vec!["admin".into()]),
            _ => Decision::Allow,
        }
    }
    fn filters_lists(&self) -> bool {
        true
    }
    fn keep(&self, _: Option<&Auth>, list: ListKind, item: &serde_json::Value) -> bool {
        list != ListKind::Tools || item["name"] != "get_env"
    }
}

#[tokio::test]
async fn the_decision_hook_denies_steps_up_and_filters() {
    let h = Harness::with_gatekeeper(stdio_upstream(), Rules).await;
    let client = h.client("alice").await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().all(|t| t.name != "get_env"));
    assert!(tools.iter().any(|t| t.name == "echo"));
    let denied = call(&client, "get_env", json!({})).await.unwrap_err();
    assert!(denied.contains("not found, or not permitted"), "{denied}");
    // The same answer as for a tool that does not exist upstream would be given by the rules.
    assert_eq!(
        call(&client, "echo", json!({"text": "ok"})).await.unwrap(),
        "ok"
    );

    let token = h.token("alice");
    let session = raw_session(&h.url, &token).await;
    let response = post(
        &h.url,
        Some(&token),
        Some(&session),
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"slow","arguments":{}}}"#,
    )
    .await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.headers()["www-authenticate"],
        format!(
            r#"Bearer error="insufficient_scope", error_description="the access token lacks a scope this request needs", resource_metadata="http://{}/.well-known/oauth-protected-resource/mcp", scope="admin""#,
            h.addr
        )
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_request_without_a_token_gets_the_exact_challenge() {
    let h = Harness::start(stdio_upstream()).await;
    for token in [None, Some("not-a-jwt")] {
        let response = post(&h.url, token, None, INITIALIZE).await;
        assert_eq!(response.status(), 401);
        let expected = match token {
            None => format!(
                r#"Bearer resource_metadata="http://{}/.well-known/oauth-protected-resource/mcp", scope="mcp:read""#,
                h.addr
            ),
            Some(_) => format!(
                r#"Bearer error="invalid_token", error_description="the access token is invalid", resource_metadata="http://{}/.well-known/oauth-protected-resource/mcp", scope="mcp:read""#,
                h.addr
            ),
        };
        assert_eq!(response.headers()["www-authenticate"], expected.as_str());
    }
    let metadata: serde_json::Value = reqwest::get(format!(
        "http://{}/.well-known/oauth-protected-resource/mcp",
        h.addr
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(metadata["resource"], h.url);
    assert_eq!(metadata["authorization_servers"], json!([ISSUER]));
}

#[tokio::test]
async fn another_users_session_id_is_answered_as_unknown() {
    let h = Harness::start(stdio_upstream()).await;
    let (alice, mallory) = (h.token("alice"), h.token("mallory"));
    let session = raw_session(&h.url, &alice).await;
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    let stolen = post(&h.url, Some(&mallory), Some(&session), list).await;
    assert_eq!(stolen.status(), 404);
    let client = reqwest::Client::new();
    let get = client
        .get(&h.url)
        .bearer_auth(&mallory)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 404);
    let delete = client
        .delete(&h.url)
        .bearer_auth(&mallory)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 404);
    let guessed = post(
        &h.url,
        Some(&mallory),
        Some("00000000000000000000000000000000"),
        list,
    )
    .await;
    assert_eq!(guessed.status(), 404);
    // Alice's session is untouched.
    let mine = post(&h.url, Some(&alice), Some(&session), list).await;
    assert_eq!(mine.status(), 200);
    let answer = messages(mine).await;
    assert_eq!(answer.last().unwrap()["id"], 2);
    assert!(answer.last().unwrap()["result"]["tools"].is_array());
}

#[tokio::test]
async fn a_client_cannot_answer_another_sessions_server_request() {
    use futures_util::StreamExt;

    let h = Harness::start(stdio_upstream()).await;
    let (alice, mallory) = (h.token("alice"), h.token("mallory"));
    let a = raw_session(&h.url, &alice).await;
    let m = raw_session(&h.url, &mallory).await;
    // Alice's call makes the child ask for sampling; the request comes on her call's stream.
    let (found, mut sampling) = tokio::sync::mpsc::channel::<serde_json::Value>(1);
    let (url, alice2, a2) = (h.url.clone(), alice.clone(), a.clone());
    let call = tokio::spawn(async move {
        let body = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"ask_llm","arguments":{"question":"q"}}}"#;
        let response = post(&url, Some(&alice2), Some(&a2), body).await;
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let mut stream = response.bytes_stream();
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            for line in text.lines() {
                if let Some(data) = line.strip_prefix("data: ") {
                    let message: serde_json::Value = serde_json::from_str(data).unwrap();
                    if message["method"] == "sampling/createMessage" {
                        let _ = found.try_send(message);
                    }
                }
            }
        }
        text
    });
    let request = sampling.recv().await.unwrap();
    let id = request["id"].clone();
    // Mallory answers it from her own session: dropped.
    let forged = json!({"jsonrpc":"2.0","id":id,"result":{"role":"assistant","content":{"type":"text","text":"forged"},"model":"m"}});
    let answer = post(&h.url, Some(&mallory), Some(&m), forged.to_string()).await;
    assert_eq!(answer.status(), 202);
    // Alice answers: her call ends with her answer.
    let real = json!({"jsonrpc":"2.0","id":id,"result":{"role":"assistant","content":{"type":"text","text":"genuine"},"model":"m"}});
    let answer = post(&h.url, Some(&alice), Some(&a), real.to_string()).await;
    assert_eq!(answer.status(), 202);
    let text = call.await.unwrap();
    let last = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .next_back()
        .unwrap();
    let response: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(response["id"], 9);
    assert_eq!(
        response["result"]["content"][0]["text"], "genuine",
        "{text}"
    );
}

#[tokio::test]
async fn bodies_that_are_not_one_json_rpc_message_are_refused() {
    let h = Harness::start_with(stdio_upstream(), |b| b.max_body_bytes(64 * 1024)).await;
    let token = h.token("alice");
    let session = raw_session(&h.url, &token).await;
    for (body, code) in [
        ("hello".to_owned(), -32700),
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#.to_owned(),
            -32600,
        ),
        (r#"{"jsonrpc":"2.0"}"#.to_owned(), -32600),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"x"}"#.to_owned(),
            -32600,
        ),
    ] {
        let response = post(&h.url, Some(&token), Some(&session), body.clone()).await;
        assert_eq!(response.status(), 400, "{body}");
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["error"]["code"], code, "{body}");
    }
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{}"}}}}}}"#,
        "x".repeat(64 * 1024)
    );
    let response = post(&h.url, Some(&token), Some(&session), big).await;
    assert_eq!(response.status(), 413);
    let plain = reqwest::Client::new()
        .post(&h.url)
        .bearer_auth(&token)
        .header("mcp-session-id", &session)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 415);
    let version = reqwest::Client::new()
        .post(&h.url)
        .bearer_auth(&token)
        .header("mcp-session-id", &session)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "1999-01-01")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(version.status(), 400);
    let again = post(&h.url, Some(&token), Some(&session), INITIALIZE).await;
    assert_eq!(again.status(), 400, "a session is initialized once");
    let no_session = post(
        &h.url,
        Some(&token),
        None,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
    )
    .await;
    assert_eq!(no_session.status(), 400);
}

#[tokio::test]
async fn the_get_stream_is_one_per_session_and_delete_ends_the_session() {
    let h = Harness::start(stdio_upstream()).await;
    let token = h.token("alice");
    let session = raw_session(&h.url, &token).await;
    let client = reqwest::Client::new();
    let open = || {
        client
            .get(&h.url)
            .bearer_auth(&token)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &session)
            .send()
    };
    let first = open().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(open().await.unwrap().status(), 409);
    let delete = client
        .delete(&h.url)
        .bearer_auth(&token)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 200);
    let after = post(
        &h.url,
        Some(&token),
        Some(&session),
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
    )
    .await;
    assert_eq!(after.status(), 404);
}

/// The `_meta` a stdio child saw for a `meta` call with these params' `_meta`, as raw JSON.
async fn child_meta(h: &Harness, sub: &str, meta: serde_json::Value) -> serde_json::Value {
    let token = h.token(sub);
    let session = raw_session(&h.url, &token).await;
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "meta", "arguments": {}, "_meta": meta}});
    let response = post(&h.url, Some(&token), Some(&session), body.to_string()).await;
    assert_eq!(response.status(), 200);
    let answer = messages(response).await.pop().unwrap();
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn stdio_children_get_the_callers_signed_identity_in_meta_never_a_forged_one() {
    use mcp_oauth::gateway_identity::IdentityVerifier;
    let h = Harness::start_with(stdio_upstream(), |b| b.identity_meta()).await;
    let forged = json!({"mcp-oauth/identity": "forged-by-the-client", "other": 1});
    let seen = child_meta(&h, "alice", forged).await;
    assert_eq!(seen["other"], 1, "{seen}");
    let token = seen["mcp-oauth/identity"].as_str().unwrap();
    assert_ne!(token, "forged-by-the-client");
    // The token verifies with the key set the gateway serves, for this child's audience.
    let jwks: serde_json::Value = reqwest::get(format!(
        "http://{}{}",
        h.addr,
        mcp_oauth_gateway::identity::JWKS_PATH
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    // The library's helper, as a child written in Rust checks it.
    let verifier =
        IdentityVerifier::with_jwks(&h.url, "stdio:upstream", &jwks.to_string()).unwrap();
    let alice = verifier.verify(token).await.unwrap();
    assert_eq!(alice.subject, "alice");
    assert_eq!(alice.scopes, ["mcp:read"]);
    let elsewhere = IdentityVerifier::with_jwks(&h.url, "stdio:other", &jwks.to_string()).unwrap();
    assert!(elsewhere.verify(token).await.is_err(), "for another child");
    // Another user's request carries their own.
    let bob = child_meta(&h, "bob", json!({})).await;
    let bob = verifier
        .verify(bob["mcp-oauth/identity"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(bob.subject, "bob");
}

#[tokio::test]
async fn without_identity_forwarding_a_client_cannot_put_an_identity_in_meta() {
    let h = Harness::start(stdio_upstream()).await;
    let seen = child_meta(
        &h,
        "mallory",
        json!({"mcp-oauth/identity": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.", "other": 2}),
    )
    .await;
    assert_eq!(seen, json!({"other": 2}));
}
