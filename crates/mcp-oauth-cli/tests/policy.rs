//! `mcp-oauth policy check | explain | test` as a user runs them: the exit status and what is
//! printed, on the shipped demo policy and on broken inputs.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::mcp::McpRequest as _;
use support::process::{Run, TempDir};

/// `MCP_OAUTH_LOG=off`: stderr holds only what the command says to its user.
fn quiet() -> [(String, String); 1] {
    [("MCP_OAUTH_LOG".to_owned(), "off".to_owned())]
}

/// `mcp-oauth policy ARGS` run to its end.
fn policy(args: &[&str]) -> Run {
    let mut all = vec!["policy"];
    all.extend_from_slice(args);
    support::process::run(&all, &quiet(), None)
}

/// A file of the shipped demo policy, as a string argument.
fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/policy")
        .join(name)
        .display()
        .to_string()
}

/// A fresh file with this text, in a folder of this test's own.
fn write(name: &str, text: &str) -> String {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("mcp-oauth-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

/// `explain` on the demo policy with these options.
fn explain(extra: &[&str]) -> Run {
    let file = example("demo.toml");
    let tools = example("demo-tools.json");
    let mut args = vec!["explain", &file, "--tools", &tools];
    args.extend_from_slice(extra);
    policy(&args)
}

#[test]
fn the_demo_policy_checks_clean() {
    let run = policy(&[
        "check",
        &example("demo.toml"),
        "--tools",
        &example("demo-tools.json"),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("ok: 4 rules, 2 sign-in rules, 2 grant rules")
            && run.stdout.contains("3 tools"),
        "{run:?}"
    );
    assert_eq!(run.stdout.lines().count(), 1, "{run:?}");
}

#[test]
fn the_demo_fixtures_pass() {
    let run = policy(&[
        "test",
        &example("demo.toml"),
        &example("demo-fixtures.toml"),
        "--tools",
        &example("demo-tools.json"),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("11 passed, 0 failed"), "{run:?}");
}

#[test]
fn a_misspelled_argument_names_the_rule_and_its_line() {
    let file = write(
        "typo.toml",
        "[policy]\n\n[[policy.rule]]\nid = \"echo-hi\"\ntools = [\"echo\"]\nargs.txt = { one_of = [\"hi\"] }\n",
    );
    let run = policy(&["check", &file, "--tools", &example("demo-tools.json")]);
    assert_eq!(run.code, 1, "{run:?}");
    let first = run.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("{file}:3: rule `echo-hi`: "))
            && first.contains("`txt`")
            && first.contains("text"),
        "{run:?}"
    );
    assert!(run.stderr.contains("1 problem found"), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
}

#[test]
fn an_unknown_tool_is_an_error_and_every_problem_is_listed() {
    let file = write(
        "unknown.toml",
        "[policy]\n\n[[policy.rule]]\nid = \"old\"\ntools = [\"delete_everything\"]\n\n[[policy.rule]]\nid = \"typo\"\ntools = [\"echo\"]\nargs.txt = { one_of = [\"hi\"] }\n",
    );
    let run = policy(&["check", &file, "--tools", &example("demo-tools.json")]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with(&format!("{file}:3: rule `old`: "))
                && l.contains("delete_everything")),
        "{run:?}"
    );
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with(&format!("{file}:7: rule `typo`: "))),
        "{run:?}"
    );
    assert!(run.stderr.contains("2 problems found"), "{run:?}");
}

#[test]
fn without_tools_a_tool_rule_fails_and_says_to_give_them() {
    let run = policy(&["check", &example("demo.toml")]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("no --tools given"), "{run:?}");
}

#[test]
fn explain_allow_exits_0_and_names_the_rule() {
    let run = explain(&[
        "--as",
        "alice@example.com",
        "--scope",
        "mcp:read mcp:write",
        "--call",
        "echo",
        r#"{"text": "hi"}"#,
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("decision: allow\n"), "{run:?}");
    assert!(run.stdout.contains("rules: staff-echo\n"), "{run:?}");
    assert!(
        run.stdout.contains(r#"arguments: {"text":"hi"}"#),
        "{run:?}"
    );
}

#[test]
fn explain_deny_exits_3_and_names_the_forbid() {
    let run = explain(&[
        "--as",
        "alice@example.com",
        "--call",
        "echo",
        r#"{"text": "password"}"#,
    ]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stdout.starts_with("decision: deny\n"), "{run:?}");
    assert!(run.stdout.contains("rules: no-echo-secrets\n"), "{run:?}");

    // Nothing permits bob: no rule decided.
    let run = explain(&[
        "--as",
        "bob@gmail.com",
        "--call",
        "echo",
        r#"{"text": "hi"}"#,
    ]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stdout.contains("rules: (none)\n"), "{run:?}");
}

#[test]
fn explain_step_up_exits_4_with_the_missing_scopes_and_groups() {
    let run = explain(&[
        "--as",
        "root@example.com",
        "--scope",
        "mcp:read",
        "--group",
        "ops",
        "--call",
        "admin_action",
    ]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stdout.starts_with("decision: step-up\n"), "{run:?}");
    assert!(run.stdout.contains("missing scopes: admin\n"), "{run:?}");
    assert!(
        run.stdout.contains("group: admins (from [policy.groups])"),
        "{run:?}"
    );
    assert!(run.stdout.contains("group: ops (from --group)"), "{run:?}");
}

#[test]
fn explain_json_is_one_document() {
    let run = explain(&[
        "--as",
        "root@example.com",
        "--scope",
        "mcp:read",
        "--call",
        "admin_action",
        "{}",
        "--json",
    ]);
    assert_eq!(run.code, 4, "{run:?}");
    let doc: Value = serde_json::from_str(&run.stdout).expect("one JSON document");
    assert_eq!(doc["decision"], "step-up");
    assert_eq!(doc["rules"], serde_json::json!(["admins-admin-action"]));
    assert_eq!(doc["missing_scopes"], serde_json::json!(["admin"]));
    assert_eq!(doc["groups"][0]["group"], "admins");
    assert_eq!(doc["groups"][0]["source"], "[policy.groups]");
    assert!(doc["reason"].as_str().is_some_and(|r| !r.is_empty()));
}

#[test]
fn a_failing_fixture_is_named_with_its_line_and_exits_1() {
    let fixtures = write(
        "fixtures.toml",
        "[[case]]\nname = \"bob echoes\"\nas = { email = \"bob@gmail.com\" }\ntool = \"echo\"\nargs = { text = \"hi\" }\nexpect = \"allow\"\n\n[[case]]\nname = \"bob whoami\"\nas = { email = \"bob@gmail.com\" }\ntool = \"whoami\"\nexpect = \"allow\"\n",
    );
    let run = policy(&[
        "test",
        &example("demo.toml"),
        &fixtures,
        "--tools",
        &example("demo-tools.json"),
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with(&format!("{fixtures}:1: case `bob echoes`: "))),
        "{run:?}"
    );
    assert!(run.stdout.contains("1 passed, 1 failed"), "{run:?}");
}

#[test]
fn bad_inputs_say_what_to_fix_without_a_panic() {
    let demo = example("demo.toml");
    let tools = example("demo-tools.json");

    let run = policy(&["check", "/nonexistent/policy.toml"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("no such policy file"), "{run:?}");

    let run = policy(&["check", &std::env::temp_dir().display().to_string()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("is not a file"), "{run:?}");

    let run = policy(&["check", &demo, "--tools", "/nonexistent/tools.json"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("cannot read the tool list"), "{run:?}");

    let broken = write("broken.json", "{\"tools\": [");
    let run = policy(&["check", &demo, "--tools", &broken]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.starts_with(&format!("{broken}: ")) && run.stderr.contains("not JSON"),
        "{run:?}"
    );

    let not_a_list = write("number.json", "42");
    let run = policy(&["check", &demo, "--tools", &not_a_list]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("`tools` array"), "{run:?}");

    let bad_toml = write("bad.toml", "[policy]\nserver = \n");
    let run = policy(&["check", &bad_toml]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.starts_with(&format!("{bad_toml}:2: ")),
        "{run:?}"
    );

    let run = explain(&["--as", "a@example.com", "--call", "echo", "{not json"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("are not JSON"), "{run:?}");

    let run = explain(&["--as", "a@example.com", "--call", "echo", "[1]"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("must be a JSON object"), "{run:?}");

    let run = explain(&[
        "--as",
        "a@example.com",
        "--claim",
        "novalue",
        "--call",
        "echo",
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("name=value"), "{run:?}");

    // No user, or nothing to decide: a usage error.
    assert_eq!(explain(&["--call", "echo"]).code, 2);
    assert_eq!(explain(&["--as", "a@example.com"]).code, 2);

    let empty = write("empty-fixtures.toml", "");
    let run = policy(&["test", &demo, &empty, "--tools", &tools]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("no [[case]]"), "{run:?}");

    let bad_fixture = write("bad-fixtures.toml", "[[case]]\nname = \"x\"\nwho = 1\n");
    let run = policy(&["test", &demo, &bad_fixture, "--tools", &tools]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(&bad_fixture), "{run:?}");
    assert!(!run.stderr.contains("panicked"), "{run:?}");
}

/// The shipped tool list is what `mcp-oauth dev` answers `tools/list` with, so the demo policy
/// is checked against the demo's real tools.
#[tokio::test]
async fn the_demo_tool_list_is_what_mcp_oauth_dev_serves() {
    let tmp = TempDir::new("policy", "dev");
    let dev = support::process::dev(&tmp, "dev", &[]).await;
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}});
    let res = reqwest::Client::new()
        .post(dev.mcp_url())
        .bearer_auth(dev.field("token"))
        .mcp(&body)
        .send()
        .await
        .expect("tools/list");
    assert!(res.status().is_success(), "{}", res.status());
    let served: Value = res.json().await.expect("tools/list is JSON");
    drop(dev);

    let shipped: Value = serde_json::from_str(
        &std::fs::read_to_string(example("demo-tools.json")).expect("demo-tools.json"),
    )
    .expect("demo-tools.json is JSON");
    assert_eq!(
        served["result"]["tools"], shipped["tools"],
        "examples/policy/demo-tools.json is out of date: save the tools/list result of mcp-oauth dev into it"
    );
}

/// `check --server`: the tools fetched from a running MCP server (the demo's three tools,
/// behind OAuth) on 127.0.0.1.
mod from_a_server {
    use super::*;
    use mcp_oauth::OAuth;
    use mcp_oauth::server::{McpServer, NoArgs, Tool, ToolContext};
    use mcp_oauth::testing::{MockIdp, TestKey};
    use mcp_oauth::verify::JwtVerifier;

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    struct Text {
        /// The text to send back.
        text: String,
    }

    /// `mcp-oauth policy ARGS` run to its end, off the runtime's threads (the server and the
    /// mock issuer of the test keep answering).
    async fn run(args: Vec<String>) -> Run {
        let mut all = vec!["policy"];
        all.extend(args.iter().map(String::as_str));
        support::process::run_async(&all, &quiet(), None).await
    }

    #[tokio::test]
    async fn check_fetches_the_tools_from_a_running_server() {
        let idp = MockIdp::start(TestKey::es256()).await.expect("idp");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/mcp", listener.local_addr().expect("addr"));
        let oauth = OAuth::builder()
            .resource(url.clone())
            .authorization_server(idp.issuer())
            .verifier(
                JwtVerifier::builder()
                    .issuer(idp.issuer())
                    .jwks_url(idp.jwks_url())
                    .build()
                    .expect("verifier"),
            )
            .mirror_authorization_server(false)
            .build()
            .expect("oauth");
        let app = McpServer::new("demo", "1.0.0")
            .oauth(oauth)
            .tool(Tool::new(
                "whoami",
                "Who is calling",
                |_: NoArgs, _: ToolContext| async { "you" },
            ))
            .tool(Tool::new(
                "echo",
                "Echoes the text back",
                |a: Text, _: ToolContext| async move { a.text },
            ))
            .tool(Tool::new(
                "admin_action",
                "A privileged action",
                |_: NoArgs, _: ToolContext| async { "done" },
            ))
            .app()
            .expect("app");
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let token = idp.token().sub("dev").aud(&url).sign();
        let demo = example("demo.toml");

        let clean = run(vec![
            "check".into(),
            demo.clone(),
            "--server".into(),
            url.clone(),
            "--token".into(),
            token.clone(),
            "--header".into(),
            "X-Trace: policy-check".into(),
        ])
        .await;
        assert_eq!(clean.code, 0, "{clean:?}");
        assert!(
            clean.stdout.contains("checked against 3 tools"),
            "{clean:?}"
        );

        // A rule with a misspelled argument of a tool the server lists: named, with its line.
        let typo = write(
            "server-typo.toml",
            "[policy]\n\n[[policy.rule]]\nid = \"echo-hi\"\ntools = [\"echo\"]\nargs.txt = { one_of = [\"hi\"] }\n",
        );
        let bad = run(vec![
            "check".into(),
            typo.clone(),
            "--server".into(),
            url.clone(),
            "--token".into(),
            token,
        ])
        .await;
        assert_eq!(bad.code, 1, "{bad:?}");
        assert!(
            bad.stderr
                .starts_with(&format!("{typo}:3: rule `echo-hi`: ")),
            "{bad:?}"
        );

        // Without a token: what to do, and the server's challenge.
        let refused = run(vec![
            "check".into(),
            demo.clone(),
            "--server".into(),
            url.clone(),
        ])
        .await;
        assert_eq!(refused.code, 1, "{refused:?}");
        assert!(
            refused.stderr.contains("401")
                && refused.stderr.contains("give one with --token")
                && refused.stderr.contains("resource_metadata="),
            "{refused:?}"
        );

        // Not an MCP endpoint.
        let wrong = run(vec![
            "check".into(),
            demo.clone(),
            "--server".into(),
            format!(
                "{}/.well-known/oauth-protected-resource/mcp",
                url.trim_end_matches("/mcp")
            ),
        ])
        .await;
        assert_eq!(wrong.code, 1, "{wrong:?}");
        assert!(!wrong.stderr.is_empty(), "{wrong:?}");

        // --server and --tools together is a usage error.
        let both = run(vec![
            "check".into(),
            demo,
            "--server".into(),
            url,
            "--tools".into(),
            example("demo-tools.json"),
        ])
        .await;
        assert_eq!(both.code, 2, "{both:?}");
        server.abort();
    }
}
