//! Transports end cleanly: after drop or `close()` no task or connection of theirs lives on,
//! a legacy stream that keeps dropping is given up (and `receive` then ends), and a request in
//! flight when the legacy stream drops gets a local answer instead of hanging.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value};
use support::{alive_tasks, hyper_client};
use tower_mcp_oauth::transport::{LegacySseConfig, LegacySseTransport, RetryConfig};
use tower_mcp_oauth::transport::{StreamableHttpConfig, StreamableHttpTransport};

/// Serves `router` on loopback, counting the connections open at any moment.
async fn serve_counting(router: axum::Router) -> (String, Arc<AtomicUsize>) {
    let (listener, base) = support::bind().await;
    let open = Arc::new(AtomicUsize::new(0));
    let counter = open.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(router.clone());
            let counter = counter.clone();
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                counter.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (base, open)
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sse_body(stream: impl futures_util::Stream<Item = String> + Send + 'static) -> axum::body::Body {
    use futures_util::StreamExt;
    axum::body::Body::from_stream(stream.map(|text| Ok::<_, std::io::Error>(Bytes::from(text))))
}

fn event_stream(body: axum::body::Body) -> axum::response::Response {
    use axum::response::IntoResponse;
    ([("content-type", "text/event-stream")], body).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transport_dropped_while_its_answer_is_on_the_way_leaves_nothing_behind() {
    // The POST's answer is an event stream that comes after a moment and never ends.
    let router = axum::Router::new().route(
        "/mcp",
        axum::routing::post(|| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let forever = futures_util::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((": still here\n\n".to_owned(), ()))
            });
            event_stream(sse_body(forever))
        }),
    );
    let (base, open) = serve_counting(router).await;
    let before = alive_tasks();
    let mut config = StreamableHttpConfig::new(format!("{base}/mcp"));
    config = config.listen(false);
    let transport = StreamableHttpTransport::new(hyper_client(), config);
    let sending =
        tokio::spawn(transport.send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})));
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(transport);
    // The send completes after the drop; the stream reader it starts must not stay.
    let _ = sending.await;
    eventually("every connection closed", || {
        open.load(Ordering::SeqCst) == 0
    })
    .await;
    eventually("every task ended", || alive_tasks() <= before).await;
}

/// A legacy server whose stream names its endpoint and then waits for `until` before ending.
fn legacy_router(gets: Arc<AtomicUsize>, until: Arc<tokio::sync::Notify>) -> axum::Router {
    axum::Router::new()
        .route(
            "/sse",
            axum::routing::get(move || {
                let until = until.clone();
                gets.fetch_add(1, Ordering::SeqCst);
                async move {
                    let stream = futures_util::stream::unfold(0, move |step| {
                        let until = until.clone();
                        async move {
                            match step {
                                0 => Some(("event: endpoint\ndata: /message\n\n".to_owned(), 1)),
                                _ => {
                                    until.notified().await;
                                    None
                                }
                            }
                        }
                    });
                    event_stream(sse_body(stream))
                }
            }),
        )
        .route(
            "/message",
            axum::routing::post(|| async { http::StatusCode::ACCEPTED }),
        )
}

fn legacy_config(base: &str) -> LegacySseConfig {
    let mut config = LegacySseConfig::new(format!("{base}/sse"));
    config = config.retry(
        RetryConfig::default()
            .max_attempts(3)
            .initial_backoff(Duration::from_millis(20)),
    );
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_server_that_names_its_endpoint_and_hangs_up_is_given_up_on() {
    let gets = Arc::new(AtomicUsize::new(0));
    let hang_up = Arc::new(tokio::sync::Notify::new());
    let (base, _) = serve_counting(legacy_router(gets.clone(), hang_up.clone())).await;
    let mut transport = LegacySseTransport::connect(hyper_client(), legacy_config(&base))
        .await
        .unwrap();
    // From now on every stream ends right after its endpoint event.
    let hangups = tokio::spawn(async move {
        loop {
            hang_up.notify_waiters();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let first = tokio::time::timeout(Duration::from_secs(5), transport.receive())
        .await
        .expect("gives up in time");
    assert!(matches!(first, Some(Err(_))), "{first:?}");
    let then = tokio::time::timeout(Duration::from_secs(5), transport.receive())
        .await
        .expect("receive ends in time after giving up");
    assert!(then.is_none(), "then receive ends");
    assert!(
        gets.load(Ordering::SeqCst) <= 1 + 3,
        "{} GETs",
        gets.load(Ordering::SeqCst)
    );
    hangups.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_request_in_flight_when_the_stream_drops_is_answered_locally() {
    let gets = Arc::new(AtomicUsize::new(0));
    let drop_stream = Arc::new(tokio::sync::Notify::new());
    let (base, _) = serve_counting(legacy_router(gets, drop_stream.clone())).await;
    let mut transport = LegacySseTransport::connect(hyper_client(), legacy_config(&base))
        .await
        .unwrap();
    transport
        .send(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {}}))
        .await
        .unwrap();
    // The server accepted it, and its stream drops before the answer.
    drop_stream.notify_waiters();
    let answer: Value = tokio::time::timeout(Duration::from_secs(5), transport.receive())
        .await
        .expect("an answer in time")
        .unwrap()
        .unwrap();
    assert_eq!(answer["id"], 3);
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("dropped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_legacy_transport_leaves_no_task_or_connection_and_receive_ends() {
    let gets = Arc::new(AtomicUsize::new(0));
    let never = Arc::new(tokio::sync::Notify::new());
    let (base, open) = serve_counting(legacy_router(gets, never)).await;
    let before = alive_tasks();
    let mut transport = LegacySseTransport::connect(hyper_client(), legacy_config(&base))
        .await
        .unwrap();
    transport.close().await.unwrap();
    assert!(transport.receive().await.is_none());
    drop(transport);
    eventually("every connection closed", || {
        open.load(Ordering::SeqCst) == 0
    })
    .await;
    eventually("every task ended", || alive_tasks() <= before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_replies_cannot_make_the_client_open_connections_without_bound()
{
    // The listening stream asks 300 pings; the POSTed replies are never answered.
    let router = axum::Router::new().route(
        "/mcp",
        axum::routing::post(|body: Bytes| async move {
            use axum::response::IntoResponse;
            let message: Value = serde_json::from_slice(&body).unwrap();
            if message.get("result").is_some() {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            match message.get("id") {
                Some(id) if message.get("method").is_some() => {
                    axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": {}})).into_response()
                }
                _ => http::StatusCode::ACCEPTED.into_response(),
            }
        })
        .get(|| async {
            let pings = futures_util::stream::iter(0..300).map(|n| {
                format!("data: {{\"jsonrpc\":\"2.0\",\"id\":\"p{n}\",\"method\":\"ping\"}}\n\n")
            });
            let forever = futures_util::stream::pending::<String>();
            use futures_util::StreamExt;
            event_stream(sse_body(pings.chain(forever)))
        }),
    );
    let (base, open) = serve_counting(router).await;
    let mut transport = StreamableHttpTransport::new(
        hyper_client(),
        StreamableHttpConfig::new(format!("{base}/mcp")),
    );
    transport
        .send(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}}))
        .await
        .unwrap();
    transport
        .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await
        .unwrap();
    let mut replies = Vec::new();
    while replies.len() < 300 {
        let message = tokio::time::timeout(Duration::from_secs(5), transport.receive())
            .await
            .expect("the pings arrive")
            .unwrap()
            .unwrap();
        if message["method"] == "ping" {
            // As rmcp does: each reply is sent on its own.
            replies.push(tokio::spawn(
                transport.send(json!({"jsonrpc": "2.0", "id": message["id"], "result": {}})),
            ));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let connections = open.load(Ordering::SeqCst);
    // 16 replies in flight, the listening stream, and an idle pooled connection or two.
    assert!(connections <= 16 + 3, "{connections} connections open");
    drop(transport);
    for reply in replies {
        reply.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_stream_left_open_after_its_answer_is_let_go() {
    let router = axum::Router::new().route(
        "/mcp",
        axum::routing::post(|| async {
            let answer = futures_util::stream::iter([
                "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n".to_owned(),
            ]);
            event_stream(sse_body(answer.chain(futures_util::stream::pending())))
        }),
    );
    let (base, open) = serve_counting(router).await;
    let mut config = StreamableHttpConfig::new(format!("{base}/mcp"));
    config = config.listen(false);
    let mut transport = StreamableHttpTransport::new(hyper_client(), config);
    for _ in 0..20 {
        transport
            .send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
            .await
            .unwrap();
        let answer = transport.receive().await.unwrap().unwrap();
        assert_eq!(answer["id"], 1);
    }
    eventually("the answered streams are closed", || {
        open.load(Ordering::SeqCst) == 0
    })
    .await;
}
