//! DPoP at the resource server (RFC 9449 §7), from the attacker's side, through the bearer
//! layer in front of a plain service: a stolen bound token presented as Bearer, proofs made
//! for another token, URL, method or key, replays (one instance and two sharing a store),
//! stale and future proofs, missing, several and junk `DPoP` headers; and the challenges,
//! asserted to the byte.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use mcp_oauth::auth_server::store::{MemoryStore, Store, StoreReplayCache};
use mcp_oauth::dpop::{self, DpopError, DpopNonces, DpopVerifier};
use mcp_oauth::jose::{Algorithm, Algorithms, Jwk};
use mcp_oauth::testing::TestKey;
use mcp_oauth::verify::JwtVerifier;
use mcp_oauth::{Auth, OAuth, OAuthBuilder};
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt, service_fn};

const RESOURCE: &str = "https://mcp.example.com/mcp";
const ISSUER: &str = "https://as.example.com";
const PRM: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";
const SECRET: [u8; 32] = [7u8; 32];

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn next_jti() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("rs-jti-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn thumbprint(key: &TestKey) -> String {
    key.public_jwk().unwrap().thumbprint().unwrap()
}

fn bare_jwk(key: &TestKey) -> Value {
    let jwk = key.public_jwk().unwrap();
    let mut value = serde_json::to_value(Jwk {
        kid: None,
        alg: None,
        use_: None,
        ..jwk
    })
    .unwrap();
    value.as_object_mut().unwrap().retain(|_, v| !v.is_null());
    value
}

/// A client's proof: `key` signs `method url` for `token` at `iat`.
struct Proof<'a> {
    key: &'a TestKey,
    method: &'a str,
    url: &'a str,
    token: Option<&'a str>,
    iat: i64,
    jti: String,
    nonce: Option<String>,
}

impl<'a> Proof<'a> {
    fn new(key: &'a TestKey, token: &'a str) -> Self {
        Self {
            key,
            method: "POST",
            url: RESOURCE,
            token: Some(token),
            iat: now(),
            jti: next_jti(),
            nonce: None,
        }
    }

    fn sign(&self) -> String {
        let header = json!({"typ": "dpop+jwt", "alg": self.key.key().alg().as_str(), "jwk": bare_jwk(self.key)});
        let mut claims =
            json!({"jti": self.jti, "htm": self.method, "htu": self.url, "iat": self.iat});
        if let Some(token) = self.token {
            claims["ath"] = dpop::access_token_hash(token).into();
        }
        if let Some(nonce) = &self.nonce {
            claims["nonce"] = nonce.clone().into();
        }
        self.key
            .key()
            .sign_compact(header.to_string().as_bytes(), claims.to_string().as_bytes())
    }
}

fn signer() -> TestKey {
    TestKey::hs256(&SECRET)
}

/// An access token of the authorization server, bound to `client` when given.
fn token(client: Option<&TestKey>) -> String {
    let mut builder = signer()
        .token()
        .iss(ISSUER)
        .aud(RESOURCE)
        .scope("mcp:read")
        .exp_in(300);
    if let Some(client) = client {
        builder = builder.claim("cnf", json!({"jkt": thumbprint(client)}));
    }
    builder.sign()
}

fn builder() -> OAuthBuilder {
    OAuth::builder()
        .resource(RESOURCE)
        .authorization_server(ISSUER)
        .scopes_supported(["mcp:read"])
        .verifier(
            JwtVerifier::builder()
                .issuer(ISSUER)
                .hmac_secret(SECRET.as_slice())
                .build()
                .unwrap(),
        )
        .mirror_authorization_server(false)
}

fn es256_only() -> DpopVerifier {
    DpopVerifier::builder()
        .algorithms(
            [Algorithm::ES256, Algorithm::EdDSA]
                .into_iter()
                .collect::<Algorithms>(),
        )
        .build()
        .unwrap()
}

/// DPoP accepted beside Bearer, proofs ES256 or EdDSA.
fn allowed() -> OAuth {
    builder().dpop(es256_only()).build().unwrap()
}

type Svc = tower::util::BoxCloneService<Request<Full<Bytes>>, Response<BodyOf>, Infallible>;
type BodyOf = mcp_oauth::layer::ResponseBody<Full<Bytes>>;

fn service(oauth: &OAuth) -> Svc {
    let svc = ServiceBuilder::new()
        .layer(oauth.layer())
        .service(service_fn(|req: Request<Full<Bytes>>| async move {
            let auth = req
                .extensions()
                .get::<Auth>()
                .expect("Auth in the extensions");
            let body = format!("hello {}", auth.user.id);
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
        }));
    tower::util::BoxCloneService::new(svc)
}

/// `POST /mcp` with `Authorization: <scheme> <token>` and these `DPoP` values.
fn request(scheme: &str, token: &str, proofs: &[&str]) -> Request<Full<Bytes>> {
    let mut req = Request::post("/mcp")
        .header(header::AUTHORIZATION, format!("{scheme} {token}"))
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    for proof in proofs {
        req.headers_mut().append(
            "dpop",
            http::HeaderValue::from_bytes(proof.as_bytes()).unwrap(),
        );
    }
    req
}

async fn send(oauth: &OAuth, req: Request<Full<Bytes>>) -> Response<BodyOf> {
    service(oauth).oneshot(req).await.unwrap()
}

fn www(res: &Response<BodyOf>) -> &str {
    res.headers()[header::WWW_AUTHENTICATE].to_str().unwrap()
}

async fn json_body(res: Response<BodyOf>) -> Value {
    serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

const ALGS: &str = r#"DPoP algs="ES256 EdDSA""#;

fn bearer_only() -> String {
    format!(r#"Bearer resource_metadata="{PRM}", scope="mcp:read""#)
}

fn proof_refused(description: &str) -> String {
    format!(
        r#"{}, DPoP error="invalid_dpop_proof", error_description="{description}", algs="ES256 EdDSA""#,
        bearer_only()
    )
}

/// Asserts a 401 `invalid_dpop_proof` with the DPoP error `kind` in the extensions.
async fn assert_proof_refused(res: Response<BodyOf>, expected: DpopError) {
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        www(&res),
        proof_refused(expected.public_description()),
        "{expected}"
    );
    assert_eq!(res.extensions().get::<DpopError>(), Some(&expected));
    let body = json_body(res).await;
    assert_eq!(body["error"], "invalid_dpop_proof");
}

#[tokio::test]
async fn a_bound_token_with_its_proof_is_accepted_every_time_with_a_fresh_proof() {
    let oauth = allowed();
    let client = TestKey::es256();
    let token = token(Some(&client));
    // Twice: the first time the token is verified, the second it comes from the cache.
    for _ in 0..2 {
        let proof = Proof::new(&client, &token).sign();
        let res = send(&oauth, request("DPoP", &token, &[&proof])).await;
        assert_eq!(res.status(), StatusCode::OK, "{:?}", res.headers());
    }
    // The scheme in any case; EdDSA keys too.
    let ed = TestKey::ed25519();
    let ed_token = self::token(Some(&ed));
    let proof = Proof::new(&ed, &ed_token).sign();
    let res = send(&oauth, request("dpop", &ed_token, &[&proof])).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_stolen_bound_token_presented_as_bearer_is_refused_with_dpop_on_or_off() {
    let client = TestKey::es256();
    let token = token(Some(&client));
    let on = allowed();
    let off = builder().build().unwrap();
    for oauth in [&on, &off] {
        // Twice: fresh, then after the token was verified and cached by a DPoP request.
        for _ in 0..2 {
            let res = send(oauth, request("Bearer", &token, &[])).await;
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
            let description = "the access token is bound to a key (cnf.jkt): present it with the DPoP scheme and a DPoP proof";
            let mut expected = format!(
                r#"Bearer error="invalid_token", error_description="{description}", resource_metadata="{PRM}", scope="mcp:read""#
            );
            if oauth.dpop_verifier().is_some() {
                expected.push_str(", ");
                expected.push_str(ALGS);
            }
            assert_eq!(www(&res), expected);
            assert_eq!(json_body(res).await["error"], "invalid_token");
            if oauth.dpop_verifier().is_some() {
                let proof = Proof::new(&client, &token).sign();
                let res = send(oauth, request("DPoP", &token, &[&proof])).await;
                assert_eq!(res.status(), StatusCode::OK);
            }
        }
        // Even with a valid proof beside it, the Bearer scheme does not count.
        let proof = Proof::new(&client, &token).sign();
        let res = send(oauth, request("Bearer", &token, &[&proof])).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn a_cnf_of_the_wrong_shape_is_refused_never_treated_as_unbound() {
    let oauth = allowed();
    for cnf in [json!("jkt"), json!({"jkt": 5}), json!([])] {
        let token = signer()
            .token()
            .iss(ISSUER)
            .aud(RESOURCE)
            .exp_in(300)
            .claim("cnf", cnf.clone())
            .sign();
        let res = send(&oauth, request("Bearer", &token, &[])).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{cnf}");
        assert_eq!(json_body(res).await["error"], "invalid_token");
    }
}

#[tokio::test]
async fn a_dpop_scheme_token_without_cnf_is_refused() {
    let oauth = allowed();
    let client = TestKey::es256();
    let token = token(None);
    let proof = Proof::new(&client, &token).sign();
    let res = send(&oauth, request("DPoP", &token, &[&proof])).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        www(&res),
        format!(
            r#"{}, DPoP error="invalid_token", error_description="the access token is not bound to a key (no cnf.jkt): present it with the Bearer scheme", algs="ES256 EdDSA""#,
            bearer_only()
        )
    );
    // The same unbound token as Bearer is fine: DPoP is allowed, not required.
    let res = send(&oauth, request("Bearer", &token, &[])).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_proof_made_for_another_token_is_refused() {
    let oauth = allowed();
    let client = TestKey::es256();
    let token = token(Some(&client));
    let other = self::token(Some(&client));
    assert_ne!(token, other);
    // Signed by the right key, but its ath names the other token.
    let proof = Proof::new(&client, &other).sign();
    let res = send(&oauth, request("DPoP", &token, &[&proof])).await;
    assert_proof_refused(res, DpopError::AccessTokenHashMismatch).await;
    // No ath at all.
    let proof = Proof {
        token: None,
        ..Proof::new(&client, &token)
    }
    .sign();
    let res = send(&oauth, request("DPoP", &token, &[&proof])).await;
    assert_proof_refused(res, DpopError::MissingClaim("ath")).await;
}

#[tokio::test]
async fn a_proof_for_another_url_or_method_is_refused() {
    let oauth = allowed();
    let client = TestKey::es256();
    let token = token(Some(&client));
    for url in [
        "https://mcp.example.com/other",
        "https://evil.example/mcp",
        "http://mcp.example.com/mcp",
        "https://mcp.example.com:8443/mcp",
    ] {
        let proof = Proof {
            url,
            ..Proof::new(&client, &token)
        }
        .sign();
        let res = send(&oauth, request("DPoP", &token, &[&proof])).await;
        assert_proof_refused(res, DpopError::UrlMismatch).await;
    }
    let proof = Proof {
        method: "GET",
        ..Proof::new(&client, &token)
    }
    .sign();
    let res = send(&oauth, request("DPoP", &token, &[&proof])).await;
    assert_proof_refused(res, DpopError::MethodMismatch).await;
    // The query string plays no part (RFC 9449 §4.3).
    let proof = Proof::new(&client, &token).sign();
    let mut req = request("DPoP", &token, &[&proof]);
    *req.uri_mut() = "/mcp?x=1".parse().unwrap();
    assert_eq!(send(&oauth, req).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_url_is_the_configured_public_one_never_the_host_header() {
    let oauth = allowed();
    let client = TestKey::es256();
    let token = token(Some(&client));
    // A proof for the attacker's host, sent with a matching Host header: refused.
    let proof = Proof {
        url: "https://evil.example/mcp",
        ..Proof::new(&client, &token)
    }
    .sign();
    let mut req = request("DPoP", &token, &[&proof]);
    req.headers_mut()
        .insert(header::HOST, "evil.example".parse().unwrap());
    req.headers_mut()
        .insert("x-forwarded-host", "evil.example".parse().unwrap());
    assert_proof_refused(send(&oauth, req).await, DpopError::UrlMismatch).await;
    // A proof for the public URL, whatever Host the proxy wrote: accepted.
    let proof = Proof::new(&client, &token).sign();
    let mut req = request("DPoP", &token, &[&proof]);
    req.headers_mut()
        .insert(header::HOST, "10.0.0.7:8080".parse().unwrap());
    *req.uri_mut() = "http://10.0.0.7:8080/mcp".parse().unwrap();
    assert_eq!(send(&oauth, req).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_proof_by_another_key_is_refused() {
    let oauth = allowed();
    let client = TestKey::es256();
    let thief = TestKey::es256();
    let token = token(Some(&client));
    let proof = Proof::new(&thief, &token).sign();
    let res = send(&oauth, request("DPoP", &token, &[&proof])).await;
    assert_proof_refused(res, DpopError::KeyMismatch).await;
    // An algorithm the resource does not list.
    let rsa = TestKey::rs256();
    let token = self::token(Some(&rsa));
    let proof = Proof::new(&rsa, &token).sign();
    let res = send(&oauth, request("DPoP", &token, &[&proof])).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_body(res).await["error"], "invalid_dpop_proof");
}

#[tokio::test]
async fn a_replayed_proof_is_refused() {
    let oauth = allowed();
    let client = TestKey::es256();
    let token = token(Some(&client));
    let proof = Proof::new(&client, &token).sign();
    assert_eq!(
        send(&oauth, request("DPoP", &token, &[&proof]))
            .await
            .status(),
        StatusCode::OK
    );
    let res = send(&oauth, request("DPoP", &token, &[&proof])).await;
    assert_proof_refused(res, DpopError::Replayed).await;
    // A clone of the configuration (another layer) shares the cache.
    let res = send(&oauth.clone(), request("DPoP", &token, &[&proof])).await;
    assert_proof_refused(res, DpopError::Replayed).await;
}

#[tokio::test]
async fn two_instances_sharing_a_store_refuse_each_others_replays() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let instance = || {
        builder()
            .dpop(
                DpopVerifier::builder()
                    .replay_cache(Arc::new(StoreReplayCache::new(store.clone())))
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    let (one, two) = (instance(), instance());
    let client = TestKey::es256();
    let token = token(Some(&client));
    let proof = Proof::new(&client, &token).sign();
    assert_eq!(
        send(&one, request("DPoP", &token, &[&proof]))
            .await
            .status(),
        StatusCode::OK
    );
    let res = send(&two, request("DPoP", &token, &[&proof])).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.extensions().get::<DpopError>(),
        Some(&DpopError::Replayed)
    );
    let fresh = Proof::new(&client, &token).sign();
    assert_eq!(
        send(&two, request("DPoP", &token, &[&fresh]))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn proofs_from_the_past_or_the_future_are_refused() {
    let oauth = allowed();
    let client = TestKey::es256();
    let token = token(Some(&client));
    let stale = Proof {
        iat: now() - 600,
        ..Proof::new(&client, &token)
    }
    .sign();
    let res = send(&oauth, request("DPoP", &token, &[&stale])).await;
    assert_proof_refused(res, DpopError::Stale).await;
    let future = Proof {
        iat: now() + 600,
        ..Proof::new(&client, &token)
    }
    .sign();
    let res = send(&oauth, request("DPoP", &token, &[&future])).await;
    assert_proof_refused(res, DpopError::IssuedInFuture).await;
}

#[tokio::test]
async fn missing_and_several_dpop_headers_are_refused() {
    let oauth = allowed();
    let client = TestKey::es256();
    let token = token(Some(&client));
    let res = send(&oauth, request("DPoP", &token, &[])).await;
    assert_proof_refused(res, DpopError::Missing).await;
    let one = Proof::new(&client, &token).sign();
    let two = Proof::new(&client, &token).sign();
    let res = send(&oauth, request("DPoP", &token, &[&one, &two])).await;
    assert_proof_refused(res, DpopError::MultipleHeaders { count: 2 }).await;
    // Neither was spent: each alone is still good.
    let res = send(&oauth, request("DPoP", &token, &[&one])).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn junk_headers_are_refused_without_panicking() {
    let oauth = allowed();
    let client = TestKey::es256();
    let token = token(Some(&client));
    let long = "a".repeat(20_000);
    let junk: Vec<&[u8]> = vec![
        b"",
        b"x",
        b"...",
        b"a.b.c",
        b"\xff\xfe.\x80.\x00",
        b"eyJ0eXAiOiJkcG9wK2p3dCJ9.eyJ9.",
        long.as_bytes(),
        b"e30.e30.e30",
    ];
    for value in junk {
        let mut req = request("DPoP", &token, &[]);
        if let Ok(value) = http::HeaderValue::from_bytes(value) {
            req.headers_mut().append("dpop", value);
        }
        let res = send(&oauth, req).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(json_body(res).await["error"], "invalid_dpop_proof");
    }
    // Junk after the DPoP scheme itself.
    for value in [
        "DPoP",
        "DPoP ",
        "DPoP a b",
        "DPoP \"x\"",
        "dpop ===",
        "DPoP\ta",
    ] {
        let req = Request::post("/mcp")
            .header(
                header::AUTHORIZATION,
                http::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            )
            .body(Full::new(Bytes::new()))
            .unwrap();
        let res = send(&oauth, req).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{value:?}");
    }
    let req = Request::post("/mcp")
        .header(
            header::AUTHORIZATION,
            http::HeaderValue::from_bytes(b"DPoP \xff\xfe").unwrap(),
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(&oauth, req).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn with_nonces_a_proof_without_one_gets_use_dpop_nonce_and_the_retry_passes() {
    let oauth = builder()
        .dpop(
            DpopVerifier::builder()
                .algorithms(
                    [Algorithm::ES256, Algorithm::EdDSA]
                        .into_iter()
                        .collect::<Algorithms>(),
                )
                .nonces(DpopNonces::generate(Duration::from_secs(300)).unwrap())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let client = TestKey::es256();
    let token = token(Some(&client));
    let proof = Proof::new(&client, &token).sign();
    let res = send(&oauth, request("DPoP", &token, &[&proof])).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let nonce = res.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    assert!(!nonce.is_empty());
    assert_eq!(
        www(&res),
        format!(
            r#"{}, DPoP error="use_dpop_nonce", error_description="{}", algs="ES256 EdDSA""#,
            bearer_only(),
            res.extensions()
                .get::<DpopError>()
                .unwrap()
                .public_description()
        )
    );
    assert_eq!(json_body(res).await["error"], "use_dpop_nonce");
    // A nonce this server did not issue is answered the same way.
    let forged = Proof {
        nonce: Some("forged-nonce".into()),
        ..Proof::new(&client, &token)
    }
    .sign();
    let res = send(&oauth, request("DPoP", &token, &[&forged])).await;
    assert!(res.headers().contains_key("dpop-nonce"));
    assert_eq!(json_body(res).await["error"], "use_dpop_nonce");
    let retry = Proof {
        nonce: Some(nonce),
        ..Proof::new(&client, &token)
    }
    .sign();
    let res = send(&oauth, request("DPoP", &token, &[&retry])).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn challenges_name_bearer_first_then_dpop() {
    let oauth = allowed();
    let res = send(
        &oauth,
        Request::post("/mcp").body(Full::new(Bytes::new())).unwrap(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(www(&res), format!("{}, {ALGS}", bearer_only()));
    // A Bearer request's error stays on Bearer.
    let res = send(&oauth, request("Bearer", "not-a-jwt", &[])).await;
    assert_eq!(
        www(&res),
        format!(
            r#"Bearer error="invalid_token", error_description="the access token is invalid", resource_metadata="{PRM}", scope="mcp:read", {ALGS}"#
        )
    );
    // A DPoP request's error goes on DPoP.
    let res = send(&oauth, request("DPoP", "not-a-jwt", &[])).await;
    assert_eq!(
        www(&res),
        format!(
            r#"{}, DPoP error="invalid_token", error_description="the access token is invalid", algs="ES256 EdDSA""#,
            bearer_only()
        )
    );
    // Too few scopes on a DPoP request: the scope is named on both.
    let oauth = builder()
        .dpop(es256_only())
        .require_scopes(["mcp:admin"])
        .build()
        .unwrap();
    let client = TestKey::es256();
    let token = token(Some(&client));
    let proof = Proof::new(&client, &token).sign();
    let res = send(&oauth, request("DPoP", &token, &[&proof])).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        www(&res),
        format!(
            r#"Bearer resource_metadata="{PRM}", scope="mcp:admin", DPoP error="insufficient_scope", error_description="the access token lacks a scope this request needs", scope="mcp:admin", algs="ES256 EdDSA""#
        )
    );
}

#[tokio::test]
async fn dpop_off_keeps_bearer_challenges_and_refuses_the_dpop_scheme() {
    let oauth = builder().build().unwrap();
    let res = send(
        &oauth,
        Request::post("/mcp").body(Full::new(Bytes::new())).unwrap(),
    )
    .await;
    assert_eq!(www(&res), bearer_only());
    let client = TestKey::es256();
    let token = token(Some(&client));
    let proof = Proof::new(&client, &token).sign();
    let res = send(&oauth, request("DPoP", &token, &[&proof])).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        www(&res),
        format!(
            r#"Bearer error="invalid_token", error_description="this resource does not accept the DPoP scheme: present a bearer token", resource_metadata="{PRM}", scope="mcp:read""#
        )
    );
    let doc = serde_json::to_value(oauth.metadata_for(oauth.resource())).unwrap();
    assert!(doc.get("dpop_signing_alg_values_supported").is_none());
    assert!(doc.get("dpop_bound_access_tokens_required").is_none());
    // An unbound bearer token works as before.
    let res = send(&oauth, request("Bearer", &self::token(None), &[])).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn required_refuses_bearer_tokens_and_says_so_in_the_metadata() {
    let oauth = builder().require_dpop().build().unwrap();
    assert!(oauth.requires_dpop());
    let res = send(&oauth, request("Bearer", &token(None), &[])).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let algs = "RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA";
    let doc = serde_json::to_value(oauth.metadata_for(oauth.resource())).unwrap();
    assert_eq!(doc["dpop_bound_access_tokens_required"], true);
    let listed: Vec<&str> = doc["dpop_signing_alg_values_supported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(listed.join(" "), algs);
    assert_eq!(
        www(&res),
        format!(
            r#"Bearer error="invalid_token", error_description="this resource accepts DPoP-bound tokens only: present the token with the DPoP scheme and a DPoP proof", resource_metadata="{PRM}", scope="mcp:read", DPoP algs="{algs}""#
        )
    );
    let client = TestKey::es256();
    let token = token(Some(&client));
    let proof = Proof::new(&client, &token).sign();
    assert_eq!(
        send(&oauth, request("DPoP", &token, &[&proof]))
            .await
            .status(),
        StatusCode::OK
    );
    // Allowed mode advertises false.
    let allowed = allowed();
    let doc = serde_json::to_value(allowed.metadata_for(allowed.resource())).unwrap();
    assert_eq!(doc["dpop_bound_access_tokens_required"], false);
    assert_eq!(
        doc["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA"])
    );
}

#[tokio::test]
async fn a_replay_cache_that_cannot_answer_is_503_not_acceptance() {
    struct Broken;
    impl dpop::ReplayCache for Broken {
        fn insert_if_absent<'a>(
            &'a self,
            _key: &'a dpop::ReplayKey,
            _expires_at: i64,
            _now: i64,
        ) -> mcp_oauth::verify::BoxFuture<'a, Result<bool, dpop::ReplayCacheError>> {
            Box::pin(async { Err(dpop::ReplayCacheError::new("the store is down")) })
        }
    }
    let oauth = builder()
        .dpop(
            DpopVerifier::builder()
                .replay_cache(Arc::new(Broken))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let client = TestKey::es256();
    let token = token(Some(&client));
    let proof = Proof::new(&client, &token).sign();
    let res = send(&oauth, request("DPoP", &token, &[&proof])).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().get(header::WWW_AUTHENTICATE).is_none());
    assert_eq!(res.headers()[header::RETRY_AFTER], "5");
}

#[tokio::test]
async fn the_original_path_of_a_nested_service_is_the_one_checked() {
    // axum's nest strips the prefix from the URI and keeps the original in OriginalUri.
    let oauth = allowed();
    let client = TestKey::es256();
    let token = token(Some(&client));
    let app = axum::Router::new().nest_service(
        "/mcp",
        ServiceBuilder::new()
            .layer(oauth.layer())
            .service(service_fn(|_req: Request<axum::body::Body>| async move {
                Ok::<_, Infallible>(Response::new(axum::body::Body::from("ok")))
            })),
    );
    let proof = Proof {
        url: "https://mcp.example.com/mcp/sub",
        ..Proof::new(&client, &token)
    }
    .sign();
    let req = Request::post("/mcp/sub")
        .header(header::AUTHORIZATION, format!("DPoP {token}"))
        .header("dpop", proof)
        .body(axum::body::Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}
