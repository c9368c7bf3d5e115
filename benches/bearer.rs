//! `RequireBearer` costs, each beside its baseline in the same run:
//!
//! - `verify_uncached`: one full JWT verification (ES256 and RS256) with the keys in memory,
//!   beside the same verification through jsonwebtoken's pure-Rust backend (what the verifier
//!   used before ring);
//! - `sign_es256`: signing an ES256 JWT on ring beside jsonwebtoken's pure-Rust backend;
//! - `layer`: one call through `RequireBearer` with a cached token to a service that answers at
//!   once, against the same service without the layer.
//!
//! The loopback throughput comparison under load is `benches/bearer_load.rs` (wrk).

#[path = "../examples/support/jwt_issuer.rs"]
mod jwt_issuer;

use std::convert::Infallible;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use http_body_util::Full;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use tower::{ServiceBuilder, ServiceExt};
use tower_mcp_oauth::server::{JwtVerifier, RequireBearerLayer, TokenVerifier};

const RESOURCE: &str = "https://mcp.example.test/mcp";

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (issuer, verifier) = rt.block_on(async {
        let issuer = jwt_issuer::Issuer::start().await;
        let verifier = JwtVerifier::builder(&issuer.base, RESOURCE)
            .discover()
            .await
            .unwrap();
        (issuer, verifier)
    });
    let claims = issuer.claims(RESOURCE);
    let es256 = jwt_issuer::sign(&claims, Algorithm::ES256, Some("ec-1"));
    let rs256 = jwt_issuer::sign(&claims, Algorithm::RS256, Some("rsa-1"));
    // Loads the JWKS, so the measured calls are pure verification.
    rt.block_on(async {
        verifier.verify(&es256).await.unwrap();
        verifier.verify(&rs256).await.unwrap();
    });

    let mut group = c.benchmark_group("verify_uncached");
    group.bench_function("es256", |b| {
        b.to_async(&rt).iter(|| verifier.verify(&es256))
    });
    group.bench_function("rs256", |b| {
        b.to_async(&rt).iter(|| verifier.verify(&rs256))
    });
    // The baseline: the same tokens through jsonwebtoken's pure-Rust backend (`rust_crypto`),
    // which the verifier used before it moved to ring.
    let public = |pem: &[u8], alg: Algorithm| {
        let private = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem).unwrap(),
            _ => EncodingKey::from_rsa_pem(pem).unwrap(),
        };
        DecodingKey::from_jwk(&Jwk::from_encoding_key(&private, alg).unwrap()).unwrap()
    };
    let validation = |alg: Algorithm| {
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&issuer.base]);
        validation.set_audience(&[RESOURCE]);
        validation
    };
    let (ec_key, ec_validation) = (
        public(jwt_issuer::EC_PRIVATE, Algorithm::ES256),
        validation(Algorithm::ES256),
    );
    let (rsa_key, rsa_validation) = (
        public(jwt_issuer::RSA_PRIVATE, Algorithm::RS256),
        validation(Algorithm::RS256),
    );
    group.bench_function("es256_jsonwebtoken_rust_crypto", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<serde_json::Value>(&es256, &ec_key, &ec_validation).unwrap()
        })
    });
    group.bench_function("rs256_jsonwebtoken_rust_crypto", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<serde_json::Value>(&rs256, &rsa_key, &rsa_validation).unwrap()
        })
    });
    group.finish();

    // Signing ES256, as the embedded authorization server signs its access tokens: on ring (the
    // crate's one backend; DpopKey signs with the same key type and call) against jsonwebtoken's
    // pure-Rust backend, which signed them before.
    let mut group = c.benchmark_group("sign_es256");
    let ring_key =
        tower_mcp_oauth::dpop::DpopKey::generate(tower_mcp_oauth::dpop::DpopAlgorithm::ES256)
            .unwrap();
    let claims_json = serde_json::to_value(&claims).unwrap();
    group.bench_function("ring", |b| {
        b.iter(|| ring_key.sign_claims(&claims_json).unwrap())
    });
    let ec_private = EncodingKey::from_ec_pem(jwt_issuer::EC_PRIVATE).unwrap();
    let header = jsonwebtoken::Header::new(Algorithm::ES256);
    group.bench_function("jsonwebtoken_rust_crypto", |b| {
        b.iter(|| jsonwebtoken::encode(&header, &claims_json, &ec_private).unwrap())
    });
    group.finish();

    let answer = tower::service_fn(|_request: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
    });
    let protected = ServiceBuilder::new()
        .layer(
            RequireBearerLayer::new(verifier.clone())
                .resource(RESOURCE)
                .required_scopes(["mcp"]),
        )
        .service(answer);
    // The same without DPoP: what taking DPoP by default costs a Bearer request.
    let bearer_only = ServiceBuilder::new()
        .layer(
            RequireBearerLayer::new(verifier.clone())
                .resource(RESOURCE)
                .required_scopes(["mcp"])
                .without_dpop(),
        )
        .service(answer);
    let authorization = format!("Bearer {es256}");
    let request = || {
        Request::get("http://127.0.0.1/mcp")
            .header("authorization", authorization.as_str())
            .body(Full::default())
            .unwrap()
    };
    let mut group = c.benchmark_group("layer");
    group.bench_function("service_bare", |b| {
        b.to_async(&rt).iter(|| answer.oneshot(request()))
    });
    group.bench_function("service_with_require_bearer_cached", |b| {
        b.to_async(&rt)
            .iter(|| protected.clone().oneshot(request()))
    });
    group.bench_function("service_with_require_bearer_cached_without_dpop", |b| {
        b.to_async(&rt)
            .iter(|| bearer_only.clone().oneshot(request()))
    });
    group.finish();
}

criterion_group!(bearer, benches);
criterion_main!(bearer);
