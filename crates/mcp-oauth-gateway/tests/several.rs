//! Several upstreams behind one gateway endpoint (a stdio child and a Streamable HTTP server,
//! both the crate's test server), the health and metrics endpoints, and the audit events.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::net::SocketAddr;

use mcp_oauth::Auth;
use mcp_oauth::audit::{AuditLog, MemorySink};
use mcp_oauth_gateway::gate::{Call, Decision, Gatekeeper, ListKind};
use mcp_oauth_gateway::{HttpConfig, UNAVAILABLE_META, UpstreamConfig};
use serde_json::{Value, json};
use support::*;
use tokio::sync::oneshot;

/// A server on 127.0.0.1 serving `app`; stopped when dropped.
struct Served {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn serve(app: axum::Router) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Served { addr, _stop: stop }
}

async fn http_upstream() -> Served {
    serve(mcp_oauth_gateway::test_upstream::http_router()).await
}

fn http_config(served: &Served) -> UpstreamConfig {
    HttpConfig::new(&format!("http://{}/mcp", served.addr))
        .unwrap()
        .into()
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

fn client_accepts(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

async fn rpc(h: &Harness, token: &str, session: &str, body: Value) -> Vec<Value> {
    let response = post(&h.url, Some(token), Some(session), body.to_string()).await;
    assert_eq!(response.status(), 200);
    messages(response).await
}

#[tokio::test]
async fn tools_of_two_upstreams_are_listed_with_prefixes_and_called_without() {
    let remote = http_upstream().await;
    let h = Harness::several(
        vec![
            ("local", stdio_upstream().into()),
            ("remote", http_config(&remote)),
        ],
        |b| b,
    )
    .await;
    let client = h.client("alice").await;
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for name in ["local__echo", "remote__echo", "local__pid", "remote__slow"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    assert!(names.iter().all(|n| client_accepts(n)), "{names:?}");
    assert_eq!(
        call(&client, "remote__echo", json!({"text": "to remote"}))
            .await
            .unwrap(),
        "to remote"
    );
    let pid = call(&client, "local__pid", json!({})).await.unwrap();
    assert_eq!(pid, h.gateway.upstream_pid().unwrap().to_string());
    let done = call(&client, "remote__slow", json!({"steps": 2, "step_ms": 5}))
        .await
        .unwrap();
    assert_eq!(done, "done after 2 steps");
    assert_eq!(*client.service().progress.lock().unwrap(), [0.0, 1.0]);
    // The stdio child's request to the client comes back through the gateway, and the
    // client's answer goes to the child that asked.
    assert_eq!(
        call(&client, "local__ask_llm", json!({"question": "q"}))
            .await
            .unwrap(),
        "sampled by alice"
    );
    for unknown in [
        "echo",
        "nobody__echo",
        "local__",
        "__echo",
        "local__no_such_tool",
    ] {
        let err = call(&client, unknown, json!({"text": "x"})).await;
        assert!(err.is_err(), "{unknown} answered {err:?}");
    }
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn one_upstream_down_leaves_the_others_listed_and_is_reported() {
    let down = closed_port().await;
    let h = Harness::several(
        vec![
            ("local", stdio_upstream().into()),
            (
                "down",
                HttpConfig::new(&format!("http://{down}/mcp"))
                    .unwrap()
                    .into(),
            ),
        ],
        |b| b,
    )
    .await;
    let token = h.token("alice");
    let session = raw_session(&h.url, &token).await;
    let list = rpc(
        &h,
        &token,
        &session,
        json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
    )
    .await;
    let result = &list[0]["result"];
    let names: Vec<&str> = result["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"local__echo"), "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("local__")), "{names:?}");
    assert_eq!(result["_meta"][UNAVAILABLE_META], json!(["down"]));
    let answer = post(
        &h.url,
        Some(&token),
        Some(&session),
        json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"down__echo","arguments":{"text":"x"}}}).to_string(),
    )
    .await;
    assert_eq!(answer.status(), 502);
    let echo = rpc(
        &h,
        &token,
        &session,
        json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"local__echo","arguments":{"text":"still here"}}}),
    )
    .await;
    assert_eq!(echo[0]["result"]["content"][0]["text"], "still here");
    // Readiness names the upstream that is down, on the admin listener only.
    let admin = serve(h.gateway.admin_router()).await;
    let ready = reqwest::get(format!("http://{}/readyz", admin.addr))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let detail: Value = ready.json().await.unwrap();
    assert_eq!(
        detail["upstreams"],
        json!([{"name":"local","ready":true},{"name":"down","ready":false}])
    );
    let public = reqwest::get(format!("http://{}/readyz", h.addr))
        .await
        .unwrap();
    assert_eq!(public.status(), 503);
    let text = public.text().await.unwrap();
    assert_eq!(text, "not ready\n");
}

/// Denies `local__get_env` and hides it from lists.
struct NoEnv;

impl Gatekeeper for NoEnv {
    fn decide(&self, _: Option<&Auth>, call: &Call<'_>) -> Decision {
        match call.name() {
            Some("local__get_env") => Decision::Deny,
            Some("remote__get_env") => Decision::StepUp(vec!["env:read".into()]),
            _ => Decision::Allow,
        }
    }
    fn filters_lists(&self) -> bool {
        true
    }
    fn keep(&self, _: Option<&Auth>, list: ListKind, item: &Value) -> bool {
        list != ListKind::Tools || item["name"] != "local__get_env"
    }
}

#[tokio::test]
async fn the_gatekeeper_decides_on_exposed_names_and_audit_records_it() {
    let remote = http_upstream().await;
    let sink = MemorySink::new();
    let audit = AuditLog::builder().memory(&sink).build().unwrap();
    let flush = audit.clone();
    let h = Harness::several(
        vec![
            ("local", stdio_upstream().into()),
            ("remote", http_config(&remote)),
        ],
        |b| b.gatekeeper(NoEnv).audit(audit),
    )
    .await;
    let token = h.token("alice");
    let session = raw_session(&h.url, &token).await;
    let list = rpc(
        &h,
        &token,
        &session,
        json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
    )
    .await;
    let names: Vec<&str> = list[0]["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"local__get_env") && names.contains(&"remote__get_env"));
    let denied = rpc(
        &h,
        &token,
        &session,
        json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"local__get_env","arguments":{}}}),
    )
    .await;
    let unknown = rpc(
        &h,
        &token,
        &session,
        json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"nobody__get_env","arguments":{}}}),
    )
    .await;
    assert_eq!(denied, unknown, "a denial reads like an unknown tool");
    let step_up = post(
        &h.url,
        Some(&token),
        Some(&session),
        json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"remote__get_env","arguments":{}}}).to_string(),
    )
    .await;
    assert_eq!(step_up.status(), 403);
    let challenge = step_up.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("insufficient_scope") && challenge.contains("env:read"));
    rpc(
        &h,
        &token,
        &session,
        json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"remote__echo","arguments":{"text":"secret-arg-55"}}}),
    )
    .await;
    flush.flush().await.unwrap();
    let events: Vec<Value> = sink
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let calls: Vec<&Value> = events
        .iter()
        .filter(|e| e["method"] == "tools/call")
        .collect();
    assert_eq!(calls.len(), 4, "{events:#?}");
    let effects: Vec<&Value> = calls.iter().map(|e| &e["decision"]["effect"]).collect();
    assert_eq!(
        effects,
        [
            &json!("deny"),
            &json!("allow"),
            &json!("step_up"),
            &json!("allow")
        ]
    );
    let echo = calls[3];
    assert_eq!(echo["actor"]["sub"], "alice");
    assert_eq!(echo["upstream"], "remote");
    assert_eq!(echo["session"], session.as_str());
    assert_eq!(echo["outcome"]["http"], 200);
    let line = sink.lines().join("\n");
    assert!(
        !line.contains("secret-arg-55"),
        "arguments are hashed by default"
    );
    assert_eq!(
        echo["arguments"]["sha256"],
        mcp_oauth::audit::canonical_sha256(&json!({"text":"secret-arg-55"}))
    );
}

#[tokio::test]
async fn sessions_of_an_aggregate_belong_to_their_user() {
    let remote = http_upstream().await;
    let h = Harness::several(
        vec![
            ("local", stdio_upstream().into()),
            ("remote", http_config(&remote)),
        ],
        |b| b,
    )
    .await;
    let alice = h.token("alice");
    let session = raw_session(&h.url, &alice).await;
    let mallory = h.token("mallory");
    let body = json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}).to_string();
    let stolen = post(&h.url, Some(&mallory), Some(&session), body.clone()).await;
    assert_eq!(stolen.status(), 404);
    let no_token = post(&h.url, None, Some(&session), body.clone()).await;
    assert_eq!(no_token.status(), 401);
    let delete = reqwest::Client::new()
        .delete(&h.url)
        .bearer_auth(&mallory)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 404);
    // Still alice's, still working.
    let list = rpc(&h, &alice, &session, serde_json::from_str(&body).unwrap()).await;
    assert!(list[0]["result"]["tools"].as_array().unwrap().len() > 4);
}

#[tokio::test]
async fn metrics_are_for_operators_only_and_hold_no_subject() {
    let remote = http_upstream().await;
    let h = Harness::start_with(http_config(&remote), |b| b.gatekeeper(NoEnvOne)).await;
    // The public listener: liveness and readiness without details, no metrics.
    let health = reqwest::get(format!("http://{}/healthz", h.addr))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    for path in ["/metrics", "/mcp/metrics", "/metrics/", "/admin/metrics"] {
        let response = reqwest::get(format!("http://{}{path}", h.addr))
            .await
            .unwrap();
        assert!(
            response.status() == 404 || response.status() == 401,
            "{path}: {}",
            response.status()
        );
        let text = response.text().await.unwrap();
        assert!(!text.contains("mcp_gateway_requests_total"), "{path}");
    }
    let ready = reqwest::get(format!("http://{}/readyz", h.addr))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let text = ready.text().await.unwrap();
    assert_eq!(
        text, "ready\n",
        "no upstream address on the public listener"
    );
    let client = h.client("alice-subject-77").await;
    call(&client, "echo", json!({"text": "x"})).await.unwrap();
    assert!(call(&client, "get_env", json!({})).await.is_err());
    client.cancel().await.unwrap();
    let admin = serve(h.gateway.admin_router()).await;
    let metrics = reqwest::get(format!("http://{}/metrics", admin.addr))
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains(
            "mcp_gateway_requests_total{mcp_method_name=\"tools/call\",outcome=\"forwarded\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "mcp_gateway_requests_total{mcp_method_name=\"tools/call\",outcome=\"denied\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("mcp_client_operation_duration_seconds_count{mcp_method_name=\"tools/call\",upstream=\"\",network_transport=\"tcp\"} 1"), "{text}");
    assert!(!text.contains("alice-subject-77"));
    assert_eq!(text, h.gateway.metrics_text());
}

/// Denies `get_env` (one upstream, no prefix).
struct NoEnvOne;

impl Gatekeeper for NoEnvOne {
    fn decide(&self, _: Option<&Auth>, call: &Call<'_>) -> Decision {
        if call.name() == Some("get_env") {
            Decision::Deny
        } else {
            Decision::Allow
        }
    }
}

#[tokio::test]
async fn names_that_cannot_prefix_are_refused_at_build() {
    let remote = http_upstream().await;
    for bad in ["a_b", "", "with space", "a.b"] {
        let err = mcp_oauth_gateway::Gateway::aggregate([
            (bad, http_config(&remote)),
            ("ok", http_config(&remote)),
        ])
        .insecure_no_auth()
        .build()
        .unwrap_err();
        assert!(
            err.to_string().contains("letters, digits or '-'"),
            "{bad}: {err}"
        );
    }
    let err = mcp_oauth_gateway::Gateway::aggregate([
        ("same", http_config(&remote)),
        ("same", http_config(&remote)),
    ])
    .insecure_no_auth()
    .build()
    .unwrap_err();
    assert!(err.to_string().contains("two upstreams"), "{err}");
}

/// An HTTP upstream that keeps every request's headers.
async fn recording_upstream() -> (
    Served,
    std::sync::Arc<std::sync::Mutex<Vec<http::HeaderMap>>>,
) {
    let seen: std::sync::Arc<std::sync::Mutex<Vec<http::HeaderMap>>> = Default::default();
    let record = seen.clone();
    let app = mcp_oauth_gateway::test_upstream::http_router().layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            record.lock().unwrap().push(req.headers().clone());
            next.run(req)
        },
    ));
    (serve(app).await, seen)
}

fn b64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

/// Whether `token` is signed by a key of `jwks` (ES256).
fn signed_by(token: &str, jwks: &Value) -> bool {
    let Some((input, signature)) = token.rsplit_once('.') else {
        return false;
    };
    let header: Value = serde_json::from_slice(&b64(input.split('.').next().unwrap())).unwrap();
    let Some(key) = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
    else {
        return false;
    };
    let mut point = vec![4u8];
    point.extend(b64(key["x"].as_str().unwrap()));
    point.extend(b64(key["y"].as_str().unwrap()));
    let Ok(signature) =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, signature)
    else {
        return false;
    };
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        point,
    )
    .verify(input.as_bytes(), &signature)
    .is_ok()
}

#[tokio::test]
async fn http_upstreams_get_a_signed_identity_and_never_the_clients_token() {
    let (upstream, seen) = recording_upstream().await;
    let upstream_url = format!("http://{}/mcp", upstream.addr);
    let h = Harness::start_with(HttpConfig::new(&upstream_url).unwrap(), |b| {
        b.identity_header("X-MCP-Identity")
    })
    .await;
    let client = h.client("alice").await;
    assert_eq!(
        call(&client, "echo", json!({"text": "who"})).await.unwrap(),
        "who"
    );
    client.cancel().await.unwrap();
    // The key set is public: an upstream needs no token to fetch it.
    let jwks: Value = reqwest::get(format!(
        "http://{}{}",
        h.addr,
        mcp_oauth_gateway::identity::JWKS_PATH
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let inbound = h.token("alice");
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 3, "initialize, initialized, the call");
    let mut ids = std::collections::HashSet::new();
    for headers in &seen {
        assert!(!headers.contains_key("authorization"), "{headers:?}");
        let token = headers["x-mcp-identity"].to_str().unwrap();
        assert_ne!(token, inbound);
        assert!(
            signed_by(token, &jwks),
            "verifies with the gateway's key set"
        );
        let claims: Value = serde_json::from_slice(&b64(token.split('.').nth(1).unwrap())).unwrap();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["aud"], upstream_url.as_str());
        assert_eq!(claims["iss"], format!("http://{}", h.addr));
        assert_eq!(claims["scope"], "mcp:read");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            60
        );
        assert!(
            ids.insert(claims["jti"].as_str().unwrap().to_owned()),
            "jti repeats"
        );
    }
    // The library's JWT verifier, as an upstream written in Rust would use it.
    let verifier = mcp_oauth::verify::JwtVerifier::builder()
        .issuer(format!("http://{}", h.addr))
        .jwks_json(&jwks.to_string())
        .build()
        .unwrap();
    let last = seen.last().unwrap()["x-mcp-identity"].to_str().unwrap();
    let claims = mcp_oauth::verify::TokenVerifier::verify(&verifier, last)
        .await
        .unwrap();
    assert_eq!(claims.sub(), Some("alice"));
    assert_eq!(claims.audiences().unwrap(), [upstream_url.as_str()]);
    assert!(
        mcp_oauth::verify::TokenVerifier::verify(&verifier, &inbound)
            .await
            .is_err(),
        "the client's token is not an identity token"
    );
    // A token whose claims were changed does not verify.
    let token = seen[0]["x-mcp-identity"].to_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let forged_claims = String::from_utf8(b64(parts[1]))
        .unwrap()
        .replace("\"alice\"", "\"admin\"");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            forged_claims
        ),
        parts[2]
    );
    assert!(!signed_by(&forged, &jwks));
    // The identity cannot take the upstream credential's header.
    for header in ["Authorization", "cookie", "not a header"] {
        let err = mcp_oauth_gateway::Gateway::builder(HttpConfig::new(&upstream_url).unwrap())
            .insecure_no_auth()
            .identity_header(header)
            .build()
            .unwrap_err();
        assert!(
            err.to_string().contains("identity header"),
            "{header}: {err}"
        );
    }
}

/// A TCP forwarder to `to` that counts the connections it is asked for.
async fn counting_forwarder(
    to: SocketAddr,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, count)
}

/// A stranger asking `/readyz` as fast as they can does not make the gateway connect to its
/// upstream at their pace: concurrent and repeated asks share one probe.
#[tokio::test]
async fn anonymous_readyz_cannot_drive_upstream_connections() {
    use std::sync::atomic::Ordering;
    let remote = http_upstream().await;
    let (forwarder, connections) = counting_forwarder(remote.addr).await;
    let config: UpstreamConfig = HttpConfig::new(&format!("http://{forwarder}/mcp"))
        .unwrap()
        .into();
    let h = Harness::start_with(config, |b| b).await;
    let url = format!("http://{}/readyz", h.addr);
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);
    let before = connections.load(Ordering::SeqCst);
    let started = std::time::Instant::now();
    let asks: Vec<_> = (0..40)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { reqwest::get(&url).await.unwrap().status() })
        })
        .collect();
    for ask in asks {
        assert_eq!(ask.await.unwrap(), 200);
    }
    for _ in 0..20 {
        assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);
    }
    let probes = connections.load(Ordering::SeqCst) - before;
    // Sixty asks; without the reuse, sixty probes. With it, one probe per reuse window (2 s)
    // the asks took, and one more for the window the first answer was probed in: on a busy
    // machine the asks may take several windows, which is still far fewer than sixty.
    let windows = usize::try_from(started.elapsed().as_secs() / 2 + 1).unwrap_or(usize::MAX);
    assert!(
        probes <= windows,
        "{probes} upstream connections for 60 anonymous /readyz over {windows} reuse windows"
    );
}
