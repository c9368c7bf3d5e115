//! A client for the official MCP conformance suite (`@modelcontextprotocol/conformance`).
//!
//! Contract: the server URL is the last argument; `MCP_CONFORMANCE_SCENARIO` names the scenario,
//! `MCP_CONFORMANCE_PROTOCOL_VERSION` the revision it runs at, and `MCP_CONFORMANCE_CONTEXT`
//! (JSON) carries what a scenario hands the client (pre-registered credentials, tool calls to
//! make). Before 2026-07-28 the client initializes a session; at 2026-07-28 every request carries
//! its own `_meta`. It lists the tools and calls them (what each scenario needs is in
//! `support/conformance_mcp.rs`), over the crate's Streamable HTTP transport and `OAuthLayer`,
//! authorizing whenever the server asks. Exit 0 on success.
//!
//! `conformance/run.sh` installs the suite and runs it against this client. `--help` lists the
//! arguments and the environment variables.

#[path = "support/conformance_mcp.rs"]
mod conformance_mcp;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use serde_json::Value;
use tower_mcp_oauth::client::{
    ClientRegistration, HeadlessHandler, OAuthConfig, OAuthState, TokenEndpointAuthMethod,
};
use url::Url;

/// The Client ID Metadata Document URL the suite expects clients to present.
const CLIENT_METADATA_URL: &str = "https://conformance-test.local/client-metadata.json";
/// Never listened on: the headless handler reads the code from the redirect's `Location`.
const REDIRECT_URI: &str = "http://127.0.0.1:3000/callback";
const PROTOCOL_VERSION: &str = "2025-11-25";

/// A client for the official MCP conformance suite (@modelcontextprotocol/conformance).
///
/// It initializes a session (before 2026-07-28) or sends _meta on every request (2026-07-28),
/// lists the tools and calls them, authorizing whenever the server asks (headless: the code is read from the redirect, never in a
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
    let context: Option<Value> = args
        .context
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .context("MCP_CONFORMANCE_CONTEXT is not JSON")?;
    let version = args.protocol_version.as_deref().unwrap_or(PROTOCOL_VERSION);
    conformance_mcp::run(state, &server_url, version, &scenario, context.as_ref()).await
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
