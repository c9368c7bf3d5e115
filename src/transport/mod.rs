//! MCP transports on tower stacks. For now, the rmcp integration: rmcp's own Streamable HTTP
//! client transport over any tower HTTP service.

pub mod rmcp;
