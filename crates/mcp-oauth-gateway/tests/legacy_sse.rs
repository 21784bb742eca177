//! Legacy HTTP+SSE upstreams (MCP 2024-11-05): the gateway falls back to them when the
//! Streamable HTTP POST is refused, or uses them when told; the stream's endpoint must be on
//! the upstream's origin. The stand-in upstream below speaks only that transport.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use mcp_oauth_gateway::{HttpConfig, HttpTransport};
use serde_json::{Value, json};
use support::*;
use tokio::sync::mpsc;

/// A server of the HTTP+SSE transport: `GET /sse` opens a session's stream, whose first event
/// names `POST /messages?sessionId=N`; answers arrive on the stream.
#[derive(Default)]
struct Legacy {
    streams: Mutex<HashMap<String, mpsc::Sender<String>>>,
    /// What the `endpoint` event says, when not the usual path.
    endpoint: Mutex<Option<String>>,
    opened: AtomicUsize,
    streamable_posts: AtomicUsize,
    headers: Mutex<Vec<http::HeaderMap>>,
}

impl Legacy {
    fn open_streams(&self) -> usize {
        self.streams
            .lock()
            .unwrap()
            .values()
            .filter(|tx| !tx.is_closed())
            .count()
    }
}

async fn open(State(up): State<Arc<Legacy>>, headers: http::HeaderMap) -> Response {
    up.headers.lock().unwrap().push(headers);
    let n = up.opened.fetch_add(1, Ordering::SeqCst).to_string();
    let (tx, rx) = mpsc::channel::<String>(64);
    up.streams.lock().unwrap().insert(n.clone(), tx);
    let endpoint = up
        .endpoint
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| format!("/messages?sessionId={n}"));
    let first = futures_util::stream::once(async move {
        Ok::<_, Infallible>(Event::default().event("endpoint").data(endpoint))
    });
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        let message = rx.recv().await?;
        Some((
            Ok::<_, Infallible>(Event::default().event("message").data(message)),
            rx,
        ))
    });
    Sse::new(futures_util::StreamExt::chain(first, rest)).into_response()
}

async fn refuse_streamable(State(up): State<Arc<Legacy>>) -> Response {
    up.streamable_posts.fetch_add(1, Ordering::SeqCst);
    http::StatusCode::METHOD_NOT_ALLOWED.into_response()
}

async fn message(
    State(up): State<Arc<Legacy>>,
    Query(q): Query<HashMap<String, String>>,
    headers: http::HeaderMap,
    body: String,
) -> Response {
    up.headers.lock().unwrap().push(headers);
    let tx = q
        .get("sessionId")
        .and_then(|id| up.streams.lock().unwrap().get(id).cloned());
    let Some(tx) = tx.filter(|tx| !tx.is_closed()) else {
        return (http::StatusCode::NOT_FOUND, "no such session").into_response();
    };
    let Ok(m) = serde_json::from_str::<Value>(&body) else {
        return (http::StatusCode::BAD_REQUEST, "not json").into_response();
    };
    let answer =
        |result: Value| json!({"jsonrpc": "2.0", "id": m["id"], "result": result}).to_string();
    let params = &m["params"];
    match m["method"].as_str() {
        Some("initialize") => {
            let _ = tx
                .send(answer(json!({
                    "protocolVersion": "2024-11-05",
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "legacy", "version": "1"},
                })))
                .await;
        }
        Some("ping") => {
            let _ = tx.send(answer(json!({}))).await;
        }
        Some("tools/list") => {
            let _ = tx
                .send(answer(json!({"tools": [{"name": "echo", "description": "echoes",
                    "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}}]})))
                .await;
        }
        Some("tools/call") => {
            if let Some(token) = params["_meta"].get("progressToken") {
                let _ = tx
                    .send(
                        json!({"jsonrpc": "2.0", "method": "notifications/progress",
                            "params": {"progressToken": token, "progress": 1, "total": 2}})
                        .to_string(),
                    )
                    .await;
            }
            let text = params["arguments"]["text"].as_str().unwrap_or_default();
            let _ = tx
                .send(answer(json!({"content": [{"type": "text", "text": text}]})))
                .await;
        }
        _ => {}
    }
    http::StatusCode::ACCEPTED.into_response()
}

struct Up {
    url: String,
    state: Arc<Legacy>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn legacy_upstream() -> Up {
    let state = Arc::new(Legacy::default());
    let app = axum::Router::new()
        .route("/sse", axum::routing::get(open).post(refuse_streamable))
        .route("/messages", axum::routing::post(message))
        .with_state(state.clone());
    let (addr, stop) = serve_app(app).await;
    Up {
        url: format!("http://{addr}/sse"),
        state,
        _stop: stop,
    }
}

#[tokio::test]
async fn an_upstream_refusing_streamable_http_is_spoken_to_over_sse() {
    let up = legacy_upstream().await;
    let h = Harness::start(
        HttpConfig::new(&up.url)
            .unwrap()
            .header("X-Upstream-Key", "k")
            .unwrap(),
    )
    .await;
    let client = h.client("alice").await;
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools[0].name, "echo");
    assert_eq!(
        call(&client, "echo", json!({"text": "over sse"}))
            .await
            .unwrap(),
        "over sse"
    );
    assert_eq!(up.state.streamable_posts.load(Ordering::SeqCst), 1);
    // Progress comes back on the request's answer, before its response.
    let token = h.token("bob");
    let session = raw_session(&h.url, &token).await;
    let answer = post(
        &h.url,
        Some(&token),
        Some(&session),
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"text":"p"},"_meta":{"progressToken":"t1"}}}"#,
    )
    .await;
    assert_eq!(answer.status(), 200);
    let all = messages(answer).await;
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0]["method"], "notifications/progress");
    assert_eq!(all[1]["id"], 9);
    assert_eq!(all[1]["result"]["content"][0]["text"], "p");
    // Once seen, the upstream is spoken to over SSE at once.
    assert_eq!(up.state.streamable_posts.load(Ordering::SeqCst), 1);
    assert_eq!(
        up.state.opened.load(Ordering::SeqCst),
        2,
        "a stream per session"
    );
    // The inbound token never reaches the upstream; the configured header does.
    for headers in up.state.headers.lock().unwrap().iter() {
        assert!(!headers.contains_key("authorization"), "{headers:?}");
        assert_eq!(headers["x-upstream-key"], "k");
    }
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn sse_when_told_sessions_end_with_their_stream() {
    let up = legacy_upstream().await;
    let h = Harness::start(
        HttpConfig::new(&up.url)
            .unwrap()
            .transport(HttpTransport::Sse),
    )
    .await;
    let (alice, mallory) = (h.token("alice"), h.token("mallory"));
    let session = raw_session(&h.url, &alice).await;
    assert_eq!(up.state.streamable_posts.load(Ordering::SeqCst), 0);
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    assert_eq!(
        post(&h.url, Some(&mallory), Some(&session), list)
            .await
            .status(),
        404,
        "another user's session id"
    );
    let mine = post(&h.url, Some(&alice), Some(&session), list).await;
    assert_eq!(mine.status(), 200);
    assert_eq!(
        messages(mine).await[0]["result"]["tools"][0]["name"],
        "echo"
    );
    // DELETE closes the upstream stream.
    assert_eq!(up.state.open_streams(), 1);
    let deleted = reqwest::Client::new()
        .delete(&h.url)
        .bearer_auth(&alice)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    poll("the upstream stream to close", || async {
        (up.state.open_streams() == 0).then_some(())
    })
    .await;
    // The upstream ending a stream: the next request opens a new one, initialized with the
    // client's initialize, in the same client session.
    let session = raw_session(&h.url, &alice).await;
    let opened = up.state.opened.load(Ordering::SeqCst);
    up.state.streams.lock().unwrap().clear();
    let again = post(&h.url, Some(&alice), Some(&session), list).await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        messages(again).await[0]["result"]["tools"][0]["name"],
        "echo"
    );
    assert_eq!(up.state.opened.load(Ordering::SeqCst), opened + 1);
    let call = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"renewed"}}}"#;
    let answer = post(&h.url, Some(&alice), Some(&session), call).await;
    assert_eq!(
        messages(answer).await[0]["result"]["content"][0]["text"],
        "renewed"
    );
    assert_eq!(up.state.opened.load(Ordering::SeqCst), opened + 1, "kept");
    // An upstream that answers but gives no working stream (this one names another origin)
    // ends the client's session.
    *up.state.endpoint.lock().unwrap() = Some("http://127.0.0.2:9/messages".into());
    up.state.streams.lock().unwrap().clear();
    let gone = post(&h.url, Some(&alice), Some(&session), list).await;
    assert_eq!(gone.status(), 404);
}

#[tokio::test]
async fn an_endpoint_on_another_origin_is_refused_and_never_contacted() {
    let up = legacy_upstream().await;
    let elsewhere = legacy_upstream().await;
    let other = elsewhere.url.replace("/sse", "/messages?sessionId=0");
    for endpoint in [
        other.as_str(),
        "//127.0.0.2:1/messages",
        "http://evil.example/m",
    ] {
        *up.state.endpoint.lock().unwrap() = Some(endpoint.to_owned());
        let h = Harness::start(HttpConfig::new(&up.url).unwrap()).await;
        let response = post(&h.url, Some(&h.token("alice")), None, INITIALIZE).await;
        assert_ne!(response.status(), 200, "{endpoint}");
        let body = response.text().await.unwrap();
        assert!(!body.contains("\"result\""), "{endpoint}: {body}");
    }
    assert!(
        elsewhere.state.headers.lock().unwrap().is_empty(),
        "never contacted"
    );
    // With the transport named, the refusal says why.
    *up.state.endpoint.lock().unwrap() = Some(other);
    let h = Harness::start(
        HttpConfig::new(&up.url)
            .unwrap()
            .transport(HttpTransport::Sse),
    )
    .await;
    let response = post(&h.url, Some(&h.token("alice")), None, INITIALIZE).await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("origin"),
        "{body}"
    );
    assert!(elsewhere.state.headers.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_streamable_upstream_is_not_mistaken_for_a_legacy_one() {
    let app = mcp_oauth_gateway::test_upstream::http_router();
    let (addr, _stop) = serve_app(app).await;
    let h = Harness::start(
        HttpConfig::new(&format!("http://{addr}/mcp"))
            .unwrap()
            .transport(HttpTransport::StreamableHttp),
    )
    .await;
    let client = h.client("alice").await;
    assert_eq!(
        call(&client, "echo", json!({"text": "x"})).await.unwrap(),
        "x"
    );
    client.cancel().await.unwrap();
}
