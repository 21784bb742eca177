//! Lists filtered by the bearer layer around any MCP server (not only `McpServer`), from the
//! side of a caller who may not call a tool and tries to see it anyway: in a JSON answer, an
//! SSE stream, a batch, on a later page, through a resumed stream; and a server whose answer
//! the layer cannot read (malformed, compressed, too long), which must be withheld, never
//! passed on unfiltered.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use mcp_oauth::OAuth;
use mcp_oauth::policy::{Catalog, Policy, PolicyConfig, ToolInfo};
use mcp_oauth::testing::TestKey;
use mcp_oauth::verify::JwtVerifier;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt as _, service_fn};

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
        .tool(ToolInfo::new("search", json!({"type": "object"})))
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

/// How the stand-in server answers: content type, encoding, and the body for the request.
type Answer = Arc<dyn Fn(&Value) -> (&'static str, Option<&'static str>, String) + Send + Sync>;

/// Everything every list holds: what the policy lets staff see and what it does not.
fn full_result(method: &str) -> Value {
    match method {
        "tools/list" => {
            json!({"tools": [{"name": "search"}, {"name": "drop_table"}, {"name": "not_in_catalog"}]})
        }
        "prompts/list" => json!({"prompts": [{"name": "greet"}, {"name": "internal"}]}),
        "resources/list" => {
            json!({"resources": [{"uri": "file:///docs/readme", "name": "readme"}, {"uri": "file:///etc/shadow", "name": "shadow"}]})
        }
        "resources/templates/list" => {
            json!({"resourceTemplates": [{"uriTemplate": "file:///etc/{name}", "name": "etc"}]})
        }
        _ => json!({}),
    }
}

fn respond(message: &Value) -> Value {
    let method = message["method"].as_str().unwrap_or_default();
    json!({"jsonrpc": "2.0", "id": message["id"], "result": full_result(method)})
}

fn answers(body: &Value) -> Value {
    match body {
        Value::Array(items) => Value::Array(items.iter().map(respond).collect()),
        one => respond(one),
    }
}

fn json_server() -> Answer {
    Arc::new(|body| ("application/json", None, answers(body).to_string()))
}

fn sse_server() -> Answer {
    Arc::new(|body| {
        let mut out = String::from("id: 0\nretry: 1000\ndata:\n\n");
        out.push_str(
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n",
        );
        let messages = match answers(body) {
            Value::Array(items) => items,
            one => vec![one],
        };
        for (i, m) in messages.iter().enumerate() {
            // The JSON split over several data lines, as SSE allows.
            let text = serde_json::to_string_pretty(m).unwrap();
            let data: String = text.lines().map(|l| format!("data: {l}\r\n")).collect();
            out.push_str(&format!("id: {}\r\n{data}\r\n", i + 1));
        }
        ("text/event-stream", None, out)
    })
}

type Seen = Arc<Mutex<Vec<HeaderMap>>>;

fn layered(
    answer: Answer,
    seen: Seen,
    limit: Option<usize>,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<mcp_oauth::layer::ResponseBody<Full<Bytes>>>,
    Error = std::convert::Infallible,
> + Send {
    let mut builder = OAuth::builder()
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
        .access_policy(policy());
    if let Some(limit) = limit {
        builder = builder.max_body_bytes(limit);
    }
    let oauth = builder.build().expect("oauth");
    ServiceBuilder::new()
        .layer(oauth.layer())
        .service(service_fn(move |req: Request<Full<Bytes>>| {
            let answer = answer.clone();
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(req.headers().clone());
                let bytes = req.into_body().collect().await.unwrap().to_bytes();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let (kind, encoding, text) = answer(&body);
                let mut res = Response::new(Full::new(Bytes::from(text)));
                res.headers_mut()
                    .insert(header::CONTENT_TYPE, kind.parse().unwrap());
                if let Some(encoding) = encoding {
                    res.headers_mut()
                        .insert(header::CONTENT_ENCODING, encoding.parse().unwrap());
                }
                Ok::<_, std::convert::Infallible>(res)
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
    body: &Value,
) -> (StatusCode, HeaderMap, String) {
    let req = Request::post(RESOURCE)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .header(header::ACCEPT_ENCODING, "gzip, br")
        .header("last-event-id", "3")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

/// The JSON-RPC messages of a JSON or SSE answer.
fn messages(headers: &HeaderMap, text: &str) -> Vec<Value> {
    let kind = headers[header::CONTENT_TYPE].to_str().unwrap();
    let values: Vec<Value> = if kind.starts_with("text/event-stream") {
        text.split("\n\n")
            .filter_map(|event| {
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                serde_json::from_str(&data.join("\n")).ok()
            })
            .collect()
    } else {
        vec![serde_json::from_str(text).unwrap()]
    };
    values
        .into_iter()
        .flat_map(|v| match v {
            Value::Array(items) => items,
            one => vec![one],
        })
        .collect()
}

fn rpc(id: u64, method: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {}})
}

const HIDDEN: [&str; 5] = [
    "drop_table",
    "not_in_catalog",
    "internal",
    "file:///etc/shadow",
    "file:///etc/{name}",
];

#[tokio::test]
async fn a_caller_never_sees_what_it_may_not_use_in_json_sse_or_a_batch() {
    let alice = token("alice@example.com");
    let batch = json!([
        rpc(1, "tools/list"),
        rpc(2, "prompts/list"),
        rpc(3, "resources/list"),
        rpc(4, "resources/templates/list"),
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
    ]);
    for (name, server) in [("json", json_server()), ("sse", sse_server())] {
        let seen = Seen::default();
        let mut svc = layered(server, seen.clone(), None);
        for method in [
            "tools/list",
            "prompts/list",
            "resources/list",
            "resources/templates/list",
        ] {
            let (status, headers, text) = post(&mut svc, &alice, &rpc(9, method)).await;
            assert_eq!(status, StatusCode::OK, "{name} {method}: {text}");
            for hidden in HIDDEN {
                assert!(!text.contains(hidden), "{name} {method}: {text}");
            }
            let all = messages(&headers, &text);
            let answer = all.iter().find(|m| m["id"] == 9).expect("the answer");
            assert!(answer["result"].is_object(), "{name} {method}: {text}");
            if name == "sse" {
                // The rest of the stream is kept: the notification and the priming event.
                assert!(text.contains("notifications/progress"), "{text}");
                assert!(text.starts_with("id: 0\nretry: 1000\n"), "{text}");
            }
        }
        let (status, headers, text) = post(&mut svc, &alice, &batch).await;
        assert_eq!(status, StatusCode::OK, "{name} batch: {text}");
        let all = messages(&headers, &text);
        let result = |id: u64| {
            all.iter()
                .find(|m| m["id"] == id)
                .map(|m| m["result"].clone())
                .unwrap_or_else(|| panic!("{name}: no answer {id} in {text}"))
        };
        assert_eq!(result(1)["tools"], json!([{"name": "search"}]));
        assert_eq!(result(2)["prompts"], json!([{"name": "greet"}]));
        assert_eq!(
            result(3)["resources"],
            json!([{"uri": "file:///docs/readme", "name": "readme"}])
        );
        assert_eq!(result(4)["resourceTemplates"], json!([]));

        // Someone the policy knows nothing about sees nothing at all.
        let (_, headers, text) = post(
            &mut svc,
            &token("mallory@evil.example"),
            &rpc(5, "tools/list"),
        )
        .await;
        let all = messages(&headers, &text);
        let answer = all.iter().find(|m| m["id"] == 5).expect("the answer");
        assert_eq!(answer["result"]["tools"], json!([]), "{name}: {text}");

        // The server was asked for an uncompressed answer, and not to resume a stream
        // (a replay would bypass the filter).
        for headers in seen.lock().unwrap().iter() {
            assert!(!headers.contains_key(header::ACCEPT_ENCODING), "{name}");
            assert!(!headers.contains_key("last-event-id"), "{name}");
        }
    }
}

#[tokio::test]
async fn every_page_is_filtered_whatever_the_cursor() {
    // The server pages its tools: two per page, the hidden one on page 2, any cursor the
    // caller makes up answered too.
    let pages: Answer = Arc::new(|body| {
        let cursor = body["params"]["cursor"].as_str().unwrap_or("");
        let result = match cursor {
            "" => {
                json!({"tools": [{"name": "search"}, {"name": "not_in_catalog"}], "nextCursor": "p2"})
            }
            _ => json!({"tools": [{"name": "drop_table"}, {"name": "search"}]}),
        };
        (
            "application/json",
            None,
            json!({"jsonrpc": "2.0", "id": body["id"], "result": result}).to_string(),
        )
    });
    let mut svc = layered(pages, Seen::default(), None);
    let alice = token("alice@example.com");
    let (_, _, first) = post(&mut svc, &alice, &rpc(1, "tools/list")).await;
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["result"]["tools"], json!([{"name": "search"}]));
    assert_eq!(first["result"]["nextCursor"], "p2");
    for cursor in ["p2", "../../admin", "\u{0}", "p2p2p2"] {
        let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"cursor": cursor}});
        let (status, _, text) = post(&mut svc, &alice, &body).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!text.contains("drop_table"), "{cursor:?}: {text}");
    }
}

#[tokio::test]
async fn an_answer_the_layer_cannot_read_is_withheld() {
    let alice = token("alice@example.com");
    let leaky = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"drop_table"}]}}"#;
    let cases: Vec<(&str, Answer)> = vec![
        (
            "not json",
            Arc::new(|_| ("application/json", None, "drop_table".to_owned())),
        ),
        (
            "two tools members",
            Arc::new(|_| {
                (
                    "application/json",
                    None,
                    r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"tools":[{"name":"drop_table"}]}}"#.to_owned(),
                )
            }),
        ),
        (
            "item without a name",
            Arc::new(|_| {
                (
                    "application/json",
                    None,
                    r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"title":"drop_table"}]}}"#
                        .to_owned(),
                )
            }),
        ),
        (
            "list under another key",
            Arc::new(|_| {
                (
                    "application/json",
                    None,
                    r#"{"jsonrpc":"2.0","id":1,"result":{"Tools":[{"name":"drop_table"}]}}"#
                        .to_owned(),
                )
            }),
        ),
        (
            "compressed",
            Arc::new(move |_| ("application/json", Some("gzip"), leaky.to_owned())),
        ),
        (
            "plain text",
            Arc::new(move |_| ("text/plain", None, leaky.to_owned())),
        ),
        (
            "sse data not json",
            Arc::new(|_| {
                (
                    "text/event-stream",
                    None,
                    "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"drop_table\"}]}\n\n".to_owned(),
                )
            }),
        ),
        (
            "too long",
            Arc::new(|_| {
                let padding = "x".repeat(5000);
                (
                    "application/json",
                    None,
                    format!(
                        r#"{{"jsonrpc":"2.0","id":1,"result":{{"tools":[{{"name":"drop_table","description":"{padding}"}}]}}}}"#
                    ),
                )
            }),
        ),
    ];
    for (case, answer) in cases {
        let mut svc = layered(answer, Seen::default(), Some(4096));
        let (status, headers, text) = post(&mut svc, &alice, &rpc(1, "tools/list")).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{case}: {text}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{case}");
        assert!(!text.contains("drop_table"), "{case}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["id"], 1, "{case}");
        assert_eq!(v["error"]["code"], -32603, "{case}");
    }
}

#[tokio::test]
async fn answers_to_other_requests_pass_untouched() {
    // A call's result is not a list: it is passed on byte for byte, even if it looks odd.
    let odd =
        r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"drop_table"}]}}"#;
    let server: Answer = Arc::new(move |_| ("text/plain", Some("gzip"), odd.to_owned()));
    let seen = Seen::default();
    let mut svc = layered(server, seen.clone(), None);
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "search", "arguments": {}}});
    let (status, headers, text) = post(&mut svc, &token("alice@example.com"), &body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text, odd);
    assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
    // Only a list request loses its Accept-Encoding.
    assert!(seen.lock().unwrap()[0].contains_key(header::ACCEPT_ENCODING));
}

/// A plain rmcp server (its own `#[tool_router]`, no `McpServer`) behind the layer, answering
/// with JSON and with SSE: the list the caller gets is the policy's.
mod plain_rmcp {
    use super::*;
    use mcp_oauth::rmcp::streamable_http_config;
    use rmcp::model::{CallToolResult, ContentBlock};
    use rmcp::transport::streamable_http_server::StreamableHttpService;
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::{ErrorData, tool, tool_router};
    use tower_layer::Layer as _;

    #[derive(Clone)]
    struct Plain;

    #[tool_router(server_handler)]
    impl Plain {
        #[tool(description = "Search")]
        async fn search(&self) -> Result<CallToolResult, ErrorData> {
            Ok(CallToolResult::success(vec![ContentBlock::text("found")]))
        }

        #[tool(description = "Drop a table")]
        async fn drop_table(&self) -> Result<CallToolResult, ErrorData> {
            Ok(CallToolResult::success(vec![ContentBlock::text("dropped")]))
        }
    }

    #[tokio::test]
    async fn an_rmcp_server_lists_only_what_the_policy_allows_in_json_and_sse() {
        for json_response in [true, false] {
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
                .access_policy(policy())
                .build()
                .expect("oauth");
            let service = StreamableHttpService::new(
                || Ok(Plain),
                LocalSessionManager::default().into(),
                streamable_http_config(&oauth).with_json_response(json_response),
            );
            let app = axum::Router::new().route_service("/mcp", oauth.layer().layer(service));
            let req = Request::post(RESOURCE)
                .header(header::HOST, "mcp.example.com")
                .header(
                    header::AUTHORIZATION,
                    format!("Bearer {}", token("alice@example.com")),
                )
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::ACCEPT, "application/json, text/event-stream")
                .header("mcp-protocol-version", "2025-11-25")
                .body(axum::body::Body::from(rpc(1, "tools/list").to_string()))
                .unwrap();
            let res = app.oneshot(req).await.unwrap();
            assert_eq!(
                res.status(),
                StatusCode::OK,
                "json_response {json_response}"
            );
            let headers = res.headers().clone();
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            let text = String::from_utf8(bytes.to_vec()).unwrap();
            assert_eq!(
                headers[header::CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .starts_with("text/event-stream"),
                !json_response,
                "{text}"
            );
            let all = messages(&headers, &text);
            let answer = all.iter().find(|m| m["id"] == 1).expect("the answer");
            let names: Vec<&str> = answer["result"]["tools"]
                .as_array()
                .expect("tools")
                .iter()
                .filter_map(|t| t["name"].as_str())
                .collect();
            assert_eq!(names, ["search"], "json_response {json_response}: {text}");
        }
    }
}
