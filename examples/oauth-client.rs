//! An MCP client that authorizes through your browser, lists the server's tools and calls one.
//!
//! ```text
//! cargo run --example oauth-client --features rmcp -- https://mcp.example.com/mcp
//! cargo run --example oauth-client --features rmcp -- --transport sse https://mcp.example.com/sse
//! ```
//!
//! `--help` lists the flags and the environment variables.

use clap::{Parser, ValueEnum};
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::ServiceExt;
use serde_json::Value;
use tower::ServiceBuilder;
use tower_mcp_oauth::client::{
    ClientRegistration, FileStore, LoopbackHandler, OAuthConfig, OAuthLayer, OAuthState,
};
use tower_mcp_oauth::transport::{
    create_authorized_transport, LegacySseConfig, LegacySseTransport, RetryConfig,
    StreamableHttpConfig, StreamableHttpTransport,
};

/// An MCP client that authorizes through your browser, lists the server's tools and calls one.
///
/// When the server asks for authorization, it discovers the server's authorization server,
/// registers, and opens the browser on its consent page; a callback server on 127.0.0.1 takes the
/// answer. Then it lists the tools and calls one, printing the result.
#[derive(Parser)]
// A repeated flag takes its last value, as the hand-written parser did.
#[command(
    name = "oauth-client",
    args_override_self = true,
    after_help = "Environment:\n  RUST_LOG  the log filter (default: warn)\n  BROWSER   the browser to open (default: the system's)"
)]
struct Args {
    /// The MCP server's URL: its Streamable HTTP endpoint, or its /sse endpoint with --transport sse.
    #[arg(value_name = "SERVER_URL")]
    url: String,
    /// The MCP transport.
    #[arg(long, value_enum, default_value_t = Transport::Auto)]
    transport: Transport,
    /// The tool to call [default: the server's first tool].
    #[arg(long, value_name = "NAME")]
    tool: Option<String>,
    /// An argument of the call, repeatable; VALUE is read as JSON, else taken as a string.
    #[arg(long = "arg", value_name = "KEY=VALUE", value_parser = tool_argument)]
    arguments: Vec<(String, Value)>,
    /// Keep the credentials in this file across runs.
    #[arg(long, value_name = "PATH")]
    store: Option<String>,
    /// Print the authorization URL instead of opening a browser.
    #[arg(long)]
    no_browser: bool,
    /// A client registered with the authorization server ahead of time (identity providers
    /// without dynamic registration); a public client, its redirect http://127.0.0.1/callback
    /// on any port.
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,
    /// A scope to ask for instead of the discovered ones; repeatable.
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    /// Streamable HTTP, falling back to HTTP+SSE on 400, 404 or 405.
    Auto,
    /// Streamable HTTP only.
    Streamable,
    /// Legacy HTTP+SSE only.
    Sse,
}

fn tool_argument(pair: &str) -> Result<(String, Value), String> {
    let (key, value) = pair.split_once('=').ok_or("expected KEY=VALUE")?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::from(value));
    Ok((key.to_owned(), value))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let url = args.url;

    let mut config = OAuthConfig::new()
        .client_name("tower-mcp-oauth example client")
        .handler(
            LoopbackHandler::bind()
                .await?
                .open_browser(!args.no_browser),
        );
    if let Some(path) = &args.store {
        config = config.store(FileStore::new(path));
    }
    if let Some(id) = &args.client_id {
        config = config.client(ClientRegistration::public(id.clone()));
    }
    if !args.scopes.is_empty() {
        config = config.scopes(args.scopes.clone());
    }
    let oauth_state = OAuthState::new(&url, Some(config)).await?;

    let client = match args.transport {
        Transport::Auto => {
            let transport =
                create_authorized_transport(url.clone(), oauth_state, Some(RetryConfig::default()))
                    .await?;
            ClientConfig::default().serve(transport).await?
        }
        Transport::Streamable | Transport::Sse => {
            let stack = ServiceBuilder::new()
                .layer(OAuthLayer::new(oauth_state))
                .service(tower_mcp_oauth::http::hyper_client());
            if args.transport == Transport::Sse {
                let transport =
                    LegacySseTransport::connect(stack, LegacySseConfig::new(&url)).await?;
                ClientConfig::default().serve(transport).await?
            } else {
                let transport =
                    StreamableHttpTransport::new(stack, StreamableHttpConfig::new(&url));
                ClientConfig::default().serve(transport).await?
            }
        }
    };

    let tools = client.list_tools(Default::default()).await?;
    println!("tools:");
    for tool in &tools.tools {
        println!(
            "  {} — {}",
            tool.name,
            tool.description.as_deref().unwrap_or("")
        );
    }
    let name = match args
        .tool
        .or_else(|| tools.tools.first().map(|t| t.name.to_string()))
    {
        Some(name) => name,
        None => {
            println!("the server has no tools");
            return Ok(());
        }
    };
    let mut call = CallToolRequestParams::new(name.clone());
    if !args.arguments.is_empty() {
        // Collected into a map: a repeated key takes its last value.
        call = call.with_arguments(args.arguments.into_iter().collect());
    }
    let result = client.call_tool(call).await?;
    println!(
        "{name} -> {}",
        serde_json::to_string_pretty(&result.content)?
    );
    client.cancel().await?;
    Ok(())
}
