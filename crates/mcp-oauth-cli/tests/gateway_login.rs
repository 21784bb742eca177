//! `mcp-oauth gateway --login github --allow-org acme …` as a user runs it, from the attacker's
//! side first: users sign in at a local GitHub stand-in (its OAuth web flow and the `/user`,
//! `/user/orgs` and `/user/teams` API), the gateway issues its own tokens, and the upstream MCP
//! server (the rmcp test server over Streamable HTTP on 127.0.0.1, recording every header it
//! receives) never sees a token of anyone. Also: a user outside the organisation gets no code,
//! GitHub's own token is refused at `/mcp`, the sign-in rules of the options refuse at the
//! embedded authorization server, and the configuration file has the matching keys.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rmcp::ServiceExt as _;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

use support::browser::{Browser, CHALLENGE, REDIRECT, Reply, VERIFIER};
use support::gateway;
use support::github::{
    self, CLIENT_ID as GH_CLIENT, CLIENT_SECRET as GH_SECRET, USER_ID as GH_USER_ID,
};
use support::process::{DEADLINE, Served, TempDir};

// --------------------------------------------------------------------------- the upstream

/// The rmcp test server over Streamable HTTP, recording the headers of every request.
struct Upstream {
    url: String,
    headers: Arc<Mutex<Vec<HeaderMap>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn start_upstream() -> Upstream {
    let headers: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
    let record = headers.clone();
    let app = mcp_oauth_gateway::test_upstream::http_router().layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            record.lock().unwrap().push(req.headers().clone());
            next.run(req)
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Upstream {
        url: format!("http://{addr}/mcp"),
        headers,
        server,
    }
}

// --------------------------------------------------------------------------- the gateway

type Gateway = Served;

/// `mcp-oauth gateway --port 0 --json --store memory --data-dir <tmp>/data <args>`, ready.
async fn start_gateway(tmp: &TempDir, args: &[&str], env: &[(String, String)]) -> Gateway {
    let mut gateway = gateway::start(tmp, "gateway", args, env).await;
    gateway.ready().await;
    gateway
}

// --------------------------------------------------------------------------- a browser + client

/// Registers a client and follows the whole sign-in, approving every consent page, until
/// the browser is sent back to the client: the query it got there (`code` or `error`).
async fn sign_in(browser: &mut Browser, gateway: &Gateway) -> HashMap<String, String> {
    let issuer = gateway.issuer();
    let client_id = browser.register(&issuer, "gateway login test client").await;
    let mut url = url::Url::parse(&format!("{issuer}/authorize")).unwrap();
    url.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", REDIRECT),
        ("state", "client-state-5c1"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("resource", gateway.mcp_url().as_str()),
        ("scope", "mcp:read mcp:write"),
    ]);
    let mut reply = browser.get(url.as_str()).await;
    for _ in 0..8 {
        match reply.status {
            200 => {
                // A consent page: approve it, as the page gives the form.
                let mut form: Vec<(String, String)> =
                    mcp_oauth::testing::hidden_form_fields(&reply.body)
                        .into_iter()
                        .collect();
                form.push(("decision".into(), "approve".into()));
                reply = browser
                    .post_form(&format!("{issuer}/authorize"), &form)
                    .await;
            }
            302 | 303 => {
                let to = reply.location().expect("a redirect");
                if to.as_str().starts_with(REDIRECT) {
                    let mut answer: HashMap<String, String> =
                        to.query_pairs().into_owned().collect();
                    answer.insert("client_id".into(), client_id);
                    return answer;
                }
                reply = browser.get(to.as_str()).await;
            }
            other => panic!(
                "HTTP {other} during sign-in: {}\n{}",
                reply.body,
                gateway.log_text()
            ),
        }
    }
    panic!(
        "the sign-in never came back to the client:\n{}",
        browser.transcript
    );
}

/// Our tokens for a code.
async fn tokens(
    browser: &mut Browser,
    gateway: &Gateway,
    answer: &HashMap<String, String>,
) -> Reply {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", answer["code"].as_str()),
        ("client_id", answer["client_id"].as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("resource", gateway.mcp_url().as_str()),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    browser
        .post_form(&format!("{}/token", gateway.issuer()), &form)
        .await
}

/// The decoded payload of a JWT.
fn jwt_claims(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("JWT payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

/// A raw `initialize` at the MCP endpoint with `token`.
async fn initialize(url: &str, token: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#)
        .send()
        .await
        .unwrap()
}

/// Every header value the upstream received, as one text.
fn upstream_saw(upstream: &Upstream) -> String {
    upstream
        .headers
        .lock()
        .unwrap()
        .iter()
        .flat_map(|h| h.iter().map(|(k, v)| format!("{k}: {v:?}\n")))
        .collect()
}

// --------------------------------------------------------------------------- tests

/// The issue's first command, with an HTTP upstream: a member of `acme` signs in at GitHub
/// through the gateway and calls a tool with the gateway's token; GitHub's token reaches
/// neither the client nor the upstream, and is refused at `/mcp`.
#[tokio::test]
async fn a_member_of_the_org_signs_in_at_github_and_reaches_a_tool() {
    let tmp = TempDir::new("gateway-login", "member");
    let (gh, _gh_stop) = github::start(&["acme"]).await;
    let upstream = start_upstream().await;
    let gateway = start_gateway(
        &tmp,
        &[
            "--login",
            "github",
            "--allow-org",
            "acme",
            "--upstream",
            &upstream.url,
        ],
        &gh.env(),
    )
    .await;
    let issuer = gateway.issuer();
    let callback = gateway.field("callback_url");
    assert_eq!(callback, format!("{issuer}/oauth/callback"));
    assert!(
        gateway.info["token"].is_null(),
        "no banner token with --login: {}",
        gateway.info
    );
    gh.seen.lock().unwrap().callback = Some(callback);

    // Discovery: the gateway is the authorization server the client sees.
    let mut browser = Browser::new();
    let prm = browser
        .get(&format!(
            "{issuer}/.well-known/oauth-protected-resource/mcp"
        ))
        .await
        .json();
    assert_eq!(prm["authorization_servers"], json!([issuer]));
    let meta = browser
        .get(&format!("{issuer}/.well-known/oauth-authorization-server"))
        .await
        .json();
    assert_eq!(meta["registration_endpoint"], format!("{issuer}/register"));

    let answer = sign_in(&mut browser, &gateway).await;
    assert!(!answer.contains_key("error"), "{answer:?}");
    assert_eq!(answer["state"], "client-state-5c1");
    assert_eq!(answer["iss"], issuer);
    let tokens = tokens(&mut browser, &gateway, &answer).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let access = tokens.json()["access_token"].as_str().unwrap().to_owned();
    let claims = jwt_claims(&access);
    assert_eq!(claims["iss"], issuer);
    assert_eq!(claims["aud"], gateway.mcp_url());
    assert_eq!(claims["sub"], GH_USER_ID.to_string());
    assert_eq!(claims["groups"], json!(["acme"]), "{claims}");
    {
        let seen = gh.seen.lock().unwrap();
        assert!(
            seen.api_calls.iter().any(|p| p == "user/orgs"),
            "the memberships were read at sign-in: {:?}",
            seen.api_calls
        );
    }

    // The gateway's token reaches the upstream's tool.
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(gateway.mcp_url())
            .auth_header(access.clone()),
    );
    let mcp = ().serve(transport).await.expect("an MCP session through the gateway");
    let mut params = CallToolRequestParams::new("echo".to_owned());
    params = params.with_arguments(
        json!({"text": "through the front door"})
            .as_object()
            .unwrap()
            .clone(),
    );
    let result = mcp.call_tool(params).await.expect("call");
    assert_eq!(
        serde_json::to_value(&result).unwrap()["content"][0]["text"],
        "through the front door"
    );
    mcp.cancel().await.unwrap();

    // GitHub's own tokens are not ours: refused at /mcp with our challenge, before the
    // upstream (which sees nothing more).
    let before = upstream.headers.lock().unwrap().len();
    assert!(before > 0, "the upstream was called");
    let issued = gh.seen.lock().unwrap().issued.clone();
    assert_eq!(issued.len(), 2, "an access and a refresh token");
    for token in &issued {
        let res = initialize(&gateway.mcp_url(), token).await;
        assert_eq!(res.status(), 401, "GitHub's token at /mcp");
        let challenge = res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.contains("invalid_token"), "{challenge}");
    }
    assert_eq!(upstream.headers.lock().unwrap().len(), before);

    // No token of anyone reached the upstream: not GitHub's, not ours, no Authorization.
    let saw = upstream_saw(&upstream);
    assert!(!saw.contains("authorization"), "{saw}");
    assert!(!saw.contains(&access), "our token reached the upstream");
    for token in &issued {
        assert!(
            !saw.contains(token.as_str()),
            "GitHub's token reached the upstream"
        );
        assert!(
            !browser.transcript.contains(token.as_str()),
            "GitHub's token reached the client"
        );
    }
    assert!(!claims.to_string().contains("gho_"), "{claims}");
}

/// A GitHub user outside the allowed organisation gets no code (`access_denied` back at the
/// client), so no token, and nothing reaches the upstream.
#[tokio::test]
async fn a_user_outside_the_org_is_refused_at_sign_in() {
    let tmp = TempDir::new("gateway-login", "outsider");
    let (gh, _gh_stop) = github::start(&["not-acme", "acme-evil"]).await;
    gh.seen
        .lock()
        .unwrap()
        .teams
        .push(("other".to_owned(), "acme".to_owned()));
    let upstream = start_upstream().await;
    let gateway = start_gateway(
        &tmp,
        &[
            "--login",
            "github",
            "--allow-org",
            "acme",
            "--allow-org",
            "acme/platform",
            "--upstream",
            &upstream.url,
        ],
        &gh.env(),
    )
    .await;
    gh.seen.lock().unwrap().callback = Some(gateway.field("callback_url"));
    let mut browser = Browser::new();
    let answer = sign_in(&mut browser, &gateway).await;
    assert_eq!(
        answer.get("error").map(String::as_str),
        Some("access_denied"),
        "{answer:?}"
    );
    assert!(!answer.contains_key("code"), "{answer:?}");
    assert!(
        gh.seen
            .lock()
            .unwrap()
            .api_calls
            .iter()
            .any(|p| p == "user/orgs"),
        "GitHub was asked"
    );
    // A code made up by the client is no way in either.
    let mut forged = answer.clone();
    forged.insert("code".into(), "made-up-code".into());
    let tokens = tokens(&mut browser, &gateway, &forged).await;
    assert_eq!(tokens.status, 400, "{}", tokens.body);
    assert!(upstream.headers.lock().unwrap().is_empty());
}

/// Without --login, the embedded authorization server applies the options' sign-in rules
/// too: the local user `dev` (dev@example.com) is refused outside --allow-domain and let in
/// by --allow-email.
#[tokio::test]
async fn sign_in_rules_refuse_at_the_embedded_authorization_server() {
    let upstream = start_upstream().await;
    let tmp = TempDir::new("gateway-login", "embedded-refused");
    let refused = start_gateway(
        &tmp,
        &[
            "--auto-approve",
            "--allow-domain",
            "other.org",
            "--upstream",
            &upstream.url,
        ],
        &[],
    )
    .await;
    let answer = sign_in(&mut Browser::new(), &refused).await;
    assert_eq!(
        answer.get("error").map(String::as_str),
        Some("access_denied"),
        "{answer:?}"
    );
    assert!(!answer.contains_key("code"));
    drop(refused);

    let tmp = TempDir::new("gateway-login", "embedded-allowed");
    let allowed = start_gateway(
        &tmp,
        &[
            "--auto-approve",
            "--allow-domain",
            "other.org",
            "--allow-email",
            "dev@example.com",
            "--upstream",
            &upstream.url,
        ],
        &[],
    )
    .await;
    let mut browser = Browser::new();
    let answer = sign_in(&mut browser, &allowed).await;
    assert!(answer.contains_key("code"), "{answer:?}");
    let tokens = tokens(&mut browser, &allowed, &answer).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    assert!(upstream.headers.lock().unwrap().is_empty());
}

/// The sign-in and grant rules of `--policy` apply at the embedded authorization server (as
/// `mcp-oauth dev --policy` does), compiled with its tool rules against the upstream's real
/// tools: `dev` is not allowed to sign in by this file.
#[tokio::test]
async fn policy_sign_in_rules_refuse_at_the_embedded_authorization_server() {
    let upstream = start_upstream().await;
    let tmp = TempDir::new("gateway-login", "embedded-policy");
    let policy = tmp.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[policy]\n\n[[policy.sign_in]]\nid = \"only-alice\"\nwho = { emails = [\"alice@example.com\"] }\n\n[[policy.rule]]\nid = \"echo\"\ntools = [\"echo\"]\n",
    )
    .unwrap();
    let audit = tmp.path().join("audit.jsonl");
    let gateway = start_gateway(
        &tmp,
        &[
            "--auto-approve",
            "--policy",
            policy.to_str().unwrap(),
            "--audit",
            audit.to_str().unwrap(),
            "--upstream",
            &upstream.url,
        ],
        &[],
    )
    .await;
    let answer = sign_in(&mut Browser::new(), &gateway).await;
    assert_eq!(
        answer.get("error").map(String::as_str),
        Some("access_denied"),
        "{answer:?}"
    );
    assert!(!answer.contains_key("code"));
    // The refusal is in the audit log, naming the user (never a token).
    let deadline = Instant::now() + DEADLINE;
    let logged = loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        if text.contains("dev") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(25)).await; // poll interval, bounded above
    };
    assert!(logged.contains("\"deny\""), "{logged}");
    // Only the gateway's own listing of the tools (to check the policy) reached the upstream.
    assert!(!upstream_saw(&upstream).contains("authorization"));

    // A sign-in rule about a tool-less mistake stops the start, naming the rule and its line.
    std::fs::write(
        &policy,
        "[policy]\n\n[[policy.sign_in]]\nid = \"platform\"\nwho = { groups = [\"platform\"] }\n",
    )
    .unwrap();
    // Its own data folder: the gateway above still runs on `<tmp>/data`.
    let args = [
        "--policy",
        policy.to_str().unwrap(),
        "--upstream",
        &upstream.url,
    ];
    let out = gateway::run(&tmp.path().join("data2"), &args, &[]).await;
    let err = out.stderr;
    assert_ne!(out.code, 0);
    assert!(
        err.contains("platform") && err.contains("never assigned"),
        "{err}"
    );
}

/// In `--login` mode the policy's rules apply at sign-in as `mcp-oauth proxy --policy`
/// applies them: GitHub teams (read with --github-groups) decide who signs in, and grant rules
/// cut the scopes the gateway's token carries.
#[tokio::test]
async fn policy_rules_decide_sign_in_and_scopes_with_github_teams() {
    let upstream = start_upstream().await;
    let tmp = TempDir::new("gateway-login", "login-policy");
    let policy = tmp.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[policy]\ngroup_claims = [\"groups\"]\n\n[[policy.sign_in]]\nid = \"platform-team\"\nwho = { groups = [\"acme/platform\"] }\n\n[[policy.grant]]\nid = \"acme-reads\"\nwho = { groups = [\"acme\"] }\nscopes = [\"mcp:read\"]\n\n[[policy.rule]]\nid = \"echo\"\ntools = [\"echo\"]\n",
    )
    .unwrap();
    let args = |url: &str| {
        [
            "--login",
            "github",
            "--github-groups",
            "--policy",
            policy.to_str().unwrap(),
            "--upstream",
            url,
        ]
        .map(str::to_owned)
        .to_vec()
    };

    // In the team: signed in, with the granted scope only.
    let (gh, _gh_stop) = github::start(&["acme"]).await;
    gh.seen
        .lock()
        .unwrap()
        .teams
        .push(("acme".to_owned(), "platform".to_owned()));
    let member_args = args(&upstream.url);
    let member_args: Vec<&str> = member_args.iter().map(String::as_str).collect();
    let gateway = start_gateway(&tmp, &member_args, &gh.env()).await;
    gh.seen.lock().unwrap().callback = Some(gateway.field("callback_url"));
    let mut browser = Browser::new();
    let answer = sign_in(&mut browser, &gateway).await;
    assert!(
        answer.contains_key("code"),
        "{answer:?}\n{}",
        gateway.log_text()
    );
    let tokens = tokens(&mut browser, &gateway, &answer).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let access = tokens.json()["access_token"].as_str().unwrap().to_owned();
    let claims = jwt_claims(&access);
    assert_eq!(claims["scope"], "mcp:read", "{claims}");
    assert_eq!(
        claims["groups"],
        json!(["acme", "acme/platform"]),
        "{claims}"
    );
    let res = initialize(&gateway.mcp_url(), &access).await;
    assert_eq!(res.status(), 200);
    drop(gateway);

    // In the organisation but not the team: no code.
    let tmp2 = TempDir::new("gateway-login", "login-policy-outsider");
    let (gh, _gh_stop) = github::start(&["acme"]).await;
    let gateway = start_gateway(&tmp2, &member_args, &gh.env()).await;
    gh.seen.lock().unwrap().callback = Some(gateway.field("callback_url"));
    let answer = sign_in(&mut Browser::new(), &gateway).await;
    assert_eq!(
        answer.get("error").map(String::as_str),
        Some("access_denied"),
        "{answer:?}"
    );
    assert!(!answer.contains_key("code"));
}

/// `--print-config` writes the provider options as keys (secrets as their references), the
/// file reads back to the same, and `gateway check` describes the front door.
#[test]
fn the_login_options_are_keys_of_the_configuration_file() {
    let tmp = TempDir::new("gateway-login", "toml");
    let (ok, printed, err) = support::process::run_to_end(
        &[
            "gateway",
            "--login",
            "github",
            "--client-id",
            GH_CLIENT,
            "--client-secret",
            "${GW_LOGIN_TEST_SECRET}",
            "--allow-org",
            "acme",
            "--allow-domain",
            "example.com",
            "--github-url",
            "http://127.0.0.1:9",
            "--upstream",
            "http://127.0.0.1:3000/mcp",
            "--print-config",
        ],
        &[],
    );
    assert!(ok, "{err}");
    for line in [
        "login = \"github\"",
        &format!("client_id = \"{GH_CLIENT}\""),
        "client_secret = \"${GW_LOGIN_TEST_SECRET}\"",
        "allow_org = [\"acme\"]",
        "allow_domain = [\"example.com\"]",
        "github_url = \"http://127.0.0.1:9\"",
    ] {
        assert!(printed.lines().any(|l| l == line), "{line} in\n{printed}");
    }
    let file = tmp.path().join("gateway.toml");
    std::fs::write(&file, &printed).unwrap();
    let file = file.to_str().unwrap();
    let env = [("GW_LOGIN_TEST_SECRET".to_owned(), GH_SECRET.to_owned())];
    let (ok, again, err) =
        support::process::run_to_end(&["gateway", "--config", file, "--print-config"], &env);
    assert!(ok, "{err}");
    // The same options (a file's keys come back in the file's order, sorted).
    let sorted = |text: &str| {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    assert_eq!(
        sorted(&again),
        sorted(&printed),
        "the file reads back to the same options"
    );
    let (ok, plan, err) =
        support::process::run_to_end(&["gateway", "check", "--config", file], &env);
    assert!(ok, "{err}");
    assert!(
        plan.contains("users sign in at GitHub (as mcp-oauth proxy)"),
        "{plan}"
    );
    assert!(
        plan.contains("sign-in       decided by members of acme (GitHub); the --allow-domain"),
        "{plan}"
    );
    assert!(!plan.contains(GH_SECRET), "{plan}");

    // A misspelt key is refused with the right one, as for every option.
    std::fs::write(
        tmp.path().join("typo.toml"),
        "login = \"github\"\nallow_orgs = [\"acme\"]\n[[upstream]]\nurl = \"http://127.0.0.1:3000/mcp\"\n",
    )
    .unwrap();
    let typo = tmp.path().join("typo.toml");
    let (ok, _, err) = support::process::run_to_end(
        &["gateway", "check", "--config", typo.to_str().unwrap()],
        &env,
    );
    assert!(!ok);
    assert!(err.contains("did you mean `allow_org`"), "{err}");
    // A check finds the missing client secret without asking GitHub anything.
    std::fs::write(
        tmp.path().join("nosecret.toml"),
        format!("login = \"github\"\nclient_id = \"{GH_CLIENT}\"\n[[upstream]]\nurl = \"http://127.0.0.1:3000/mcp\"\n"),
    )
    .unwrap();
    let nosecret = tmp.path().join("nosecret.toml");
    let (ok, _, err) = support::process::run_to_end(
        &["gateway", "check", "--config", nosecret.to_str().unwrap()],
        &[],
    );
    assert!(!ok);
    assert!(
        err.contains("--login github needs the client secret"),
        "{err}"
    );
}

/// Combinations that cannot work stop the command before anything listens, saying why.
#[test]
fn front_door_mistakes_are_refused_with_what_to_do() {
    let up = ["--upstream", "http://127.0.0.1:9/mcp", "--port", "0"];
    let gh = [
        "--client-id".to_owned(),
        GH_CLIENT.to_owned(),
        "--client-secret".to_owned(),
        GH_SECRET.to_owned(),
    ];
    let gh: Vec<&str> = gh.iter().map(String::as_str).collect();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--allow-org", "acme"],
            "--allow-org needs --login github",
        ),
        (
            [&["--login", "google", "--allow-org", "acme"][..], &gh].concat(),
            "--allow-org needs --login github",
        ),
        (
            vec!["--login", "github"],
            "--login github needs our client id",
        ),
        (
            [&["--login", "github", "--user", "a:b"][..], &gh].concat(),
            "--user are the embedded server's own users",
        ),
        (
            [
                &["--login", "github", "--issuer", "http://127.0.0.1:9"][..],
                &gh,
            ]
            .concat(),
            "--issuer (OIDC_ISSUER) is the provider of --login oidc",
        ),
        (
            vec!["--login", "oidc", "--client-id", "x"],
            "--login oidc needs --issuer",
        ),
        (
            vec![
                "--issuer",
                "http://127.0.0.1:9",
                "--allow-domain",
                "example.com",
            ],
            "with --issuer users sign in at that issuer",
        ),
    ];
    for (args, expected) in cases {
        let all = [&["gateway"][..], &args, &up].concat();
        let (ok, _, err) = support::process::run_to_end(&all, &[]);
        assert!(!ok, "{all:?} was accepted");
        assert!(err.contains(expected), "{all:?}: {err}");
    }
}
