//! README's recipes, whole: each `recipe_*` function is what README shows (`tests/readme_recipes.rs`
//! checks the two agree, then runs each recipe end to end against the crate's own client or
//! servers).
//!
//! ```text
//! cargo run --example recipes -- self-contained                       # (c) an MCP server that is its own authorization server
//! cargo run --example recipes -- client http://127.0.0.1:8000/mcp     # (a) a client calling its tools
//! cargo run --example recipes -- server --issuer https://idp.example.com --port 8001   # (b)
//! UPSTREAM_CLIENT_SECRET=… cargo run --example recipes -- sign-in-with-your-idp \
//!     --issuer https://idp.example.com --client-id mcp-server                     # (e)
//! ```
// A recipe shows the least a reader needs: no Default beside new().
#![allow(dead_code, clippy::new_without_default)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::{Extension, RequestState};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientConfig, ContentBlock,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler, ServiceExt};
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt as _};
use tower_mcp_oauth::authorization_server::{
    ApprovalPolicy, AuthorizationServer, AuthorizationServerConfig, ConsentPage, SealingKey,
    UpstreamSignIn,
};
use tower_mcp_oauth::client::{
    ClientRegistration, FileStore, LoopbackHandler, OAuthConfig, OAuthLayer, OAuthState,
    RetryTransient, TokenEndpointAuthMethod,
};
use tower_mcp_oauth::downstream::accounts::{
    AccountError, ConfirmUser, LinkedAccounts, MemoryAccountVault, ThirdParty,
};
use tower_mcp_oauth::downstream::{tool_error, Caller, Downstream, TokenExchange};
use tower_mcp_oauth::http::hyper_client;
use tower_mcp_oauth::http::HttpClient;
use tower_mcp_oauth::server::{scopes_meta, AuthInfo, JwtVerifier, McpScopes, ProtectedResource};
use tower_mcp_oauth::transport::{StreamableHttpConfig, StreamableHttpTransport};

// recipe (a) begin
/// Signs in on the first 401 (in the browser; tokens kept in `store` for the next run),
/// lists the server's tools and calls `whoami`; the tool names and the answer.
pub async fn recipe_client(url: &str, store: &Path) -> anyhow::Result<(Vec<String>, String)> {
    let config = OAuthConfig::new()
        .handler(LoopbackHandler::bind().await?)
        .store(FileStore::new(store));
    let state = OAuthState::new(url, Some(config)).await?;
    let http = ServiceBuilder::new()
        // Retries a 429, a 503 saying Retry-After or a refused connection (more for GET);
        // never a sign-in.
        .layer(RetryLayer::new(RetryTransient::new(2)))
        // Attaches the token, refreshes it, signs in on a 401, steps up on a 403.
        .layer(OAuthLayer::new(state))
        // Each HTTP exchange; a sign-in waits for the user whatever the timeout.
        .timeout(Duration::from_secs(30))
        .service(hyper_client());
    let transport = StreamableHttpTransport::new(http, StreamableHttpConfig::new(url));
    let client = ClientConfig::default().serve(transport).await?;
    let tools = client.list_tools(Default::default()).await?.tools;
    let answer = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await?;
    client.cancel().await?;
    let names = tools.iter().map(|tool| tool.name.to_string()).collect();
    Ok((names, text_of(&answer)))
}
// recipe (a) end

fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|block| block.as_text().map(|t| t.text.clone()))
        .collect()
}

// recipe (b) begin
/// The MCP server's tools: `whoami` reads the caller from the request `RequireBearer` let in.
#[derive(Clone)]
pub struct Tools {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Tools {
    /// The tools, routed.
    pub fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "Who the access token speaks for")]
    async fn whoami(
        &self,
        Extension(request): Extension<http::request::Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = request.extensions.get::<AuthInfo>();
        let subject = caller
            .and_then(|info| info.subject.clone())
            .unwrap_or_default();
        Ok(CallToolResult::success(vec![ContentBlock::text(subject)]))
    }

    #[tool(
        description = "Forget everything (needs the mcp:admin scope)",
        meta = scopes_meta(["mcp:admin"])
    )]
    async fn reset(&self) -> Result<CallToolResult, ErrorData> {
        Ok(CallToolResult::success(vec![ContentBlock::text("reset")]))
    }
}

#[tool_handler]
impl ServerHandler for Tools {}

/// The MCP server at `resource` (its URL), trusting the identity provider `issuer` for tokens:
/// every call needs `mcp:tools`, `reset` also `mcp:admin`. Serve the router on the resource's
/// host and port.
pub fn recipe_protected_server(issuer: &str, resource: &str) -> anyhow::Result<axum::Router> {
    // The keys come from the issuer's metadata, fetched when first needed.
    let verifier = JwtVerifier::builder(issuer, resource).discover_lazily()?;
    // Each tool's scopes, as its `scopes_meta` declares them: required per call, shown in
    // `tools/list` only to callers who hold them, and listed in the metadata.
    let tool_scopes = McpScopes::new()
        .from_rmcp_tools(&Tools::new().tool_router.list_all())
        .filter_lists(true);
    let protected = ProtectedResource::new(resource, verifier)?
        .authorization_server(issuer)
        .required_scopes(["mcp:tools"])
        .mcp_scopes(tool_scopes);
    let mcp = StreamableHttpService::new(
        || Ok(Tools::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    // The MCP route behind the bearer and scope checks, and the metadata that points clients
    // to `issuer`.
    Ok(protected.router(mcp))
}
// recipe (b) end

// recipe (c) begin
/// An MCP server that is its own authorization server, on `listener`: metadata, registration,
/// the sign-in (`approval` decides who the user is: a consent page, your own login), tokens, and
/// the MCP route at `/mcp` whose tokens it checks in process.
pub async fn recipe_self_contained(
    listener: tokio::net::TcpListener,
    approval: impl ApprovalPolicy,
) -> anyhow::Result<()> {
    let base = format!("http://{}", listener.local_addr()?);
    let resource = format!("{base}/mcp");
    let authorization_server = AuthorizationServer::new(
        AuthorizationServerConfig::new(&base)?
            .resource(&resource)
            .scopes(["mcp:tools", "offline_access"])
            .default_scopes(["mcp:tools"])
            .approval_policy(approval),
    )?;
    let mcp = StreamableHttpService::new(
        || Ok(Tools::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let protected = authorization_server
        .protected_resource(&resource)?
        .required_scopes(["mcp:tools"]);
    let app = authorization_server.router().merge(protected.router(mcp));
    axum::serve(listener, app).await?;
    Ok(())
}
// recipe (c) end

// recipe (f) begin
/// Tools that call another API (a CRM at `crm`) as their caller: the caller's token is
/// exchanged for one to the CRM (RFC 8693) at the authorization server, never passed through.
#[derive(Clone)]
pub struct CrmTools {
    tool_router: ToolRouter<Self>,
    exchange: TokenExchange,
    crm: String,
}

#[tool_router(router = tool_router)]
impl CrmTools {
    /// The tools, exchanging at `issuer` as the MCP server's own confidential client there.
    pub fn new(issuer: &str, client_id: &str, secret: &str, crm: &str) -> anyhow::Result<Self> {
        let client = ClientRegistration::confidential(
            client_id,
            secret,
            TokenEndpointAuthMethod::ClientSecretBasic,
        );
        Ok(Self {
            tool_router: Self::tool_router(),
            exchange: TokenExchange::new(issuer, client)?,
            crm: crm.to_owned(),
        })
    }

    #[tool(description = "The caller's contacts, from the CRM")]
    async fn contacts(
        &self,
        Extension(request): Extension<http::request::Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        // Who called, as RequireBearer verified it; a refusal becomes an error the client shows.
        let caller = Caller::from_extensions(&request.extensions)?;
        let target = Downstream::resource(&self.crm).scopes(["crm:read"]);
        let crm = self
            .exchange
            .on_behalf_of(caller, target, HttpClient::new());
        let call = http::Request::get(format!("{}/contacts", self.crm)).body(Default::default());
        let call = call.map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let answer = crm.oneshot(call).await.map_err(tool_error)?;
        let text = String::from_utf8_lossy(answer.body()).into_owned();
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]))
    }
}

#[tool_handler]
impl ServerHandler for CrmTools {}
// recipe (f) end

// recipe (g) begin
/// A tool that calls GitHub's API as its caller, with the caller's own GitHub account: the
/// first call asks the user to link it in their browser (URL-mode elicitation), later calls
/// take the token from the vault (refreshed when due).
#[derive(Clone)]
pub struct GithubTools {
    tool_router: ToolRouter<Self>,
    accounts: LinkedAccounts,
    api: String,
}

/// The linked accounts: GitHub (register `accounts.redirect_uri()` there), users confirmed at
/// the MCP server's authorization server `issuer` (register `accounts.confirm_redirect_uri()`
/// for `confirm_client` there), tokens sealed with a key all replicas share.
pub fn recipe_linked_accounts(
    base: &str,
    issuer: &str,
    resource: &str,
    (github_client, github_secret): (&str, &str),
    (confirm_client, confirm_secret): (&str, &str),
    sealing_key: &[u8; 32],
) -> anyhow::Result<LinkedAccounts> {
    let verifier = JwtVerifier::builder(issuer, resource).discover_lazily()?;
    let accounts = LinkedAccounts::builder(
        base,
        MemoryAccountVault::new(),
        SealingKey::new(sealing_key),
    )
    .provider(ThirdParty::github(github_client).client_secret_post(github_secret))
    .confirm_user(ConfirmUser::new(
        issuer,
        confirm_client,
        confirm_secret,
        resource,
        verifier,
    ))
    .build()?;
    Ok(accounts)
}

#[tool_router(router = tool_router)]
impl GithubTools {
    /// The tools, calling GitHub's API at `api` (`https://api.github.com`).
    pub fn new(accounts: LinkedAccounts, api: &str) -> Self {
        let api = api.to_owned();
        Self {
            tool_router: Self::tool_router(),
            accounts,
            api,
        }
    }

    #[tool(description = "Your login at GitHub")]
    async fn github_login(
        &self,
        Extension(request): Extension<http::request::Parts>,
        RequestState(state): RequestState,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = request.extensions.get::<AuthInfo>();
        let caller = caller.ok_or_else(|| ErrorData::invalid_request("no caller", None))?;
        // `state`: a 2026-07-28 retry after the link, which waits for it to complete.
        let linked = self
            .accounts
            .access_token_after(caller, "github", state.as_deref());
        let token = match linked.await {
            Ok(token) => token,
            // `-32042` at 2025-11-25, an `input_required` result at 2026-07-28.
            Err(AccountError::LinkRequired(link)) => return link.into_tool_response(&context),
            Err(other) => return Err(other.into()),
        };
        let call = http::Request::get(format!("{}/user", self.api))
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", token.expose()),
            )
            .body(Default::default());
        let call = call.map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let answer = HttpClient::new().send(call).await;
        let answer =
            answer.map_err(|_| ErrorData::internal_error("GitHub is unavailable", None))?;
        let text = String::from_utf8_lossy(answer.body()).into_owned();
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
    }
}

#[tool_handler]
impl ServerHandler for GithubTools {}
// recipe (g) end

// recipe (e) begin
/// Recipe (c) for the users of your identity provider: it signs them in, our consent page
/// names the MCP client, and the MCP client gets our tokens (the provider's are kept sealed for
/// your tools). Register the printed redirect URI as the client's at the provider.
pub async fn recipe_sign_in_with_your_idp(
    listener: tokio::net::TcpListener,
    idp_issuer: &str,
    client_id: &str,
    client_secret: &str,
) -> anyhow::Result<()> {
    let base = format!("http://{}", listener.local_addr()?);
    let resource = format!("{base}/mcp");
    let sign_in = UpstreamSignIn::openid(idp_issuer, client_id)
        .client_secret(client_secret)
        .allow_email_domains(["example.com"])
        .keep_tokens(SealingKey::new(&SealingKey::generate_bytes()));
    let authorization_server = AuthorizationServer::new(
        AuthorizationServerConfig::new(&base)?
            .resource(&resource)
            .scopes(["mcp:tools"])
            .upstream_sign_in(sign_in),
    )?;
    let redirect_uri = authorization_server.upstream_redirect_uri();
    println!("redirect URI: {}", redirect_uri.unwrap_or_default());
    let mcp = StreamableHttpService::new(
        || Ok(Tools::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let protected = authorization_server
        .protected_resource(&resource)?
        .required_scopes(["mcp:tools"]);
    let app = authorization_server.router().merge(protected.router(mcp));
    axum::serve(listener, app).await?;
    Ok(())
}
// recipe (e) end

/// README's recipes, to run by hand.
#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    recipe: Recipe,
}

#[derive(Subcommand)]
enum Recipe {
    /// (a) Sign in to the MCP server at URL, list its tools and call whoami.
    Client {
        url: String,
        /// Where the tokens are kept between runs.
        #[arg(long, default_value = "credentials.json")]
        store: std::path::PathBuf,
    },
    /// (b) An MCP server on 127.0.0.1:PORT/mcp trusting the identity provider ISSUER.
    Server {
        #[arg(long)]
        issuer: String,
        #[arg(long, default_value_t = 8001)]
        port: u16,
    },
    /// (c) An MCP server that is its own authorization server, on 127.0.0.1:PORT, with a
    /// consent page.
    SelfContained {
        #[arg(long, default_value_t = 8000)]
        port: u16,
    },
    /// (e) Recipe (c) signing users in at the OpenID Connect provider ISSUER, where it is the
    /// client CLIENT_ID with the secret from UPSTREAM_CLIENT_SECRET.
    SignInWithYourIdp {
        #[arg(long)]
        issuer: String,
        #[arg(long)]
        client_id: String,
        #[arg(long, env = "UPSTREAM_CLIENT_SECRET", hide_env_values = true)]
        client_secret: String,
        #[arg(long, default_value_t = 8000)]
        port: u16,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Args::parse().recipe {
        Recipe::Client { url, store } => {
            let (tools, whoami) = recipe_client(&url, &store).await?;
            println!("tools: {}", tools.join(", "));
            println!("whoami: {whoami}");
        }
        Recipe::Server { issuer, port } => {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            let resource = format!("http://{}/mcp", listener.local_addr()?);
            println!("MCP server: {resource}");
            axum::serve(listener, recipe_protected_server(&issuer, &resource)?).await?;
        }
        Recipe::SelfContained { port } => {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            println!("MCP server: http://{}/mcp", listener.local_addr()?);
            recipe_self_contained(listener, ConsentPage::new("demo-user")).await?;
        }
        Recipe::SignInWithYourIdp {
            issuer,
            client_id,
            client_secret,
            port,
        } => {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            println!("MCP server: http://{}/mcp", listener.local_addr()?);
            recipe_sign_in_with_your_idp(listener, &issuer, &client_id, &client_secret).await?;
        }
    }
    Ok(())
}
