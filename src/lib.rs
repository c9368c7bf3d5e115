//! MCP authorization (OAuth 2.1) as tower layers.
//!
//! - [`client`]: discovery (RFC 9728, RFC 8414, OpenID Connect), registration (pre-registered,
//!   Client ID Metadata Documents, RFC 7591), the PKCE authorization-code flow, tokens with
//!   refresh, and credential stores. [`client::OAuthState`] is the step-by-step API and
//!   [`client::OAuthLayer`] the tower middleware.
//! - [`server`]: [`server::RequireBearerLayer`] protects any tower service with bearer tokens
//!   (JWT/JWKS, introspection, or a static list), per-method MCP scopes, and the RFC 9728
//!   metadata endpoint.
//! - [`transport`]: MCP client transports (Streamable HTTP, legacy HTTP+SSE, automatic choice)
//!   over any tower HTTP service, so `OAuthLayer`, timeouts and retries stack beneath them; with
//!   the `rmcp` feature they are rmcp client transports.
//! - `authorization_server` (feature `authorization-server`): an embedded OAuth 2.1
//!   authorization server as an axum router, so an MCP server can be self-contained.
//! - [`challenge`]: `WWW-Authenticate` parsing and rendering, shared by both sides.
//! - [`http`]: the bounded, redirect-free HTTP plumbing every OAuth request goes through.
//! - [`metadata`]: the wire types of every document the protocols exchange.
//!
//! Security rules every piece keeps: PKCE S256 always, `state` always, `iss` checked, tokens only
//! in the `Authorization` header and only to the resource's origin, no redirects followed on
//! OAuth calls, https except on loopback, bounded bodies, timeouts on every call, and secrets
//! redacted from every message and `Debug` output.

/// `get_ref`, `get_mut` and `into_inner` for a middleware whose wrapped service is `inner`, as
/// every tower-http middleware has them.
#[cfg(any(feature = "client", feature = "server"))]
macro_rules! inner_service_accessors {
    () => {
        /// The wrapped service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The wrapped service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// The wrapped service, unwrapped.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

#[cfg(feature = "authorization-server")]
pub mod authorization_server;
pub mod challenge;
#[cfg(feature = "client")]
pub mod client;
#[cfg(any(
    feature = "client",
    feature = "server",
    feature = "authorization-server"
))]
mod clock;
pub mod error;

/// A boxed, sendable future: what the crate's object-safe traits return (credential and
/// authorization stores, token verifiers, authorization handlers). One type, re-exported where
/// those traits live.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
// Only the client uses every helper; server-only builds use some.
#[cfg_attr(not(feature = "client"), allow(dead_code))]
pub mod http;
pub mod metadata;
pub mod secret;
#[cfg(feature = "server")]
pub mod server;
#[cfg(any(
    feature = "client",
    feature = "server",
    feature = "authorization-server"
))]
mod sync;
#[cfg(feature = "transport")]
pub mod transport;

pub use error::{Error, ErrorKind, Result};
pub use secret::Secret;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
