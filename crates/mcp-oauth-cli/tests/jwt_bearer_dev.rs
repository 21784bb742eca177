//! The JWT-bearer grant against `mcp-oauth dev` as a user runs it: `--trust-idp` with a JWK
//! Set file, and a `--client` presenting an ID-JAG signed by that provider; `--workload-issuer`
//! and `--workload-client`, and a workload token. Each token works at the MCP endpoint; an
//! assertion of an issuer the server does not trust gets nothing; bad flags say what to fix.
//! `mcp-oauth proxy` takes the same flags (a workload token through a GitHub-fronted proxy).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mcp_oauth::testing::TestKey;
use serde_json::{Value, json};

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const IDP: &str = "https://idp.acme.example";
const CI: &str = "https://ci.acme.example";
const DEPLOY: &str = "repo:acme/deploy:ref:refs/heads/main";

struct Dev {
    child: Child,
    info: Value,
    dir: PathBuf,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn folder(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("mcp-oauth-cli-jwtb-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn jwks_file(dir: &std::path::Path, name: &str, key: &TestKey) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        serde_json::to_string(&TestKey::jwks(&[key])).unwrap(),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

fn start(dir: PathBuf, extra: &[String]) -> Dev {
    start_command(&["dev"], dir, extra)
}

fn start_command(command: &[&str], dir: PathBuf, extra: &[String]) -> Dev {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
        .args(command)
        .args(["--port", "0", "--json", "--store", "memory", "--data-dir"])
        .arg(dir.join("data"))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    let info: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
    Dev { child, info, dir }
}

impl Dev {
    fn issuer(&self) -> &str {
        self.info["issuer"].as_str().expect("issuer")
    }

    fn mcp_url(&self) -> &str {
        self.info["mcp_url"].as_str().expect("mcp_url")
    }

    async fn ready(&self, http: &reqwest::Client) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = format!("{}/.well-known/oauth-authorization-server", self.issuer());
        while Instant::now() < deadline {
            if let Ok(res) = http.get(&url).send().await
                && res.status().is_success()
            {
                return res.json().await.expect("metadata");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("mcp-oauth dev did not become ready");
    }

    async fn token(
        &self,
        http: &reqwest::Client,
        basic: Option<(&str, &str)>,
        assertion: &str,
    ) -> (u16, Value) {
        let mut req = http
            .post(format!("{}/token", self.issuer()))
            .form(&[("grant_type", JWT_BEARER), ("assertion", assertion)]);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        let res = req.send().await.expect("token");
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    async fn whoami(&self, http: &reqwest::Client, token: &str) -> u16 {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}});
        http.post(self.mcp_url())
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .body(body.to_string())
            .send()
            .await
            .expect("mcp")
            .status()
            .as_u16()
    }
}

#[tokio::test]
async fn dev_accepts_id_jags_and_workload_tokens_from_the_issuers_it_is_told_to_trust() {
    let dir = folder("ok");
    let idp = TestKey::es256();
    let ci = TestKey::rs256();
    let idp_jwks = jwks_file(&dir, "idp.json", &idp);
    let ci_jwks = jwks_file(&dir, "ci.json", &ci);
    let dev = start(
        dir,
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
    );
    let http = reqwest::Client::new();
    let metadata = dev.ready(&http).await;
    assert!(
        metadata["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == JWT_BEARER),
        "{metadata}"
    );
    let issuer = dev.issuer().to_owned();
    let jag = idp
        .token()
        .typ(Some("oauth-id-jag+jwt"))
        .iss(IDP)
        .sub("alice")
        .aud(&issuer)
        .claim("client_id", "agent")
        .claim("resource", dev.mcp_url())
        .claim("jti", "jag-1")
        .exp_in(300)
        .sign();
    let (status, body) = dev
        .token(&http, Some(("agent", "agent-secret")), &jag)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "mcp:read");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(dev.whoami(&http, token).await, 200);
    // The same assertion again: used.
    let (status, body) = dev
        .token(&http, Some(("agent", "agent-secret")), &jag)
        .await;
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
    let (status, body) = dev.token(&http, None, &workload).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(dev.whoami(&http, token).await, 200);

    // An issuer nobody configured: no client is named, none authenticates.
    let stranger = TestKey::es256()
        .token()
        .iss("https://evil.example")
        .sub(DEPLOY)
        .aud(&issuer)
        .claim("jti", "wl-2")
        .sign();
    let (status, body) = dev.token(&http, None, &stranger).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
}

#[tokio::test]
async fn proxy_accepts_workload_tokens_from_the_issuers_it_is_told_to_trust() {
    let dir = folder("proxy");
    let ci = TestKey::es256();
    let ci_jwks = jwks_file(&dir, "ci.json", &ci);
    let proxy = start_command(
        &[
            "proxy",
            "--provider",
            "github",
            "--client-id",
            "gh-app",
            "--client-secret",
            "gh-secret",
        ],
        dir,
        &[
            "--workload-issuer".into(),
            format!("{CI}={ci_jwks}"),
            "--workload-client".into(),
            format!("{CI}#{DEPLOY}=deploy-bot"),
        ],
    );
    let http = reqwest::Client::new();
    let metadata = proxy.ready(&http).await;
    assert!(
        metadata["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(JWT_BEARER)),
        "{metadata}"
    );
    let issuer = proxy.issuer().to_owned();
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
    let (status, body) = proxy.token(&http, None, &workload("p-1", DEPLOY)).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(proxy.whoami(&http, token).await, 200);
    // A workload nobody mapped to a client gets nothing.
    let (status, body) = proxy
        .token(
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
    let dir = folder("bad");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
            .args(["dev", "--port", "0", "--store", "memory", "--data-dir"])
            .arg(dir.join("data"))
            .args(args)
            .output()
            .expect("run");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(&["--trust-idp", IDP]).contains("ISSUER=JWKS"));
    assert!(
        run(&["--trust-idp", &format!("{IDP}=/nonexistent/jwks.json")]).contains("cannot read")
    );
    assert!(
        run(&["--workload-client", &format!("{CI}#{DEPLOY}=deploy-bot")])
            .contains("no --workload-issuer")
    );
    assert!(run(&["--workload-client", "no-separators"]).contains("ISSUER#SUBJECT=CLIENT_ID"));
    let _ = std::fs::remove_dir_all(&dir);
}
