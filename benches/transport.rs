//! `tools/call` round trips against the same loopback rmcp server (Streamable HTTP, no auth),
//! side by side in one run: rmcp's client over our Streamable HTTP transport (hyper beneath),
//! and rmcp's client over rmcp's own reqwest-based `StreamableHttpClientTransport`.

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

fn round_trips(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (ours, theirs) = rt.block_on(async {
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
        (ours, theirs)
    });
    let mut group = c.benchmark_group("tools_call_round_trip");
    group.throughput(Throughput::Elements(1));
    group.bench_function("ours_streamable_http_over_hyper", |b| {
        b.to_async(&rt).iter(|| call(&ours))
    });
    group.bench_function("rmcp_streamable_http_over_reqwest", |b| {
        b.to_async(&rt).iter(|| call(&theirs))
    });
    group.finish();
}

criterion_group!(transport, round_trips);
criterion_main!(transport);
