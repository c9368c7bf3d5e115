//! Throughput under load, side by side in one run: the same loopback axum server behind
//! `RequireBearer` + `JwtVerifier` (cached tokens), called with a Bearer token and with a
//! DPoP-bound token and a fresh proof per request, measured by wrk (`apt-get install wrk`).
//! A third side is the same server without the token cache, called with a Bearer token: one
//! signature check per request, as DPoP's proof needs.
//!
//! Every DPoP request carries a proof never used before (the server would refuse a replay), so
//! the proofs are made before each run and wrk sends them in order (a Lua script); the
//! server's cost is what is measured: the proof's signature check, its claims and the replay
//! cache.
//!
//! `cargo bench --bench dpop_load` (`DPOP_LOAD_SECONDS`, default 8, per run; `DPOP_LOAD_ROUNDS`,
//! default 3, alternating runs of each side). With `taskset` present, wrk runs pinned to CPU 1.

#[path = "../examples/support/jwt_issuer.rs"]
mod jwt_issuer;
#[path = "support/wrk.rs"]
mod wrk;

use std::io::Write;

use axum::routing::get;
use axum::Router;
use jsonwebtoken::Algorithm;
use serde_json::json;
use tower_mcp_oauth::dpop::{access_token_hash, DpopAlgorithm, DpopKey, MemoryReplayCache};
use tower_mcp_oauth::server::{DpopPolicy, JwtVerifier, RequireBearerLayer};

const RESOURCE: &str = "https://mcp.example.test/mcp";
/// More proofs than the fastest run can send, so none is sent twice.
const PROOFS_PER_SECOND: u64 = 40_000;

const SCRIPT: &str = r#"
local proofs = {}
local next_proof = 0
local token = ""
init = function(args)
  token = args[2]
  for line in io.lines(args[1]) do proofs[#proofs + 1] = line end
end
request = function()
  next_proof = next_proof + 1
  return wrk.format("GET", nil, { ["Authorization"] = "DPoP " .. token, ["DPoP"] = proofs[next_proof] })
end
"#;

fn main() {
    if !wrk::installed() {
        eprintln!("dpop_load: wrk is not installed (apt-get install wrk); skipping");
        return;
    }
    let seconds = wrk::setting("DPOP_LOAD_SECONDS", 8);
    let rounds = wrk::setting("DPOP_LOAD_ROUNDS", 3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let key = DpopKey::generate(DpopAlgorithm::ES256).unwrap();
    let (url, uncached_url, bearer_token, bound_token) = rt.block_on(async {
        let issuer = jwt_issuer::Issuer::start().await;
        let verifier = JwtVerifier::builder(&issuer.base, RESOURCE)
            .discover()
            .await
            .unwrap();
        let policy = DpopPolicy::accepted().replay_cache(MemoryReplayCache::new(2_000_000));
        let layer = RequireBearerLayer::new(verifier)
            .resource(RESOURCE)
            .required_scopes(["mcp"])
            .dpop(policy);
        let app = |layer| {
            Router::new()
                .route(
                    "/mcp",
                    get(|| async { r#"{"jsonrpc":"2.0","id":1,"result":{}}"# }),
                )
                .layer(layer)
        };
        let uncached_url = wrk::serve(app(layer.clone().without_cache())).await;
        let url = wrk::serve(app(layer)).await;
        let claims = issuer.claims(RESOURCE);
        let bearer = jwt_issuer::sign(&claims, Algorithm::ES256, Some("ec-1"));
        let mut bound_claims = claims.clone();
        bound_claims["cnf"] = json!({ "jkt": key.thumbprint() });
        let bound = jwt_issuer::sign(&bound_claims, Algorithm::ES256, Some("ec-1"));
        std::mem::forget(issuer);
        (url, uncached_url, bearer, bound)
    });
    let ath = access_token_hash(&bound_token);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("dpop.lua");
    std::fs::write(&script, SCRIPT).unwrap();
    let proofs_file = dir.path().join("proofs.txt");
    let bearer_header = format!("Authorization: Bearer {bearer_token}");

    let mut bearer = Vec::new();
    let mut uncached = Vec::new();
    let mut dpop = Vec::new();
    for _ in 0..rounds {
        uncached.push(wrk::requests_per_second(
            &uncached_url,
            seconds,
            &["-H", &bearer_header],
            &[],
        ));
        bearer.push(wrk::requests_per_second(
            &url,
            seconds,
            &["-H", &bearer_header],
            &[],
        ));
        // Fresh proofs for this run, made before it starts.
        let mut file = std::io::BufWriter::new(std::fs::File::create(&proofs_file).unwrap());
        for _ in 0..PROOFS_PER_SECOND * seconds {
            let proof = key.proof("GET", RESOURCE, Some(&ath), None).unwrap();
            writeln!(file, "{proof}").unwrap();
        }
        file.flush().unwrap();
        drop(file);
        let script_arg = script.to_str().unwrap();
        let proofs_arg = proofs_file.to_str().unwrap();
        dpop.push(wrk::requests_per_second(
            &url,
            seconds,
            &["-s", script_arg],
            &["--", proofs_arg, &bound_token],
        ));
    }
    let (a, u, b) = (wrk::mean(&bearer), wrk::mean(&uncached), wrk::mean(&dpop));
    println!("dpop_load: {seconds}s x{rounds} rounds, wrk -t1 -c32, GET /mcp on 127.0.0.1");
    println!("  Bearer token (cached JWT):                 {a:>10.0} req/s  {bearer:?}");
    println!("  Bearer token (JWT verified every request): {u:>10.0} req/s  {uncached:?}");
    println!("  DPoP token (cached JWT) + fresh proof:     {b:>10.0} req/s  {dpop:?}");
    println!(
        "  DPoP at {:.1}% of cached Bearer (means); paired median {:.1}% over {} rounds",
        100.0 * b / a,
        100.0 * wrk::paired_median(&dpop, &bearer),
        dpop.len()
    );
    println!(
        "  DPoP at {:.1}% of uncached Bearer (means); paired median {:.1}%",
        100.0 * b / u,
        100.0 * wrk::paired_median(&dpop, &uncached),
    );
}
