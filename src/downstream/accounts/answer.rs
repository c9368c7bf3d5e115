//! [`LinkRequired`]: the link a user must open, as each MCP revision asks for it.

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{AccountKey, LinkedAccounts};
use crate::clock::now_secs;

/// Binds a sealed `requestState` to its purpose; the account's key follows.
const STATE_CONTEXT: &[u8] = b"tower-mcp-oauth link request state v1\0";

/// The user must link their account at a third party: open [`url`](Self::url) in their
/// browser. Single use, bound to the user; it expires (10 minutes by default).
#[derive(Clone)]
pub struct LinkRequired(std::sync::Arc<Link>);

/// What a [`LinkRequired`] holds (shared, so the error stays small).
struct Link {
    accounts: LinkedAccounts,
    account: AccountKey,
    provider_name: String,
    url: String,
    elicitation_id: String,
    expires_at: u64,
}

impl std::fmt::Debug for LinkRequired {
    // The URL is a capability for a while: it stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkRequired")
            .field("provider", &self.0.account.provider)
            .field("elicitation_id", &self.0.elicitation_id)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct RequestState {
    account: AccountKey,
    expires_at: u64,
}

impl LinkRequired {
    pub(super) fn new(
        accounts: LinkedAccounts,
        account: AccountKey,
        provider_name: String,
        url: String,
        elicitation_id: String,
        expires_at: u64,
    ) -> Self {
        Self(std::sync::Arc::new(Link {
            accounts,
            account,
            provider_name,
            url,
            elicitation_id,
            expires_at,
        }))
    }

    /// The link to open.
    pub fn url(&self) -> &str {
        &self.0.url
    }

    /// The third party's name, as shown to users.
    pub fn provider_name(&self) -> &str {
        &self.0.provider_name
    }

    /// The elicitation's id (2025-11-25), which the completion notice names.
    pub fn elicitation_id(&self) -> &str {
        &self.0.elicitation_id
    }

    /// The message shown beside the link.
    pub fn message(&self) -> String {
        format!(
            "Link your {} account to use this tool. The page opens on this MCP server.",
            self.0.provider_name
        )
    }

    /// Waits until the link is complete (`true`) or has expired (`false`), wherever it is
    /// completed (any replica sharing the vault).
    pub async fn linked(&self) -> bool {
        self.0
            .accounts
            .inner
            .wait_linked(&self.0.account, self.0.expires_at)
            .await
    }

    /// The `requestState` a 2026-07-28 client echoes when it retries: the account and the
    /// link's expiry, sealed, so [`LinkedAccounts::access_token_after`] knows to wait.
    pub fn request_state(&self) -> String {
        let plain = serde_json::to_vec(&RequestState {
            account: self.0.account.clone(),
            expires_at: self.0.expires_at,
        })
        .unwrap_or_default();
        let sealed = self
            .0
            .accounts
            .inner
            .key
            .seal(&plain, &self.0.account.seal_context(STATE_CONTEXT));
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed)
    }

    /// The URL-mode elicitation, as the JSON of 2025-11-25's `elicitation/create` params.
    pub fn elicitation(&self) -> serde_json::Value {
        serde_json::json!({
            "mode": "url",
            "elicitationId": self.0.elicitation_id,
            "url": self.0.url,
            "message": self.message(),
        })
    }
}

/// The expiry a `requestState` carries when it is one of ours, for `account`, and unexpired.
pub(super) fn open_request_state(
    accounts: &LinkedAccounts,
    account: &AccountKey,
    state: &str,
) -> Option<u64> {
    let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(state)
        .ok()?;
    let plain = accounts
        .inner
        .key
        .open(&sealed, &account.seal_context(STATE_CONTEXT))?;
    let state: RequestState = serde_json::from_slice(&plain).ok()?;
    (state.account == *account && state.expires_at > now_secs()).then_some(state.expires_at)
}

#[cfg(feature = "rmcp-server")]
mod rmcp_answer {
    use rmcp::model::{
        CallToolResponse, CallToolResult, ContentBlock, CustomNotification, ElicitRequest,
        ElicitRequestParams, ErrorCode, InputRequest, InputRequests, InputRequiredResult,
        ProtocolVersion, ServerNotification,
    };
    use rmcp::service::RequestContext;
    use rmcp::{ErrorData, RoleServer};

    use super::super::AccountError;
    use super::LinkRequired;
    use crate::elicitation::{ELICITATION_COMPLETE, URL_ELICITATION_REQUIRED};

    /// An MCP error for a tool's `?`: the link as 2025-11-25's `-32042` (prefer
    /// [`LinkRequired::into_tool_response`], which fits every revision); the other kinds
    /// without their detail, which is logged.
    impl From<AccountError> for ErrorData {
        fn from(error: AccountError) -> Self {
            match error {
                AccountError::LinkRequired(link) => link.to_error_data(),
                AccountError::NoCaller => {
                    ErrorData::invalid_request("the request names no user", None)
                }
                AccountError::UnknownProvider(_) | AccountError::Unavailable(_) => {
                    tracing::warn!(%error, "a linked account");
                    ErrorData::internal_error(
                        "the linked account is unavailable; try again later",
                        None,
                    )
                }
            }
        }
    }

    impl LinkRequired {
        /// 2025-11-25's answer: the `-32042` error listing this URL-mode elicitation.
        pub fn to_error_data(&self) -> ErrorData {
            ErrorData::new(
                ErrorCode(URL_ELICITATION_REQUIRED),
                self.message(),
                Some(serde_json::json!({ "elicitations": [self.elicitation()] })),
            )
        }

        /// 2026-07-28's answer: an `InputRequiredResult` asking for this URL-mode elicitation,
        /// with the sealed [`request_state`](Self::request_state).
        pub fn to_input_required(&self) -> InputRequiredResult {
            let mut params = ElicitRequestParams::UrlElicitationParams {
                meta: None,
                message: self.message(),
                url: self.0.url.clone(),
                elicitation_id: String::new(),
            };
            if let ElicitRequestParams::UrlElicitationParams { elicitation_id, .. } = &mut params {
                // Dropped from 2026-07-28's schema, but rmcp always writes it: the real id
                // beats an empty one for a client that reads it.
                elicitation_id.clone_from(&self.0.elicitation_id);
            }
            let mut requests = InputRequests::new();
            requests.insert(
                format!("link-{}", self.0.account.provider),
                InputRequest::Elicitation(ElicitRequest::new(params)),
            );
            InputRequiredResult::new(Some(requests), Some(self.request_state()))
        }

        /// A tool's answer, as the request's revision and the client's capabilities allow:
        ///
        /// - 2026-07-28 with `elicitation.url`: [`to_input_required`](Self::to_input_required);
        ///   retry with [`LinkedAccounts::access_token_after`](super::LinkedAccounts::access_token_after).
        /// - 2025-11-25 with `elicitation.url`: the `-32042` error, and the completion notice
        ///   sent to this client once the link is complete.
        /// - A client without URL elicitation: a tool error that gives the link in text (no
        ///   mode the client did not declare is sent).
        ///
        /// # Errors
        /// The `-32042` error, at 2025-11-25.
        pub fn into_tool_response(
            self,
            context: &RequestContext<RoleServer>,
        ) -> Result<CallToolResponse, ErrorData> {
            let url_mode = context
                .client_capabilities()
                .and_then(|c| c.elicitation)
                .is_some_and(|e| e.url.is_some());
            if !url_mode {
                if self.0.accounts.inner.confirm.is_none() {
                    // Unconfirmed, the link is a bearer capability: not for a model's context.
                    return Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                        "This tool needs your {} account, and this MCP client cannot open the page that links it.",
                        self.0.provider_name
                    ))])
                    .into());
                }
                return Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                    "This tool needs your {} account. Open {} in your browser to link it, then call the tool again.",
                    self.0.provider_name, self.0.url
                ))])
                .into());
            }
            let stateless = context
                .protocol_version()
                .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28);
            if stateless {
                return Ok(self.to_input_required().into());
            }
            let error = self.to_error_data();
            let peer = context.peer.clone();
            let Ok(permit) = self
                .0
                .accounts
                .inner
                .notice_tasks
                .clone()
                .try_acquire_owned()
            else {
                return Err(error);
            };
            tokio::spawn(async move {
                let _permit = permit;
                let linked = tokio::select! {
                    linked = self.linked() => linked,
                    () = closed(&peer) => false,
                };
                if linked {
                    let notice = CustomNotification::new(
                        ELICITATION_COMPLETE,
                        Some(serde_json::json!({ "elicitationId": self.0.elicitation_id })),
                    );
                    if let Err(error) = peer
                        .send_notification(ServerNotification::CustomNotification(notice))
                        .await
                    {
                        tracing::debug!(%error, "the elicitation's completion notice was not delivered");
                    }
                }
            });
            Err(error)
        }
    }

    /// Resolves when `peer`'s connection is gone: no one is left to notify.
    async fn closed(peer: &rmcp::Peer<RoleServer>) {
        while !peer.is_transport_closed() {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        }
    }
}
