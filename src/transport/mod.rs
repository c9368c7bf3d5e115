//! MCP client transports on tower stacks, and the rmcp integration.

#[cfg(feature = "rmcp")]
pub mod rmcp;
pub mod sse;
pub mod streamable_http;
