//! The resource-server side of MCP authorization: [`RequireBearerLayer`] in front of any tower
//! HTTP service, the verifiers it can use, per-method MCP scopes, and the protected resource
//! metadata endpoint.

#[cfg(feature = "axum")]
mod axum;
mod bearer;
mod caller;
mod challenges;
mod dpop;
mod filter_lists;
mod introspection;
#[cfg(feature = "jwt")]
mod jwt;
mod list_body;
mod mcp;
mod mcp_lists;
mod mcp_scopes;
mod protected;
mod resource_metadata;
#[cfg(feature = "rmcp-server")]
mod rmcp_sse;
mod verify;

pub use crate::BoxFuture;
pub use bearer::{
    RequireBearer, RequireBearerLayer, ResponseFuture, DEFAULT_CACHE_TTL, MAX_AUTHORIZATION_BYTES,
};
pub use caller::CallerToken;
pub use challenges::Rejection;
pub use dpop::DpopPolicy;
pub use filter_lists::{FilterMcpLists, FilterMcpListsFuture, FilterMcpListsLayer};
pub use introspection::{IntrospectionAuth, IntrospectionVerifier};
#[cfg(feature = "jwt")]
pub use jwt::{
    JwtVerifier, JwtVerifierBuilder, TrustedIssuer, DEFAULT_FETCH_TIMEOUT, DEFAULT_LEEWAY_SECS,
    DEFAULT_MAX_KEY_AGE, DEFAULT_MAX_STALE_KEY_AGE, DEFAULT_MIN_REFETCH_INTERVAL,
};
pub use list_body::ListsBody;
#[cfg(feature = "rmcp-server")]
pub use mcp::scopes_meta;
pub use mcp::{McpScopes, DEFAULT_MAX_MCP_BODY_BYTES, SCOPES_META_KEY};
pub use mcp_scopes::{RequireMcpScopes, RequireMcpScopesLayer};
pub use protected::ProtectedResource;
pub use resource_metadata::ResourceMetadataService;
#[cfg(feature = "rmcp-server")]
pub use rmcp_sse::{
    LegacySseBody, LegacySseServer, LEGACY_SSE_MAX_MESSAGE_BYTES, LEGACY_SSE_OUTBOUND_QUEUE,
};
#[cfg(all(feature = "downstream", feature = "authorization-server"))]
pub(crate) use verify::is_for_resource;
pub use verify::{AuthData, AuthInfo, StaticVerifier, TokenVerifier, VerifyError};
