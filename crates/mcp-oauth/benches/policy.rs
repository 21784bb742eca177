//! What a policy decision costs: a filesystem-like tool set, eight rules (groups, an email
//! domain, a path argument, a forbid, a step-up).
//!
//! - `call/allow`: `Policy::decide` on `read_file` with a path (canonicalised, one Cedar run);
//! - `call/forbid`: the same call under a forbidden folder;
//! - `call/array4`: `read_multiple_files` with four paths (four Cedar runs);
//! - `list/visible`: `Policy::visible` (partial evaluation, arguments unknown).
//!
//! Those build the user's Cedar entity (attributes, groups) for every decision. The bearer
//! layer builds it once per token and keeps it with the verified token; group `layer`
//! measures a whole request through the layer with a token from the verified-token cache:
//!
//! - `layer/auth`: `tools/call` through the layer without an access policy (the body is
//!   still read, for a per-tool scope): the baseline;
//! - `layer/auth+policy`: the same request with the access policy deciding it (subject from
//!   the token's cache, one Cedar run);
//! - `layer/auth+policy/list`: `tools/list` with the answer (four tools) filtered.
//!
//! ```sh
//! cargo bench -p mcp-oauth --features policy --bench policy
//! cargo bench -p mcp-oauth --features policy --bench policy -- --quick      # a smoke run
//! ```
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mcp_oauth::policy::{Catalog, Policy, PolicyConfig, Subject, Target};
use serde_json::json;

const TOOLS: &str = r#"{"tools": [
  {"name": "read_file", "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}}},
  {"name": "read_multiple_files", "inputSchema": {"type": "object",
     "properties": {"paths": {"type": "array", "items": {"type": "string"}}}}},
  {"name": "write_file", "inputSchema": {"type": "object",
     "properties": {"path": {"type": "string"}, "content": {"type": "string"}}}},
  {"name": "list_directory", "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}}}
]}"#;

const POLICY: &str = r#"
[policy]
group_claims = ["groups"]
[policy.arguments]
root = "/srv"
paths = ["path", "paths"]
[policy.groups.admins]
emails = ["root@example.com"]
[[policy.rule]]
id = "staff-read"
who = { email_domains = ["example.com"] }
tools = ["read_*", "list_directory"]
[[policy.rule]]
id = "eng-write"
who = { groups = ["eng"] }
tools = ["write_file"]
args.path = { under = "/srv/team" }
step_up_scopes = ["files:write"]
[[policy.rule]]
id = "no-secrets"
effect = "forbid"
tools = ["read_file", "write_file", "list_directory"]
args.path = { under = "/srv/team/secrets" }
[[policy.rule]]
id = "no-secrets-many"
effect = "forbid"
tools = ["read_multiple_files"]
args.paths = { under = "/srv/team/secrets" }
[[policy.rule]]
id = "admins"
who = { groups = ["admins"] }
tools = ["*"]
"#;

fn bench(c: &mut Criterion) {
    let catalog = Catalog::from_json_str(TOOLS).unwrap();
    let policy = Policy::new(
        PolicyConfig::from_toml(POLICY, "bench.toml").unwrap(),
        catalog,
    )
    .unwrap();
    let alice = Subject::new("alice")
        .email("alice@example.com")
        .scopes(["files:read"])
        .claims(
            json!({"groups": ["eng", "staff"]})
                .as_object()
                .cloned()
                .unwrap(),
        );
    let ok = json!({"path": "team/notes/a.md"});
    let secret = json!({"path": "team/secrets/key"});
    let four = json!({"paths": ["team/a", "team/b", "docs/c", "docs/d"]});
    assert!(
        policy
            .decide(&alice, Target::Tool("read_file"), Some(&ok))
            .is_allowed()
    );

    let mut group = c.benchmark_group("policy");
    group.bench_function("call/allow", |b| {
        b.iter(|| {
            policy.decide(
                black_box(&alice),
                Target::Tool("read_file"),
                Some(black_box(&ok)),
            )
        })
    });
    group.bench_function("call/forbid", |b| {
        b.iter(|| {
            policy.decide(
                black_box(&alice),
                Target::Tool("read_file"),
                Some(black_box(&secret)),
            )
        })
    });
    group.bench_function("call/array4", |b| {
        b.iter(|| {
            policy.decide(
                black_box(&alice),
                Target::Tool("read_multiple_files"),
                Some(black_box(&four)),
            )
        })
    });
    group.bench_function("list/visible", |b| {
        b.iter(|| policy.visible(black_box(&alice), Target::Tool("write_file")))
    });
    group.finish();
}

const SECRET: [u8; 32] = [7; 32];
const ISSUER: &str = "https://auth.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";

type Svc = tower::util::BoxCloneService<
    http::Request<http_body_util::Full<bytes::Bytes>>,
    http::Response<mcp_oauth::layer::ResponseBody<http_body_util::Full<bytes::Bytes>>>,
    std::convert::Infallible,
>;

/// The layer (with or without the policy) around a service answering every request with
/// the four tools' list.
fn layered(policy: Option<Policy>) -> Svc {
    use mcp_oauth::OAuth;
    use mcp_oauth::verify::JwtVerifier;

    let mut builder = OAuth::builder()
        .resource(RESOURCE)
        .authorization_server(ISSUER)
        .tool_scopes("write_file", ["files:write"])
        .verifier(
            JwtVerifier::builder()
                .issuer(ISSUER)
                .hmac_secret(SECRET.as_slice())
                .build()
                .unwrap(),
        )
        .mirror_authorization_server(false);
    if let Some(policy) = policy {
        builder = builder.access_policy(policy);
    }
    let oauth = builder.build().unwrap();
    let list = bytes::Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":1,"result":{}}}"#, TOOLS));
    tower::util::BoxCloneService::new(tower::ServiceBuilder::new().layer(oauth.layer()).service(
        tower::service_fn(
            move |_req: http::Request<http_body_util::Full<bytes::Bytes>>| {
                let mut res = http::Response::new(http_body_util::Full::new(list.clone()));
                res.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                async move { Ok::<_, std::convert::Infallible>(res) }
            },
        ),
    ))
}

fn bench_layer(c: &mut Criterion) {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    let policy = Policy::new(
        PolicyConfig::from_toml(POLICY, "bench.toml").unwrap(),
        Catalog::from_json_str(TOOLS).unwrap(),
    )
    .unwrap();
    let token = mcp_oauth::testing::TestKey::hs256(&SECRET)
        .token()
        .iss(ISSUER)
        .aud(RESOURCE)
        .sub("alice")
        .claim("email", "alice@example.com")
        .claim("groups", json!(["eng", "staff"]))
        .scope("files:read")
        .exp_in(3600)
        .sign();
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"team/notes/a.md"}}}"#;
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let request = |body: &'static str| {
        http::Request::post(RESOURCE)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                body.as_bytes(),
            )))
            .unwrap()
    };
    let run = |svc: &Svc, body: &'static str| {
        let svc = svc.clone();
        let req = request(body);
        runtime.block_on(async move {
            let res = svc.oneshot(req).await.unwrap();
            assert_eq!(res.status(), http::StatusCode::OK);
            res.into_body().collect().await.unwrap().to_bytes().len()
        })
    };
    let plain = layered(None);
    let guarded = layered(Some(policy));
    // The first request of each verifies the token and fills the caches.
    run(&plain, call);
    run(&guarded, call);
    assert!(
        run(&guarded, list) < run(&plain, list),
        "the list is filtered"
    );

    let mut group = c.benchmark_group("layer");
    group.bench_function("auth", |b| b.iter(|| run(&plain, black_box(call))));
    group.bench_function("auth+policy", |b| b.iter(|| run(&guarded, black_box(call))));
    group.bench_function("auth+policy/list", |b| {
        b.iter(|| run(&guarded, black_box(list)))
    });
    group.finish();
}

criterion_group!(benches, bench, bench_layer);
criterion_main!(benches);
