//! The whole MCP authorization flow on loopback, with no configuration:
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Starts a demo MCP server with its authorization server on 127.0.0.1, then a client discovers
//! it, registers, authorizes (the demo server approves without a user), gets a token, calls a
//! tool, refreshes the token and calls the tool again, printing each step.

#[path = "support/demo_server.rs"]
mod demo_server;

use anyhow::Context;
use serde_json::{json, Value};
use tower_mcp_oauth::client::{
    AuthorizationHandler, AuthorizedHttpClient, HeadlessHandler, OAuthState,
};
use url::Url;

const REDIRECT_URI: &str = "http://127.0.0.1:8976/callback";

async fn call_echo(
    client: &AuthorizedHttpClient,
    mcp_url: &str,
    text: &str,
) -> anyhow::Result<String> {
    let message = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": text}},
    });
    let request = http::Request::post(mcp_url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(serde_json::to_vec(&message)?.into())?;
    let response = client.send(request).await?;
    anyhow::ensure!(
        response.status().is_success(),
        "tools/call answered {}",
        response.status()
    );
    let reply: Value = serde_json::from_slice(response.body())?;
    Ok(reply["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

fn expiry(tokens: &tower_mcp_oauth::client::TokenSet) -> String {
    match tokens.expires_at {
        Some(at) => format!("expires at unix time {at}"),
        None => "no expiry given".into(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = demo_server::DemoServer::start(Default::default()).await;
    let mcp_url = server.mcp_url();
    println!(
        "1. demo MCP server and authorization server listening at {}",
        server.base
    );

    let mut oauth_state = OAuthState::new(&mcp_url, None).await?;
    oauth_state
        .start_authorization(&["mcp", "offline_access"], REDIRECT_URI)
        .await?;
    let discovery = oauth_state.discovery().await.context("discovery ran")?;
    println!(
        "2. discovered: resource {} protected by issuer {}",
        discovery.resource.as_deref().unwrap_or("(none)"),
        discovery.issuer()
    );
    let client = oauth_state
        .client_registration()
        .await
        .context("registered")?;
    println!(
        "3. registered dynamically: client_id {} ({})",
        client.client_id,
        client.auth_method.as_str()
    );

    let auth_url = oauth_state.get_authorization_url().await?;
    println!("4. authorization URL (PKCE S256, state, resource):\n   {auth_url}");

    // A real application opens a browser (LoopbackHandler); the demo server approves at once,
    // so following its redirect is enough here.
    let browser = HeadlessHandler::new(Url::parse(REDIRECT_URI)?);
    let redirect = browser.authorize(&Url::parse(&auth_url)?).await?;
    println!(
        "5. the authorization server redirected back to {}{}",
        redirect.origin().ascii_serialization(),
        redirect.path()
    );

    let tokens = oauth_state.handle_redirect(redirect.as_str()).await?;
    println!(
        "6. state and iss checked, code exchanged: access token {:?}, scopes [{}], {}",
        tokens.access_token,
        tokens.scopes.join(" "),
        expiry(&tokens)
    );

    let http = oauth_state.to_authorized_http_client().await?;
    let answer = call_echo(&http, &mcp_url, "hello from an authorized client").await?;
    println!("7. tools/call echo -> {answer:?}");

    let refreshed = oauth_state.refresh().await?;
    println!(
        "8. refreshed: new access token, refresh token {}, {}",
        if refreshed.refresh_token != tokens.refresh_token {
            "rotated"
        } else {
            "kept"
        },
        expiry(&refreshed)
    );

    let answer = call_echo(&http, &mcp_url, "hello again, with the refreshed token").await?;
    println!("9. tools/call echo -> {answer:?}");

    let counters = server.counters();
    println!(
        "done: {} registration, {} authorization, {} code exchange, {} refresh, {} MCP requests",
        counters.registrations,
        counters.authorizations,
        counters.code_exchanges,
        counters.refreshes,
        counters.mcp_requests
    );
    Ok(())
}
