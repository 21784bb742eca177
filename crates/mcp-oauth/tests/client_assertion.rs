//! `private_key_jwt` client authentication (RFC 7523 §2.2) at the embedded authorization
//! server, from an attacker's side: every way to forge, replay, stretch or misdirect a client
//! assertion is refused with `invalid_client`, and the registered keys are the only ones that
//! count.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod common;

use common::Served;
use mcp_oauth::auth_server::{AuthServer, AuthServerBuilder, ClientSpec};
use mcp_oauth::jose::Algorithm;
use mcp_oauth::testing::{TestKey, TokenBuilder};
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const RESOURCE: &str = "http://127.0.0.1:9/mcp";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

struct Running {
    issuer: String,
    http: reqwest::Client,
    served: Served,
    key: TestKey,
}

async fn start(
    configure: impl FnOnce(AuthServerBuilder, &TestKey) -> AuthServerBuilder,
) -> Running {
    let key = TestKey::es256();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let builder = AuthServer::builder(issuer.clone())
        .resource(RESOURCE)
        .scopes(["mcp:read", "mcp:write"])
        .rate_limits(None, None, None);
    let server = configure(builder, &key).build().await.expect("server");
    let served = Served::app(listener, server.router());
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client");
    Running {
        issuer,
        http,
        served,
        key,
    }
}

/// The machine client `svc`, authenticating with the public half of `key`.
fn svc(key: &TestKey) -> ClientSpec {
    let jwks = serde_json::to_string(&TestKey::jwks(&[key])).expect("jwks");
    ClientSpec::service_with_keys("svc", jwks).scopes(["mcp:read"])
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// A valid assertion of `svc` for this server, signed by `key`.
    fn assertion(&self, key: &TestKey) -> TokenBuilder {
        key.token()
            .typ(None)
            .iss("svc")
            .sub("svc")
            .aud(&self.url("/token"))
            .exp_in(120)
            .claim("jti", format!("jti-{}", rand_suffix()))
    }

    async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let res = self
            .http
            .post(self.url("/token"))
            .form(form)
            .send()
            .await
            .expect("token");
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    async fn with_assertion(&self, assertion: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
        ])
        .await
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn error_of(body: &Value) -> Option<&str> {
    body["error"].as_str()
}

#[tokio::test]
async fn a_signed_assertion_authenticates_and_only_once() {
    let r = start(|b, key| b.client(svc(key))).await;
    let assertion = r.assertion(&r.key).sign();
    let (status, body) = r.with_assertion(&assertion).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "mcp:read");
    // The same assertion again: its jti was used.
    let (status, body) = r.with_assertion(&assertion).await;
    assert_eq!(
        (status, error_of(&body)),
        (401, Some("invalid_client")),
        "{body}"
    );
    // The issuer as audience is fine too.
    let (status, body) = r
        .with_assertion(&r.assertion(&r.key).aud(&r.issuer).sign())
        .await;
    assert_eq!(status, 200, "{body}");
    r.served.stop().await;
}

#[tokio::test]
async fn forged_stretched_and_misdirected_assertions_are_refused() {
    let r = start(|b, key| b.client(svc(key))).await;
    let stranger = TestKey::es256();
    let other_family = TestKey::rs256();
    let cases: Vec<(&str, String)> = vec![
        ("signed by another key", r.assertion(&stranger).sign()),
        ("another key family", r.assertion(&other_family).sign()),
        ("expired", r.assertion(&r.key).exp_in(-120).sign()),
        ("valid for an hour", r.assertion(&r.key).exp_in(3600).sign()),
        ("no exp", r.assertion(&r.key).without("exp").sign_exact()),
        ("no jti", r.assertion(&r.key).without("jti").sign()),
        (
            "not yet valid",
            r.assertion(&r.key).claim("nbf", now() + 600).sign(),
        ),
        (
            "another audience",
            r.assertion(&r.key)
                .aud("https://other.example/token")
                .sign(),
        ),
        ("no audience", r.assertion(&r.key).without("aud").sign()),
        (
            "iss is not the client",
            r.assertion(&r.key).iss("evil").sign(),
        ),
        (
            "sub names another client",
            r.assertion(&r.key).sub("other").sign(),
        ),
        ("unknown client", {
            r.assertion(&r.key).iss("ghost").sub("ghost").sign()
        }),
        ("alg none", unsigned(&r.assertion(&r.key))),
        ("HS256 keyed with the public key", hs256_with_public_key(&r)),
        ("not a JWT", "not.a.jwt".to_owned()),
    ];
    for (what, assertion) in cases {
        let (status, body) = r.with_assertion(&assertion).await;
        assert_eq!(
            (status, error_of(&body)),
            (401, Some("invalid_client")),
            "{what}: {body}"
        );
        // One description whatever failed: the answer does not say which check it was.
        assert_eq!(
            body["error_description"],
            "client authentication failed: the client assertion is not valid for a client of this server",
            "{what}"
        );
    }
    // A good one still works after all that.
    let (status, body) = r.with_assertion(&r.assertion(&r.key).sign()).await;
    assert_eq!(status, 200, "{body}");
    r.served.stop().await;
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs(),
    )
    .expect("seconds")
}

/// The same claims with `alg: none` and no signature.
fn unsigned(builder: &TokenBuilder) -> String {
    use base64::Engine as _;
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    format!(
        "{}.{}.",
        b64(&json!({"alg": "none"})),
        b64(&builder.claims())
    )
}

/// The classic confusion: HS256 with the client's public key (its JWK text) as the secret.
fn hs256_with_public_key(r: &Running) -> String {
    let public = serde_json::to_string(&r.key.public_jwk().expect("jwk")).expect("json");
    let hmac = TestKey::from_key(
        mcp_oauth::jose::SigningKey::hmac(public.as_bytes(), Algorithm::HS256).expect("hmac"),
    );
    let claims = r.assertion(&r.key).claims();
    let mut builder = hmac.token().typ(None);
    for (name, value) in claims.as_object().expect("object") {
        builder = builder.claim(name, value.clone());
    }
    builder.sign_exact()
}

#[tokio::test]
async fn mixing_methods_and_malformed_requests_are_refused() {
    let r = start(|b, key| {
        b.client(svc(key))
            .client(ClientSpec::service("basic", "basic-secret").scopes(["mcp:read"]))
    })
    .await;
    let assertion = r.assertion(&r.key).sign();
    // A secret beside the assertion.
    let (status, body) = r
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion),
            ("client_secret", "x"),
        ])
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (400, Some("invalid_request")),
        "{body}"
    );
    // HTTP Basic beside the assertion.
    let res = r
        .http
        .post(r.url("/token"))
        .basic_auth("svc", Some("x"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(res.status().as_u16(), 400);
    // Another assertion type, or none.
    for form in [
        vec![
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ],
        vec![
            ("grant_type", "client_credentials"),
            ("client_assertion", assertion.as_str()),
        ],
        vec![
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
        ],
    ] {
        let (status, body) = r.token(&form).await;
        assert_eq!(
            (status, error_of(&body)),
            (400, Some("invalid_request")),
            "{form:?}: {body}"
        );
    }
    // client_id that differs from the assertion's sub.
    let (status, body) = r
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "basic"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion),
        ])
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (400, Some("invalid_request")),
        "{body}"
    );
    // A secret client cannot authenticate by assertion (it has no keys), even one signed
    // with keys another client registered.
    let (status, body) = r
        .with_assertion(&r.assertion(&r.key).iss("basic").sub("basic").sign())
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (401, Some("invalid_client")),
        "{body}"
    );
    // And the key client cannot fall back to no authentication or a guessed secret.
    let (status, body) = r
        .token(&[("grant_type", "client_credentials"), ("client_id", "svc")])
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (401, Some("invalid_client")),
        "{body}"
    );
    let res = r
        .http
        .post(r.url("/token"))
        .basic_auth("svc", Some(""))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token");
    assert_eq!(res.status().as_u16(), 401);
    r.served.stop().await;
}

#[tokio::test]
async fn the_metadata_advertises_private_key_jwt_and_its_algorithms() {
    let r = start(|b, _| b).await;
    let meta: Value = r
        .http
        .get(r.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .expect("metadata")
        .json()
        .await
        .expect("json");
    let methods = meta["token_endpoint_auth_methods_supported"]
        .as_array()
        .expect("methods");
    assert!(methods.contains(&json!("private_key_jwt")), "{meta}");
    let algs = meta["token_endpoint_auth_signing_alg_values_supported"]
        .as_array()
        .expect("algs");
    assert!(
        algs.contains(&json!("ES256")) && algs.contains(&json!("RS256")),
        "{meta}"
    );
    assert!(
        !algs
            .iter()
            .any(|a| a.as_str().is_some_and(|a| a.starts_with("HS"))),
        "{meta}"
    );
    r.served.stop().await;
}

#[tokio::test]
async fn registration_of_a_key_client_needs_usable_public_keys_and_issues_no_secret() {
    let r = start(|b, _| b).await;
    let register = |body: Value| {
        let http = r.http.clone();
        let url = r.url("/register");
        async move {
            let res = http.post(url).json(&body).send().await.expect("register");
            (
                res.status().as_u16(),
                res.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let jwks = serde_json::to_value(TestKey::jwks(&[&r.key])).expect("jwks");
    let (status, body) = register(json!({
        "redirect_uris": ["http://127.0.0.1:3000/cb"],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": jwks,
    }))
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["token_endpoint_auth_method"], "private_key_jwt");
    assert!(
        body.get("client_secret").is_none(),
        "no secret for a key client: {body}"
    );

    for (what, extra) in [
        ("no keys", json!({})),
        (
            "jwks_uri",
            json!({"jwks_uri": "https://client.example/jwks"}),
        ),
        ("not a key set", json!({"jwks": {"keys": "x"}})),
        (
            "a symmetric key",
            json!({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}),
        ),
        ("an empty set", json!({"jwks": {"keys": []}})),
    ] {
        let mut body = json!({
            "redirect_uris": ["http://127.0.0.1:3000/cb"],
            "token_endpoint_auth_method": "private_key_jwt",
        });
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let (status, answer) = register(body).await;
        assert_eq!(
            (status, error_of(&answer)),
            (400, Some("invalid_client_metadata")),
            "{what}: {answer}"
        );
    }
    r.served.stop().await;
}

#[tokio::test]
async fn operator_configuration_mistakes_are_refused_at_build() {
    let key = TestKey::es256();
    let jwks = serde_json::to_string(&TestKey::jwks(&[&key])).expect("jwks");
    for (what, spec) in [
        (
            "keys that are not JSON",
            ClientSpec::service_with_keys("svc", "{").scopes(["mcp:read"]),
        ),
        (
            "no usable key",
            ClientSpec::service_with_keys("svc", r#"{"keys":[]}"#).scopes(["mcp:read"]),
        ),
        (
            "keys and a secret",
            ClientSpec {
                client_secret: Some("s".into()),
                ..ClientSpec::service_with_keys("svc", jwks.clone()).scopes(["mcp:read"])
            },
        ),
    ] {
        let err = AuthServer::builder("http://127.0.0.1:1")
            .scopes(["mcp:read"])
            .client(spec)
            .build()
            .await
            .expect_err(what);
        assert!(err.to_string().contains("svc"), "{what}: {err}");
    }
}
