//! A store that fails answers the same way at every endpoint, and fails closed: an
//! unavailable store is `503 temporarily_unavailable`, a damaged record `500 server_error`;
//! never `invalid_grant` ("unknown code"), `invalid_client` or "revoked", and a failed call
//! uses nothing up (the same request succeeds once the store is back).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod common;

use std::sync::{Arc, Mutex};

use common::{CHALLENGE, Served, VERIFIER};
use mcp_oauth::auth_server::AuthServer;
use mcp_oauth::auth_server::store::{
    Kind, MemoryStore, Redeemed, Store, StoreError, StoreErrorKind, StoreResult, Stored,
};
use mcp_oauth::verify::BoxFuture;
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const RESOURCE: &str = "http://127.0.0.1:9999/mcp";
const REDIRECT: &str = "http://127.0.0.1:33418/callback";

/// Which primitive fails.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Put(Kind),
    Get(Kind),
    Redeem(Kind),
    Revoke,
    IsRevoked,
}

/// A [`MemoryStore`] whose chosen primitive fails (with the chosen kind) while switched on.
#[derive(Default)]
struct FailingStore {
    inner: MemoryStore,
    failing: Mutex<Option<(Op, StoreErrorKind)>>,
}

impl FailingStore {
    fn fail(&self, op: Op, kind: StoreErrorKind) {
        *self.failing.lock().unwrap() = Some((op, kind));
    }

    fn heal(&self) {
        *self.failing.lock().unwrap() = None;
    }

    fn check(&self, op: Op) -> StoreResult<()> {
        match *self.failing.lock().unwrap() {
            Some((failing, StoreErrorKind::Damaged)) if failing == op => {
                Err(StoreError::damaged("test: damaged record"))
            }
            Some((failing, _)) if failing == op => Err(StoreError::unavailable("test: down")),
            _ => Ok(()),
        }
    }
}

impl Store for FailingStore {
    fn put<'a>(
        &'a self,
        kind: Kind,
        key: &'a str,
        data: Vec<u8>,
        expires_at: Option<i64>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            self.check(Op::Put(kind))?;
            self.inner.put(kind, key, data, expires_at).await
        })
    }

    fn put_if_absent<'a>(
        &'a self,
        kind: Kind,
        key: &'a str,
        data: Vec<u8>,
        expires_at: Option<i64>,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            self.check(Op::Put(kind))?;
            self.inner.put_if_absent(kind, key, data, expires_at).await
        })
    }

    fn get<'a>(&'a self, kind: Kind, key: &'a str) -> BoxFuture<'a, StoreResult<Option<Stored>>> {
        Box::pin(async move {
            self.check(Op::Get(kind))?;
            self.inner.get(kind, key).await
        })
    }

    fn take<'a>(&'a self, kind: Kind, key: &'a str) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
        self.inner.take(kind, key)
    }

    fn redeem<'a>(
        &'a self,
        kind: Kind,
        key: &'a str,
    ) -> BoxFuture<'a, StoreResult<Redeemed<Vec<u8>>>> {
        Box::pin(async move {
            self.check(Op::Redeem(kind))?;
            self.inner.redeem(kind, key).await
        })
    }

    fn revoke_family<'a>(&'a self, family: &'a str, until: i64) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            self.check(Op::Revoke)?;
            self.inner.revoke_family(family, until).await
        })
    }

    fn is_family_revoked<'a>(&'a self, family: &'a str) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            self.check(Op::IsRevoked)?;
            self.inner.is_family_revoked(family).await
        })
    }
}

struct Running {
    store: Arc<FailingStore>,
    issuer: String,
    http: reqwest::Client,
    served: Served,
}

async fn start() -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let store = Arc::new(FailingStore::default());
    let server = AuthServer::builder(issuer.clone())
        .resource(RESOURCE)
        .scopes(["mcp:read"])
        .default_scopes(["mcp:read"])
        .auto_approve(true)
        .rate_limits(None, None, None)
        .store(store.clone())
        .build()
        .await
        .expect("server");
    let served = Served::app(listener, server.router());
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client");
    Running {
        store,
        issuer,
        http,
        served,
    }
}

async fn json_of(res: reqwest::Response) -> (u16, Value) {
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    async fn register(&self) -> (u16, Value) {
        json_of(
            self.http
                .post(self.url("/register"))
                .json(
                    &json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
                    "grant_types": ["authorization_code", "refresh_token"]}),
                )
                .send()
                .await
                .expect("register"),
        )
        .await
    }

    async fn client(&self) -> String {
        let (status, body) = self.register().await;
        assert_eq!(status, 201, "{body}");
        body["client_id"].as_str().expect("client_id").to_owned()
    }

    fn authorize_url(&self, client_id: &str) -> url::Url {
        let mut url = url::Url::parse(&self.url("/authorize")).expect("url");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("state", "st")
            .append_pair("code_challenge", CHALLENGE)
            .append_pair("code_challenge_method", "S256")
            .append_pair("scope", "mcp:read")
            .append_pair("resource", RESOURCE);
        url
    }

    async fn code(&self, client_id: &str) -> String {
        let res = self
            .http
            .get(self.authorize_url(client_id))
            .send()
            .await
            .expect("authorize");
        assert_eq!(res.status(), 302, "{:?}", res.text().await);
        let location = res.headers()["location"].to_str().expect("ascii");
        url::Url::parse(location)
            .expect("url")
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .expect("a code")
    }

    async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        json_of(
            self.http
                .post(self.url("/token"))
                .form(form)
                .send()
                .await
                .expect("token"),
        )
        .await
    }

    async fn redeem(&self, client_id: &str, code: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .await
    }

    async fn refresh(&self, client_id: &str, refresh_token: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", refresh_token),
        ])
        .await
    }
}

fn assert_unavailable((status, body): &(u16, Value), what: &str) {
    assert_eq!(*status, 503, "{what}: {body}");
    assert_eq!(body["error"], "temporarily_unavailable", "{what}: {body}");
}

#[tokio::test]
async fn a_code_the_store_cannot_redeem_is_503_and_stays_usable() {
    let r = start().await;
    let client = r.client().await;
    let code = r.code(&client).await;
    for op in [Op::Get(Kind::Code), Op::Redeem(Kind::Code)] {
        r.store.fail(op, StoreErrorKind::Unavailable);
        assert_unavailable(&r.redeem(&client, &code).await, &format!("{op:?}"));
    }
    r.store.heal();
    let (status, body) = r.redeem(&client, &code).await;
    assert_eq!(status, 200, "the code was not used up: {body}");
    r.served.stop().await;
}

#[tokio::test]
async fn a_revocation_the_store_cannot_tell_is_503_not_revoked_nor_granted() {
    let r = start().await;
    let client = r.client().await;
    let code = r.code(&client).await;
    let (status, tokens) = r.redeem(&client, &code).await;
    assert_eq!(status, 200, "{tokens}");
    let refresh = tokens["refresh_token"].as_str().expect("a refresh token");
    r.store.fail(Op::IsRevoked, StoreErrorKind::Unavailable);
    assert_unavailable(
        &r.refresh(&client, refresh).await,
        "is_family_revoked fails",
    );
    r.store.heal();
    let (status, body) = r.refresh(&client, refresh).await;
    assert_eq!(status, 200, "the refresh token was not used up: {body}");
    r.served.stop().await;
}

#[tokio::test]
async fn a_client_the_store_cannot_read_is_503_not_invalid_client() {
    let r = start().await;
    let client = r.client().await;
    let code = r.code(&client).await;
    r.store
        .fail(Op::Get(Kind::Client), StoreErrorKind::Unavailable);
    assert_unavailable(&r.redeem(&client, &code).await, "token");
    let res = r
        .http
        .get(r.authorize_url(&client))
        .send()
        .await
        .expect("authorize");
    assert_eq!(res.status(), 503, "the authorization page");
    r.store.heal();
    assert_eq!(r.redeem(&client, &code).await.0, 200);
    r.served.stop().await;
}

#[tokio::test]
async fn a_damaged_record_is_500_server_error() {
    let r = start().await;
    let client = r.client().await;
    let code = r.code(&client).await;
    r.store.fail(Op::Get(Kind::Code), StoreErrorKind::Damaged);
    let (status, body) = r.redeem(&client, &code).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"], "server_error", "{body}");
    r.served.stop().await;
}

#[tokio::test]
async fn registration_and_revocation_answer_a_failing_store_with_503() {
    let r = start().await;
    r.store
        .fail(Op::Put(Kind::Client), StoreErrorKind::Unavailable);
    assert_unavailable(&r.register().await, "register");
    r.store.heal();

    let client = r.client().await;
    let code = r.code(&client).await;
    let (_, tokens) = r.redeem(&client, &code).await;
    let refresh = tokens["refresh_token"].as_str().expect("a refresh token");
    for op in [Op::Get(Kind::Refresh), Op::Revoke] {
        r.store.fail(op, StoreErrorKind::Unavailable);
        let answer = json_of(
            r.http
                .post(r.url("/revoke"))
                .form(&[("client_id", client.as_str()), ("token", refresh)])
                .send()
                .await
                .expect("revoke"),
        )
        .await;
        assert_unavailable(&answer, &format!("revoke with {op:?} failing"));
    }
    r.store.heal();
    r.served.stop().await;
}

#[tokio::test]
async fn an_authorization_request_the_store_cannot_save_is_refused() {
    let r = start().await;
    let client = r.client().await;
    r.store
        .fail(Op::Put(Kind::Code), StoreErrorKind::Unavailable);
    let res = r
        .http
        .get(r.authorize_url(&client))
        .send()
        .await
        .expect("authorize");
    assert_eq!(res.status(), 302);
    let location = res.headers()["location"].to_str().expect("ascii");
    assert!(
        location.contains("error=temporarily_unavailable") && !location.contains("code="),
        "{location}"
    );
    r.served.stop().await;
}
