//! `RequireBearerLayer` with a `DpopPolicy` in front of an axum app on loopback: every way a
//! DPoP request can be wrong is answered with a 401 and the right challenge.

mod support;

use std::time::Duration;

use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{json, Map};
use support::{now_secs, send, serve, Answer};
use tower_mcp_oauth::dpop::{
    access_token_hash, DpopAlgorithm, DpopKey, DpopNonces, MemoryReplayCache,
};
use tower_mcp_oauth::metadata::ProtectedResourceMetadata;
use tower_mcp_oauth::server::{AuthData, AuthInfo, DpopPolicy, RequireBearerLayer, StaticVerifier};

/// The public URL the resource is configured with: proofs name it, not the loopback address.
const RESOURCE: &str = "https://mcp.example.test/mcp";

struct Fixture {
    url: String,
    key: DpopKey,
}

fn bound_to(jkt: Option<&str>) -> AuthData {
    let mut claims = Map::new();
    if let Some(jkt) = jkt {
        claims.insert("cnf".into(), json!({ "jkt": jkt }));
    }
    AuthData {
        subject: Some("user-1".into()),
        scopes: vec!["mcp".into()],
        audience: vec![RESOURCE.into()],
        expires_at: Some(now_secs() + 600),
        claims: claims.into(),
        ..Default::default()
    }
}

/// `bound` is bound to the fixture's key, `plain` to no key, `elsewhere` to another key.
async fn protected(policy: DpopPolicy) -> Fixture {
    protected_by(|layer| layer.dpop(policy)).await
}

async fn protected_by(
    configure: impl FnOnce(RequireBearerLayer<StaticVerifier>) -> RequireBearerLayer<StaticVerifier>,
) -> Fixture {
    let key = DpopKey::generate(DpopAlgorithm::ES256).unwrap();
    let other = DpopKey::generate(DpopAlgorithm::ES256).unwrap();
    let verifier = StaticVerifier::new()
        .token("bound", bound_to(Some(key.thumbprint())))
        .token("elsewhere", bound_to(Some(other.thumbprint())))
        .token("plain", bound_to(None));
    let layer = configure(
        RequireBearerLayer::new(verifier)
            .resource(RESOURCE)
            .resource_metadata("https://mcp.example.test/.well-known/oauth-protected-resource/mcp"),
    );
    let app = Router::new()
        .route(
            "/mcp",
            post(|info: AuthInfo| async move { Json(json!({ "subject": info.subject })) }),
        )
        .layer(layer);
    Fixture {
        url: format!("{}/mcp", serve(app).await),
        key,
    }
}

async fn call(url: &str, authorization: &str, proofs: &[&str]) -> Answer {
    let mut request = Request::builder().method(Method::POST).uri(url);
    request = request.header("authorization", authorization);
    for proof in proofs {
        request = request.header("dpop", *proof);
    }
    send(request.body(Full::new(Bytes::from_static(b"{}"))).unwrap()).await
}

fn challenges(answer: &Answer) -> Vec<String> {
    answer
        .headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn dpop_error(answer: &Answer) -> String {
    let challenge =
        tower_mcp_oauth::challenge::BearerChallenge::from_headers_dpop_first(&answer.headers)
            .expect("a challenge");
    challenge.error.unwrap_or_default()
}

fn proof(key: &DpopKey, method: &str, url: &str, token: &str) -> String {
    key.proof(method, url, Some(&access_token_hash(token)), None)
        .unwrap()
}

#[tokio::test]
async fn a_bound_token_with_its_proof_passes_once() {
    let f = protected(DpopPolicy::accepted()).await;
    let good = proof(&f.key, "POST", RESOURCE, "bound");
    let answer = call(&f.url, "DPoP bound", &[&good]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["subject"], "user-1");

    let replayed = call(&f.url, "DPoP bound", &[&good]).await;
    assert_eq!(replayed.status, StatusCode::UNAUTHORIZED);
    assert_eq!(dpop_error(&replayed), "invalid_dpop_proof");
    assert!(challenges(&replayed)
        .iter()
        .any(|c| c.contains("was used before")));

    // A query string is not part of htu.
    let with_query = proof(&f.key, "POST", &format!("{RESOURCE}?x=1"), "bound");
    let answer = call(&format!("{}?x=1", f.url), "DPoP bound", &[&with_query]).await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn the_layer_takes_dpop_by_default_with_every_check() {
    let f = protected_by(|layer| layer).await;
    let good = proof(&f.key, "POST", RESOURCE, "bound");
    assert_eq!(
        call(&f.url, "DPoP bound", &[&good]).await.status,
        StatusCode::OK
    );
    // The replay cache is on.
    let replayed = call(&f.url, "DPoP bound", &[&good]).await;
    assert_eq!(dpop_error(&replayed), "invalid_dpop_proof");
    // The thumbprint is checked: a token bound to another key is refused.
    let stolen = proof(&f.key, "POST", RESOURCE, "elsewhere");
    assert_eq!(
        dpop_error(&call(&f.url, "DPoP elsewhere", &[&stolen]).await),
        "invalid_token"
    );
    // Bearer still works, and a request without credentials is offered both schemes.
    assert_eq!(
        call(&f.url, "Bearer plain", &[]).await.status,
        StatusCode::OK
    );
    let bare = call(&f.url, "Basic eA==", &[]).await;
    let offered = challenges(&bare);
    assert!(
        offered.iter().any(|c| c.starts_with("Bearer")),
        "{offered:?}"
    );
    assert!(
        offered.iter().any(|c| c.starts_with("DPoP algs=")),
        "{offered:?}"
    );
}

#[tokio::test]
async fn without_a_resource_the_default_layer_takes_bearer_only() {
    // Proofs would be checked against a URL made from Host, wrong behind TLS: no DPoP offered.
    let verifier = StaticVerifier::new().token("plain", bound_to(None));
    let app = Router::new()
        .route("/mcp", post(|| async { "ok" }))
        .layer(RequireBearerLayer::new(verifier));
    let url = format!("{}/mcp", serve(app).await);
    let answer = call(&url, "Basic eA==", &[]).await;
    assert_eq!(challenges(&answer), vec!["Bearer".to_owned()]);
    assert_eq!(call(&url, "Bearer plain", &[]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn every_mismatch_between_proof_request_and_token_is_refused() {
    let f = protected(DpopPolicy::accepted()).await;
    let other_key = DpopKey::generate(DpopAlgorithm::ES256).unwrap();
    let now = now_secs();
    let claims = |iat: u64| json!({"jti": format!("j-{iat}"), "htm": "POST", "htu": RESOURCE, "iat": iat, "ath": access_token_hash("bound")});
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "another method",
            proof(&f.key, "GET", RESOURCE, "bound"),
            "DPoP bound",
            "invalid_dpop_proof",
        ),
        (
            "another URL",
            proof(&f.key, "POST", "https://mcp.example.test/other", "bound"),
            "DPoP bound",
            "invalid_dpop_proof",
        ),
        (
            "the loopback URL, not the public one",
            proof(&f.key, "POST", &f.url, "bound"),
            "DPoP bound",
            "invalid_dpop_proof",
        ),
        (
            "another token",
            proof(&f.key, "POST", RESOURCE, "plain"),
            "DPoP bound",
            "invalid_dpop_proof",
        ),
        (
            "another key",
            proof(&other_key, "POST", RESOURCE, "bound"),
            "DPoP bound",
            "invalid_token",
        ),
        (
            "a token bound to another key",
            proof(&f.key, "POST", RESOURCE, "elsewhere"),
            "DPoP elsewhere",
            "invalid_token",
        ),
        (
            "an unbound token",
            proof(&f.key, "POST", RESOURCE, "plain"),
            "DPoP plain",
            "invalid_token",
        ),
        (
            "an expired iat",
            f.key.sign_claims(&claims(now - 301)).unwrap(),
            "DPoP bound",
            "invalid_dpop_proof",
        ),
        (
            "a future iat",
            f.key.sign_claims(&claims(now + 120)).unwrap(),
            "DPoP bound",
            "invalid_dpop_proof",
        ),
        (
            "not a JWS",
            "not-a-proof".into(),
            "DPoP bound",
            "invalid_dpop_proof",
        ),
    ];
    for (what, proof, authorization, error) in cases {
        let answer = call(&f.url, authorization, &[&proof]).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(
            dpop_error(&answer),
            error,
            "{what}: {:?}",
            challenges(&answer)
        );
    }
    let none = call(&f.url, "DPoP bound", &[]).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(dpop_error(&none), "invalid_dpop_proof");
    let good = proof(&f.key, "POST", RESOURCE, "bound");
    let two = call(&f.url, "DPoP bound", &[&good, &good]).await;
    assert_eq!(dpop_error(&two), "invalid_dpop_proof", "two DPoP headers");
}

#[tokio::test]
async fn a_bound_token_presented_as_bearer_is_refused_even_once_cached() {
    let f = protected(DpopPolicy::accepted()).await;
    let good = proof(&f.key, "POST", RESOURCE, "bound");
    assert_eq!(
        call(&f.url, "DPoP bound", &[&good]).await.status,
        StatusCode::OK
    );
    let stolen = call(&f.url, "Bearer bound", &[]).await;
    assert_eq!(stolen.status, StatusCode::UNAUTHORIZED);
    let bearer =
        tower_mcp_oauth::challenge::BearerChallenge::from_headers(&stolen.headers).unwrap();
    assert_eq!(bearer.error.as_deref(), Some("invalid_token"));
    // An unbound token still works as Bearer when DPoP is only accepted.
    assert_eq!(
        call(&f.url, "Bearer plain", &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn bound_tokens_are_refused_as_bearer_without_dpop_too() {
    let verifier = StaticVerifier::new().token("bound", bound_to(Some("some-thumbprint")));
    let app = Router::new().route("/mcp", post(|| async { "ok" })).layer(
        RequireBearerLayer::new(verifier)
            .resource(RESOURCE)
            .without_dpop(),
    );
    let url = format!("{}/mcp", serve(app).await);
    assert_eq!(
        call(&url, "Bearer bound", &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
    let answer = call(&url, "DPoP bound", &["x"]).await;
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "no DPoP once it is turned off"
    );
    assert_eq!(challenges(&answer), vec!["Bearer".to_owned()]);
}

#[tokio::test]
async fn the_challenges_offer_both_schemes_or_dpop_alone() {
    let f =
        protected(DpopPolicy::accepted().algorithms([DpopAlgorithm::ES256, DpopAlgorithm::EdDSA]))
            .await;
    let answer = call(&f.url, "Basic eA==", &[]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let found = challenges(&answer);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].starts_with("Bearer resource_metadata="));
    assert!(found[1].starts_with(r#"DPoP algs="ES256 EdDSA", resource_metadata="#));

    let f = protected(DpopPolicy::required()).await;
    let answer = call(&f.url, "Bearer plain", &[]).await;
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "Bearer is not taken"
    );
    let found = challenges(&answer);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("DPoP algs="));

    let layer = RequireBearerLayer::new(StaticVerifier::new()).dpop(DpopPolicy::required());
    let mut metadata = ProtectedResourceMetadata {
        resource: RESOURCE.into(),
        ..Default::default()
    };
    layer.describe(&mut metadata);
    assert!(metadata.dpop_bound_access_tokens_required);
    let document = serde_json::to_value(&metadata).unwrap();
    assert_eq!(document["dpop_signing_alg_values_supported"][0], "ES256");
}

#[tokio::test]
async fn a_server_nonce_is_asked_for_then_accepted() {
    let f =
        protected(DpopPolicy::accepted().nonces(DpopNonces::new(Duration::from_secs(60)))).await;
    let first = call(
        &f.url,
        "DPoP bound",
        &[&proof(&f.key, "POST", RESOURCE, "bound")],
    )
    .await;
    assert_eq!(first.status, StatusCode::UNAUTHORIZED);
    assert_eq!(dpop_error(&first), "use_dpop_nonce");
    let nonce = first
        .headers
        .get("dpop-nonce")
        .expect("a nonce")
        .to_str()
        .unwrap()
        .to_owned();
    let with_nonce = f
        .key
        .proof(
            "POST",
            RESOURCE,
            Some(&access_token_hash("bound")),
            Some(&nonce),
        )
        .unwrap();
    let answer = call(&f.url, "DPoP bound", &[&with_nonce]).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", challenges(&answer));
    let forged = f
        .key
        .proof(
            "POST",
            RESOURCE,
            Some(&access_token_hash("bound")),
            Some("made-up"),
        )
        .unwrap();
    assert_eq!(
        dpop_error(&call(&f.url, "DPoP bound", &[&forged]).await),
        "use_dpop_nonce"
    );
}

#[tokio::test]
async fn a_small_replay_cache_stays_bounded_and_still_refuses_replays() {
    let f = protected(DpopPolicy::accepted().replay_cache(MemoryReplayCache::new(4))).await;
    let mut accepted = Vec::new();
    for _ in 0..4 {
        let p = proof(&f.key, "POST", RESOURCE, "bound");
        assert_eq!(
            call(&f.url, "DPoP bound", &[&p]).await.status,
            StatusCode::OK
        );
        accepted.push(p);
    }
    // Full of live proofs: every one of them, and anything as old, is refused from now on.
    for p in &accepted {
        assert_eq!(
            dpop_error(&call(&f.url, "DPoP bound", &[p]).await),
            "invalid_dpop_proof"
        );
    }
    let later = f
        .key
        .sign_claims(&json!({"jti": "later", "htm": "POST", "htu": RESOURCE, "iat": now_secs() + 30, "ath": access_token_hash("bound")}))
        .unwrap();
    assert_eq!(
        call(&f.url, "DPoP bound", &[&later]).await.status,
        StatusCode::OK,
        "a newer proof still passes"
    );
    assert_eq!(
        dpop_error(&call(&f.url, "DPoP bound", &[&later]).await),
        "invalid_dpop_proof"
    );
    // One of the first four was dropped to make room; the window closed behind it.
    for p in &accepted {
        assert_eq!(
            dpop_error(&call(&f.url, "DPoP bound", &[p]).await),
            "invalid_dpop_proof"
        );
    }
}

#[tokio::test]
async fn one_token_flooding_the_replay_cache_locks_out_no_one_else() {
    let honest = DpopKey::generate(DpopAlgorithm::ES256).unwrap();
    let flooder = DpopKey::generate(DpopAlgorithm::ES256).unwrap();
    let verifier = StaticVerifier::new()
        .token("honest", bound_to(Some(honest.thumbprint())))
        .token("flooder", bound_to(Some(flooder.thumbprint())));
    let layer = RequireBearerLayer::new(verifier)
        .resource(RESOURCE)
        .dpop(DpopPolicy::accepted().replay_cache(MemoryReplayCache::new(40)));
    let app = Router::new()
        .route("/mcp", post(|| async { "ok" }))
        .layer(layer);
    let url = format!("{}/mcp", serve(app).await);

    let before = proof(&honest, "POST", RESOURCE, "honest");
    assert_eq!(
        call(&url, "DPoP honest", &[&before]).await.status,
        StatusCode::OK
    );
    // Four times the cache, each proof dated as far ahead as the layer allows.
    for n in 0..160 {
        let claims = json!({"jti": format!("flood-{n}"), "htm": "POST", "htu": RESOURCE,
            "iat": now_secs() + 59, "ath": access_token_hash("flooder")});
        let flood = flooder.sign_claims(&claims).unwrap();
        let answer = call(&url, "DPoP flooder", &[&flood]).await;
        assert_ne!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    let after = proof(&honest, "POST", RESOURCE, "honest");
    let answer = call(&url, "DPoP honest", &[&after]).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", challenges(&answer));
    let replayed = call(&url, "DPoP honest", &[&before]).await;
    assert_eq!(
        dpop_error(&replayed),
        "invalid_dpop_proof",
        "still remembered"
    );
}

#[tokio::test]
async fn without_a_resource_a_proof_naming_the_hosts_url_is_not_trusted() {
    let key = DpopKey::generate(DpopAlgorithm::ES256).unwrap();
    let verifier = StaticVerifier::new().token("bound", bound_to(Some(key.thumbprint())));
    let layer = RequireBearerLayer::new(verifier).dpop(DpopPolicy::accepted());
    let app = Router::new()
        .route("/mcp", post(|| async { "ok" }))
        .layer(layer);
    let url = format!("{}/mcp", serve(app).await);
    // A proof made for another server, replayed here naming that server as Host.
    let proof = proof(&key, "POST", "http://other.example/mcp", "bound");
    let request = Request::post(&url)
        .header("host", "other.example")
        .header("authorization", "DPoP bound")
        .header("dpop", proof)
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let answer = send(request).await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.text()
    );
}
