//! What `HyperClient`'s handling of idle connections costs: batches of 64 concurrent GETs to a
//! loopback server, through `HyperClient` and through the plain hyper-util client it wraps (the
//! same connector, as `hyper_client()` built it before), in one run.
//!
//! `cargo bench --bench hyper_client`

use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceExt};

const BATCH: usize = 64;

async fn batch<S>(service: &S, url: &str)
where
    S: Service<Request<Full<Bytes>>, Response = Response<hyper::body::Incoming>> + Clone,
    S::Error: std::fmt::Debug,
{
    let requests = (0..BATCH).map(|_| {
        let request = Request::get(url).body(Full::default()).unwrap();
        let service = service.clone();
        async move {
            let response = service.oneshot(request).await.unwrap();
            assert!(response.status().is_success());
            response.into_body().collect().await.unwrap();
        }
    });
    futures_util::future::join_all(requests).await;
}

/// The client `hyper_client()` returned before: hyper-util over the same rustls connector.
fn plain_client() -> hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
> {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector)
}

fn throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/ping", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/ping", axum::routing::get(|| async { "pong" }));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    });
    let plain = rt.block_on(async { plain_client() });
    let ours = rt.block_on(async { tower_mcp_oauth::http::hyper_client() });

    let mut group = c.benchmark_group("hyper_client");
    group
        .throughput(Throughput::Elements(BATCH as u64))
        .measurement_time(Duration::from_secs(8));
    group.bench_function("plain hyper-util client", |b| {
        b.to_async(&rt).iter(|| batch(&plain, &url))
    });
    group.bench_function("HyperClient", |b| {
        b.to_async(&rt).iter(|| batch(&ours, &url))
    });
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
