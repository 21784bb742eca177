//! `mcp-oauth gateway --login github --allow-org acme …` as a user runs it, from the attacker's
//! side first: users sign in at a local GitHub stand-in (its OAuth web flow and the `/user`,
//! `/user/orgs` and `/user/teams` API), the gateway issues its own tokens, and the upstream MCP
//! server (the rmcp test server over Streamable HTTP on 127.0.0.1, recording every header it
//! receives) never sees a token of anyone. Also: a user outside the organisation gets no code,
//! GitHub's own token is refused at `/mcp`, the sign-in rules of the options refuse at the
//! embedded authorization server, and the configuration file has the matching keys.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rmcp::ServiceExt as _;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

const GH_CLIENT: &str = "Iv1.mcp-oauth-gateway-login-test";
const GH_SECRET: &str = "gh-secret-for-the-gateway-login-test";
const GH_USER_ID: u64 = 583_231;
const REDIRECT: &str = "http://127.0.0.1:43817/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const DEADLINE: Duration = Duration::from_secs(30);

// --------------------------------------------------------------------------- GitHub stand-in

#[derive(Default)]
struct Seen {
    /// The callback URL registered for our OAuth app (set once the gateway printed it).
    callback: Option<String>,
    /// code -> (PKCE challenge, redirect_uri)
    codes: HashMap<String, (String, String)>,
    /// Every access and refresh token handed out.
    issued: Vec<String>,
    access_tokens: Vec<String>,
    /// The organisations and teams (`org`, `slug`) the user is in.
    orgs: Vec<String>,
    teams: Vec<(String, String)>,
    /// The API paths called.
    api_calls: Vec<String>,
}

#[derive(Clone)]
struct Github {
    origin: String,
    seen: Arc<Mutex<Seen>>,
}

fn random(prefix: &str) -> String {
    let mut bytes = [0u8; 27];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref())
}

async fn gh_authorize(
    State(gh): State<Github>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut seen = gh.seen.lock().unwrap();
    let redirect = q.get("redirect_uri").cloned().unwrap_or_default();
    if q.get("client_id").map(String::as_str) != Some(GH_CLIENT)
        || seen.callback.as_deref() != Some(redirect.as_str())
        || q.get("code_challenge_method").map(String::as_str) != Some("S256")
    {
        return (StatusCode::BAD_REQUEST, "bad authorization request").into_response();
    }
    let code = random("ghcode_");
    let challenge = q.get("code_challenge").cloned().unwrap_or_default();
    seen.codes
        .insert(code.clone(), (challenge, redirect.clone()));
    let mut to = url::Url::parse(&redirect).unwrap();
    to.query_pairs_mut().append_pair("code", &code).append_pair(
        "state",
        q.get("state").map(String::as_str).unwrap_or_default(),
    );
    (StatusCode::FOUND, [("location", to.to_string())]).into_response()
}

async fn gh_access_token(
    State(gh): State<Github>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut seen = gh.seen.lock().unwrap();
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    if field("client_id") != GH_CLIENT || field("client_secret") != GH_SECRET {
        return axum::Json(json!({"error": "incorrect_client_credentials"})).into_response();
    }
    match seen.codes.remove(field("code")) {
        Some((challenge, redirect))
            if s256(field("code_verifier")) == challenge && field("redirect_uri") == redirect =>
        {
            let access = random("gho_");
            let refresh = random("ghr_");
            seen.issued.extend([access.clone(), refresh.clone()]);
            seen.access_tokens.push(access.clone());
            axum::Json(json!({
                "access_token": access,
                "expires_in": 28800,
                "refresh_token": refresh,
                "scope": "read:user,user:email,read:org",
                "token_type": "bearer",
            }))
            .into_response()
        }
        _ => axum::Json(json!({"error": "bad_verification_code"})).into_response(),
    }
}

/// `/user`, `/user/orgs` and `/user/teams`, for a GitHub token it issued.
async fn gh_api(
    State(gh): State<Github>,
    axum::extract::Path(path): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let token = auth.strip_prefix("Bearer ").unwrap_or_default();
    let mut seen = gh.seen.lock().unwrap();
    seen.api_calls.push(path.clone());
    if !seen.access_tokens.iter().any(|t| t == token) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "Bad credentials"})),
        )
            .into_response();
    }
    match path.as_str() {
        "user" => axum::Json(json!({
            "login": "octocat",
            "id": GH_USER_ID,
            "name": "The Octocat",
            "email": "octocat@github.example",
        }))
        .into_response(),
        "user/orgs" => axum::Json(Value::Array(
            seen.orgs.iter().map(|o| json!({"login": o})).collect(),
        ))
        .into_response(),
        "user/teams" => axum::Json(Value::Array(
            seen.teams
                .iter()
                .map(|(org, slug)| json!({"slug": slug, "organization": {"login": org}}))
                .collect(),
        ))
        .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The stand-in on a free port, the user a member of `orgs`; it stops when the returned
/// sender is dropped.
async fn start_github(orgs: &[&str]) -> (Github, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let gh = Github {
        origin: format!("http://{}", listener.local_addr().expect("addr")),
        seen: Arc::default(),
    };
    gh.seen.lock().unwrap().orgs = orgs.iter().map(|o| (*o).to_owned()).collect();
    let app = axum::Router::new()
        .route("/login/oauth/authorize", get(gh_authorize))
        .route("/login/oauth/access_token", post(gh_access_token))
        .route("/api/v3/{*path}", get(gh_api))
        .with_state(gh.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    (gh, stop)
}

impl Github {
    /// The GitHub app and the stand-in's URLs as environment variables, the way `mcp-oauth
    /// proxy` reads them too.
    fn env(&self) -> Vec<(String, String)> {
        [
            ("MCP_OAUTH_UPSTREAM_CLIENT_ID", GH_CLIENT.to_owned()),
            ("MCP_OAUTH_UPSTREAM_CLIENT_SECRET", GH_SECRET.to_owned()),
            ("MCP_OAUTH_GITHUB_URL", self.origin.clone()),
            (
                "MCP_OAUTH_GITHUB_API_URL",
                format!("{}/api/v3", self.origin),
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .to_vec()
    }
}

// --------------------------------------------------------------------------- the upstream

/// The rmcp test server over Streamable HTTP, recording the headers of every request.
struct Upstream {
    url: String,
    headers: Arc<Mutex<Vec<HeaderMap>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn start_upstream() -> Upstream {
    let headers: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
    let record = headers.clone();
    let app = mcp_oauth_gateway::test_upstream::http_router().layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            record.lock().unwrap().push(req.headers().clone());
            next.run(req)
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Upstream {
        url: format!("http://{addr}/mcp"),
        headers,
        server,
    }
}

// --------------------------------------------------------------------------- the gateway

/// A folder removed when dropped (declare it before the processes using it).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "mcp-oauth-cli-gateway-login-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `mcp-oauth` with a clean environment (none of the caller's MCP_OAUTH_* settings, no HTTP
/// proxy for loopback) plus `env`.
fn command(args: &[&str], env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("MCP_OAUTH_")
            || name.starts_with("OIDC_")
            || name.to_ascii_lowercase().ends_with("_proxy")
        {
            cmd.env_remove(name);
        }
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost")
        .env("MCP_OAUTH_LOG", "info,mcp_oauth=debug")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .stdin(Stdio::null());
    cmd
}

struct Gateway {
    child: Child,
    info: Value,
    log: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// Starts `mcp-oauth gateway --port 0 --json --store memory --data-dir <tmp> <args>`,
    /// reads its JSON line and polls its protected resource metadata until it answers.
    async fn start(tmp: &TempDir, args: &[&str], env: &[(String, String)]) -> Self {
        let log = tmp.0.join("gateway.log");
        let data = tmp.0.join("data");
        let mut all = vec![
            "gateway",
            "--port",
            "0",
            "--json",
            "--store",
            "memory",
            "--data-dir",
            data.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        let mut child = command(&all, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("spawn mcp-oauth gateway");
        let stdout = child.stdout.take().expect("stdout");
        let read = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        let line = match tokio::time::timeout(DEADLINE, read).await {
            Ok(Ok(Ok(line))) if !line.is_empty() => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "no JSON line from mcp-oauth gateway ({other:?}); log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let info =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        let mut gateway = Gateway { child, info, log };
        gateway.ready().await;
        gateway
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn field(&self, name: &str) -> String {
        self.info[name]
            .as_str()
            .unwrap_or_else(|| panic!("{name} in {}", self.info))
            .to_owned()
    }

    fn issuer(&self) -> String {
        self.field("issuer")
    }

    fn mcp_url(&self) -> String {
        self.field("mcp_url")
    }

    async fn ready(&mut self) {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let prm = format!("{}/.well-known/oauth-protected-resource/mcp", self.issuer());
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                panic!(
                    "mcp-oauth gateway exited ({exit}); log:\n{}",
                    self.log_text()
                );
            }
            if http
                .get(&prm)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mcp-oauth gateway not ready; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(25)).await; // poll interval, bounded above
        }
    }
}

// --------------------------------------------------------------------------- a browser + client

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Reply {
    fn location(&self) -> Option<url::Url> {
        self.headers
            .get("location")
            .map(|l| url::Url::parse(l.to_str().unwrap()).unwrap())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): HTTP {} {}", self.status, self.body))
    }
}

/// The MCP client and the user's browser: redirects by hand, cookies kept by name (every
/// server here is on 127.0.0.1), and a transcript of everything received.
struct Browser {
    http: reqwest::Client,
    jar: HashMap<String, String>,
    transcript: String,
}

impl Browser {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            jar: HashMap::new(),
            transcript: String::new(),
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Reply {
        let cookies = self
            .jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let request = if cookies.is_empty() {
            request
        } else {
            request.header("cookie", cookies)
        };
        let res = request.send().await.expect("request");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        for value in headers.get_all("set-cookie") {
            let pair = value.to_str().unwrap().split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            self.jar.insert(k.trim().to_owned(), v.to_owned());
        }
        let body = res.text().await.expect("body");
        self.transcript
            .push_str(&format!("HTTP {status}\n{headers:?}\n{body}\n"));
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&mut self, url: &str) -> Reply {
        let request = self.http.get(url);
        self.send(request).await
    }

    async fn post_form(&mut self, url: &str, form: &[(String, String)]) -> Reply {
        let request = self.http.post(url).form(form);
        self.send(request).await
    }

    async fn register(&mut self, issuer: &str) -> String {
        let request = self.http.post(format!("{issuer}/register")).json(&json!({
            "client_name": "gateway login test client",
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }));
        let reply = self.send(request).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.json()["client_id"].as_str().unwrap().to_owned()
    }

    /// Registers a client and follows the whole sign-in, approving every consent page, until
    /// the browser is sent back to the client: the query it got there (`code` or `error`).
    async fn sign_in(&mut self, gateway: &Gateway) -> HashMap<String, String> {
        let issuer = gateway.issuer();
        let client_id = self.register(&issuer).await;
        let mut url = url::Url::parse(&format!("{issuer}/authorize")).unwrap();
        url.query_pairs_mut().extend_pairs([
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", REDIRECT),
            ("state", "client-state-5c1"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("resource", gateway.mcp_url().as_str()),
            ("scope", "mcp:read mcp:write"),
        ]);
        let mut reply = self.get(url.as_str()).await;
        for _ in 0..8 {
            match reply.status {
                200 => {
                    // A consent page: approve it, as the page gives the form.
                    let mut form: Vec<(String, String)> =
                        mcp_oauth::testing::hidden_form_fields(&reply.body)
                            .into_iter()
                            .collect();
                    form.push(("decision".into(), "approve".into()));
                    reply = self.post_form(&format!("{issuer}/authorize"), &form).await;
                }
                302 | 303 => {
                    let to = reply.location().expect("a redirect");
                    if to.as_str().starts_with(REDIRECT) {
                        let mut answer: HashMap<String, String> =
                            to.query_pairs().into_owned().collect();
                        answer.insert("client_id".into(), client_id);
                        return answer;
                    }
                    reply = self.get(to.as_str()).await;
                }
                other => panic!(
                    "HTTP {other} during sign-in: {}\n{}",
                    reply.body,
                    gateway.log_text()
                ),
            }
        }
        panic!(
            "the sign-in never came back to the client:\n{}",
            self.transcript
        );
    }

    /// Our tokens for a code.
    async fn tokens(&mut self, gateway: &Gateway, answer: &HashMap<String, String>) -> Reply {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", answer["code"].as_str()),
            ("client_id", answer["client_id"].as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("resource", gateway.mcp_url().as_str()),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        self.post_form(&format!("{}/token", gateway.issuer()), &form)
            .await
    }
}

/// The decoded payload of a JWT.
fn jwt_claims(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("JWT payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

/// A raw `initialize` at the MCP endpoint with `token`.
async fn initialize(url: &str, token: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#)
        .send()
        .await
        .unwrap()
}

/// Every header value the upstream received, as one text.
fn upstream_saw(upstream: &Upstream) -> String {
    upstream
        .headers
        .lock()
        .unwrap()
        .iter()
        .flat_map(|h| h.iter().map(|(k, v)| format!("{k}: {v:?}\n")))
        .collect()
}

// --------------------------------------------------------------------------- tests

/// The issue's first command, with an HTTP upstream: a member of `acme` signs in at GitHub
/// through the gateway and calls a tool with the gateway's token; GitHub's token reaches
/// neither the client nor the upstream, and is refused at `/mcp`.
#[tokio::test]
async fn a_member_of_the_org_signs_in_at_github_and_reaches_a_tool() {
    let tmp = TempDir::new("member");
    let (gh, _gh_stop) = start_github(&["acme"]).await;
    let upstream = start_upstream().await;
    let gateway = Gateway::start(
        &tmp,
        &[
            "--login",
            "github",
            "--allow-org",
            "acme",
            "--upstream",
            &upstream.url,
        ],
        &gh.env(),
    )
    .await;
    let issuer = gateway.issuer();
    let callback = gateway.field("callback_url");
    assert_eq!(callback, format!("{issuer}/oauth/callback"));
    assert!(
        gateway.info["token"].is_null(),
        "no banner token with --login: {}",
        gateway.info
    );
    gh.seen.lock().unwrap().callback = Some(callback);

    // Discovery: the gateway is the authorization server the client sees.
    let mut browser = Browser::new();
    let prm = browser
        .get(&format!(
            "{issuer}/.well-known/oauth-protected-resource/mcp"
        ))
        .await
        .json();
    assert_eq!(prm["authorization_servers"], json!([issuer]));
    let meta = browser
        .get(&format!("{issuer}/.well-known/oauth-authorization-server"))
        .await
        .json();
    assert_eq!(meta["registration_endpoint"], format!("{issuer}/register"));

    let answer = browser.sign_in(&gateway).await;
    assert!(!answer.contains_key("error"), "{answer:?}");
    assert_eq!(answer["state"], "client-state-5c1");
    assert_eq!(answer["iss"], issuer);
    let tokens = browser.tokens(&gateway, &answer).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let access = tokens.json()["access_token"].as_str().unwrap().to_owned();
    let claims = jwt_claims(&access);
    assert_eq!(claims["iss"], issuer);
    assert_eq!(claims["aud"], gateway.mcp_url());
    assert_eq!(claims["sub"], GH_USER_ID.to_string());
    assert_eq!(claims["groups"], json!(["acme"]), "{claims}");
    {
        let seen = gh.seen.lock().unwrap();
        assert!(
            seen.api_calls.iter().any(|p| p == "user/orgs"),
            "the memberships were read at sign-in: {:?}",
            seen.api_calls
        );
    }

    // The gateway's token reaches the upstream's tool.
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(gateway.mcp_url())
            .auth_header(access.clone()),
    );
    let mcp = ().serve(transport).await.expect("an MCP session through the gateway");
    let mut params = CallToolRequestParams::new("echo".to_owned());
    params = params.with_arguments(
        json!({"text": "through the front door"})
            .as_object()
            .unwrap()
            .clone(),
    );
    let result = mcp.call_tool(params).await.expect("call");
    assert_eq!(
        serde_json::to_value(&result).unwrap()["content"][0]["text"],
        "through the front door"
    );
    mcp.cancel().await.unwrap();

    // GitHub's own tokens are not ours: refused at /mcp with our challenge, before the
    // upstream (which sees nothing more).
    let before = upstream.headers.lock().unwrap().len();
    assert!(before > 0, "the upstream was called");
    let issued = gh.seen.lock().unwrap().issued.clone();
    assert_eq!(issued.len(), 2, "an access and a refresh token");
    for token in &issued {
        let res = initialize(&gateway.mcp_url(), token).await;
        assert_eq!(res.status(), 401, "GitHub's token at /mcp");
        let challenge = res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.contains("invalid_token"), "{challenge}");
    }
    assert_eq!(upstream.headers.lock().unwrap().len(), before);

    // No token of anyone reached the upstream: not GitHub's, not ours, no Authorization.
    let saw = upstream_saw(&upstream);
    assert!(!saw.contains("authorization"), "{saw}");
    assert!(!saw.contains(&access), "our token reached the upstream");
    for token in &issued {
        assert!(
            !saw.contains(token.as_str()),
            "GitHub's token reached the upstream"
        );
        assert!(
            !browser.transcript.contains(token.as_str()),
            "GitHub's token reached the client"
        );
    }
    assert!(!claims.to_string().contains("gho_"), "{claims}");
}

/// A GitHub user outside the allowed organisation gets no code (`access_denied` back at the
/// client), so no token, and nothing reaches the upstream.
#[tokio::test]
async fn a_user_outside_the_org_is_refused_at_sign_in() {
    let tmp = TempDir::new("outsider");
    let (gh, _gh_stop) = start_github(&["not-acme", "acme-evil"]).await;
    gh.seen
        .lock()
        .unwrap()
        .teams
        .push(("other".to_owned(), "acme".to_owned()));
    let upstream = start_upstream().await;
    let gateway = Gateway::start(
        &tmp,
        &[
            "--login",
            "github",
            "--allow-org",
            "acme",
            "--allow-org",
            "acme/platform",
            "--upstream",
            &upstream.url,
        ],
        &gh.env(),
    )
    .await;
    gh.seen.lock().unwrap().callback = Some(gateway.field("callback_url"));
    let mut browser = Browser::new();
    let answer = browser.sign_in(&gateway).await;
    assert_eq!(
        answer.get("error").map(String::as_str),
        Some("access_denied"),
        "{answer:?}"
    );
    assert!(!answer.contains_key("code"), "{answer:?}");
    assert!(
        gh.seen
            .lock()
            .unwrap()
            .api_calls
            .iter()
            .any(|p| p == "user/orgs"),
        "GitHub was asked"
    );
    // A code made up by the client is no way in either.
    let mut forged = answer.clone();
    forged.insert("code".into(), "made-up-code".into());
    let tokens = browser.tokens(&gateway, &forged).await;
    assert_eq!(tokens.status, 400, "{}", tokens.body);
    assert!(upstream.headers.lock().unwrap().is_empty());
}

/// Without --login, the embedded authorization server applies the options' sign-in rules
/// too: the local user `dev` (dev@example.com) is refused outside --allow-domain and let in
/// by --allow-email.
#[tokio::test]
async fn sign_in_rules_refuse_at_the_embedded_authorization_server() {
    let upstream = start_upstream().await;
    let tmp = TempDir::new("embedded-refused");
    let refused = Gateway::start(
        &tmp,
        &[
            "--auto-approve",
            "--allow-domain",
            "other.org",
            "--upstream",
            &upstream.url,
        ],
        &[],
    )
    .await;
    let answer = Browser::new().sign_in(&refused).await;
    assert_eq!(
        answer.get("error").map(String::as_str),
        Some("access_denied"),
        "{answer:?}"
    );
    assert!(!answer.contains_key("code"));
    drop(refused);

    let tmp = TempDir::new("embedded-allowed");
    let allowed = Gateway::start(
        &tmp,
        &[
            "--auto-approve",
            "--allow-domain",
            "other.org",
            "--allow-email",
            "dev@example.com",
            "--upstream",
            &upstream.url,
        ],
        &[],
    )
    .await;
    let mut browser = Browser::new();
    let answer = browser.sign_in(&allowed).await;
    assert!(answer.contains_key("code"), "{answer:?}");
    let tokens = browser.tokens(&allowed, &answer).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    assert!(upstream.headers.lock().unwrap().is_empty());
}

/// The sign-in and grant rules of `--policy` apply at the embedded authorization server (as
/// `mcp-oauth dev --policy` does), compiled with its tool rules against the upstream's real
/// tools: `dev` is not allowed to sign in by this file.
#[tokio::test]
async fn policy_sign_in_rules_refuse_at_the_embedded_authorization_server() {
    let upstream = start_upstream().await;
    let tmp = TempDir::new("embedded-policy");
    let policy = tmp.0.join("policy.toml");
    std::fs::write(
        &policy,
        "[policy]\n\n[[policy.sign_in]]\nid = \"only-alice\"\nwho = { emails = [\"alice@example.com\"] }\n\n[[policy.rule]]\nid = \"echo\"\ntools = [\"echo\"]\n",
    )
    .unwrap();
    let audit = tmp.0.join("audit.jsonl");
    let gateway = Gateway::start(
        &tmp,
        &[
            "--auto-approve",
            "--policy",
            policy.to_str().unwrap(),
            "--audit",
            audit.to_str().unwrap(),
            "--upstream",
            &upstream.url,
        ],
        &[],
    )
    .await;
    let answer = Browser::new().sign_in(&gateway).await;
    assert_eq!(
        answer.get("error").map(String::as_str),
        Some("access_denied"),
        "{answer:?}"
    );
    assert!(!answer.contains_key("code"));
    // The refusal is in the audit log, naming the user (never a token).
    let deadline = Instant::now() + DEADLINE;
    let logged = loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        if text.contains("dev") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(25)).await; // poll interval, bounded above
    };
    assert!(logged.contains("\"deny\""), "{logged}");
    // Only the gateway's own listing of the tools (to check the policy) reached the upstream.
    assert!(!upstream_saw(&upstream).contains("authorization"));

    // A sign-in rule about a tool-less mistake stops the start, naming the rule and its line.
    std::fs::write(
        &policy,
        "[policy]\n\n[[policy.sign_in]]\nid = \"platform\"\nwho = { groups = [\"platform\"] }\n",
    )
    .unwrap();
    let args: Vec<String> = [
        "gateway",
        "--port",
        "0",
        "--store",
        "memory",
        "--data-dir",
        tmp.0.join("data2").to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--upstream",
        &upstream.url,
    ]
    .map(str::to_owned)
    .to_vec();
    // On a thread of its own: the upstream it lists the tools of is served by this runtime.
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, &[])
    })
    .await
    .unwrap();
    assert!(!ok);
    assert!(
        err.contains("platform") && err.contains("never assigned"),
        "{err}"
    );
}

/// In `--login` mode the policy's rules apply at sign-in as `mcp-oauth proxy --policy`
/// applies them: GitHub teams (read with --github-groups) decide who signs in, and grant rules
/// cut the scopes the gateway's token carries.
#[tokio::test]
async fn policy_rules_decide_sign_in_and_scopes_with_github_teams() {
    let upstream = start_upstream().await;
    let tmp = TempDir::new("login-policy");
    let policy = tmp.0.join("policy.toml");
    std::fs::write(
        &policy,
        "[policy]\ngroup_claims = [\"groups\"]\n\n[[policy.sign_in]]\nid = \"platform-team\"\nwho = { groups = [\"acme/platform\"] }\n\n[[policy.grant]]\nid = \"acme-reads\"\nwho = { groups = [\"acme\"] }\nscopes = [\"mcp:read\"]\n\n[[policy.rule]]\nid = \"echo\"\ntools = [\"echo\"]\n",
    )
    .unwrap();
    let args = |url: &str| {
        [
            "--login",
            "github",
            "--github-groups",
            "--policy",
            policy.to_str().unwrap(),
            "--upstream",
            url,
        ]
        .map(str::to_owned)
        .to_vec()
    };

    // In the team: signed in, with the granted scope only.
    let (gh, _gh_stop) = start_github(&["acme"]).await;
    gh.seen
        .lock()
        .unwrap()
        .teams
        .push(("acme".to_owned(), "platform".to_owned()));
    let member_args = args(&upstream.url);
    let member_args: Vec<&str> = member_args.iter().map(String::as_str).collect();
    let gateway = Gateway::start(&tmp, &member_args, &gh.env()).await;
    gh.seen.lock().unwrap().callback = Some(gateway.field("callback_url"));
    let mut browser = Browser::new();
    let answer = browser.sign_in(&gateway).await;
    assert!(
        answer.contains_key("code"),
        "{answer:?}\n{}",
        gateway.log_text()
    );
    let tokens = browser.tokens(&gateway, &answer).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let access = tokens.json()["access_token"].as_str().unwrap().to_owned();
    let claims = jwt_claims(&access);
    assert_eq!(claims["scope"], "mcp:read", "{claims}");
    assert_eq!(
        claims["groups"],
        json!(["acme", "acme/platform"]),
        "{claims}"
    );
    let res = initialize(&gateway.mcp_url(), &access).await;
    assert_eq!(res.status(), 200);
    drop(gateway);

    // In the organisation but not the team: no code.
    let tmp2 = TempDir::new("login-policy-outsider");
    let (gh, _gh_stop) = start_github(&["acme"]).await;
    let gateway = Gateway::start(&tmp2, &member_args, &gh.env()).await;
    gh.seen.lock().unwrap().callback = Some(gateway.field("callback_url"));
    let answer = Browser::new().sign_in(&gateway).await;
    assert_eq!(
        answer.get("error").map(String::as_str),
        Some("access_denied"),
        "{answer:?}"
    );
    assert!(!answer.contains_key("code"));
}

fn run(args: &[&str], env: &[(String, String)]) -> (bool, String, String) {
    let out = command(args, env).output().expect("run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `--print-config` writes the provider options as keys (secrets as their references), the
/// file reads back to the same, and `gateway check` describes the front door.
#[test]
fn the_login_options_are_keys_of_the_configuration_file() {
    let tmp = TempDir::new("toml");
    let (ok, printed, err) = run(
        &[
            "gateway",
            "--login",
            "github",
            "--client-id",
            GH_CLIENT,
            "--client-secret",
            "${GW_LOGIN_TEST_SECRET}",
            "--allow-org",
            "acme",
            "--allow-domain",
            "example.com",
            "--github-url",
            "http://127.0.0.1:9",
            "--upstream",
            "http://127.0.0.1:3000/mcp",
            "--print-config",
        ],
        &[],
    );
    assert!(ok, "{err}");
    for line in [
        "login = \"github\"",
        &format!("client_id = \"{GH_CLIENT}\""),
        "client_secret = \"${GW_LOGIN_TEST_SECRET}\"",
        "allow_org = [\"acme\"]",
        "allow_domain = [\"example.com\"]",
        "github_url = \"http://127.0.0.1:9\"",
    ] {
        assert!(printed.lines().any(|l| l == line), "{line} in\n{printed}");
    }
    let file = tmp.0.join("gateway.toml");
    std::fs::write(&file, &printed).unwrap();
    let file = file.to_str().unwrap();
    let env = [("GW_LOGIN_TEST_SECRET".to_owned(), GH_SECRET.to_owned())];
    let (ok, again, err) = run(&["gateway", "--config", file, "--print-config"], &env);
    assert!(ok, "{err}");
    // The same options (a file's keys come back in the file's order, sorted).
    let sorted = |text: &str| {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    assert_eq!(
        sorted(&again),
        sorted(&printed),
        "the file reads back to the same options"
    );
    let (ok, plan, err) = run(&["gateway", "check", "--config", file], &env);
    assert!(ok, "{err}");
    assert!(
        plan.contains("users sign in at GitHub (as mcp-oauth proxy)"),
        "{plan}"
    );
    assert!(
        plan.contains("sign-in       decided by members of acme (GitHub); the --allow-domain"),
        "{plan}"
    );
    assert!(!plan.contains(GH_SECRET), "{plan}");

    // A misspelt key is refused with the right one, as for every option.
    std::fs::write(
        tmp.0.join("typo.toml"),
        "login = \"github\"\nallow_orgs = [\"acme\"]\n[[upstream]]\nurl = \"http://127.0.0.1:3000/mcp\"\n",
    )
    .unwrap();
    let typo = tmp.0.join("typo.toml");
    let (ok, _, err) = run(
        &["gateway", "check", "--config", typo.to_str().unwrap()],
        &env,
    );
    assert!(!ok);
    assert!(err.contains("did you mean `allow_org`"), "{err}");
    // A check finds the missing client secret without asking GitHub anything.
    std::fs::write(
        tmp.0.join("nosecret.toml"),
        format!("login = \"github\"\nclient_id = \"{GH_CLIENT}\"\n[[upstream]]\nurl = \"http://127.0.0.1:3000/mcp\"\n"),
    )
    .unwrap();
    let nosecret = tmp.0.join("nosecret.toml");
    let (ok, _, err) = run(
        &["gateway", "check", "--config", nosecret.to_str().unwrap()],
        &[],
    );
    assert!(!ok);
    assert!(
        err.contains("--login github needs the client secret"),
        "{err}"
    );
}

/// Combinations that cannot work stop the command before anything listens, saying why.
#[test]
fn front_door_mistakes_are_refused_with_what_to_do() {
    let up = ["--upstream", "http://127.0.0.1:9/mcp", "--port", "0"];
    let gh = [
        "--client-id".to_owned(),
        GH_CLIENT.to_owned(),
        "--client-secret".to_owned(),
        GH_SECRET.to_owned(),
    ];
    let gh: Vec<&str> = gh.iter().map(String::as_str).collect();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--allow-org", "acme"],
            "--allow-org needs --login github",
        ),
        (
            [&["--login", "google", "--allow-org", "acme"][..], &gh].concat(),
            "--allow-org needs --login github",
        ),
        (
            vec!["--login", "github"],
            "--login github needs our client id",
        ),
        (
            [&["--login", "github", "--user", "a:b"][..], &gh].concat(),
            "--user are the embedded server's own users",
        ),
        (
            [
                &["--login", "github", "--issuer", "http://127.0.0.1:9"][..],
                &gh,
            ]
            .concat(),
            "--issuer (OIDC_ISSUER) is the provider of --login oidc",
        ),
        (
            vec!["--login", "oidc", "--client-id", "x"],
            "--login oidc needs --issuer",
        ),
        (
            vec![
                "--issuer",
                "http://127.0.0.1:9",
                "--allow-domain",
                "example.com",
            ],
            "with --issuer users sign in at that issuer",
        ),
    ];
    for (args, expected) in cases {
        let all = [&["gateway"][..], &args, &up].concat();
        let (ok, _, err) = run(&all, &[]);
        assert!(!ok, "{all:?} was accepted");
        assert!(err.contains(expected), "{all:?}: {err}");
    }
}
