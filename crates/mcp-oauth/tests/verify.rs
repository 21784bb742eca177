//! Token verification end to end: every algorithm family, key sources, confusion attacks,
//! the JWKS cache under faults, introspection, custom functions and the token cache.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::eventually;
use mcp_oauth::authenticator::Authenticator;
use mcp_oauth::fetch::HttpClient;
use mcp_oauth::jose::{Algorithm, SigningKey};
use mcp_oauth::testing::{JwksMode, MockIdp, TestKey};
use mcp_oauth::verify::{
    FnVerifier, IntrospectionVerifier, JwksOptions, JwtVerifier, TokenVerifier,
};
use mcp_oauth::{Claims, OAuth, ResourceUrl, VerifyError, VerifyErrorKind};
use serde_json::json;

const RESOURCE: &str = "http://127.0.0.1:8080/mcp";

fn resource() -> ResourceUrl {
    ResourceUrl::parse(RESOURCE).expect("resource")
}

fn remote(idp: &MockIdp, options: JwksOptions) -> JwtVerifier {
    JwtVerifier::builder()
        .issuer(idp.issuer())
        .jwks_url(idp.jwks_url())
        .jwks_options(options)
        .build()
        .expect("verifier")
}

async fn kind(auth: &Authenticator, token: &str) -> Option<VerifyErrorKind> {
    auth.authenticate(token, &resource())
        .await
        .err()
        .map(|e| e.kind())
}

#[tokio::test]
async fn every_asymmetric_family_verifies_through_a_jwks() {
    for key in [
        TestKey::rs256(),
        TestKey::generate(Algorithm::PS256),
        TestKey::es256(),
        TestKey::generate(Algorithm::ES384),
        TestKey::ed25519(),
    ] {
        let idp = MockIdp::start(key.clone()).await.expect("idp");
        let auth = Authenticator::new(remote(&idp, JwksOptions::default()));
        let token = idp.token().aud(RESOURCE).scope("a b").sign();
        let got = auth
            .authenticate(&token, &resource())
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e}", key.key().alg()));
        assert_eq!(got.subject(), "user-1");
        assert_eq!(got.scopes, vec!["a", "b"]);
        idp.shutdown().await;
    }
}

#[tokio::test]
async fn static_pem_and_jwk_keys_verify() {
    let key = TestKey::es256();
    let jwk = key.public_jwk().expect("jwk");
    let verifier = JwtVerifier::builder()
        .issuer("https://issuer.example")
        .jwk(&jwk)
        .build()
        .expect("verifier");
    let auth = Authenticator::new(verifier);
    let token = key
        .token()
        .iss("https://issuer.example")
        .sub("s")
        .aud(RESOURCE)
        .sign();
    assert!(auth.authenticate(&token, &resource()).await.is_ok());

    let jwks = serde_json::to_string(&TestKey::jwks(&[&key])).expect("json");
    let verifier = JwtVerifier::builder()
        .issuer("https://issuer.example")
        .jwks_json(&jwks)
        .build()
        .expect("verifier");
    assert!(
        Authenticator::new(verifier)
            .authenticate(&token, &resource())
            .await
            .is_ok()
    );
}

#[test]
fn builder_errors_name_what_to_fix() {
    let err = JwtVerifier::builder()
        .jwks_url("https://x/jwks")
        .build()
        .expect_err("no issuer");
    assert!(err.to_string().starts_with("issuer is required"), "{err}");
    let err = JwtVerifier::builder()
        .issuer("https://x")
        .build()
        .expect_err("no keys");
    assert!(err.to_string().contains("JWKS URL"), "{err}");
    let err = JwtVerifier::builder()
        .issuer("https://x")
        .jwks_url("http://idp.example.com/jwks")
        .build()
        .expect_err("http");
    assert!(err.to_string().contains("insecure_allow_http"), "{err}");
    let err = JwtVerifier::builder()
        .issuer("https://x")
        .hmac_secret("short")
        .build()
        .expect_err("short secret");
    assert!(err.to_string().contains("32 bytes"), "{err}");
    let err = JwtVerifier::builder()
        .issuer("https://x")
        .jwks_json("{\"keys\":[]}")
        .build()
        .expect_err("empty");
    assert!(err.to_string().contains("no usable key"), "{err}");
}

#[tokio::test]
async fn hmac_path_never_consults_the_jwks() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let secret = [9u8; 32];
    let verifier = JwtVerifier::builder()
        .issuer(idp.issuer())
        .jwks_url(idp.jwks_url())
        .hmac_secret(secret.as_slice())
        .build()
        .expect("verifier");
    let auth = Authenticator::new(verifier);
    let hs = TestKey::hs256(&secret)
        .token()
        .iss(idp.issuer())
        .sub("u")
        .aud(RESOURCE)
        .sign();
    assert!(auth.authenticate(&hs, &resource()).await.is_ok());
    assert_eq!(
        idp.jwks_hits(),
        0,
        "an HS256 token is checked against the secret only"
    );
    let rs = idp.token().aud(RESOURCE).sign();
    assert!(auth.authenticate(&rs, &resource()).await.is_ok());
    assert_eq!(idp.jwks_hits(), 1);
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let auth = Authenticator::new(remote(&idp, JwksOptions::default()));
    // The classic confusion: HMAC keyed with the RSA public key material.
    let jwk = serde_json::to_vec(&idp.key().public_jwk().expect("jwk")).expect("json");
    let forger = SigningKey::hmac(&jwk, Algorithm::HS256)
        .expect("hmac")
        .with_kid(idp.key().kid());
    let claims = idp.token().aud(RESOURCE).claims();
    let token = forger.sign_jwt(None, &claims);
    assert_eq!(
        kind(&auth, &token).await,
        Some(VerifyErrorKind::UnsupportedAlgorithm)
    );
    // An RSA kid used with ES256 is refused too.
    let es = TestKey::es256().key().sign_compact(
        json!({"alg": "ES256", "kid": idp.key().kid()})
            .to_string()
            .as_bytes(),
        claims.to_string().as_bytes(),
    );
    assert_eq!(
        kind(&auth, &es).await,
        Some(VerifyErrorKind::UnsupportedAlgorithm)
    );
}

#[tokio::test]
async fn alg_none_is_refused() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let auth = Authenticator::new(remote(&idp, JwksOptions::default()));
    let b64 = |v: serde_json::Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let token = format!(
        "{}.{}.",
        b64(json!({"alg": "none"})),
        b64(idp.token().aud(RESOURCE).claims())
    );
    assert_eq!(kind(&auth, &token).await, Some(VerifyErrorKind::Malformed));
    let token = format!(
        "{}.{}.c2ln",
        b64(json!({"alg": "none"})),
        b64(idp.token().aud(RESOURCE).claims())
    );
    assert_eq!(
        kind(&auth, &token).await,
        Some(VerifyErrorKind::UnsupportedAlgorithm)
    );
}

#[tokio::test]
async fn algorithm_allow_list_is_enforced() {
    let idp = MockIdp::start(TestKey::es256()).await.expect("idp");
    let verifier = JwtVerifier::builder()
        .issuer(idp.issuer())
        .jwks_url(idp.jwks_url())
        .algorithms([Algorithm::RS256])
        .build()
        .expect("v");
    let auth = Authenticator::new(verifier);
    let token = idp.token().aud(RESOURCE).sign();
    assert_eq!(
        kind(&auth, &token).await,
        Some(VerifyErrorKind::UnsupportedAlgorithm)
    );
}

#[tokio::test]
async fn time_claims_and_typ() {
    let idp = MockIdp::start(TestKey::ed25519()).await.expect("idp");
    let auth = Authenticator::new(remote(&idp, JwksOptions::default()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let nbf = idp.token().aud(RESOURCE).claim("nbf", now + 3600).sign();
    assert_eq!(kind(&auth, &nbf).await, Some(VerifyErrorKind::NotYetValid));
    let iat = idp.token().aud(RESOURCE).claim("iat", now + 3600).sign();
    assert_eq!(kind(&auth, &iat).await, Some(VerifyErrorKind::NotYetValid));
    let no_exp = idp
        .token()
        .aud(RESOURCE)
        .claim("iat", now)
        .without("exp")
        .sign_exact();
    assert_eq!(
        kind(&auth, &no_exp).await,
        Some(VerifyErrorKind::InvalidClaims)
    );
    let string_exp = idp.token().aud(RESOURCE).claim("exp", "tomorrow").sign();
    assert_eq!(
        kind(&auth, &string_exp).await,
        Some(VerifyErrorKind::InvalidClaims)
    );

    let strict = JwtVerifier::builder()
        .issuer(idp.issuer())
        .jwks_url(idp.jwks_url())
        .require_at_jwt_typ()
        .build()
        .expect("v");
    let strict = Authenticator::new(strict);
    let jwt_typ = idp.token().aud(RESOURCE).typ(Some("JWT")).sign();
    assert_eq!(
        kind(&strict, &jwt_typ).await,
        Some(VerifyErrorKind::UnsupportedAlgorithm)
    );
    let at_jwt = idp
        .token()
        .aud(RESOURCE)
        .typ(Some("application/at+jwt"))
        .sign();
    assert!(strict.authenticate(&at_jwt, &resource()).await.is_ok());
}

#[tokio::test]
async fn concurrent_unknown_kids_make_one_fetch() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let auth = Arc::new(Authenticator::new(remote(&idp, JwksOptions::default())));
    let stranger = TestKey::rs256();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let auth = auth.clone();
            let token = stranger.key().sign_compact(
                json!({"alg": "RS256", "kid": format!("unknown-{i}")})
                    .to_string()
                    .as_bytes(),
                br#"{"sub":"x"}"#,
            );
            tokio::spawn(async move {
                auth.authenticate(&token, &resource())
                    .await
                    .err()
                    .map(|e| e.kind())
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("task"), Some(VerifyErrorKind::UnknownKey));
    }
    assert_eq!(idp.jwks_hits(), 1, "200 unknown kids, one fetch");
    // Within the cooldown, more unknown kids cause no fetch at all.
    let token = stranger
        .key()
        .sign_compact(br#"{"alg":"RS256","kid":"again"}"#, br#"{"sub":"x"}"#);
    assert_eq!(kind(&auth, &token).await, Some(VerifyErrorKind::UnknownKey));
    assert_eq!(idp.jwks_hits(), 1);
}

#[tokio::test]
async fn rotated_key_is_picked_up_after_the_cooldown() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let options = JwksOptions::default().unknown_kid_cooldown(Duration::from_millis(200));
    let auth = Authenticator::new(remote(&idp, options));
    assert!(
        auth.authenticate(&idp.token().aud(RESOURCE).sign(), &resource())
            .await
            .is_ok()
    );
    let next = TestKey::rs256();
    idp.set_keys(&[idp.key(), &next]);
    let rotated = next
        .token()
        .iss(idp.issuer())
        .sub("user-2")
        .aud(RESOURCE)
        .sign();
    eventually("the new key verifies", async || {
        auth.authenticate(&rotated, &resource()).await.is_ok()
    })
    .await;
    assert_eq!(idp.jwks_hits(), 2);
}

#[tokio::test]
async fn stale_keys_keep_working_while_the_idp_is_down_then_recover() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    idp.set_cache_control(Some("max-age=0"));
    let options = JwksOptions::default()
        .ttl(
            Duration::from_millis(100),
            Duration::from_millis(100),
            Duration::from_secs(60),
        )
        .retry_after_error(Duration::ZERO)
        .stale_if_error(Duration::from_secs(3600));
    let auth = OAuth::builder()
        .verifier(remote(&idp, options))
        .token_cache(None)
        .build_authenticator()
        .expect("pipeline");
    let token = idp.token().aud(RESOURCE).sign();
    assert!(auth.authenticate(&token, &resource()).await.is_ok());
    idp.set_jwks_mode(JwksMode::Status(500));
    // Once the TTL passed a refresh is attempted and fails; the stale keys still verify.
    eventually("a failed refresh", async || {
        assert!(
            auth.authenticate(&token, &resource()).await.is_ok(),
            "stale keys verify while the IdP is down"
        );
        idp.jwks_hits() >= 2
    })
    .await;
    idp.set_jwks_mode(JwksMode::Normal);
    let hits = idp.jwks_hits();
    eventually("a successful refresh", async || {
        assert!(auth.authenticate(&token, &resource()).await.is_ok());
        idp.jwks_hits() > hits
    })
    .await;
}

#[tokio::test]
async fn without_cached_keys_an_outage_is_unavailable_not_invalid() {
    for mode in [
        JwksMode::Status(503),
        JwksMode::Garbage,
        JwksMode::Huge(2 * 1024 * 1024),
        JwksMode::Slow(Duration::from_secs(5)),
    ] {
        let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
        idp.set_jwks_mode(mode.clone());
        let client = HttpClient::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .expect("client");
        let verifier = JwtVerifier::builder()
            .issuer(idp.issuer())
            .jwks_url(idp.jwks_url())
            .http_client(client)
            .build()
            .expect("v");
        let auth = Authenticator::new(verifier);
        let token = idp.token().aud(RESOURCE).sign();
        let err = auth
            .authenticate(&token, &resource())
            .await
            .expect_err("unavailable");
        assert_eq!(err.kind(), VerifyErrorKind::Unavailable, "{mode:?}: {err}");
        // During the back-off, no new fetch.
        let hits = idp.jwks_hits();
        let _ = auth.authenticate(&token, &resource()).await;
        assert_eq!(idp.jwks_hits(), hits, "{mode:?}");
    }
}

#[tokio::test]
async fn jwks_discovered_from_metadata_with_an_issuer_path() {
    let idp = MockIdp::start_with_path(TestKey::es256(), "/realms/test")
        .await
        .expect("idp");
    let verifier = JwtVerifier::builder()
        .issuer(idp.issuer())
        .discover_jwks()
        .build()
        .expect("v");
    let auth = Authenticator::new(verifier);
    let token = idp.token().aud(RESOURCE).sign();
    assert!(auth.authenticate(&token, &resource()).await.is_ok());
    assert_eq!(
        idp.metadata_hits(),
        1,
        "the RFC 8414 path-inserted URL answers first"
    );
}

#[tokio::test]
async fn verified_tokens_are_cached_but_never_beyond_exp() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let auth = Authenticator::new(remote(&idp, JwksOptions::default()));
    let token = idp.token().aud(RESOURCE).sign();
    let first = auth.authenticate(&token, &resource()).await.expect("ok");
    let second = auth.authenticate(&token, &resource()).await.expect("ok");
    assert!(
        Arc::ptr_eq(&first.0, &second.0),
        "the second call is served from the cache"
    );
    assert_eq!(auth.cached_tokens(), 1);
    // A cached token is still audience-checked for the resource asked about.
    let other = ResourceUrl::parse("http://127.0.0.1:9999/mcp").expect("r");
    assert_eq!(
        auth.authenticate(&token, &other)
            .await
            .err()
            .map(|e| e.kind()),
        Some(VerifyErrorKind::InvalidAudience)
    );

    // Never past exp. A token whose exp has passed, still accepted within the 60 s leeway,
    // is verified afresh each time: it never enters the cache.
    let cached = auth.cached_tokens();
    let past = idp.token().aud(RESOURCE).exp_in(-5).sign();
    let a = auth.authenticate(&past, &resource()).await.expect("leeway");
    let b = auth.authenticate(&past, &resource()).await.expect("leeway");
    assert!(
        !Arc::ptr_eq(&a.0, &b.0),
        "a token past its exp was served from the cache"
    );
    assert_eq!(auth.cached_tokens(), cached);
    // A token that expires in 2 s may be cached, but only until its exp: once the clock is
    // past it (waited for, then asserted; the cache counts in whole seconds, and the margin
    // covers the time between reading the clock and inserting the entry), it is verified
    // afresh, although the leeway still accepts it.
    let exp = unix_now() + 2;
    let short = idp.token().aud(RESOURCE).claim("exp", exp).sign();
    let a = auth.authenticate(&short, &resource()).await.expect("ok");
    while unix_now() < exp + 3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = auth
        .authenticate(&short, &resource())
        .await
        .expect("leeway");
    assert!(
        !Arc::ptr_eq(&a.0, &b.0),
        "a token was served from the cache past its exp"
    );

    let disabled = OAuth::builder()
        .verifier(remote(&idp, JwksOptions::default()))
        .token_cache(None)
        .build_authenticator()
        .expect("pipeline");
    let a = disabled
        .authenticate(&token, &resource())
        .await
        .expect("ok");
    let b = disabled
        .authenticate(&token, &resource())
        .await
        .expect("ok");
    assert!(!Arc::ptr_eq(&a.0, &b.0), "no cache, no hit");
    assert_eq!(disabled.cached_tokens(), 0);
}

fn unix_now() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(since.as_secs()).expect("fits")
}

#[tokio::test]
async fn a_cache_hit_needs_the_whole_token_to_be_equal() {
    // The cache is keyed by a token's tail and length: tokens sharing both must never be
    // served each other's result. Here only the first characters differ.
    let tail = "x".repeat(40);
    let (good, forged) = (format!("good{tail}"), format!("evil{tail}"));
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let verifier = FnVerifier::new(move |token: mcp_oauth::AccessToken| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            match token.secret().get(..4) {
                Some("good") => Ok(Claims::new(
                    json!({"sub": "alice", "aud": RESOURCE, "exp": 4_102_444_800u64})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                )),
                _ => Err(VerifyError::Refused("unknown".into())),
            }
        }
    })
    .cache_for(Duration::from_secs(60));
    let auth = Authenticator::new(verifier);
    for _ in 0..2 {
        let ok = auth.authenticate(&good, &resource()).await.expect("ok");
        assert_eq!(ok.subject(), "alice");
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "a hit");
    assert_eq!(
        kind(&auth, &forged).await,
        Some(VerifyErrorKind::Inactive),
        "same key, another token: verified, and refused"
    );
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    // The cached entry of the good token is still served.
    auth.authenticate(&good, &resource()).await.expect("ok");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn introspection_checks_active_issuer_and_audience() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let verifier = IntrospectionVerifier::builder(idp.introspection_url())
        .client_credentials("rs", "rs-secret")
        .issuer(idp.issuer())
        .build()
        .expect("v");
    let auth = Authenticator::new(verifier);
    idp.set_introspection("good", json!({"active": true, "sub": "alice", "aud": RESOURCE, "scope": "mcp:read", "iss": idp.issuer()}));
    idp.set_introspection(
        "other-aud",
        json!({"active": true, "sub": "alice", "aud": "https://elsewhere"}),
    );
    idp.set_introspection(
        "other-iss",
        json!({"active": true, "sub": "alice", "aud": RESOURCE, "iss": "https://evil"}),
    );
    let ok = auth
        .authenticate("good", &resource())
        .await
        .expect("active");
    assert_eq!(ok.subject(), "alice");
    assert_eq!(ok.scopes, vec!["mcp:read"]);
    assert!(!ok.claims.contains_key("active"));
    assert_eq!(
        kind(&auth, "unknown").await,
        Some(VerifyErrorKind::Inactive)
    );
    assert_eq!(
        kind(&auth, "other-aud").await,
        Some(VerifyErrorKind::InvalidAudience)
    );
    assert_eq!(
        kind(&auth, "other-iss").await,
        Some(VerifyErrorKind::InvalidIssuer)
    );
    let down = IntrospectionVerifier::builder("http://127.0.0.1:1/introspect")
        .build()
        .expect("v");
    assert_eq!(
        kind(&Authenticator::new(down), "good").await,
        Some(VerifyErrorKind::Unavailable)
    );
}

/// Each way of authenticating to an introspection endpoint puts the credentials where
/// RFC 7662 §2.1 / RFC 6749 §2.3.1 say, and only there: seen from the endpoint.
#[tokio::test]
async fn introspection_client_authentication_as_the_endpoint_sees_it() {
    use axum::extract::State;
    use axum::http::HeaderMap;
    use mcp_oauth::protocol::{ClientAuthMethod, ClientCredentials};
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    type Seen = Arc<Mutex<Vec<(Option<String>, BTreeMap<String, String>)>>>;
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route(
            "/introspect",
            axum::routing::post(
                |State(seen): State<Seen>, headers: HeaderMap, body: String| async move {
                    let authorization = headers
                        .get("authorization")
                        .map(|v| v.to_str().expect("ascii").to_owned());
                    let form = url::form_urlencoded::parse(body.as_bytes())
                        .into_owned()
                        .collect();
                    seen.lock().unwrap().push((authorization, form));
                    axum::Json(json!({"active": true, "sub": "alice", "aud": RESOURCE}))
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/introspect", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let builders = [
        IntrospectionVerifier::builder(&url).client_credentials("rs", "s3cr:t"),
        IntrospectionVerifier::builder(&url).client(
            ClientCredentials::new("rs", "s3cr:t").with_method(ClientAuthMethod::ClientSecretPost),
        ),
        IntrospectionVerifier::builder(&url).client(ClientCredentials::public("rs")),
        IntrospectionVerifier::builder(&url).bearer_token("endpoint-token"),
        IntrospectionVerifier::builder(&url),
    ];
    for builder in builders {
        let auth = Authenticator::new(builder.build().expect("verifier"));
        let ok = auth.authenticate("tok", &resource()).await.expect("active");
        assert_eq!(ok.subject(), "alice");
    }

    let seen = seen.lock().unwrap().clone();
    let form = |extra: &[(&str, &str)]| -> BTreeMap<String, String> {
        [("token", "tok"), ("token_type_hint", "access_token")]
            .iter()
            .chain(extra)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    // Basic: id and secret form-urlencoded, then base64 (RFC 6749 §2.3.1): "rs:s3cr%3At".
    assert_eq!(
        seen[0],
        (Some("Basic cnM6czNjciUzQXQ=".to_owned()), form(&[]))
    );
    assert_eq!(
        seen[1],
        (
            None,
            form(&[("client_id", "rs"), ("client_secret", "s3cr:t")])
        )
    );
    assert_eq!(seen[2], (None, form(&[("client_id", "rs")])));
    assert_eq!(
        seen[3],
        (Some("Bearer endpoint-token".to_owned()), form(&[]))
    );
    assert_eq!(seen[4], (None, form(&[])));
    server.abort();
}

#[tokio::test]
async fn function_verifier_gets_the_shared_rules() {
    let verifier = FnVerifier::new(|token: mcp_oauth::AccessToken| async move {
        match token.secret() {
            "alice" => Ok(Claims::new(
                json!({"sub": "alice", "aud": RESOURCE, "exp": 4_102_444_800u64})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            )),
            "no-aud" => Ok(Claims::new(
                json!({"sub": "bob", "exp": 4_102_444_800u64})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            )),
            _ => Err(VerifyError::Refused("unknown".into())),
        }
    });
    assert_eq!(verifier.max_cache_ttl(), Some(Duration::ZERO));
    let auth = Authenticator::new(verifier);
    assert_eq!(
        auth.authenticate("alice", &resource())
            .await
            .expect("ok")
            .subject(),
        "alice"
    );
    assert_eq!(
        kind(&auth, "no-aud").await,
        Some(VerifyErrorKind::InvalidAudience)
    );
    assert_eq!(
        kind(&auth, "mallory").await,
        Some(VerifyErrorKind::Inactive)
    );
    assert_eq!(
        auth.cached_tokens(),
        0,
        "function results are not cached by default"
    );
}

#[tokio::test]
async fn key_selection_without_kid_needs_a_single_candidate() {
    let a = TestKey::rs256();
    let b = TestKey::rs256();
    let strip = |k: &TestKey| {
        let mut jwk = k.public_jwk().expect("jwk");
        jwk.kid = None;
        jwk
    };
    let one = JwtVerifier::builder()
        .issuer("https://i.example")
        .jwk(&strip(&a))
        .build()
        .expect("v");
    let two = JwtVerifier::builder()
        .issuer("https://i.example")
        .jwk(&strip(&a))
        .jwk(&strip(&b))
        .build()
        .expect("v");
    let token = a.key().sign_compact(
        br#"{"alg":"RS256"}"#,
        a.token()
            .iss("https://i.example")
            .sub("s")
            .aud(RESOURCE)
            .claims()
            .to_string()
            .as_bytes(),
    );
    assert!(
        Authenticator::new(one)
            .authenticate(&token, &resource())
            .await
            .is_ok()
    );
    assert_eq!(
        kind(&Authenticator::new(two), &token).await,
        Some(VerifyErrorKind::UnknownKey),
        "two candidates are ambiguous"
    );
}
