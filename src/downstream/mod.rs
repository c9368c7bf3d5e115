//! Downstream authorization: a resource server that calls other APIs on its caller's behalf,
//! never with the caller's own token (MCP forbids token passthrough).
//!
//! [`TokenExchange`] trades the caller's verified token ([`CallerToken`](crate::server::CallerToken),
//! which [`RequireBearer`](crate::server::RequireBearer) puts beside
//! [`AuthInfo`](crate::server::AuthInfo)) at the authorization server for a token scoped to the
//! downstream API: RFC 8693 token exchange, or Microsoft Entra ID's on-behalf-of flow
//! ([`ExchangeProfile::EntraOnBehalfOf`]). [`TokenExchange::on_behalf_of`] wraps any tower HTTP
//! client so each request carries that token.
//!
//! ```no_run
//! # fn main() -> tower_mcp_oauth::Result<()> {
//! use tower_mcp_oauth::client::{ClientRegistration, TokenEndpointAuthMethod};
//! use tower_mcp_oauth::downstream::TokenExchange;
//!
//! // The MCP server's own confidential client at the authorization server.
//! let exchange = TokenExchange::new(
//!     "https://auth.example.com",
//!     ClientRegistration::confidential("mcp-server", "its secret", TokenEndpointAuthMethod::ClientSecretBasic),
//! )?;
//! # Ok(()) }
//! ```
//!
//! Refusals are [`ExchangeError`]s; with the `rmcp-server` feature they convert into the
//! `ErrorData` a tool returns, so `?` in a tool gives the client a message it can show.

#[cfg(feature = "authorization-server")]
pub mod accounts;
mod error;
mod exchange;
mod service;

#[cfg(feature = "rmcp-server")]
pub use error::tool_error;
pub use error::ExchangeError;
pub use exchange::{
    Caller, Downstream, DownstreamToken, ExchangeProfile, TokenExchange, DEFAULT_MAX_CACHED_TOKENS,
};
pub use service::OnBehalfOf;
