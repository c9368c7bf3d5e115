//! DPoP costs per request, each beside its baseline in the same run:
//!
//! - `proof`: creating a proof at the client (ES256, `ring`) and checking it at the server;
//! - `require_bearer`: one call through `RequireBearer` with a DPoP-bound token and a fresh
//!   proof, against the same call with a Bearer token (both tokens cached, so the difference is
//!   the proof: its signature check and the replay cache).
//!
//! The loopback throughput comparison under load is `benches/dpop_load.rs`.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{Request, Response};
use http_body_util::Full;
use serde_json::json;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_mcp_oauth::dpop::{
    access_token_hash, verify_proof, DpopAlgorithm, DpopKey, MemoryReplayCache, ProofCheck,
};
use tower_mcp_oauth::server::{AuthData, DpopPolicy, RequireBearerLayer, StaticVerifier};

const RESOURCE: &str = "https://mcp.example.test/mcp";

fn benches(c: &mut Criterion) {
    let key = DpopKey::generate(DpopAlgorithm::ES256).unwrap();
    let ath = access_token_hash("bound-token");

    let mut group = c.benchmark_group("proof");
    group.bench_function("create_es256", |b| {
        b.iter(|| key.proof("POST", RESOURCE, Some(&ath), None).unwrap())
    });
    let proof = key.proof("POST", RESOURCE, Some(&ath), None).unwrap();
    let check = ProofCheck::new("POST", RESOURCE).access_token("bound-token");
    group.bench_function("verify_es256", |b| {
        b.iter(|| verify_proof(&proof, &check).unwrap())
    });
    group.finish();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let info = |jkt: Option<&str>| {
        let mut claims = serde_json::Map::new();
        if let Some(jkt) = jkt {
            claims.insert("cnf".into(), json!({ "jkt": jkt }));
        }
        AuthData {
            scopes: vec!["mcp".into()],
            audience: vec![RESOURCE.into()],
            claims: claims.into(),
            ..Default::default()
        }
    };
    let verifier = StaticVerifier::new()
        .token("bound-token", info(Some(key.thumbprint())))
        .token("bearer-token", info(None));
    let answer = tower::service_fn(|_request: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
    });
    let protected = ServiceBuilder::new()
        .layer(
            RequireBearerLayer::new(verifier).resource(RESOURCE).dpop(
                DpopPolicy::accepted()
                    .replay_cache(MemoryReplayCache::new(1_000_000))
                    .window(Duration::from_secs(300), Duration::from_secs(60)),
            ),
        )
        .service(answer);
    let request = |authorization: &str, proof: Option<String>| {
        let mut request = Request::post("/mcp")
            .header("host", "mcp.example.test")
            .header("authorization", authorization);
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        request.body(Full::<Bytes>::default()).unwrap()
    };
    let mut group = c.benchmark_group("require_bearer");
    group.bench_function("bearer_cached", |b| {
        b.to_async(&rt).iter_batched(
            || request("Bearer bearer-token", None),
            |r| {
                let mut service = protected.clone();
                async move { service.ready().await.unwrap().call(r).await.unwrap() }
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("dpop_fresh_proof", |b| {
        b.to_async(&rt).iter_batched(
            // The proof is made outside the measurement: this is the server's cost alone.
            || {
                request(
                    "DPoP bound-token",
                    Some(key.proof("POST", RESOURCE, Some(&ath), None).unwrap()),
                )
            },
            |r| {
                let mut service = protected.clone();
                async move {
                    let response = service.ready().await.unwrap().call(r).await.unwrap();
                    assert!(response.status().is_success());
                    response
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(dpop, benches);
criterion_main!(dpop);
