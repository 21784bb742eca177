//! Proxy mode against the provider, end to end over real HTTP with a stand-in on 127.0.0.1:
//! a public upstream client (no client secret, PKCE only), the user mapping from the
//! provider's claims, and RFC 7009 revocation at the provider when a grant is revoked here
//! (never for a stranger's revocation attempt, never blocking the local revocation).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use common::{CHALLENGE, Served, VERIFIER, challenge_of, cookie_header, eventually, keep_cookies};
use mcp_oauth::ResourceUrl;
use mcp_oauth::auth_server::store::{EntryKind, MemoryStore, Store};
use mcp_oauth::auth_server::{AuthServer, Identity, ProxyError, Upstream, UserMapping};
use mcp_oauth::authenticator::Authenticator;
use mcp_oauth::fetch::HttpClient;
use mcp_oauth::testing::TestKey;
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const RESOURCE: &str = "http://127.0.0.1:9999/mcp";
const REDIRECT: &str = "http://127.0.0.1:33418/callback";
const UPSTREAM_CLIENT: &str = "public-proxy-client";
const UPSTREAM_SECRET: &str = "confidential-proxy-secret";

/// What the stand-in saw.
#[derive(Default)]
struct Seen {
    authorize: Vec<HashMap<String, String>>,
    token: Vec<HashMap<String, String>>,
    revoke: Vec<HashMap<String, String>>,
    codes: HashMap<String, (String, String)>,
    issued: u64,
    /// Answer revocations with this status (200 when unset).
    revoke_status: Option<u16>,
}

#[derive(Clone)]
struct Provider {
    origin: String,
    key: TestKey,
    /// `None`: a public client (no secret may be sent); `Some`: `client_secret_post`.
    secret: Option<&'static str>,
    seen: Arc<Mutex<Seen>>,
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (status, axum::Json(json!({ "error": error }))).into_response()
}

async fn authorize(
    State(p): State<Provider>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut seen = p.seen.lock().unwrap();
    seen.authorize.push(q.clone());
    let redirect = q.get("redirect_uri").cloned().unwrap_or_default();
    let state = q.get("state").cloned().unwrap_or_default();
    let code = format!("code-{}", seen.authorize.len());
    seen.codes.insert(
        code.clone(),
        (
            q.get("code_challenge").cloned().unwrap_or_default(),
            redirect.clone(),
        ),
    );
    Redirect::to(&format!("{redirect}?code={code}&state={state}")).into_response()
}

/// The client as the provider checks it: its id, and its secret or, for a public client,
/// none at all.
fn client_ok(p: &Provider, form: &HashMap<String, String>) -> bool {
    form.get("client_id").map(String::as_str) == Some(UPSTREAM_CLIENT)
        && form.get("client_secret").map(String::as_str) == p.secret
}

async fn token(State(p): State<Provider>, Form(form): Form<HashMap<String, String>>) -> Response {
    let mut seen = p.seen.lock().unwrap();
    seen.token.push(form.clone());
    if !client_ok(&p, &form) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let code = form.get("code").cloned().unwrap_or_default();
    let Some((challenge, redirect)) = seen.codes.remove(&code) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    // PKCE is what authenticates a public client's exchange: mandatory here.
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    if challenge.is_empty()
        || challenge_of(&verifier) != challenge
        || form.get("redirect_uri") != Some(&redirect)
    {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    seen.issued += 1;
    let n = seen.issued;
    let id_token = p
        .key
        .token()
        .iss(&p.origin)
        .sub("pairwise-sub-1")
        .aud(UPSTREAM_CLIENT)
        .claim("oid", "object-9")
        .claim("upn", "ada@contoso.example")
        .claim("email", "personal@example.com")
        .claim("name", "Ada Lovelace")
        .claim("groups", json!(["g-admins", "g-readers", 7]))
        .claim("department", "Engineering")
        .sign();
    axum::Json(json!({
        "access_token": format!("up-access-{n}"),
        "refresh_token": format!("up-refresh-{n}"),
        "expires_in": 3600,
        "token_type": "Bearer",
        "id_token": id_token,
    }))
    .into_response()
}

async fn revoke(
    State(p): State<Provider>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut seen = p.seen.lock().unwrap();
    let mut record = form.clone();
    if headers.contains_key("authorization") {
        record.insert("authorization-header".into(), "present".into());
    }
    seen.revoke.push(record);
    if !client_ok(&p, &form) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    match seen.revoke_status {
        Some(status) => StatusCode::from_u16(status).unwrap().into_response(),
        None => StatusCode::OK.into_response(),
    }
}

async fn openid_configuration(State(p): State<Provider>) -> Response {
    let o = &p.origin;
    axum::Json(json!({
        "issuer": o,
        "authorization_endpoint": format!("{o}/authorize"),
        "token_endpoint": format!("{o}/token"),
        "revocation_endpoint": format!("{o}/revoke"),
        "jwks_uri": format!("{o}/jwks"),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_post"],
    }))
    .into_response()
}

async fn jwks(State(p): State<Provider>) -> Response {
    axum::Json(serde_json::to_value(TestKey::jwks(&[&p.key])).unwrap()).into_response()
}

async fn start_provider(secret: Option<&'static str>) -> (Provider, Served) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    let p = Provider {
        origin,
        key: TestKey::rs256(),
        secret,
        seen: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/revoke", post(revoke))
        .route("/jwks", get(jwks))
        .route(
            "/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .with_state(p.clone());
    (p, Served::app(listener, app))
}

impl Provider {
    fn upstream(&self, mapping: UserMapping, revocation: bool) -> Upstream {
        let mut builder = Upstream::builder(
            "Contoso",
            format!("{}/authorize", self.origin),
            format!("{}/token", self.origin),
            UPSTREAM_CLIENT,
        )
        .client_secret(self.secret.unwrap_or(""))
        .user_mapping(mapping)
        .identity(Identity::IdToken {
            issuer: self.origin.clone(),
            jwks_url: format!("{}/jwks", self.origin),
        });
        if revocation {
            builder = builder.revocation_endpoint(format!("{}/revoke", self.origin));
        }
        builder.build().expect("upstream")
    }

    fn revocations(&self) -> Vec<HashMap<String, String>> {
        self.seen.lock().unwrap().revoke.clone()
    }
}

struct Proxy {
    server: AuthServer,
    store: Arc<dyn Store>,
    issuer: String,
    http: reqwest::Client,
    _served: Served,
}

async fn start_proxy(upstream: Upstream) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let server = AuthServer::builder(issuer.clone())
        .resource(RESOURCE)
        .store(store.clone())
        .upstream(upstream)
        .auto_approve(true)
        .encryption_key([7u8; 32].as_slice())
        .build()
        .await
        .expect("proxy");
    let served = Served::app(listener, server.router());
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client");
    Proxy {
        server,
        store,
        issuer,
        http,
        _served: served,
    }
}

/// Tokens a client got through the proxy.
struct Grant {
    client_id: String,
    access_token: String,
    refresh_token: String,
}

impl Proxy {
    async fn register(&self) -> String {
        let reg: Value = self
            .http
            .post(format!("{}/register", self.issuer))
            .json(&json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
                          "client_name": "Upstream test client", "grant_types": ["authorization_code", "refresh_token"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        reg["client_id"].as_str().unwrap().to_owned()
    }

    /// A client registers, its user signs in at the provider (redirects followed like a
    /// browser, cookies kept), and the client redeems our code.
    async fn sign_in(&self) -> Grant {
        let client_id = self.register().await;
        let mut url = url::Url::parse(&format!("{}/authorize", self.issuer)).unwrap();
        url.query_pairs_mut().extend_pairs([
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", REDIRECT),
            ("state", "client-state"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("resource", RESOURCE),
            ("scope", "mcp:read"),
        ]);
        let mut jar = HashMap::new();
        let mut next = url.to_string();
        let code = loop {
            let res = self
                .http
                .get(&next)
                .header("cookie", cookie_header(&jar))
                .send()
                .await
                .unwrap();
            keep_cookies(&res, &mut jar);
            assert!(
                matches!(res.status().as_u16(), 302 | 303),
                "{}",
                res.text().await.unwrap_or_default()
            );
            next = res.headers()["location"].to_str().unwrap().to_owned();
            if next.starts_with(REDIRECT) {
                let query: HashMap<String, String> = url::Url::parse(&next)
                    .unwrap()
                    .query_pairs()
                    .into_owned()
                    .collect();
                break query["code"].clone();
            }
        };
        let tokens: Value = self
            .http
            .post(format!("{}/token", self.issuer))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("client_id", client_id.as_str()),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
                ("resource", RESOURCE),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Grant {
            client_id,
            access_token: tokens["access_token"]
                .as_str()
                .expect("access token")
                .to_owned(),
            refresh_token: tokens["refresh_token"]
                .as_str()
                .expect("refresh token")
                .to_owned(),
        }
    }

    async fn auth(&self, token: &str) -> mcp_oauth::Auth {
        Authenticator::new(self.server.verifier().unwrap())
            .authenticate(token, &ResourceUrl::parse(RESOURCE).unwrap())
            .await
            .expect("our token verifies")
    }

    async fn revoke(&self, client_id: &str, token: &str) -> u16 {
        self.http
            .post(format!("{}/revoke", self.issuer))
            .form(&[("token", token), ("client_id", client_id)])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn has_upstream_tokens(&self, auth: &mcp_oauth::Auth) -> bool {
        let family = auth.claims.str("sid").unwrap().to_owned();
        self.store
            .entry::<serde_json::Value>(EntryKind::UpstreamTokens, &family)
            .await
            .unwrap()
            .is_some()
    }
}

#[tokio::test]
async fn a_public_upstream_client_signs_in_with_pkce_and_no_secret() {
    let (provider, _stop) = start_provider(None).await;
    let proxy = start_proxy(provider.upstream(UserMapping::new(), true)).await;
    let grant = proxy.sign_in().await;

    let (authorize, exchange) = {
        let seen = provider.seen.lock().unwrap();
        (seen.authorize[0].clone(), seen.token[0].clone())
    };
    assert_eq!(authorize["client_id"], UPSTREAM_CLIENT);
    assert_eq!(authorize["code_challenge_method"], "S256");
    assert!(!authorize["code_challenge"].is_empty());
    assert_eq!(exchange["client_id"], UPSTREAM_CLIENT);
    assert!(
        !exchange.contains_key("client_secret"),
        "a public client sends no secret: {exchange:?}"
    );
    assert_eq!(
        challenge_of(&exchange["code_verifier"]),
        authorize["code_challenge"],
        "the verifier of the upstream leg's own challenge"
    );

    // The default mapping: sub from sub, the standard profile claims, no groups.
    let auth = proxy.auth(&grant.access_token).await;
    assert_eq!(auth.subject(), "pairwise-sub-1");
    assert_eq!(auth.user.email.as_deref(), Some("personal@example.com"));
    assert_eq!(auth.user.name.as_deref(), Some("Ada Lovelace"));
    assert!(auth.claims.get("groups").is_none());
    assert!(auth.claims.get("department").is_none());
    let upstream = proxy.server.upstream_token(&auth).await.expect("upstream");
    assert_eq!(upstream.expose(), b"up-access-1");
}

#[tokio::test]
async fn the_user_mapping_picks_which_provider_claims_become_the_user() {
    let (provider, _stop) = start_provider(None).await;
    let mapping = UserMapping::new()
        .subject("oid")
        .email("upn")
        .groups("groups")
        .roles("groups")
        .claim("department", "department");
    let proxy = start_proxy(provider.upstream(mapping, false)).await;
    let grant = proxy.sign_in().await;
    let auth = proxy.auth(&grant.access_token).await;
    assert_eq!(auth.subject(), "object-9");
    assert_eq!(auth.user.email.as_deref(), Some("ada@contoso.example"));
    assert_eq!(auth.user.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(
        auth.claims.get("groups"),
        Some(&json!(["g-admins", "g-readers"])),
        "strings only"
    );
    assert_eq!(auth.user.roles, ["g-admins", "g-readers"]);
    assert_eq!(auth.claims.str("department"), Some("Engineering"));
    // What our tokens set themselves is never the provider's.
    assert_eq!(auth.claims.str("iss"), Some(proxy.issuer.as_str()));
    assert_eq!(auth.claims.str("aud"), Some(RESOURCE));
}

#[tokio::test]
async fn a_mapping_to_a_missing_subject_claim_signs_no_one_in() {
    let (provider, _stop) = start_provider(None).await;
    let proxy =
        start_proxy(provider.upstream(UserMapping::new().subject("employee_id"), false)).await;
    let client_id = proxy.register().await;
    let mut url = url::Url::parse(&format!("{}/authorize", proxy.issuer)).unwrap();
    url.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", REDIRECT),
        ("state", "s"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("resource", RESOURCE),
    ]);
    let mut jar = HashMap::new();
    let mut next = url.to_string();
    let last = loop {
        let res = proxy
            .http
            .get(&next)
            .header("cookie", cookie_header(&jar))
            .send()
            .await
            .unwrap();
        keep_cookies(&res, &mut jar);
        if !matches!(res.status().as_u16(), 302 | 303) {
            panic!("unexpected {}", res.status());
        }
        next = res.headers()["location"].to_str().unwrap().to_owned();
        if next.starts_with(REDIRECT) {
            break url::Url::parse(&next).unwrap();
        }
    };
    let query: HashMap<String, String> = last.query_pairs().into_owned().collect();
    assert!(!query.contains_key("code"), "{query:?}");
    assert!(query.contains_key("error"), "{query:?}");
}

#[test]
fn a_mapping_cannot_target_claims_our_tokens_set() {
    for target in ["sub", "iss", "aud", "scope", "client_id", "cnf", "exp"] {
        let err = Upstream::builder("X", "https://x.example/a", "https://x.example/t", "id")
            .identity(Identity::UserInfo {
                url: "https://x.example/user".into(),
            })
            .user_mapping(UserMapping::new().claim("anything", target))
            .build()
            .expect_err(target)
            .to_string();
        assert!(
            err.contains("cannot come from the provider"),
            "{target}: {err}"
        );
    }
}

#[tokio::test]
async fn revoking_a_grant_revokes_its_upstream_tokens_at_the_provider() {
    let (provider, _stop) = start_provider(Some(UPSTREAM_SECRET)).await;
    let proxy = start_proxy(provider.upstream(UserMapping::new(), true)).await;
    let grant = proxy.sign_in().await;
    let auth = proxy.auth(&grant.access_token).await;
    assert!(proxy.has_upstream_tokens(&auth).await);

    assert_eq!(
        proxy.revoke(&grant.client_id, &grant.refresh_token).await,
        200
    );
    eventually("the provider saw both revocations", async || {
        provider.revocations().len() == 2
    })
    .await;
    let revoked = provider.revocations();
    assert_eq!(revoked[0]["token"], "up-refresh-1");
    assert_eq!(revoked[0]["token_type_hint"], "refresh_token");
    assert_eq!(revoked[1]["token"], "up-access-1");
    assert_eq!(revoked[1]["token_type_hint"], "access_token");
    for request in &revoked {
        assert_eq!(request["client_id"], UPSTREAM_CLIENT);
        assert_eq!(request["client_secret"], UPSTREAM_SECRET);
    }
    // Revoked here, and the sealed upstream tokens are gone.
    assert!(matches!(
        proxy.server.upstream_token(&auth).await,
        Err(ProxyError::NoTokens)
    ));
    assert!(!proxy.has_upstream_tokens(&auth).await);

    // Revoking again asks the provider nothing more.
    assert_eq!(
        proxy.revoke(&grant.client_id, &grant.refresh_token).await,
        200
    );
    let again = proxy.sign_in().await; // a later event to wait for instead of sleeping
    assert_eq!(
        proxy.revoke(&again.client_id, &again.refresh_token).await,
        200
    );
    eventually("the second grant's revocations", async || {
        provider.revocations().len() == 4
    })
    .await;
    assert!(
        provider.revocations()[2..]
            .iter()
            .all(|r| r["token"].ends_with("-2")),
        "only the second grant's tokens: {:?}",
        provider.revocations()
    );
}

#[tokio::test]
async fn a_public_client_revokes_upstream_without_a_secret() {
    let (provider, _stop) = start_provider(None).await;
    let proxy = start_proxy(provider.upstream(UserMapping::new(), true)).await;
    let grant = proxy.sign_in().await;
    assert_eq!(
        proxy.revoke(&grant.client_id, &grant.access_token).await,
        200
    );
    eventually("the provider saw the revocations", async || {
        provider.revocations().len() == 2
    })
    .await;
    for request in provider.revocations() {
        assert_eq!(request["client_id"], UPSTREAM_CLIENT);
        assert!(!request.contains_key("client_secret"), "{request:?}");
        assert!(!request.contains_key("authorization-header"), "{request:?}");
    }
}

#[tokio::test]
async fn a_stranger_revoking_someone_elses_grant_revokes_nothing_upstream() {
    let (provider, _stop) = start_provider(None).await;
    let proxy = start_proxy(provider.upstream(UserMapping::new(), true)).await;
    let victim = proxy.sign_in().await;
    let attacker = proxy.sign_in().await;

    // Another client presents the victim's tokens: RFC 7009 answers 200 and does nothing.
    for token in [&victim.refresh_token, &victim.access_token] {
        assert_eq!(proxy.revoke(&attacker.client_id, token).await, 200);
    }
    // Unknown and garbage tokens, and an unknown client.
    assert_eq!(proxy.revoke(&attacker.client_id, "up-refresh-1").await, 200);
    assert_eq!(proxy.revoke(&attacker.client_id, "not-a-token").await, 200);
    assert_ne!(
        proxy.revoke("no-such-client", &victim.refresh_token).await,
        200
    );

    // The attacker's own revocation is the event to wait for: only its tokens reach the
    // provider, and the victim's grant still works, here and upstream.
    assert_eq!(
        proxy
            .revoke(&attacker.client_id, &attacker.refresh_token)
            .await,
        200
    );
    eventually("the attacker's own revocation", async || {
        provider.revocations().len() == 2
    })
    .await;
    assert!(
        provider
            .revocations()
            .iter()
            .all(|r| r["token"].ends_with("-2")),
        "{:?}",
        provider.revocations()
    );
    let auth = proxy.auth(&victim.access_token).await;
    let upstream = proxy
        .server
        .upstream_token(&auth)
        .await
        .expect("still there");
    assert_eq!(upstream.expose(), b"up-access-1");
}

#[tokio::test]
async fn a_failing_upstream_revocation_never_blocks_the_local_one() {
    let (provider, _stop) = start_provider(None).await;
    provider.seen.lock().unwrap().revoke_status = Some(503);
    let proxy = start_proxy(provider.upstream(UserMapping::new(), true)).await;
    let grant = proxy.sign_in().await;
    let auth = proxy.auth(&grant.access_token).await;
    assert_eq!(
        proxy.revoke(&grant.client_id, &grant.refresh_token).await,
        200
    );
    eventually("the provider was asked", async || {
        provider.revocations().len() == 2
    })
    .await;
    // Revoked here all the same: the refresh token no longer works.
    let res = proxy
        .http
        .post(format!("{}/token", proxy.issuer))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", grant.refresh_token.as_str()),
            ("client_id", grant.client_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(matches!(
        proxy.server.upstream_token(&auth).await,
        Err(ProxyError::NoTokens)
    ));
}

#[tokio::test]
async fn without_a_revocation_endpoint_the_upstream_tokens_are_deleted_here() {
    let (provider, _stop) = start_provider(None).await;
    let proxy = start_proxy(provider.upstream(UserMapping::new(), false)).await;
    let grant = proxy.sign_in().await;
    let auth = proxy.auth(&grant.access_token).await;
    assert_eq!(
        proxy.revoke(&grant.client_id, &grant.refresh_token).await,
        200
    );
    let store = proxy.store.clone();
    let family = auth.claims.str("sid").unwrap().to_owned();
    eventually("the sealed upstream tokens are deleted", async || {
        store
            .entry::<serde_json::Value>(EntryKind::UpstreamTokens, &family)
            .await
            .unwrap()
            .is_none()
    })
    .await;
    assert!(provider.revocations().is_empty());
}

#[tokio::test]
async fn an_oidc_issuer_as_a_public_client_end_to_end_with_its_published_revocation_endpoint() {
    // What `mcp-oauth proxy --provider oidc --issuer … --client-id …` (no secret) builds.
    let (provider, _stop) = start_provider(None).await;
    let upstream = Upstream::oidc(
        &provider.origin,
        UPSTREAM_CLIENT,
        "",
        &HttpClient::new().expect("http"),
    )
    .await
    .expect("discovered")
    .build()
    .expect("upstream");
    let proxy = start_proxy(upstream).await;
    let grant = proxy.sign_in().await;
    let auth = proxy.auth(&grant.access_token).await;
    assert_eq!(auth.subject(), "pairwise-sub-1");
    assert!(
        provider
            .seen
            .lock()
            .unwrap()
            .token
            .iter()
            .all(|form| !form.contains_key("client_secret"))
    );
    assert_eq!(
        proxy.revoke(&grant.client_id, &grant.refresh_token).await,
        200
    );
    eventually("revoked at the published endpoint", async || {
        provider.revocations().len() == 2
    })
    .await;
    assert_eq!(provider.revocations()[0]["token"], "up-refresh-1");
}
