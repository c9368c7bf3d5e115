//! What downstream authorization costs a request once the caller's exchanged token is cached:
//! one call through `OnBehalfOf` to a service that answers at once, beside the same service
//! called bare, in the same run. The exchange itself (one per caller and target) is made
//! before the measurement, against a token endpoint on loopback.

use std::convert::Infallible;

use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use http_body_util::Full;
use tower::ServiceExt;
use tower_mcp_oauth::client::{ClientRegistration, TokenEndpointAuthMethod};
use tower_mcp_oauth::downstream::{Caller, Downstream, TokenExchange};
use tower_mcp_oauth::server::{AuthData, AuthInfo, CallerToken};

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (exchange, issuer) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().route(
            "/token",
            post(|| async {
                Json(serde_json::json!({
                    "access_token": "downstream-token-for-the-bench",
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                }))
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let exchange = TokenExchange::with_token_endpoint(
            &base,
            &format!("{base}/token"),
            ClientRegistration::confidential(
                "mcp-server",
                "secret",
                TokenEndpointAuthMethod::ClientSecretBasic,
            ),
        )
        .unwrap();
        (exchange, base)
    });
    let caller = Caller::new(
        AuthInfo::from(AuthData {
            subject: Some("alice".into()),
            // The caller's token comes from the server it is exchanged at.
            issuer: Some(issuer),
            client_id: Some("desktop".into()),
            scopes: vec!["mcp:tools".into()],
            ..Default::default()
        }),
        CallerToken::bearer("the-callers-token").unwrap(),
    )
    .unwrap();
    let answer = tower::service_fn(|_request: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Bytes::new()))
    });
    let target = Downstream::resource("https://crm.example.test/api").scopes(["crm:read"]);
    let on_behalf = exchange.on_behalf_of(caller, target, answer);
    // The one exchange, so what follows is the cached path.
    rt.block_on(on_behalf.clone().oneshot(request())).unwrap();
    assert_eq!(exchange.exchanges_sent(), 1);

    let mut group = c.benchmark_group("downstream");
    group.bench_function("service_bare", |b| {
        b.to_async(&rt).iter(|| answer.oneshot(request()))
    });
    group.bench_function("service_on_behalf_of_cached", |b| {
        b.to_async(&rt)
            .iter(|| on_behalf.clone().oneshot(request()))
    });
    group.finish();
    assert_eq!(
        exchange.exchanges_sent(),
        1,
        "every measured call used the cache"
    );
}

fn request() -> Request<Full<Bytes>> {
    Request::get("https://crm.example.test/api/contacts")
        .body(Full::default())
        .unwrap()
}

criterion_group!(downstream, benches);
criterion_main!(downstream);
