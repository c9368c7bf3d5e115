//! The crate's client as the tests drive it: headless, redirecting to a port nobody listens on.

use tower::ServiceBuilder;
use tower_mcp_oauth::client::{HeadlessHandler, OAuth, OAuthConfig, OAuthLayer, OAuthState};
use url::Url;

use super::{hyper_client, HyperClient};

/// The redirect URI of headless clients: the handler reads the redirect, nothing listens there.
pub const CALLBACK: &str = "http://127.0.0.1:7/callback";

/// A handler that follows the authorization URL itself, as an auto-approving user would.
pub fn headless() -> HeadlessHandler {
    HeadlessHandler::new(Url::parse(CALLBACK).unwrap())
}

/// A client configuration that signs in headlessly.
pub fn headless_config() -> OAuthConfig {
    OAuthConfig::new().handler(headless())
}

/// A headless OAuth state for the MCP endpoint at `url`.
pub async fn headless_state(url: &str) -> OAuthState {
    OAuthState::new(url, Some(headless_config())).await.unwrap()
}

/// `OAuthLayer` with `state` over a plain hyper client.
pub fn oauth_service(state: OAuthState) -> OAuth<HyperClient> {
    ServiceBuilder::new()
        .layer(OAuthLayer::new(state))
        .service(hyper_client())
}

/// `OAuthLayer` over a plain hyper client, signing in headlessly to the MCP endpoint at `url`.
pub async fn oauth_stack(url: &str) -> OAuth<HyperClient> {
    oauth_service(headless_state(url).await)
}
