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
    assert_eq!(
        moved(&server(
            "tools/call",
            ",gen_ai_tool_name=\"_OTHER\",gen_ai_operation_name=\"execute_tool\""
        )),
        3.0,
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
    assert_eq!(moved(&server("_OTHER", "")), 2.0, "{text}");
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
