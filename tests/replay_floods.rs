//! Floods at the replay caches at their default sizes (100,000 DPoP proofs, 100,000 client
//! assertions): one client or token sends proofs dated as far ahead as allowed, more than the
//! cache holds, while an honest client keeps working. The figures come from the ignored run:
//! `cargo test --release --all-features --test replay_floods -- --ignored --nocapture`.
//! The small caches of the same floods run by default in `server_dpop`,
//! `authorization_server_token` and `authorization_server_assertions`.
#![cfg(all(feature = "authorization-server", feature = "jwt", feature = "axum"))]

mod support;

use std::time::Instant;

use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{json, Map};
use support::auth_server::{code_grant, Server, REDIRECT};
use support::{hyper_client, now_secs, resident_kib, send_with, serve, HyperClient};
use tower_mcp_oauth::dpop::{access_token_hash, DpopAlgorithm, DpopKey};
use tower_mcp_oauth::server::{AuthData, RequireBearerLayer, StaticVerifier};

const RESOURCE: &str = "https://mcp.example.test/mcp";
/// More than the default cache holds.
const FLOOD: usize = 120_000;
const CHECK_EVERY: usize = 10_000;

fn bound_to(jkt: &str) -> AuthData {
    let mut claims = Map::new();
    claims.insert("cnf".into(), json!({ "jkt": jkt }));
    AuthData {
        subject: Some("user".into()),
        audience: vec![RESOURCE.into()],
        expires_at: Some(now_secs() + 3_600),
        claims: claims.into(),
        ..Default::default()
    }
}

fn resource_request(url: &str, token: &str, proof: String) -> Request<Full<Bytes>> {
    Request::post(url)
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
        .body(Full::default())
        .unwrap()
}

fn report(what: &str, started: Instant, rss_before: Option<u64>) {
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{what}: {FLOOD} flood requests in {seconds:.1} s ({:.0}/s); resident {} -> {} KiB",
        FLOOD as f64 / seconds,
        rss_before.unwrap_or(0),
        resident_kib().unwrap_or(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a flood at the default sizes: run in release, see the module docs"]
async fn a_token_flooding_the_resource_servers_replay_cache_locks_out_no_one() {
    let honest = DpopKey::generate(DpopAlgorithm::ES256).unwrap();
    let flooder = DpopKey::generate(DpopAlgorithm::ES256).unwrap();
    let verifier = StaticVerifier::new()
        .token("honest", bound_to(honest.thumbprint()))
        .token("flooder", bound_to(flooder.thumbprint()));
    // The default policy: DPoP taken, the default replay cache.
    let layer = RequireBearerLayer::new(verifier).resource(RESOURCE);
    let app = Router::new()
        .route("/mcp", post(|| async { "ok" }))
        .layer(layer);
    let url = format!("{}/mcp", serve(app).await);
    let client = hyper_client();
    let honest_call = |client: HyperClient| {
        let (url, proof) = (url.clone(), honest_proof(&honest));
        async move { send_with(&client, resource_request(&url, "honest", proof)).await }
    };
    assert_eq!(honest_call(client.clone()).await.status, StatusCode::OK);

    let (started, rss) = (Instant::now(), resident_kib());
    for round in 0..FLOOD / CHECK_EVERY {
        futures_util::stream::iter(0..CHECK_EVERY)
            .for_each_concurrent(32, |n| {
                let (client, url, flooder) = (client.clone(), url.clone(), &flooder);
                async move {
                    let claims = json!({"jti": format!("{round}-{n}"), "htm": "POST",
                        "htu": RESOURCE, "iat": now_secs() + 59,
                        "ath": access_token_hash("flooder")});
                    let proof = flooder.sign_claims(&claims).unwrap();
                    let answer = send_with(&client, resource_request(&url, "flooder", proof)).await;
                    assert!(!answer.status.is_server_error(), "{}", answer.status);
                }
            })
            .await;
        let answer = honest_call(client.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "after round {round}: {:?}",
            answer.headers
        );
    }
    report("resource server, one token", started, rss);
}

fn honest_proof(key: &DpopKey) -> String {
    key.proof("POST", RESOURCE, Some(&access_token_hash("honest")), None)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a flood at the default sizes: run in release, see the module docs"]
async fn a_client_flooding_the_token_endpoint_locks_out_no_one() {
    // The default configuration: DPoP offered, the default replay cache.
    let server = Server::start(|config| config).await;
    let flooder = server.public_client().await;
    let honest = server.public_client().await;
    let flooder_key = DpopKey::generate(DpopAlgorithm::ES256).unwrap();
    let honest_key = DpopKey::generate(DpopAlgorithm::ES256).unwrap();
    let token_endpoint = format!("{}/token", server.base);
    let client = hyper_client();
    let verifier = "v".repeat(43);

    let (started, rss) = (Instant::now(), resident_kib());
    for round in 0..FLOOD / CHECK_EVERY {
        futures_util::stream::iter(0..CHECK_EVERY)
            .for_each_concurrent(32, |n| {
                let (client, server, key) = (client.clone(), &server, &flooder_key);
                let (flooder, verifier, token_endpoint) = (&flooder, &verifier, &token_endpoint);
                async move {
                    let claims = json!({"jti": format!("{round}-{n}"), "htm": "POST",
                        "htu": token_endpoint, "iat": now_secs() + 59});
                    let rest = [("redirect_uri", REDIRECT), ("client_id", flooder.as_str())];
                    let pairs = code_grant("made-up", verifier, &rest);
                    let mut request = server.form_request("/token", &pairs, None);
                    let proof = key.sign_claims(&claims).unwrap();
                    request.headers_mut().insert("dpop", proof.parse().unwrap());
                    let answer = send_with(&client, request).await;
                    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
                }
            })
            .await;
        let (code, code_verifier) = server.code(&honest, "mcp:tools").await;
        let rest = [
            ("redirect_uri", REDIRECT),
            ("client_id", honest.as_str()),
            ("resource", server.resource.as_str()),
        ];
        let mut request =
            server.form_request("/token", &code_grant(&code, &code_verifier, &rest), None);
        let proof = honest_key
            .proof("POST", &token_endpoint, None, None)
            .unwrap();
        request.headers_mut().insert("dpop", proof.parse().unwrap());
        let answer = send_with(&client, request).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "after round {round}: {}",
            answer.text()
        );
    }
    report("authorization server, one client", started, rss);
}
