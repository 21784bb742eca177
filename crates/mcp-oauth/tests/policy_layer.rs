//! The access policy in the bearer layer around any service (an rmcp server of your own, or
//! anything else speaking JSON-RPC over HTTP): calls decided before the service runs, prompts
//! and resources too, and a refused request never reaches the service.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use mcp_oauth::OAuth;
use mcp_oauth::policy::{Catalog, POLICY_DENIED, Policy, PolicyConfig, ToolInfo};
use mcp_oauth::testing::TestKey;
use mcp_oauth::verify::JwtVerifier;
use serde_json::{Value, json};
use tower::{Service as _, ServiceBuilder, ServiceExt as _, service_fn};

const SECRET: [u8; 32] = [7; 32];
const ISSUER: &str = "https://auth.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";

fn policy() -> Policy {
    let config = PolicyConfig::from_toml(
        r#"
[[policy.rule]]
id    = "staff-search"
who   = { email_domains = ["example.com"] }
tools = ["search"]

[[policy.rule]]
id      = "staff-greet"
who     = { email_domains = ["example.com"] }
prompts = ["greet"]

[[policy.rule]]
id        = "staff-readme"
who       = { email_domains = ["example.com"] }
resources = ["file:///docs/readme"]
"#,
        "policy.toml",
    )
    .expect("toml");
    let catalog = Catalog::new()
        .tool(ToolInfo::new(
            "search",
            json!({"type": "object", "properties": {"q": {"type": "string"}}}),
        ))
        .tool(ToolInfo::new("drop_table", json!({"type": "object"})))
        .prompt("greet")
        .prompt("internal")
        .resource("file:///docs/readme")
        .resource("file:///etc/shadow");
    Policy::new(config, catalog).expect("policy")
}

fn token(email: &str) -> String {
    TestKey::hs256(&SECRET)
        .token()
        .iss(ISSUER)
        .aud(RESOURCE)
        .sub("u-1")
        .claim("email", email)
        .sign()
}

/// The layer (with the policy) around a service that counts the requests it gets.
fn service(
    ran: Arc<AtomicUsize>,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<mcp_oauth::layer::ResponseBody<Full<Bytes>>>,
    Error = std::convert::Infallible,
> {
    let oauth = OAuth::builder()
        .resource(RESOURCE)
        .authorization_server(ISSUER)
        .scopes_supported(["mcp:read"])
        .verifier(
            JwtVerifier::builder()
                .issuer(ISSUER)
                .hmac_secret(SECRET.as_slice())
                .build()
                .expect("verifier"),
        )
        .mirror_authorization_server(false)
        .access_policy(policy())
        .build()
        .expect("oauth");
    ServiceBuilder::new()
        .layer(oauth.layer())
        .service(service_fn(move |_req: Request<Full<Bytes>>| {
            ran.fetch_add(1, Ordering::SeqCst);
            async {
                Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
                    br#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
                ))))
            }
        }))
}

async fn post(
    svc: &mut (
             impl tower::Service<
        Request<Full<Bytes>>,
        Response = Response<mcp_oauth::layer::ResponseBody<Full<Bytes>>>,
        Error = std::convert::Infallible,
    > + Send
         ),
    token: &str,
    body: Value,
) -> (StatusCode, Value) {
    let req = Request::post(RESOURCE)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn rpc(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
}

#[tokio::test]
async fn calls_prompts_and_resources_are_decided_before_the_service_runs() {
    let ran = Arc::new(AtomicUsize::new(0));
    let mut svc = service(ran.clone());
    let alice = token("alice@example.com");
    for (method, params) in [
        (
            "tools/call",
            json!({"name": "search", "arguments": {"q": "x"}}),
        ),
        ("prompts/get", json!({"name": "greet"})),
        ("resources/read", json!({"uri": "file:///docs/readme"})),
    ] {
        let (status, body) = post(&mut svc, &alice, rpc(method, params)).await;
        assert_eq!(status, StatusCode::OK, "{method}");
        assert!(body["result"].is_object(), "{method}: {body}");
    }
    // A list runs too, but this service answers it without a list: the layer, which filters
    // lists (tests/policy_lists.rs), withholds an answer it cannot check.
    let (status, body) = post(&mut svc, &alice, rpc("tools/list", json!({}))).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["error"]["code"], -32603, "{body}");
    assert_eq!(ran.load(Ordering::SeqCst), 4);
    for (method, params) in [
        ("tools/call", json!({"name": "drop_table", "arguments": {}})),
        ("prompts/get", json!({"name": "internal"})),
        ("resources/read", json!({"uri": "file:///etc/shadow"})),
        (
            "resources/read",
            json!({"uri": "file:///docs/../etc/shadow"}),
        ),
        ("prompts/get", json!({})),
    ] {
        let (status, body) = post(&mut svc, &alice, rpc(method, params.clone())).await;
        assert_eq!(status, StatusCode::OK, "{method} {params}");
        assert_eq!(
            body["error"]["code"], POLICY_DENIED,
            "{method} {params}: {body}"
        );
    }
    let bob = token("bob@gmail.com");
    let (_, body) = post(
        &mut svc,
        &bob,
        rpc(
            "tools/call",
            json!({"name": "search", "arguments": {"q": "x"}}),
        ),
    )
    .await;
    assert_eq!(body["error"]["code"], POLICY_DENIED);
    assert_eq!(
        ran.load(Ordering::SeqCst),
        4,
        "no refused request reached the service"
    );
}

#[tokio::test]
async fn bodies_the_policy_cannot_read_the_way_the_service_would_are_refused() {
    let ran = Arc::new(AtomicUsize::new(0));
    let mut svc = service(ran.clone());
    let alice = token("alice@example.com");
    for body in [
        // Two names: which one would the service run?
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","name":"drop_table"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/list","params":{"name":"drop_table"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///docs/readme","uri":"file:///etc/shadow"}}"#,
        r#"["tools/call",{"name":"drop_table"}]"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"q":"\uD800"}}}"#,
    ] {
        let req = Request::post(RESOURCE)
            .header(header::AUTHORIZATION, format!("Bearer {alice}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let res = svc.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    // A notification (no id) for a refused call gets no JSON-RPC answer and does not run.
    let req = Request::post(RESOURCE)
        .header(header::AUTHORIZATION, format!("Bearer {alice}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(
            json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "drop_table"}})
                .to_string(),
        )))
        .unwrap();
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}
