//! The client's device authorization grant (RFC 8628) against the embedded authorization
//! server over real HTTP on 127.0.0.1: the layer shows the code through the prompt, a person
//! answers the verification page, and the request goes through; a denial is a typed error; a
//! server without the grant is signed in to through the handler as before.
#![cfg(all(feature = "authorization-server", feature = "jwt", feature = "client"))]

mod support;

use std::time::Duration;

use axum::routing::post;
use http::StatusCode;
use support::auth_server::{answer_device_page, Server};
use support::client::headless;
use tokio::sync::mpsc;
use tower_mcp_oauth::authorization_server::{AuthorizationServerConfig, ConsentPage};
use tower_mcp_oauth::client::{DeviceAuthorization, OAuthConfig, OAuthState};
use tower_mcp_oauth::server::RequireBearerLayer;
use tower_mcp_oauth::ErrorKind;

/// The embedded server with a protected `/mcp` beside it; its page asks `alice`.
async fn start(configure: fn(AuthorizationServerConfig) -> AuthorizationServerConfig) -> Server {
    Server::start_with(
        move |config| {
            configure(
                config
                    .dpop(false)
                    .approval_policy(ConsentPage::new("alice"))
                    .device_poll_interval(Duration::from_secs(1)),
            )
        },
        |server, resource| {
            let protected = axum::Router::new()
                .route("/mcp", post(|| async { "ok" }))
                .layer(RequireBearerLayer::new(server.local_verifier(resource)).resource(resource));
            server.router().merge(protected)
        },
    )
    .await
}

/// A config whose prompt hands each device authorization to the test.
fn device_config() -> (OAuthConfig, mpsc::UnboundedReceiver<DeviceAuthorization>) {
    let (shown, prompts) = mpsc::unbounded_channel();
    let config = OAuthConfig::new().device_authorization(move |device: &DeviceAuthorization| {
        let _ = shown.send(device.clone());
    });
    (config, prompts)
}

async fn call(state: &OAuthState, resource: &str) -> tower_mcp_oauth::Result<StatusCode> {
    let client = state.to_authorized_http_client().await?;
    let request = http::Request::post(resource)
        .body(tower_mcp_oauth::http::RequestBody::from(b"{}".to_vec()))
        .unwrap();
    Ok(client.send(request).await?.status())
}

/// One request through the layer, in the background: it waits while the user signs in.
fn spawn_call(
    state: &OAuthState,
    resource: &str,
) -> tokio::task::JoinHandle<tower_mcp_oauth::Result<StatusCode>> {
    let (state, resource) = (state.clone(), resource.to_owned());
    tokio::spawn(async move { call(&state, &resource).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waits_while_the_user_approves_on_another_device() {
    let s = start(|c| c).await;
    let (config, mut prompts) = device_config();
    let state = OAuthState::new(&s.resource, Some(config)).await.unwrap();
    let request = spawn_call(&state, &s.resource);
    let device = tokio::time::timeout(Duration::from_secs(10), prompts.recv())
        .await
        .expect("the prompt was shown")
        .unwrap();
    assert_eq!(
        device.verification_uri.as_str(),
        format!("{}/device", s.base)
    );
    assert!(device.verification_uri_complete.is_some());
    assert!(!request.is_finished(), "the request waits for the user");
    let (question, answer) = answer_device_page(&s.base, &device.user_code, "approve").await;
    assert!(question.text().contains("Authorize"));
    assert_eq!(answer.status, StatusCode::OK);
    let status = tokio::time::timeout(Duration::from_secs(15), request)
        .await
        .expect("the request finished after the approval")
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let tokens = state.credentials().unwrap();
    assert!(tokens.refresh_token.is_some());
    assert!(
        prompts.try_recv().is_err(),
        "one prompt for one sign-in, none for the tokens' use"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_on_the_page_is_a_typed_error() {
    let s = start(|c| c).await;
    let (config, mut prompts) = device_config();
    let state = OAuthState::new(&s.resource, Some(config)).await.unwrap();
    let request = spawn_call(&state, &s.resource);
    let device = prompts.recv().await.unwrap();
    answer_device_page(&s.base, &device.user_code, "deny").await;
    let error = tokio::time::timeout(Duration::from_secs(15), request)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::AuthorizationDenied, "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_the_device_grant_is_signed_in_to_through_the_handler() {
    // This one approves at once, so the headless handler completes the flow.
    let s = Server::start_with(
        |c| c.device_grant(false).dpop(false),
        |server, resource| {
            let protected = axum::Router::new()
                .route("/mcp", post(|| async { "ok" }))
                .layer(RequireBearerLayer::new(server.local_verifier(resource)).resource(resource));
            server.router().merge(protected)
        },
    )
    .await;
    let (config, mut prompts) = device_config();
    let state = OAuthState::new(&s.resource, Some(config.handler(headless())))
        .await
        .unwrap();
    assert_eq!(call(&state, &s.resource).await.unwrap(), StatusCode::OK);
    assert!(prompts.try_recv().is_err(), "no device prompt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_grant_and_without_a_handler_the_error_says_so() {
    let s = start(|c| c.device_grant(false)).await;
    let (config, _) = device_config();
    let state = OAuthState::new(&s.resource, Some(config)).await.unwrap();
    let error = state.authorize().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotAuthorized, "{error}");
    assert!(error.to_string().contains("device"), "{error}");
}
