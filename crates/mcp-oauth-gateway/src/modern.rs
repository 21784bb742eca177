//! MCP protocol 2026-07-28 on the client side: `server/discover`, requests without
//! `initialize` or `Mcp-Session-Id` (stateless), and the `Mcp-Method` / `Mcp-Name` headers,
//! which must agree with the body (SEP-2243): a router or policy in front of the gateway may
//! decide on the header alone, so a header that says `tools/list` over a body that calls a
//! tool is refused, never forwarded.

use axum::body::Body;
use axum::response::Response;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use http::HeaderMap;
use serde_json::{Map, Value, json};

use crate::jsonrpc::{self, Kind, Message};

/// The stateless protocol version.
pub(crate) const VERSION: &str = "2026-07-28";
/// JSON-RPC error code of a header that disagrees with the body (SEP-2243).
pub(crate) const HEADER_MISMATCH: i64 = -32020;

const MCP_METHOD: &str = "mcp-method";
const MCP_NAME: &str = "mcp-name";
/// Header values that are not plain visible ASCII travel as `=?base64?…?=`.
const BASE64_PREFIX: &str = "=?base64?";
const BASE64_SUFFIX: &str = "?=";

/// Whether a request's `MCP-Protocol-Version` header is the stateless version.
pub(crate) fn is_modern(headers: &HeaderMap) -> bool {
    headers
        .get("mcp-protocol-version")
        .is_some_and(|v| v.as_bytes() == VERSION.as_bytes())
}

/// The member of `params` that `Mcp-Name` repeats, for the methods that have one.
fn name_key(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Some("uri"),
        "tasks/get" | "tasks/update" | "tasks/cancel" => Some("taskId"),
        _ => None,
    }
}

/// The one value of header `name`; `Err` when it is repeated or not visible ASCII.
fn one<'h>(headers: &'h HeaderMap, name: &str, shown: &str) -> Result<Option<&'h str>, String> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(format!("the {shown} header is sent more than once"));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| format!("the {shown} header is not visible ASCII (use =?base64?…?=)"))
}

fn decode(value: &str) -> Option<String> {
    match value
        .strip_prefix(BASE64_PREFIX)
        .and_then(|v| v.strip_suffix(BASE64_SUFFIX))
    {
        Some(inner) => base64::engine::general_purpose::STANDARD
            .decode(inner)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok()),
        None => Some(value.to_owned()),
    }
}

/// Checks `Mcp-Method` and `Mcp-Name` against `message`; `Err` says which header disagrees
/// and how. Requests and notifications must carry `Mcp-Method` (except `initialize`, sent
/// before a version is agreed, whose header is checked when present); a method with a name
/// (`tools/call`, `prompts/get`, `resources/read`, …) must carry `Mcp-Name`, and no other
/// method may.
pub(crate) fn check_headers(headers: &HeaderMap, message: &Message<'_>) -> Result<(), String> {
    if message.kind == Kind::Response {
        return Ok(());
    }
    let method = message.method.as_deref().unwrap_or_default();
    match one(headers, MCP_METHOD, "Mcp-Method")? {
        None if method == "initialize" => return Ok(()),
        None => {
            return Err(format!(
                "the Mcp-Method header is missing (protocol {VERSION} requires it; send Mcp-Method: {method})"
            ));
        }
        Some(header) if header != method => {
            return Err(format!(
                "the Mcp-Method header ({header}) disagrees with the body's method ({method})"
            ));
        }
        Some(_) => {}
    }
    let expected = name_key(method).map(|key| {
        message
            .params
            .and_then(|p| jsonrpc::member(p, key))
            .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
    });
    let header = one(headers, MCP_NAME, "Mcp-Name")?;
    match (expected, header) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(format!(
            "the Mcp-Name header is sent with {method}, which names nothing"
        )),
        (Some(_), None) => Err(format!(
            "the Mcp-Name header is missing (protocol {VERSION} requires it with {method})"
        )),
        (Some(expected), Some(raw)) => {
            let decoded = decode(raw)
                .ok_or_else(|| "the Mcp-Name header is not valid =?base64?…?=".to_owned())?;
            match expected {
                Some(expected) if expected == decoded => Ok(()),
                Some(expected) => Err(format!(
                    "the Mcp-Name header ({decoded}) disagrees with the body's name ({expected})"
                )),
                None => Err(format!(
                    "the Mcp-Name header ({decoded}) names what the body of {method} does not"
                )),
            }
        }
    }
}

/// The message without the per-request protocol fields of 2026-07-28
/// (`params._meta["io.modelcontextprotocol/…"]`): the upstream session was opened with
/// `initialize` at an older version, so they are the gateway's to read, not the upstream's.
/// `None` when there are none.
pub(crate) fn without_protocol_meta(message: &Message<'_>) -> Option<bytes::Bytes> {
    if message.kind == Kind::Response {
        return None;
    }
    let method = message.method.as_deref()?;
    let params = message.params?;
    let meta = jsonrpc::member(params, "_meta")?;
    if !meta.get().contains(META_PREFIX) {
        return None;
    }
    let mut params: Map<String, Value> = serde_json::from_str(params.get()).ok()?;
    if let Some(Value::Object(meta)) = params.get_mut("_meta") {
        meta.retain(|key, _| !key.starts_with(META_PREFIX));
        if meta.is_empty() {
            params.remove("_meta");
        }
    }
    let params = Value::Object(params).to_string();
    Some(jsonrpc::encode_request(
        message.id.map(|id| id.get()),
        method,
        Some(&params),
    ))
}

const META_PREFIX: &str = "io.modelcontextprotocol/";

/// Every version the gateway speaks with clients, oldest first.
pub(crate) fn all_versions() -> Vec<&'static str> {
    let mut versions = crate::versions::SUPPORTED_VERSIONS.to_vec();
    versions.push(VERSION);
    versions
}

/// The result of `server/discover`, from the upstream's `initialize` result (`capabilities`,
/// `serverInfo`, `instructions`). Not cacheable across users: what a caller may use depends
/// on who they are.
pub(crate) fn discover_result(init: &Map<String, Value>) -> String {
    Value::Object(discover_object(init)).to_string()
}

/// [`discover_result`] as an object, for a caller that adds to it (the aggregate names the
/// upstreams it could not reach in `_meta`).
pub(crate) fn discover_object(init: &Map<String, Value>) -> Map<String, Value> {
    let mut result = Map::new();
    result.insert("resultType".into(), "complete".into());
    result.insert("supportedVersions".into(), all_versions().into());
    result.insert(
        "capabilities".into(),
        init.get("capabilities")
            .cloned()
            .unwrap_or_else(|| json!({})),
    );
    result.insert("ttlMs".into(), 0.into());
    result.insert("cacheScope".into(), "private".into());
    if let Some(instructions) = init.get("instructions").filter(|v| v.is_string()) {
        result.insert("instructions".into(), instructions.clone());
    }
    if let Some(info) = init.get("serverInfo") {
        result.insert(
            "_meta".into(),
            json!({ "io.modelcontextprotocol/serverInfo": info }),
        );
    }
    result
}

/// The `initialize` the gateway sends an HTTP upstream for a stateless client: the client's
/// information and capabilities from the request's `_meta`, at the newest version that has
/// `initialize`.
pub(crate) fn initialize_for(params: Option<&serde_json::value::RawValue>) -> bytes::Bytes {
    let meta: Map<String, Value> = params
        .and_then(|p| jsonrpc::member(p, "_meta"))
        .and_then(|m| serde_json::from_str(m.get()).ok())
        .unwrap_or_default();
    let field = |key: &str, default: Value| {
        meta.get(&format!("io.modelcontextprotocol/{key}"))
            .filter(|v| v.is_object())
            .cloned()
            .unwrap_or(default)
    };
    let params = json!({
        "protocolVersion": crate::versions::LATEST,
        "capabilities": field("clientCapabilities", json!({})),
        "clientInfo": field("clientInfo", json!({"name": "mcp-oauth-gateway", "version": env!("CARGO_PKG_VERSION")})),
    });
    jsonrpc::encode_request(Some("0"), "initialize", Some(&params.to_string()))
}

/// The methods whose results carry caching hints (`ttlMs`, `cacheScope`) in 2026-07-28.
fn cacheable(method: &str) -> bool {
    matches!(
        method,
        "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
    )
}

/// An older-version upstream's response to `method`, reshaped for a 2026-07-28 client:
/// `resultType` (`"complete"` when absent), and on the results of lists and `resources/read`
/// `ttlMs` (0 unless the upstream gave a number of at least 0) and `cacheScope: "private"`
/// (what the gateway answers depends on the caller's policy, so no shared cache may keep it).
/// `None` for anything else (errors, notifications, requests) or a result that is not an
/// object.
pub(crate) fn reshape(message: &[u8], method: &str) -> Option<Bytes> {
    let parsed = jsonrpc::parse(message).ok()?;
    if parsed.kind != Kind::Response {
        return None;
    }
    let (id, result) = (parsed.id?, parsed.result?);
    let mut result: Map<String, Value> = serde_json::from_str(result.get()).ok()?;
    if !result.get("resultType").is_some_and(Value::is_string) {
        result.insert("resultType".into(), "complete".into());
    }
    if cacheable(method) {
        if result.get("ttlMs").is_none_or(|v| v.as_u64().is_none()) {
            result.insert("ttlMs".into(), 0.into());
        }
        result.insert("cacheScope".into(), "private".into());
    }
    let result = Value::Object(result).to_string();
    Some(jsonrpc::encode_response(id.get(), Some(&result), None))
}

/// A response to `method` whose messages are [`reshape`]d: a JSON body whole, an SSE body
/// event by event as it comes.
pub(crate) async fn reshape_response(response: Response, method: &str) -> Response {
    let (mut parts, body) = response.into_parts();
    let kind = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if kind.starts_with("application/json") {
        let Ok(bytes) = axum::body::to_bytes(body, RESHAPE_LIMIT).await else {
            return crate::reply::rpc_error(
                http::StatusCode::BAD_GATEWAY,
                None,
                jsonrpc::INTERNAL_ERROR,
                "the upstream's answer is too large",
            );
        };
        let bytes = reshape(&bytes, method).unwrap_or(bytes);
        parts.headers.remove(http::header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::from(bytes));
    }
    if kind.starts_with("text/event-stream") {
        let method = method.to_owned();
        let events = crate::sse::sse_events(body).map(move |event| {
            let Ok(event) = event;
            let mut out = Vec::with_capacity(event.len() + 16);
            for data in crate::sse::event_data(&String::from_utf8_lossy(&event)) {
                let data = reshape(data.as_bytes(), &method).unwrap_or_else(|| Bytes::from(data));
                out.extend_from_slice(b"event: message\ndata: ");
                out.extend_from_slice(&data);
                out.extend_from_slice(b"\n\n");
            }
            Ok::<_, std::convert::Infallible>(Bytes::from(out))
        });
        parts.headers.remove(http::header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::from_stream(events));
    }
    Response::from_parts(parts, body)
}

/// The largest JSON answer [`reshape_response`] reads (as much as the gateway reads of an
/// upstream's answer it filters).
const RESHAPE_LIMIT: usize = 16 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).expect("value"));
        }
        h
    }

    fn check(pairs: &[(&'static str, &str)], body: &str) -> Result<(), String> {
        let message = jsonrpc::parse(body.as_bytes()).expect("message");
        check_headers(&headers(pairs), &message)
    }

    const CALL: &str =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_env"}}"#;

    #[test]
    fn headers_must_agree_with_the_body() {
        assert!(
            check(
                &[("mcp-method", "tools/call"), ("mcp-name", "get_env")],
                CALL
            )
            .is_ok()
        );
        let wrapped = format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode("get_env")
        );
        assert!(
            check(
                &[("mcp-method", "tools/call"), ("mcp-name", &wrapped)],
                CALL
            )
            .is_ok()
        );
        let err = check(
            &[("mcp-method", "tools/list"), ("mcp-name", "get_env")],
            CALL,
        )
        .expect_err("method lies");
        assert!(
            err.contains("Mcp-Method") && err.contains("tools/list"),
            "{err}"
        );
        let err = check(&[("mcp-method", "tools/call"), ("mcp-name", "echo")], CALL)
            .expect_err("name lies");
        assert!(err.contains("Mcp-Name") && err.contains("get_env"), "{err}");
        assert!(check(&[("mcp-method", "tools/call")], CALL).is_err());
        assert!(check(&[("mcp-name", "get_env")], CALL).is_err());
        let twice = [
            ("mcp-method", "tools/call"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "get_env"),
        ];
        assert!(check(&twice, CALL).is_err());
        let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        assert!(check(&[("mcp-method", "tools/list")], list).is_ok());
        assert!(check(&[("mcp-method", "tools/list"), ("mcp-name", "x")], list).is_err());
        let nameless = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#;
        assert!(check(&[("mcp-method", "tools/call"), ("mcp-name", "x")], nameless).is_err());
        let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#;
        assert!(check(&[], init).is_ok());
        assert!(check(&[("mcp-method", "ping")], init).is_err());
        let answer = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
        assert!(check(&[], answer).is_ok());
    }

    #[test]
    fn the_per_request_protocol_fields_are_not_forwarded() {
        let body = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","progressToken":"p"}}}"#;
        let message = jsonrpc::parse(body.as_bytes()).expect("message");
        let out = without_protocol_meta(&message).expect("stripped");
        let out: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(
            out,
            json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","_meta":{"progressToken":"p"}}})
        );
        let plain = r#"{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{"progressToken":"p"}}}"#;
        let message = jsonrpc::parse(plain.as_bytes()).expect("message");
        assert!(without_protocol_meta(&message).is_none());
        let only = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        let message = jsonrpc::parse(only.as_bytes()).expect("message");
        let out: Value =
            serde_json::from_slice(&without_protocol_meta(&message).expect("stripped"))
                .expect("json");
        assert_eq!(out["params"], json!({"requestId": 1}));
        assert!(out.get("id").is_none());
    }

    #[test]
    fn results_get_the_fields_of_2026_07_28() {
        let shaped = |body: &str, method: &str| {
            reshape(body.as_bytes(), method)
                .map(|b| serde_json::from_slice::<Value>(&b).expect("json"))
        };
        let list = shaped(
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#,
            "tools/list",
        )
        .expect("list");
        assert_eq!(
            list["result"],
            json!({"tools": [], "resultType": "complete", "ttlMs": 0, "cacheScope": "private"})
        );
        assert_eq!(list["id"], 1);
        let given = shaped(r#"{"jsonrpc":"2.0","id":"a","result":{"contents":[],"ttlMs":5000,"cacheScope":"public"}}"#, "resources/read").expect("read");
        assert_eq!(given["result"]["ttlMs"], 5000);
        assert_eq!(
            given["result"]["cacheScope"], "private",
            "the gateway's answer is per caller"
        );
        let negative = shaped(
            r#"{"jsonrpc":"2.0","id":1,"result":{"prompts":[],"ttlMs":-1}}"#,
            "prompts/list",
        )
        .expect("list");
        assert_eq!(negative["result"]["ttlMs"], 0);
        let call = shaped(
            r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#,
            "tools/call",
        )
        .expect("call");
        assert_eq!(
            call["result"],
            json!({"content": [], "resultType": "complete"})
        );
        for untouched in [
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"no"}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":[]}"#,
            "not json",
        ] {
            assert!(
                reshape(untouched.as_bytes(), "tools/list").is_none(),
                "{untouched}"
            );
        }
    }

    #[test]
    fn discover_names_every_version_and_the_upstreams_capabilities() {
        let init: Map<String, Value> = serde_json::from_value(json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "up", "version": "1"},
        }))
        .expect("map");
        let result: Value = serde_json::from_str(&discover_result(&init)).expect("json");
        assert_eq!(result["capabilities"], json!({"tools": {}}));
        assert_eq!(
            result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
            "up"
        );
        let versions = result["supportedVersions"].as_array().expect("versions");
        assert!(versions.iter().any(|v| v == VERSION));
        assert!(versions.iter().any(|v| v == "2025-06-18"));
    }
}
