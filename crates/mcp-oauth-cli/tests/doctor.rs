//! `mcp-oauth doctor` as a user runs it: the binary against a mock issuer and, for the MCP
//! checks, against `mcp-oauth serve` in front of it.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mcp_oauth::testing::{JwksMode, MockIdp, TestKey};
use serde_json::Value;

/// What a run of `mcp-oauth doctor` printed and returned.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The `--json` document; every failure in it must say what to do.
    fn json(&self) -> Value {
        let doc: Value = serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", self.stdout));
        for c in doc["checks"].as_array().expect("checks") {
            if c["status"] == "fail" {
                assert!(c["hint"].as_str().is_some_and(|h| !h.is_empty()), "{c:#}");
            }
        }
        doc
    }
}

/// Runs the binary off the runtime's threads, so the mock issuer keeps answering meanwhile.
async fn doctor(args: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
            .arg("doctor")
            .args(&args)
            .env_remove("OIDC_ISSUER")
            .env_remove("MCP_URL")
            .env_remove("OIDC_AUDIENCE")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run mcp-oauth doctor")
    })
    .await
    .expect("join");
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

/// The check with this id, from a `--json` document.
fn check<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {doc:#}"))
}

fn status<'a>(doc: &'a Value, id: &str) -> &'a str {
    check(doc, id)["status"].as_str().expect("status")
}

/// Every check in the document has one of these statuses.
fn assert_no_failure(doc: &Value) {
    for c in doc["checks"].as_array().expect("checks") {
        assert_ne!(c["status"], "fail", "{c:#}");
    }
    assert_eq!(doc["ok"], true);
}

/// `mcp-oauth serve` in front of an issuer, killed on drop.
struct Server {
    child: Child,
    mcp_url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    async fn start(issuer: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mcp_url = format!("http://127.0.0.1:{port}/mcp");
        let child = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
            .args(["serve", "--issuer", issuer, "--mcp-url", &mcp_url])
            .args(["--scopes", "mcp:read"])
            .env_remove("OIDC_AUDIENCE")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mcp-oauth serve");
        let mut server = Self { child, mcp_url };
        let http = reqwest::Client::new();
        let ready = format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(res) = http.get(&ready).send().await
                && res.status().is_success()
            {
                return server;
            }
            assert!(
                server.child.try_wait().expect("wait").is_none(),
                "mcp-oauth serve exited early"
            );
            assert!(
                Instant::now() < deadline,
                "mcp-oauth serve did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn healthy_issuer_and_valid_token_pass() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let token = idp
        .token()
        .aud("https://api.example.com")
        .scope("mcp:read")
        .sign();
    let args = [
        "--issuer",
        idp.issuer(),
        "--audience",
        "https://api.example.com",
        "--scope",
        "mcp:read",
        "--token",
        &token,
    ];

    let text = doctor(&args).await;
    assert_eq!(text.code, 0, "{text:#?}");
    for phrase in [
        "✓ Metadata found at",
        "✓ PKCE with S256 is advertised",
        "1 usable key",
        "✓ The signature verifies",
        "✓ The library accepts this token",
        "No check failed",
    ] {
        assert!(
            text.stdout.contains(phrase),
            "{phrase:?} in\n{}",
            text.stdout
        );
    }
    assert!(
        !text.stdout.contains(&token),
        "the token must never be printed"
    );

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let run = doctor(&json_args).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let doc = run.json();
    assert_no_failure(&doc);
    assert_eq!(doc["issuer"], idp.issuer());
    for id in [
        "as.metadata",
        "as.issuer",
        "as.pkce",
        "as.response_types",
        "as.endpoints",
        "as.jwks_uri",
        "jwks.fetch",
        "jwks.keys",
        "token.format",
        "token.alg",
        "token.kid",
        "token.signature",
        "token.iss",
        "token.aud",
        "token.exp",
        "token.iat",
        "token.scopes",
        "token.verdict",
    ] {
        assert_eq!(status(&doc, id), "pass", "{id}: {doc:#}");
    }
    assert!(
        !run.stdout.contains(&token),
        "the token must never be printed"
    );

    // A scope the token lacks fails the run, while the library still authenticates it: the
    // scope policy answers 403 later, which is no disagreement.
    let mut needs_admin = args.to_vec();
    needs_admin.extend(["--scope", "admin", "--json"]);
    let run = doctor(&needs_admin).await;
    assert_eq!(run.code, 1, "{run:#?}");
    let doc = run.json();
    assert_eq!(status(&doc, "token.scopes"), "fail");
    let message = check(&doc, "token.scopes")["message"].as_str().unwrap();
    assert!(message.contains("Missing scope: admin"), "{message}");
    assert_eq!(status(&doc, "token.verdict"), "pass");
    assert!(
        !doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == "token.consistency"),
        "{doc:#}"
    );
    idp.shutdown().await;
}

#[tokio::test]
async fn issuer_with_a_trailing_slash_in_the_metadata_fails_and_says_why() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let advertised = format!("{}/", idp.issuer());
    idp.set_metadata_issuer(Some(&advertised));

    let run = doctor(&["--issuer", idp.issuer()]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stdout.contains("Issuer mismatch"), "{}", run.stdout);
    assert!(run.stdout.contains("trailing slash"), "{}", run.stdout);
    assert!(run.stdout.contains("Python SDK"), "{}", run.stdout);

    let doc = doctor(&["--issuer", idp.issuer(), "--json"]).await.json();
    assert_eq!(doc["ok"], false);
    assert_eq!(status(&doc, "as.issuer"), "fail");
    let hint = check(&doc, "as.issuer")["hint"].as_str().expect("hint");
    assert!(hint.contains(&format!("\"{advertised}\"")), "{hint}");
    idp.shutdown().await;
}

#[tokio::test]
async fn audience_mismatch_and_tolerated_trailing_slash() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let server = Server::start(idp.issuer()).await;
    let mcp = server.mcp_url.as_str();

    let other = idp.token().aud("https://other.example.com/mcp").sign();
    let run = doctor(&["--mcp-url", mcp, "--token", &other]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stdout.contains("Audience mismatch"), "{}", run.stdout);
    let doc = doctor(&["--mcp-url", mcp, "--token", &other, "--json"])
        .await
        .json();
    assert_eq!(status(&doc, "token.aud"), "fail");
    let hint = check(&doc, "token.aud")["hint"].as_str().expect("hint");
    assert!(hint.contains(&format!("resource={mcp}")), "{hint}");
    assert!(
        hint.contains("--audience https://other.example.com/mcp"),
        "{hint}"
    );
    assert_eq!(status(&doc, "token.verdict"), "fail");
    let verdict = check(&doc, "token.verdict")["message"].as_str().unwrap();
    assert!(verdict.contains("audience"), "{verdict}");

    // The same token passes once its audience is accepted as an extra one.
    let doc = doctor(&[
        "--mcp-url",
        mcp,
        "--token",
        &other,
        "--audience",
        "https://other.example.com/mcp",
        "--json",
    ])
    .await
    .json();
    assert_eq!(status(&doc, "token.aud"), "pass");
    assert_eq!(status(&doc, "token.verdict"), "pass");

    let slash = idp.token().aud(&format!("{mcp}/")).sign();
    let run = doctor(&["--mcp-url", mcp, "--token", &slash, "--json"]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let doc = run.json();
    assert_no_failure(&doc);
    assert_eq!(status(&doc, "token.aud"), "pass");
    let message = check(&doc, "token.aud")["message"].as_str().unwrap();
    assert!(message.contains("trailing slash"), "{message}");
    assert!(message.contains("tolerates"), "{message}");
    drop(server);
    idp.shutdown().await;
}

#[tokio::test]
async fn expired_token_fails_with_how_long_ago() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let token = idp.token().exp_in(-7200).sign();
    let run = doctor(&["--issuer", idp.issuer(), "--token", &token, "--json"]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    let doc = run.json();
    assert_eq!(status(&doc, "token.exp"), "fail");
    let message = check(&doc, "token.exp")["message"].as_str().unwrap();
    assert!(message.contains("expired 2 h ago"), "{message}");
    assert_eq!(status(&doc, "token.signature"), "pass");
    assert_eq!(status(&doc, "token.verdict"), "fail");
    let verdict = check(&doc, "token.verdict")["message"].as_str().unwrap();
    assert!(verdict.contains("token expired"), "{verdict}");
    idp.shutdown().await;
}

#[tokio::test]
async fn opaque_token_is_explained() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let run = doctor(&["--issuer", idp.issuer(), "--token", "abc123"]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stdout.contains("opaque token, not a JWT"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("Auth0"), "{}", run.stdout);
    assert!(run.stdout.contains("introspection"), "{}", run.stdout);

    let doc = doctor(&["--issuer", idp.issuer(), "--token", "abc123", "--json"])
        .await
        .json();
    assert_eq!(status(&doc, "token.format"), "fail");
    // The MockIdp advertises an introspection endpoint: the hint names it.
    let hint = check(&doc, "token.format")["hint"].as_str().unwrap();
    assert!(hint.contains(&idp.introspection_url()), "{hint}");
    // The library's verdict agrees.
    assert_eq!(status(&doc, "token.verdict"), "fail");
    idp.shutdown().await;
}

#[tokio::test]
async fn unknown_kid_is_explained() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let stranger = TestKey::rs256();
    let token = stranger.token().iss(idp.issuer()).sub("x").sign();
    let doc = doctor(&["--issuer", idp.issuer(), "--token", &token, "--json"])
        .await
        .json();
    assert_eq!(doc["ok"], false);
    assert_eq!(status(&doc, "token.kid"), "fail");
    let message = check(&doc, "token.kid")["message"].as_str().unwrap();
    assert!(message.contains(stranger.kid()), "{message}");
    assert!(message.contains(idp.key().kid()), "{message}");
    assert_eq!(status(&doc, "token.verdict"), "fail");
    idp.shutdown().await;
}

#[tokio::test]
async fn jwks_down_is_a_clear_failure() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    idp.set_jwks_mode(JwksMode::Status(500));
    let token = idp.token().sign();

    let run = doctor(&["--issuer", idp.issuer(), "--token", &token]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stdout.contains(&format!(
            "Could not fetch the key set at {}",
            idp.jwks_url()
        )),
        "{}",
        run.stdout
    );

    let doc = doctor(&["--issuer", idp.issuer(), "--token", &token, "--json"])
        .await
        .json();
    assert_eq!(status(&doc, "jwks.fetch"), "fail");
    let message = check(&doc, "jwks.fetch")["message"].as_str().unwrap();
    assert!(message.contains("status 500"), "{message}");
    let hint = check(&doc, "jwks.fetch")["hint"].as_str().unwrap();
    assert!(hint.contains("503"), "{hint}");
    assert_eq!(status(&doc, "token.signature"), "info");
    let verdict = check(&doc, "token.verdict");
    assert_eq!(verdict["status"], "fail");
    assert!(
        verdict["message"].as_str().unwrap().contains("503"),
        "{verdict}"
    );
    idp.shutdown().await;
}

#[tokio::test]
async fn mcp_url_of_a_protected_server_gives_the_issuer() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let server = Server::start(idp.issuer()).await;
    let mcp = server.mcp_url.as_str();
    let token = idp.token().aud(mcp).scope("mcp:read").sign();

    let run = doctor(&["--mcp-url", mcp, "--token", &token, "--scope", "mcp:read"]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(
        run.stdout.contains("gets 401 with a Bearer challenge"),
        "{}",
        run.stdout
    );

    let doc = doctor(&["--mcp-url", mcp, "--token", &token, "--json"])
        .await
        .json();
    assert_no_failure(&doc);
    assert_eq!(
        doc["issuer"],
        idp.issuer(),
        "issuer taken from the metadata"
    );
    assert_eq!(doc["mcp_url"], mcp);
    for id in [
        "mcp.challenge",
        "mcp.resource_metadata",
        "mcp.resource",
        "mcp.authorization_servers",
        "as.issuer",
        "token.aud",
        "token.verdict",
    ] {
        assert_eq!(status(&doc, id), "pass", "{id}: {doc:#}");
    }
    let challenge = check(&doc, "mcp.challenge")["message"].as_str().unwrap();
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"{}\"",
            mcp.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")
        )),
        "{challenge}"
    );
    let found = check(&doc, "mcp.resource_metadata")["message"]
        .as_str()
        .unwrap();
    assert!(
        found.contains("the challenge's resource_metadata"),
        "{found}"
    );

    // An --issuer that differs from the advertised one by a slash is caught at the MCP
    // server's metadata too.
    let slashed = format!("{}/", idp.issuer());
    let doc = doctor(&["--mcp-url", mcp, "--issuer", &slashed, "--json"])
        .await
        .json();
    assert_eq!(status(&doc, "mcp.authorization_servers"), "fail");
    assert!(
        check(&doc, "mcp.authorization_servers")["message"]
            .as_str()
            .unwrap()
            .contains("trailing slash")
    );
    drop(server);
    idp.shutdown().await;
}

#[tokio::test]
async fn unprotected_or_missing_endpoint_fails() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    // The mock issuer has no MCP endpoint: a POST to /mcp is 404, and there is no metadata.
    let mcp = format!("http://{}/mcp", idp.addr());
    let doc = doctor(&["--mcp-url", &mcp, "--issuer", idp.issuer(), "--json"])
        .await
        .json();
    assert_eq!(doc["ok"], false);
    assert_eq!(status(&doc, "mcp.challenge"), "fail");
    assert!(
        check(&doc, "mcp.challenge")["message"]
            .as_str()
            .unwrap()
            .contains("404")
    );
    assert_eq!(status(&doc, "mcp.resource_metadata"), "fail");
    // The issuer checks still run.
    assert_eq!(status(&doc, "as.pkce"), "pass");
    idp.shutdown().await;
}

#[tokio::test]
async fn issuer_with_a_path_is_discovered_in_the_mcp_order() {
    let idp = MockIdp::start_with_path(TestKey::es256(), "/realms/test")
        .await
        .expect("idp");
    let doc = doctor(&["--issuer", idp.issuer(), "--json"]).await.json();
    assert_no_failure(&doc);
    let found = check(&doc, "as.metadata")["message"].as_str().unwrap();
    assert!(
        found.contains("/.well-known/oauth-authorization-server/realms/test, the first of the 3"),
        "{found}"
    );
    idp.shutdown().await;
}

#[tokio::test]
async fn usage_errors_exit_with_2() {
    let run = doctor(&[]).await;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stderr.contains("--issuer"), "{}", run.stderr);
    assert!(run.stdout.is_empty());

    let run = doctor(&["--issuer", "auth.example.com"]).await;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stderr.contains("not an absolute URL"), "{}", run.stderr);

    let run = doctor(&[
        "--issuer",
        "https://auth.example.com",
        "--token-file",
        "/nonexistent/token",
    ])
    .await;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(
        run.stderr.contains("cannot read --token-file"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn an_mcp_server_that_advertises_no_scope_is_warned_about() {
    use mcp_oauth::OAuth;
    use mcp_oauth::server::McpServer;
    use mcp_oauth::verify::JwtVerifier;

    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mcp_url = format!("http://{}/mcp", listener.local_addr().expect("addr"));
    // No scopes_supported and no required scope: nothing tells clients what to ask for.
    let oauth = OAuth::builder()
        .resource(mcp_url.clone())
        .authorization_server(idp.issuer())
        .verifier(
            JwtVerifier::builder()
                .issuer(idp.issuer())
                .discover_jwks()
                .build()
                .expect("verifier"),
        )
        .build()
        .expect("oauth");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(McpServer::new("no-scopes", "1").oauth(oauth).serve(
        listener,
        async move {
            let _ = stopped.await;
        },
    ));

    let doc = doctor(&["--mcp-url", &mcp_url, "--json"]).await.json();
    assert_eq!(status(&doc, "mcp.scopes"), "warn", "{doc:#}");
    let scopes = check(&doc, "mcp.scopes");
    let message = scopes["message"].as_str().unwrap();
    for client in [
        "TypeScript SDK clients (v1 and v2)",
        "MCP Inspector",
        "oidc-provider",
    ] {
        assert!(message.contains(client), "{message}");
    }
    assert!(
        scopes["hint"].as_str().unwrap().contains("OIDC_SCOPES"),
        "{scopes:#}"
    );
    assert_eq!(doc["ok"], true, "a warning, not a failure");

    // `mcp-oauth serve` advertises scopes: no warning.
    let server = Server::start(idp.issuer()).await;
    let doc = doctor(&["--mcp-url", &server.mcp_url, "--json"])
        .await
        .json();
    assert_eq!(status(&doc, "mcp.scopes"), "info", "{doc:#}");
    drop(server);

    let _ = stop.send(());
    served.await.expect("join").expect("serve");
    idp.shutdown().await;
}
