//! An identity-provider outage does not take the MCP server down, end to end over HTTP on
//! 127.0.0.1: an `McpServer` whose tokens are checked against the IdP's JWKS keeps serving
//! tokens signed by keys it already has while the JWKS answers 500, 503, garbage, a huge
//! body, slower than the fetch timeout, or nothing at all; requests without a token still get
//! the challenge; an IdP that was never reached is `503 temporarily_unavailable`, not
//! `invalid_token` (docs/verification.md); and it recovers when the IdP does.
//!
//! `tests/verify.rs` covers the cache rules at the verifier level. These tests add the HTTP
//! answers (status, `WWW-Authenticate`, `Retry-After`), concurrency through the server (a
//! held key fetch must not hold up other requests: ordering is proven with a gate on the
//! JWKS, not with timings), unknown `kid`s under load and metadata outages.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use common::{DEADLINE, Served, eventually, whoami};
use mcp_oauth::OAuth;
use mcp_oauth::fetch::HttpClient;
use mcp_oauth::server::McpServer;
use mcp_oauth::testing::{JwksMode, MockIdp, TestKey};
use mcp_oauth::verify::{JwksOptions, JwtVerifier, RemoteJwks};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::time::{Instant, timeout};

/// A unique `jti` per token, so that no two requests carry the same token.
fn next_jti() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("jti-{}", N.fetch_add(1, Ordering::SeqCst))
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn www(&self) -> &str {
        self.headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// An MCP server with a `whoami` tool, its tokens checked against a remote JWKS, and no
/// verified-token cache (so that every request exercises the key cache).
struct Mcp {
    url: String,
    origin: String,
    issuer: String,
    http: reqwest::Client,
    jwks: Arc<RemoteJwks>,
    served: Served,
}

impl Mcp {
    async fn start_with(issuer: &str, verifier: JwtVerifier) -> Self {
        Self::start_mirroring(issuer, verifier, true).await
    }

    /// `mirror: false`: no metadata mirror, and so no start-up check of the metadata; the
    /// only metadata requests are then the verifier's JWKS discovery.
    async fn start_mirroring(issuer: &str, verifier: JwtVerifier, mirror: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let origin = format!("http://{}", listener.local_addr().expect("addr"));
        let url = format!("{origin}/mcp");
        let jwks = verifier.remote_jwks().cloned().expect("a remote key set");
        let oauth = OAuth::builder()
            .resource(url.clone())
            .authorization_server(issuer)
            .scopes_supported(["mcp:read"])
            .verifier(verifier)
            .token_cache(None)
            .mirror_authorization_server(mirror)
            .build()
            .expect("oauth");
        let server = McpServer::new("idp-faults", "1.0.0")
            .oauth(oauth)
            .tool(whoami());
        Self {
            url,
            origin,
            issuer: issuer.to_owned(),
            http: reqwest::Client::new(),
            jwks,
            served: Served::mcp(listener, server),
        }
    }

    async fn stop(self) {
        self.served.stop().await;
    }

    /// A token for this server signed by `key` (its `kid` in the header).
    fn token(&self, key: &TestKey) -> String {
        key.token()
            .iss(&self.issuer)
            .sub("user-1")
            .aud(&self.url)
            .scope("mcp:read")
            .claim("jti", next_jti())
            .sign()
    }

    /// A token like [`Self::token`] whose header names `kid`, which no key set holds.
    fn token_with_kid(&self, key: &TestKey, kid: &str) -> String {
        let header = json!({"alg": key.key().alg().as_str(), "typ": "at+jwt", "kid": kid});
        let claims = key
            .token()
            .iss(&self.issuer)
            .sub("user-1")
            .aud(&self.url)
            .claim("jti", next_jti())
            .claims();
        key.key()
            .sign_compact(header.to_string().as_bytes(), claims.to_string().as_bytes())
    }

    /// Calls the `whoami` tool.
    fn call(&self, token: Option<&str>) -> impl Future<Output = Answer> + Send + 'static {
        let mut req = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        async move {
            let res = req.send().await.expect("the MCP server answers");
            let status = res.status().as_u16();
            let headers = res.headers().clone();
            let text = res.text().await.expect("body");
            Answer {
                status,
                headers,
                body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
            }
        }
    }

    fn prm_url(&self) -> String {
        format!("{}/.well-known/oauth-protected-resource/mcp", self.origin)
    }

    /// 200 from the tool, as `user-1`.
    fn assert_served(&self, answer: &Answer, context: &str) {
        assert_eq!(answer.status, 200, "{context}: {answer:?}");
        assert_eq!(
            answer.body["result"]["structuredContent"]["sub"], "user-1",
            "{context}"
        );
    }

    /// 401 with the bare challenge naming the protected-resource metadata.
    fn assert_challenge(&self, answer: &Answer, context: &str) {
        assert_eq!(answer.status, 401, "{context}: {answer:?}");
        assert_eq!(
            answer.www(),
            format!(
                r#"Bearer resource_metadata="{}", scope="mcp:read""#,
                self.prm_url()
            ),
            "{context}"
        );
    }

    /// 401 `invalid_token`.
    fn assert_invalid_token(&self, answer: &Answer, context: &str) {
        assert_eq!(answer.status, 401, "{context}: {answer:?}");
        assert!(
            answer.www().starts_with(r#"Bearer error="invalid_token""#),
            "{context}: {}",
            answer.www()
        );
        assert_eq!(answer.body["error"], "invalid_token", "{context}");
    }

    /// 503 `temporarily_unavailable` with `Retry-After` and no challenge: the token may be
    /// fine, so the client must not throw it away.
    fn assert_unavailable(&self, answer: &Answer, context: &str) {
        assert_eq!(answer.status, 503, "{context}: {answer:?}");
        assert!(
            answer
                .headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.parse::<u64>().is_ok()),
            "{context}: {:?}",
            answer.headers
        );
        assert!(
            answer.headers.get("www-authenticate").is_none(),
            "{context}: an outage is not a bad token"
        );
        assert_eq!(answer.body["error"], "temporarily_unavailable", "{context}");
    }
}

fn jwks_verifier(
    issuer: &str,
    jwks_url: &str,
    options: JwksOptions,
    fetch_timeout: Duration,
) -> JwtVerifier {
    JwtVerifier::builder()
        .issuer(issuer)
        .jwks_url(jwks_url)
        .jwks_options(options)
        .http_client(
            HttpClient::builder()
                .timeout(fetch_timeout)
                .build()
                .expect("client"),
        )
        .build()
        .expect("verifier")
}

// ---------------------------------------------------------------------------------------
// Outages: cached keys keep working, the rest answers as documented, and recovery.

#[derive(Debug, Clone)]
enum Outage {
    Jwks(JwksMode),
    /// The IdP is shut down: connections are refused.
    Stopped,
}

/// Short TTLs so that a refresh is due during the outage; the fetch timeout is below the
/// slow IdP's delay.
fn outage_options() -> JwksOptions {
    JwksOptions::default()
        .ttl(
            Duration::from_millis(200),
            Duration::from_millis(200),
            Duration::from_secs(60),
        )
        .retry_after_error(Duration::from_millis(500))
        .stale_if_error(Duration::from_secs(3600))
}

const FETCH_TIMEOUT: Duration = Duration::from_millis(400);

async fn cached_keys_survive(outage: Outage) {
    let context = format!("{outage:?}");
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let key = idp.key().clone();
    let (issuer, jwks_url) = (idp.issuer().to_owned(), idp.jwks_url());
    let verifier = || jwks_verifier(&issuer, &jwks_url, outage_options(), FETCH_TIMEOUT);
    let warm = Mcp::start_with(&issuer, verifier()).await;
    warm.assert_served(&warm.call(Some(&warm.token(&key))).await, "warm-up");
    assert_eq!(idp.jwks_hits(), 1);

    let idp = match outage.clone() {
        Outage::Jwks(mode) => {
            idp.set_jwks_mode(mode);
            Some(idp)
        }
        Outage::Stopped => {
            idp.shutdown().await;
            None
        }
    };
    // Once the keys' TTL passes, a refresh is attempted and fails; every request meanwhile,
    // and after, is served from the keys already fetched.
    eventually("a failed refresh during the outage", async || {
        let answer = warm.call(Some(&warm.token(&key))).await;
        warm.assert_served(&answer, &context);
        warm.jwks.fetch_count() >= 2
    })
    .await;
    warm.assert_challenge(&warm.call(None).await, &context);
    warm.assert_served(&warm.call(Some(&warm.token(&key))).await, &context);
    // An unknown kid with a usable key set is not a key the IdP has: 401, as documented
    // (503 is for when no usable key is cached at all).
    let stranger = TestKey::rs256();
    warm.assert_invalid_token(
        &warm.call(Some(&warm.token(&stranger))).await,
        &format!("{context}, unknown kid"),
    );

    // A server that never had the keys cannot tell: 503, never invalid_token.
    let cold = Mcp::start_with(&issuer, verifier()).await;
    cold.assert_unavailable(
        &cold.call(Some(&cold.token(&key))).await,
        &format!("{context}, cold"),
    );
    cold.assert_challenge(&cold.call(None).await, &format!("{context}, cold"));

    if let Some(idp) = idp {
        // The IdP comes back with a rotated key: both servers pick it up.
        let next = TestKey::rs256();
        idp.set_keys(&[&key, &next]);
        idp.set_jwks_mode(JwksMode::Normal);
        eventually("the warm server verifies the new key", async || {
            let answer = warm.call(Some(&warm.token(&next))).await;
            assert!(matches!(answer.status, 200 | 401), "{context}: {answer:?}");
            answer.status == 200
        })
        .await;
        eventually("the cold server recovers", async || {
            let answer = cold.call(Some(&cold.token(&key))).await;
            assert!(matches!(answer.status, 200 | 503), "{context}: {answer:?}");
            answer.status == 200
        })
        .await;
        warm.assert_served(&warm.call(Some(&warm.token(&key))).await, &context);
        idp.shutdown().await;
    }
    warm.stop().await;
    cold.stop().await;
}

#[tokio::test]
async fn jwks_answering_500_keeps_cached_keys_working() {
    cached_keys_survive(Outage::Jwks(JwksMode::Status(500))).await;
}

#[tokio::test]
async fn jwks_answering_503_keeps_cached_keys_working() {
    cached_keys_survive(Outage::Jwks(JwksMode::Status(503))).await;
}

#[tokio::test]
async fn jwks_answering_garbage_keeps_cached_keys_working() {
    cached_keys_survive(Outage::Jwks(JwksMode::Garbage)).await;
}

#[tokio::test]
async fn jwks_answering_a_huge_body_keeps_cached_keys_working() {
    // Four times the fetch client's 256 KiB body limit.
    cached_keys_survive(Outage::Jwks(JwksMode::Huge(1024 * 1024))).await;
}

#[tokio::test]
async fn jwks_slower_than_the_fetch_timeout_keeps_cached_keys_working() {
    cached_keys_survive(Outage::Jwks(JwksMode::Slow(Duration::from_secs(3)))).await;
}

#[tokio::test]
async fn a_stopped_idp_keeps_cached_keys_working() {
    cached_keys_survive(Outage::Stopped).await;
}

// ---------------------------------------------------------------------------------------
// A JWKS whose answers can be held at a gate, to prove what completes while a fetch is in
// flight.

#[derive(Clone)]
struct GateState {
    keys: Arc<Mutex<Vec<TestKey>>>,
    hits: Arc<AtomicU64>,
    open: tokio::sync::watch::Receiver<bool>,
    entered: tokio::sync::mpsc::UnboundedSender<u64>,
}

async fn gated_jwks(State(state): State<GateState>) -> Response {
    let hit = state.hits.fetch_add(1, Ordering::SeqCst) + 1;
    let mut open = state.open.clone();
    if !*open.borrow() {
        let _ = state.entered.send(hit);
        let _ = open.wait_for(|open| *open).await;
    }
    let keys = state.keys.lock().unwrap().clone();
    let refs: Vec<&TestKey> = keys.iter().collect();
    axum::Json(serde_json::to_value(TestKey::jwks(&refs)).unwrap()).into_response()
}

struct GatedJwks {
    origin: String,
    keys: Arc<Mutex<Vec<TestKey>>>,
    hits: Arc<AtomicU64>,
    gate: tokio::sync::watch::Sender<bool>,
    entered: tokio::sync::mpsc::UnboundedReceiver<u64>,
    served: Option<Served>,
}

impl Drop for GatedJwks {
    /// Opens the gate; the server then shuts down as `served` is dropped.
    fn drop(&mut self) {
        let _ = self.gate.send(true);
    }
}

impl GatedJwks {
    async fn start(keys: &[&TestKey]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let origin = format!("http://{}", listener.local_addr().expect("addr"));
        let (gate, open) = tokio::sync::watch::channel(true);
        let (entered_tx, entered) = tokio::sync::mpsc::unbounded_channel();
        let state = GateState {
            keys: Arc::new(Mutex::new(keys.iter().map(|k| (*k).clone()).collect())),
            hits: Arc::default(),
            open,
            entered: entered_tx,
        };
        let app = axum::Router::new()
            .route("/jwks", axum::routing::get(gated_jwks))
            .with_state(state.clone());
        Self {
            origin,
            keys: state.keys,
            hits: state.hits,
            gate,
            entered,
            served: Some(Served::app(listener, app)),
        }
    }

    fn url(&self) -> String {
        format!("{}/jwks", self.origin)
    }

    fn publish(&self, keys: &[&TestKey]) {
        *self.keys.lock().unwrap() = keys.iter().map(|k| (*k).clone()).collect();
    }

    fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    fn close(&self) {
        self.gate.send_replace(false);
    }

    fn open(&self) {
        self.gate.send_replace(true);
    }

    /// Waits until a fetch is held at the closed gate; returns its hit number.
    async fn held(&mut self) -> u64 {
        timeout(DEADLINE, self.entered.recv())
            .await
            .expect("a key fetch reaches the IdP")
            .expect("the JWKS is running")
    }

    async fn stop(mut self) {
        self.open();
        if let Some(served) = self.served.take() {
            served.stop().await;
        }
    }
}

#[tokio::test]
async fn a_held_fetch_for_an_unknown_kid_does_not_hold_up_other_requests() {
    let key = TestKey::es256();
    let mut idp = GatedJwks::start(&[&key]).await;
    let options = JwksOptions::default().unknown_kid_cooldown(Duration::ZERO);
    let mcp = Mcp::start_with(
        &idp.origin,
        jwks_verifier(&idp.origin, &idp.url(), options, Duration::from_secs(30)),
    )
    .await;
    mcp.assert_served(&mcp.call(Some(&mcp.token(&key))).await, "warm-up");
    assert_eq!(idp.hits(), 1);

    // The IdP rotates in a new key but its answers are held: the first request with the new
    // kid triggers a fetch that cannot complete.
    let next = TestKey::es256();
    idp.publish(&[&key, &next]);
    idp.close();
    let slow = tokio::spawn(mcp.call(Some(&mcp.token(&next))));
    assert_eq!(idp.held().await, 2);
    // A second request with the new kid joins that fetch.
    let joined = tokio::spawn(mcp.call(Some(&mcp.token(&next))));

    // Meanwhile a request without a token and one with a cached key are answered.
    let (challenge, cached) = timeout(DEADLINE, async {
        tokio::join!(mcp.call(None), mcp.call(Some(&mcp.token(&key))))
    })
    .await
    .expect("answered while the key fetch is held");
    mcp.assert_challenge(&challenge, "no token during the held fetch");
    mcp.assert_served(&cached, "cached key during the held fetch");
    assert!(
        !slow.is_finished() && !joined.is_finished(),
        "the requests that need the new key are still waiting for the held fetch"
    );

    idp.open();
    let slow = timeout(DEADLINE, slow).await.expect("done").expect("task");
    mcp.assert_served(&slow, "the new key, once fetched");
    let joined = timeout(DEADLINE, joined)
        .await
        .expect("done")
        .expect("task");
    mcp.assert_served(&joined, "the second request for the new key");
    assert_eq!(
        idp.hits(),
        2,
        "one fetch served both requests for the new key"
    );
    mcp.stop().await;
    idp.stop().await;
}

/// When the key set's TTL has passed and the refresh hangs, requests whose key is in the
/// (stale but usable) set must not all wait for that refresh: stale-if-error is only useful
/// if the stale keys are served while the IdP is slow, not after the fetch timeout.
#[tokio::test]
async fn a_held_refresh_of_expired_keys_does_not_hold_up_requests_with_cached_keys() {
    let key = TestKey::es256();
    let mut idp = GatedJwks::start(&[&key]).await;
    let options = JwksOptions::default().ttl(
        Duration::from_millis(200),
        Duration::from_millis(200),
        Duration::from_secs(60),
    );
    let mcp = Mcp::start_with(
        &idp.origin,
        jwks_verifier(&idp.origin, &idp.url(), options, Duration::from_secs(30)),
    )
    .await;
    mcp.assert_served(&mcp.call(Some(&mcp.token(&key))).await, "warm-up");
    idp.close();
    // Requests with the cached key, until one finds the keys expired and its refresh is held.
    let mut pending = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    loop {
        assert!(Instant::now() < deadline, "no refresh was attempted");
        let mut request = tokio::spawn(mcp.call(Some(&mcp.token(&key))));
        tokio::select! {
            hit = idp.entered.recv() => {
                assert_eq!(hit, Some(2));
                pending.push(request);
                break;
            }
            answer = &mut request => {
                mcp.assert_served(&answer.expect("task"), "before the refresh");
            }
        }
    }
    let answer = timeout(DEADLINE, mcp.call(Some(&mcp.token(&key)))).await;
    let unblocked = answer.is_ok();
    idp.open();
    for request in pending {
        mcp.assert_served(
            &timeout(DEADLINE, request)
                .await
                .expect("done")
                .expect("task"),
            "the request that refreshed",
        );
    }
    assert!(
        unblocked,
        "a request with a cached key waited for the held refresh of expired keys"
    );
    mcp.assert_served(&answer.unwrap(), "a cached key during the held refresh");
    mcp.stop().await;
    idp.stop().await;
}

// ---------------------------------------------------------------------------------------
// Unknown kids under load, then recovery.

#[tokio::test]
async fn unknown_kids_under_load_make_one_fetch_and_a_rotated_key_recovers() {
    let idp = MockIdp::start(TestKey::es256()).await.expect("idp");
    let key = idp.key().clone();
    let stranger = TestKey::es256();
    // Cold: 200 concurrent requests with the same unknown kid, through HTTP.
    let mcp = Mcp::start_with(
        idp.issuer(),
        jwks_verifier(
            idp.issuer(),
            &idp.jwks_url(),
            JwksOptions::default(),
            Duration::from_secs(5),
        ),
    )
    .await;
    let before = idp.jwks_hits();
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..200 {
        burst.spawn(mcp.call(Some(&mcp.token_with_kid(&stranger, "rotated-in-later"))));
    }
    while let Some(answer) = burst.join_next().await {
        mcp.assert_invalid_token(&answer.expect("task"), "unknown kid under load");
    }
    assert_eq!(
        idp.jwks_hits() - before,
        1,
        "200 concurrent unknown kids, one fetch"
    );
    // Within the cooldown (30 s by default), more unknown kids cause no fetch at all.
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..50 {
        burst.spawn(mcp.call(Some(&mcp.token_with_kid(&stranger, &format!("random-{i}")))));
    }
    while let Some(answer) = burst.join_next().await {
        mcp.assert_invalid_token(&answer.expect("task"), "random kids within the cooldown");
    }
    mcp.assert_served(&mcp.call(Some(&mcp.token(&key))).await, "the known key");
    assert_eq!(idp.jwks_hits() - before, 1, "no fetch within the cooldown");
    mcp.stop().await;

    // With a short cooldown, a key the IdP rotates in is picked up once the cooldown passed.
    let options = JwksOptions::default().unknown_kid_cooldown(Duration::from_millis(300));
    let mcp = Mcp::start_with(
        idp.issuer(),
        jwks_verifier(
            idp.issuer(),
            &idp.jwks_url(),
            options,
            Duration::from_secs(5),
        ),
    )
    .await;
    mcp.assert_served(&mcp.call(Some(&mcp.token(&key))).await, "warm-up");
    assert_eq!(mcp.jwks.fetch_count(), 1);
    let next = TestKey::es256();
    idp.set_keys(&[&key, &next]);
    eventually("the rotated key verifies", async || {
        let answer = mcp.call(Some(&mcp.token(&next))).await;
        if answer.status != 200 {
            mcp.assert_invalid_token(&answer, "before the cooldown passed");
        }
        answer.status == 200
    })
    .await;
    assert_eq!(
        mcp.jwks.fetch_count(),
        2,
        "polls within the cooldown fetched nothing; the first one after it fetched once"
    );
    // Both keys now verify, under load, without another fetch.
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..200 {
        let signer = if i % 2 == 0 { &key } else { &next };
        burst.spawn(mcp.call(Some(&mcp.token(signer))));
    }
    while let Some(answer) = burst.join_next().await {
        mcp.assert_served(&answer.expect("task"), "after the rotation");
    }
    assert_eq!(mcp.jwks.fetch_count(), 2);
    // Another burst of unknown kids: at most one fetch, whether or not the cooldown passed.
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..200 {
        burst.spawn(mcp.call(Some(&mcp.token_with_kid(&stranger, "never-published"))));
    }
    while let Some(answer) = burst.join_next().await {
        mcp.assert_invalid_token(&answer.expect("task"), "unknown kid after the rotation");
    }
    assert!(mcp.jwks.fetch_count() <= 3, "{}", mcp.jwks.fetch_count());
    mcp.stop().await;
    idp.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Metadata outages.

#[tokio::test]
async fn the_mcp_endpoint_keeps_working_while_the_authorization_server_metadata_is_down() {
    // `mirror_answers_502_when_upstream_is_down_and_nothing_is_cached` (tests/server.rs)
    // covers the mirror itself; here, everything else around it.
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    idp.set_metadata_status(Some(503));
    let key = idp.key().clone();
    let mcp = Mcp::start_with(
        idp.issuer(),
        jwks_verifier(
            idp.issuer(),
            &idp.jwks_url(),
            outage_options(),
            FETCH_TIMEOUT,
        ),
    )
    .await;
    let res = mcp
        .http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            mcp.origin
        ))
        .send()
        .await
        .expect("mirror");
    assert_eq!(res.status(), 502, "clients cannot reach the AS metadata");
    let prm: Value = mcp
        .http
        .get(mcp.prm_url())
        .send()
        .await
        .expect("prm")
        .json()
        .await
        .expect("json");
    assert_eq!(prm["resource"], mcp.url.as_str());
    assert_eq!(prm["authorization_servers"], json!([idp.issuer()]));
    mcp.assert_challenge(&mcp.call(None).await, "metadata down");
    mcp.assert_served(
        &mcp.call(Some(&mcp.token(&key))).await,
        "metadata down, JWKS up",
    );

    // Now the JWKS goes down too: the cached keys carry on.
    idp.set_jwks_mode(JwksMode::Status(503));
    eventually("a failed key refresh", async || {
        mcp.assert_served(
            &mcp.call(Some(&mcp.token(&key))).await,
            "metadata and JWKS down",
        );
        mcp.jwks.fetch_count() >= 2
    })
    .await;
    let res = mcp.http.get(mcp.prm_url()).send().await.expect("prm");
    assert_eq!(res.status(), 200);
    mcp.assert_challenge(&mcp.call(None).await, "metadata and JWKS down");
    mcp.stop().await;
    idp.shutdown().await;
}

#[tokio::test]
async fn a_discovered_jwks_url_outlives_a_metadata_outage() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let key = idp.key().clone();
    let verifier = || {
        JwtVerifier::builder()
            .issuer(idp.issuer())
            .discover_jwks()
            .jwks_options(JwksOptions::default().unknown_kid_cooldown(Duration::from_millis(300)))
            .build()
            .expect("verifier")
    };
    // No metadata mirror on either server: every metadata request is a JWKS discovery.
    let warm = Mcp::start_mirroring(idp.issuer(), verifier(), false).await;
    assert_eq!(idp.metadata_hits(), 0);
    warm.assert_served(&warm.call(Some(&warm.token(&key))).await, "warm-up");
    assert!(
        idp.metadata_hits() > 0,
        "the warm server discovered its JWKS"
    );
    let metadata_hits = idp.metadata_hits();
    idp.set_metadata_status(Some(503));

    // Without the metadata, a server that never read it cannot find the keys: 503.
    let cold = Mcp::start_mirroring(idp.issuer(), verifier(), false).await;
    cold.assert_unavailable(
        &cold.call(Some(&cold.token(&key))).await,
        "jwks_uri undiscoverable",
    );
    assert!(
        idp.metadata_hits() > metadata_hits,
        "the cold server tried to discover its JWKS"
    );
    cold.assert_challenge(&cold.call(None).await, "jwks_uri undiscoverable");

    // The warm server knows where the keys are and refetches them there for a rotated key.
    let next = TestKey::rs256();
    idp.set_keys(&[&key, &next]);
    eventually(
        "the rotated key verifies without the metadata",
        async || {
            let answer = warm.call(Some(&warm.token(&next))).await;
            if answer.status != 200 {
                warm.assert_invalid_token(&answer, "before the cooldown passed");
            }
            answer.status == 200
        },
    )
    .await;
    assert_eq!(warm.jwks.fetch_count(), 2);
    warm.stop().await;
    cold.stop().await;
    idp.shutdown().await;
}
