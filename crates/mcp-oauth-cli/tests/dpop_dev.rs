//! DPoP end to end against `mcp-oauth dev --dpop …` as a user runs it: a hand-built client
//! registers, asks for a code bound to its key (`dpop_jkt`), redeems it with a proof, and
//! calls the MCP endpoint with `Authorization: DPoP` and a fresh proof per request; a thief
//! holding the token (as Bearer, with a replayed proof, or with its own key) and the refresh
//! token (with its own key) is refused.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use mcp_oauth::dpop;
use mcp_oauth::jose::Jwk;
use mcp_oauth::testing::TestKey;
use serde_json::{Value, json};
use support::mcp::McpRequest as _;
use support::process::{Served, TempDir, dev_refused, refused, run_to_end};

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const REDIRECT: &str = "http://127.0.0.1:41234/callback";
const PRM: &str = "/.well-known/oauth-protected-resource/mcp";

/// `mcp-oauth dev --auto-approve EXTRA` in `tmp`, ready.
async fn start(tmp: &TempDir, extra: &[&str]) -> Served {
    let mut args = vec!["--auto-approve"];
    args.extend_from_slice(extra);
    support::process::dev(tmp, "dev", &args).await
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
        .mcp(&body);
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
    support::mcp::reply(res).await
}

/// Registers a public client and gets a code bound to `jkt` (auto-approved).
async fn code_for(http: &reqwest::Client, dev: &Served, jkt: &str) -> (String, String) {
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
        ("resource", &dev.mcp_url()),
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
    let tmp = TempDir::new("dpop", "allowed");
    let dev = start(&tmp, &["--dpop", "allowed"]).await;
    let url = dev.mcp_url();
    let http = no_redirects();
    let prm = dev.get_json(PRM).await;
    assert_eq!(prm["dpop_bound_access_tokens_required"], false);
    assert!(
        prm["dpop_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("ES256"))
    );
    let issuer = dev.issuer();
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
        let proof = client.proof("POST", &url, Some(&access));
        let res = whoami(&http, &url, &dpop_auth, &[&proof]).await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(
            body["result"]["structuredContent"]["user"]["id"], "dev",
            "{body}"
        );
    }

    // The thief: the token as Bearer, a replayed proof, its own key.
    let res = whoami(&http, &url, &format!("Bearer {access}"), &[]).await;
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
    let seen = client.proof("POST", &url, Some(&access));
    assert_eq!(
        whoami(&http, &url, &dpop_auth, &[&seen]).await.status(),
        200
    );
    let res = whoami(&http, &url, &dpop_auth, &[&seen]).await;
    assert_eq!(res.status(), 401);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("DPoP error=\"invalid_dpop_proof\"")
    );
    let own = thief.proof("POST", &url, Some(&access));
    assert_eq!(whoami(&http, &url, &dpop_auth, &[&own]).await.status(), 401);
    // A proof for /token used at the MCP endpoint.
    let elsewhere = client.proof("POST", &token_url, Some(&access));
    assert_eq!(
        whoami(&http, &url, &dpop_auth, &[&elsewhere])
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
        whoami(&http, &url, &format!("Bearer {banner}"), &[])
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn required_refuses_bearer_tokens_and_off_refuses_the_dpop_scheme() {
    let http = no_redirects();
    let tmp = TempDir::new("dpop", "required");
    let required = start(&tmp, &["--dpop", "required"]).await;
    let prm = required.get_json(PRM).await;
    assert_eq!(prm["dpop_bound_access_tokens_required"], true);
    let banner = required.info["token"].as_str().unwrap();
    let res = whoami(&http, &required.mcp_url(), &format!("Bearer {banner}"), &[]).await;
    assert_eq!(res.status(), 401);
    drop(required);

    let tmp = TempDir::new("dpop", "off");
    let off = start(&tmp, &[]).await;
    let off_url = off.mcp_url();
    let prm = off.get_json(PRM).await;
    assert!(prm.get("dpop_signing_alg_values_supported").is_none());
    let banner = off.info["token"].as_str().unwrap();
    let client = Client::new();
    let proof = client.proof("POST", &off_url, Some(banner));
    let res = whoami(&http, &off_url, &format!("DPoP {banner}"), &[&proof]).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        whoami(&http, &off_url, &format!("Bearer {banner}"), &[])
            .await
            .status(),
        200
    );
    // With DPoP off, /token ignores the DPoP header and dpop_jkt: tokens are bearer tokens.
    let (client_id, code) = code_for(&http, &off, &client.jkt()).await;
    let issuer = off.issuer();
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
    let tmp = TempDir::new("dpop", "nonce");
    let secret = tmp.path().join("nonce-secret");
    std::fs::write(
        &secret,
        "a shared nonce secret of well over thirty-two bytes\n",
    )
    .unwrap();
    let dev = start(
        &tmp,
        &[
            "--dpop",
            "allowed",
            "--dpop-nonce",
            "--dpop-nonce-secret-file",
            secret.to_str().unwrap(),
        ],
    )
    .await;
    let url = dev.mcp_url();
    let http = no_redirects();
    let issuer = dev.issuer();
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
        &url,
        &auth,
        &[&client.proof("POST", &url, Some(&access))],
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
    let proof = client.proof_with_nonce("POST", &url, Some(&access), Some(&nonce));
    let res = whoami(&http, &url, &auth, &[&proof]).await;
    assert_eq!(res.status(), 200);
    // The nonce is not single use, but the proof is.
    let res = whoami(&http, &url, &auth, &[&proof]).await;
    assert_eq!(res.status(), 401);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("DPoP error=\"invalid_dpop_proof\"")
    );
    let again = client.proof_with_nonce("POST", &url, Some(&access), Some(&nonce));
    assert_eq!(whoami(&http, &url, &auth, &[&again]).await.status(), 200);
}

#[test]
fn dpop_nonce_needs_dpop_on_and_a_long_enough_secret() {
    let tmp = TempDir::new("dpop", "nonce-bad");
    let dir = tmp.path();
    let run = |args: &[&str]| dev_refused(&tmp, args);
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
}

#[test]
fn a_bad_dpop_mode_lists_the_modes() {
    let err = refused(&["dev", "--dpop", "maybe"]);
    for mode in ["off", "allowed", "required"] {
        assert!(err.contains(mode), "{err}");
    }
}

#[tokio::test]
async fn mcp_oauth_token_mints_a_bound_token_that_needs_its_key() {
    let tmp = TempDir::new("dpop", "token");
    let dev = start(&tmp, &["--dpop", "allowed"]).await;
    let url = dev.mcp_url();
    let data = tmp.data();
    let data = data.to_str().unwrap();
    let http = no_redirects();
    let client = Client::new();
    let (ok, stdout, stderr) = run_to_end(
        &[
            "token",
            "--json",
            "--dpop-jkt",
            &client.jkt(),
            "--data-dir",
            data,
        ],
        &[],
    );
    assert!(ok, "{stderr}");
    let minted: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(minted["token_type"], "DPoP");
    assert_eq!(minted["claims"]["cnf"]["jkt"], client.jkt());
    let access = minted["access_token"].as_str().unwrap();
    let proof = client.proof("POST", &url, Some(access));
    let res = whoami(&http, &url, &format!("DPoP {access}"), &[&proof]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        whoami(&http, &url, &format!("Bearer {access}"), &[])
            .await
            .status(),
        401
    );

    // A value that is not a thumbprint is refused before anything is minted.
    let (ok, stdout, stderr) = run_to_end(
        &[
            "token",
            "--dpop-jkt",
            "not-a-thumbprint",
            "--data-dir",
            data,
        ],
        &[],
    );
    assert!(!ok);
    assert!(stdout.is_empty());
    assert!(stderr.contains("RFC 7638"));
}
