//! `tools/call` round trips in alternating rounds, so that this machine's drift hits every side
//! alike: rmcp's client over our transport and over rmcp's, in a 2025-11-25 session and at
//! 2026-07-28, against one rmcp server; and our transport alone at both revisions against a
//! server that answers at once. Prints each side's median time per call and the medians of the
//! per-round ratios. (`benches/transport.rs` has the criterion figures.)
//!
//! `cargo bench --bench transport_paired` (`PAIRED_ROUNDS`, default 12).

#[path = "support/transport_peers.rs"]
mod peers;

use std::future::Future;
use std::time::{Duration, Instant};

const CALLS_PER_ROUND: u32 = 400;

/// Time per call over one round of `CALLS_PER_ROUND` calls, one after another.
async fn round<F: Future<Output = ()>>(mut call: impl FnMut() -> F) -> Duration {
    let started = Instant::now();
    for _ in 0..CALLS_PER_ROUND {
        call().await;
    }
    started.elapsed() / CALLS_PER_ROUND
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
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
        let clients = peers::clients(&peers::server().await).await;
        let (session, stateless) = peers::raw_transports(&peers::canned_server().await).await;
        let meta = peers::stateless_meta();
        let names: Vec<String> = clients
            .iter()
            .map(|(name, _)| (*name).to_owned())
            .chain([
                "transport_only_2025_11_25_session".into(),
                "transport_only_2026_07_28".into(),
            ])
            .collect();
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
        // Warm up every side once, then alternate.
        for round_number in 0..=rounds {
            let mut this_round = Vec::new();
            for (_, client) in &clients {
                this_round.push(round(|| peers::call(client)).await);
            }
            this_round.push(round(|| session.call(None)).await);
            this_round.push(round(|| stateless.call(Some(&meta))).await);
            if round_number > 0 {
                for (side, time) in this_round.into_iter().enumerate() {
                    times[side].push(time.as_secs_f64() * 1e6);
                }
            }
        }
        let index = |name: &str| names.iter().position(|n| n == name).unwrap();
        for (name, side) in names.iter().zip(&times) {
            println!(
                "{name}: median {:.1} µs per call",
                median(&mut side.clone())
            );
        }
        let ratio = |a: &str, b: &str| {
            let mut ratios: Vec<f64> = times[index(a)]
                .iter()
                .zip(&times[index(b)])
                .map(|(a, b)| a / b)
                .collect();
            println!(
                "{a} / {b}: median {:.3} over {rounds} paired rounds",
                median(&mut ratios)
            );
        };
        ratio("ours_2026_07_28", "rmcp_2026_07_28");
        ratio("ours_2026_07_28", "ours_2025_11_25_session");
        ratio("rmcp_2026_07_28", "rmcp_2025_11_25_session");
        ratio(
            "transport_only_2026_07_28",
            "transport_only_2025_11_25_session",
        );
    });
}
