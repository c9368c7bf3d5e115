//! The whole MCP authorization flow on loopback, with no configuration:
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Starts the `mcp_oauth_server` example in-process on 127.0.0.1 (embedded authorization server,
//! approving without a user), then a client discovers it, registers, authorizes, gets a token,
//! calls tools over Streamable HTTP, refreshes the token, calls again, calls at MCP 2026-07-28
//! (discovered, no session), and calls over legacy HTTP+SSE too, printing each step; then a
//! client with only a handler lets `OAuthLayer` do all of it on the server's first 401.

#[path = "support/oauth_server_app.rs"]
mod oauth_server_app;

use anyhow::Context;
use clap::Parser;
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig, ProtocolVersion};
use rmcp::service::RunningService;
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt};
use serde_json::json;
use std::sync::{Arc, Mutex};
use tower::ServiceBuilder;

use tower_mcp_oauth::client::{
    AuthorizationHandler, HeadlessHandler, OAuthConfig, OAuthLayer, OAuthState,
};
use tower_mcp_oauth::transport::{
    LegacySseConfig, LegacySseTransport, StreamableHttpConfig, StreamableHttpTransport,
};
use url::Url;

/// The whole MCP authorization flow end to end on loopback, with no configuration.
///
/// Starts the mcp_oauth_server example in-process on 127.0.0.1 (embedded authorization server,
/// approving without a user), then a client discovers it, registers, authorizes, gets a token,
/// calls tools over Streamable HTTP, refreshes the token, calls again, and calls over legacy
/// HTTP+SSE too, printing each step. It takes no flags and reads no environment variables.
#[derive(Parser)]
struct Args {}

const REDIRECT_URI: &str = "http://127.0.0.1:8976/callback";

async fn call(
    client: &RunningService<RoleClient, ClientConfig>,
    tool: &str,
    arguments: serde_json::Value,
) -> anyhow::Result<String> {
    let mut request = CallToolRequestParams::new(tool.to_owned());
    if let serde_json::Value::Object(arguments) = arguments {
        request = request.with_arguments(arguments);
    }
    let result: CallToolResult = client.call_tool(request).await?;
    let text = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join(" ");
    anyhow::ensure!(result.is_error != Some(true), "{tool} failed: {text}");
    Ok(text)
}

fn short(token: &str) -> String {
    format!("{}… ({} bytes)", &token[..token.len().min(12)], token.len())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Only for --help: there is nothing to configure.
    let Args {} = Args::parse();
    let server = oauth_server_app::start(oauth_server_app::Options {
        port: 0,
        auto_approve: true,
        ..Default::default()
    })
    .await?;
    println!(
        "1. MCP server with its embedded authorization server at {}",
        server.base
    );
    println!(
        "   Streamable HTTP {} and HTTP+SSE {}",
        server.mcp_url, server.sse_url
    );

    let mut oauth_state = OAuthState::new(&server.mcp_url, None).await?;
    oauth_state
        .start_authorization(&["mcp:tools", "offline_access"], REDIRECT_URI)
        .await?;
    let discovery = oauth_state.discovery().context("discovery ran")?;
    println!(
        "2. discovered: resource {} protected by issuer {}",
        discovery.resource.as_deref().unwrap_or("(none)"),
        discovery.issuer()
    );
    let registration = oauth_state.client_registration().context("registered")?;
    println!(
        "3. registered dynamically: client_id {} ({})",
        registration.client_id,
        registration.auth_method.as_str()
    );

    let auth_url = oauth_state.get_authorization_url().await?;
    println!("4. authorization URL (PKCE S256, state, resource):\n   {auth_url}");
    // A real application opens a browser (LoopbackHandler) on the consent page; this server
    // approves at once (--auto-approve), so following its redirect is enough.
    let browser = HeadlessHandler::new(Url::parse(REDIRECT_URI)?);
    let redirect = browser.authorize(&Url::parse(&auth_url)?).await?;
    println!(
        "5. approved; redirected back to {}{} with code, state and iss",
        redirect.origin().ascii_serialization(),
        redirect.path()
    );
    let tokens = oauth_state.handle_callback(redirect.as_str()).await?;
    // DPoP-bound when both servers take DPoP (their metadata says so), Bearer otherwise.
    let binding = match &tokens.dpop_key {
        Some(key) => format!(
            "DPoP-bound to this client's key {}, so useless to anyone who copies it",
            short(key.thumbprint())
        ),
        None => "a Bearer token".to_owned(),
    };
    println!(
        "6. state and iss checked, code exchanged: access token {} (an ES256 JWT), {binding}; scopes [{}], expires at unix time {}",
        short(tokens.access_token.expose()),
        tokens.scopes.join(" "),
        tokens.expires_at.unwrap_or_default()
    );

    let stack = ServiceBuilder::new()
        .layer(OAuthLayer::new(oauth_state.clone()))
        .service(tower_mcp_oauth::http::hyper_client());
    let transport =
        StreamableHttpTransport::new(stack.clone(), StreamableHttpConfig::new(&server.mcp_url));
    let client = ClientConfig::default().serve(transport).await?;
    let tools = client.list_tools(Default::default()).await?;
    let names: Vec<&str> = tools.tools.iter().map(|t| t.name.as_ref()).collect();
    println!(
        "7. connected over Streamable HTTP; tools: {}",
        names.join(", ")
    );
    let echoed = call(
        &client,
        "echo",
        json!({"text": "hello from an authorized client"}),
    )
    .await?;
    println!("   echo -> {echoed}");
    let whoami = call(&client, "whoami", json!({})).await?;
    println!("   whoami -> {whoami}");

    let refreshed = oauth_state.refresh().await?;
    println!(
        "8. refreshed: new access token {}, refresh token {}",
        short(refreshed.access_token.expose()),
        if refreshed.refresh_token != tokens.refresh_token {
            "rotated"
        } else {
            "kept"
        }
    );
    let sum = call(&client, "add", json!({"a": 2, "b": 40})).await?;
    println!("9. with the refreshed token: add(2, 40) -> {sum}");
    client.cancel().await?;

    // MCP 2026-07-28: `server/discover` instead of a handshake, `_meta` on every request, and
    // `initialize` only if the server's answer shows an older server.
    let transport =
        StreamableHttpTransport::new(stack.clone(), StreamableHttpConfig::new(&server.mcp_url));
    let discover_or_initialize = ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        legacy_version: Some(ProtocolVersion::V_2025_11_25),
    };
    let client = ClientConfig::default()
        .serve_with_lifecycle(transport, discover_or_initialize)
        .await?;
    let version = client
        .peer_info()
        .map(|info| info.protocol_version.to_string())
        .unwrap_or_default();
    let sum = call(&client, "add", json!({"a": 2, "b": 40})).await?;
    println!("10. discovered MCP {version}, no session: add(2, 40) -> {sum}");
    client.cancel().await?;

    let transport =
        LegacySseTransport::connect(stack, LegacySseConfig::new(&server.sse_url)).await?;
    let client = ClientConfig::default().serve(transport).await?;
    let echoed = call(&client, "echo", json!({"text": "hello over HTTP+SSE"})).await?;
    println!("11. same token over legacy HTTP+SSE: echo -> {echoed}");
    client.cancel().await?;

    // What most applications do instead of the steps above: give the layer a handler (here the
    // headless one; LoopbackHandler opens the browser) and send requests. The first is answered
    // 401; the layer discovers, registers, signs in and sends it again.
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let seen = statuses.clone();
    let config = OAuthConfig::new().handler(HeadlessHandler::new(Url::parse(REDIRECT_URI)?));
    let stack = ServiceBuilder::new()
        .layer(OAuthLayer::new(
            OAuthState::new(&server.mcp_url, Some(config)).await?,
        ))
        // Below the layer: every answer the server gave, before the layer acted on it.
        .map_response(move |response: http::Response<_>| {
            seen.lock().unwrap().push(response.status().as_u16());
            response
        })
        .service(tower_mcp_oauth::http::hyper_client());
    let transport = StreamableHttpTransport::new(stack, StreamableHttpConfig::new(&server.mcp_url));
    let client = ClientConfig::default().serve(transport).await?;
    let echoed = call(&client, "echo", json!({"text": "signed in by the layer"})).await?;
    let first: Vec<u16> = statuses.lock().unwrap().iter().take(2).copied().collect();
    println!(
        "12. a new client with only a handler: the server answered {first:?}; the layer signed in on the 401 and sent the request again: echo -> {echoed}"
    );
    client.cancel().await?;
    println!("done");
    Ok(())
}
