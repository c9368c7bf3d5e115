//! The client flow of the crate against the `mcp_oauth_server` example (the embedded
//! authorization server and an rmcp server behind `RequireBearer`): discovery, registration,
//! authorization, both transports, and refresh, with JWT and with opaque access tokens.
#![cfg(all(
    feature = "authorization-server",
    feature = "rmcp",
    feature = "rmcp-server",
    feature = "jwt"
))]

mod support;

use std::time::Duration;

use rmcp::model::{ClientConfig, ProtocolVersion};
use rmcp::{ClientServiceExt, ServiceExt};
use serde_json::{json, Value};
use support::client::headless_state;
use support::mcp::{call, discover_or_initialize, text};
use support::{now_secs, oauth_server_app};
use tower::ServiceBuilder;
use tower_mcp_oauth::client::OAuthLayer;
use tower_mcp_oauth::transport::{
    LegacySseConfig, LegacySseTransport, StreamableHttpConfig, StreamableHttpTransport,
};

async fn server(opaque_tokens: bool, access_token_ttl: Duration) -> oauth_server_app::Running {
    support::approving_server(oauth_server_app::Options {
        opaque_tokens,
        access_token_ttl,
        ..Default::default()
    })
    .await
}

/// Connects over both transports with one OAuth state, calls tools, refreshes, calls again.
async fn both_transports_with_refresh(opaque_tokens: bool) {
    let running = server(opaque_tokens, Duration::from_secs(3600)).await;
    let state = headless_state(&running.mcp_url).await;
    let stack = ServiceBuilder::new()
        .layer(OAuthLayer::new(state.clone()))
        .service(tower_mcp_oauth::http::hyper_client());

    // The first request's 401 starts discovery, registration and authorization.
    let transport =
        StreamableHttpTransport::new(stack.clone(), StreamableHttpConfig::new(&running.mcp_url));
    let client = ClientConfig::default().serve(transport).await.unwrap();
    let tools = client.list_tools(Default::default()).await.unwrap();
    let mut names: Vec<String> = tools.tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "add",
            "crm_contacts",
            "demo_github_login",
            "echo",
            "server_stats",
            "whoami"
        ]
    );
    let sum = client
        .call_tool(call("add", json!({"a": 2, "b": 40})))
        .await
        .unwrap();
    assert_eq!(text(&sum.content), "42");
    let whoami = client.call_tool(call("whoami", json!({}))).await.unwrap();
    let whoami: Value = serde_json::from_str(&text(&whoami.content)).unwrap();
    let first = state.credentials().unwrap();
    assert_eq!(whoami["subject"], "demo-user");
    // The demo CRM, called as the user by token exchange: the CRM sees the user, and the MCP
    // server acting for them; the user's own token is no use there.
    let crm = client
        .call_tool(call("crm_contacts", json!({})))
        .await
        .unwrap();
    let crm: Value = serde_json::from_str(&text(&crm.content)).unwrap();
    assert_eq!(crm["owner"], "demo-user", "{crm}");
    assert_eq!(crm["scopes"], json!(["crm:read"]));
    assert!(crm["acting"].is_string(), "{crm}");
    let passthrough = support::send(
        http::Request::get(format!("{}/crm/contacts", running.base))
            .header(
                "authorization",
                format!("Bearer {}", first.access_token.expose()),
            )
            .body(http_body_util::Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(passthrough.status, http::StatusCode::UNAUTHORIZED);
    assert_eq!(whoami["audience"], json!([running.base.clone()]));
    assert_eq!(whoami["issuer"], running.base.as_str());

    let refreshed = state.refresh().await.unwrap();
    assert_ne!(refreshed.access_token.expose(), first.access_token.expose());
    assert_ne!(
        refreshed
            .refresh_token
            .as_ref()
            .map(|t| t.expose().to_owned()),
        first.refresh_token.as_ref().map(|t| t.expose().to_owned()),
        "the refresh token rotates"
    );
    let echo = client
        .call_tool(call("echo", json!({"text": "after refresh"})))
        .await
        .unwrap();
    assert_eq!(text(&echo.content), "after refresh");
    client.cancel().await.unwrap();

    // The same token over legacy HTTP+SSE.
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
}

#[tokio::test]
async fn jwt_tokens_over_both_transports_with_refresh() {
    both_transports_with_refresh(false).await;
}

#[tokio::test]
async fn opaque_tokens_over_both_transports_with_refresh() {
    both_transports_with_refresh(true).await;
}

#[tokio::test]
async fn the_layer_refreshes_short_lived_tokens_before_they_expire() {
    // 10 s tokens are due for refresh after 5 s (the margin is at most half the lifetime); the
    // call at 6 s finds the token due but not expired, so only an early refresh changes it.
    let running = server(false, Duration::from_secs(10)).await;
    let state = headless_state(&running.mcp_url).await;
    let stack = ServiceBuilder::new()
        .layer(OAuthLayer::new(state.clone()))
        .service(tower_mcp_oauth::http::hyper_client());
    let transport =
        StreamableHttpTransport::new(stack, StreamableHttpConfig::new(&running.mcp_url));
    let client = ClientConfig::default().serve(transport).await.unwrap();
    let first = state.credentials().unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        first.expires_at.unwrap() > now_secs(),
        "still valid when the call goes out"
    );
    let echo = client
        .call_tool(call("echo", json!({"text": "still here"})))
        .await
        .unwrap();
    assert_eq!(text(&echo.content), "still here");
    let now = state.credentials().unwrap();
    assert_ne!(now.access_token.expose(), first.access_token.expose());
    client.cancel().await.unwrap();
}

/// rmcp's client at 2026-07-28 (discovery, no handshake, `_meta` on every request) over our
/// transport and `OAuthLayer`: the first request's 401 starts the sign-in, as with sessions.
#[tokio::test]
async fn at_2026_07_28_the_client_signs_in_and_calls_tools_without_a_handshake() {
    let running = server(false, Duration::from_secs(3600)).await;
    let state = headless_state(&running.mcp_url).await;
    let stack = ServiceBuilder::new()
        .layer(OAuthLayer::new(state.clone()))
        .service(tower_mcp_oauth::http::hyper_client());
    let transport =
        StreamableHttpTransport::new(stack, StreamableHttpConfig::new(&running.mcp_url));
    let lifecycle = discover_or_initialize();
    let client = ClientConfig::default()
        .serve_with_lifecycle(transport, lifecycle)
        .await
        .unwrap();
    let info = client.peer_info().unwrap();
    assert_eq!(info.protocol_version, ProtocolVersion::V_2026_07_28);
    let sum = client
        .call_tool(call("add", json!({"a": 2, "b": 40})))
        .await
        .unwrap();
    assert_eq!(text(&sum.content), "42");
    let whoami = client.call_tool(call("whoami", json!({}))).await.unwrap();
    let whoami: Value = serde_json::from_str(&text(&whoami.content)).unwrap();
    assert_eq!(whoami["subject"], "demo-user");
    assert!(state.credentials().is_some(), "signed in on the way");
    client.cancel().await.unwrap();
}

/// `demo_github_login` needs the user's account at the demo third party: the first call sends
/// our rmcp client a URL-mode elicitation, the test's browser links the account (the example
/// approves everyone as `demo-user` at both servers), the call goes on; the next call needs no
/// browser. At 2025-11-25 (`-32042` and the completion notice) and 2026-07-28 (input required).
#[tokio::test]
async fn the_demo_third_party_account_is_linked_through_url_elicitation() {
    use std::sync::{Arc, Mutex};
    use tower_mcp_oauth::elicitation::{UrlElicitation, UrlElicitationClient};
    for version in [None, Some(ProtocolVersion::V_2026_07_28)] {
        let running = server(false, Duration::from_secs(3600)).await;
        let opened = Arc::new(Mutex::new(Vec::new()));
        let seen = opened.clone();
        let opener = move |request: UrlElicitation| -> tower_mcp_oauth::BoxFuture<'static, bool> {
            seen.lock().unwrap().push(request.origin.clone());
            Box::pin(async move {
                let mut browser = support::upstream_idp::Browser::default();
                let done =
                    support::links::complete_link(&mut browser, request.url.as_str(), "demo-user")
                        .await;
                done.status == http::StatusCode::OK && done.text().contains("account is linked")
            })
        };
        let handler = UrlElicitationClient::new(opener);
        let stack = ServiceBuilder::new()
            .layer(OAuthLayer::new(headless_state(&running.mcp_url).await))
            .service(tower_mcp_oauth::http::hyper_client());
        let transport =
            StreamableHttpTransport::new(stack, StreamableHttpConfig::new(&running.mcp_url));
        let client = handler
            .clone()
            .serve_with_lifecycle(transport, support::mcp::lifecycle_at(version))
            .await
            .unwrap();
        for _ in 0..2 {
            let answer = handler
                .call_tool(&client, call("demo_github_login", json!({})))
                .await
                .unwrap();
            let answer: Value = serde_json::from_str(&text(&answer.content)).unwrap();
            assert_eq!(answer["login"], "octocat", "{answer}");
        }
        assert_eq!(
            *opened.lock().unwrap(),
            vec![running.base.clone()],
            "one link, on the MCP server"
        );
        client.cancel().await.unwrap();
    }
}
