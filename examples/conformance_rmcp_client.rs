//! A client for the official MCP conformance suite built on rmcp's client, as most users of
//! the crate build theirs: rmcp's `ClientHandler` and lifecycle over the crate's Streamable
//! HTTP transport and `OAuthLayer`.
//!
//! The contract is `conformance_client`'s: the server URL is the last argument, and
//! `MCP_CONFORMANCE_SCENARIO`, `MCP_CONFORMANCE_PROTOCOL_VERSION` and `MCP_CONFORMANCE_CONTEXT`
//! say what to do. The client never assumes what the server speaks: it starts with
//! `server/discover` at 2026-07-28 and falls back to `initialize` when the server's answer says
//! it is an older one (rmcp's `ClientLifecycleMode::Auto`). `--transport rmcp` runs the same
//! client over rmcp's own Streamable HTTP transport (on the same `OAuthLayer` stack, through
//! `TowerHttpClient`), to tell what is ours from what is rmcp's. Exit 0 on success.

#[path = "support/conformance_common.rs"]
mod conformance_common;

use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::{Parser, ValueEnum};
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ElicitRequestParams, ElicitResult,
    ElicitationAction, GetPromptRequestParams, Implementation, ProtocolVersion,
    ReadResourceRequestParams,
};
use rmcp::service::{ClientInitializeError, RequestContext, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, ClientLifecycleMode, ClientServiceExt, ErrorData, RoleClient};
use serde_json::{json, Value};
use tower::Layer;
use tower_mcp_oauth::client::{OAuthLayer, OAuthState};
use tower_mcp_oauth::http::hyper_client;
use tower_mcp_oauth::transport::{StreamableHttpConfig, StreamableHttpTransport, TowerHttpClient};

use conformance_common::{context_tool_calls, sample_arguments, sample_object};

/// The tool of `json-schema-2020-12-preservation` whose schema is handed back, and the tool
/// that takes it.
const SCHEMA_TOOL: &str = "json_schema_2020_12_tool";
const SCHEMA_ECHO_TOOL: &str = "json_schema_echo";
/// The revision spoken when the server still wants `initialize` and the suite names none.
const LEGACY_VERSION: &str = "2025-11-25";

/// A client for the official MCP conformance suite, on rmcp's client.
///
/// It discovers the server (falling back to initialize for older servers), lists the tools and
/// calls them, answering elicitations with their defaults and authorizing whenever the server
/// asks (headless). Exit status 0 on success. conformance/run.sh runs the suite against it.
#[derive(Parser)]
#[command(
    after_help = "Environment: RUST_LOG sets the log filter (default: tower_mcp_oauth=debug,conformance_rmcp_client=info); logs go to stderr."
)]
struct Args {
    #[command(flatten)]
    suite: conformance_common::SuiteArgs,
    /// Whose Streamable HTTP transport carries the messages.
    #[arg(long, value_enum, default_value_t = Transport::Ours)]
    transport: Transport,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    /// tower-mcp-oauth's `StreamableHttpTransport`.
    Ours,
    /// rmcp's `StreamableHttpClientTransport` over `TowerHttpClient`.
    Rmcp,
}

/// Answers what a server asks of the client: elicitations accepted with the schema's defaults
/// (or a value of the asked type). Sampling and roots, deprecated by SEP-2577, are not offered.
struct Handler {
    info: ClientConfig,
}

impl Handler {
    /// A handler offering `legacy_version` to servers that want `initialize`.
    fn new(legacy_version: ProtocolVersion) -> anyhow::Result<Self> {
        let capabilities: ClientCapabilities = serde_json::from_value(json!({"elicitation": {}}))?;
        let info = ClientConfig::new(
            capabilities,
            Implementation::new(
                "tower-mcp-oauth-conformance-rmcp",
                env!("CARGO_PKG_VERSION"),
            ),
        )
        .with_protocol_version(legacy_version);
        Ok(Self { info })
    }
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let ElicitRequestParams::FormElicitationParams {
            requested_schema, ..
        } = request
        else {
            return Ok(ElicitResult::new(ElicitationAction::Decline));
        };
        let schema = serde_json::to_value(requested_schema)
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(sample_object(Some(&schema))))
    }
}

type Client = RunningService<RoleClient, Handler>;

/// A revision the suite names, as rmcp knows it.
fn protocol_version(version: &str) -> anyhow::Result<ProtocolVersion> {
    serde_json::from_value(json!(version))
        .with_context(|| format!("unknown protocol version {version}"))
}

/// Discovery first, falling back to `initialize` when the server's answer says it is older
/// than 2026-07-28.
fn discover_or_initialize() -> ClientLifecycleMode {
    ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        legacy_version: None,
    }
}

/// Connects to `url`, offering `legacy_version` to a server that wants `initialize`.
async fn connect(
    state: OAuthState,
    url: &str,
    transport: Transport,
    legacy_version: ProtocolVersion,
    lifecycle: ClientLifecycleMode,
) -> anyhow::Result<Client> {
    let stack = OAuthLayer::new(state).layer(hyper_client());
    let handler = Handler::new(legacy_version)?;
    let client = match transport {
        Transport::Ours => {
            let transport = StreamableHttpTransport::new(stack, StreamableHttpConfig::new(url));
            handler.serve_with_lifecycle(transport, lifecycle).await?
        }
        Transport::Rmcp => {
            let transport = StreamableHttpClientTransport::with_client(
                TowerHttpClient::new(stack),
                StreamableHttpClientTransportConfig::with_uri(url),
            );
            handler.serve_with_lifecycle(transport, lifecycle).await?
        }
    };
    Ok(client)
}

fn is_unexpected_discover_answer(error: &anyhow::Error) -> bool {
    matches!(
        error.downcast_ref::<ClientInitializeError>(),
        Some(ClientInitializeError::ExpectedInitResult(Some(_)))
    )
}

async fn call_tool(client: &Client, name: &str, arguments: Value) -> anyhow::Result<()> {
    let Value::Object(arguments) = arguments else {
        return Err(anyhow!("{name}: the arguments are not an object"));
    };
    let result = client
        .call_tool(CallToolRequestParams::new(name.to_owned()).with_arguments(arguments))
        .await
        .with_context(|| format!("calling {name}"))?;
    tracing::info!(tool = %name, result = %json!(result), "called");
    Ok(())
}

/// Lists the tools and calls each with a value for every argument.
async fn call_every_tool(client: &Client) -> anyhow::Result<()> {
    for tool in client.list_all_tools().await? {
        let schema = json!({"inputSchema": tool.input_schema.as_ref()});
        call_tool(client, &tool.name, sample_arguments(&schema)).await?;
    }
    Ok(())
}

/// Acts out `scenario` on a connected client.
async fn act(client: &Client, scenario: &str, context: Option<&Value>) -> anyhow::Result<()> {
    match scenario {
        // Discovery itself is the test; the tools show requests after it carry the metadata.
        "request-metadata" | "json-schema-ref-no-deref" => {
            client.list_all_tools().await?;
        }
        "http-custom-headers" => {
            client.list_all_tools().await?;
            for (name, arguments) in context_tool_calls(context) {
                call_tool(client, &name, arguments).await?;
            }
        }
        // Hand the focal tool's input schema back, verbatim, to the echo tool.
        "json-schema-2020-12-preservation" => {
            let tools = client.list_all_tools().await?;
            let focal = tools
                .iter()
                .find(|tool| tool.name == SCHEMA_TOOL)
                .ok_or_else(|| anyhow!("the server lists no {SCHEMA_TOOL}"))?;
            let schema = Value::Object(focal.input_schema.as_ref().clone());
            call_tool(client, SCHEMA_ECHO_TOOL, json!({"schema": schema})).await?;
        }
        "http-standard-headers" => {
            if let Some(tool) = client.list_all_tools().await?.first() {
                let schema = json!({"inputSchema": tool.input_schema.as_ref()});
                call_tool(client, &tool.name, sample_arguments(&schema)).await?;
            }
            if let Some(resource) = client.list_all_resources().await?.first() {
                client
                    .read_resource(ReadResourceRequestParams::new(resource.uri.clone()))
                    .await?;
            }
            if let Some(prompt) = client.list_all_prompts().await?.first() {
                client
                    .get_prompt(GetPromptRequestParams::new(prompt.name.clone()))
                    .await?;
            }
        }
        // initialize, tools_call, the auth scenarios, elicitation defaults, request state, SSE
        // retry and the invalid tool headers: list the tools and call each one kept.
        _ => call_every_tool(client).await?,
    }
    Ok(())
}

async fn run(Args { suite, transport }: Args) -> anyhow::Result<()> {
    let scenario = suite.scenario.unwrap_or_default();
    let url = &suite.server_url;
    tracing::info!(%scenario, server_url = %url, "starting");
    let context = conformance_common::parse_context(suite.context.as_deref())?;
    let config = conformance_common::config_from_context(context.as_ref())?;
    let state = OAuthState::new(url, Some(config)).await?;
    let legacy_version = protocol_version(match suite.protocol_version.as_deref() {
        Some(version) if version < "2026-07-28" => version,
        _ => LEGACY_VERSION,
    })?;
    let discover = discover_or_initialize();
    let connected = connect(
        state.clone(),
        url,
        transport,
        legacy_version.clone(),
        discover,
    );
    let client = match connected.await {
        Ok(client) => client,
        // Some older servers answer any method they do not know, `server/discover` included,
        // with an empty result; rmcp's lifecycle takes that as fatal rather than as a legacy
        // server. Such a server is one: connect again, initializing.
        Err(error) if is_unexpected_discover_answer(&error) => {
            tracing::info!("server/discover got a result that is no discovery: initializing");
            let initialize = ClientLifecycleMode::Initialize;
            connect(state, url, transport, legacy_version, initialize).await?
        }
        Err(error) => return Err(error),
    };
    let outcome = act(&client, &scenario, context.as_ref()).await;
    client.cancel().await.context("closing the client")?;
    outcome
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    conformance_common::log_to_stderr("tower_mcp_oauth=debug,conformance_rmcp_client=info");
    conformance_common::exit_code(run(args).await)
}
