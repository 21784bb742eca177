//! Enterprise-Managed Authorization at the embedded authorization server: the JWT-bearer grant
//! (RFC 7523) with an Identity Assertion JWT Authorization Grant (ID-JAG) signed by a stand-in
//! enterprise identity provider (its JWKS served on 127.0.0.1), and a second provider with
//! static keys. From the attacker's side: replayed, misdirected, forged, expired, incomplete
//! and mistyped assertions, another client's assertion, no client authentication, a `cnf`
//! binding without the key (or where DPoP is off), a store that cannot record the `jti`, an
//! IdP whose keys cannot be fetched, and what an anonymous caller gets; and an ID-JAG signed
//! by another JWT library (`jsonwebtoken`).
//!
//! The checks mirror the conformance scenario `auth/enterprise-managed-authorization`
//! (`typ` is `oauth-id-jag+jwt`, the signature, `aud` = the issuer, `client_id` = the client
//! that authenticated with `client_secret_basic`, `resource`), plus `exp`, `jti` single use,
//! `cnf.jkt` with DPoP and the sign-in policy.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Served, eventually};
use mcp_oauth::audit::{AuditLog, MemorySink};
use mcp_oauth::auth_server::store::{
    Kind, MemoryStore, Redeemed, Store, StoreError, StoreResult, Stored,
};
use mcp_oauth::auth_server::{AuthServer, ClientSpec, GrantType, Registration, TrustedIdp};
use mcp_oauth::jose::Jwk;
use mcp_oauth::policy::{Catalog, Policy, PolicyConfig};
use mcp_oauth::testing::{JwksMode, MockIdp, TestKey, TokenBuilder};
use mcp_oauth::verify::{BoxFuture, TokenVerifier};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const RESOURCE: &str = "http://127.0.0.1:9999/mcp";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const GLOBEX: &str = "https://login.globex.example";

/// Who may sign in, and which scopes they get: `admin` only for `acme:alice`.
const POLICY: &str = r#"
[policy.groups.admins]
subjects = ["acme:alice"]

[[policy.sign_in]]
id  = "known-users"
who = { subjects = ["acme:alice", "acme:bob", "globex:carol"] }

[[policy.grant]]
id     = "everyone"
scopes = ["mcp:read", "mcp:write"]

[[policy.grant]]
id     = "admins-admin"
who    = { groups = ["admins"] }
scopes = ["admin"]
"#;

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
    format!("jag-{}-{}", now(), NEXT.fetch_add(1, Ordering::Relaxed))
}

fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
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

/// A DPoP proof by `key` for `POST url`.
fn dpop_proof(key: &TestKey, url: &str) -> String {
    let header = json!({"typ": "dpop+jwt", "alg": key.key().alg().as_str(), "jwk": bare_jwk(key)});
    let claims = json!({"jti": next_jti(), "htm": "POST", "htu": url, "iat": now()});
    key.key()
        .sign_compact(header.to_string().as_bytes(), claims.to_string().as_bytes())
}

struct Running {
    server: AuthServer,
    issuer: String,
    http: reqwest::Client,
    served: Served,
    acme: MockIdp,
    globex: TestKey,
    audit: AuditLog,
    sink: MemorySink,
}

async fn start() -> Running {
    let sink = MemorySink::new();
    let audit = AuditLog::builder().memory(&sink).build().expect("audit");
    let acme = MockIdp::start(TestKey::es256()).await.expect("idp");
    let globex = TestKey::rs256();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let policy = Policy::new(
        PolicyConfig::from_toml(POLICY, "policy.toml").expect("toml"),
        Catalog::new(),
    )
    .expect("policy");
    let server = AuthServer::builder(issuer.clone())
        .scopes(["mcp:read", "mcp:write", "admin"])
        .default_scopes(["mcp:read"])
        .resource(RESOURCE)
        .rate_limits(None, None, None)
        .dpop(true)
        .policy(policy, Some(audit.clone()))
        .trusted_idp(TrustedIdp::new("acme", acme.issuer()).jwks_url(acme.jwks_url()))
        .trusted_idp(
            TrustedIdp::new("globex", GLOBEX)
                .jwks_json(serde_json::to_string(&TestKey::jwks(&[&globex])).unwrap()),
        )
        .client(ClientSpec::service("agent", "agent-secret").grant_types([GrantType::JwtBearer]))
        .client(
            ClientSpec::service("other-agent", "other-secret").grant_types([GrantType::JwtBearer]),
        )
        .client(ClientSpec::service("batch", "batch-secret").scopes(["mcp:read"]))
        .client(ClientSpec {
            client_id: "public-app".into(),
            grant_types: vec![GrantType::JwtBearer],
            ..ClientSpec::default()
        })
        .build()
        .await
        .expect("server");
    let served = Served::app(listener, server.router());
    Running {
        server,
        issuer,
        http: reqwest::Client::new(),
        served,
        acme,
        globex,
        audit,
        sink,
    }
}

impl Running {
    fn token_url(&self) -> String {
        format!("{}/token", self.issuer)
    }

    /// A valid ID-JAG from acme for `user`, issued to `agent`.
    fn jag(&self, user: &str) -> TokenBuilder {
        self.acme
            .token()
            .typ(Some("oauth-id-jag+jwt"))
            .sub(user)
            .aud(&self.issuer)
            .claim("client_id", "agent")
            .claim("resource", RESOURCE)
            .claim("jti", next_jti())
            .claim("email", format!("{user}@acme.example"))
            .exp_in(300)
    }

    /// `POST /token` with the grant, as `client` (id, secret) over HTTP Basic, with DPoP
    /// proofs.
    async fn request(
        &self,
        client: Option<(&str, &str)>,
        form: &[(&str, &str)],
        proof: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self.http.post(self.token_url()).form(form);
        if let Some((id, secret)) = client {
            req = req.basic_auth(id, Some(secret));
        }
        if let Some(proof) = proof {
            req = req.header("dpop", proof);
        }
        let res = req.send().await.expect("token");
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    async fn grant(&self, assertion: &str) -> (u16, Value) {
        self.request(
            Some(("agent", "agent-secret")),
            &[("grant_type", JWT_BEARER), ("assertion", assertion)],
            None,
        )
        .await
    }

    async fn stop(self) {
        self.served.stop().await;
    }
}

fn refused(answer: &(u16, Value)) {
    assert_eq!(answer.0, 400, "{}", answer.1);
    assert_eq!(answer.1["error"], "invalid_grant", "{}", answer.1);
    // One description for every problem: nothing says which check failed.
    assert_eq!(
        answer.1["error_description"], "the assertion is not valid for this server",
        "{}",
        answer.1
    );
}

#[tokio::test]
async fn an_id_jag_gets_a_token_for_the_user_that_works_at_the_resource_server() {
    let r = start().await;
    let metadata = r.server.metadata();
    assert!(
        metadata
            .grant_types_supported
            .as_ref()
            .unwrap()
            .iter()
            .any(|g| g == JWT_BEARER)
    );
    let (status, body) = r
        .grant(&r.jag("alice").scope("mcp:read admin").sign())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "mcp:read admin");
    assert_eq!(body["resource"], RESOURCE);
    assert!(body.get("refresh_token").is_none(), "{body}");
    let token = body["access_token"].as_str().unwrap();
    let claims = r
        .server
        .verifier()
        .unwrap()
        .verify(token)
        .await
        .expect("the AS's verifier accepts the token");
    assert_eq!(claims.sub(), Some("acme:alice"));
    assert_eq!(claims.str("client_id"), Some("agent"));
    assert_eq!(claims.str("aud"), Some(RESOURCE));
    assert_eq!(claims.str("email"), Some("alice@acme.example"));
    assert!(claims.as_map().get("cnf").is_none());

    // The second provider, with static keys and an array audience.
    let jag = r
        .globex
        .token()
        .typ(Some("application/OAuth-ID-JAG+JWT"))
        .iss(GLOBEX)
        .sub("carol")
        .claim("aud", json!(["https://other.example", r.issuer.clone()]))
        .claim("client_id", "agent")
        .claim("jti", next_jti())
        .exp_in(300)
        .sign();
    let (status, body) = r.grant(&jag).await;
    assert_eq!(status, 200, "{body}");
    // No scope asked, none in the assertion: the defaults.
    assert_eq!(body["scope"], "mcp:read");
    assert_eq!(
        claims_of(body["access_token"].as_str().unwrap())["sub"],
        "globex:carol"
    );
    r.stop().await;
}

#[tokio::test]
async fn an_assertion_is_used_once() {
    let r = start().await;
    let jag = r.jag("bob").sign();
    let (status, body) = r.grant(&jag).await;
    assert_eq!(status, 200, "{body}");
    refused(&r.grant(&jag).await);
    // Another assertion with the same jti from the same provider: a replay too.
    let first = r.jag("bob").claim("jti", "fixed-jti").sign();
    let second = r.jag("bob").claim("jti", "fixed-jti").sign();
    assert_eq!(r.grant(&first).await.0, 200);
    refused(&r.grant(&second).await);
    r.stop().await;
}

#[tokio::test]
async fn misdirected_forged_expired_and_incomplete_assertions_are_refused() {
    let r = start().await;
    let stranger = TestKey::es256();
    let cases: Vec<(&str, String)> = vec![
        (
            "audience of another server",
            r.jag("bob").aud("https://as.other.example").sign(),
        ),
        (
            "audience of the resource",
            r.jag("bob").aud(RESOURCE).sign(),
        ),
        ("no audience", r.jag("bob").without("aud").sign()),
        (
            "an untrusted issuer",
            stranger
                .token()
                .typ(Some("oauth-id-jag+jwt"))
                .iss("https://evil.example")
                .sub("bob")
                .aud(&r.issuer)
                .claim("client_id", "agent")
                .claim("jti", next_jti())
                .sign(),
        ),
        (
            "acme's iss, signed by globex's key",
            r.globex
                .token()
                .typ(Some("oauth-id-jag+jwt"))
                .iss(r.acme.issuer())
                .sub("bob")
                .aud(&r.issuer)
                .claim("client_id", "agent")
                .claim("jti", next_jti())
                .sign(),
        ),
        (
            "globex's iss, signed by acme's key",
            r.acme
                .key()
                .token()
                .typ(Some("oauth-id-jag+jwt"))
                .iss(GLOBEX)
                .sub("carol")
                .aud(&r.issuer)
                .claim("client_id", "agent")
                .claim("jti", next_jti())
                .sign(),
        ),
        (
            "acme's iss, signed by a stranger's key",
            stranger
                .token()
                .typ(Some("oauth-id-jag+jwt"))
                .iss(r.acme.issuer())
                .sub("bob")
                .aud(&r.issuer)
                .claim("client_id", "agent")
                .claim("jti", next_jti())
                .sign(),
        ),
        ("expired", r.jag("bob").exp_in(-600).sign()),
        (
            "no exp",
            r.jag("bob").without("exp").claim("iat", now()).sign_exact(),
        ),
        (
            "no iat",
            r.jag("bob")
                .without("iat")
                .claim("exp", now() + 300)
                .sign_exact(),
        ),
        (
            "issued in the future",
            r.jag("bob").claim("iat", now() + 3600).sign(),
        ),
        ("no jti", r.jag("bob").without("jti").sign()),
        ("an empty jti", r.jag("bob").claim("jti", "").sign()),
        ("a numeric jti", r.jag("bob").claim("jti", 7).sign()),
        ("no sub", r.jag("bob").without("sub").sign()),
        ("an empty sub", r.jag("bob").sub("").sign()),
        ("no typ", r.jag("bob").typ(None).sign()),
        ("typ JWT", r.jag("bob").typ(Some("JWT")).sign()),
        ("typ at+jwt", r.jag("bob").typ(Some("at+jwt")).sign()),
        ("no client_id", r.jag("bob").without("client_id").sign()),
        (
            "another client's",
            r.jag("bob").claim("client_id", "other-agent").sign(),
        ),
        (
            "another resource",
            r.jag("bob")
                .claim("resource", "https://elsewhere.example/mcp")
                .sign(),
        ),
        (
            "a resource that is no string",
            r.jag("bob").claim("resource", json!([RESOURCE])).sign(),
        ),
        (
            "a scope that is no string",
            r.jag("bob").claim("scope", json!(["mcp:read"])).sign(),
        ),
        (
            "cnf with an x5t#S256",
            r.jag("bob").claim("cnf", json!({"x5t#S256": "abc"})).sign(),
        ),
        ("cnf not an object", r.jag("bob").claim("cnf", "abc").sign()),
        ("not a JWT", "not-a-jwt".to_owned()),
        ("an alg none token", {
            let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"oauth-id-jag+jwt"}"#);
            let claims = URL_SAFE_NO_PAD.encode(r.jag("bob").claims().to_string());
            format!("{header}.{claims}.")
        }),
    ];
    for (what, assertion) in cases {
        let answer = r.grant(&assertion).await;
        assert_eq!(answer.0, 400, "{what}: {}", answer.1);
        assert_eq!(answer.1["error"], "invalid_grant", "{what}: {}", answer.1);
        assert_eq!(
            answer.1["error_description"], "the assertion is not valid for this server",
            "{what}"
        );
    }
    // None of them spent anything: a good one still works.
    assert_eq!(r.grant(&r.jag("bob").sign()).await.0, 200);
    r.stop().await;
}

#[tokio::test]
async fn the_client_must_authenticate_and_be_the_one_the_assertion_names() {
    let r = start().await;
    let jag = r.jag("bob").sign();
    let form = [("grant_type", JWT_BEARER), ("assertion", jag.as_str())];
    // No client authentication at all.
    let (status, body) = r.request(None, &form, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    // A wrong secret.
    let (status, body) = r.request(Some(("agent", "guess")), &form, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    // Another registered client presenting agent's assertion.
    refused(
        &r.request(Some(("other-agent", "other-secret")), &form, None)
            .await,
    );
    // A client not registered for the grant.
    let (status, body) = r
        .request(Some(("batch", "batch-secret")), &form, None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client")),
        "{body}"
    );
    // A public client (its id alone) is not authenticated.
    let public = r.jag("bob").claim("client_id", "public-app").sign();
    let (status, body) = r
        .request(
            None,
            &[
                ("grant_type", JWT_BEARER),
                ("assertion", &public),
                ("client_id", "public-app"),
            ],
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    // After all that, the assertion was never spent.
    assert_eq!(r.grant(&jag).await.0, 200);
    // With the secret in the form (client_secret_post is not what agent registered).
    let (status, body) = r
        .request(
            None,
            &[
                ("grant_type", JWT_BEARER),
                ("assertion", &r.jag("bob").sign()),
                ("client_id", "agent"),
                ("client_secret", "agent-secret"),
            ],
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    // Missing assertion.
    let (status, body) = r
        .request(
            Some(("agent", "agent-secret")),
            &[("grant_type", JWT_BEARER)],
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    r.stop().await;
}

#[tokio::test]
async fn a_cnf_bound_assertion_needs_a_proof_by_its_key_and_binds_the_token() {
    let r = start().await;
    let key = TestKey::es256();
    let jkt = key.public_jwk().unwrap().thumbprint().unwrap();
    let bound = r.jag("bob").claim("cnf", json!({ "jkt": jkt })).sign();
    let form = [("grant_type", JWT_BEARER), ("assertion", bound.as_str())];
    let agent = Some(("agent", "agent-secret"));
    // No proof.
    let (status, body) = r.request(agent, &form, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{body}"
    );
    // A proof by another key.
    let thief = TestKey::es256();
    let (status, body) = r
        .request(agent, &form, Some(&dpop_proof(&thief, &r.token_url())))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    // A proof by the key, for another URL.
    let (status, body) = r
        .request(
            agent,
            &form,
            Some(&dpop_proof(&key, "http://127.0.0.1:1/token")),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{body}"
    );
    // The key's proof: a bound token (the failed attempts spent nothing).
    let (status, body) = r
        .request(agent, &form, Some(&dpop_proof(&key, &r.token_url())))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let claims = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims["cnf"]["jkt"], jkt.as_str());
    // An unbound assertion with a proof: the token is bound to the proof's key.
    let (status, body) = r
        .request(
            agent,
            &[
                ("grant_type", JWT_BEARER),
                ("assertion", &r.jag("bob").sign()),
            ],
            Some(&dpop_proof(&thief, &r.token_url())),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    r.stop().await;
}

#[tokio::test]
async fn the_sign_in_policy_decides_who_and_cuts_scopes() {
    let r = start().await;
    // mallory is no known user.
    let answer = r.grant(&r.jag("mallory").sign()).await;
    assert_eq!(answer.0, 400, "{}", answer.1);
    assert_eq!(answer.1["error"], "invalid_grant");
    assert!(
        answer.1["error_description"]
            .as_str()
            .unwrap()
            .contains("not allowed to sign in"),
        "{}",
        answer.1
    );
    // The refusal is audited with the answer the client got.
    eventually("the sign-in decision in the audit log", async || {
        r.audit.flush().await.is_ok() && r.sink.lines().iter().any(|l| l.contains("acme:mallory"))
    })
    .await;
    let refusal: Value = r
        .sink
        .lines()
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["method"] == "sign_in" && l["actor"]["sub"] == "acme:mallory")
        .expect("sign_in");
    assert_eq!(refusal["actor"]["client_id"], "agent", "{refusal}");
    assert_eq!(refusal["outcome"]["http"], 400, "{refusal}");
    // bob asks for admin: cut to what the policy grants him.
    let (status, body) = r
        .grant(&r.jag("bob").scope("mcp:read mcp:write admin").sign())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "mcp:read mcp:write");
    // The request's scope is cut to the assertion's: the IdP granted mcp:read only.
    let (status, body) = r
        .request(
            Some(("agent", "agent-secret")),
            &[
                ("grant_type", JWT_BEARER),
                ("assertion", &r.jag("alice").scope("mcp:read").sign()),
                ("scope", "mcp:read admin"),
            ],
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "mcp:read");
    // Only scopes the server does not offer: nothing to grant.
    let (status, body) = r.grant(&r.jag("alice").scope("payroll").sign()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );
    // The user is namespaced by provider: "acme:alice" at globex is someone else (refused).
    let jag = r
        .globex
        .token()
        .typ(Some("oauth-id-jag+jwt"))
        .iss(GLOBEX)
        .sub("alice")
        .aud(&r.issuer)
        .claim("client_id", "agent")
        .claim("jti", next_jti())
        .sign();
    assert_eq!(r.grant(&jag).await.1["error"], "invalid_grant");
    r.stop().await;
}

#[tokio::test]
async fn a_resource_named_in_the_request_must_match_the_assertion() {
    let r = start().await;
    let agent = Some(("agent", "agent-secret"));
    let (status, body) = r
        .request(
            agent,
            &[
                ("grant_type", JWT_BEARER),
                ("assertion", &r.jag("bob").sign()),
                ("resource", "http://127.0.0.1:9999/other"),
            ],
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target")),
        "{body}"
    );
    let (status, body) = r
        .request(
            agent,
            &[
                ("grant_type", JWT_BEARER),
                ("assertion", &r.jag("bob").sign()),
                ("resource", RESOURCE),
            ],
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    r.stop().await;
}

#[tokio::test]
async fn without_a_trusted_issuer_the_grant_is_not_offered() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let server = AuthServer::builder(issuer.clone())
        .client(ClientSpec::service("agent", "agent-secret").grant_types([GrantType::JwtBearer]))
        .build()
        .await
        .expect("server");
    assert!(
        !server
            .metadata()
            .grant_types_supported
            .unwrap()
            .iter()
            .any(|g| g == JWT_BEARER)
    );
    let served = Served::app(listener, server.router());
    let key = TestKey::es256();
    let jag = key
        .token()
        .typ(Some("oauth-id-jag+jwt"))
        .iss("https://idp.example")
        .sub("bob")
        .aud(&issuer)
        .claim("client_id", "agent")
        .claim("jti", next_jti())
        .sign();
    let res = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .basic_auth("agent", Some("agent-secret"))
        .form(&[("grant_type", JWT_BEARER), ("assertion", jag.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_grant_type", "{body}");
    served.stop().await;
}

#[tokio::test]
async fn open_registration_cannot_make_a_jwt_bearer_client() {
    let r = start().await;
    let res = r
        .http
        .post(format!("{}/register", r.issuer))
        .json(&json!({
            "client_name": "sneaky",
            "grant_types": [JWT_BEARER],
            "redirect_uris": ["http://127.0.0.1:4000/cb"],
            "token_endpoint_auth_method": "client_secret_basic",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client_metadata", "{body}");
    r.stop().await;
}

#[tokio::test]
async fn junk_at_the_grant_never_panics() {
    let r = start().await;
    let long = "a".repeat(20_000);
    let junk = [
        "",
        ".",
        "..",
        "...",
        "a.b.c",
        "eyJhbGciOiJFUzI1NiJ9.e30.",
        "eyJhbGciOiJFUzI1NiJ9.bnVsbA.AAAA",
        long.as_str(),
        "\u{0}\u{0}.\u{0}.\u{0}",
    ];
    for assertion in junk {
        let (status, body) = r.grant(assertion).await;
        assert_eq!(status, 400, "{assertion:?}: {body}");
        assert_eq!(body["error"], "invalid_grant", "{assertion:?}: {body}");
    }
    r.stop().await;
}

/// A [`MemoryStore`] whose `put_if_absent` (the jti records) fails while `down` is set.
#[derive(Default)]
struct FlakyStore {
    inner: MemoryStore,
    down: AtomicBool,
}

impl Store for FlakyStore {
    fn put<'a>(
        &'a self,
        kind: Kind,
        key: &'a str,
        data: Vec<u8>,
        expires_at: Option<i64>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.inner.put(kind, key, data, expires_at)
    }

    fn put_if_absent<'a>(
        &'a self,
        kind: Kind,
        key: &'a str,
        data: Vec<u8>,
        expires_at: Option<i64>,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::unavailable("test: down"));
            }
            self.inner.put_if_absent(kind, key, data, expires_at).await
        })
    }

    fn get<'a>(&'a self, kind: Kind, key: &'a str) -> BoxFuture<'a, StoreResult<Option<Stored>>> {
        self.inner.get(kind, key)
    }

    fn take<'a>(&'a self, kind: Kind, key: &'a str) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
        self.inner.take(kind, key)
    }

    fn redeem<'a>(
        &'a self,
        kind: Kind,
        key: &'a str,
    ) -> BoxFuture<'a, StoreResult<Redeemed<Vec<u8>>>> {
        self.inner.redeem(kind, key)
    }

    fn revoke_family<'a>(&'a self, family: &'a str, until: i64) -> BoxFuture<'a, StoreResult<()>> {
        self.inner.revoke_family(family, until)
    }

    fn is_family_revoked<'a>(&'a self, family: &'a str) -> BoxFuture<'a, StoreResult<bool>> {
        self.inner.is_family_revoked(family)
    }
}

#[tokio::test]
async fn a_store_that_cannot_record_the_jti_is_503_and_spends_nothing() {
    let idp = TestKey::es256();
    let store = Arc::new(FlakyStore::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let server = AuthServer::builder(issuer.clone())
        .resource(RESOURCE)
        .rate_limits(None, None, None)
        .store(store.clone())
        .trusted_idp(
            TrustedIdp::new("acme", "https://idp.acme.example")
                .jwks_json(serde_json::to_string(&TestKey::jwks(&[&idp])).unwrap()),
        )
        .client(ClientSpec::service("agent", "agent-secret").grant_types([GrantType::JwtBearer]))
        .build()
        .await
        .expect("server");
    let served = Served::app(listener, server.router());
    let jag = idp
        .token()
        .typ(Some("oauth-id-jag+jwt"))
        .iss("https://idp.acme.example")
        .sub("bob")
        .aud(&issuer)
        .claim("client_id", "agent")
        .claim("jti", next_jti())
        .sign();
    let send = || async {
        let res = reqwest::Client::new()
            .post(format!("{issuer}/token"))
            .basic_auth("agent", Some("agent-secret"))
            .form(&[("grant_type", JWT_BEARER), ("assertion", jag.as_str())])
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json::<Value>().await.unwrap())
    };
    store.down.store(true, Ordering::SeqCst);
    let (status, body) = send().await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{body}"
    );
    store.down.store(false, Ordering::SeqCst);
    let (status, body) = send().await;
    assert_eq!(status, 200, "{body}");
    served.stop().await;
}

#[tokio::test]
async fn a_cnf_bound_assertion_is_refused_where_dpop_is_off() {
    let idp = TestKey::es256();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let server = AuthServer::builder(issuer.clone())
        .resource(RESOURCE)
        .rate_limits(None, None, None)
        .trusted_idp(
            TrustedIdp::new("acme", "https://idp.acme.example")
                .jwks_json(serde_json::to_string(&TestKey::jwks(&[&idp])).unwrap()),
        )
        .client(ClientSpec::service("agent", "agent-secret").grant_types([GrantType::JwtBearer]))
        .build()
        .await
        .expect("server");
    let served = Served::app(listener, server.router());
    let key = TestKey::es256();
    let jkt = key.public_jwk().unwrap().thumbprint().unwrap();
    let jag = idp
        .token()
        .typ(Some("oauth-id-jag+jwt"))
        .iss("https://idp.acme.example")
        .sub("bob")
        .aud(&issuer)
        .claim("client_id", "agent")
        .claim("jti", next_jti())
        .claim("cnf", json!({ "jkt": jkt }))
        .sign();
    let token_url = format!("{issuer}/token");
    // Even with the key's proof: this server issues no bound tokens, so it cannot honour
    // the binding, and a bearer token would drop it.
    let res = reqwest::Client::new()
        .post(&token_url)
        .basic_auth("agent", Some("agent-secret"))
        .header("dpop", dpop_proof(&key, &token_url))
        .form(&[("grant_type", JWT_BEARER), ("assertion", jag.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant", "{body}");
    served.stop().await;
}

#[tokio::test]
async fn an_id_jag_signed_by_another_jwt_library_is_accepted() {
    let r = start().await;
    let pem = r.globex.key().to_pkcs8_pem().unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.typ = Some("oauth-id-jag+jwt".into());
    header.kid = Some(r.globex.kid().to_owned());
    let claims = json!({
        "iss": GLOBEX, "sub": "carol", "aud": r.issuer, "client_id": "agent",
        "resource": RESOURCE, "scope": "mcp:read", "jti": next_jti(),
        "iat": now(), "exp": now() + 300,
    });
    let jag = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    let (status, body) = r.grant(&jag).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        claims_of(body["access_token"].as_str().unwrap())["sub"],
        "globex:carol"
    );
    r.stop().await;
}

#[tokio::test]
async fn an_idp_whose_keys_cannot_be_fetched_is_503_not_a_refusal() {
    let r = start().await;
    r.acme.set_jwks_mode(JwksMode::Status(503));
    let (status, body) = r.grant(&r.jag("bob").sign()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{body}"
    );
    r.stop().await;
}

#[tokio::test]
async fn a_client_registered_with_the_initial_access_token_may_use_the_grant() {
    let idp = TestKey::es256();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let server = AuthServer::builder(issuer.clone())
        .resource(RESOURCE)
        .scopes(["mcp:read", "mcp:write"])
        .rate_limits(None, None, None)
        .registration(Registration::InitialAccessToken(
            "operator-issued-iat".into(),
        ))
        .trusted_idp(
            TrustedIdp::new("acme", "https://idp.acme.example")
                .jwks_json(serde_json::to_string(&TestKey::jwks(&[&idp])).unwrap()),
        )
        .build()
        .await
        .expect("server");
    let served = Served::app(listener, server.router());
    let http = reqwest::Client::new();
    let metadata = json!({"client_name": "agent", "grant_types": [JWT_BEARER],
        "token_endpoint_auth_method": "client_secret_post", "scope": "mcp:read"});
    // Without the token: nothing registers.
    let res = http
        .post(format!("{issuer}/register"))
        .json(&metadata)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    let res = http
        .post(format!("{issuer}/register"))
        .bearer_auth("operator-issued-iat")
        .json(&metadata)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let registered: Value = res.json().await.unwrap();
    let id = registered["client_id"].as_str().unwrap();
    let secret = registered["client_secret"].as_str().unwrap();
    let jag = idp
        .token()
        .typ(Some("oauth-id-jag+jwt"))
        .iss("https://idp.acme.example")
        .sub("bob")
        .aud(&issuer)
        .claim("client_id", id)
        .claim("jti", next_jti())
        .sign();
    let res = http
        .post(format!("{issuer}/token"))
        .form(&[
            ("grant_type", JWT_BEARER),
            ("assertion", jag.as_str()),
            ("client_id", id),
            ("client_secret", secret),
            ("scope", "mcp:read mcp:write"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.unwrap();
    // Cut to the scope it registered with.
    assert_eq!(body["scope"], "mcp:read", "{body}");
    served.stop().await;
}
