//! The audit line names the rules that decided: for an allowed, denied or stepped-up call
//! (what the gatekeeper said with `Call::decided_by`), for a filtered list (the rules that hid
//! items, `Gatekeeper::hidden_by`) and for a refusal of `admit` (its reason: a rate limit).
//! Through one upstream and through several.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use futures_util::future::BoxFuture;
use mcp_oauth::Auth;
use mcp_oauth::audit::{AuditLog, MemorySink};
use mcp_oauth_gateway::gate::{Admission, Call, Decision, Gatekeeper, ListKind, Refusal};
use mcp_oauth_gateway::{GatewayBuilder, HttpConfig, UpstreamConfig};
use serde_json::{Value, json};
use support::*;

/// Rules with names: `echo-ok` allows echo, `no-pid` forbids pid (and hides it), `env-admin`
/// asks for a scope for get_env, nothing shows `slow`; the rate limit `cancelled-hourly`
/// refuses `cancelled`.
struct Named;

fn tool(name: &str) -> &str {
    name.rsplit_once("__").map_or(name, |(_, tool)| tool)
}

impl Gatekeeper for Named {
    fn decide(&self, _: Option<&Auth>, call: &Call<'_>) -> Decision {
        if ListKind::of_method(call.method()).is_some() {
            return Decision::Allow;
        }
        match call.name().map(tool) {
            Some("echo" | "cancelled") => {
                call.decided_by(["echo-ok"]);
                Decision::Allow
            }
            Some("pid") => {
                call.decided_by(["no-pid"]);
                Decision::Deny
            }
            Some("get_env") => {
                call.decided_by(["env-admin"]);
                Decision::StepUp(vec!["admin".into()])
            }
            _ => Decision::Deny,
        }
    }

    fn admit<'a>(&'a self, _: Option<&'a Auth>, call: Admission<'a>) -> BoxFuture<'a, Decision> {
        let refused = call.name.map(tool) == Some("cancelled");
        Box::pin(async move {
            if refused {
                Decision::Refuse(Refusal {
                    code: -32029,
                    message: "wait".into(),
                    data: None,
                    reason: "rate_limit:cancelled-hourly".into(),
                })
            } else {
                Decision::Allow
            }
        })
    }

    fn filters_lists(&self) -> bool {
        true
    }

    fn hidden_by(&self, _: Option<&Auth>, _: ListKind, item: &Value) -> Option<Vec<String>> {
        match item["name"].as_str().map(tool) {
            Some("pid") => Some(vec!["no-pid".into()]),
            Some("slow") => Some(Vec::new()),
            _ => None,
        }
    }
}

async fn rpc(h: &Harness, token: &str, session: &str, body: Value) -> reqwest::Response {
    post(&h.url, Some(token), Some(session), body.to_string()).await
}

/// The audit events of `h` after the calls, by method and name.
async fn audited(
    make: impl FnOnce(GatewayBuilder) -> GatewayBuilder,
    several: bool,
    prefix: &str,
) -> Vec<Value> {
    let remote = support::serve_app(mcp_oauth_gateway::test_upstream::http_router()).await;
    let remote_config: UpstreamConfig = HttpConfig::new(&format!("http://{}/mcp", remote.0))
        .unwrap()
        .into();
    let sink = MemorySink::new();
    let audit = AuditLog::builder().memory(&sink).build().unwrap();
    let flush = audit.clone();
    let configure = move |b: GatewayBuilder| make(b.gatekeeper(Named).audit(audit));
    let h = if several {
        Harness::several(
            vec![
                ("local", stdio_upstream().into()),
                ("remote", remote_config),
            ],
            configure,
        )
        .await
    } else {
        Harness::start_with(remote_config, configure).await
    };
    let token = h.token("alice");
    let session = raw_session(&h.url, &token).await;
    let list = messages(
        rpc(
            &h,
            &token,
            &session,
            json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
        )
        .await,
    )
    .await;
    let names: Vec<&str> = list[0]["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| tool(t["name"].as_str().unwrap()))
        .collect();
    assert!(names.contains(&"echo") && !names.contains(&"pid") && !names.contains(&"slow"));
    for (id, name) in [
        (3, "echo"),
        (4, "pid"),
        (5, "get_env"),
        (6, "cancelled"),
        (7, "meta"),
    ] {
        let body = json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
                          "params":{"name":format!("{prefix}{name}"),"arguments":{"text":"x"}}});
        let status = rpc(&h, &token, &session, body).await.status();
        assert_eq!(status, if name == "get_env" { 403 } else { 200 }, "{name}");
    }
    flush.flush().await.unwrap();
    sink.lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn rules_of(events: &[Value], method: &str, name: Option<&str>) -> (Value, Value) {
    let event = events
        .iter()
        .find(|e| {
            e["method"] == method
                && name.is_none_or(|n| e.to_string().contains(&format!("\"{n}\"")))
        })
        .unwrap_or_else(|| panic!("no {method} {name:?} in {events:#?}"));
    (
        event["decision"]["effect"].clone(),
        event["decision"]["rule_ids"].clone(),
    )
}

fn check(events: &[Value], prefix: &str) {
    let name = |n: &str| format!("{prefix}{n}");
    assert_eq!(
        rules_of(events, "tools/list", None),
        (json!("allow"), json!(["no-pid"])),
        "a filtered list names the rules that hid items (none named for slow)"
    );
    assert_eq!(
        rules_of(events, "tools/call", Some(&name("echo"))),
        (json!("allow"), json!(["echo-ok"]))
    );
    assert_eq!(
        rules_of(events, "tools/call", Some(&name("pid"))),
        (json!("deny"), json!(["no-pid"]))
    );
    assert_eq!(
        rules_of(events, "tools/call", Some(&name("get_env"))),
        (json!("step_up"), json!(["env-admin"]))
    );
    assert_eq!(
        rules_of(events, "tools/call", Some(&name("cancelled"))),
        (json!("deny"), json!(["rate_limit:cancelled-hourly"])),
        "the rate limit that refused, not the rule that allowed"
    );
    // No rule decided: no rule named.
    let (effect, rules) = rules_of(events, "tools/call", Some(&name("meta")));
    assert_eq!(effect, "deny");
    assert!(rules.is_null() || rules == json!([]), "{rules}");
}

#[tokio::test]
async fn audit_lines_name_the_rules_through_one_upstream() {
    let events = audited(|b| b, false, "").await;
    check(&events, "");
}

#[tokio::test]
async fn audit_lines_name_the_rules_through_several_upstreams() {
    let events = audited(|b| b, true, "remote__").await;
    check(&events, "remote__");
}
