//! A client for the official MCP conformance suite (`@modelcontextprotocol/conformance`).
//!
//! Contract: the server URL is the last argument; `MCP_CONFORMANCE_SCENARIO` names the scenario
//! and `MCP_CONFORMANCE_CONTEXT` (JSON) carries pre-registered credentials when a scenario has
//! them. The client initializes, sends `notifications/initialized`, lists the tools and calls the
//! first one, authorizing through [`AuthorizedHttpClient`] whenever the server asks. Exit 0 on
//! success.
//!
//! `conformance/run.sh` installs the suite and runs it against this client. `--help` lists the
//! arguments and the environment variables.

#[path = "support/conformance_stateless.rs"]
mod stateless;

use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use clap::Parser;
use http::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{json, Value};
use tower_mcp_oauth::client::{
    AuthorizedHttpClient, ClientRegistration, HeadlessHandler, OAuthConfig, OAuthState,
    TokenEndpointAuthMethod,
};
use url::Url;

/// The Client ID Metadata Document URL the suite expects clients to present.
const CLIENT_METADATA_URL: &str = "https://conformance-test.local/client-metadata.json";
/// Never listened on: the headless handler reads the code from the redirect's `Location`.
const REDIRECT_URI: &str = "http://127.0.0.1:3000/callback";
const PROTOCOL_VERSION: &str = "2025-11-25";

/// A client for the official MCP conformance suite (@modelcontextprotocol/conformance).
///
/// It initializes, sends notifications/initialized, lists the tools and calls the first one,
/// authorizing whenever the server asks (headless: the code is read from the redirect, never in a
/// browser). Exit status 0 on success. conformance/run.sh runs the suite against it.
#[derive(Parser)]
#[command(
    after_help = "Environment: RUST_LOG sets the log filter (default: tower_mcp_oauth=debug,conformance_client=info); logs go to stderr."
)]
struct Args {
    /// The MCP server's URL (the suite passes it as the last argument).
    #[arg(value_name = "SERVER_URL")]
    server_url: String,
    /// The scenario's name, for the log.
    #[arg(long, env = "MCP_CONFORMANCE_SCENARIO", value_name = "NAME")]
    scenario: Option<String>,
    /// The scenario's context (JSON): its client_id, and client_secret if any, are a
    /// pre-registered client.
    // Its value holds a client secret: --help must not print it.
    #[arg(
        long,
        env = "MCP_CONFORMANCE_CONTEXT",
        value_name = "JSON",
        hide_env_values = true
    )]
    context: Option<String>,
    /// The protocol revision the scenario runs at: 2026-07-28 is stateless (no initialize,
    /// `_meta` on every request); earlier ones initialize a session.
    #[arg(long, env = "MCP_CONFORMANCE_PROTOCOL_VERSION", value_name = "VERSION")]
    protocol_version: Option<String>,
}

struct McpSession {
    http: AuthorizedHttpClient,
    url: String,
    session_id: Option<String>,
    protocol_version: Option<String>,
    next_id: u64,
}

impl McpSession {
    async fn post(&mut self, message: &Value) -> anyhow::Result<http::Response<Bytes>> {
        let mut request = http::Request::post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream");
        if let Some(id) = &self.session_id {
            request = request.header("mcp-session-id", id);
        }
        if let Some(version) = &self.protocol_version {
            request = request.header("mcp-protocol-version", version);
        }
        let request = request.body(serde_json::to_vec(message)?.into())?;
        let response = self.http.send(request).await?;
        if let Some(id) = response.headers().get("mcp-session-id") {
            self.session_id = Some(id.to_str()?.to_owned());
        }
        Ok(response)
    }

    async fn request(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let response = self.post(&message).await?;
        let status = response.status();
        if !status.is_success() {
            bail!("{method}: the server answered {status}");
        }
        let reply = find_reply(&response, id).with_context(|| format!("{method}: no reply"))?;
        if let Some(error) = reply.get("error") {
            bail!("{method}: JSON-RPC error {error}");
        }
        reply
            .get("result")
            .cloned()
            .ok_or_else(|| anyhow!("{method}: the reply has no result"))
    }

    async fn notify(&mut self, method: &str) -> anyhow::Result<()> {
        let response = self
            .post(&json!({"jsonrpc": "2.0", "method": method}))
            .await?;
        if !response.status().is_success() {
            bail!("{method}: the server answered {}", response.status());
        }
        Ok(())
    }
}

/// The JSON-RPC response with `id`, from a JSON body or an SSE stream's `data` fields.
fn find_reply(response: &http::Response<Bytes>, id: u64) -> anyhow::Result<Value> {
    let is_sse = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let messages: Vec<Value> = if is_sse {
        let text = std::str::from_utf8(response.body())?;
        let mut messages = Vec::new();
        for event in text.replace("\r\n", "\n").split("\n\n") {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if !data.is_empty() {
                if let Ok(message) = serde_json::from_str(&data.join("\n")) {
                    messages.push(message);
                }
            }
        }
        messages
    } else {
        vec![serde_json::from_slice(response.body())?]
    };
    messages
        .into_iter()
        .find(|m| m.get("id").and_then(Value::as_u64) == Some(id))
        .ok_or_else(|| anyhow!("no response with id {id}"))
}

fn config_from_context(context: Option<&str>) -> anyhow::Result<OAuthConfig> {
    let mut config = OAuthConfig::new()
        .client_name("tower-mcp-oauth conformance client")
        .client_metadata_url(Url::parse(CLIENT_METADATA_URL)?)
        .handler(HeadlessHandler::new(Url::parse(REDIRECT_URI)?));
    if let Some(context) = context {
        let context: Value =
            serde_json::from_str(context).context("MCP_CONFORMANCE_CONTEXT is not JSON")?;
        if let Some(client_id) = context.get("client_id").and_then(Value::as_str) {
            let client = match context.get("client_secret").and_then(Value::as_str) {
                Some(secret) => ClientRegistration::confidential(
                    client_id,
                    secret,
                    TokenEndpointAuthMethod::ClientSecretBasic,
                ),
                None => ClientRegistration::public(client_id),
            };
            config = config.client(client);
        }
    }
    Ok(config)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let server_url = args.server_url;
    let scenario = args.scenario.unwrap_or_default();
    tracing::info!(%scenario, %server_url, "starting");
    let config = config_from_context(args.context.as_deref())?;
    let state = OAuthState::new(&server_url, Some(config)).await?;
    if let Some(version) = args
        .protocol_version
        .as_deref()
        .filter(|v| *v >= "2026-07-28")
    {
        let context: Option<Value> = args
            .context
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .context("MCP_CONFORMANCE_CONTEXT is not JSON")?;
        return stateless::run(state, &server_url, version, &scenario, context.as_ref()).await;
    }
    let mut session = McpSession {
        http: state.to_authorized_http_client().await?,
        url: server_url,
        session_id: None,
        protocol_version: None,
        next_id: 0,
    };
    let init = session
        .request(
            "initialize",
            json!({
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "tower-mcp-oauth-conformance", "version": env!("CARGO_PKG_VERSION")},
            }),
        )
        .await?;
    session.protocol_version = Some(
        init.get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(PROTOCOL_VERSION)
            .to_owned(),
    );
    session.notify("notifications/initialized").await?;
    let tools = session.request("tools/list", json!({})).await?;
    let first = tools
        .get("tools")
        .and_then(Value::as_array)
        .and_then(|tools| tools.first())
        .cloned();
    if let Some(tool) = first {
        let name = tool["name"].as_str().unwrap_or_default().to_owned();
        let arguments = stateless::sample_arguments(&tool);
        let result = session
            .request("tools/call", json!({"name": name, "arguments": arguments}))
            .await?;
        tracing::info!(tool = %name, result = %result, "called the first tool");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "tower_mcp_oauth=debug,conformance_client=info".into()),
        )
        .init();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("conformance client failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}
