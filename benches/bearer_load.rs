//! Throughput under load, side by side in one run: the same loopback axum server with and
//! without `RequireBearer` + `JwtVerifier` (cached), measured by wrk (`apt-get install wrk`).
//!
//! `taskset -c 0 cargo bench --bench bearer_load` (`BEARER_LOAD_SECONDS`, default 8, per run;
//! `BEARER_LOAD_ROUNDS`, default 3, alternating runs of each side). With `taskset` present, wrk
//! runs pinned to CPU 1, so on a 2-core machine the server and the load generator do not trade
//! places between runs.

#[path = "../examples/support/jwt_issuer.rs"]
mod jwt_issuer;

use std::net::SocketAddr;
use std::process::Command;

use axum::routing::get;
use axum::Router;
use jsonwebtoken::Algorithm;
use tower_mcp_oauth::server::{JwtVerifier, RequireBearerLayer};

const RESOURCE: &str = "https://mcp.example.test/mcp";

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn app() -> Router {
    Router::new().route(
        "/mcp",
        get(|| async { r#"{"jsonrpc":"2.0","id":1,"result":{}}"# }),
    )
}

/// Runs wrk and returns its requests per second.
fn wrk(url: &str, token: &str, seconds: u64) -> f64 {
    let pinned = Command::new("taskset").arg("--version").output().is_ok();
    let mut command = if pinned {
        let mut taskset = Command::new("taskset");
        taskset.args(["-c", "1", "wrk"]);
        taskset
    } else {
        Command::new("wrk")
    };
    let output = command
        .args(["-t1", "-c32", &format!("-d{seconds}s"), "--latency"])
        .args(["-H", &format!("Authorization: Bearer {token}"), url])
        .output()
        .expect("wrk is needed: apt-get install wrk");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        !text.contains("Non-2xx"),
        "every request must succeed:\n{text}"
    );
    text.lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"))
}

fn main() {
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("bearer_load: wrk is not installed (apt-get install wrk); skipping");
        return;
    }
    let setting = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let seconds = setting("BEARER_LOAD_SECONDS", 8);
    let rounds = setting("BEARER_LOAD_ROUNDS", 3);
    // One worker thread for the servers; wrk takes the other core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (bare, protected, token) = rt.block_on(async {
        let issuer = jwt_issuer::Issuer::start().await;
        let verifier = JwtVerifier::builder(&issuer.base, RESOURCE)
            .discover()
            .await
            .unwrap();
        let layer = RequireBearerLayer::new(verifier)
            .resource(RESOURCE)
            .required_scopes(["mcp"]);
        let bare = serve(app()).await;
        let protected = serve(app().layer(layer)).await;
        let token = jwt_issuer::sign(&issuer.claims(RESOURCE), Algorithm::ES256, Some("ec-1"));
        std::mem::forget(issuer);
        (bare, protected, token)
    });
    // Alternating rounds, so drift affects both sides alike.
    let mut without = Vec::new();
    let mut with = Vec::new();
    for _ in 0..rounds {
        without.push(wrk(&bare, &token, seconds));
        with.push(wrk(&protected, &token, seconds));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let median = |v: &[f64]| {
        let mut sorted = v.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    };
    let (a, b) = (mean(&without), mean(&with));
    println!("bearer_load: {seconds}s x{rounds} rounds, wrk -t1 -c32, GET /mcp on 127.0.0.1");
    println!("  without RequireBearer:                 {a:>10.0} req/s  {without:?}");
    println!("  with RequireBearer + JwtVerifier:      {b:>10.0} req/s  {with:?}");
    println!(
        "  ratio: {:.1}% of the unprotected throughput (means), {:.1}% (medians)",
        100.0 * b / a,
        100.0 * median(&with) / median(&without)
    );
    // Each protected run against the unprotected run just before it: drift of the machine
    // between rounds cancels out.
    let paired: Vec<f64> = with.iter().zip(&without).map(|(w, o)| w / o).collect();
    println!(
        "  paired ratio: median {:.1}% over {} rounds",
        100.0 * median(&paired),
        paired.len()
    );
}
