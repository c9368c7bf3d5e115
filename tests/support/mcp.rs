//! MCP on both sides: tool calls and their text for rmcp clients, and the example tools served
//! over Streamable HTTP and legacy HTTP+SSE.

use rmcp::model::{CallToolRequestParams, ContentBlock};
use serde_json::{json, Value};

/// rmcp's client lifecycle at 2026-07-28: `server/discover` first, and `initialize` (at
/// 2025-11-25) when the server's answer shows an older server.
pub fn discover_or_initialize() -> rmcp::ClientLifecycleMode {
    rmcp::ClientLifecycleMode::Auto {
        preferred_versions: vec![rmcp::model::ProtocolVersion::V_2026_07_28],
        legacy_version: Some(rmcp::model::ProtocolVersion::V_2025_11_25),
    }
}

/// rmcp's client lifecycle for one revision: `initialize` (2025-11-25, as `serve` does) for
/// `None`, `server/discover` at `version` otherwise.
pub fn lifecycle_at(version: Option<rmcp::model::ProtocolVersion>) -> rmcp::ClientLifecycleMode {
    match version {
        None => rmcp::ClientLifecycleMode::Initialize,
        Some(version) => rmcp::ClientLifecycleMode::Discover {
            preferred_versions: vec![version],
        },
    }
}

/// A call of `tool` with `arguments` (a JSON object).
pub fn call(tool: &str, arguments: Value) -> CallToolRequestParams {
    let Value::Object(arguments) = arguments else {
        panic!("tool arguments are an object: {arguments}")
    };
    CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments)
}

/// A call of the `echo` tool.
pub fn echo(text: &str) -> CallToolRequestParams {
    call("echo", json!({"text": text}))
}

/// A JSON-RPC call of the `echo` tool, as a client without rmcp sends it.
pub fn echo_message(text: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": text}}})
}

/// The tool names of a `tools/list` answer (a JSON-RPC message), in order.
pub fn tool_names(listed: &Value) -> Vec<&str> {
    listed["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("not a tools/list result: {listed}"))
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect()
}

/// The text of a tool result.
pub fn text(content: &[ContentBlock]) -> String {
    content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect()
}

// The helpers below name their feature-gated types in full, so no import goes unused when a
// feature is off.

/// The example tools over Streamable HTTP, a session each.
#[cfg(feature = "server")]
pub fn streamable_service() -> rmcp::transport::StreamableHttpService<
    super::mcp_tools::Tools,
    rmcp::transport::streamable_http_server::session::local::LocalSessionManager,
> {
    rmcp::transport::StreamableHttpService::new(
        || Ok(super::mcp_tools::Tools::new()),
        Default::default(),
        Default::default(),
    )
}

/// Protects the routes `app` makes with a bearer layer trusting `auth`'s tokens (checked by
/// introspection, without a cache, so a revoked token fails on the next request) and adds the
/// protected-resource metadata for `resource`.
#[cfg(feature = "server")]
pub fn protected_by_demo(
    auth: &super::demo_server::DemoServer,
    resource: &str,
    app: impl FnOnce(
        tower_mcp_oauth::server::RequireBearerLayer<tower_mcp_oauth::server::IntrospectionVerifier>,
    ) -> axum::Router,
) -> axum::Router {
    use tower_mcp_oauth::metadata::ProtectedResourceMetadata;
    use tower_mcp_oauth::server::{
        IntrospectionVerifier, RequireBearerLayer, ResourceMetadataService,
    };
    let metadata = ResourceMetadataService::new(ProtectedResourceMetadata {
        resource: resource.to_owned(),
        authorization_servers: vec![auth.base.clone()],
        scopes_supported: Some(vec!["mcp".into()]),
        bearer_methods_supported: None,
        resource_name: None,
        jwks_uri: None,
        ..Default::default()
    })
    .unwrap();
    // The demo server does not check who introspects.
    let verifier = IntrospectionVerifier::new(
        &format!("{}/introspect", auth.base),
        "rs",
        "rs-secret",
        resource,
    )
    .unwrap();
    let bearer = RequireBearerLayer::new(verifier)
        .resource(resource)
        .resource_metadata(metadata.url())
        .without_cache();
    let mut app = app(bearer);
    for path in metadata.paths() {
        app = app.route_service(path, metadata.clone());
    }
    app
}

/// The legacy server's type for the example tools.
#[cfg(feature = "rmcp-server")]
pub type LegacyTools = tower_mcp_oauth::server::LegacySseServer<fn() -> super::mcp_tools::Tools>;

/// The example tools over legacy HTTP+SSE: the stream at `/sse`, messages at `/message`.
#[cfg(feature = "rmcp-server")]
pub fn legacy_server() -> LegacyTools {
    use super::mcp_tools::Tools;
    tower_mcp_oauth::server::LegacySseServer::new(Tools::new as fn() -> Tools, "/sse", "/message")
}

/// `/sse` and `/message` for `legacy`.
#[cfg(feature = "rmcp-server")]
pub fn legacy_routes(legacy: LegacyTools) -> axum::Router {
    axum::Router::new()
        .route_service("/sse", legacy.clone())
        .route_service("/message", legacy)
}

/// `/sse` and `/message` for `legacy`, both behind `bearer`.
#[cfg(feature = "rmcp-server")]
pub fn protected_legacy_routes<V: tower_mcp_oauth::server::TokenVerifier>(
    legacy: LegacyTools,
    bearer: tower_mcp_oauth::server::RequireBearerLayer<V>,
) -> axum::Router {
    use tower::ServiceBuilder;
    axum::Router::new()
        .route_service(
            "/sse",
            ServiceBuilder::new()
                .layer(bearer.clone())
                .service(legacy.clone()),
        )
        .route_service(
            "/message",
            ServiceBuilder::new().layer(bearer).service(legacy),
        )
}
