//! `mcp-oauth gateway --config FILE` reloads the file and its policy file while it serves:
//! a new upstream is served and a removed one gone in the session a client already has; a
//! policy that no longer compiles against the tools, or a file that does not parse, leaves
//! what is in force and the log names the file and line; SIGHUP reads everything again (a
//! rotated `file:` secret).

#![cfg(unix)]
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};
use tokio::process::Command;

use support::gateway::{self, Client, echo};
use support::process::{DEADLINE, Served, TempDir, run_async};

async fn http_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, mcp_oauth_gateway::test_upstream::http_router()).await
    });
    addr
}

async fn names(client: &Client) -> Vec<String> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort_unstable();
    names
}

/// Polls `check` until it is true, or panics naming `what` (with the gateway's log) at the
/// deadline.
async fn until<F, Fut>(what: &str, gateway: &Served, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; the log:\n{}",
            gateway.log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await; // poll interval, bounded above
    }
}

fn config(
    alpha: SocketAddr,
    second: (&str, SocketAddr),
    header: Option<&Path>,
    policy: &Path,
) -> String {
    let (name, addr) = second;
    let header = header
        .map(|file| format!("headers = {{ \"X-Key\" = \"file:{}\" }}\n", file.display()))
        .unwrap_or_default();
    format!(
        "[[upstream]]\nname = \"alpha\"\nurl = \"http://{alpha}/mcp\"\n\n[[upstream]]\nname = \"{name}\"\nurl = \"http://{addr}/mcp\"\n{header}\n[policy]\nfile = {}\n",
        serde_json::to_string(policy.to_str().unwrap()).unwrap()
    )
}

fn policy(tools: &[&str]) -> String {
    let mut text = String::from("[policy]\n");
    for tool in tools {
        text.push_str(&format!(
            "\n[[policy.rule]]\nid = \"{tool}\"\ntools = [\"{tool}\"]\n"
        ));
    }
    text
}

#[tokio::test]
async fn the_configuration_and_the_policy_reload_while_serving() {
    let (a, b, c) = (
        http_upstream().await,
        http_upstream().await,
        http_upstream().await,
    );
    let tmp = TempDir::new("gw", "reload");
    let dir = tmp.path();
    let (file, policy_file, secret) = (
        dir.join("gateway.toml"),
        dir.join("policy.toml"),
        dir.join("secret"),
    );
    std::fs::write(&policy_file, policy(&["alpha__echo", "beta__echo"])).unwrap();
    std::fs::write(&file, config(a, ("beta", b), None, &policy_file)).unwrap();
    std::fs::write(&secret, "one").unwrap();

    let no_color = [("NO_COLOR".to_owned(), "1".to_owned())];
    let mut gateway = gateway::start(
        &tmp,
        "gateway",
        &["--config", file.to_str().unwrap()],
        &no_color,
    )
    .await;
    let client: Client = gateway::client_of(&gateway).await;
    assert_eq!(names(&client).await, ["alpha__echo", "beta__echo"]);

    // beta replaced by gamma; the policy still names beta__echo: the upstreams change, the
    // policy in force stays (gamma's tools hidden), and the log names the rule's line.
    std::fs::write(&file, config(a, ("gamma", c), None, &policy_file)).unwrap();
    until("the upstreams reloaded", &gateway, || async {
        gateway.logged(&["added [gamma]", "removed [beta]", "kept [alpha]"]) == 1
    })
    .await;
    until("the policy refused", &gateway, || async {
        gateway.logged(&["policy.toml:", "beta__echo", "the policy in force stays"]) >= 1
    })
    .await;
    assert_eq!(
        names(&client).await,
        ["alpha__echo"],
        "same session, old policy"
    );
    assert_eq!(echo(&client, "alpha__echo", "kept").await.unwrap(), "kept");

    // The policy fixed: gamma's echo is allowed, in the same session.
    std::fs::write(&policy_file, policy(&["alpha__echo", "gamma__echo"])).unwrap();
    until("the new policy", &gateway, || async {
        names(&client).await == ["alpha__echo", "gamma__echo"]
    })
    .await;
    assert_eq!(echo(&client, "gamma__echo", "new").await.unwrap(), "new");

    // A broken file: the log names it and the line; what runs stays.
    std::fs::write(&file, "[[upstream]]\nnme = \"x\"\n").unwrap();
    until("the refusal", &gateway, || async {
        gateway.logged(&[
            "gateway.toml:2: unknown field `nme`",
            "the running configuration stays",
        ]) == 1
    })
    .await;
    assert_eq!(
        echo(&client, "gamma__echo", "still").await.unwrap(),
        "still"
    );

    // A secret from a file: the file watcher sees the configuration change; SIGHUP sees the
    // secret's file change.
    std::fs::write(&file, config(a, ("gamma", c), Some(&secret), &policy_file)).unwrap();
    until("gamma changed", &gateway, || async {
        gateway.logged(&["changed [gamma]"]) == 1
    })
    .await;
    std::fs::write(&secret, "two").unwrap();
    let pid = gateway.child().id().to_string();
    let status = Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    until("SIGHUP", &gateway, || async {
        gateway.logged(&["SIGHUP"]) == 1 && gateway.logged(&["changed [gamma]"]) == 2
    })
    .await;
    assert_eq!(
        echo(&client, "gamma__echo", "after").await.unwrap(),
        "after"
    );

    // gamma's echo renamed: clients see gamma__repeat, the policy still names gamma__echo
    // (the upstream's own name) and allows it; the old name is gone. SIGHUP as well: the
    // watcher may have taken its last look while the SIGHUP reload above was running.
    let renamed = config(a, ("gamma", c), Some(&secret), &policy_file).replace(
        "\n[policy]",
        "\n[upstream.tools.echo]\nname = \"repeat\"\ndescription = \"Says it again\"\n\n[policy]",
    );
    std::fs::write(&file, renamed).unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    until("the tools renamed", &gateway, || async {
        gateway.logged(&["tools renamed [gamma]"]) == 1
    })
    .await;
    assert_eq!(names(&client).await, ["alpha__echo", "gamma__repeat"]);
    assert_eq!(
        echo(&client, "gamma__repeat", "again").await.unwrap(),
        "again"
    );
    assert!(echo(&client, "gamma__echo", "old").await.is_err());
    client.cancel().await.unwrap();
}

/// A raw request to the gateway: its status, session id and JSON-RPC answer (JSON or SSE).
async fn raw(
    url: &str,
    token: Option<&str>,
    session: Option<&str>,
    body: Value,
) -> (u16, Option<String>, Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let id = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let answer = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|m| m.get("id").is_some())
        .or_else(|| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null);
    (status, id, answer)
}

/// A new session at `url`, with its tool names sorted.
async fn open(url: &str, token: &str) -> (String, Vec<String>) {
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}});
    let (status, session, answer) = raw(url, Some(token), None, init).await;
    assert_eq!(status, 200, "{answer}");
    let session = session.unwrap();
    let ack = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
    let _ = raw(url, Some(token), Some(&session), ack).await;
    let list = json!({"jsonrpc":"2.0","id":2,"method":"tools/list"});
    let (_, _, answer) = raw(url, Some(token), Some(&session), list).await;
    let mut names: Vec<String> = answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort_unstable();
    (session, names)
}

/// A call of `tool` (echo) in `session`: the HTTP status and the text or error message.
async fn call_in(url: &str, token: &str, session: &str, tool: &str) -> (u16, String) {
    let body = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":tool,"arguments":{"text":"hi"}}});
    let (status, _, answer) = raw(url, Some(token), Some(session), body).await;
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .or_else(|| answer["error"]["message"].as_str())
        .unwrap_or_default()
        .to_owned();
    (status, text)
}

fn config_of(upstreams: &[(&str, SocketAddr)], policy: &Path) -> String {
    let mut text = String::new();
    for (name, addr) in upstreams {
        text.push_str(&format!(
            "[[upstream]]\nname = \"{name}\"\nurl = \"http://{addr}/mcp\"\n\n"
        ));
    }
    text.push_str(&format!(
        "[policy]\nfile = {}\n",
        serde_json::to_string(policy.to_str().unwrap()).unwrap()
    ));
    text
}

#[tokio::test]
async fn a_reload_goes_from_one_upstream_to_several_and_back_with_its_policy() {
    let (a, b) = (http_upstream().await, http_upstream().await);
    let tmp = TempDir::new("gw", "reshape");
    let dir = tmp.path();
    let (file, policy_file) = (dir.join("gateway.toml"), dir.join("policy.toml"));
    std::fs::write(&policy_file, policy(&["echo"])).unwrap();
    std::fs::write(&file, config_of(&[("alpha", a)], &policy_file)).unwrap();
    let no_color = [("NO_COLOR".to_owned(), "1".to_owned())];
    let gateway = gateway::start(
        &tmp,
        "gateway",
        &["--config", file.to_str().unwrap()],
        &no_color,
    )
    .await;
    let (mcp, token) = (gateway.mcp_url(), gateway.token());
    let own = |name: &str| mcp.replace("/mcp", &format!("/{name}/mcp"));
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}});

    // One upstream: its own names, no path of its own.
    let (one, tools) = open(&mcp, &token).await;
    assert_eq!(tools, ["echo"]);
    assert_eq!(
        call_in(&mcp, &token, &one, "echo").await,
        (200, "hi".into())
    );
    assert_eq!(raw(&own("beta"), None, None, init.clone()).await.0, 404);

    // Two upstreams while the policy still names `echo`: it does not fit the merged names,
    // so the upstreams go back (started again, the old session ended) with the old policy.
    std::fs::write(&file, config_of(&[("alpha", a), ("beta", b)], &policy_file)).unwrap();
    until("the reload undone", &gateway, || async {
        gateway.logged(&["the policy does not fit", "the running configuration stays"]) == 1
    })
    .await;
    assert!(gateway.logged(&["policy.toml:", "unknown tool `echo`"]) >= 1);
    assert_eq!(call_in(&mcp, &token, &one, "echo").await.0, 404);
    let (undone, tools) = open(&mcp, &token).await;
    assert_eq!(tools, ["echo"]);
    assert_eq!(
        call_in(&mcp, &token, &undone, "echo").await,
        (200, "hi".into())
    );
    assert_eq!(raw(&own("beta"), None, None, init.clone()).await.0, 404);

    // The policy for the merged names: the file's two upstreams are tried again, and now
    // the policy fits them: /mcp merges, each upstream has its path (which asks for a
    // token), the old session is over.
    std::fs::write(&policy_file, policy(&["alpha__echo", "beta__echo"])).unwrap();
    until("the two upstreams", &gateway, || async {
        gateway.logged(&["endpoint changed shape", "added [beta]", "changed [alpha]"]) == 2
    })
    .await;
    until("the policy for them", &gateway, || async {
        open(&mcp, &token).await.1 == ["alpha__echo", "beta__echo"]
    })
    .await;
    assert_eq!(call_in(&mcp, &token, &undone, "echo").await.0, 404);
    let (merged, _) = open(&mcp, &token).await;
    assert_eq!(
        call_in(&mcp, &token, &merged, "beta__echo").await,
        (200, "hi".into())
    );
    assert_ne!(call_in(&mcp, &token, &merged, "echo").await.1, "hi");
    assert_eq!(raw(&own("beta"), None, None, init.clone()).await.0, 401);

    // Back to one (beta), with a policy for its own names: /mcp serves it unprefixed, and
    // the paths of both upstreams answer 404, to a stranger too.
    std::fs::write(&policy_file, policy(&["echo"])).unwrap();
    until("the policy refused for two upstreams", &gateway, || async {
        gateway.logged(&["unknown tool `echo`", "the policy in force stays"]) >= 1
    })
    .await;
    std::fs::write(&file, config_of(&[("beta", b)], &policy_file)).unwrap();
    until("one upstream again", &gateway, || async {
        gateway.logged(&[
            "endpoint changed shape",
            "removed [alpha]",
            "changed [beta]",
        ]) == 1
    })
    .await;
    until("the policy for it", &gateway, || async {
        open(&mcp, &token).await.1 == ["echo"]
    })
    .await;
    assert_eq!(call_in(&mcp, &token, &merged, "beta__echo").await.0, 404);
    let (back, _) = open(&mcp, &token).await;
    assert_eq!(
        call_in(&mcp, &token, &back, "echo").await,
        (200, "hi".into())
    );
    for name in ["alpha", "beta"] {
        assert_eq!(
            raw(&own(name), None, None, init.clone()).await.0,
            404,
            "{name}"
        );
        assert_eq!(
            raw(&own(name), Some(&token), None, init.clone()).await.0,
            404,
            "{name}"
        );
    }

    // The one upstream's tool renamed, without a prefix: the policy still names `echo`.
    let renamed = config_of(&[("beta", b)], &policy_file).replace(
        "\n[policy]",
        "[upstream.tools.echo]\nname = \"say\"\n\n[policy]",
    );
    std::fs::write(&file, renamed).unwrap();
    until("the tool renamed", &gateway, || async {
        gateway.logged(&["tools renamed [beta]"]) == 1
    })
    .await;
    assert_eq!(call_in(&mcp, &token, &back, "echo").await.0, 404);
    let (say, tools) = open(&mcp, &token).await;
    assert_eq!(tools, ["say"]);
    assert_eq!(call_in(&mcp, &token, &say, "say").await, (200, "hi".into()));
    assert_ne!(call_in(&mcp, &token, &say, "echo").await.1, "hi");
}

#[tokio::test]
async fn gateway_check_explains_a_prompt_table_it_refuses() {
    let tmp = TempDir::new("gw", "prompts");
    let dir = tmp.path();
    let file = dir.join("gateway.toml");
    let upstreams = "[[upstream]]\nname = \"fs\"\nurl = \"http://127.0.0.1:9/mcp\"\n\n[upstream.prompts.review]\nname = \"critique\"\ndescription = \"Critiques\"\n\n[[upstream]]\nname = \"web\"\nurl = \"http://127.0.0.1:8/mcp\"\n";
    let check = |text: String| {
        let file = file.clone();
        async move {
            std::fs::write(&file, text).unwrap();
            let no_color = [("NO_COLOR".to_owned(), "1".to_owned())];
            let out = run_async(
                &["gateway", "check", "--config", file.to_str().unwrap()],
                &no_color,
                None,
            )
            .await;
            (out.code == 0, format!("{}{}", out.stdout, out.stderr))
        }
    };
    let (ok, said) = check(upstreams.to_owned()).await;
    assert!(ok, "{said}");
    for (table, expected) in [
        (
            "[upstream.prompts.summary]\nname = \"critique\"\n",
            "fs: prompt review and summary are both renamed to critique",
        ),
        (
            "[upstream.prompts.summary]\nname = \"no.dots\"\n",
            "fs: prompt summary renamed to \"no.dots\": use 1 to 60 letters",
        ),
        (
            "[upstream.prompts.summary]\ntitle = \"x\"\n",
            "unknown field `title` in [upstream.prompts.summary]",
        ),
    ] {
        let text = upstreams.replace(
            "\n[[upstream]]\nname = \"web\"",
            &format!("{table}\n[[upstream]]\nname = \"web\""),
        );
        let (ok, said) = check(text).await;
        assert!(!ok, "{table}: {said}");
        assert!(said.contains(expected), "{table}: {said}");
    }
}
