//! DPoP end to end against `mcp-oauth dev --dpop …` as a user runs it: a hand-built client
//! registers, asks for a code bound to its key (`dpop_jkt`), redeems it with a proof, and
//! calls the MCP endpoint with `Authorization: DPoP` and a fresh proof per request; a thief
//! holding the token (as Bearer, with a replayed proof, or with its own key) and the refresh
//! token (with its own key) is refused.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mcp_oauth::dpop;
use mcp_oauth::jose::Jwk;
use mcp_oauth::testing::TestKey;
use serde_json::{Value, json};

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const REDIRECT: &str = "http://127.0.0.1:41234/callback";

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

fn start(name: &str, extra: &[&str]) -> Dev {
    let dir =
        std::env::temp_dir().join(format!("mcp-oauth-cli-dpop-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
        .args([
            "dev",
            "--port",
            "0",
            "--json",
            "--auto-approve",
            "--data-dir",
        ])
        .arg(&dir)
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
    fn url(&self) -> &str {
        self.info["mcp_url"].as_str().expect("mcp_url")
    }

    fn issuer(&self) -> &str {
        self.info["issuer"].as_str().expect("issuer")
    }

    async fn ready(&self, http: &reqwest::Client) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        let prm = format!("{}/.well-known/oauth-protected-resource/mcp", self.issuer());
        while Instant::now() < deadline {
            if let Ok(res) = http.get(&prm).send().await
                && res.status().is_success()
            {
                return res.json().await.expect("metadata");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("mcp-oauth dev did not become ready");
    }
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// A client's DPoP key and its proofs, built by hand: a JWS with `typ`, `alg` and the public
/// `jwk` in the header, and `jti`, `htm`, `htu`, `iat` (and `ath`) in the claims.
struct Client {
    key: TestKey,
}

impl Client {
    fn new() -> Self {
        Self {
            key: TestKey::es256(),
        }
    }

    fn jkt(&self) -> String {
        self.key.public_jwk().unwrap().thumbprint().unwrap()
    }

    fn proof(&self, method: &str, url: &str, token: Option<&str>) -> String {
        self.proof_with_nonce(method, url, token, None)
    }

    fn proof_with_nonce(
        &self,
        method: &str,
        url: &str,
        token: Option<&str>,
        nonce: Option<&str>,
    ) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let jwk = self.key.public_jwk().unwrap();
        let mut jwk = serde_json::to_value(Jwk {
            kid: None,
            alg: None,
            use_: None,
            ..jwk
        })
        .unwrap();
        jwk.as_object_mut().unwrap().retain(|_, v| !v.is_null());
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
        let mut claims = json!({
            "jti": format!("cli-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)),
            "htm": method, "htu": url, "iat": now(),
        });
        if let Some(token) = token {
            claims["ath"] = dpop::access_token_hash(token).into();
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        self.key
            .key()
            .sign_compact(header.to_string().as_bytes(), claims.to_string().as_bytes())
    }
}

/// `tools/call whoami` with this `Authorization` and these `DPoP` values.
async fn whoami(
    http: &reqwest::Client,
    url: &str,
    authorization: &str,
    proofs: &[&str],
) -> reqwest::Response {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}});
    let mut req = http
        .post(url)
        .header("authorization", authorization)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.to_string());
    for proof in proofs {
        req = req.header("dpop", *proof);
    }
    req.send().await.expect("post")
}

async fn token(
    http: &reqwest::Client,
    issuer: &str,
    form: &[(&str, &str)],
    proof: Option<&str>,
) -> (u16, Value) {
    let mut req = http.post(format!("{issuer}/token")).form(form);
    if let Some(proof) = proof {
        req = req.header("dpop", proof);
    }
    let res = req.send().await.expect("token");
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

/// Registers a public client and gets a code bound to `jkt` (auto-approved).
async fn code_for(http: &reqwest::Client, dev: &Dev, jkt: &str) -> (String, String) {
    let issuer = dev.issuer();
    let reg: Value = http
        .post(format!("{issuer}/register"))
        .json(&json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"], "client_name": "dpop cli test"}))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("json");
    let client_id = reg["client_id"].as_str().expect("client_id").to_owned();
    let mut authorize = url::Url::parse(&format!("{issuer}/authorize")).expect("url");
    authorize.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", REDIRECT),
        ("state", "s"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("resource", dev.url()),
        ("scope", "mcp:read"),
        ("dpop_jkt", jkt),
    ]);
    let res = http
        .get(authorize.as_str())
        .send()
        .await
        .expect("authorize");
    assert_eq!(res.status(), 302);
    let location = url::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    let params: HashMap<String, String> = location.query_pairs().into_owned().collect();
    (client_id, params["code"].clone())
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

#[tokio::test]
async fn a_dpop_client_against_mcp_oauth_dev_and_the_thief_who_copied_its_tokens() {
    let dev = start("allowed", &["--dpop", "allowed"]);
    let http = no_redirects();
    let prm = dev.ready(&http).await;
    assert_eq!(prm["dpop_bound_access_tokens_required"], false);
    assert!(
        prm["dpop_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("ES256"))
    );
    let issuer = dev.issuer().to_owned();
    let as_meta: Value = http
        .get(format!("{issuer}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(as_meta["dpop_signing_alg_values_supported"].is_array());

    let client = Client::new();
    let thief = Client::new();
    let token_url = format!("{issuer}/token");
    let (client_id, code) = code_for(&http, &dev, &client.jkt()).await;
    let redeem = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("client_id", client_id.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    // The code is bound to the client's key: the thief's proof does not redeem it.
    let (status, body) = token(
        &http,
        &issuer,
        &redeem,
        Some(&thief.proof("POST", &token_url, None)),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant", "{body}");
    let (status, tokens) = token(
        &http,
        &issuer,
        &redeem,
        Some(&client.proof("POST", &token_url, None)),
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "DPoP");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

    // The client: a fresh proof per request.
    let dpop_auth = format!("DPoP {access}");
    for _ in 0..2 {
        let proof = client.proof("POST", dev.url(), Some(&access));
        let res = whoami(&http, dev.url(), &dpop_auth, &[&proof]).await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(
            body["result"]["structuredContent"]["user"]["id"], "dev",
            "{body}"
        );
    }

    // The thief: the token as Bearer, a replayed proof, its own key.
    let res = whoami(&http, dev.url(), &format!("Bearer {access}"), &[]).await;
    assert_eq!(res.status(), 401);
    let challenge = res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );
    assert!(challenge.contains(", DPoP algs=\""), "{challenge}");
    let seen = client.proof("POST", dev.url(), Some(&access));
    assert_eq!(
        whoami(&http, dev.url(), &dpop_auth, &[&seen])
            .await
            .status(),
        200
    );
    let res = whoami(&http, dev.url(), &dpop_auth, &[&seen]).await;
    assert_eq!(res.status(), 401);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("DPoP error=\"invalid_dpop_proof\"")
    );
    let own = thief.proof("POST", dev.url(), Some(&access));
    assert_eq!(
        whoami(&http, dev.url(), &dpop_auth, &[&own]).await.status(),
        401
    );
    // A proof for /token used at the MCP endpoint.
    let elsewhere = client.proof("POST", &token_url, Some(&access));
    assert_eq!(
        whoami(&http, dev.url(), &dpop_auth, &[&elsewhere])
            .await
            .status(),
        401
    );

    // The refresh token is bound too.
    let refresh_form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("client_id", client_id.as_str()),
    ];
    let (status, body) = token(
        &http,
        &issuer,
        &refresh_form,
        Some(&thief.proof("POST", &token_url, None)),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant", "{body}");
    let (status, body) = token(
        &http,
        &issuer,
        &refresh_form,
        Some(&client.proof("POST", &token_url, None)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");

    // Bearer tokens still work beside DPoP: the banner's.
    let banner = dev.info["token"].as_str().unwrap();
    assert_eq!(
        whoami(&http, dev.url(), &format!("Bearer {banner}"), &[])
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn required_refuses_bearer_tokens_and_off_refuses_the_dpop_scheme() {
    let http = no_redirects();
    let required = start("required", &["--dpop", "required"]);
    let prm = required.ready(&http).await;
    assert_eq!(prm["dpop_bound_access_tokens_required"], true);
    let banner = required.info["token"].as_str().unwrap();
    let res = whoami(&http, required.url(), &format!("Bearer {banner}"), &[]).await;
    assert_eq!(res.status(), 401);
    drop(required);

    let off = start("off", &[]);
    let prm = off.ready(&http).await;
    assert!(prm.get("dpop_signing_alg_values_supported").is_none());
    let banner = off.info["token"].as_str().unwrap();
    let client = Client::new();
    let proof = client.proof("POST", off.url(), Some(banner));
    let res = whoami(&http, off.url(), &format!("DPoP {banner}"), &[&proof]).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        whoami(&http, off.url(), &format!("Bearer {banner}"), &[])
            .await
            .status(),
        200
    );
    // With DPoP off, /token ignores the DPoP header and dpop_jkt: tokens are bearer tokens.
    let (client_id, code) = code_for(&http, &off, &client.jkt()).await;
    let issuer = off.issuer().to_owned();
    let (status, tokens) = token(
        &http,
        &issuer,
        &[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("client_id", client_id.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
        Some(&client.proof("POST", &format!("{issuer}/token"), None)),
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
}

/// The `DPoP-Nonce` header of a response, which must be there.
fn nonce_of(res: &reqwest::Response) -> String {
    res.headers()
        .get("dpop-nonce")
        .unwrap_or_else(|| panic!("no DPoP-Nonce header: {:?}", res.headers()))
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn dpop_nonce_makes_the_token_endpoint_and_the_mcp_endpoint_hand_out_nonces() {
    let secret_dir =
        std::env::temp_dir().join(format!("mcp-oauth-cli-nonce-{}", std::process::id()));
    std::fs::create_dir_all(&secret_dir).unwrap();
    let secret = secret_dir.join("nonce-secret");
    std::fs::write(
        &secret,
        "a shared nonce secret of well over thirty-two bytes\n",
    )
    .unwrap();
    let dev = start(
        "nonce",
        &[
            "--dpop",
            "allowed",
            "--dpop-nonce",
            "--dpop-nonce-secret-file",
            secret.to_str().unwrap(),
        ],
    );
    let http = no_redirects();
    dev.ready(&http).await;
    let issuer = dev.issuer().to_owned();
    let token_url = format!("{issuer}/token");
    let client = Client::new();
    let (client_id, code) = code_for(&http, &dev, &client.jkt()).await;
    let redeem = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("client_id", client_id.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];

    // /token: a proof without a nonce is answered use_dpop_nonce with a nonce (RFC 9449 §8).
    let res = http
        .post(&token_url)
        .form(&redeem)
        .header("dpop", client.proof("POST", &token_url, None))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let nonce = nonce_of(&res);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "use_dpop_nonce", "{body}");
    // A nonce this server did not issue is answered the same way.
    let forged = client.proof_with_nonce("POST", &token_url, None, Some("bm90LW91cnM"));
    let (status, body) = token(&http, &issuer, &redeem, Some(&forged)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("use_dpop_nonce")),
        "{body}"
    );
    // The retry with the nonce redeems the code (not spent by the refused attempts).
    let retry = client.proof_with_nonce("POST", &token_url, None, Some(&nonce));
    let (status, tokens) = token(&http, &issuer, &redeem, Some(&retry)).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "DPoP");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let auth = format!("DPoP {access}");

    // The MCP endpoint: 401 use_dpop_nonce with a DPoP-Nonce header (RFC 9449 §9), then the
    // retry with it works.
    let res = whoami(
        &http,
        dev.url(),
        &auth,
        &[&client.proof("POST", dev.url(), Some(&access))],
    )
    .await;
    assert_eq!(res.status(), 401);
    let challenge = res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer resource_metadata=\""),
        "{challenge}"
    );
    assert!(
        challenge.contains(", DPoP error=\"use_dpop_nonce\""),
        "{challenge}"
    );
    let nonce = nonce_of(&res);
    let proof = client.proof_with_nonce("POST", dev.url(), Some(&access), Some(&nonce));
    let res = whoami(&http, dev.url(), &auth, &[&proof]).await;
    assert_eq!(res.status(), 200);
    // The nonce is not single use, but the proof is.
    let res = whoami(&http, dev.url(), &auth, &[&proof]).await;
    assert_eq!(res.status(), 401);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("DPoP error=\"invalid_dpop_proof\"")
    );
    let again = client.proof_with_nonce("POST", dev.url(), Some(&access), Some(&nonce));
    assert_eq!(
        whoami(&http, dev.url(), &auth, &[&again]).await.status(),
        200
    );
    drop(dev);
    let _ = std::fs::remove_dir_all(&secret_dir);
}

#[test]
fn dpop_nonce_needs_dpop_on_and_a_long_enough_secret() {
    let dir = std::env::temp_dir().join(format!("mcp-oauth-cli-nonce-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
            .args(["dev", "--port", "0", "--store", "memory", "--data-dir"])
            .arg(dir.join("data"))
            .args(args)
            .output()
            .expect("run");
        assert!(!out.status.success(), "{args:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&["--dpop-nonce"]);
    assert!(
        err.contains("--dpop-nonce needs DPoP on: add --dpop allowed"),
        "{err}"
    );
    let short = dir.join("short");
    std::fs::write(&short, "too short\n").unwrap();
    let err = run(&[
        "--dpop",
        "allowed",
        "--dpop-nonce",
        "--dpop-nonce-secret-file",
        short.to_str().unwrap(),
    ]);
    assert!(
        err.contains("the secret has 9 bytes, it needs at least 32"),
        "{err}"
    );
    let err = run(&[
        "--dpop",
        "allowed",
        "--dpop-nonce-secret-file",
        short.to_str().unwrap(),
    ]);
    assert!(err.contains("add --dpop-nonce"), "{err}");
    let missing = dir.join("missing");
    let err = run(&[
        "--dpop",
        "allowed",
        "--dpop-nonce",
        "--dpop-nonce-secret-file",
        missing.to_str().unwrap(),
    ]);
    assert!(err.contains("cannot read it"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_dpop_mode_lists_the_modes() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
        .args(["dev", "--dpop", "maybe"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for mode in ["off", "allowed", "required"] {
        assert!(err.contains(mode), "{err}");
    }
}

#[tokio::test]
async fn mcp_oauth_token_mints_a_bound_token_that_needs_its_key() {
    let dev = start("token", &["--dpop", "allowed"]);
    let http = no_redirects();
    dev.ready(&http).await;
    let client = Client::new();
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
        .args(["token", "--json", "--dpop-jkt", &client.jkt(), "--data-dir"])
        .arg(&dev.dir)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let minted: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(minted["token_type"], "DPoP");
    assert_eq!(minted["claims"]["cnf"]["jkt"], client.jkt());
    let access = minted["access_token"].as_str().unwrap();
    let proof = client.proof("POST", dev.url(), Some(access));
    let res = whoami(&http, dev.url(), &format!("DPoP {access}"), &[&proof]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        whoami(&http, dev.url(), &format!("Bearer {access}"), &[])
            .await
            .status(),
        401
    );

    // A value that is not a thumbprint is refused before anything is minted.
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
        .args(["token", "--dpop-jkt", "not-a-thumbprint", "--data-dir"])
        .arg(&dev.dir)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 7638"));
}
