//! `mcp-oauth policy check FILE --server URL`: the tool list fetched from a running MCP server
//! over Streamable HTTP (`initialize`, `notifications/initialized`, then `tools/list` page by
//! page, and `prompts/list` / `resources/list` when the server has them), as the JSON that
//! `--tools tools.json` would hold.
//!
//! Answers may be JSON or an SSE stream; a legacy session (`Mcp-Session-Id`) is followed and
//! closed at the end. No redirects are followed (a client would not carry the token across
//! them), every answer is capped in size, and every request has a timeout.

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

/// The protocol version asked for in `initialize`.
const PROTOCOL_VERSION: &str = "2025-06-18";
/// Largest answer read: 16 MiB.
const MAX_ANSWER: usize = 16 * 1024 * 1024;
/// Most pages of one list followed.
const MAX_PAGES: usize = 100;

/// What went wrong, one line each (as the other policy commands report).
type Failure = Vec<String>;

/// `--header 'Name: value'`.
pub(crate) fn header(text: &str) -> Result<(String, String), String> {
    let Some((name, value)) = text.split_once(':') else {
        return Err("write a header as 'Name: value', e.g. --header 'X-Api-Key: abc'".to_owned());
    };
    let name = name.trim();
    if HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(format!("`{name}` is not a header name"));
    }
    let value = value.trim();
    if HeaderValue::from_str(value).is_err() {
        return Err(format!("the value of header `{name}` is not visible ASCII"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// The server's tools (and prompts and resources) as `{"tools": [...], ...}`.
pub(crate) async fn fetch_catalog(
    url: &str,
    token: Option<&str>,
    headers: &[(String, String)],
) -> Result<String, Failure> {
    let mut base = HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            base.append(name, value);
        }
    }
    if let Some(token) = token {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| vec!["--token: the token is not visible ASCII".to_owned()])?;
        base.insert(AUTHORIZATION, value);
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| vec![format!("cannot make an HTTP client: {e}")])?;
    let mut session = Session {
        http,
        url: url.to_owned(),
        headers: base,
        next_id: 0,
    };
    let init = session
        .request(
            "initialize",
            json!({
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "mcp-oauth policy check", "version": env!("CARGO_PKG_VERSION")},
            }),
        )
        .await?;
    if let Some(version) = init.get("protocolVersion").and_then(Value::as_str)
        && let Ok(value) = HeaderValue::from_str(version)
    {
        session.headers.insert("mcp-protocol-version", value);
    }
    session.notify("notifications/initialized").await?;
    let capabilities = init.get("capabilities").cloned().unwrap_or(Value::Null);
    let mut catalog = serde_json::Map::new();
    catalog.insert(
        "tools".to_owned(),
        Value::Array(session.list("tools/list", "tools").await?),
    );
    if capabilities.get("prompts").is_some() {
        catalog.insert(
            "prompts".to_owned(),
            Value::Array(session.list("prompts/list", "prompts").await?),
        );
    }
    if capabilities.get("resources").is_some() {
        catalog.insert(
            "resources".to_owned(),
            Value::Array(session.list("resources/list", "resources").await?),
        );
    }
    session.close().await;
    Ok(Value::Object(catalog).to_string())
}

struct Session {
    http: reqwest::Client,
    url: String,
    headers: HeaderMap,
    next_id: u64,
}

impl Session {
    /// Every item of a list, page after page.
    async fn list(&mut self, method: &str, key: &str) -> Result<Vec<Value>, Failure> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let params = match &cursor {
                Some(cursor) => json!({"cursor": cursor}),
                None => json!({}),
            };
            let result = self.request(method, params).await?;
            let Some(Value::Array(page)) = result.get(key) else {
                return Err(vec![format!(
                    "{}: the answer to {method} has no `{key}` array",
                    self.url
                )]);
            };
            items.extend(page.iter().cloned());
            match result.get("nextCursor").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => cursor = Some(next.to_owned()),
                _ => return Ok(items),
            }
        }
        Err(vec![format!(
            "{}: {method} has more than {MAX_PAGES} pages; save the list to a file and use --tools",
            self.url
        )])
    }

    /// One request; its `result`.
    async fn request(&mut self, method: &str, params: Value) -> Result<Value, Failure> {
        self.next_id += 1;
        let id = self.next_id;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let (headers, text) = self.post(method, &body).await?;
        if let Some(session) = headers.get("mcp-session-id") {
            self.headers.insert("mcp-session-id", session.clone());
        }
        let kind = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let messages = if kind.starts_with("text/event-stream") {
            sse_messages(&text)
        } else {
            serde_json::from_str::<Value>(&text)
                .ok()
                .into_iter()
                .collect()
        };
        let answer = messages
            .into_iter()
            .flat_map(|m| match m {
                Value::Array(items) => items,
                one => vec![one],
            })
            .find(|m| m.get("id").and_then(Value::as_u64) == Some(id));
        let Some(answer) = answer else {
            return Err(vec![format!(
                "{}: no JSON-RPC answer to {method} in the server's reply (is this the MCP endpoint?)",
                self.url
            )]);
        };
        if let Some(error) = answer.get("error") {
            return Err(vec![format!(
                "{}: {method} failed: {}",
                self.url,
                error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("no message")
            )]);
        }
        answer.get("result").cloned().ok_or_else(|| {
            vec![format!(
                "{}: the answer to {method} has no result",
                self.url
            )]
        })
    }

    async fn notify(&mut self, method: &str) -> Result<(), Failure> {
        let body = json!({"jsonrpc": "2.0", "method": method});
        self.post(method, &body).await.map(|_| ())
    }

    /// A POST; the answer's headers and text, or what to fix.
    async fn post(&self, method: &str, body: &Value) -> Result<(HeaderMap, String), Failure> {
        let response = self
            .http
            .post(&self.url)
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| {
                vec![format!(
                    "{}: cannot reach the server ({method}): {e}",
                    self.url
                )]
            })?;
        let status = response.status();
        let headers = response.headers().clone();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            let challenge = headers
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none");
            let hint = if self.headers.contains_key(AUTHORIZATION) {
                "the token given with --token was refused"
            } else {
                "the server needs an access token: give one with --token (e.g. from `mcp-oauth token`)"
            };
            return Err(vec![format!(
                "{}: {method} answered {status}: {hint} (WWW-Authenticate: {challenge})",
                self.url
            )]);
        }
        if status.is_redirection() {
            return Err(vec![format!(
                "{}: {method} answered {status}, a redirect: give the final URL of the MCP endpoint",
                self.url
            )]);
        }
        if !status.is_success() {
            return Err(vec![format!("{}: {method} answered {status}", self.url)]);
        }
        let mut response = response;
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            vec![format!(
                "{}: the answer to {method} broke off: {e}",
                self.url
            )]
        })? {
            if bytes.len() + chunk.len() > MAX_ANSWER {
                return Err(vec![format!(
                    "{}: the answer to {method} is larger than 16 MiB",
                    self.url
                )]);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((headers, String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Ends a legacy session, if the server opened one (best effort).
    async fn close(&self) {
        if self.headers.contains_key("mcp-session-id") {
            let _ = self
                .http
                .delete(&self.url)
                .headers(self.headers.clone())
                .send()
                .await;
        }
    }
}

/// The JSON of each event's `data` lines in an SSE text.
fn sse_messages(text: &str) -> Vec<Value> {
    text.replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|l| l.strip_prefix(' ').unwrap_or(l))
                .collect();
            serde_json::from_str(&data.join("\n")).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_name_colon_value() {
        assert_eq!(
            header("X-Api-Key: abc").ok(),
            Some(("X-Api-Key".to_owned(), "abc".to_owned()))
        );
        assert!(header("no colon").is_err());
        assert!(header("bad name: x").is_err());
    }

    #[test]
    fn sse_data_lines_are_joined_per_event() {
        let text = "id: 1\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n: comment\n\ndata: {\"b\":2}\n\n";
        assert_eq!(sse_messages(text), [json!({"a": 1}), json!({"b": 2})]);
    }
}
