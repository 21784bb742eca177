//! The challenge table: every way a request is refused, asserted to the byte, through the
//! bearer layer in front of a plain service.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use mcp_oauth::testing::{MockIdp, TestKey};
use mcp_oauth::verify::JwtVerifier;
use mcp_oauth::{Auth, OAuth, VerifyError, VerifyErrorKind};
use serde_json::{Value, json};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

const RESOURCE: &str = "https://mcp.example.com/mcp";
const PRM: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";

struct Fixture {
    idp: MockIdp,
    oauth: OAuth,
}

async fn fixture() -> Fixture {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let verifier = JwtVerifier::builder()
        .issuer(idp.issuer())
        .jwks_url(idp.jwks_url())
        .build()
        .expect("verifier");
    let oauth = OAuth::builder()
        .resource(RESOURCE)
        .authorization_server(idp.issuer())
        .scopes_supported(["mcp:read", "mcp:write", "offline_access"])
        .require_scopes(["mcp:read"])
        .tool_scopes("admin_action", ["admin"])
        .audience("api://mcp")
        .verifier(verifier)
        .mirror_authorization_server(false)
        .build()
        .expect("oauth");
    Fixture { idp, oauth }
}

/// The inner service answers 200 with the subject it saw, proving the request got through.
async fn send(
    oauth: &OAuth,
    req: Request<Full<Bytes>>,
) -> (StatusCode, Option<String>, Value, Option<VerifyError>) {
    let svc = ServiceBuilder::new()
        .layer(oauth.layer())
        .service(service_fn(|req: Request<Full<Bytes>>| async move {
            let who = req
                .extensions()
                .get::<Auth>()
                .map(|a| a.subject().to_owned())
                .unwrap_or_default();
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
                json!({ "sub": who }).to_string(),
            ))))
        }));
    let res = svc.oneshot(req).await.expect("infallible");
    let status = res.status();
    let challenge = res
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().expect("ascii").to_owned());
    let err = res.extensions().get::<VerifyError>().cloned();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        challenge,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
        err,
    )
}

fn post(token: Option<&str>, body: &str) -> Request<Full<Bytes>> {
    let mut req = Request::post("/mcp").header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    req.body(Full::new(Bytes::from(body.to_owned())))
        .expect("request")
}

const LIST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;

fn invalid(description: &str) -> String {
    format!(
        r#"Bearer error="invalid_token", error_description="{description}", resource_metadata="{PRM}", scope="mcp:read""#
    )
}

#[tokio::test]
async fn missing_token_is_401_without_error_code() {
    let f = fixture().await;
    let (status, challenge, body, _) = send(&f.oauth, post(None, LIST)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.as_deref(),
        Some(format!(r#"Bearer resource_metadata="{PRM}", scope="mcp:read""#).as_str())
    );
    assert_eq!(body["error"], "unauthorized");
    // Another scheme is "no bearer credentials", answered the same way.
    let req = Request::post("/mcp")
        .header(header::AUTHORIZATION, "Basic dXNlcjpwYXNz")
        .body(Full::new(Bytes::new()))
        .expect("req");
    let (status, challenge, _, _) = send(&f.oauth, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!challenge.expect("challenge").contains("error="));
}

#[tokio::test]
async fn malformed_token_is_invalid_token() {
    let f = fixture().await;
    for token in [
        "not-a-jwt",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.e30.",
        "a.b.c.d.e",
    ] {
        let (status, challenge, body, _) = send(&f.oauth, post(Some(token), LIST)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token}");
        assert_eq!(
            challenge.as_deref(),
            Some(invalid("the access token is invalid").as_str()),
            "{token}"
        );
        assert_eq!(
            body,
            json!({"error": "invalid_token", "error_description": "the access token is invalid"})
        );
    }
}

#[tokio::test]
async fn bad_signature_is_invalid_token() {
    let f = fixture().await;
    let other = TestKey::rs256();
    // Signed by another key that claims the IdP's kid.
    let forged = other.key().sign_compact(
        json!({"alg": "RS256", "kid": f.idp.key().kid()})
            .to_string()
            .as_bytes(),
        f.idp
            .token()
            .aud(RESOURCE)
            .scope("mcp:read")
            .claims()
            .to_string()
            .as_bytes(),
    );
    let (status, challenge, _, err) = send(&f.oauth, post(Some(&forged), LIST)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.as_deref(),
        Some(invalid("the access token is invalid").as_str())
    );
    assert_eq!(
        err.map(|e| e.kind()),
        Some(VerifyErrorKind::InvalidSignature)
    );
}

#[tokio::test]
async fn expired_token_is_invalid_token_with_its_own_description() {
    let f = fixture().await;
    let token = f
        .idp
        .token()
        .aud(RESOURCE)
        .scope("mcp:read")
        .exp_in(-120)
        .sign();
    let (status, challenge, body, err) = send(&f.oauth, post(Some(&token), LIST)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.as_deref(),
        Some(invalid("the access token expired").as_str())
    );
    assert_eq!(body["error_description"], "the access token expired");
    assert_eq!(err.map(|e| e.kind()), Some(VerifyErrorKind::Expired));
    // Within the 60 s leeway it is still accepted.
    let token = f
        .idp
        .token()
        .aud(RESOURCE)
        .scope("mcp:read")
        .exp_in(-30)
        .sign();
    assert_eq!(
        send(&f.oauth, post(Some(&token), LIST)).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn wrong_issuer_is_invalid_token() {
    let f = fixture().await;
    let token = f
        .idp
        .token()
        .iss("https://evil.example.com")
        .aud(RESOURCE)
        .scope("mcp:read")
        .sign();
    let (status, challenge, _, err) = send(&f.oauth, post(Some(&token), LIST)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.as_deref(),
        Some(invalid("the access token is invalid").as_str())
    );
    assert_eq!(err.map(|e| e.kind()), Some(VerifyErrorKind::InvalidIssuer));
}

#[tokio::test]
async fn wrong_audience_is_invalid_token() {
    let f = fixture().await;
    for aud in [
        json!("https://other.example.com/mcp"),
        json!(["https://a.example", "https://b.example"]),
        json!(null),
    ] {
        let mut builder = f.idp.token().scope("mcp:read");
        if !aud.is_null() {
            builder = builder.claim("aud", aud.clone());
        }
        let (status, challenge, _, err) = send(&f.oauth, post(Some(&builder.sign()), LIST)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{aud}");
        assert_eq!(
            challenge.as_deref(),
            Some(invalid("the access token was not issued for this resource").as_str())
        );
        assert_eq!(
            err.map(|e| e.kind()),
            Some(VerifyErrorKind::InvalidAudience)
        );
    }
}

#[tokio::test]
async fn audience_tolerates_trailing_slash_case_lists_and_extra_audiences() {
    let f = fixture().await;
    for aud in [
        json!(RESOURCE),
        json!("https://mcp.example.com/mcp/"),
        json!("HTTPS://MCP.EXAMPLE.COM/mcp"),
        json!(["https://other.example", "https://mcp.example.com/mcp"]),
        json!("api://mcp"),
    ] {
        let token = f
            .idp
            .token()
            .claim("aud", aud.clone())
            .scope("mcp:read")
            .sign();
        let (status, _, body, _) = send(&f.oauth, post(Some(&token), LIST)).await;
        assert_eq!(status, StatusCode::OK, "{aud}");
        assert_eq!(body["sub"], "user-1");
    }
}

#[tokio::test]
async fn audience_is_checked_before_expiry() {
    let f = fixture().await;
    let token = f
        .idp
        .token()
        .aud("https://other.example.com")
        .scope("mcp:read")
        .exp_in(-3600)
        .sign();
    let (_, _, _, err) = send(&f.oauth, post(Some(&token), LIST)).await;
    assert_eq!(
        err.map(|e| e.kind()),
        Some(VerifyErrorKind::InvalidAudience)
    );
}

#[tokio::test]
async fn expired_token_without_scopes_is_401_not_403() {
    let f = fixture().await;
    let token = f
        .idp
        .token()
        .aud(RESOURCE)
        .scope("nothing")
        .exp_in(-3600)
        .sign();
    let (status, challenge, _, _) = send(&f.oauth, post(Some(&token), LIST)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.as_deref(),
        Some(invalid("the access token expired").as_str())
    );
}

#[tokio::test]
async fn insufficient_baseline_scope_is_403() {
    let f = fixture().await;
    let token = f.idp.token().aud(RESOURCE).scope("mcp:write").sign();
    let (status, challenge, body, _) = send(&f.oauth, post(Some(&token), LIST)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        challenge.as_deref(),
        Some(
            format!(r#"Bearer error="insufficient_scope", error_description="the access token lacks a scope this request needs", resource_metadata="{PRM}", scope="mcp:read""#)
                .as_str()
        )
    );
    assert_eq!(body["error"], "insufficient_scope");
    assert_eq!(body["scope"], "mcp:read");
}

#[tokio::test]
async fn tool_step_up_names_every_scope_of_the_call() {
    let f = fixture().await;
    let call = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"admin_action","arguments":{}}}"#;
    let token = f.idp.token().aud(RESOURCE).scope("mcp:read").sign();
    let (status, challenge, _, _) = send(&f.oauth, post(Some(&token), call)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        challenge.as_deref(),
        Some(
            format!(r#"Bearer error="insufficient_scope", error_description="the access token lacks a scope this request needs", resource_metadata="{PRM}", scope="mcp:read admin""#)
                .as_str()
        )
    );
    // Other tools and methods need only the baseline.
    let echo = r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;
    assert_eq!(
        send(&f.oauth, post(Some(&token), echo)).await.0,
        StatusCode::OK
    );
    // With the scope, the call goes through, and the inner service still gets the body.
    let admin = f.idp.token().aud(RESOURCE).scope("mcp:read admin").sign();
    let svc = ServiceBuilder::new()
        .layer(f.oauth.layer())
        .service(service_fn(|req: Request<Full<Bytes>>| async move {
            let body = req.into_body().collect().await.expect("body").to_bytes();
            Ok::<_, Infallible>(Response::new(Full::new(body)))
        }));
    let res = svc
        .oneshot(post(Some(&admin), call))
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.into_body().collect().await.expect("body").to_bytes(),
        call
    );
}

#[tokio::test]
async fn unreadable_body_fails_closed_when_the_policy_needs_it() {
    let f = fixture().await;
    let token = f.idp.token().aud(RESOURCE).scope("mcp:read").sign();
    let sneaky = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"admin_action"}}"#;
    let (status, challenge, _, _) = send(&f.oauth, post(Some(&token), sneaky)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        challenge
            .expect("challenge")
            .starts_with(r#"Bearer error="invalid_request""#)
    );
}

#[tokio::test]
async fn valid_token_reaches_the_service_with_auth() {
    let f = fixture().await;
    let token = f
        .idp
        .token()
        .aud(RESOURCE)
        .scope("mcp:read mcp:write")
        .sign();
    let (status, challenge, body, _) = send(&f.oauth, post(Some(&token), LIST)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(challenge, None);
    assert_eq!(body["sub"], "user-1");
    // The scheme is case-insensitive.
    let req = Request::post("/mcp")
        .header(header::AUTHORIZATION, format!("bearer {token}"))
        .body(Full::new(Bytes::from(LIST)))
        .expect("req");
    assert_eq!(send(&f.oauth, req).await.0, StatusCode::OK);
}

#[tokio::test]
async fn query_string_tokens_and_duplicate_headers_are_400() {
    let f = fixture().await;
    let token = f.idp.token().aud(RESOURCE).scope("mcp:read").sign();
    let req = Request::post(format!("/mcp?access_token={token}"))
        .body(Full::new(Bytes::from(LIST)))
        .expect("req");
    let (status, challenge, body, _) = send(&f.oauth, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        challenge.as_deref(),
        Some(
            format!(r#"Bearer error="invalid_request", error_description="access tokens are not accepted in the query string; send them in the Authorization header", resource_metadata="{PRM}", scope="mcp:read""#)
                .as_str()
        )
    );
    assert_eq!(body["error"], "invalid_request");
    let req = Request::post("/mcp")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::from(LIST)))
        .expect("req");
    assert_eq!(send(&f.oauth, req).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn oversized_token_is_refused_before_parsing() {
    let f = fixture().await;
    let huge = f
        .idp
        .token()
        .aud(RESOURCE)
        .scope("mcp:read")
        .claim("pad", "x".repeat(9000))
        .sign();
    let hits = f.idp.jwks_hits();
    let (status, _, _, err) = send(&f.oauth, post(Some(&huge), LIST)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(matches!(err, Some(VerifyError::TooLarge { .. })));
    assert_eq!(
        f.idp.jwks_hits(),
        hits,
        "no key fetch for an oversized token"
    );
}

#[tokio::test]
async fn cors_preflight_passes_and_service_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let f = fixture().await;
    let mut svc = ServiceBuilder::new()
        .layer(f.oauth.layer())
        .service(service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                b"preflight ok",
            ))))
        }));
    let preflight = || {
        Request::options("/mcp")
            .header(header::ORIGIN, "https://inspector.example")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "authorization, mcp-protocol-version",
            )
            .body(Full::new(Bytes::new()))
            .expect("req")
    };
    let fut = svc.ready().await.expect("ready").call(preflight());
    assert_send(&fut);
    // Without a token, the preflight reaches the inner service (its body), unchallenged.
    let res = fut.await.expect("infallible");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!res.headers().contains_key(header::WWW_AUTHENTICATE));
    assert_eq!(
        res.into_body().collect().await.expect("body").to_bytes(),
        "preflight ok"
    );
    // An OPTIONS that is no preflight (no Access-Control-Request-Method) is challenged.
    let plain = Request::options("/mcp")
        .body(Full::new(Bytes::new()))
        .expect("req");
    let res = svc.ready().await.expect("ready").call(plain).await;
    assert_eq!(res.expect("infallible").status(), StatusCode::UNAUTHORIZED);

    // With the MCP endpoint's CORS policy inside the bearer layer, the preflight gets through
    // to it and is answered with the CORS headers a browser needs.
    let mut cors = ServiceBuilder::new()
        .layer(f.oauth.layer())
        .layer(mcp_oauth::routes::mcp_cors())
        .service(service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"not reached"))))
        }));
    let res = cors
        .ready()
        .await
        .expect("ready")
        .call(preflight())
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::OK);
    let value = |name: header::HeaderName| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    assert_eq!(value(header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    assert!(
        value(header::ACCESS_CONTROL_ALLOW_METHODS).contains("post"),
        "{:?}",
        res.headers()
    );
    let allowed = value(header::ACCESS_CONTROL_ALLOW_HEADERS);
    for name in ["authorization", "mcp-protocol-version"] {
        assert!(allowed.contains(name), "{name} not allowed: {allowed}");
    }
    assert!(!res.headers().contains_key(header::WWW_AUTHENTICATE));
}

/// docs/challenges.md shows these exact header values; keep the page true.
#[tokio::test]
async fn the_documented_table_matches_the_code() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/challenges.md"
    ))
    .expect("docs/challenges.md");
    let f = fixture().await;
    let cases = [
        post(None, LIST),
        post(Some("not-a-jwt"), LIST),
        post(
            Some(
                &f.idp
                    .token()
                    .aud("https://other.example")
                    .scope("mcp:read")
                    .sign(),
            ),
            LIST,
        ),
        post(
            Some(
                &f.idp
                    .token()
                    .aud(RESOURCE)
                    .scope("mcp:read")
                    .exp_in(-3600)
                    .sign(),
            ),
            LIST,
        ),
        post(
            Some(&f.idp.token().aud(RESOURCE).scope("mcp:write").sign()),
            LIST,
        ),
        post(
            Some(&f.idp.token().aud(RESOURCE).scope("mcp:read").sign()),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_action"}}"#,
        ),
        Request::post("/mcp?access_token=x")
            .body(Full::new(Bytes::new()))
            .expect("req"),
    ];
    for req in cases {
        let (status, challenge, body, _) = send(&f.oauth, req).await;
        let challenge = challenge.expect("challenge");
        assert!(
            doc.contains(&format!(
                "| {} | `{challenge}` | `{body}` |",
                status.as_u16()
            )),
            "docs/challenges.md lacks: {status} {challenge} {body}"
        );
    }
}
