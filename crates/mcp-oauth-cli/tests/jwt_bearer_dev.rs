//! The JWT-bearer grant against `mcp-oauth dev` as a user runs it: `--trust-idp` with a JWK
//! Set file, and a `--client` presenting an ID-JAG signed by that provider; `--workload-issuer`
//! and `--workload-client`, and a workload token. Each token works at the MCP endpoint; an
//! assertion of an issuer the server does not trust gets nothing; bad flags say what to fix.
//! `mcp-oauth proxy` takes the same flags (a workload token through a GitHub-fronted proxy).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod support;

use mcp_oauth::testing::TestKey;
use serde_json::{Value, json};
use support::mcp::McpRequest as _;
use support::process::{Served, TempDir, dev_refused};

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const IDP: &str = "https://idp.acme.example";
const CI: &str = "https://ci.acme.example";
const DEPLOY: &str = "repo:acme/deploy:ref:refs/heads/main";
const AS_METADATA: &str = "/.well-known/oauth-authorization-server";

fn jwks_file(tmp: &TempDir, name: &str, key: &TestKey) -> String {
    let path = tmp.path().join(name);
    std::fs::write(
        &path,
        serde_json::to_string(&TestKey::jwks(&[key])).unwrap(),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

/// `mcp-oauth COMMAND --port 0 --json --store memory --data-dir <tmp>/data EXTRA`, ready.
async fn start(tmp: &TempDir, command: &[&str], extra: &[String]) -> Served {
    let data = tmp.data();
    let mut args: Vec<&str> = command.to_vec();
    args.extend([
        "--port",
        "0",
        "--json",
        "--store",
        "memory",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    args.extend(extra.iter().map(String::as_str));
    Served::start(tmp, command[0], &args, &[]).await
}

async fn grant(
    served: &Served,
    http: &reqwest::Client,
    basic: Option<(&str, &str)>,
    assertion: &str,
) -> (u16, Value) {
    let mut req = http
        .post(format!("{}/token", served.issuer()))
        .form(&[("grant_type", JWT_BEARER), ("assertion", assertion)]);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let res = req.send().await.expect("token");
    support::mcp::reply(res).await
}

async fn whoami(served: &Served, http: &reqwest::Client, token: &str) -> u16 {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}});
    http.post(served.mcp_url())
        .bearer_auth(token)
        .mcp(&body)
        .send()
        .await
        .expect("mcp")
        .status()
        .as_u16()
}

#[tokio::test]
async fn dev_accepts_id_jags_and_workload_tokens_from_the_issuers_it_is_told_to_trust() {
    let tmp = TempDir::new("jwtb", "ok");
    let idp = TestKey::es256();
    let ci = TestKey::rs256();
    let idp_jwks = jwks_file(&tmp, "idp.json", &idp);
    let ci_jwks = jwks_file(&tmp, "ci.json", &ci);
    let dev = start(
        &tmp,
        &["dev"],
        &[
            "--client".into(),
            "agent:agent-secret:mcp:read".into(),
            "--trust-idp".into(),
            format!("{IDP}={idp_jwks}"),
            "--workload-issuer".into(),
            format!("{CI}={ci_jwks}"),
            "--workload-client".into(),
            format!("{CI}#{DEPLOY}=deploy-bot"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let metadata = dev.get_json(AS_METADATA).await;
    assert!(
        metadata["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == JWT_BEARER),
        "{metadata}"
    );
    let issuer = dev.issuer();
    let jag = idp
        .token()
        .typ(Some("oauth-id-jag+jwt"))
        .iss(IDP)
        .sub("alice")
        .aud(&issuer)
        .claim("client_id", "agent")
        .claim("resource", dev.mcp_url().as_str())
        .claim("jti", "jag-1")
        .exp_in(300)
        .sign();
    let (status, body) = grant(&dev, &http, Some(("agent", "agent-secret")), &jag).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "mcp:read");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(whoami(&dev, &http, token).await, 200);
    // The same assertion again: used.
    let (status, body) = grant(&dev, &http, Some(("agent", "agent-secret")), &jag).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );

    let workload = ci
        .token()
        .typ(Some("JWT"))
        .iss(CI)
        .sub(DEPLOY)
        .aud(&issuer)
        .claim("jti", "wl-1")
        .exp_in(300)
        .sign();
    let (status, body) = grant(&dev, &http, None, &workload).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(whoami(&dev, &http, token).await, 200);

    // An issuer nobody configured: no client is named, none authenticates.
    let stranger = TestKey::es256()
        .token()
        .iss("https://evil.example")
        .sub(DEPLOY)
        .aud(&issuer)
        .claim("jti", "wl-2")
        .sign();
    let (status, body) = grant(&dev, &http, None, &stranger).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
}

#[tokio::test]
async fn proxy_accepts_workload_tokens_from_the_issuers_it_is_told_to_trust() {
    let tmp = TempDir::new("jwtb", "proxy");
    let ci = TestKey::es256();
    let ci_jwks = jwks_file(&tmp, "ci.json", &ci);
    let proxy = start(
        &tmp,
        &[
            "proxy",
            "--provider",
            "github",
            "--client-id",
            "gh-app",
            "--client-secret",
            "gh-secret",
        ],
        &[
            "--workload-issuer".into(),
            format!("{CI}={ci_jwks}"),
            "--workload-client".into(),
            format!("{CI}#{DEPLOY}=deploy-bot"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let metadata = proxy.get_json(AS_METADATA).await;
    assert!(
        metadata["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(JWT_BEARER)),
        "{metadata}"
    );
    let issuer = proxy.issuer();
    let workload = |jti: &str, sub: &str| {
        ci.token()
            .typ(Some("JWT"))
            .iss(CI)
            .sub(sub)
            .aud(&issuer)
            .claim("jti", jti)
            .exp_in(300)
            .sign()
    };
    let (status, body) = grant(&proxy, &http, None, &workload("p-1", DEPLOY)).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(whoami(&proxy, &http, token).await, 200);
    // A workload nobody mapped to a client gets nothing.
    let (status, body) = grant(
        &proxy,
        &http,
        None,
        &workload("p-2", "repo:acme/other:ref:refs/heads/main"),
    )
    .await;
    assert!(matches!(status, 400 | 401), "{status} {body}");
    assert!(body.get("access_token").is_none(), "{body}");
}

#[test]
fn bad_trust_flags_say_what_to_fix() {
    let tmp = TempDir::new("jwtb", "bad");
    let run = |args: &[&str]| dev_refused(&tmp, args);
    assert!(run(&["--trust-idp", IDP]).contains("ISSUER=JWKS"));
    assert!(
        run(&["--trust-idp", &format!("{IDP}=/nonexistent/jwks.json")]).contains("cannot read")
    );
    assert!(
        run(&["--workload-client", &format!("{CI}#{DEPLOY}=deploy-bot")])
            .contains("no --workload-issuer")
    );
    assert!(run(&["--workload-client", "no-separators"]).contains("ISSUER#SUBJECT=CLIENT_ID"));
}
