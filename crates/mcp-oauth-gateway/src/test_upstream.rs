//! The MCP server the tests put behind the gateway (feature `test-upstream`), written with
//! rmcp: `echo`, `get_env` (its whole environment), `pid`, `slow` (progress every step,
//! stops when cancelled), `cancelled` (how many `slow` calls were cancelled), `ask_llm`
//! (asks the client to sample), `meta` (the request's `_meta`, as JSON) and `toggle` (adds or
//! removes the tool `extra`, then sends `notifications/tools/list_changed`); one prompt,
//! `review` (its `text` argument in a user message). Served over stdio by the binary
//! `mcp-oauth-gateway-test-upstream`, or over Streamable HTTP by [`http_router`].

// Sampling is deprecated for protocol 2026-07-28, and still part of 2025-11-25, which the
// gateway routes.
#![allow(deprecated)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rmcp::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock,
    CreateMessageRequestParams, ErrorData, GetPromptRequestParams, GetPromptResponse,
    GetPromptResult, ListPromptsResult, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::json;

/// The test server. Cheap to clone; clones share the cancellation count.
#[derive(Clone, Default)]
pub struct TestUpstream {
    cancelled: Arc<AtomicU64>,
    /// Whether `extra` is listed (`toggle` flips it).
    extra: Arc<AtomicBool>,
}

fn tool(name: &str, description: &str, properties: serde_json::Value) -> Tool {
    serde_json::from_value(json!({
        "name": name,
        "description": description,
        "inputSchema": { "type": "object", "properties": properties },
    }))
    .unwrap_or_else(|e| panic!("tool {name}: {e}"))
}

fn text(value: impl Into<String>) -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::text(value.into())]).into()
}

impl ServerHandler for TestUpstream {
    fn get_info(&self) -> ServerConfig {
        serde_json::from_value(json!({
            "protocolVersion": "2025-11-25",
            "capabilities": { "tools": { "listChanged": true }, "prompts": {} },
            "serverInfo": { "name": "gateway-test-upstream", "version": "1.0.0" },
        }))
        .unwrap_or_else(|e| panic!("server info: {e}"))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let extra = self
            .extra
            .load(Ordering::SeqCst)
            .then(|| tool("extra", "Listed after a toggle", json!({})));
        Ok(ListToolsResult::with_all_items(
            [
                tool(
                    "echo",
                    "Echo the text",
                    json!({ "text": { "type": "string" } }),
                ),
                tool("get_env", "The server's environment", json!({})),
                tool("pid", "The server's process id", json!({})),
                tool(
                    "slow",
                    "Sends progress every step until done or cancelled",
                    json!({ "steps": { "type": "integer" }, "step_ms": { "type": "integer" } }),
                ),
                tool("cancelled", "How many slow calls were cancelled", json!({})),
                tool(
                    "ask_llm",
                    "Asks the client's model",
                    json!({ "question": { "type": "string" } }),
                ),
                tool("meta", "The request's _meta", json!({})),
                tool("toggle", "Adds or removes the tool extra", json!({})),
            ]
            .into_iter()
            .chain(extra)
            .collect(),
        ))
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        serde_json::from_value(json!({ "prompts": [{
            "name": "review",
            "description": "Asks for a review of the text",
            "arguments": [{ "name": "text", "required": false }],
        }] }))
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        if request.name != "review" {
            return Err(ErrorData::invalid_params(
                format!("unknown prompt {:?}", request.name),
                None,
            ));
        }
        let text = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("text"))
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let result: GetPromptResult = serde_json::from_value(json!({
            "description": "A review",
            "messages": [{ "role": "user", "content": { "type": "text", "text": format!("review: {text}") } }],
        }))
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        Ok(result.into())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        let int =
            |name: &str, default: u64| args.get(name).and_then(|v| v.as_u64()).unwrap_or(default);
        let string = |name: &str| {
            args.get(name)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        Ok(match request.name.as_ref() {
            "echo" => text(string("text")),
            "get_env" => {
                let env: serde_json::Map<String, serde_json::Value> =
                    std::env::vars().map(|(k, v)| (k, v.into())).collect();
                text(serde_json::Value::Object(env).to_string())
            }
            "pid" => text(std::process::id().to_string()),
            "extra" => text("extra"),
            "toggle" => {
                let listed = !self.extra.fetch_xor(true, Ordering::SeqCst);
                let _ = context.peer.notify_tool_list_changed().await;
                text(if listed {
                    "extra listed"
                } else {
                    "extra removed"
                })
            }
            "meta" => text(
                serde_json::to_value(&context.meta)
                    .map_err(|e| ErrorData::internal_error(e.to_string(), None))?
                    .to_string(),
            ),
            "cancelled" => text(self.cancelled.load(Ordering::SeqCst).to_string()),
            "slow" => {
                let (steps, step_ms) = (int("steps", 10), int("step_ms", 50));
                let token = context.meta.get_progress_token();
                for step in 0..steps {
                    if let Some(token) = &token {
                        let param = ProgressNotificationParam::new(token.clone(), step as f64)
                            .with_total(steps as f64);
                        let _ = context.peer.notify_progress(param).await;
                    }
                    tokio::select! {
                        () = context.ct.cancelled() => {
                            self.cancelled.fetch_add(1, Ordering::SeqCst);
                            return Err(ErrorData::internal_error("cancelled", None));
                        }
                        () = tokio::time::sleep(Duration::from_millis(step_ms)) => {}
                    }
                }
                text(format!("done after {steps} steps"))
            }
            "ask_llm" => {
                let params: CreateMessageRequestParams = serde_json::from_value(json!({
                    "messages": [{ "role": "user", "content": { "type": "text", "text": string("question") } }],
                    "maxTokens": 50,
                }))
                .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
                #[allow(deprecated)]
                let answer = context
                    .peer
                    .create_message(params)
                    .await
                    .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
                let answer = serde_json::to_value(&answer)
                    .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
                let said = answer
                    .get("content")
                    .and_then(|c| c.get("text"))
                    .and_then(|t| t.as_str())
                    .unwrap_or_default();
                text(said)
            }
            other => {
                return Err(ErrorData::invalid_params(
                    format!("unknown tool {other:?}"),
                    None,
                ));
            }
        })
    }
}

/// Serves [`TestUpstream`] over stdin/stdout until stdin closes.
///
/// # Errors
///
/// The transport fails.
pub async fn serve_stdio() -> Result<(), Box<dyn std::error::Error>> {
    use rmcp::ServiceExt;
    let service = TestUpstream::default()
        .serve(rmcp::transport::io::stdio())
        .await?;
    service.waiting().await?;
    Ok(())
}

/// The Streamable HTTP service of [`TestUpstream`] (sessions on, SSE answers), as an axum
/// router at `/mcp`.
pub fn http_router() -> axum::Router {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    let upstream = TestUpstream::default();
    let config = StreamableHttpServerConfig::default().with_legacy_session_mode(true);
    let service = StreamableHttpService::new(
        move || Ok(upstream.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    axum::Router::new().route_service("/mcp", service)
}
