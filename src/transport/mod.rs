//! MCP client transports on tower stacks: Streamable HTTP, legacy HTTP+SSE, and the automatic
//! choice between them; an SSE decoder; and (feature `rmcp`) the rmcp integration.
//!
//! Each transport is generic over the HTTP service beneath it, so `OAuthLayer`, timeouts and
//! retries stack below. [`create_authorized_transport`] builds the usual stack.

mod auto;
mod common;
mod era;
mod legacy_sse;
#[cfg(feature = "rmcp")]
mod rmcp;
#[cfg(feature = "rmcp")]
mod scope_hints;
mod sse;
mod streamable_http;

use crate::client::{OAuth, OAuthLayer, OAuthState};
use crate::error::Result;
use crate::http::{hyper_client, HyperClient};
pub use crate::metadata::SCOPES_META_KEY;
pub use auto::AutoTransport;
pub use common::StatusError;
pub use era::{EraBridge, Route, DEFAULT_MAX_ROUNDS, MODERN_VERSION};
pub use legacy_sse::{LegacySseConfig, LegacySseTransport, RetryConfig};
#[cfg(feature = "rmcp")]
pub use rmcp::TowerHttpClient;
#[cfg(feature = "rmcp")]
pub use scope_hints::StepUpFromHints;
pub use sse::{SseDecoder, SseEvent, SseStream, MAX_EVENT_ID_BYTES};
pub use streamable_http::{StreamableHttpConfig, StreamableHttpTransport};

/// The largest MCP message a transport accepts by default: one SSE event, or one JSON answer.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// The one-liner of rmcp's guide: an [`AutoTransport`] to `url` over `OAuthLayer` (with `oauth_state`)
/// over a streaming [`hyper_client`], reconnecting a legacy SSE stream per `retry_config`.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use tower_mcp_oauth::client::OAuthState;
/// use tower_mcp_oauth::transport::{create_authorized_transport, RetryConfig};
///
/// let oauth_state = OAuthState::new("https://mcp.example.com/mcp", None).await?;
/// let transport = create_authorized_transport(
///     "https://mcp.example.com/mcp".to_string(),
///     oauth_state,
///     Some(RetryConfig::default()),
/// )
/// .await?;
/// # let _ = transport;
/// # Ok(()) }
/// ```
///
/// # Errors
/// None today; the signature leaves room for eager checks.
pub async fn create_authorized_transport(
    url: impl Into<String>,
    oauth_state: OAuthState,
    retry_config: Option<RetryConfig>,
) -> Result<AutoTransport<OAuth<HyperClient>>> {
    let url = url.into();
    let stack = tower::Layer::layer(&OAuthLayer::new(oauth_state), hyper_client());
    let streamable = StreamableHttpConfig::new(url.clone());
    let legacy = LegacySseConfig::new(url).retry(retry_config.unwrap_or_default());
    Ok(AutoTransport::new(stack, streamable, legacy))
}
