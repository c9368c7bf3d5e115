//! Throughput of a hyper client with and without `OAuthLayer` (valid token) against a loopback
//! server, in alternating rounds so that the machine's drift hits both sides alike; the paired
//! per-round ratios are reported. (`benches/oauth_layer.rs` has the criterion figures.)
//!
//! `cargo bench --bench oauth_layer_paired` (`PAIRED_ROUNDS`, default 12).

#[path = "../examples/support/demo_server.rs"]
mod demo_server;

use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_mcp_oauth::client::{HeadlessHandler, OAuthConfig, OAuthLayer, OAuthState};
use url::Url;

const BATCH: usize = 64;
const BATCHES_PER_ROUND: usize = 150;

async fn round<S>(service: &S, url: &str, header: Option<&str>) -> f64
where
    S: Service<Request<Full<Bytes>>, Response = Response<hyper::body::Incoming>> + Clone,
    S::Error: std::fmt::Debug,
{
    let started = Instant::now();
    for _ in 0..BATCHES_PER_ROUND {
        let requests = (0..BATCH).map(|_| {
            let service = service.clone();
            let mut request = Request::get(url);
            if let Some(value) = header {
                request = request.header("authorization", value);
            }
            let request = request.body(Full::default()).unwrap();
            async move {
                let response = service.oneshot(request).await.unwrap();
                assert!(response.status().is_success());
                response.into_body().collect().await.unwrap();
            }
        });
        futures_util::future::join_all(requests).await;
    }
    (BATCH * BATCHES_PER_ROUND) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let rounds: usize = std::env::var("PAIRED_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = demo_server::DemoServer::start(Default::default()).await;
        let handler = HeadlessHandler::new(Url::parse("http://127.0.0.1:7/callback").unwrap());
        let state = OAuthState::new(server.mcp_url(), Some(OAuthConfig::new().handler(handler)))
            .await
            .unwrap();
        state.authorize().await.unwrap();
        // The same header the layer sends, for a third side: the header's own cost on the wire.
        let bearer = format!("Bearer {}", state.credentials().unwrap().access_token.expose());
        let url = format!("{}/ping", server.base);
        let bare = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let layered = ServiceBuilder::new().layer(OAuthLayer::new(state)).service(bare.clone());
        // Warm both connection pools.
        round(&bare, &url, None).await;
        round(&layered, &url, None).await;
        let (mut without, mut with, mut ratios, mut header_ratios) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..rounds {
            // Alternate which side goes first, too.
            let (a, b) = if i % 2 == 0 {
                let a = round(&bare, &url, None).await;
                (a, round(&layered, &url, None).await)
            } else {
                let b = round(&layered, &url, None).await;
                (round(&bare, &url, None).await, b)
            };
            let c = round(&bare, &url, Some(&bearer)).await;
            without.push(a);
            with.push(b);
            ratios.push(b / a);
            header_ratios.push(c / a);
        }
        let median = |v: &[f64]| {
            let mut sorted = v.to_vec();
            sorted.sort_by(f64::total_cmp);
            sorted[sorted.len() / 2]
        };
        println!("oauth_layer_paired: {rounds} rounds of {} requests ({BATCH} concurrent), GET /ping on 127.0.0.1", BATCH * BATCHES_PER_ROUND);
        println!("  without OAuthLayer: median {:>8.0} req/s", median(&without));
        println!("  with OAuthLayer:    median {:>8.0} req/s", median(&with));
        println!("  paired ratio (with/without): median {:.1}%", 100.0 * median(&ratios));
        println!(
            "  for reference, the bare client sending the same Authorization header itself: median {:.1}%",
            100.0 * median(&header_ratios)
        );
        assert!(server.counters().authorizations == 1, "no re-authorization during the run");
    });
}
