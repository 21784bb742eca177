//! The gateway's metrics: the library's registry (auth results, operations, policy decisions
//! by rule) and the upstream side (operations per upstream, stdio processes), counted by
//! exactly the requests made, with bounded labels and no subject or token.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use mcp_oauth::Auth;
use mcp_oauth::metrics::{Metrics, PolicyEffect};
use mcp_oauth_gateway::gate::{Call, Decision, Gatekeeper};
use support::*;

/// Denies `get_env` by rule `no-env`, asks for `admin` on `slow` (rule `slow-admin`), counts
/// its decisions by rule in the registry the gateway counts into.
struct Rules(Metrics);

impl Gatekeeper for Rules {
    fn decide(&self, _: Option<&Auth>, call: &Call<'_>) -> Decision {
        let (rule, effect, decision) = match call.name() {
            Some("get_env") => ("no-env", PolicyEffect::Deny, Decision::Deny),
            Some("slow") => (
                "slow-admin",
                PolicyEffect::StepUp,
                Decision::StepUp(vec!["admin".into()]),
            ),
            _ => ("open", PolicyEffect::Allow, Decision::Allow),
        };
        self.0.policy_decision(&[rule], effect);
        decision
    }
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn call_body(id: u32, tool: &str) -> String {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {"text": "x"}}})
        .to_string()
}

#[tokio::test]
async fn requests_move_exactly_their_counters() {
    let registry = Metrics::new();
    let rules = Rules(registry.clone());
    let h = Harness::start_with(stdio_upstream(), |b| b.metrics(registry).gatekeeper(rules)).await;
    let subject = "subject-c0ffee-91";
    let token = h.token(subject);
    let session = raw_session(&h.url, &token).await;
    let before = h.gateway.metrics_text();

    assert_eq!(
        post(&h.url, None, Some(&session), call_body(2, "echo"))
            .await
            .status(),
        401
    );
    assert_eq!(
        post(
            &h.url,
            Some("not-a-token"),
            Some(&session),
            call_body(3, "echo")
        )
        .await
        .status(),
        401
    );
    for id in 4..6 {
        let ok = post(&h.url, Some(&token), Some(&session), call_body(id, "echo")).await;
        assert_eq!(ok.status(), 200);
        messages(ok).await;
    }
    let denied = post(
        &h.url,
        Some(&token),
        Some(&session),
        call_body(6, "get_env"),
    )
    .await;
    assert_eq!(denied.status(), 200);
    assert!(messages(denied).await[0]["error"].is_object());
    let step_up = post(&h.url, Some(&token), Some(&session), call_body(7, "slow")).await;
    assert_eq!(step_up.status(), 403);
    // A method the client invents: counted, under _OTHER.
    for (id, method) in [(8, "x/invented-1"), (9, "x/invented-2")] {
        let body = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method});
        messages(post(&h.url, Some(&token), Some(&session), body.to_string()).await).await;
    }

    let text = h.gateway.metrics_text();
    let moved = |series: &str| value(&text, series) - value(&before, series);
    assert_eq!(
        moved("mcp_oauth_auth_results_total{result=\"missing_token\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(
        moved("mcp_oauth_auth_results_total{result=\"invalid_token\"}"),
        1.0,
        "{text}"
    );
    // echo twice, get_env, slow and the two invented methods passed the bearer layer.
    assert_eq!(
        moved("mcp_oauth_auth_results_total{result=\"ok\"}"),
        6.0,
        "{text}"
    );
    assert_eq!(
        moved("mcp_oauth_policy_decisions_total{rule_id=\"no-env\",effect=\"deny\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(
        moved("mcp_oauth_policy_decisions_total{rule_id=\"slow-admin\",effect=\"step_up\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(
        moved("mcp_oauth_policy_decisions_total{rule_id=\"open\",effect=\"allow\"}"),
        // echo twice, and the invented methods (decided too).
        4.0,
        "{text}"
    );
    assert_eq!(
        moved("mcp_gateway_requests_total{mcp_method_name=\"tools/call\",outcome=\"denied\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(
        moved("mcp_gateway_requests_total{mcp_method_name=\"tools/call\",outcome=\"step_up\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(
        moved(
            "mcp_client_operation_duration_seconds_count{mcp_method_name=\"tools/call\",upstream=\"\",network_transport=\"pipe\"}"
        ),
        2.0,
        "{text}"
    );
    // The client side, as the gateway received them (the step-up and the deny included:
    // the gateway answered them).
    let server = |method: &str, extra: &str| {
        format!(
            "mcp_server_operation_duration_seconds_count{{mcp_method_name=\"{method}\"{extra},network_transport=\"tcp\",network_protocol_name=\"http\"}}"
        )
    };
    // Tools never listed count as _OTHER; the deny, a JSON-RPC error inside HTTP 200, by
    // its code.
    assert_eq!(
        moved(&server(
            "tools/call",
            ",gen_ai_tool_name=\"_OTHER\",gen_ai_operation_name=\"execute_tool\""
        )),
        2.0,
        "{text}"
    );
    assert_eq!(
        moved(&server(
            "tools/call",
            ",gen_ai_tool_name=\"_OTHER\",gen_ai_operation_name=\"execute_tool\",error_type=\"-32602\""
        )),
        1.0,
        "{text}"
    );
    assert_eq!(
        moved(&server(
            "tools/call",
            ",gen_ai_tool_name=\"_OTHER\",gen_ai_operation_name=\"execute_tool\",error_type=\"403\""
        )),
        1.0,
        "{text}"
    );
    // The upstream answers them with its own JSON-RPC error: method not found.
    assert_eq!(
        moved(&server("_OTHER", ",error_type=\"-32601\"")),
        2.0,
        "{text}"
    );
    assert!(!text.contains("invented"), "{text}");
    assert_eq!(
        value(&text, "mcp_gateway_stdio_processes{upstream=\"\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(&text, "mcp_gateway_stdio_restarts_total{upstream=\"\"}"),
        0.0,
        "{text}"
    );
    assert!(!text.contains(subject), "no subject: {text}");
    assert!(!text.contains(&token), "no token");
    assert!(!text.contains(&session), "no session");
}

#[tokio::test]
async fn a_killed_stdio_child_counts_one_restart() {
    let h = Harness::start(stdio_upstream()).await;
    let client = h.client("alice").await;
    let first = call(&client, "pid", serde_json::json!({})).await.unwrap();
    let text = h.gateway.metrics_text();
    assert_eq!(
        value(&text, "mcp_gateway_stdio_processes{upstream=\"\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(&text, "mcp_gateway_stdio_restarts_total{upstream=\"\"}"),
        0.0,
        "{text}"
    );
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &first])
        .status()
        .unwrap();
    assert!(killed.success());
    poll("a restarted child", || async {
        call(&client, "pid", serde_json::json!({}))
            .await
            .ok()
            .filter(|pid| *pid != first)
    })
    .await;
    let text = h.gateway.metrics_text();
    assert_eq!(
        value(&text, "mcp_gateway_stdio_restarts_total{upstream=\"\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(&text, "mcp_gateway_stdio_processes{upstream=\"\"}"),
        1.0,
        "{text}"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn the_process_gauge_follows_per_user_children() {
    let h = Harness::start_with(
        stdio_upstream().isolation(mcp_oauth_gateway::Isolation::PerUser),
        |b| b.per_user_idle(std::time::Duration::from_secs(1)),
    )
    .await;
    let gauge = || {
        value(
            &h.gateway.metrics_text(),
            "mcp_gateway_stdio_processes{upstream=\"\"}",
        )
    };
    assert_eq!(gauge(), 0.0, "children start on demand");
    let alice = h.client("alice").await;
    let bob = h.client("bob").await;
    call(&alice, "echo", serde_json::json!({"text": "a"}))
        .await
        .unwrap();
    call(&bob, "echo", serde_json::json!({"text": "b"}))
        .await
        .unwrap();
    assert_eq!(gauge(), 2.0);
    for client in [alice, bob] {
        client.cancel().await.unwrap();
    }
    // Idle children are stopped: the gauge goes back to zero, with no restart counted.
    poll("the idle children to be stopped", || async {
        (gauge() == 0.0).then_some(())
    })
    .await;
    let text = h.gateway.metrics_text();
    assert_eq!(
        value(&text, "mcp_gateway_stdio_restarts_total{upstream=\"\"}"),
        0.0,
        "{text}"
    );
}

fn server_series(method: &str, extra: &str) -> String {
    format!(
        "mcp_server_operation_duration_seconds_count{{mcp_method_name=\"{method}\"{extra},network_transport=\"tcp\",network_protocol_name=\"http\"}}"
    )
}

fn tool_series(tool: &str, error: &str) -> String {
    server_series(
        "tools/call",
        &format!(",gen_ai_tool_name=\"{tool}\",gen_ai_operation_name=\"execute_tool\"{error}"),
    )
}

fn list_body(id: u32) -> String {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"}).to_string()
}

/// Listed tools get a `gen_ai_tool_name` of their own; a name never listed stays `_OTHER`;
/// JSON-RPC errors inside HTTP 200 (the gateway's deny, the upstream's own) count by code.
#[tokio::test]
async fn listed_tools_and_jsonrpc_errors_label_operations() {
    let registry = Metrics::new();
    let rules = Rules(registry.clone());
    let h = Harness::start_with(stdio_upstream(), |b| b.metrics(registry).gatekeeper(rules)).await;
    let token = h.token("alice");
    let session = raw_session(&h.url, &token).await;
    let listed = messages(post(&h.url, Some(&token), Some(&session), list_body(2)).await).await;
    assert!(listed[0]["result"]["tools"].as_array().unwrap().len() > 3);
    let before = h.gateway.metrics_text();
    let mut answers = Vec::new();
    for (id, tool) in [
        (3, "echo"),
        (4, "echo"),
        (5, "get_env"),
        (6, "no-such-tool"),
    ] {
        let answer = post(&h.url, Some(&token), Some(&session), call_body(id, tool)).await;
        assert_eq!(answer.status(), 200);
        answers.push(messages(answer).await.remove(0));
    }
    // The upstream's own refusal of the unknown tool.
    assert_eq!(answers[3]["error"]["code"], -32602, "{:?}", answers[3]);
    let text = h.gateway.metrics_text();
    let moved = |series: &str| value(&text, series) - value(&before, series);
    assert_eq!(moved(&tool_series("echo", "")), 2.0, "{text}");
    assert_eq!(
        moved(&tool_series("get_env", ",error_type=\"-32602\"")),
        1.0,
        "{text}"
    );
    assert_eq!(moved(&tool_series("get_env", "")), 0.0, "{text}");
    assert_eq!(
        moved(&tool_series("_OTHER", ",error_type=\"-32602\"")),
        1.0,
        "a name no list gave stays _OTHER: {text}"
    );
    assert!(!text.contains("no-such-tool"), "{text}");
    assert_eq!(moved(&server_series("tools/list", "")), 0.0, "{text}");
}

/// At an upstream's own path (`/NAME/mcp`) the operations are counted as at `/mcp`, under
/// the names the client sees there; an upstream a reload adds is counted from then on.
#[tokio::test]
async fn own_paths_and_reloaded_upstreams_are_counted() {
    let remote = serve_app(mcp_oauth_gateway::test_upstream::http_router()).await;
    let http = |addr: std::net::SocketAddr| -> mcp_oauth_gateway::UpstreamConfig {
        mcp_oauth_gateway::HttpConfig::new(&format!("http://{addr}/mcp"))
            .unwrap()
            .into()
    };
    let h = Harness::several(
        vec![
            ("local", stdio_upstream().into()),
            ("remote", http(remote.0)),
        ],
        |b| b,
    )
    .await;
    let own = format!("http://{}/remote/mcp", h.addr);
    let own_token = h
        .key
        .token()
        .iss(ISSUER)
        .aud(&own)
        .sub("alice")
        .scope("mcp:read")
        .sign();
    let own_session = raw_session(&own, &own_token).await;
    let before = h.gateway.metrics_text();
    messages(post(&own, Some(&own_token), Some(&own_session), list_body(2)).await).await;
    for id in [3, 4] {
        let answer = post(
            &own,
            Some(&own_token),
            Some(&own_session),
            call_body(id, "echo"),
        )
        .await;
        assert_eq!(
            messages(answer).await[0]["result"]["content"][0]["text"],
            "x"
        );
    }
    let text = h.gateway.metrics_text();
    let moved = |series: &str| value(&text, series) - value(&before, series);
    assert_eq!(moved(&server_series("tools/list", "")), 1.0, "{text}");
    assert_eq!(moved(&tool_series("echo", "")), 2.0, "{text}");
    assert_eq!(
        moved(
            "mcp_client_operation_duration_seconds_count{mcp_method_name=\"tools/call\",upstream=\"remote\",network_transport=\"tcp\"}"
        ),
        2.0,
        "each upstream call counted once: {text}"
    );
    assert_eq!(
        moved(
            "mcp_client_operation_duration_seconds_count{mcp_method_name=\"tools/list\",upstream=\"remote\",network_transport=\"tcp\"}"
        ),
        1.0,
        "{text}"
    );

    // A third upstream, added by a reload: its calls are counted without a restart.
    let third = serve_app(mcp_oauth_gateway::test_upstream::http_router()).await;
    h.gateway
        .reload([
            ("local", stdio_upstream().into()),
            ("remote", http(remote.0)),
            ("third", http(third.0)),
        ])
        .unwrap();
    let token = h.token("alice");
    let session = raw_session(&h.url, &token).await;
    messages(post(&h.url, Some(&token), Some(&session), list_body(5)).await).await;
    let before = h.gateway.metrics_text();
    let answer = post(
        &h.url,
        Some(&token),
        Some(&session),
        call_body(6, "third__echo"),
    )
    .await;
    assert_eq!(
        messages(answer).await[0]["result"]["content"][0]["text"],
        "x"
    );
    let text = h.gateway.metrics_text();
    let moved = |series: &str| value(&text, series) - value(&before, series);
    assert_eq!(
        moved(
            "mcp_client_operation_duration_seconds_count{mcp_method_name=\"tools/call\",upstream=\"third\",network_transport=\"tcp\"}"
        ),
        1.0,
        "{text}"
    );
    assert_eq!(moved(&tool_series("third__echo", "")), 1.0, "{text}");
    assert!(
        text.contains("mcp_gateway_upstream_errors_total{upstream=\"third\"} 0\n"),
        "{text}"
    );
}

/// Opens a session that declares sampling (so that the upstream may ask the client's model).
async fn sampling_session(url: &str, token: &str) -> String {
    let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {"sampling": {}},
        "clientInfo": {"name": "raw", "version": "1"}}});
    let response = post(url, Some(token), None, init.to_string()).await;
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    messages(response).await;
    let ack = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    assert_eq!(
        post(url, Some(token), Some(&session), ack).await.status(),
        202
    );
    session
}

/// The data of the next SSE event of `response` (read chunk by chunk), `None` at its end.
async fn next_event(
    response: &mut reqwest::Response,
    buffer: &mut String,
) -> Option<serde_json::Value> {
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            if !data.concat().is_empty() {
                return Some(serde_json::from_str(&data.join("\n")).unwrap());
            }
        }
        let chunk = response.chunk().await.unwrap()?;
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

/// An HTTP upstream's answer streamed to the client (SSE) is observed when it ends, not at
/// its head, with the JSON-RPC error code of its final event as `error_type`.
#[tokio::test]
async fn streamed_answers_are_observed_at_their_end_with_their_error() {
    let remote = serve_app(mcp_oauth_gateway::test_upstream::http_router()).await;
    let upstream = mcp_oauth_gateway::HttpConfig::new(&format!("http://{}/mcp", remote.0)).unwrap();
    let h = Harness::start(upstream).await;
    let token = h.token("alice");
    let session = sampling_session(&h.url, &token).await;
    let errors = |text: &str, code: &str| {
        value(
            text,
            &tool_series("_OTHER", &format!(",error_type=\"{code}\"")),
        )
    };
    let before = h.gateway.metrics_text();

    // The upstream refuses an unknown tool with -32602, in an SSE answer.
    let refused = post(
        &h.url,
        Some(&token),
        Some(&session),
        call_body(2, "no-such-tool"),
    )
    .await;
    assert_eq!(refused.status(), 200);
    assert!(
        refused.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"),
        "the answer is streamed"
    );
    let answer = messages(refused).await;
    assert_eq!(
        answer.last().unwrap()["error"]["code"],
        -32602,
        "{answer:?}"
    );
    let text = h.gateway.metrics_text();
    assert_eq!(
        errors(&text, "-32602") - errors(&before, "-32602"),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(&text, &tool_series("_OTHER", "")) - value(&before, &tool_series("_OTHER", "")),
        0.0,
        "not observed as a success: {text}"
    );

    held_call_is_observed_at_its_end(&h, &token, &session).await;
}

/// A stdio child's answer streamed to the client: observed likewise at its end.
#[tokio::test]
async fn streamed_stdio_answers_are_observed_at_their_end_with_their_error() {
    let h = Harness::start(stdio_upstream()).await;
    let token = h.token("alice");
    let session = sampling_session(&h.url, &token).await;
    held_call_is_observed_at_its_end(&h, &token, &session).await;
}

/// The `mcp_server_operation_duration_seconds` observations of `tools/call`, every series.
fn calls(text: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(
                "mcp_server_operation_duration_seconds_count{mcp_method_name=\"tools/call\"",
            )
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>()
}

/// A call held open by the upstream's sampling request: nothing observed until it ends, then
/// observed with the error the upstream answers when the client cannot sample (-32603).
async fn held_call_is_observed_at_its_end(h: &Harness, token: &str, session: &str) {
    let errors = |text: &str, code: &str| {
        value(
            text,
            &tool_series("_OTHER", &format!(",error_type=\"{code}\"")),
        )
    };
    let before = h.gateway.metrics_text();
    let (token, session) = (Some(token), Some(session));
    let ask = serde_json::json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "ask_llm", "arguments": {"question": "q"}}});
    let mut asking = post(&h.url, token, session, ask.to_string()).await;
    assert_eq!(asking.status(), 200);
    let mut buffer = String::new();
    let request = next_event(&mut asking, &mut buffer)
        .await
        .expect("an event");
    assert_eq!(request["method"], "sampling/createMessage", "{request}");
    let held = h.gateway.metrics_text();
    assert_eq!(
        calls(&held),
        calls(&before),
        "not observed at the head: {held}"
    );
    // The client cannot sample: the upstream's tool fails with -32603.
    let no_model = serde_json::json!({"jsonrpc": "2.0", "id": request["id"],
        "error": {"code": -32601, "message": "no model here"}});
    assert_eq!(
        post(&h.url, token, session, no_model.to_string())
            .await
            .status(),
        202
    );
    let mut last = None;
    while let Some(event) = next_event(&mut asking, &mut buffer).await {
        last = Some(event);
    }
    let last = last.expect("the answer");
    assert_eq!(last["id"], 3, "{last}");
    assert_eq!(last["error"]["code"], -32603, "{last}");
    let after = h.gateway.metrics_text();
    assert_eq!(calls(&after) - calls(&held), 1.0, "{after}");
    assert_eq!(
        errors(&after, "-32603") - errors(&held, "-32603"),
        1.0,
        "{after}"
    );
}
