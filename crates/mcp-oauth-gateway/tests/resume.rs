//! Resumability of the streams the gateway writes (protocol 2025-03-26 to 2025-11-25): every
//! event carries an id of its stream, and a GET with `Last-Event-ID` replays what came after
//! it, on that stream only, and only to the session that owns it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use mcp_oauth_gateway::HttpConfig;
use serde_json::{Value, json};
use support::*;

/// A call of the test upstream's `slow` tool: `steps` progress notifications, then the answer.
fn slow_call(id: u64, steps: u64) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": "slow", "arguments": {"steps": steps, "step_ms": 100},
        "_meta": {"progressToken": "p"}}})
    .to_string()
}

/// One SSE event: its id and its data as JSON.
#[derive(Debug)]
struct Received {
    id: Option<String>,
    data: Value,
}

fn parse_event(event: &str) -> Option<Received> {
    let mut id = None;
    let mut data = Vec::new();
    for line in event.lines() {
        if let Some(value) = line.strip_prefix("id:") {
            id = Some(value.trim_start().to_owned());
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push(value.trim_start());
        }
    }
    let data = data.join("\n");
    (!data.is_empty()).then(|| Received {
        id,
        data: serde_json::from_str(&data).unwrap(),
    })
}

/// Reads events from a streamed response until `count` with data have come (or it ends).
async fn read_events(response: &mut reqwest::Response, count: usize) -> Vec<Received> {
    let mut buffer = String::new();
    let mut out = Vec::new();
    while out.len() < count {
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            if let Some(received) = parse_event(&event) {
                out.push(received);
            }
            if out.len() == count {
                return out;
            }
        }
        match response.chunk().await.unwrap() {
            Some(chunk) => buffer.push_str(std::str::from_utf8(&chunk).unwrap()),
            None => break,
        }
    }
    out
}

/// Every event of a response that ends.
async fn all_events(mut response: reqwest::Response) -> Vec<Received> {
    read_events(&mut response, usize::MAX).await
}

async fn get(url: &str, token: &str, session: &str, last: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session);
    if let Some(last) = last {
        request = request.header("last-event-id", last);
    }
    request.send().await.unwrap()
}

/// The `PREFIX-STREAM-SEQ` parts of an event id.
fn parts(id: &str) -> (String, u64, u64) {
    let mut it = id.rsplitn(3, '-');
    let seq = it.next().unwrap().parse().unwrap();
    let stream = it.next().unwrap().parse().unwrap();
    (it.next().unwrap().to_owned(), stream, seq)
}

/// A client reads the first event of a slow call, loses its connection, and resumes: the
/// rest of the stream comes, the answer included, nothing twice.
async fn check_a_broken_stream_is_resumed(h: &Harness) {
    let token = h.token("alice");
    let session = raw_session(&h.url, &token).await;
    let mut first = post(&h.url, Some(&token), Some(&session), slow_call(5, 4)).await;
    assert_eq!(first.status(), 200);
    let seen = read_events(&mut first, 1).await;
    drop(first);
    let id = seen[0].id.clone().expect("the event has an id");
    assert_eq!(seen[0].data["method"], "notifications/progress");
    let (prefix, stream, seq) = parts(&id);
    assert!(
        prefix.len() >= 24 && prefix.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert!(
        !session.contains(&prefix),
        "the prefix is not the session id"
    );

    let resumed = get(&h.url, &token, &session, Some(&id)).await;
    assert_eq!(resumed.status(), 200);
    let rest = all_events(resumed).await;
    let answer = rest.last().expect("events after the first");
    assert_eq!(answer.data["id"], 5, "{rest:?}");
    assert_eq!(
        answer.data["result"]["content"][0]["text"], "done after 4 steps",
        "{rest:?}"
    );
    let progress: Vec<f64> = rest
        .iter()
        .filter(|e| e.data["method"] == "notifications/progress")
        .map(|e| e.data["params"]["progress"].as_f64().unwrap())
        .collect();
    let first_progress = seen[0].data["params"]["progress"].as_f64().unwrap();
    assert!(
        progress.iter().all(|p| *p > first_progress),
        "nothing before the resumed id comes again: {progress:?}"
    );
    assert_eq!(progress.len(), 3, "{rest:?}");
    for (n, event) in rest.iter().enumerate() {
        let (p, s, q) = parts(event.id.as_deref().expect("id"));
        assert_eq!((p.as_str(), s), (prefix.as_str(), stream), "same stream");
        assert_eq!(q, seq + 1 + n as u64, "in order, none missing");
    }

    // The same id again replays the same events (the stream is kept), then ends.
    let again = all_events(get(&h.url, &token, &session, Some(&id)).await).await;
    assert_eq!(again.len(), rest.len());
    // Resuming after the answer: nothing is left on that stream.
    let last_id = answer.id.clone().unwrap();
    let after = all_events(get(&h.url, &token, &session, Some(&last_id)).await).await;
    assert!(after.is_empty(), "{after:?}");
}

#[tokio::test]
async fn a_broken_request_stream_is_resumed_through_a_stdio_upstream() {
    let h = Harness::start(stdio_upstream()).await;
    check_a_broken_stream_is_resumed(&h).await;
}

#[tokio::test]
async fn a_broken_request_stream_is_resumed_through_an_http_upstream() {
    let (addr, _stop) = serve_app(mcp_oauth_gateway::test_upstream::http_router()).await;
    let h = Harness::start(HttpConfig::new(&format!("http://{addr}/mcp")).unwrap()).await;
    check_a_broken_stream_is_resumed(&h).await;
}

/// The first data event of a GET stream, after `trigger` made the upstream announce a list
/// change to every session.
async fn first_event_after_a_list_change(
    h: &Harness,
    stream: &mut reqwest::Response,
    token: &str,
    session: &str,
) -> Received {
    let toggled = post(
        &h.url,
        Some(token),
        Some(session),
        json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
               "params": {"name": "toggle", "arguments": {}}})
        .to_string(),
    )
    .await;
    assert_eq!(toggled.status(), 200);
    read_events(stream, 1).await.pop().expect("an event")
}

/// Mallory holds an event id of Alice's stream (from a log, say). On her own session it
/// replays nothing of Alice's: her GET is a fresh stream. On Alice's session she is refused
/// as for any unknown session.
#[tokio::test]
async fn another_sessions_event_id_replays_nothing() {
    let h = Harness::start(stdio_upstream()).await;
    let alice = h.token("alice");
    let alice_session = raw_session(&h.url, &alice).await;
    let answered =
        all_events(post(&h.url, Some(&alice), Some(&alice_session), slow_call(3, 3)).await).await;
    assert!(answered.len() >= 2, "{answered:?}");
    let alices_id = answered[0].id.clone().unwrap();

    let mallory = h.token("mallory");
    let mallory_session = raw_session(&h.url, &mallory).await;
    let mut stream = get(&h.url, &mallory, &mallory_session, Some(&alices_id)).await;
    assert_eq!(stream.status(), 200);
    let first = first_event_after_a_list_change(&h, &mut stream, &mallory, &mallory_session).await;
    assert_eq!(
        first.data["method"], "notifications/tools/list_changed",
        "a fresh stream, not Alice's events: {first:?}"
    );
    let (mallory_prefix, stream_no, _) = parts(first.id.as_deref().unwrap());
    assert_eq!(stream_no, 0, "the GET stream");
    assert_ne!(
        mallory_prefix,
        parts(&alices_id).0,
        "each session its own prefix"
    );
    drop(stream);

    // Alice's session id with Alice's event id, and Mallory's token: unknown session.
    let refused = get(&h.url, &mallory, &alice_session, Some(&alices_id)).await;
    assert_eq!(refused.status(), 404);
    // Without a token: the challenge, nothing else.
    let anonymous = reqwest::Client::new()
        .get(&h.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &alice_session)
        .header("last-event-id", &alices_id)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

/// Ids of the right session that name nothing kept (a stream that never was, an event not
/// yet written, malformed numbers) replay nothing and open the GET stream as without one.
#[tokio::test]
async fn forged_ids_of_the_same_session_replay_nothing() {
    let h = Harness::start(stdio_upstream()).await;
    let token = h.token("alice");
    let session = raw_session(&h.url, &token).await;
    let answered =
        all_events(post(&h.url, Some(&token), Some(&session), slow_call(3, 2)).await).await;
    let id = answered[0].id.clone().unwrap();
    let (prefix, stream, _) = parts(&id);
    for forged in [
        format!("{prefix}-{}-1", stream + 7),
        format!("{prefix}-{stream}-999"),
        format!("{prefix}-{stream}-01"),
        format!("{prefix}-{stream}--1"),
        format!("{prefix}-{stream}-18446744073709551615"),
        format!("{prefix}-x-1"),
        "not-an-id".to_owned(),
    ] {
        // The previous iteration's stream is closed by the client; the gateway may take a
        // moment to notice (until then a GET without a resume is a second stream: 409).
        let mut stream = poll("the GET stream to be free", || async {
            let response = get(&h.url, &token, &session, Some(&forged)).await;
            (response.status() != 409).then_some(response)
        })
        .await;
        assert_eq!(stream.status(), 200, "{forged}");
        let first = first_event_after_a_list_change(&h, &mut stream, &token, &session).await;
        assert_eq!(
            first.data["method"], "notifications/tools/list_changed",
            "{forged}: {first:?}"
        );
    }
}

/// The GET stream is one per session; a resume of it takes it over from a connection the
/// gateway still thinks open, and gets what was written on it after the id.
#[tokio::test]
async fn the_get_stream_is_resumed_and_taken_over() {
    let h = Harness::start(stdio_upstream()).await;
    check_the_get_stream_is_resumed(&h).await;
}

#[tokio::test]
async fn the_get_stream_of_an_http_upstream_is_resumed_and_taken_over() {
    let (addr, _stop) = serve_app(mcp_oauth_gateway::test_upstream::http_router()).await;
    let h = Harness::start(HttpConfig::new(&format!("http://{addr}/mcp")).unwrap()).await;
    tokio::time::timeout(DEADLINE, check_the_get_stream_is_resumed(&h))
        .await
        .expect("in time");
}

async fn check_the_get_stream_is_resumed(h: &Harness) {
    let token = h.token("alice");
    let session = raw_session(&h.url, &token).await;
    let mut stream = get(&h.url, &token, &session, None).await;
    assert_eq!(stream.status(), 200);
    let second = get(&h.url, &token, &session, None).await;
    assert_eq!(second.status(), 409, "one GET stream per session");
    let first = first_event_after_a_list_change(h, &mut stream, &token, &session).await;
    let id = first.id.clone().unwrap();
    // Two more changes are written on the stream; the client "loses" them.
    for _ in 0..2 {
        let next = first_event_after_a_list_change(h, &mut stream, &token, &session).await;
        assert_eq!(next.data["method"], "notifications/tools/list_changed");
    }
    // The old connection is still open as far as the gateway knows; the resume takes over.
    let mut resumed = get(&h.url, &token, &session, Some(&id)).await;
    assert_eq!(resumed.status(), 200);
    let replayed = read_events(&mut resumed, 2).await;
    assert_eq!(replayed.len(), 2, "{replayed:?}");
    let seq = |e: &Received| parts(e.id.as_deref().unwrap()).2;
    assert_eq!(seq(&replayed[0]), parts(&id).2 + 1);
    assert_eq!(seq(&replayed[1]), parts(&id).2 + 2);
    // The taken-over connection ends.
    assert!(read_events(&mut stream, 1).await.is_empty());
    // New messages follow on the resumed connection.
    let live = first_event_after_a_list_change(h, &mut resumed, &token, &session).await;
    assert_eq!(seq(&live), parts(&id).2 + 3);
}
