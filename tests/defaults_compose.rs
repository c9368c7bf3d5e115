//! The parts in their default settings, stacked as users stack them: a bound token that meets a
//! resource taking Bearer only, a retry layer and a timeout above `OAuthLayer`, and boxed stacks
//! under every transport.
#![cfg(all(
    feature = "authorization-server",
    feature = "rmcp",
    feature = "rmcp-server",
    feature = "jwt"
))]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::Json;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use rmcp::model::ClientConfig;
use rmcp::ServiceExt;
use serde_json::{json, Value};
use support::auth_server::Server;
use support::client::headless;
use support::mcp::{call, text};
use support::oauth_server_app;
use tower::retry::RetryLayer;
use tower::util::{BoxCloneService, BoxCloneSyncService};
use tower::{BoxError, ServiceBuilder, ServiceExt as _};
use tower_mcp_oauth::client::{
    AuthorizationHandler, DpopMode, OAuthConfig, OAuthLayer, OAuthState, RetryTransient,
};
use tower_mcp_oauth::server::{AuthInfo, ProtectedResource};
use tower_mcp_oauth::transport::{
    AutoTransport, LegacySseConfig, LegacySseTransport, StreamableHttpConfig,
    StreamableHttpTransport, TowerHttpClient,
};
use tower_mcp_oauth::{ErrorClass, ErrorKind};
use url::Url;

/// The headless user, counting how often the browser was opened, after `delay`.
#[derive(Clone)]
struct CountingUser {
    opened: Arc<AtomicUsize>,
    delay: Duration,
}

impl CountingUser {
    fn new(delay: Duration) -> Self {
        Self {
            opened: Arc::default(),
            delay,
        }
    }

    fn opened(&self) -> usize {
        self.opened.load(Ordering::SeqCst)
    }
}

impl AuthorizationHandler for CountingUser {
    fn redirect_uri(&self) -> Url {
        headless().redirect_uri()
    }

    fn authorize<'a>(
        &'a self,
        authorization_url: &'a Url,
    ) -> tower_mcp_oauth::BoxFuture<'a, tower_mcp_oauth::Result<Url>> {
        self.opened.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            headless().authorize(authorization_url).await
        })
    }
}

async fn whoami_handler(request: Request<axum::body::Body>) -> Json<Value> {
    let info = request.extensions().get::<AuthInfo>().cloned().unwrap();
    Json(json!({ "dpop_jkt": info.dpop_jkt() }))
}

fn post_to(url: &str) -> Request<Full<Bytes>> {
    Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}

async fn json_of(response: http::Response<hyper::body::Incoming>) -> Value {
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

/// A resource whose metadata says it takes DPoP while its layer takes Bearer only: the
/// misconfiguration a client meets when a deployment changed one and not the other.
async fn bearer_only_resource_advertising_dpop() -> Server {
    Server::start_with(
        |config| config,
        |server, resource| {
            let advertised = server.protected_resource(resource).unwrap();
            let layer = advertised.clone().without_dpop().layer();
            let metadata = advertised.metadata_service();
            let mut app = server
                .router()
                .route("/mcp", post(whoami_handler).layer(layer));
            for path in metadata.paths() {
                app = app.route_service(path, metadata.clone());
            }
            app
        },
    )
    .await
}

#[tokio::test]
async fn a_bound_token_refused_by_a_bearer_only_resource_is_replaced_by_a_bearer_one() {
    let server = bearer_only_resource_advertising_dpop().await;
    let user = CountingUser::new(Duration::ZERO);
    let config = OAuthConfig::new().handler(user.clone());
    let state = OAuthState::new(&server.resource, Some(config))
        .await
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(OAuthLayer::new(state.clone()))
        .service(tower_mcp_oauth::http::hyper_client());

    let response = client
        .clone()
        .oneshot(post_to(&server.resource))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await["dpop_jkt"], Value::Null);
    assert_eq!(state.credentials().unwrap().token_type, "Bearer");
    // Signed in for the bound token, then once more for the Bearer one; never again.
    assert_eq!(user.opened(), 2);
    let again = client.oneshot(post_to(&server.resource)).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(user.opened(), 2);
}

#[tokio::test]
async fn one_bearer_only_challenge_from_a_resource_that_takes_dpop_does_not_unbind_the_client() {
    // A resource that takes DPoP, behind something that refuses the first request with a
    // Bearer-only challenge, as a gateway or an error page might.
    let refusals = Arc::new(AtomicUsize::new(1));
    let left = refusals.clone();
    let server = Server::start_with(
        |config| config,
        move |server, resource| {
            let mcp = server.protected_resource(resource).unwrap();
            let refuse_once = axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    let left = left.clone();
                    async move {
                        let bound = request
                            .headers()
                            .get("authorization")
                            .is_some_and(|v| v.as_bytes().starts_with(b"DPoP "));
                        if bound && left.fetch_sub(1, Ordering::SeqCst) == 1 {
                            return axum::response::IntoResponse::into_response((
                                StatusCode::UNAUTHORIZED,
                                [("www-authenticate", r#"Bearer error="invalid_token""#)],
                            ));
                        }
                        next.run(request).await
                    }
                },
            );
            let app = axum::Router::new().route("/", post(whoami_handler));
            server.router().merge(mcp.router(app).layer(refuse_once))
        },
    )
    .await;
    let user = CountingUser::new(Duration::ZERO);
    let state = OAuthState::new(
        &server.resource,
        Some(OAuthConfig::new().handler(user.clone())),
    )
    .await
    .unwrap();
    let client = ServiceBuilder::new()
        .layer(OAuthLayer::new(state.clone()))
        .service(tower_mcp_oauth::http::hyper_client());
    let response = client.oneshot(post_to(&server.resource)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_ne!(
        json_of(response).await["dpop_jkt"],
        Value::Null,
        "still bound"
    );
    assert_eq!(state.credentials().unwrap().token_type, "DPoP");
    assert_eq!(user.opened(), 1, "renewed, not signed in again for Bearer");
}

#[tokio::test]
async fn a_client_that_requires_dpop_says_why_a_bearer_only_resource_refuses_it() {
    let server = bearer_only_resource_advertising_dpop().await;
    let config = OAuthConfig::new()
        .handler(headless())
        .dpop(DpopMode::Required);
    let state = OAuthState::new(&server.resource, Some(config))
        .await
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(OAuthLayer::new(state))
        .service(tower_mcp_oauth::http::hyper_client());
    let error = client.oneshot(post_to(&server.resource)).await.unwrap_err();
    let error = tower_mcp_oauth::Error::from_boxed(error);
    assert_eq!(error.kind(), ErrorKind::DpopNotAccepted);
    assert_eq!(error.class(), ErrorClass::Authorization);
    assert!(error.to_string().contains("Bearer"), "{error}");
}

/// The embedded server's own resource at `/mcp` (failing with 503 `failures` times first), and
/// `/other`, a resource it does not issue tokens for.
async fn flaky_and_foreign_resources(failures: usize) -> (Server, Arc<AtomicUsize>) {
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    let server = Server::start_with(
        |config| config,
        move |server, resource| {
            let flaky = move |request: Request<axum::body::Body>| {
                let served = counter.clone();
                async move {
                    if served.fetch_add(1, Ordering::SeqCst) < failures {
                        // The server says it did not act, and when to come back.
                        return Err((StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "0")]));
                    }
                    Ok(whoami_handler(request).await)
                }
            };
            let own = server.protected_resource(resource).unwrap();
            let other_url = resource.replace("/mcp", "/other");
            let foreign = ProtectedResource::new(&other_url, server.local_verifier(&other_url))
                .unwrap()
                .authorization_server(server.issuer());
            // Two resources on one origin: only the first serves the root metadata path.
            let foreign_metadata = foreign.metadata_service();
            server
                .router()
                .merge(own.router(axum::Router::new().route("/", post(flaky))))
                .route("/other", post(whoami_handler).layer(foreign.layer()))
                .route_service(foreign_metadata.paths()[0], foreign_metadata.clone())
        },
    )
    .await;
    (server, served)
}

type Stack = BoxCloneService<Request<Full<Bytes>>, http::Response<hyper::body::Incoming>, BoxError>;

fn retrying_stack(state: OAuthState) -> Stack {
    ServiceBuilder::new()
        .layer(RetryLayer::new(RetryTransient::new(3).backoff(
            Duration::from_millis(10),
            Duration::from_millis(100),
        )))
        .layer(OAuthLayer::new(state))
        .service(tower_mcp_oauth::http::hyper_client())
        .boxed_clone()
}

#[tokio::test]
async fn a_retry_layer_retries_a_503_and_never_signs_in_twice() {
    let (server, served) = flaky_and_foreign_resources(2).await;
    let user = CountingUser::new(Duration::ZERO);
    let state = OAuthState::new(
        &server.resource,
        Some(OAuthConfig::new().handler(user.clone())),
    )
    .await
    .unwrap();
    let response = retrying_stack(state)
        .oneshot(post_to(&server.resource))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The 401 (not counted: the layer answers it before the route), two 503s, then the answer.
    assert_eq!(served.load(Ordering::SeqCst), 3);
    assert_eq!(user.opened(), 1, "the browser opened once");
}

#[tokio::test]
async fn a_refused_sign_in_is_not_retried() {
    let (server, _) = flaky_and_foreign_resources(0).await;
    let other = server.resource.replace("/mcp", "/other");
    let user = CountingUser::new(Duration::ZERO);
    let state = OAuthState::new(&other, Some(OAuthConfig::new().handler(user.clone())))
        .await
        .unwrap();
    let error = retrying_stack(state)
        .oneshot(post_to(&other))
        .await
        .unwrap_err();
    let error = tower_mcp_oauth::Error::from_boxed(error);
    // The authorization server answers invalid_target: the sign-in failed, once.
    assert_eq!(error.class(), ErrorClass::Authorization, "{error}");
    assert!(error.to_string().contains("invalid_target"), "{error}");
    assert_eq!(user.opened(), 1, "a retry must not ask the user again");
}

#[tokio::test]
async fn a_user_slower_than_the_request_timeout_still_ends_signed_in() {
    let (server, _) = flaky_and_foreign_resources(0).await;
    let user = CountingUser::new(Duration::from_millis(800));
    let state = OAuthState::new(
        &server.resource,
        Some(OAuthConfig::new().handler(user.clone())),
    )
    .await
    .unwrap();
    let client = ServiceBuilder::new()
        .timeout(Duration::from_millis(200))
        .layer(OAuthLayer::new(state.clone()))
        .service(tower_mcp_oauth::http::hyper_client());
    let error = client
        .clone()
        .oneshot(post_to(&server.resource))
        .await
        .unwrap_err();
    assert!(error.is::<tower::timeout::error::Elapsed>(), "{error}");
    // The sign-in goes on without the request that started it, and keeps its tokens.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while state.credentials().is_none() {
        assert!(tokio::time::Instant::now() < deadline, "never signed in");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = client.oneshot(post_to(&server.resource)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(user.opened(), 1);
}

async fn running_server() -> oauth_server_app::Running {
    support::approving_server(Default::default()).await
}

/// One `echo` call through rmcp's client over `transport`; what the tool answered.
macro_rules! echo_over {
    ($transport:expr) => {{
        let client = ClientConfig::default().serve($transport).await.unwrap();
        let answer = client
            .call_tool(call("echo", json!({ "text": "boxed" })))
            .await
            .unwrap();
        client.cancel().await.unwrap();
        text(&answer.content)
    }};
}

#[tokio::test]
async fn boxed_stacks_drive_every_transport() {
    let running = running_server().await;
    let state = OAuthState::new(
        &running.mcp_url,
        Some(OAuthConfig::new().handler(headless())),
    )
    .await
    .unwrap();
    let send_only = ServiceBuilder::new()
        .layer(OAuthLayer::new(state.clone()))
        .service(tower_mcp_oauth::http::hyper_client())
        .boxed_clone();
    let sync = BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(OAuthLayer::new(state))
            .service(tower_mcp_oauth::http::hyper_client()),
    );
    let streamable = StreamableHttpTransport::new(
        send_only.clone(),
        StreamableHttpConfig::new(&running.mcp_url),
    );
    assert!(echo_over!(streamable).contains("boxed"));
    let legacy = LegacySseTransport::connect(sync.clone(), LegacySseConfig::new(&running.sse_url))
        .await
        .unwrap();
    assert!(echo_over!(legacy).contains("boxed"));
    let auto = AutoTransport::new(
        send_only.clone(),
        StreamableHttpConfig::new(&running.mcp_url),
        LegacySseConfig::new(&running.mcp_url),
    );
    assert!(echo_over!(auto).contains("boxed"));
    let rmcp_transport = rmcp::transport::StreamableHttpClientTransport::with_client(
        TowerHttpClient::new(send_only),
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            running.mcp_url.as_str(),
        ),
    );
    assert!(echo_over!(rmcp_transport).contains("boxed"));
}
