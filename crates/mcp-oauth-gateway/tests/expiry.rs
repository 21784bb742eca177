//! Upstream session expiry: an HTTP upstream answering 404 to its session id is initialized
//! again and the call retried once; the client's session is answered 404 only when that fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mcp_oauth_gateway::HttpConfig;
use support::*;

/// An upstream that forgets sessions on demand, and can refuse new ones.
#[derive(Default)]
struct Forgetful {
    sessions: Mutex<HashSet<String>>,
    forgotten: Mutex<HashSet<String>>,
    /// `initialize` is answered 503 (the upstream came back unable to serve).
    refuse_init: AtomicBool,
    /// Every session is forgotten as soon as it is made (an upstream that keeps losing them).
    amnesiac: AtomicBool,
    inits: AtomicUsize,
    requests: AtomicUsize,
}

impl Forgetful {
    fn forget_all(&self) {
        let sessions = self.sessions.lock().unwrap().clone();
        self.forgotten.lock().unwrap().extend(sessions);
    }
}

async fn forgetful(State(up): State<Arc<Forgetful>>, req: Request, next: Next) -> Response {
    up.requests.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let session = parts
        .headers
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    if session.is_some_and(|s| up.forgotten.lock().unwrap().contains(&s)) {
        return (http::StatusCode::NOT_FOUND, "no such session").into_response();
    }
    if String::from_utf8_lossy(&bytes).contains(r#""method":"initialize""#) {
        up.inits.fetch_add(1, Ordering::SeqCst);
        if up.refuse_init.load(Ordering::SeqCst) {
            return (http::StatusCode::SERVICE_UNAVAILABLE, "starting").into_response();
        }
    }
    let response = next
        .run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await;
    if let Some(id) = response.headers().get("mcp-session-id") {
        let id = id.to_str().unwrap().to_owned();
        if up.amnesiac.load(Ordering::SeqCst) {
            up.forgotten.lock().unwrap().insert(id.clone());
        }
        up.sessions.lock().unwrap().insert(id);
    }
    response
}

async fn start() -> (Harness, Arc<Forgetful>, tokio::sync::oneshot::Sender<()>) {
    let up = Arc::new(Forgetful::default());
    let app = mcp_oauth_gateway::test_upstream::http_router()
        .layer(axum::middleware::from_fn_with_state(up.clone(), forgetful));
    let (addr, stop) = serve_app(app).await;
    let h = Harness::start(HttpConfig::new(&format!("http://{addr}/mcp")).unwrap()).await;
    (h, up, stop)
}

const ECHO: &str = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"text":"again"}}}"#;

#[tokio::test]
async fn a_lost_session_is_renewed_for_calls_notifications_and_the_get_stream() {
    let (h, up, _stop) = start().await;
    let token = h.token("alice");
    let session = raw_session(&h.url, &token).await;
    assert_eq!(up.inits.load(Ordering::SeqCst), 1);

    up.forget_all();
    let answer = post(&h.url, Some(&token), Some(&session), ECHO).await;
    assert_eq!(answer.status(), 200);
    let answer = messages(answer).await.pop().unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "again", "{answer}");
    assert_eq!(up.inits.load(Ordering::SeqCst), 2);

    up.forget_all();
    let note = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":99}}"#;
    assert_eq!(
        post(&h.url, Some(&token), Some(&session), note)
            .await
            .status(),
        202
    );
    assert_eq!(up.inits.load(Ordering::SeqCst), 3);

    up.forget_all();
    let stream = reqwest::Client::new()
        .get(&h.url)
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(up.inits.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn the_clients_session_ends_only_when_the_new_upstream_session_fails() {
    let (h, up, _stop) = start().await;
    let token = h.token("alice");
    let session = raw_session(&h.url, &token).await;
    up.forget_all();
    up.refuse_init.store(true, Ordering::SeqCst);
    let answer = post(&h.url, Some(&token), Some(&session), ECHO).await;
    assert_eq!(answer.status(), 404);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("initialize"),
        "{body}"
    );
    assert_eq!(
        up.inits.load(Ordering::SeqCst),
        2,
        "one attempt, not a loop"
    );
    // The session is gone at the gateway: the next request does not reach the upstream.
    let before = up.requests.load(Ordering::SeqCst);
    assert_eq!(
        post(&h.url, Some(&token), Some(&session), ECHO)
            .await
            .status(),
        404
    );
    assert_eq!(up.requests.load(Ordering::SeqCst), before);
    // A new session works once the upstream does.
    up.refuse_init.store(false, Ordering::SeqCst);
    let fresh = raw_session(&h.url, &token).await;
    assert_eq!(
        post(&h.url, Some(&token), Some(&fresh), ECHO)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_retry_that_is_lost_again_is_not_retried_forever() {
    let (h, up, _stop) = start().await;
    let token = h.token("alice");
    let session = raw_session(&h.url, &token).await;
    up.amnesiac.store(true, Ordering::SeqCst);
    up.forget_all();
    let answer = post(&h.url, Some(&token), Some(&session), ECHO).await;
    assert_eq!(answer.status(), 404);
    assert_eq!(up.inits.load(Ordering::SeqCst), 2, "re-initialized once");
}

#[tokio::test]
async fn another_users_session_id_never_triggers_a_renewal() {
    let (h, up, _stop) = start().await;
    let session = raw_session(&h.url, &h.token("alice")).await;
    up.forget_all();
    let before = up.requests.load(Ordering::SeqCst);
    let stolen = post(&h.url, Some(&h.token("mallory")), Some(&session), ECHO).await;
    assert_eq!(stolen.status(), 404);
    assert_eq!(up.requests.load(Ordering::SeqCst), before);
    assert_eq!(up.inits.load(Ordering::SeqCst), 1);
    // alice's session is still hers, and renewed when she uses it.
    let mine = post(&h.url, Some(&h.token("alice")), Some(&session), ECHO).await;
    assert_eq!(mine.status(), 200);
}
