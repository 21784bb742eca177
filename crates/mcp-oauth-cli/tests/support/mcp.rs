//! Requests to an MCP endpoint as a Streamable HTTP client sends them.

use serde_json::Value;

/// The headers and body of a JSON-RPC request to an MCP endpoint.
pub trait McpRequest {
    /// `Content-Type` and `Accept` of a Streamable HTTP client, `MCP-Protocol-Version`, and
    /// `body` as JSON.
    fn mcp(self, body: &Value) -> Self;
}

impl McpRequest for reqwest::RequestBuilder {
    fn mcp(self, body: &Value) -> Self {
        self.header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .body(body.to_string())
    }
}

/// The status of a reply and its JSON body (`Null` when it has none).
pub async fn reply(res: reqwest::Response) -> (u16, Value) {
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

/// `POST url` of this JSON-RPC `body` with a bearer token: the reply's status and JSON body.
pub async fn post_bearer(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
) -> (u16, Value) {
    let res = http
        .post(url)
        .bearer_auth(token)
        .mcp(body)
        .send()
        .await
        .expect("post");
    reply(res).await
}
