//! Client ID Metadata Documents at the embedded authorization server: fetched and cached in
//! development mode, checked against the client and its redirect URI, bounded in size and time,
//! and never fetched from a private address (the SSRF guard).
#![cfg(all(feature = "authorization-server", feature = "jwt"))]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use serde_json::{json, Value};
use support::auth_server::{pkce, Server, REDIRECT};
use support::{bind, get};
use url::Url;

/// A loopback server for client metadata documents, counting the connections it accepts.
async fn document_server(
    document: impl Fn(&str) -> Value + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let (listener, base) = bind().await;
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let url = format!("{base}/client.json");
    let body = document(&url).to_string();
    let app = axum::Router::new().route(
        "/client.json",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            counted.fetch_add(1, Ordering::SeqCst);
            let app = app.clone();
            tokio::spawn(async move {
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, connections)
}

#[tokio::test]
async fn client_metadata_documents_in_development_mode() {
    let s = Server::start(|c| c.allow_private_client_metadata_hosts(true)).await;
    let (url, fetches) = document_server(|url| {
        json!({"client_id": url, "client_name": "CIMD client", "redirect_uris": [REDIRECT],
               "grant_types": ["authorization_code", "refresh_token"], "token_endpoint_auth_method": "none"})
    })
    .await;
    let tokens = s.tokens(&url).await;
    assert!(tokens["refresh_token"].is_string());
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "fetched once, then cached"
    );
}

/// Asks a development-mode server to authorize the client whose metadata document `document`
/// makes: refused with a page, never a redirect.
async fn assert_document_refused(document: impl Fn(&str) -> Value + Send + Sync + 'static) {
    let s = Server::start(|c| c.allow_private_client_metadata_hosts(true)).await;
    let (url, _) = document_server(document).await;
    let (_, challenge) = pkce();
    let answer = get(&s.authorize_url(&url, &challenge, &[])).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.location().is_none());
}

#[tokio::test]
async fn a_client_metadata_document_must_name_itself() {
    assert_document_refused(
        |_| json!({"client_id": "https://evil.example/client.json", "redirect_uris": [REDIRECT]}),
    )
    .await;
}

#[tokio::test]
async fn client_metadata_urls_at_private_addresses_are_never_fetched() {
    let s = Server::start(|c| c).await;
    let (url, connections) =
        document_server(|url| json!({"client_id": url, "redirect_uris": [REDIRECT]})).await;
    let port = Url::parse(&url).unwrap().port().unwrap();
    let (_, challenge) = pkce();
    for target in [
        format!("https://127.0.0.1:{port}/client.json"),
        format!("https://localhost:{port}/client.json"),
        "https://10.0.0.1/client.json".to_owned(),
        "https://169.254.169.254/latest/meta-data".to_owned(),
        // http is refused outright without the development switch.
        url.clone(),
    ] {
        let answer = get(&s.authorize_url(&target, &challenge, &[])).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{target}");
        assert!(answer.location().is_none());
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "no connection reached the private address"
    );
}

#[tokio::test]
async fn client_metadata_documents_must_list_the_redirect_uri() {
    assert_document_refused(
        |url| json!({"client_id": url, "redirect_uris": ["http://127.0.0.1:9/elsewhere"]}),
    )
    .await;
}

#[tokio::test]
async fn client_metadata_fetches_are_bounded_in_size_and_time() {
    let s = Server::start(|c| {
        c.allow_private_client_metadata_hosts(true)
            .client_metadata_timeout(Duration::from_millis(500))
    })
    .await;
    let (_, challenge) = pkce();
    // Too large.
    let (large, _) = document_server(|url| {
        json!({"client_id": url, "redirect_uris": [REDIRECT], "client_name": "x".repeat(20_000)})
    })
    .await;
    let answer = get(&s.authorize_url(&large, &challenge, &[])).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    // Never answers: the authorization request still gets its answer.
    let (silent, silent_base) = bind().await;
    let silent_url = format!("{silent_base}/client.json");
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (stream, _) = silent.accept().await.unwrap();
            held.push(stream);
        }
    });
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        get(&s.authorize_url(&silent_url, &challenge, &[])),
    )
    .await
    .expect("no hang on a silent metadata host");
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
}
