//! The conformance fixture: an MCP server with every tool, resource, prompt and utility that the
//! server scenarios of the official runner (`@modelcontextprotocol/conformance`) call, written on
//! rmcp and, with `--issuer`, protected by this crate's bearer layer. `tests/conformance/run.sh`
//! runs the runner against it directly, behind the bearer layer and through `mcp-oauth gateway`.
//!
//! ```sh
//! cargo run -p mcp-oauth --example conformance                 # Streamable HTTP, no OAuth
//! cargo run -p mcp-oauth --example conformance -- --issuer http://127.0.0.1:8080
//! cargo run -p mcp-oauth --example conformance -- --stdio      # MCP on stdin/stdout
//! ```
//!
//! - `--listen HOST:PORT` (default `127.0.0.1:0`, a free port): where the HTTP server listens.
//!   Its endpoint, `http://HOST:PORT/mcp`, is the first line it prints on stdout.
//! - `--issuer URL`: accept only access tokens of this issuer (keys from its discovery
//!   document, e.g. `mcp-oauth dev`) whose audience is the endpoint: the bearer layer answers
//!   401 with a challenge before rmcp sees a request, and sessions are bound to the token's
//!   subject.
//! - `--stdio`: serve one client on stdin/stdout (for a gateway's stdio upstream); logs go to
//!   stderr.
//!
//! Logs go to stderr, at the level `RUST_LOG` asks for (`info` by default).
//!
//! Sessions are on and answers stream as SSE, so that the server can send requests
//! (`sampling/createMessage`, `elicitation/create`) and notifications (progress, log messages)
//! to the client while a call runs. The fixtures are those of the runner's reference server
//! (`examples/servers/typescript/everything-server.ts` of the conformance repository, 0.1.16).

// Logging and sampling are deprecated for protocol 2026-07-28 and still part of 2025-11-25,
// which the runner speaks; resources/subscribe likewise.
#![allow(deprecated)]

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use mcp_oauth::OAuth;
use mcp_oauth::session::SessionBindingLayer;
use rmcp::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult,
    ContentBlock, CreateMessageRequestParams, CustomRequest, ErrorData, GetPromptRequestParams,
    GetPromptResponse, GetPromptResult, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, LoggingLevel, LoggingMessageNotificationParam,
    PaginatedRequestParams, ProgressNotificationParam, ReadResourceRequestParams,
    ReadResourceResponse, ReadResourceResult, ServerConfig, ServerRequest, SetLevelRequestParams,
    SubscribeRequestParams, UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tower_layer::Layer as _;

/// A 1×1 red PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A minimal WAV file.
const WAV: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";
/// The name log messages carry.
const LOGGER: &str = "mcp-oauth-conformance";

/// One client's server: its log level and resource subscriptions. rmcp makes one per session
/// (and one per stdio client).
#[derive(Default)]
struct Conformance {
    /// The least severe level sent (`logging/setLevel`); everything before it is set.
    min_level: Mutex<Option<u8>>,
    subscriptions: Mutex<HashSet<String>>,
}

/// A JSON value as an rmcp type, or an internal error naming what failed.
fn from_json<T: DeserializeOwned>(what: &str, value: Value) -> Result<T, ErrorData> {
    serde_json::from_value(value)
        .map_err(|e| ErrorData::internal_error(format!("{what}: {e}"), None))
}

fn text(value: impl Into<String>) -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::text(value.into())]).into()
}

/// The severity of `level`, `debug` = 0 to `emergency` = 7.
fn severity(level: &LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

fn string_arg(request: &CallToolRequestParams, name: &str) -> String {
    request
        .arguments
        .as_ref()
        .and_then(|args| args.get(name))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

impl Conformance {
    /// Sends `notifications/message` at `level` unless the client asked for less.
    async fn log(&self, context: &RequestContext<RoleServer>, level: LoggingLevel, data: &str) {
        let min = *self
            .min_level
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if min.is_some_and(|min| severity(&level) < min) {
            return;
        }
        let param = LoggingMessageNotificationParam::new(level, json!(data)).with_logger(LOGGER);
        if let Err(err) = context.peer.notify_logging_message(param).await {
            tracing::debug!(%err, "log message not delivered");
        }
    }

    /// Sends `elicitation/create` with `params` as given (the runner checks the schemas
    /// field by field) and describes the answer.
    async fn elicit(context: &RequestContext<RoleServer>, params: Value) -> CallToolResponse {
        let request =
            ServerRequest::CustomRequest(CustomRequest::new("elicitation/create", Some(params)));
        match context.peer.send_request(request).await {
            Ok(answer) => {
                let answer = serde_json::to_value(&answer).unwrap_or(Value::Null);
                text(format!(
                    "Elicitation completed: action={}, content={}",
                    answer.get("action").unwrap_or(&Value::Null),
                    answer.get("content").unwrap_or(&json!({}))
                ))
            }
            Err(err) => text(format!("Elicitation not supported or error: {err}")),
        }
    }

    async fn progress(context: &RequestContext<RoleServer>) -> CallToolResponse {
        let token = context.meta.get_progress_token();
        for (step, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
            if step > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            if let Some(token) = &token {
                let param = ProgressNotificationParam::new(token.clone(), progress)
                    .with_total(100.0)
                    .with_message(format!("Completed step {progress} of 100"));
                if let Err(err) = context.peer.notify_progress(param).await {
                    tracing::debug!(%err, "progress not delivered");
                }
            }
        }
        match &token {
            Some(token) => text(serde_json::to_string(token).unwrap_or_default()),
            None => text("no progress token"),
        }
    }

    async fn sample(
        context: &RequestContext<RoleServer>,
        prompt: String,
    ) -> Result<CallToolResponse, ErrorData> {
        let params: CreateMessageRequestParams = from_json(
            "sampling request",
            json!({
                "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
                "maxTokens": 100,
            }),
        )?;
        Ok(match context.peer.create_message(params).await {
            Ok(answer) => {
                let answer = serde_json::to_value(&answer).unwrap_or(Value::Null);
                let said = answer
                    .pointer("/content/text")
                    .and_then(Value::as_str)
                    .unwrap_or("No response");
                text(format!("LLM response: {said}"))
            }
            Err(err) => text(format!("Sampling not supported or error: {err}")),
        })
    }
}

fn tools() -> Value {
    let none = json!({ "type": "object", "properties": {} });
    let tool = |name: &str, description: &str, schema: &Value| json!({ "name": name, "description": description, "inputSchema": schema });
    json!({ "tools": [
        tool("test_simple_text", "Tests simple text content response", &none),
        tool("test_image_content", "Tests image content response", &none),
        tool("test_audio_content", "Tests audio content response", &none),
        tool("test_embedded_resource", "Tests embedded resource content response", &none),
        tool("test_multiple_content_types", "Tests response with multiple content types (text, image, resource)", &none),
        tool("test_tool_with_logging", "Tests tool that emits log messages during execution", &none),
        tool("test_tool_with_progress", "Tests tool that reports progress notifications", &none),
        tool("test_error_handling", "Tests error response handling", &none),
        tool("test_sampling", "Tests server-initiated sampling (LLM completion request)", &json!({
            "type": "object",
            "properties": { "prompt": { "type": "string", "description": "The prompt to send to the LLM" } },
            "required": ["prompt"],
        })),
        tool("test_elicitation", "Tests server-initiated elicitation (user input request)", &json!({
            "type": "object",
            "properties": { "message": { "type": "string", "description": "The message to show the user" } },
            "required": ["message"],
        })),
        tool("test_elicitation_sep1034_defaults", "Tests elicitation with default values per SEP-1034", &none),
        tool("test_elicitation_sep1330_enums", "Tests elicitation with enum schema improvements per SEP-1330", &none),
    ]})
}

/// The form of `test_elicitation_sep1034_defaults`: a default for every primitive type.
fn sep1034_defaults() -> Value {
    json!({
        "message": "Please review and update the form fields with defaults",
        "requestedSchema": {
            "type": "object",
            "properties": {
                "name": { "type": "string", "description": "User name", "default": "John Doe" },
                "age": { "type": "integer", "description": "User age", "default": 30 },
                "score": { "type": "number", "description": "User score", "default": 95.5 },
                "status": {
                    "type": "string", "description": "User status",
                    "enum": ["active", "inactive", "pending"], "default": "active",
                },
                "verified": { "type": "boolean", "description": "Verification status", "default": true },
            },
            "required": [],
        },
    })
}

/// The form of `test_elicitation_sep1330_enums`: the five enum shapes.
fn sep1330_enums() -> Value {
    json!({
        "message": "Please select options from the enum fields",
        "requestedSchema": {
            "type": "object",
            "properties": {
                "untitledSingle": {
                    "type": "string", "description": "Select one option",
                    "enum": ["option1", "option2", "option3"],
                },
                "titledSingle": {
                    "type": "string", "description": "Select one option with titles",
                    "oneOf": [
                        { "const": "value1", "title": "First Option" },
                        { "const": "value2", "title": "Second Option" },
                        { "const": "value3", "title": "Third Option" },
                    ],
                },
                "legacyEnum": {
                    "type": "string", "description": "Select one option (legacy)",
                    "enum": ["opt1", "opt2", "opt3"],
                    "enumNames": ["Option One", "Option Two", "Option Three"],
                },
                "untitledMulti": {
                    "type": "array", "description": "Select multiple options",
                    "minItems": 1, "maxItems": 3,
                    "items": { "type": "string", "enum": ["option1", "option2", "option3"] },
                },
                "titledMulti": {
                    "type": "array", "description": "Select multiple options with titles",
                    "minItems": 1, "maxItems": 3,
                    "items": { "anyOf": [
                        { "const": "value1", "title": "First Choice" },
                        { "const": "value2", "title": "Second Choice" },
                        { "const": "value3", "title": "Third Choice" },
                    ]},
                },
            },
            "required": [],
        },
    })
}

fn resources() -> Value {
    json!({ "resources": [
        {
            "uri": "test://static-text", "name": "static-text", "title": "Static Text Resource",
            "description": "A static text resource for testing", "mimeType": "text/plain",
        },
        {
            "uri": "test://static-binary", "name": "static-binary", "title": "Static Binary Resource",
            "description": "A static binary resource (image) for testing", "mimeType": "image/png",
        },
        {
            "uri": "test://watched-resource", "name": "watched-resource", "title": "Watched Resource",
            "description": "A resource clients may subscribe to", "mimeType": "text/plain",
        },
    ]})
}

/// The contents of the resource at `uri`, if there is one.
fn read(uri: &str) -> Option<Value> {
    let one = |content: Value| Some(json!({ "contents": [content] }));
    match uri {
        "test://static-text" => one(json!({
            "uri": uri, "mimeType": "text/plain",
            "text": "This is the content of the static text resource.",
        })),
        "test://static-binary" => one(json!({ "uri": uri, "mimeType": "image/png", "blob": PNG })),
        "test://watched-resource" => one(json!({
            "uri": uri, "mimeType": "text/plain", "text": "Watched resource content",
        })),
        _ => {
            // test://template/{id}/data
            let id = uri
                .strip_prefix("test://template/")?
                .strip_suffix("/data")
                .filter(|id| !id.is_empty() && !id.contains('/'))?;
            one(json!({
                "uri": uri, "mimeType": "application/json",
                "text": json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") }).to_string(),
            }))
        }
    }
}

fn prompts() -> Value {
    let arg = |name: &str, description: &str| json!({ "name": name, "description": description, "required": true });
    json!({ "prompts": [
        { "name": "test_simple_prompt", "title": "Simple Test Prompt", "description": "A simple prompt without arguments" },
        {
            "name": "test_prompt_with_arguments", "title": "Prompt With Arguments",
            "description": "A prompt with required arguments",
            "arguments": [arg("arg1", "First test argument"), arg("arg2", "Second test argument")],
        },
        {
            "name": "test_prompt_with_embedded_resource", "title": "Prompt With Embedded Resource",
            "description": "A prompt that includes an embedded resource",
            "arguments": [arg("resourceUri", "URI of the resource to embed")],
        },
        { "name": "test_prompt_with_image", "title": "Prompt With Image", "description": "A prompt that includes image content" },
    ]})
}

/// The messages of prompt `name` with `args`, or why there are none.
fn prompt(name: &str, args: &serde_json::Map<String, Value>) -> Result<Value, String> {
    let arg = |key: &str| {
        args.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("prompt {name:?} needs the argument {key:?}"))
    };
    let user = |content: Value| json!({ "role": "user", "content": content });
    let messages = match name {
        "test_simple_prompt" => vec![user(
            json!({ "type": "text", "text": "This is a simple prompt for testing." }),
        )],
        "test_prompt_with_arguments" => vec![user(json!({
            "type": "text",
            "text": format!("Prompt with arguments: arg1='{}', arg2='{}'", arg("arg1")?, arg("arg2")?),
        }))],
        "test_prompt_with_embedded_resource" => vec![
            user(json!({ "type": "resource", "resource": {
                "uri": arg("resourceUri")?, "mimeType": "text/plain",
                "text": "Embedded resource content for testing.",
            }})),
            user(json!({ "type": "text", "text": "Please process the embedded resource above." })),
        ],
        "test_prompt_with_image" => vec![
            user(json!({ "type": "image", "data": PNG, "mimeType": "image/png" })),
            user(json!({ "type": "text", "text": "Please analyze the image above." })),
        ],
        _ => return Err(format!("unknown prompt {name:?}")),
    };
    Ok(json!({ "messages": messages }))
}

impl ServerHandler for Conformance {
    fn get_info(&self) -> ServerConfig {
        from_json(
            "server info",
            json!({
                "protocolVersion": "2025-11-25",
                "capabilities": {
                    "tools": { "listChanged": true },
                    "resources": { "subscribe": true, "listChanged": true },
                    "prompts": { "listChanged": true },
                    "logging": {},
                    "completions": {},
                },
                "serverInfo": { "name": "mcp-oauth-conformance", "version": env!("CARGO_PKG_VERSION") },
            }),
        )
        .unwrap_or_else(|e| panic!("{}", e.message))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        from_json("tools", tools())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let result =
            |value: Value| from_json::<CallToolResult>("tool result", value).map(Into::into);
        match request.name.as_ref() {
            "test_simple_text" => Ok(text("This is a simple text response for testing.")),
            "test_image_content" => result(json!({
                "content": [{ "type": "image", "data": PNG, "mimeType": "image/png" }],
            })),
            "test_audio_content" => result(json!({
                "content": [{ "type": "audio", "data": WAV, "mimeType": "audio/wav" }],
            })),
            "test_embedded_resource" => result(json!({ "content": [{
                "type": "resource",
                "resource": {
                    "uri": "test://embedded-resource", "mimeType": "text/plain",
                    "text": "This is an embedded resource content.",
                },
            }]})),
            "test_multiple_content_types" => result(json!({ "content": [
                { "type": "text", "text": "Multiple content types test:" },
                { "type": "image", "data": PNG, "mimeType": "image/png" },
                { "type": "resource", "resource": {
                    "uri": "test://mixed-content-resource", "mimeType": "application/json",
                    "text": json!({ "test": "data", "value": 123 }).to_string(),
                }},
            ]})),
            "test_tool_with_logging" => {
                for (i, message) in [
                    "Tool execution started",
                    "Tool processing data",
                    "Tool execution completed",
                ]
                .into_iter()
                .enumerate()
                {
                    if i > 0 {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    self.log(&context, LoggingLevel::Info, message).await;
                }
                Ok(text("Tool with logging executed successfully"))
            }
            "test_tool_with_progress" => Ok(Self::progress(&context).await),
            "test_error_handling" => Ok(CallToolResult::error(vec![ContentBlock::text(
                "This tool intentionally returns an error for testing",
            )])
            .into()),
            "test_sampling" => Self::sample(&context, string_arg(&request, "prompt")).await,
            "test_elicitation" => {
                let params = json!({
                    "message": string_arg(&request, "message"),
                    "requestedSchema": {
                        "type": "object",
                        "properties": { "response": { "type": "string", "description": "User's response" } },
                        "required": ["response"],
                    },
                });
                Ok(Self::elicit(&context, params).await)
            }
            "test_elicitation_sep1034_defaults" => {
                Ok(Self::elicit(&context, sep1034_defaults()).await)
            }
            "test_elicitation_sep1330_enums" => Ok(Self::elicit(&context, sep1330_enums()).await),
            other => Err(ErrorData::invalid_params(
                format!("unknown tool {other:?}"),
                None,
            )),
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        from_json("resources", resources())
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        from_json(
            "resource templates",
            json!({ "resourceTemplates": [{
                "uriTemplate": "test://template/{id}/data", "name": "template",
                "title": "Resource Template",
                "description": "A resource template with parameter substitution",
                "mimeType": "application/json",
            }]}),
        )
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let Some(contents) = read(&request.uri) else {
            return Err(ErrorData::resource_not_found(
                format!("no resource {:?}", request.uri),
                None,
            ));
        };
        from_json::<ReadResourceResult>("resource", contents).map(Into::into)
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(request.uri.clone());
        let message = format!("Subscribed to resource: {}", request.uri);
        self.log(&context, LoggingLevel::Info, &message).await;
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&request.uri);
        let message = format!("Unsubscribed from resource: {}", request.uri);
        self.log(&context, LoggingLevel::Info, &message).await;
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        from_json("prompts", prompts())
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        let messages =
            prompt(&request.name, &args).map_err(|e| ErrorData::invalid_params(e, None))?;
        from_json::<GetPromptResult>("prompt", messages).map(Into::into)
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        *self
            .min_level
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(severity(&request.level));
        let level = serde_json::to_value(request.level).unwrap_or(Value::Null);
        self.log(
            &context,
            LoggingLevel::Info,
            &format!("Log level set to: {level}"),
        )
        .await;
        Ok(())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        // The argument values this server knows, those that start with what was typed.
        let typed = request.argument.value.as_str();
        let values: Vec<&str> = ["paris", "park", "party"]
            .into_iter()
            .filter(|v| v.starts_with(typed))
            .collect();
        from_json(
            "completion",
            json!({ "completion": { "values": values, "total": values.len(), "hasMore": false } }),
        )
    }
}

/// What the command line asks for.
struct Options {
    listen: String,
    issuer: Option<String>,
    stdio: bool,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        listen: "127.0.0.1:0".to_owned(),
        issuer: None,
        stdio: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--listen" => options.listen = value("--listen")?,
            "--issuer" => options.issuer = Some(value("--issuer")?),
            "--stdio" => options.stdio = true,
            other => {
                return Err(format!(
                    "unknown argument {other:?}; the arguments are --listen HOST:PORT, --issuer URL and --stdio"
                ));
            }
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::exit_code(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Logs go to stderr: stdout carries the protocol (--stdio) or the endpoint line.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let options = options()?;
    if options.stdio {
        use rmcp::ServiceExt as _;
        let service = Conformance::default()
            .serve(rmcp::transport::io::stdio())
            .await?;
        service.waiting().await?;
        return Ok(());
    }

    let listener = tokio::net::TcpListener::bind(&options.listen).await?;
    let url = format!("http://{}/mcp", listener.local_addr()?);
    let sessions = Arc::new(LocalSessionManager::default());
    let new_session = || Ok(Conformance::default());
    let app = match &options.issuer {
        None => {
            let config = StreamableHttpServerConfig::default().with_legacy_session_mode(true);
            let service = StreamableHttpService::new(new_session, sessions, config);
            axum::Router::new().route_service("/mcp", service)
        }
        Some(issuer) => {
            let oauth = OAuth::oidc(issuer.clone(), url.clone())?;
            // The crate's settings for a protected endpoint (its host and loopback allowed in
            // `Host`), with sessions and SSE answers, which server-to-client requests need.
            let config = mcp_oauth::rmcp::streamable_http_config(&oauth)
                .with_legacy_session_mode(true)
                .with_json_response(false);
            let service = StreamableHttpService::new(new_session, sessions, config);
            let protected = oauth
                .layer()
                .layer(SessionBindingLayer::default().layer(service));
            axum::Router::new()
                .route_service("/mcp", protected)
                .merge(oauth.metadata_router())
        }
    };
    // The first line on stdout: the endpoint (the test script reads it).
    println!("{url}");
    tracing::info!(%url, oauth = options.issuer.is_some(), "conformance fixture listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(mcp_oauth::server::shutdown_signal())
        .await?;
    Ok(())
}
