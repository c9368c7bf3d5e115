//! An rmcp `StreamableHttpService` behind `RequireBearer`, driven by rmcp's own client over HTTP
//! through this crate's `TowerHttpClient`.

mod support;

use rmcp::model::{CallToolRequestParams, ClientConfig, ProtocolVersion};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientServiceExt, ServiceExt};
use serde_json::Value;
use support::mcp::{discover_or_initialize, echo, streamable_service, text};
use support::{hyper_client, HyperClient};
use tower_mcp_oauth::server::{
    AuthData, McpScopes, RequireBearerLayer, RequireMcpScopesLayer, StaticVerifier,
};
use tower_mcp_oauth::transport::TowerHttpClient;

fn info(subject: &str, scopes: &[&str], resource: &str) -> AuthData {
    AuthData {
        subject: Some(subject.into()),
        client_id: Some("test-client".into()),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        audience: vec![resource.into()],
        ..Default::default()
    }
}

/// Serves the protected MCP server; returns its `/mcp` URL.
async fn protected_mcp_server() -> String {
    let (listener, base) = support::bind().await;
    let url = format!("{base}/mcp");
    let verifier = StaticVerifier::new()
        .token("alice-token", info("alice", &["mcp", "profile"], &url))
        .token("bob-token", info("bob", &["mcp"], &url));
    let bearer = RequireBearerLayer::new(verifier)
        .resource(url.clone())
        .resource_metadata(format!("{url}/.well-known/oauth-protected-resource"))
        .required_scopes(["mcp"]);
    let tool_scopes = RequireMcpScopesLayer::new(McpScopes::new().tool("whoami", ["profile"]));
    let app = axum::Router::new().nest_service(
        "/mcp",
        tower::ServiceBuilder::new()
            .layer(bearer)
            .layer(tool_scopes)
            .service(streamable_service()),
    );
    support::serve_on(listener, app);
    url
}

fn transport(
    url: &str,
    token: Option<&str>,
) -> StreamableHttpClientTransport<TowerHttpClient<HyperClient>> {
    let hyper = hyper_client();
    let mut config = StreamableHttpClientTransportConfig::with_uri(url);
    if let Some(token) = token {
        config = config.auth_header(token);
    }
    StreamableHttpClientTransport::with_client(TowerHttpClient::new(hyper), config)
}

#[tokio::test]
async fn an_rmcp_client_lists_and_calls_tools_and_whoami_sees_auth_info() {
    let url = protected_mcp_server().await;
    let client = ClientConfig::default()
        .serve(transport(&url, Some("alice-token")))
        .await
        .unwrap();

    let tools = client.list_tools(Default::default()).await.unwrap();
    let mut names: Vec<_> = tools.tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, vec!["add", "echo", "server_stats", "whoami"]);

    let echoed = client.call_tool(echo("hello over rmcp")).await.unwrap();
    assert_eq!(text(&echoed.content), "hello over rmcp");

    let who = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap();
    let who: Value = serde_json::from_str(&text(&who.content)).unwrap();
    assert_eq!(who["subject"], "alice");
    assert_eq!(who["scopes"], serde_json::json!(["mcp", "profile"]));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn without_a_token_the_client_cannot_connect() {
    let url = protected_mcp_server().await;
    let error = ClientConfig::default()
        .serve(transport(&url, None))
        .await
        .unwrap_err();
    assert!(format!("{error:?}").contains("AuthRequired"), "{error:?}");
}

#[tokio::test]
async fn a_tool_needing_another_scope_is_refused_with_403() {
    let url = protected_mcp_server().await;
    let client = ClientConfig::default()
        .serve(transport(&url, Some("bob-token")))
        .await
        .unwrap();
    let echoed = client.call_tool(echo("bob may echo")).await.unwrap();
    assert_eq!(text(&echoed.content), "bob may echo");
    let error = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap_err();
    assert!(
        format!("{error:?}").contains("InsufficientScope"),
        "{error:?}"
    );
}

/// At 2026-07-28 there is no handshake: scopes are decided per request from the standard
/// headers and the body, and the challenge names the tool's scope as it does for a session.
#[tokio::test]
async fn at_2026_07_28_a_tool_needing_another_scope_is_refused_naming_its_scope() {
    let url = protected_mcp_server().await;
    let lifecycle = discover_or_initialize();
    let client = ClientConfig::default()
        .serve_with_lifecycle(transport(&url, Some("bob-token")), lifecycle)
        .await
        .unwrap();
    let info = client.peer_info().unwrap();
    assert_eq!(info.protocol_version, ProtocolVersion::V_2026_07_28);
    let echoed = client.call_tool(echo("bob may echo")).await.unwrap();
    assert_eq!(text(&echoed.content), "bob may echo");
    let error = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap_err();
    let error = format!("{error:?}");
    assert!(error.contains("InsufficientScope"), "{error}");
    assert!(error.contains(r#"scope=\"mcp profile\""#), "{error}");
    client.cancel().await.unwrap();
}
