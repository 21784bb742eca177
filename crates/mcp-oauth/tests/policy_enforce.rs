//! The access policy enforced by an `McpServer` over real HTTP on 127.0.0.1, from the side of
//! a caller trying to get around it: a tool hidden from the list called by name, argument
//! constraints dodged with JSON tricks (repeated members, escapes, numbers as strings, `..`),
//! batches, another user's token; plus the step-up challenge and the audit log.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod common;

use common::{Served, eventually};
use mcp_oauth::OAuth;
use mcp_oauth::audit::{AuditLog, MemorySink};
use mcp_oauth::policy::{POLICY_DENIED, PolicyConfig};
use mcp_oauth::server::{McpServer, NoArgs, Tool, ToolContext};
use mcp_oauth::testing::{MockIdp, TestKey};
use mcp_oauth::verify::JwtVerifier;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const POLICY: &str = r#"
[policy]
server = "fs"

[policy.arguments]
root  = "/srv"
paths = ["path", "paths"]
urls  = ["url"]

[policy.groups.admins]
emails = ["root@example.com"]

[[policy.rule]]
id    = "staff-read"
who   = { email_domains = ["example.com"] }
tools = ["read_file"]
args.path = { under = "/srv/team" }

[[policy.rule]]
id    = "staff-read-many"
who   = { email_domains = ["example.com"] }
tools = ["read_files"]
args.paths = { under = "/srv/team" }

[[policy.rule]]
id        = "no-secrets"
effect    = "forbid"
tools     = ["read_file"]
args.path = { under = "/srv/team/secrets" }

[[policy.rule]]
id       = "fetch-docs"
who      = { email_domains = ["example.com"] }
tools    = ["fetch"]
args.url = { schemes = ["https"], hosts = ["docs.rs"] }

[[policy.rule]]
id    = "count-small"
who   = { email_domains = ["example.com"] }
tools = ["count"]
args.n = { one_of = [1, 2, 3] }

[[policy.rule]]
id             = "admins-wipe"
who            = { groups = ["admins"] }
tools          = ["wipe"]
step_up_scopes = ["admin"]
"#;

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct PathArg {
    path: String,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct PathsArg {
    paths: Vec<String>,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct UrlArg {
    url: String,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct CountArg {
    n: i64,
}

fn tools(server: McpServer) -> McpServer {
    server
        .tool(Tool::new(
            "read_file",
            "Reads a file",
            |a: PathArg, _: ToolContext| async move { format!("read {}", a.path) },
        ))
        .tool(Tool::new(
            "read_files",
            "Reads files",
            |a: PathsArg, _: ToolContext| async move { format!("read {}", a.paths.join(",")) },
        ))
        .tool(Tool::new(
            "fetch",
            "Fetches a URL",
            |a: UrlArg, _: ToolContext| async move { format!("fetched {}", a.url) },
        ))
        .tool(Tool::new(
            "count",
            "Counts",
            |a: CountArg, _: ToolContext| async move { format!("counted {}", a.n) },
        ))
        .tool(Tool::new(
            "wipe",
            "Wipes everything",
            |_: NoArgs, _: ToolContext| async move { "wiped" },
        ))
}

struct Running {
    idp: MockIdp,
    url: String,
    http: reqwest::Client,
    served: Served,
}

async fn start(audit: Option<AuditLog>) -> Running {
    start_with(audit, false).await
}

/// With `via_oauth`, the policy comes with the OAuth configuration
/// (`OAuthBuilder::access_policy`) instead of `McpServer::policy`.
async fn start_with(audit: Option<AuditLog>, via_oauth: bool) -> Running {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/mcp", listener.local_addr().expect("addr"));
    let verifier = JwtVerifier::builder()
        .issuer(idp.issuer())
        .jwks_url(idp.jwks_url())
        .build()
        .expect("verifier");
    let mut oauth = OAuth::builder()
        .resource(url.clone())
        .authorization_server(idp.issuer())
        .scopes_supported(["mcp:read"])
        .verifier(verifier)
        .mirror_authorization_server(false);
    let policy = PolicyConfig::from_toml(POLICY, "policy.toml").expect("policy");
    if via_oauth {
        let compiled = tools(McpServer::new("fs", "1.0.0"))
            .policy(policy.clone())
            .check_policy()
            .expect("the policy fits the tools")
            .expect("a policy");
        oauth = oauth.access_policy(compiled);
    }
    let mut server = tools(McpServer::new("fs", "1.0.0").oauth(oauth.build().expect("oauth")));
    if !via_oauth {
        server = server.policy(policy);
    }
    if let Some(audit) = audit {
        server = server.audit(audit);
    }
    Running {
        idp,
        url,
        http: reqwest::Client::new(),
        served: Served::mcp(listener, server),
    }
}

impl Running {
    fn token(&self, sub: &str, email: &str, scope: &str) -> String {
        self.idp
            .token()
            .sub(sub)
            .aud(&self.url)
            .claim("email", email)
            .scope(scope)
            .sign()
    }

    async fn post(&self, token: &str, body: String) -> (u16, HeaderMap, Value) {
        let res = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .bearer_auth(token)
            .body(body)
            .send()
            .await
            .expect("send");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body");
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn call(&self, token: &str, name: &str, arguments: Value) -> (u16, HeaderMap, Value) {
        self.post(token, call(name, arguments).to_string()).await
    }
}

fn call(name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
}

fn text(body: &Value) -> &str {
    body["result"]["content"][0]["text"].as_str().unwrap_or("")
}

fn assert_denied(body: &Value, what: &str) {
    assert_eq!(body["error"]["code"], POLICY_DENIED, "{what}: {body}");
    assert!(body.get("result").is_none(), "{what}: {body}");
}

#[tokio::test]
async fn allowed_calls_run_and_denied_calls_get_a_jsonrpc_error_naming_the_forbid() {
    let r = start(None).await;
    let alice = r.token("u-alice", "alice@example.com", "mcp:read");
    let (status, _, body) = r
        .call(&alice, "read_file", json!({"path": "team/a.md"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(text(&body), "read team/a.md");

    let (status, _, body) = r
        .call(
            &alice,
            "read_file",
            json!({"path": "/srv/team/secrets/key"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_denied(&body, "forbidden path");
    assert_eq!(body["id"], 7);
    assert_eq!(body["error"]["data"]["rule_ids"], json!(["no-secrets"]));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no-secrets")
    );
    r.served.stop().await;
}

#[tokio::test]
async fn a_tool_hidden_from_the_list_cannot_be_called_by_name_and_unknown_tools_look_the_same() {
    let r = start(None).await;
    let bob = r.token("u-bob", "bob@gmail.com", "mcp:read");
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string();
    let (status, _, body) = r.post(&bob, list.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["tools"], json!([]), "bob may call nothing");

    let alice = r.token("u-alice", "alice@example.com", "mcp:read");
    let (_, _, body) = r.post(&alice, list).await;
    let mut names: Vec<&str> = body["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["count", "fetch", "read_file", "read_files"]);

    let (_, _, hidden) = r
        .call(&bob, "read_file", json!({"path": "team/a.md"}))
        .await;
    assert_denied(&hidden, "hidden tool");
    let (_, _, unknown) = r.call(&bob, "no_such_tool", json!({})).await;
    assert_denied(&unknown, "unknown tool");
    // A refusal does not say whether the tool exists.
    assert_eq!(hidden["error"], unknown["error"]);
    let (_, _, wipe) = r.call(&alice, "wipe", json!({})).await;
    assert_eq!(wipe["error"], unknown["error"]);
    r.served.stop().await;
}

#[tokio::test]
async fn argument_constraints_survive_json_tricks() {
    let r = start(None).await;
    let alice = r.token("u-alice", "alice@example.com", "mcp:read");
    for (args, what) in [
        (json!({"path": "team/../secrets/x"}), "`..` inside the root"),
        (
            json!({"path": "team/../../etc/passwd"}),
            "`..` out of the root",
        ),
        (
            json!({"path": "/srv/team/./secrets//key"}),
            "dots and slashes",
        ),
        (json!({"path": ["team/a.md"]}), "an array for a string"),
    ] {
        let (status, _, body) = r.call(&alice, "read_file", args).await;
        assert_eq!(status, 200, "{what}");
        assert_denied(&body, what);
    }
    // Escapes decode to the same forbidden path, whoever reads them.
    let escaped = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_\u0066ile","arguments":{"p\u0061th":"/srv/team/\u0073ecrets/key"}}}"#;
    let (_, _, body) = r.post(&alice, escaped.to_owned()).await;
    assert_denied(&body, "unicode escapes");
    // Two `path` members: one reader may take the first, another the last. Refused outright.
    let duplicate = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"team/a.md","path":"team/secrets/key"}}}"#;
    let (status, _, _) = r.post(&alice, duplicate.to_owned()).await;
    assert_eq!(status, 400, "a repeated member is refused");
    let duplicate_args = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"team/a.md"},"arguments":{"path":"team/secrets/key"}}}"#;
    let (status, _, _) = r.post(&alice, duplicate_args.to_owned()).await;
    assert_eq!(status, 400);
    // Numbers as strings, and numbers out of the allowed set.
    let (_, _, ok) = r.call(&alice, "count", json!({"n": 2})).await;
    assert_eq!(text(&ok), "counted 2");
    for n in [json!("2"), json!(2.5), json!(20), json!(null)] {
        let (_, _, body) = r.call(&alice, "count", json!({"n": n})).await;
        assert_denied(&body, &format!("n = {n}"));
    }
    // Every element of an array argument is checked.
    let (_, _, ok) = r
        .call(&alice, "read_files", json!({"paths": ["team/a", "team/b"]}))
        .await;
    assert_eq!(text(&ok), "read team/a,team/b");
    let (_, _, body) = r
        .call(
            &alice,
            "read_files",
            json!({"paths": ["team/a", "/etc/passwd"]}),
        )
        .await;
    assert_denied(&body, "one bad element");
    // URLs are parsed: scheme and host, not a prefix of the text.
    let (_, _, ok) = r
        .call(&alice, "fetch", json!({"url": "https://DOCS.rs./x"}))
        .await;
    assert_eq!(text(&ok), "fetched https://DOCS.rs./x");
    for url in [
        "http://docs.rs/x",
        "https://docs.rs.evil.com/",
        "https://docs.rs@evil.com/",
        "https://evil.com/?https://docs.rs",
        "docs.rs/x",
    ] {
        let (_, _, body) = r.call(&alice, "fetch", json!({"url": url})).await;
        assert_denied(&body, url);
    }
    r.served.stop().await;
}

#[tokio::test]
async fn a_batch_with_one_refused_call_runs_none_of_it() {
    let r = start(None).await;
    let alice = r.token("u-alice", "alice@example.com", "mcp:read");
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "read_file", "arguments": {"path": "team/a"}}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "read_file", "arguments": {"path": "team/secrets/a"}}},
    ]);
    let (status, _, body) = r.post(&alice, batch.to_string()).await;
    assert_eq!(status, 200);
    let answers = body.as_array().expect("an array of answers");
    assert_eq!(answers.len(), 2);
    for answer in answers {
        assert_denied(answer, "batch");
    }
    assert_eq!(
        answers[1]["error"]["data"]["rule_ids"],
        json!(["no-secrets"])
    );
    r.served.stop().await;
}

#[tokio::test]
async fn decisions_follow_the_token_not_what_the_caller_claims() {
    let r = start(None).await;
    // Bob's token; the body claims to be alice in every place it can.
    let bob = r.token("u-bob", "bob@gmail.com", "mcp:read");
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "read_file", "arguments": {"path": "team/a"},
                   "_meta": {"email": "alice@example.com", "sub": "u-alice"}}});
    let (_, _, answer) = r.post(&bob, body.to_string()).await;
    assert_denied(&answer, "bob");
    // An unverified email does not count.
    let unverified = r
        .idp
        .token()
        .sub("u-eve")
        .aud(&r.url)
        .claim("email", "eve@example.com")
        .claim("email_verified", false)
        .sign();
    let (_, _, answer) = r
        .call(&unverified, "read_file", json!({"path": "team/a"}))
        .await;
    assert_denied(&answer, "unverified email");
    // A token for another resource is refused before the policy.
    let other = r
        .idp
        .token()
        .sub("u-alice")
        .aud("http://127.0.0.1:1/mcp")
        .claim("email", "alice@example.com")
        .sign();
    let (status, _, _) = r.call(&other, "read_file", json!({"path": "team/a"})).await;
    assert_eq!(status, 401);
    r.served.stop().await;
}

#[tokio::test]
async fn a_permit_with_step_up_scopes_answers_403_insufficient_scope() {
    let r = start(None).await;
    let root = r.token("u-root", "root@example.com", "mcp:read");
    let (status, headers, _) = r.call(&root, "wipe", json!({})).await;
    assert_eq!(status, 403);
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with(r#"Bearer error="insufficient_scope""#),
        "{challenge}"
    );
    assert!(challenge.ends_with(r#", scope="admin""#), "{challenge}");
    let root = r.token("u-root", "root@example.com", "mcp:read admin");
    let (status, _, body) = r.call(&root, "wipe", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(text(&body), "wiped");
    r.served.stop().await;
}

#[tokio::test]
async fn each_decision_is_audited_with_its_rules() {
    let sink = MemorySink::new();
    let audit = AuditLog::builder().memory(&sink).build().expect("audit");
    let r = start(Some(audit.clone())).await;
    let alice = r.token("u-alice", "alice@example.com", "mcp:read");
    r.call(&alice, "read_file", json!({"path": "team/a"})).await;
    r.call(
        &alice,
        "read_file",
        json!({"path": "team/secrets/k", "token": "s3cr3t"}),
    )
    .await;
    // tools/list is not a decision on a call: not audited.
    r.post(
        &alice,
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string(),
    )
    .await;
    eventually("two audit lines", async || {
        audit.flush().await.is_ok() && sink.lines().len() == 2
    })
    .await;
    let lines: Vec<Value> = sink
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let allowed = lines
        .iter()
        .find(|l| l["decision"]["effect"] == "allow")
        .expect("the allowed call");
    assert_eq!(allowed["actor"]["sub"], "u-alice");
    assert_eq!(allowed["actor"]["email"], "alice@example.com");
    assert_eq!(allowed["tool"], "read_file");
    assert_eq!(allowed["decision"]["rule_ids"], json!(["staff-read"]));
    let denied = lines
        .iter()
        .find(|l| l["decision"]["effect"] == "deny")
        .expect("the denied call");
    assert_eq!(denied["decision"]["rule_ids"], json!(["no-secrets"]));
    assert_eq!(denied["outcome"]["jsonrpc_error"], POLICY_DENIED);
    assert!(
        allowed.get("outcome").is_none_or(Value::is_null),
        "{allowed}"
    );
    assert!(!sink.lines().concat().contains("s3cr3t"));
    r.served.stop().await;
}

#[tokio::test]
async fn a_policy_given_to_the_oauth_configuration_decides_calls_and_filters_lists_too() {
    let r = start_with(None, true).await;
    let bob = r.token("u-bob", "bob@gmail.com", "mcp:read");
    let (_, _, body) = r
        .post(
            &bob,
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string(),
        )
        .await;
    assert_eq!(body["result"]["tools"], json!([]));
    let (_, _, body) = r.call(&bob, "read_file", json!({"path": "team/a"})).await;
    assert_denied(&body, "bob");
    let alice = r.token("u-alice", "alice@example.com", "mcp:read");
    let (_, _, body) = r.call(&alice, "read_file", json!({"path": "team/a"})).await;
    assert_eq!(text(&body), "read team/a");
    r.served.stop().await;
}
