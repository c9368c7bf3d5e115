//! [`UrlElicitationClient`]: an rmcp client handler that takes URL-mode elicitations to the user,
//! and retries a 2025-11-25 call refused with `-32042` once the user is done.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, CustomNotification,
    ElicitRequestParams, ElicitResult, ElicitationAction, ErrorData, UrlElicitationCapability,
};
use rmcp::service::{NotificationContext, RequestContext, RunningService, Service, ServiceError};
use rmcp::{ClientHandler, RoleClient};
use url::Url;

use super::{ELICITATION_COMPLETE, URL_ELICITATION_REQUIRED};
use crate::BoxFuture;

/// Rounds of "open these URLs, then retry" one call may take before its error is returned.
const MAX_ROUNDS: usize = 3;
/// How long a retry waits for the server's completion notice by default.
const DEFAULT_COMPLETION_WAIT: Duration = Duration::from_secs(300);
/// Longest message shown to the user.
const MAX_MESSAGE_CHARS: usize = 500;
/// Longest URL accepted: a longer one could push its origin off the user's screen.
const MAX_URL_BYTES: usize = 4096;

/// A URL the server asks the user to open, as a [`LinkOpener`] shows it.
#[derive(Debug, Clone)]
pub struct UrlElicitation {
    /// The full URL (SEP-1036: shown in full before the user agrees).
    pub url: Url,
    /// Its origin, the part to show most plainly (a look-alike subdomain shows here).
    pub origin: String,
    /// The server's message, without control characters and bounded.
    pub message: String,
    /// Whether the host is written in Punycode (`xn--`): a reason to warn the user.
    pub punycode: bool,
}

impl UrlElicitation {
    /// `None` for anything but an https URL with a host (or http on a loopback host): a link
    /// over plain http elsewhere could be read on the way. A URL with user information
    /// (`https://good.example@evil.example`) or longer than 4 KiB is refused too: both serve
    /// only to mislead whoever reads it.
    pub fn new(url: &str, message: &str) -> Option<Self> {
        if url.len() > MAX_URL_BYTES {
            return None;
        }
        let url = Url::parse(url).ok()?;
        let secure = url.scheme() == "https"
            || (url.scheme() == "http" && crate::http::is_loopback_host(&url));
        if !secure || !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let host = url.host_str()?.to_owned();
        Some(Self {
            origin: url.origin().ascii_serialization(),
            punycode: host.split('.').any(|label| label.starts_with("xn--")),
            message: shown_text(message),
            url,
        })
    }
}

/// `text` as one line the user can trust to look as it reads: control and invisible formatting
/// characters (bidirectional overrides, zero-width ones) dropped, runs of spaces collapsed (so
/// nothing can be drawn on a line of its own), and bounded.
fn shown_text(text: &str) -> String {
    let visible: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .filter(|c| !is_invisible_format(*c))
        .collect();
    visible
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_MESSAGE_CHARS)
        .collect()
}

/// Unicode's format characters that change how text around them is drawn.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// Asks the user whether to open a URL, and opens it: `true` when the user agreed and it was
/// opened. Never fetch the URL yourself (SEP-1036 forbids prefetching), and open it where
/// neither the client nor a model can read the page (the system browser).
pub trait LinkOpener: Send + Sync + 'static {
    /// Shows `request` and opens it if the user agrees.
    fn open<'a>(&'a self, request: &'a UrlElicitation) -> BoxFuture<'a, bool>;
}

/// A closure taking the request by value: `|request: UrlElicitation| Box::pin(async move { .. })`.
impl<F> LinkOpener for F
where
    F: Fn(UrlElicitation) -> BoxFuture<'static, bool> + Send + Sync + 'static,
{
    fn open<'a>(&'a self, request: &'a UrlElicitation) -> BoxFuture<'a, bool> {
        self(request.clone())
    }
}

/// An rmcp client handler for URL-mode elicitation: it declares `elicitation.url`, asks its
/// [`LinkOpener`] for each URL (2026-07-28's input requests arrive here, and rmcp retries the
/// call), and records 2025-11-25's completion notices for [`call_tool`](Self::call_tool).
/// Cheap to clone: keep a clone to call tools with after `serve` takes one.
#[derive(Clone)]
pub struct UrlElicitationClient {
    inner: Arc<Inner>,
    completion_wait: Duration,
}

struct Inner {
    info: ClientConfig,
    opener: Box<dyn LinkOpener>,
    completions: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
}

impl std::fmt::Debug for UrlElicitationClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlElicitationClient")
            .field("completion_wait", &self.completion_wait)
            .finish_non_exhaustive()
    }
}

impl UrlElicitationClient {
    /// A handler that shows URLs through `opener`, declaring `elicitation.url` in rmcp's
    /// default client information.
    pub fn new(opener: impl LinkOpener) -> Self {
        Self::with_info(ClientConfig::default(), opener)
    }

    /// The same with `info` of your own; `elicitation.url` is added to its capabilities.
    pub fn with_info(mut info: ClientConfig, opener: impl LinkOpener) -> Self {
        let mut capabilities: ClientCapabilities = info.capabilities.clone();
        let mut elicitation = capabilities.elicitation.take().unwrap_or_default();
        elicitation.url = Some(UrlElicitationCapability::default());
        capabilities.elicitation = Some(elicitation);
        info.capabilities = capabilities;
        Self {
            inner: Arc::new(Inner {
                info,
                opener: Box::new(opener),
                completions: Mutex::default(),
            }),
            completion_wait: DEFAULT_COMPLETION_WAIT,
        }
    }

    /// How long [`call_tool`](Self::call_tool) waits for the completion notice before it
    /// retries anyway (default 5 minutes).
    pub fn completion_wait(mut self, wait: Duration) -> Self {
        self.completion_wait = wait;
        self
    }

    /// Calls a tool through `client`; a 2025-11-25 `-32042` answer has its URLs shown, and the
    /// call is retried once the server says each is complete (or the wait ends). At
    /// 2026-07-28 rmcp itself drives the input requests through
    /// [`create_elicitation`](ClientHandler::create_elicitation) and retries.
    ///
    /// # Errors
    /// rmcp's errors; the `-32042` error itself when the user declines or it comes back more
    /// than three times.
    pub async fn call_tool<S: Service<RoleClient>>(
        &self,
        client: &RunningService<RoleClient, S>,
        params: CallToolRequestParams,
    ) -> Result<CallToolResult, ServiceError> {
        let mut round = 0;
        loop {
            let error = match client.call_tool(params.clone()).await {
                Err(ServiceError::McpError(error))
                    if error.code.0 == URL_ELICITATION_REQUIRED && round < MAX_ROUNDS =>
                {
                    error
                }
                other => return other,
            };
            round += 1;
            if !self.take_to_user(&error).await {
                return Err(ServiceError::McpError(error));
            }
        }
    }

    /// Shows each URL of a `-32042` error and waits for its completion notices: whether the
    /// user opened them all.
    async fn take_to_user(&self, error: &ErrorData) -> bool {
        let elicitations = error
            .data
            .as_ref()
            .and_then(|data| data.get("elicitations"))
            .and_then(|list| list.as_array())
            .cloned()
            .unwrap_or_default();
        if elicitations.is_empty() {
            return false;
        }
        let mut waits = Vec::new();
        for elicitation in &elicitations {
            let field = |name: &str| elicitation.get(name).and_then(|v| v.as_str());
            if field("mode") != Some("url") {
                return false;
            }
            let Some(request) = UrlElicitation::new(
                field("url").unwrap_or_default(),
                field("message").unwrap_or_default(),
            ) else {
                return false;
            };
            // Registered before the URL opens, so a quick completion is not missed.
            waits.extend(field("elicitationId").map(|id| self.completion(id)));
            if !self.inner.opener.open(&request).await {
                self.forget(waits.iter().map(|(id, _)| id));
                return false;
            }
        }
        for (_, notice) in &waits {
            let _ = tokio::time::timeout(self.completion_wait, notice.notified()).await;
        }
        self.forget(waits.iter().map(|(id, _)| id));
        true
    }

    fn forget<'a>(&self, ids: impl Iterator<Item = &'a String>) {
        let mut completions = self
            .inner
            .completions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for id in ids {
            completions.remove(id);
        }
    }

    fn completion(&self, id: &str) -> (String, Arc<tokio::sync::Notify>) {
        let mut completions = self
            .inner
            .completions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let notify = completions.entry(id.to_owned()).or_default().clone();
        (id.to_owned(), notify)
    }
}

impl ClientHandler for UrlElicitationClient {
    fn get_info(&self) -> ClientConfig {
        self.inner.info.clone()
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let ElicitRequestParams::UrlElicitationParams { url, message, .. } = request else {
            // Only URL mode was declared (SEP-1036: an undeclared mode is invalid params).
            return Err(ErrorData::invalid_params(
                "this client takes URL-mode elicitations only",
                None,
            ));
        };
        let Some(request) = UrlElicitation::new(&url, &message) else {
            return Ok(ElicitResult::new(ElicitationAction::Decline));
        };
        let action = if self.inner.opener.open(&request).await {
            ElicitationAction::Accept
        } else {
            ElicitationAction::Decline
        };
        Ok(ElicitResult::new(action))
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        _context: NotificationContext<RoleClient>,
    ) {
        if notification.method != ELICITATION_COMPLETE {
            return;
        }
        let Some(id) = notification
            .params
            .as_ref()
            .and_then(|p| p.get("elicitationId"))
            .and_then(|v| v.as_str())
        else {
            return;
        };
        // Unknown or finished ids are ignored, as the spec asks.
        let waiting = self
            .inner
            .completions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned();
        if let Some(notify) = waiting {
            // A permit: the notice may come before the retry starts waiting for it.
            notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shows_origins_and_flags_punycode() {
        let plain =
            UrlElicitation::new("https://mcp.example.com/accounts/link?t=1", "Link").unwrap();
        assert_eq!(plain.origin, "https://mcp.example.com");
        assert!(!plain.punycode);
        let spoof = UrlElicitation::new("https://xn--pple-43d.com/x", "hi\u{7}\nthere").unwrap();
        assert!(spoof.punycode);
        assert_eq!(spoof.message, "hi there");
        let bidi = UrlElicitation::new(
            "https://mcp.example.com/",
            "Link \u{202E}moc.buhtig\u{202C}   \n\n   https://github.com \u{200B}now",
        )
        .unwrap();
        assert_eq!(bidi.message, "Link moc.buhtig https://github.com now");
        assert!(UrlElicitation::new("https://github.com@evil.example/", "").is_none());
        assert!(UrlElicitation::new("https://user:pw@mcp.example.com/", "").is_none());
        let long = format!("https://mcp.example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert!(UrlElicitation::new(&long, "").is_none());
        assert!(UrlElicitation::new("javascript:alert(1)", "").is_none());
        assert!(UrlElicitation::new("file:///etc/passwd", "").is_none());
        assert!(UrlElicitation::new("not a url", "").is_none());
    }

    proptest! {
        #[test]
        fn any_input_is_refused_or_an_http_url(url in ".{0,200}", message in ".{0,2000}") {
            if let Some(request) = UrlElicitation::new(&url, &message) {
                prop_assert!(request.url.scheme() == "https" || crate::http::is_loopback_host(&request.url));
                prop_assert!(request.message.chars().count() <= MAX_MESSAGE_CHARS);
                prop_assert!(!request.message.chars().any(|c| c.is_control() || is_invisible_format(c)));
                prop_assert!(!request.message.contains("  "));
                prop_assert!(request.url.username().is_empty());
            }
        }
    }
}
