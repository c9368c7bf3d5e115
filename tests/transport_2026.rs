//! The Streamable HTTP transport speaking MCP 2026-07-28 to a server that checks what it gets:
//! the standard headers mirror the body, tools' `x-mcp-header` arguments travel as
//! `Mcp-Param-*`, a tool with invalid annotations never reaches the application, the version
//! header says what `_meta` says, and a request refused with a JSON-RPC error in an HTTP 400
//! gets that error as its answer. And, for sessions (2025-11-25), a request waits for the
//! listening stream, where the server may ask the client something about it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tower_mcp_oauth::transport::{StreamableHttpConfig, StreamableHttpTransport};

const VERSION: &str = "2026-07-28";

/// The headers of every POST, with the method it carried.
type Seen = Arc<Mutex<Vec<(String, HeaderMap)>>>;

async fn post(State(seen): State<Seen>, headers: HeaderMap, body: Bytes) -> Response {
    let message: Value = serde_json::from_slice(&body).unwrap();
    let method = message["method"].as_str().unwrap_or_default().to_owned();
    seen.lock().unwrap().push((method.clone(), headers.clone()));
    let id = message["id"].clone();
    let header_version = headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok());
    if header_version != Some(VERSION) {
        let error = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32022,
            "message": "unsupported protocol version", "data": {"supported": [VERSION]}}});
        return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
    }
    let result = match method.as_str() {
        "tools/list" => json!({"resultType": "complete", "tools": [
            {"name": "lookup", "inputSchema": {"type": "object", "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"},
                "priority": {"type": "integer", "x-mcp-header": "Priority"},
                "query": {"type": "string"}}}},
            {"name": "broken", "inputSchema": {"type": "object", "properties": {
                "ratio": {"type": "number", "x-mcp-header": "Ratio"}}}},
        ]}),
        _ => json!({"resultType": "complete", "content": []}),
    };
    axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

async fn serve() -> (String, Seen) {
    let seen = Seen::default();
    let app = axum::Router::new()
        .route("/mcp", axum::routing::post(post))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

fn request(id: u64, method: &str, params: Value, version: &str) -> Value {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
    });
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

type Transport = StreamableHttpTransport<
    Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
>;

async fn receive(transport: &mut Transport) -> Value {
    tokio::time::timeout(Duration::from_secs(5), transport.receive())
        .await
        .expect("an answer in time")
        .expect("the transport is open")
        .expect("a message")
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn requests_carry_the_standard_headers_and_the_tools_parameters() {
    let (url, seen) = serve().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut transport =
        StreamableHttpTransport::new(client, StreamableHttpConfig::new(url).listen(false));

    transport
        .send(request(1, "tools/list", json!({}), VERSION))
        .await
        .unwrap();
    let listed = receive(&mut transport).await;
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["lookup"],
        "the tool with a header on a number is dropped"
    );

    let arguments = json!({"region": " eu-west", "priority": 7, "query": "SELECT 1"});
    transport
        .send(request(
            2,
            "tools/call",
            json!({"name": "lookup", "arguments": arguments}),
            VERSION,
        ))
        .await
        .unwrap();
    assert_eq!(receive(&mut transport).await["id"], 2);

    let seen = seen.lock().unwrap();
    let (method, list) = &seen[0];
    assert_eq!(method, "tools/list");
    assert_eq!(header(list, "mcp-method"), Some("tools/list"));
    assert_eq!(header(list, "mcp-name"), None);
    assert_eq!(header(list, "mcp-protocol-version"), Some(VERSION));
    let (_, call) = &seen[1];
    assert_eq!(header(call, "mcp-method"), Some("tools/call"));
    assert_eq!(header(call, "mcp-name"), Some("lookup"));
    assert_eq!(
        header(call, "mcp-param-region"),
        Some("=?base64?IGV1LXdlc3Q=?="),
        "a value with a leading space travels in base64"
    );
    assert_eq!(header(call, "mcp-param-priority"), Some("7"));
    assert!(call.get("mcp-param-query").is_none(), "not annotated");
}

#[tokio::test]
async fn a_refusal_with_a_json_rpc_error_answers_the_request() {
    let (url, seen) = serve().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut transport =
        StreamableHttpTransport::new(client, StreamableHttpConfig::new(url).listen(false));
    transport
        .send(request(7, "tools/list", json!({}), "2099-01-01"))
        .await
        .unwrap();
    let refused = receive(&mut transport).await;
    assert_eq!(refused["id"], 7);
    assert_eq!(refused["error"]["code"], -32022);
    assert_eq!(refused["error"]["data"]["supported"], json!([VERSION]));
    // The caller retries with a version the server named, and the header follows `_meta`.
    transport
        .send(request(8, "tools/list", json!({}), VERSION))
        .await
        .unwrap();
    assert!(receive(&mut transport).await["result"].is_object());
    assert_eq!(
        header(&seen.lock().unwrap()[1].1, "mcp-protocol-version"),
        Some(VERSION)
    );
}

/// A session server whose tool asks the client something on the listening stream, which it
/// opens slowly. What it sends before the stream is open is lost, as with real servers.
#[derive(Clone, Default)]
struct Listening {
    stream: Arc<Mutex<Option<tokio::sync::mpsc::UnboundedSender<String>>>>,
}

async fn session_post(State(server): State<Listening>, body: Bytes) -> Response {
    let message: Value = serde_json::from_slice(&body).unwrap();
    let id = message["id"].clone();
    match message["method"].as_str() {
        Some("initialize") => (
            [("mcp-session-id", "s1")],
            axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "serverInfo": {"name": "test", "version": "1"}}})),
        )
            .into_response(),
        Some("tools/call") => {
            if let Some(stream) = server.stream.lock().unwrap().as_ref() {
                let ask = json!({"jsonrpc": "2.0", "id": "ask-1", "method": "elicitation/create",
                    "params": {"message": "sure?", "requestedSchema": {"type": "object", "properties": {}}}});
                let _ = stream.send(format!("event: message\ndata: {ask}\n\n"));
            }
            axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": {"content": []}}))
                .into_response()
        }
        _ => StatusCode::ACCEPTED.into_response(),
    }
}

async fn session_get(State(server): State<Listening>) -> Response {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
    *server.stream.lock().unwrap() = Some(sender);
    let events = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let text = receiver.recv().await?;
        Some((Ok::<_, std::io::Error>(Bytes::from(text)), receiver))
    });
    (
        [("content-type", "text/event-stream")],
        axum::body::Body::from_stream(events),
    )
        .into_response()
}

#[tokio::test]
async fn a_request_after_initialization_waits_for_the_listening_stream() {
    let server = Listening::default();
    let app = axum::Router::new()
        .route("/mcp", axum::routing::post(session_post).get(session_get))
        .with_state(server);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut transport = StreamableHttpTransport::new(client, StreamableHttpConfig::new(url));
    transport
        .send(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}))
        .await
        .unwrap();
    assert_eq!(receive(&mut transport).await["id"], 1);
    transport
        .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await
        .unwrap();
    transport
        .send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "t"}}))
        .await
        .unwrap();
    let mut asked = false;
    for _ in 0..2 {
        let message = receive(&mut transport).await;
        asked |= message["method"] == "elicitation/create";
    }
    assert!(
        asked,
        "the server's question on the listening stream arrived"
    );
}
