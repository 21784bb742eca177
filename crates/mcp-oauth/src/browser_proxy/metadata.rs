//! `GET <base>/metadata`: OAuth metadata discovery for a browser, through the
//! `WWW-Authenticate` hint (RFC 9728 §5.1), then the given URL, then the well-known paths on
//! the MCP server's origin (RFC 9728 §3.1, RFC 8414 §3.1, OpenID Connect Discovery §4).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::Value;
use url::Url;

use super::client::{Answer, Failure, Outbound, Refusal};
use super::{Shared, error, parse_target, refused};
use crate::challenge::parse_www_authenticate;

const PRM: &str = "/.well-known/oauth-protected-resource";
const AS_METADATA: &str = "/.well-known/oauth-authorization-server";
const OIDC: &str = "/.well-known/openid-configuration";

/// How one fetch, or the whole discovery, ended.
enum Outcome {
    /// A JSON object from a 2xx answer.
    Found(Value),
    /// The hook or the guard refused a URL.
    Refused(Refusal),
    /// A non-2xx answer.
    Status(StatusCode),
    /// A 2xx answer that is not a JSON object.
    NotJson,
    /// No answer.
    NoResponse,
}

pub(super) async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, _body) = req.into_parts();
    if !shared.authenticated(&parts) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let query: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    let Some(raw) = param("url") else {
        return error(StatusCode::BAD_REQUEST, "Missing url parameter");
    };
    let url = match shared.accept_target(raw) {
        Ok(url) => url,
        Err((status, message)) => return error(status, message),
    };
    let mcp_url = match param("mcp_url").map(|raw| shared.accept_target(raw)) {
        None => None,
        Some(Ok(mcp)) => Some(mcp),
        Some(Err((status, message))) => return error(status, message),
    };
    let connection_url = match parts.headers.get("x-connection-url") {
        None => None,
        Some(value) => match value.to_str().ok().filter(|v| parse_target(v).is_ok()) {
            Some(raw) => Some(raw.to_owned()),
            _ => return error(StatusCode::BAD_REQUEST, "Invalid X-Connection-URL header"),
        },
    };
    let outcome = tokio::time::timeout(shared.timeout, discover(&shared, url, mcp_url)).await;
    let fail = |text: String| format!("Failed to fetch OAuth metadata: {text}");
    match outcome {
        Err(_) => error(StatusCode::GATEWAY_TIMEOUT, fail("timed out".into())),
        Ok(Outcome::Found(metadata)) => {
            Json(rewrite_resource(metadata, connection_url)).into_response()
        }
        Ok(Outcome::Refused(refusal)) => refused(refusal),
        Ok(Outcome::Status(status)) => {
            let text = format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or_default()
            );
            // Only error statuses pass through; anything else would confuse the browser.
            let status = if status.is_client_error() || status.is_server_error() {
                status
            } else {
                StatusCode::BAD_GATEWAY
            };
            error(status, fail(text.trim_end().to_owned()))
        }
        Ok(Outcome::NotJson) => error(
            StatusCode::BAD_GATEWAY,
            fail("the response is not a JSON object".into()),
        ),
        Ok(Outcome::NoResponse) => error(StatusCode::BAD_GATEWAY, fail("no response".into())),
    }
}

async fn discover(shared: &Shared, url: Url, mcp_url: Option<Url>) -> Outcome {
    if url.path().contains(PRM)
        && let Some(mcp) = &mcp_url
    {
        match hint(shared, mcp).await {
            Err(end) => return end,
            Ok(Some(hinted)) => {
                let end = fetch_json(shared, Outbound::get(hinted)).await;
                // As in mcp-use, a hint that gives no document falls back to the candidates.
                if matches!(end, Outcome::Found(_) | Outcome::Refused(_)) {
                    return end;
                }
            }
            Ok(None) => {}
        }
    }
    let mut candidates = vec![url.clone()];
    if let Some(mcp) = &mcp_url {
        for fallback in fallbacks(&url, mcp) {
            if !candidates.contains(&fallback) {
                candidates.push(fallback);
            }
        }
    }
    let mut last = Outcome::NoResponse;
    for (i, candidate) in candidates.into_iter().enumerate() {
        let mut request = Outbound::get(candidate);
        // The given URL was accepted by the hook in the handler.
        request.url_accepted = i == 0;
        match fetch_json(shared, request).await {
            end @ (Outcome::Found(_) | Outcome::Refused(_)) => return end,
            Outcome::NoResponse => {}
            answer => last = answer,
        }
    }
    last
}

/// POSTs an `initialize` to the MCP endpoint and returns the `resource_metadata` URL of its
/// challenge, if any. A refusal ends discovery; other failures mean "no hint".
async fn hint(shared: &Shared, mcp: &Url) -> Result<Option<Url>, Outcome> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    let request = Outbound {
        method: Method::POST,
        url: mcp.clone(),
        headers,
        body: Some(r#"{"jsonrpc":"2.0","method":"initialize","id":1}"#.into()),
        url_accepted: true,
    };
    let answer = match shared.send(request, None).await {
        Ok(answer) => answer,
        Err(Failure::Refused(refusal)) => return Err(Outcome::Refused(refusal)),
        Err(_) => return Ok(None),
    };
    Ok(resource_metadata(&answer))
}

/// The `resource_metadata` parameter of the answer's challenges, a Bearer one first.
fn resource_metadata(answer: &Answer) -> Option<Url> {
    let mut challenges: Vec<_> = answer
        .headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_www_authenticate)
        .collect();
    // A stable sort: Bearer challenges first, each group in the order given.
    challenges.sort_by_key(|c| !c.scheme.eq_ignore_ascii_case("bearer"));
    challenges
        .iter()
        .filter_map(|c| c.param("resource_metadata"))
        .filter_map(|raw| answer.url.join(raw).ok())
        .find(|url| matches!(url.scheme(), "http" | "https"))
}

/// The well-known URLs on the MCP server's origin for the kind of metadata `url` names.
fn fallbacks(url: &Url, mcp: &Url) -> Vec<Url> {
    let origin = mcp.origin().ascii_serialization();
    let mcp_path = mcp.path().trim_end_matches('/');
    let path = url.path();
    let wanted: Vec<String> = if path.contains(PRM) {
        vec![format!("{origin}{PRM}{mcp_path}"), format!("{origin}{PRM}")]
    } else if path.contains(AS_METADATA) {
        vec![format!("{origin}{AS_METADATA}")]
    } else if path.contains(OIDC) {
        vec![format!("{origin}{OIDC}")]
    } else {
        Vec::new()
    };
    wanted.iter().filter_map(|u| Url::parse(u).ok()).collect()
}

async fn fetch_json(shared: &Shared, mut request: Outbound) -> Outcome {
    request
        .headers
        .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    let answer = match shared.send(request, Some(shared.max_response_bytes)).await {
        Ok(answer) => answer,
        Err(Failure::Refused(refusal)) => return Outcome::Refused(refusal),
        Err(_) => return Outcome::NoResponse,
    };
    if !answer.status.is_success() {
        return Outcome::Status(answer.status);
    }
    match serde_json::from_slice(&answer.body) {
        Ok(metadata @ Value::Object(_)) => Outcome::Found(metadata),
        _ => Outcome::NotJson,
    }
}

/// mcp-use's `X-Connection-URL` rewrite: when MCP traffic goes through a proxy, the
/// protected-resource metadata names the URL the browser connects to, and keeps the original.
fn rewrite_resource(mut metadata: Value, connection_url: Option<String>) -> Value {
    let Some(connection_url) = connection_url else {
        return metadata;
    };
    let Some(object) = metadata.as_object_mut() else {
        return metadata;
    };
    if !object.contains_key("authorization_servers") {
        return metadata;
    }
    if let Some(original) = object.remove("resource") {
        object.insert("resource".into(), connection_url.into());
        object.insert("_original_resource".into(), original);
    }
    metadata
}
