//! Several trusted issuers at one resource server: each token is verified by the issuer its
//! `iss` names, with that issuer's keys, audiences and claim mapping; an unknown `iss` is
//! refused before any fetch; the cache never answers one issuer's token as another's; the
//! metadata, the mirror and the start-up check cover every issuer, in order.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

use std::convert::Infallible;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use mcp_oauth::authenticator::Issuer;
use mcp_oauth::jose::{Algorithm, SigningKey};
use mcp_oauth::testing::{MockIdp, TestKey};
use mcp_oauth::verify::{FnVerifier, JwtVerifier};
use mcp_oauth::{Auth, Claims, OAuth, UserInfo, VerifyError, VerifyErrorKind};
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt, service_fn};

const RESOURCE: &str = "http://127.0.0.1:8080/mcp";

/// Issuer A (ES256, at the origin) and issuer B (RS256, at `/tenant`, which also accepts the
/// audience `api://b`), each with its own mapping: A's users are `a:<sub>`, B's `b:<sub>`.
struct Fixture {
    a: MockIdp,
    b: MockIdp,
    oauth: OAuth,
}

async fn fixture() -> Fixture {
    let a = MockIdp::start(TestKey::es256()).await.expect("idp a");
    let b = MockIdp::start_with_path(TestKey::rs256(), "/tenant")
        .await
        .expect("idp b");
    let oauth = OAuth::builder()
        .resource(RESOURCE)
        .issuer(
            Issuer::jwks(a.issuer(), a.jwks_url())
                .claim_mapper(|c: &Claims| UserInfo::new(format!("a:{}", c.sub().unwrap_or("")))),
        )
        .issuer(
            Issuer::discover(b.issuer())
                .audience("api://b")
                .claim_mapper(|c: &Claims| UserInfo::new(format!("b:{}", c.sub().unwrap_or("")))),
        )
        .build()
        .expect("oauth");
    Fixture { a, b, oauth }
}

impl Fixture {
    async fn check(&self, token: &str) -> Result<Auth, VerifyError> {
        self.oauth
            .authenticator()
            .authenticate(token, self.oauth.resource())
            .await
    }

    async fn kind(&self, token: &str) -> VerifyErrorKind {
        match self.check(token).await {
            Ok(auth) => panic!("accepted as {}", auth.user.id),
            Err(err) => err.kind(),
        }
    }

    /// Key-set and metadata fetches at both issuers.
    fn fetches(&self) -> u64 {
        self.a.jwks_hits() + self.a.metadata_hits() + self.b.jwks_hits() + self.b.metadata_hits()
    }
}

/// A compact JWS of exactly these header and payload bytes, signed by `key`.
fn raw_jws(key: &SigningKey, header: &Value, payload: &str) -> String {
    key.sign_compact(header.to_string().as_bytes(), payload.as_bytes())
}

fn header_of(key: &TestKey) -> Value {
    json!({ "alg": key.key().alg().as_str(), "kid": key.kid(), "typ": "at+jwt" })
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs(),
    )
    .expect("time")
}

#[tokio::test]
async fn each_issuer_is_accepted_with_its_own_keys_and_mapping() {
    let f = fixture().await;
    let from_a = f.a.token().aud(RESOURCE).sign();
    let from_b = f.b.token().aud(RESOURCE).sub("user-2").sign();
    let auth = f.check(&from_a).await.expect("a");
    assert_eq!(auth.user.id, "a:user-1");
    assert_eq!(auth.claims.iss(), Some(f.a.issuer()));
    let auth = f.check(&from_b).await.expect("b");
    assert_eq!(auth.user.id, "b:user-2");
    assert_eq!(auth.claims.iss(), Some(f.b.issuer()));
    // Each issuer's keys were fetched from its own server only.
    assert_eq!(f.a.jwks_hits(), 1);
    assert_eq!(f.b.jwks_hits(), 1);
}

#[tokio::test]
async fn a_token_is_verified_only_with_the_keys_of_the_issuer_it_names() {
    let f = fixture().await;
    // Claims issuer A, signed by B's key (whose kid A's key set does not have).
    let forged = f.b.key().token().iss(f.a.issuer()).aud(RESOURCE).sign();
    assert_eq!(f.kind(&forged).await, VerifyErrorKind::UnknownKey);
    // Claims issuer B, signed by A's key.
    let forged = f.a.key().token().iss(f.b.issuer()).aud(RESOURCE).sign();
    assert_eq!(f.kind(&forged).await, VerifyErrorKind::UnknownKey);
    // Claims issuer A, signed by B's key under A's kid: the signature fails at A.
    let b_as_a = TestKey::from_key(
        SigningKey::generate(Algorithm::ES256)
            .expect("key")
            .with_kid(f.a.key().kid()),
    );
    let forged = b_as_a.token().iss(f.a.issuer()).aud(RESOURCE).sign();
    assert_eq!(f.kind(&forged).await, VerifyErrorKind::InvalidSignature);
    // A's genuine token with its payload changed to name B keeps A's signature: refused.
    let genuine = f.a.token().aud(RESOURCE).sign();
    let parts: Vec<&str> = genuine.split('.').collect();
    let payload =
        json!({ "iss": f.b.issuer(), "sub": "user-1", "aud": RESOURCE, "exp": now() + 600 });
    let swapped = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        parts[2]
    );
    assert_eq!(f.kind(&swapped).await, VerifyErrorKind::UnknownKey);
}

#[tokio::test]
async fn an_unlisted_or_malformed_iss_is_refused_before_any_fetch() {
    let f = fixture().await;
    let key = f.a.key().clone();
    let long = format!("https://{}.example.com", "a".repeat(5000));
    let cases: Vec<(&str, String)> = vec![
        (
            "unknown issuer",
            key.token()
                .iss("https://evil.example.com")
                .aud(RESOURCE)
                .sign(),
        ),
        (
            "near miss",
            key.token()
                .iss(&format!("{}/", f.a.issuer()))
                .aud(RESOURCE)
                .sign(),
        ),
        (
            "other case",
            key.token()
                .iss(&f.a.issuer().to_uppercase())
                .aud(RESOURCE)
                .sign(),
        ),
        ("very long", key.token().iss(&long).aud(RESOURCE).sign()),
        (
            "not a URL",
            key.token()
                .iss("not a url \u{0}\u{202e}")
                .aud(RESOURCE)
                .sign(),
        ),
        ("missing", key.token().without("iss").aud(RESOURCE).sign()),
        (
            "a number",
            key.token().claim("iss", 42).aud(RESOURCE).sign(),
        ),
        (
            "an array",
            key.token()
                .claim("iss", json!([f.a.issuer()]))
                .aud(RESOURCE)
                .sign(),
        ),
        (
            "null",
            key.token().claim("iss", Value::Null).aud(RESOURCE).sign(),
        ),
        ("empty", key.token().iss("").aud(RESOURCE).sign()),
    ];
    for (case, token) in &cases {
        let err = f.check(token).await.expect_err(case);
        assert!(
            matches!(
                err.kind(),
                VerifyErrorKind::InvalidIssuer | VerifyErrorKind::Malformed
            ),
            "{case}: {err}"
        );
        assert!(
            err.to_string().len() < 600,
            "{case}: the error must not carry the whole iss"
        );
    }
    // Duplicate `iss` members: one names a trusted issuer, the other an attacker's. Refused
    // whichever order, whichever a lenient parser would keep.
    for order in [
        (
            f.a.issuer().to_owned(),
            "https://evil.example.com".to_owned(),
        ),
        (
            "https://evil.example.com".to_owned(),
            f.a.issuer().to_owned(),
        ),
    ] {
        let payload = format!(
            r#"{{"iss":{:?},"iss":{:?},"sub":"user-1","aud":{RESOURCE:?},"exp":{}}}"#,
            order.0,
            order.1,
            now() + 600
        );
        let token = raw_jws(key.key(), &header_of(&key), &payload);
        assert_eq!(f.kind(&token).await, VerifyErrorKind::Malformed);
    }
    // Opaque tokens have no iss to route by.
    assert_eq!(
        f.kind("opaque-token-value").await,
        VerifyErrorKind::Malformed
    );
    assert_eq!(
        f.fetches(),
        0,
        "no refused token may make this server fetch"
    );
    // A listed issuer then triggers its own fetch only.
    f.check(&f.a.token().aud(RESOURCE).sign()).await.expect("a");
    assert_eq!(
        (f.a.jwks_hits(), f.b.jwks_hits() + f.b.metadata_hits()),
        (1, 0)
    );
}

#[tokio::test]
async fn alg_confusion_is_refused_per_issuer() {
    let f = fixture().await;
    // HS256 "signed" with B's public key as the secret, naming B: B has no HMAC secret.
    let public = f.b.key().public_key_pem().expect("pem");
    let hmac = TestKey::from_key(
        SigningKey::hmac(public.as_bytes(), Algorithm::HS256)
            .expect("hmac")
            .with_kid(f.b.key().kid()),
    );
    let token = hmac.token().iss(f.b.issuer()).aud(RESOURCE).sign();
    assert_eq!(f.kind(&token).await, VerifyErrorKind::UnsupportedAlgorithm);
    // alg none, naming A.
    let payload = json!({ "iss": f.a.issuer(), "sub": "x", "aud": RESOURCE, "exp": now() + 600 });
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    let kind = f.kind(&unsigned).await;
    assert!(
        matches!(
            kind,
            VerifyErrorKind::Malformed | VerifyErrorKind::UnsupportedAlgorithm
        ),
        "{kind:?}"
    );
    assert_eq!(f.fetches(), 0);
}

#[tokio::test]
async fn audiences_are_per_issuer() {
    let f = fixture().await;
    let b_api = f.b.token().aud("api://b").sign();
    assert_eq!(f.check(&b_api).await.expect("b").user.id, "b:user-1");
    let a_api = f.a.token().aud("api://b").sign();
    assert_eq!(f.kind(&a_api).await, VerifyErrorKind::InvalidAudience);
    let elsewhere = f.b.token().aud("https://other.example.com/mcp").sign();
    assert_eq!(f.kind(&elsewhere).await, VerifyErrorKind::InvalidAudience);
}

#[tokio::test]
async fn the_cache_never_answers_a_token_as_another_issuers() {
    let f = fixture().await;
    let from_a = f.a.token().aud(RESOURCE).sign();
    assert_eq!(f.check(&from_a).await.expect("a").user.id, "a:user-1");
    assert_eq!(f.oauth.authenticator().cached_tokens(), 1);
    // The same signature (the cache key is the length and the last 32 bytes) over a payload
    // naming B, padded to the same length: a key collision, never a hit.
    let parts: Vec<&str> = from_a.split('.').collect();
    let forged = (0..200)
        .map(|pad| {
            let payload = json!({
                "iss": f.b.issuer(), "sub": "user-1", "aud": RESOURCE,
                "exp": now() + 600, "p": "x".repeat(pad),
            });
            format!(
                "{}.{}.{}",
                parts[0],
                URL_SAFE_NO_PAD.encode(payload.to_string()),
                parts[2]
            )
        })
        .find(|t| t.len() == from_a.len())
        .expect("a payload of the same length");
    assert_eq!(f.kind(&forged).await, VerifyErrorKind::UnknownKey);
    // B's own tokens are answered with B's rules, cached or not.
    let from_b = f.b.token().aud("api://b").sign();
    for _ in 0..2 {
        assert_eq!(f.check(&from_b).await.expect("b").user.id, "b:user-1");
        assert_eq!(f.check(&from_a).await.expect("a").user.id, "a:user-1");
    }
    assert_eq!(f.oauth.authenticator().cached_tokens(), 2);
    // A cache hit gets the rules of the issuer that verified it again: B's extra audience
    // holds for another resource, A's token (bound to this resource) does not.
    let other = mcp_oauth::ResourceUrl::parse("http://127.0.0.1:9999/mcp").expect("url");
    let auth = f.oauth.authenticator();
    assert!(auth.authenticate(&from_b, &other).await.is_ok());
    let err = auth
        .authenticate(&from_a, &other)
        .await
        .expect_err("a's token names this resource only");
    assert_eq!(err.kind(), VerifyErrorKind::InvalidAudience);
}

#[tokio::test]
async fn the_layer_refuses_an_unknown_issuer_with_invalid_token() {
    let f = fixture().await;
    let svc = ServiceBuilder::new()
        .layer(f.oauth.layer())
        .service(service_fn(|req: Request<Full<Bytes>>| async move {
            let who = req
                .extensions()
                .get::<Auth>()
                .map(|a| a.user.id.clone())
                .unwrap_or_default();
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(who))))
        }));
    let call = |token: String| {
        Request::post(RESOURCE)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .expect("request")
    };
    let evil =
        f.a.key()
            .token()
            .iss("https://evil.example.com")
            .aud(RESOURCE)
            .sign();
    let res = svc.clone().oneshot(call(evil)).await.expect("infallible");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let challenge = res.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .expect("ascii");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    assert_eq!(
        res.extensions().get::<VerifyError>().map(VerifyError::kind),
        Some(VerifyErrorKind::InvalidIssuer)
    );
    for (token, who) in [
        (f.a.token().aud(RESOURCE).sign(), "a:user-1"),
        (f.b.token().aud(RESOURCE).sign(), "b:user-1"),
    ] {
        let res = svc.clone().oneshot(call(token)).await.expect("infallible");
        assert_eq!(res.status(), StatusCode::OK);
        let body = res.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(body, who);
    }
    assert_eq!(f.b.jwks_hits(), 1);
}

async fn get_json(router: &axum::Router, path: &str) -> (StatusCode, Value) {
    let res = router
        .clone()
        .oneshot(
            Request::get(path)
                .body(axum::body::Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    let status = res.status();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_metadata_lists_every_issuer_in_order_and_mirrors_each() {
    let f = fixture().await;
    assert_eq!(
        f.oauth.authorization_servers(),
        [f.a.issuer(), f.b.issuer()]
    );
    let router = f.oauth.metadata_router();
    let (status, doc) = get_json(&router, "/.well-known/oauth-protected-resource/mcp").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        doc["authorization_servers"],
        json!([f.a.issuer(), f.b.issuer()])
    );
    // The first issuer at the root paths, B at its path-inserted ones.
    let (status, doc) = get_json(&router, "/.well-known/oauth-authorization-server").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["issuer"], f.a.issuer());
    let (status, doc) = get_json(&router, "/.well-known/oauth-authorization-server/tenant").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["issuer"], f.b.issuer());
    let (_, doc) = get_json(&router, "/.well-known/openid-configuration/tenant").await;
    assert_eq!(doc["issuer"], f.b.issuer());
    assert_eq!(f.oauth.metadata_mirrors().len(), 2);

    // The order is the order of the calls.
    let reversed = OAuth::builder()
        .resource(RESOURCE)
        .issuer(Issuer::jwks(f.b.issuer(), f.b.jwks_url()))
        .issuer(Issuer::jwks(f.a.issuer(), f.a.jwks_url()))
        .mirror_authorization_server(false)
        .build()
        .expect("oauth");
    let doc = serde_json::to_value(reversed.metadata_for(reversed.resource())).expect("json");
    assert_eq!(
        doc["authorization_servers"],
        json!([f.b.issuer(), f.a.issuer()])
    );
    assert!(reversed.metadata_mirrors().is_empty());
}

#[tokio::test]
async fn the_start_up_check_covers_every_issuer() {
    let f = fixture().await;
    f.oauth
        .check_authorization_server()
        .await
        .expect("both match");
    assert!(f.a.metadata_hits() >= 1 && f.b.metadata_hits() >= 1);
    f.b.set_metadata_issuer(Some("https://impostor.example.com"));
    let text = f
        .oauth
        .check_authorization_server()
        .await
        .expect_err("b differs")
        .to_string();
    assert!(text.contains("https://impostor.example.com"), "{text}");
    assert!(text.contains(&format!("{:?}", f.b.issuer())), "{text}");
    assert!(
        !text.contains(&format!("{:?}", f.a.issuer())),
        "only b is named: {text}"
    );
    // Both failing: both named.
    f.a.set_metadata_issuer(Some("https://other.example.com"));
    let text = f
        .oauth
        .check_authorization_server()
        .await
        .expect_err("both differ")
        .to_string();
    assert!(
        text.contains("https://other.example.com") && text.contains("https://impostor.example.com"),
        "{text}"
    );
}

#[tokio::test]
async fn a_preset_can_be_one_of_the_issuers() {
    let a = MockIdp::start(TestKey::es256()).await.expect("idp a");
    let b = MockIdp::start(TestKey::rs256()).await.expect("idp b");
    let oauth = OAuth::builder()
        .resource(RESOURCE)
        .issuer(Issuer::provider(mcp_oauth::providers::Oidc::new(
            a.issuer(),
        )))
        .issuer(Issuer::jwt(
            b.issuer(),
            JwtVerifier::builder().jwk(&b.key().public_jwk().expect("jwk")),
        ))
        .build()
        .expect("oauth");
    for token in [
        a.token().aud(RESOURCE).sign(),
        b.token().aud(RESOURCE).sign(),
    ] {
        oauth
            .authenticator()
            .authenticate(&token, oauth.resource())
            .await
            .expect("accepted");
    }
    // B's keys are static: nothing fetched from B.
    assert_eq!(b.jwks_hits(), 0);
    assert_eq!(
        oauth.authenticator().issuers().collect::<Vec<_>>(),
        [a.issuer(), b.issuer()]
    );
}

#[test]
fn mistakes_in_the_issuer_list_fail_at_build() {
    let key = TestKey::es256().public_jwk().expect("jwk");
    let issuer = |url: &str| Issuer::jwt(url, JwtVerifier::builder().jwk(&key));
    let error = |builder: mcp_oauth::OAuthBuilder| {
        builder
            .resource(RESOURCE)
            .build()
            .expect_err("refused")
            .to_string()
    };
    let twice = error(
        OAuth::builder()
            .issuer(issuer("https://a.example.com"))
            .issuer(issuer("https://a.example.com")),
    );
    assert!(twice.contains("configured twice"), "{twice}");
    let query = error(OAuth::builder().issuer(issuer("https://a.example.com?x=1")));
    assert!(query.contains("query"), "{query}");
    let mixed = error(
        OAuth::builder()
            .issuer(issuer("https://a.example.com"))
            .audience("api://x"),
    );
    assert!(
        mixed.contains("OAuthBuilder::audience") && mixed.contains("Issuer::audience"),
        "{mixed}"
    );
    let mixed = error(
        OAuth::builder()
            .issuer(issuer("https://a.example.com"))
            .authorization_server("https://b.example.com"),
    );
    assert!(
        mixed.contains("OAuthBuilder::authorization_server"),
        "{mixed}"
    );
    let no_keys = error(
        OAuth::builder().issuer(Issuer::jwt("https://a.example.com", JwtVerifier::builder())),
    );
    assert!(!no_keys.is_empty());
}

#[tokio::test]
async fn any_verifier_is_held_to_the_issuer_it_was_chosen_for() {
    let key = TestKey::es256();
    // A verifier that accepts anything and answers with claims naming another issuer (an
    // introspection endpoint that knows tokens of several issuers, a careless function).
    let liar = FnVerifier::new(|_token: mcp_oauth::AccessToken| async move {
        let claims = json!({"iss": "https://b.example.com", "sub": "x", "aud": RESOURCE, "exp": 4_102_444_800u64});
        Ok(Claims::new(claims.as_object().cloned().unwrap_or_default()))
    });
    let oauth = OAuth::builder()
        .resource(RESOURCE)
        .issuer(Issuer::new("https://a.example.com", liar))
        .issuer(Issuer::jwt(
            "https://b.example.com",
            JwtVerifier::builder().jwk(&key.public_jwk().expect("jwk")),
        ))
        .mirror_authorization_server(false)
        .build()
        .expect("oauth");
    let token = key
        .token()
        .iss("https://a.example.com")
        .aud(RESOURCE)
        .sign();
    let err = oauth
        .authenticator()
        .authenticate(&token, oauth.resource())
        .await
        .expect_err("claims of b from a's verifier");
    assert_eq!(err.kind(), VerifyErrorKind::InvalidIssuer);
    // B's own token, signed by B's key, is accepted by B.
    let token = key
        .token()
        .iss("https://b.example.com")
        .aud(RESOURCE)
        .sign();
    oauth
        .authenticator()
        .authenticate(&token, oauth.resource())
        .await
        .expect("b");
}

#[test]
fn a_failing_preset_says_why() {
    let err = OAuth::builder()
        .resource(RESOURCE)
        .issuer(Issuer::provider_with(
            mcp_oauth::providers::Auth0::new(),
            &|_: &str| None,
        ))
        .build()
        .expect_err("no domain")
        .to_string();
    assert!(err.contains("AUTH0_DOMAIN"), "{err}");
}

#[tokio::test]
async fn the_embedded_authorization_server_is_one_of_the_issuers() {
    use mcp_oauth::auth_server::{AuthServer, Grant};

    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let embedded = AuthServer::builder("http://127.0.0.1:9/embedded")
        .resource(RESOURCE)
        .build()
        .await
        .expect("auth server");
    let oauth = OAuth::builder()
        .resource(RESOURCE)
        .issuer(Issuer::jwks(idp.issuer(), idp.jwks_url()))
        .issuer(
            Issuer::new(embedded.issuer(), embedded.verifier().expect("verifier")).claim_mapper(
                |c: &Claims| UserInfo::new(format!("local:{}", c.sub().unwrap_or(""))),
            ),
        )
        .mirror_authorization_server(false)
        .build()
        .expect("oauth");
    let scope = vec!["mcp:read".to_owned()];
    let claims = serde_json::Map::new();
    let local = embedded.mint_access_token(&Grant {
        subject: "carol",
        client_id: "c",
        scope: &scope,
        resource: Some(RESOURCE),
        user_claims: &claims,
        family: "family-1",
        ttl: None,
    });
    let auth = oauth.authenticator();
    // Twice: verified, then from the cache, where the embedded verifier's revocation
    // recheck runs (its own, not the other issuer's).
    for _ in 0..2 {
        let who = auth
            .authenticate(&local, oauth.resource())
            .await
            .expect("local");
        assert_eq!(who.user.id, "local:carol");
    }
    let remote = idp.token().aud(RESOURCE).sign();
    assert_eq!(
        auth.authenticate(&remote, oauth.resource())
            .await
            .expect("remote")
            .user
            .id,
        "user-1"
    );
    // The IdP's key claiming the embedded issuer: checked against the embedded key ring only.
    let forged = idp
        .key()
        .token()
        .iss(embedded.issuer())
        .aud(RESOURCE)
        .sign();
    let err = auth
        .authenticate(&forged, oauth.resource())
        .await
        .expect_err("forged");
    assert!(
        matches!(
            err.kind(),
            VerifyErrorKind::UnknownKey | VerifyErrorKind::InvalidSignature
        ),
        "{err}"
    );
    assert_eq!(
        idp.jwks_hits(),
        1,
        "only the IdP's own token fetched its keys"
    );
    idp.shutdown().await;
}
