//! What the gateway costs per call: `tools/call echo` sent through the gateway's router
//! in-process (`tower::ServiceExt::oneshot`, no client socket), in a session, to a stand-in
//! Streamable HTTP upstream on 127.0.0.1 that answers from a fixed text. Three gateways:
//!
//! - `auth_off`: `GatewayBuilder::insecure_no_auth` (what `bench-gateway` serves);
//! - `auth_on`: the bearer layer, ES256 tokens verified against a fixed key (cached);
//! - `auth_policy_audit`: the same, with the access policy of `bench/gateway-policy.toml`
//!   decided as `mcp-oauth gateway --policy` decides it (the arguments checked, the caller
//!   prepared once per token, one Cedar decision at the first call, kept with the caller for
//!   the same call after) and an audit file (one JSON line per call, arguments hashed);
//! - `auth_policy_per_call_audit`: the same with the caller described to Cedar anew at every
//!   call (`Policy::decide` with a fresh `Subject`, as the command did before it used
//!   `Policy::decide_for`).
//!
//! `direct` is the stand-in upstream alone, through the same HTTP client the gateway uses
//! (reqwest), for scale.
//!
//! ```text
//! cargo bench -p mcp-oauth-gateway --features test-upstream --bench gateway
//! ```
//!
//! With `GATEWAY_COST=ROW:N` in the environment, the bench makes N calls through that row and
//! exits instead (no criterion): `bench/gateway-cost` runs it under callgrind to count the
//! instructions one call costs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a measuring tool

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use criterion::{Criterion, criterion_group};
use http::{HeaderValue, Request, StatusCode};
use mcp_oauth::Auth;
use mcp_oauth::OAuth;
use mcp_oauth::policy::{Catalog, Policy, PolicyConfig, Subject, Target};
use mcp_oauth::testing::TestKey;
use mcp_oauth::verify::JwtVerifier;
use mcp_oauth_gateway::gate::{Call, Decision, Gatekeeper};
use mcp_oauth_gateway::{Gateway, HttpConfig};
use serde_json::Value;
use tower::ServiceExt;

const ISSUER: &str = "https://issuer.test";
const HOST: &str = "127.0.0.1:8080";
const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;
const INIT: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#;
const TOOLS: &str = r#"{"tools":[{"name":"echo","inputSchema":{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}},{"name":"whoami","inputSchema":{"type":"object","properties":{}}}]}"#;

/// The stand-in upstream: a session id on `initialize`, 202 for notifications, the tool list,
/// and `{"content":[{"type":"text","text":"hi"}]}` for any other request, as JSON.
async fn upstream(request: axum::extract::Request) -> axum::response::Response {
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap();
    let message: Value = serde_json::from_slice(&body).unwrap();
    let Some(id) = message.get("id") else {
        return StatusCode::ACCEPTED.into_response_ext();
    };
    let method = message
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let result = match method {
        "initialize" => {
            r#"{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"stand-in","version":"1"}}"#
        }
        "tools/list" => TOOLS,
        _ => r#"{"content":[{"type":"text","text":"hi"}]}"#,
    };
    let text = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#);
    let mut response = axum::response::Response::new(Body::from(text));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if method == "initialize" {
        response
            .headers_mut()
            .insert("mcp-session-id", HeaderValue::from_static("up-1"));
    }
    response
}

trait IntoResponseExt {
    fn into_response_ext(self) -> axum::response::Response;
}

impl IntoResponseExt for StatusCode {
    fn into_response_ext(self) -> axum::response::Response {
        let mut response = axum::response::Response::new(Body::empty());
        *response.status_mut() = self;
        response
    }
}

async fn serve_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let app = axum::Router::new().route("/mcp", axum::routing::post(upstream));
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}/mcp")
}

/// `mcp-oauth gateway --policy`'s decision for a `tools/call` (the command's gatekeeper
/// lives in the command's crate): the params read into a value, one policy decision for the
/// caller prepared once per token (`Policy::decide_for`), or, with `per_call`, for a subject
/// made anew at each call (`Policy::decide`: the caller described to Cedar at every call).
struct PolicyGate {
    policy: Policy,
    per_call: bool,
}

impl Gatekeeper for PolicyGate {
    fn decide(&self, caller: Option<&Auth>, call: &Call<'_>) -> Decision {
        let params: Value = call
            .params()
            .and_then(|p| serde_json::from_str(p.get()).ok())
            .unwrap_or(Value::Null);
        match Target::from_request(call.method(), &params) {
            Some((target, arguments)) => {
                let decision = match caller {
                    Some(auth) if !self.per_call => self.policy.decide_for(auth, target, arguments),
                    Some(auth) => {
                        self.policy
                            .decide(&Subject::from_claims(&auth.claims), target, arguments)
                    }
                    None => self
                        .policy
                        .decide(&Subject::new("anonymous"), target, arguments),
                };
                if decision.is_allowed() {
                    Decision::Allow
                } else {
                    Decision::Deny
                }
            }
            None => Decision::Allow,
        }
    }
}

fn policy() -> Policy {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../bench/gateway-policy.toml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let config = PolicyConfig::from_toml(&text, path).unwrap();
    let catalog = Catalog::from_json_str(TOOLS).unwrap();
    Policy::new(config, catalog).unwrap()
}

/// One gateway row: its router, the token its calls carry, and its session.
struct Row {
    router: axum::Router,
    token: Option<String>,
    session: HeaderValue,
    _audit: Option<AuditFile>,
}

/// The audit file of a row, removed with it.
struct AuditFile(std::path::PathBuf);

impl Drop for AuditFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[allow(clippy::enum_variant_names)] // the rows' names
enum Kind {
    AuthOff,
    AuthOn,
    AuthPolicyAudit,
    AuthPolicyPerCallAudit,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::AuthOff,
        Kind::AuthOn,
        Kind::AuthPolicyAudit,
        Kind::AuthPolicyPerCallAudit,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::AuthOff => "auth_off",
            Kind::AuthOn => "auth_on",
            Kind::AuthPolicyAudit => "auth_policy_audit",
            Kind::AuthPolicyPerCallAudit => "auth_policy_per_call_audit",
        }
    }
}

fn request(
    body: &'static str,
    token: Option<&str>,
    session: Option<&HeaderValue>,
) -> Request<Body> {
    let mut request = Request::post("/mcp")
        .header("host", HOST)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .body(Body::from(body))
        .unwrap();
    let headers = request.headers_mut();
    if let Some(token) = token {
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
    }
    if let Some(session) = session {
        headers.insert("mcp-session-id", session.clone());
    }
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    request
}

async fn send(router: &axum::Router, request: Request<Body>) -> (StatusCode, bytes::Bytes) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, body)
}

async fn row(kind: Kind, upstream: &str, key: &TestKey) -> Row {
    let config = HttpConfig::new(upstream).unwrap();
    let mut builder = Gateway::builder(config);
    let mut token = None;
    let mut audit_dir = None;
    if kind == Kind::AuthOff {
        builder = builder.insecure_no_auth();
    } else {
        let resource = format!("http://{HOST}/mcp");
        let verifier = JwtVerifier::builder()
            .issuer(ISSUER)
            .jwk(&key.public_jwk().unwrap())
            .build()
            .unwrap();
        let oauth = OAuth::builder()
            .resource(resource.clone())
            .authorization_server(ISSUER)
            .scopes_supported(["mcp:read"])
            .verifier(verifier)
            .mirror_authorization_server(false)
            .build()
            .unwrap();
        builder = builder.oauth(oauth);
        token = Some(
            key.token()
                .iss(ISSUER)
                .aud(&resource)
                .sub("bench")
                .scope("mcp:read")
                .exp_in(24 * 3600)
                .sign(),
        );
    }
    if matches!(kind, Kind::AuthPolicyAudit | Kind::AuthPolicyPerCallAudit) {
        let file = AuditFile(std::env::temp_dir().join(format!(
            "mcp-oauth-gateway-bench-{}.jsonl",
            std::process::id()
        )));
        let audit = mcp_oauth::AuditLog::builder()
            .file(&file.0)
            .build()
            .unwrap();
        let gate = PolicyGate {
            policy: policy(),
            per_call: kind == Kind::AuthPolicyPerCallAudit,
        };
        builder = builder.gatekeeper(gate).audit(audit);
        audit_dir = Some(file);
    }
    let gateway = builder.build().unwrap();
    gateway
        .ready(std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let router = gateway.router();
    let response = router
        .clone()
        .oneshot(request(INIT, token.as_deref(), None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{kind:?}: initialize");
    let session = response.headers().get("mcp-session-id").unwrap().clone();
    let _ = axum::body::to_bytes(response.into_body(), 1 << 20).await;
    let (status, _) = send(
        &router,
        request(
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            token.as_deref(),
            Some(&session),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{kind:?}: initialized");
    let row = Row {
        router,
        token,
        session,
        _audit: audit_dir,
    };
    let (status, body) = row.call().await;
    assert_eq!(status, StatusCode::OK, "{kind:?}: tools/call");
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains(r#""text":"hi""#), "{kind:?}: {body}");
    row
}

impl Row {
    async fn call(&self) -> (StatusCode, bytes::Bytes) {
        send(
            &self.router,
            request(CALL, self.token.as_deref(), Some(&self.session)),
        )
        .await
    }
}

async fn direct_call(client: &reqwest::Client, url: &str) -> bytes::Bytes {
    client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", "up-1")
        .body(CALL)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    // One worker thread, as a gateway on a small machine: the numbers are per core.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let key = TestKey::es256();
    let url = rt.block_on(serve_upstream());
    let client = reqwest::Client::new();
    let mut group = c.benchmark_group("gateway_echo");
    group.bench_function("direct", |b| {
        b.to_async(&rt).iter(|| direct_call(&client, &url));
    });
    for kind in Kind::ALL {
        let row = rt.block_on(row(kind, &url, &key));
        group.bench_function(kind.name(), |b| b.to_async(&rt).iter(|| row.call()));
    }
    group.finish();
}

/// `GATEWAY_COST=ROW:N`: N calls through ROW, nothing else.
fn cost(spec: &str) {
    let (name, calls) = spec.split_once(':').expect("GATEWAY_COST=ROW:N");
    let calls: usize = calls.parse().expect("GATEWAY_COST=ROW:N");
    let rt = runtime();
    rt.block_on(async {
        let url = serve_upstream().await;
        if name == "direct" {
            let client = reqwest::Client::new();
            for _ in 0..calls {
                direct_call(&client, &url).await;
            }
            return;
        }
        let kind = Kind::ALL.into_iter().find(|k| k.name() == name).expect(
            "ROW: direct, auth_off, auth_on, auth_policy_audit or auth_policy_per_call_audit",
        );
        let key = TestKey::es256();
        let row = row(kind, &url, &key).await;
        for _ in 0..calls {
            let (status, _) = row.call().await;
            assert_eq!(status, StatusCode::OK);
        }
    });
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(spec) = std::env::var("GATEWAY_COST") {
        cost(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
