//! `user-oauth`: discovery of the upstream's authorization server and the gateway's client
//! id there, and the chained consent (the connect flow), with its attacker-side cases,
//! against a stand-in upstream and authorization server on one loopback port.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod browser;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcp_oauth::auth_server::store::{MemoryStore, Store};
use mcp_oauth::scope::ScopeHierarchy;
use mcp_oauth::{AccessToken, Auth, AuthInfo, Claims, DefaultClaimMapper};
use mcp_oauth_gateway::user_oauth::{ClientAuth, ConnectError, UserOAuth};
use mcp_oauth_gateway::vault::Vault;
use serde_json::{Value, json};

const UPSTREAM: &str = "notes";
const GATEWAY: &str = "https://gw.example.com";

#[derive(Default)]
struct Server {
    base: String,
    /// Codes issued: code -> (code_challenge, redirect_uri, client_id).
    codes: HashMap<String, (String, String, String)>,
    redemptions: Vec<HashMap<String, String>>,
    registrations: usize,
    cimd: bool,
    s256: bool,
    /// The `resource` the protected-resource metadata names (default: the upstream).
    prm_resource: Option<String>,
    /// The authorization server the protected-resource metadata names (default: this one).
    prm_issuer: Option<String>,
    /// Every request's `Authorization` header, to prove the gateway's tokens never arrive.
    authorizations: Vec<String>,
    /// Requests of discovery: the upstream's challenge, its metadata, the server's metadata.
    discovery: usize,
    /// The server's metadata answers 503.
    metadata_down: bool,
    /// A client secret the registration answer carries (the server insists on one).
    dcr_secret: Option<String>,
}

struct StandIn {
    base: String,
    state: Arc<Mutex<Server>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Shared = State<Arc<Mutex<Server>>>;

fn seen(state: &Arc<Mutex<Server>>, headers: &HeaderMap) {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        state
            .lock()
            .unwrap()
            .authorizations
            .push(value.to_str().unwrap_or_default().to_owned());
    }
}

impl StandIn {
    async fn start(cimd: bool, s256: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(Server {
            base: base.clone(),
            cimd,
            s256,
            ..Server::default()
        }));
        let app = Router::new()
            .route("/mcp", post(mcp))
            .route("/.well-known/oauth-protected-resource/mcp", get(prm))
            .route("/.well-known/oauth-authorization-server", get(as_metadata))
            .route("/register", post(register))
            .route("/token", post(token))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { base, state, task }
    }

    fn resource(&self) -> String {
        format!("{}/mcp", self.base)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Server) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// What the authorization server does when the user approves: a code bound to the
    /// request's PKCE challenge, redirect URI and client; returns the callback's query.
    fn approve(&self, location: &str, code: &str) -> String {
        let url = url::Url::parse(location).unwrap();
        let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["response_type"], "code");
        self.with(|s| {
            s.codes.insert(
                code.to_owned(),
                (
                    q["code_challenge"].clone(),
                    q["redirect_uri"].clone(),
                    q["client_id"].clone(),
                ),
            )
        });
        format!(
            "code={code}&state={}&iss={}",
            urlencode(&q["state"]),
            urlencode(&self.base)
        )
    }
}

fn urlencode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

async fn mcp(State(state): Shared, headers: HeaderMap) -> axum::response::Response {
    seen(&state, &headers);
    let base = {
        let mut s = state.lock().unwrap();
        s.discovery += 1;
        s.base.clone()
    };
    let mut response = StatusCode::UNAUTHORIZED.into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::try_from(format!(
            r#"Bearer resource_metadata="{base}/.well-known/oauth-protected-resource/mcp""#
        ))
        .unwrap(),
    );
    response
}

async fn prm(State(state): Shared) -> Json<Value> {
    let mut s = state.lock().unwrap();
    s.discovery += 1;
    let resource = s
        .prm_resource
        .clone()
        .unwrap_or_else(|| format!("{}/mcp", s.base));
    Json(json!({
        "resource": resource,
        "authorization_servers": [s.prm_issuer.clone().unwrap_or_else(|| s.base.clone())],
        "scopes_supported": ["notes:read"],
    }))
}

async fn as_metadata(State(state): Shared) -> axum::response::Response {
    let mut s = state.lock().unwrap();
    s.discovery += 1;
    if s.metadata_down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let mut doc = json!({
        "issuer": s.base,
        "authorization_endpoint": format!("{}/authorize", s.base),
        "token_endpoint": format!("{}/token", s.base),
        "registration_endpoint": format!("{}/register", s.base),
        "authorization_response_iss_parameter_supported": true,
    });
    if s.s256 {
        doc["code_challenge_methods_supported"] = json!(["S256"]);
    }
    if s.cimd {
        doc["client_id_metadata_document_supported"] = json!(true);
    }
    Json(doc).into_response()
}

async fn register(State(state): Shared, Json(body): Json<Value>) -> impl IntoResponse {
    let mut s = state.lock().unwrap();
    s.registrations += 1;
    assert_eq!(body["token_endpoint_auth_method"], "none");
    let mut answer = json!({"client_id": format!("registered-{}", s.registrations)});
    if let Some(secret) = &s.dcr_secret {
        answer["client_secret"] = json!(secret);
    }
    (StatusCode::CREATED, Json(answer))
}

async fn token(
    State(state): Shared,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> axum::response::Response {
    seen(&state, &headers);
    let mut s = state.lock().unwrap();
    s.redemptions.push(form.clone());
    let refuse = || {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        )
            .into_response()
    };
    let Some((challenge, redirect_uri, client_id)) =
        form.get("code").and_then(|c| s.codes.remove(c))
    else {
        return refuse();
    };
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let computed = URL_SAFE_NO_PAD.encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref(),
    );
    if form.get("grant_type").map(String::as_str) != Some("authorization_code")
        || verifier.is_empty()
        || computed != challenge
        || form.get("redirect_uri") != Some(&redirect_uri)
        || form
            .get("client_id")
            .cloned()
            .or_else(|| basic_user(&headers))
            .as_ref()
            != Some(&client_id)
        || form.get("resource") != Some(&format!("{}/mcp", s.base))
    {
        return refuse();
    }
    let code = form["code"].clone();
    Json(json!({
        "access_token": format!("upstream-access-for-{code}"),
        "token_type": "Bearer",
        "expires_in": 3600,
        "refresh_token": format!("upstream-refresh-for-{code}"),
    }))
    .into_response()
}

/// The client id of an HTTP Basic `Authorization` header (RFC 6749 §2.3.1).
fn basic_user(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let (user, _) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some(user.to_owned())
}

fn caller(sub: &str) -> Auth {
    let Value::Object(map) =
        json!({"sub": sub, "iss": "https://gateway.example.com", "scope": "mcp"})
    else {
        unreachable!("an object")
    };
    Auth::from(AuthInfo::from_claims(
        Claims::new(map),
        AccessToken::new(format!("gateway-token-of-{sub}")),
        &DefaultClaimMapper,
        Arc::new(ScopeHierarchy::new()),
    ))
}

fn user(sub: &str) -> String {
    Vault::user_of(&caller(sub))
}

fn instance(stand_in: &StandIn, store: &Arc<dyn Store>) -> UserOAuth {
    UserOAuth::builder(UPSTREAM, stand_in.resource())
        .public_url(GATEWAY)
        .store(store.clone())
        .vault(Vault::new(store.clone(), &[7; 32]).unwrap())
        .build()
        .unwrap()
}

/// The request headers of the browser that holds `set_cookie`.
fn browser(set_cookie: &HeaderValue) -> HeaderMap {
    let pair = set_cookie.to_str().unwrap().split(';').next().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(header::COOKIE, HeaderValue::try_from(pair).unwrap());
    headers
}

struct Setup {
    stand_in: StandIn,
    gateway: UserOAuth,
}

async fn setup() -> Setup {
    let stand_in = StandIn::start(false, true).await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let gateway = instance(&stand_in, &store);
    Setup { stand_in, gateway }
}

#[tokio::test]
async fn a_user_connects_once_and_the_grant_is_theirs() {
    let s = setup().await;
    // Before: a call asks to connect, naming the link.
    let err = s.gateway.grant(&caller("alice")).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("https://gw.example.com/gateway/connect/notes"),
        "{err}"
    );
    let start = s.gateway.start_connect(&user("alice")).await.unwrap();
    let location = url::Url::parse(start.location()).unwrap();
    assert!(
        start
            .location()
            .starts_with(&format!("{}/authorize?", s.stand_in.base))
    );
    let q: HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(q["resource"], s.stand_in.resource());
    assert_eq!(q["scope"], "notes:read", "the resource's scopes_supported");
    assert_eq!(
        q["redirect_uri"],
        "https://gw.example.com/gateway/connect/notes/callback"
    );
    assert_eq!(q["client_id"], "registered-1", "registered dynamically");
    let cookie = start.set_cookie().to_str().unwrap();
    for attribute in [
        "HttpOnly",
        "SameSite=Lax",
        "Secure",
        "Path=/gateway/connect/notes/callback",
    ] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let query = s.stand_in.approve(start.location(), "c1");
    let grant = s
        .gateway
        .finish_connect(&user("alice"), &query, &browser(start.set_cookie()))
        .await
        .unwrap();
    assert_eq!(grant.access_token(), "upstream-access-for-c1");
    let used = s.gateway.grant(&caller("alice")).await.unwrap();
    assert_eq!(used.access_token(), "upstream-access-for-c1");
    // Another user still has nothing.
    assert!(s.gateway.grant(&caller("bob")).await.is_err());
    assert!(
        s.stand_in.with(|st| st
            .authorizations
            .iter()
            .all(|a| !a.contains("gateway-token"))),
        "the gateway's own tokens never reach the upstream or its server"
    );
}

#[tokio::test]
async fn a_callback_in_another_browser_is_refused_and_uses_the_state_up() {
    let s = setup().await;
    let start = s.gateway.start_connect(&user("alice")).await.unwrap();
    let query = s.stand_in.approve(start.location(), "c1");
    // No cookie, then someone else's cookie.
    let err = s
        .gateway
        .finish_connect(&user("alice"), &query, &HeaderMap::new())
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::NotYours), "{err:?}");
    let other = s.gateway.start_connect(&user("alice")).await.unwrap();
    let err = s
        .gateway
        .finish_connect(&user("alice"), &query, &browser(other.set_cookie()))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::UnknownState), "{err:?}");
    // The right browser afterwards: the state is gone.
    let err = s
        .gateway
        .finish_connect(&user("alice"), &query, &browser(start.set_cookie()))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::UnknownState), "{err:?}");
    assert!(s.gateway.grant(&caller("alice")).await.is_err());
    assert!(
        s.stand_in.with(|st| st.redemptions.is_empty()),
        "no code was redeemed"
    );
}

#[tokio::test]
async fn an_attackers_authorization_opened_by_a_victim_binds_nothing() {
    let s = setup().await;
    // Mallory starts a connection and authorizes at the upstream with her own account...
    let mallory = s.gateway.start_connect(&user("mallory")).await.unwrap();
    let query = s.stand_in.approve(mallory.location(), "mallory-code");
    // ...and gets Alice (signed in at the gateway, with a connection of her own started)
    // to open the callback.
    let alice = s.gateway.start_connect(&user("alice")).await.unwrap();
    let err = s
        .gateway
        .finish_connect(&user("alice"), &query, &browser(alice.set_cookie()))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::NotYours), "{err:?}");
    assert!(s.gateway.grant(&caller("alice")).await.is_err());
    assert!(s.gateway.grant(&caller("mallory")).await.is_err());
    // The other way round: Alice authorizes on Mallory's link, in Alice's browser (without
    // Mallory's cookie), signed in as Alice: refused, Alice's account goes to nobody.
    let mallory = s.gateway.start_connect(&user("mallory")).await.unwrap();
    let query = s.stand_in.approve(mallory.location(), "alice-code");
    let err = s
        .gateway
        .finish_connect(&user("alice"), &query, &HeaderMap::new())
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::NotYours), "{err:?}");
    assert!(s.gateway.grant(&caller("mallory")).await.is_err());
}

#[tokio::test]
async fn a_callback_finished_by_another_signed_in_user_is_refused() {
    let s = setup().await;
    let start = s.gateway.start_connect(&user("alice")).await.unwrap();
    let query = s.stand_in.approve(start.location(), "c1");
    // Same browser (cookie), but Bob is signed in now.
    let err = s
        .gateway
        .finish_connect(&user("bob"), &query, &browser(start.set_cookie()))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::NotYours), "{err:?}");
    assert!(s.gateway.grant(&caller("bob")).await.is_err());
    assert!(s.gateway.grant(&caller("alice")).await.is_err());
}

#[tokio::test]
async fn a_replayed_or_unknown_state_is_refused() {
    let s = setup().await;
    let start = s.gateway.start_connect(&user("alice")).await.unwrap();
    let query = s.stand_in.approve(start.location(), "c1");
    let headers = browser(start.set_cookie());
    s.gateway
        .finish_connect(&user("alice"), &query, &headers)
        .await
        .unwrap();
    let err = s
        .gateway
        .finish_connect(&user("alice"), &query, &headers)
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::UnknownState), "{err:?}");
    for query in ["", "code=c1", "state=made-up&code=c1"] {
        let err = s
            .gateway
            .finish_connect(&user("alice"), query, &headers)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ConnectError::UnknownState),
            "{query}: {err:?}"
        );
    }
    assert_eq!(s.stand_in.with(|st| st.redemptions.len()), 1);
}

#[tokio::test]
async fn the_code_is_redeemed_with_the_pkce_verifier_of_its_own_flow() {
    let s = setup().await;
    let first = s.gateway.start_connect(&user("alice")).await.unwrap();
    let second = s.gateway.start_connect(&user("alice")).await.unwrap();
    // A code issued for the first flow's challenge, delivered with the second flow's state
    // (and browser): the second flow's verifier does not match, the server refuses.
    s.stand_in.approve(first.location(), "c1");
    let second_state = url::Url::parse(second.location())
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let query = format!(
        "code=c1&state={}&iss={}",
        urlencode(&second_state),
        urlencode(&s.stand_in.base)
    );
    let err = s
        .gateway
        .finish_connect(&user("alice"), &query, &browser(second.set_cookie()))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Refused(_)), "{err:?}");
    let sent = s.stand_in.with(|st| st.redemptions[0].clone());
    assert!(!sent["code_verifier"].is_empty());
    assert!(s.gateway.grant(&caller("alice")).await.is_err());
}

#[tokio::test]
async fn a_declined_consent_or_another_issuer_keeps_nothing() {
    let s = setup().await;
    let start = s.gateway.start_connect(&user("alice")).await.unwrap();
    let state = url::Url::parse(start.location())
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let err = s
        .gateway
        .finish_connect(
            &user("alice"),
            &format!("error=access_denied&state={}", urlencode(&state)),
            &browser(start.set_cookie()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ConnectError::Denied(ref e) if e == "access_denied"),
        "{err:?}"
    );
    // RFC 9207: an answer naming another issuer (a mix-up) is refused before the code is used.
    let start = s.gateway.start_connect(&user("alice")).await.unwrap();
    let query = s.stand_in.approve(start.location(), "c1").replace(
        &urlencode(&s.stand_in.base),
        "https%3A%2F%2Fevil.example.com",
    );
    let err = s
        .gateway
        .finish_connect(&user("alice"), &query, &browser(start.set_cookie()))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::WrongIssuer), "{err:?}");
    assert!(s.stand_in.with(|st| st.redemptions.is_empty()));
    assert!(s.gateway.grant(&caller("alice")).await.is_err());
}

#[tokio::test]
async fn a_dynamic_registration_is_shared_by_instances_through_the_store() {
    let stand_in = StandIn::start(false, true).await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let one = instance(&stand_in, &store);
    let two = instance(&stand_in, &store);
    let a = one.start_connect(&user("alice")).await.unwrap();
    let b = two.start_connect(&user("bob")).await.unwrap();
    let client = |s: &str| {
        url::Url::parse(s)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "client_id")
            .unwrap()
            .1
            .into_owned()
    };
    assert_eq!(client(a.location()), "registered-1");
    assert_eq!(client(b.location()), "registered-1");
    assert_eq!(stand_in.with(|s| s.registrations), 1);
}

#[tokio::test]
async fn the_client_id_metadata_document_is_the_client_id_where_supported() {
    let stand_in = StandIn::start(true, true).await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let gateway = instance(&stand_in, &store);
    let start = gateway.start_connect(&user("alice")).await.unwrap();
    let q: HashMap<String, String> = url::Url::parse(start.location())
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(
        q["client_id"],
        "https://gw.example.com/gateway/oauth-client.json"
    );
    assert_eq!(stand_in.with(|s| s.registrations), 0);
    // A configured client id wins over both.
    let configured = UserOAuth::builder(UPSTREAM, stand_in.resource())
        .public_url(GATEWAY)
        .client(ClientAuth::public("configured"))
        .store(store.clone())
        .vault(Vault::new(store.clone(), &[7; 32]).unwrap())
        .build()
        .unwrap();
    let start = configured.start_connect(&user("alice")).await.unwrap();
    assert!(start.location().contains("client_id=configured"));
}

#[tokio::test]
async fn an_authorization_server_without_s256_or_metadata_for_another_resource_is_refused() {
    let stand_in = StandIn::start(false, false).await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let err = instance(&stand_in, &store)
        .start_connect(&user("alice"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("S256"), "{err}");
    let stand_in = StandIn::start(false, true).await;
    stand_in.with(|s| s.prm_resource = Some("https://elsewhere.example.com/mcp".into()));
    let err = instance(&stand_in, &store)
        .start_connect(&user("alice"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not the upstream"), "{err}");
}

#[tokio::test]
async fn an_authorization_server_on_an_internal_address_is_refused() {
    // The upstream's metadata names a server on another loopback port: not the upstream's
    // host:port, not configured, not a public address.
    let stand_in = StandIn::start(false, true).await;
    let other = StandIn::start(false, true).await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    stand_in.with(|s| s.prm_issuer = Some(other.base.clone()));
    let gateway = UserOAuth::builder(UPSTREAM, stand_in.resource())
        .public_url(GATEWAY)
        .store(store.clone())
        .vault(Vault::new(store.clone(), &[7; 32]).unwrap())
        .build()
        .unwrap();
    let err = gateway.start_connect(&user("alice")).await.unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
}

#[tokio::test]
async fn a_failed_discovery_is_remembered_for_a_while_not_run_by_every_request() {
    let stand_in = StandIn::start(false, true).await;
    stand_in.with(|s| s.metadata_down = true);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let now = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let read = now.clone();
    let gateway = UserOAuth::builder(UPSTREAM, stand_in.resource())
        .public_url(GATEWAY)
        .store(store.clone())
        .vault(Vault::new(store.clone(), &[7; 32]).unwrap())
        .clock(move || read.load(std::sync::atomic::Ordering::SeqCst))
        .build()
        .unwrap();
    let err = gateway.start_connect(&user("alice")).await.unwrap_err();
    assert!(
        matches!(err, mcp_oauth_gateway::GatewayError::Unavailable(_)),
        "{err:?}"
    );
    let asked = stand_in.with(|s| s.discovery);
    assert!(asked > 0);

    // Every request meanwhile, at once or one after another, fails at once with the reason
    // and when it is tried again, asking nothing; even once the server is back.
    let mut tasks = Vec::new();
    for who in ["alice", "bob", "carol", "dave"] {
        let gateway = gateway.clone();
        tasks.push(tokio::spawn(async move {
            gateway.start_connect(&user(who)).await
        }));
    }
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("503"), "the reason: {err}");
        assert!(err.to_string().contains("again in 30 s"), "when: {err}");
    }
    stand_in.with(|s| s.metadata_down = false);
    now.store(29, std::sync::atomic::Ordering::SeqCst);
    let err = gateway.start_connect(&user("alice")).await.unwrap_err();
    assert!(err.to_string().contains("again in 1 s"), "{err}");
    assert_eq!(stand_in.with(|s| s.discovery), asked);

    // Then the next request discovers again, and what it finds is kept.
    now.store(30, std::sync::atomic::Ordering::SeqCst);
    assert!(gateway.start_connect(&user("alice")).await.is_ok());
    let again = stand_in.with(|s| s.discovery);
    assert!(again > asked);
    assert!(gateway.start_connect(&user("bob")).await.is_ok());
    assert_eq!(stand_in.with(|s| s.discovery), again);
}

#[tokio::test]
async fn a_registrations_client_secret_is_sealed_in_the_store() {
    const SECRET: &str = "dcr-secret-7f3a9c41";
    let stand_in = StandIn::start(false, true).await;
    stand_in.with(|s| s.dcr_secret = Some(SECRET.into()));
    let dir = std::env::temp_dir().join(format!(
        "mcp-oauth-user-oauth-dcr-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("store.db");
    let open = || -> Arc<dyn Store> {
        Arc::new(mcp_oauth::auth_server::store::SqliteStore::open(&path).unwrap())
    };
    let one = instance(&stand_in, &open());
    one.start_connect(&user("alice")).await.unwrap();
    assert_eq!(stand_in.with(|s| s.registrations), 1);

    // Every byte the store wrote (database and journal): the client id is there, the
    // secret nowhere.
    let mut bytes = Vec::new();
    for file in std::fs::read_dir(&dir).unwrap() {
        bytes.extend(std::fs::read(file.unwrap().path()).unwrap());
    }
    let holds = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(holds("registered-1"), "the registration is in these files");
    assert!(!holds(SECRET), "the client secret is sealed");

    // Another instance reads the registration back, opens the secret, and authenticates
    // with it at the token endpoint.
    let two = instance(&stand_in, &open());
    let start = two.start_connect(&user("bob")).await.unwrap();
    assert!(start.location().contains("client_id=registered-1"));
    assert_eq!(stand_in.with(|s| s.registrations), 1);
    let query = stand_in.approve(start.location(), "c7");
    two.finish_connect(&user("bob"), &query, &browser(start.set_cookie()))
        .await
        .unwrap();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("registered-1:{SECRET}"))
    );
    assert!(
        stand_in.with(|s| s.authorizations.contains(&basic)),
        "the token endpoint got the registration's secret"
    );

    // Under another key the kept registration does not open: the gateway registers again
    // and keeps the new one.
    let store = open();
    let rekeyed = UserOAuth::builder(UPSTREAM, stand_in.resource())
        .public_url(GATEWAY)
        .store(store.clone())
        .vault(Vault::new(store, &[8; 32]).unwrap())
        .build()
        .unwrap();
    let start = rekeyed.start_connect(&user("carol")).await.unwrap();
    assert!(start.location().contains("client_id=registered-2"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The page sign-in, as the tests stand it in: the signed-in user is named by a header.
struct TestSession;

impl mcp_oauth_gateway::user_oauth::PageSession for TestSession {
    fn user<'a>(
        &'a self,
        headers: &'a HeaderMap,
    ) -> futures_util::future::BoxFuture<'a, Option<String>> {
        let user = headers
            .get("x-test-user")
            .and_then(|v| v.to_str().ok())
            .map(user);
        Box::pin(async move { user })
    }

    fn sign_in(&self, path: &str) -> axum::response::Response {
        (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, format!("/signin?to={path}"))],
        )
            .into_response()
    }

    fn page(&self, status: StatusCode, title: &str, message: &str) -> axum::response::Response {
        (status, format!("{title}: {message}")).into_response()
    }
}

async fn call(
    router: &Router,
    path: &str,
    signed_in: Option<&str>,
    cookie: Option<&HeaderValue>,
) -> (StatusCode, HeaderMap, String) {
    use tower_service::Service as _;
    let mut request = axum::http::Request::get(path);
    if let Some(who) = signed_in {
        request = request.header("x-test-user", who);
    }
    if let Some(cookie) = cookie {
        let pair = cookie
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        request = request.header(header::COOKIE, pair);
    }
    let mut router = router.clone();
    std::future::poll_fn(|cx| {
        tower_service::Service::<axum::http::Request<axum::body::Body>>::poll_ready(&mut router, cx)
    })
    .await
    .unwrap();
    let response = router
        .call(request.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn the_connect_pages_send_the_signed_in_user_and_seal_the_grant_for_them() {
    let s = setup().await;
    let router = mcp_oauth_gateway::user_oauth::connect_router(
        vec![s.gateway.clone()],
        Some(GATEWAY),
        Arc::new(TestSession),
    );
    // Not signed in: sign in first, then back to the link.
    let (status, headers, _) = call(&router, "/gateway/connect/notes", None, None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        headers[header::LOCATION],
        "/signin?to=/gateway/connect/notes"
    );
    let (status, _, _) = call(&router, "/gateway/connect/other", Some("alice"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Signed in: to the upstream's authorization server, with the browser's cookie.
    let (status, headers, _) = call(&router, "/gateway/connect/notes", Some("alice"), None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = headers[header::LOCATION].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{}/authorize?", s.stand_in.base)));
    let cookie = headers[header::SET_COOKIE].clone();
    let query = s.stand_in.approve(&location, "c1");
    let callback = format!("/gateway/connect/notes/callback?{query}");
    // Without the cookie (another browser): not connected.
    let (status, _, body) = call(&router, &callback, Some("alice"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("another browser"), "{body}");
    // The whole flow again, finished in the same browser.
    let (_, headers, _) = call(&router, "/gateway/connect/notes", Some("alice"), None).await;
    let location = headers[header::LOCATION].to_str().unwrap().to_owned();
    let cookie2 = headers[header::SET_COOKIE].clone();
    assert_ne!(cookie, cookie2);
    let query = s.stand_in.approve(&location, "c2");
    let callback = format!("/gateway/connect/notes/callback?{query}");
    let (status, headers, body) = call(&router, &callback, Some("alice"), Some(&cookie2)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.starts_with("Connected"), "{body}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert!(
        headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0"),
        "the binding cookie is cleared"
    );
    let grant = s.gateway.grant(&caller("alice")).await.unwrap();
    assert_eq!(grant.access_token(), "upstream-access-for-c2");
    // The gateway's client metadata document: its URL is its client id.
    let (status, _, body) = call(&router, "/gateway/oauth-client.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        doc["client_id"],
        "https://gw.example.com/gateway/oauth-client.json"
    );
    assert_eq!(
        doc["redirect_uris"],
        json!(["https://gw.example.com/gateway/connect/notes/callback"])
    );
    assert_eq!(doc["token_endpoint_auth_method"], "none");
}

/// The connect link on the gateway's own page sign-in: the user signs in at the gateway's
/// authorization server, connects, and the grant is the one their MCP sessions (tokens of
/// that server) use; another signed-in user's callback in their browser binds nothing.
#[tokio::test]
async fn on_the_gateways_page_sign_in_the_grant_is_the_signed_in_users() {
    use browser::{Browser, ORIGIN};
    let stand_in = StandIn::start(false, true).await;
    let server = browser::server().await;
    let pages = browser::pages(&server).await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let notes = UserOAuth::builder(UPSTREAM, stand_in.resource())
        .public_url(ORIGIN)
        .store(store.clone())
        .vault(Vault::new(store, &[7; 32]).unwrap())
        .build()
        .unwrap();
    let session = mcp_oauth_gateway::user_oauth::web_session(pages.clone(), server.issuer());
    let app =
        mcp_oauth_gateway::user_oauth::connect_router(vec![notes.clone()], Some(ORIGIN), session)
            .merge(pages.router())
            .merge(server.router());

    // Not signed in: to the sign-in, and back to the connect link.
    let mut alice = Browser::default();
    let first = alice.get(&app, "/gateway/connect/notes").await;
    assert_eq!(first.status, 303, "{first:?}");
    assert_eq!(
        first.location.as_deref(),
        Some("/gateway/sign-in?return=%2Fgateway%2Fconnect%2Fnotes")
    );
    let back = alice
        .sign_in(
            &app,
            "/gateway/sign-in?return=%2Fgateway%2Fconnect%2Fnotes",
            "alice",
        )
        .await;
    assert_eq!(back.local_location(), "/gateway/connect/notes");
    let start = alice.get(&app, "/gateway/connect/notes").await;
    assert_eq!(start.status, 303, "{start:?}");
    let location = start.location.clone().unwrap();
    assert!(
        location.starts_with(&format!("{}/authorize?", stand_in.base)),
        "{location}"
    );

    // Bob, signed in in his own browser, authorizes with his upstream account and gets
    // Alice to open his callback: refused, nothing is bound.
    let mut bob = Browser::default();
    bob.sign_in(&app, "/gateway/sign-in?return=%2Fgateway", "bob")
        .await;
    let bobs = bob.get(&app, "/gateway/connect/notes").await;
    let bobs_query = stand_in.approve(bobs.location.as_deref().unwrap(), "bob-code");
    let refused = alice
        .get(
            &app,
            &format!("/gateway/connect/notes/callback?{bobs_query}"),
        )
        .await;
    assert_eq!(refused.status, 400, "{refused:?}");
    assert!(refused.body.contains("another browser"), "{}", refused.body);

    // Alice's own flow, finished in her browser.
    let query = stand_in.approve(&location, "alice-code");
    let done = alice
        .get(&app, &format!("/gateway/connect/notes/callback?{query}"))
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("Connected"), "{}", done.body);
    let Value::Object(claims) = json!({"sub": "alice", "iss": server.issuer()}) else {
        unreachable!("an object")
    };
    let alice_mcp = Auth::from(AuthInfo::from_claims(
        Claims::new(claims),
        AccessToken::new("x"),
        &DefaultClaimMapper,
        Arc::new(ScopeHierarchy::new()),
    ));
    let grant = notes.grant(&alice_mcp).await.unwrap();
    assert_eq!(grant.access_token(), "upstream-access-for-alice-code");
    let Value::Object(claims) = json!({"sub": "bob", "iss": server.issuer()}) else {
        unreachable!("an object")
    };
    let bob_mcp = Auth::from(AuthInfo::from_claims(
        Claims::new(claims),
        AccessToken::new("y"),
        &DefaultClaimMapper,
        Arc::new(ScopeHierarchy::new()),
    ));
    assert!(notes.grant(&bob_mcp).await.is_err());
}
