//! Our Streamable HTTP transport, with `OAuthLayer` beneath it, against a real rmcp server behind
//! `RequireBearer` (tokens issued by the demo authorization server and checked by introspection).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use bytes::Bytes;
use http_body_util::Full;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::ServiceExt;
use serde_json::{json, Value};
use support::client::oauth_stack;
use support::demo_server::DemoServer;
use support::mcp::{echo, protected_by_demo, streamable_service, text};
use support::{hyper_client, serve};
use tower::ServiceBuilder;
use tower_mcp_oauth::transport::{StreamableHttpConfig, StreamableHttpTransport};

struct Setup {
    auth: DemoServer,
    mcp_url: String,
    sessions: Arc<Sessions>,
    /// When set, the next POST's event stream is cut after its first frame.
    cut_next_stream: Arc<AtomicBool>,
    /// GETs that carried `Last-Event-ID`.
    resumptions: Arc<std::sync::atomic::AtomicUsize>,
}

/// The demo authorization server, and an rmcp server trusting it through introspection.
async fn setup() -> Setup {
    let auth = DemoServer::start(Default::default()).await;
    let (listener, base) = support::bind().await;
    let mcp_url = format!("{base}/mcp");
    let sessions = Arc::new(Sessions::default());
    let seen = sessions.clone();
    // Plays a server that forgets sessions (404 to a POST in one) and one whose listening GET
    // answers 404 while its POSTs work; counts the initialize requests.
    let forget = axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let seen = seen.clone();
            async move {
                let session = request
                    .headers()
                    .get("mcp-session-id")
                    .map(|v| v.to_str().unwrap().to_owned());
                if let Some(session) = &session {
                    let mut known = seen.known.lock().unwrap();
                    known.insert(session.clone());
                    let get_refused = request.method() == http::Method::GET
                        && seen.refuse_gets.load(Ordering::SeqCst);
                    if get_refused || seen.forgotten.lock().unwrap().contains(session) {
                        return http::StatusCode::NOT_FOUND.into_response();
                    }
                }
                let (parts, body) = request.into_parts();
                let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                let initialize = bytes.windows(12).any(|w| w == b"\"initialize\"");
                let request =
                    axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
                let response = next.run(request).await;
                // Those the server took (not the first, refused for its missing token).
                if initialize && response.status().is_success() {
                    seen.initializes.fetch_add(1, Ordering::SeqCst);
                }
                if let Some(assigned) = response.headers().get("mcp-session-id") {
                    let assigned = assigned.to_str().unwrap().to_owned();
                    seen.known.lock().unwrap().insert(assigned);
                }
                response
            }
        },
    );
    let cut_next_stream = Arc::new(AtomicBool::new(false));
    let resumptions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (cut, resumed) = (cut_next_stream.clone(), resumptions.clone());
    // Drops a connection mid-stream, as a flaky network would, and counts resumptions.
    let flaky = axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let (cut, resumed) = (cut.clone(), resumed.clone());
            async move {
                if request.method() == http::Method::GET
                    && request.headers().contains_key("last-event-id")
                {
                    resumed.fetch_add(1, Ordering::SeqCst);
                }
                let is_post = request.method() == http::Method::POST;
                let response = next.run(request).await;
                if !(is_post && cut.swap(false, Ordering::SeqCst)) {
                    return response;
                }
                let (parts, body) = response.into_parts();
                let mut frames = body.into_data_stream();
                let first = futures_util::StreamExt::next(&mut frames).await;
                // The first frame goes out; a moment later the connection breaks.
                let first = first.map(|f| f.map_err(std::io::Error::other));
                let broken =
                    futures_util::stream::unfold((first, false), |(first, cut)| async move {
                        if cut {
                            return None;
                        }
                        match first {
                            Some(frame) => Some((frame, (None, false))),
                            None => {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                let error =
                                    std::io::Error::new(std::io::ErrorKind::ConnectionReset, "cut");
                                Some((Err(error), (None, true)))
                            }
                        }
                    });
                http::Response::from_parts(parts, axum::body::Body::from_stream(broken))
            }
        },
    );
    // No cache: a revoked token must fail on the next request.
    let app = protected_by_demo(&auth, &mcp_url, |bearer| {
        axum::Router::new().nest_service(
            "/mcp",
            ServiceBuilder::new()
                .layer(bearer)
                .service(streamable_service()),
        )
    });
    support::serve_on(listener, app.layer(forget).layer(flaky));
    Setup {
        auth,
        mcp_url,
        sessions,
        cut_next_stream,
        resumptions,
    }
}

/// What the server in front of the MCP endpoint does with sessions.
#[derive(Default)]
struct Sessions {
    known: std::sync::Mutex<std::collections::HashSet<String>>,
    forgotten: std::sync::Mutex<std::collections::HashSet<String>>,
    refuse_gets: AtomicBool,
    initializes: std::sync::atomic::AtomicUsize,
}

impl Sessions {
    /// Forgets every session seen so far, as a restarted server would.
    fn forget_all(&self) {
        let known = self.known.lock().unwrap().clone();
        self.forgotten.lock().unwrap().extend(known);
    }

    fn initializes(&self) -> usize {
        self.initializes.load(Ordering::SeqCst)
    }
}

/// The next message from the server, failing the test after 5 s or on an error.
async fn next_message<S, B>(transport: &mut StreamableHttpTransport<S>) -> Value
where
    S: tower::Service<http::Request<Full<Bytes>>, Response = http::Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Error: Into<tower::BoxError>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<tower::BoxError>,
{
    tokio::time::timeout(Duration::from_secs(5), transport.receive())
        .await
        .expect("a message within 5 s")
        .expect("the transport is open")
        .expect("a message, not an error")
}

#[tokio::test]
async fn rmcp_client_over_our_transport_and_oauth_layer() {
    let setup = setup().await;
    let stack = oauth_stack(&setup.mcp_url).await;
    let transport =
        StreamableHttpTransport::new(stack.clone(), StreamableHttpConfig::new(&setup.mcp_url));
    let client = ClientConfig::default().serve(transport).await.unwrap();

    let tools = client.list_tools(Default::default()).await.unwrap();
    assert_eq!(tools.tools.len(), 4);
    let echoed = client.call_tool(echo("hi")).await.unwrap();
    assert_eq!(text(&echoed.content), "hi");
    let who = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap();
    let who: Value = serde_json::from_str(&text(&who.content)).unwrap();
    assert_eq!(who["subject"], "demo-user");
    assert_eq!(who["audience"], json!([setup.mcp_url]));

    // One MiB each way.
    let big = "x".repeat(1024 * 1024);
    let echoed = client.call_tool(echo(&big)).await.unwrap();
    assert_eq!(text(&echoed.content).len(), big.len());

    // The token is revoked mid-session: the layer refreshes and the session goes on.
    setup.auth.revoke_access_tokens();
    let echoed = client.call_tool(echo("after revocation")).await.unwrap();
    assert_eq!(text(&echoed.content), "after revocation");
    let counters = setup.auth.counters();
    assert_eq!(counters.authorizations, 1);
    assert_eq!(counters.refreshes, 1);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn an_rmcp_client_goes_on_in_a_new_session_when_the_server_forgets_it() {
    let setup = setup().await;
    let stack = oauth_stack(&setup.mcp_url).await;
    let client = ClientConfig::default()
        .serve(StreamableHttpTransport::new(
            stack,
            StreamableHttpConfig::new(&setup.mcp_url),
        ))
        .await
        .unwrap();
    client.list_tools(Default::default()).await.unwrap();
    assert_eq!(setup.sessions.initializes(), 1);
    setup.sessions.forget_all();
    // Several calls at once find the session gone: one new initialize serves them all.
    let calls = (0..4).map(|_| client.list_tools(Default::default()));
    for listed in futures_util::future::join_all(calls).await {
        assert_eq!(listed.unwrap().tools.len(), 4);
    }
    assert_eq!(setup.sessions.initializes(), 2);
    let echoed = client.call_tool(echo("still here")).await.unwrap();
    assert_eq!(text(&echoed.content), "still here");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_listening_get_answered_404_ends_no_session() {
    let setup = setup().await;
    setup.sessions.refuse_gets.store(true, Ordering::SeqCst);
    let stack = oauth_stack(&setup.mcp_url).await;
    let client = ClientConfig::default()
        .serve(StreamableHttpTransport::new(
            stack,
            StreamableHttpConfig::new(&setup.mcp_url),
        ))
        .await
        .unwrap();
    for n in 0..3 {
        let echoed = client.call_tool(echo(&format!("call {n}"))).await.unwrap();
        assert_eq!(text(&echoed.content), format!("call {n}"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        setup.sessions.initializes(),
        1,
        "the session was never started again"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn the_transport_answers_its_own_initialize_and_resends_once() {
    let setup = setup().await;
    let stack = oauth_stack(&setup.mcp_url).await;
    let mut transport =
        StreamableHttpTransport::new(stack, StreamableHttpConfig::new(&setup.mcp_url));
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    transport.send(initialize).await.unwrap();
    assert!(next_message(&mut transport).await["result"]["protocolVersion"].is_string());
    let first = transport.session_id().unwrap();
    transport
        .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await
        .unwrap();
    setup.sessions.forget_all();
    transport
        .send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .await
        .unwrap();
    // The client sees the answer it asked for, never the transport's own initialize.
    assert_eq!(next_message(&mut transport).await["id"], 2);
    assert_ne!(transport.session_id().unwrap(), first, "a new session");
    assert_eq!(setup.sessions.initializes(), 2);
}

#[tokio::test]
async fn without_reinitialize_the_transport_reports_session_expiry_with_its_own_kind() {
    let setup = setup().await;
    let stack = oauth_stack(&setup.mcp_url).await;
    let mut transport = StreamableHttpTransport::new(
        stack,
        StreamableHttpConfig::new(&setup.mcp_url).reinitialize(false),
    );
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    transport.send(initialize.clone()).await.unwrap();
    let answer = next_message(&mut transport).await;
    assert!(answer["result"]["protocolVersion"].is_string());
    assert!(transport.session_id().is_some());
    setup.sessions.forget_all();
    let error = transport
        .send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), tower_mcp_oauth::ErrorKind::SessionExpired);
    assert!(transport.session_id().is_none());
    // Until a new initialize, nothing goes out without a session: the same error, at once.
    let error = transport
        .send(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), tower_mcp_oauth::ErrorKind::SessionExpired);
    let mut initialize = initialize;
    initialize["id"] = json!(4);
    transport.send(initialize).await.unwrap();
    assert_eq!(next_message(&mut transport).await["id"], 4);
    assert!(transport.session_id().is_some(), "a new session");
    transport
        .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await
        .unwrap();
    transport
        .send(json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"}))
        .await
        .unwrap();
    assert_eq!(next_message(&mut transport).await["id"], 5);
}

/// A server whose POST stream drops after the first event; GET with `Last-Event-ID: 1` sends
/// the rest. Records the Last-Event-ID it was asked to resume from.
async fn dropping_server() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::routing::post;
    let resumed_from = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = resumed_from.clone();
    let app = axum::Router::new().route(
        "/mcp",
        post(|| async {
            let first = Ok::<_, std::io::Error>(Bytes::from_static(
                b"retry: 50\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n",
            ));
            // The first event goes out; a moment later the connection breaks.
            let stream = futures_util::stream::unfold(Some(first), |next| async move {
                match next {
                    Some(first) => Some((first, None)),
                    None => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Some((Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "dropped")), None))
                    }
                }
            });
            let body = axum::body::Body::from_stream(stream);
            ([("content-type", "text/event-stream")], body)
        })
        .get(move |headers: http::HeaderMap| {
            let seen = seen.clone();
            async move {
                let last = headers.get("last-event-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                seen.lock().unwrap().push(last);
                let body = "id: 2\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"ok\":true}}\n\n";
                ([("content-type", "text/event-stream")], body)
            }
        }),
    );
    let url = format!("{}/mcp", serve(app).await);
    (url, resumed_from)
}

#[tokio::test]
async fn a_dropped_stream_is_resumed_with_last_event_id() {
    let (url, resumed_from) = dropping_server().await;
    let client = hyper_client();
    let mut config = StreamableHttpConfig::new(&url);
    config = config.listen(false);
    let mut transport = StreamableHttpTransport::new(client, config);
    transport
        .send(json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"}))
        .await
        .unwrap();
    let first = next_message(&mut transport).await;
    assert_eq!(first["method"], "notifications/progress");
    let second = next_message(&mut transport).await;
    assert_eq!(second["id"], 7, "the answer arrived on the resumed stream");
    assert_eq!(*resumed_from.lock().unwrap(), vec!["1".to_owned()]);
}

#[tokio::test]
async fn a_stream_that_ends_without_the_answer_gets_a_local_error_not_a_hang() {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/mcp",
        post(|| async {
            let body = "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n";
            ([("content-type", "text/event-stream")], body)
        }),
    );
    let url = format!("{}/mcp", serve(app).await);
    let mut config = StreamableHttpConfig::new(&url);
    config = config.listen(false);
    let mut transport = StreamableHttpTransport::new(hyper_client(), config);
    transport
        .send(json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}))
        .await
        .unwrap();
    let first = next_message(&mut transport).await;
    assert_eq!(first["method"], "notifications/progress");
    let answer = next_message(&mut transport).await;
    assert_eq!(answer["id"], 9);
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("before answering"));
}

#[tokio::test]
async fn an_answer_cut_mid_stream_is_resumed_or_reported_never_hung() {
    let setup = setup().await;
    let stack = oauth_stack(&setup.mcp_url).await;
    let mut config = StreamableHttpConfig::new(&setup.mcp_url);
    config = config.max_resumptions(1);
    let client = ClientConfig::default()
        .serve(StreamableHttpTransport::new(stack, config))
        .await
        .unwrap();
    setup.cut_next_stream.store(true, Ordering::SeqCst);
    let call = client.call_tool(echo("cut"));
    let outcome = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("no hang");
    assert_eq!(
        setup.resumptions.load(Ordering::SeqCst),
        1,
        "the transport asked to resume after the last event id it had"
    );
    match outcome {
        Ok(result) => assert_eq!(text(&result.content), "cut"),
        Err(error) => assert!(format!("{error:?}").contains("dropping"), "{error:?}"),
    }
    // The session is still usable afterwards.
    assert_eq!(
        client
            .list_tools(Default::default())
            .await
            .unwrap()
            .tools
            .len(),
        4
    );
}

/// SEP-1699: a server that closes a stream after `retry: 300` is reconnected to 300 ms later,
/// not after the client's own default (5 s here). Returns the URL and the times of the GETs.
async fn polling_server() -> (String, Arc<std::sync::Mutex<Vec<std::time::Instant>>>) {
    use axum::routing::post;
    let gets = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = gets.clone();
    let app = axum::Router::new().route(
        "/mcp",
        post(|body: Bytes| async move {
            let message: Value = serde_json::from_slice(&body).unwrap();
            match message["method"].as_str() {
                // The priming event, then a graceful close: the answer comes on the resumed stream.
                Some("tools/list") => (
                    [("content-type", "text/event-stream")],
                    "id: 1\nretry: 300\ndata: \n\n",
                )
                    .into_response(),
                Some("initialize") => axum::Json(json!({"jsonrpc": "2.0", "id": message["id"],
                    "result": {"protocolVersion": "2025-11-25", "capabilities": {},
                        "serverInfo": {"name": "polling", "version": "1"}}}))
                .into_response(),
                _ => http::StatusCode::ACCEPTED.into_response(),
            }
        })
        .get(move |headers: http::HeaderMap| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(std::time::Instant::now());
                let body = if headers.contains_key("last-event-id") {
                    "id: 2\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[]}}\n\n"
                } else {
                    // The listening stream: one notification, then a graceful close.
                    "retry: 300\nid: l1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n"
                };
                ([("content-type", "text/event-stream")], body)
            }
        }),
    );
    let url = format!("{}/mcp", serve(app).await);
    (url, gets)
}

/// How long after `start` the first GET came.
fn waited(gets: &[std::time::Instant], start: std::time::Instant) -> Duration {
    gets.first().expect("a GET").duration_since(start)
}

#[tokio::test]
async fn a_request_stream_closed_after_retry_is_resumed_after_that_retry() {
    let (url, gets) = polling_server().await;
    let config = StreamableHttpConfig::new(&url)
        .listen(false)
        .default_retry(Duration::from_secs(5));
    let mut transport = StreamableHttpTransport::new(hyper_client(), config);
    let sent = std::time::Instant::now();
    transport
        .send(json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"}))
        .await
        .unwrap();
    let answer = next_message(&mut transport).await;
    assert_eq!(answer["id"], 7);
    let waited = waited(&gets.lock().unwrap(), sent);
    assert!(
        waited >= Duration::from_millis(300),
        "reconnected after {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(4),
        "the server's retry, not 5 s: {waited:?}"
    );
}

#[tokio::test]
async fn the_listening_stream_closed_after_retry_is_reopened_after_that_retry() {
    let (url, gets) = polling_server().await;
    let config = StreamableHttpConfig::new(&url).default_retry(Duration::from_secs(5));
    let mut transport = StreamableHttpTransport::new(hyper_client(), config);
    transport
        .send(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}))
        .await
        .unwrap();
    next_message(&mut transport).await;
    transport
        .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await
        .unwrap();
    let notice = next_message(&mut transport).await;
    assert_eq!(notice["method"], "notifications/tools/list_changed");
    let first_get = gets.lock().unwrap()[0];
    tokio::time::timeout(Duration::from_secs(4), async {
        while gets.lock().unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the listening stream is reopened within the server's retry, not 5 s");
    let waited = waited(&gets.lock().unwrap()[1..], first_get);
    assert!(
        waited >= Duration::from_millis(300),
        "reopened after {waited:?}"
    );
}
