//! What the transport benches share: the loopback servers, the call they time, and the clients.
#![allow(dead_code)]

#[path = "../../examples/support/mcp_tools.rs"]
mod mcp_tools;

use std::net::SocketAddr;
use std::sync::Arc;

use rmcp::model::{CallToolRequestParams, ClientConfig, ProtocolVersion};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient};
use serde_json::Value;
use tower_mcp_oauth::transport::{StreamableHttpConfig, StreamableHttpTransport};

pub(crate) type Client = RunningService<RoleClient, ClientConfig>;

/// The example tools over rmcp's Streamable HTTP server on 127.0.0.1; its `/mcp` URL.
pub(crate) async fn server() -> String {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    // Built once, as a server should: at 2026-07-28 each request gets a service of its own.
    let tools = mcp_tools::Tools::new();
    let mcp = StreamableHttpService::new(
        move || Ok(tools.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let app = axum::Router::new().nest_service("/mcp", mcp);
    // TCP_NODELAY: an SSE answer is written in pieces, and with Nagle each later piece waits for
    // the client's delayed ACK (~40 ms on Linux).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// One `tools/call` of `echo` through rmcp's client.
pub(crate) async fn call(client: &Client) {
    let mut args = serde_json::Map::new();
    args.insert("text".into(), Value::from("ping"));
    let result = client
        .call_tool(CallToolRequestParams::new("echo").with_arguments(args))
        .await
        .unwrap();
    assert!(!result.content.is_empty());
}

/// A server that answers at once with fixed messages, so what a round trip costs here is the
/// client's: rmcp's client and the transport beneath it.
pub(crate) async fn canned_server() -> String {
    use axum::response::IntoResponse;
    let answer = |body: axum::body::Bytes| async move {
        let message: Value = serde_json::from_slice(&body).unwrap();
        let id = message["id"].clone();
        let result = match message["method"].as_str().unwrap_or_default() {
            "initialize" => serde_json::json!({"protocolVersion": "2025-11-25",
                "capabilities": {"tools": {}}, "serverInfo": {"name": "canned", "version": "1"}}),
            "server/discover" => serde_json::json!({"resultType": "complete",
                "supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}},
                "ttlMs": 0, "cacheScope": "private",
                "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "canned", "version": "1"}}}),
            "tools/call" => serde_json::json!({"resultType": "complete",
                "content": [{"type": "text", "text": "ping"}]}),
            _ => return http::StatusCode::ACCEPTED.into_response(),
        };
        (
            [("mcp-session-id", "canned")],
            axum::Json(serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result})),
        )
            .into_response()
    };
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(answer).get(|| async { http::StatusCode::METHOD_NOT_ALLOWED }),
    );
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Our transport driven by hand, one request at a time.
pub(crate) struct RawTransport {
    inner: tokio::sync::Mutex<(
        StreamableHttpTransport<tower_mcp_oauth::http::HyperClient>,
        u64,
    )>,
}

impl RawTransport {
    pub(crate) fn new(
        transport: StreamableHttpTransport<tower_mcp_oauth::http::HyperClient>,
    ) -> Self {
        Self {
            inner: tokio::sync::Mutex::new((transport, 0)),
        }
    }

    /// A 2025-11-25 session: `initialize`, then `notifications/initialized`.
    pub(crate) async fn initialize(&self) {
        let mut guard = self.inner.lock().await;
        let (transport, _) = &mut *guard;
        let initialize = serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "bench", "version": "1"}}});
        transport.send(initialize).await.unwrap();
        transport.receive().await.unwrap().unwrap();
        let initialized =
            serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        transport.send(initialized).await.unwrap();
        assert!(transport.session_id().is_some());
    }

    /// One `tools/call`, with `meta` as its `_meta` (2026-07-28) or none (in a session).
    pub(crate) async fn call(&self, meta: Option<&Value>) {
        let mut guard = self.inner.lock().await;
        let (transport, next_id) = &mut *guard;
        *next_id += 1;
        let id = *next_id;
        let mut request = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "ping"}}});
        if let Some(meta) = meta {
            request["params"]["_meta"] = meta.clone();
        }
        transport.send(request).await.unwrap();
        let answer = transport.receive().await.unwrap().unwrap();
        assert_eq!(answer["id"], id, "{answer}");
    }
}

/// Discovery at 2026-07-28: no handshake, `_meta` on every request.
pub(crate) fn discovered() -> ClientLifecycleMode {
    ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        legacy_version: None,
    }
}

/// rmcp's client over our transport and over rmcp's, each in a 2025-11-25 session and at
/// 2026-07-28, against `url`.
pub(crate) async fn clients(url: &str) -> Vec<(&'static str, Client)> {
    let ours = || {
        StreamableHttpTransport::new(
            tower_mcp_oauth::http::hyper_client(),
            StreamableHttpConfig::new(url),
        )
    };
    let theirs = || StreamableHttpClientTransport::from_uri(url);
    let session = ClientLifecycleMode::Initialize;
    let clients = vec![
        (
            "ours_2025_11_25_session",
            ClientConfig::default()
                .serve_with_lifecycle(ours(), session.clone())
                .await,
        ),
        (
            "rmcp_2025_11_25_session",
            ClientConfig::default()
                .serve_with_lifecycle(theirs(), session)
                .await,
        ),
        (
            "ours_2026_07_28",
            ClientConfig::default()
                .serve_with_lifecycle(ours(), discovered())
                .await,
        ),
        (
            "rmcp_2026_07_28",
            ClientConfig::default()
                .serve_with_lifecycle(theirs(), discovered())
                .await,
        ),
    ];
    clients
        .into_iter()
        .map(|(name, client)| {
            let client = client.unwrap();
            let version = client.peer_info().unwrap().protocol_version.clone();
            assert_eq!(
                version.as_str() == "2026-07-28",
                name.contains("2026"),
                "{name}: {version}"
            );
            (name, client)
        })
        .collect()
}

/// Our transport alone against `url`: in an initialized session, and stateless.
pub(crate) async fn raw_transports(url: &str) -> (RawTransport, RawTransport) {
    let transport = || {
        let config = StreamableHttpConfig::new(url).listen(false);
        RawTransport::new(StreamableHttpTransport::new(
            tower_mcp_oauth::http::hyper_client(),
            config,
        ))
    };
    let session = transport();
    session.initialize().await;
    (session, transport())
}

/// The `_meta` a 2026-07-28 request carries.
pub(crate) fn stateless_meta() -> Value {
    serde_json::json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
    })
}
