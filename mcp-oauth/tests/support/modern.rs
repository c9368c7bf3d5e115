//! An MCP server that speaks only 2026-07-28 (rmcp's): what `--protocol auto` carries a
//! 2025-11-25 client to.

use std::borrow::Cow;
use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::InputResponses;
use rmcp::model::{
    CallToolResponse, CallToolResult, ContentBlock, Implementation, ProtocolVersion,
    ServerCapabilities, ServerConfig, ServerNotification, SubscriptionFilter,
    ToolListChangedNotification,
};
use rmcp::service::SubscriptionContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{tool, tool_handler, tool_router, ErrorData, ServerHandler};
use serde_json::json;
use tokio::sync::Notify;

/// Speaks only 2026-07-28. `delete` asks the user first; `change` makes its tool list change.
#[derive(Clone)]
pub struct Modern {
    tool_router: ToolRouter<Self>,
    changed: Arc<Notify>,
}

#[tool_router]
impl Modern {
    #[tool(description = "Adds 40 and 2")]
    async fn answer(&self) -> Result<CallToolResult, ErrorData> {
        Ok(CallToolResult::success(vec![ContentBlock::text("42")]))
    }

    #[tool(description = "Deletes, once the user confirms")]
    async fn delete(
        &self,
        InputResponses(responses): InputResponses,
    ) -> Result<CallToolResponse, ErrorData> {
        if let Some(responses) = responses {
            let confirmed = responses["confirm"]["content"]["confirmed"] == json!(true);
            let text = if confirmed { "deleted" } else { "kept" };
            return Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into());
        }
        let input_required = json!({
            "resultType": "input_required",
            "requestState": "opaque-state-1",
            "inputRequests": {"confirm": {"method": "elicitation/create", "params": {
                "mode": "form", "message": "Delete it?",
                "requestedSchema": {"type": "object", "properties": {
                    "confirmed": {"type": "boolean"}}}}}},
        });
        serde_json::from_value(input_required)
            .map(CallToolResponse::InputRequired)
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))
    }

    #[tool(description = "Changes the tool list")]
    async fn change(&self) -> Result<CallToolResult, ErrorData> {
        self.changed.notify_waiters();
        Ok(CallToolResult::success(vec![ContentBlock::text("changed")]))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Modern {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        ServerConfig::new(capabilities).with_server_info(Implementation::new("modern-only", "1"))
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Owned(vec![ProtocolVersion::V_2026_07_28])
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.clone())
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        loop {
            tokio::select! {
                () = context.cancelled() => return Ok(()),
                () = self.changed.notified() => {
                    let changed = ServerNotification::ToolListChangedNotification(
                        ToolListChangedNotification::default(),
                    );
                    let _ = context.sink().send(changed).await;
                }
            }
        }
    }
}

/// A [`Modern`] server on 127.0.0.1; its MCP URL.
pub async fn modern_server() -> String {
    let changed = Arc::new(Notify::new());
    let service = StreamableHttpService::new(
        move || {
            Ok(Modern {
                tool_router: Modern::tool_router(),
                changed: changed.clone(),
            })
        },
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let app = axum::Router::new().nest_service("/mcp", service);
    format!("{}/mcp", super::serve(app).await)
}
