//! The load benches' shared parts: a loopback server, wrk runs (pinned to CPU 1 when
//! `taskset` is there, so on a 2-core machine the server and the load generator do not trade
//! places), settings from the environment, and the statistics they print.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::process::Command;

/// Whether wrk can be run.
pub fn installed() -> bool {
    Command::new("wrk").arg("--version").output().is_ok()
}

/// A numeric setting from the environment.
pub fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Serves `app` on 127.0.0.1 with a free port; the URL of its `/mcp`.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Runs `wrk -t1 -c32 -d{seconds}s` with `options`, the URL, then a script's `arguments`, and
/// returns its requests per second. Every request must succeed.
pub fn requests_per_second(url: &str, seconds: u64, options: &[&str], arguments: &[&str]) -> f64 {
    let pinned = Command::new("taskset").arg("--version").output().is_ok();
    let mut command = if pinned {
        let mut taskset = Command::new("taskset");
        taskset.args(["-c", "1", "wrk"]);
        taskset
    } else {
        Command::new("wrk")
    };
    let output = command
        .args(["-t1", "-c32", &format!("-d{seconds}s")])
        .args(options)
        .arg(url)
        .args(arguments)
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

pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Each `with` run over the `without` run just before it: drift of the machine between rounds
/// cancels out.
pub fn paired_median(with: &[f64], without: &[f64]) -> f64 {
    let paired: Vec<f64> = with.iter().zip(without).map(|(w, o)| w / o).collect();
    median(&paired)
}
