//! A custom provider whose issuer publishes no metadata: the configured endpoints, scopes and
//! grant types are served as the mirrored authorization-server metadata (instead of a 502 that
//! stops MCP clients); and the `userinfo` option, which fills profile claims the access token
//! lacks, once per token, only for a verified token and only from an answer about the same
//! subject. Against a stand-in on 127.0.0.1.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod common;

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::Served;
use mcp_oauth::OAuth;
use mcp_oauth::providers::{Custom, Oidc};
use mcp_oauth::testing::TestKey;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const RESOURCE: &str = "http://127.0.0.1:8080/mcp";

/// What the stand-in serves and counts.
#[derive(Clone)]
struct Idp {
    origin: String,
    key: TestKey,
    /// Status of every discovery URL (404: the issuer publishes no metadata).
    discovery_status: Arc<AtomicU16>,
    discovery_hits: Arc<AtomicU64>,
    userinfo: Arc<Mutex<(u16, Value)>>,
    userinfo_calls: Arc<AtomicU64>,
    userinfo_bearer: Arc<Mutex<Vec<String>>>,
}

async fn discovery(State(idp): State<Idp>) -> Response {
    idp.discovery_hits.fetch_add(1, Ordering::SeqCst);
    let status = idp.discovery_status.load(Ordering::SeqCst);
    if status == 200 {
        return axum::Json(json!({
            "issuer": idp.origin,
            "authorization_endpoint": format!("{}/published/authorize", idp.origin),
            "token_endpoint": format!("{}/published/token", idp.origin),
            "code_challenge_methods_supported": ["S256"],
        }))
        .into_response();
    }
    StatusCode::from_u16(status).unwrap().into_response()
}

async fn jwks(State(idp): State<Idp>) -> Response {
    axum::Json(serde_json::to_value(TestKey::jwks(&[&idp.key])).unwrap()).into_response()
}

async fn userinfo(State(idp): State<Idp>, headers: HeaderMap) -> Response {
    idp.userinfo_calls.fetch_add(1, Ordering::SeqCst);
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    idp.userinfo_bearer.lock().unwrap().push(bearer);
    let (status, body) = idp.userinfo.lock().unwrap().clone();
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

async fn start_idp() -> (Idp, Served) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    let idp = Idp {
        origin,
        key: TestKey::rs256(),
        discovery_status: Arc::new(AtomicU16::new(404)),
        discovery_hits: Arc::default(),
        userinfo: Arc::new(Mutex::new((
            200,
            json!({"sub": "user-7", "email": "ada@example.com", "name": "Ada", "email_verified": true}),
        ))),
        userinfo_calls: Arc::default(),
        userinfo_bearer: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/.well-known/oauth-authorization-server", get(discovery))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/userinfo", get(userinfo))
        .with_state(idp.clone());
    (idp, Served::app(listener, app))
}

impl Idp {
    fn custom(&self) -> Custom {
        Custom::new(
            self.origin.clone(),
            format!("{}/oauth/authorize", self.origin),
            format!("{}/oauth/token", self.origin),
        )
        .jwks_url(format!("{}/jwks", self.origin))
        .registration_endpoint(format!("{}/oauth/register", self.origin))
        .userinfo_endpoint(format!("{}/userinfo", self.origin))
        .scopes_supported(["files:read", "files:write"])
        .grant_types(["authorization_code", "refresh_token", "client_credentials"])
    }

    fn oauth(&self, custom: Custom) -> OAuth {
        OAuth::builder()
            .resource(RESOURCE)
            .provider(custom)
            .build()
            .expect("oauth")
    }

    fn token(&self) -> mcp_oauth::testing::TokenBuilder {
        self.key
            .token()
            .iss(&self.origin)
            .sub("user-7")
            .aud(RESOURCE)
    }
}

/// Serves the metadata routes of `oauth` on 127.0.0.1; returns the base URL.
async fn serve_metadata(oauth: &OAuth) -> (String, Served) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    (base, Served::app(listener, oauth.metadata_router()))
}

async fn get_json(url: &str) -> (u16, Value) {
    let res = reqwest::get(url).await.expect("get");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn without_published_metadata_the_configured_endpoints_are_served() {
    let (idp, _idp_stop) = start_idp().await;
    let oauth = idp.oauth(idp.custom());
    let (base, _stop) = serve_metadata(&oauth).await;

    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let (status, doc) = get_json(&format!("{base}{path}")).await;
        assert_eq!(status, 200, "{path}: {doc}");
        assert_eq!(doc["issuer"], idp.origin, "{path}");
        assert_eq!(
            doc["authorization_endpoint"],
            format!("{}/oauth/authorize", idp.origin)
        );
        assert_eq!(doc["token_endpoint"], format!("{}/oauth/token", idp.origin));
        assert_eq!(
            doc["registration_endpoint"],
            format!("{}/oauth/register", idp.origin)
        );
        assert_eq!(doc["jwks_uri"], format!("{}/jwks", idp.origin));
        assert_eq!(doc["userinfo_endpoint"], format!("{}/userinfo", idp.origin));
        assert_eq!(
            doc["scopes_supported"],
            json!(["files:read", "files:write"])
        );
        assert_eq!(
            doc["grant_types_supported"],
            json!(["authorization_code", "refresh_token", "client_credentials"])
        );
        assert_eq!(doc["response_types_supported"], json!(["code"]));
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    }
    // The issuer was asked (every discovery URL) once, then the answer is cached.
    let hits = idp.discovery_hits.load(Ordering::SeqCst);
    assert!(hits >= 1);
    let _ = get_json(&format!("{base}/.well-known/oauth-authorization-server")).await;
    assert_eq!(idp.discovery_hits.load(Ordering::SeqCst), hits);

    // The start-up check an MCP client would make passes: the issuer is byte-equal.
    oauth
        .check_authorization_server()
        .await
        .expect("the configured metadata names the advertised issuer");
}

#[tokio::test]
async fn published_metadata_wins_over_the_configured_endpoints() {
    let (idp, _idp_stop) = start_idp().await;
    idp.discovery_status.store(200, Ordering::SeqCst);
    let oauth = idp.oauth(idp.custom());
    let (base, _stop) = serve_metadata(&oauth).await;
    let (status, doc) = get_json(&format!("{base}/.well-known/oauth-authorization-server")).await;
    assert_eq!(status, 200);
    assert_eq!(
        doc["authorization_endpoint"],
        format!("{}/published/authorize", idp.origin),
        "the issuer's own document, as published"
    );
    assert!(doc.get("registration_endpoint").is_none(), "{doc}");
}

#[tokio::test]
async fn an_issuer_that_is_down_is_still_a_502_not_the_fallback() {
    let (idp, _idp_stop) = start_idp().await;
    idp.discovery_status.store(503, Ordering::SeqCst);
    let oauth = idp.oauth(idp.custom());
    let (base, _stop) = serve_metadata(&oauth).await;
    let (status, doc) = get_json(&format!("{base}/.well-known/oauth-authorization-server")).await;
    assert_eq!(status, 502, "{doc}");
    assert_eq!(doc["error"], "upstream_unavailable");
}

#[tokio::test]
async fn an_oidc_issuer_without_metadata_gets_no_invented_document() {
    // Only a provider configured with its endpoints has something true to serve.
    let (idp, _idp_stop) = start_idp().await;
    let oauth = OAuth::builder()
        .resource(RESOURCE)
        .provider(Oidc::new(idp.origin.clone()))
        .build()
        .expect("oauth");
    let (base, _stop) = serve_metadata(&oauth).await;
    let (status, _) = get_json(&format!("{base}/.well-known/oauth-authorization-server")).await;
    assert_eq!(status, 502);
}

#[tokio::test]
async fn userinfo_fills_missing_profile_claims_once_per_token() {
    let (idp, _idp_stop) = start_idp().await;
    let oauth = idp.oauth(idp.custom());
    let token = idp.token().scope("files:read").sign();
    for _ in 0..3 {
        let auth = oauth
            .authenticator()
            .authenticate(&token, oauth.resource())
            .await
            .expect("accepted");
        assert_eq!(auth.subject(), "user-7");
        assert_eq!(auth.user.email.as_deref(), Some("ada@example.com"));
        assert_eq!(auth.user.name.as_deref(), Some("Ada"));
        assert_eq!(auth.claims.get("email_verified"), Some(&json!(true)));
    }
    assert_eq!(
        idp.userinfo_calls.load(Ordering::SeqCst),
        1,
        "fetched once; the verified-token cache keeps the completed claims"
    );
    assert_eq!(
        *idp.userinfo_bearer.lock().unwrap(),
        std::slice::from_ref(&token)
    );

    // A token with every profile claim needs no call.
    let complete = idp
        .token()
        .claim("email", "own@example.com")
        .claim("email_verified", false)
        .claim("name", "Own")
        .claim("given_name", "O")
        .claim("family_name", "Wn")
        .claim("preferred_username", "own")
        .claim("nickname", "o")
        .claim("picture", "https://example.com/o.png")
        .sign();
    let auth = oauth
        .authenticator()
        .authenticate(&complete, oauth.resource())
        .await
        .expect("accepted");
    assert_eq!(auth.user.email.as_deref(), Some("own@example.com"));
    assert_eq!(idp.userinfo_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn userinfo_never_replaces_token_claims_nor_adds_anything_but_profile_claims() {
    let (idp, _idp_stop) = start_idp().await;
    *idp.userinfo.lock().unwrap() = (
        200,
        json!({"sub": "user-7", "email": "userinfo@example.com", "name": "From userinfo",
               "scope": "admin", "aud": "https://elsewhere.example", "roles": ["admin"],
               "permissions": ["everything"]}),
    );
    let oauth = idp.oauth(idp.custom());
    let token = idp
        .token()
        .scope("files:read")
        .claim("email", "token@example.com")
        .sign();
    let auth = oauth
        .authenticator()
        .authenticate(&token, oauth.resource())
        .await
        .expect("accepted");
    assert_eq!(auth.user.email.as_deref(), Some("token@example.com"));
    assert_eq!(auth.user.name.as_deref(), Some("From userinfo"));
    assert_eq!(auth.claims.str("scope"), Some("files:read"));
    assert_eq!(auth.claims.str("aud"), Some(RESOURCE));
    assert!(auth.claims.get("roles").is_none());
    assert!(auth.claims.get("permissions").is_none());
    assert!(auth.user.roles.is_empty() && auth.user.permissions.is_empty());
}

#[tokio::test]
async fn a_userinfo_answer_about_another_subject_is_ignored() {
    let (idp, _idp_stop) = start_idp().await;
    *idp.userinfo.lock().unwrap() = (
        200,
        json!({"sub": "someone-else", "email": "x@example.com"}),
    );
    let oauth = idp.oauth(idp.custom());
    let auth = oauth
        .authenticator()
        .authenticate(&idp.token().sign(), oauth.resource())
        .await
        .expect("accepted");
    assert_eq!(auth.user.email, None);
}

#[tokio::test]
async fn a_failing_userinfo_leaves_the_verified_token_accepted() {
    let (idp, _idp_stop) = start_idp().await;
    *idp.userinfo.lock().unwrap() = (500, json!({"error": "server_error"}));
    let oauth = idp.oauth(idp.custom());
    let auth = oauth
        .authenticator()
        .authenticate(&idp.token().sign(), oauth.resource())
        .await
        .expect("accepted with its own claims");
    assert_eq!(auth.subject(), "user-7");
    assert_eq!(auth.user.email, None);
    assert_eq!(idp.userinfo_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_stranger_cannot_make_the_server_call_userinfo() {
    // Forged, expired, or for another resource: refused before any userinfo call, and the
    // token is never sent to the provider.
    let (idp, _idp_stop) = start_idp().await;
    let oauth = idp.oauth(idp.custom());
    let forged = TestKey::rs256()
        .token()
        .iss(&idp.origin)
        .sub("user-7")
        .aud(RESOURCE)
        .sign();
    let expired = idp.token().claim("iat", 1_000).claim("exp", 2_000).sign();
    let elsewhere = idp
        .key
        .token()
        .iss(&idp.origin)
        .sub("user-7")
        .aud("https://other.example/mcp")
        .sign();
    for token in [
        forged.as_str(),
        expired.as_str(),
        elsewhere.as_str(),
        "not-a-jwt",
    ] {
        assert!(
            oauth
                .authenticator()
                .authenticate(token, oauth.resource())
                .await
                .is_err(),
            "{token}"
        );
    }
    assert_eq!(idp.userinfo_calls.load(Ordering::SeqCst), 0);
}

#[test]
fn userinfo_and_registration_endpoints_must_be_https_or_a_loopback_stand_in() {
    use mcp_oauth::providers::Provider;
    let base = || {
        Custom::new(
            "https://auth.example.com",
            "https://auth.example.com/authorize",
            "https://auth.example.com/token",
        )
        .jwks_url("https://auth.example.com/keys")
    };
    let none = |_: &str| None;
    for bad in [
        base().userinfo_endpoint("http://auth.example.com/userinfo"),
        base().userinfo_endpoint("not a url"),
        base().registration_endpoint("http://auth.example.com/register"),
    ] {
        let err = bad.spec_with(&none).expect_err("refused").to_string();
        assert!(err.contains("endpoint"), "{err}");
    }
    let spec = base()
        .userinfo_endpoint("https://auth.example.com/userinfo")
        .spec_with(&none)
        .expect("spec");
    let doc = spec
        .configured_metadata()
        .expect("a custom provider has one");
    assert_eq!(
        doc.extra["userinfo_endpoint"],
        "https://auth.example.com/userinfo"
    );
    assert_eq!(doc.registration_endpoint, None);
}
