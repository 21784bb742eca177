//! Every provider example (`examples/*.rs`) run as its users run it: the built example binary,
//! started with only the environment variables its documentation names, pointed at a
//! stand-in of that provider on 127.0.0.1 with the provider's URL layout (issuer path, JWKS
//! path, trailing slash). Each must start, answer a request without a token with the exact
//! 401 challenge naming its metadata, refuse a token signed by another key, and call `whoami`
//! for a token shaped like the provider's.
//!
//! `cargo test` builds the examples before it runs any test; run alone, this file needs
//! `cargo build -p mcp-oauth --examples --all-features` first (the test says so).

#![cfg(feature = "rmcp")]
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mcp_oauth::testing::{Layout, MockIdp, TestKey, TokenBuilder};
use serde_json::{Value, json};

/// The public URL every example is given; it listens elsewhere (`MCP_LISTEN=127.0.0.1:0`).
const MCP_URL: &str = "http://127.0.0.1:8080/mcp";
const DEADLINE: Duration = Duration::from_secs(30);

/// A running example; killed and reaped, and its folder removed, on drop.
struct Running {
    child: Child,
    folder: PathBuf,
    addr: String,
    output: Vec<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

fn example_binary(name: &str) -> PathBuf {
    // target/<profile>/deps/provider_examples-<hash> → target/<profile>/examples/<name>
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the target profile folder");
    let binary = profile
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} is not built: run `cargo test` (which builds the examples), or `cargo build -p mcp-oauth --examples --all-features` before this test alone",
        binary.display()
    );
    binary
}

/// Starts example `name` with `vars` (and nothing else of this environment but `PATH`), in
/// an empty folder (no `.env`), and waits for the address it listens on.
fn start(name: &str, vars: &[(&str, String)]) -> Running {
    let folder =
        std::env::temp_dir().join(format!("mcp-oauth-example-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&folder).expect("an empty folder");
    let mut command = Command::new(example_binary(name));
    command
        .current_dir(&folder)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("MCP_URL", MCP_URL)
        .env("MCP_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in vars {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("the example starts");
    let (lines, seen) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let mut running = Running {
        child,
        folder,
        addr: String::new(),
        output: Vec::new(),
    };
    let deadline = Instant::now() + DEADLINE;
    while running.addr.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match seen.recv_timeout(left) {
            Ok(line) => {
                if let Some(addr) = line.strip_prefix("listening on: ") {
                    running.addr = addr.trim().to_owned();
                }
                running.output.push(line);
            }
            Err(_) => panic!(
                "example {name} did not print its address within {DEADLINE:?}; its output:\n{}",
                running.output.join("\n")
            ),
        }
    }
    running
}

/// `tools/call` of `whoami` (stateless: no session needed), with `token` if any.
async fn whoami(running: &Running, token: Option<&str>) -> (u16, String, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("http://{}/mcp", running.addr))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .body(
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}})
                .to_string(),
        );
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the example answers");
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("a body");
    // A JSON answer, or the `data:` line of an SSE answer.
    let body = serde_json::from_str(&text)
        .ok()
        .or_else(|| {
            text.lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .find_map(|d| serde_json::from_str(d.trim()).ok())
        })
        .unwrap_or(Value::String(text));
    (status, challenge, body)
}

/// What every example must do: a 401 challenge without a token that names the metadata of
/// `MCP_URL` and the scopes the preset advertises (`scope`, none when empty), a refusal of a
/// token signed by a key the provider does not publish, and `whoami` for `token`, whose result
/// names `sub`.
async fn check(
    name: &str,
    running: &Running,
    scope: &str,
    token: TokenBuilder,
    forged: TokenBuilder,
    sub: &str,
) {
    let (status, challenge, _) = whoami(running, None).await;
    assert_eq!(status, 401, "{name}: no token");
    let mut expected = r#"Bearer resource_metadata="http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp""#.to_owned();
    if !scope.is_empty() {
        expected.push_str(&format!(r#", scope="{scope}""#));
    }
    assert_eq!(
        challenge, expected,
        "{name}: the challenge names the metadata of MCP_URL and the advertised scopes"
    );

    let (status, challenge, _) = whoami(running, Some(&forged.sign())).await;
    assert_eq!(status, 401, "{name}: a token signed by another key");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{name}: {challenge}"
    );

    let (status, _, body) = whoami(running, Some(&token.sign())).await;
    assert_eq!(
        status,
        200,
        "{name}: {body}\nits output:\n{}",
        running.output.join("\n")
    );
    let result = &body["result"];
    assert_ne!(result["isError"], true, "{name}: {body}");
    let text = result["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: no text content in {body}"));
    assert!(text.contains(sub), "{name}: whoami says {text}, not {sub}");
}

fn origin(idp: &MockIdp) -> String {
    idp.origin()
}

#[tokio::test]
async fn auth0_example() {
    let idp = MockIdp::start_layout(
        TestKey::rs256(),
        Layout::new("", "/.well-known/jwks.json").trailing_slash(),
    )
    .await
    .expect("stand-in");
    let running = start(
        "auth0",
        &[
            ("MCP_USE_OAUTH_AUTH0_DOMAIN", origin(&idp)),
            (
                "MCP_USE_OAUTH_AUTH0_AUDIENCE",
                "https://api.example.com".into(),
            ),
        ],
    );
    let token = |t: TokenBuilder| {
        t.iss(idp.issuer())
            .typ(Some("JWT"))
            .sub("auth0|123456")
            .aud("https://api.example.com")
            .scope("read:messages")
    };
    check(
        "auth0",
        &running,
        "openid profile email",
        token(idp.token()),
        token(TestKey::rs256().token()),
        "auth0|123456",
    )
    .await;
    idp.shutdown().await;
}

#[tokio::test]
async fn clerk_example() {
    let idp = MockIdp::start_layout(TestKey::rs256(), Layout::new("", "/.well-known/jwks.json"))
        .await
        .expect("stand-in");
    let running = start(
        "clerk",
        &[("MCP_USE_OAUTH_CLERK_FRONTEND_API_URL", origin(&idp))],
    );
    let token = |t: TokenBuilder| {
        t.iss(idp.issuer())
            .typ(Some("at+jwt"))
            .sub("user_2vYVtest")
            .aud(MCP_URL)
            .claim("client_id", "client_2VTW")
            .scope("profile email")
    };
    check(
        "clerk",
        &running,
        "profile email",
        token(idp.token()),
        token(TestKey::rs256().token()),
        "user_2vYVtest",
    )
    .await;
    idp.shutdown().await;
}

#[tokio::test]
async fn supabase_example() {
    let idp = MockIdp::start_layout(
        TestKey::es256(),
        Layout::new("/auth/v1", "/auth/v1/.well-known/jwks.json"),
    )
    .await
    .expect("stand-in");
    let running = start("supabase", &[("MCP_USE_OAUTH_SUPABASE_URL", origin(&idp))]);
    let token = |t: TokenBuilder| {
        t.iss(idp.issuer())
            .typ(Some("JWT"))
            .sub("123e4567-e89b-12d3-a456-426614174000")
            .aud("authenticated")
            .claim("role", "authenticated")
            .claim("email", "user@example.com")
    };
    check(
        "supabase",
        &running,
        "",
        token(idp.token()),
        token(TestKey::es256().token()),
        "123e4567-e89b-12d3-a456-426614174000",
    )
    .await;
    idp.shutdown().await;
}

#[tokio::test]
async fn keycloak_example() {
    let idp = MockIdp::start_layout(
        TestKey::rs256(),
        Layout::new("/realms/demo", "/realms/demo/protocol/openid-connect/certs"),
    )
    .await
    .expect("stand-in");
    let running = start(
        "keycloak",
        &[
            ("MCP_USE_OAUTH_KEYCLOAK_SERVER_URL", origin(&idp)),
            ("MCP_USE_OAUTH_KEYCLOAK_REALM", "demo".into()),
            ("MCP_USE_OAUTH_KEYCLOAK_AUDIENCE", "mcp-server".into()),
        ],
    );
    let token = |t: TokenBuilder| {
        t.iss(idp.issuer())
            .typ(Some("JWT"))
            .sub("8befeac4-8963-49da-a9ac-f310e8d922d8")
            .claim("aud", json!(["mcp-server", "account"]))
            .claim("typ", "Bearer")
            .claim("azp", "mcp-client")
            .claim("realm_access", json!({"roles": ["teacher"]}))
            .scope("openid email profile")
    };
    check(
        "keycloak",
        &running,
        "openid profile email roles",
        token(idp.token()),
        token(TestKey::rs256().token()),
        "8befeac4-8963-49da-a9ac-f310e8d922d8",
    )
    .await;
    idp.shutdown().await;
}

#[tokio::test]
async fn workos_example() {
    let idp = MockIdp::start_layout(TestKey::rs256(), Layout::new("", "/oauth2/jwks"))
        .await
        .expect("stand-in");
    let running = start(
        "workos",
        &[("MCP_USE_OAUTH_WORKOS_SUBDOMAIN", origin(&idp))],
    );
    let token = |t: TokenBuilder| {
        t.iss(idp.issuer())
            .typ(None)
            .sub("user_01JQ0E27VT3MH79RY0FVA4QBP9")
            .aud(MCP_URL)
            .claim("client_id", "client_01JP8BD0")
            .claim("org_id", "org_01HRDMC6")
            .scope("openid profile email")
    };
    check(
        "workos",
        &running,
        "email openid profile",
        token(idp.token()),
        token(TestKey::rs256().token()),
        "user_01JQ0E27VT3MH79RY0FVA4QBP9",
    )
    .await;
    idp.shutdown().await;
}

#[tokio::test]
async fn better_auth_example() {
    let idp = MockIdp::start_layout(
        TestKey::ed25519(),
        Layout::new("/api/auth", "/api/auth/jwks"),
    )
    .await
    .expect("stand-in");
    let running = start(
        "better_auth",
        &[(
            "MCP_USE_OAUTH_BETTER_AUTH_URL",
            format!("{}/api/auth", origin(&idp)),
        )],
    );
    let token = |t: TokenBuilder| {
        t.iss(idp.issuer())
            .typ(Some("at+jwt"))
            .sub("usr_4f9a2c")
            .aud(MCP_URL)
            .claim("client_id", "cl_8d1e7b")
            .claim("azp", "cl_8d1e7b")
            .claim("email", "lin@example.com")
            .claim("role", "editor")
            .scope("openid")
    };
    check(
        "better_auth",
        &running,
        "openid profile email",
        token(idp.token()),
        token(TestKey::ed25519().token()),
        "usr_4f9a2c",
    )
    .await;
    idp.shutdown().await;
}

#[tokio::test]
async fn custom_example() {
    let idp = MockIdp::start_layout(TestKey::es256(), Layout::new("/oauth", "/oauth/keys.json"))
        .await
        .expect("stand-in");
    let base = idp.issuer().to_owned();
    let running = start(
        "custom",
        &[
            ("CUSTOM_ISSUER", base.clone()),
            ("CUSTOM_AUTHORIZATION_ENDPOINT", format!("{base}/authorize")),
            ("CUSTOM_TOKEN_ENDPOINT", format!("{base}/token")),
            ("CUSTOM_JWKS_URL", idp.jwks_url()),
        ],
    );
    let token = |t: TokenBuilder| t.iss(&base).sub("custom-user-7").aud(MCP_URL);
    check(
        "custom",
        &running,
        "openid profile email",
        token(idp.token()),
        token(TestKey::es256().token()),
        "custom-user-7",
    )
    .await;
    idp.shutdown().await;
}

#[tokio::test]
async fn oidc_example() {
    let idp = MockIdp::start_layout(TestKey::rs256(), Layout::new("/tenant", "/tenant/jwks"))
        .await
        .expect("stand-in");
    let running = start(
        "oidc",
        &[
            ("OIDC_ISSUER", idp.issuer().to_owned()),
            ("OIDC_SCOPES", "mcp:read admin".into()),
        ],
    );
    let token = |t: TokenBuilder| {
        t.iss(idp.issuer())
            .sub("oidc-user-1")
            .aud(MCP_URL)
            .scope("mcp:read")
    };
    check(
        "oidc",
        &running,
        "mcp:read admin",
        token(idp.token()),
        token(TestKey::rs256().token()),
        "oidc-user-1",
    )
    .await;
    idp.shutdown().await;
}
