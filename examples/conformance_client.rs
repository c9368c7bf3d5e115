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

#[path = "support/conformance_common.rs"]
mod conformance_common;
#[path = "support/conformance_mcp.rs"]
mod conformance_mcp;

use std::process::ExitCode;

use clap::Parser;
use tower_mcp_oauth::client::OAuthState;

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
    #[command(flatten)]
    suite: conformance_common::SuiteArgs,
}

async fn run(Args { suite: args }: Args) -> anyhow::Result<()> {
    let server_url = args.server_url;
    let scenario = args.scenario.unwrap_or_default();
    tracing::info!(%scenario, %server_url, "starting");
    let context = conformance_common::parse_context(args.context.as_deref())?;
    let config = conformance_common::config_from_context(context.as_ref())?;
    let state = OAuthState::new(&server_url, Some(config)).await?;
    let version = args.protocol_version.as_deref().unwrap_or(PROTOCOL_VERSION);
    conformance_mcp::run(state, &server_url, version, &scenario, context.as_ref()).await
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    conformance_common::log_to_stderr("tower_mcp_oauth=debug,conformance_client=info");
    conformance_common::exit_code(run(args).await)
}
