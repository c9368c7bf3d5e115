//! The legacy HTTP+SSE transport and the automatic choice, with `OAuthLayer` beneath, against
//! rmcp servers behind `RequireBearer`: over Streamable HTTP and over our legacy SSE adapter.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::ServiceExt;
use serde_json::Value;
use support::client::oauth_stack;
use support::demo_server::DemoServer;
use support::mcp::{
    echo, legacy_routes, legacy_server, protected_by_demo, protected_legacy_routes,
    streamable_service, text,
};
use support::{bind, hyper_client, serve, serve_on};
use tower::ServiceBuilder;
use tower_mcp_oauth::server::RequireBearerLayer;
use tower_mcp_oauth::transport::{
    AutoTransport, LegacySseConfig, LegacySseTransport, RetryConfig, StreamableHttpConfig,
};

struct Setup {
    auth: DemoServer,
    base: String,
}

/// One process: Streamable HTTP at /mcp, legacy SSE at /sse + /message, both behind
/// RequireBearer; tokens from the demo authorization server, checked by introspection.
async fn setup() -> Setup {
    let auth = DemoServer::start(Default::default()).await;
    let (listener, base) = bind().await;
    // One resource identifier for the whole server: the origin.
    let app = protected_by_demo(&auth, &base, |bearer| {
        protected_legacy_routes(legacy_server(), bearer.clone()).nest_service(
            "/mcp",
            ServiceBuilder::new()
                .layer(bearer)
                .service(streamable_service()),
        )
    });
    serve_on(listener, app);
    Setup { auth, base }
}

#[tokio::test]
async fn rmcp_client_over_legacy_sse_with_oauth() {
    let setup = setup().await;
    let url = format!("{}/sse", setup.base);
    let stack = oauth_stack(&url).await;
    // The GET is the first request: its 401 makes the layer authorize.
    let transport = LegacySseTransport::connect(stack, LegacySseConfig::new(&url))
        .await
        .unwrap();
    let client = ClientConfig::default().serve(transport).await.unwrap();

    assert_eq!(
        client
            .list_tools(Default::default())
            .await
            .unwrap()
            .tools
            .len(),
        4
    );
    assert_eq!(
        text(&client.call_tool(echo("over sse")).await.unwrap().content),
        "over sse"
    );
    let who = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap();
    let who: Value = serde_json::from_str(&text(&who.content)).unwrap();
    assert_eq!(
        who["subject"], "demo-user",
        "AuthInfo reaches tools over the legacy transport too"
    );

    let big = "y".repeat(1024 * 1024);
    assert_eq!(
        text(&client.call_tool(echo(&big)).await.unwrap().content).len(),
        big.len()
    );

    setup.auth.revoke_access_tokens();
    assert_eq!(
        text(
            &client
                .call_tool(echo("after revocation"))
                .await
                .unwrap()
                .content
        ),
        "after revocation"
    );
    assert_eq!(setup.auth.counters().refreshes, 1);
}

#[tokio::test]
async fn auto_picks_streamable_http_or_falls_back_to_sse() {
    let setup = setup().await;
    for (path, expected) in [("/mcp", "streamable-http"), ("/sse", "sse")] {
        let url = format!("{}{path}", setup.base);
        let transport = AutoTransport::new(
            oauth_stack(&url).await,
            StreamableHttpConfig::new(&url),
            LegacySseConfig::new(&url),
        );
        let client = ClientConfig::default().serve(transport).await.unwrap();
        assert_eq!(
            text(&client.call_tool(echo(path)).await.unwrap().content),
            path
        );
        client.cancel().await.unwrap();
        let transport = AutoTransport::new(
            oauth_stack(&url).await,
            StreamableHttpConfig::new(&url),
            LegacySseConfig::new(&url),
        );
        transport.send(serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
            .await
            .unwrap();
        assert_eq!(transport.protocol().await, Some(expected), "{path}");
    }
}

/// A legacy server whose first stream breaks after the endpoint event; the second stays up
/// and says hello. Records the session of every POST.
async fn flaky_sse_server() -> (String, Arc<Mutex<Vec<String>>>) {
    use axum::routing::{get, post};
    let connections = Arc::new(Mutex::new(0u32));
    let posts = Arc::new(Mutex::new(Vec::new()));
    let seen = posts.clone();
    let app = axum::Router::new()
        .route(
            "/sse",
            get(move || {
                let connections = connections.clone();
                async move {
                    let n = {
                        let mut c = connections.lock().unwrap();
                        *c += 1;
                        *c
                    };
                    let endpoint = Ok::<_, std::io::Error>(Bytes::from(format!("event: endpoint\ndata: /message?s={n}\n\n")));
                    let stream: std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send>> = if n == 1 {
                        Box::pin(futures_util::stream::unfold(Some(endpoint), |next| async move {
                            match next {
                                Some(first) => Some((first, None)),
                                None => {
                                    tokio::time::sleep(Duration::from_millis(100)).await;
                                    Some((Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "dropped")), None))
                                }
                            }
                        }))
                    } else {
                        let hello = Ok(Bytes::from_static(b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/hello\"}\n\n"));
                        Box::pin(futures_util::StreamExt::chain(
                            futures_util::stream::iter(vec![endpoint, hello]),
                            futures_util::stream::pending(),
                        ))
                    };
                    ([("content-type", "text/event-stream")], axum::body::Body::from_stream(stream))
                }
            }),
        )
        .route(
            "/message",
            post(move |query: axum::extract::RawQuery| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(query.0.unwrap_or_default());
                    http::StatusCode::ACCEPTED
                }
            }),
        );
    let url = format!("{}/sse", serve(app).await);
    (url, posts)
}

#[tokio::test]
async fn a_dropped_sse_stream_is_reopened_and_the_new_endpoint_used() {
    let (url, posts) = flaky_sse_server().await;
    let client = hyper_client();
    let mut config = LegacySseConfig::new(&url);
    config = config.retry(
        RetryConfig::default()
            .max_attempts(3)
            .initial_backoff(Duration::from_millis(50))
            .max_backoff(Duration::from_millis(200)),
    );
    let mut transport = LegacySseTransport::connect(client, config).await.unwrap();
    let hello = tokio::time::timeout(Duration::from_secs(5), transport.receive())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        hello["method"], "notifications/hello",
        "a message from the reopened stream"
    );
    transport
        .send(serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await
        .unwrap();
    assert_eq!(
        *posts.lock().unwrap(),
        vec!["s=2".to_owned()],
        "posted to the new session's endpoint"
    );
}

#[tokio::test]
async fn an_endpoint_on_another_origin_is_refused() {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/sse",
        get(|| async {
            let body = "event: endpoint\ndata: http://evil.example/steal\n\n";
            let stream = futures_util::StreamExt::chain(
                futures_util::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from_static(
                    body.as_bytes(),
                ))]),
                futures_util::stream::pending(),
            );
            (
                [("content-type", "text/event-stream")],
                axum::body::Body::from_stream(stream),
            )
        }),
    );
    let url = format!("{}/sse", serve(app).await);
    let client = hyper_client();
    let mut config = LegacySseConfig::new(&url);
    config = config.endpoint_timeout(Duration::from_millis(500));
    let error = LegacySseTransport::connect(client, config)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), tower_mcp_oauth::ErrorKind::InvalidResponse);
}

/// Reads the event stream until the `endpoint` event and returns its data.
async fn endpoint_of(body: &mut hyper::body::Incoming) -> String {
    use http_body_util::BodyExt;
    let mut text = String::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
        if let Some(rest) = text.split("event: endpoint\ndata: ").nth(1) {
            if let Some(line) = rest.split('\n').next().filter(|_| rest.contains('\n')) {
                return line.to_owned();
            }
        }
    }
    panic!("no endpoint event in {text:?}");
}

#[tokio::test]
async fn legacy_sessions_belong_to_their_opener_and_end_with_the_stream() {
    use tower_mcp_oauth::server::{AuthData, StaticVerifier};
    let (listener, base) = bind().await;
    let user = |name: &str| AuthData {
        subject: Some(name.into()),
        scopes: vec!["mcp".into()],
        audience: vec![base.clone()],
        ..Default::default()
    };
    // Machine tokens without `sub`: each is bound to its own client all the same.
    let machine = |client: &str| AuthData {
        client_id: Some(client.into()),
        scopes: vec!["mcp".into()],
        audience: vec![base.clone()],
        ..Default::default()
    };
    let verifier = StaticVerifier::new()
        .token("alice", user("alice"))
        .token("bob", user("bob"))
        .token("service-a", machine("a"))
        .token("service-b", machine("b"));
    let bearer = RequireBearerLayer::new(verifier).resource(base.clone());
    serve_on(listener, protected_legacy_routes(legacy_server(), bearer));

    let client = hyper_client();
    let open = http::Request::get(format!("{base}/sse"))
        .header("authorization", "Bearer alice")
        .body(Full::default())
        .unwrap();
    let mut stream = client.request(open).await.unwrap().into_body();
    let endpoint = format!("{base}{}", endpoint_of(&mut stream).await);
    let post_to = |endpoint: &str, token: &str| {
        let body = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        http::Request::post(endpoint)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    };
    let post = |token: &str| post_to(&endpoint, token);
    assert_eq!(
        client.request(post("bob")).await.unwrap().status(),
        403,
        "not bob's session"
    );
    assert_eq!(
        client.request(post("service-a")).await.unwrap().status(),
        403
    );
    assert_eq!(client.request(post("alice")).await.unwrap().status(), 202);

    let open = http::Request::get(format!("{base}/sse"))
        .header("authorization", "Bearer service-a")
        .body(Full::default())
        .unwrap();
    let mut machine_stream = client.request(open).await.unwrap().into_body();
    let machine_endpoint = format!("{base}{}", endpoint_of(&mut machine_stream).await);
    let post_machine = |token: &str| post_to(&machine_endpoint, token);
    assert_eq!(
        client
            .request(post_machine("service-b"))
            .await
            .unwrap()
            .status(),
        403,
        "another client's token without sub"
    );
    assert_eq!(
        client
            .request(post_machine("service-a"))
            .await
            .unwrap()
            .status(),
        202
    );
    // The session ends with its stream, once the server has seen it close.
    drop(stream);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while client.request(post("alice")).await.unwrap().status() != 404 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session outlived its stream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A loopback TCP proxy whose open connections can all be cut at once.
struct CuttingProxy {
    url: String,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl CuttingProxy {
    async fn start(target: SocketAddr) -> Self {
        let (listener, url) = bind().await;
        let connections = Arc::new(Mutex::new(Vec::new()));
        let tracked = connections.clone();
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = listener.accept().await.unwrap();
                let task = tokio::spawn(async move {
                    let mut outbound = tokio::net::TcpStream::connect(target).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                tracked.lock().unwrap().push(task.abort_handle());
            }
        });
        Self { url, connections }
    }

    fn cut(&self) {
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

#[tokio::test]
async fn after_a_reconnection_the_new_session_is_initialized_again() {
    let (listener, _) = bind().await;
    let server = listener.local_addr().unwrap();
    serve_on(listener, legacy_routes(legacy_server()));
    let proxy = CuttingProxy::start(server).await;

    let mut config = LegacySseConfig::new(format!("{}/sse", proxy.url));
    config = config.retry(
        RetryConfig::default()
            .max_attempts(5)
            .initial_backoff(Duration::from_millis(50))
            .max_backoff(Duration::from_millis(200)),
    );
    let http = hyper_client();
    let transport = LegacySseTransport::connect(http, config).await.unwrap();
    let client = ClientConfig::default().serve(transport).await.unwrap();
    assert_eq!(
        text(&client.call_tool(echo("before")).await.unwrap().content),
        "before"
    );

    // The stream (and every pooled connection) drops; the server's session ends with it. The
    // transport reopens the stream (backoff 50 ms) before the next call.
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = tokio::time::timeout(Duration::from_secs(10), client.call_tool(echo("after")))
        .await
        .expect("the call completes")
        .expect("the new session was initialized and answers");
    assert_eq!(text(&after.content), "after");
    client.cancel().await.unwrap();
}
