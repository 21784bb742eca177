//! The browser proxy routes against stand-in servers on 127.0.0.1: metadata discovery (the
//! `WWW-Authenticate` hint, fallbacks), forwarding, limits, the hooks, CORS, and SSRF attempts
//! on every URL the routes fetch, each proven not to reach its target by counting requests.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;
use mcp_oauth::OAuth;
use mcp_oauth::browser_proxy::{BrowserProxy, BrowserProxyBuilder};
use mcp_oauth::net_guard::NetGuard;
use mcp_oauth::verify::JwtVerifier;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower::ServiceExt;

const PRM: &str = "/.well-known/oauth-protected-resource";
const AS_METADATA: &str = "/.well-known/oauth-authorization-server";

/// A stand-in server that records the path of every request it receives.
struct Target {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<String>>>,
}

impl Target {
    /// Starts `make(origin)` on 127.0.0.1.
    async fn start(make: impl FnOnce(String) -> Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(Mutex::new(Vec::new()));
        let seen = hits.clone();
        let app = make(format!("http://{addr}")).layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                seen.lock().unwrap().push(req.uri().path().to_owned());
                next.run(req)
            },
        ));
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self { addr, hits }
    }

    /// A server that answers 404 to everything.
    async fn empty() -> Self {
        Self::start(|_| Router::new()).await
    }

    /// A server holding a secret nobody may fetch through the proxy.
    async fn secret() -> Self {
        Self::start(|_| Router::new().route("/secret", any(|| async { "the secret" }))).await
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.lock().unwrap().len()
    }

    fn hits_on(&self, path: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }
}

/// The default proxy, with `targets` allowed through the guard.
fn proxy(targets: &[&Target]) -> BrowserProxyBuilder {
    BrowserProxy::builder().guard(guard(targets))
}

fn guard(targets: &[&Target]) -> NetGuard {
    targets
        .iter()
        .fold(NetGuard::new().allow_http(), |g, t| g.allow_host(t.host()))
}

fn app(builder: BrowserProxyBuilder) -> Router {
    builder.build().expect("proxy").router()
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let res = app.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        headers,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

fn metadata(url: &str, mcp_url: Option<&str>) -> Request<Body> {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("url", url);
    if let Some(mcp_url) = mcp_url {
        query.append_pair("mcp_url", mcp_url);
    }
    Request::get(format!("/oauth/metadata?{}", query.finish()))
        .body(Body::empty())
        .unwrap()
}

fn forward(envelope: Value) -> Request<Body> {
    Request::post("/oauth/proxy")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(envelope.to_string()))
        .unwrap()
}

/// The 403 of the guard: which host, and that the address is not public.
fn assert_guard_refused(status: StatusCode, body: &Value, host: &str) {
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "Target URL not allowed", "{body}");
    assert_eq!(body["host"], host, "{body}");
    assert_eq!(
        body["reason"],
        format!("{host} is not a public address"),
        "{body}"
    );
}

/// An MCP endpoint protected by the real bearer layer, with its metadata routes.
async fn protected_mcp_server() -> Target {
    Target::start(|origin| {
        let verifier = JwtVerifier::builder()
            .issuer("https://auth.example.com")
            .jwks_url("https://auth.example.com/jwks")
            .build()
            .expect("verifier");
        let oauth = OAuth::builder()
            .resource(format!("{origin}/mcp"))
            .authorization_server("https://auth.example.com")
            .verifier(verifier)
            .mirror_authorization_server(false)
            .build()
            .expect("oauth");
        Router::new()
            .route("/mcp", post(|| async { "tools" }))
            .layer(oauth.layer())
            .merge(oauth.metadata_router())
    })
    .await
}

/// An MCP endpoint whose challenge carries `hint` (or no `resource_metadata` at all).
fn challenging_mcp(hint: Option<String>) -> Router {
    let challenge = match hint {
        Some(hint) => format!(r#"Bearer resource_metadata="{hint}""#),
        None => "Bearer".to_owned(),
    };
    Router::new().route(
        "/mcp",
        post(move || async move {
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, challenge)],
            )
        }),
    )
}

fn document(resource: &str) -> Value {
    json!({ "resource": resource, "authorization_servers": ["https://auth.example.com"] })
}

fn redirect_to(location: String) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

// ---------------------------------------------------------------------------------------
// Metadata discovery

#[tokio::test]
async fn metadata_is_discovered_through_the_www_authenticate_hint() {
    let mcp = protected_mcp_server().await;
    let decoy = Target::empty().await;
    let app = app(proxy(&[&mcp, &decoy]));
    let (status, headers, body) = call(
        &app,
        metadata(&decoy.url(&format!("{PRM}/mcp")), Some(&mcp.url("/mcp"))),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["resource"], mcp.url("/mcp"));
    assert_eq!(
        body["authorization_servers"],
        json!(["https://auth.example.com"])
    );
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert_eq!(mcp.hits_on("/mcp"), 1);
    assert_eq!(mcp.hits_on(&format!("{PRM}/mcp")), 1);
    // The hint answered: the given URL was never needed.
    assert_eq!(decoy.hits(), 0);
}

#[tokio::test]
async fn metadata_falls_back_to_the_mcp_origin_without_a_hint() {
    let mcp = Target::start(|origin| {
        challenging_mcp(None).route(
            &format!("{PRM}/mcp"),
            get(move || async move { axum::Json(document(&format!("{origin}/mcp"))) }),
        )
    })
    .await;
    let decoy = Target::empty().await;
    let app = app(proxy(&[&mcp, &decoy]));
    let (status, _, body) = call(
        &app,
        metadata(&decoy.url(&format!("{PRM}/mcp")), Some(&mcp.url("/mcp"))),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["resource"], mcp.url("/mcp"));
    assert_eq!(mcp.hits_on("/mcp"), 1, "the hint was looked for");
    assert_eq!(
        decoy.hits_on(&format!("{PRM}/mcp")),
        1,
        "then the given URL"
    );
}

#[tokio::test]
async fn metadata_falls_back_to_the_root_document() {
    let mcp = Target::start(|origin| {
        challenging_mcp(None).route(
            PRM,
            get(move || async move { axum::Json(document(&origin)) }),
        )
    })
    .await;
    let decoy = Target::empty().await;
    let app = app(proxy(&[&mcp, &decoy]));
    let (status, _, body) = call(
        &app,
        metadata(&decoy.url(&format!("{PRM}/mcp")), Some(&mcp.url("/mcp"))),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["resource"], mcp.url(""));
    assert_eq!(mcp.hits_on(&format!("{PRM}/mcp")), 1);
    assert_eq!(mcp.hits_on(PRM), 1);
}

#[tokio::test]
async fn authorization_server_metadata_falls_back_to_the_mcp_origin() {
    let mcp = Target::start(|origin| {
        challenging_mcp(None).route(
            AS_METADATA,
            get(move || async move { axum::Json(json!({ "issuer": origin })) }),
        )
    })
    .await;
    let decoy = Target::empty().await;
    let app = app(proxy(&[&mcp, &decoy]));
    let (status, _, body) = call(
        &app,
        metadata(&decoy.url(AS_METADATA), Some(&mcp.url("/mcp"))),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["issuer"], mcp.url(""));
    // The MCP endpoint is only asked for protected-resource metadata.
    assert_eq!(mcp.hits_on("/mcp"), 0);
}

#[tokio::test]
async fn metadata_passes_the_upstream_error_status() {
    let mcp = Target::start(|_| challenging_mcp(None)).await;
    let decoy = Target::empty().await;
    let app = app(proxy(&[&mcp, &decoy]));
    let (status, _, body) = call(
        &app,
        metadata(&decoy.url(&format!("{PRM}/mcp")), Some(&mcp.url("/mcp"))),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({ "error": "Failed to fetch OAuth metadata: 404 Not Found" })
    );
    // Hint, given URL, path-suffixed and root fallbacks.
    assert_eq!(decoy.hits() + mcp.hits(), 4);
}

#[tokio::test]
async fn metadata_without_any_response_is_502() {
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let app = app(BrowserProxy::builder().guard(NetGuard::new().allow_host(addr.to_string())));
    let (status, _, body) = call(&app, metadata(&format!("http://{addr}{PRM}"), None)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        body,
        json!({ "error": "Failed to fetch OAuth metadata: no response" })
    );
}

#[tokio::test]
async fn metadata_follows_redirects_within_allowed_hosts() {
    let server = Target::start(|origin| {
        let moved = format!("{origin}/moved");
        Router::new()
            .route(PRM, get(move || async move { redirect_to(moved) }))
            .route(
                "/moved",
                get(move || async move { axum::Json(document(&origin)) }),
            )
    })
    .await;
    let app = app(proxy(&[&server]));
    let (status, _, body) = call(&app, metadata(&server.url(PRM), None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server.hits_on("/moved"), 1);
}

#[tokio::test]
async fn metadata_checks_the_url_parameter() {
    let app = app(BrowserProxy::builder());
    let cases = [
        ("/oauth/metadata", "Missing url parameter"),
        ("/oauth/metadata?url=", "Missing url parameter"),
        (
            "/oauth/metadata?url=ftp://example.com/x",
            "Invalid protocol",
        ),
        ("/oauth/metadata?url=not%20a%20url", "Invalid URL format"),
        (
            "/oauth/metadata?url=https://example.com/x&mcp_url=file:///etc/passwd",
            "Invalid protocol",
        ),
    ];
    for (uri, message) in cases {
        let req = Request::get(uri).body(Body::empty()).unwrap();
        let (status, _, body) = call(&app, req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(body, json!({ "error": message }), "{uri}");
    }
}

#[tokio::test]
async fn metadata_resource_follows_x_connection_url() {
    let server = Target::start(|origin| {
        Router::new().route(
            PRM,
            get(move || async move { axum::Json(document(&format!("{origin}/mcp"))) }),
        )
    })
    .await;
    let app = app(proxy(&[&server]));
    let mut req = metadata(&server.url(PRM), None);
    req.headers_mut().insert(
        "x-connection-url",
        "https://proxy.example.com/mcp".parse().unwrap(),
    );
    let (status, _, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["resource"], "https://proxy.example.com/mcp");
    assert_eq!(body["_original_resource"], server.url("/mcp"));

    let mut req = metadata(&server.url(PRM), None);
    req.headers_mut()
        .insert("x-connection-url", "javascript:alert(1)".parse().unwrap());
    let (status, _, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({ "error": "Invalid X-Connection-URL header" }));
}

// ---------------------------------------------------------------------------------------
// Forwarding

/// A token endpoint that echoes what it received and sets headers the proxy must filter.
async fn token_server() -> Target {
    Target::start(|_| {
        Router::new().route(
            "/token",
            post(|headers: HeaderMap, body: String| async move {
                let seen: Vec<String> = headers.keys().map(|k| k.as_str().to_owned()).collect();
                let status = if body.contains("bad") {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::OK
                };
                (
                    status,
                    [
                        (header::SET_COOKIE, "session=stolen"),
                        (header::CACHE_CONTROL, "no-store"),
                        (header::PRAGMA, "no-cache"),
                        (
                            header::HeaderName::from_static("x-internal"),
                            "backend-7",
                        ),
                        (header::HeaderName::from_static("dpop-nonce"), "n-1"),
                    ],
                    axum::Json(json!({
                        "access_token": "at",
                        "received_headers": seen,
                        "authorization": headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()),
                        "content_type": headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()),
                        "user_agent": headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()),
                        "host": headers.get(header::HOST).and_then(|v| v.to_str().ok()),
                        "body": body,
                    })),
                )
            }),
        )
        .route("/text", get(|| async { "plain text" }))
        .route("/empty", get(|| async { StatusCode::NO_CONTENT }))
    })
    .await
}

#[tokio::test]
async fn proxy_forwards_a_token_request() {
    let server = token_server().await;
    let app = app(proxy(&[&server]));
    let (status, headers, body) = call(
        &app,
        forward(json!({
            "url": server.url("/token"),
            "method": "POST",
            "headers": {
                "Content-Type": "application/x-www-form-urlencoded",
                "Authorization": "Basic Y2xpZW50OnNlY3JldA==",
                "DPoP": "proof",
                "Cookie": "victim=1",
                "X-Forwarded-For": "10.0.0.1",
                "Host": "internal.example",
            },
            "body": { "grant_type": "authorization_code", "code": "abc", "n": 1 },
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert_eq!(body["status"], 200);
    assert_eq!(body["statusText"], "OK");
    assert_eq!(
        body["headers"],
        json!({
            "cache-control": "no-store",
            "content-type": "application/json",
            "dpop-nonce": "n-1",
            "pragma": "no-cache",
        })
    );
    let upstream = &body["body"];
    assert_eq!(upstream["access_token"], "at");
    // The form's fields in name order, whatever order the JSON object had.
    assert_eq!(
        upstream["body"],
        "code=abc&grant_type=authorization_code&n=1"
    );
    assert_eq!(upstream["authorization"], "Basic Y2xpZW50OnNlY3JldA==");
    assert_eq!(
        upstream["content_type"],
        "application/x-www-form-urlencoded"
    );
    assert!(
        upstream["user_agent"]
            .as_str()
            .unwrap()
            .starts_with("mcp-oauth/")
    );
    let received: Vec<&str> = upstream["received_headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for dropped in ["cookie", "x-forwarded-for"] {
        assert!(!received.contains(&dropped), "{dropped} was forwarded");
    }
    assert!(received.contains(&"dpop"));
    // The page's `Host` is not forwarded: the upstream sees the target URL's own host.
    assert_eq!(upstream["host"], server.host(), "{upstream}");
    assert_eq!(server.hits_on("/token"), 1);
}

#[tokio::test]
async fn proxy_wraps_upstream_errors_and_other_bodies() {
    let server = token_server().await;
    let app = app(proxy(&[&server]));
    // An object body without a content type goes as JSON.
    let (status, _, body) = call(
        &app,
        forward(
            json!({ "url": server.url("/token"), "method": "post", "body": { "code": "bad" } }),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], 400);
    assert_eq!(body["statusText"], "Bad Request");
    assert_eq!(body["body"]["content_type"], "application/json");
    assert_eq!(body["body"]["body"], r#"{"code":"bad"}"#);
    assert!(body["headers"].get("set-cookie").is_none());

    let (_, _, body) = call(&app, forward(json!({ "url": server.url("/text") }))).await;
    assert_eq!(body["status"], 200);
    assert_eq!(body["body"], "plain text");

    let (_, _, body) = call(&app, forward(json!({ "url": server.url("/empty") }))).await;
    assert_eq!(body["status"], 204);
    assert_eq!(body["body"], Value::Null);
}

#[tokio::test]
async fn proxy_refuses_other_methods() {
    let server = token_server().await;
    let app = app(proxy(&[&server]));
    for method in ["PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT"] {
        let (status, _, body) = call(
            &app,
            forward(json!({ "url": server.url("/token"), "method": method })),
        )
        .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(body, json!({ "error": "Only GET and POST are allowed" }));
    }
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn proxy_refuses_oversized_request_bodies() {
    let server = token_server().await;
    let app = app(proxy(&[&server]));
    let (status, _, body) = call(
        &app,
        forward(json!({
            "url": server.url("/token"),
            "method": "POST",
            "body": "x".repeat(70 * 1024),
        })),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        body,
        json!({ "error": "Request body larger than 65536 bytes" })
    );
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn proxy_refuses_oversized_responses() {
    let server = Target::start(|_| {
        Router::new().route("/big", get(|| async { vec![b'a'; 2 * 1024 * 1024] }))
    })
    .await;
    let app = app(proxy(&[&server]));
    let (status, _, body) = call(&app, forward(json!({ "url": server.url("/big") }))).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["error"], "OAuth proxy request failed");
    assert_eq!(body["details"], "the response is larger than 1048576 bytes");
}

#[tokio::test]
async fn proxy_times_out() {
    let server = Target::start(|_| {
        Router::new().route(
            "/slow",
            // Never answers: only the proxy's own timeout can end the call.
            get(std::future::pending::<&'static str>),
        )
    })
    .await;
    let app = app(proxy(&[&server]).timeout(Duration::from_millis(300)));
    // A hang guard only (far above the proxy's 300 ms): without its timeout the proxy would
    // wait for ever, and the test would fail here instead of hanging.
    let (status, _, body) = tokio::time::timeout(
        Duration::from_secs(60),
        call(&app, forward(json!({ "url": server.url("/slow") }))),
    )
    .await
    .expect("the proxy's timeout ends the call");
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body, json!({ "error": "OAuth proxy request timed out" }));

    let (status, _, body) = tokio::time::timeout(
        Duration::from_secs(60),
        call(&app, metadata(&server.url("/slow"), None)),
    )
    .await
    .expect("the proxy's timeout ends the call");
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        body,
        json!({ "error": "Failed to fetch OAuth metadata: timed out" })
    );
}

#[tokio::test]
async fn proxy_checks_its_envelope() {
    let app = app(BrowserProxy::builder());
    let cases = [
        (json!({}), "Missing url parameter"),
        (json!({ "url": "" }), "Missing url parameter"),
        (json!({ "url": "ftp://example.com/x" }), "Invalid protocol"),
        (json!({ "url": "not a url" }), "Invalid URL format"),
        (json!(["not", "an", "object"]), "Invalid JSON body"),
    ];
    for (envelope, message) in cases {
        let (status, _, body) = call(&app, forward(envelope.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{envelope}");
        assert_eq!(body, json!({ "error": message }), "{envelope}");
    }
    let req = Request::post("/oauth/proxy")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(r#"{"url":"https://example.com/"}"#))
        .unwrap();
    let (status, _, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        body,
        json!({ "error": "Content-Type must be application/json" })
    );
}

#[tokio::test]
async fn redirects_to_another_origin_drop_credentials() {
    let landing = token_server().await;
    let to = landing.url("/token");
    let server = Target::start(move |_| {
        Router::new().route(
            "/token",
            post(move || async move { (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]) }),
        )
    })
    .await;
    let app = app(proxy(&[&server, &landing]));
    let (_, _, body) = call(
        &app,
        forward(json!({
            "url": server.url("/token"),
            "method": "POST",
            "headers": { "Authorization": "Bearer secret", "DPoP": "proof" },
            "body": { "grant_type": "refresh_token" },
        })),
    )
    .await;
    assert_eq!(body["status"], 200, "{body}");
    // 307 keeps the method and the body, but not the credentials.
    assert_eq!(body["body"]["body"], r#"{"grant_type":"refresh_token"}"#);
    assert_eq!(body["body"]["authorization"], Value::Null);
    let received = body["body"]["received_headers"].as_array().unwrap();
    assert!(!received.contains(&json!("dpop")));
}

#[tokio::test]
async fn redirect_loops_stop() {
    let server = Target::start(|origin| {
        let again = format!("{origin}/loop");
        Router::new().route("/loop", get(move || async move { redirect_to(again) }))
    })
    .await;
    let app = app(proxy(&[&server]));
    let (status, _, body) = call(&app, forward(json!({ "url": server.url("/loop") }))).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["details"], "more than 3 redirects");
    assert_eq!(server.hits(), 4);
}

// ---------------------------------------------------------------------------------------
// SSRF: nothing reaches a refused address

#[tokio::test]
async fn ssrf_loopback_address_is_refused() {
    let secret = Target::secret().await;
    let app = app(BrowserProxy::builder());
    let url = secret.url("/secret");
    let (status, _, body) = call(&app, metadata(&url, None)).await;
    assert_guard_refused(status, &body, "127.0.0.1");
    let (status, _, body) = call(&app, forward(json!({ "url": url }))).await;
    assert_guard_refused(status, &body, "127.0.0.1");
    assert_eq!(secret.hits(), 0);
}

#[tokio::test]
async fn ssrf_name_resolving_to_loopback_is_refused() {
    let secret = Target::secret().await;
    // Even with 127.0.0.1:<port> allowed, the name is checked on its own after resolution.
    let app = app(proxy(&[&secret]));
    let url = format!("http://localhost:{}/secret", secret.addr.port());
    let (status, _, body) = call(&app, metadata(&url, None)).await;
    assert_guard_refused(status, &body, "localhost");
    let (status, _, body) = call(&app, forward(json!({ "url": url, "method": "POST" }))).await;
    assert_guard_refused(status, &body, "localhost");
    assert_eq!(secret.hits(), 0);
}

#[tokio::test]
async fn ssrf_ipv6_loopback_is_refused() {
    let app = app(BrowserProxy::builder());
    for url in ["http://[::1]/x", "http://[::ffff:127.0.0.1]:8080/x"] {
        let (status, _, body) = call(&app, metadata(url, None)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{url}: {body}");
        assert!(
            body["reason"]
                .as_str()
                .unwrap()
                .ends_with("is not a public address"),
            "{body}"
        );
        let (status, _, _) = call(&app, forward(json!({ "url": url }))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{url}");
    }
}

#[tokio::test]
async fn ssrf_cloud_metadata_address_is_refused_without_connecting() {
    let app = app(BrowserProxy::builder());
    for url in [
        "http://169.254.169.254/latest/meta-data",
        // The same address in decimal: the URL parser normalises it before the guard.
        "http://2852039166/latest/meta-data",
    ] {
        // Only the guard answers "not a public address": a connection attempt would end in a
        // timeout or a connection error instead.
        let (status, _, body) = call(&app, metadata(url, None)).await;
        assert_guard_refused(status, &body, "169.254.169.254");
        let (status, _, body) = call(&app, forward(json!({ "url": url }))).await;
        assert_guard_refused(status, &body, "169.254.169.254");
    }
    let (status, _, body) = call(
        &app,
        forward(json!({ "url": "http://[fd00:ec2::254]/latest/meta-data" })),
    )
    .await;
    assert_guard_refused(status, &body, "[fd00:ec2::254]");
}

#[tokio::test]
async fn ssrf_mcp_url_on_loopback_is_refused() {
    let secret = Target::secret().await;
    let server = protected_mcp_server().await;
    let app = app(proxy(&[&server]));
    let mcp_url = format!("http://localhost:{}/secret", secret.addr.port());
    let (status, _, body) = call(
        &app,
        metadata(&server.url(&format!("{PRM}/mcp")), Some(&mcp_url)),
    )
    .await;
    assert_guard_refused(status, &body, "localhost");
    assert_eq!(secret.hits(), 0);
    assert_eq!(server.hits(), 0, "discovery stops at the refusal");
}

#[tokio::test]
async fn ssrf_hint_pointing_at_loopback_is_refused() {
    let secret = Target::secret().await;
    let hint = secret.url("/secret");
    let mcp = Target::start(move |_| challenging_mcp(Some(hint))).await;
    let app = app(proxy(&[&mcp]));
    let (status, _, body) = call(
        &app,
        metadata(&mcp.url(&format!("{PRM}/mcp")), Some(&mcp.url("/mcp"))),
    )
    .await;
    assert_guard_refused(status, &body, "127.0.0.1");
    assert_eq!(mcp.hits_on("/mcp"), 1);
    assert_eq!(secret.hits(), 0);
}

#[tokio::test]
async fn ssrf_fallback_from_a_loopback_mcp_url_is_refused() {
    let secret =
        Target::start(|_| Router::new().route(AS_METADATA, get(|| async { "internal metadata" })))
            .await;
    let decoy = Target::empty().await;
    let app = app(proxy(&[&decoy]));
    let mcp_url = format!("http://localhost:{}/mcp", secret.addr.port());
    let (status, _, body) = call(&app, metadata(&decoy.url(AS_METADATA), Some(&mcp_url))).await;
    assert_guard_refused(status, &body, "localhost");
    assert_eq!(
        decoy.hits_on(AS_METADATA),
        1,
        "the given URL was tried first"
    );
    assert_eq!(secret.hits(), 0);
}

#[tokio::test]
async fn ssrf_redirect_to_a_private_address_is_not_followed() {
    let secret = Target::secret().await;
    let location = secret.url("/secret");
    let server = Target::start(move |_| {
        Router::new().route(
            "/redirect",
            any(move || async move { redirect_to(location) }),
        )
    })
    .await;
    let app = app(proxy(&[&server]));
    let (status, _, body) = call(&app, metadata(&server.url("/redirect"), None)).await;
    assert_guard_refused(status, &body, "127.0.0.1");
    let (status, _, body) = call(
        &app,
        forward(json!({ "url": server.url("/redirect"), "method": "POST", "body": "x" })),
    )
    .await;
    assert_guard_refused(status, &body, "127.0.0.1");
    assert_eq!(server.hits_on("/redirect"), 2);
    assert_eq!(secret.hits(), 0);
}

#[tokio::test]
async fn https_only_guard_refuses_http_and_credentials() {
    let app = app(BrowserProxy::builder().guard(NetGuard::new()));
    let (status, _, body) = call(&app, metadata("http://example.com/x", None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["reason"], r#"scheme "http" is not allowed"#);
    let (status, _, body) = call(
        &app,
        forward(json!({ "url": "https://user:pass@example.com/x" })),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body["reason"],
        "the URL is not acceptable: credentials in the URL"
    );
}

// ---------------------------------------------------------------------------------------
// Hooks

#[tokio::test]
async fn authenticate_false_answers_401() {
    let server = token_server().await;
    let app = app(proxy(&[&server]).authenticate(|parts| {
        parts
            .headers
            .get("x-proxy-key")
            .is_some_and(|v| v == "let-me-in")
    }));
    let (status, headers, body) = call(&app, metadata(&server.url("/text"), None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!({ "error": "Unauthorized" }));
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let (status, _, body) = call(&app, forward(json!({ "url": server.url("/text") }))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!({ "error": "Unauthorized" }));
    assert_eq!(server.hits(), 0);

    let mut req = forward(json!({ "url": server.url("/text") }));
    req.headers_mut()
        .insert("x-proxy-key", "let-me-in".parse().unwrap());
    let (status, _, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["body"], "plain text");
}

#[tokio::test]
async fn validate_target_false_for_the_url_answers_403() {
    let server = token_server().await;
    let app = app(proxy(&[&server]).validate_target(|url| url.path() != "/text"));
    let (status, _, body) = call(&app, metadata(&server.url("/text"), None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, json!({ "error": "Target URL not allowed" }));
    let (status, _, body) = call(&app, forward(json!({ "url": server.url("/text") }))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, json!({ "error": "Target URL not allowed" }));
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn validate_target_false_for_the_hint_answers_403() {
    let mcp = Target::start(|origin| {
        challenging_mcp(Some(format!("{origin}/hinted/prm"))).route(
            "/hinted/prm",
            get(move || async move { axum::Json(document(&origin)) }),
        )
    })
    .await;
    let app = app(proxy(&[&mcp]).validate_target(|url| !url.path().starts_with("/hinted")));
    let (status, _, body) = call(
        &app,
        metadata(&mcp.url(&format!("{PRM}/mcp")), Some(&mcp.url("/mcp"))),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "Target URL not allowed");
    assert_eq!(body["reason"], "refused by validate_target");
    assert_eq!(mcp.hits_on("/mcp"), 1);
    assert_eq!(mcp.hits_on("/hinted/prm"), 0);
}

#[tokio::test]
async fn validate_target_false_for_a_redirect_hop_answers_403() {
    let server = Target::start(|origin| {
        let landing = format!("{origin}/landing");
        Router::new()
            .route(
                "/redirect",
                any(move || async move { redirect_to(landing) }),
            )
            .route("/landing", any(|| async { "landed" }))
    })
    .await;
    let app = app(proxy(&[&server]).validate_target(|url| url.path() != "/landing"));
    let (status, _, body) = call(&app, metadata(&server.url("/redirect"), None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["reason"], "refused by validate_target");
    let (status, _, body) = call(&app, forward(json!({ "url": server.url("/redirect") }))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["reason"], "refused by validate_target");
    assert_eq!(server.hits_on("/redirect"), 2);
    assert_eq!(server.hits_on("/landing"), 0);
}

#[tokio::test]
async fn validate_target_sees_every_fetched_url() {
    let mcp = Target::start(|_| challenging_mcp(None)).await;
    let decoy = Target::empty().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = app(proxy(&[&mcp, &decoy]).validate_target(move |url| {
        log.lock().unwrap().push(url.to_string());
        true
    }));
    let url = decoy.url(&format!("{PRM}/mcp"));
    let (status, _, _) = call(&app, metadata(&url, Some(&mcp.url("/mcp")))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            url,
            mcp.url("/mcp"),
            mcp.url(&format!("{PRM}/mcp")),
            mcp.url(PRM),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// CORS and configuration

#[tokio::test]
async fn cors_preflight_is_answered() {
    let app = app(BrowserProxy::builder().authenticate(|_| false));
    for path in ["/oauth/proxy", "/oauth/metadata"] {
        let req = Request::options(path)
            .header(header::ORIGIN, "https://app.example.com")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "content-type, authorization, x-connection-url",
            )
            .body(Body::empty())
            .unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        let h = res.headers();
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_HEADERS], "*");
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "86400");
        let methods = h[header::ACCESS_CONTROL_ALLOW_METHODS].to_str().unwrap();
        for m in ["GET", "POST", "OPTIONS"] {
            assert!(methods.contains(m), "{methods}");
        }
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
    }
    let req = Request::get("/oauth/metadata")
        .header(header::ORIGIN, "https://app.example.com")
        .body(Body::empty())
        .unwrap();
    let (_, headers, _) = call(&app, req).await;
    assert_eq!(headers[header::ACCESS_CONTROL_EXPOSE_HEADERS], "*");
}

#[tokio::test]
async fn base_path_is_checked_and_mounted() {
    for bad in ["oauth", "/oauth/{x}", "/oauth/*rest", "/a?b"] {
        assert!(
            BrowserProxy::builder().base_path(bad).build().is_err(),
            "{bad}"
        );
    }
    assert!(
        BrowserProxy::builder()
            .timeout(Duration::ZERO)
            .build()
            .is_err()
    );
    let proxy = BrowserProxy::builder()
        .base_path("/inspector/api/oauth/")
        .build()
        .unwrap();
    assert_eq!(proxy.base_path(), "/inspector/api/oauth");
    let req = Request::get("/inspector/api/oauth/metadata")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = call(&proxy.router(), req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({ "error": "Missing url parameter" }));
}
