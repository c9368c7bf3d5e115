//! Which revision a client speaks is decided by the server's answer, not guessed: rmcp's client
//! over our Streamable HTTP transport starts with `server/discover` (2026-07-28) and falls back
//! to `initialize` when the server refuses it as servers older than 2026-07-28 do, with a
//! JSON-RPC error naming no id or with a bare 400. A server that speaks 2026-07-28 is never sent
//! `initialize`. Over `AutoTransport`, a 2025 server keeps Streamable HTTP and an HTTP+SSE
//! server, which takes no POST, gets the HTTP+SSE fallback.

mod support;

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use rmcp::model::{ClientConfig, ProtocolVersion};
use rmcp::ClientServiceExt;
use serde_json::{json, Value};
use support::mcp::{
    discover_or_initialize, echo, legacy_routes, legacy_server as legacy_server_sse,
    streamable_service, text,
};
use support::{hyper_client, serve};
use tower_mcp_oauth::transport::{
    AutoTransport, LegacySseConfig, StreamableHttpConfig, StreamableHttpTransport,
};

const LEGACY: &str = "2025-11-25";

/// How a server older than 2026-07-28 refuses a request outside a session.
#[derive(Clone, Copy)]
enum Refusal {
    /// The TypeScript SDK's way: 400 with a JSON-RPC error whose id is null.
    JsonRpcNullId,
    /// A proxy or framework's way: 400 with a plain-text body.
    PlainText,
}

#[derive(Clone)]
struct Legacy {
    refusal: Refusal,
    /// The method of every POST, in order.
    methods: Arc<Mutex<Vec<String>>>,
}

/// A 2025-11-25 server: `initialize` opens a session, and anything else needs one.
async fn legacy_post(State(server): State<Legacy>, headers: HeaderMap, body: Bytes) -> Response {
    let message: Value = serde_json::from_slice(&body).unwrap();
    let method = message["method"].as_str().unwrap_or_default().to_owned();
    server.methods.lock().unwrap().push(method.clone());
    let id = message["id"].clone();
    let in_session = headers.get("mcp-session-id").is_some();
    match method.as_str() {
        "initialize" => (
            [("mcp-session-id", "session-1")],
            axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": {
                "protocolVersion": LEGACY, "capabilities": {"tools": {}},
                "serverInfo": {"name": "legacy", "version": "1"}}})),
        )
            .into_response(),
        _ if !in_session => match server.refusal {
            Refusal::JsonRpcNullId => (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"jsonrpc": "2.0", "id": null, "error": {
                    "code": -32000, "message": "Bad Request: Server not initialized"}})),
            )
                .into_response(),
            Refusal::PlainText => (StatusCode::BAD_REQUEST, "no session").into_response(),
        },
        "notifications/initialized" => StatusCode::ACCEPTED.into_response(),
        "tools/list" => axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": {"tools": [
            {"name": "echo", "inputSchema": {"type": "object"}}]}}))
        .into_response(),
        _ => StatusCode::ACCEPTED.into_response(),
    }
}

async fn legacy_server(refusal: Refusal) -> (String, Arc<Mutex<Vec<String>>>) {
    let methods = Arc::new(Mutex::new(Vec::new()));
    let state = Legacy {
        refusal,
        methods: methods.clone(),
    };
    let app = axum::Router::new()
        .route(
            "/mcp",
            axum::routing::post(legacy_post).get(|| async { StatusCode::METHOD_NOT_ALLOWED }),
        )
        .with_state(state);
    (format!("{}/mcp", serve(app).await), methods)
}

async fn falls_back_from(refusal: Refusal) {
    let (url, methods) = legacy_server(refusal).await;
    let transport = StreamableHttpTransport::new(hyper_client(), StreamableHttpConfig::new(&url));
    let client = ClientConfig::default()
        .serve_with_lifecycle(transport, discover_or_initialize())
        .await
        .expect("the client falls back to initialize");
    let info = client
        .peer_info()
        .expect("the server's answer to initialize");
    assert_eq!(info.protocol_version.as_str(), LEGACY);
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools[0].name, "echo");
    assert_eq!(
        methods.lock().unwrap()[..4],
        [
            "server/discover",
            "initialize",
            "notifications/initialized",
            "tools/list"
        ],
        "discovery first, then the 2025-11-25 handshake"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_json_rpc_refusal_without_an_id_falls_back_to_initialize() {
    falls_back_from(Refusal::JsonRpcNullId).await;
}

#[tokio::test]
async fn a_plain_400_to_discovery_falls_back_to_initialize() {
    falls_back_from(Refusal::PlainText).await;
}

#[tokio::test]
async fn an_unauthorized_discovery_is_not_taken_for_a_legacy_server() {
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(|| async { (StatusCode::UNAUTHORIZED, "sign in") }),
    );
    let url = format!("{}/mcp", serve(app).await);
    let transport = StreamableHttpTransport::new(hyper_client(), StreamableHttpConfig::new(&url));
    let outcome = ClientConfig::default()
        .serve_with_lifecycle(transport, discover_or_initialize())
        .await;
    let Err(error) = outcome else {
        panic!("a 401 ends the start-up");
    };
    let error = error.to_string();
    assert!(error.contains("401"), "{error}");
}

/// Counts the `initialize` requests a real rmcp server gets.
async fn count_initialize(
    State(initializations): State<Arc<Mutex<usize>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    if serde_json::from_slice::<Value>(&bytes)
        .is_ok_and(|message| message["method"] == "initialize")
    {
        *initializations.lock().unwrap() += 1;
    }
    let request = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
    next.run(request).await
}

#[tokio::test]
async fn a_2026_server_is_discovered_and_never_initialized() {
    let initializations = Arc::new(Mutex::new(0));
    let app = axum::Router::new()
        .nest_service("/mcp", streamable_service())
        .layer(axum::middleware::from_fn_with_state(
            initializations.clone(),
            count_initialize,
        ));
    let url = format!("{}/mcp", serve(app).await);
    let transport = StreamableHttpTransport::new(hyper_client(), StreamableHttpConfig::new(&url));
    let client = ClientConfig::default()
        .serve_with_lifecycle(transport, discover_or_initialize())
        .await
        .unwrap();
    let info = client.peer_info().unwrap();
    assert_eq!(info.protocol_version, ProtocolVersion::V_2026_07_28);
    assert!(!client.list_all_tools().await.unwrap().is_empty());
    assert_eq!(
        *initializations.lock().unwrap(),
        0,
        "no handshake at 2026-07-28"
    );
    client.cancel().await.unwrap();
}

/// rmcp's discovering client over `AutoTransport` at `url`.
async fn connect_auto(url: &str) -> rmcp::service::RunningService<rmcp::RoleClient, ClientConfig> {
    let transport = AutoTransport::new(
        hyper_client(),
        StreamableHttpConfig::new(url),
        LegacySseConfig::new(url),
    );
    ClientConfig::default()
        .serve_with_lifecycle(transport, discover_or_initialize())
        .await
        .expect("connected")
}

#[tokio::test]
async fn auto_transport_stays_on_streamable_http_for_a_2025_server() {
    // Were the refused discovery taken for "no Streamable HTTP here", the fallback's GET would
    // meet this server's 405 and the start-up would fail.
    let (url, methods) = legacy_server(Refusal::PlainText).await;
    let client = connect_auto(&url).await;
    assert_eq!(
        client.peer_info().unwrap().protocol_version.as_str(),
        LEGACY
    );
    assert_eq!(client.list_all_tools().await.unwrap()[0].name, "echo");
    assert_eq!(methods.lock().unwrap()[1], "initialize");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn auto_transport_falls_back_to_http_sse_when_nothing_takes_posts() {
    // An HTTP+SSE server: its /sse answers a POST with 405.
    let url = format!("{}/sse", serve(legacy_routes(legacy_server_sse())).await);
    let client = connect_auto(&url).await;
    let echoed = client.call_tool(echo("over the fallback")).await.unwrap();
    assert_eq!(text(&echoed.content), "over the fallback");
    client.cancel().await.unwrap();
}
