//! Abuse of every route of one fully mounted server: an MCP endpoint protected by the
//! embedded authorization server in proxy mode (against a local stand-in of the upstream
//! provider), its metadata, and the browser proxy routes, all on one port of 127.0.0.1.
//!
//! Each hostile request is written byte for byte on its own connection, so that bodies,
//! targets and headers reach the server exactly as an attacker would send them (invalid
//! UTF-8, broken percent-encoding, raw NUL bytes, megabytes of body). Every one must get a
//! complete answer that is not a 5xx, with a body that says what is wrong where the endpoint
//! has an error format (RFC 6749 §5.2 JSON for `/token`, `/register` and `/revoke`; the HTML
//! error page for `/authorize` errors that cannot be redirected); after each one the server
//! must still serve a normal request.
//!
//! No request leaves 127.0.0.1: every URL handed to the browser proxy is an IP literal the
//! SSRF guard refuses before connecting.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod common;

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use common::{CHALLENGE, Served, VERIFIER, challenge_of, cookie_header, keep_cookies, whoami};
use mcp_oauth::auth_server::{
    AuthServer, ClientSpec, Grant, GrantType, Identity, RateLimit, Upstream,
};
use mcp_oauth::browser_proxy::BrowserProxy;
use mcp_oauth::server::McpServer;
use mcp_oauth::testing::{TestKey, hidden_form_fields};
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Any port of this loopback redirect matches the registered `http://127.0.0.1/callback`.
const REDIRECT: &str = "http://127.0.0.1:33418/callback";
const PUBLIC_CLIENT: &str = "public-cli";
const WEB_CLIENT: &str = "web-cli";
const WEB_REDIRECT: &str = "https://app.example/cb";
const UPSTREAM_CLIENT: &str = "proxy-client";
const UPSTREAM_SECRET: &str = "proxy-secret";
const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Panics anywhere but in this file (library code, its tasks) are counted.

static LIBRARY_PANICS: AtomicUsize = AtomicUsize::new(0);

fn watch_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let ours = info
                .location()
                .is_some_and(|l| l.file().ends_with("abuse.rs"));
            if !ours {
                LIBRARY_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

// ---------------------------------------------------------------------------------------
// The upstream provider's stand-in: authorize, token (with an id_token), JWKS.

#[derive(Clone)]
struct StandIn {
    origin: String,
    key: TestKey,
    codes: Arc<Mutex<HashMap<String, (String, String)>>>,
    issued: Arc<AtomicUsize>,
}

async fn up_authorize(
    State(up): State<StandIn>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let redirect = q.get("redirect_uri").cloned().unwrap_or_default();
    let n = up.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let code = format!("upstream-code-{n}");
    up.codes.lock().unwrap().insert(
        code.clone(),
        (
            q.get("code_challenge").cloned().unwrap_or_default(),
            redirect.clone(),
        ),
    );
    let mut back = url::Url::parse(&redirect).unwrap();
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", q.get("state").map_or("", String::as_str));
    Redirect::to(back.as_str()).into_response()
}

async fn up_token(
    State(up): State<StandIn>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let refuse = |error: &str| {
        (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": error })),
        )
            .into_response()
    };
    if form.get("client_id").map(String::as_str) != Some(UPSTREAM_CLIENT)
        || form.get("client_secret").map(String::as_str) != Some(UPSTREAM_SECRET)
    {
        return refuse("invalid_client");
    }
    let code = form.get("code").cloned().unwrap_or_default();
    let Some((challenge, redirect)) = up.codes.lock().unwrap().remove(&code) else {
        return refuse("invalid_grant");
    };
    let verifier = form.get("code_verifier").map_or("", String::as_str);
    if challenge_of(verifier) != challenge || form.get("redirect_uri") != Some(&redirect) {
        return refuse("invalid_grant");
    }
    let id_token = up
        .key
        .token()
        .iss(&up.origin)
        .sub("upstream-user-7")
        .aud(UPSTREAM_CLIENT)
        .claim("email", "eve@example.com")
        .sign();
    axum::Json(json!({"access_token": format!("upstream-access-{code}"), "refresh_token": "upstream-refresh", "expires_in": 3600, "token_type": "Bearer", "id_token": id_token})).into_response()
}

async fn up_jwks(State(up): State<StandIn>) -> Response {
    axum::Json(serde_json::to_value(TestKey::jwks(&[&up.key])).unwrap()).into_response()
}

// ---------------------------------------------------------------------------------------
// The stack under test.

type Limits = (Option<RateLimit>, Option<RateLimit>, Option<RateLimit>);

struct Stack {
    addr: SocketAddr,
    issuer: String,
    resource: String,
    server: AuthServer,
    http: reqwest::Client,
    /// The stack's server, then the upstream stand-in (dropping them shuts both down).
    served: Vec<Served>,
}

impl Stack {
    async fn start(limits: Limits) -> Self {
        watch_panics();
        let up_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let origin = format!("http://{}", up_listener.local_addr().expect("addr"));
        let up = StandIn {
            origin: origin.clone(),
            key: TestKey::es256(),
            codes: Arc::default(),
            issued: Arc::default(),
        };
        let up_app = axum::Router::new()
            .route("/authorize", get(up_authorize))
            .route("/token", post(up_token))
            .route("/jwks", get(up_jwks))
            .with_state(up);
        let up_served = Served::app(up_listener, up_app);

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let issuer = format!("http://{addr}");
        let resource = format!("{issuer}/mcp");
        let upstream = Upstream::builder(
            "Stand-in",
            format!("{origin}/authorize"),
            format!("{origin}/token"),
            UPSTREAM_CLIENT,
        )
        .client_secret(UPSTREAM_SECRET)
        .identity(Identity::IdToken {
            issuer: origin.clone(),
            jwks_url: format!("{origin}/jwks"),
        })
        .build()
        .expect("upstream");
        let (token, register, authorize) = limits;
        let server = AuthServer::builder(issuer.clone())
            .resource(resource.clone())
            .upstream(upstream)
            .encryption_key([7u8; 32].as_slice())
            .rate_limits(token, register, authorize)
            // The per-client bucket at /token and /revoke goes with the token limit.
            .client_rate_limit(token)
            .client(ClientSpec::service("svc", "svc-secret").scopes(["mcp:read", "mcp:write"]))
            .client(ClientSpec {
                client_id: PUBLIC_CLIENT.into(),
                client_secret: None,
                redirect_uris: vec!["http://127.0.0.1/callback".into()],
                grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
                client_name: Some("Public test client".into()),
                ..ClientSpec::default()
            })
            .client(ClientSpec {
                client_id: WEB_CLIENT.into(),
                client_secret: None,
                redirect_uris: vec![WEB_REDIRECT.into()],
                grant_types: vec![GrantType::AuthorizationCode],
                client_name: Some("Web test client".into()),
                ..ClientSpec::default()
            })
            .build()
            .await
            .expect("server");
        let app = McpServer::new("abuse", "1.0.0")
            .tool(whoami())
            .auth_server(server.clone())
            .app()
            .expect("app")
            .merge(BrowserProxy::builder().build().expect("proxy").router());
        let served = Served::app(listener, app);
        let http = reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .expect("client");
        Self {
            addr,
            issuer,
            resource,
            server,
            http,
            served: vec![served, up_served],
        }
    }

    async fn stop(self) {
        for served in self.served {
            served.stop().await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// A normal request still works: the protected-resource metadata and a token from the
    /// token endpoint.
    async fn alive(&self) -> Result<(), String> {
        let prm = self
            .http
            .get(self.url("/.well-known/oauth-protected-resource/mcp"))
            .send()
            .await
            .map_err(|e| format!("metadata request failed: {e}"))?;
        if prm.status() != 200 {
            return Err(format!("metadata answered {}", prm.status()));
        }
        let doc: Value = prm.json().await.map_err(|e| e.to_string())?;
        if doc["resource"] != self.resource.as_str() {
            return Err(format!("metadata changed: {doc}"));
        }
        let token = self
            .http
            .post(self.url("/token"))
            .basic_auth("svc", Some("svc-secret"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|e| format!("token request failed: {e}"))?;
        if token.status() != 200 {
            return Err(format!("token endpoint answered {}", token.status()));
        }
        Ok(())
    }

    /// An access token of this server for the MCP endpoint.
    fn access_token(&self) -> String {
        let scope = vec!["mcp:read".to_owned()];
        let claims = serde_json::Map::new();
        self.server.mint_access_token(&Grant {
            subject: "mallory",
            client_id: PUBLIC_CLIENT,
            scope: &scope,
            resource: Some(&self.resource),
            user_claims: &claims,
            family: "abuse-family",
            ttl: None,
        })
    }

    async fn send(&self, case: &Case) -> Result<Raw, String> {
        let bytes = case.to_bytes(self.addr);
        let addr = self.addr;
        tokio::task::spawn_blocking(move || exchange(addr, &bytes))
            .await
            .map_err(|e| e.to_string())?
    }

    async fn call_whoami(&self, token: &str) -> (u16, Value) {
        let res = self
            .http
            .post(&self.resource)
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}))
            .send()
            .await
            .expect("mcp");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }
}

// ---------------------------------------------------------------------------------------
// A raw HTTP/1.1 exchange.

#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    fn summary(&self) -> String {
        let text = self.text();
        let short: String = text.chars().take(200).collect();
        format!(
            "{} {:?} {short:?}",
            self.status,
            self.header("content-type").unwrap_or("-")
        )
    }
}

/// Writes `request` on a new connection (while reading, so that an early answer to a body
/// the server does not want is still seen) and reads the answer to the end. The 10 s socket
/// timeouts are liveness bounds, not expectations.
fn exchange(addr: SocketAddr, request: &[u8]) -> Result<Raw, String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = stream;
    let (received, read_error) = std::thread::scope(|scope| {
        scope.spawn(move || {
            // The server may answer and close before the body is sent: not an error here.
            let _ = writer.write_all(request);
            let _ = writer.flush();
        });
        let mut buf = Vec::new();
        let result = reader.read_to_end(&mut buf);
        (buf, result.err())
    });
    parse_response(&received).ok_or_else(|| {
        format!(
            "no complete HTTP response ({} bytes{}): {:?}",
            received.len(),
            read_error
                .map(|e| format!(", read error {e}"))
                .unwrap_or_default(),
            String::from_utf8_lossy(&received[..received.len().min(200)])
        )
    })
}

fn parse_response(bytes: &[u8]) -> Option<Raw> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &bytes[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        rest.get(..len)?.to_vec()
    } else {
        rest.to_vec()
    };
    Some(Raw {
        status,
        headers,
        body,
    })
}

fn dechunk(mut bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = bytes.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&bytes[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(bytes.get(..size)?);
        bytes = bytes.get(size + 2..)?;
    }
}

// ---------------------------------------------------------------------------------------
// The table.

/// What a hostile request must get.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// RFC 6749 §5.2: one of these statuses and a JSON object whose `error` is one of these
    /// codes (any code when empty).
    OAuth(&'static [u16], &'static [&'static str]),
    /// The authorization server's HTML error page with this status, never a redirect.
    Page(u16),
    /// A `302` to the client's redirect URI with this `error`, the client's `state` and our
    /// `iss` (RFC 6749 §4.1.2.1, RFC 9207).
    ErrorRedirect(&'static str),
    /// The browser proxy's JSON error `{"error": "..."}` with this status.
    ProxyError(u16),
    /// `401` with the Bearer challenge naming the protected-resource metadata (RFC 9728 §5.1).
    Challenge,
    /// `405` with an `Allow` header naming what is allowed.
    MethodNotAllowed,
    /// Refused by the HTTP parser before any route: one of these statuses.
    Transport(&'static [u16]),
    /// `413` with a body saying so (its format is checked in
    /// `oversized_bodies_get_errors_in_the_endpoint_format`).
    TooLarge,
    /// One of these statuses (legitimate answers, 2xx included).
    Status(&'static [u16]),
}

struct Case {
    name: String,
    method: &'static str,
    target: Vec<u8>,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
    chunked: bool,
    expect: Expect,
}

impl Case {
    fn new(name: impl Into<String>, method: &'static str, target: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.into(),
            method,
            target: target.into(),
            headers: Vec::new(),
            body: Vec::new(),
            chunked: false,
            expect: Expect::Status(&[]),
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn form(self, body: impl Into<Vec<u8>>) -> Self {
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    }

    fn json_body(self, body: impl Into<Vec<u8>>) -> Self {
        self.header("content-type", "application/json").body(body)
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }

    fn expect(mut self, expect: Expect) -> Self {
        self.expect = expect;
        self
    }

    fn to_bytes(&self, addr: SocketAddr) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 256);
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(&self.target);
        out.extend_from_slice(
            format!(" HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").as_bytes(),
        );
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if self.chunked {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            for chunk in self.body.chunks(64 * KIB) {
                out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        } else {
            if !self.body.is_empty() || matches!(self.method, "POST" | "PUT") {
                out.extend_from_slice(
                    format!("Content-Length: {}\r\n", self.body.len()).as_bytes(),
                );
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&self.body);
        }
        out
    }
}

fn check(stack: &Stack, expect: Expect, raw: &Raw) -> Result<(), String> {
    if raw.status >= 500 {
        return Err(format!("a server error: {}", raw.summary()));
    }
    let content_type = raw.header("content-type").unwrap_or_default().to_owned();
    match expect {
        Expect::OAuth(statuses, codes) => {
            if !statuses.contains(&raw.status) {
                return Err(format!("expected {statuses:?}, got {}", raw.summary()));
            }
            let error = raw
                .json()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned));
            let Some(error) = error else {
                return Err(format!("no RFC 6749 JSON error body: {}", raw.summary()));
            };
            if !content_type.starts_with("application/json") {
                return Err(format!("content type {content_type:?}"));
            }
            if !codes.is_empty() && !codes.contains(&error.as_str()) {
                return Err(format!("error {error:?}, expected one of {codes:?}"));
            }
        }
        Expect::Page(status) => {
            let html = raw.text();
            if raw.status != status
                || !content_type.starts_with("text/html")
                || !html.contains("This sign-in cannot continue")
            {
                return Err(format!(
                    "expected the {status} error page, got {}",
                    raw.summary()
                ));
            }
            if raw.header("location").is_some() {
                return Err("an error page must not redirect".into());
            }
            if html.contains("<script") {
                return Err("markup from the request reached the page".into());
            }
        }
        Expect::ErrorRedirect(error) => {
            if raw.status != 302 {
                return Err(format!(
                    "expected a 302 to the client, got {}",
                    raw.summary()
                ));
            }
            let location = raw.header("location").unwrap_or_default();
            if !location.starts_with(REDIRECT) {
                return Err(format!("redirected to {location:?}"));
            }
            let query: HashMap<String, String> = url::Url::parse(location)
                .map_err(|e| e.to_string())?
                .query_pairs()
                .into_owned()
                .collect();
            if query.get("error").map(String::as_str) != Some(error)
                || query.get("state").map(String::as_str) != Some("st")
                || query.get("iss") != Some(&stack.issuer)
                || query.contains_key("code")
            {
                return Err(format!("redirect query {query:?}, expected error {error}"));
            }
        }
        Expect::ProxyError(status) => {
            let message = raw
                .json()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned));
            if raw.status != status || message.is_none_or(|m| m.is_empty()) {
                return Err(format!(
                    "expected a {status} JSON error, got {}",
                    raw.summary()
                ));
            }
        }
        Expect::Challenge => {
            let www = raw.header("www-authenticate").unwrap_or_default();
            let prm = format!(
                "resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
                stack.issuer
            );
            if raw.status != 401 || !www.starts_with("Bearer") || !www.contains(&prm) {
                return Err(format!(
                    "expected the Bearer challenge, got {} {www:?}",
                    raw.summary()
                ));
            }
        }
        Expect::TooLarge => {
            if raw.status != 413 || raw.body.is_empty() {
                return Err(format!("expected 413 with a reason, got {}", raw.summary()));
            }
        }
        Expect::MethodNotAllowed => {
            if raw.status != 405 || raw.header("allow").is_none_or(str::is_empty) {
                return Err(format!("expected 405 with Allow, got {}", raw.summary()));
            }
        }
        Expect::Transport(statuses) | Expect::Status(statuses) => {
            if !statuses.contains(&raw.status) {
                return Err(format!("expected {statuses:?}, got {}", raw.summary()));
            }
        }
    }
    Ok(())
}

/// Runs the cases, checks each answer and that the server still serves a normal request
/// after each one. Returns the failures.
async fn run(stack: &Stack, cases: &[Case]) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        match stack.send(case).await {
            Ok(raw) => {
                println!("{} {} -> {}", case.method, case.name, raw.summary());
                if let Err(why) = check(stack, case.expect, &raw) {
                    failures.push(format!("{} {}: {why}", case.method, case.name));
                }
            }
            Err(why) => failures.push(format!("{} {}: {why}", case.method, case.name)),
        }
        if let Err(why) = stack.alive().await {
            failures.push(format!("after {} {}: {why}", case.method, case.name));
        }
    }
    failures
}

fn query(pairs: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    q.finish()
}

/// A valid authorization request for `client` with some parameters replaced (`None` drops
/// one).
fn authorize(client: &str, overrides: &[(&str, Option<&str>)]) -> String {
    let base = [
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", REDIRECT),
        ("state", "st"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("scope", "mcp:read"),
    ];
    let mut pairs: Vec<(&str, &str)> = base
        .iter()
        .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
        .copied()
        .collect();
    for (k, v) in overrides {
        if let Some(v) = v {
            pairs.push((k, v));
        }
    }
    format!("/authorize?{}", query(&pairs))
}

/// `n` distinct parameters, short enough for 10,000 of them to stay under 64 KiB.
fn many_params(n: usize) -> String {
    (0..n)
        .map(|i| format!("{i:x}="))
        .collect::<Vec<_>>()
        .join("&")
}

fn nested(open: &str, depth: usize) -> Vec<u8> {
    open.repeat(depth).into_bytes()
}

fn long_query(len: usize) -> String {
    format!("q={}", "a".repeat(len))
}

/// Every route, several methods each, with hostile inputs.
fn hostile_cases(stack: &Stack, token: &str) -> Vec<Case> {
    use Expect::*;
    let mut cases = Vec::new();
    let bearer = format!("Bearer {token}");
    let huge_query = long_query(64 * KIB);
    let form_1m = format!("a={}", "b".repeat(MIB));
    let form_3m = format!("a={}", "b".repeat(3 * MIB));
    let json_3m = format!("{{\"a\":\"{}\"}}", "b".repeat(3 * MIB));

    // Metadata, JWKS and protected-resource metadata: GET only, body and query ignored.
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/jwks",
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        cases.push(
            Case::new(
                format!("{path} with a 64 KiB query"),
                "GET",
                format!("{path}?{huge_query}"),
            )
            .expect(Transport(&[414, 400, 431])),
        );
        cases.push(
            Case::new(format!("{path} with a 1 MiB body"), "GET", path)
                .body(form_1m.clone())
                .expect(Status(&[200, 413])),
        );
        cases.push(
            Case::new(
                format!("{path} with broken percent-encoding in the query"),
                "GET",
                format!("{path}?%zz%ff%fe=%00&%"),
            )
            .expect(Status(&[200])),
        );
        cases.push(
            Case::new(path, "POST", path)
                .form("a=b")
                .expect(MethodNotAllowed),
        );
        cases.push(Case::new(path, "DELETE", path).expect(MethodNotAllowed));
    }

    // The token endpoint.
    let token_oauth = OAuth(&[400, 401], &["invalid_request", "invalid_client"]);
    cases.extend([
        Case::new("/token with a 1 MiB body", "POST", "/token").form(form_1m.clone()).expect(TooLarge),
        Case::new("/token with a 3 MiB body", "POST", "/token").form(form_3m.clone()).expect(TooLarge),
        Case::new("/token with a 3 MiB chunked body", "POST", "/token").form(form_3m.clone()).chunked().expect(TooLarge),
        Case::new("/token with invalid UTF-8", "POST", "/token")
            .form(b"grant_type=authorization_code&client_id=\xff\xfe&code=\xc3\x28&code_verifier=\x80".to_vec())
            .expect(token_oauth),
        Case::new("/token with broken percent-encoding", "POST", "/token")
            .form("grant_type=%zz&client_id=%&code=%4")
            .expect(token_oauth),
        Case::new("/token with a JSON body", "POST", "/token")
            .json_body(json!({"grant_type": "client_credentials", "client_id": "svc", "client_secret": "svc-secret"}).to_string())
            .expect(OAuth(&[400], &["invalid_request"])),
        Case::new("/token without a content type", "POST", "/token")
            .body("grant_type=client_credentials&client_id=svc&client_secret=svc-secret")
            .expect(OAuth(&[400], &["invalid_request"])),
        Case::new("/token as text/plain", "POST", "/token")
            .header("content-type", "text/plain")
            .body("grant_type=client_credentials&client_id=svc&client_secret=svc-secret")
            .expect(OAuth(&[400], &["invalid_request"])),
        Case::new("/token as multipart", "POST", "/token")
            .header("content-type", "multipart/form-data; boundary=x")
            .body("--x\r\nContent-Disposition: form-data; name=\"grant_type\"\r\n\r\nclient_credentials\r\n--x--\r\n")
            .expect(OAuth(&[400], &["invalid_request"])),
        Case::new("/token with 10,000 parameters", "POST", "/token")
            .form(format!("grant_type=client_credentials&client_id=nobody&{}", many_params(10_000)))
            .expect(OAuth(&[401], &["invalid_client"])),
        Case::new("/token with one parameter 10,000 times", "POST", "/token")
            .form(vec!["x=1"; 10_000].join("&"))
            .expect(OAuth(&[400], &["invalid_request"])),
        Case::new("/token with code twice", "POST", "/token")
            .form(format!("grant_type=authorization_code&client_id={PUBLIC_CLIENT}&code=a&code=b&code_verifier={VERIFIER}&redirect_uri={REDIRECT}"))
            .expect(OAuth(&[400], &["invalid_request"])),
        Case::new("/token with redirect_uri twice", "POST", "/token")
            .form(format!("grant_type=authorization_code&client_id={PUBLIC_CLIENT}&code=a&code_verifier={VERIFIER}&redirect_uri={REDIRECT}&redirect_uri=https://evil.example/"))
            .expect(OAuth(&[400], &["invalid_request"])),
        Case::new("/token with client_id twice", "POST", "/token")
            .form(format!("grant_type=authorization_code&client_id={PUBLIC_CLIENT}&client_id=svc&code=a&code_verifier={VERIFIER}"))
            .expect(OAuth(&[400], &["invalid_request"])),
        Case::new("/token with a NUL in grant_type", "POST", "/token")
            .form(format!("grant_type=authorization_code%00&client_id={PUBLIC_CLIENT}&code=a&code_verifier={VERIFIER}"))
            .expect(OAuth(&[400], &["unsupported_grant_type"])),
        Case::new("/token with a raw NUL byte", "POST", "/token")
            .form(format!("grant_type=client_credentials\0&client_id={PUBLIC_CLIENT}"))
            .expect(OAuth(&[400], &["unsupported_grant_type"])),
        Case::new("/token with a 60 KB code", "POST", "/token")
            .form(format!("grant_type=authorization_code&client_id={PUBLIC_CLIENT}&code={}&code_verifier={VERIFIER}", "c".repeat(60_000)))
            .expect(OAuth(&[400], &["invalid_grant"])),
        Case::new("/token with a 100 KB scope", "POST", "/token")
            .form(format!("grant_type=client_credentials&client_id=svc&client_secret=svc-secret&scope={}", "s".repeat(100 * KIB)))
            .expect(TooLarge),
        Case::new("/token with a 60 KB scope", "POST", "/token")
            // svc/svc-secret in HTTP Basic, the way it is registered (client_secret_basic).
            .header("authorization", "Basic c3ZjOnN2Yy1zZWNyZXQ=")
            .form(format!("grant_type=client_credentials&scope={}", "s".repeat(60_000)))
            .expect(OAuth(&[400], &["invalid_scope"])),
        Case::new("/token with garbage Basic credentials", "POST", "/token")
            .header("authorization", "Basic !!!not-base64!!!")
            .form("grant_type=client_credentials")
            .expect(OAuth(&[401], &["invalid_client"])),
        Case::new("/token with Basic credentials for another client_id", "POST", "/token")
            .header("authorization", "Basic c3ZjOnN2Yy1zZWNyZXQ=")
            .form(format!("grant_type=client_credentials&client_id={PUBLIC_CLIENT}"))
            .expect(OAuth(&[400], &["invalid_request"])),
        Case::new("/token with an empty grant_type", "POST", "/token")
            .form(format!("grant_type=&client_id={PUBLIC_CLIENT}"))
            .expect(OAuth(&[400], &["invalid_request"])),
        Case::new("/token with a wrong client secret", "POST", "/token")
            .form("grant_type=client_credentials&client_id=svc&client_secret=guess")
            .expect(OAuth(&[401], &["invalid_client"])),
        Case::new("/token client_credentials for a public client", "POST", "/token")
            .form(format!("grant_type=client_credentials&client_id={PUBLIC_CLIENT}"))
            .expect(OAuth(&[400], &["unauthorized_client"])),
        Case::new("/token with an unknown code", "POST", "/token")
            .form(format!("grant_type=authorization_code&client_id={PUBLIC_CLIENT}&code=forged&code_verifier={VERIFIER}&redirect_uri={REDIRECT}"))
            .expect(OAuth(&[400], &["invalid_grant"])),
        Case::new("/token with an unknown refresh token", "POST", "/token")
            .form(format!("grant_type=refresh_token&client_id={PUBLIC_CLIENT}&refresh_token=forged"))
            .expect(OAuth(&[400], &["invalid_grant"])),
        Case::new("/token", "GET", "/token").expect(MethodNotAllowed),
        Case::new("/token with a 64 KiB query", "POST", format!("/token?{huge_query}"))
            .form("grant_type=client_credentials")
            .expect(Transport(&[414, 400, 431])),
    ]);
    for grant in [
        "password",
        "implicit",
        "token",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:token-exchange",
        "<script>alert(1)</script>",
    ] {
        cases.push(
            Case::new(format!("/token with grant_type {grant}"), "POST", "/token")
                .form(query(&[
                    ("grant_type", grant),
                    ("client_id", PUBLIC_CLIENT),
                    ("username", "a"),
                    ("password", "b"),
                ]))
                .expect(OAuth(&[400], &["unsupported_grant_type"])),
        );
    }

    // Dynamic registration.
    let metadata = OAuth(&[400], &["invalid_client_metadata"]);
    let redirect_refused = OAuth(&[400], &["invalid_redirect_uri"]);
    // Registration metadata is limited to 8 KiB (review 2, F7).
    let metadata_too_large = OAuth(&[413], &["invalid_client_metadata"]);
    cases.extend([
        Case::new("/register with a 1 MiB body", "POST", "/register").json_body(json_3m[..MIB].to_owned() + "\"}").expect(TooLarge),
        Case::new("/register with a 3 MiB body", "POST", "/register").json_body(json_3m.clone()).expect(TooLarge),
        Case::new("/register with a 3 MiB chunked body", "POST", "/register").json_body(json_3m.clone()).chunked().expect(TooLarge),
        Case::new("/register with invalid UTF-8", "POST", "/register")
            .json_body(b"{\"redirect_uris\":[\"http://127.0.0.1/cb\"],\"client_name\":\"\xff\xfe\"}".to_vec())
            .expect(metadata),
        Case::new("/register with a form body", "POST", "/register")
            .form("redirect_uris=http://127.0.0.1/cb&token_endpoint_auth_method=none")
            // Not JSON: 415, so that a cross-origin page cannot post it without a preflight (F3).
            .expect(OAuth(&[415], &["invalid_client_metadata"])),
        Case::new("/register with an empty body", "POST", "/register").json_body("").expect(metadata),
        Case::new("/register with 10,000 nested arrays", "POST", "/register").json_body(nested("[", 10_000)).expect(metadata_too_large),
        Case::new("/register with 10,000 nested objects", "POST", "/register").json_body(nested("{\"a\":", 10_000)).expect(metadata_too_large),
        Case::new("/register with deep nesting inside a member", "POST", "/register")
            .json_body([b"{\"redirect_uris\":[\"http://127.0.0.1/cb\"],\"x\":".as_slice(), &nested("[", 5_000), &"]".repeat(5_000).into_bytes(), b"}"].concat())
            .expect(metadata_too_large),
        Case::new("/register with null", "POST", "/register").json_body("null").expect(metadata),
        Case::new("/register with a string", "POST", "/register").json_body("\"client\"").expect(metadata),
        Case::new("/register with a raw NUL in a string", "POST", "/register")
            .json_body(b"{\"redirect_uris\":[\"http://127.0.0.1/cb\"],\"client_name\":\"a\0b\"}".to_vec())
            .expect(metadata),
        Case::new("/register with a 100 KB client_name", "POST", "/register")
            .json_body(json!({"redirect_uris": ["http://127.0.0.1/cb"], "client_name": "n".repeat(100 * KIB)}).to_string())
            .expect(TooLarge),
        Case::new("/register with a 100 KB redirect URI", "POST", "/register")
            .json_body(json!({"redirect_uris": [format!("http://127.0.0.1/{}", "p".repeat(100 * KIB))]}).to_string())
            .expect(TooLarge),
        Case::new("/register with a 100 KB scope", "POST", "/register")
            .json_body(json!({"redirect_uris": ["http://127.0.0.1/cb"], "scope": "s".repeat(100 * KIB)}).to_string())
            .expect(TooLarge),
        Case::new("/register with redirect_uris as a string", "POST", "/register")
            .json_body(json!({"redirect_uris": "http://127.0.0.1/cb"}).to_string())
            .expect(metadata),
        Case::new("/register with client_name as an object", "POST", "/register")
            .json_body(json!({"redirect_uris": ["http://127.0.0.1/cb"], "client_name": {"<b>": 1}}).to_string())
            .expect(metadata),
        Case::new("/register for the implicit grant", "POST", "/register")
            .json_body(json!({"redirect_uris": ["http://127.0.0.1/cb"], "grant_types": ["implicit"]}).to_string())
            .expect(metadata),
        Case::new("/register for the password grant", "POST", "/register")
            .json_body(json!({"redirect_uris": ["http://127.0.0.1/cb"], "grant_types": ["password"]}).to_string())
            .expect(metadata),
        Case::new("/register for response type token", "POST", "/register")
            .json_body(json!({"redirect_uris": ["http://127.0.0.1/cb"], "response_types": ["token"]}).to_string())
            .expect(metadata),
        Case::new("/register with 21 redirect URIs", "POST", "/register")
            .json_body(json!({"redirect_uris": (0..21).map(|i| format!("http://127.0.0.1/cb{i}")).collect::<Vec<_>>()}).to_string())
            .expect(redirect_refused),
        Case::new("/register", "GET", "/register").expect(MethodNotAllowed),
    ]);
    for uri in [
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "http://evil.example/cb",
        "http://127.0.0.1@evil.example/cb",
        "http://127.0.0.1.evil.example/cb",
        "https://app.example/cb#fragment",
        "/relative/cb",
        "//evil.example/cb",
    ] {
        cases.push(
            Case::new(
                format!("/register with redirect URI {uri}"),
                "POST",
                "/register",
            )
            .json_body(
                json!({"redirect_uris": [uri], "token_endpoint_auth_method": "none"}).to_string(),
            )
            .expect(redirect_refused),
        );
    }

    // Revocation.
    cases.extend([
        Case::new("/revoke with a 1 MiB body", "POST", "/revoke")
            .form(form_1m.clone())
            .expect(TooLarge),
        Case::new("/revoke with a 3 MiB body", "POST", "/revoke")
            .form(form_3m.clone())
            .expect(TooLarge),
        Case::new("/revoke with invalid UTF-8", "POST", "/revoke")
            .form(b"token=\xff\xfe&client_id=\xc3\x28".to_vec())
            .expect(OAuth(&[401], &["invalid_client"])),
        Case::new("/revoke with broken percent-encoding", "POST", "/revoke")
            .form("token=%zz&client_id=%")
            .expect(OAuth(&[401], &["invalid_client"])),
        Case::new("/revoke with 10,000 parameters", "POST", "/revoke")
            .form(format!("token=x&client_id=nobody&{}", many_params(10_000)))
            .expect(OAuth(&[401], &["invalid_client"])),
        Case::new("/revoke for an unknown client", "POST", "/revoke")
            .form("token=x&client_id=nobody")
            .expect(OAuth(&[401], &["invalid_client"])),
        Case::new("/revoke without a token", "POST", "/revoke")
            .form(format!("client_id={PUBLIC_CLIENT}"))
            .expect(OAuth(&[400], &["invalid_request"])),
        Case::new("/revoke with a wrong client secret", "POST", "/revoke")
            .form("token=x&client_id=svc&client_secret=guess")
            .expect(OAuth(&[401], &["invalid_client"])),
        Case::new("/revoke", "GET", "/revoke").expect(MethodNotAllowed),
    ]);

    // The authorization endpoint, GET: errors before the client and its redirect URI are
    // known to match are pages; after that, redirects to the client.
    cases.extend([
        Case::new(
            "/authorize with a 64 KiB query",
            "GET",
            format!("/authorize?{huge_query}"),
        )
        .expect(Transport(&[414, 400, 431])),
        Case::new("/authorize without a query", "GET", "/authorize").expect(Page(400)),
        Case::new(
            "/authorize with broken percent-encoding",
            "GET",
            "/authorize?client_id=%zz&redirect_uri=%&state=%4",
        )
        .expect(Page(400)),
        Case::new(
            "/authorize with percent-encoded invalid UTF-8",
            "GET",
            "/authorize?client_id=%ff%fe&redirect_uri=%c3%28",
        )
        .expect(Page(400)),
        Case::new(
            "/authorize with raw invalid UTF-8 in the target",
            "GET",
            b"/authorize?client_id=\xff\xfe".to_vec(),
        )
        .expect(Transport(&[400])),
        Case::new(
            "/authorize with a raw NUL in the target",
            "GET",
            b"/authorize?client_id=a\0b".to_vec(),
        )
        .expect(Transport(&[400])),
        Case::new(
            "/authorize with a NUL client_id",
            "GET",
            "/authorize?client_id=%00",
        )
        .expect(Page(400)),
        Case::new(
            "/authorize with client_id twice",
            "GET",
            format!(
                "{}&client_id={PUBLIC_CLIENT}",
                authorize(PUBLIC_CLIENT, &[])
            ),
        )
        .expect(Page(400)),
        Case::new(
            "/authorize with client_id twice, another client first",
            "GET",
            format!(
                "/authorize?client_id={WEB_CLIENT}&{}",
                &authorize(PUBLIC_CLIENT, &[])["/authorize?".len()..]
            ),
        )
        .expect(Page(400)),
        Case::new(
            "/authorize with redirect_uri twice",
            "GET",
            format!(
                "{}&redirect_uri=https%3A%2F%2Fevil.example%2F",
                authorize(PUBLIC_CLIENT, &[])
            ),
        )
        .expect(Page(400)),
        Case::new(
            "/authorize with code_challenge twice",
            "GET",
            format!(
                "{}&code_challenge={CHALLENGE}",
                authorize(PUBLIC_CLIENT, &[])
            ),
        )
        .expect(ErrorRedirect("invalid_request")),
        Case::new(
            "/authorize with scope twice",
            "GET",
            format!("{}&scope=mcp%3Awrite", authorize(PUBLIC_CLIENT, &[])),
        )
        .expect(ErrorRedirect("invalid_request")),
        Case::new(
            "/authorize with 10,000 unknown parameters",
            "GET",
            format!("{}&{}", authorize(PUBLIC_CLIENT, &[]), many_params(10_000)),
        )
        .expect(Status(&[200])),
        Case::new(
            "/authorize for an unknown client",
            "GET",
            authorize("nobody", &[]),
        )
        .expect(Page(400)),
        Case::new(
            "/authorize with a 60 KB client_id",
            "GET",
            authorize(&"c".repeat(60_000), &[]),
        )
        .expect(Page(400)),
        Case::new(
            "/authorize with a 100 KB redirect_uri",
            "GET",
            authorize(
                PUBLIC_CLIENT,
                &[(
                    "redirect_uri",
                    Some(&format!("{REDIRECT}{}", "p".repeat(100 * KIB))),
                )],
            ),
        )
        .expect(Transport(&[414, 400, 431])),
        Case::new(
            "/authorize with a 60 KB redirect_uri",
            "GET",
            authorize(
                PUBLIC_CLIENT,
                &[(
                    "redirect_uri",
                    Some(&format!("{REDIRECT}{}", "p".repeat(60_000))),
                )],
            ),
        )
        .expect(Page(400)),
        Case::new(
            "/authorize with a 100 KB scope",
            "GET",
            authorize(PUBLIC_CLIENT, &[("scope", Some(&"s".repeat(100 * KIB)))]),
        )
        .expect(Transport(&[414, 400, 431])),
        Case::new(
            "/authorize with a 60 KB scope",
            "GET",
            authorize(PUBLIC_CLIENT, &[("scope", Some(&"s".repeat(60_000)))]),
        )
        .expect(ErrorRedirect("invalid_scope")),
        Case::new(
            "/authorize with response_type token",
            "GET",
            authorize(PUBLIC_CLIENT, &[("response_type", Some("token"))]),
        )
        .expect(ErrorRedirect("unsupported_response_type")),
        Case::new(
            "/authorize with response_type code token",
            "GET",
            authorize(PUBLIC_CLIENT, &[("response_type", Some("code token"))]),
        )
        .expect(ErrorRedirect("unsupported_response_type")),
        Case::new(
            "/authorize with PKCE plain",
            "GET",
            authorize(PUBLIC_CLIENT, &[("code_challenge_method", Some("plain"))]),
        )
        .expect(ErrorRedirect("invalid_request")),
        Case::new(
            "/authorize with PKCE plain and the verifier as challenge",
            "GET",
            authorize(
                PUBLIC_CLIENT,
                &[
                    ("code_challenge_method", Some("plain")),
                    ("code_challenge", Some(VERIFIER)),
                ],
            ),
        )
        .expect(ErrorRedirect("invalid_request")),
        Case::new(
            "/authorize without code_challenge_method",
            "GET",
            authorize(PUBLIC_CLIENT, &[("code_challenge_method", None)]),
        )
        .expect(ErrorRedirect("invalid_request")),
        Case::new(
            "/authorize without code_challenge",
            "GET",
            authorize(PUBLIC_CLIENT, &[("code_challenge", None)]),
        )
        .expect(ErrorRedirect("invalid_request")),
        Case::new(
            "/authorize with a 42-character challenge",
            "GET",
            authorize(PUBLIC_CLIENT, &[("code_challenge", Some(&CHALLENGE[..42]))]),
        )
        .expect(ErrorRedirect("invalid_request")),
        Case::new(
            "/authorize with a 128-character challenge",
            "GET",
            authorize(PUBLIC_CLIENT, &[("code_challenge", Some(&"A".repeat(128)))]),
        )
        .expect(ErrorRedirect("invalid_request")),
        Case::new(
            "/authorize with a standard-base64 challenge",
            "GET",
            authorize(
                PUBLIC_CLIENT,
                &[(
                    "code_challenge",
                    Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+c="),
                )],
            ),
        )
        .expect(ErrorRedirect("invalid_request")),
        Case::new(
            "/authorize with a javascript: resource",
            "GET",
            authorize(PUBLIC_CLIENT, &[("resource", Some("javascript:alert(1)"))]),
        )
        .expect(ErrorRedirect("invalid_target")),
        Case::new(
            "/authorize with a resource with a fragment",
            "GET",
            authorize(
                PUBLIC_CLIENT,
                &[("resource", Some(&format!("{}#x", stack.resource)))],
            ),
        )
        .expect(ErrorRedirect("invalid_target")),
        Case::new(
            "/authorize with a foreign resource",
            "GET",
            authorize(
                PUBLIC_CLIENT,
                &[("resource", Some("https://evil.example/mcp"))],
            ),
        )
        .expect(ErrorRedirect("invalid_target")),
        Case::new(
            "/authorize with a metadata-document client at loopback",
            "GET",
            authorize(
                "https://127.0.0.1/%3Cscript%3Ealert(1)%3C/script%3E.json",
                &[],
            ),
        )
        .expect(Page(400)),
        Case::new("/authorize", "PUT", "/authorize").expect(MethodNotAllowed),
    ]);
    for (what, redirect) in [
        (
            "userinfo before a foreign host",
            "http://127.0.0.1@evil.example/callback",
        ),
        (
            "userinfo before the loopback host",
            "http://evil.example@127.0.0.1:33418/callback",
        ),
        ("a fragment", "http://127.0.0.1:33418/callback#frag"),
        ("javascript:", "javascript:alert(document.domain)"),
        ("a lookalike host", "http://127.0.0.1.evil.example/callback"),
        ("another loopback name", "http://localhost:33418/callback"),
        ("IPv6 loopback", "http://[::1]:33418/callback"),
        ("dot segments", "http://127.0.0.1:33418/callback/../../evil"),
        (
            "an added query",
            "http://127.0.0.1:33418/callback?next=https://evil.example/",
        ),
        ("a backslash", "http://127.0.0.1\\@evil.example/callback"),
        ("no scheme", "//evil.example/callback"),
        ("https instead of http", "https://127.0.0.1:33418/callback"),
        (
            "another port on a non-loopback host",
            "https://app.example:8443/cb",
        ),
        ("a trailing slash", "https://app.example/cb/"),
        ("an upper-case host", "https://APP.example/cb"),
        ("an encoded slash", "https://app.example/cb%2F..%2Fevil"),
    ] {
        let client = if redirect.contains("app.example") || redirect.contains("APP.example") {
            WEB_CLIENT
        } else {
            PUBLIC_CLIENT
        };
        cases.push(
            Case::new(
                format!("/authorize open redirect: {what}"),
                "GET",
                authorize(client, &[("redirect_uri", Some(redirect))]),
            )
            .expect(Page(400)),
        );
    }

    // The consent form, POST /authorize.
    cases.extend([
        Case::new("/authorize form with a 1 MiB body", "POST", "/authorize")
            .form(form_1m.clone())
            .expect(TooLarge),
        Case::new("/authorize form with a 3 MiB body", "POST", "/authorize")
            .form(form_3m.clone())
            .expect(TooLarge),
        Case::new(
            "/authorize form with an unknown request",
            "POST",
            "/authorize",
        )
        .form("request_id=forged&csrf=forged&decision=approve")
        .expect(Page(400)),
        Case::new("/authorize form with invalid UTF-8", "POST", "/authorize")
            .form(b"request_id=\xff\xfe&csrf=\xc3\x28&decision=approve".to_vec())
            .expect(Page(400)),
        Case::new(
            "/authorize form with broken percent-encoding",
            "POST",
            "/authorize",
        )
        .form("request_id=%zz&csrf=%&decision=%4")
        .expect(Page(400)),
        Case::new(
            "/authorize form with a 60 KB request id",
            "POST",
            "/authorize",
        )
        .form(format!(
            "request_id={}&csrf=x&decision=approve",
            "r".repeat(60_000)
        ))
        .expect(Page(400)),
        Case::new(
            "/authorize form with a NUL request id",
            "POST",
            "/authorize",
        )
        .form("request_id=%00&csrf=%00&decision=approve")
        .expect(Page(400)),
    ]);

    // The provider's answer, GET /oauth/callback: never redirected without a live state.
    cases.extend([
        Case::new("/oauth/callback without a query", "GET", "/oauth/callback").expect(Page(400)),
        Case::new(
            "/oauth/callback with a garbage state",
            "GET",
            "/oauth/callback?state=garbage",
        )
        .expect(Page(400)),
        Case::new(
            "/oauth/callback with a code and a garbage state",
            "GET",
            "/oauth/callback?code=x&state=garbage",
        )
        .expect(Page(400)),
        Case::new(
            "/oauth/callback with an error and a garbage state",
            "GET",
            "/oauth/callback?error=access_denied&state=garbage",
        )
        .expect(Page(400)),
        Case::new(
            "/oauth/callback with an invalid UTF-8 state",
            "GET",
            "/oauth/callback?code=x&state=%ff%fe",
        )
        .expect(Page(400)),
        Case::new(
            "/oauth/callback with broken percent-encoding",
            "GET",
            "/oauth/callback?code=%zz&state=%",
        )
        .expect(Page(400)),
        Case::new(
            "/oauth/callback with a NUL state",
            "GET",
            "/oauth/callback?code=x&state=%00",
        )
        .expect(Page(400)),
        Case::new(
            "/oauth/callback with state twice",
            "GET",
            "/oauth/callback?code=x&state=a&state=b",
        )
        .expect(Page(400)),
        Case::new(
            "/oauth/callback with markup in the state",
            "GET",
            "/oauth/callback?code=x&state=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        )
        .expect(Page(400)),
        Case::new(
            "/oauth/callback with a 60 KB state",
            "GET",
            format!("/oauth/callback?code=x&state={}", "s".repeat(60_000)),
        )
        .expect(Page(400)),
        Case::new(
            "/oauth/callback with 10,000 parameters",
            "GET",
            format!("/oauth/callback?{}", many_params(10_000)),
        )
        .expect(Page(400)),
        Case::new(
            "/oauth/callback with a 64 KiB query",
            "GET",
            format!("/oauth/callback?{huge_query}"),
        )
        .expect(Transport(&[414, 400, 431])),
        Case::new("/oauth/callback", "POST", "/oauth/callback")
            .form("code=x&state=y")
            .expect(MethodNotAllowed),
    ]);

    // The browser proxy: every URL is an IP literal the guard refuses before connecting.
    let metadata_url = |q: &str| format!("/oauth/metadata?{q}");
    cases.extend([
        Case::new("/oauth/metadata without a url", "GET", "/oauth/metadata").expect(ProxyError(400)),
        Case::new("/oauth/metadata with broken percent-encoding", "GET", metadata_url("url=%zz")).expect(ProxyError(400)),
        Case::new("/oauth/metadata with invalid UTF-8", "GET", metadata_url("url=%ff%fe")).expect(ProxyError(400)),
        Case::new("/oauth/metadata with a javascript: url", "GET", metadata_url("url=javascript%3Aalert(1)")).expect(ProxyError(400)),
        Case::new("/oauth/metadata with a file: url", "GET", metadata_url("url=file%3A%2F%2F%2Fetc%2Fpasswd")).expect(ProxyError(400)),
        Case::new("/oauth/metadata at loopback", "GET", metadata_url("url=http%3A%2F%2F127.0.0.1%3A1%2F")).expect(ProxyError(403)),
        Case::new("/oauth/metadata at IPv6 loopback", "GET", metadata_url("url=http%3A%2F%2F%5B%3A%3A1%5D%2F")).expect(ProxyError(403)),
        Case::new("/oauth/metadata at 0.0.0.0", "GET", metadata_url("url=http%3A%2F%2F0.0.0.0%2F")).expect(ProxyError(403)),
        Case::new("/oauth/metadata at the cloud metadata address", "GET", metadata_url("url=http%3A%2F%2F169.254.169.254%2Flatest%2Fmeta-data")).expect(ProxyError(403)),
        Case::new("/oauth/metadata with a loopback mcp_url", "GET", metadata_url("url=http%3A%2F%2F10.0.0.1%2F.well-known%2Foauth-protected-resource&mcp_url=http%3A%2F%2F127.0.0.1%2Fmcp")).expect(ProxyError(403)),
        Case::new("/oauth/metadata with url twice", "GET", metadata_url("url=http%3A%2F%2F127.0.0.1%2F&url=http%3A%2F%2F10.0.0.1%2F")).expect(ProxyError(403)),
        Case::new("/oauth/metadata with userinfo", "GET", metadata_url("url=http%3A%2F%2Fuser%3Apass%40127.0.0.1%2F")).expect(ProxyError(403)),
        Case::new("/oauth/metadata with a 60 KB url", "GET", metadata_url(&format!("url=http%3A%2F%2F10.0.0.1%2F{}", "a".repeat(60_000)))).expect(ProxyError(403)),
        Case::new("/oauth/metadata with a 64 KiB query", "GET", metadata_url(&huge_query)).expect(Transport(&[414, 400, 431])),
        Case::new("/oauth/metadata with a garbage X-Connection-URL", "GET", metadata_url("url=http%3A%2F%2F10.0.0.1%2F"))
            .header("x-connection-url", "javascript:alert(1)")
            .expect(ProxyError(400)),
        Case::new("/oauth/metadata with a 3 MiB body", "GET", metadata_url("url=http%3A%2F%2F10.0.0.1%2F")).body(form_3m.clone()).expect(ProxyError(403)),
        Case::new("/oauth/metadata", "POST", "/oauth/metadata").json_body("{}").expect(MethodNotAllowed),
    ]);
    let envelope = |v: Value| v.to_string();
    cases.extend([
        Case::new("/oauth/proxy without a content type", "POST", "/oauth/proxy").body(envelope(json!({"url": "http://10.0.0.1/"}))).expect(ProxyError(415)),
        Case::new("/oauth/proxy with a form", "POST", "/oauth/proxy").form("url=http%3A%2F%2F10.0.0.1%2F").expect(ProxyError(415)),
        Case::new("/oauth/proxy with a form body labelled JSON", "POST", "/oauth/proxy").json_body("url=http%3A%2F%2F10.0.0.1%2F").expect(ProxyError(400)),
        Case::new("/oauth/proxy with invalid UTF-8", "POST", "/oauth/proxy").json_body(b"{\"url\":\"http://10.0.0.1/\xff\xfe\"}".to_vec()).expect(ProxyError(400)),
        Case::new("/oauth/proxy with 10,000 nested arrays", "POST", "/oauth/proxy").json_body(nested("[", 10_000)).expect(ProxyError(400)),
        Case::new("/oauth/proxy with 10,000 nested objects", "POST", "/oauth/proxy").json_body(nested("{\"a\":", 10_000)).expect(ProxyError(400)),
        Case::new("/oauth/proxy with a 1 MiB body", "POST", "/oauth/proxy").json_body(json_3m[..MIB].to_owned() + "\"}").expect(ProxyError(413)),
        Case::new("/oauth/proxy with a 3 MiB body", "POST", "/oauth/proxy").json_body(json_3m.clone()).expect(ProxyError(413)),
        Case::new("/oauth/proxy with a 3 MiB chunked body", "POST", "/oauth/proxy").json_body(json_3m.clone()).chunked().expect(ProxyError(413)),
        Case::new("/oauth/proxy with an array", "POST", "/oauth/proxy").json_body("[]").expect(ProxyError(400)),
        Case::new("/oauth/proxy with a numeric url", "POST", "/oauth/proxy").json_body(envelope(json!({"url": 5}))).expect(ProxyError(400)),
        Case::new("/oauth/proxy with a javascript: url", "POST", "/oauth/proxy").json_body(envelope(json!({"url": "javascript:alert(1)"}))).expect(ProxyError(400)),
        Case::new("/oauth/proxy to loopback", "POST", "/oauth/proxy").json_body(envelope(json!({"url": format!("{}/token", stack.issuer), "method": "POST"}))).expect(ProxyError(403)),
        Case::new("/oauth/proxy to the cloud metadata address", "POST", "/oauth/proxy").json_body(envelope(json!({"url": "http://169.254.169.254/latest/meta-data"}))).expect(ProxyError(403)),
        Case::new("/oauth/proxy with userinfo at loopback", "POST", "/oauth/proxy").json_body(envelope(json!({"url": "http://user:pw@127.0.0.1/"}))).expect(ProxyError(403)),
        Case::new("/oauth/proxy with method DELETE", "POST", "/oauth/proxy").json_body(envelope(json!({"url": "http://10.0.0.1/", "method": "DELETE"}))).expect(ProxyError(405)),
        Case::new("/oauth/proxy with a numeric method", "POST", "/oauth/proxy").json_body(envelope(json!({"url": "http://10.0.0.1/", "method": 5}))).expect(ProxyError(405)),
        Case::new("/oauth/proxy with a NUL in a header", "POST", "/oauth/proxy").json_body(envelope(json!({"url": "http://10.0.0.1/", "headers": {"authorization": "Bearer a\u{0}b"}}))).expect(ProxyError(400)),
        Case::new("/oauth/proxy with a header injection", "POST", "/oauth/proxy").json_body(envelope(json!({"url": "http://10.0.0.1/", "headers": {"content-type": "text/plain\r\nX-Injected: 1"}}))).expect(ProxyError(400)),
        Case::new("/oauth/proxy", "GET", "/oauth/proxy").expect(MethodNotAllowed),
    ]);

    // The MCP endpoint: without a token, the challenge before anything is read; with one,
    // a 4xx from the transport.
    cases.extend([
        Case::new("/mcp without a token and a 3 MiB body", "POST", "/mcp")
            .json_body(json_3m.clone())
            .expect(Challenge),
        Case::new(
            "/mcp without a token and a 3 MiB chunked body",
            "POST",
            "/mcp",
        )
        .json_body(json_3m.clone())
        .chunked()
        .expect(Challenge),
        Case::new("/mcp without a token", "GET", "/mcp").expect(Challenge),
        Case::new("/mcp without a token", "PUT", "/mcp").expect(Challenge),
        Case::new("/mcp without a token", "DELETE", "/mcp").expect(Challenge),
        Case::new("/mcp with a 10 KB token", "POST", "/mcp")
            .header("authorization", format!("Bearer {}", "a".repeat(10 * KIB)))
            .json_body("{}")
            .expect(Status(&[401, 400])),
        Case::new(
            "/mcp with a raw NUL in the Authorization header",
            "POST",
            "/mcp",
        )
        .header("authorization", b"Bearer a\0b".to_vec())
        .json_body("{}")
        .expect(Transport(&[400])),
        Case::new(
            "/mcp with a 64 KiB query",
            "POST",
            format!("/mcp?{huge_query}"),
        )
        .header("authorization", bearer.clone())
        .json_body("{}")
        .expect(Transport(&[414, 400, 431])),
    ]);
    let mcp = |name: &str| {
        Case::new(format!("/mcp with a token and {name}"), "POST", "/mcp")
            .header("authorization", bearer.clone())
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
    };
    let transport_refusal = Status(&[400, 406, 413, 415, 422]);
    cases.extend([
        // Over rmcp's 4 MiB request limit.
        mcp("a 5 MiB body")
            .json_body(format!("{{\"a\":\"{}\"}}", "b".repeat(5 * MIB)))
            .expect(TooLarge),
        mcp("a 3 MiB body")
            .json_body(json_3m.clone())
            .expect(transport_refusal),
        mcp("a 3 MiB chunked body")
            .json_body(json_3m.clone())
            .chunked()
            .expect(transport_refusal),
        mcp("invalid UTF-8")
            .json_body(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\xfe\"}".to_vec())
            .expect(transport_refusal),
        mcp("10,000 nested arrays")
            .json_body(nested("[", 10_000))
            .expect(transport_refusal),
        mcp("10,000 nested objects")
            .json_body(nested("{\"a\":", 10_000))
            .expect(transport_refusal),
        mcp("a form body")
            .form("jsonrpc=2.0&method=tools%2Flist")
            .expect(transport_refusal),
        mcp("no content type")
            .body("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}")
            .expect(transport_refusal),
        mcp("an empty body").json_body("").expect(transport_refusal),
        mcp("a raw NUL")
            .json_body(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\0\"}".to_vec())
            .expect(transport_refusal),
    ]);
    cases
}

#[tokio::test]
async fn every_route_answers_hostile_requests_with_4xx_and_keeps_serving() {
    let stack = Stack::start((None, None, None)).await;
    stack.alive().await.expect("the stack is up");
    let token = stack.access_token();
    let cases = hostile_cases(&stack, &token);
    let total = cases.len();
    println!("{total} hostile requests");
    assert!(total >= 150, "the table shrank: {total} cases");
    let failures = run(&stack, &cases).await;
    assert!(
        failures.is_empty(),
        "{} of {total} hostile requests were mishandled:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The token used above still works: nothing was corrupted.
    let (status, body) = stack.call_whoami(&token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["structuredContent"]["sub"], "mallory");
    assert_eq!(
        LIBRARY_PANICS.load(Ordering::SeqCst),
        0,
        "library code panicked"
    );
    stack.stop().await;
}

// ---------------------------------------------------------------------------------------
// Flows through the upstream stand-in.

impl Stack {
    /// The browser leg for `client`: consent (once per browser), the provider, our callback;
    /// returns the code the client receives.
    async fn code_for(&self, client: &str, jar: &mut HashMap<String, String>) -> String {
        let mut res = self
            .http
            .get(self.url(&authorize(client, &[])))
            .header("cookie", cookie_header(jar))
            .send()
            .await
            .expect("authorize");
        for _ in 0..10 {
            keep_cookies(&res, jar);
            if res.status() == 200 {
                let mut form = hidden_form_fields(&res.text().await.expect("page"));
                form.push(("decision".into(), "approve".into()));
                res = self
                    .http
                    .post(self.url("/authorize"))
                    .header("cookie", cookie_header(jar))
                    .form(&form)
                    .send()
                    .await
                    .expect("consent");
                continue;
            }
            assert!(
                matches!(res.status().as_u16(), 302 | 303),
                "{:?}",
                res.text().await
            );
            let next = res.headers()["location"].to_str().unwrap().to_owned();
            if next.starts_with(REDIRECT) {
                let query: HashMap<String, String> = url::Url::parse(&next)
                    .unwrap()
                    .query_pairs()
                    .into_owned()
                    .collect();
                return query.get("code").cloned().expect("a code");
            }
            res = self
                .http
                .get(&next)
                .header("cookie", cookie_header(jar))
                .send()
                .await
                .expect("follow");
        }
        panic!("too many redirects");
    }

    async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let res = self
            .http
            .post(self.url("/token"))
            .form(form)
            .send()
            .await
            .expect("token");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn exchange(&self, client: &str, code: &str, verifier: Option<&str>) -> (u16, Value) {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", client),
            ("redirect_uri", REDIRECT),
        ];
        if let Some(verifier) = verifier {
            form.push(("code_verifier", verifier));
        }
        self.token(&form).await
    }

    async fn refresh(&self, refresh_token: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", PUBLIC_CLIENT),
        ])
        .await
    }
}

fn error_of(answer: &(u16, Value)) -> (u16, Option<&str>) {
    (answer.0, answer.1["error"].as_str())
}

#[tokio::test]
async fn pkce_downgrades_code_replay_and_refresh_reuse_are_refused_end_to_end() {
    let stack = Stack::start((None, None, None)).await;
    let mut jar = HashMap::new();

    let no_verifier = stack
        .exchange(
            PUBLIC_CLIENT,
            &stack.code_for(PUBLIC_CLIENT, &mut jar).await,
            None,
        )
        .await;
    assert_eq!(error_of(&no_verifier), (400, Some("invalid_request")));

    let long = "a".repeat(129);
    let bad_char = format!("{}!", &VERIFIER[..42]);
    let with_nul = format!("{VERIFIER}\0");
    let other = "b".repeat(43);
    for (what, verifier) in [
        ("42 characters", &VERIFIER[..42]),
        ("129 characters", long.as_str()),
        ("a character outside the unreserved set", bad_char.as_str()),
        ("a trailing NUL", with_nul.as_str()),
        ("the challenge itself (a plain downgrade)", CHALLENGE),
        ("another well-formed verifier", other.as_str()),
    ] {
        let code = stack.code_for(PUBLIC_CLIENT, &mut jar).await;
        let answer = stack.exchange(PUBLIC_CLIENT, &code, Some(verifier)).await;
        assert_eq!(
            error_of(&answer),
            (400, Some("invalid_grant")),
            "{what}: {}",
            answer.1
        );
        // A wrong guess spends nothing (review 2, F8): the owner's verifier still works, once.
        let answer = stack.exchange(PUBLIC_CLIENT, &code, Some(VERIFIER)).await;
        assert_eq!(answer.0, 200, "{what}: {}", answer.1);
    }

    // A code issued to one client is refused to another, and stays its owner's (F8).
    let code = stack.code_for(PUBLIC_CLIENT, &mut jar).await;
    let answer = stack.exchange(WEB_CLIENT, &code, Some(VERIFIER)).await;
    assert_eq!(error_of(&answer), (400, Some("invalid_grant")));
    let answer = stack.exchange(PUBLIC_CLIENT, &code, Some(VERIFIER)).await;
    assert_eq!(answer.0, 200, "{}", answer.1);

    // Code replay: the second exchange fails and what the first issued stops working at the
    // MCP endpoint, although the token was verified (and cached) before.
    let code = stack.code_for(PUBLIC_CLIENT, &mut jar).await;
    let (status, first) = stack.exchange(PUBLIC_CLIENT, &code, Some(VERIFIER)).await;
    assert_eq!(status, 200, "{first}");
    let access = first["access_token"].as_str().expect("at").to_owned();
    let (status, body) = stack.call_whoami(&access).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"]["structuredContent"]["sub"],
        "upstream-user-7"
    );
    let replay = stack.exchange(PUBLIC_CLIENT, &code, Some(VERIFIER)).await;
    assert_eq!(error_of(&replay), (400, Some("invalid_grant")));
    assert_eq!(stack.call_whoami(&access).await.0, 401);
    let refresh = stack
        .refresh(first["refresh_token"].as_str().expect("rt"))
        .await;
    assert_eq!(error_of(&refresh), (400, Some("invalid_grant")));

    // Refresh-token reuse after rotation revokes the whole grant.
    let code = stack.code_for(PUBLIC_CLIENT, &mut jar).await;
    let (status, t1) = stack.exchange(PUBLIC_CLIENT, &code, Some(VERIFIER)).await;
    assert_eq!(status, 200, "{t1}");
    let (status, t2) = stack
        .refresh(t1["refresh_token"].as_str().expect("rt"))
        .await;
    assert_eq!(status, 200, "{t2}");
    assert_ne!(t2["refresh_token"], t1["refresh_token"], "rotated");
    let t2_access = t2["access_token"].as_str().expect("at").to_owned();
    assert_eq!(stack.call_whoami(&t2_access).await.0, 200);
    let reuse = stack
        .refresh(t1["refresh_token"].as_str().expect("rt"))
        .await;
    assert_eq!(error_of(&reuse), (400, Some("invalid_grant")));
    let after = stack
        .refresh(t2["refresh_token"].as_str().expect("rt"))
        .await;
    assert_eq!(
        error_of(&after),
        (400, Some("invalid_grant")),
        "the rotated token died with its grant"
    );
    for access in [t1["access_token"].as_str().expect("at"), &t2_access] {
        let (status, body) = stack.call_whoami(access).await;
        assert_eq!(status, 401, "{body}");
    }
    stack.alive().await.expect("still serving");
    stack.stop().await;
}

/// The element names in `html`, in order.
fn tags(html: &str) -> Vec<String> {
    html.split('<')
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '!' | '-'))
                .collect::<String>()
                .to_ascii_lowercase()
        })
        .collect()
}

#[tokio::test]
async fn hostile_client_names_come_back_escaped_on_the_consent_page() {
    let stack = Stack::start((None, None, None)).await;
    let page_for = async |name: &str| {
        let res = stack
            .http
            .post(stack.url("/register"))
            .json(&json!({"redirect_uris": ["http://127.0.0.1/callback"], "token_endpoint_auth_method": "none", "client_name": name}))
            .send()
            .await
            .expect("register");
        assert_eq!(res.status(), 201, "{name:?}");
        let registered: Value = res.json().await.expect("json");
        assert_eq!(registered["client_name"], name, "stored as given");
        let client = registered["client_id"].as_str().expect("id").to_owned();
        let res = stack
            .http
            .get(stack.url(&authorize(&client, &[])))
            .send()
            .await
            .expect("authorize");
        assert_eq!(res.status(), 200, "{name:?}");
        assert!(
            res.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
        res.text().await.expect("html")
    };
    let benign = tags(&page_for("Plain Client").await);
    // As many as registration metadata holds (8 KiB, review 2 F7).
    let many_scripts = "<script>".repeat(900);
    for name in [
        "<script>alert(1)</script>",
        "\"><img src=x onerror=alert(1)>",
        "'><svg/onload=alert(1)>",
        "</title><script>alert(document.cookie)</script>",
        "<!--",
        "Evil\u{0}Corp\u{7}\u{1b}[31m\r\n<b>bold</b>\u{85}\u{2028}",
        "<a href=\"javascript:alert(1)\">click</a>",
        "&lt;pre-escaped&gt; &amp; <iframe src=//evil.example>",
        many_scripts.as_str(),
    ] {
        let html = page_for(name).await;
        assert_eq!(
            tags(&html),
            benign,
            "the page has exactly the template's elements for {:?}",
            name.chars().take(60).collect::<String>()
        );
        assert!(!html.contains("<script"), "{name:?}");
        assert!(
            !html.chars().any(char::is_control),
            "control characters (C0 and C1) are dropped: {name:?}"
        );
    }
    let html = page_for("<script>alert(1)</script>").await;
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the name is shown, escaped"
    );
    let html = page_for("\"><img src=x onerror=alert(1)>").await;
    assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
    stack.stop().await;
}

#[tokio::test]
async fn proxy_mode_authorize_callback_and_revoke_are_rate_limited_per_address() {
    let stack = Stack::start((Some(RateLimit::new(1, 2)), None, Some(RateLimit::new(1, 3)))).await;
    let garbage_revoke = [("token", "x"), ("client_id", "nobody")];
    for (path, burst, first) in [
        ("/authorize?client_id=nobody", 3, 400),
        ("/oauth/callback?code=x&state=garbage", 3, 400),
        ("/revoke", 2, 401),
    ] {
        let send = || async {
            let req = if path == "/revoke" {
                stack.http.post(stack.url(path)).form(&garbage_revoke)
            } else {
                stack.http.get(stack.url(path))
            };
            req.send().await.expect("send")
        };
        for i in 0..burst {
            assert_eq!(
                send().await.status(),
                first,
                "{path} #{i} is within the burst"
            );
        }
        let res = send().await;
        assert_eq!(res.status(), 429, "{path} past the burst");
        let wait: u64 = res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .expect("Retry-After in seconds");
        assert!((1..=60).contains(&wait), "{path}: Retry-After {wait}");
        assert_eq!(res.headers()["content-type"], "application/json");
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["error"], "temporarily_unavailable", "{path}");
    }
    // Another client address has buckets of its own.
    let other = reqwest::Client::builder()
        .redirect(Policy::none())
        .local_address(IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client");
    let res = other
        .get(stack.url("/authorize?client_id=nobody"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 400, "another address is not limited");
    let res = other
        .post(stack.url("/revoke"))
        .form(&garbage_revoke)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 401);
    // The limited address still reaches unlimited routes.
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-authorization-server",
        "/jwks",
    ] {
        let res = stack.http.get(stack.url(path)).send().await.expect("get");
        assert_eq!(res.status(), 200, "{path}");
    }
    let res = stack.http.post(&stack.resource).send().await.expect("mcp");
    assert_eq!(res.status(), 401);
    stack.stop().await;
}

// ---------------------------------------------------------------------------------------
// Library bugs found by the table (see the report): each test fails until fixed.

/// RFC 6749 §3.1: "Request and response parameters MUST NOT be included more than once";
/// RFC 7009 §2.1: the request is `application/x-www-form-urlencoded`. The token endpoint
/// enforces both; revocation accepted a repeated `token` or `client_id` (the last one won)
/// and bodies of any content type.
#[tokio::test]
async fn revocation_refuses_repeated_parameters_and_non_form_bodies() {
    use Expect::*;
    let stack = Stack::start((None, None, None)).await;
    let invalid = OAuth(&[400], &["invalid_request"]);
    let cases = [
        Case::new("/revoke with token twice", "POST", "/revoke")
            .form(format!("token=a&token=b&client_id={PUBLIC_CLIENT}"))
            .expect(invalid),
        Case::new("/revoke with client_id twice", "POST", "/revoke")
            .form(format!(
                "token=a&client_id=nobody&client_id={PUBLIC_CLIENT}"
            ))
            .expect(invalid),
        Case::new("/revoke without a content type", "POST", "/revoke")
            .body(format!("token=a&client_id={PUBLIC_CLIENT}"))
            .expect(invalid),
        Case::new("/revoke with a JSON body", "POST", "/revoke")
            .json_body(json!({"token": "a", "client_id": PUBLIC_CLIENT}).to_string())
            .expect(invalid),
    ];
    let failures = run(&stack, &cases).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    stack.stop().await;
}

/// A consent form the server cannot read is answered with the error page (HTML, no-store,
/// CSP), like every other `/authorize` error that cannot be redirected, not with axum's
/// plain-text extractor rejection.
#[tokio::test]
async fn malformed_consent_forms_get_the_error_page() {
    use Expect::*;
    let stack = Stack::start((None, None, None)).await;
    let cases = [
        Case::new(
            "/authorize form with request_id twice",
            "POST",
            "/authorize",
        )
        .form("request_id=a&request_id=b&csrf=x&decision=approve")
        .expect(Page(400)),
        Case::new("/authorize form without decision", "POST", "/authorize")
            .form("request_id=a&csrf=x")
            .expect(Page(400)),
        Case::new(
            "/authorize form with 10,000 unknown parameters",
            "POST",
            "/authorize",
        )
        .form(many_params(10_000))
        .expect(Page(400)),
        Case::new("/authorize form as JSON", "POST", "/authorize")
            .json_body(json!({"request_id": "a", "csrf": "x", "decision": "approve"}).to_string())
            .expect(Page(400)),
        Case::new(
            "/authorize form without a content type",
            "POST",
            "/authorize",
        )
        .body("request_id=a&csrf=x&decision=approve")
        .expect(Page(400)),
    ];
    let failures = run(&stack, &cases).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    stack.stop().await;
}

/// A body over the 64 KiB limit is refused with 413 in the endpoint's own error format:
/// RFC 6749 §5.2 / RFC 7591 §3.2.2 JSON at `/token`, `/register` and `/revoke` (clients
/// parse it), the error page at `/authorize`, not tower-http's plain text.
#[tokio::test]
async fn oversized_bodies_get_errors_in_the_endpoint_format() {
    use Expect::*;
    let stack = Stack::start((None, None, None)).await;
    let form = format!("a={}", "b".repeat(MIB));
    let json_body =
        json!({"redirect_uris": ["http://127.0.0.1/cb"], "client_name": "n".repeat(MIB)})
            .to_string();
    let too_large = OAuth(&[413], &["invalid_request"]);
    let cases = [
        Case::new("/token with a 1 MiB body", "POST", "/token")
            .form(form.clone())
            .expect(too_large),
        Case::new("/token with a 1 MiB chunked body", "POST", "/token")
            .form(form.clone())
            .chunked()
            .expect(too_large),
        Case::new("/register with a 1 MiB body", "POST", "/register")
            .json_body(json_body.clone())
            .expect(OAuth(&[413], &["invalid_client_metadata"])),
        Case::new("/register with a 1 MiB chunked body", "POST", "/register")
            .json_body(json_body)
            .chunked()
            .expect(OAuth(&[413], &["invalid_client_metadata"])),
        Case::new("/revoke with a 1 MiB body", "POST", "/revoke")
            .form(form.clone())
            .expect(too_large),
        Case::new("/authorize form with a 1 MiB body", "POST", "/authorize")
            .form(form)
            .expect(Page(413)),
    ];
    let failures = run(&stack, &cases).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    stack.stop().await;
}
