//! `RequireBearerLayer` in front of an axum app on loopback, with every kind of bad token, and
//! the JWKS, introspection and metadata endpoints as real servers.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use support::jwt_issuer::{self, now, sign, Issuer};
use support::serve;
use tower_mcp_oauth::http::HttpClient;
use tower_mcp_oauth::metadata::ProtectedResourceMetadata;
use tower_mcp_oauth::server::{
    AuthData, AuthInfo, IntrospectionVerifier, JwtVerifier, McpScopes, RequireBearerLayer,
    RequireMcpScopesLayer, ResourceMetadataService, StaticVerifier, TokenVerifier, VerifyError,
};

fn b64(value: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

/// The protected MCP-ish app: `/mcp` answers with the caller's AuthInfo.
async fn protected_app<V: TokenVerifier>(verifier: V, resource: &str) -> String {
    let layer = RequireBearerLayer::new(verifier)
        .resource(resource)
        .resource_metadata(format!("{resource}/.well-known/oauth-protected-resource"))
        .required_scopes(["mcp"]);
    let tool_scopes =
        RequireMcpScopesLayer::new(McpScopes::new().tool("delete_file", ["files:write"]));
    let app = Router::new()
        .route(
            "/mcp",
            post(|info: AuthInfo, body: Bytes| async move {
                Json(
                    json!({"subject": info.subject, "scopes": info.scopes, "body_len": body.len()}),
                )
            }),
        )
        .layer(tool_scopes)
        .layer(layer);
    serve(app).await
}

struct Answer {
    status: StatusCode,
    challenge: String,
    body: String,
}

async fn call(
    url: &str,
    authorization: Option<&str>,
    body: &str,
    extra: &[(&str, &str)],
) -> Answer {
    let mut request = Request::post(url).header("content-type", "application/json");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let response = HttpClient::new()
        .send(request.body(body.to_owned().into()).unwrap())
        .await
        .unwrap();
    Answer {
        status: response.status(),
        challenge: response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default(),
        body: String::from_utf8_lossy(response.body()).into_owned(),
    }
}

const LIST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;

struct Setup {
    issuer: Issuer,
    resource: String,
    mcp: String,
}

async fn setup() -> Setup {
    let issuer = Issuer::start().await;
    // The resource identifier is fixed before the app's port is known, as in a real deployment.
    let resource = "https://mcp.example.test/mcp".to_owned();
    let verifier = JwtVerifier::builder(&issuer.base, &resource)
        .discover()
        .await
        .unwrap();
    let base = protected_app(verifier, &resource).await;
    Setup {
        issuer,
        resource,
        mcp: format!("{base}/mcp"),
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn valid_rs256_and_es256_tokens_reach_the_handler_with_auth_info() {
    let s = setup().await;
    for (alg, kid) in [(Algorithm::RS256, "rsa-1"), (Algorithm::ES256, "ec-1")] {
        let token = sign(&s.issuer.claims(&s.resource), alg, Some(kid));
        let answer = call(&s.mcp, Some(&bearer(&token)), LIST, &[]).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{alg:?}: {}",
            answer.challenge
        );
        let body: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(body["subject"], "user-1");
        assert_eq!(
            body["body_len"],
            LIST.len(),
            "the body reaches the handler intact"
        );
    }
}

#[tokio::test]
async fn no_credentials_or_another_scheme_get_a_bare_challenge() {
    let s = setup().await;
    let expected = format!(
        r#"Bearer scope="mcp", resource_metadata="{}/.well-known/oauth-protected-resource""#,
        s.resource
    );
    for authorization in [None, Some("Basic dXNlcjpwYXNz")] {
        let answer = call(&s.mcp, authorization, LIST, &[]).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.challenge, expected);
    }
    // A token in the query string is not a credential.
    let token = sign(
        &s.issuer.claims(&s.resource),
        Algorithm::RS256,
        Some("rsa-1"),
    );
    let answer = call(&format!("{}?access_token={token}", s.mcp), None, LIST, &[]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(!answer.challenge.contains("error="));
}

#[tokio::test]
async fn malformed_headers_are_invalid_requests() {
    let s = setup().await;
    let huge = format!("Bearer {}", "a".repeat(20 * 1024));
    for authorization in ["Bearer", "Bearer ", "Bearer a b", huge.as_str()] {
        let answer = call(&s.mcp, Some(authorization), LIST, &[]).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{:.20}",
            authorization
        );
        assert!(
            answer
                .challenge
                .starts_with(r#"Bearer error="invalid_request""#),
            "{}",
            answer.challenge
        );
    }
}

async fn assert_invalid_token(s: &Setup, token: &str, reason: &str) {
    let answer = call(&s.mcp, Some(&bearer(token)), LIST, &[]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{reason}");
    assert!(
        answer
            .challenge
            .starts_with(r#"Bearer error="invalid_token""#),
        "{reason}: {}",
        answer.challenge
    );
    assert!(answer.challenge.contains("resource_metadata="), "{reason}");
    assert!(
        answer.challenge.contains(reason),
        "{reason}: {}",
        answer.challenge
    );
}

#[tokio::test]
async fn every_bad_token_is_refused_with_invalid_token() {
    let s = setup().await;
    let claims = s.issuer.claims(&s.resource);
    let good = sign(&claims, Algorithm::RS256, Some("rsa-1"));

    assert_invalid_token(&s, "not-a-jwt", "well-formed JWT").await;

    // A payload swapped under a valid signature.
    let mut forged_claims = claims.clone();
    forged_claims["scope"] = json!("mcp files:write admin");
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], b64(&forged_claims), parts[2]);
    assert_invalid_token(&s, &forged, "signature").await;

    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims)
    );
    assert_invalid_token(&s, &none, "well-formed JWT").await;

    // The classic key-confusion attack: HS256 with the RSA public key as the secret.
    let confused = sign(&claims, Algorithm::HS256, Some("rsa-1"));
    assert_invalid_token(&s, &confused, "not accepted").await;

    let mut expired = claims.clone();
    expired["exp"] = json!(now() - 3600);
    assert_invalid_token(
        &s,
        &sign(&expired, Algorithm::RS256, Some("rsa-1")),
        "expired",
    )
    .await;

    let mut no_exp = claims.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_invalid_token(
        &s,
        &sign(&no_exp, Algorithm::RS256, Some("rsa-1")),
        "no exp",
    )
    .await;

    let mut early = claims.clone();
    early["nbf"] = json!(now() + 3600);
    assert_invalid_token(
        &s,
        &sign(&early, Algorithm::RS256, Some("rsa-1")),
        "not valid yet",
    )
    .await;

    let mut other_issuer = claims.clone();
    other_issuer["iss"] = json!("https://evil.example");
    assert_invalid_token(
        &s,
        &sign(&other_issuer, Algorithm::RS256, Some("rsa-1")),
        "another issuer",
    )
    .await;

    let mut other_audience = claims.clone();
    other_audience["aud"] = json!("https://other.example/mcp");
    assert_invalid_token(
        &s,
        &sign(&other_audience, Algorithm::RS256, Some("rsa-1")),
        "not for this resource",
    )
    .await;

    // The EC key named for an RSA token.
    assert_invalid_token(&s, &sign(&claims, Algorithm::RS256, Some("ec-1")), "no key").await;
}

#[tokio::test]
async fn unknown_kids_refetch_the_jwks_at_a_limited_rate() {
    let s = setup().await;
    let claims = s.issuer.claims(&s.resource);
    let good = sign(&claims, Algorithm::RS256, Some("rsa-1"));
    assert_eq!(
        call(&s.mcp, Some(&bearer(&good)), LIST, &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(s.issuer.jwks_fetches.load(Ordering::SeqCst), 1);

    for kid in ["rotated-1", "rotated-2", "rotated-3"] {
        assert_invalid_token(&s, &sign(&claims, Algorithm::RS256, Some(kid)), "no key").await;
    }
    // The first unknown kid may fetch again; the next ones, within the interval, may not.
    assert_eq!(s.issuer.jwks_fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn scopes_route_and_tool_level_answer_403_with_every_required_scope() {
    let s = setup().await;
    let mut claims = s.issuer.claims(&s.resource);
    claims["scope"] = json!("other");
    let answer = call(
        &s.mcp,
        Some(&bearer(&sign(&claims, Algorithm::RS256, Some("rsa-1")))),
        LIST,
        &[],
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(answer.challenge.starts_with(r#"Bearer error="insufficient_scope", error_description="the token lacks a required scope", scope="mcp""#), "{}", answer.challenge);

    let token = sign(
        &s.issuer.claims(&s.resource),
        Algorithm::RS256,
        Some("rsa-1"),
    );
    let delete = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_file","arguments":{}}}"#;
    let answer = call(&s.mcp, Some(&bearer(&token)), delete, &[]).await;
    assert_eq!(
        answer.status,
        StatusCode::FORBIDDEN,
        "an HTTP 403, not a JSON-RPC error in a 200"
    );
    assert!(
        answer.challenge.contains(r#"scope="files:write mcp""#),
        "{}",
        answer.challenge
    );

    let echo =
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
    assert_eq!(
        call(&s.mcp, Some(&bearer(&token)), echo, &[]).await.status,
        StatusCode::OK
    );

    // Headers that disagree with the body cannot dodge a tool's scope: the token needs what
    // either names (the service refuses the mismatch itself).
    let answer = call(
        &s.mcp,
        Some(&bearer(&token)),
        delete,
        &[("mcp-method", "tools/list")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let answer = call(
        &s.mcp,
        Some(&bearer(&token)),
        delete,
        &[("mcp-method", "tools/call"), ("mcp-name", "echo")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let answer = call(
        &s.mcp,
        Some(&bearer(&token)),
        echo,
        &[("mcp-method", "tools/call"), ("mcp-name", "delete_file")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);

    let mut writer = s.issuer.claims(&s.resource);
    writer["scope"] = json!("mcp files:write");
    let writer = sign(&writer, Algorithm::ES256, Some("ec-1"));
    let answer = call(
        &s.mcp,
        Some(&bearer(&writer)),
        delete,
        &[("mcp-method", "tools/call"), ("mcp-name", "delete_file")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn an_unreachable_jwks_is_503_never_a_pass() {
    let issuer = Issuer::start().await;
    *issuer.jwks_down.lock().unwrap() = true;
    let resource = "https://mcp.example.test/mcp";
    let verifier = JwtVerifier::builder(&issuer.base, resource)
        .discover()
        .await
        .unwrap();
    let mcp = format!("{}/mcp", protected_app(verifier, resource).await);
    let token = sign(&issuer.claims(resource), Algorithm::RS256, Some("rsa-1"));
    for _ in 0..5 {
        let answer = call(&mcp, Some(&bearer(&token)), LIST, &[]).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(
        issuer.jwks_fetches.load(Ordering::SeqCst),
        1,
        "a failed fetch is not retried on every request"
    );
    // Back up: after a short backoff the keys load and the token passes.
    *issuer.jwks_down.lock().unwrap() = false;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        call(&mcp, Some(&bearer(&token)), LIST, &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn keys_stay_trusted_through_an_outage_only_up_to_their_stale_limit() {
    let issuer = Issuer::start().await;
    let resource = "https://mcp.example.test/mcp";
    let verifier = JwtVerifier::builder(&issuer.base, resource)
        .max_key_age(std::time::Duration::from_secs(1))
        .max_stale_key_age(std::time::Duration::from_secs(2))
        .discover()
        .await
        .unwrap();
    let mcp = format!("{}/mcp", protected_app(verifier, resource).await);
    // A new token each time: the layer's cache would answer for one it has seen.
    let token = |n: u32| {
        let mut claims = issuer.claims(resource);
        claims["jti"] = json!(format!("token-{n}"));
        bearer(&sign(&claims, Algorithm::RS256, Some("rsa-1")))
    };
    assert_eq!(
        call(&mcp, Some(&token(1)), LIST, &[]).await.status,
        StatusCode::OK
    );
    *issuer.jwks_down.lock().unwrap() = true;
    // Past their age, refetching fails: the keys held are still used a while...
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    assert_eq!(
        call(&mcp, Some(&token(2)), LIST, &[]).await.status,
        StatusCode::OK
    );
    // ...but not past the stale limit: then nothing passes until they are fetched again.
    tokio::time::sleep(std::time::Duration::from_millis(2_000)).await;
    let answer = call(&mcp, Some(&token(3)), LIST, &[]).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    *issuer.jwks_down.lock().unwrap() = false;
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    assert_eq!(
        call(&mcp, Some(&token(4)), LIST, &[]).await.status,
        StatusCode::OK
    );
}

/// An RFC 7662 endpoint that knows one token and checks Basic client authentication.
async fn introspection_endpoint(resource: &'static str) -> String {
    let app = Router::new().route(
        "/introspect",
        post(move |headers: HeaderMap, body: String| async move {
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("rs-client:rs-secret")
            );
            if headers.get("authorization").map(|v| v.to_str().unwrap()) != Some(expected.as_str()) {
                return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"})));
            }
            let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
            let token = form.iter().find(|(k, _)| k == "token").map(|(_, v)| v.as_str());
            let answer = match token {
                Some("opaque-good") => json!({"active": true, "sub": "user-2", "scope": "mcp", "aud": resource, "exp": now() + 600}),
                Some("opaque-elsewhere") => json!({"active": true, "sub": "user-2", "scope": "mcp", "aud": "https://other.example", "exp": now() + 600}),
                Some("opaque-early") => json!({"active": true, "scope": "mcp", "aud": resource, "nbf": now() + 3600, "exp": now() + 7200}),
                Some("opaque-float-expired") => json!({"active": true, "scope": "mcp", "aud": resource, "exp": (now() - 60) as f64 + 0.5}),
                Some("opaque-bad-exp") => json!({"active": true, "scope": "mcp", "aud": resource, "exp": "tomorrow"}),
                _ => json!({"active": false}),
            };
            (StatusCode::OK, Json(answer))
        }),
    );
    format!("{}/introspect", serve(app).await)
}

#[tokio::test]
async fn introspection_checks_activity_audience_and_fails_closed() {
    const RESOURCE: &str = "https://mcp.example.test/mcp";
    let endpoint = introspection_endpoint(RESOURCE).await;
    let verifier =
        IntrospectionVerifier::new(&endpoint, "rs-client", "rs-secret", RESOURCE).unwrap();
    let mcp = format!("{}/mcp", protected_app(verifier, RESOURCE).await);
    assert_eq!(
        call(&mcp, Some("Bearer opaque-good"), LIST, &[])
            .await
            .status,
        StatusCode::OK
    );
    let answer = call(&mcp, Some("Bearer opaque-revoked"), LIST, &[]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.challenge.contains("not active"));
    let answer = call(&mcp, Some("Bearer opaque-elsewhere"), LIST, &[]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    for (token, reason) in [
        ("opaque-early", "not valid yet"),
        ("opaque-float-expired", "expired"),
        ("opaque-bad-exp", "not a date"),
    ] {
        let answer = call(&mcp, Some(&format!("Bearer {token}")), LIST, &[]).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{token}");
        assert!(
            answer.challenge.contains(reason),
            "{token}: {}",
            answer.challenge
        );
    }

    // Wrong client credentials at the endpoint: the verifier cannot decide.
    let wrong = IntrospectionVerifier::new(&endpoint, "rs-client", "nope", RESOURCE).unwrap();
    let mcp = format!("{}/mcp", protected_app(wrong, RESOURCE).await);
    assert_eq!(
        call(&mcp, Some("Bearer opaque-good"), LIST, &[])
            .await
            .status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // The endpoint is down: nothing listens on its port any more.
    let (_closed, closed_base) = support::refusing_port();
    let dead = format!("{closed_base}/introspect");
    let down = IntrospectionVerifier::new(&dead, "rs-client", "rs-secret", RESOURCE).unwrap();
    let mcp = format!("{}/mcp", protected_app(down, RESOURCE).await);
    let answer = call(&mcp, Some("Bearer opaque-good"), LIST, &[]).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
}

/// Counts how often the wrapped verifier is asked.
struct Counting<V>(V, Arc<AtomicUsize>);

impl<V: TokenVerifier> TokenVerifier for Counting<V> {
    fn verify<'a>(
        &'a self,
        token: &'a str,
    ) -> tower_mcp_oauth::server::BoxFuture<'a, Result<AuthInfo, VerifyError>> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.verify(token)
    }
}

#[tokio::test]
async fn a_repeated_token_is_verified_once() {
    const RESOURCE: &str = "https://mcp.example.test/mcp";
    let calls = Arc::new(AtomicUsize::new(0));
    let verifier = StaticVerifier::new().token(
        "dev-token",
        AuthData {
            subject: Some("dev".into()),
            scopes: vec!["mcp".into()],
            audience: vec![RESOURCE.into()],
            expires_at: Some(now() + 600),
            ..Default::default()
        },
    );
    let mcp = format!(
        "{}/mcp",
        protected_app(Counting(verifier, calls.clone()), RESOURCE).await
    );
    for _ in 0..5 {
        assert_eq!(
            call(&mcp, Some("Bearer dev-token"), LIST, &[]).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        call(&mcp, Some("Bearer wrong-token"), LIST, &[])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_metadata_endpoint_serves_json_with_cors() {
    let service = ResourceMetadataService::new(ProtectedResourceMetadata {
        resource: "http://127.0.0.1:1/mcp".into(),
        authorization_servers: vec!["http://127.0.0.1:2".into()],
        scopes_supported: Some(vec!["mcp".into()]),
        bearer_methods_supported: Some(vec!["header".into()]),
        resource_name: Some("test".into()),
        jwks_uri: None,
        ..Default::default()
    })
    .unwrap();
    let mut app = Router::new();
    for path in service.paths() {
        app = app.route_service(path, service.clone());
    }
    let base = serve(app).await;
    let http = HttpClient::new();
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let response = http
            .send(
                Request::get(format!("{base}{path}"))
                    .body(Default::default())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["access-control-allow-origin"], "*");
        let doc: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(doc["resource"], "http://127.0.0.1:1/mcp");
    }
    let preflight = http
        .send(
            Request::options(format!("{base}/.well-known/oauth-protected-resource/mcp"))
                .header("origin", "http://app.example")
                .header("access-control-request-headers", "mcp-protocol-version")
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    assert!(preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("MCP-Protocol-Version"));
}

#[tokio::test]
async fn bodies_the_layer_cannot_judge_are_refused_not_passed() {
    let s = setup().await;
    let token = bearer(&sign(
        &s.issuer.claims(&s.resource),
        Algorithm::RS256,
        Some("rsa-1"),
    ));
    for body in [
        "not json",
        "[]",
        "42",
        r#"{"jsonrpc":"2.0","id":1}"#,
        r#"{"method":{"x":1}}"#,
    ] {
        let answer = call(&s.mcp, Some(&token), body, &[]).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(answer.challenge.contains("invalid_request"), "{body}");
    }
    // A JSON-RPC response (a client answering a server request) carries no call: allowed.
    let reply = r#"{"jsonrpc":"2.0","id":9,"result":{}}"#;
    assert_eq!(
        call(&s.mcp, Some(&token), reply, &[]).await.status,
        StatusCode::OK
    );
    // A compressed body would be judged on bytes nobody decoded.
    let answer = call(&s.mcp, Some(&token), LIST, &[("content-encoding", "gzip")]).await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn routing_headers_must_be_single_and_may_be_base64() {
    let s = setup().await;
    let mut writer = s.issuer.claims(&s.resource);
    writer["scope"] = json!("mcp files:write");
    let token = bearer(&sign(&writer, Algorithm::RS256, Some("rsa-1")));
    let delete =
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_file"}}"#;
    let encoded = format!(
        "=?base64?{}?=",
        base64::engine::general_purpose::STANDARD.encode("delete_file")
    );
    let answer = call(
        &s.mcp,
        Some(&token),
        delete,
        &[("mcp-method", "tools/call"), ("mcp-name", &encoded)],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let answer = call(
        &s.mcp,
        Some(&token),
        delete,
        &[("mcp-method", "tools/call"), ("mcp-method", "tools/list")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn critical_header_parameters_are_refused() {
    let s = setup().await;
    let claims = s.issuer.claims(&s.resource);
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let mut header_json = serde_json::to_value(&header).unwrap();
    header_json["crit"] = json!(["exp-ext"]);
    header_json["exp-ext"] = json!(true);
    let signing_input = format!("{}.{}", b64(&header_json), b64(&claims));
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(jwt_issuer::RSA_PRIVATE).unwrap();
    let signature =
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::RS256).unwrap();
    let token = format!("{signing_input}.{signature}");
    assert_invalid_token(&s, &token, "crit").await;
}

/// A verifier whose reasons hold characters a header cannot carry.
struct Chatty;

impl TokenVerifier for Chatty {
    fn verify<'a>(
        &'a self,
        _token: &'a str,
    ) -> tower_mcp_oauth::server::BoxFuture<'a, Result<AuthInfo, VerifyError>> {
        Box::pin(async { Err(VerifyError::invalid("nope: \"quoted\" \\ and ünïcode\n")) })
    }
}

#[tokio::test]
async fn a_challenge_always_goes_out_even_with_an_odd_reason() {
    let mcp = format!(
        "{}/mcp",
        protected_app(Chatty, "https://mcp.example.test/mcp").await
    );
    let answer = call(&mcp, Some("Bearer whatever"), LIST, &[]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(
        answer
            .challenge
            .starts_with(r#"Bearer error="invalid_token", error_description="nope:  quoted"#),
        "{}",
        answer.challenge
    );
}

#[tokio::test]
async fn a_resource_server_started_before_its_issuer_recovers_by_itself() {
    let (reserved, issuer_base) = support::refusing_port();
    let resource = "https://mcp.example.test/mcp";
    let verifier = JwtVerifier::builder(&issuer_base, resource)
        .discover_lazily()
        .unwrap();
    let mcp = format!("{}/mcp", protected_app(verifier, resource).await);
    let claims = json!({"iss": issuer_base, "aud": resource, "sub": "alice", "scope": "mcp", "exp": now() + 600});
    let token = sign(&claims, Algorithm::RS256, Some("rsa-1"));

    let response = HttpClient::new()
        .send(
            Request::post(&mcp)
                .header("authorization", bearer(&token))
                .header("content-type", "application/json")
                .body(LIST.to_owned().into())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));

    let issuer = Issuer::start_on(reserved.listen(1024).unwrap()).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let answer = call(&mcp, Some(&bearer(&token)), LIST, &[]).await;
        if answer.status == StatusCode::OK {
            break;
        }
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            answer.body
        );
        assert!(tokio::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(issuer.jwks_fetches.load(Ordering::SeqCst), 1);
}

/// The `protected_server` example, run as a user would, with its identity provider down.
#[tokio::test]
async fn the_protected_server_example_starts_while_its_issuer_is_down() {
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("examples").join("protected_server"))
        .filter(|path| path.exists());
    let Some(example) = example else {
        eprintln!(
            "skipped: the protected_server example is not built (run cargo test without --test)"
        );
        return;
    };
    let (_reserved, dead_issuer) = support::refusing_port();
    let mut child = tokio::process::Command::new(example)
        .args(["--issuer", &dead_issuer, "--port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mcp = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("MCP server:") {
                return Some(url.trim().to_owned());
            }
        }
        None
    })
    .await
    .expect("the example printed its address")
    .expect("the example is running");
    let token = sign(
        &json!({"iss": dead_issuer, "sub": "a", "exp": now() + 60}),
        Algorithm::RS256,
        Some("rsa-1"),
    );
    let answer = call(&mcp, Some(&bearer(&token)), LIST, &[]).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(child.try_wait().unwrap().is_none(), "still running");
}
