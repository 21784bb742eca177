//! `require_dpop` in the access policy (issue 15: DPoP for some tools): a call to such a tool
//! with a bearer token, even an allowed one, is refused with `401 invalid_token` and the DPoP
//! challenge; the same call with a DPoP-bound token and a valid proof runs; a caller who may
//! not call the tool learns nothing about its DPoP need.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use mcp_oauth::OAuth;
use mcp_oauth::dpop::{self, DpopVerifier};
use mcp_oauth::jose::{Algorithm, Algorithms, Jwk};
use mcp_oauth::policy::{Catalog, POLICY_DENIED, Policy, PolicyConfig, ToolInfo};
use mcp_oauth::testing::TestKey;
use mcp_oauth::verify::JwtVerifier;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt as _, service_fn};

const RESOURCE: &str = "https://mcp.example.com/mcp";
const ISSUER: &str = "https://as.example.com";
const SECRET: [u8; 32] = [7u8; 32];

const POLICY: &str = r#"
[policy]
require_dpop = ["wipe*"]

[[policy.rule]]
id    = "staff"
who   = { email_domains = ["example.com"] }
tools = ["search", "wipe_disk"]
"#;

fn catalog() -> Catalog {
    Catalog::new()
        .tool(ToolInfo::new("search", json!({"type": "object"})))
        .tool(ToolInfo::new("wipe_disk", json!({"type": "object"})))
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn proof(key: &TestKey, token: &str, jti: &str) -> String {
    let jwk = key.public_jwk().unwrap();
    let mut jwk = serde_json::to_value(Jwk {
        kid: None,
        alg: None,
        use_: None,
        ..jwk
    })
    .unwrap();
    jwk.as_object_mut().unwrap().retain(|_, v| !v.is_null());
    let header = json!({"typ": "dpop+jwt", "alg": key.key().alg().as_str(), "jwk": jwk});
    let claims = json!({"jti": jti, "htm": "POST", "htu": RESOURCE, "iat": now(),
        "ath": dpop::access_token_hash(token)});
    key.key()
        .sign_compact(header.to_string().as_bytes(), claims.to_string().as_bytes())
}

fn token(email: &str, bound_to: Option<&TestKey>) -> String {
    let mut builder = TestKey::hs256(&SECRET)
        .token()
        .iss(ISSUER)
        .aud(RESOURCE)
        .sub("u-1")
        .claim("email", email)
        .exp_in(300);
    if let Some(key) = bound_to {
        let jkt = key.public_jwk().unwrap().thumbprint().unwrap();
        builder = builder.claim("cnf", json!({"jkt": jkt}));
    }
    builder.sign()
}

fn oauth() -> OAuth {
    let policy = Policy::new(
        PolicyConfig::from_toml(POLICY, "policy.toml").expect("toml"),
        catalog(),
    )
    .expect("policy");
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
        .dpop(
            DpopVerifier::builder()
                .algorithms([Algorithm::ES256].into_iter().collect::<Algorithms>())
                .build()
                .unwrap(),
        )
        .access_policy(policy)
        .build()
        .unwrap()
}

fn call(tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {}}})
}

async fn send(
    oauth: &OAuth,
    ran: &Arc<AtomicUsize>,
    authorization: String,
    dpop: Option<String>,
    body: &Value,
) -> (StatusCode, String, Value) {
    let ran = ran.clone();
    let svc = ServiceBuilder::new()
        .layer(oauth.layer())
        .service(service_fn(move |_req: Request<Full<Bytes>>| {
            ran.fetch_add(1, Ordering::SeqCst);
            async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                    br#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#,
                ))))
            }
        }));
    let mut req = Request::post(RESOURCE)
        .header(header::AUTHORIZATION, authorization)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(dpop) = dpop {
        req = req.header("dpop", dpop);
    }
    let res = svc
        .oneshot(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let challenge = res
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        challenge,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_bearer_token_cannot_call_a_tool_that_needs_dpop() {
    let oauth = oauth();
    let ran = Arc::new(AtomicUsize::new(0));
    let alice = token("alice@example.com", None);
    let bearer = || format!("Bearer {alice}");

    // Allowed, and no DPoP needed.
    let (status, _, _) = send(&oauth, &ran, bearer(), None, &call("search")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ran.load(Ordering::SeqCst), 1);

    // Allowed by a rule, but the tool needs DPoP: the DPoP challenge, and nothing runs.
    let (status, challenge, body) = send(&oauth, &ran, bearer(), None, &call("wipe_disk")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge,
        r#"Bearer error="invalid_token", error_description="this tool accepts DPoP-bound tokens only: present the token with the DPoP scheme and a DPoP proof", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="mcp:read", DPoP algs="ES256""#
    );
    assert_eq!(body["error"], "invalid_token");
    // Hidden in a batch behind an allowed call: the same.
    let batch = json!([call("search"), {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "wipe_disk"}}]);
    let (status, _, _) = send(&oauth, &ran, bearer(), None, &batch).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(ran.load(Ordering::SeqCst), 1, "no refused call ran");

    // Someone who may not call it at all is refused as for any tool: no hint that DPoP
    // would change anything.
    let mallory = token("mallory@evil.example", None);
    let (status, challenge, body) = send(
        &oauth,
        &ran,
        format!("Bearer {mallory}"),
        None,
        &call("wipe_disk"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(challenge.is_empty());
    assert_eq!(body["error"]["code"], POLICY_DENIED);

    // The same caller with a DPoP-bound token and a valid proof.
    let key = TestKey::es256();
    let bound = token("alice@example.com", Some(&key));
    let (status, _, body) = send(
        &oauth,
        &ran,
        format!("DPoP {bound}"),
        Some(proof(&key, &bound, "jti-1")),
        &call("wipe_disk"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ran.load(Ordering::SeqCst), 2);
    // A DPoP token with a replayed proof never reaches the policy.
    let (status, _, _) = send(
        &oauth,
        &ran,
        format!("DPoP {bound}"),
        Some(proof(&key, &bound, "jti-1")),
        &call("wipe_disk"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(ran.load(Ordering::SeqCst), 2);
}

#[test]
fn require_dpop_must_name_a_listed_tool() {
    let config = PolicyConfig::from_toml("[policy]\nrequire_dpop = [\"wipe_dsk\"]\n", "p.toml")
        .expect("toml");
    let err = Policy::new(config, catalog()).expect_err("a misspelled tool");
    assert!(
        err.to_string()
            .contains("require_dpop: `wipe_dsk` matches no tool the server lists"),
        "{err}"
    );
    let policy = Policy::new(PolicyConfig::new().require_dpop(["*"]), catalog()).expect("policy");
    assert!(policy.requires_dpop("search") && policy.requires_dpop("wipe_disk"));
}
