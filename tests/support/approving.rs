//! The example authorization server for tests that sign in without a consent page.

use super::oauth_server_app;

/// The `mcp_oauth_server` example on a free loopback port, approving every sign-in at once
/// (no consent page), otherwise as `options` say.
pub async fn approving_server(options: oauth_server_app::Options) -> oauth_server_app::Running {
    oauth_server_app::start(oauth_server_app::Options {
        port: 0,
        auto_approve: true,
        ..options
    })
    .await
    .unwrap()
}
