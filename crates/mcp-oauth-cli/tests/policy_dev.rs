//! `mcp-oauth dev` with an access policy, as a user runs it: `--policy demo` keeps the banner's
//! `whoami` working while refusing what the demo rules refuse, `--allow-domain` refuses a user
//! at sign-in, `--audit` writes the decisions, and a broken policy stops the start.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::process::{DEADLINE, Served, TempDir, refused, run_to_end};

/// A token from `mcp-oauth token` (the dev server's key in `<tmp>/data`) for `sub` with `scope`.
fn mint(tmp: &TempDir, sub: &str, scope: &str) -> String {
    let data = tmp.data();
    let (ok, stdout, stderr) = run_to_end(
        &[
            "token",
            "--sub",
            sub,
            "--scope",
            scope,
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "{stderr}");
    stdout.trim().to_owned()
}

async fn rpc(served: &Served, token: &str, body: Value) -> (u16, Value) {
    support::mcp::post_bearer(&reqwest::Client::new(), &served.mcp_url(), token, &body).await
}

async fn call(served: &Served, token: &str, tool: &str, arguments: Value) -> (u16, Value) {
    rpc(
        served,
        token,
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}),
    )
    .await
}

#[tokio::test]
async fn the_demo_policy_keeps_whoami_and_refuses_what_its_rules_refuse() {
    let tmp = TempDir::new("policy", "demo");
    let audit = tmp.path().join("audit.jsonl");
    let dev = support::process::dev(
        &tmp,
        "dev",
        &["--policy", "demo", "--audit", audit.to_str().expect("path")],
    )
    .await;
    let banner = dev.field("token");
    // The README's quick start: the banner token calls whoami.
    let (status, body) = call(&dev, &banner, "whoami", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["structuredContent"]["user"]["id"], "dev");
    let (_, body) = call(&dev, &banner, "echo", json!({"text": "hi"})).await;
    assert_eq!(body["result"]["content"][0]["text"], "hi", "{body}");
    let (status, body) = call(&dev, &banner, "echo", json!({"text": "secret"})).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["error"]["data"]["rule_ids"],
        json!(["no-echo-secrets"]),
        "{body}"
    );
    // The list shows the dev user what it may call: not admin_action (admins only).
    let (_, body) = rpc(
        &dev,
        &banner,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await;
    let names: Vec<&str> = body["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["whoami", "echo"]);
    // The admin scope alone is not enough: the admins group is.
    let eve = mint(&tmp, "eve", "mcp:read admin");
    let (_, body) = call(&dev, &eve, "admin_action", json!({})).await;
    assert!(body["error"].is_object(), "{body}");
    let admin = mint(&tmp, "admin", "mcp:read admin");
    let (status, body) = call(&dev, &admin, "admin_action", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"]["content"][0]["text"],
        "admin action done by admin"
    );

    let deadline = Instant::now() + DEADLINE;
    let lines = loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        if lines.len() >= 5 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert!(lines.iter().any(|l| l["tool"] == "echo"
        && l["decision"]["effect"] == "deny"
        && l["decision"]["rule_ids"] == json!(["no-echo-secrets"])));
}

#[tokio::test]
async fn without_a_policy_every_tool_is_listed() {
    let tmp = TempDir::new("policy", "none");
    let dev = support::process::dev(&tmp, "dev", &[]).await;
    let banner = dev.field("token");
    let (_, body) = rpc(
        &dev,
        &banner,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await;
    assert_eq!(body["result"]["tools"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn allow_domain_refuses_a_user_outside_it_at_sign_in() {
    let tmp = TempDir::new("policy", "allow");
    let dev = support::process::dev(
        &tmp,
        "dev",
        &["--allow-domain", "other.org", "--auto-approve"],
    )
    .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let registered: Value = http
        .post(format!("{}/register", dev.issuer()))
        .json(&json!({"redirect_uris": ["http://127.0.0.1/callback"], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("json");
    let client = registered["client_id"].as_str().expect("client_id");
    let mut url = url::Url::parse(&format!("{}/authorize", dev.issuer())).expect("url");
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client)
        .append_pair("redirect_uri", "http://127.0.0.1:40000/callback")
        .append_pair("state", "s")
        .append_pair(
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        )
        .append_pair("code_challenge_method", "S256")
        .append_pair("scope", "mcp:read")
        .append_pair("resource", &dev.mcp_url());
    let res = http.get(url).send().await.expect("authorize");
    assert_eq!(res.status(), 302);
    let location = res.headers()["location"].to_str().expect("ascii");
    let back: std::collections::HashMap<String, String> = url::Url::parse(location)
        .expect("url")
        .query_pairs()
        .into_owned()
        .collect();
    // The dev user is dev@example.com.
    assert_eq!(
        back.get("error").map(String::as_str),
        Some("access_denied"),
        "{location}"
    );
    assert!(!back.contains_key("code"));
}

#[test]
fn a_policy_that_does_not_fit_the_tools_stops_the_start_naming_the_rule() {
    let tmp = TempDir::new("policy", "typo");
    let file = tmp.path().join("typo.toml");
    std::fs::write(
        &file,
        "[[policy.rule]]\nid = \"echo-hi\"\ntools = [\"echo\"]\nargs.txt = { one_of = [\"hi\"] }\n",
    )
    .expect("write");
    let data = tmp.data();
    let err = refused(&[
        "dev",
        "--port",
        "0",
        "--json",
        "--policy",
        file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(err.contains("echo-hi") && err.contains("txt"), "{err}");
}

/// `mcp-oauth serve --policy demo` in front of an issuer known by its public key: the tool
/// rules decide (the issuer signs users in, so sign-in rules do not apply here).
#[tokio::test]
async fn serve_enforces_the_tool_rules_of_its_policy() {
    use mcp_oauth::testing::TestKey;

    let tmp = TempDir::new("policy", "serve");
    let key = TestKey::es256();
    let pem = tmp.path().join("key.pem");
    std::fs::write(&pem, key.public_key_pem().expect("pem")).expect("write");
    let issuer = "http://127.0.0.1:9/";
    let dev = support::process::serve(
        &tmp,
        "serve",
        &[
            "--issuer",
            issuer,
            "--scopes",
            "mcp:read",
            "--policy",
            "demo",
            "--public-key",
            pem.to_str().unwrap(),
        ],
    )
    .await;
    let mcp_url = dev.mcp_url();
    let token = |sub: &str, email: &str| {
        key.token()
            .iss(issuer)
            .sub(sub)
            .aud(&mcp_url)
            .claim("email", email)
            .scope("mcp:read")
            .exp_in(300)
            .sign()
    };
    let staff = token("u-1", "ann@example.com");
    let (status, body) = call(&dev, &staff, "echo", json!({"text": "hi"})).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["content"][0]["text"], "hi", "{body}");
    let outsider = token("u-2", "olaf@elsewhere.org");
    let (_, body) = call(&dev, &outsider, "echo", json!({"text": "hi"})).await;
    assert_eq!(body["error"]["code"], -32003, "{body}");
    let (_, body) = call(&dev, &outsider, "whoami", json!({})).await;
    assert_eq!(
        body["result"]["structuredContent"]["user"]["id"], "u-2",
        "{body}"
    );
}
