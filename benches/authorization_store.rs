//! The embedded authorization server's throughput and latency with the memory store and with
//! PostgreSQL, side by side in one run: authorization-code flows (`/authorize` approved at once,
//! then the code exchange) and refreshes (each worker rotating its own refresh token), by
//! concurrent workers over loopback HTTP.
//!
//! `DATABASE_URL=postgres://… cargo bench --bench authorization_store --features postgres`
//! (`STORE_BENCH_SECONDS`, default 5, per run; `STORE_BENCH_ROUNDS`, default 2, alternating
//! runs of each store; `STORE_BENCH_WORKERS`, default 16). Without `DATABASE_URL`, only the
//! memory store is measured.

#[path = "support/wrk.rs"]
mod wrk;

use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};
use tower_mcp_oauth::authorization_server::{
    AuthorizationServer, AuthorizationServerConfig, AuthorizationStore, AutoApprove,
    MemoryAuthorizationStore,
};
use tower_mcp_oauth::metadata::ClientMetadata;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

const REDIRECT: &str = "http://127.0.0.1:9/callback";
const VERIFIER: &str = "bench-verifier-bench-verifier-bench-verifier-0001";

struct Target {
    base: String,
    client_id: String,
}

async fn start(store: impl AuthorizationStore) -> Target {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = AuthorizationServerConfig::new(&base)
        .unwrap()
        .resource(format!("{base}/mcp"))
        .scopes(["mcp"])
        .approval_policy(AutoApprove::new("bench-user"))
        .dpop(false)
        .store(store);
    let server = AuthorizationServer::new(config).unwrap();
    let client_id = server
        .register_client(ClientMetadata {
            redirect_uris: vec![REDIRECT.into()],
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let app = server.router();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Target { base, client_id }
}

async fn post_form(http: &HttpClient, url: &str, form: &[(&str, &str)]) -> (u16, Bytes) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let request = http::Request::post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::from(body))
        .unwrap();
    let response = http.request(request).await.unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

/// One authorization-code flow; returns its refresh token.
async fn code_flow(http: &HttpClient, target: &Target) -> String {
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER));
    let mut url = url::Url::parse(&format!("{}/authorize", target.base)).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &target.client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("state", "s")
        .append_pair("scope", "mcp")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let request = http::Request::get(url.as_str())
        .body(Full::default())
        .unwrap();
    let response = http.request(request).await.unwrap();
    assert_eq!(response.status(), 302);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let (status, body) = post_form(
        http,
        &format!("{}/token", target.base),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", VERIFIER),
            ("redirect_uri", REDIRECT),
            ("client_id", &target.client_id),
        ],
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    refresh_of(&body)
}

fn refresh_of(body: &[u8]) -> String {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap();
    json["refresh_token"].as_str().unwrap().to_owned()
}

/// Operations per second and latency percentiles of `workers` loops of `op` for `seconds`.
struct Run {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

async fn run<F, Fut>(workers: usize, seconds: u64, op: F) -> Run
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let at = Instant::now();
                    op(worker).await;
                    latencies.push(at.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Run {
        per_second: latencies.len() as f64 / elapsed,
        p50: at(0.50),
        p99: at(0.99),
    }
}

async fn measure(target: Target, workers: usize, seconds: u64) -> (Run, Run) {
    let http: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let target = std::sync::Arc::new(target);
    let codes = {
        let (http, target) = (http.clone(), target.clone());
        run(workers, seconds, move |_| {
            let (http, target) = (http.clone(), target.clone());
            async move {
                code_flow(&http, &target).await;
            }
        })
        .await
    };
    // Each worker rotates its own refresh token.
    let mut tokens = Vec::new();
    for _ in 0..workers {
        tokens.push(std::sync::Mutex::new(code_flow(&http, &target).await));
    }
    let tokens = std::sync::Arc::new(tokens);
    let refreshes = run(workers, seconds, move |worker| {
        let (http, target, tokens) = (http.clone(), target.clone(), tokens.clone());
        async move {
            let current = tokens[worker].lock().unwrap().clone();
            let (status, body) = post_form(
                &http,
                &format!("{}/token", target.base),
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &current),
                    ("client_id", &target.client_id),
                ],
            )
            .await;
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            *tokens[worker].lock().unwrap() = refresh_of(&body);
        }
    })
    .await;
    (codes, refreshes)
}

fn main() {
    let seconds = wrk::setting("STORE_BENCH_SECONDS", 5);
    let rounds = wrk::setting("STORE_BENCH_ROUNDS", 2);
    let workers = wrk::setting("STORE_BENCH_WORKERS", 16) as usize;
    let database = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut results: Vec<(&str, Vec<(Run, Run)>)> = vec![("memory", Vec::new())];
    if database.is_some() {
        results.push(("postgres", Vec::new()));
    } else {
        eprintln!("authorization_store: DATABASE_URL is not set; measuring the memory store only");
    }
    for _ in 0..rounds {
        for (name, runs) in results.iter_mut() {
            let target = rt.block_on(async {
                match *name {
                    "memory" => start(MemoryAuthorizationStore::new()).await,
                    _ => start(postgres_store(database.as_deref().unwrap()).await).await,
                }
            });
            runs.push(rt.block_on(measure(target, workers, seconds)));
        }
    }
    println!(
        "authorization_store: {workers} workers, {seconds}s x{rounds} rounds per store, loopback HTTP"
    );
    for (name, runs) in &results {
        for (kind, pick) in [("code flows", 0usize), ("refreshes ", 1usize)] {
            let line: Vec<String> = runs
                .iter()
                .map(|pair| {
                    let run = if pick == 0 { &pair.0 } else { &pair.1 };
                    format!(
                        "{:>7.0}/s p50 {:>6.2} ms p99 {:>6.2} ms",
                        run.per_second,
                        run.p50.as_secs_f64() * 1e3,
                        run.p99.as_secs_f64() * 1e3
                    )
                })
                .collect();
            println!("  {name:<8} {kind}: {}", line.join(" | "));
        }
    }
}

#[cfg(feature = "postgres")]
async fn postgres_store(url: &str) -> impl AuthorizationStore {
    let pool = tower_mcp_oauth::postgres::PostgresPool::builder(url)
        .max_size(32)
        .connect()
        .await
        .unwrap();
    tower_mcp_oauth::authorization_server::PostgresAuthorizationStore::new(pool)
        .await
        .unwrap()
}

#[cfg(not(feature = "postgres"))]
async fn postgres_store(_: &str) -> MemoryAuthorizationStore {
    panic!("DATABASE_URL is set but the bench was built without the postgres feature")
}
