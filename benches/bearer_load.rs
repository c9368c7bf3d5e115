//! Throughput under load, side by side in one run: the same loopback axum server with and
//! without `RequireBearer` + `JwtVerifier` (cached), and with `FilterMcpLists` behind the bearer
//! layer (for requests that list nothing it must cost nothing), measured by wrk
//! (`apt-get install wrk`).
//!
//! `taskset -c 0 cargo bench --bench bearer_load` (`BEARER_LOAD_SECONDS`, default 8, per run;
//! `BEARER_LOAD_ROUNDS`, default 3, alternating runs of each side). With `taskset` present, wrk
//! runs pinned to CPU 1, so on a 2-core machine the server and the load generator do not trade
//! places between runs.

#[path = "../examples/support/jwt_issuer.rs"]
mod jwt_issuer;
#[path = "support/wrk.rs"]
mod wrk;

use axum::routing::get;
use axum::Router;
use jsonwebtoken::Algorithm;
use tower_mcp_oauth::server::{FilterMcpListsLayer, JwtVerifier, McpScopes, RequireBearerLayer};

const RESOURCE: &str = "https://mcp.example.test/mcp";

fn app() -> Router {
    Router::new().route(
        "/mcp",
        get(|| async { r#"{"jsonrpc":"2.0","id":1,"result":{}}"# }),
    )
}

/// wrk's requests per second with `token` as Bearer.
fn with_bearer(url: &str, token: &str, seconds: u64) -> f64 {
    let header = format!("Authorization: Bearer {token}");
    wrk::requests_per_second(url, seconds, &["--latency", "-H", &header], &[])
}

fn main() {
    if !wrk::installed() {
        eprintln!("bearer_load: wrk is not installed (apt-get install wrk); skipping");
        return;
    }
    let seconds = wrk::setting("BEARER_LOAD_SECONDS", 8);
    let rounds = wrk::setting("BEARER_LOAD_ROUNDS", 3);
    // One worker thread for the servers; wrk takes the other core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (bare, protected, filtered, token) = rt.block_on(async {
        let issuer = jwt_issuer::Issuer::start().await;
        let verifier = JwtVerifier::builder(&issuer.base, RESOURCE)
            .discover()
            .await
            .unwrap();
        let layer = RequireBearerLayer::new(verifier)
            .resource(RESOURCE)
            .required_scopes(["mcp"]);
        let bare = wrk::serve(app()).await;
        let protected = wrk::serve(app().layer(layer.clone())).await;
        let lists = FilterMcpListsLayer::new(McpScopes::new().tool("t", ["x"]).filter_lists(true));
        let filtered = wrk::serve(app().layer(lists).layer(layer)).await;
        let token = jwt_issuer::sign(&issuer.claims(RESOURCE), Algorithm::ES256, Some("ec-1"));
        std::mem::forget(issuer);
        (bare, protected, filtered, token)
    });
    // Alternating rounds, so drift affects both sides alike.
    let mut without = Vec::new();
    let mut with = Vec::new();
    let mut with_filter = Vec::new();
    for _ in 0..rounds {
        without.push(with_bearer(&bare, &token, seconds));
        with.push(with_bearer(&protected, &token, seconds));
        with_filter.push(with_bearer(&filtered, &token, seconds));
    }
    let (mean, median) = (wrk::mean, wrk::median);
    let (a, b) = (mean(&without), mean(&with));
    println!("bearer_load: {seconds}s x{rounds} rounds, wrk -t1 -c32, GET /mcp on 127.0.0.1");
    println!("  without RequireBearer:                 {a:>10.0} req/s  {without:?}");
    println!("  with RequireBearer + JwtVerifier:      {b:>10.0} req/s  {with:?}");
    println!(
        "  ... + FilterMcpLists:                  {:>10.0} req/s  {with_filter:?}",
        mean(&with_filter)
    );
    println!(
        "  ratio: {:.1}% of the unprotected throughput (means), {:.1}% (medians)",
        100.0 * b / a,
        100.0 * median(&with) / median(&without)
    );
    println!(
        "  paired ratio: median {:.1}% over {} rounds",
        100.0 * wrk::paired_median(&with, &without),
        with.len()
    );
    println!(
        "  FilterMcpLists (not a list): median {:.1}% of RequireBearer alone, paired",
        100.0 * wrk::paired_median(&with_filter, &with)
    );
}
