//! `OAuthLayer` over a real hyper client against a real server on loopback.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use support::client::{headless_config as config, oauth_service};
use support::demo_server::{Behaviour, DemoServer};
use support::hyper_client;
use support::mcp::echo_message;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_mcp_oauth::challenge::BearerChallenge;
use tower_mcp_oauth::client::{FileStore, NoReplay, OAuthConfig, OAuthLayer, OAuthState};
use tower_mcp_oauth::{Error, ErrorKind};

async fn state(server: &DemoServer, config: OAuthConfig) -> OAuthState {
    OAuthState::new(server.mcp_url(), Some(config))
        .await
        .unwrap()
}

fn echo_request(server: &DemoServer, text: &str) -> Request<Full<Bytes>> {
    let body = echo_message(text);
    Request::post(server.mcp_url())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(&body).unwrap())))
        .unwrap()
}

async fn text<B>(response: Response<B>) -> String
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

fn crate_error(error: BoxError) -> Error {
    Error::from_boxed(error)
}

/// A demo server whose access tokens live 4 s: due for refresh after 2 s.
async fn short_lived_tokens() -> DemoServer {
    DemoServer::start(Behaviour {
        // Whole seconds, rounded either way: room for a loaded machine between the sleeps.
        access_token_lifetime: Duration::from_secs(10),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn the_token_goes_only_to_the_resource_origin_and_is_marked_sensitive() {
    let server = DemoServer::start(Behaviour::default()).await;
    let other = DemoServer::start(Behaviour::default()).await;
    let state = state(&server, config()).await;
    state.authorize().await.unwrap();

    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = {
        let seen = seen.clone();
        let client = hyper_client();
        tower::service_fn(move |request: Request<Full<Bytes>>| {
            let header = request.headers().get(http::header::AUTHORIZATION);
            seen.lock()
                .unwrap()
                .push((request.uri().to_string(), header.map(|h| h.is_sensitive())));
            client.clone().oneshot(request)
        })
    };
    let service = ServiceBuilder::new()
        .layer(OAuthLayer::new(state))
        .service(recorder);

    let response = service
        .clone()
        .oneshot(echo_request(&server, "mine"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let same_origin = Request::get(format!("{}/whoami", server.base))
        .body(Full::default())
        .unwrap();
    assert!(text(service.clone().oneshot(same_origin).await.unwrap())
        .await
        .starts_with("Bearer at-"));

    // Another port is another origin; a caller's own Authorization header does not leak either.
    let elsewhere = Request::get(format!("{}/whoami", other.base))
        .header("authorization", "Bearer stale")
        .body(Full::default())
        .unwrap();
    assert_eq!(
        text(service.clone().oneshot(elsewhere).await.unwrap()).await,
        "none"
    );

    let seen = seen.lock().unwrap();
    assert_eq!(
        seen[0].1,
        Some(true),
        "sensitive header on the resource request"
    );
    assert_eq!(seen[2].1, None, "no header to the other origin");
}

#[tokio::test]
async fn a_thousand_concurrent_requests_with_an_expired_token_refresh_once() {
    let server = short_lived_tokens().await;
    let state = state(&server, config()).await;
    state.authorize().await.unwrap();
    // Past half the lifetime: due for refresh.
    tokio::time::sleep(Duration::from_millis(5500)).await;

    let service = oauth_service(state);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let service = service.clone();
        let request = echo_request(&server, &i.to_string());
        tasks.spawn(async move { service.oneshot(request).await.map(|r| r.status()) });
    }
    let mut ok = 0;
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap().unwrap(), StatusCode::OK);
        ok += 1;
    }
    assert_eq!(ok, 1000);
    let counters = server.counters();
    assert_eq!(
        counters.refreshes, 1,
        "exactly one refresh for 1000 requests"
    );
    assert_eq!(counters.authorizations, 1);
}

#[tokio::test]
async fn a_thousand_concurrent_401s_for_the_same_token_refresh_once() {
    let server = DemoServer::start(Behaviour::default()).await;
    let state = state(&server, config()).await;
    state.authorize().await.unwrap();
    server.revoke_access_tokens();

    let service = oauth_service(state);
    let requests = (0..1000).map(|i| {
        let service = service.clone();
        let request = echo_request(&server, &i.to_string());
        async move { service.oneshot(request).await.map(|r| r.status()) }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| matches!(s, Ok(StatusCode::OK))));
    let counters = server.counters();
    assert_eq!(counters.refreshes, 1);
    assert_eq!(counters.authorizations, 1);
}

#[tokio::test]
async fn a_body_that_cannot_be_copied_is_not_replayed_but_the_retry_succeeds() {
    let server = DemoServer::start(Behaviour::default()).await;
    let state = state(&server, config()).await;
    // A boxed body is not `Clone`: the default policy would not compile, `NoReplay` says so.
    let client: Client<_, BoxBody<Bytes, std::convert::Infallible>> =
        Client::builder(TokioExecutor::new()).build_http();
    let service = ServiceBuilder::new()
        .layer(OAuthLayer::new(state).replay_policy(NoReplay))
        .service(client);
    let request = || {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string();
        Request::post(server.mcp_url())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)).boxed())
            .unwrap()
    };
    let response = service.clone().oneshot(request()).await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.extensions().get::<BearerChallenge>().is_some());
    assert_eq!(
        server.counters().authorizations,
        1,
        "the session was repaired"
    );
    assert_eq!(
        service.clone().oneshot(request()).await.unwrap().status(),
        200
    );
}

/// Retries failed calls (not HTTP statuses) a few times.
#[derive(Clone)]
struct RetryErrors(usize);

impl<B, E> tower::retry::Policy<Request<Full<Bytes>>, Response<B>, E> for RetryErrors {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _: &mut Request<Full<Bytes>>,
        result: &mut Result<Response<B>, E>,
    ) -> Option<Self::Future> {
        (result.is_err() && self.0 > 0).then(|| {
            self.0 -= 1;
            std::future::ready(())
        })
    }

    fn clone_request(&mut self, request: &Request<Full<Bytes>>) -> Option<Request<Full<Bytes>>> {
        let mut copy = Request::new(request.body().clone());
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.headers_mut() = request.headers().clone();
        Some(copy)
    }
}

#[tokio::test]
async fn stacks_with_timeout_retry_limit_and_buffer_in_either_order() {
    let server = DemoServer::start(Behaviour::default()).await;

    // Timeout → Retry → OAuth → hyper.
    let state_a = state(&server, config()).await;
    let outer = ServiceBuilder::new()
        .timeout(Duration::from_secs(10))
        .retry(RetryErrors(2))
        .layer(OAuthLayer::new(state_a))
        .service(hyper_client());
    let response = outer.oneshot(echo_request(&server, "a")).await.unwrap();
    assert!(text(response).await.contains("\"a\""));

    // OAuth outermost: OAuth → Buffer → ConcurrencyLimit → Timeout → Retry → hyper.
    let state_b = state(&server, config()).await;
    let inner = ServiceBuilder::new()
        .layer(OAuthLayer::new(state_b))
        .buffer(64)
        .concurrency_limit(8)
        .timeout(Duration::from_secs(10))
        .retry(RetryErrors(2))
        .service(hyper_client());
    let mut service = inner;
    for text_in in ["b", "c"] {
        let response = service
            .ready()
            .await
            .unwrap()
            .call(echo_request(&server, text_in))
            .await
            .unwrap();
        assert!(text(response).await.contains(text_in));
    }
    assert_eq!(server.counters().authorizations, 2, "one per state");
}

#[tokio::test]
async fn a_failing_token_endpoint_is_a_clear_error_and_a_valid_token_is_still_used() {
    let server = short_lived_tokens().await;
    let state = state(&server, config()).await;
    state.authorize().await.unwrap();
    let service = oauth_service(state);
    server.set(|b| b.token_failure = Some(500));

    // Due but not expired: the refresh fails, the current token still goes out.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    assert_eq!(
        service
            .clone()
            .oneshot(echo_request(&server, "x"))
            .await
            .unwrap()
            .status(),
        200
    );

    // Expired: the request fails with a typed error, quickly.
    tokio::time::sleep(Duration::from_millis(5000)).await;
    let started = std::time::Instant::now();
    let error = crate_error(
        service
            .clone()
            .oneshot(echo_request(&server, "y"))
            .await
            .unwrap_err(),
    );
    assert_eq!(error.kind(), ErrorKind::InvalidResponse, "{error}");
    assert!(error.to_string().contains("token endpoint"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn the_brake_stops_a_sign_in_loop() {
    let server = DemoServer::start(Behaviour {
        reject_all_tokens: true,
        ..Default::default()
    })
    .await;
    let state = state(&server, config()).await;
    let service = oauth_service(state);
    let mut braked = false;
    for _ in 0..20 {
        match service.clone().oneshot(echo_request(&server, "x")).await {
            Ok(response) => assert_eq!(response.status(), 401),
            Err(error) => {
                assert_eq!(crate_error(error).kind(), ErrorKind::TooManyAttempts);
                braked = true;
                break;
            }
        }
    }
    assert!(braked, "the loop was stopped");
    let counters = server.counters();
    assert!(
        counters.authorizations + counters.refreshes <= 6,
        "{counters:?}"
    );
}

#[tokio::test]
async fn processes_sharing_a_file_store_refresh_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials.json");
    let server = short_lived_tokens().await;
    // "Process" A signs in; B starts later from the same file. They share nothing in memory.
    let a = state(&server, config().store(FileStore::new(&path))).await;
    a.authorize().await.unwrap();
    let b = state(&server, config().store(FileStore::new(&path))).await;
    assert!(b.credentials().is_some(), "B starts from A's tokens");
    tokio::time::sleep(Duration::from_millis(5500)).await;

    let service_a = oauth_service(a);
    let service_b = oauth_service(b);
    let requests = (0..100).map(|i| {
        let service = if i % 2 == 0 {
            service_a.clone()
        } else {
            service_b.clone()
        };
        let request = echo_request(&server, &i.to_string());
        async move { service.oneshot(request).await.map(|r| r.status()) }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(
        statuses.iter().all(|s| matches!(s, Ok(StatusCode::OK))),
        "{statuses:?}"
    );
    let counters = server.counters();
    assert_eq!(
        counters.refreshes, 1,
        "one process refreshed, the other adopted its tokens"
    );
    assert_eq!(
        counters.authorizations, 1,
        "nobody redeemed a spent refresh token"
    );
}
