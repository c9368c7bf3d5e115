//! README's recipes: README shows `examples/recipes.rs` as it is, and each recipe runs end to end
//! here against the crate's own client or servers. Recipe (d), the desktop bridge, runs in
//! `mcp-oauth/tests/cli_bridge.rs`.
#![cfg(all(
    feature = "authorization-server",
    feature = "rmcp",
    feature = "rmcp-server",
    feature = "jwt",
    feature = "axum"
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
    for name in ["a", "b", "c", "e"] {
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
