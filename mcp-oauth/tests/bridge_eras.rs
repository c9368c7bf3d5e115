//! `mcp-oauth --protocol auto`: a client of the 2025-11-25 era (rmcp's child-process client, as a
//! desktop host starts the bridge) reaches an rmcp server that speaks only 2026-07-28. Tools are
//! listed and called, a call that needs the user's confirmation (`input_required`) is put to the
//! client as an ordinary elicitation, and a list change reaches the client.

mod support;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::InputResponses;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities, ClientConfig,
    ContentBlock, ElicitRequestParams, ElicitResult, ElicitationAction, Implementation,
    ProtocolVersion, ServerCapabilities, ServerConfig, ServerNotification, SubscriptionFilter,
    ToolListChangedNotification,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService, TokioChildProcess};
use rmcp::{
    tool, tool_handler, tool_router, ClientHandler, ErrorData, RoleClient, ServerHandler,
    ServiceExt,
};
use serde_json::json;
use tokio::sync::Notify;

/// Speaks only 2026-07-28. `delete` asks the user first; `change` makes its tool list change.
#[derive(Clone)]
struct Modern {
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

async fn modern_server() -> String {
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
    format!("{}/mcp", support::serve(app).await)
}

/// A 2025-11-25 client that confirms what it is asked and counts list changes.
#[derive(Clone, Default)]
struct Desktop {
    asked: Arc<std::sync::Mutex<Vec<String>>>,
    list_changes: Arc<Notify>,
}

impl ClientHandler for Desktop {
    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::default();
        capabilities.elicitation = Some(Default::default());
        ClientConfig::new(capabilities, Implementation::new("desktop", "1"))
            .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let message = serde_json::to_value(&request).unwrap()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.asked.lock().unwrap().push(message);
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(json!({"confirmed": true})))
    }

    async fn on_tool_list_changed(&self, _context: rmcp::service::NotificationContext<RoleClient>) {
        self.list_changes.notify_one();
    }
}

fn text_of(result: &CallToolResult) -> String {
    serde_json::to_value(&result.content).unwrap()[0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2025_client_reaches_a_2026_only_server_through_protocol_auto() {
    let url = modern_server().await;
    let dir = tempfile::tempdir().unwrap();
    let command = support::stdio::bridge_command(&[&url, "--protocol", "auto"], dir.path());
    let desktop = Desktop::default();
    let client = desktop
        .clone()
        .serve(TokioChildProcess::new(command).unwrap())
        .await
        .expect("the handshake, answered by the bridge");
    let server = client.peer_info().unwrap();
    assert_eq!(server.server_info.as_ref().unwrap().name, "modern-only");
    assert_eq!(server.protocol_version, ProtocolVersion::V_2025_11_25);

    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, ["answer", "change", "delete"]);
    let answer = client
        .call_tool(CallToolRequestParams::new("answer"))
        .await
        .unwrap();
    assert_eq!(text_of(&answer), "42");

    // input_required, put to the client as an elicitation, then the call again.
    let deleted = client
        .call_tool(CallToolRequestParams::new("delete"))
        .await
        .unwrap();
    assert_eq!(text_of(&deleted), "deleted");
    assert_eq!(*desktop.asked.lock().unwrap(), ["Delete it?"]);

    // The list change comes down the subscription the bridge opened.
    let noticed = desktop.list_changes.notified();
    client
        .call_tool(CallToolRequestParams::new("change"))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), noticed)
        .await
        .expect("notifications/tools/list_changed reached the client");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_still_answers_the_handshake_with_an_error() {
    let (_held, base) = support::refusing_port();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{base}/mcp");
    let command = support::stdio::bridge_command(&[&url, "--protocol", "auto"], dir.path());
    let mut bridge = support::stdio::StdioPeer::spawn(command);
    let (answer, _) = bridge
        .ask(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}}),
        )
        .await;
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("could not be reached"), "{answer}");
    bridge.finish().await;
}
