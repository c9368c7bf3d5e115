//! MCP authorization (OAuth 2.1) as tower layers.
//!
//! **Client**: put [`client::OAuthLayer`] over any tower HTTP service (a hyper client, usually).
//! It attaches the access token, refreshes it before it expires, and on a 401 discovers the
//! authorization server, registers, runs the PKCE flow through an authorization handler and
//! replays the request.
//!
//! ```no_run
//! # async fn client() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_mcp_oauth::client::{LoopbackHandler, OAuthConfig, OAuthLayer, OAuthState};
//! use tower_mcp_oauth::http::hyper_client;
//!
//! let config = OAuthConfig::new().handler(LoopbackHandler::bind().await?);
//! let state = OAuthState::new("https://mcp.example.com/mcp", Some(config)).await?;
//! let client = ServiceBuilder::new()
//!     .timeout(Duration::from_secs(30))
//!     .layer(OAuthLayer::new(state))
//!     .service(hyper_client());
//! let ping = http::Request::post("https://mcp.example.com/mcp")
//!     .header("content-type", "application/json")
//!     .header("accept", "application/json, text/event-stream")
//!     .body(http_body_util::Full::from(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#))?;
//! let response = client.oneshot(ping).await?;
//! # let _ = response;
//! # Ok(()) }
//! ```
//!
//! **Server**: put [`server::RequireBearerLayer`] in front of any tower service (axum routes,
//! rmcp's `StreamableHttpService`). It validates the token, answers failures with RFC 6750
//! challenges that point at the protected resource metadata, and hands
//! [`server::AuthInfo`] to the service in the request extensions.
//!
//! ```
//! use std::convert::Infallible;
//! use tower::ServiceBuilder;
//! use tower_mcp_oauth::server::{AuthData, AuthInfo, RequireBearerLayer, StaticVerifier};
//!
//! let verifier = StaticVerifier::new().token("dev-token", AuthData {
//!     subject: Some("alice".into()),
//!     scopes: vec!["mcp".into()],
//!     ..Default::default()
//! });
//! let protected = ServiceBuilder::new()
//!     .layer(
//!         RequireBearerLayer::new(verifier)
//!             .resource_metadata("https://mcp.example.com/.well-known/oauth-protected-resource/mcp")
//!             .required_scopes(["mcp"]),
//!     )
//!     .service_fn(|request: http::Request<String>| async move {
//!         let who = request.extensions().get::<AuthInfo>().and_then(|i| i.subject.clone());
//!         Ok::<_, Infallible>(http::Response::new(format!("hello {who:?}")))
//!     });
//! # let _ = protected;
//! ```
//!
//! The modules:
//!
//! - [`client`]: discovery (RFC 9728, RFC 8414, OpenID Connect), registration (pre-registered,
//!   Client ID Metadata Documents, RFC 7591), the PKCE authorization-code flow, tokens with
//!   refresh, and credential stores. [`client::OAuthState`] is the step-by-step API and
//!   [`client::OAuthLayer`] the tower middleware.
//! - [`server`]: [`server::RequireBearerLayer`] protects any tower service with bearer tokens
//!   (JWT/JWKS, introspection, or a static list); [`server::RequireMcpScopesLayer`] adds scopes
//!   per MCP method and tool; [`server::ResourceMetadataService`] serves RFC 9728 metadata.
//! - [`transport`]: MCP client transports (Streamable HTTP, legacy HTTP+SSE, automatic choice)
//!   over any tower HTTP service, so `OAuthLayer`, timeouts and retries stack beneath them; with
//!   the `rmcp` feature they are rmcp client transports.
//! - `authorization_server` (feature `authorization-server`): an embedded OAuth 2.1
//!   authorization server as an axum router, so an MCP server can be self-contained.
//! - [`dpop`]: DPoP (RFC 9449) keys, proofs and their checks, a replay cache and server nonces,
//!   shared by the three sides.
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
#[cfg(feature = "downstream")]
pub mod downstream;
#[cfg(any(
    feature = "client",
    feature = "server",
    feature = "authorization-server"
))]
pub mod dpop;
pub mod elicitation;
pub mod error;
#[cfg(any(
    feature = "client",
    feature = "server",
    feature = "authorization-server"
))]
mod jose;
#[cfg(any(feature = "jwt", feature = "authorization-server"))]
mod jwks;

/// A boxed, sendable future: what the crate's object-safe traits return (credential and
/// authorization stores, token verifiers, authorization handlers). One type, re-exported where
/// those traits live.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
// Only the client uses every helper; server-only builds use some.
#[cfg_attr(not(feature = "client"), allow(dead_code))]
pub mod http;
#[cfg(any(feature = "server", feature = "transport"))]
pub mod mcp_headers;
pub mod metadata;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(any(feature = "client", feature = "authorization-server"))]
mod seal;
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

pub use error::{Error, ErrorClass, ErrorKind, Result};
pub use secret::Secret;

/// The README's examples, compiled as doctests (with every feature: they show them all).
#[cfg(all(doctest, feature = "postgres", feature = "axum"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

#[doc = include_str!("../docs/reference.md")]
pub mod reference {}
