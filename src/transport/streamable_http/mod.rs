//! [`StreamableHttpTransport`]: the MCP Streamable HTTP client transport.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use serde_json::Value;
use tokio::sync::mpsc;
use tower::Service;

use crate::error::{BoxError, Error, ErrorKind, Result};
use crate::http::{has_media_type, read_limited, ReadError};
use crate::mcp_headers::ToolHeaders;

use crate::sync::LockExt;
mod headers;
mod restart;
mod streams;

use crate::transport::common::{self, refusal, Incoming, Tasks, INCOMING_CAPACITY, SESSION_ID};
use crate::transport::DEFAULT_MAX_MESSAGE_BYTES;

const PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// How long a request waits for the listening stream's first GET to be answered.
const LISTEN_WAIT: Duration = Duration::from_secs(2);

/// Settings of a Streamable HTTP transport.
#[derive(Debug, Clone)]
pub struct StreamableHttpConfig {
    /// The MCP endpoint.
    pub(crate) url: String,
    /// The largest SSE event accepted.
    pub(crate) max_event_bytes: usize,
    /// The largest JSON response accepted.
    pub(crate) max_json_bytes: usize,
    /// How often a dropped stream is resumed before giving up.
    pub(crate) max_resumptions: usize,
    /// The delay before resuming when the server gave no `retry`.
    pub(crate) default_retry: Duration,
    /// Whether to open the GET listening stream after initialization.
    pub(crate) listen: bool,
    /// How long `close` waits for the server to answer its DELETE.
    pub(crate) close_timeout: Duration,
    /// Messages POSTed at once, at most (and so connections for them): further sends wait. A
    /// server that never answers some of them cannot make the client open connections and
    /// tasks without bound.
    pub(crate) max_concurrent_sends: usize,
    /// Whether a session the server forgot is started again with the client's `initialize`.
    pub(crate) reinitialize: bool,
}

impl StreamableHttpConfig {
    /// Defaults for the endpoint `url`: 16 MiB events and responses, 5 resumptions, 1 s retry,
    /// a listening stream, 5 s for the server to answer the closing DELETE, and 16 sends at
    /// once.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_event_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_json_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_resumptions: 5,
            default_retry: Duration::from_secs(1),
            listen: true,
            close_timeout: Duration::from_secs(5),
            max_concurrent_sends: 16,
            reinitialize: true,
        }
    }

    /// The largest SSE event accepted.
    pub fn max_event_bytes(mut self, max_event_bytes: usize) -> Self {
        self.max_event_bytes = max_event_bytes;
        self
    }

    /// The largest JSON response accepted.
    pub fn max_json_bytes(mut self, max_json_bytes: usize) -> Self {
        self.max_json_bytes = max_json_bytes;
        self
    }

    /// How often a dropped stream is resumed before giving up.
    pub fn max_resumptions(mut self, max_resumptions: usize) -> Self {
        self.max_resumptions = max_resumptions;
        self
    }

    /// The delay before resuming when the server gave no `retry`.
    pub fn default_retry(mut self, default_retry: Duration) -> Self {
        self.default_retry = default_retry;
        self
    }

    /// Whether to open the GET listening stream after initialization.
    pub fn listen(mut self, listen: bool) -> Self {
        self.listen = listen;
        self
    }

    /// How long `close` waits for the server to answer its DELETE.
    pub fn close_timeout(mut self, close_timeout: Duration) -> Self {
        self.close_timeout = close_timeout;
        self
    }

    /// Messages POSTed at once, at most (and so connections for them): further sends wait. A
    /// server that never answers some of them cannot make the client open connections and
    /// tasks without bound.
    pub fn max_concurrent_sends(mut self, max_concurrent_sends: usize) -> Self {
        self.max_concurrent_sends = max_concurrent_sends;
        self
    }

    /// Whether a session the server forgot (a restart, an idle timeout) is started again on
    /// the client's behalf (default: yes): the client's own `initialize` is sent again,
    /// answered inside the transport, then `notifications/initialized`, and the refused
    /// message goes once more in the new session. Clients that initialize once per process
    /// (rmcp's `serve`, a stdio bridge) keep working. Off: the refused message fails with
    /// [`ErrorKind::SessionExpired`], and so does every other until the caller initializes.
    pub fn reinitialize(mut self, reinitialize: bool) -> Self {
        self.reinitialize = reinitialize;
        self
    }
}

pub(crate) struct Shared<S> {
    service: common::SharedService<S>,
    config: StreamableHttpConfig,
    session: Mutex<Option<HeaderValue>>,
    /// The server forgot the session: until a new `initialize` succeeds, other messages fail
    /// with `SessionExpired` rather than go out without a session (a 400, not retried).
    expired: AtomicBool,
    protocol: Mutex<Option<HeaderValue>>,
    incoming: mpsc::Sender<Incoming>,
    tasks: Tasks,
    /// Permits for POSTs in flight (`max_concurrent_sends`).
    sends: tokio::sync::Semaphore,
    /// The id of the `initialize` request in flight, whose answer sets the protocol version.
    initialize_id: Mutex<Option<Value>>,
    /// The ids of `tools/list` requests in flight, whose answers say which arguments each tool's
    /// calls mirror in `Mcp-Param-*` headers.
    tool_lists: Mutex<Vec<Value>>,
    /// The `Mcp-Param-*` headers per tool, from the last `tools/list` answers.
    tool_headers: Mutex<HashMap<String, ToolHeaders>>,
    /// Whether the listening stream was started, and whether its first GET has been answered:
    /// a request waits for that, since a server may send what it asks about the request (an
    /// elicitation, say) on that stream, and a message sent before it opens is lost.
    listen_started: AtomicBool,
    listen_attempted: tokio::sync::watch::Sender<bool>,
    /// Whether a listening loop runs: one at a time, whatever the sessions.
    listening: AtomicBool,
    /// The client's `initialize`, sent again when the server forgets the session.
    initialize_message: Mutex<Option<Value>>,
    /// One new session at a time, however many sends found the old one gone; counts them.
    reinitializing: tokio::sync::Mutex<u64>,
    /// The transport's own `initialize` in flight: its id, and where its answer goes.
    own_answer: Mutex<Option<(Value, tokio::sync::oneshot::Sender<Value>)>>,
}

/// The MCP Streamable HTTP client transport (2025-03-26 to 2026-07-28) on any tower HTTP
/// service, so `OAuthLayer`, timeouts and retries stack beneath it.
///
/// - Every JSON-RPC message is POSTed with `Accept: application/json, text/event-stream`; a JSON
///   answer, an SSE stream of messages, or 202 for notifications and responses are all handled.
/// - `Mcp-Session-Id` is captured from the server and sent back; `MCP-Protocol-Version` is sent
///   once `initialize` has negotiated it.
/// - After `notifications/initialized`, a GET opens the server's listening stream (a 405 means
///   the server has none).
/// - At 2026-07-28 there is no session: each request's `_meta` names the version, which the
///   `MCP-Protocol-Version` header repeats, with the standard `Mcp-Method`, `Mcp-Name` and
///   `Mcp-Param-*` headers (tools with invalid `x-mcp-header` annotations are dropped from
///   `tools/list` answers). A request refused with a JSON-RPC error in the HTTP error's body
///   gets that error as its answer, and a `server/discover` refused with a bare 4xx (not 404
///   or 405, which say there is no such endpoint) gets one saying so: that is how a client's
///   lifecycle (rmcp's `ClientLifecycleMode::Auto`) tells a 2025 server and falls back to
///   `initialize`.
/// - A stream that drops or is closed is resumed with a GET carrying `Last-Event-ID`, after
///   exactly the server's `retry` delay (SEP-1699).
/// - A POST answered 404 for a known session means the server forgot it: the transport starts
///   a new one with the client's `initialize` and sends the message again, once, as
///   [`StreamableHttpConfig::reinitialize`] says; off, it surfaces as
///   [`ErrorKind::SessionExpired`]. A GET answered 404 only ends the (optional) listening
///   stream: servers without one answer so.
/// - Closing sends DELETE for the session.
///
/// Incoming messages arrive, in order, from [`StreamableHttpTransport::receive`]; with the `rmcp`
/// feature the transport is an rmcp client transport.
///
/// A Streamable HTTP client transport over the tower service `S`.
pub struct StreamableHttpTransport<S> {
    shared: Arc<Shared<S>>,
    receiver: mpsc::Receiver<Incoming>,
}

impl<S> std::fmt::Debug for StreamableHttpTransport<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamableHttpTransport")
            .field("url", &self.shared.config.url)
            .finish_non_exhaustive()
    }
}

/// What a response to a POST was.
enum Answer {
    Accepted,
    Messages,
}

impl<S, B> StreamableHttpTransport<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    /// A transport to `config.url` over `service`. Nothing is sent until the first message.
    pub fn new(service: S, config: StreamableHttpConfig) -> Self {
        let (sender, receiver) = mpsc::channel(INCOMING_CAPACITY);
        Self {
            shared: Shared::new(service, config, sender),
            receiver,
        }
    }

    /// The session the server assigned, if any.
    pub fn session_id(&self) -> Option<String> {
        self.shared
            .session
            .locked()
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// Sends one JSON-RPC message. Its answer (and anything else the server sends) comes from
    /// [`Self::receive`].
    ///
    /// # Errors
    /// Transport errors; [`ErrorKind::SessionExpired`] when the server forgot the session;
    /// [`ErrorKind::InvalidResponse`] for an unexpected status or content type.
    pub fn send(
        &self,
        message: Value,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        let shared = self.shared.clone();
        async move { Shared::post(&shared, message).await }
    }

    /// The next message from the server, or an error the background streams met; `None` once
    /// the transport is closed.
    pub async fn receive(&mut self) -> Option<Result<Value>> {
        if self.shared.tasks.is_stopped() {
            return None;
        }
        self.receiver.recv().await
    }

    /// Ends the session (DELETE) and stops the background streams.
    ///
    /// # Errors
    /// Transport errors from the DELETE.
    pub async fn close(&mut self) -> Result<()> {
        self.shared.close().await
    }
}

impl<S, B> Shared<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    pub(crate) fn new(
        service: S,
        config: StreamableHttpConfig,
        incoming: mpsc::Sender<Incoming>,
    ) -> Arc<Self> {
        Arc::new(Self {
            service: common::SharedService::new(service),
            sends: tokio::sync::Semaphore::new(config.max_concurrent_sends.max(1)),
            config,
            session: Mutex::new(None),
            expired: AtomicBool::new(false),
            protocol: Mutex::new(None),
            incoming,
            tasks: Tasks::default(),
            initialize_id: Mutex::new(None),
            tool_lists: Mutex::new(Vec::new()),
            tool_headers: Mutex::new(HashMap::new()),
            listen_started: AtomicBool::new(false),
            listen_attempted: tokio::sync::watch::Sender::new(false),
            listening: AtomicBool::new(false),
            initialize_message: Mutex::new(None),
            reinitializing: tokio::sync::Mutex::new(0),
            own_answer: Mutex::new(None),
        })
    }

    /// Stops the background streams and ends the session (DELETE).
    pub(crate) async fn close(&self) -> Result<()> {
        self.abort_tasks();
        let session = self.session.locked().take();
        let Some(session) = session else {
            return Ok(());
        };
        let request = self.request(Method::DELETE, Full::default(), Some(session))?;
        let limit = self.config.close_timeout;
        let response = tokio::time::timeout(limit, self.call(request))
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::Timeout,
                    format!("closing the session: no answer to DELETE within {limit:?}"),
                )
            })??;
        // 405: the server does not let clients end sessions; 404: it is already gone. Both fine.
        let status = response.status();
        if status.is_success()
            || status == StatusCode::METHOD_NOT_ALLOWED
            || status == StatusCode::NOT_FOUND
        {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::InvalidResponse,
                format!(
                    "closing the session: the server answered {}",
                    response.status()
                ),
            ))
        }
    }

    fn request(
        &self,
        method: Method,
        body: Full<Bytes>,
        session: Option<HeaderValue>,
    ) -> Result<Request<Full<Bytes>>> {
        let mut request = Request::builder()
            .method(method)
            .uri(&self.config.url)
            .body(body)
            .map_err(|e| {
                Error::new(ErrorKind::Config, "the MCP endpoint is not a valid URI").with_source(e)
            })?;
        let headers = request.headers_mut();
        if let Some(session) = session.or_else(|| self.session.locked().clone()) {
            headers.insert(SESSION_ID, session);
        }
        if let Some(version) = self.protocol.locked().clone() {
            headers.insert(PROTOCOL_VERSION, version);
        }
        Ok(request)
    }

    async fn call(&self, request: Request<Full<Bytes>>) -> Result<Response<B>> {
        common::call(&self.service, request).await
    }

    /// Takes the session the answer to `initialize` names, or none: a later answer cannot
    /// move the client into another session, and a new `initialize` answered without one
    /// leaves the old one behind.
    fn remember_session(&self, response: &Response<B>) {
        *self.session.locked() = response.headers().get(SESSION_ID).cloned();
        self.expired.store(false, Ordering::SeqCst);
    }

    /// The server answered 404 for `session`: it is gone, and every message with it until
    /// the caller initializes again. A 404 for a session already replaced (a request sent
    /// before the new `initialize`) leaves the new one alone.
    pub(super) fn forget_session(&self, session: &HeaderValue) -> Error {
        let mut current = self.session.locked();
        if current.as_ref() == Some(session) {
            *current = None;
            self.expired.store(true, Ordering::SeqCst);
        }
        drop(current);
        Error::new(
            ErrorKind::SessionExpired,
            "the server no longer knows this session: initialize again",
        )
    }

    async fn deliver(&self, mut message: Value) {
        self.learn_tool_headers(&mut message);
        // The answer to `initialize` names the protocol version every later request carries.
        let initialize = self.initialize_id.locked().clone();
        if initialize.is_some() && message.get("id") == initialize.as_ref() {
            if let Some(version) = message
                .pointer("/result/protocolVersion")
                .and_then(Value::as_str)
            {
                if let Ok(value) = HeaderValue::from_str(version) {
                    *self.protocol.locked() = Some(value);
                }
            }
        }
        // The answer to the transport's own `initialize` is not the client's.
        if message.get("method").is_none() {
            let mut own = self.own_answer.locked();
            if own.as_ref().map(|(id, _)| id) == message.get("id") {
                if let Some((_, answer)) = own.take() {
                    let _ = answer.send(message);
                }
                return;
            }
        }
        let _ = self.incoming.send(Ok(message)).await;
    }

    pub(super) async fn post_once(self: &Arc<Self>, message: Value) -> Result<()> {
        let method = message.get("method").and_then(Value::as_str);
        let is_initialized_notice = method == Some("notifications/initialized");
        let is_initialize = method == Some("initialize");
        let body = serde_json::to_vec(&message).map_err(|e| {
            Error::new(ErrorKind::Config, "cannot serialize a JSON-RPC message").with_source(e)
        })?;
        let mut request = self.request(Method::POST, Full::new(Bytes::from(body)), None)?;
        request
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        request.headers_mut().insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        if self.tasks.is_stopped() {
            return Err(Error::new(ErrorKind::Config, "the transport is closed"));
        }
        if !is_initialize && self.expired.load(Ordering::SeqCst) {
            return Err(Error::new(
                ErrorKind::SessionExpired,
                "the server forgot the session: initialize again before sending more",
            ));
        }
        self.add_mcp_headers(&message, request.headers_mut());
        if is_initialize {
            *self.initialize_id.locked() = message.get("id").cloned();
            // A new initialize starts a new session.
            request.headers_mut().remove(SESSION_ID);
            request.headers_mut().remove(PROTOCOL_VERSION);
        }
        let is_request = method.is_some() && message.get("id").is_some();
        if is_request && self.listen_started.load(Ordering::SeqCst) {
            let mut attempted = self.listen_attempted.subscribe();
            // Bounded: a server slow to answer the GET delays requests by this much at most.
            let _ = tokio::time::timeout(LISTEN_WAIT, attempted.wait_for(|done| *done)).await;
        }
        let sent_session = request.headers().get(SESSION_ID).cloned();
        let _permit = self
            .sends
            .acquire()
            .await
            .map_err(|_| Error::new(ErrorKind::Config, "the transport is closed"))?;
        let response = self.call(request).await?;
        let awaiting = message
            .get("method")
            .and(message.get("id"))
            .filter(|id| !id.is_null())
            .cloned();
        if is_initialize && response.status().is_success() {
            self.remember_session(&response);
        }
        match self
            .answer(response, sent_session, method, awaiting.clone())
            .await?
        {
            Answer::Messages => {}
            Answer::Accepted => {
                // A request must be answered with JSON or a stream; a 202 or an empty 200
                // means no answer will ever come, so its caller gets one now.
                if let Some(id) = &awaiting {
                    self.fail_request(id, "the server accepted the request without answering it")
                        .await;
                }
            }
        }
        if is_initialized_notice
            && self.config.listen
            && !self.listening.swap(true, Ordering::SeqCst)
        {
            self.listen_started.store(true, Ordering::SeqCst);
            let shared = self.clone();
            self.tasks.spawn(async move {
                shared.clone().listen(None).await;
                shared.listening.store(false, Ordering::SeqCst);
            });
        }
        Ok(())
    }

    async fn answer(
        self: &Arc<Self>,
        response: Response<B>,
        sent_session: Option<HeaderValue>,
        method: Option<&str>,
        awaiting: Option<Value>,
    ) -> Result<Answer> {
        let status = response.status();
        let had_session = sent_session.is_some();
        if let Some(session) = sent_session.filter(|_| status == StatusCode::NOT_FOUND) {
            return Err(self.forget_session(&session));
        }
        if status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT {
            return Ok(Answer::Accepted);
        }
        if !status.is_success() {
            if let Some(id) = awaiting.as_ref() {
                let discovering = method == Some("server/discover") && !had_session;
                if let Some(answer) = self.refusal_answer(response, id, discovering).await? {
                    self.deliver(answer).await;
                    return Ok(Answer::Messages);
                }
            }
            return Err(refusal(
                status,
                format!(
                    "the MCP server at {} answered {status}",
                    without_query(&self.config.url)
                ),
            ));
        }
        if has_media_type(&response, "text/event-stream") {
            if awaiting.is_none() {
                // A notification or response is answered with 202; a stream for one has nothing
                // to wait for, and reading it could pin a connection for ever.
                tracing::debug!("ignoring an event stream that answers a notification or response");
                return Ok(Answer::Accepted);
            }
            let shared = self.clone();
            let body = response.into_body();
            self.tasks
                .spawn(async move { shared.read_stream(body, awaiting).await });
            return Ok(Answer::Messages);
        }
        if has_media_type(&response, "application/json") {
            let bytes = collect(response.into_body(), self.config.max_json_bytes).await?;
            let value: Value = serde_json::from_slice(&bytes).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidResponse,
                    "the MCP server sent malformed JSON",
                )
            })?;
            match value {
                Value::Array(batch) => {
                    for message in batch {
                        self.deliver(message).await;
                    }
                }
                message => self.deliver(message).await,
            }
            return Ok(Answer::Messages);
        }
        let bytes = collect(response.into_body(), self.config.max_json_bytes).await?;
        if bytes.is_empty() {
            return Ok(Answer::Accepted);
        }
        Err(Error::new(
            ErrorKind::InvalidResponse,
            "the MCP server answered with neither JSON nor an event stream",
        ))
    }

    /// The answer an HTTP error gives the request `id`: the JSON-RPC error in its body (how a
    /// 2026-07-28 server refuses an unsupported version or a missing capability, and how many
    /// older servers refuse a request without a session), or, for a `server/discover` refused
    /// with a 4xx other than 404 and 405 and no such body, an error saying so. `None` leaves the
    /// refusal a transport error: always for 401 and 403, which are authorization's to report.
    async fn refusal_answer(
        &self,
        response: Response<B>,
        id: &Value,
        discovering: bool,
    ) -> Result<Option<Value>> {
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Ok(None);
        }
        if has_media_type(&response, "application/json") {
            let bytes = collect(response.into_body(), self.config.max_json_bytes).await?;
            if let Some(answer) = error_answer(&bytes, id) {
                return Ok(Some(answer));
            }
        }
        // 404 and 405 say there is no Streamable HTTP endpoint here at all: that is for the
        // caller (`AutoTransport` falls back to HTTP+SSE on them), not a legacy server's answer.
        let legacy_refusal = status.is_client_error()
            && status != StatusCode::NOT_FOUND
            && status != StatusCode::METHOD_NOT_ALLOWED;
        Ok((discovering && legacy_refusal).then(|| discover_refused(status, id)))
    }
}

/// A URL for messages: no query string, which may carry a key.
fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// The JSON-RPC error in an error response's body, as the answer to the request `id`. The POST
/// carried that one request, so the error is its answer whatever id the body names: servers
/// that refuse before reading the body (a 2025 server without a session, middleware) cannot
/// echo it, and send `null` or a placeholder.
fn error_answer(body: &[u8], id: &Value) -> Option<Value> {
    let mut answer: Value = serde_json::from_slice(body).ok()?;
    if !answer.get("error").is_some_and(Value::is_object) {
        return None;
    }
    answer["id"] = id.clone();
    Some(answer)
}

/// A JSON-RPC error for a `server/discover` refused without one: the sign of a server older
/// than 2026-07-28, which the client's lifecycle falls back from.
fn discover_refused(status: StatusCode, id: &Value) -> Value {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": -32600,
            "message": format!("server/discover refused with HTTP {status}"),
        },
    })
}

impl<S> Shared<S> {
    /// Stops the background streams; needs no bounds, so `Drop` can call it.
    pub(crate) fn abort_tasks(&self) {
        self.tasks.stop();
    }
}

impl<S> Drop for StreamableHttpTransport<S> {
    fn drop(&mut self) {
        self.shared.abort_tasks();
    }
}

async fn collect<B>(body: B, limit: usize) -> Result<Bytes>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    read_limited(body, limit).await.map_err(|e| match e {
        ReadError::TooLarge => Error::new(
            ErrorKind::BodyTooLarge,
            format!("an MCP response is larger than {limit} bytes"),
        ),
        ReadError::Body(e) => Error::from_service(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn an_error_body_answers_the_request_whatever_id_it_names() {
        for named in [json!(null), json!("server-error"), json!(7)] {
            let body =
                json!({"jsonrpc": "2.0", "id": named, "error": {"code": -32000, "message": "no"}});
            let answer = error_answer(body.to_string().as_bytes(), &json!(7)).unwrap();
            assert_eq!(answer["id"], 7);
            assert_eq!(answer["error"]["code"], -32000);
        }
        let no_id = br#"{"jsonrpc":"2.0","error":{"code":-32600,"message":"no"}}"#;
        assert_eq!(error_answer(no_id, &json!("a")).unwrap()["id"], "a");
    }

    #[test]
    fn a_body_without_a_json_rpc_error_answers_nothing() {
        for body in [
            &br#"{"error":"invalid_token"}"#[..],
            br#"[{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"batch"}}]"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            b"not json",
            b"",
        ] {
            assert!(error_answer(body, &json!(1)).is_none(), "{body:?}");
        }
    }

    #[test]
    fn a_refused_discovery_is_an_invalid_request_naming_the_status() {
        let answer = discover_refused(StatusCode::BAD_REQUEST, &json!(3));
        assert_eq!(answer["id"], 3);
        assert_eq!(answer["error"]["code"], -32600);
        assert!(answer["error"]["message"].as_str().unwrap().contains("400"));
    }

    proptest! {
        #[test]
        fn any_body_gives_an_answer_to_the_request_or_none(body in proptest::collection::vec(any::<u8>(), 0..256), id in any::<u32>()) {
            if let Some(answer) = error_answer(&body, &json!(id)) {
                prop_assert_eq!(&answer["id"], &json!(id));
                prop_assert!(answer["error"].is_object());
            }
        }

        #[test]
        fn any_json_error_object_answers_the_request(code in any::<i32>(), message in any::<String>(), named in any::<Option<u32>>()) {
            let body = json!({"jsonrpc": "2.0", "id": named, "error": {"code": code, "message": message}});
            let answer = error_answer(body.to_string().as_bytes(), &json!("mine")).unwrap();
            prop_assert_eq!(&answer["id"], "mine");
            prop_assert_eq!(&answer["error"]["message"], &json!(message));
        }
    }
}
