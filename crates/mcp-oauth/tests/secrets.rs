//! Nothing sensitive is logged or echoed: access and refresh tokens, codes, client secrets
//! and signing keys never appear in the tracing output (captured at TRACE, every target) or in
//! an error body, whatever happens to them.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::Served;
use mcp_oauth::OAuth;
use mcp_oauth::auth_server::{AuthServer, ClientSpec, DevUsers, KeyRing, Registration};
use mcp_oauth::jose::Algorithm;
use mcp_oauth::server::{McpServer, NoArgs, Tool, ToolContext};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// The operator's initial access token for registrations (RFC 7591 §3).
const INITIAL_ACCESS_TOKEN: &str = "initial-access-token-secret-0e3";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn tokens_secrets_and_keys_never_reach_logs_or_error_bodies() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let issuer = format!("http://{addr}");
    let mcp_url = format!("{issuer}/mcp");
    let keys = Arc::new(KeyRing::ephemeral(Algorithm::ES256).expect("keys"));
    let private_pem = keys.active().to_pkcs8_pem().expect("pem");
    let server = AuthServer::builder(issuer.clone())
        .keys(keys)
        .resource(mcp_url.clone())
        .login(Arc::new(DevUsers::new().user("alice", "p4ssw0rd-secret")))
        .client(ClientSpec::service("svc", "svc-very-secret-value").scopes(["mcp:read"]))
        .registration(Registration::InitialAccessToken(
            INITIAL_ACCESS_TOKEN.into(),
        ))
        .build()
        .await
        .expect("server");
    let oauth = OAuth::builder()
        .resource(mcp_url.clone())
        .authorization_server(issuer.clone())
        .verifier(server.verifier().expect("verifier"))
        .mirror_authorization_server(false)
        .build()
        .expect("oauth");
    let app = McpServer::new("s", "1")
        .oauth(oauth)
        .tool(Tool::new(
            "whoami",
            "who",
            |_: NoArgs, ctx: ToolContext| async move {
                ctx.auth()
                    .map(|a| a.subject().to_owned())
                    .unwrap_or_default()
            },
        ))
        .app()
        .expect("app")
        .merge(server.router());
    let served = Served::app(listener, app);
    let http = reqwest::Client::new();
    let mut bodies = String::new();
    let mut secrets: Vec<String> = vec![
        "svc-very-secret-value".into(),
        "p4ssw0rd-secret".into(),
        INITIAL_ACCESS_TOKEN.into(),
    ];
    secrets.extend(
        private_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::to_owned),
    );

    // A confidential client of our own (registered with the operator's initial access
    // token, the only way to a machine client), and its token.
    let reg: Value = http
        .post(format!("{issuer}/register"))
        .bearer_auth(INITIAL_ACCESS_TOKEN)
        .json(&json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post", "scope": "mcp:read"}))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("json");
    let client_secret = reg["client_secret"].as_str().expect("secret").to_owned();
    secrets.push(client_secret.clone());
    let tokens: Value = http
        .post(format!("{issuer}/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", reg["client_id"].as_str().expect("id")),
            ("client_secret", &client_secret),
            ("resource", &mcp_url),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    secrets.push(access.clone());
    // Its signature part alone must not leak either.
    secrets.push(access.rsplit('.').next().expect("sig").to_owned());

    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}).to_string();
    for token in [
        access.clone(),
        format!("{access}x"),
        "not-a-jwt-but-secret-looking-value".to_owned(),
    ] {
        let res = http
            .post(&mcp_url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .body(call.clone())
            .send()
            .await
            .expect("call");
        bodies.push_str(&format!("{:?}", res.headers()));
        bodies.push_str(&res.text().await.expect("body"));
    }
    secrets.push("not-a-jwt-but-secret-looking-value".into());
    // Wrong secrets and garbage at the token endpoint.
    for form in [
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", "svc"),
            ("client_secret", "svc-very-secret-value-WRONG"),
        ],
        vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", "refresh-secret-guess-value"),
            ("client_id", "svc"),
            ("client_secret", "svc-very-secret-value"),
        ],
        vec![
            ("grant_type", "authorization_code"),
            ("code", "code-secret-guess-value"),
            ("client_id", "svc"),
            ("client_secret", "svc-very-secret-value"),
            ("code_verifier", "v"),
        ],
    ] {
        let res = http
            .post(format!("{issuer}/token"))
            .form(&form)
            .send()
            .await
            .expect("token");
        bodies.push_str(&res.text().await.expect("body"));
    }
    secrets.extend([
        "svc-very-secret-value-WRONG".into(),
        "refresh-secret-guess-value".into(),
        "code-secret-guess-value".into(),
    ]);
    let res = http
        .post(format!("{issuer}/revoke"))
        .form(&[
            ("token", access.as_str()),
            ("client_id", "svc"),
            ("client_secret", "svc-very-secret-value"),
        ])
        .send()
        .await
        .expect("revoke");
    bodies.push_str(&res.text().await.expect("body"));

    // Shuts the server down without waiting for it.
    drop(served);
    let logs = String::from_utf8(logs.0.lock().expect("lock").clone()).expect("utf8");
    assert!(
        logs.contains("mcp_oauth"),
        "the capture works: our targets logged something"
    );
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "the logs contain a secret ({} chars)",
            secret.len()
        );
        assert!(
            !bodies.contains(secret.as_str()),
            "an error body contains a secret ({} chars)",
            secret.len()
        );
    }
}

/// Security review 2, F12: `{:?}` of each configuration type that holds a secret prints none
/// of it (the Supabase preset's HS256 secret mints any token).
#[test]
fn debug_output_of_configured_secrets_holds_none_of_them() {
    use mcp_oauth::auth_server::Upstream;
    use mcp_oauth::providers::Supabase;

    let supabase = Supabase::new()
        .project_id("abcdefghijklmnopqrst")
        .jwt_secret("supabase-jwt-secret-3f8");
    let client = ClientSpec::service("svc", "client-secret-6a2").scopes(["mcp:read"]);
    let registration = Registration::InitialAccessToken("initial-access-token-7c4".into());
    let upstream = Upstream::github_at(
        "https://github.example",
        "https://api.github.example",
        "ghapp",
        "upstream-secret-1b9",
    );
    let built = upstream.clone().build().expect("upstream");
    for (printed, secret) in [
        (format!("{supabase:?}"), "supabase-jwt-secret-3f8"),
        (format!("{client:?}"), "client-secret-6a2"),
        (format!("{registration:?}"), "initial-access-token-7c4"),
        (format!("{upstream:?}"), "upstream-secret-1b9"),
        (format!("{built:?}"), "upstream-secret-1b9"),
    ] {
        assert!(!printed.contains(secret), "{printed}");
    }
    // What is not secret still shows, so the test sees real output.
    assert!(format!("{supabase:?}").contains("abcdefghijklmnopqrst"));
    assert!(format!("{client:?}").contains("svc"));
}
