//! An rmcp `StreamableHttpService` behind `RequireBearer`, driven by rmcp's own client over HTTP
//! through this crate's `TowerHttpClient`.

#[path = "../examples/support/mcp_tools.rs"]
mod mcp_tools;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rmcp::model::{CallToolRequestParams, ClientConfig, ContentBlock};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{
    StreamableHttpClientTransport, StreamableHttpServerConfig, StreamableHttpService,
};
use rmcp::ServiceExt;
use serde_json::Value;
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
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let verifier = StaticVerifier::new()
        .token("alice-token", info("alice", &["mcp", "profile"], &url))
        .token("bob-token", info("bob", &["mcp"], &url));
    let bearer = RequireBearerLayer::new(verifier)
        .resource(url.clone())
        .resource_metadata(format!("{url}/.well-known/oauth-protected-resource"))
        .required_scopes(["mcp"]);
    let tool_scopes = RequireMcpScopesLayer::new(McpScopes::new().tool("whoami", ["profile"]));
    let mcp = StreamableHttpService::new(
        || Ok(mcp_tools::Tools::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let app = axum::Router::new().nest_service(
        "/mcp",
        tower::ServiceBuilder::new()
            .layer(bearer)
            .layer(tool_scopes)
            .service(mcp),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn transport(
    url: &str,
    token: Option<&str>,
) -> StreamableHttpClientTransport<
    TowerHttpClient<Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>>,
> {
    let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut config = StreamableHttpClientTransportConfig::with_uri(url);
    if let Some(token) = token {
        config = config.auth_header(token);
    }
    StreamableHttpClientTransport::with_client(TowerHttpClient::new(hyper), config)
}

fn text(content: &[ContentBlock]) -> String {
    content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("")
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
    assert_eq!(names, vec!["add", "echo", "whoami"]);

    let mut args = serde_json::Map::new();
    args.insert("text".into(), Value::from("hello over rmcp"));
    let echoed = client
        .call_tool(CallToolRequestParams::new("echo").with_arguments(args))
        .await
        .unwrap();
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
    let mut args = serde_json::Map::new();
    args.insert("text".into(), Value::from("bob may echo"));
    let echoed = client
        .call_tool(CallToolRequestParams::new("echo").with_arguments(args))
        .await
        .unwrap();
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
