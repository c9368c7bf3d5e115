//! `OAuthLayer` costs, each measured beside its baseline in the same run:
//!
//! - `throughput`: batches of 64 concurrent requests from a hyper client to a loopback server,
//!   bare and through `OAuthLayer` with a valid token;
//! - `attach`: one call through the layer to a service that answers at once, against the same
//!   service without the layer: the layer's own cost per request;
//! - `refresh_storm`: 1000 concurrent requests that all find the token expired, until all have
//!   completed (one refresh among them).
//!
//! `cargo bench --bench oauth_layer`

#[path = "../examples/support/demo_server.rs"]
mod demo_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_mcp_oauth::client::{
    CredentialStore, HeadlessHandler, MemoryStore, OAuthConfig, OAuthLayer, OAuthState,
};
use url::Url;

const BATCH: usize = 64;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn config() -> OAuthConfig {
    OAuthConfig::new().handler(HeadlessHandler::new(
        Url::parse("http://127.0.0.1:7/callback").unwrap(),
    ))
}

async fn authorized_state(server: &demo_server::DemoServer, config: OAuthConfig) -> OAuthState {
    let state = OAuthState::new(server.mcp_url(), Some(config))
        .await
        .unwrap();
    state.authorize().await.unwrap();
    state
}

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

fn throughput(c: &mut Criterion) {
    let rt = runtime();
    let (server, state) = rt.block_on(async {
        let server = demo_server::DemoServer::start(Default::default()).await;
        let state = authorized_state(&server, config()).await;
        (server, state)
    });
    // Same origin as the MCP endpoint, so the layer attaches the token; the route ignores it,
    // so both sides get the same answer.
    let url = format!("{}/ping", server.base);
    let bare = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let layered = ServiceBuilder::new()
        .layer(OAuthLayer::new(state))
        .service(bare.clone());

    let mut group = c.benchmark_group("throughput");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("hyper_bare", |b| {
        b.to_async(&rt).iter(|| batch(&bare, &url))
    });
    group.bench_function("hyper_with_oauth_layer", |b| {
        b.to_async(&rt).iter(|| batch(&layered, &url))
    });
    group.finish();
}

fn attach(c: &mut Criterion) {
    let rt = runtime();
    let state = rt.block_on(async {
        let server = demo_server::DemoServer::start(Default::default()).await;
        let state = authorized_state(&server, config()).await;
        (server, state)
    });
    let (server, state) = state;
    let url = server.mcp_url();
    let answer = tower::service_fn(|_request: Request<Full<Bytes>>| async move {
        Ok::<_, std::convert::Infallible>(Response::new(Full::<Bytes>::default()))
    });
    let layered = ServiceBuilder::new()
        .layer(OAuthLayer::new(state))
        .service(answer);

    let mut group = c.benchmark_group("attach");
    group.bench_function("service_bare", |b| {
        b.to_async(&rt).iter(|| {
            let request = Request::post(url.as_str()).body(Full::default()).unwrap();
            answer.oneshot(request)
        })
    });
    group.bench_function("service_with_oauth_layer", |b| {
        b.to_async(&rt).iter(|| {
            let request = Request::post(url.as_str()).body(Full::default()).unwrap();
            layered.clone().oneshot(request)
        })
    });
    group.finish();
}

fn refresh_storm(c: &mut Criterion) {
    let rt = runtime();
    // Refresh tokens are not rotated here, so every iteration can redeem the same one.
    let (server, record) = rt.block_on(async {
        let server = demo_server::DemoServer::start(demo_server::Behaviour {
            rotate_refresh_tokens: false,
            ..Default::default()
        })
        .await;
        let store = Arc::new(MemoryStore::new());
        let shared: Arc<dyn CredentialStore> = store.clone();
        authorized_state(&server, config().shared_store(shared)).await;
        let record = store.latest(&server.mcp_url()).await.unwrap().unwrap();
        (server, record)
    });
    let url = server.mcp_url();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let server_in_loop = server.clone();

    let mut group = c.benchmark_group("refresh_storm");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1000));
    group.bench_function("1000_requests_expired_token", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (key, record) = record.clone();
            let client = client.clone();
            let url = url.clone();
            let server = server_in_loop.clone();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // A fresh client state holding an expired token.
                    let mut expired = record.clone();
                    if let Some(tokens) = expired.tokens.as_mut() {
                        tokens.expires_at = Some(1);
                        tokens.issued_at = Some(0);
                    }
                    let store = MemoryStore::new();
                    store.save(&key, &expired).await.unwrap();
                    let state = OAuthState::new(&url, Some(config().store(store)))
                        .await
                        .unwrap();
                    let service = ServiceBuilder::new()
                        .layer(OAuthLayer::new(state))
                        .service(client.clone());
                    let requests = (0..1000).map(|i| {
                        let body = format!(
                            r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"x"}}}}}}"#
                        );
                        let request = Request::post(url.as_str())
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body)))
                            .unwrap();
                        let service = service.clone();
                        async move {
                            let response = service.oneshot(request).await.unwrap();
                            assert!(response.status().is_success());
                            response.into_body().collect().await.unwrap();
                        }
                    });
                    let refreshes_before = server.counters().refreshes;
                    let started = Instant::now();
                    futures_util::future::join_all(requests).await;
                    total += started.elapsed();
                    assert_eq!(server.counters().refreshes - refreshes_before, 1, "one refresh per storm");
                }
                total
            }
        })
    });
    group.finish();
}

criterion_group!(benches, throughput, attach, refresh_storm);
criterion_main!(benches);
