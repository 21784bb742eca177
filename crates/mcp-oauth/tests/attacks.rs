//! The attack-token corpus: forged, misdirected, expired and malformed tokens, each answered
//! 401 `invalid_token` through the bearer layer, none with a panic, and no key URL named in a
//! token ever fetched.
//!
//! Two request shapes are answered 400 `invalid_request` instead, as RFC 6750 §3.1 assigns:
//! two `Authorization` headers ("repeats the same parameter") and a token in the query
//! string ("uses more than one method" / a method this server refuses).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use common::Served;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use mcp_oauth::jose::{Algorithm, SigningKey};
use mcp_oauth::testing::{MockIdp, TestKey};
use mcp_oauth::verify::{JwksOptions, JwtVerifier};
use mcp_oauth::{OAuth, VerifyError};
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt, service_fn};

const RESOURCE: &str = "https://mcp.example.com/mcp";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64j(value: &Value) -> String {
    b64(value.to_string().as_bytes())
}

/// A server on 127.0.0.1 that counts every request: stands in for an attacker's key URL.
async fn attacker_server(hits: Arc<AtomicU64>) -> (String, Served) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let app = axum::Router::new().fallback(move || {
        let hits = hits.clone();
        async move {
            hits.fetch_add(1, Ordering::SeqCst);
            "{\"keys\":[]}"
        }
    });
    (url, Served::app(listener, app))
}

struct Corpus {
    cases: Vec<(&'static str, Request<Full<Bytes>>)>,
}

impl Corpus {
    fn token(&mut self, name: &'static str, token: impl Into<String>) {
        let req = Request::post("/mcp")
            .header(header::AUTHORIZATION, format!("Bearer {}", token.into()))
            .body(Full::new(Bytes::from_static(b"{}")))
            .expect("request");
        self.cases.push((name, req));
    }

    fn raw(&mut self, name: &'static str, req: Request<Full<Bytes>>) {
        self.cases.push((name, req));
    }
}

#[tokio::test]
async fn every_attack_token_is_refused_with_invalid_token() {
    let key = TestKey::rs256();
    let idp = MockIdp::start(key.clone()).await.expect("idp");
    let verifier = JwtVerifier::builder()
        .issuer(idp.issuer())
        .jwks_url(idp.jwks_url())
        .jwks_options(JwksOptions::default())
        .build()
        .expect("v");
    let oauth = OAuth::builder()
        .resource(RESOURCE)
        .authorization_server(idp.issuer())
        .verifier(verifier)
        .mirror_authorization_server(false)
        .build()
        .expect("oauth");
    let hits = Arc::new(AtomicU64::new(0));
    let (attacker, _stop) = attacker_server(hits.clone()).await;

    let kid = key.kid().to_owned();
    let iss = idp.issuer().to_owned();
    let good_claims = idp.token().aud(RESOURCE).scope("mcp:read").claims();
    let good = idp.token().aud(RESOURCE).scope("mcp:read").sign();
    let jwk = key.public_jwk().expect("jwk");
    let jwk_bytes = serde_json::to_vec(&jwk).expect("json");
    let attacker_key = TestKey::rs256();
    let attacker_jwk = attacker_key.public_jwk().expect("jwk");
    let es = TestKey::es256();
    let ed = TestKey::ed25519();
    let sign = |k: &TestKey, header: Value, claims: &Value| {
        k.key()
            .sign_compact(header.to_string().as_bytes(), claims.to_string().as_bytes())
    };
    let with = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut claims = good_claims.as_object().cloned().unwrap_or_default();
        f(&mut claims);
        Value::Object(claims)
    };
    let rs = json!({"alg": "RS256", "kid": kid});

    let mut c = Corpus { cases: Vec::new() };
    // Algorithm attacks.
    c.token(
        "alg none, empty signature",
        format!("{}.{}.", b64j(&json!({"alg": "none"})), b64j(&good_claims)),
    );
    c.token(
        "alg none with a signature",
        format!(
            "{}.{}.c2ln",
            b64j(&json!({"alg": "none", "kid": kid})),
            b64j(&good_claims)
        ),
    );
    c.token(
        "alg None",
        format!(
            "{}.{}.c2ln",
            b64j(&json!({"alg": "None"})),
            b64j(&good_claims)
        ),
    );
    c.token(
        "unknown alg HS1024",
        format!(
            "{}.{}.c2ln",
            b64j(&json!({"alg": "HS1024"})),
            b64j(&good_claims)
        ),
    );
    let hs_jwk = SigningKey::hmac(&jwk_bytes, Algorithm::HS256)
        .expect("hmac")
        .with_kid(kid.clone());
    c.token(
        "HS256 keyed with the public JWK",
        hs_jwk.sign_jwt(None, &good_claims),
    );
    let n = URL_SAFE_NO_PAD
        .decode(jwk.n.as_deref().unwrap_or_default())
        .expect("n");
    let hs_n = SigningKey::hmac(&n, Algorithm::HS256)
        .expect("hmac")
        .with_kid(kid.clone());
    c.token(
        "HS256 keyed with the RSA modulus",
        hs_n.sign_jwt(None, &good_claims),
    );
    let pem_like = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        STANDARD.encode(&jwk_bytes)
    );
    let hs_pem = SigningKey::hmac(pem_like.as_bytes(), Algorithm::HS256).expect("hmac");
    c.token(
        "HS256 keyed with a PEM of the public key, no kid",
        hs_pem.key_token(&good_claims),
    );
    c.token(
        "RS256 header, ES256 signature",
        sign(&es, rs.clone(), &good_claims),
    );
    c.token(
        "ES256 header with the RSA kid",
        sign(&es, json!({"alg": "ES256", "kid": kid}), &good_claims),
    );
    c.token(
        "PS256 header with the RS256 key's kid",
        sign(&key, json!({"alg": "PS256", "kid": kid}), &good_claims),
    );
    c.token(
        "EdDSA header with the RSA kid",
        sign(&ed, json!({"alg": "EdDSA", "kid": kid}), &good_claims),
    );
    c.token("RS384 signature under an RS256 header", {
        let rs384 = SigningKey::generate(Algorithm::RS384).expect("key");
        rs384.sign_compact(
            rs.to_string().as_bytes(),
            good_claims.to_string().as_bytes(),
        )
    });
    // Key selection attacks.
    c.token(
        "unknown kid",
        sign(
            &attacker_key,
            json!({"alg": "RS256", "kid": "unknown"}),
            &good_claims,
        ),
    );
    c.token(
        "empty kid",
        sign(
            &attacker_key,
            json!({"alg": "RS256", "kid": ""}),
            &good_claims,
        ),
    );
    c.token(
        "path-like kid",
        sign(
            &attacker_key,
            json!({"alg": "RS256", "kid": "../../../../etc/passwd"}),
            &good_claims,
        ),
    );
    c.token(
        "oversized kid",
        sign(
            &attacker_key,
            json!({"alg": "RS256", "kid": "k".repeat(4000)}),
            &good_claims,
        ),
    );
    c.token(
        "kid of the wrong type",
        sign(&key, json!({"alg": "RS256", "kid": 42}), &good_claims),
    );
    c.token(
        "jku to the attacker",
        sign(
            &attacker_key,
            json!({"alg": "RS256", "kid": "a", "jku": format!("{attacker}/jwks")}),
            &good_claims,
        ),
    );
    c.token(
        "x5u to the attacker",
        sign(
            &attacker_key,
            json!({"alg": "RS256", "kid": "a", "x5u": format!("{attacker}/cert.pem")}),
            &good_claims,
        ),
    );
    c.token(
        "embedded jwk of the attacker",
        sign(
            &attacker_key,
            json!({"alg": "RS256", "jwk": attacker_jwk}),
            &good_claims,
        ),
    );
    c.token(
        "embedded jwk with our kid",
        sign(
            &attacker_key,
            json!({"alg": "RS256", "kid": kid, "jwk": attacker_jwk}),
            &good_claims,
        ),
    );
    c.token(
        "x5c of the attacker",
        sign(
            &attacker_key,
            json!({"alg": "RS256", "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]}),
            &good_claims,
        ),
    );
    c.token(
        "crit naming exp",
        sign(
            &key,
            json!({"alg": "RS256", "kid": kid, "crit": ["exp"]}),
            &good_claims,
        ),
    );
    c.token(
        "crit unknown extension",
        sign(
            &key,
            json!({"alg": "RS256", "kid": kid, "crit": ["urn:x"], "urn:x": 1}),
            &good_claims,
        ),
    );
    // Claim attacks, all properly signed by the real key.
    c.token(
        "expired",
        sign(
            &key,
            rs.clone(),
            &with(&|m| {
                m.insert("exp".into(), json!(1_000_000));
            }),
        ),
    );
    c.token(
        "nbf in the future",
        sign(
            &key,
            rs.clone(),
            &with(&|m| {
                m.insert("nbf".into(), json!(4_102_444_800u64));
            }),
        ),
    );
    c.token(
        "iat in the future",
        sign(
            &key,
            rs.clone(),
            &with(&|m| {
                m.insert("iat".into(), json!(4_102_444_800u64));
            }),
        ),
    );
    c.token(
        "wrong iss",
        sign(
            &key,
            rs.clone(),
            &with(&|m| {
                m.insert("iss".into(), json!("https://evil.example"));
            }),
        ),
    );
    c.token(
        "missing iss",
        sign(
            &key,
            rs.clone(),
            &with(&|m| {
                m.remove("iss");
            }),
        ),
    );
    c.token(
        "iss with a trailing slash",
        sign(
            &key,
            rs.clone(),
            &with(&|m| {
                m.insert("iss".into(), json!(format!("{iss}/")));
            }),
        ),
    );
    c.token(
        "iss of the wrong type",
        sign(
            &key,
            rs.clone(),
            &with(&|m| {
                m.insert("iss".into(), json!([iss]));
            }),
        ),
    );
    c.token(
        "wrong aud",
        sign(
            &key,
            rs.clone(),
            &with(&|m| {
                m.insert("aud".into(), json!("https://other.example/mcp"));
            }),
        ),
    );
    c.token(
        "aud list without ours",
        sign(
            &key,
            rs.clone(),
            &with(&|m| {
                m.insert(
                    "aud".into(),
                    json!(["https://a.example", "https://b.example"]),
                );
            }),
        ),
    );
    c.token(
        "aud empty list",
        sign(
            &key,
            rs.clone(),
            &with(&|m| {
                m.insert("aud".into(), json!([]));
            }),
        ),
    );
    c.token(
        "aud prefix of ours",
        sign(
            &key,
            rs.clone(),
            &with(&|m| {
                m.insert("aud".into(), json!("https://mcp.example.com"));
            }),
        ),
    );
    c.token(
        "aud that extends ours",
        sign(
            &key,
            rs.clone(),
            &with(&|m| {
                m.insert("aud".into(), json!("https://mcp.example.com/mcp-other"));
            }),
        ),
    );
    c.token(
        "missing aud",
        sign(
            &key,
            rs.clone(),
            &with(&|m| {
                m.remove("aud");
            }),
        ),
    );
    c.token(
        "missing exp",
        sign(
            &key,
            rs.clone(),
            &with(&|m| {
                m.remove("exp");
            }),
        ),
    );
    c.token(
        "exp as a string",
        sign(
            &key,
            rs.clone(),
            &with(&|m| {
                m.insert("exp".into(), json!("4102444800"));
            }),
        ),
    );
    c.token(
        "non-object payload (array)",
        key.key()
            .sign_compact(rs.to_string().as_bytes(), b"[1,2,3]"),
    );
    c.token(
        "non-JSON payload",
        key.key()
            .sign_compact(rs.to_string().as_bytes(), b"not json"),
    );
    c.token("duplicate-key payload", key.key().sign_compact(rs.to_string().as_bytes(), format!(r#"{{"iss":"{iss}","aud":"{RESOURCE}","exp":4102444800,"sub":"user","sub":"admin"}}"#).as_bytes()));
    c.token(
        "duplicate alg in the header",
        key.key().sign_compact(
            format!(r#"{{"alg":"RS256","alg":"none","kid":"{kid}"}}"#).as_bytes(),
            good_claims.to_string().as_bytes(),
        ),
    );
    c.token(
        "nested JWT (cty JWT)",
        sign(
            &key,
            json!({"alg": "RS256", "kid": kid, "cty": "JWT"}),
            &good_claims,
        ),
    );
    // Structure attacks.
    let parts: Vec<&str> = good.split('.').collect();
    c.token(
        "tampered payload",
        format!(
            "{}.{}.{}",
            parts[0],
            b64j(&with(&|m| {
                m.insert("scope".into(), json!("admin"));
            })),
            parts[2]
        ),
    );
    c.token(
        "signature of another key",
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            sign(&attacker_key, rs.clone(), &good_claims)
                .split('.')
                .nth(2)
                .expect("sig")
        ),
    );
    c.token("truncated signature", &good[..good.len() - 3]);
    c.token("empty signature", format!("{}.{}.", parts[0], parts[1]));
    c.token("two segments", format!("{}.{}", parts[0], parts[1]));
    c.token("four segments", format!("{good}.{}", parts[2]));
    c.token(
        "JWE-shaped five segments",
        format!(
            "{}.a.b.c.d",
            b64j(&json!({"alg": "RSA-OAEP", "enc": "A256GCM"}))
        ),
    );
    c.token(
        "invalid base64url in the header",
        format!("{}*.{}.{}", parts[0], parts[1], parts[2]),
    );
    c.token(
        "padded segments",
        format!("{}==.{}.{}", parts[0], parts[1], parts[2]),
    );
    c.token(
        "non-JSON header",
        format!("{}.{}.{}", b64(b"not json"), parts[1], parts[2]),
    );
    c.token(
        "header JSON array",
        format!("{}.{}.{}", b64(b"[]"), parts[1], parts[2]),
    );
    c.token("8 KiB+ token", format!("{good}{}", "A".repeat(9000)));
    c.token("not a JWT at all", "opaque-token-value");
    c.raw(
        "empty bearer",
        Request::post("/mcp")
            .header(header::AUTHORIZATION, "Bearer ")
            .body(Full::new(Bytes::new()))
            .expect("req"),
    );
    c.raw(
        "bearer with two words",
        Request::post("/mcp")
            .header(header::AUTHORIZATION, format!("Bearer {good} extra"))
            .body(Full::new(Bytes::new()))
            .expect("req"),
    );
    c.raw(
        "non-ASCII in the header",
        Request::post("/mcp")
            .header(
                header::AUTHORIZATION,
                http::HeaderValue::from_bytes(b"Bearer \xc3\xa9t\xc3\xa9").expect("bytes"),
            )
            .body(Full::new(Bytes::new()))
            .expect("req"),
    );

    assert!(
        c.cases.len() >= 40,
        "the corpus has {} cases",
        c.cases.len()
    );
    let svc = ServiceBuilder::new()
        .layer(oauth.layer())
        .service(service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                b"reached the service",
            ))))
        }));
    let mut failures = Vec::new();
    for (name, req) in c.cases {
        let res = svc.clone().oneshot(req).await.expect("infallible");
        let challenge = res
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if res.status() != StatusCode::UNAUTHORIZED
            || !challenge.starts_with(r#"Bearer error="invalid_token""#)
        {
            failures.push(format!(
                "{name}: {} {challenge} {:?}",
                res.status(),
                res.extensions().get::<VerifyError>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "accepted or mis-answered:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a key URL named in a token was fetched"
    );
    assert!(
        idp.jwks_hits() <= 2,
        "unknown kids caused {} JWKS fetches",
        idp.jwks_hits()
    );

    // The real token works, so the refusals above are about the attacks, not the setup.
    let res = svc
        .clone()
        .oneshot(
            Request::post("/mcp")
                .header(header::AUTHORIZATION, format!("Bearer {good}"))
                .body(Full::new(Bytes::new()))
                .expect("req"),
        )
        .await
        .expect("ok");
    assert_eq!(res.status(), StatusCode::OK);

    // RFC 6750 §3.1: invalid_request (400) for a repeated Authorization header and for a
    // token in the query string.
    for req in [
        Request::post("/mcp")
            .header(header::AUTHORIZATION, format!("Bearer {good}"))
            .header(header::AUTHORIZATION, "Bearer other")
            .body(Full::new(Bytes::new()))
            .expect("req"),
        Request::post(format!("/mcp?access_token={good}"))
            .body(Full::new(Bytes::new()))
            .expect("req"),
        Request::post(format!("/mcp?access_token={good}"))
            .header(header::AUTHORIZATION, format!("Bearer {good}"))
            .body(Full::new(Bytes::new()))
            .expect("req"),
    ] {
        let res = svc.clone().oneshot(req).await.expect("ok");
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert!(
            res.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .expect("ascii")
                .starts_with(r#"Bearer error="invalid_request""#)
        );
    }
}

trait KeyToken {
    fn key_token(&self, claims: &Value) -> String;
}

impl KeyToken for SigningKey {
    /// A token without a `kid` header.
    fn key_token(&self, claims: &Value) -> String {
        self.sign_compact(
            json!({"alg": self.alg().as_str()}).to_string().as_bytes(),
            claims.to_string().as_bytes(),
        )
    }
}
