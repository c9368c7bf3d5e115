//! The Streamable HTTP transport against servers that misbehave the ways real ones do: no
//! listening stream, a listening stream a proxy keeps cutting, a 202 or an empty 200 for a
//! request, a DELETE that is never answered. Each case is bounded in time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
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
use tower_mcp_oauth::transport::streamable_http::{StreamableHttpConfig, StreamableHttpTransport};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Get {
    /// 404, as a stateless server answers.
    NotFound,
    /// A stream holding one keep-alive comment, closed at once (a proxy's idle cut).
    CutAtOnce,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum PostAnswer {
    Json,
    /// 202 even for requests.
    Accepted,
    /// 200 with an empty body even for requests.
    EmptyOk,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Delete {
    Answer,
    Never,
}

#[derive(Clone)]
struct Script {
    get: Get,
    post: Arc<Mutex<PostAnswer>>,
    delete: Delete,
    gets: Arc<AtomicUsize>,
}

async fn post(State(script): State<Script>, body: Bytes) -> Response {
    let message: Value = serde_json::from_slice(&body).unwrap();
    let (Some(id), Some(method)) = (message.get("id"), message.get("method")) else {
        return StatusCode::ACCEPTED.into_response();
    };
    let mode = *script.post.lock().unwrap();
    match mode {
        PostAnswer::Accepted => StatusCode::ACCEPTED.into_response(),
        PostAnswer::EmptyOk => StatusCode::OK.into_response(),
        PostAnswer::Json => {
            let result = if method == "initialize" {
                json!({"protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {"name": "s", "version": "1"}})
            } else {
                json!({"echo": method})
            };
            (
                [("mcp-session-id", "session-1")],
                axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})),
            )
                .into_response()
        }
    }
}

async fn get(State(script): State<Script>) -> Response {
    script.gets.fetch_add(1, Ordering::SeqCst);
    match script.get {
        Get::NotFound => StatusCode::NOT_FOUND.into_response(),
        Get::CutAtOnce => {
            ([("content-type", "text/event-stream")], ": keep-alive\n\n").into_response()
        }
    }
}

async fn delete(State(script): State<Script>) -> Response {
    if script.delete == Delete::Never {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    StatusCode::OK.into_response()
}

async fn serve(script: Script) -> String {
    let app = axum::Router::new()
        .route("/mcp", axum::routing::post(post).get(get).delete(delete))
        .with_state(script);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn script(get: Get, post: PostAnswer, delete: Delete) -> Script {
    Script {
        get,
        post: Arc::new(Mutex::new(post)),
        delete,
        gets: Arc::default(),
    }
}

type Transport = StreamableHttpTransport<
    Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
>;

fn transport(url: &str) -> Transport {
    let mut config = StreamableHttpConfig::new(url);
    config.default_retry = Duration::from_millis(50);
    config.close_timeout = Duration::from_millis(300);
    StreamableHttpTransport::new(
        Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>(),
        config,
    )
}

async fn next(transport: &mut Transport) -> Value {
    tokio::time::timeout(Duration::from_secs(5), transport.receive())
        .await
        .expect("a message in time")
        .expect("the transport is open")
        .expect("a message, not an error")
}

/// Initializes and announces it, which opens the listening stream.
async fn initialize(transport: &mut Transport) {
    transport
        .send(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}}))
        .await
        .unwrap();
    assert_eq!(next(transport).await["id"], 0);
    transport
        .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_server_without_a_listening_stream_keeps_the_session() {
    let script = script(Get::NotFound, PostAnswer::Json, Delete::Answer);
    let url = serve(script.clone()).await;
    let mut transport = transport(&url);
    initialize(&mut transport).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    transport
        .send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .await
        .unwrap();
    assert_eq!(next(&mut transport).await["id"], 1);
    assert_eq!(script.gets.load(Ordering::SeqCst), 1, "one 404 is enough");
}

#[tokio::test]
async fn a_listening_stream_cut_again_and_again_backs_off_and_keeps_the_session() {
    let script = script(Get::CutAtOnce, PostAnswer::Json, Delete::Answer);
    let url = serve(script.clone()).await;
    let mut transport = transport(&url);
    initialize(&mut transport).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    transport
        .send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .await
        .unwrap();
    assert_eq!(next(&mut transport).await["id"], 1, "no error came first");
    let gets = script.gets.load(Ordering::SeqCst);
    // 50, 100, 200, 400, 800 ms…: a handful in 2.5 s, not one every 50 ms.
    assert!((3..=8).contains(&gets), "{gets} GETs");
}

#[tokio::test]
async fn a_request_answered_with_202_or_an_empty_200_gets_a_local_error() {
    for mode in [PostAnswer::Accepted, PostAnswer::EmptyOk] {
        let script = script(Get::NotFound, PostAnswer::Json, Delete::Answer);
        let url = serve(script.clone()).await;
        let mut transport = transport(&url);
        initialize(&mut transport).await;
        *script.post.lock().unwrap() = mode;
        transport
            .send(json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call"}))
            .await
            .unwrap();
        let answer = next(&mut transport).await;
        assert_eq!(answer["id"], 5, "{mode:?}");
        assert!(answer["error"]["message"].is_string(), "{mode:?}: {answer}");
    }
}

#[tokio::test]
async fn close_is_bounded_when_the_delete_is_never_answered_and_receive_ends() {
    let script = script(Get::NotFound, PostAnswer::Json, Delete::Never);
    let url = serve(script).await;
    let mut transport = transport(&url);
    initialize(&mut transport).await;
    let closing = tokio::time::timeout(Duration::from_secs(3), transport.close())
        .await
        .expect("close ends");
    assert_eq!(
        closing.unwrap_err().kind(),
        tower_mcp_oauth::ErrorKind::Timeout
    );
    assert!(transport.receive().await.is_none());
}
