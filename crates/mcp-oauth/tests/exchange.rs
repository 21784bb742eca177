//! Token exchange (RFC 8693) and Entra's on-behalf-of grant, against a stand-in token endpoint
//! that records every request exactly as it arrives: what is sent, when an answer is reused,
//! one exchange per caller under concurrency, and every kind of failure.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::eventually;
use mcp_oauth::exchange::{ExchangeError, ExchangeGrant, TokenExchange};
use mcp_oauth::protocol::{ClientAuthMethod, ClientCredentials};
use mcp_oauth::scope::ScopeHierarchy;
use mcp_oauth::{AccessToken, Auth, AuthInfo, Claims, DefaultClaimMapper};
use serde_json::json;
use tokio::sync::Semaphore;

type Form = BTreeMap<String, String>;

/// What the stand-in answers, and what it saw.
#[derive(Default)]
struct Endpoint {
    seen: Mutex<Vec<(Option<String>, Form)>>,
    answer: Mutex<(u16, String)>,
    /// When set, each request waits for a permit before it is answered.
    gate: Mutex<Option<Arc<Semaphore>>>,
    issued: Mutex<u32>,
}

struct StandIn {
    endpoint: Arc<Endpoint>,
    url: String,
    server: tokio::task::JoinHandle<()>,
}

impl StandIn {
    async fn start() -> Self {
        let endpoint = Arc::new(Endpoint::default());
        endpoint.answer(200, bearer(600));
        let app =
            axum::Router::new()
                .route(
                    "/token",
                    axum::routing::post(
                        |State(endpoint): State<Arc<Endpoint>>,
                         headers: HeaderMap,
                         body: String| async move {
                            let authorization = headers
                                .get("authorization")
                                .map(|v| v.to_str().expect("ascii").to_owned());
                            let form = url::form_urlencoded::parse(body.as_bytes())
                                .into_owned()
                                .collect();
                            endpoint.seen.lock().unwrap().push((authorization, form));
                            let gate = endpoint.gate.lock().unwrap().clone();
                            if let Some(gate) = gate {
                                gate.acquire().await.expect("gate").forget();
                            }
                            let (status, body) = endpoint.answer.lock().unwrap().clone();
                            // Each answer carries a new token, so reuse is visible.
                            let body = {
                                let mut issued = endpoint.issued.lock().unwrap();
                                *issued += 1;
                                body.replace("$N", &issued.to_string())
                            };
                            (
                                StatusCode::from_u16(status).expect("status"),
                                [("content-type", "application/json")],
                                body,
                            )
                        },
                    ),
                )
                .with_state(endpoint.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/token", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self {
            endpoint,
            url,
            server,
        }
    }

    fn requests(&self) -> usize {
        self.endpoint.seen.lock().unwrap().len()
    }

    fn last(&self) -> (Option<String>, Form) {
        self.endpoint
            .seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Endpoint {
    fn answer(&self, status: u16, body: String) {
        *self.answer.lock().unwrap() = (status, body);
    }
}

fn bearer(expires_in: i64) -> String {
    json!({
        "access_token": "exchanged-$N",
        "token_type": "Bearer",
        "expires_in": expires_in,
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "scope": "files:read",
    })
    .to_string()
}

/// A verified caller, as the bearer layer hands it over.
fn caller(sub: &str, client: &str, scope: &str, token: &str) -> Auth {
    let claims = json!({"sub": sub, "client_id": client, "scope": scope, "aud": "https://mcp.example.com/mcp"});
    let serde_json::Value::Object(map) = claims else {
        unreachable!("an object")
    };
    Auth::from(AuthInfo::from_claims(
        Claims::new(map),
        AccessToken::new(token),
        &DefaultClaimMapper,
        Arc::new(ScopeHierarchy::new()),
    ))
}

fn exchange(stand_in: &StandIn) -> TokenExchange {
    TokenExchange::builder(&stand_in.url)
        .client(ClientCredentials::new("mcp-server", "s3cret"))
        .audience("https://api.example.com")
        .resource("https://api.example.com/v1")
        .scopes(["files:read", "files:write"])
        .build()
        .expect("exchange")
}

fn form(pairs: &[(&str, &str)]) -> Form {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn the_exchange_sends_the_callers_token_as_subject_and_reuses_the_answer() {
    let stand_in = StandIn::start().await;
    let exchange = exchange(&stand_in);
    let alice = caller("alice", "inspector", "mcp:read", "alice-token");

    let token = exchange.exchange(&alice).await.expect("exchanged");
    assert_eq!(token.access_token(), "exchanged-1");
    assert_eq!(token.scope(), Some("files:read"));
    assert_eq!(
        token.issued_token_type(),
        Some("urn:ietf:params:oauth:token-type:access_token")
    );
    // The stand-in saw exactly RFC 8693 §2.1, with the client's Basic credentials.
    assert_eq!(
        stand_in.last(),
        (
            Some("Basic bWNwLXNlcnZlcjpzM2NyZXQ=".to_owned()),
            form(&[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange"
                ),
                ("subject_token", "alice-token"),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token"
                ),
                (
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:access_token"
                ),
                ("audience", "https://api.example.com"),
                ("resource", "https://api.example.com/v1"),
                ("scope", "files:read files:write"),
            ])
        )
    );

    // The same caller again: reused, no second request.
    let again = exchange.exchange(&alice).await.expect("reused");
    assert_eq!(again.access_token(), "exchanged-1");
    assert_eq!(stand_in.requests(), 1);

    // Another subject, another client of the same subject, other scopes: each its own.
    for other in [
        caller("bob", "inspector", "mcp:read", "bob-token"),
        caller("alice", "other-client", "mcp:read", "alice-token-2"),
        caller("alice", "inspector", "mcp:read mcp:admin", "alice-token-3"),
    ] {
        exchange.exchange(&other).await.expect("exchanged");
    }
    assert_eq!(stand_in.requests(), 4);
    // The reused one is still alice's first token; forgetting it makes a new exchange.
    assert_eq!(
        exchange.exchange(&alice).await.unwrap().access_token(),
        "exchanged-1"
    );
    exchange.forget(&alice);
    assert_eq!(
        exchange.exchange(&alice).await.unwrap().access_token(),
        "exchanged-5"
    );
}

#[tokio::test]
async fn concurrent_requests_of_one_caller_make_one_exchange() {
    let stand_in = StandIn::start().await;
    let gate = Arc::new(Semaphore::new(0));
    *stand_in.endpoint.gate.lock().unwrap() = Some(gate.clone());
    let exchange = exchange(&stand_in);
    let alice = caller("alice", "inspector", "mcp:read", "alice-token");

    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let exchange = exchange.clone();
            let alice = alice.clone();
            tokio::spawn(async move { exchange.exchange(&alice).await })
        })
        .collect();
    eventually("the first exchange reaches the endpoint", async || {
        stand_in.requests() == 1
    })
    .await;
    gate.add_permits(20);
    for task in tasks {
        let token = task.await.expect("task").expect("exchanged");
        assert_eq!(token.access_token(), "exchanged-1");
    }
    assert_eq!(stand_in.requests(), 1, "one exchange for twenty requests");
}

#[tokio::test]
async fn a_token_about_to_expire_is_exchanged_again() {
    let stand_in = StandIn::start().await;
    // 20 s left is inside the default 30 s margin: never handed out twice.
    stand_in.endpoint.answer(200, bearer(20));
    let exchange = exchange(&stand_in);
    let alice = caller("alice", "inspector", "mcp:read", "alice-token");
    assert_eq!(
        exchange.exchange(&alice).await.unwrap().access_token(),
        "exchanged-1"
    );
    assert_eq!(
        exchange.exchange(&alice).await.unwrap().access_token(),
        "exchanged-2"
    );

    // Without expires_in, reused for max_reuse; with max_reuse zero, not at all.
    let no_expiry = json!({"access_token": "exchanged-$N", "token_type": "bearer"}).to_string();
    stand_in.endpoint.answer(200, no_expiry);
    let reusing = exchange_with(&stand_in, |b| b.max_reuse(Duration::from_secs(600)));
    let first = reusing.exchange(&alice).await.unwrap();
    assert!(first.expires_at().is_some());
    assert_eq!(
        reusing.exchange(&alice).await.unwrap().access_token(),
        first.access_token()
    );
    let never = exchange_with(&stand_in, |b| b.max_reuse(Duration::ZERO));
    let a = never.exchange(&alice).await.unwrap();
    let b = never.exchange(&alice).await.unwrap();
    assert_ne!(a.access_token(), b.access_token());
}

fn exchange_with(
    stand_in: &StandIn,
    f: impl FnOnce(
        mcp_oauth::exchange::TokenExchangeBuilder,
    ) -> mcp_oauth::exchange::TokenExchangeBuilder,
) -> TokenExchange {
    f(TokenExchange::builder(&stand_in.url)
        .client(ClientCredentials::new("mcp-server", "s3cret"))
        .audience("https://api.example.com"))
    .build()
    .expect("exchange")
}

#[tokio::test]
async fn refusals_outages_and_unusable_answers_are_told_apart_and_never_reused() {
    let stand_in = StandIn::start().await;
    let exchange = exchange(&stand_in);
    let alice = caller("alice", "inspector", "mcp:read", "alice-token");

    stand_in.endpoint.answer(
        400,
        json!({"error": "invalid_grant", "error_description": "subject token expired"}).to_string(),
    );
    let refused = exchange.exchange(&alice).await.expect_err("refused");
    assert_eq!(
        refused,
        ExchangeError::Refused {
            status: 400,
            error: "invalid_grant".into(),
            description: Some("subject token expired".into()),
        }
    );
    assert_eq!(
        refused.to_string(),
        "the token exchange was refused (400 invalid_grant: subject token expired)"
    );
    stand_in.endpoint.answer(401, "not json".into());
    assert_eq!(
        exchange.exchange(&alice).await.expect_err("refused"),
        ExchangeError::Refused {
            status: 401,
            error: "invalid_request".into(),
            description: None,
        }
    );
    stand_in.endpoint.answer(503, "{}".into());
    assert!(matches!(
        exchange.exchange(&alice).await,
        Err(ExchangeError::Unavailable(_))
    ));
    for (body, why) in [
        ("not json", "not a JSON object"),
        (r#"{"token_type":"Bearer"}"#, "no access_token"),
        (
            r#"{"access_token":"","token_type":"Bearer"}"#,
            "no access_token",
        ),
        (r#"{"access_token":"t","token_type":"DPoP"}"#, "not Bearer"),
        (r#"{"access_token":"t"}"#, "token_type is missing"),
        (
            r#"{"access_token":"t","token_type":"N_A","issued_token_type":"urn:ietf:params:oauth:token-type:refresh_token"}"#,
            "not Bearer",
        ),
        (
            r#"{"access_token":"t","token_type":"Bearer","issued_token_type":"urn:ietf:params:oauth:token-type:id_token"}"#,
            "is not an access token",
        ),
        (
            r#"{"access_token":"t","token_type":"Bearer","expires_in":"soon"}"#,
            "expires_in",
        ),
        (
            r#"{"access_token":"t","token_type":"Bearer","access_token":"u"}"#,
            "not a JSON object",
        ),
    ] {
        stand_in.endpoint.answer(200, body.into());
        match exchange.exchange(&alice).await {
            Err(ExchangeError::InvalidAnswer(text)) => {
                assert!(text.contains(why), "{body}: {text}");
            }
            other => panic!("{body}: {other:?}"),
        }
    }
    // None of that was remembered: a good answer now is used.
    stand_in.endpoint.answer(200, bearer(600));
    let token = exchange.exchange(&alice).await.expect("exchanged");
    assert!(token.access_token().starts_with("exchanged-"));
    let unreachable = TokenExchange::builder("http://127.0.0.1:1/token")
        .client(ClientCredentials::new("mcp-server", "s3cret"))
        .audience("https://api.example.com")
        .build()
        .expect("exchange");
    assert!(matches!(
        unreachable.exchange(&alice).await,
        Err(ExchangeError::Unavailable(_))
    ));
}

#[tokio::test]
async fn entra_on_behalf_of_sends_the_jwt_bearer_shape() {
    let stand_in = StandIn::start().await;
    let obo = TokenExchange::builder(&stand_in.url)
        .client(
            ClientCredentials::new("11111111-app", "s3cret")
                .with_method(ClientAuthMethod::ClientSecretPost),
        )
        .grant(ExchangeGrant::OnBehalfOf)
        .scopes(["api://downstream/.default"])
        .build()
        .expect("obo");
    let alice = caller("alice", "inspector", "mcp:read", "eyJ.alice.jwt");
    obo.exchange(&alice).await.expect("exchanged");
    assert_eq!(
        stand_in.last(),
        (
            None,
            form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", "eyJ.alice.jwt"),
                ("requested_token_use", "on_behalf_of"),
                ("scope", "api://downstream/.default"),
                ("client_id", "11111111-app"),
                ("client_secret", "s3cret"),
            ])
        )
    );
}

#[test]
fn configuration_mistakes_are_refused_with_what_to_do() {
    let base = || TokenExchange::builder("https://auth.example.com/token");
    let client = || ClientCredentials::new("mcp-server", "s3cret");
    let err = |b: mcp_oauth::exchange::TokenExchangeBuilder| b.build().unwrap_err().to_string();

    assert!(err(base().audience("a")).contains(".client(ClientCredentials::new"));
    assert!(err(base().client(client())).contains("no target"));
    assert!(
        err(base()
            .client(client())
            .grant(ExchangeGrant::OnBehalfOf)
            .audience("a"))
        .contains("api://<app>/.default")
    );
    assert!(
        err(TokenExchange::builder("not a url")
            .client(client())
            .audience("a"))
        .contains("not a url")
    );

    // Neither the client's secret nor a token shows in debug output.
    let exchange = base().client(client()).audience("a").build().expect("ok");
    let debug = format!("{exchange:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
}
