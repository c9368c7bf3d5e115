//! `mcp-oauth --protocol auto`: a client of the 2025-11-25 era (rmcp's child-process client, as a
//! desktop host starts the bridge) reaches an rmcp server that speaks only 2026-07-28. Tools are
//! listed and called, a call that needs the user's confirmation (`input_required`) is put to the
//! client as an ordinary elicitation, and a list change reaches the client.

mod support;

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ElicitRequestParams,
    ElicitResult, ElicitationAction, Implementation, ProtocolVersion,
};
use rmcp::service::RequestContext;
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use serde_json::json;
use support::modern::modern_server;
use tokio::sync::Notify;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdks_client_reaches_a_2026_only_server_through_protocol_auto() {
    if !support::ts_sdk::ready() {
        return;
    }
    let url = modern_server().await;
    let dir = tempfile::tempdir().unwrap();
    // desktop.mjs starts the bridge itself, with the environment it was given: the one
    // bridge_command sets up.
    let bridge = support::stdio::bridge_command(&[], dir.path());
    let bridge = bridge.as_std();
    let mut desktop = tokio::process::Command::new("node");
    desktop
        .arg("desktop.mjs")
        .arg(bridge.get_program())
        .arg(&url)
        .current_dir(support::ts_sdk::DIR)
        .kill_on_drop(true);
    for (key, value) in bridge.get_envs() {
        match value {
            Some(value) => desktop.env(key, value),
            None => desktop.env_remove(key),
        };
    }
    let output = tokio::time::timeout(Duration::from_secs(60), desktop.output())
        .await
        .expect("desktop.mjs ends within a minute")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let steps: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        steps,
        [
            "connected to modern-only at 2025-11-25",
            "tools answer change delete",
            "answer 42",
            "elicitation answered",
            "list change heard",
        ],
        "{stderr}"
    );
}
