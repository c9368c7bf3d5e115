//! The demo third party of the example server (standing in for GitHub), where the including
//! crate has the features it needs (`downstream`, `rmcp-server`, `authorization-server`); without
//! them, nothing.
#![allow(dead_code, unreachable_pub)]

pub use demo::*;

#[cfg(all(
    feature = "downstream",
    feature = "rmcp-server",
    feature = "authorization-server"
))]
mod demo {
    use std::net::Ipv4Addr;

    use tower::ServiceBuilder;
    use tower_mcp_oauth::authorization_server::{
        AuthorizationServer, AuthorizationServerConfig, AutoApprove, ConsentPage,
    };
    use tower_mcp_oauth::metadata::ClientMetadata;
    use tower_mcp_oauth::server::{AuthInfo, RequireBearerLayer};

    use super::super::mcp_tools;

    /// The demo third party (standing in for GitHub): a second authorization server on its own
    /// loopback port with an API that says whose token it got, and the MCP server's linked accounts
    /// there, confirming users at `authorization_server`.
    pub async fn linked_demo(
        base: &str,
        resource: &str,
        authorization_server: &AuthorizationServer,
        auto_approve: bool,
        http: &tower_mcp_oauth::http::HttpClient,
    ) -> anyhow::Result<Option<LinkedDemo>> {
        use tower_mcp_oauth::authorization_server::SealingKey;
        use tower_mcp_oauth::downstream::accounts::{
            ConfirmUser, LinkedAccounts, MemoryAccountVault, ThirdParty,
        };
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let github = format!("http://{}", listener.local_addr()?);
        let api = format!("{github}/api/user");
        let config = AuthorizationServerConfig::new(&github)?
            .resource(&api)
            .scopes(["read:user"]);
        let config = if auto_approve {
            config.approval_policy(AutoApprove::new("octocat"))
        } else {
            config.approval_policy(ConsentPage::new("octocat"))
        };
        let third_party = AuthorizationServer::new(config)?;
        let (github_client, github_secret) = third_party
            .register_confidential_client(ClientMetadata {
                client_name: Some("tower-mcp-oauth example server".into()),
                redirect_uris: vec![format!("{base}/accounts/callback")],
                grant_types: vec!["authorization_code".into(), "refresh_token".into()],
                ..Default::default()
            })
            .await?;
        let user = axum::routing::get(|request: http::Request<axum::body::Body>| async move {
            let info = request
                .extensions()
                .get::<AuthInfo>()
                .cloned()
                .unwrap_or_default();
            axum::Json(serde_json::json!({ "login": info.subject, "scopes": info.scopes }))
        });
        let app = third_party.router().route_service(
            "/api/user",
            ServiceBuilder::new()
                .layer(RequireBearerLayer::new(third_party.local_verifier(&api)).resource(&api))
                .service(axum::Router::new().route("/api/user", user)),
        );
        // Serves until the runtime ends, as the example server does.
        tokio::spawn(async move { axum::serve(listener, app).await });
        let (confirm_client, confirm_secret) = authorization_server
            .register_confidential_client(ClientMetadata {
                client_name: Some("this MCP server's account links".into()),
                redirect_uris: vec![format!("{base}/accounts/confirmed")],
                grant_types: vec!["authorization_code".into()],
                ..Default::default()
            })
            .await?;
        let issuer = authorization_server.issuer();
        let accounts = LinkedAccounts::builder(
            base,
            MemoryAccountVault::new(),
            SealingKey::new(&SealingKey::generate_bytes()),
        )
        .provider(
            ThirdParty::discover("demo-github", &github, github_client)
                .client_secret(github_secret)
                .scopes(["read:user"])
                .display_name("Demo GitHub")
                .http_client(http.clone()),
        )
        .confirm_user(
            ConfirmUser::new(
                issuer,
                confirm_client,
                confirm_secret,
                resource,
                authorization_server.local_verifier(resource),
            )
            .http_client(http.clone()),
        )
        .build()?;
        Ok(Some((accounts, api, http.clone())))
    }

    /// The demo third party's part: the users' linked accounts, its API's URL, the HTTP client.
    pub type LinkedDemo = (
        tower_mcp_oauth::downstream::accounts::LinkedAccounts,
        String,
        tower_mcp_oauth::http::HttpClient,
    );

    /// The tools with `demo_github_login` and the link's pages.
    pub fn with_linked(
        tools: mcp_tools::Tools,
        (accounts, api, http): LinkedDemo,
    ) -> (mcp_tools::Tools, axum::Router) {
        let pages = accounts.router();
        (tools.with_linked_accounts(accounts, api, http), pages)
    }
}

#[cfg(not(all(
    feature = "downstream",
    feature = "rmcp-server",
    feature = "authorization-server"
)))]
mod demo {
    use tower_mcp_oauth::authorization_server::AuthorizationServer;

    use super::super::mcp_tools;

    pub async fn linked_demo(
        _: &str,
        _: &str,
        _: &AuthorizationServer,
        _: bool,
        _: &tower_mcp_oauth::http::HttpClient,
    ) -> anyhow::Result<Option<LinkedDemo>> {
        Ok(None)
    }

    pub type LinkedDemo = NoLinkedDemo;

    /// Without the features the demo third party needs.
    #[derive(Clone)]
    pub struct NoLinkedDemo;

    pub fn with_linked(tools: mcp_tools::Tools, _: LinkedDemo) -> (mcp_tools::Tools, axum::Router) {
        (tools, axum::Router::new())
    }
}
