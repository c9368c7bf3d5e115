//! A self-contained MCP server: the embedded OAuth 2.1 authorization server and an rmcp MCP
//! server (tools `echo`, `add`, `whoami`, `server_stats` (needs the `mcp:admin` scope), and
//! `crm_contacts`, which calls a demo CRM at `/crm` as the user by token exchange) behind
//! `RequireBearer`, in one process.
//!
//! ```text
//! cargo run --example mcp_oauth_server
//! ```
//!
//! Streamable HTTP at `/mcp`, legacy HTTP+SSE at `/sse` (messages to `/message`), the
//! authorization server at the origin (`/authorize` shows a consent page), the protected-resource
//! metadata at `/.well-known/oauth-protected-resource`.
//!
//! `--help` lists the flags and the environment variables (`MCP_HOST`, `MCP_PORT`,
//! `MCP_ISSUER`, `MCP_STORE_URL`). Replicas: the same `--issuer`, `--signing-key` and
//! `--store` for each (`--features postgres`).

#[path = "support/oauth_server_app.rs"]
mod oauth_server_app;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use oauth_server_app::dpop_choice::DpopChoice;
use oauth_server_app::Options;

/// A self-contained MCP server: the embedded OAuth 2.1 authorization server and an MCP server
/// (tools echo, add, whoami, server_stats) behind RequireBearer, in one process.
///
/// Streamable HTTP at /mcp, legacy HTTP+SSE at /sse (messages to /message), the authorization
/// server at the origin (/authorize shows a consent page), the protected-resource metadata at
/// /.well-known/oauth-protected-resource. The consent page approves as a demo user for anyone
/// who reaches it, so it is only served on a loopback issuer.
#[derive(Parser)]
// A repeated flag takes its last value, as the hand-written parser did.
#[command(
    args_override_self = true,
    after_help = "Environment: RUST_LOG sets the log filter (default: info)."
)]
struct Args {
    /// The address to listen on.
    #[arg(long, env = "MCP_HOST", value_name = "IP", default_value_t = Options::default().host)]
    host: IpAddr,
    /// The port to listen on; 0 picks a free one.
    #[arg(long, env = "MCP_PORT", value_name = "N", default_value_t = Options::default().port)]
    port: u16,
    /// The public URL (issuer and resource), when behind a proxy [default: http://{host}:{port}].
    #[arg(long, env = "MCP_ISSUER", value_name = "URL")]
    issuer: Option<String>,
    /// Approve without showing the consent page (development and tests).
    #[arg(long)]
    auto_approve: bool,
    /// Opaque access tokens checked by introspection, instead of ES256 JWTs checked from the JWKS.
    #[arg(long)]
    opaque_tokens: bool,
    /// Also serve the conformance suite's diagnostic tools (test_missing_capability,
    /// test_streaming_elicitation, test_logging_tool) over Streamable HTTP.
    #[arg(long)]
    conformance_tools: bool,
    /// Scope-filtered discovery: each caller's tools/list shows only the tools its token can
    /// call (server_stats needs mcp:admin). Off, every tool is listed with its scopes in
    /// `_meta`; a call without them gets 403 either way.
    #[arg(long)]
    filter_tools: bool,
    /// How the MCP endpoints take DPoP-bound tokens (RFC 9449); the metadata and challenges say
    /// so, and clients bind their tokens only where the resource takes them.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = DpopChoice::Accepted)]
    dpop: DpopChoice,
    /// Also issue tokens for this resource (RFC 8707), another process's MCP server URL, so
    /// this server is its identity provider (`protected_server --issuer <this issuer>`);
    /// repeatable.
    #[arg(long = "resource", value_name = "URL")]
    resources: Vec<String>,
    /// Also grant this scope (one the --resource servers' tools need); repeatable.
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// Ask DPoP clients for server nonces at the token endpoint and the MCP endpoints.
    #[arg(long)]
    dpop_nonces: bool,
    /// Serve https with this certificate chain (PEM file); needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM file) of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// With https, also trust this private CA (PEM file) for the server's own outgoing calls.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_ca: Option<PathBuf>,
    /// Keep the authorization server's state in PostgreSQL (postgres://user@host/db), so
    /// several replicas serve one deployment (needs --features postgres).
    #[arg(
        long,
        env = "MCP_STORE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    store: Option<String>,
    /// Sign tokens with this ES256 key (PKCS#8 PEM file), the same for every replica
    /// [default: a new key per process].
    #[arg(long, value_name = "PEM")]
    signing_key: Option<PathBuf>,
    /// Do not offer the device authorization grant (RFC 8628) to machines without a browser.
    #[arg(long)]
    no_device_grant: bool,
    /// Sign users in at this OpenID Connect provider (discovered from its issuer URL) instead
    /// of approving as a demo user; register the printed redirect URI there.
    #[arg(long, value_name = "URL", conflicts_with_all = ["upstream_github", "auto_approve"])]
    upstream_issuer: Option<String>,
    /// Sign users in with GitHub (an OAuth app), or a GitHub Enterprise Server at
    /// --upstream-github-url.
    #[arg(long, conflicts_with = "auto_approve")]
    upstream_github: bool,
    /// The web address of the GitHub to sign in with [default: https://github.com].
    #[arg(long, value_name = "URL", requires = "upstream_github")]
    upstream_github_url: Option<String>,
    /// This server's client id at the upstream provider.
    #[arg(long, value_name = "ID")]
    upstream_client_id: Option<String>,
    /// This server's client secret at the upstream provider.
    #[arg(
        long,
        env = "MCP_OAUTH_UPSTREAM_CLIENT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    upstream_client_secret: Option<String>,
    /// Admit only users whose email is in this domain and verified by the provider; repeatable.
    #[arg(long = "upstream-email-domain", value_name = "DOMAIN")]
    upstream_email_domains: Vec<String>,
    /// Seal the users' upstream tokens with this key (64 hex digits), the same for every
    /// replica [default: a new key per process].
    #[arg(
        long,
        env = "MCP_OAUTH_UPSTREAM_TOKEN_KEY",
        value_name = "HEX",
        hide_env_values = true
    )]
    upstream_token_key: Option<String>,
}

impl Args {
    fn into_options(self) -> anyhow::Result<Options> {
        let read = |flag: &str, path: &Path| {
            std::fs::read(path).with_context(|| format!("{flag} {}", path.display()))
        };
        // clap lets through both of --tls-cert and --tls-key or neither.
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(oauth_server_app::Tls {
                cert_chain_pem: read("--tls-cert", cert)?,
                key_pem: read("--tls-key", key)?,
                extra_roots_pem: match &self.tls_ca {
                    Some(ca) => Some(read("--tls-ca", ca)?),
                    None => None,
                },
            }),
            _ => None,
        };
        let provider = match (&self.upstream_issuer, self.upstream_github) {
            (Some(issuer), _) => Some(oauth_server_app::UpstreamProvider::OpenId(issuer.clone())),
            (None, true) => Some(oauth_server_app::UpstreamProvider::GitHub(
                self.upstream_github_url
                    .clone()
                    .unwrap_or_else(|| "https://github.com".into()),
            )),
            (None, false) => None,
        };
        let upstream = match provider {
            Some(provider) => Some(oauth_server_app::Upstream {
                provider,
                client_id: self
                    .upstream_client_id
                    .clone()
                    .context("upstream sign-in needs --upstream-client-id")?,
                client_secret: self.upstream_client_secret.clone(),
                email_domains: self.upstream_email_domains.clone(),
                token_key: match &self.upstream_token_key {
                    Some(hex) => Some(parse_key(hex).context("--upstream-token-key")?),
                    None => None,
                },
            }),
            None => None,
        };
        Ok(Options {
            upstream,
            host: self.host,
            port: self.port,
            issuer: self.issuer,
            auto_approve: self.auto_approve,
            opaque_tokens: self.opaque_tokens,
            conformance_tools: self.conformance_tools,
            filter_tools: self.filter_tools,
            dpop: self.dpop,
            other_resources: self.resources,
            extra_scopes: self.scopes,
            dpop_nonces: self.dpop_nonces,
            tls,
            store_url: self.store,
            device_grant: !self.no_device_grant,
            signing_key_pem: match &self.signing_key {
                Some(path) => Some(
                    String::from_utf8(read("--signing-key", path)?)
                        .context("--signing-key is not a PEM file")?,
                ),
                None => None,
            },
            ..Options::default()
        })
    }
}

/// 32 bytes from 64 hex digits.
fn parse_key(hex: &str) -> anyhow::Result<[u8; 32]> {
    let hex = hex.trim();
    anyhow::ensure!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "a key is 64 hex digits"
    );
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)?;
    }
    Ok(key)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let options = Args::parse().into_options()?;
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
    match running.authorization_server.upstream_redirect_uri() {
        Some(redirect_uri) => {
            println!("approval:                     sign-in upstream, then the consent page");
            println!("register this redirect URI at the identity provider:");
            println!("{redirect_uri}");
        }
        None => println!(
            "approval:                     {}",
            if options.auto_approve {
                "automatic (--auto-approve)"
            } else {
                "consent page"
            }
        ),
    }
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
