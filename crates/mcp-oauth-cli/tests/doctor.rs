//! `mcp-oauth doctor` as a user runs it: the binary against a mock issuer and, for the MCP
//! checks, against `mcp-oauth serve` in front of it.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod support;

use mcp_oauth::testing::{JwksMode, MockIdp, TestKey};
use serde_json::Value;
use support::process::{Run, Served, TempDir, serve};

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
    doctor_env(args, &[]).await
}

/// [`doctor`] with these environment variables set (none of the caller's `MCP_*` provider
/// variables or `OIDC_*` settings are inherited).
async fn doctor_env(args: &[&str], vars: &[(&str, &str)]) -> Run {
    let mut all = vec!["doctor"];
    all.extend_from_slice(args);
    let mut env: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    env.push(("NO_COLOR".to_owned(), "1".to_owned()));
    support::process::run_async(&all, &env, None).await
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

/// `mcp-oauth serve --issuer <idp> --scopes mcp:read`, ready.
async fn serve_for(tmp: &TempDir, idp: &MockIdp) -> Served {
    serve(
        tmp,
        "serve",
        &["--issuer", idp.issuer(), "--scopes", "mcp:read"],
    )
    .await
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
    let tmp = TempDir::new("doctor", "audience");
    let server = serve_for(&tmp, &idp).await;
    let mcp_url = server.mcp_url();
    let mcp = mcp_url.as_str();

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
    let tmp = TempDir::new("doctor", "protected");
    let server = serve_for(&tmp, &idp).await;
    let mcp_url = server.mcp_url();
    let mcp = mcp_url.as_str();
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
    let tmp = TempDir::new("doctor", "no-scope");
    let server = serve_for(&tmp, &idp).await;
    let doc = doctor(&["--mcp-url", &server.mcp_url(), "--json"])
        .await
        .json();
    assert_eq!(status(&doc, "mcp.scopes"), "info", "{doc:#}");
    drop(server);

    let _ = stop.send(());
    served.await.expect("join").expect("serve");
    idp.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// --provider: the preset pipeline a server built with the preset runs
// ---------------------------------------------------------------------------------------------

/// A server built with a provider preset, in this process on 127.0.0.1: the bearer layer in
/// front of `/mcp`, and the metadata routes. Stopped on drop.
struct PresetServer {
    mcp_url: String,
    oauth: mcp_oauth::OAuth,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PresetServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

impl PresetServer {
    async fn start(preset: impl mcp_oauth::providers::Provider, vars: &[(&str, &str)]) -> Self {
        use axum::routing::post;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mcp_url = format!("http://{}/mcp", listener.local_addr().expect("addr"));
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let lookup = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let oauth = mcp_oauth::OAuth::builder()
            .resource(&mcp_url)
            .provider_with(preset, &lookup)
            .mirror_authorization_server(false)
            .build()
            .expect("oauth");
        let app = axum::Router::new()
            .route("/mcp", post(|| async { "ok" }))
            .layer(oauth.layer())
            .merge(oauth.metadata_router());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            mcp_url,
            oauth,
            stop: Some(stop),
            task,
        }
    }

    /// Why the server's own pipeline refuses `token` (the error its layer logs and attaches
    /// to the 401), or `None` when it accepts it.
    async fn reason(&self, token: &str) -> Option<String> {
        self.oauth
            .authenticator()
            .authenticate(token, self.oauth.resource())
            .await
            .err()
            .map(|err| err.to_string())
    }

    /// The status and the challenge's `error_description` the server answers with `token`.
    async fn answer(&self, token: &str) -> (u16, Option<String>) {
        let res = reqwest::Client::new()
            .post(&self.mcp_url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
            .send()
            .await
            .expect("post");
        let description = res
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once("error_description=\""))
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(description, _)| description.to_owned());
        (res.status().as_u16(), description)
    }
}

/// The doctor's verdict must give the reason the server gave, word for word: the error of
/// its pipeline, and the status and `error_description` of its challenge.
async fn assert_same_reason(doc: &Value, server: &PresetServer, token: &str, expected: &str) {
    let reason = server
        .reason(token)
        .await
        .expect("the server refuses the token");
    assert_eq!(reason, expected);
    let verdict = check(doc, "token.verdict");
    let message = verdict["message"].as_str().expect("message");
    assert!(
        message.contains(&format!("The library refuses this token: {reason}.")),
        "doctor: {message}\nserver: {reason}"
    );
    let server = server.answer(token).await;
    assert_eq!(server.0, 401, "{server:?}");
    let description = server.1.as_deref().expect("the server's error_description");
    let verdict = check(doc, "token.verdict");
    assert_eq!(verdict["status"], "fail", "{doc:#}");
    let message = verdict["message"].as_str().expect("message");
    assert!(
        message.contains(&format!(
            "A client gets 401 with error_description \"{description}\""
        )),
        "doctor: {message}\nserver: {description}"
    );
    assert!(
        !doc["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .any(|c| c["id"] == "token.consistency"),
        "the explanation and the verdict disagree: {doc:#}"
    );
}

#[tokio::test]
async fn a_clerk_session_token_is_refused_by_doctor_as_by_a_clerk_server() {
    use mcp_oauth::providers::Clerk;
    use mcp_oauth::testing::Layout;

    let idp = MockIdp::start_layout(TestKey::rs256(), Layout::new("", "/.well-known/jwks.json"))
        .await
        .expect("idp");
    let origin = idp.origin();
    let vars = [("MCP_USE_OAUTH_CLERK_FRONTEND_API_URL", origin.as_str())];
    let server = PresetServer::start(Clerk::new(), &vars).await;
    // A Clerk session token: the same issuer and key as its OAuth access tokens, typ JWT,
    // a session id, even the MCP URL as audience.
    let session = idp
        .token()
        .typ(Some("JWT"))
        .sub("user_123")
        .aud(&server.mcp_url)
        .claim("sid", "sess_123")
        .claim("azp", "https://example.com")
        .sign();
    let access = idp
        .token()
        .sub("user_123")
        .aud(&server.mcp_url)
        .claim("client_id", "client_2VTWUzvGC5UhdJCNx6xG1D98edc")
        .scope("profile email")
        .sign();

    // Without the preset, doctor has no reason to refuse it: the generic pipeline takes it.
    let generic = doctor(&[
        "--issuer",
        idp.issuer(),
        "--mcp-url",
        &server.mcp_url,
        "--token",
        &session,
        "--json",
    ])
    .await;
    assert_eq!(
        status(&generic.json(), "token.verdict"),
        "pass",
        "{generic:#?}"
    );

    let args = [
        "--provider",
        "clerk",
        "--mcp-url",
        &server.mcp_url,
        "--token",
        &session,
        "--json",
    ];
    let run = doctor_env(&args, &vars).await;
    assert_eq!(run.code, 1, "{run:#?}");
    let doc = run.json();
    assert_eq!(doc["issuer"], idp.issuer(), "the preset gives the issuer");
    assert_eq!(status(&doc, "provider.preset"), "info");
    assert_eq!(status(&doc, "token.typ"), "fail");
    let typ = check(&doc, "token.typ")["message"].as_str().unwrap();
    assert!(
        typ.contains("requires at+jwt") && typ.contains("session token"),
        "{typ}"
    );
    assert_same_reason(&doc, &server, &session, "token type is not at+jwt").await;
    assert!(
        !run.stdout.contains(&session),
        "the token must never be printed"
    );

    // An OAuth access token passes both.
    assert_eq!(server.answer(&access).await.0, 200);
    let args = [
        "--provider",
        "clerk",
        "--mcp-url",
        &server.mcp_url,
        "--token",
        &access,
        "--json",
    ];
    let run = doctor_env(&args, &vars).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let doc = run.json();
    assert_no_failure(&doc);
    for id in [
        "as.jwks_uri",
        "jwks.keys",
        "token.typ",
        "token.iss",
        "token.aud",
        "token.verdict",
    ] {
        assert_eq!(status(&doc, id), "pass", "{id}: {doc:#}");
    }
    let verdict = check(&doc, "token.verdict")["message"].as_str().unwrap();
    assert!(verdict.contains("the clerk preset"), "{verdict}");
    drop(server);
    idp.shutdown().await;
}

#[tokio::test]
async fn keycloak_and_auth0_presets_refuse_what_their_servers_refuse_for_the_same_reason() {
    use mcp_oauth::providers::{Auth0, Keycloak};
    use mcp_oauth::testing::Layout;

    // Keycloak: a refresh token (typ claim "Refresh") is not an access token.
    let idp = MockIdp::start_layout(
        TestKey::rs256(),
        Layout::new("/realms/test", "/realms/test/protocol/openid-connect/certs"),
    )
    .await
    .expect("idp");
    let origin = idp.origin();
    let vars = [
        ("MCP_USE_OAUTH_KEYCLOAK_SERVER_URL", origin.as_str()),
        ("MCP_USE_OAUTH_KEYCLOAK_REALM", "test"),
    ];
    let server = PresetServer::start(Keycloak::new(), &vars).await;
    let refresh = idp
        .token()
        .aud(&server.mcp_url)
        .claim("typ", "Refresh")
        .sign();
    let args = [
        "--provider",
        "keycloak",
        "--token",
        &refresh,
        "--mcp-url",
        &server.mcp_url,
        "--json",
    ];
    let run = doctor_env(&args, &vars).await;
    assert_eq!(run.code, 1, "{run:#?}");
    let doc = run.json();
    assert_eq!(status(&doc, "token.claims"), "fail", "{doc:#}");
    assert_same_reason(&doc, &server, &refresh, "claim typ is invalid").await;
    let bearer = idp
        .token()
        .aud(&server.mcp_url)
        .claim("typ", "Bearer")
        .sign();
    assert_eq!(server.answer(&bearer).await.0, 200);
    let args = [
        "--provider",
        "keycloak",
        "--token",
        &bearer,
        "--mcp-url",
        &server.mcp_url,
        "--json",
    ];
    let doc = doctor_env(&args, &vars).await.json();
    assert_no_failure(&doc);
    assert_eq!(status(&doc, "token.claims"), "pass");
    drop(server);
    idp.shutdown().await;

    // Auth0: the API identifier from MCP_USE_OAUTH_AUTH0_AUDIENCE is accepted without
    // --audience, as the server accepts it; another API's token is refused by both.
    let idp = MockIdp::start_layout(
        TestKey::rs256(),
        Layout::new("", "/.well-known/jwks.json").trailing_slash(),
    )
    .await
    .expect("idp");
    let origin = idp.origin();
    let vars = [
        ("MCP_USE_OAUTH_AUTH0_DOMAIN", origin.as_str()),
        ("MCP_USE_OAUTH_AUTH0_AUDIENCE", "https://api.example.com"),
    ];
    let server = PresetServer::start(Auth0::new(), &vars).await;
    let api = idp
        .token()
        .typ(Some("JWT"))
        .aud("https://api.example.com")
        .sign();
    assert_eq!(server.answer(&api).await.0, 200);
    let args = [
        "--provider",
        "auth0",
        "--token",
        &api,
        "--mcp-url",
        &server.mcp_url,
        "--json",
    ];
    let doc = doctor_env(&args, &vars).await.json();
    assert_no_failure(&doc);
    assert_eq!(
        doc["issuer"],
        idp.issuer(),
        "Auth0's issuer ends with a slash"
    );
    let other = idp
        .token()
        .typ(Some("JWT"))
        .aud("https://other.example.com")
        .sign();
    let args = [
        "--provider",
        "auth0",
        "--token",
        &other,
        "--mcp-url",
        &server.mcp_url,
        "--json",
    ];
    let doc = doctor_env(&args, &vars).await.json();
    assert_eq!(status(&doc, "token.aud"), "fail");
    let expected = server.reason(&other).await.expect("refused");
    assert!(expected.contains("audience"), "{expected}");
    assert_same_reason(&doc, &server, &other, &expected).await;
    drop(server);
    idp.shutdown().await;
}

#[tokio::test]
async fn a_supabase_hs256_token_is_checked_with_the_presets_jwt_secret() {
    use mcp_oauth::providers::Supabase;
    use mcp_oauth::testing::Layout;

    const SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters";
    let idp = MockIdp::start_layout(
        TestKey::es256(),
        Layout::new("/auth/v1", "/auth/v1/.well-known/jwks.json"),
    )
    .await
    .expect("idp");
    let origin = idp.origin();
    let with_secret = [
        ("MCP_USE_OAUTH_SUPABASE_URL", origin.as_str()),
        ("MCP_USE_OAUTH_SUPABASE_JWT_SECRET", SECRET),
    ];
    let server = PresetServer::start(Supabase::new(), &with_secret).await;
    // A legacy Supabase token: HS256 with the project's JWT secret, aud "authenticated".
    let legacy = TestKey::hs256(SECRET.as_bytes())
        .token()
        .iss(idp.issuer())
        .aud("authenticated")
        .sign();
    assert_eq!(server.answer(&legacy).await.0, 200);
    let args = [
        "--provider",
        "supabase",
        "--token",
        &legacy,
        "--mcp-url",
        &server.mcp_url,
        "--json",
    ];
    let doc = doctor_env(&args, &with_secret).await.json();
    assert_no_failure(&doc);
    assert_eq!(status(&doc, "token.alg"), "pass");
    assert_eq!(status(&doc, "token.aud"), "pass", "Supabase's own audience");
    assert_eq!(status(&doc, "token.verdict"), "pass");

    // Signed with another secret: refused by both, for the same reason.
    let forged = TestKey::hs256(&[7; 48])
        .token()
        .iss(idp.issuer())
        .aud("authenticated")
        .sign();
    let args = [
        "--provider",
        "supabase",
        "--token",
        &forged,
        "--mcp-url",
        &server.mcp_url,
        "--json",
    ];
    let run = doctor_env(&args, &with_secret).await;
    assert_eq!(run.code, 1, "{run:#?}");
    let expected = server.reason(&forged).await.expect("refused");
    assert_same_reason(&run.json(), &server, &forged, &expected).await;
    drop(server);

    // Without the secret the preset takes no HS256 token, and doctor says so.
    let without = [("MCP_USE_OAUTH_SUPABASE_URL", origin.as_str())];
    let args = ["--provider", "supabase", "--token", &legacy, "--json"];
    let doc = doctor_env(&args, &without).await.json();
    assert_eq!(status(&doc, "token.alg"), "fail", "{doc:#}");
    assert_eq!(status(&doc, "token.verdict"), "fail");
    idp.shutdown().await;
}

#[tokio::test]
async fn a_preset_without_its_variable_is_a_usage_error_naming_it() {
    let run = doctor(&["--provider", "clerk"]).await;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(
        run.stderr.contains("MCP_USE_OAUTH_CLERK_FRONTEND_API_URL"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());

    // --issuer that is not the preset's: the preset is what a server runs.
    let run = doctor_env(
        &[
            "--provider",
            "clerk",
            "--issuer",
            "https://other.example.com",
            "--json",
        ],
        &[("MCP_USE_OAUTH_CLERK_FRONTEND_API_URL", "http://127.0.0.1:9")],
    )
    .await;
    assert_eq!(run.code, 1, "{run:#?}");
    let doc = run.json();
    assert_eq!(status(&doc, "provider.issuer"), "fail");
    assert_eq!(doc["issuer"], "http://127.0.0.1:9");
}
