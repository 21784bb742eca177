//! DPoP-bound tokens (RFC 9449) through the gateway in front of a Streamable HTTP upstream:
//! a bound token with a fresh proof per request reaches the upstream; the same token without
//! a proof, with a replayed proof or as `Bearer` is refused at the gateway; and neither the
//! `DPoP` header nor the token ever reaches the upstream.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use mcp_oauth::dpop::{self, DpopNonces, DpopVerifier};
use mcp_oauth::jose::Jwk;
use mcp_oauth::testing::TestKey;
use mcp_oauth_gateway::HttpConfig;
use serde_json::{Value, json};
use support::*;
use tokio::sync::oneshot;

/// Every request the upstream got: its headers and body.
type Seen = Arc<Mutex<Vec<(http::HeaderMap, String)>>>;

async fn record(State(seen): State<Seen>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    seen.lock().unwrap().push((
        parts.headers.clone(),
        String::from_utf8_lossy(&bytes).into_owned(),
    ));
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// The rmcp test server on 127.0.0.1 behind a recorder; stops when the sender drops.
async fn upstream() -> (HttpConfig, Seen, oneshot::Sender<()>) {
    let seen = Seen::default();
    let app = mcp_oauth_gateway::test_upstream::http_router()
        .layer(axum::middleware::from_fn_with_state(seen.clone(), record));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    (
        HttpConfig::new(&format!("http://{addr}/mcp")).unwrap(),
        seen,
        stop,
    )
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// A client's DPoP key and its proofs.
struct Client(TestKey);

impl Client {
    fn jkt(&self) -> String {
        self.0.public_jwk().unwrap().thumbprint().unwrap()
    }

    fn proof(&self, url: &str, token: &str, nonce: Option<&str>) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let mut jwk = serde_json::to_value(Jwk {
            kid: None,
            alg: None,
            use_: None,
            ..self.0.public_jwk().unwrap()
        })
        .unwrap();
        jwk.as_object_mut().unwrap().retain(|_, v| !v.is_null());
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
        let mut claims = json!({
            "jti": format!("gw-{}", NEXT.fetch_add(1, Ordering::Relaxed)),
            "htm": "POST", "htu": url, "iat": now(),
            "ath": dpop::access_token_hash(token),
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        self.0
            .key()
            .sign_compact(header.to_string().as_bytes(), claims.to_string().as_bytes())
    }
}

/// A POST with this `Authorization` and these `DPoP` values.
async fn send(
    url: &str,
    authorization: &str,
    proofs: &[&str],
    session: Option<&str>,
    body: &str,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("authorization", authorization)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_owned());
    for proof in proofs {
        request = request.header("dpop", *proof);
    }
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    request.send().await.unwrap()
}

fn challenge(response: &reqwest::Response) -> String {
    response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned()
}

const ECHO: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"bound"}}}"#;

#[tokio::test]
async fn a_bound_token_with_its_proofs_reaches_the_upstream_and_nothing_of_dpop_goes_upstream() {
    let (config, seen, _stop) = upstream().await;
    let h = Harness::with_oauth(config, |oauth| {
        oauth.dpop(DpopVerifier::builder().build().unwrap())
    })
    .await;
    let client = Client(TestKey::es256());
    let token = h
        .key
        .token()
        .iss(ISSUER)
        .aud(&h.url)
        .sub("alice")
        .scope("mcp:read")
        .claim("cnf", json!({"jkt": client.jkt()}))
        .sign();
    let auth = format!("DPoP {token}");

    // The client: a fresh proof on every request.
    let init = client.proof(&h.url, &token, None);
    let response = send(&h.url, &auth, &[&init], None, INITIALIZE).await;
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let ack = send(
        &h.url,
        &auth,
        &[&client.proof(&h.url, &token, None)],
        Some(&session),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(ack.status(), 202);
    let call = client.proof(&h.url, &token, None);
    let response = send(&h.url, &auth, &[&call], Some(&session), ECHO).await;
    assert_eq!(response.status(), 200);
    let replies = messages(response).await;
    assert_eq!(
        replies.last().unwrap()["result"]["content"][0]["text"],
        "bound",
        "{replies:?}"
    );
    let upstream_count = seen.lock().unwrap().len();

    // A thief with the token: without a proof, with the proof already used, with a proof of
    // its own key, and as Bearer. None of it reaches the upstream.
    let refused = [
        (send(&h.url, &auth, &[], Some(&session), ECHO).await, "DPoP"),
        (
            send(&h.url, &auth, &[&call], Some(&session), ECHO).await,
            "DPoP",
        ),
        (
            send(
                &h.url,
                &auth,
                &[&Client(TestKey::es256()).proof(&h.url, &token, None)],
                Some(&session),
                ECHO,
            )
            .await,
            "DPoP",
        ),
        (
            send(
                &h.url,
                &format!("Bearer {token}"),
                &[],
                Some(&session),
                ECHO,
            )
            .await,
            "Bearer",
        ),
    ];
    for (response, scheme) in refused {
        assert_eq!(response.status(), 401);
        let challenge = challenge(&response);
        let resource_metadata = format!(
            "resource_metadata=\"http://{}/.well-known/oauth-protected-resource/mcp\"",
            h.addr
        );
        if scheme == "DPoP" {
            assert!(
                challenge.starts_with(&format!(
                    "Bearer {resource_metadata}, scope=\"mcp:read\", DPoP error=\"invalid_dpop_proof\", error_description=\""
                )),
                "{challenge}"
            );
        } else {
            assert!(
                challenge.starts_with(
                    "Bearer error=\"invalid_token\", error_description=\"the access token is bound to a key (cnf.jkt): present it with the DPoP scheme and a DPoP proof\""
                ),
                "{challenge}"
            );
        }
        assert!(challenge.contains(", DPoP "), "{challenge}");
        assert!(challenge.contains("algs=\""), "{challenge}");
    }
    assert_eq!(seen.lock().unwrap().len(), upstream_count);

    // What the upstream got: no DPoP header, no Authorization, the token nowhere.
    let requests = seen.lock().unwrap();
    assert!(requests.len() >= 3, "{}", requests.len());
    for (headers, body) in requests.iter() {
        assert!(!headers.contains_key("dpop"), "{headers:?}");
        assert!(!headers.contains_key("authorization"), "{headers:?}");
        for value in headers.values() {
            let value = value.to_str().unwrap_or_default();
            assert!(!value.contains(&token), "{headers:?}");
            assert!(!value.contains(&call), "{headers:?}");
        }
        assert!(!body.contains(&token));
    }
}

#[tokio::test]
async fn required_dpop_refuses_bearer_tokens_and_nonces_are_asked_for_and_honoured() {
    let (config, seen, _stop) = upstream().await;
    let h = Harness::with_oauth(config, |oauth| {
        oauth
            .dpop(
                DpopVerifier::builder()
                    .nonces(DpopNonces::generate(std::time::Duration::from_secs(300)).unwrap())
                    .build()
                    .unwrap(),
            )
            .require_dpop()
    })
    .await;
    // An unbound token is refused under require_dpop, before anything goes upstream.
    let bearer = h.token("bob");
    let response = send(&h.url, &format!("Bearer {bearer}"), &[], None, INITIALIZE).await;
    assert_eq!(response.status(), 401);
    assert!(challenge(&response).starts_with("Bearer "));
    assert_eq!(seen.lock().unwrap().len(), 0);

    let client = Client(TestKey::es256());
    let token = h
        .key
        .token()
        .iss(ISSUER)
        .aud(&h.url)
        .sub("bob")
        .scope("mcp:read")
        .claim("cnf", json!({"jkt": client.jkt()}))
        .sign();
    let auth = format!("DPoP {token}");
    // No nonce: 401 use_dpop_nonce with the nonce to use.
    let response = send(
        &h.url,
        &auth,
        &[&client.proof(&h.url, &token, None)],
        None,
        INITIALIZE,
    )
    .await;
    assert_eq!(response.status(), 401);
    let text = challenge(&response);
    assert!(text.contains(", DPoP error=\"use_dpop_nonce\""), "{text}");
    let nonce = response.headers()["dpop-nonce"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(seen.lock().unwrap().len(), 0);
    // The retry with it goes through.
    let response = send(
        &h.url,
        &auth,
        &[&client.proof(&h.url, &token, Some(&nonce))],
        None,
        INITIALIZE,
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["result"]["protocolVersion"].is_string(), "{body}");
    assert!(!seen.lock().unwrap()[0].0.contains_key("dpop"));
}
