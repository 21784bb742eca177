//! `user-oauth` credentials: each user's grant at the upstream's authorization server, kept
//! in the vault and renewed single-flight across instances, against a stand-in token
//! endpoint that rotates refresh tokens and refuses a retired one (as a strict server does).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Form, Router};
use mcp_oauth::auth_server::store::{MemoryStore, Store};
use mcp_oauth::scope::ScopeHierarchy;
use mcp_oauth::{AccessToken, Auth, AuthInfo, Claims, DefaultClaimMapper};
use mcp_oauth_gateway::GatewayError;
use mcp_oauth_gateway::user_oauth::{ClientAuth, UpstreamGrant, UserOAuth};
use mcp_oauth_gateway::vault::{EntryKind, Vault};
use serde_json::json;

const UPSTREAM: &str = "notes";
const RESOURCE: &str = "https://notes.example.com/mcp";

/// What the stand-in token endpoint answers to a refresh.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A new access token and a new refresh token; the old refresh token is retired.
    Rotate,
    /// A new access token and no refresh token (the old one stays valid).
    NoRefreshToken,
    /// `400 invalid_grant`.
    Refuse,
    /// `503`.
    Down,
}

struct Endpoint {
    mode: Mode,
    /// The refresh tokens the server accepts.
    valid: Vec<String>,
    refreshes: usize,
    /// Refresh requests that presented a retired refresh token.
    replays: usize,
    /// Held while the test wants the refresh to stay in flight.
    hold: Option<Arc<tokio::sync::Semaphore>>,
    seen: Vec<HashMap<String, String>>,
}

#[derive(Clone)]
struct StandIn {
    url: String,
    state: Arc<Mutex<Endpoint>>,
    _task: Arc<tokio::task::JoinHandle<()>>,
}

impl StandIn {
    async fn start(first_refresh_token: &str) -> Self {
        let state = Arc::new(Mutex::new(Endpoint {
            mode: Mode::Rotate,
            valid: vec![first_refresh_token.to_owned()],
            refreshes: 0,
            replays: 0,
            hold: None,
            seen: Vec::new(),
        }));
        let app = Router::new()
            .route("/token", post(token))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            state,
            _task: Arc::new(task),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Endpoint) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if Arc::strong_count(&self._task) == 1 {
            self._task.abort();
        }
    }
}

async fn token(
    State(state): State<Arc<Mutex<Endpoint>>>,
    Form(form): Form<HashMap<String, String>>,
) -> axum::response::Response {
    let hold = {
        let mut s = state.lock().unwrap();
        s.seen.push(form.clone());
        s.refreshes += 1;
        s.hold.clone()
    };
    if let Some(hold) = hold {
        let _ = hold.acquire().await;
    }
    let mut s = state.lock().unwrap();
    let presented = form.get("refresh_token").cloned().unwrap_or_default();
    if form.get("grant_type").map(String::as_str) != Some("refresh_token")
        || form.get("client_id").map(String::as_str) != Some("gateway")
        || form.get("resource").map(String::as_str) != Some(RESOURCE)
    {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_request"})),
        )
            .into_response();
    }
    if !s.valid.contains(&presented) {
        s.replays += 1;
        return (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
    }
    let n = s.refreshes;
    match s.mode {
        Mode::Refuse => (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant"})),
        )
            .into_response(),
        Mode::Down => axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Mode::NoRefreshToken => axum::Json(json!({
            "access_token": format!("access-{n}"),
            "token_type": "Bearer",
            "expires_in": 3600,
        }))
        .into_response(),
        Mode::Rotate => {
            let next = format!("refresh-{n}");
            s.valid = vec![next.clone()];
            axum::Json(json!({
                "access_token": format!("access-{n}"),
                "token_type": "bearer",
                "expires_in": 3600,
                "refresh_token": next,
                "scope": "notes:read",
            }))
            .into_response()
        }
    }
}

fn caller(sub: &str) -> Auth {
    let serde_json::Value::Object(map) =
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

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// One gateway instance's `user-oauth` credentials, over a shared store and vault.
fn instance(stand_in: &StandIn, store: &Arc<dyn Store>, vault: &Vault) -> UserOAuth {
    instance_at(stand_in, store, vault, &Arc::new(AtomicI64::new(now())))
}

/// [`instance`], its back-off reading the time from `clock`.
fn instance_at(
    stand_in: &StandIn,
    store: &Arc<dyn Store>,
    vault: &Vault,
    clock: &Arc<AtomicI64>,
) -> UserOAuth {
    let clock = clock.clone();
    UserOAuth::builder(UPSTREAM, RESOURCE)
        .clock(move || clock.load(Ordering::SeqCst))
        .endpoints("https://notes.example.com/authorize", &stand_in.url)
        .client(ClientAuth::public("gateway"))
        .store(store.clone())
        .vault(vault.clone())
        .connect_url("https://gw.example.com/gateway/connect/notes")
        .build()
        .unwrap()
}

fn grant(access: &str, refresh: Option<&str>, expires_in: i64) -> UpstreamGrant {
    UpstreamGrant::new(
        access,
        refresh.map(Into::into),
        Some(now() + expires_in),
        vec!["notes:read".into()],
    )
}

struct Setup {
    stand_in: StandIn,
    store: Arc<dyn Store>,
    vault: Vault,
    one: UserOAuth,
    /// The time `one` reads for its back-off.
    clock: Arc<AtomicI64>,
}

async fn setup(first: UpstreamGrant) -> Setup {
    let stand_in = StandIn::start(first.refresh_token().unwrap_or("none")).await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let vault = Vault::new(store.clone(), &[7; 32]).unwrap();
    let clock = Arc::new(AtomicI64::new(now()));
    let one = instance_at(&stand_in, &store, &vault, &clock);
    one.keep(&caller("alice"), &first).await.unwrap();
    Setup {
        stand_in,
        store,
        vault,
        one,
        clock,
    }
}

#[tokio::test]
async fn a_fresh_grant_is_used_as_it_is() {
    let s = setup(grant("access-0", Some("refresh-0"), 3600)).await;
    let got = s.one.grant(&caller("alice")).await.unwrap();
    assert_eq!(got.access_token(), "access-0");
    assert_eq!(s.stand_in.with(|e| e.refreshes), 0);
}

#[tokio::test]
async fn a_grant_near_its_expiry_is_renewed_and_the_rotated_refresh_token_kept() {
    let s = setup(grant("access-0", Some("refresh-0"), 30)).await;
    let got = s.one.grant(&caller("alice")).await.unwrap();
    assert_eq!(got.access_token(), "access-1");
    assert_eq!(got.refresh_token(), Some("refresh-1"));
    // The next renewal presents the rotated refresh token, not the retired one.
    s.one
        .keep(
            &caller("alice"),
            &grant(got.access_token(), got.refresh_token(), 0),
        )
        .await
        .unwrap();
    let again = s.one.grant(&caller("alice")).await.unwrap();
    assert_eq!(again.access_token(), "access-2");
    assert_eq!(s.stand_in.with(|e| (e.refreshes, e.replays)), (2, 0));
    let seen = s.stand_in.with(|e| e.seen.clone());
    assert_eq!(seen[0]["refresh_token"], "refresh-0");
    assert_eq!(seen[1]["refresh_token"], "refresh-1");
    assert!(
        seen.iter()
            .all(|form| !form.values().any(|v| v.contains("gateway-token"))),
        "the gateway's own token never goes to the upstream's server"
    );
}

#[tokio::test]
async fn an_answer_without_a_refresh_token_keeps_the_old_one() {
    let s = setup(grant("access-0", Some("refresh-0"), 0)).await;
    s.stand_in.with(|e| e.mode = Mode::NoRefreshToken);
    let got = s.one.grant(&caller("alice")).await.unwrap();
    assert_eq!(got.access_token(), "access-1");
    assert_eq!(got.refresh_token(), Some("refresh-0"));
    assert_eq!(
        got.scopes(),
        ["notes:read"],
        "scopes not named are the old ones"
    );
}

#[tokio::test]
async fn a_refused_refresh_drops_the_grant_and_asks_to_connect_again() {
    let s = setup(grant("access-0", Some("refresh-0"), 0)).await;
    s.stand_in.with(|e| e.mode = Mode::Refuse);
    let err = s.one.grant(&caller("alice")).await.unwrap_err();
    let GatewayError::ActionRequired { message, url } = &err else {
        panic!("expected the connect link, got {err:?}");
    };
    assert_eq!(url, "https://gw.example.com/gateway/connect/notes");
    assert!(
        message.contains("https://gw.example.com/gateway/connect/notes"),
        "{message}"
    );
    let user = Vault::user_of(&caller("alice"));
    assert!(
        s.vault
            .get(&user, UPSTREAM, EntryKind::UserOauth)
            .await
            .unwrap()
            .is_none(),
        "the grant is dropped"
    );
    // No second attempt with the dropped grant.
    let err = s.one.grant(&caller("alice")).await.unwrap_err();
    assert!(matches!(err, GatewayError::ActionRequired { .. }));
    assert_eq!(s.stand_in.with(|e| e.refreshes), 1);
}

#[tokio::test]
async fn a_server_failure_keeps_the_grant() {
    // Near its expiry but not expired: the old access token is still used.
    let s = setup(grant("access-0", Some("refresh-0"), 30)).await;
    s.stand_in.with(|e| e.mode = Mode::Down);
    let got = s.one.grant(&caller("alice")).await.unwrap();
    assert_eq!(got.access_token(), "access-0");
    // Expired: unavailable, and the grant is still there for a later try.
    s.one
        .keep(&caller("alice"), &grant("access-0", Some("refresh-0"), -5))
        .await
        .unwrap();
    let err = s.one.grant(&caller("alice")).await.unwrap_err();
    assert!(matches!(err, GatewayError::Unavailable(_)), "{err:?}");
    assert_eq!(
        s.stand_in.with(|e| e.refreshes),
        1,
        "backed off: not asked again at once"
    );
    s.stand_in.with(|e| e.mode = Mode::Rotate);
    s.clock.fetch_add(31, Ordering::SeqCst);
    let got = s.one.grant(&caller("alice")).await.unwrap();
    assert_eq!(got.refresh_token(), Some("refresh-2"));
}

#[tokio::test]
async fn a_token_endpoint_that_is_down_is_asked_once_per_backoff_not_by_every_request() {
    let s = setup(grant("access-0", Some("refresh-0"), -5)).await;
    s.one
        .keep(&caller("bob"), &grant("bob-access", Some("refresh-0"), -5))
        .await
        .unwrap();
    let hold = Arc::new(tokio::sync::Semaphore::new(0));
    s.stand_in.with(|e| {
        e.mode = Mode::Down;
        e.hold = Some(hold.clone());
    });
    let alice = caller("alice");
    // Six requests at once: one asks the server (held there until it answers 503), the
    // others wait for it and then do not ask again.
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let one = s.one.clone();
        let alice = alice.clone();
        tasks.push(tokio::spawn(async move { one.grant(&alice).await }));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.stand_in.with(|e| e.refreshes) == 0 {
        assert!(std::time::Instant::now() < deadline, "no refresh arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    hold.add_permits(100);
    let mut said_when = 0;
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        assert!(matches!(err, GatewayError::Unavailable(_)), "{err:?}");
        if err.to_string().contains("tries again in") {
            said_when += 1;
        }
    }
    assert_eq!(said_when, 5, "the others say when it is tried again");
    // Nor one after another.
    for _ in 0..5 {
        assert!(s.one.grant(&alice).await.is_err());
    }
    assert_eq!(s.stand_in.with(|e| e.refreshes), 1);
    // Another user is not held back by alice's back-off.
    assert!(s.one.grant(&caller("bob")).await.is_err());
    assert_eq!(s.stand_in.with(|e| e.refreshes), 2);
    // Once the period is over, one more try (still down), then none again.
    s.clock.fetch_add(31, Ordering::SeqCst);
    assert!(s.one.grant(&alice).await.is_err());
    assert!(s.one.grant(&alice).await.is_err());
    assert_eq!(s.stand_in.with(|e| e.refreshes), 3);
    // The user connects again meanwhile: a new grant is not backed off.
    s.stand_in.with(|e| {
        e.mode = Mode::Rotate;
        e.valid = vec!["refresh-new".into()];
    });
    s.one
        .keep(&alice, &grant("access-new", Some("refresh-new"), -5))
        .await
        .unwrap();
    let got = s.one.grant(&alice).await.unwrap();
    assert_eq!(got.access_token(), "access-4");
    assert_eq!(s.stand_in.with(|e| e.refreshes), 4);
}

#[tokio::test]
async fn while_backed_off_a_token_not_yet_expired_is_still_used() {
    // Within the refresh margin, not expired.
    let s = setup(grant("access-0", Some("refresh-0"), 30)).await;
    s.stand_in.with(|e| e.mode = Mode::Down);
    for _ in 0..3 {
        let got = s.one.grant(&caller("alice")).await.unwrap();
        assert_eq!(got.access_token(), "access-0");
    }
    assert_eq!(s.stand_in.with(|e| e.refreshes), 1);
    // A 401 from the upstream for it: not used again, and not refreshed before its time.
    s.one.refused(&caller("alice"));
    let err = s.one.grant(&caller("alice")).await.unwrap_err();
    assert!(err.to_string().contains("tries again in"), "{err}");
    assert_eq!(s.stand_in.with(|e| e.refreshes), 1);
}

#[tokio::test]
async fn a_token_the_upstream_refused_is_renewed_before_it_is_used_again() {
    let s = setup(grant("access-0", Some("refresh-0"), 3600)).await;
    let alice = caller("alice");
    assert_eq!(
        s.one.grant(&alice).await.unwrap().access_token(),
        "access-0"
    );
    s.one.refused(&alice);
    assert_eq!(
        s.one.grant(&alice).await.unwrap().access_token(),
        "access-1"
    );
    assert_eq!(
        s.one.grant(&alice).await.unwrap().access_token(),
        "access-1"
    );
    assert_eq!(s.stand_in.with(|e| e.refreshes), 1);
}

#[tokio::test]
async fn a_401_seen_by_one_instance_after_another_renewed_needs_no_second_refresh() {
    let s = setup(grant("access-0", Some("refresh-0"), 3600)).await;
    let two = instance(&s.stand_in, &s.store, &s.vault);
    let alice = caller("alice");
    assert_eq!(
        s.one.grant(&alice).await.unwrap().access_token(),
        "access-0"
    );
    assert_eq!(two.grant(&alice).await.unwrap().access_token(), "access-0");
    s.one.refused(&alice);
    two.refused(&alice);
    assert_eq!(
        s.one.grant(&alice).await.unwrap().access_token(),
        "access-1"
    );
    // The second instance's refused token is no longer the one in the vault.
    assert_eq!(two.grant(&alice).await.unwrap().access_token(), "access-1");
    assert_eq!(s.stand_in.with(|e| (e.refreshes, e.replays)), (1, 0));
}

#[tokio::test]
async fn each_user_gets_their_own_grant_only() {
    let s = setup(grant("access-alice", Some("refresh-0"), 3600)).await;
    let err = s.one.grant(&caller("bob")).await.unwrap_err();
    assert!(
        matches!(err, GatewayError::ActionRequired { .. }),
        "{err:?}"
    );
    // The same subject at another issuer is another user.
    let serde_json::Value::Object(map) =
        json!({"sub": "alice", "iss": "https://other-issuer.example.com"})
    else {
        unreachable!("an object")
    };
    let other = Auth::from(AuthInfo::from_claims(
        Claims::new(map),
        AccessToken::new("x"),
        &DefaultClaimMapper,
        Arc::new(ScopeHierarchy::new()),
    ));
    assert!(s.one.grant(&other).await.is_err());
    s.one.disconnect(&caller("alice")).await.unwrap();
    assert!(s.one.grant(&caller("alice")).await.is_err());
}

/// Two instances (and several tasks in each) find the grant expired at once: one refresh
/// reaches the server, the others wait for it and use its result; no retired refresh token
/// is ever presented.
/// Each instance has its own connection (`store_one`, `store_two`) to one shared backend.
async fn racing_instances_make_one_refresh(store_one: Arc<dyn Store>, store_two: Arc<dyn Store>) {
    let stand_in = StandIn::start("refresh-0").await;
    let vault_one = Vault::new(store_one.clone(), &[7; 32]).unwrap();
    let vault_two = Vault::new(store_two.clone(), &[7; 32]).unwrap();
    let one = instance(&stand_in, &store_one, &vault_one);
    let two = instance(&stand_in, &store_two, &vault_two);
    one.keep(&caller("alice"), &grant("access-0", Some("refresh-0"), -1))
        .await
        .unwrap();
    let hold = Arc::new(tokio::sync::Semaphore::new(0));
    stand_in.with(|e| e.hold = Some(hold.clone()));
    let first = {
        let one = one.clone();
        tokio::spawn(async move { one.grant(&caller("alice")).await })
    };
    // Wait until the first refresh is at the server (and holds the lock).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stand_in.with(|e| e.refreshes) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no refresh arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut others = Vec::new();
    for instance in [&one, &two, &two, &two] {
        let instance = instance.clone();
        others.push(tokio::spawn(async move {
            instance.grant(&caller("alice")).await
        }));
    }
    hold.add_permits(100);
    let got = first.await.unwrap().unwrap();
    assert_eq!(got.access_token(), "access-1");
    for other in others {
        let other = other.await.unwrap().unwrap();
        assert_eq!(other.access_token(), "access-1");
        assert_eq!(other.refresh_token(), Some("refresh-1"));
    }
    assert_eq!(stand_in.with(|e| (e.refreshes, e.replays)), (1, 0));
}

#[tokio::test]
async fn racing_instances_make_one_refresh_in_memory() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    racing_instances_make_one_refresh(store.clone(), store).await;
}

#[tokio::test]
async fn racing_instances_make_one_refresh_on_one_sqlite_file() {
    let dir = std::env::temp_dir().join(format!(
        "mcp-oauth-user-oauth-{}-{}",
        std::process::id(),
        now()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("store.db");
    let open = || -> Arc<dyn Store> {
        Arc::new(mcp_oauth::auth_server::store::SqliteStore::open(&path).unwrap())
    };
    racing_instances_make_one_refresh(open(), open()).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_connection_made_while_a_refresh_is_in_flight_is_kept() {
    let s = setup(grant("access-0", Some("refresh-0"), -1)).await;
    s.stand_in.with(|e| e.mode = Mode::Refuse);
    let hold = Arc::new(tokio::sync::Semaphore::new(0));
    s.stand_in.with(|e| e.hold = Some(hold.clone()));
    let refreshing = {
        let one = s.one.clone();
        tokio::spawn(async move { one.grant(&caller("alice")).await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while s.stand_in.with(|e| e.refreshes) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no refresh arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Alice connects again meanwhile; then the old grant's refresh is refused.
    s.one
        .keep(
            &caller("alice"),
            &grant("access-new", Some("refresh-new"), 3600),
        )
        .await
        .unwrap();
    hold.add_permits(10);
    let got = refreshing.await.unwrap().unwrap();
    assert_eq!(got.access_token(), "access-new");
    let again = s.one.grant(&caller("alice")).await.unwrap();
    assert_eq!(again.refresh_token(), Some("refresh-new"));
}
