//! Shared by the gateway's tests: a token issuer, the gateway on 127.0.0.1, rmcp clients.

#![allow(
    dead_code,
    deprecated,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mcp_oauth::testing::TestKey;
use mcp_oauth::verify::JwtVerifier;
use mcp_oauth::{OAuth, OAuthBuilder};
use mcp_oauth_gateway::gate::Gatekeeper;
use mcp_oauth_gateway::{Gateway, GatewayBuilder, UpstreamConfig};
use rmcp::model::{
    CallToolRequestParams, ClientConfig, CreateMessageRequestParams, CreateMessageResult,
    ErrorData, ProgressNotificationParam,
};
use rmcp::service::{NotificationContext, RequestContext, RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ServiceExt};
use serde_json::json;
use tokio::sync::oneshot;

pub const ISSUER: &str = "https://issuer.test";
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `check` until it returns `Some`, or panics naming `what` after [`DEADLINE`].
pub async fn poll<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running gateway on 127.0.0.1; stopped when dropped.
pub struct Harness {
    pub addr: SocketAddr,
    pub url: String,
    pub key: TestKey,
    pub gateway: Gateway,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Harness {
    pub async fn start(upstream: impl Into<UpstreamConfig>) -> Self {
        Self::start_with(upstream, |b| b).await
    }

    pub async fn with_gatekeeper(
        upstream: impl Into<UpstreamConfig>,
        gatekeeper: impl Gatekeeper,
    ) -> Self {
        Self::start_with(upstream, |b| b.gatekeeper(gatekeeper)).await
    }

    pub async fn start_with(
        upstream: impl Into<UpstreamConfig>,
        configure: impl FnOnce(GatewayBuilder) -> GatewayBuilder,
    ) -> Self {
        let upstream = upstream.into();
        Self::build(|oauth| configure(Gateway::builder(upstream).oauth(oauth))).await
    }

    /// A gateway in front of several named upstreams.
    pub async fn several(
        upstreams: Vec<(&str, UpstreamConfig)>,
        configure: impl FnOnce(GatewayBuilder) -> GatewayBuilder,
    ) -> Self {
        Self::build(|oauth| configure(Gateway::aggregate(upstreams).oauth(oauth))).await
    }

    /// A gateway whose resource-server configuration `oauth` completes (DPoP, for one).
    pub async fn with_oauth(
        upstream: impl Into<UpstreamConfig>,
        oauth: impl FnOnce(OAuthBuilder) -> OAuthBuilder,
    ) -> Self {
        let upstream = upstream.into();
        Self::build_with(oauth, |oauth| Gateway::builder(upstream).oauth(oauth)).await
    }

    async fn build(make: impl FnOnce(OAuth) -> GatewayBuilder) -> Self {
        Self::build_with(|b| b, make).await
    }

    async fn build_with(
        configure_oauth: impl FnOnce(OAuthBuilder) -> OAuthBuilder,
        make: impl FnOnce(OAuth) -> GatewayBuilder,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}/mcp");
        let key = TestKey::es256();
        let verifier = JwtVerifier::builder()
            .issuer(ISSUER)
            .jwk(&key.public_jwk().unwrap())
            .build()
            .unwrap();
        let oauth = configure_oauth(
            OAuth::builder()
                .resource(url.clone())
                .authorization_server(ISSUER)
                .scopes_supported(["mcp:read"])
                .verifier(verifier)
                .mirror_authorization_server(false),
        )
        .build()
        .unwrap();
        let gateway = make(oauth).build().unwrap();
        let app = gateway
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            addr,
            url,
            key,
            gateway,
            stop: Some(stop),
        }
    }

    pub fn token(&self, sub: &str) -> String {
        self.key
            .token()
            .iss(ISSUER)
            .aud(&self.url)
            .sub(sub)
            .scope("mcp:read")
            .sign()
    }

    pub async fn client(&self, sub: &str) -> Client {
        connect(&self.url, &self.token(sub), sub).await
    }
}

/// What a test client saw: progress notifications.
#[derive(Clone, Default)]
pub struct TestClient {
    pub name: String,
    pub progress: Arc<Mutex<Vec<f64>>>,
}

impl ClientHandler for TestClient {
    fn get_info(&self) -> ClientConfig {
        serde_json::from_value(json!({
            "protocolVersion": "2025-11-25",
            "capabilities": { "sampling": {} },
            "clientInfo": { "name": self.name, "version": "1.0.0" },
        }))
        .unwrap()
    }

    #[allow(deprecated)]
    async fn create_message(
        &self,
        _params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        Ok(serde_json::from_value(json!({
            "role": "assistant",
            "content": { "type": "text", "text": format!("sampled by {}", self.name) },
            "model": "test-model",
        }))
        .unwrap())
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress.lock().unwrap().push(params.progress);
    }
}

pub type Client = RunningService<RoleClient, TestClient>;

pub async fn connect(url: &str, token: &str, name: &str) -> Client {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).auth_header(token.to_owned()),
    );
    TestClient {
        name: name.to_owned(),
        ..TestClient::default()
    }
    .serve(transport)
    .await
    .unwrap()
}

/// Calls a tool and returns its first text content.
pub async fn call(client: &Client, tool: &str, args: serde_json::Value) -> Result<String, String> {
    let mut params = CallToolRequestParams::new(tool.to_owned());
    if let serde_json::Value::Object(map) = args {
        params = params.with_arguments(map);
    }
    let result = client.call_tool(params).await.map_err(|e| e.to_string())?;
    let value = serde_json::to_value(&result).unwrap();
    Ok(value["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// A raw POST to the gateway.
pub async fn post(
    url: &str,
    token: Option<&str>,
    session: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    request.send().await.unwrap()
}

pub const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

/// Opens a session with raw requests; returns its id.
pub async fn raw_session(url: &str, token: &str) -> String {
    let response = post(url, Some(token), None, INITIALIZE).await;
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["result"]["protocolVersion"], "2025-06-18", "{body}");
    let ack = post(
        url,
        Some(token),
        Some(&session),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(ack.status(), 202);
    session
}

/// The JSON-RPC messages of a response body (JSON or SSE).
pub async fn messages(response: reqwest::Response) -> Vec<serde_json::Value> {
    let sse = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
    let text = response.text().await.unwrap();
    if !sse {
        return vec![serde_json::from_str(&text).unwrap()];
    }
    text.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            (!data.is_empty() && !data.concat().is_empty())
                .then(|| serde_json::from_str(&data.join("\n")).unwrap())
        })
        .collect()
}

/// The stdio upstream for tests: the test server binary, with `env` set.
pub fn stdio_upstream() -> mcp_oauth_gateway::StdioConfig {
    mcp_oauth_gateway::StdioConfig::new(
        env!("CARGO_BIN_EXE_mcp-oauth-gateway-test-upstream"),
        Vec::<String>::new(),
    )
}
