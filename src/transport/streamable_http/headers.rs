//! The MCP 2026-07-28 request headers a POST carries, and what `tools/list` answers teach about
//! them.

use http::header::HeaderValue;
use serde_json::Value;

use super::{Shared, PROTOCOL_VERSION};
use crate::mcp_headers::{self, ToolHeaders};
use crate::sync::LockExt;

/// `tools/list` requests remembered while their answers are awaited.
const MAX_PENDING_TOOL_LISTS: usize = 64;

impl<S> Shared<S> {
    /// The 2026-07-28 request headers: `Mcp-Method`, `Mcp-Name`, the `Mcp-Param-*` a tool's
    /// schema asks for, and the protocol version the message's `_meta` names (the header must
    /// say what the body says). Harmless to older servers, which ignore them.
    pub(super) fn add_mcp_headers(&self, message: &Value, headers: &mut http::HeaderMap) {
        for (name, value) in mcp_headers::standard_headers(message) {
            headers.insert(name, value);
        }
        let method = message.get("method").and_then(Value::as_str);
        if method == Some("tools/call") {
            let tool = message.pointer("/params/name").and_then(Value::as_str);
            let arguments = message.pointer("/params/arguments").unwrap_or(&Value::Null);
            if let Some(tool) = tool.and_then(|name| self.tool_headers.locked().get(name).cloned())
            {
                for (name, value) in tool.for_arguments(arguments) {
                    headers.insert(name, value);
                }
            }
        }
        if method == Some("tools/list") {
            if let Some(id) = message.get("id") {
                let mut lists = self.tool_lists.locked();
                // A listing whose answer never comes (the POST failed) must not stay for ever.
                if lists.len() >= MAX_PENDING_TOOL_LISTS {
                    lists.remove(0);
                }
                lists.push(id.clone());
            }
        }
        let version = message
            .pointer("/params/_meta/io.modelcontextprotocol~1protocolVersion")
            .and_then(Value::as_str)
            .and_then(|v| HeaderValue::from_str(v).ok());
        if let Some(version) = version {
            headers.insert(PROTOCOL_VERSION, version);
        }
    }

    /// Reads the `x-mcp-header` annotations of a `tools/list` answer, and drops the tools whose
    /// annotations are invalid: the spec says a client must not call them.
    pub(super) fn learn_tool_headers(&self, message: &mut Value) {
        let Some(id) = message.get("id") else { return };
        {
            let mut lists = self.tool_lists.locked();
            let Some(position) = lists.iter().position(|pending| pending == id) else {
                return;
            };
            lists.remove(position);
        }
        let Some(Value::Array(tools)) = message.pointer_mut("/result/tools") else {
            return;
        };
        let mut learned = self.tool_headers.locked();
        tools.retain(|tool| {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                return true;
            };
            let schema = tool.get("inputSchema").unwrap_or(&Value::Null);
            match ToolHeaders::from_input_schema(schema) {
                Ok(headers) => {
                    learned.insert(name.to_owned(), headers);
                    true
                }
                Err(error) => {
                    tracing::warn!(tool = name, %error, "dropping a tool with invalid x-mcp-header annotations");
                    learned.remove(name);
                    false
                }
            }
        });
    }
}
