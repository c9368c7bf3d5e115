//! A self-contained MCP server: the embedded OAuth 2.1 authorization server and an rmcp MCP
//! server (tools `echo`, `add`, `whoami`) behind `RequireBearer`, in one process.
//!
//! ```text
//! cargo run --example mcp_oauth_server
//! ```
//!
//! Streamable HTTP at `/mcp`, legacy HTTP+SSE at `/sse` (messages to `/message`), the
//! authorization server at the origin (`/authorize` shows a consent page), the protected-resource
//! metadata at `/.well-known/oauth-protected-resource`.
//!
//! Flags (or environment variables): `--host IP` (`MCP_HOST`, default 127.0.0.1), `--port N`
//! (`MCP_PORT`, default 8000; 0 picks one), `--issuer URL` (`MCP_ISSUER`, default
//! `http://{host}:{port}`; the public URL when behind a proxy), `--auto-approve` (skip the
//! consent page), `--opaque-tokens` (introspection instead of JWTs), `--tls-cert PEM` with
//! `--tls-key PEM` (serve https; `--tls-ca PEM` also trusts a private CA). The consent page
//! approves as a demo user for anyone who reaches it, so it is only served on a loopback issuer.

#[path = "support/oauth_server_app.rs"]
mod oauth_server_app;

use anyhow::{bail, Context};
use oauth_server_app::Options;

fn parse_args() -> anyhow::Result<Options> {
    let mut options = Options::default();
    if let Ok(host) = std::env::var("MCP_HOST") {
        options.host = host.parse().context("MCP_HOST must be an IP address")?;
    }
    if let Ok(port) = std::env::var("MCP_PORT") {
        options.port = port.parse().context("MCP_PORT must be a port number")?;
    }
    options.issuer = std::env::var("MCP_ISSUER").ok();
    let (mut tls_cert, mut tls_key, mut tls_ca) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--host" => options.host = value()?.parse().context("--host takes an IP address")?,
            "--port" => options.port = value()?.parse().context("--port takes a number")?,
            "--issuer" => options.issuer = Some(value()?),
            "--auto-approve" => options.auto_approve = true,
            "--tls-cert" => tls_cert = Some(std::fs::read(value()?).context("--tls-cert")?),
            "--tls-key" => tls_key = Some(std::fs::read(value()?).context("--tls-key")?),
            "--tls-ca" => tls_ca = Some(std::fs::read(value()?).context("--tls-ca")?),
            "--opaque-tokens" => options.opaque_tokens = true,
            "--help" | "-h" => {
                println!("see the header of examples/mcp_oauth_server.rs for the flags");
                std::process::exit(0);
            }
            other => bail!("unknown flag {other}"),
        }
    }
    options.tls = match (tls_cert, tls_key, tls_ca) {
        (Some(cert_chain_pem), Some(key_pem), extra_roots_pem) => Some(oauth_server_app::Tls {
            cert_chain_pem,
            key_pem,
            extra_roots_pem,
        }),
        (None, None, None) => None,
        _ => bail!("https needs both --tls-cert and --tls-key"),
    };
    Ok(options)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let options = parse_args()?;
    let running = oauth_server_app::start(options.clone()).await?;
    let issuer = running.authorization_server.issuer().to_owned();
    println!("MCP server (Streamable HTTP):  {}", running.mcp_url);
    println!("MCP server (HTTP+SSE):        {}", running.sse_url);
    println!("authorization server:         {issuer}");
    println!("  metadata:                   {issuer}/.well-known/oauth-authorization-server");
    println!(
        "protected resource metadata:  {}/.well-known/oauth-protected-resource",
        running.base
    );
    println!(
        "approval:                     {}",
        if options.auto_approve {
            "automatic (--auto-approve)"
        } else {
            "consent page"
        }
    );
    println!(
        "access tokens:                {}",
        if options.opaque_tokens {
            "opaque, checked by introspection"
        } else {
            "ES256 JWTs, checked from the JWKS"
        }
    );
    println!(
        "try: cargo run --example oauth-client -- {}",
        running.mcp_url
    );
    running.task.await??;
    Ok(())
}
