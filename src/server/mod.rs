//! The resource-server side of MCP authorization: [`RequireBearerLayer`] in front of any tower
//! HTTP service, the verifiers it can use, per-method MCP scopes, and the protected resource
//! metadata endpoint.

#[cfg(feature = "axum")]
mod axum;
pub mod bearer;
pub mod introspection;
#[cfg(feature = "jwt")]
pub mod jwt;
pub mod mcp;
mod mcp_scopes;
pub mod resource_metadata;
#[cfg(feature = "rmcp-server")]
pub mod rmcp_sse;
pub mod verify;

pub use bearer::{Rejection, RequireBearer, RequireBearerLayer};
pub use introspection::{IntrospectionAuth, IntrospectionVerifier};
#[cfg(feature = "jwt")]
pub use jwt::{JwtVerifier, JwtVerifierBuilder};
pub use mcp::McpScopes;
pub use mcp_scopes::{RequireMcpScopes, RequireMcpScopesLayer};
pub use resource_metadata::ResourceMetadataService;
pub use verify::{AuthData, AuthInfo, StaticVerifier, TokenVerifier, VerifyError};
