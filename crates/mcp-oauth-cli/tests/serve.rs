//! `mcp-oauth serve` as a user runs it: the binary in front of a (mock) issuer.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod support;

use std::path::Path;

use mcp_oauth::testing::{MockIdp, TestKey};
use serde_json::{Value, json};
use support::mcp::McpRequest as _;
use support::process::{Served, TempDir, free_port, refused, run_async, serve};

const PRM: &str = "/.well-known/oauth-protected-resource/mcp";

#[tokio::test]
async fn serve_protects_the_demo_server() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let tmp = TempDir::new("serve", "demo");
    let child = serve(
        &tmp,
        "serve",
        &["--issuer", idp.issuer(), "--scopes", "mcp:read"],
    )
    .await;
    let (base, mcp_url) = (child.issuer(), child.mcp_url());
    let http = reqwest::Client::new();

    let res = http.post(&mcp_url).send().await.expect("post");
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()["www-authenticate"],
        format!(r#"Bearer resource_metadata="{base}/.well-known/oauth-protected-resource/mcp", scope="mcp:read""#).as_str()
    );

    let token = idp
        .token()
        .sub("dana")
        .aud(&mcp_url)
        .scope("mcp:read")
        .sign();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}});
    let res = http
        .post(&mcp_url)
        .bearer_auth(&token)
        .mcp(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 200);
    let reply: Value = res.json().await.expect("json");
    assert_eq!(reply["result"]["structuredContent"]["user"]["id"], "dana");
    drop(child);
    idp.shutdown().await;
}

#[test]
fn missing_issuer_is_a_clear_error() {
    let stderr = refused(&["serve"]);
    assert!(stderr.contains("--issuer"), "{stderr}");
}

/// Runs `mcp-oauth serve ARGS` in `cwd` to its end, which must be a failure: its stderr.
async fn serve_fails(args: &[&str], cwd: Option<&Path>) -> String {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    let run = run_async(&all, &[], cwd).await;
    assert_ne!(run.code, 0, "mcp-oauth serve should have failed");
    run.stderr
}

async fn whoami(http: &reqwest::Client, mcp_url: &str, token: &str) -> reqwest::Response {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}});
    http.post(mcp_url)
        .bearer_auth(token)
        .mcp(&body)
        .send()
        .await
        .expect("post")
}

#[tokio::test]
async fn without_scopes_the_issuers_resource_scopes_are_advertised() {
    // The mock issuer lists openid, mcp:read and mcp:write; the demo's admin_action needs
    // admin, which it does not list.
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let tmp = TempDir::new("serve", "scopes");
    let child = serve(&tmp, "serve", &["--issuer", idp.issuer()]).await;
    let (base, mcp_url) = (child.issuer(), child.mcp_url());
    let http = reqwest::Client::new();

    let doc = child.get_json(PRM).await;
    assert_eq!(doc["scopes_supported"], json!(["mcp:read", "mcp:write"]));
    let res = http.post(&mcp_url).send().await.expect("post");
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()["www-authenticate"],
        format!(r#"Bearer resource_metadata="{base}/.well-known/oauth-protected-resource/mcp", scope="mcp:read mcp:write""#).as_str()
    );
    let stderr = child.stop();
    assert!(
        stderr.contains(r#"requires the scope "admin""#) && stderr.contains("OIDC_SCOPES"),
        "{stderr}"
    );
    idp.shutdown().await;
}

#[tokio::test]
async fn without_scopes_or_issuer_metadata_the_error_says_to_set_oidc_scopes() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    idp.set_metadata_status(Some(404));
    let mcp_url = format!("http://127.0.0.1:{}/mcp", free_port());
    let stderr = serve_fails(&["--issuer", idp.issuer(), "--mcp-url", &mcp_url], None).await;
    assert!(
        stderr.contains("cannot read the issuer's metadata to choose the scopes")
            && stderr.contains("set OIDC_SCOPES"),
        "{stderr}"
    );
    idp.shutdown().await;
}

#[tokio::test]
async fn a_public_listener_without_a_public_url_is_refused() {
    // Refused before anything is bound or fetched: the issuer is never asked.
    let listen = format!("0.0.0.0:{}", free_port());
    let stderr = serve_fails(
        &[
            "--issuer",
            "http://127.0.0.1:9/",
            "--scopes",
            "mcp:read",
            "--listen",
            &listen,
        ],
        None,
    )
    .await;
    assert!(
        stderr.contains(&format!(
            "no public URL: --listen {listen} is not a loopback address"
        )) && stderr.contains("set --mcp-url (MCP_URL)"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_listen_address_is_apart_from_the_public_url() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let public = "https://mcp.example.com/mcp";
    let tmp = TempDir::new("serve", "listen");
    let child = Served::start_quiet(
        &tmp,
        "serve",
        &[
            "serve",
            "--issuer",
            idp.issuer(),
            "--mcp-url",
            public,
            "--listen",
            &listen,
            "--scopes",
            "mcp:read",
        ],
        None,
        &format!("http://{listen}"),
        public,
    )
    .await;
    let http = reqwest::Client::new();
    let doc = child.get_json(PRM).await;
    assert_eq!(doc["resource"], public);
    let token = idp.token().aud(public).scope("mcp:read").sign();
    let res = whoami(&http, &format!("http://{listen}/mcp"), &token).await;
    assert_eq!(res.status(), 200);
    drop(child);
    idp.shutdown().await;
}

#[tokio::test]
async fn a_static_public_key_verifies_without_discovery() {
    // The issuer is never fetched: nothing listens there.
    let issuer = format!("http://127.0.0.1:{}", free_port());
    let key = TestKey::es256();
    let tmp = TempDir::new("serve", "public-key");
    let dir = tmp.path();
    let pem = dir.join("key.pem");
    std::fs::write(&pem, key.public_key_pem().expect("pem")).expect("write");
    let jwks = dir.join("jwks.json");
    std::fs::write(
        &jwks,
        serde_json::to_string(&TestKey::jwks(&[&key])).expect("json"),
    )
    .expect("write");
    let jwk = dir.join("jwk.json");
    std::fs::write(
        &jwk,
        serde_json::to_string(&key.public_jwk().expect("jwk")).expect("json"),
    )
    .expect("write");

    for (i, file) in [&pem, &jwks, &jwk].into_iter().enumerate() {
        let child = serve(
            &tmp,
            &format!("serve-{i}"),
            &[
                "--issuer",
                &issuer,
                "--scopes",
                "mcp:read",
                "--public-key",
                file.to_str().expect("utf-8 path"),
            ],
        )
        .await;
        let mcp_url = child.mcp_url();
        let http = reqwest::Client::new();
        let token = key
            .token()
            .iss(&issuer)
            .sub("erin")
            .aud(&mcp_url)
            .scope("mcp:read")
            .exp_in(300)
            .sign();
        let res = whoami(&http, &mcp_url, &token).await;
        assert_eq!(res.status(), 200, "{}", file.display());
        let reply: Value = res.json().await.expect("json");
        assert_eq!(reply["result"]["structuredContent"]["user"]["id"], "erin");

        let other = TestKey::es256()
            .token()
            .iss(&issuer)
            .aud(&mcp_url)
            .scope("mcp:read")
            .exp_in(300)
            .sign();
        let res = whoami(&http, &mcp_url, &other).await;
        assert_eq!(res.status(), 401, "{}", file.display());
        drop(child);
    }

    let private = dir.join("private.pem");
    std::fs::write(&private, key.key().to_pkcs8_pem().expect("pem")).expect("write");
    let stderr = serve_fails(
        &[
            "--issuer",
            &issuer,
            "--scopes",
            "mcp:read",
            "--public-key",
            private.to_str().expect("utf-8 path"),
        ],
        None,
    )
    .await;
    assert!(
        stderr.contains("a private key does not belong here"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_dotenv_file_in_the_current_directory_is_read() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let port = free_port();
    let mcp_url = format!("http://127.0.0.1:{port}/mcp");
    let tmp = TempDir::new("serve", "dotenv");
    let dir = tmp.path();
    std::fs::write(
        dir.join(".env"),
        format!(
            "# what mcp-use users keep in .env\nOIDC_ISSUER={}\nMCP_URL={mcp_url}\nexport OIDC_SCOPES=\"mcp:read mcp:write\"\n",
            idp.issuer()
        ),
    )
    .expect("write");
    let child = Served::start_quiet(
        &tmp,
        "serve",
        &["serve"],
        Some(dir),
        &format!("http://127.0.0.1:{port}"),
        &mcp_url,
    )
    .await;
    let doc = child.get_json(PRM).await;
    assert_eq!(doc["resource"], mcp_url.as_str());
    assert_eq!(doc["authorization_servers"], json!([idp.issuer()]));
    assert_eq!(doc["scopes_supported"], json!(["mcp:read", "mcp:write"]));
    drop(child);

    // A malformed line stops the command, named by its number and variable, not its value.
    std::fs::write(
        dir.join(".env"),
        format!(
            "OIDC_ISSUER={}\nOIDC_SCOPES=mcp:read mcp:write\n",
            idp.issuer()
        ),
    )
    .expect("write");
    let stderr = serve_fails(&[], Some(dir)).await;
    assert!(
        stderr.contains(".env: line 2 (setting OIDC_SCOPES) is not NAME=value"),
        "{stderr}"
    );
    assert!(!stderr.contains("mcp:write"), "{stderr}");
    idp.shutdown().await;
}

#[tokio::test]
async fn repeated_issuers_are_each_trusted_with_their_own_keys() {
    let a = MockIdp::start(TestKey::es256()).await.expect("idp a");
    let b = MockIdp::start(TestKey::rs256()).await.expect("idp b");
    let tmp = TempDir::new("serve", "issuers");
    let child = serve(
        &tmp,
        "serve",
        &[
            "--issuer",
            b.issuer(),
            "--issuer",
            a.issuer(),
            "--scopes",
            "mcp:read",
        ],
    )
    .await;
    let mcp_url = child.mcp_url();
    let http = reqwest::Client::new();
    let doc = child.get_json(PRM).await;
    assert_eq!(
        doc["authorization_servers"],
        json!([b.issuer(), a.issuer()])
    );
    for (idp, sub) in [(&a, "ann"), (&b, "bob")] {
        let token = idp.token().sub(sub).aud(&mcp_url).scope("mcp:read").sign();
        let res = whoami(&http, &mcp_url, &token).await;
        assert_eq!(res.status(), 200, "{sub}");
        let reply: Value = res.json().await.expect("json");
        assert_eq!(reply["result"]["structuredContent"]["user"]["id"], sub);
    }
    // A's key claiming B, and an issuer nobody configured: refused, nothing fetched for it.
    let hits = a.jwks_hits() + b.jwks_hits();
    for token in [
        a.key().token().iss(b.issuer()).aud(&mcp_url).sign(),
        a.key()
            .token()
            .iss("http://127.0.0.1:1/evil")
            .aud(&mcp_url)
            .sign(),
    ] {
        let res = whoami(&http, &mcp_url, &token).await;
        assert_eq!(res.status(), 401);
        let challenge = res.headers()["www-authenticate"].to_str().expect("ascii");
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{challenge}"
        );
    }
    assert!(
        a.jwks_hits() + b.jwks_hits() <= hits + 1,
        "at most B's refresh for an unknown kid"
    );
    drop(child);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_public_key_with_several_issuers_is_refused() {
    let stderr = serve_fails(
        &[
            "--issuer",
            "http://127.0.0.1:1",
            "--issuer",
            "http://127.0.0.1:2",
            "--public-key",
            "/nonexistent.pem",
            "--scopes",
            "mcp:read",
        ],
        None,
    )
    .await;
    assert!(
        stderr.contains("--public-key gives the keys of one issuer"),
        "{stderr}"
    );
}
