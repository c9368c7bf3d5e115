//! The self-contained MCP server of `examples/mcp_oauth_server.rs`, also started in-process by
//! the quickstart and the tests: the embedded authorization server and an rmcp MCP server
//! (tools `echo`, `add`, `whoami`, `crm_contacts`) behind `RequireBearer`, on Streamable HTTP (`/mcp`) and
//! legacy HTTP+SSE (`/sse` and `/message`), with its protected-resource metadata.
#![allow(dead_code, unreachable_pub)]

#[path = "dpop_choice.rs"]
pub mod dpop_choice;
#[path = "linked_demo.rs"]
mod linked_demo;
#[path = "mcp_tools.rs"]
mod mcp_tools;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use linked_demo::{linked_demo, with_linked, LinkedDemo};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tower::ServiceBuilder;
use tower_mcp_oauth::authorization_server::{
    AuthorizationServer, AuthorizationServerConfig, AutoApprove, ConsentPage, DownstreamApi,
    TokenExchangePolicy, TokenFormat,
};
use tower_mcp_oauth::downstream::TokenExchange;
use tower_mcp_oauth::dpop::DpopNonces;
use tower_mcp_oauth::metadata::{ClientMetadata, ProtectedResourceMetadata};
use tower_mcp_oauth::server::LegacySseServer;
use tower_mcp_oauth::server::{
    AuthInfo, FilterMcpListsLayer, IntrospectionVerifier, JwtVerifier, McpScopes,
    RequireBearerLayer, RequireMcpScopesLayer, ResourceMetadataService, TokenVerifier,
};

/// The scopes the server knows; `mcp:tools` is required on every MCP route, `mcp:admin` by the
/// tool `server_stats`.
pub const SCOPES: [&str; 3] = ["mcp:tools", "offline_access", "mcp:admin"];

#[derive(Debug, Clone)]
pub struct Options {
    pub host: IpAddr,
    /// 0 picks a free port.
    pub port: u16,
    /// The public URL, the issuer and the resource: defaults to `http://{host}:{port}`. Off
    /// loopback the consent page is refused unless `auto_approve` is chosen, since it lets
    /// anyone who reaches it approve as the demo user.
    pub issuer: Option<String>,
    /// Approve without showing the consent page (development and tests).
    pub auto_approve: bool,
    /// Opaque access tokens checked by introspection, instead of JWTs checked from the JWKS.
    pub opaque_tokens: bool,
    pub access_token_ttl: Duration,
    /// Serve https with this certificate instead of http.
    pub tls: Option<Tls>,
    /// For development: fetch Client ID Metadata Documents from loopback and private hosts.
    pub allow_private_client_metadata_hosts: bool,
    /// Also serve the conformance suite's diagnostic tools over Streamable HTTP.
    pub conformance_tools: bool,
    /// Scope-filtered discovery: each caller's `tools/list` shows only the tools its token
    /// can call (off: every tool, each with its scope hint).
    pub filter_tools: bool,
    /// How the MCP endpoints take DPoP-bound tokens (the authorization server offers DPoP
    /// whatever this says; clients bind only where the resource takes it).
    pub dpop: dpop_choice::DpopChoice,
    /// Other resources (RFC 8707) the authorization server issues tokens for, beside its own
    /// MCP server: other processes' URLs, such as `protected_server`'s.
    pub other_resources: Vec<String>,
    /// Scopes granted beside [`SCOPES`] (those the other resources' tools need).
    pub extra_scopes: Vec<String>,
    /// Ask for DPoP nonces, at the token endpoint and at the MCP endpoints.
    pub dpop_nonces: bool,
    /// A PostgreSQL URL: keep the authorization server's state (clients, codes, tokens,
    /// consents, one-time ids) there, so several replicas serve one deployment.
    pub store_url: Option<String>,
    /// The ES256 signing key (PKCS#8 PEM), the same for every replica; DPoP nonces are keyed
    /// from it too. Default: a new key per process.
    pub signing_key_pem: Option<String>,
    /// Offer the device authorization grant (RFC 8628).
    pub device_grant: bool,
    /// The least time between a device's polls.
    pub device_poll_interval: Duration,
    /// Workload identity issuers whose tokens the JWT-bearer grant takes.
    pub workload_issuers: Vec<tower_mcp_oauth::authorization_server::WorkloadIssuer>,
    /// Sign users in at this identity provider instead of approving as the demo user.
    pub upstream: Option<Upstream>,
    /// Serve a demo CRM at `{base}/crm` and the tool `crm_contacts`, which calls it as the
    /// caller by token exchange (RFC 8693) at this server (on by default).
    pub downstream_demo: bool,
}

/// Where users sign in. `Debug` shows neither the secret nor the key.
#[derive(Clone)]
pub struct Upstream {
    pub provider: UpstreamProvider,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// Admit only emails in these domains.
    pub email_domains: Vec<String>,
    /// Seals the users' upstream tokens (the same for every replica); default: a new key per
    /// process.
    pub token_key: Option<[u8; 32]>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("provider", &self.provider)
            .field("client_id", &self.client_id)
            .field("email_domains", &self.email_domains)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub enum UpstreamProvider {
    /// An OpenID Connect issuer, discovered.
    OpenId(String),
    /// GitHub at this web address (https://github.com, or a GitHub Enterprise Server).
    GitHub(String),
}

impl Upstream {
    fn sign_in(&self) -> anyhow::Result<tower_mcp_oauth::authorization_server::UpstreamSignIn> {
        use tower_mcp_oauth::authorization_server::{OAuth2Profile, UpstreamSignIn};
        let mut sign_in = match &self.provider {
            UpstreamProvider::OpenId(issuer) => UpstreamSignIn::openid(issuer, &self.client_id),
            UpstreamProvider::GitHub(web) => {
                let web = web.trim_end_matches('/');
                let profile = if web == "https://github.com" {
                    OAuth2Profile::github()
                } else {
                    // GitHub Enterprise Server: the API under /api/v3.
                    OAuth2Profile::new(
                        "GitHub",
                        web,
                        &format!("{web}/login/oauth/authorize"),
                        &format!("{web}/login/oauth/access_token"),
                        &format!("{web}/api/v3/user"),
                    )?
                    .scopes(["read:user"])
                };
                UpstreamSignIn::oauth2(profile, &self.client_id)
            }
        };
        if let Some(secret) = &self.client_secret {
            sign_in = match self.provider {
                // GitHub takes the secret in the form body.
                UpstreamProvider::GitHub(_) => sign_in.client_secret_post(secret.as_str()),
                UpstreamProvider::OpenId(_) => sign_in.client_secret(secret.as_str()),
            };
        }
        if !self.email_domains.is_empty() {
            sign_in = sign_in.allow_email_domains(self.email_domains.clone());
        }
        let key = self
            .token_key
            .unwrap_or_else(tower_mcp_oauth::authorization_server::SealingKey::generate_bytes);
        Ok(sign_in.keep_tokens(tower_mcp_oauth::authorization_server::SealingKey::new(&key)))
    }
}

/// A certificate to serve https with.
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert_chain_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// A private CA to trust (for the server's own JWKS and introspection calls, and for client
    /// metadata documents), beside the webpki roots.
    pub extra_roots_pem: Option<Vec<u8>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8000,
            issuer: None,
            auto_approve: false,
            opaque_tokens: false,
            access_token_ttl: Duration::from_secs(3600),
            tls: None,
            allow_private_client_metadata_hosts: false,
            conformance_tools: false,
            filter_tools: false,
            dpop: dpop_choice::DpopChoice::Accepted,
            other_resources: Vec::new(),
            extra_scopes: Vec::new(),
            dpop_nonces: false,
            store_url: None,
            signing_key_pem: None,
            device_grant: true,
            device_poll_interval: Duration::from_secs(5),
            workload_issuers: Vec::new(),
            upstream: None,
            downstream_demo: true,
        }
    }
}

pub struct Running {
    /// The public URL: the issuer and the resource identifier.
    pub base: String,
    /// Where this process listens (differs from `base` behind a proxy or balancer).
    pub listening_url: String,
    pub mcp_url: String,
    pub sse_url: String,
    pub authorization_server: AuthorizationServer,
    /// The resource server's client id and secret for `/introspect`, with opaque tokens.
    pub introspection_client: Option<(String, tower_mcp_oauth::Secret)>,
    /// The Streamable HTTP sessions (a test ends them to play a server that forgot them).
    pub sessions: Arc<LocalSessionManager>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// DPoP nonces every replica accepts: keyed from the shared signing key when there is one.
fn dpop_nonces(options: &Options) -> DpopNonces {
    let step = Duration::from_secs(300);
    match &options.signing_key_pem {
        Some(pem) => {
            use sha2::Digest;
            let secret = sha2::Sha256::new()
                .chain_update(b"tower-mcp-oauth example: DPoP nonces\0")
                .chain_update(pem.as_bytes())
                .finalize();
            DpopNonces::with_secret(&secret, step)
        }
        None => DpopNonces::new(step),
    }
}

/// What replicas share through PostgreSQL: the store, and the one-time ids (DPoP proofs,
/// client assertions) seen by any of them.
type Shared = (
    Arc<dyn tower_mcp_oauth::authorization_server::AuthorizationStore>,
    Arc<dyn tower_mcp_oauth::dpop::ReplayCache>,
);

#[cfg(feature = "postgres")]
async fn shared_state(url: &str) -> anyhow::Result<Shared> {
    use tower_mcp_oauth::authorization_server::PostgresAuthorizationStore;
    use tower_mcp_oauth::postgres::{PostgresPool, PostgresReplayCache};
    let pool = PostgresPool::connect(url)
        .await
        .context("cannot reach the --store database")?;
    let store = PostgresAuthorizationStore::new(pool.clone()).await?;
    let replay = PostgresReplayCache::new(pool).await?;
    Ok((Arc::new(store), Arc::new(replay)))
}

#[cfg(not(feature = "postgres"))]
async fn shared_state(_: &str) -> anyhow::Result<Shared> {
    anyhow::bail!("--store needs the example built with the postgres feature (--features postgres)")
}

/// The demo CRM the `crm_contacts` tool calls: its URL, the MCP server's exchange, and the
/// HTTP client to reach it.
type CrmDemo = (String, TokenExchange, tower_mcp_oauth::http::HttpClient);

/// The demo CRM: `/crm/contacts` answers with the contacts of whoever its token speaks for,
/// taking only tokens for itself (exchanged ones, never the MCP server's).
fn crm_app(authorization_server: &AuthorizationServer, crm: &str) -> axum::Router {
    let contacts = axum::routing::get(|request: http::Request<axum::body::Body>| async move {
        let info = request.extensions().get::<AuthInfo>().cloned();
        let info = info.unwrap_or_default();
        axum::Json(serde_json::json!({
            "owner": info.subject,
            "acting": info.claims.get("act").and_then(|act| act.get("sub")),
            "scopes": info.scopes,
            "contacts": ["Ada Lovelace", "Grace Hopper"],
        }))
    });
    axum::Router::new()
        .route("/crm/contacts", contacts)
        .layer(RequireBearerLayer::new(authorization_server.local_verifier(crm)).resource(crm))
}

/// The tools with `crm_contacts`, where the including crate has the features it needs (the
/// bridge's tests include this file too, with features of their own).
#[cfg(all(feature = "downstream", feature = "rmcp-server"))]
fn with_crm(tools: mcp_tools::Tools, (crm, exchange, http): CrmDemo) -> mcp_tools::Tools {
    tools.with_downstream(exchange, crm, http)
}

#[cfg(not(all(feature = "downstream", feature = "rmcp-server")))]
fn with_crm(tools: mcp_tools::Tools, _: CrmDemo) -> mcp_tools::Tools {
    tools
}

async fn protected_app<V: TokenVerifier + Clone>(
    verifier: V,
    resource: &str,
    authorization_server: &AuthorizationServer,
    options: &Options,
    shared: Option<&Shared>,
    sessions: Arc<LocalSessionManager>,
    (crm, linked): (Option<CrmDemo>, Option<LinkedDemo>),
) -> anyhow::Result<axum::Router> {
    let bearer = options.dpop.apply(
        RequireBearerLayer::new(verifier)
            .resource(resource)
            .required_scopes(["mcp:tools"]),
        |mut policy| {
            if options.dpop_nonces {
                policy = policy.nonces(dpop_nonces(options));
            }
            if let Some((_, replay)) = shared {
                policy = policy.replay_cache(replay.clone());
            }
            policy
        },
    );
    // Built once: at 2026-07-28 every request gets a service of its own, and building the tool
    // router (the schemas) per request would cost more than the request.
    let mut tools = if options.conformance_tools {
        mcp_tools::Tools::with_conformance_diagnostics()
    } else {
        mcp_tools::Tools::new()
    };
    let mut crm_routes = None;
    if let Some(demo) = crm {
        crm_routes = Some(crm_app(authorization_server, &demo.0));
        tools = with_crm(tools, demo);
    }
    let mut link_pages = None;
    if let Some(demo) = linked {
        let (with, pages) = with_linked(tools, demo);
        tools = with;
        link_pages = Some(pages);
    }
    // Each tool's scopes, declared once on the tool (`scopes_meta`): enforced, shown in lists,
    // and advertised in the metadata.
    let tool_scopes = McpScopes::new()
        .from_rmcp_tools(&tools.listed())
        .filter_lists(options.filter_tools);
    let mut scopes_supported: Vec<String> = Vec::new();
    for scope in ["mcp:tools".to_owned()]
        .into_iter()
        .chain(tool_scopes.declared_scopes())
        .chain(["offline_access".to_owned()])
    {
        if !scopes_supported.contains(&scope) {
            scopes_supported.push(scope);
        }
    }
    let mut document = ProtectedResourceMetadata {
        resource: resource.to_owned(),
        authorization_servers: vec![authorization_server.issuer().to_owned()],
        scopes_supported: Some(scopes_supported),
        bearer_methods_supported: Some(vec!["header".into()]),
        resource_name: Some("tower-mcp-oauth example server".into()),
        jwks_uri: None,
        ..Default::default()
    };
    bearer.describe(&mut document);
    let metadata = ResourceMetadataService::new(document)?;
    let bearer = bearer.resource_metadata(metadata.url());
    let streamable = StreamableHttpService::new(
        move || Ok(tools.clone()),
        sessions,
        StreamableHttpServerConfig::default(),
    );
    let legacy = LegacySseServer::new(mcp_tools::Tools::new, "/sse", "/message");
    let mut app = authorization_server
        .router()
        .nest_service(
            "/mcp",
            ServiceBuilder::new()
                .layer(bearer.clone())
                .layer(RequireMcpScopesLayer::new(tool_scopes.clone()))
                .layer(FilterMcpListsLayer::new(tool_scopes.clone()))
                .service(streamable),
        )
        .route_service(
            "/sse",
            ServiceBuilder::new()
                .layer(bearer.clone())
                .layer(FilterMcpListsLayer::new(tool_scopes.clone()))
                .service(legacy.clone()),
        )
        .route_service(
            "/message",
            ServiceBuilder::new()
                .layer(bearer)
                .layer(RequireMcpScopesLayer::new(tool_scopes))
                .service(legacy),
        );
    for path in metadata.paths() {
        app = app.route_service(path, metadata.clone());
    }
    if let Some(crm) = crm_routes {
        app = app.merge(crm);
    }
    if let Some(pages) = link_pages {
        app = app.merge(pages);
    }
    Ok(app)
}

/// Binds, builds and serves; returns once the server is listening.
pub async fn start(options: Options) -> anyhow::Result<Running> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(options.host, options.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", options.host, options.port))?;
    let address = listener.local_addr()?;
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let issuer = options
        .issuer
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{address}"));
    let extra_roots = options.tls.as_ref().and_then(|t| t.extra_roots_pem.clone());
    // The server's own calls (JWKS, introspection) trust what its clients trust.
    let http = match &extra_roots {
        Some(pem) => tower_mcp_oauth::http::HttpClient::with_roots(pem)?,
        None => tower_mcp_oauth::http::HttpClient::new(),
    };
    // One resource for both transports, so the server's public origin: clients accept a
    // resource only as a prefix of the URL they connect to (`/mcp` or `/sse`).
    let base = url::Url::parse(&issuer)
        .context("the issuer is not a URL")?
        .origin()
        .ascii_serialization();
    let resource = base.clone();
    let mut config = AuthorizationServerConfig::new(&issuer)?
        .resource(&resource)
        .scopes(
            SCOPES
                .iter()
                .map(|s| s.to_string())
                .chain(options.extra_scopes.clone()),
        )
        .default_scopes(["mcp:tools"])
        .access_token_ttl(options.access_token_ttl)
        // The device page has no upstream sign-in yet.
        .device_grant(options.device_grant && options.upstream.is_none())
        .device_poll_interval(options.device_poll_interval);
    config = if let Some(upstream) = &options.upstream {
        anyhow::ensure!(
            !options.auto_approve,
            "--auto-approve and upstream sign-in do not go together: the provider says who the user is"
        );
        config.upstream_sign_in(upstream.sign_in()?)
    } else if options.auto_approve {
        config.approval_policy(AutoApprove::new("demo-user"))
    } else if tower_mcp_oauth::http::is_loopback_host(&url::Url::parse(&issuer)?) {
        config.approval_policy(ConsentPage::new("demo-user"))
    } else {
        anyhow::bail!(
            "the example's consent page lets anyone who reaches it approve: off loopback, put \
             your own ApprovalPolicy in (or pass --auto-approve knowingly)"
        );
    };
    for other in &options.other_resources {
        config = config.resource(other);
    }
    if options.opaque_tokens {
        config = config.token_format(TokenFormat::Opaque);
    }
    for issuer in &options.workload_issuers {
        config = config.trust_workload_issuer(issuer.clone());
    }
    if options.dpop_nonces {
        config = config.dpop_nonces(dpop_nonces(&options));
    }
    if let Some(pem) = &options.signing_key_pem {
        config = config.signing_key(
            tower_mcp_oauth::authorization_server::SigningKey::from_pkcs8_pem(pem)
                .context("--signing-key is not an ES256 key in PKCS#8 PEM")?,
        );
    }
    let shared = match &options.store_url {
        Some(url) => Some(shared_state(url).await?),
        None => None,
    };
    if let Some((store, replay)) = &shared {
        config = config
            .store(store.clone())
            .dpop_replay_cache(replay.clone())
            .assertion_replay_cache(replay.clone());
    }
    if options.allow_private_client_metadata_hosts {
        config = config.allow_private_client_metadata_hosts(true);
    }
    if let Some(pem) = &extra_roots {
        config = config.client_metadata_root_certificates(pem)?;
    }
    // The demo CRM's policy names the MCP server's own confidential client, registered first
    // (its id is made at registration) in the store both servers share.
    let crm = format!("{base}/crm");
    let exchanger = if options.downstream_demo {
        let (id, secret) = AuthorizationServer::new(config.clone())?
            .register_confidential_client(ClientMetadata {
                client_name: Some("this MCP server, calling the CRM for its users".into()),
                grant_types: vec!["urn:ietf:params:oauth:grant-type:token-exchange".into()],
                ..Default::default()
            })
            .await?;
        config = config.token_exchange(
            TokenExchangePolicy::new().downstream(
                DownstreamApi::new(&crm)
                    .scopes(["crm:read"])
                    .exchanged_by(&id, &resource),
            ),
        );
        Some((id, secret))
    } else {
        None
    };
    let authorization_server = AuthorizationServer::new(config)?;
    let issuer = authorization_server.issuer().to_owned();
    let crm_demo = match exchanger {
        Some((id, secret)) => {
            let client = tower_mcp_oauth::client::ClientRegistration::confidential(
                id,
                secret.expose(),
                tower_mcp_oauth::client::TokenEndpointAuthMethod::ClientSecretBasic,
            );
            let exchange =
                TokenExchange::with_token_endpoint(&issuer, &format!("{issuer}/token"), client)?
                    .http(http.clone());
            Some((crm, exchange, http.clone()))
        }
        None => None,
    };
    // The demo third party, where the MCP server's issuer is on loopback (its pages and the
    // second authorization server are loopback http).
    let linked = if options.downstream_demo
        && tower_mcp_oauth::http::is_loopback_host(&url::Url::parse(&issuer)?)
        && options.upstream.is_none()
    {
        linked_demo(
            &base,
            &resource,
            &authorization_server,
            options.auto_approve,
            &http,
        )
        .await?
    } else {
        None
    };
    let mut introspection_client = None;
    let sessions = Arc::new(LocalSessionManager::default());
    let app = if options.opaque_tokens {
        // The resource server introspects as a confidential client of its own.
        let (client_id, secret) = authorization_server
            .register_confidential_client(ClientMetadata {
                client_name: Some("resource server".into()),
                grant_types: vec!["client_credentials".into()],
                ..Default::default()
            })
            .await?;
        introspection_client = Some((client_id.clone(), secret.clone()));
        let verifier = IntrospectionVerifier::new(
            &format!("{issuer}/introspect"),
            client_id,
            secret,
            &resource,
        )?
        .http(http.clone());
        protected_app(
            verifier,
            &resource,
            &authorization_server,
            &options,
            shared.as_ref(),
            sessions.clone(),
            (crm_demo.clone(), linked.clone()),
        )
        .await?
    } else {
        let verifier = JwtVerifier::builder(&issuer, &resource)
            .jwks_url(format!("{issuer}/jwks"))
            .http(http)
            .build()?;
        protected_app(
            verifier,
            &resource,
            &authorization_server,
            &options,
            shared.as_ref(),
            sessions.clone(),
            (crm_demo.clone(), linked.clone()),
        )
        .await?
    };
    let task = match &options.tls {
        Some(tls) => tokio::spawn(serve_tls(listener, app, tls_acceptor(tls)?)),
        None => {
            // TCP_NODELAY: SSE answers are written in pieces; with Nagle, each later piece would
            // wait for the client's delayed ACK.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            // With the peer's address: the device page limits wrong codes per address.
            let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
            tokio::spawn(async move { axum::serve(listener, app).await })
        }
    };
    Ok(Running {
        listening_url: format!("{scheme}://{address}"),
        mcp_url: format!("{base}/mcp"),
        sse_url: format!("{base}/sse"),
        base,
        authorization_server,
        introspection_client,
        sessions,
        task,
    })
}

pub fn tls_acceptor(tls: &Tls) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(&tls.cert_chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("the certificate chain is not PEM")?;
    let key = PrivateKeyDer::from_pem_slice(&tls.key_pem).context("the key is not PEM")?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` over TLS (HTTP/1.1) until the listener fails.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    acceptor: tokio_rustls::TlsAcceptor,
) -> std::io::Result<()> {
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}
