//! `McpServer` end to end over real HTTP on 127.0.0.1: discovery routes, CORS, the
//! challenge table as MCP clients meet it, tools with `Auth`, step-up, sessions, the rmcp
//! extractor and the start-up issuer check.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod common;

use common::Served;
use mcp_oauth::server::{McpServer, NoArgs, Tool, ToolContext, ToolError};
use mcp_oauth::testing::{MockIdp, TestKey};
use mcp_oauth::verify::JwtVerifier;
use mcp_oauth::{Auth, OAuth};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use tokio::net::TcpListener;

struct Running {
    idp: MockIdp,
    url: String,
    origin: String,
    http: reqwest::Client,
    served: Served,
}

impl Running {
    async fn stop(self) {
        self.served.stop().await;
    }
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Echo {
    text: String,
}

fn tools(server: McpServer) -> McpServer {
    server
        .tool(Tool::new("whoami", "Who is calling", |_: NoArgs, ctx: ToolContext| async move {
            let auth = ctx.require_auth()?;
            Ok::<_, ToolError>(json!({"sub": auth.subject(), "scopes": auth.scopes, "client_id": auth.client_id}))
        }))
        .tool(Tool::new("echo", "Echo", |args: Echo, _ctx: ToolContext| async move { args.text }))
        .tool(Tool::new("admin_action", "Admin only", |_: NoArgs, _ctx: ToolContext| async move { "admin done" }).require_scopes(["admin"]))
}

async fn start_with(
    idp: MockIdp,
    sessions: bool,
    configure: impl FnOnce(mcp_oauth::OAuthBuilder) -> mcp_oauth::OAuthBuilder,
) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    let url = format!("{origin}/mcp");
    let verifier = JwtVerifier::builder()
        .issuer(idp.issuer())
        .jwks_url(idp.jwks_url())
        .build()
        .expect("verifier");
    let builder = OAuth::builder()
        .resource(url.clone())
        .authorization_server(idp.issuer())
        .scopes_supported(["mcp:read", "mcp:write"])
        .verifier(verifier);
    let oauth = configure(builder).build().expect("oauth");
    let server = tools(McpServer::new("test-server", "1.2.3").oauth(oauth)).sessions(sessions);
    Running {
        idp,
        url,
        origin,
        http: reqwest::Client::new(),
        served: Served::mcp(listener, server),
    }
}

async fn start() -> Running {
    start_with(
        MockIdp::start(TestKey::rs256()).await.expect("idp"),
        false,
        |b| b,
    )
    .await
}

async fn rpc(
    r: &Running,
    token: Option<&str>,
    version: &str,
    body: Value,
    extra: &[(&str, &str)],
) -> (u16, HeaderMap, Value) {
    let mut req = r
        .http
        .post(&r.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", version)
        .body(body.to_string());
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    for (name, value) in extra {
        req = req.header(*name, *value);
    }
    let res = req.send().await.expect("send");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.expect("body");
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn call(name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
}

fn www(headers: &HeaderMap) -> &str {
    headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn protected_resource_metadata_at_both_locations() {
    let r = start().await;
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let res = r
            .http
            .get(format!("{}{path}", r.origin))
            .header("origin", "https://inspector.example")
            .send()
            .await
            .expect("get");
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(
            res.headers().get("access-control-allow-origin"),
            Some(&HeaderValue::from_static("*"))
        );
        let body = res.text().await.expect("body");
        assert_eq!(
            body,
            format!(
                r#"{{"resource":"{}","authorization_servers":["{}"],"scopes_supported":["mcp:read","mcp:write"],"bearer_methods_supported":["header"]}}"#,
                r.url,
                r.idp.issuer()
            )
        );
    }
    // Browser clients send MCP-Protocol-Version on metadata requests: the preflight allows it.
    let res = r
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/.well-known/oauth-protected-resource/mcp", r.origin),
        )
        .header("origin", "https://inspector.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "mcp-protocol-version")
        .send()
        .await
        .expect("preflight");
    assert!(res.status().is_success());
    assert!(res.headers().contains_key("access-control-allow-headers"));
    r.stop().await;
}

#[tokio::test]
async fn authorization_server_metadata_is_mirrored_byte_for_byte() {
    let r = start().await;
    let upstream = r
        .http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            r.idp.issuer()
        ))
        .send()
        .await
        .expect("get");
    let upstream = upstream.bytes().await.expect("body");
    let hits = r.idp.metadata_hits();
    // Ten mirror requests, and at most two upstream fetches: the start-up check that `serve`
    // spawns (it may still be running) and one for the mirror. Without a cache there would
    // be at least ten.
    let paths = [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ];
    for path in paths.iter().cycle().take(10) {
        let res = r
            .http
            .get(format!("{}{path}", r.origin))
            .send()
            .await
            .expect("get");
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers().get("content-type"),
            Some(&HeaderValue::from_static("application/json"))
        );
        assert_eq!(res.bytes().await.expect("body"), upstream, "{path}");
    }
    let fetched = r.idp.metadata_hits() - hits;
    assert!(
        fetched <= 2,
        "the mirror is cached: {fetched} upstream fetches for 10 requests"
    );
    r.stop().await;
}

#[tokio::test]
async fn mirror_answers_502_when_upstream_is_down_and_nothing_is_cached() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    idp.set_metadata_status(Some(500));
    let r = start_with(idp, false, |b| b).await;
    let res = r
        .http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            r.origin
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 502);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"], "upstream_unavailable");
    assert!(
        body["error_description"]
            .as_str()
            .expect("text")
            .contains(r.idp.issuer())
    );
    r.stop().await;
}

#[tokio::test]
async fn issuer_with_a_path_gets_the_path_inserted_routes() {
    let idp = MockIdp::start_with_path(TestKey::rs256(), "/realms/demo")
        .await
        .expect("idp");
    let r = start_with(idp, false, |b| b).await;
    for path in [
        "/.well-known/oauth-authorization-server/realms/demo",
        "/.well-known/openid-configuration/realms/demo",
    ] {
        let res = r
            .http
            .get(format!("{}{path}", r.origin))
            .send()
            .await
            .expect("get");
        assert_eq!(res.status(), 200, "{path}");
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["issuer"], r.idp.issuer());
    }
    r.stop().await;
}

#[tokio::test]
async fn every_method_without_a_token_is_401_before_routing() {
    let r = start().await;
    let expected = format!(
        r#"Bearer resource_metadata="{}/.well-known/oauth-protected-resource/mcp", scope="mcp:read mcp:write""#,
        r.origin
    );
    for method in [
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::DELETE,
        reqwest::Method::PUT,
        reqwest::Method::HEAD,
    ] {
        let res = r
            .http
            .request(method.clone(), &r.url)
            .header("origin", "https://app.example")
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), 401, "{method}");
        assert_eq!(www(res.headers()), expected, "{method}");
        let exposed = res
            .headers()
            .get("access-control-expose-headers")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(
            exposed.contains("www-authenticate") && exposed.contains("mcp-session-id"),
            "{method}: {exposed}"
        );
    }
    let res = r
        .http
        .request(reqwest::Method::OPTIONS, &r.url)
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, mcp-protocol-version, mcp-session-id, last-event-id",
        )
        .send()
        .await
        .expect("preflight");
    assert!(res.status().is_success(), "preflight is not authenticated");
    r.stop().await;
}

#[tokio::test]
async fn tools_see_the_verified_user_and_step_up_is_http_403() {
    let r = start().await;
    let token = r
        .idp
        .token()
        .aud(&r.url)
        .scope("mcp:read")
        .claim("client_id", "cli")
        .sign();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let (status, _, body) = rpc(&r, Some(&token), "2025-11-25", init, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["serverInfo"]["name"], "test-server");

    let (status, _, body) = rpc(
        &r,
        Some(&token),
        "2025-11-25",
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = body["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["whoami", "echo", "admin_action"]);

    let (status, _, body) = rpc(
        &r,
        Some(&token),
        "2025-11-25",
        call("whoami", json!({})),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["result"]["structuredContent"],
        json!({"sub": "user-1", "scopes": ["mcp:read"], "client_id": "cli"})
    );

    let (_, _, body) = rpc(
        &r,
        Some(&token),
        "2025-11-25",
        call("echo", json!({"text": "hi"})),
        &[],
    )
    .await;
    assert_eq!(body["result"]["content"][0]["text"], "hi");

    let (status, headers, body) = rpc(
        &r,
        Some(&token),
        "2025-11-25",
        call("admin_action", json!({})),
        &[],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        www(&headers),
        format!(
            r#"Bearer error="insufficient_scope", error_description="the access token lacks a scope this request needs", resource_metadata="{}/.well-known/oauth-protected-resource/mcp", scope="admin""#,
            r.origin
        )
    );
    assert_eq!(body["error"], "insufficient_scope");

    let admin = r.idp.token().aud(&r.url).scope("mcp:read admin").sign();
    let (status, _, body) = rpc(
        &r,
        Some(&admin),
        "2025-11-25",
        call("admin_action", json!({})),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["content"][0]["text"], "admin done");

    let wrong = r.idp.token().aud("http://127.0.0.1:1/mcp").sign();
    let (status, headers, _) = rpc(
        &r,
        Some(&wrong),
        "2025-11-25",
        call("whoami", json!({})),
        &[],
    )
    .await;
    assert_eq!(status, 401);
    assert!(www(&headers).starts_with(r#"Bearer error="invalid_token", error_description="the access token was not issued for this resource""#));
    r.stop().await;
}

#[tokio::test]
async fn server_discover_of_protocol_2026_07_28_is_answered() {
    let r = start().await;
    let token = r.idp.token().aud(&r.url).sign();
    // What the Python SDK 2.3 sends first (reference/peers.md §2.3).
    let discover = json!({"jsonrpc": "2.0", "id": 0, "method": "server/discover", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "mcp", "version": "2.3.0"},
        "io.modelcontextprotocol/clientCapabilities": {}}}});
    let (status, _, body) = rpc(
        &r,
        Some(&token),
        "2026-07-28",
        discover,
        &[("mcp-method", "server/discover")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let versions = body["result"]["supportedVersions"]
        .as_array()
        .expect("supportedVersions");
    assert!(versions.iter().any(|v| v == "2026-07-28"), "{body}");
    r.stop().await;
}

#[tokio::test]
async fn sessions_are_bound_to_the_subject_that_opened_them() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let r = start_with(idp, true, |b| b).await;
    let alice = r.idp.token().sub("alice").aud(&r.url).sign();
    let bob = r.idp.token().sub("bob").aud(&r.url).sign();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let (status, headers, _) = rpc(&r, Some(&alice), "2025-06-18", init, &[]).await;
    assert_eq!(status, 200);
    let session = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("session id")
        .to_owned();
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (status, _, _) = rpc(
        &r,
        Some(&alice),
        "2025-06-18",
        initialized,
        &[("mcp-session-id", &session)],
    )
    .await;
    assert!(status == 202 || status == 200, "{status}");
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
    let (status, _, body) = rpc(
        &r,
        Some(&bob),
        "2025-06-18",
        list.clone(),
        &[("mcp-session-id", &session)],
    )
    .await;
    assert_eq!(status, 404, "bob cannot use alice's session: {body}");
    let (status, _, _) = rpc(
        &r,
        Some(&alice),
        "2025-06-18",
        list,
        &[("mcp-session-id", &session)],
    )
    .await;
    assert_eq!(status, 200);
    r.stop().await;
}

#[tokio::test]
async fn startup_check_names_both_issuers_on_mismatch() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let verifier = JwtVerifier::builder()
        .issuer(idp.issuer())
        .jwks_url(idp.jwks_url())
        .build()
        .expect("v");
    let oauth = OAuth::builder()
        .resource("http://127.0.0.1:8080/mcp")
        .authorization_server(format!("{}/", idp.issuer()))
        .verifier(verifier)
        .build()
        .expect("oauth");
    let err = oauth
        .check_authorization_server()
        .await
        .expect_err("mismatch");
    let text = err.to_string();
    assert!(
        text.contains(&format!("{:?}", format!("{}/", idp.issuer())))
            && text.contains(&format!("{:?}", idp.issuer())),
        "{text}"
    );
    let good = OAuth::oidc(idp.issuer(), "http://127.0.0.1:8080/mcp").expect("oauth");
    assert!(good.check_authorization_server().await.is_ok());
}

#[tokio::test]
async fn app_refuses_broken_tool_sets() {
    let dup = McpServer::new("s", "1")
        .tool(Tool::new("a", "x", |_: NoArgs, _c: ToolContext| async {
            "1"
        }))
        .tool(Tool::new("a", "y", |_: NoArgs, _c: ToolContext| async {
            "2"
        }));
    assert!(
        dup.app()
            .expect_err("duplicate")
            .to_string()
            .contains("two tools")
    );
    let scoped = McpServer::new("s", "1").tool(
        Tool::new("a", "x", |_: NoArgs, _c: ToolContext| async { "1" }).require_scopes(["x"]),
    );
    assert!(
        scoped
            .app()
            .expect_err("no oauth")
            .to_string()
            .contains("no OAuth")
    );
    let bad_args =
        McpServer::new("s", "1").tool(Tool::new("a", "x", |_: String, _c: ToolContext| async {
            "1"
        }));
    assert!(
        bad_args
            .app()
            .expect_err("schema")
            .to_string()
            .contains("object schema")
    );
}

mod plain_rmcp {
    use super::*;
    use mcp_oauth::rmcp::streamable_http_config;
    use rmcp::model::{CallToolResult, ContentBlock};
    use rmcp::transport::streamable_http_server::StreamableHttpService;
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::{ErrorData, tool, tool_router};
    use tower_layer::Layer as _;

    #[derive(Clone)]
    struct Plain;

    #[tool_router(server_handler)]
    impl Plain {
        #[tool(description = "Who is calling")]
        async fn whoami(&self, auth: Auth) -> Result<CallToolResult, ErrorData> {
            Ok(CallToolResult::success(vec![ContentBlock::text(format!(
                "hello {}",
                auth.subject()
            ))]))
        }
    }

    #[tokio::test]
    async fn auth_extractor_works_in_rmcp_tool_functions() {
        let idp = MockIdp::start(TestKey::es256()).await.expect("idp");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let origin = format!("http://{}", listener.local_addr().expect("addr"));
        let oauth = OAuth::builder()
            .resource(format!("{origin}/mcp"))
            .authorization_server(idp.issuer())
            .verifier(
                JwtVerifier::builder()
                    .issuer(idp.issuer())
                    .jwks_url(idp.jwks_url())
                    .build()
                    .expect("v"),
            )
            .build()
            .expect("oauth");
        let service = StreamableHttpService::new(
            || Ok(Plain),
            LocalSessionManager::default().into(),
            streamable_http_config(&oauth),
        );
        let app = axum::Router::new()
            .route_service("/mcp", oauth.layer().layer(service))
            .merge(oauth.metadata_router());
        let r = Running {
            idp,
            url: format!("{origin}/mcp"),
            origin,
            http: reqwest::Client::new(),
            served: Served::app(listener, app),
        };
        let token = r.idp.token().sub("carol").aud(&r.url).sign();
        let (status, _, body) = rpc(
            &r,
            Some(&token),
            "2025-11-25",
            call("whoami", json!({})),
            &[],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["result"]["content"][0]["text"], "hello carol");
        let (status, _, _) = rpc(&r, None, "2025-11-25", call("whoami", json!({})), &[]).await;
        assert_eq!(status, 401);
        r.stop().await;
    }
}

#[tokio::test]
async fn stateless_by_default_no_session_is_created() {
    let r = start().await;
    let token = r.idp.token().aud(&r.url).sign();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let (status, headers, _) = rpc(&r, Some(&token), "2025-06-18", init, &[]).await;
    assert_eq!(status, 200);
    assert!(headers.get("mcp-session-id").is_none());
    r.stop().await;
}

#[tokio::test]
async fn trusted_proxy_mode_follows_forwarded_headers_and_only_then() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let r = start_with(idp, false, mcp_oauth::OAuthBuilder::trust_forwarded_headers).await;
    let public = "https://mcp.public.example/mcp";
    let res = r
        .http
        .get(format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            r.origin
        ))
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "mcp.public.example")
        .send()
        .await
        .expect("get");
    let doc: Value = res.json().await.expect("json");
    assert_eq!(doc["resource"], public);
    let forwarded = [
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "mcp.public.example"),
    ];
    // The audience follows the public URL.
    let token = r.idp.token().aud(public).sign();
    let (status, _, body) = rpc(
        &r,
        Some(&token),
        "2025-11-25",
        call("whoami", json!({})),
        &forwarded,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, headers, _) = rpc(
        &r,
        None,
        "2025-11-25",
        call("whoami", json!({})),
        &forwarded,
    )
    .await;
    assert_eq!(status, 401);
    assert!(www(&headers).contains(
        r#"resource_metadata="https://mcp.public.example/.well-known/oauth-protected-resource/mcp""#
    ));
    // A token for the public URL is not valid for a request that names another host.
    let (status, _, _) = rpc(
        &r,
        Some(&token),
        "2025-11-25",
        call("whoami", json!({})),
        &[("x-forwarded-host", "other.example")],
    )
    .await;
    assert_eq!(status, 401);
    r.stop().await;

    // Without the option, the same headers change nothing.
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let r = start_with(idp, false, |b| b).await;
    let res = r
        .http
        .get(format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            r.origin
        ))
        .header("x-forwarded-host", "evil.example")
        .send()
        .await
        .expect("get");
    let doc: Value = res.json().await.expect("json");
    assert_eq!(doc["resource"], r.url.as_str());
    r.stop().await;
}
