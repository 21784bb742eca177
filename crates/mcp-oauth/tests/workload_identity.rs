//! Workload identity federation (SEP-1933) at the embedded authorization server: a workload's
//! identity token (as a Kubernetes or GitHub Actions token, signed by a stand-in issuer whose
//! JWKS is served on 127.0.0.1) is the JWT-bearer grant (RFC 7523) for the registered client
//! its subject maps to. From the attacker's side: another audience, an unknown issuer, an
//! unmapped subject, another workload's client, expiry, replay, scopes beyond the client's.
//!
//! The checks mirror the conformance scenario `auth/wif-jwt-bearer`: the grant type, the
//! `assertion` parameter, signature, `aud` (the issuer, with or without a trailing `/`) and
//! `exp`; the errors `invalid_grant`, `invalid_scope` and `unauthorized_client`.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::Served;
use mcp_oauth::auth_server::{AuthServer, ClientAuthMethod, ClientSpec, GrantType, WorkloadIssuer};
use mcp_oauth::testing::{MockIdp, TestKey, TokenBuilder};
use mcp_oauth::verify::TokenVerifier;
use serde_json::Value;
use tokio::net::TcpListener;

const RESOURCE: &str = "http://127.0.0.1:9999/mcp";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const DEPLOY: &str = "repo:acme/deploy:ref:refs/heads/main";
const CRON: &str = "system:serviceaccount:jobs:cron";

fn next_jti() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("wl-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

struct Running {
    server: AuthServer,
    issuer: String,
    http: reqwest::Client,
    served: Served,
    ci: MockIdp,
    cluster: MockIdp,
}

async fn start() -> Running {
    let ci = MockIdp::start(TestKey::es256()).await.expect("ci issuer");
    let cluster = MockIdp::start(TestKey::rs256())
        .await
        .expect("cluster issuer");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let server = AuthServer::builder(issuer.clone())
        .scopes(["mcp:read", "mcp:write", "admin"])
        .resource(RESOURCE)
        .rate_limits(None, None, None)
        .workload_issuer(
            WorkloadIssuer::new(ci.issuer())
                .jwks_url(ci.jwks_url())
                .client(DEPLOY, "deploy-bot"),
        )
        .workload_issuer(
            WorkloadIssuer::new(cluster.issuer())
                .jwks_url(cluster.jwks_url())
                .audience("mcp-prod")
                .require_jti(false)
                .client(CRON, "cron-job")
                .client("system:serviceaccount:jobs:unregistered", "nobody")
                .client("system:serviceaccount:jobs:secretive", "secretive")
                .client("system:serviceaccount:jobs:browser-app", "browser-app"),
        )
        .client(ClientSpec::workload("deploy-bot").scopes(["mcp:read", "mcp:write"]))
        .client(ClientSpec::workload("cron-job").scopes(["mcp:read"]))
        // A client for users only: not registered for the grant.
        .client(ClientSpec {
            client_id: "browser-app".into(),
            redirect_uris: vec!["http://127.0.0.1:4000/cb".into()],
            grant_types: vec![GrantType::AuthorizationCode],
            ..ClientSpec::default()
        })
        .client(
            ClientSpec::service("secretive", "s3cret")
                .grant_types([GrantType::JwtBearer])
                .scopes(["mcp:read"]),
        )
        .build()
        .await
        .expect("server");
    let served = Served::app(listener, server.router());
    Running {
        server,
        issuer,
        http: reqwest::Client::new(),
        served,
        ci,
        cluster,
    }
}

impl Running {
    /// A valid CI token of the deploy workload for this server.
    fn ci_token(&self) -> TokenBuilder {
        self.ci
            .token()
            .typ(Some("JWT"))
            .sub(DEPLOY)
            .aud(&self.issuer)
            .claim("jti", next_jti())
            .exp_in(300)
    }

    async fn request(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let res = self
            .http
            .post(format!("{}/token", self.issuer))
            .form(form)
            .send()
            .await
            .expect("token");
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    async fn grant(&self, assertion: &str) -> (u16, Value) {
        self.request(&[("grant_type", JWT_BEARER), ("assertion", assertion)])
            .await
    }
}

/// A status and an OAuth error code.
type Answer<'a> = (u16, Option<&'a str>);

fn error_of(answer: &(u16, Value)) -> Answer<'_> {
    (answer.0, answer.1["error"].as_str())
}

#[tokio::test]
async fn a_workload_token_gets_a_token_for_its_client() {
    let r = start().await;
    let (status, body) = r.grant(&r.ci_token().sign()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "mcp:read mcp:write");
    let token = body["access_token"].as_str().unwrap();
    let claims = r
        .server
        .verifier()
        .unwrap()
        .verify(token)
        .await
        .expect("the AS's verifier accepts the token");
    // No user: the client is the subject.
    assert_eq!(claims.sub(), Some("deploy-bot"));
    assert_eq!(claims.str("client_id"), Some("deploy-bot"));
    assert_eq!(claims.str("aud"), Some(RESOURCE));
    // Naming the client in the form is fine too, and a narrower scope is granted as asked.
    let (status, body) = r
        .request(&[
            ("grant_type", JWT_BEARER),
            ("assertion", &r.ci_token().sign()),
            ("client_id", "deploy-bot"),
            ("scope", "mcp:read"),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "mcp:read");
    // The issuer with a trailing slash as the audience.
    let (status, body) = r
        .grant(&r.ci_token().aud(&format!("{}/", r.issuer)).sign())
        .await;
    assert_eq!(status, 200, "{body}");
    // The cluster's tokens name a configured audience and carry no jti.
    let cron = r
        .cluster
        .token()
        .sub(CRON)
        .aud("mcp-prod")
        .exp_in(600)
        .sign();
    let (status, body) = r.grant(&cron).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "mcp:read");
    r.served.stop().await;
}

#[tokio::test]
async fn wrong_audience_unknown_issuer_unmapped_subject_and_expiry_are_refused() {
    let r = start().await;
    let stranger = TestKey::es256();
    let cases: Vec<(&str, String, Answer<'_>)> = vec![
        (
            "another audience",
            r.ci_token().aud("https://wrong.example").sign(),
            (400, Some("invalid_grant")),
        ),
        (
            "the cluster's audience on a CI token",
            r.ci_token().aud("mcp-prod").sign(),
            (400, Some("invalid_grant")),
        ),
        (
            "expired",
            r.ci_token().exp_in(-600).sign(),
            (400, Some("invalid_grant")),
        ),
        (
            "no exp",
            r.ci_token().without("exp").claim("iat", 1).sign_exact(),
            (400, Some("invalid_grant")),
        ),
        (
            "no jti where one is required",
            r.ci_token().without("jti").sign(),
            (400, Some("invalid_grant")),
        ),
        (
            "the CI issuer, signed by another key",
            stranger
                .token()
                .iss(r.ci.issuer())
                .sub(DEPLOY)
                .aud(&r.issuer)
                .claim("jti", next_jti())
                .sign(),
            (400, Some("invalid_grant")),
        ),
        (
            "the CI issuer, signed by the cluster's key",
            r.cluster
                .key()
                .token()
                .iss(r.ci.issuer())
                .sub(DEPLOY)
                .aud(&r.issuer)
                .claim("jti", next_jti())
                .sign(),
            (400, Some("invalid_grant")),
        ),
        (
            "an unmapped subject",
            r.ci_token()
                .sub("repo:acme/other:ref:refs/heads/main")
                .sign(),
            (400, Some("invalid_grant")),
        ),
        (
            "a subject mapped to an unregistered client",
            r.cluster
                .token()
                .sub("system:serviceaccount:jobs:unregistered")
                .aud("mcp-prod")
                .sign(),
            (400, Some("invalid_grant")),
        ),
        (
            // No client authentication, and no workload issuer to name one.
            "an unknown issuer",
            stranger
                .token()
                .iss("https://evil.example")
                .sub(DEPLOY)
                .aud(&r.issuer)
                .claim("jti", next_jti())
                .sign(),
            (401, Some("invalid_client")),
        ),
        (
            // A client with a secret is not named by the token alone.
            "a client that has credentials of its own",
            r.cluster
                .token()
                .sub("system:serviceaccount:jobs:secretive")
                .aud("mcp-prod")
                .sign(),
            (401, Some("invalid_client")),
        ),
    ];
    for (what, assertion, expected) in cases {
        let answer = r.grant(&assertion).await;
        assert_eq!(error_of(&answer), expected, "{what}: {}", answer.1);
    }
    r.served.stop().await;
}

#[tokio::test]
async fn a_token_is_used_once_and_for_its_own_client_only() {
    let r = start().await;
    let token = r.ci_token().sign();
    assert_eq!(r.grant(&token).await.0, 200);
    let again = r.grant(&token).await;
    assert_eq!(
        error_of(&again),
        (400, Some("invalid_grant")),
        "{}",
        again.1
    );
    // The deploy workload's token presented for the cron client.
    let answer = r
        .request(&[
            ("grant_type", JWT_BEARER),
            ("assertion", &r.ci_token().sign()),
            ("client_id", "cron-job"),
        ])
        .await;
    assert_eq!(
        error_of(&answer),
        (400, Some("invalid_grant")),
        "{}",
        answer.1
    );
    // The secretive client authenticates and presents its workload token: fine.
    let res = r
        .http
        .post(format!("{}/token", r.issuer))
        .basic_auth("secretive", Some("s3cret"))
        .form(&[
            ("grant_type", JWT_BEARER),
            (
                "assertion",
                &r.cluster
                    .token()
                    .sub("system:serviceaccount:jobs:secretive")
                    .aud("mcp-prod")
                    .sign(),
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    r.served.stop().await;
}

#[tokio::test]
async fn scopes_beyond_the_clients_are_refused_and_other_grants_are_not_allowed() {
    let r = start().await;
    let answer = r
        .request(&[
            ("grant_type", JWT_BEARER),
            ("assertion", &r.ci_token().sign()),
            ("scope", "mcp:read admin"),
        ])
        .await;
    assert_eq!(
        error_of(&answer),
        (400, Some("invalid_scope")),
        "{}",
        answer.1
    );
    // A workload mapped to a client that is not registered for the grant.
    let browser = r
        .cluster
        .token()
        .sub("system:serviceaccount:jobs:browser-app")
        .aud("mcp-prod")
        .sign();
    let answer = r.grant(&browser).await;
    assert_eq!(
        error_of(&answer),
        (400, Some("unauthorized_client")),
        "{}",
        answer.1
    );
    // A workload client may not use client_credentials.
    let answer = r
        .request(&[
            ("grant_type", "client_credentials"),
            ("client_id", "deploy-bot"),
        ])
        .await;
    assert_eq!(
        error_of(&answer),
        (400, Some("unauthorized_client")),
        "{}",
        answer.1
    );
    // An anonymous caller with no assertion gets nothing.
    let answer = r.request(&[("grant_type", JWT_BEARER)]).await;
    assert_eq!(
        error_of(&answer),
        (401, Some("invalid_client")),
        "{}",
        answer.1
    );
    assert_eq!(
        ClientSpec::workload("x").token_endpoint_auth_method,
        Some(ClientAuthMethod::None)
    );
    r.served.stop().await;
}
