//! The bearer layer end to end: arbitrary `Authorization` headers (none, one, several; raw
//! bytes or `Bearer` with arbitrary or really signed tokens), query strings, methods,
//! JSON-RPC bodies and, in trusted-proxy mode, `X-Forwarded-*` / `Host` headers, through
//! `OAuth::layer()` in front of a service that answers 200.
//!
//! Invariants: the status is 200, 400, 401, 403 or 413 (never 5xx: the keys are static);
//! each refusal carries the `WWW-Authenticate` shape of docs/challenges.md, parsed back with
//! `parse_www_authenticate`; only an intact token signed by a trusted key reaches the
//! service, and then with `Auth` in the request.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use std::convert::Infallible;
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use common::{ISSUER, METADATA_URL, Mint, RESOURCE, Text, runtime, verifier};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use mcp_oauth::challenge::parse_www_authenticate;
use mcp_oauth::{Auth, OAuth};
use tower::{Layer, ServiceExt, service_fn};

const MAX_BODY: usize = 4096;
const TRUSTED: &str = "trusted";

#[derive(Arbitrary, Debug)]
enum Token {
    Raw(String),
    Minted(Mint),
}

#[derive(Arbitrary, Debug)]
enum Authorization {
    /// Any header bytes (skipped when `http` refuses them as a header value).
    Raw(Vec<u8>),
    /// `<scheme><spaces><token><trailing spaces>`.
    Bearer {
        scheme: u8,
        spaces: u8,
        trailing: u8,
        token: Token,
    },
}

#[derive(Arbitrary, Debug)]
enum Body {
    Empty,
    Raw(Vec<u8>),
    /// One JSON-RPC request.
    Call {
        method: Text,
        tool: Option<Text>,
    },
    /// A batch of them.
    Batch(Vec<(Text, Option<Text>)>),
    /// A body over the limit.
    Huge,
}

#[derive(Arbitrary, Debug)]
struct Input {
    forwarded: bool,
    method: u8,
    preflight: bool,
    authorization: Vec<Authorization>,
    query: Vec<(Text, Text)>,
    host: Option<String>,
    x_forwarded_host: Option<String>,
    x_forwarded_proto: Option<String>,
    body: Body,
}

struct Fixture {
    direct: OAuth,
    forwarded: OAuth,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let build = |forwarded: bool| {
            let mut builder = OAuth::builder()
                .resource(RESOURCE)
                .authorization_server(ISSUER)
                .scopes_supported(["mcp:read", "mcp:write"])
                .require_scopes(["mcp:read"])
                .tool_scopes("admin_action", ["admin"])
                .method_scopes("resources/read", ["mcp:write"])
                .verifier(verifier())
                .mirror_authorization_server(false)
                .max_body_bytes(MAX_BODY);
            if forwarded {
                builder = builder.trust_forwarded_headers();
            }
            builder.build().expect("the configuration builds")
        };
        Fixture {
            direct: build(false),
            forwarded: build(true),
        }
    })
}

fn rpc(method: &Text, tool: Option<&Text>) -> serde_json::Value {
    let mut call = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method.resolve()});
    if let (Some(tool), Some(map)) = (tool, call.as_object_mut()) {
        map.insert(
            "params".into(),
            serde_json::json!({"name": tool.resolve(), "arguments": {}}),
        );
    }
    call
}

/// The challenge of a refusal, checked for the shape every refusal shares.
fn challenge(response: &Response<impl Sized>, forwarded: bool) -> Vec<(String, String)> {
    let value = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .expect("a refusal carries WWW-Authenticate")
        .to_str()
        .expect("the challenge is ASCII");
    let parsed = parse_www_authenticate(value);
    assert_eq!(parsed.len(), 1, "{value}");
    let bearer = parsed.into_iter().next().expect("one challenge");
    assert_eq!(bearer.scheme, "Bearer");
    let metadata = bearer
        .param("resource_metadata")
        .expect("resource_metadata is always there");
    if forwarded {
        let url = url::Url::parse(metadata).expect("the metadata URL is a URL");
        assert!(matches!(url.scheme(), "http" | "https"));
        assert_eq!(url.path(), "/.well-known/oauth-protected-resource/mcp");
        assert!(url.query().is_none() && url.fragment().is_none());
    } else {
        assert_eq!(metadata, METADATA_URL);
    }
    assert_eq!(
        response.headers().get(header::CACHE_CONTROL),
        Some(&HeaderValue::from_static("no-store"))
    );
    bearer.params
}

/// Whether a JSON-RPC reader of `body` (one message object, or a batch whose object
/// elements it executes) would find a `tools/call` of `admin_action`, or a `resources/read`.
fn extra_scopes(body: &[u8]) -> (bool, bool) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (false, false);
    };
    let messages: Vec<&serde_json::Value> = match &value {
        serde_json::Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut admin = false;
    let mut write = false;
    for message in messages {
        let method = message.get("method").and_then(serde_json::Value::as_str);
        let tool = message
            .get("params")
            .and_then(|p| p.get("name"))
            .and_then(serde_json::Value::as_str);
        admin |= method == Some("tools/call") && tool == Some("admin_action");
        write |= method == Some("resources/read");
    }
    (admin, write)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Inputs that start with this byte are an `Authorization` value, a newline and a POST
/// body (the seeds are real requests).
const RAW: u8 = 0;

fuzz_target!(|data: &[u8]| {
    let input = match data.split_first() {
        Some((&RAW, rest)) => {
            let (authorization, body) = match rest.iter().position(|b| *b == b'\n') {
                Some(at) => (
                    rest.get(..at).unwrap_or_default(),
                    rest.get(at + 1..).unwrap_or_default(),
                ),
                None => (rest, &[][..]),
            };
            Input {
                forwarded: false,
                method: 0,
                preflight: false,
                authorization: vec![Authorization::Raw(authorization.to_vec())],
                query: Vec::new(),
                host: None,
                x_forwarded_host: None,
                x_forwarded_proto: None,
                body: Body::Raw(body.to_vec()),
            }
        }
        _ => match Input::arbitrary_take_rest(Unstructured::new(data)) {
            Ok(input) => input,
            Err(_) => return,
        },
    };
    run(input);
});

fn run(input: Input) {
    let fx = fixture();
    let oauth = if input.forwarded {
        &fx.forwarded
    } else {
        &fx.direct
    };
    let method = match input.method % 4 {
        0 => Method::POST,
        1 => Method::GET,
        2 => Method::OPTIONS,
        _ => Method::DELETE,
    };

    // The query string, percent-encoded so that the URI is always valid.
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in &input.query {
        query.append_pair(&name.resolve(), &value.resolve());
    }
    let query = query.finish();
    let query_has_token = input
        .query
        .iter()
        .any(|(n, _)| n.resolve() == "access_token");
    let uri = if query.is_empty() {
        "/mcp".to_owned()
    } else {
        format!("/mcp?{query}")
    };

    let (body, body_is_rpc) = match &input.body {
        Body::Empty => (Vec::new(), false),
        Body::Raw(bytes) => (
            bytes.clone(),
            mcp_oauth::jsonrpc::peek_jsonrpc(bytes).is_ok(),
        ),
        Body::Call { method, tool } => (rpc(method, tool.as_ref()).to_string().into_bytes(), {
            method.resolve() != "tools/call" || tool.is_some()
        }),
        Body::Batch(calls) => {
            let batch: Vec<_> = calls.iter().map(|(m, t)| rpc(m, t.as_ref())).collect();
            let ok = calls
                .iter()
                .all(|(m, t)| m.resolve() != "tools/call" || t.is_some());
            (serde_json::Value::Array(batch).to_string().into_bytes(), ok)
        }
        Body::Huge => (vec![b' '; MAX_BODY + 1], false),
    };
    let body_too_large = body.len() > MAX_BODY;
    let sent_body = body.clone();

    let mut request = Request::builder()
        .method(method.clone())
        .uri(uri)
        .body(Full::new(Bytes::from(body)))
        .expect("the request builds");
    let headers = request.headers_mut();
    if input.preflight {
        headers.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("POST"),
        );
    }
    for (name, value) in [
        (header::HOST, &input.host),
        (
            header::HeaderName::from_static("x-forwarded-host"),
            &input.x_forwarded_host,
        ),
        (
            header::HeaderName::from_static("x-forwarded-proto"),
            &input.x_forwarded_proto,
        ),
    ] {
        if let Some(value) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(name, value);
        }
    }

    // The Authorization headers, and whether one intact, trusted token is all there is.
    let mut sent = 0usize;
    let mut bearer_sent = false;
    let mut trusted_token = false;
    for authorization in &input.authorization {
        let (value, is_bearer, trusted) = match authorization {
            Authorization::Raw(bytes) => {
                // The scheme is what comes before the first space.
                let scheme = bytes.split(|b| *b == b' ').next().unwrap_or_default();
                let is_bearer = scheme.eq_ignore_ascii_case(b"bearer");
                // A raw value may carry a genuinely signed token (the seeds do).
                let trusted = is_bearer
                    && std::str::from_utf8(bytes).is_ok_and(|text| {
                        let token = text.split_once(' ').map(|(_, t)| t.trim_matches(' '));
                        token.is_some_and(common::hmac_signed)
                    });
                (bytes.clone(), is_bearer, trusted)
            }
            Authorization::Bearer {
                scheme,
                spaces,
                trailing,
                token,
            } => {
                let scheme = match scheme % 4 {
                    0 => "Bearer",
                    1 => "bearer",
                    2 => "BEARER",
                    _ => "Basic",
                };
                let (token, trusted) = match token {
                    Token::Raw(text) => (text.clone(), false),
                    Token::Minted(mint) => {
                        let minted = mint.build();
                        (minted.token, minted.intact && mint.key.trusted())
                    }
                };
                let value = format!(
                    "{scheme}{}{token}{}",
                    " ".repeat(usize::from(spaces % 3) + 1),
                    " ".repeat(usize::from(trailing % 2))
                );
                (value.into_bytes(), scheme != "Basic", trusted)
            }
        };
        let Ok(value) = HeaderValue::from_bytes(&value) else {
            continue;
        };
        headers.append(header::AUTHORIZATION, value);
        sent += 1;
        bearer_sent = is_bearer;
        trusted_token = trusted;
    }
    let one_trusted_token = sent == 1 && trusted_token;

    let service = oauth
        .layer()
        .layer(service_fn(|req: Request<Full<Bytes>>| async move {
            // Who called, and whether the caller has the policy's extra scopes.
            let text = match req.extensions().get::<Auth>() {
                Some(auth) => format!(
                    "{TRUSTED} admin={} write={}",
                    auth.has_scope("admin"),
                    auth.has_scope("mcp:write")
                ),
                None => "anonymous".to_owned(),
            };
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
        }));
    let response = runtime()
        .block_on(service.oneshot(request))
        .unwrap_or_else(|never| match never {});
    let status = response.status();
    let is_preflight = method == Method::OPTIONS && input.preflight;

    match status {
        StatusCode::OK => {
            let body = runtime()
                .block_on(response.into_body().collect())
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            if is_preflight {
                assert_eq!(&body[..], b"anonymous", "a preflight passes untouched");
            } else {
                let answer = String::from_utf8_lossy(&body);
                assert!(answer.starts_with(TRUSTED), "Auth reaches the service");
                // Step-up: every call a JSON-RPC reader would find in the body got the
                // scopes the policy asks for.
                if method == Method::POST {
                    let (needs_admin, needs_write) = extra_scopes(&sent_body);
                    assert!(
                        !needs_admin || answer.contains("admin=true"),
                        "admin_action called without the admin scope: {}",
                        String::from_utf8_lossy(&sent_body)
                    );
                    assert!(
                        !needs_write || answer.contains("write=true"),
                        "resources/read called without mcp:write: {}",
                        String::from_utf8_lossy(&sent_body)
                    );
                }
                assert!(
                    one_trusted_token,
                    "only a trusted token gets through: {input:?}"
                );
                assert!(!query_has_token, "a token in the query is refused");
                assert!(method != Method::POST || (body_is_rpc && !body_too_large));
            }
        }
        StatusCode::UNAUTHORIZED => {
            assert!(!is_preflight);
            let params = challenge(&response, input.forwarded);
            assert_eq!(param(&params, "scope"), Some("mcp:read"));
            match param(&params, "error") {
                None => assert!(
                    sent == 0 || (sent == 1 && !bearer_sent),
                    "no error code only without bearer credentials: {input:?}"
                ),
                Some("invalid_token") => assert!(sent == 1, "one Authorization header"),
                Some(other) => panic!("401 with error={other}"),
            }
        }
        StatusCode::BAD_REQUEST => {
            assert!(!is_preflight);
            let params = challenge(&response, input.forwarded);
            assert_eq!(param(&params, "error"), Some("invalid_request"));
            assert!(
                query_has_token
                    || sent > 1
                    || (method == Method::POST && !body_is_rpc && one_trusted_token),
                "400 without a reason: {input:?}"
            );
        }
        StatusCode::FORBIDDEN => {
            assert!(!is_preflight);
            let params = challenge(&response, input.forwarded);
            assert_eq!(param(&params, "error"), Some("insufficient_scope"));
            let scope = param(&params, "scope").expect("a 403 names the scopes");
            assert!(scope.split(' ').any(|s| s == "mcp:read"), "{scope}");
            assert!(one_trusted_token, "a 403 comes after a verified token");
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            assert!(body_too_large && method == Method::POST && one_trusted_token);
        }
        other => panic!("unexpected status {other} for {input:?}"),
    }
}
