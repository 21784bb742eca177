//! The rmcp `ServerHandler` behind [`McpServer`](super::McpServer).

use std::collections::HashMap;
use std::sync::Arc;

use super::{McpServer, ServerError, Tool, ToolContext};
use crate::rmcp::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    Implementation, ListToolsResult, McpRequest, PaginatedRequestParams, RequestContext,
    RoleServer, ServerCapabilities, ServerConfig, ServerHandler, ToolModel,
};

#[derive(Clone)]
struct Shared {
    info: ServerConfig,
    tools: HashMap<String, Tool>,
    listed: Vec<ToolModel>,
    #[cfg(feature = "auth-server")]
    auth_server: Option<crate::auth_server::AuthServer>,
    /// The access policy: `tools/list` shows each caller what it may call.
    #[cfg(feature = "policy")]
    policy: Option<crate::policy::Policy>,
}

#[derive(Clone)]
pub(super) struct Handler {
    shared: Arc<Shared>,
}

impl Handler {
    pub(super) fn new(server: &McpServer) -> Result<Self, ServerError> {
        let mut implementation = Implementation::new(server.name.clone(), server.version.clone());
        if let Some(title) = &server.title {
            implementation = implementation.with_title(title.clone());
        }
        let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(implementation);
        if let Some(instructions) = &server.instructions {
            info = info.with_instructions(instructions.clone());
        }
        let mut listed = Vec::with_capacity(server.tools.len());
        for tool in &server.tools {
            let schema = tool.schema.clone().map_err(|reason| ServerError::Tool {
                name: tool.name.clone(),
                reason,
            })?;
            let mut model = ToolModel::new(tool.name.clone(), tool.description.clone(), schema);
            if let Some(title) = &tool.title {
                model = model.with_title(title.clone());
            }
            listed.push(model);
        }
        let tools = server
            .tools
            .iter()
            .map(|t| (t.name.clone(), t.clone()))
            .collect();
        Ok(Self {
            shared: Arc::new(Shared {
                info,
                tools,
                listed,
                #[cfg(feature = "auth-server")]
                auth_server: server.auth_server.clone(),
                #[cfg(feature = "policy")]
                policy: None,
            }),
        })
    }
}

#[cfg(feature = "policy")]
impl Handler {
    /// The same handler, listing to each caller only the tools `policy` lets it call.
    pub(super) fn with_policy(self, policy: crate::policy::Policy) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.shared);
        shared.policy = Some(policy);
        Self {
            shared: Arc::new(shared),
        }
    }
}

impl ServerHandler for Handler {
    fn get_info(&self) -> ServerConfig {
        self.shared.info.clone()
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        #[cfg(feature = "policy")]
        if let Some(policy) = &self.shared.policy {
            use crate::policy::{Subject, Target};
            // The same decision as a call, with the arguments unknown: a caller without a
            // verified token sees nothing.
            let subject = McpRequest::new(context)
                .auth()
                .map(|a| Subject::from_auth(&a));
            let visible = self
                .shared
                .listed
                .iter()
                .filter(|t| {
                    subject
                        .as_ref()
                        .is_some_and(|s| policy.visible(s, Target::Tool(&t.name)))
                })
                .cloned()
                .collect();
            return Ok(ListToolsResult::with_all_items(visible));
        }
        #[cfg(not(feature = "policy"))]
        let _ = context;
        Ok(ListToolsResult::with_all_items(self.shared.listed.clone()))
    }

    fn get_tool(&self, name: &str) -> Option<ToolModel> {
        self.shared.listed.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(tool) = self.shared.tools.get(request.name.as_ref()) else {
            return Err(ErrorData::invalid_params(
                format!("unknown tool {:?}", request.name),
                None,
            ));
        };
        let mcp = McpRequest::new(context);
        let auth = mcp.auth();
        // The bearer layer already refused calls without these scopes with HTTP 403; this is
        // the second lock on the door, for transports that bypass the layer.
        if !tool.scopes.is_empty()
            && !auth
                .as_ref()
                .is_some_and(|a| a.has_scopes(tool.scopes.iter().map(String::as_str)))
        {
            return Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                "this tool needs the scopes: {}",
                tool.scopes.join(" ")
            ))])
            .into());
        }
        #[cfg_attr(not(feature = "auth-server"), allow(unused_mut))]
        let mut ctx = ToolContext::new(auth, mcp);
        #[cfg(feature = "auth-server")]
        {
            ctx.auth_server = self.shared.auth_server.clone();
        }
        match (tool.handler)(request.arguments, ctx).await {
            Ok(result) => Ok(result.into()),
            Err(message) => Err(ErrorData::invalid_params(message, None)),
        }
    }
}
