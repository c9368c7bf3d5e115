//! [`StepUpFromHints`]: an rmcp client transport that asks for a tool's scopes before calling
//! it, from the scope hints servers put on the tools they list.

use std::collections::{HashMap, HashSet};

use rmcp::model::{
    ClientJsonRpcMessage, ClientRequest, JsonRpcMessage, ServerJsonRpcMessage, ServerResult,
};
use rmcp::transport::Transport;
use rmcp::RoleClient;

use crate::client::OAuthState;
use crate::metadata::SCOPES_META_KEY;

/// Wraps an rmcp client transport so a `tools/call` goes out with a token that has the tool's
/// scopes, instead of learning them from a 403.
///
/// It reads the [`SCOPES_META_KEY`] hint of every tool in the `tools/list` answers it passes
/// (what the server side's `FilterMcpListsLayer` and
/// `scopes_meta` declarations put there); before sending a call to a tool whose scopes the token
/// lacks, it steps up through [`OAuthState::step_up`], then sends. If stepping up fails (the
/// user declined, no handler), the call goes as it is and a 403 is handled as before. Hints
/// only widen what the client asks for; the server still decides. Each tool's hinted scopes are
/// asked for once: a user who declines (or an authorization server that grants less) is not
/// asked again before every call. Hints that are not plain scope tokens (RFC 6749 §3.3), more
/// than 16 scopes, or longer than 128 bytes each are ignored.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use rmcp::ServiceExt;
/// use tower_mcp_oauth::client::OAuthState;
/// use tower_mcp_oauth::transport::{create_authorized_transport, StepUpFromHints};
///
/// let state = OAuthState::new("https://mcp.example.com/mcp", None).await?;
/// let transport = create_authorized_transport("https://mcp.example.com/mcp", state.clone(), None).await?;
/// let client = ().serve(StepUpFromHints::new(transport, state)).await?;
/// let tools = client.list_all_tools().await?; // learns each tool's scopes
/// # let _ = tools;
/// # Ok(()) }
/// ```
pub struct StepUpFromHints<T> {
    inner: T,
    state: OAuthState,
    hints: HashMap<String, Vec<String>>,
    asked: HashSet<(String, Vec<String>)>,
}

/// At most this many tools' hints are kept (a server can list any number of names).
const MAX_HINTED_TOOLS: usize = 4096;
/// At most this many scopes in one hint, each at most this long.
const MAX_HINTED_SCOPES: usize = 16;
const MAX_SCOPE_BYTES: usize = 128;

/// A scope token (RFC 6749 §3.3): printable ASCII but space, `"` and `\`.
fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope.len() <= MAX_SCOPE_BYTES
        && scope
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

impl<T> std::fmt::Debug for StepUpFromHints<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepUpFromHints")
            .field("hints", &self.hints)
            .finish_non_exhaustive()
    }
}

impl<T> StepUpFromHints<T> {
    /// `inner`, stepping up through `state` (the state whose tokens `inner`'s stack sends).
    pub fn new(inner: T, state: OAuthState) -> Self {
        Self {
            inner,
            state,
            hints: HashMap::new(),
            asked: HashSet::new(),
        }
    }

    /// The scopes the server says `tool` needs, when it said.
    pub fn hint(&self, tool: &str) -> Option<&[String]> {
        self.hints.get(tool).map(Vec::as_slice)
    }

    /// Learns the hints of a `tools/list` answer: each listed tool's, replacing what was known.
    fn learn(&mut self, message: &ServerJsonRpcMessage) {
        let JsonRpcMessage::Response(response) = message else {
            return;
        };
        let ServerResult::ListToolsResult(list) = &response.result else {
            return;
        };
        for tool in &list.tools {
            let hinted = tool
                .meta
                .as_ref()
                .and_then(|meta| meta.0.get(SCOPES_META_KEY))
                .and_then(serde_json::Value::as_array)
                .and_then(|scopes| {
                    let scopes: Option<Vec<String>> = scopes
                        .iter()
                        .map(|s| s.as_str().filter(|s| is_scope_token(s)).map(str::to_owned))
                        .collect();
                    scopes.filter(|s| !s.is_empty() && s.len() <= MAX_HINTED_SCOPES)
                });
            match hinted {
                Some(scopes)
                    if self.hints.len() < MAX_HINTED_TOOLS
                        || self.hints.contains_key(tool.name.as_ref()) =>
                {
                    self.hints.insert(tool.name.to_string(), scopes);
                }
                _ => {
                    self.hints.remove(tool.name.as_ref());
                }
            }
        }
    }

    /// The scopes the message's tool call needs, by the hints, unless asked for already.
    fn wanted(&mut self, message: &ClientJsonRpcMessage) -> Option<Vec<String>> {
        let JsonRpcMessage::Request(request) = message else {
            return None;
        };
        let ClientRequest::CallToolRequest(call) = &request.request else {
            return None;
        };
        let tool = call.params.name.as_ref();
        let scopes = self.hints.get(tool)?.clone();
        self.asked
            .insert((tool.to_owned(), scopes.clone()))
            .then_some(scopes)
    }
}

impl<T> Transport<RoleClient> for StepUpFromHints<T>
where
    T: Transport<RoleClient>,
{
    type Error = T::Error;

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl std::future::Future<Output = Result<(), T::Error>> + Send + 'static {
        let wanted = self.wanted(&item);
        let state = self.state.clone();
        // Made now, polled after the step-up: our transports do nothing until polled.
        let sending = self.inner.send(item);
        async move {
            if let Some(wanted) = wanted {
                let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
                if let Err(error) = state.step_up(&wanted).await {
                    tracing::info!(%error, "could not step up before the call; calling as is");
                }
            }
            sending.await
        }
    }

    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        let message = self.inner.receive().await?;
        self.learn(&message);
        Some(message)
    }

    fn close(&mut self) -> impl std::future::Future<Output = Result<(), T::Error>> + Send {
        self.inner.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_scope_tokens_are_hints() {
        for good in ["mcp:admin", "files.write", "https://api.example/x"] {
            assert!(is_scope_token(good), "{good}");
        }
        let long = "x".repeat(MAX_SCOPE_BYTES + 1);
        for bad in [
            "",
            "two words",
            "quote\"",
            "back\\slash",
            "\u{1b}[2J",
            "é",
            long.as_str(),
        ] {
            assert!(!is_scope_token(bad), "{bad:?}");
        }
    }
}
