//! DPoP on all three sides: the crate's client against the `mcp_oauth_server` example (the
//! embedded authorization server binding tokens, `RequireBearer` checking proofs), over both
//! transports, through a refresh and a restart with the file store; and what a thief holding a
//! bound token can do with it (nothing).
#![cfg(all(
    feature = "authorization-server",
    feature = "rmcp",
    feature = "rmcp-server",
    feature = "jwt"
))]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use rmcp::model::ClientConfig;
use rmcp::ServiceExt;
use serde_json::{json, Value};
use support::client::headless;
use support::mcp::{call, text};
use support::{oauth_server_app, send};
use tower::ServiceBuilder;
use tower_mcp_oauth::client::{DpopMode, FileStore, OAuthConfig, OAuthLayer, OAuthState};
use tower_mcp_oauth::dpop::{access_token_hash, DpopAlgorithm, DpopKey};
use tower_mcp_oauth::transport::{
    LegacySseConfig, LegacySseTransport, StreamableHttpConfig, StreamableHttpTransport,
};

async fn server(opaque_tokens: bool) -> oauth_server_app::Running {
    support::approving_server(oauth_server_app::Options {
        opaque_tokens,
        dpop: support::oauth_server_app::dpop_choice::DpopChoice::Required,
        dpop_nonces: true,
        access_token_ttl: Duration::from_secs(3600),
        ..Default::default()
    })
    .await
}

async fn whoami(state: &OAuthState, url: &str) -> Value {
    let stack = ServiceBuilder::new()
        .layer(OAuthLayer::new(state.clone()))
        .service(tower_mcp_oauth::http::hyper_client());
    let transport = StreamableHttpTransport::new(stack, StreamableHttpConfig::new(url));
    let client = ClientConfig::default().serve(transport).await.unwrap();
    let answer = client.call_tool(call("whoami", json!({}))).await.unwrap();
    client.cancel().await.unwrap();
    serde_json::from_str(&text(&answer.content)).unwrap()
}

async fn dpop_through_refresh_and_restart(opaque_tokens: bool) {
    let running = server(opaque_tokens).await;
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("credentials.json");
    let config = OAuthConfig::new()
        .handler(headless())
        .store(FileStore::new(&store_path));
    let state = OAuthState::new(&running.mcp_url, Some(config))
        .await
        .unwrap();

    let first = whoami(&state, &running.mcp_url).await;
    let tokens = state.credentials().unwrap();
    assert_eq!(tokens.token_type, "DPoP");
    let key = tokens
        .dpop_key
        .clone()
        .expect("the tokens come with their key");
    assert_eq!(
        first["dpop_jkt"],
        key.thumbprint(),
        "the resource saw the binding"
    );

    let refreshed = state.refresh().await.unwrap();
    assert_ne!(
        refreshed.access_token.expose(),
        tokens.access_token.expose()
    );
    assert_eq!(refreshed.token_type, "DPoP");
    assert_eq!(
        refreshed.dpop_key.as_ref().unwrap().thumbprint(),
        key.thumbprint(),
        "one key"
    );

    // Legacy HTTP+SSE: a proof on the stream's GET and on every POST.
    let stack = ServiceBuilder::new()
        .layer(OAuthLayer::new(state.clone()))
        .service(tower_mcp_oauth::http::hyper_client());
    let transport = LegacySseTransport::connect(stack, LegacySseConfig::new(&running.sse_url))
        .await
        .unwrap();
    let client = ClientConfig::default().serve(transport).await.unwrap();
    let echo = client
        .call_tool(call("echo", json!({"text": "over sse"})))
        .await
        .unwrap();
    assert_eq!(text(&echo.content), "over sse");
    client.cancel().await.unwrap();

    // A restarted client, with no way to ask the user: the stored key keeps the tokens usable.
    let restarted = OAuthState::new(
        &running.mcp_url,
        Some(OAuthConfig::new().store(FileStore::new(&store_path))),
    )
    .await
    .unwrap();
    let again = whoami(&restarted, &running.mcp_url).await;
    assert_eq!(again["dpop_jkt"], key.thumbprint());
    let after_restart = restarted.refresh().await.unwrap();
    assert_eq!(
        after_restart.dpop_key.unwrap().thumbprint(),
        key.thumbprint()
    );
}

#[tokio::test]
async fn jwt_tokens_bound_to_the_key_through_refresh_and_restart() {
    dpop_through_refresh_and_restart(false).await;
}

#[tokio::test]
async fn opaque_tokens_bound_through_introspection_through_refresh_and_restart() {
    dpop_through_refresh_and_restart(true).await;
}

#[tokio::test]
async fn a_stolen_bound_token_is_useless_without_its_key() {
    let running = server(false).await;
    let state = OAuthState::new(
        &running.mcp_url,
        Some(OAuthConfig::new().handler(headless())),
    )
    .await
    .unwrap();
    whoami(&state, &running.mcp_url).await;
    let tokens = state.credentials().unwrap();
    let token = tokens.access_token.expose().to_owned();
    let post = |authorization: String, proof: Option<String>| {
        let mut request = Request::post(&running.mcp_url)
            .header("authorization", authorization)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        request
            .body(Full::new(Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            )))
            .unwrap()
    };
    let as_bearer = send(post(format!("Bearer {token}"), None)).await;
    assert_eq!(as_bearer.status, StatusCode::UNAUTHORIZED);

    let thief = DpopKey::generate(DpopAlgorithm::ES256).unwrap();
    let proof = thief
        .proof(
            "POST",
            &running.mcp_url,
            Some(&access_token_hash(&token)),
            None,
        )
        .unwrap();
    let with_own_key = send(post(format!("DPoP {token}"), Some(proof))).await;
    assert_eq!(with_own_key.status, StatusCode::UNAUTHORIZED);

    // The public client's refresh token is bound too: another key cannot redeem it.
    let client_id = state.client_registration().unwrap().client_id;
    let token_endpoint = format!("{}/token", running.base);
    let refresh = |proof: String| {
        let form = format!(
            "grant_type=refresh_token&client_id={}&refresh_token={}",
            url::form_urlencoded::byte_serialize(client_id.as_bytes()).collect::<String>(),
            tokens.refresh_token.as_ref().unwrap().expose()
        );
        Request::post(&token_endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("dpop", proof)
            .body(Full::new(Bytes::from(form)))
            .unwrap()
    };
    // The server wants its nonce first; the thief gets it and tries again.
    let first = send(refresh(
        thief.proof("POST", &token_endpoint, None, None).unwrap(),
    ))
    .await;
    assert_eq!(first.error(), "use_dpop_nonce");
    let nonce = first.headers["dpop-nonce"].to_str().unwrap().to_owned();
    let stolen = send(refresh(
        thief
            .proof("POST", &token_endpoint, None, Some(&nonce))
            .unwrap(),
    ))
    .await;
    assert_eq!(stolen.status, StatusCode::BAD_REQUEST);
    assert_eq!(stolen.error(), "invalid_grant", "{}", stolen.text());
    // And the rightful client still refreshes: the refused attempt rotated nothing.
    state.refresh().await.unwrap();
}

#[tokio::test]
async fn a_client_set_to_bearer_still_gets_bearer_tokens_where_dpop_is_only_offered() {
    let running = support::approving_server(oauth_server_app::Options {
        ..Default::default()
    })
    .await;
    let config = OAuthConfig::new()
        .handler(headless())
        .dpop(DpopMode::Disabled);
    let state = OAuthState::new(&running.mcp_url, Some(config))
        .await
        .unwrap();
    let answer = whoami(&state, &running.mcp_url).await;
    assert_eq!(answer["dpop_jkt"], Value::Null);
    assert_eq!(state.credentials().unwrap().token_type, "Bearer");
}

#[tokio::test]
async fn a_client_registered_for_dpop_gets_no_bearer_token() {
    let running = support::approving_server(oauth_server_app::Options {
        ..Default::default()
    })
    .await;
    let client_id = running
        .authorization_server
        .register_client(tower_mcp_oauth::metadata::ClientMetadata {
            client_name: Some("dpop-only".into()),
            redirect_uris: vec![support::client::CALLBACK.into()],
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            dpop_bound_access_tokens: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let token_endpoint = format!("{}/token", running.base);
    let request = |proof: Option<String>| {
        let form = format!(
            "grant_type=refresh_token&refresh_token=not-a-token&client_id={}",
            url::form_urlencoded::byte_serialize(client_id.as_bytes()).collect::<String>()
        );
        let mut request = Request::post(&token_endpoint)
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        request.body(Full::new(Bytes::from(form))).unwrap()
    };
    let without = send(request(None)).await;
    assert_eq!(without.status, StatusCode::BAD_REQUEST);
    assert_eq!(without.error(), "invalid_dpop_proof", "{}", without.text());
    // With a proof, the request gets as far as the grant (which is made up).
    let key = DpopKey::generate(DpopAlgorithm::ES256).unwrap();
    let with = send(request(Some(
        key.proof("POST", &token_endpoint, None, None).unwrap(),
    )))
    .await;
    assert_eq!(with.error(), "invalid_grant", "{}", with.text());
}
