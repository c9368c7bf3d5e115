//! README's recipes: README shows `examples/recipes.rs` as it is, and each recipe runs end to end
//! here against the crate's own client or servers. Recipe (d), the desktop bridge, runs in
//! `mcp-oauth/tests/cli_bridge.rs`.
#![cfg(all(
    feature = "authorization-server",
    feature = "rmcp",
    feature = "rmcp-server",
    feature = "jwt",
    feature = "axum",
    feature = "downstream"
))]

mod support;

#[path = "../examples/recipes.rs"]
#[allow(unreachable_pub)]
mod recipes;

use rmcp::model::ClientConfig;
use rmcp::ServiceExt;
use serde_json::json;
use support::client::headless;
use support::mcp::{call, text};
use support::{bind, oauth_server_app};
use tower::ServiceBuilder;
use tower_mcp_oauth::authorization_server::AutoApprove;
use tower_mcp_oauth::client::{OAuthConfig, OAuthLayer, OAuthState};
use tower_mcp_oauth::transport::{StreamableHttpConfig, StreamableHttpTransport};

/// The code between `// recipe (x) begin` and `// recipe (x) end` in `examples/recipes.rs`.
fn recipe(source: &str, name: &str) -> String {
    let begin = format!("// recipe ({name}) begin\n");
    let end = format!("// recipe ({name}) end");
    let start = source.find(&begin).expect("the recipe begins") + begin.len();
    let stop = source[start..].find(&end).expect("the recipe ends") + start;
    source[start..stop].to_owned()
}

#[test]
fn readme_shows_each_recipe_as_it_runs() {
    let readme = include_str!("../README.md");
    // Hidden doctest lines (`# use …`) are not what the reader sees.
    let shown: String = readme
        .lines()
        .filter(|line| !(line.starts_with("# ") || *line == "#"))
        .map(|line| format!("{line}\n"))
        .collect();
    let source = include_str!("../examples/recipes.rs");
    for name in ["a", "b", "c", "e", "f", "g"] {
        let code = recipe(source, name);
        assert!(
            shown.contains(&code),
            "README's recipe ({name}) differs from examples/recipes.rs:\n{code}"
        );
    }
}

#[tokio::test]
async fn recipe_a_signs_in_once_and_calls_recipe_c() {
    let (listener, base) = bind().await;
    tokio::spawn(recipes::recipe_self_contained(
        listener,
        AutoApprove::new("alice"),
    ));
    let dir = tempfile::tempdir().unwrap();
    // The only test here that opens a browser, so the only one to read BROWSER.
    std::env::set_var("BROWSER", support::following_browser(dir.path()));
    let store = dir.path().join("credentials.json");
    let url = format!("{base}/mcp");

    let (tools, whoami) = recipes::recipe_client(&url, &store).await.unwrap();
    for tool in ["whoami", "reset"] {
        assert!(tools.contains(&tool.to_owned()), "{tools:?}");
    }
    assert_eq!(whoami, "alice");
    // The next run finds its tokens in the store: no browser.
    let (_, again) = recipes::recipe_client(&url, &store).await.unwrap();
    assert_eq!(again, "alice");
    assert_eq!(support::sign_ins(dir.path()), 1);
}

#[tokio::test]
async fn recipe_b_trusts_mcp_oauth_server_as_its_identity_provider() {
    // Two processes' worth: the example server issues tokens for recipe (b)'s resource.
    let (listener, resource_base) = bind().await;
    let resource = format!("{resource_base}/mcp");
    let identity_provider = support::approving_server(oauth_server_app::Options {
        other_resources: vec![resource.clone()],
        extra_scopes: vec!["mcp:admin".into()],
        ..Default::default()
    })
    .await;
    let app = recipes::recipe_protected_server(&identity_provider.base, &resource).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let state = OAuthState::new(&resource, Some(OAuthConfig::new().handler(headless())))
        .await
        .unwrap();
    let stack = ServiceBuilder::new()
        .layer(OAuthLayer::new(state.clone()))
        .service(tower_mcp_oauth::http::hyper_client());
    let transport = StreamableHttpTransport::new(stack, StreamableHttpConfig::new(&resource));
    let client = ClientConfig::default().serve(transport).await.unwrap();
    let whoami = client.call_tool(call("whoami", json!({}))).await.unwrap();
    assert_eq!(text(&whoami.content), "demo-user");
    let tokens = state.credentials().unwrap();
    assert!(
        !tokens.scopes.contains(&"mcp:admin".to_owned()),
        "{:?}",
        tokens.scopes
    );
    // Both servers take DPoP, so the token is bound.
    assert_eq!(tokens.token_type, "DPoP");
    // `reset` needs mcp:admin: a 403, a step-up, then the answer.
    let reset = client.call_tool(call("reset", json!({}))).await.unwrap();
    assert_eq!(text(&reset.content), "reset");
    assert!(state
        .credentials()
        .unwrap()
        .scopes
        .contains(&"mcp:admin".to_owned()));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn recipe_e_signs_users_in_at_their_identity_provider() {
    use support::upstream_idp::{
        authorize_through_upstream, jwt_payload, register_public_client, Browser, Idp, CLIENT_ID,
        CLIENT_SECRET, UPSTREAM_ACCESS_TOKEN,
    };
    let idp = Idp::start().await;
    let (listener, base) = bind().await;
    let issuer = idp.issuer().to_owned();
    tokio::spawn(async move {
        recipes::recipe_sign_in_with_your_idp(listener, &issuer, CLIENT_ID, CLIENT_SECRET).await
    });
    let client = register_public_client(&base).await;
    let mut browser = Browser::default();
    let resource = format!("{base}/mcp");
    let tokens = authorize_through_upstream(&base, &resource, &client, &mut browser).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(
        jwt_payload(access)["sub"],
        format!("{}#alice", idp.issuer())
    );
    assert!(!tokens.to_string().contains(UPSTREAM_ACCESS_TOKEN));

    // A user outside example.com is not let in.
    idp.next_user("mallory", "mallory@evil.test");
    let other = register_public_client(&base).await;
    let (refused, _) = support::upstream_idp::answer_through_upstream(
        &base,
        &resource,
        &other,
        &mut Browser::default(),
    )
    .await;
    assert_eq!(
        refused.status,
        http::StatusCode::FORBIDDEN,
        "{}",
        refused.text()
    );
}

#[tokio::test]
async fn recipe_f_calls_the_crm_as_its_caller_by_token_exchange() {
    use std::sync::Arc;
    use tower_mcp_oauth::authorization_server::{
        AuthorizationServer, AuthorizationServerConfig, DownstreamApi, MemoryAuthorizationStore,
        TokenExchangePolicy,
    };
    use tower_mcp_oauth::server::{AuthInfo, JwtVerifier, ProtectedResource, RequireBearerLayer};

    // The identity provider (the embedded authorization server), with the MCP server's own
    // confidential client allowed to exchange its callers' tokens for the CRM.
    let (idp_listener, idp) = bind().await;
    let (mcp_listener, mcp_base) = bind().await;
    let (crm_listener, crm_base) = bind().await;
    let resource = format!("{mcp_base}/mcp");
    let crm = format!("{crm_base}/crm");
    let store = Arc::new(MemoryAuthorizationStore::new());
    let config = || {
        AuthorizationServerConfig::new(&idp)
            .unwrap()
            .resource(&resource)
            .scopes(["mcp:tools"])
            .approval_policy(AutoApprove::new("alice"))
            .store(store.clone())
    };
    let (mcp_client, secret) = AuthorizationServer::new(config())
        .unwrap()
        .register_confidential_client(tower_mcp_oauth::metadata::ClientMetadata {
            grant_types: vec!["urn:ietf:params:oauth:grant-type:token-exchange".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let policy = TokenExchangePolicy::new().downstream(
        DownstreamApi::new(&crm)
            .scopes(["crm:read"])
            .exchanged_by(&mcp_client, &resource),
    );
    let server = AuthorizationServer::new(config().token_exchange(policy)).unwrap();
    support::serve_on(idp_listener, server.router());

    // The CRM: tokens of the identity provider for its own audience only.
    let crm_tokens = JwtVerifier::builder(&idp, &crm).discover_lazily().unwrap();
    let contacts = axum::routing::get(|request: http::Request<axum::body::Body>| async move {
        let info = request.extensions().get::<AuthInfo>().cloned().unwrap();
        format!(
            "contacts of {} via {}",
            info.subject.clone().unwrap(),
            info.claims["act"]["sub"]
        )
    });
    let crm_app = axum::Router::new()
        .route("/crm/contacts", contacts)
        .layer(RequireBearerLayer::new(crm_tokens).resource(&crm));
    support::serve_on(crm_listener, crm_app);

    // The recipe's tools behind the MCP server's own bearer check.
    let tools = recipes::CrmTools::new(&idp, &mcp_client, secret.expose(), &crm).unwrap();
    let verifier = JwtVerifier::builder(&idp, &resource)
        .discover_lazily()
        .unwrap();
    let protected = ProtectedResource::new(&resource, verifier)
        .unwrap()
        .authorization_server(&idp)
        .required_scopes(["mcp:tools"]);
    let mcp = rmcp::transport::StreamableHttpService::new(
        move || Ok(tools.clone()),
        Arc::new(
            rmcp::transport::streamable_http_server::session::local::LocalSessionManager::default(),
        ),
        rmcp::transport::StreamableHttpServerConfig::default(),
    );
    support::serve_on(mcp_listener, protected.router(mcp));

    let state = OAuthState::new(&resource, Some(OAuthConfig::new().handler(headless())))
        .await
        .unwrap();
    let stack = ServiceBuilder::new()
        .layer(OAuthLayer::new(state))
        .service(tower_mcp_oauth::http::hyper_client());
    let transport = StreamableHttpTransport::new(stack, StreamableHttpConfig::new(&resource));
    let client = ClientConfig::default().serve(transport).await.unwrap();
    let answer = client.call_tool(call("contacts", json!({}))).await.unwrap();
    assert_eq!(
        text(&answer.content),
        format!("contacts of alice via \"{mcp_client}\"")
    );
    client.cancel().await.unwrap();
}
