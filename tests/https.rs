//! The whole flow over https on loopback, with a test CA (`tests/fixtures/tls_*`): the crate's
//! client trusting it through `HttpClient::with_roots` and `hyper_client_with_roots`, the
//! example server serving TLS, and a Client ID Metadata Document fetched over TLS by the
//! authorization server. Without the CA, nothing connects.
#![cfg(all(
    feature = "authorization-server",
    feature = "rmcp",
    feature = "rmcp-server",
    feature = "jwt"
))]

mod support;

use rmcp::model::ClientConfig;
use rmcp::ServiceExt;
use serde_json::json;
use support::client::CALLBACK;
use support::mcp::{call, text};
use support::oauth_server_app;
use tower::ServiceBuilder;
use tower_mcp_oauth::client::{
    HeadlessHandler, OAuthConfig, OAuthLayer, OAuthState, RegistrationSource,
};
use tower_mcp_oauth::http::{hyper_client_with_roots, HttpClient};
use tower_mcp_oauth::transport::{StreamableHttpConfig, StreamableHttpTransport};
use tower_mcp_oauth::ErrorKind;
use url::Url;

const CA: &[u8] = include_bytes!("fixtures/tls_ca.pem");

fn tls() -> oauth_server_app::Tls {
    oauth_server_app::Tls {
        cert_chain_pem: include_bytes!("fixtures/tls_server.pem").to_vec(),
        key_pem: include_bytes!("fixtures/tls_server_key.pem").to_vec(),
        extra_roots_pem: Some(CA.to_vec()),
    }
}

async fn https_server(allow_private_client_metadata_hosts: bool) -> oauth_server_app::Running {
    support::approving_server(oauth_server_app::Options {
        tls: Some(tls()),
        allow_private_client_metadata_hosts,
        ..Default::default()
    })
    .await
}

fn config() -> OAuthConfig {
    let http = HttpClient::with_roots(CA).unwrap();
    OAuthConfig::new()
        .http(http.clone())
        .handler(HeadlessHandler::with_http(
            http,
            Url::parse(CALLBACK).unwrap(),
        ))
}

async fn add_over_https(mcp_url: &str, state: OAuthState) -> String {
    let stack = ServiceBuilder::new()
        .layer(OAuthLayer::new(state))
        .service(hyper_client_with_roots(CA).unwrap());
    let transport = StreamableHttpTransport::new(stack, StreamableHttpConfig::new(mcp_url));
    let client = ClientConfig::default().serve(transport).await.unwrap();
    let result = client
        .call_tool(call("add", json!({"a": 20, "b": 22})))
        .await
        .unwrap();
    client.cancel().await.unwrap();
    text(&result.content)
}

#[tokio::test]
async fn the_whole_flow_over_https_with_a_private_ca() {
    let running = https_server(false).await;
    assert!(running.mcp_url.starts_with("https://127.0.0.1:"));
    let state = OAuthState::new(&running.mcp_url, Some(config()))
        .await
        .unwrap();
    assert_eq!(add_over_https(&running.mcp_url, state.clone()).await, "42");
    let discovery = state.discovery().unwrap();
    assert!(discovery.issuer().starts_with("https://"));
    assert_eq!(
        state.client_registration().unwrap().source,
        RegistrationSource::Dynamic
    );
    state.refresh().await.unwrap();
}

#[tokio::test]
async fn without_the_ca_the_certificate_is_refused() {
    let running = https_server(false).await;
    let mut state = OAuthState::new(&running.mcp_url, Some(OAuthConfig::new()))
        .await
        .unwrap();
    let error = state
        .start_authorization(&["mcp:tools"], CALLBACK)
        .await
        .unwrap_err();
    assert!(
        matches!(error.kind(), ErrorKind::Http | ErrorKind::DiscoveryFailed),
        "{error:?}"
    );
    let mut chain = format!("{error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        chain += &format!(": {cause}");
        source = cause.source();
    }
    assert!(
        chain.contains("certificate"),
        "a certificate failure: {chain}"
    );
}

#[tokio::test]
async fn a_client_metadata_document_is_fetched_over_tls() {
    // The document's own https server, on the same test certificate (SAN localhost).
    let (listener, _) = support::bind().await;
    let document_url = format!(
        "https://localhost:{}/client.json",
        listener.local_addr().unwrap().port()
    );
    let document = json!({
        "client_id": document_url,
        "client_name": "CIMD over TLS",
        "redirect_uris": [CALLBACK],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
    })
    .to_string();
    let app = axum::Router::new().route(
        "/client.json",
        axum::routing::get(move || {
            let document = document.clone();
            async move { ([("content-type", "application/json")], document) }
        }),
    );
    let acceptor = oauth_server_app::tls_acceptor(&tls()).unwrap();
    tokio::spawn(oauth_server_app::serve_tls(listener, app, acceptor));

    // Loopback is a private address: the development switch lets the fetch through.
    let running = https_server(true).await;
    let config = config().client_metadata_url(Url::parse(&document_url).unwrap());
    let state = OAuthState::new(&running.mcp_url, Some(config))
        .await
        .unwrap();
    assert_eq!(add_over_https(&running.mcp_url, state.clone()).await, "42");
    let registration = state.client_registration().unwrap();
    assert_eq!(registration.source, RegistrationSource::MetadataDocument);
    assert_eq!(registration.client_id, document_url);
}
