//! The gateway in front of a Streamable HTTP upstream (the rmcp test server on 127.0.0.1,
//! behind a recorder that keeps every request's headers and body and can expire sessions).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mcp_oauth::Auth;
use mcp_oauth_gateway::HttpConfig;
use mcp_oauth_gateway::gate::{Call, Decision, Gatekeeper, ListKind};
use serde_json::json;
use support::*;
use tokio::sync::oneshot;

#[derive(Default)]
struct Recorder {
    requests: Mutex<Vec<(http::HeaderMap, String)>>,
    sessions: Mutex<HashSet<String>>,
    expired: Mutex<HashSet<String>>,
    /// Requests with this `Authorization` are answered 401 (a credential the upstream revoked).
    refused: Mutex<Option<String>>,
    /// How an expired session is answered: 404 (the default) or this status and body.
    expired_answer: Mutex<Option<(http::StatusCode, &'static str)>>,
}

impl Recorder {
    fn bodies_with(&self, needle: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, body)| body.contains(needle))
            .count()
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Forgets every session so far, as an upstream restart would.
    fn expire_sessions(&self) {
        let sessions = self.sessions.lock().unwrap().clone();
        self.expired.lock().unwrap().extend(sessions);
    }
}

async fn record(State(rec): State<Arc<Recorder>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    rec.requests.lock().unwrap().push((
        parts.headers.clone(),
        String::from_utf8_lossy(&bytes).into_owned(),
    ));
    let session = parts
        .headers
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    if session.is_some_and(|s| rec.expired.lock().unwrap().contains(&s)) {
        let answer = *rec.expired_answer.lock().unwrap();
        return answer
            .unwrap_or((http::StatusCode::NOT_FOUND, "session expired"))
            .into_response();
    }
    let refused = rec.refused.lock().unwrap().clone();
    if refused.is_some_and(|r| parts.headers.get("authorization").is_some_and(|a| a == &r)) {
        return (http::StatusCode::UNAUTHORIZED, "revoked").into_response();
    }
    let response = next
        .run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await;
    if let Some(id) = response.headers().get("mcp-session-id") {
        rec.sessions
            .lock()
            .unwrap()
            .insert(id.to_str().unwrap().to_owned());
    }
    response
}

struct Upstream {
    url: String,
    rec: Arc<Recorder>,
    _stop: oneshot::Sender<()>,
}

async fn upstream() -> Upstream {
    let rec = Arc::new(Recorder::default());
    let app = mcp_oauth_gateway::test_upstream::http_router()
        .layer(axum::middleware::from_fn_with_state(rec.clone(), record));
    let (addr, stop) = serve_app(app).await;
    Upstream {
        url: format!("http://{addr}/mcp"),
        rec,
        _stop: stop,
    }
}

fn config(up: &Upstream) -> HttpConfig {
    HttpConfig::new(&up.url)
        .unwrap()
        .header("X-Upstream-Key", "upstream-credential")
        .unwrap()
}

#[tokio::test]
async fn calls_lists_progress_and_sampling_work_through_an_http_upstream() {
    let up = upstream().await;
    let h = Harness::start(config(&up)).await;
    let client = h.client("alice").await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "echo"));
    assert_eq!(
        call(&client, "echo", json!({"text": "hi"})).await.unwrap(),
        "hi"
    );
    let done = call(&client, "slow", json!({"steps": 3, "step_ms": 10}))
        .await
        .unwrap();
    assert_eq!(done, "done after 3 steps");
    assert_eq!(*client.service().progress.lock().unwrap(), [0.0, 1.0, 2.0]);
    assert_eq!(
        call(&client, "ask_llm", json!({"question": "q"}))
            .await
            .unwrap(),
        "sampled by alice"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn the_upstream_never_sees_the_inbound_authorization() {
    let up = upstream().await;
    let h = Harness::start(config(&up)).await;
    let token = h.token("alice");
    let client = h.client("alice").await;
    assert_eq!(
        call(&client, "echo", json!({"text": "x"})).await.unwrap(),
        "x"
    );
    client.cancel().await.unwrap();
    // A raw client adds a cookie too.
    let response = reqwest::Client::new()
        .post(&h.url)
        .bearer_auth(&token)
        .header("cookie", "session=browser-secret")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INITIALIZE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let requests = up.rec.requests.lock().unwrap();
    assert!(requests.len() >= 4, "{}", requests.len());
    for (headers, body) in requests.iter() {
        assert!(!headers.contains_key("authorization"), "{headers:?}");
        assert!(!headers.contains_key("cookie"), "{headers:?}");
        assert!(!body.contains(&token));
        assert_eq!(headers["x-upstream-key"], "upstream-credential");
    }
}

#[tokio::test]
async fn a_request_without_a_valid_token_never_reaches_the_upstream() {
    let up = upstream().await;
    let h = Harness::start(config(&up)).await;
    let other_key = mcp_oauth::testing::TestKey::es256();
    let forged = other_key
        .token()
        .iss(ISSUER)
        .aud(&h.url)
        .sub("alice")
        .sign();
    for token in [None, Some(forged.as_str())] {
        let response = post(&h.url, token, None, INITIALIZE).await;
        assert_eq!(response.status(), 401);
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer ")
        );
    }
    assert_eq!(up.rec.count(), 0);
}

#[tokio::test]
async fn a_lost_upstream_session_is_initialized_again_transparently() {
    let up = upstream().await;
    let h = Harness::start(config(&up)).await;
    let client = h.client("alice").await;
    assert_eq!(
        call(&client, "echo", json!({"text": "one"})).await.unwrap(),
        "one"
    );
    assert_eq!(up.rec.bodies_with(r#""method":"initialize""#), 1);
    up.rec.expire_sessions();
    assert_eq!(
        call(&client, "echo", json!({"text": "two"})).await.unwrap(),
        "two"
    );
    assert_eq!(up.rec.bodies_with(r#""method":"initialize""#), 2);
    assert_eq!(
        call(&client, "echo", json!({"text": "three"}))
            .await
            .unwrap(),
        "three"
    );
    assert_eq!(up.rec.bodies_with(r#""method":"initialize""#), 2);
    client.cancel().await.unwrap();
}

/// The TypeScript SDK's example servers (the reference `server-everything` among them) answer
/// an unknown session id with 400, not 404: after their restart, the gateway must still
/// re-initialize. A 400 that does not name the session is the upstream's answer, passed on.
#[tokio::test]
async fn an_upstream_answering_400_for_a_lost_session_is_initialized_again() {
    let up = upstream().await;
    *up.rec.expired_answer.lock().unwrap() = Some((
        http::StatusCode::BAD_REQUEST,
        r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: No valid session ID provided"},"id":null}"#,
    ));
    let h = Harness::start(config(&up)).await;
    let client = h.client("alice").await;
    assert_eq!(
        call(&client, "echo", json!({"text": "one"})).await.unwrap(),
        "one"
    );
    up.rec.expire_sessions();
    assert_eq!(
        call(&client, "echo", json!({"text": "two"})).await.unwrap(),
        "two"
    );
    assert_eq!(up.rec.bodies_with(r#""method":"initialize""#), 2);

    *up.rec.expired_answer.lock().unwrap() = Some((http::StatusCode::BAD_REQUEST, "malformed"));
    up.rec.expire_sessions();
    let err = call(&client, "echo", json!({"text": "three"}))
        .await
        .unwrap_err();
    assert!(err.contains("400"), "{err}");
    assert_eq!(
        up.rec.bodies_with(r#""method":"initialize""#),
        2,
        "a 400 that does not name the session opens no new session"
    );
}

struct HideEnv;

impl Gatekeeper for HideEnv {
    fn decide(&self, _: Option<&Auth>, call: &Call<'_>) -> Decision {
        if call.name() == Some("get_env") {
            Decision::Deny
        } else {
            Decision::Allow
        }
    }
    fn filters_lists(&self) -> bool {
        true
    }
    fn keep(&self, _: Option<&Auth>, _: ListKind, item: &serde_json::Value) -> bool {
        item["name"] != "get_env"
    }
}

#[tokio::test]
async fn a_denied_call_never_reaches_the_upstream_and_lists_are_filtered() {
    let up = upstream().await;
    let h = Harness::with_gatekeeper(config(&up), HideEnv).await;
    let client = h.client("alice").await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "echo"));
    assert!(tools.iter().all(|t| t.name != "get_env"));
    let err = call(&client, "get_env", json!({})).await.unwrap_err();
    assert!(err.contains("not found, or not permitted"), "{err}");
    assert_eq!(up.rec.bodies_with("get_env"), 0);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn sessions_of_two_users_stay_apart_upstream() {
    let up = upstream().await;
    let h = Harness::start(config(&up)).await;
    let (alice, mallory) = (h.token("alice"), h.token("mallory"));
    let a = raw_session(&h.url, &alice).await;
    let _m = raw_session(&h.url, &mallory).await;
    assert_eq!(
        up.rec.sessions.lock().unwrap().len(),
        2,
        "one upstream session each"
    );
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    let before = up.rec.count();
    assert_eq!(
        post(&h.url, Some(&mallory), Some(&a), list).await.status(),
        404
    );
    assert_eq!(up.rec.count(), before, "refused before the upstream");
    let mine = post(&h.url, Some(&alice), Some(&a), list).await;
    assert_eq!(mine.status(), 200);
    assert!(messages(mine).await.last().unwrap()["result"]["tools"].is_array());
}

#[tokio::test]
async fn an_upstream_refusing_the_gateways_credential_is_a_bad_gateway_not_a_challenge() {
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::any(|| async {
            (
                http::StatusCode::UNAUTHORIZED,
                [("www-authenticate", r#"Bearer error="invalid_token""#)],
            )
        }),
    );
    let (addr, stop) = serve_app(app).await;
    let h = Harness::start(HttpConfig::new(&format!("http://{addr}/mcp")).unwrap()).await;
    let response = post(&h.url, Some(&h.token("alice")), None, INITIALIZE).await;
    assert_eq!(response.status(), 502);
    assert!(!response.headers().contains_key("www-authenticate"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "the upstream refused the gateway's credentials"
    );
    let _ = stop.send(());
}

/// A stand-in authorization server's token endpoint for the gateway's token exchanges: it
/// checks the gateway's client credentials, records each subject token, refuses the subject
/// `mallory` (`invalid_grant`) and issues `exchanged-N` tokens for the upstream.
struct Exchanger {
    url: String,
    subjects: Arc<Mutex<Vec<String>>>,
    _stop: oneshot::Sender<()>,
}

async fn exchanger() -> Exchanger {
    use base64::Engine as _;
    let subjects = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = subjects.clone();
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(move |headers: http::HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let basic = base64::engine::general_purpose::STANDARD.encode("gateway:gw-secret");
                if headers.get("authorization").and_then(|v| v.to_str().ok())
                    != Some(format!("Basic {basic}").as_str())
                {
                    return (http::StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"})));
                }
                let form: std::collections::HashMap<String, String> =
                    url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
                assert_eq!(form["grant_type"], "urn:ietf:params:oauth:grant-type:token-exchange");
                assert_eq!(form["resource"], "https://files.example/mcp");
                let subject = form["subject_token"].clone();
                let payload = subject.split('.').nth(1).unwrap();
                let claims: serde_json::Value = serde_json::from_slice(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap(),
                )
                .unwrap();
                if claims["sub"] == "mallory" {
                    return (
                        http::StatusCode::BAD_REQUEST,
                        axum::Json(json!({"error": "invalid_grant", "error_description": "mallory may not use files"})),
                    );
                }
                let mut seen = seen.lock().unwrap();
                seen.push(subject);
                let n = seen.len();
                (
                    http::StatusCode::OK,
                    axum::Json(json!({
                        "access_token": format!("exchanged-{n}"),
                        "token_type": "Bearer",
                        "expires_in": 600,
                        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                    })),
                )
            }
        }),
    );
    let (addr, stop) = serve_app(app).await;
    Exchanger {
        url: format!("http://{addr}/token"),
        subjects,
        _stop: stop,
    }
}

fn exchanging(up: &Upstream, ex: &Exchanger) -> HttpConfig {
    let exchange = mcp_oauth::exchange::TokenExchange::builder(ex.url.clone())
        .client(mcp_oauth::protocol::ClientCredentials::new(
            "gateway",
            "gw-secret",
        ))
        .resource("https://files.example/mcp")
        .build()
        .unwrap();
    HttpConfig::new(&up.url).unwrap().credentials(
        mcp_oauth_gateway::UpstreamCredentials::token_exchange(exchange),
    )
}

/// The `Authorization` values the upstream saw, in order.
fn authorizations(up: &Upstream) -> Vec<String> {
    up.rec
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|(headers, _)| {
            headers
                .get("authorization")
                .map_or_else(|| "(none)".to_owned(), |v| v.to_str().unwrap().to_owned())
        })
        .collect()
}

#[tokio::test]
async fn each_user_reaches_the_upstream_with_their_own_exchanged_token_never_the_inbound_one() {
    let up = upstream().await;
    let ex = exchanger().await;
    let h = Harness::start(exchanging(&up, &ex)).await;

    let alice = h.client("alice").await;
    assert_eq!(
        call(&alice, "echo", json!({"text": "a"})).await.unwrap(),
        "a"
    );
    assert_eq!(
        call(&alice, "echo", json!({"text": "b"})).await.unwrap(),
        "b"
    );
    let seen = authorizations(&up);
    assert!(seen.len() >= 4, "{seen:?}");
    assert!(seen.iter().all(|a| a == "Bearer exchanged-1"), "{seen:?}");
    // One exchange for every request of alice's, with alice's verified token as the subject.
    assert_eq!(ex.subjects.lock().unwrap().len(), 1);

    let bob = h.client("bob").await;
    assert_eq!(call(&bob, "echo", json!({"text": "c"})).await.unwrap(), "c");
    let seen = authorizations(&up);
    assert!(
        seen.iter().skip(4).any(|a| a == "Bearer exchanged-2"),
        "{seen:?}"
    );
    let subjects = ex.subjects.lock().unwrap().clone();
    assert_eq!(subjects.len(), 2);
    assert_ne!(subjects[0], subjects[1]);
    // The subject tokens went to the authorization server only: the upstream saw neither.
    for (headers, body) in up.rec.requests.lock().unwrap().iter() {
        for subject in &subjects {
            assert!(!body.contains(subject.as_str()));
            assert!(headers.values().all(|v| {
                !v.as_bytes()
                    .windows(subject.len())
                    .any(|w| w == subject.as_bytes())
            }));
        }
    }
    alice.cancel().await.unwrap();
    bob.cancel().await.unwrap();
}

#[tokio::test]
async fn a_refused_exchange_is_a_403_and_nothing_reaches_the_upstream() {
    let up = upstream().await;
    let ex = exchanger().await;
    let h = Harness::start(exchanging(&up, &ex)).await;
    let response = post(&h.url, Some(&h.token("mallory")), None, INITIALIZE).await;
    assert_eq!(response.status(), 403);
    assert!(!response.headers().contains_key("www-authenticate"));
    let body: serde_json::Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("invalid_grant"), "{message}");
    assert_eq!(up.rec.count(), 0);
}

#[tokio::test]
async fn an_exchanged_token_the_upstream_refuses_is_exchanged_again_for_the_next_request() {
    let up = upstream().await;
    let ex = exchanger().await;
    let h = Harness::start(exchanging(&up, &ex)).await;
    let token = h.token("alice");
    let session = raw_session(&h.url, &token).await;
    assert_eq!(ex.subjects.lock().unwrap().len(), 1);
    *up.rec.refused.lock().unwrap() = Some("Bearer exchanged-1".into());
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    let refused = post(&h.url, Some(&token), Some(&session), list).await;
    assert_eq!(refused.status(), 502);
    let again = post(&h.url, Some(&token), Some(&session), list).await;
    assert_eq!(again.status(), 200);
    assert!(messages(again).await.last().unwrap()["result"]["tools"].is_array());
    assert_eq!(ex.subjects.lock().unwrap().len(), 2);
    assert_eq!(authorizations(&up).last().unwrap(), "Bearer exchanged-2");
}
