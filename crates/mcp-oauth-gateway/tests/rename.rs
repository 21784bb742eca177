//! Renaming and describing an upstream's tools and prompts with several upstreams: clients see
//! the new name and description, calls (`prompts/get`) are mapped back, and the policy sees
//! the upstream's own name.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::sync::{Arc, Mutex};

use mcp_oauth::Auth;
use mcp_oauth_gateway::gate::{Call, Decision, Gatekeeper, ListKind};
use mcp_oauth_gateway::{Gateway, HttpConfig, ToolNames, UpstreamConfig};
use serde_json::{Value, json};
use support::*;

/// A Streamable HTTP test upstream on 127.0.0.1.
async fn http_member() -> (UpstreamConfig, tokio::sync::oneshot::Sender<()>) {
    let (addr, stop) = serve_app(mcp_oauth_gateway::test_upstream::http_router()).await;
    let config = HttpConfig::new(&format!("http://{addr}/mcp")).unwrap();
    (config.into(), stop)
}

/// A policy written for the upstream's own name: `local__get_env` is denied and hidden.
/// Records the names it is asked about.
#[derive(Clone, Default)]
struct RealNameRule(Arc<Mutex<Vec<String>>>);

impl Gatekeeper for RealNameRule {
    fn decide(&self, _: Option<&Auth>, call: &Call<'_>) -> Decision {
        let name = call.name().unwrap_or_default().to_owned();
        self.0.lock().unwrap().push(name.clone());
        if name == "local__get_env" {
            Decision::Deny
        } else {
            Decision::Allow
        }
    }

    fn filters_lists(&self) -> bool {
        true
    }

    fn keep(&self, _: Option<&Auth>, _: ListKind, item: &Value) -> bool {
        item["name"] != "local__get_env"
    }
}

fn local_names() -> ToolNames {
    ToolNames::new()
        .rename("echo", "say")
        .describe("echo", "Says it back")
        .rename("get_env", "environment")
}

#[tokio::test]
async fn clients_see_the_new_names_and_calls_are_mapped_back() {
    let (remote, _stop) = http_member().await;
    let h = Harness::several(
        vec![("local", stdio_upstream().into()), ("remote", remote)],
        |b| {
            b.tools("local", local_names())
                .tools("remote", ToolNames::new().describe("pid", "The process id"))
        },
    )
    .await;
    let client = h.client("alice").await;
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for name in [
        "local__say",
        "local__environment",
        "remote__echo",
        "remote__pid",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    for gone in ["local__echo", "local__get_env"] {
        assert!(!names.contains(&gone), "{gone} in {names:?}");
    }
    let described = |name: &str| {
        tools
            .iter()
            .find(|t| t.name == name)
            .and_then(|t| t.description.as_deref().map(str::to_owned))
    };
    assert_eq!(described("local__say").as_deref(), Some("Says it back"));
    assert_eq!(described("remote__pid").as_deref(), Some("The process id"));
    assert_eq!(
        call(&client, "local__say", json!({"text": "hi"}))
            .await
            .unwrap(),
        "hi"
    );
    // The own name of a renamed tool is not a name the client was shown.
    let err = call(&client, "local__echo", json!({"text": "hi"})).await;
    assert!(err.is_err(), "{err:?}");
    assert_eq!(
        call(&client, "remote__echo", json!({"text": "there"}))
            .await
            .unwrap(),
        "there"
    );
    client.cancel().await.unwrap();

    // At the upstream's own path: the new name without the prefix.
    let own = format!("http://{}/local/mcp", h.addr);
    let token = h
        .key
        .token()
        .iss(ISSUER)
        .aud(&own)
        .sub("alice")
        .scope("mcp:read")
        .sign();
    let alone = connect(&own, &token, "alice").await;
    let names: Vec<String> = alone
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(names.contains(&"say".to_owned()), "{names:?}");
    assert!(!names.contains(&"echo".to_owned()), "{names:?}");
    assert_eq!(
        call(&alone, "say", json!({"text": "own"})).await.unwrap(),
        "own"
    );
    assert!(call(&alone, "echo", json!({"text": "own"})).await.is_err());
    alone.cancel().await.unwrap();
}

#[tokio::test]
async fn a_rename_does_not_slip_a_call_past_a_rule_for_the_real_name() {
    let (remote, _stop) = http_member().await;
    let rule = RealNameRule::default();
    let gatekeeper = rule.clone();
    let h = Harness::several(
        vec![("local", stdio_upstream().into()), ("remote", remote)],
        move |b| b.tools("local", local_names()).gatekeeper(gatekeeper),
    )
    .await;
    let client = h.client("mallory").await;
    let names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    // The list filter sees the real name too: the renamed tool stays hidden.
    assert!(
        !names.contains(&"local__environment".to_owned()),
        "{names:?}"
    );
    assert!(names.contains(&"local__say".to_owned()), "{names:?}");
    rule.0.lock().unwrap().clear();
    let denied = call(&client, "local__environment", json!({})).await;
    assert!(denied.is_err(), "{denied:?}");
    assert_eq!(
        call(&client, "local__say", json!({"text": "ok"}))
            .await
            .unwrap(),
        "ok"
    );
    assert_eq!(
        *rule.0.lock().unwrap(),
        ["local__get_env", "local__echo"],
        "the policy sees the upstream's own names"
    );
    client.cancel().await.unwrap();
}

fn two(remote: UpstreamConfig) -> Vec<(&'static str, UpstreamConfig)> {
    vec![("local", stdio_upstream().into()), ("remote", remote)]
}

#[tokio::test]
async fn collisions_are_refused_at_start_and_at_reload() {
    let (remote, _stop) = http_member().await;
    let refused = |b: mcp_oauth_gateway::GatewayBuilder| {
        b.insecure_no_auth()
            .build()
            .expect_err("refused")
            .to_string()
    };
    let twice = ToolNames::new().rename("echo", "x").rename("pid", "x");
    let err = refused(Gateway::aggregate(two(remote.clone())).tools("local", twice.clone()));
    assert!(
        err.contains("local: echo and pid are both renamed to x"),
        "{err}"
    );
    let err = refused(
        Gateway::aggregate(two(remote.clone())).tools("nowhere", ToolNames::new().rename("a", "b")),
    );
    assert!(
        err.contains("\"nowhere\", which is not an upstream"),
        "{err}"
    );
    let err = refused(
        Gateway::aggregate(two(remote.clone()))
            .tools("local", ToolNames::new().rename("echo", "a.b")),
    );
    assert!(err.contains("letters, digits"), "{err}");
    // With one upstream, no prefix: 64 characters, not 65.
    let err = refused(
        Gateway::builder(stdio_upstream())
            .tools("", ToolNames::new().rename("echo", "x".repeat(65))),
    );
    assert!(
        err.contains("the upstream: echo renamed to") && err.contains("use 1 to 64"),
        "{err}"
    );

    // A reload with a collision keeps what was served; a good one renames without a restart.
    let h = Harness::several(two(remote.clone()), |b| b.tools("local", local_names())).await;
    let err = h
        .gateway
        .reload_tools(two(remote.clone()), [("local", twice)])
        .expect_err("collision");
    assert!(err.to_string().contains("both renamed to x"), "{err}");
    let client = h.client("alice").await;
    assert_eq!(
        call(&client, "local__say", json!({"text": "kept"}))
            .await
            .unwrap(),
        "kept"
    );
    let pid = h.gateway.upstream_pid();
    assert!(pid.is_some());
    let report = h
        .gateway
        .reload_tools(
            two(remote.clone()),
            [("local", ToolNames::new().rename("echo", "repeat"))],
        )
        .unwrap();
    assert_eq!(report.renamed, ["local"]);
    assert!(report.changed.is_empty(), "{report:?}");
    assert_eq!(h.gateway.upstream_pid(), pid, "the child keeps running");
    assert_eq!(
        call(&client, "local__repeat", json!({"text": "new"}))
            .await
            .unwrap(),
        "new"
    );
    assert!(
        call(&client, "local__say", json!({"text": "x"}))
            .await
            .is_err()
    );
    // A plain reload keeps the tables.
    let report = h.gateway.reload(two(remote)).unwrap();
    assert!(report.renamed.is_empty(), "{report:?}");
    assert_eq!(
        call(&client, "local__repeat", json!({"text": "still"}))
            .await
            .unwrap(),
        "still"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_rename_onto_a_name_the_upstream_uses_is_caught_by_its_list() {
    let (remote, _stop) = http_member().await;
    // `pid` is a tool of the test upstream that the table does not mention.
    let h = Harness::several(two(remote), |b| {
        b.tools("local", ToolNames::new().rename("echo", "pid"))
    })
    .await;
    let err = h.gateway.catalog().await.expect_err("collision");
    assert!(
        err.to_string()
            .contains("local: echo is renamed to pid, but the upstream has a tool pid of its own"),
        "{err}"
    );
    // Clients see one local__pid: the renamed echo.
    let client = h.client("alice").await;
    let tools = client.list_all_tools().await.unwrap();
    let pids = tools.iter().filter(|t| t.name == "local__pid").count();
    assert_eq!(pids, 1);
    assert_eq!(
        call(&client, "local__pid", json!({"text": "echoed"}))
            .await
            .unwrap(),
        "echoed"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_stateless_caller_names_a_renamed_tool_by_its_new_name_in_mcp_name() {
    let (remote, _stop) = http_member().await;
    let h = Harness::several(two(remote), |b| b.tools("local", local_names())).await;
    let token = h.token("alice");
    let send = |name: &'static str, header: &'static str| {
        let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
            "name": name, "arguments": {"text": "modern"},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
        reqwest::Client::new()
            .post(&h.url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", header)
            .body(body.to_string())
            .send()
    };
    let called = send("local__say", "local__say").await.unwrap();
    assert_eq!(called.status(), 200);
    let answer = messages(called).await.pop().unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "modern", "{answer}");
    // The header must be the name the client sees, not the upstream's own.
    let lying = send("local__say", "local__echo").await.unwrap();
    assert_eq!(lying.status(), 400);
    let body: Value = lying.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32020, "{body}");
}

/// A JSON-RPC request in a fresh session at `url`: its answer.
async fn ask(url: &str, token: &str, method: &str, params: Value) -> Value {
    let session = raw_session(url, token).await;
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
    let response = post(url, Some(token), Some(&session), body.to_string()).await;
    assert_eq!(response.status(), 200, "{method} at {url}");
    messages(response)
        .await
        .into_iter()
        .find(|m| m.get("id").is_some())
        .unwrap()
}

fn prompt_names(answer: &Value) -> Vec<(String, String)> {
    answer["result"]["prompts"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["description"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn prompts_are_renamed_and_described_and_got_by_their_new_name() {
    let (remote, _stop) = http_member().await;
    let seen = RealNameRule::default();
    let names = ToolNames::new()
        .rename_prompt("review", "critique")
        .describe_prompt("review", "Critiques the text");
    let h = Harness::several(two(remote), |b| {
        b.tools("local", names).gatekeeper(seen.clone())
    })
    .await;
    let token = h.token("alice");
    let listed = prompt_names(&ask(&h.url, &token, "prompts/list", json!({})).await);
    assert!(
        listed.contains(&("local__critique".into(), "Critiques the text".into())),
        "{listed:?}"
    );
    assert!(
        listed.contains(&(
            "remote__review".into(),
            "Asks for a review of the text".into()
        )),
        "{listed:?}"
    );
    assert!(
        listed.iter().all(|(n, _)| n != "local__review"),
        "{listed:?}"
    );
    let got = ask(
        &h.url,
        &token,
        "prompts/get",
        json!({"name": "local__critique", "arguments": {"text": "abc"}}),
    )
    .await;
    assert_eq!(
        got["result"]["messages"][0]["content"]["text"], "review: abc",
        "{got}"
    );
    // The policy saw the upstream's own name.
    assert!(
        seen.0.lock().unwrap().contains(&"local__review".to_owned()),
        "{:?}",
        seen.0.lock().unwrap()
    );
    assert!(
        !seen
            .0
            .lock()
            .unwrap()
            .contains(&"local__critique".to_owned()),
        "{:?}",
        seen.0.lock().unwrap()
    );
    // The prompt's own name is not a name the client was shown.
    let hidden = ask(
        &h.url,
        &token,
        "prompts/get",
        json!({"name": "local__review", "arguments": {"text": "abc"}}),
    )
    .await;
    assert!(hidden.get("error").is_some(), "{hidden}");
    assert!(hidden.get("result").is_none(), "{hidden}");

    // At the upstream's own path: the new name without the prefix.
    let own = format!("http://{}/local/mcp", h.addr);
    let own_token = h
        .key
        .token()
        .iss(ISSUER)
        .aud(&own)
        .sub("alice")
        .scope("mcp:read")
        .sign();
    let listed = prompt_names(&ask(&own, &own_token, "prompts/list", json!({})).await);
    assert_eq!(
        listed,
        [("critique".to_owned(), "Critiques the text".to_owned())]
    );
    let got = ask(
        &own,
        &own_token,
        "prompts/get",
        json!({"name": "critique", "arguments": {"text": "own"}}),
    )
    .await;
    assert_eq!(
        got["result"]["messages"][0]["content"]["text"], "review: own",
        "{got}"
    );
    let hidden = ask(&own, &own_token, "prompts/get", json!({"name": "review"})).await;
    assert!(hidden.get("error").is_some(), "{hidden}");
}

#[tokio::test]
async fn prompt_names_that_collide_are_refused() {
    let (remote, _stop) = http_member().await;
    let twice = ToolNames::new()
        .rename_prompt("review", "x")
        .rename_prompt("other", "x");
    let err = Gateway::aggregate(two(remote.clone()))
        .insecure_no_auth()
        .tools("local", twice)
        .build()
        .expect_err("collision");
    assert!(
        err.to_string()
            .contains("local: prompt other and review are both renamed to x"),
        "{err}"
    );
    let bad = ToolNames::new().rename_prompt("review", "a/b");
    let err = Gateway::aggregate(two(remote.clone()))
        .insecure_no_auth()
        .tools("local", bad)
        .build()
        .expect_err("bad name");
    assert!(
        err.to_string()
            .contains("prompt review renamed to \"a/b\": use 1 to 57 letters"),
        "{err}"
    );
    // A name the upstream's own list still uses: caught by the list, as for tools.
    let shadow = ToolNames::new().rename_prompt("other", "review");
    let h = Harness::several(two(remote), |b| b.tools("local", shadow)).await;
    let err = h.gateway.catalog().await.expect_err("collision");
    assert!(
        err.to_string().contains(
            "local: other is renamed to review, but the upstream has a prompt review of its own"
        ),
        "{err}"
    );
}

/// Records the names the gatekeeper is asked about; allows everything.
#[derive(Clone, Default)]
struct Names(Arc<Mutex<Vec<String>>>);

impl Gatekeeper for Names {
    fn decide(&self, _: Option<&Auth>, call: &Call<'_>) -> Decision {
        let name = call.name().unwrap_or_default().to_owned();
        self.0.lock().unwrap().push(name);
        Decision::Allow
    }
}

#[tokio::test]
async fn one_upstream_renames_without_a_prefix_and_the_policy_sees_its_own_names() {
    let seen = Names::default();
    let names = ToolNames::new()
        .rename("echo", "say")
        .describe("echo", "Says it back")
        .rename_prompt("review", "critique");
    let h = Harness::start_with(stdio_upstream(), |b| {
        b.tools("", names).gatekeeper(seen.clone())
    })
    .await;
    let client = h.client("alice").await;
    let tools = client.list_all_tools().await.unwrap();
    let listed: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert!(listed.contains(&"say"), "{listed:?}");
    assert!(listed.contains(&"pid"), "{listed:?}");
    assert!(
        listed.iter().all(|n| *n != "echo" && !n.contains("__")),
        "{listed:?}"
    );
    let say = tools.iter().find(|t| t.name == "say").unwrap();
    assert_eq!(say.description.as_deref(), Some("Says it back"));
    assert_eq!(
        call(&client, "say", json!({"text": "hi"})).await.unwrap(),
        "hi"
    );
    assert!(call(&client, "echo", json!({"text": "x"})).await.is_err());
    client.cancel().await.unwrap();
    let token = h.token("alice");
    let got = ask(
        &h.url,
        &token,
        "prompts/get",
        json!({"name": "critique", "arguments": {"text": "one"}}),
    )
    .await;
    assert_eq!(
        got["result"]["messages"][0]["content"]["text"], "review: one",
        "{got}"
    );
    let listed = prompt_names(&ask(&h.url, &token, "prompts/list", json!({})).await);
    assert_eq!(listed[0].0, "critique", "{listed:?}");
    // The gatekeeper saw the own names, unprefixed; never the new ones.
    let asked = seen.0.lock().unwrap().clone();
    assert!(asked.contains(&"echo".to_owned()), "{asked:?}");
    assert!(asked.contains(&"review".to_owned()), "{asked:?}");
    assert!(
        asked
            .iter()
            .all(|n| n != "say" && n != "critique" && !n.contains("__")),
        "{asked:?}"
    );
    // What a policy is checked against: the own names, as with one upstream served directly.
    let catalog = h.gateway.catalog().await.unwrap();
    let own: Vec<&str> = catalog["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(own.contains(&"echo") && !own.contains(&"say"), "{own:?}");
    // A table for another name than the upstream's is refused at build.
    let err = Gateway::builder(stdio_upstream())
        .insecure_no_auth()
        .tools("a", ToolNames::new().rename("echo", "x"))
        .tools("b", ToolNames::new().rename("echo", "y"))
        .build()
        .expect_err("two tables for one upstream");
    assert!(
        err.to_string().contains("which is not the upstream"),
        "{err}"
    );
}
