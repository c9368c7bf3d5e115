//! Long runs, `#[ignore]`d (run them with `--ignored --nocapture`; `SOAK_SECS` sets the length):
//!
//! - an rmcp client session over our Streamable HTTP transport against an rmcp server whose GET
//!   listening stream is cut every second, with a tool call every 100 ms: no call may fail, and
//!   memory and tasks stay flat;
//! - the legacy SSE server under 2,000 sessions whose clients read slowly: bounded memory, and a
//!   normal session beside them is served as usual.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use rmcp::model::ClientConfig;
use rmcp::ServiceExt;
use serde_json::json;
use support::mcp::{echo, legacy_routes, legacy_server, streamable_service};
use support::{alive_tasks, hyper_client, serve};
use tower_mcp_oauth::transport::{LegacySseConfig, LegacySseTransport};
use tower_mcp_oauth::transport::{StreamableHttpConfig, StreamableHttpTransport};

fn soak_duration() -> Duration {
    let secs = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    Duration::from_secs(secs)
}

/// Resident memory in KiB, 0 where it cannot be read.
fn resident_kib() -> u64 {
    support::resident_kib().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: 10 minutes by default (SOAK_SECS)"]
async fn a_session_whose_listening_stream_is_cut_every_second_loses_no_call() {
    // Every GET stream ends a second after it opened, as a proxy's idle cut would.
    let cut_gets = axum::middleware::from_fn(
        |request: axum::extract::Request, next: axum::middleware::Next| async move {
            let is_get = request.method() == http::Method::GET;
            let response = next.run(request).await;
            if !is_get {
                return response;
            }
            let (parts, body) = response.into_parts();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
            let frames = futures_util::StreamExt::take_until(
                body.into_data_stream(),
                tokio::time::sleep_until(deadline),
            );
            http::Response::from_parts(parts, axum::body::Body::from_stream(frames))
        },
    );
    let app = axum::Router::new()
        .nest_service("/mcp", streamable_service())
        .layer(cut_gets);
    let base = serve(app).await;

    let http = hyper_client();
    let mut config = StreamableHttpConfig::new(format!("{base}/mcp"));
    config = config.default_retry(Duration::from_millis(200));
    let client = ClientConfig::default()
        .serve(StreamableHttpTransport::new(http, config))
        .await
        .unwrap();

    let duration = soak_duration();
    let warm_up = Duration::from_secs(10).min(duration / 4);
    let started = tokio::time::Instant::now();
    let (mut calls, mut failures) = (0u64, Vec::new());
    let mut baseline = None;
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    while started.elapsed() < duration {
        ticker.tick().await;
        if baseline.is_none() && started.elapsed() >= warm_up {
            baseline = Some((resident_kib(), alive_tasks()));
        }
        calls += 1;
        let text = format!("call {calls}");
        match tokio::time::timeout(Duration::from_secs(5), client.call_tool(echo(&text))).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => failures.push(format!("{calls}: {error}")),
            Err(_) => failures.push(format!("{calls}: timed out")),
        }
    }
    let (rss_start, tasks_start) = baseline.unwrap_or((resident_kib(), alive_tasks()));
    let (rss_end, tasks_end) = (resident_kib(), alive_tasks());
    println!(
        "{calls} calls in {:?}, {} failed; RSS {rss_start} -> {rss_end} KiB; tasks {tasks_start} -> {tasks_end}",
        started.elapsed(),
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(tasks_end <= tasks_start + 4, "tasks grew");
    assert!(rss_end <= rss_start + 16 * 1024, "memory grew");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: 2,000 sessions with slow readers"]
async fn the_legacy_server_under_two_thousand_slow_sessions_stays_bounded_and_serves_others() {
    let base = serve(legacy_routes(legacy_server().max_sessions(2_100))).await;
    let rss_before = resident_kib();

    // 2,000 sessions, each asking for 64 KiB answers and reading one frame every 200 ms.
    let slow = Arc::new(tokio::sync::Semaphore::new(64));
    let mut sessions = tokio::task::JoinSet::new();
    for n in 0..2_000u32 {
        let base = base.clone();
        let slow = slow.clone();
        sessions.spawn(async move {
            let http = hyper_client();
            let permit = slow.acquire().await.unwrap();
            let response = http
                .request(http::Request::get(format!("{base}/sse")).body(Full::default()).unwrap())
                .await
                .unwrap();
            let mut body = response.into_body();
            let mut text = String::new();
            while !text.contains("\n\n") {
                if let Some(Ok(frame)) = body.frame().await {
                    if let Ok(data) = frame.into_data() {
                        text.push_str(&String::from_utf8_lossy(&data));
                    }
                }
            }
            let path = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap().to_owned();
            let url = format!("{base}{path}");
            let post = |message: serde_json::Value| {
                let request = http::Request::post(&url)
                    .header("content-type", "application/json")
                    .body(Full::from(message.to_string()))
                    .unwrap();
                http.request(request)
            };
            let _ = post(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "slow", "version": "1"}}})).await;
            let _ = post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
            let text = "s".repeat(64 * 1024);
            for id in 1..=20 {
                let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                    "params": {"name": "echo", "arguments": {"text": text}}});
                if !post(call).await.is_ok_and(|r| r.status() == http::StatusCode::ACCEPTED) {
                    break;
                }
            }
            drop(permit);
            // Read slowly, for a while.
            for _ in 0..25 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if body.frame().await.is_none() {
                    break;
                }
            }
            n
        });
    }

    // Meanwhile, a normal session is served as usual.
    let http = hyper_client();
    let normal = ClientConfig::default()
        .serve(
            LegacySseTransport::connect(http, LegacySseConfig::new(format!("{base}/sse")))
                .await
                .unwrap(),
        )
        .await
        .unwrap();
    let mut peak = resident_kib();
    for n in 0..100 {
        let result = tokio::time::timeout(
            Duration::from_secs(5),
            normal.call_tool(echo(&format!("normal {n}"))),
        )
        .await
        .expect("the normal session is answered in time")
        .unwrap();
        assert!(!result.content.is_empty());
        peak = peak.max(resident_kib());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while sessions.join_next().await.is_some() {
        peak = peak.max(resident_kib());
    }
    println!(
        "RSS before {rss_before} KiB, peak {peak} KiB with 2,000 slow sessions (one process: server and clients)"
    );
    // 2,000 sessions × (64 queued messages of 64 KiB at most) would be 8 GiB unbounded;
    // the queue cap and the session ending keep it far below.
    assert!(peak < rss_before + 2 * 1024 * 1024, "peak {peak} KiB");
}
