//! Two replicas of the `mcp_oauth_server` example on one PostgreSQL database, behind a
//! round-robin balancer on 127.0.0.1: our client discovers, registers, authorizes, redeems,
//! refreshes and calls tools at MCP 2026-07-28 with every request going to the next replica,
//! so each step's state was written by the other one.
//!
//! Needs `DATABASE_URL`; without it the test says it is skipped and passes, unless
//! `REQUIRE_POSTGRES_TESTS=1`.
#![cfg(all(
    feature = "postgres",
    feature = "authorization-server",
    feature = "rmcp",
    feature = "rmcp-server",
    feature = "jwt"
))]

mod support;

use support::postgres::{database_url, fresh_schema};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rmcp::model::{ClientConfig, ProtocolVersion};
use rmcp::ClientServiceExt;
use serde_json::{json, Value};
use support::client::headless_state;
use support::mcp::{call, discover_or_initialize, text};
use support::{bind, oauth_server_app, serve_on};
use tower::ServiceBuilder;
use tower_mcp_oauth::client::OAuthLayer;
use tower_mcp_oauth::transport::{StreamableHttpConfig, StreamableHttpTransport};

/// Which replica served which path, in order.
type Served = Arc<Mutex<Vec<(usize, String)>>>;

#[derive(Clone)]
struct Balancer {
    upstreams: Arc<Mutex<Vec<String>>>,
    next: Arc<AtomicUsize>,
    served: Served,
    http: Client<hyper_util::client::legacy::connect::HttpConnector, Body>,
}

/// Each request to the next replica, whatever connection it came on.
async fn forward(State(balancer): State<Balancer>, request: Request) -> Response {
    let upstreams = balancer.upstreams.lock().unwrap().clone();
    let index = balancer.next.fetch_add(1, Ordering::SeqCst) % upstreams.len();
    let (mut parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    balancer
        .served
        .lock()
        .unwrap()
        .push((index, parts.uri.path().to_owned()));
    parts.uri = format!("{}{path}", upstreams[index]).parse().unwrap();
    match balancer
        .http
        .request(http::Request::from_parts(parts, body))
        .await
    {
        Ok(response) => response.map(Body::new).into_response(),
        Err(_) => http::StatusCode::BAD_GATEWAY.into_response(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_signs_in_refreshes_and_calls_tools_across_two_replicas() {
    let Some(url) = database_url() else { return };
    let url = fresh_schema(&url).await;
    let (listener, public) = bind().await;
    let balancer = Balancer {
        upstreams: Arc::default(),
        next: Arc::default(),
        served: Arc::default(),
        http: Client::builder(TokioExecutor::new()).build_http(),
    };
    let key = String::from_utf8(std::fs::read("tests/fixtures/ec_private.pem").unwrap()).unwrap();
    for _ in 0..2 {
        let running = oauth_server_app::start(oauth_server_app::Options {
            port: 0,
            issuer: Some(public.clone()),
            auto_approve: true,
            store_url: Some(url.clone()),
            signing_key_pem: Some(key.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
        let address = running.listening_url.clone();
        balancer.upstreams.lock().unwrap().push(address);
    }
    serve_on(
        listener,
        axum::Router::new()
            .fallback(forward)
            .with_state(balancer.clone()),
    );

    let mcp_url = format!("{public}/mcp");
    let state = headless_state(&mcp_url).await;
    let stack = ServiceBuilder::new()
        .layer(OAuthLayer::new(state.clone()))
        .service(tower_mcp_oauth::http::hyper_client());
    let transport = StreamableHttpTransport::new(stack, StreamableHttpConfig::new(&mcp_url));
    let client = ClientConfig::default()
        .serve_with_lifecycle(transport, discover_or_initialize())
        .await
        .unwrap();
    assert_eq!(
        client.peer_info().unwrap().protocol_version,
        ProtocolVersion::V_2026_07_28
    );
    let calls = |a: i64| call("add", json!({"a": a, "b": 1}));
    for a in 0..4 {
        let sum = client.call_tool(calls(a)).await.unwrap();
        assert_eq!(text(&sum.content), (a + 1).to_string());
    }
    // Two refreshes: the rotated token written by one replica is redeemed at the other.
    state.refresh().await.unwrap();
    state.refresh().await.unwrap();
    let whoami = client.call_tool(call("whoami", json!({}))).await.unwrap();
    let whoami: Value = serde_json::from_str(&text(&whoami.content)).unwrap();
    assert_eq!(whoami["subject"], "demo-user");
    client.cancel().await.unwrap();

    let served = balancer.served.lock().unwrap().clone();
    let mut by_path: BTreeMap<&str, [usize; 2]> = BTreeMap::new();
    for (replica, path) in &served {
        by_path.entry(path.as_str()).or_default()[*replica] += 1;
    }
    eprintln!("requests per path and replica: {by_path:?}");
    assert!(by_path["/mcp"].iter().all(|n| *n > 0), "{by_path:?}");
    let token = by_path["/token"];
    assert_eq!(
        token.iter().sum::<usize>(),
        3,
        "one code exchange, two refreshes"
    );
    assert!(token.iter().all(|n| *n > 0), "{by_path:?}");
}
