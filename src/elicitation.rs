//! URL-mode elicitation (SEP-1036): a server asks the user to open a page of its own (to link
//! an account at a third party, say), outside the MCP client.
//!
//! On the wire: at 2025-11-25 the server answers a request with the error
//! [`URL_ELICITATION_REQUIRED`] listing the URLs, and may send [`ELICITATION_COMPLETE`] when
//! the user is done; at 2026-07-28 it answers with an `InputRequiredResult` whose input
//! request is an `elicitation/create` in `url` mode, and the client retries with its answer.
//! The server side is [`downstream::accounts`](crate::downstream::accounts); the client side,
//! with the feature `rmcp`, is [`UrlElicitationClient`].

/// The JSON-RPC error code of 2025-11-25 for "open these URLs first" (`URLElicitationRequiredError`).
pub const URL_ELICITATION_REQUIRED: i32 = -32042;
/// The notification that tells a 2025-11-25 client one URL elicitation is complete.
pub const ELICITATION_COMPLETE: &str = "notifications/elicitation/complete";

#[cfg(feature = "rmcp")]
mod client;
#[cfg(feature = "rmcp")]
pub use client::{LinkOpener, UrlElicitation, UrlElicitationClient};
