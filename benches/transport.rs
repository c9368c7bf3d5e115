//! `tools/call` round trips against the same loopback rmcp server (Streamable HTTP, no auth),
//! side by side in one run: rmcp's client over our Streamable HTTP transport (hyper beneath),
//! and rmcp's client over rmcp's own reqwest-based `StreamableHttpClientTransport`; and our
//! transport at MCP 2026-07-28, stateless (`_meta` on every request, no session).

#[path = "../examples/support/mcp_tools.rs"]
mod mcp_tools;

use std::net::SocketAddr;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{
    StreamableHttpClientTransport, StreamableHttpServerConfig, StreamableHttpService,
};
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;
use tower_mcp_oauth::transport::{StreamableHttpConfig, StreamableHttpTransport};

async fn server() -> String {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let mcp = StreamableHttpService::new(
        || Ok(mcp_tools::Tools::new()),
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

async fn call(client: &RunningService<RoleClient, ClientConfig>) {
    let mut args = serde_json::Map::new();
    args.insert("text".into(), Value::from("ping"));
    let result = client
        .call_tool(CallToolRequestParams::new("echo").with_arguments(args))
        .await
        .unwrap();
    assert!(!result.content.is_empty());
}

type Stateless = StreamableHttpTransport<tower_mcp_oauth::http::HyperClient>;

/// One `tools/call` at 2026-07-28: the request carries its own `_meta`, no session.
async fn call_stateless(transport: &tokio::sync::Mutex<(Stateless, u64)>) {
    let mut guard = transport.lock().await;
    let (transport, next_id) = &mut *guard;
    *next_id += 1;
    let id = *next_id;
    let request = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": "echo", "arguments": {"text": "ping"},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
        },
    }});
    transport.send(request).await.unwrap();
    loop {
        let message = transport.receive().await.unwrap().unwrap();
        if message["id"] == id {
            assert!(message["result"]["content"].is_array(), "{message}");
            return;
        }
    }
}

fn round_trips(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (ours, theirs, stateless) = rt.block_on(async {
        let url = server().await;
        let hyper = tower_mcp_oauth::http::hyper_client();
        let ours = ClientConfig::default()
            .serve(StreamableHttpTransport::new(
                hyper,
                StreamableHttpConfig::new(&url),
            ))
            .await
            .unwrap();
        let theirs = ClientConfig::default()
            .serve(StreamableHttpClientTransport::from_uri(url.as_str()))
            .await
            .unwrap();
        let stateless = StreamableHttpTransport::new(
            tower_mcp_oauth::http::hyper_client(),
            StreamableHttpConfig::new(&url).listen(false),
        );
        (ours, theirs, tokio::sync::Mutex::new((stateless, 0)))
    });
    let mut group = c.benchmark_group("tools_call_round_trip");
    group.throughput(Throughput::Elements(1));
    group.bench_function("ours_streamable_http_over_hyper", |b| {
        b.to_async(&rt).iter(|| call(&ours))
    });
    group.bench_function("rmcp_streamable_http_over_reqwest", |b| {
        b.to_async(&rt).iter(|| call(&theirs))
    });
    group.bench_function("ours_stateless_2026_07_28_over_hyper", |b| {
        b.to_async(&rt).iter(|| call_stateless(&stateless))
    });
    group.finish();
}

criterion_group!(transport, round_trips);
criterion_main!(transport);
