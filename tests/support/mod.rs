//! What the integration tests share: the loopback server and hyper client, the demo peers from
//! `examples/support`, and the helpers more than one test binary needs. Each test binary loads
//! it as `mod support;`.
// Each test binary uses a different part of this module, so the rest would warn as unused.
#![allow(dead_code, unreachable_pub, unused_imports)]

#[cfg(feature = "authorization-server")]
pub mod auth_server;
#[cfg(feature = "client")]
pub mod client;
pub mod exchange_harness;
pub mod forward_proxy;
#[cfg(all(feature = "authorization-server", feature = "jwt"))]
pub mod links;
pub mod mcp;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(all(feature = "authorization-server", feature = "jwt"))]
pub mod upstream_idp;

mod common;
pub use common::*;

#[path = "../../examples/support/demo_server.rs"]
pub mod demo_server;
#[path = "../../examples/support/jwt_issuer.rs"]
pub mod jwt_issuer;
// The example app loads its own copy of the tools, as the examples need it to.
#[cfg(all(
    feature = "authorization-server",
    feature = "rmcp",
    feature = "rmcp-server",
    feature = "jwt",
    feature = "downstream"
))]
mod approving;
#[cfg(feature = "server")]
#[allow(clippy::duplicate_mod)]
#[path = "../../examples/support/mcp_tools.rs"]
pub mod mcp_tools;
#[cfg(all(
    feature = "authorization-server",
    feature = "rmcp",
    feature = "rmcp-server",
    feature = "jwt",
    feature = "downstream"
))]
#[path = "../../examples/support/oauth_server_app.rs"]
pub mod oauth_server_app;
#[cfg(all(
    feature = "authorization-server",
    feature = "rmcp",
    feature = "rmcp-server",
    feature = "jwt",
    feature = "downstream"
))]
pub use approving::approving_server;
