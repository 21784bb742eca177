//! The metrics registry fed by the bearer layer, the access policy and the operation layer:
//! names and labels as the OpenTelemetry MCP conventions give them (in Prometheus form),
//! counts that move by exactly the requests made, bounded label sets, and no subject or token
//! anywhere in the exposition.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use mcp_oauth::OAuth;
use mcp_oauth::metrics::Metrics;
use mcp_oauth::policy::{Catalog, Policy, PolicyConfig, ToolInfo};
use mcp_oauth::testing::TestKey;
use mcp_oauth::verify::JwtVerifier;
use serde_json::{Value, json};
use tower::{Service as _, ServiceBuilder, ServiceExt as _, service_fn};

const SECRET: [u8; 32] = [7; 32];
const ISSUER: &str = "https://auth.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";
const SUBJECT: &str = "subject-4f1c9e";

/// One sample of the exposition: metric name and labels.
type Key = (String, BTreeMap<String, String>);

/// Parses the Prometheus text format (what a scraper does), checking that every sample's
/// metric was declared with `# TYPE` and every label value is quoted.
fn parse(text: &str) -> (BTreeMap<String, String>, BTreeMap<Key, f64>) {
    let mut types = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').expect("labels end with }");
                let mut labels = BTreeMap::new();
                for pair in split_labels(inner) {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .expect("quoted label value");
                    labels.insert(k.to_owned(), v.to_owned());
                }
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), BTreeMap::new()),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(&name)
            .to_owned();
        assert!(types.contains_key(&family), "{name} has no # TYPE line");
        samples.insert((name, labels), value.parse::<f64>().expect("number"));
    }
    (types, samples)
}

/// The label pairs of a series, split at the commas outside quotes.
fn split_labels(inner: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < inner.len() {
        out.push(&inner[start..]);
    }
    out
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn value(samples: &BTreeMap<Key, f64>, name: &str, pairs: &[(&str, &str)]) -> f64 {
    samples
        .get(&(name.to_owned(), labels(pairs)))
        .copied()
        .unwrap_or(0.0)
}

fn policy() -> Policy {
    let config = PolicyConfig::from_toml(
        r#"
[[policy.rule]]
id    = "staff-search"
who   = { email_domains = ["example.com"] }
tools = ["search"]

[[policy.rule]]
id             = "staff-write"
who            = { email_domains = ["example.com"] }
tools          = ["write"]
step_up_scopes = ["files:write"]
"#,
        "policy.toml",
    )
    .expect("toml");
    let catalog = Catalog::new()
        .tool(ToolInfo::new("search", json!({"type": "object"})))
        .tool(ToolInfo::new("write", json!({"type": "object"})))
        .tool(ToolInfo::new("drop_table", json!({"type": "object"})));
    Policy::new(config, catalog).expect("policy")
}

fn oauth(metrics: &Metrics) -> OAuth {
    OAuth::builder()
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
        .expect("oauth")
        .with_metrics(metrics.clone())
}

fn token(email: &str) -> String {
    TestKey::hs256(&SECRET)
        .token()
        .iss(ISSUER)
        .aud(RESOURCE)
        .sub(SUBJECT)
        .claim("email", email)
        .exp_in(300)
        .sign()
}

type Svc = tower::util::BoxService<
    Request<Full<Bytes>>,
    Response<mcp_oauth::layer::ResponseBody<http_body_util::Either<Full<Bytes>, Full<Bytes>>>>,
    std::convert::Infallible,
>;

/// The bearer layer, then the operation layer, around a service that answers `{}`.
fn service(metrics: &Metrics) -> Svc {
    let svc = ServiceBuilder::new()
        .layer(oauth(metrics).layer())
        .layer(metrics.layer())
        .service(service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            ))))
        }));
    tower::util::BoxService::new(svc)
}

async fn post(svc: &mut Svc, authorization: Option<&str>, body: Value) -> StatusCode {
    let mut req = Request::post(RESOURCE)
        .header(header::CONTENT_TYPE, "application/json")
        .header("mcp-protocol-version", "2025-06-18");
    if let Some(value) = authorization {
        req = req.header(header::AUTHORIZATION, value);
    }
    let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    svc.ready().await.unwrap().call(req).await.unwrap().status()
}

fn call(tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {}}})
}

const AUTH: &str = "mcp_oauth_auth_results_total";
const POLICY: &str = "mcp_oauth_policy_decisions_total";
const DURATION: &str = "mcp_server_operation_duration_seconds";

#[tokio::test]
async fn each_request_moves_exactly_its_counters() {
    let metrics = Metrics::new();
    metrics.register_tools(["search", "write"]);
    let mut svc = service(&metrics);
    let staff = format!("Bearer {}", token("ana@example.com"));
    let stranger = format!("Bearer {}", token("eve@elsewhere.org"));

    let before = parse(&metrics.render()).1;
    assert_eq!(
        post(&mut svc, None, call("search")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(&mut svc, Some("Bearer not.a.token"), call("search")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(&mut svc, Some(&staff), call("search")).await,
        StatusCode::OK
    );
    assert_eq!(
        post(&mut svc, Some(&staff), call("search")).await,
        StatusCode::OK
    );
    // The write rule needs files:write: a step-up.
    assert_eq!(
        post(&mut svc, Some(&staff), call("write")).await,
        StatusCode::FORBIDDEN
    );
    // No rule permits drop_table: refused with a JSON-RPC error (HTTP 200).
    assert_eq!(
        post(&mut svc, Some(&staff), call("drop_table")).await,
        StatusCode::OK
    );
    // No rule applies to this caller.
    assert_eq!(
        post(&mut svc, Some(&stranger), call("search")).await,
        StatusCode::OK
    );

    let text = metrics.render();
    let (types, after) = parse(&text);
    assert_eq!(types[AUTH], "counter");
    assert_eq!(types[POLICY], "counter");
    assert_eq!(types[DURATION], "histogram");
    let moved = |name: &str, pairs: &[(&str, &str)]| {
        value(&after, name, pairs) - value(&before, name, pairs)
    };
    assert_eq!(moved(AUTH, &[("result", "missing_token")]), 1.0, "{text}");
    assert_eq!(moved(AUTH, &[("result", "invalid_token")]), 1.0, "{text}");
    assert_eq!(
        moved(AUTH, &[("result", "insufficient_scope")]),
        1.0,
        "{text}"
    );
    // The two searches, the refused drop_table and the stranger's refused search.
    assert_eq!(moved(AUTH, &[("result", "ok")]), 4.0, "{text}");
    assert_eq!(
        moved(POLICY, &[("rule_id", "staff-search"), ("effect", "allow")]),
        2.0,
        "{text}"
    );
    assert_eq!(
        moved(POLICY, &[("rule_id", "staff-write"), ("effect", "step_up")]),
        1.0,
        "{text}"
    );
    assert_eq!(
        moved(POLICY, &[("rule_id", "_NONE"), ("effect", "deny")]),
        2.0,
        "{text}"
    );

    // Four calls reached the service: the two searches, drop_table (refused in its place
    // by the policy: not an operation of the service) is not timed, nor the stranger's.
    let search = [
        ("mcp_method_name", "tools/call"),
        ("gen_ai_tool_name", "search"),
        ("gen_ai_operation_name", "execute_tool"),
        ("mcp_protocol_version", "2025-06-18"),
        ("network_transport", "tcp"),
        ("network_protocol_name", "http"),
    ];
    assert_eq!(
        value(
            &after,
            "mcp_server_operation_duration_seconds_count",
            &search
        ),
        2.0,
        "{text}"
    );
    let mut inf = search.to_vec();
    inf.push(("le", "+Inf"));
    assert_eq!(
        value(&after, "mcp_server_operation_duration_seconds_bucket", &inf),
        2.0
    );

    assert!(!text.contains(SUBJECT), "no subject in {text}");
    assert!(!text.contains("example.com"), "no email in {text}");
    assert!(!text.contains(&staff[7..]), "no token in {text}");
}

#[tokio::test]
async fn invented_method_and_tool_names_add_no_series() {
    let metrics = Metrics::new();
    metrics.register_tools(["search"]);
    let oauth = OAuth::builder()
        .resource(RESOURCE)
        .authorization_server(ISSUER)
        .verifier(
            JwtVerifier::builder()
                .issuer(ISSUER)
                .hmac_secret(SECRET.as_slice())
                .build()
                .expect("verifier"),
        )
        .mirror_authorization_server(false)
        .build()
        .expect("oauth")
        .with_metrics(metrics.clone());
    let mut svc: Svc = tower::util::BoxService::new(
        ServiceBuilder::new()
            .layer(oauth.layer())
            .layer(metrics.layer())
            .service(service_fn(|_req: Request<Full<Bytes>>| async {
                Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
            })),
    );
    let bearer = format!("Bearer {}", token("ana@example.com"));
    for i in 0..3 {
        let method = format!("x/invented-{i}");
        let body = json!({"jsonrpc": "2.0", "id": i, "method": method});
        assert_eq!(post(&mut svc, Some(&bearer), body).await, StatusCode::OK);
    }
    let series_after_first = {
        let body = json!({"jsonrpc": "2.0", "id": 9, "method": "x/another"});
        post(&mut svc, Some(&bearer), body).await;
        parse(&metrics.render()).1.len()
    };
    for i in 0..3 {
        post(&mut svc, Some(&bearer), call(&format!("invented_tool_{i}"))).await;
    }
    post(
        &mut svc,
        Some(&bearer),
        json!({"jsonrpc": "2.0", "id": 1, "method": "y/more"}),
    )
    .await;
    post(&mut svc, Some(&bearer), call("invented_tool_last")).await;
    let text = metrics.render();
    let samples = parse(&text).1;
    assert_eq!(
        samples.len(),
        series_after_first + 17,
        "one histogram (17 samples) for the unknown tools, none more: {text}"
    );
    assert!(!text.contains("invented"), "{text}");
    assert!(!text.contains("x/"), "{text}");
    let other = [
        ("mcp_method_name", "_OTHER"),
        ("mcp_protocol_version", "2025-06-18"),
        ("network_transport", "tcp"),
        ("network_protocol_name", "http"),
    ];
    assert_eq!(
        value(
            &samples,
            "mcp_server_operation_duration_seconds_count",
            &other
        ),
        5.0,
        "{text}"
    );
    let tool = [
        ("mcp_method_name", "tools/call"),
        ("gen_ai_tool_name", "_OTHER"),
        ("gen_ai_operation_name", "execute_tool"),
        ("mcp_protocol_version", "2025-06-18"),
        ("network_transport", "tcp"),
        ("network_protocol_name", "http"),
    ];
    assert_eq!(
        value(
            &samples,
            "mcp_server_operation_duration_seconds_count",
            &tool
        ),
        4.0,
        "{text}"
    );
}

#[tokio::test]
async fn an_error_status_is_the_error_type() {
    let metrics = Metrics::new();
    let mut svc = ServiceBuilder::new()
        .layer(metrics.layer())
        .service(service_fn(|_req: Request<Full<Bytes>>| async {
            let mut res = Response::new(Full::new(Bytes::new()));
            *res.status_mut() = StatusCode::BAD_GATEWAY;
            Ok::<_, std::convert::Infallible>(res)
        }));
    let req = Request::post("/mcp")
        .body(Full::new(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        )))
        .unwrap();
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    let samples = parse(&metrics.render()).1;
    let failed = [
        ("mcp_method_name", "tools/list"),
        ("error_type", "502"),
        ("network_transport", "tcp"),
        ("network_protocol_name", "http"),
    ];
    assert_eq!(
        value(
            &samples,
            "mcp_server_operation_duration_seconds_count",
            &failed
        ),
        1.0
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_unread_and_not_timed() {
    let metrics = Metrics::new();
    let mut svc = ServiceBuilder::new()
        .layer(metrics.layer().max_body(32))
        .service(service_fn(|_req: Request<Full<Bytes>>| async {
            panic!("the service is not called");
            #[allow(unreachable_code)]
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
        }));
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"pad": "x".repeat(64)}});
    let req = Request::post("/mcp")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let answer: Value = serde_json::from_slice(
        &http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    let samples = parse(&metrics.render()).1;
    assert!(
        !samples
            .keys()
            .any(|(name, _)| name.starts_with("mcp_server_operation_duration_seconds")),
        "{samples:?}"
    );
}
