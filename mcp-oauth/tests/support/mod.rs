//! What the bridge's tests share: the library's test support (`tests/support` at the
//! repository's root, loaded file by file, since its feature gates name the library's features)
//! and a stdio peer for the bridge.
// Each test binary uses a different part of this module, so the rest would warn as unused.
#![allow(dead_code, unreachable_pub, unused_imports)]

pub mod modern;
pub mod stdio;
pub mod ts_sdk;

#[path = "../../../tests/support/common.rs"]
mod common;
pub use common::*;

#[path = "../../../tests/support/approving.rs"]
mod approving;
pub use approving::approving_server;
#[path = "../../../tests/support/auth_server.rs"]
pub mod auth_server;
#[path = "../../../tests/support/forward_proxy.rs"]
pub mod forward_proxy;
#[path = "../../../tests/support/mcp.rs"]
pub mod mcp;

#[path = "../../../examples/support/jwt_issuer.rs"]
pub mod jwt_issuer;
/// The example's tools, which the shared MCP support names with `rmcp-server` on.
#[cfg(feature = "rmcp-server")]
#[allow(clippy::duplicate_mod)]
#[path = "../../../examples/support/mcp_tools.rs"]
pub mod mcp_tools;
#[path = "../../../examples/support/oauth_server_app.rs"]
pub mod oauth_server_app;
