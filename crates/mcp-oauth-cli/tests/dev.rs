//! `mcp-oauth dev` and `mcp-oauth token` as a user runs them: the banner's token works, the
//! whole OAuth flow works through the login page, tokens survive a restart, Ctrl-C stops it.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod support;

use std::collections::HashMap;

use serde_json::{Value, json};
use support::process::{TempDir, dev, dev_on_port, refused, run_to_end};

async fn call(http: &reqwest::Client, url: &str, token: &str, tool: &str) -> (u16, Value) {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {}}});
    support::mcp::post_bearer(http, url, token, &body).await
}

fn hidden_fields(html: &str) -> HashMap<String, String> {
    mcp_oauth::testing::hidden_form_fields(html)
        .into_iter()
        .collect()
}

#[tokio::test]
async fn the_printed_token_works_and_step_up_is_403() {
    let tmp = TempDir::new("dev", "banner");
    let dev = dev(&tmp, "dev", &[]).await;
    let url = dev.mcp_url();
    let http = reqwest::Client::new();
    let token = dev.info["token"].as_str().expect("token");
    let (status, body) = call(&http, &url, token, "whoami").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["structuredContent"]["user"]["id"], "dev");
    let (status, _) = call(&http, &url, token, "admin_action").await;
    assert_eq!(status, 403);
    // `mcp-oauth token` mints with the same key.
    let data = tmp.data();
    let (ok, stdout, stderr) = run_to_end(
        &[
            "token",
            "--sub",
            "root",
            "--scope",
            "mcp:read admin",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "{stderr}");
    let minted = stdout.trim().to_owned();
    let (status, body) = call(&http, &url, &minted, "admin_action").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["result"]["content"][0]["text"]
            .as_str()
            .expect("text")
            .contains("root")
    );
}

#[tokio::test]
async fn the_whole_flow_through_the_login_page() {
    let tmp = TempDir::new("dev", "flow");
    let dev = dev(&tmp, "dev", &["--user", "alice:secret"]).await;
    let mcp_url = dev.mcp_url();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let issuer = dev.issuer();
    let reg: Value = http
        .post(format!("{issuer}/register"))
        .json(&json!({"redirect_uris": ["http://127.0.0.1/callback"], "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"], "client_name": "cli test"}))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("json");
    let client_id = reg["client_id"].as_str().expect("client_id");
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let redirect = "http://127.0.0.1:41234/callback";
    let mut authorize = url::Url::parse(&format!("{issuer}/authorize")).expect("url");
    authorize.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect),
        ("state", "s"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
        ("resource", &mcp_url),
        ("scope", "mcp:read"),
    ]);
    let page = http.get(authorize.as_str()).send().await.expect("page");
    let cookie = page.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("cookie")
        .to_owned();
    let fields = hidden_fields(&page.text().await.expect("html"));
    let mut form: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    form.extend([
        ("username", "alice"),
        ("password", "secret"),
        ("decision", "approve"),
    ]);
    let res = http
        .post(format!("{issuer}/authorize"))
        .header("cookie", cookie)
        .form(&form)
        .send()
        .await
        .expect("submit");
    assert_eq!(res.status(), 302);
    let location =
        url::Url::parse(res.headers()["location"].to_str().expect("ascii")).expect("url");
    let params: HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(params["iss"], issuer);
    let tokens: Value = http
        .post(format!("{issuer}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &params["code"]),
            ("client_id", client_id),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
            ("resource", &mcp_url),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let (status, body) = call(
        &http,
        &mcp_url,
        tokens["access_token"].as_str().expect("at"),
        "whoami",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["structuredContent"]["user"]["id"], "alice");
    assert_eq!(
        body["result"]["structuredContent"]["user"]["email"],
        "alice@example.com"
    );
}

#[tokio::test]
async fn tokens_survive_a_restart() {
    let tmp = TempDir::new("dev", "restart");
    let http = reqwest::Client::new();
    let first = dev(&tmp, "first", &[]).await;
    let token = first.info["token"].as_str().expect("token").to_owned();
    let first_url = first.mcp_url();
    let reg: Value = http
        .post(format!("{}/register", first.issuer()))
        .json(&json!({"redirect_uris": ["http://127.0.0.1/callback"], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("json");
    let client_id = reg["client_id"].as_str().expect("client_id").to_owned();
    drop(first);
    // Same folder, same port: the signing key is the same, so the old token still verifies.
    let port = url::Url::parse(&first_url)
        .expect("url")
        .port()
        .expect("port");
    let second = dev_on_port(&tmp, "second", port).await;
    let (status, body) = call(&http, &second.mcp_url(), &token, "whoami").await;
    assert_eq!(status, 200, "{body}");
    // The client registered before the restart is still known (SQLite store).
    let mut authorize = url::Url::parse(&format!("{}/authorize", second.issuer())).expect("url");
    authorize.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", "http://127.0.0.1:5000/callback"),
        (
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        ),
        ("code_challenge_method", "S256"),
    ]);
    let page = http
        .get(authorize.as_str())
        .send()
        .await
        .expect("authorize");
    assert_eq!(
        page.status(),
        200,
        "{}",
        page.text().await.unwrap_or_default()
    );
}

#[cfg(unix)]
#[tokio::test]
async fn ctrl_c_stops_it_cleanly() {
    let tmp = TempDir::new("dev", "sigint");
    let mut dev = dev(&tmp, "dev", &[]).await;
    let status = std::process::Command::new("kill")
        .args(["-INT", &dev.child().id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = dev.wait_exit();
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn bad_flags_explain_themselves() {
    let tmp = TempDir::new("dev", "flags");
    let data = tmp.data();
    let stderr = refused(&[
        "dev",
        "--port",
        "0",
        "--user",
        "nopassword",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(stderr.contains("--user takes NAME:PASSWORD"));
    let stderr = refused(&["token", "--data-dir", "/nonexistent/mcp-oauth"]);
    assert!(stderr.contains("mcp-oauth dev"), "{stderr}");
}

/// Security review 2, F4: the CLI listens on the network only behind an https public URL.
#[test]
fn a_non_loopback_listen_address_needs_an_https_public_url() {
    let tmp = TempDir::new("dev", "listen");
    let dir = tmp.data();
    let data = dir.to_str().expect("path");
    for extra in [
        &[][..],
        &["--public-url", "http://mcp.example.com"][..],
        &["--public-url", "not a url"][..],
    ] {
        let mut args = vec!["dev", "--listen", "0.0.0.0:0", "--data-dir", data];
        args.extend_from_slice(extra);
        let stderr = refused(&args);
        assert!(
            stderr.contains("not a loopback address") && stderr.contains("--public-url https://"),
            "{extra:?}: {stderr}"
        );
    }
    let stderr = refused(&[
        "proxy",
        "--provider",
        "github",
        "--client-id",
        "ghapp",
        "--client-secret",
        "s3cret",
        "--listen",
        "[::]:0",
        "--data-dir",
        data,
    ]);
    assert!(stderr.contains("--public-url https://"), "{stderr}");
    assert!(
        !dir.exists(),
        "nothing is written before the flags are checked"
    );
}

#[test]
fn a_bad_listen_address_or_trusted_proxy_says_what_to_write() {
    let tmp = TempDir::new("dev", "cidr");
    let dir = tmp.data();
    let data = dir.to_str().expect("path");
    for (flag, value, says) in [
        ("--trusted-proxy", "10.0.0.0/33", "0 to 32"),
        ("--trusted-proxy", "10.0.0.1/8", "the network is 10.0.0.0/8"),
        ("--trusted-proxy", "proxy.internal", "not an IP address"),
        ("--listen", "localhost:8080", "IP:PORT"),
    ] {
        let stderr = refused(&["dev", flag, value, "--data-dir", data]);
        assert!(stderr.contains(says), "{flag} {value}: {stderr}");
    }
}

#[tokio::test]
async fn listen_and_trusted_proxy_serve_on_the_given_address() {
    let tmp = TempDir::new("dev", "listen-ok");
    let dev = dev(
        &tmp,
        "dev",
        &["--listen", "127.0.0.1:0", "--trusted-proxy", "127.0.0.1"],
    )
    .await;
    let issuer = dev.issuer();
    assert!(issuer.starts_with("http://127.0.0.1:"), "{issuer}");
}
