//! Tools: a name, a description, an input schema from a Rust type, and an async handler.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::auth::{Auth, InsufficientScope};
use crate::rmcp::{CallToolResult, ContentBlock, JsonObject, McpRequest, schema_for_input};
use crate::verify::BoxFuture;

/// What a tool handler gets besides its arguments.
#[derive(Debug, Clone)]
pub struct ToolContext {
    auth: Option<Auth>,
    request: McpRequest,
    #[cfg(feature = "auth-server")]
    pub(super) auth_server: Option<crate::auth_server::AuthServer>,
}

impl ToolContext {
    pub(crate) fn new(auth: Option<Auth>, request: McpRequest) -> Self {
        Self {
            auth,
            request,
            #[cfg(feature = "auth-server")]
            auth_server: None,
        }
    }

    /// The caller's upstream access token (proxy mode), to call the identity provider's API
    /// as the user: refreshed at the provider when it expired. Never the token the MCP client
    /// sent, which is ours and only good for this server.
    ///
    /// # Security Warning
    ///
    /// This token acts as the user at the provider: never log it or put it in a tool result.
    ///
    /// # Errors
    ///
    /// The server has no [`McpServer::auth_server`](super::McpServer::auth_server), the caller
    /// did not sign in through it, the grant was revoked, or the provider refused the refresh.
    /// The message says which without revealing any token.
    #[cfg(feature = "auth-server")]
    pub async fn upstream_token(&self) -> Result<crate::secret::Secret, ToolError> {
        let auth = self.require_auth()?;
        let server = self.auth_server.as_ref().ok_or_else(|| {
            ToolError::new("this server has no embedded authorization server in proxy mode")
        })?;
        server.upstream_token(auth).await.map_err(|err| {
            tracing::warn!(target: "mcp_oauth::server", error = %err, "upstream token unavailable");
            ToolError::new(format!("the upstream token is unavailable: {err}"))
        })
    }

    /// The verified caller (`None` only on a server without OAuth).
    pub fn auth(&self) -> Option<&Auth> {
        self.auth.as_ref()
    }

    /// The verified caller, or an error result.
    ///
    /// # Errors
    ///
    /// The request was not authenticated.
    pub fn require_auth(&self) -> Result<&Auth, ToolError> {
        self.auth
            .as_ref()
            .ok_or_else(|| ToolError::new("this tool needs an authenticated caller"))
    }

    /// The caller, if every one of `scopes` is granted.
    ///
    /// # Errors
    ///
    /// Unauthenticated, or a scope is missing (the message names it).
    pub fn require_scope<'a>(
        &self,
        scopes: impl IntoIterator<Item = &'a str>,
    ) -> Result<&Auth, ToolError> {
        let auth = self.require_auth()?;
        auth.require_scope(scopes)?;
        Ok(auth)
    }

    /// The HTTP request's head: method, URI, headers and extensions (`None` only on a
    /// transport other than Streamable HTTP).
    pub fn parts(&self) -> Option<&http::request::Parts> {
        self.request.parts()
    }

    /// Whether the client cancelled this call (`notifications/cancelled`).
    pub fn is_cancelled(&self) -> bool {
        self.request.is_cancelled()
    }

    /// Completes when the client cancels this call; `select!` it against long work.
    pub async fn cancelled(&self) {
        self.request.cancelled().await;
    }

    /// Reports progress to the client (`notifications/progress`) when it asked for it (a
    /// progress token in the request's `_meta`); otherwise does nothing.
    ///
    /// # Errors
    ///
    /// The notification could not be sent (the connection is gone).
    pub async fn notify_progress(
        &self,
        progress: f64,
        total: Option<f64>,
        message: Option<String>,
    ) -> Result<(), ToolError> {
        self.request
            .notify_progress(progress, total, message)
            .await
            .map_err(ToolError::new)
    }
}

/// A tool failure shown to the caller as an error result (`isError: true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolError(String);

impl ToolError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ToolError {}

impl From<InsufficientScope> for ToolError {
    fn from(err: InsufficientScope) -> Self {
        Self(err.to_string())
    }
}

impl From<String> for ToolError {
    fn from(message: String) -> Self {
        Self(message)
    }
}

impl From<&str> for ToolError {
    fn from(message: &str) -> Self {
        Self(message.to_owned())
    }
}

/// What a tool handler may return.
pub trait IntoToolResult {
    /// Converts into the MCP result.
    fn into_tool_result(self) -> CallToolResult;
}

impl IntoToolResult for CallToolResult {
    fn into_tool_result(self) -> CallToolResult {
        self
    }
}

impl IntoToolResult for String {
    fn into_tool_result(self) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::text(self)])
    }
}

impl IntoToolResult for &'static str {
    fn into_tool_result(self) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::text(self)])
    }
}

/// JSON: returned as `structuredContent` and, for older clients, as text.
impl IntoToolResult for serde_json::Value {
    fn into_tool_result(self) -> CallToolResult {
        let text = self.to_string();
        let mut result = CallToolResult::structured(self);
        if result.content.is_empty() {
            result.content.push(ContentBlock::text(text));
        }
        result
    }
}

impl<T: IntoToolResult, E: fmt::Display> IntoToolResult for Result<T, E> {
    fn into_tool_result(self) -> CallToolResult {
        match self {
            Ok(value) => value.into_tool_result(),
            Err(err) => CallToolResult::error(vec![ContentBlock::text(err.to_string())]),
        }
    }
}

/// Arguments of a tool that takes none.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

pub(crate) type Handler = dyn Fn(Option<JsonObject>, ToolContext) -> BoxFuture<'static, Result<CallToolResult, String>>
    + Send
    + Sync;

/// A tool of an [`McpServer`](super::McpServer).
///
/// ```
/// use mcp_oauth::server::{NoArgs, Tool, ToolContext, ToolError};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Echo {
///     /// The text to send back.
///     text: String,
/// }
///
/// let echo = Tool::new("echo", "Echo the text back", |args: Echo, _ctx: ToolContext| async move {
///     Ok::<_, ToolError>(args.text)
/// });
/// let admin = Tool::new("admin_action", "Needs the admin scope", |_: NoArgs, _ctx: ToolContext| async move {
///     "done"
/// })
/// .require_scopes(["admin"]);
/// assert_eq!(admin.scopes(), ["admin"]);
/// ```
#[derive(Clone)]
pub struct Tool {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) title: Option<String>,
    pub(crate) schema: Result<Arc<JsonObject>, String>,
    pub(crate) scopes: Vec<String>,
    pub(crate) handler: Arc<Handler>,
}

impl fmt::Debug for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tool")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl Tool {
    /// A tool whose arguments are `A` (its JSON schema is the tool's input schema) and whose
    /// handler gets the parsed arguments and the [`ToolContext`].
    pub fn new<A, F, Fut, R>(
        name: impl Into<String>,
        description: impl Into<String>,
        handler: F,
    ) -> Self
    where
        A: DeserializeOwned + JsonSchema + 'static,
        F: Fn(A, ToolContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoToolResult,
    {
        let handler = Arc::new(handler);
        let erased = move |args: Option<JsonObject>,
                           ctx: ToolContext|
              -> BoxFuture<'static, Result<CallToolResult, String>> {
            let handler = handler.clone();
            Box::pin(async move {
                let args: A =
                    serde_json::from_value(serde_json::Value::Object(args.unwrap_or_default()))
                        .map_err(|e| format!("invalid arguments: {e}"))?;
                Ok(handler(args, ctx).await.into_tool_result())
            })
        };
        Self {
            name: name.into(),
            description: description.into(),
            title: None,
            schema: schema_for_input::<A>(),
            scopes: Vec::new(),
            handler: Arc::new(erased),
        }
    }

    /// Scopes a call of this tool needs. Enforced over HTTP before the call reaches the
    /// MCP service: a token without them gets 403 `insufficient_scope` naming every scope
    /// the call needs, so the client can step up.
    #[must_use]
    pub fn require_scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// A human-readable title.
    #[must_use]
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The scopes this tool needs.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }
}
