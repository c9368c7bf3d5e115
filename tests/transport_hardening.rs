//! The Streamable HTTP transport against servers that misbehave the ways real ones do: no
//! listening stream, a listening stream a proxy keeps cutting, a 202 or an empty 200 for a
//! request, a DELETE that is never answered. Each case is bounded in time.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};
use support::{hyper_client, HyperClient};
use tower_mcp_oauth::transport::{StreamableHttpConfig, StreamableHttpTransport};

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
            let mut response =
                axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response();
            // The server without a listening stream is a stateless one: no session.
            if script.get != Get::NotFound {
                response.headers_mut().insert(
                    "mcp-session-id",
                    http::HeaderValue::from_static("session-1"),
                );
            }
            response
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

/// Serves `app` on 127.0.0.1 with a free port; its MCP endpoint's URL.
async fn serve_app(app: axum::Router) -> String {
    format!("{}/mcp", support::serve(app).await)
}

async fn serve(script: Script) -> String {
    let app = axum::Router::new()
        .route("/mcp", axum::routing::post(post).get(get).delete(delete))
        .with_state(script);
    serve_app(app).await
}

fn script(get: Get, post: PostAnswer, delete: Delete) -> Script {
    Script {
        get,
        post: Arc::new(Mutex::new(post)),
        delete,
        gets: Arc::default(),
    }
}

type Transport = StreamableHttpTransport<HyperClient>;

fn transport(url: &str) -> Transport {
    let mut config = StreamableHttpConfig::new(url);
    config = config.default_retry(Duration::from_millis(50));
    config = config.close_timeout(Duration::from_millis(300));
    StreamableHttpTransport::new(hyper_client(), config)
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

/// Initializes against a server whose GET answers as `get`, waits `wait`, then checks that a
/// request is still answered (no error from the listening stream came first). Returns the GETs
/// the server saw.
async fn gets_while_the_session_lives(get: Get, wait: Duration) -> usize {
    let script = script(get, PostAnswer::Json, Delete::Answer);
    let url = serve(script.clone()).await;
    let mut transport = transport(&url);
    initialize(&mut transport).await;
    tokio::time::sleep(wait).await;
    transport
        .send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .await
        .unwrap();
    assert_eq!(next(&mut transport).await["id"], 1, "no error came first");
    script.gets.load(Ordering::SeqCst)
}

#[tokio::test]
async fn a_server_without_a_listening_stream_keeps_the_session() {
    let gets = gets_while_the_session_lives(Get::NotFound, Duration::from_millis(1500)).await;
    assert_eq!(gets, 1, "one 404 is enough");
}

#[tokio::test]
async fn a_listening_stream_cut_again_and_again_backs_off_and_keeps_the_session() {
    let gets = gets_while_the_session_lives(Get::CutAtOnce, Duration::from_millis(2500)).await;
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
    let script = script(Get::CutAtOnce, PostAnswer::Json, Delete::Never);
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

/// A POST stream that sends events 1 and 2 and drops; the resuming GET replays from the start
/// (1, 2) and then sends the answer (3), as a server with a coarse replay buffer does.
async fn replaying_server() -> String {
    let progress = |n: u32| {
        format!("id: {n}\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"n\":{n}}}}}\n\n")
    };
    let first = format!("retry: 50\n{}{}", progress(1), progress(2));
    let replay = format!(
        "{}{}id: 3\ndata: {{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{{}}}}\n\n",
        progress(1),
        progress(2)
    );
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(move || {
            let first = first.clone();
            async move {
                // The events go out; a moment later the connection breaks.
                let stream = futures_util::stream::unfold(Some(first), |next| async move {
                    match next {
                        Some(first) => Some((Ok(Bytes::from(first)), None)),
                        None => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            let cut =
                                std::io::Error::new(std::io::ErrorKind::ConnectionReset, "cut");
                            Some((Err(cut), None))
                        }
                    }
                });
                (
                    [("content-type", "text/event-stream")],
                    axum::body::Body::from_stream(stream),
                )
            }
        })
        .get(move || {
            let replay = replay.clone();
            async move { ([("content-type", "text/event-stream")], replay) }
        }),
    );
    serve_app(app).await
}

#[tokio::test]
async fn events_replayed_on_resumption_are_delivered_once() {
    let url = replaying_server().await;
    let mut transport = transport(&url);
    transport
        .send(json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"}))
        .await
        .unwrap();
    let mut received = Vec::new();
    loop {
        let message = next(&mut transport).await;
        let done = message["id"] == 7;
        received.push(message);
        if done {
            break;
        }
    }
    let progress: Vec<&Value> = received.iter().map(|m| &m["params"]["n"]).collect();
    assert_eq!(progress, vec![&json!(1), &json!(2), &Value::Null]);
}

/// Answers `initialize` with the session in `next_session` (none when empty), and every other
/// request with `Mcp-Session-Id: intruder`.
async fn session_server(next_session: Arc<Mutex<&'static str>>) -> String {
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(move |body: Bytes| {
            let next_session = next_session.clone();
            async move {
                let message: Value = serde_json::from_slice(&body).unwrap();
                let Some(id) = message.get("id") else {
                    return StatusCode::ACCEPTED.into_response();
                };
                let session = if message["method"] == "initialize" {
                    *next_session.lock().unwrap()
                } else {
                    "intruder"
                };
                let mut response =
                    axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": {}})).into_response();
                if !session.is_empty() {
                    response
                        .headers_mut()
                        .insert("mcp-session-id", session.parse().unwrap());
                }
                response
            }
        }),
    );
    serve_app(app).await
}

#[tokio::test]
async fn the_session_comes_only_from_the_answer_to_initialize() {
    let next_session = Arc::new(Mutex::new("first"));
    let url = session_server(next_session.clone()).await;
    let mut transport = transport(&url);
    let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}});
    transport.send(initialize.clone()).await.unwrap();
    next(&mut transport).await;
    assert_eq!(transport.session_id().as_deref(), Some("first"));
    transport
        .send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .await
        .unwrap();
    next(&mut transport).await;
    assert_eq!(
        transport.session_id().as_deref(),
        Some("first"),
        "a later answer does not move the session"
    );
    // A new initialize answered without a session leaves the old one behind.
    *next_session.lock().unwrap() = "";
    transport.send(initialize).await.unwrap();
    next(&mut transport).await;
    assert_eq!(transport.session_id(), None);
}

#[tokio::test]
async fn an_auto_transport_ends_receive_after_close() {
    use tower_mcp_oauth::transport::{AutoTransport, LegacySseConfig};
    let url = serve(script(Get::NotFound, PostAnswer::Json, Delete::Answer)).await;
    let mut transport = AutoTransport::new(
        hyper_client(),
        StreamableHttpConfig::new(url.clone()),
        LegacySseConfig::new(url),
    );
    transport
        .send(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}}))
        .await
        .unwrap();
    assert!(transport.receive().await.unwrap().is_ok());
    transport.close().await.unwrap();
    let after = tokio::time::timeout(Duration::from_secs(2), transport.receive())
        .await
        .expect("receive ends");
    assert!(after.is_none());
}
