//! `mcp-oauth proxy` against a direct client, in one run on loopback: the added latency of a
//! `tools/call` through the bridge (rmcp's client on stdio → the bridge → the server) against
//! rmcp's client on our transport and `OAuthLayer` straight to the same server, the bridge's
//! resident memory idle and after many calls, and the time from start to the first answer with
//! stored tokens.
//!
//! `cargo bench -p mcp-oauth --bench bridge` (`BRIDGE_CALLS`, default 2,000 per round;
//! `BRIDGE_ROUNDS`, default 3; `BRIDGE_MEMORY_CALLS`, default 10,000). Needs python3 (the
//! sign-in's stand-in browser follows one redirect). The bridge keeps its credentials in the
//! plain file; where a Secret Service answers (`DBUS_SESSION_BUS_ADDRESS`), the start is also
//! measured with the file sealed by a key from it (`--store keyring`). `MCP_OAUTH_BIN` names
//! another build of the bridge to measure (`target/dist/mcp-oauth`, as the npm package ships).
//!
//! Then the same with `--protocol auto`: rmcp's 2025-11-25 client through the bridge to a server
//! that speaks only 2026-07-28 (each request carried into the new era), against rmcp's client
//! speaking 2026-07-28 straight to that server; no sign-in there.

#[allow(unreachable_pub)]
#[path = "../tests/support/modern.rs"]
mod modern;
#[path = "../../examples/support/oauth_server_app.rs"]
mod oauth_server_app;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, ClientConfig, ProtocolVersion};
use rmcp::service::{ClientServiceExt, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientLifecycleMode, RoleClient, Service, ServiceExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tower::ServiceBuilder;
use tower_mcp_oauth::client::{FileStore, OAuthConfig, OAuthLayer, OAuthState};
use tower_mcp_oauth::transport::{StreamableHttpConfig, StreamableHttpTransport};

/// The bridge measured: this build's, or `MCP_OAUTH_BIN` (the npm package's `dist` build).
fn bin() -> String {
    std::env::var("MCP_OAUTH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_mcp-oauth").to_owned())
}

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn add_call() -> CallToolRequestParams {
    let arguments = serde_json::json!({"a": 1, "b": 2});
    CallToolRequestParams::new("add").with_arguments(arguments.as_object().unwrap().clone())
}

/// Serves `app` on 127.0.0.1 (for the 2026-only server); its base URL.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// Median per-call time of `calls` sequential calls of `call`.
async fn per_call<S: Service<RoleClient>>(
    client: &RunningService<RoleClient, S>,
    call: &CallToolRequestParams,
    calls: usize,
) -> Duration {
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let at = Instant::now();
        client.call_tool(call.clone()).await.unwrap();
        times.push(at.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn proxy(url: &str, store: &Path, kept: &str) -> Command {
    let mut command = Command::new(bin());
    command
        .args(["proxy", url, "--store", kept, "--store-file"])
        .arg(store)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    command
}

/// Signs in ahead, through the stand-in browser.
async fn login(url: &str, store: &Path, kept: &str, browser: &Path) {
    let login = Command::new(bin())
        .args(["login", url, "--store", kept, "--store-file"])
        .arg(store)
        .env("BROWSER", browser)
        .env("RUST_LOG", "warn")
        .status()
        .await
        .unwrap();
    assert!(login.success(), "mcp-oauth login failed");
}

/// Start to first answer: spawn `bridge()`, initialize, read one line; sorted, with the
/// resident memory of the last bridge once it answered.
async fn startups(bridge: impl Fn() -> Command) -> (Vec<Duration>, Option<u64>) {
    let mut startups = Vec::new();
    let mut resident = None;
    for _ in 0..10 {
        let started = Instant::now();
        let mut child = bridge()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let initialize = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#;
        stdin
            .write_all(format!("{initialize}\n").as_bytes())
            .await
            .unwrap();
        stdout.next_line().await.unwrap().unwrap();
        startups.push(started.elapsed());
        resident = child.id().and_then(resident_kib);
        drop(stdin);
        let _ = child.wait().await;
    }
    startups.sort();
    (startups, resident)
}

fn main() {
    let calls = setting("BRIDGE_CALLS", 2_000);
    let rounds = setting("BRIDGE_ROUNDS", 3);
    let memory_calls = setting("BRIDGE_MEMORY_CALLS", 10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let running = oauth_server_app::start(oauth_server_app::Options {
            port: 0,
            auto_approve: true,
            ..Default::default()
        })
        .await
        .unwrap();
        let url = running.mcp_url.clone();
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("credentials.json");
        let browser = dir.path().join("browser.sh");
        std::fs::write(
            &browser,
            "#!/bin/sh\npython3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1]).read()' \"$1\" >/dev/null 2>&1 &\n",
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        login(&url, &store, "file", &browser).await;

        // The direct client: the same store, already signed in.
        let state = OAuthState::new(&url, Some(OAuthConfig::new().store(FileStore::new(&store))))
            .await
            .unwrap();
        let stack = ServiceBuilder::new()
            .layer(OAuthLayer::new(state))
            .service(tower_mcp_oauth::http::hyper_client());
        let direct = ().serve(StreamableHttpTransport::new(stack, StreamableHttpConfig::new(&url)))
            .await
            .unwrap();
        let (transport, _) = TokioChildProcess::builder(proxy(&url, &store, "file"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = transport.id().unwrap();
        let bridged = ().serve(transport).await.unwrap();
        // Warm both up.
        let add = add_call();
        let (pairs, idle, after) = measure(&direct, &bridged, pid, &add, rounds, calls, memory_calls).await;
        bridged.cancel().await.unwrap();
        direct.cancel().await.unwrap();

        let plain = startups(|| proxy(&url, &store, "file")).await;
        let sealed = if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some() {
            let sealed_store = dir.path().join("sealed.json");
            login(&url, &sealed_store, "keyring", &browser).await;
            Some(startups(|| proxy(&url, &sealed_store, "keyring")).await)
        } else {
            None
        };

        println!("bridge: {rounds} rounds of {calls} sequential tools/call, loopback, same server");
        report(&pairs, idle, after, memory_calls + rounds * calls);
        for (kept, measured) in [("plain file", Some(plain)), ("file sealed by the OS store", sealed)] {
            let Some((times, resident)) = measured else {
                println!("  start with the {kept}: not measured (no Secret Service)");
                continue;
            };
            report_startups(&format!("with stored tokens, {kept}"), &times, resident);
        }

        // --protocol auto, to a server that speaks only 2026-07-28.
        let modern = modern::modern_server().await;
        let new_era = ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        };
        let direct = ()
            .serve_with_lifecycle(
                StreamableHttpTransport::new(
                    tower_mcp_oauth::http::hyper_client(),
                    StreamableHttpConfig::new(&modern),
                ),
                new_era,
            )
            .await
            .unwrap();
        let auto = || {
            let mut command = Command::new(bin());
            command
                .args(["proxy", modern.as_str(), "--protocol", "auto", "--store", "file"])
                .arg("--store-file")
                .arg(dir.path().join("auto.json"))
                .env_remove("DBUS_SESSION_BUS_ADDRESS")
                .env("RUST_LOG", "warn")
                .kill_on_drop(true);
            command
        };
        let (transport, _) = TokioChildProcess::builder(auto())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = transport.id().unwrap();
        let desktop = ClientConfig::default().with_protocol_version(ProtocolVersion::V_2025_11_25);
        let bridged = desktop.serve(transport).await.unwrap();
        let answer = CallToolRequestParams::new("answer");
        let (pairs, idle, after) = measure(&direct, &bridged, pid, &answer, rounds, calls, memory_calls).await;
        bridged.cancel().await.unwrap();
        direct.cancel().await.unwrap();
        println!(
            "bridge --protocol auto: {rounds} rounds of {calls} sequential tools/call, a 2025-11-25 \
             client through mcp-oauth against a 2026-07-28 client straight to a 2026-07-28-only server"
        );
        report(&pairs, idle, after, memory_calls + rounds * calls);
        let (times, resident) = startups(auto).await;
        report_startups("--protocol auto (server/discover first)", &times, resident);
    });
}

type Rounds = Vec<(Duration, Duration)>;

/// `rounds` rounds of `calls` calls, direct then bridged, then `memory_calls` more through the
/// bridge: the medians per round, and the bridge's resident memory before and after.
async fn measure<B: Service<RoleClient>>(
    direct: &RunningService<RoleClient, ()>,
    bridged: &RunningService<RoleClient, B>,
    pid: u32,
    call: &CallToolRequestParams,
    rounds: usize,
    calls: usize,
    memory_calls: usize,
) -> (Rounds, Option<u64>, Option<u64>) {
    // Warm both up.
    per_call(direct, call, 200).await;
    per_call(bridged, call, 200).await;
    let idle = resident_kib(pid);
    let mut pairs = Vec::new();
    for _ in 0..rounds {
        let d = per_call(direct, call, calls).await;
        let b = per_call(bridged, call, calls).await;
        pairs.push((d, b));
    }
    for _ in 0..memory_calls / 1_000 {
        per_call(bridged, call, 1_000).await;
    }
    (pairs, idle, resident_kib(pid))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
        .unwrap_or("n/a".into())
}

fn report(pairs: &Rounds, idle: Option<u64>, after: Option<u64>, more_calls: usize) {
    for (round, (d, b)) in pairs.iter().enumerate() {
        println!(
            "  round {round}: direct median {:.3} ms, through mcp-oauth {:.3} ms, added {:.3} ms",
            ms(*d),
            ms(*b),
            ms(*b) - ms(*d)
        );
    }
    println!(
        "  resident memory of mcp-oauth: idle {}, after {more_calls} more calls {}",
        mib(idle),
        mib(after)
    );
}

fn report_startups(what: &str, times: &[Duration], resident: Option<u64>) {
    println!(
        "  start to first answer {what}: median {:.1} ms (min {:.1}, max {:.1}) over 10 starts; resident then {}",
        ms(times[5]),
        ms(times[0]),
        ms(times[9]),
        mib(resident)
    );
}
