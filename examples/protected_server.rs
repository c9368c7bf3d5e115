//! Protect an MCP server with the identity provider you already run (Keycloak, Auth0, Entra, …).
//!
//! An rmcp MCP server at `/mcp` (Streamable HTTP; tools `echo` and `whoami`) behind
//! `RequireBearer`, trusting an external authorization server, and serving its RFC 9728
//! protected-resource metadata.
//!
//! ```text
//! # JWT access tokens, keys found through the issuer's metadata:
//! cargo run --example protected_server -- --issuer https://auth.example.com/realms/mcp
//! # Opaque tokens, checked by RFC 7662 introspection:
//! cargo run --example protected_server -- \
//!     --introspection-url https://auth.example.com/introspect --client-id rs --client-secret s3cret \
//!     --issuer https://auth.example.com
//! ```
//!
//! `--help` lists every flag.

#[path = "support/dpop_choice.rs"]
mod dpop_choice;
#[path = "support/mcp_tools.rs"]
mod mcp_tools;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::bail;
use clap::{ArgGroup, Parser};
use dpop_choice::DpopChoice;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tower_mcp_oauth::server::{
    IntrospectionVerifier, JwtVerifier, ProtectedResource, TokenVerifier,
};

/// Protect an MCP server with the identity provider you already run (Keycloak, Auth0, Entra, …).
///
/// An MCP server at /mcp on 127.0.0.1 (Streamable HTTP; tools echo and whoami) behind
/// RequireBearer, trusting an external authorization server, and serving its RFC 9728
/// protected-resource metadata. Give --issuer for JWT access tokens, checked against the keys its
/// metadata names (found lazily: the server starts while the identity provider is down and
/// answers 503 until it is up), or --introspection-url with --client-id and --client-secret for
/// opaque tokens checked by RFC 7662 introspection.
#[derive(Parser)]
// A repeated flag takes its last value, as the hand-written parser did.
#[command(
    args_override_self = true,
    group(ArgGroup::new("verifier").required(true).multiple(true).args(["issuer", "introspection_url"])),
    after_help = "Environment: RUST_LOG sets the log filter (default: info)."
)]
struct Args {
    /// The authorization server's issuer URL: JWTs are checked against its keys (unless
    /// --introspection-url is given), and the metadata names it.
    #[arg(long, value_name = "URL")]
    issuer: Option<String>,
    /// Check opaque tokens at this RFC 7662 introspection endpoint instead of as JWTs.
    #[arg(long, value_name = "URL", requires_all = ["client_id", "client_secret"])]
    introspection_url: Option<String>,
    /// This server's client id at the introspection endpoint.
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,
    /// This server's client secret at the introspection endpoint.
    #[arg(long, value_name = "SECRET")]
    client_secret: Option<String>,
    /// The port to listen on, on 127.0.0.1; 0 picks a free one.
    #[arg(long, value_name = "N", default_value_t = 8000)]
    port: u16,
    /// The resource URL tokens must be issued for [default: http://127.0.0.1:{port}/mcp].
    #[arg(long, value_name = "URL")]
    resource: Option<String>,
    /// A scope every token must have; repeatable.
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// How DPoP-bound tokens (RFC 9449) are taken; the metadata and the challenges say so, so
    /// clients bind their tokens only when this server takes them.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = DpopChoice::Accepted)]
    dpop: DpopChoice,
}

/// What the server is told to do, beside its verifier.
struct Settings {
    resource: String,
    issuer: Option<String>,
    scopes: Vec<String>,
    dpop: DpopChoice,
}

/// Serves the MCP server and its metadata behind `verifier`; returns when the server stops.
async fn serve<V: TokenVerifier>(
    listener: tokio::net::TcpListener,
    verifier: V,
    settings: Settings,
) -> anyhow::Result<()> {
    let Settings {
        resource,
        issuer,
        scopes,
        dpop,
    } = settings;
    // One description makes both the bearer layer and the metadata that advertises it.
    let mut protected = ProtectedResource::new(resource.clone(), verifier)?
        .required_scopes(scopes)
        .resource_name("tower-mcp-oauth protected server")
        .configure_layer(|layer| dpop.apply(layer, |policy| policy));
    if let Some(issuer) = issuer {
        protected = protected.authorization_server(issuer);
    }
    let mcp = StreamableHttpService::new(
        || Ok(mcp_tools::Tools::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let app = protected.router(mcp);
    println!("MCP server:                  {resource}");
    println!(
        "protected resource metadata: {}",
        protected.metadata_service().url()
    );
    // TCP_NODELAY: SSE answers are written in pieces; with Nagle, each later piece would wait
    // for the client's delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port))).await?;
    let port = listener.local_addr()?.port();
    let resource = args
        .resource
        .unwrap_or_else(|| format!("http://127.0.0.1:{port}/mcp"));
    let settings = Settings {
        resource: resource.clone(),
        issuer: args.issuer.clone(),
        scopes: args.scopes,
        dpop: args.dpop,
    };
    match (args.introspection_url, args.issuer) {
        (Some(endpoint), _) => {
            let (Some(id), Some(secret)) = (args.client_id, args.client_secret) else {
                bail!("--introspection-url needs --client-id and --client-secret");
            };
            let verifier = IntrospectionVerifier::new(&endpoint, id, secret, resource)?;
            serve(listener, verifier, settings).await
        }
        (None, Some(issuer)) => {
            // Lazily: the server starts even when the identity provider is down, answers 503
            // with Retry-After meanwhile, and recovers by itself once it is up.
            let verifier = JwtVerifier::builder(&issuer, &resource).discover_lazily()?;
            serve(listener, verifier, settings).await
        }
        (None, None) => bail!("give --issuer URL (JWT) or --introspection-url URL (opaque tokens)"),
    }
}
