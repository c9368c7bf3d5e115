//! `tools/call` round trips against the same loopback rmcp server (Streamable HTTP, no auth),
//! side by side in one run: rmcp's client over our Streamable HTTP transport (hyper beneath) and
//! over rmcp's own reqwest-based `StreamableHttpClientTransport`, each in a 2025-11-25 session
//! and at 2026-07-28 (discovered: no session, `_meta` on every request). Then the client's side
//! alone, against a server that answers at once with fixed messages: rmcp's client over our
//! transport at both revisions, and our transport driven by hand at both.

#[path = "support/transport_peers.rs"]
mod peers;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn round_trips(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let clients = rt.block_on(async { peers::clients(&peers::server().await).await });
    let mut group = c.benchmark_group("tools_call_round_trip");
    group.throughput(Throughput::Elements(1));
    for (name, client) in &clients {
        group.bench_function(*name, |b| b.to_async(&rt).iter(|| peers::call(client)));
    }
    group.finish();

    // The client's side alone: the same calls against a server that costs nothing, through
    // rmcp's client and through our transport driven by hand.
    let (canned, (session, stateless)) = rt.block_on(async {
        let url = peers::canned_server().await;
        let clients = peers::clients(&url).await;
        (clients, peers::raw_transports(&url).await)
    });
    let meta = peers::stateless_meta();
    let mut group = c.benchmark_group("tools_call_client_side");
    group.throughput(Throughput::Elements(1));
    for (name, client) in canned.iter().filter(|(name, _)| name.starts_with("ours")) {
        group.bench_function(format!("rmcp_client_{name}"), |b| {
            b.to_async(&rt).iter(|| peers::call(client))
        });
    }
    group.bench_function("transport_only_2025_11_25_session", |b| {
        b.to_async(&rt).iter(|| session.call(None))
    });
    group.bench_function("transport_only_2026_07_28", |b| {
        b.to_async(&rt).iter(|| stateless.call(Some(&meta)))
    });
    group.finish();
}

criterion_group!(transport, round_trips);
criterion_main!(transport);
