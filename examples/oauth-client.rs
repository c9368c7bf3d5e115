//! An MCP client that authorizes through your browser, lists the server's tools and calls one.
//!
//! ```text
//! cargo run --example oauth-client --features rmcp -- https://mcp.example.com/mcp
//! cargo run --example oauth-client --features rmcp -- --transport sse https://mcp.example.com/sse
//! ```
//!
//! Flags: `--transport auto|streamable|sse` (default auto), `--tool NAME` (default: the first
//! tool), `--arg key=value` (repeatable), `--store PATH` (keep credentials across runs),
//! `--no-browser` (print the URL instead of opening it).

use anyhow::{bail, Context};
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::ServiceExt;
use serde_json::Value;
use tower::ServiceBuilder;
use tower_mcp_oauth::client::{FileStore, LoopbackHandler, OAuthConfig, OAuthLayer, OAuthState};
use tower_mcp_oauth::transport::{
    create_authorized_transport, LegacySseConfig, LegacySseTransport, RetryConfig,
    StreamableHttpConfig, StreamableHttpTransport,
};

#[derive(Default)]
struct Args {
    url: Option<String>,
    transport: String,
    tool: Option<String>,
    arguments: serde_json::Map<String, Value>,
    store: Option<String>,
    browser: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        transport: "auto".into(),
        browser: true,
        ..Default::default()
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--transport" => args.transport = it.next().context("--transport needs a value")?,
            "--tool" => args.tool = Some(it.next().context("--tool needs a name")?),
            "--arg" => {
                let pair = it.next().context("--arg needs key=value")?;
                let (key, value) = pair.split_once('=').context("--arg needs key=value")?;
                let value = serde_json::from_str(value).unwrap_or_else(|_| Value::from(value));
                args.arguments.insert(key.into(), value);
            }
            "--store" => args.store = Some(it.next().context("--store needs a path")?),
            "--no-browser" => args.browser = false,
            flag if flag.starts_with("--") => bail!("unknown flag {flag}"),
            url => args.url = Some(url.to_owned()),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = parse_args()?;
    let url = args
        .url
        .clone()
        .context("usage: oauth-client [flags] SERVER_URL")?;

    let mut config = OAuthConfig::new()
        .with_client_name("tower-mcp-oauth example client")
        .with_handler(LoopbackHandler::bind().await?.with_browser(args.browser));
    if let Some(path) = &args.store {
        config = config.with_store(FileStore::new(path));
    }
    let oauth_state = OAuthState::new(&url, Some(config)).await?;

    let client = match args.transport.as_str() {
        "auto" => {
            let transport =
                create_authorized_transport(url.clone(), oauth_state, Some(RetryConfig::default()))
                    .await?;
            ClientConfig::default().serve(transport).await?
        }
        "streamable" | "sse" => {
            let stack = ServiceBuilder::new()
                .layer(OAuthLayer::new(oauth_state))
                .service(tower_mcp_oauth::http::hyper_client());
            if args.transport == "sse" {
                let transport =
                    LegacySseTransport::connect(stack, LegacySseConfig::new(&url)).await?;
                ClientConfig::default().serve(transport).await?
            } else {
                let transport =
                    StreamableHttpTransport::new(stack, StreamableHttpConfig::new(&url));
                ClientConfig::default().serve(transport).await?
            }
        }
        other => bail!("--transport must be auto, streamable or sse, not {other}"),
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
        .clone()
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
        call = call.with_arguments(args.arguments.clone());
    }
    let result = client.call_tool(call).await?;
    println!(
        "{name} -> {}",
        serde_json::to_string_pretty(&result.content)?
    );
    client.cancel().await?;
    Ok(())
}
