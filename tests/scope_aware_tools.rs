//! Scope-aware tools: an rmcp server (paginating its tools) behind `RequireBearer`,
//! `RequireMcpScopes` and `FilterMcpLists`, listed by rmcp clients holding different tokens over
//! JSON and SSE answers at 2025-11-25 and 2026-07-28; and the example server, where our client
//! steps up after a 403, or before the call from the scope hints.
#![cfg(all(
    feature = "authorization-server",
    feature = "rmcp",
    feature = "rmcp-server",
    feature = "jwt"
))]

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, JsonObject,
    ListToolsResult, PaginatedRequestParams, ProtocolVersion, ServerCapabilities, ServerConfig,
    Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{
    StreamableHttpClientTransport, StreamableHttpServerConfig, StreamableHttpService, Transport,
};
use rmcp::{ClientServiceExt, ErrorData, RoleClient, RoleServer, ServerHandler, ServiceExt};
use serde_json::{json, Value};
use support::client::headless_state;
use support::mcp::{lifecycle_at, text};
use support::oauth_server_app;
use tower::ServiceBuilder;
use tower_mcp_oauth::client::OAuthLayer;
use tower_mcp_oauth::server::{
    scopes_meta, AuthData, FilterMcpListsLayer, McpScopes, RequireBearerLayer,
    RequireMcpScopesLayer, StaticVerifier, SCOPES_META_KEY,
};
use tower_mcp_oauth::transport::{
    StepUpFromHints, StreamableHttpConfig, StreamableHttpTransport, TowerHttpClient,
};

/// Tools `t0` … `t9`, three a page: `t1`, `t4` and `t8` need `files:write`, `t6` needs `admin`,
/// `t7` both.
fn catalogue() -> Vec<Tool> {
    (0..10)
        .map(|i| {
            let tool = Tool::new(format!("t{i}"), "a tool", JsonObject::new());
            match i {
                1 | 4 | 8 => tool.with_meta(scopes_meta(["files:write"])),
                6 => tool.with_meta(scopes_meta(["admin"])),
                7 => tool.with_meta(scopes_meta(["admin", "files:write"])),
                _ => tool,
            }
        })
        .collect()
}

const PAGE: usize = 3;

/// An MCP server that pages its tools as rmcp's router does not: the cursor is the next index.
#[derive(Clone)]
struct Paged(Arc<Vec<Tool>>);

impl ServerHandler for Paged {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let start: usize = match request.and_then(|r| r.cursor) {
            Some(cursor) => cursor
                .parse()
                .map_err(|_| ErrorData::invalid_params("bad cursor", None))?,
            None => 0,
        };
        let end = (start + PAGE).min(self.0.len());
        let mut page = ListToolsResult::with_all_items(self.0[start.min(end)..end].to_vec());
        page.next_cursor = (end < self.0.len()).then(|| end.to_string());
        Ok(page)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        Ok(CallToolResult::success(vec![ContentBlock::text(request.name.to_string())]).into())
    }
}

fn token(scopes: &[&str], resource: &str) -> AuthData {
    AuthData {
        subject: Some("user".into()),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        audience: vec![resource.into()],
        ..Default::default()
    }
}

/// The protected server, answering in JSON or in SSE; returns its URL and the media types of
/// its answers to POSTs.
async fn paged_server(json_answers: bool) -> (String, Arc<Mutex<BTreeSet<String>>>) {
    let (listener, base) = support::bind().await;
    let url = format!("{base}/mcp");
    let verifier = StaticVerifier::new()
        .token("reader", token(&["mcp"], &url))
        .token("writer", token(&["mcp", "files:write"], &url));
    let tools = Arc::new(catalogue());
    let scopes = McpScopes::new()
        .from_rmcp_tools(tools.iter())
        .filter_lists(true);
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(json_answers);
    let handler = Paged(tools);
    let mcp = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let media = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = media.clone();
    let app = axum::Router::new().nest_service(
        "/mcp",
        ServiceBuilder::new()
            .layer(
                RequireBearerLayer::new(verifier)
                    .resource(url.clone())
                    .required_scopes(["mcp"]),
            )
            .layer(RequireMcpScopesLayer::new(scopes.clone()))
            .layer(FilterMcpListsLayer::new(scopes))
            .map_response(move |response: http::Response<_>| {
                if let Some(kind) = response.headers().get("content-type") {
                    let kind = kind.to_str().unwrap_or_default();
                    seen.lock()
                        .unwrap()
                        .insert(kind.split(';').next().unwrap().to_owned());
                }
                response
            })
            .service(mcp),
    );
    support::serve_on(listener, app);
    (url, media)
}

/// Every tool listed for `bearer` at `version`, page after page, and the hint on each.
async fn listed(
    url: &str,
    bearer: &str,
    version: Option<ProtocolVersion>,
) -> Vec<(String, Option<Value>)> {
    let config = StreamableHttpClientTransportConfig::with_uri(url).auth_header(bearer);
    let transport = StreamableHttpClientTransport::with_client(
        TowerHttpClient::new(support::hyper_client()),
        config,
    );
    let client = rmcp::model::ClientConfig::default()
        .serve_with_lifecycle(transport, lifecycle_at(version))
        .await
        .unwrap();
    let mut tools = Vec::new();
    let mut cursor = None;
    loop {
        let page = client
            .list_tools(Some(PaginatedRequestParams::default().with_cursor(cursor)))
            .await
            .unwrap();
        for tool in page.tools {
            let hint = tool
                .meta
                .as_ref()
                .and_then(|m| m.0.get(SCOPES_META_KEY).cloned());
            tools.push((tool.name.to_string(), hint));
        }
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let _ = client.cancel().await;
    tools
}

fn names(tools: &[(String, Option<Value>)]) -> Vec<&str> {
    tools.iter().map(|(name, _)| name.as_str()).collect()
}

#[tokio::test]
async fn two_tokens_list_different_tools_over_json_and_sse_at_both_revisions() {
    for json_answers in [true, false] {
        let (url, media) = paged_server(json_answers).await;
        for version in [None, Some(ProtocolVersion::V_2026_07_28)] {
            let what = format!("json={json_answers} version={version:?}");
            let reader = listed(&url, "reader", version.clone()).await;
            assert_eq!(names(&reader), ["t0", "t2", "t3", "t5", "t9"], "{what}");
            let writer = listed(&url, "writer", version.clone()).await;
            // Every allowed tool once, in order, across pages the filter shortened.
            assert_eq!(
                names(&writer),
                ["t0", "t1", "t2", "t3", "t4", "t5", "t8", "t9"],
                "{what}"
            );
            assert_eq!(writer[1].1, Some(json!(["files:write"])), "{what}");
            assert_eq!(writer[0].1, None, "{what}");
        }
        let expected = if json_answers {
            "application/json"
        } else {
            "text/event-stream"
        };
        assert!(
            media.lock().unwrap().contains(expected),
            "{:?}",
            media.lock().unwrap()
        );
    }
}

#[tokio::test]
async fn a_hidden_tool_is_still_refused_with_403_naming_its_scopes() {
    let (url, _) = paged_server(true).await;
    let mut request = support::json_request(
        &url,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t7"}}),
    );
    request
        .headers_mut()
        .insert("authorization", "Bearer writer".parse().unwrap());
    request.headers_mut().insert(
        "accept",
        "application/json, text/event-stream".parse().unwrap(),
    );
    let answer = support::send(request).await;
    assert_eq!(answer.status, http::StatusCode::FORBIDDEN);
    let challenge = answer.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
    assert!(
        challenge.contains(r#"scope="admin files:write mcp""#),
        "{challenge}"
    );
}

/// The example server and our client: lists `tools/list`, calls `server_stats` (which needs
/// `mcp:admin`), and returns what was listed and the statuses the MCP server answered.
async fn call_the_admin_tool(filter_tools: bool, hints: bool) -> (Vec<String>, Vec<u16>, String) {
    let running = support::approving_server(oauth_server_app::Options {
        filter_tools,
        ..Default::default()
    })
    .await;
    let state = headless_state(&running.mcp_url).await;
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let log = statuses.clone();
    let stack = ServiceBuilder::new()
        .layer(OAuthLayer::new(state.clone()))
        .map_response(move |response: http::Response<_>| {
            log.lock().unwrap().push(response.status().as_u16());
            response
        })
        .service(tower_mcp_oauth::http::hyper_client());
    let transport =
        StreamableHttpTransport::new(stack, StreamableHttpConfig::new(&running.mcp_url));
    let (listed, answer) = if hints {
        list_and_call(StepUpFromHints::new(transport, state.clone())).await
    } else {
        list_and_call(transport).await
    };
    let statuses = statuses.lock().unwrap().clone();
    let granted = state.credentials().unwrap().scopes.join(" ");
    assert!(answer.contains("tools"), "{answer}");
    (listed, statuses, granted)
}

async fn list_and_call<T>(transport: T) -> (Vec<String>, String)
where
    T: Transport<RoleClient> + 'static,
{
    let client = rmcp::model::ClientConfig::default()
        .serve(transport)
        .await
        .unwrap();
    let tools = client.list_all_tools().await.unwrap();
    let listed = tools.iter().map(|t| t.name.to_string()).collect();
    let answer = client
        .call_tool(CallToolRequestParams::new("server_stats"))
        .await
        .unwrap();
    let _ = client.cancel().await;
    (listed, text(&answer.content))
}

#[tokio::test]
async fn a_hidden_tool_answers_403_and_our_client_steps_up_and_calls_it() {
    let (listed, statuses, granted) = call_the_admin_tool(true, false).await;
    assert!(
        !listed.iter().any(|name| name == "server_stats"),
        "{listed:?}"
    );
    assert!(listed.iter().any(|name| name == "echo"), "{listed:?}");
    assert!(statuses.contains(&403), "{statuses:?}");
    assert!(granted.contains("mcp:admin"), "{granted}");
}

#[tokio::test]
async fn with_the_hints_our_client_asks_for_the_tools_scopes_before_calling() {
    let (listed, statuses, granted) = call_the_admin_tool(false, true).await;
    assert!(
        listed.iter().any(|name| name == "server_stats"),
        "{listed:?}"
    );
    assert!(!statuses.contains(&403), "{statuses:?}");
    assert!(granted.contains("mcp:admin"), "{granted}");
}

#[tokio::test]
async fn the_metadata_lists_the_tools_scopes_and_the_challenge_the_least() {
    let running = support::approving_server(oauth_server_app::Options::default()).await;
    let metadata = support::get(&format!(
        "{}/.well-known/oauth-protected-resource",
        running.base
    ))
    .await
    .json();
    assert_eq!(
        metadata["scopes_supported"],
        json!(["mcp:tools", "mcp:admin", "offline_access"])
    );
    let unauthorized = support::send(support::json_request(
        &running.mcp_url,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    ))
    .await;
    assert_eq!(unauthorized.status, http::StatusCode::UNAUTHORIZED);
    let challenge = unauthorized.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains(r#"scope="mcp:tools""#), "{challenge}");
}
