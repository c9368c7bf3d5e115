//! `tools/call` round trips against the same loopback rmcp server (Streamable HTTP, no auth),
//! side by side in one run: rmcp's client over our Streamable HTTP transport (hyper beneath) and
//! over rmcp's own reqwest-based `StreamableHttpClientTransport`, each in a 2025-11-25 session
//! and at 2026-07-28 (discovered: no session, `_meta` on every request).

#[path = "../examples/support/mcp_tools.rs"]
mod mcp_tools;

use std::net::SocketAddr;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rmcp::model::{CallToolRequestParams, ClientConfig, ProtocolVersion};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{
    StreamableHttpClientTransport, StreamableHttpServerConfig, StreamableHttpService,
};
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient};
use serde_json::Value;
use tower_mcp_oauth::transport::{StreamableHttpConfig, StreamableHttpTransport};

async fn server() -> String {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    // Built once, as a server should: at 2026-07-28 each request gets a service of its own.
    let tools = mcp_tools::Tools::new();
    let mcp = StreamableHttpService::new(
        move || Ok(tools.clone()),
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

/// Discovery at 2026-07-28: no handshake, `_meta` on every request.
fn discovered() -> ClientLifecycleMode {
    ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        legacy_version: None,
    }
}

fn round_trips(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let clients = rt.block_on(async {
        let url = server().await;
        let ours = || {
            StreamableHttpTransport::new(
                tower_mcp_oauth::http::hyper_client(),
                StreamableHttpConfig::new(&url),
            )
        };
        let theirs = || StreamableHttpClientTransport::from_uri(url.as_str());
        let session = ClientLifecycleMode::Initialize;
        [
            (
                "ours_2025_11_25_session_over_hyper",
                ClientConfig::default()
                    .serve_with_lifecycle(ours(), session.clone())
                    .await,
            ),
            (
                "rmcp_2025_11_25_session_over_reqwest",
                ClientConfig::default()
                    .serve_with_lifecycle(theirs(), session)
                    .await,
            ),
            (
                "ours_2026_07_28_over_hyper",
                ClientConfig::default()
                    .serve_with_lifecycle(ours(), discovered())
                    .await,
            ),
            (
                "rmcp_2026_07_28_over_reqwest",
                ClientConfig::default()
                    .serve_with_lifecycle(theirs(), discovered())
                    .await,
            ),
        ]
        .map(|(name, client)| (name, client.unwrap()))
    });
    for (name, client) in &clients {
        let version = client.peer_info().unwrap().protocol_version.clone();
        assert_eq!(
            version.as_str() == "2026-07-28",
            name.contains("2026"),
            "{name}: {version}"
        );
    }
    let mut group = c.benchmark_group("tools_call_round_trip");
    group.throughput(Throughput::Elements(1));
    for (name, client) in &clients {
        group.bench_function(*name, |b| b.to_async(&rt).iter(|| call(client)));
    }
    group.finish();
}

criterion_group!(transport, round_trips);
criterion_main!(transport);
