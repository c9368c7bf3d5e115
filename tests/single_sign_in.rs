//! Clients that share a `FileStore` (as processes on one machine do) sign in once: started
//! together against a server none has tokens for, one authorizes and the others wait for the
//! store's lease, then take its tokens. Over real HTTP on 127.0.0.1 against the embedded
//! authorization server.
#![cfg(all(feature = "authorization-server", feature = "jwt", feature = "client"))]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::post;
use http::StatusCode;
use support::auth_server::Server;
use support::client::headless_config;
use tower_mcp_oauth::client::{FileStore, OAuthState};
use tower_mcp_oauth::server::RequireBearerLayer;

/// Counts the authorization requests the server gets.
async fn start(authorizations: Arc<AtomicUsize>) -> Server {
    Server::start_with(
        |config| config.dpop(false),
        move |server, resource| {
            let counter = authorizations.clone();
            let protected = axum::Router::new()
                .route("/mcp", post(|| async { "ok" }))
                .layer(RequireBearerLayer::new(server.local_verifier(resource)).resource(resource));
            server.router().merge(protected).layer(middleware::from_fn(
                move |request: Request, next: Next| {
                    let counter = counter.clone();
                    async move {
                        if request.uri().path() == "/authorize" {
                            counter.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok::<Response, std::convert::Infallible>(next.run(request).await)
                    }
                },
            ))
        },
    )
    .await
}

/// One request through the layer: it signs in first when it has no token.
async fn call(state: &OAuthState, resource: &str) -> StatusCode {
    let client = state.to_authorized_http_client().await.unwrap();
    let request = http::Request::post(resource)
        .body(tower_mcp_oauth::http::RequestBody::from(b"{}".to_vec()))
        .unwrap();
    client.send(request).await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clients_sharing_a_file_store_sign_in_once() {
    let authorizations = Arc::new(AtomicUsize::new(0));
    let s = start(authorizations.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials.json");
    // Each its own FileStore on the same file: separate locks, as separate processes. All
    // start before any has signed in, then make their first request at once.
    let mut states = Vec::new();
    for _ in 0..3 {
        let config = headless_config().store(FileStore::new(&path));
        states.push(OAuthState::new(&s.resource, Some(config)).await.unwrap());
    }
    let calls = states.iter().map(|state| {
        let (state, resource) = (state.clone(), s.resource.clone());
        tokio::spawn(async move { call(&state, &resource).await })
    });
    for call in calls {
        assert_eq!(call.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(
        authorizations.load(Ordering::SeqCst),
        1,
        "one sign-in for three clients"
    );
    let tokens: Vec<String> = states
        .iter()
        .map(|s| s.credentials().unwrap().access_token.expose().to_owned())
        .collect();
    assert!(
        tokens.iter().all(|t| t == &tokens[0]),
        "all use the first sign-in's tokens"
    );
    // A later client on the same store needs no sign-in at all.
    let config = headless_config().store(FileStore::new(&path));
    let later = OAuthState::new(&s.resource, Some(config)).await.unwrap();
    assert!(later.credentials().is_some());
    assert_eq!(authorizations.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_shared_store_each_client_signs_in() {
    // The control: the same three clients with stores of their own sign in three times.
    let authorizations = Arc::new(AtomicUsize::new(0));
    let s = start(authorizations.clone()).await;
    let clients = (0..3).map(|_| {
        let resource = s.resource.clone();
        tokio::spawn(async move {
            let state = OAuthState::new(&resource, Some(headless_config()))
                .await
                .unwrap();
            assert_eq!(call(&state, &resource).await, StatusCode::OK);
        })
    });
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(authorizations.load(Ordering::SeqCst), 3);
}
