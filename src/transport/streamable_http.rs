//! [`StreamableHttpTransport`]: the MCP Streamable HTTP client transport.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use serde_json::Value;
use tokio::sync::mpsc;
use tower::Service;

use crate::error::{BoxError, Error, ErrorKind, Result};
use crate::http::{has_media_type, read_limited, ReadError};
use crate::mcp_headers::{self, ToolHeaders};

use crate::sync::LockExt;
use crate::transport::common::{
    self, refusal, refused_with, Incoming, Tasks, INCOMING_CAPACITY, LAST_EVENT_ID, SESSION_ID,
};
use crate::transport::sse::SseStream;
use crate::transport::DEFAULT_MAX_MESSAGE_BYTES;

const PROTOCOL_VERSION: &str = "mcp-protocol-version";

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
}

pub(crate) struct Shared<S> {
    service: S,
    config: StreamableHttpConfig,
    session: Mutex<Option<HeaderValue>>,
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
}

/// The MCP Streamable HTTP client transport (2025-03-26, 2025-06-18, 2025-11-25) on any tower
/// HTTP service, so `OAuthLayer`, timeouts and retries stack beneath it.
///
/// - Every JSON-RPC message is POSTed with `Accept: application/json, text/event-stream`; a JSON
///   answer, an SSE stream of messages, or 202 for notifications and responses are all handled.
/// - `Mcp-Session-Id` is captured from the server and sent back; `MCP-Protocol-Version` is sent
///   once `initialize` has negotiated it.
/// - After `notifications/initialized`, a GET opens the server's listening stream (a 405 means
///   the server has none).
/// - A stream that drops is resumed with a GET carrying `Last-Event-ID`, after the server's
///   `retry` delay.
/// - A 404 for a known session surfaces as [`ErrorKind::SessionExpired`]: initialize again.
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
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
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
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
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
            service,
            sends: tokio::sync::Semaphore::new(config.max_concurrent_sends.max(1)),
            config,
            session: Mutex::new(None),
            protocol: Mutex::new(None),
            incoming,
            tasks: Tasks::default(),
            initialize_id: Mutex::new(None),
            tool_lists: Mutex::new(Vec::new()),
            tool_headers: Mutex::new(HashMap::new()),
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

    /// The 2026-07-28 request headers: `Mcp-Method`, `Mcp-Name`, the `Mcp-Param-*` a tool's
    /// schema asks for, and the protocol version the message's `_meta` names (the header must
    /// say what the body says). Harmless to older servers, which ignore them.
    fn add_mcp_headers(&self, message: &Value, headers: &mut http::HeaderMap) {
        for (name, value) in mcp_headers::standard_headers(message) {
            headers.insert(name, value);
        }
        if message.get("method").and_then(Value::as_str) == Some("tools/call") {
            let tool = message.pointer("/params/name").and_then(Value::as_str);
            let arguments = message.pointer("/params/arguments").unwrap_or(&Value::Null);
            if let Some(tool) = tool.and_then(|name| self.tool_headers.locked().get(name).cloned())
            {
                for (name, value) in tool.for_arguments(arguments) {
                    headers.insert(name, value);
                }
            }
        }
        if message.get("method").and_then(Value::as_str) == Some("tools/list") {
            if let Some(id) = message.get("id") {
                self.tool_lists.locked().push(id.clone());
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
    fn learn_tool_headers(&self, message: &mut Value) {
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

    async fn call(&self, request: Request<Full<Bytes>>) -> Result<Response<B>> {
        common::call(&self.service, request).await
    }

    /// Takes the session the answer to `initialize` names, or none: a later answer cannot
    /// move the client into another session, and a new `initialize` answered without one
    /// leaves the old one behind.
    fn remember_session(&self, response: &Response<B>) {
        *self.session.locked() = response.headers().get(SESSION_ID).cloned();
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
        let _ = self.incoming.send(Ok(message)).await;
    }

    pub(crate) async fn post(self: &Arc<Self>, message: Value) -> Result<()> {
        let is_initialized_notice =
            message.get("method").and_then(Value::as_str) == Some("notifications/initialized");
        let is_initialize = message.get("method").and_then(Value::as_str) == Some("initialize");
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
        self.add_mcp_headers(&message, request.headers_mut());
        if is_initialize {
            *self.initialize_id.locked() = message.get("id").cloned();
            // A new initialize starts a new session.
            request.headers_mut().remove(SESSION_ID);
            request.headers_mut().remove(PROTOCOL_VERSION);
        }
        let had_session = request.headers().contains_key(SESSION_ID);
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
        match self.answer(response, had_session, awaiting.clone()).await? {
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
        if is_initialized_notice && self.config.listen {
            let shared = self.clone();
            self.tasks.spawn(async move { shared.listen(None).await });
        }
        Ok(())
    }

    async fn answer(
        self: &Arc<Self>,
        response: Response<B>,
        had_session: bool,
        awaiting: Option<Value>,
    ) -> Result<Answer> {
        let status = response.status();
        if status == StatusCode::NOT_FOUND && had_session {
            *self.session.locked() = None;
            return Err(Error::new(
                ErrorKind::SessionExpired,
                "the server no longer knows this session: initialize again",
            ));
        }
        if status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT {
            return Ok(Answer::Accepted);
        }
        if !status.is_success() {
            // At 2026-07-28 a server refuses a request (an unsupported version, a missing
            // capability) with an HTTP error whose body answers it: that answer is the caller's.
            if let Some(id) = awaiting.as_ref() {
                if has_media_type(&response, "application/json") {
                    let bytes = collect(response.into_body(), self.config.max_json_bytes).await?;
                    if let Some(answer) = error_answer(&bytes, id) {
                        self.deliver(answer).await;
                        return Ok(Answer::Messages);
                    }
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

    /// Reads a POST's event stream until the answer to `awaiting` (the request's id) has come.
    /// A stream that breaks or ends before that is resumed with GET and `Last-Event-ID`; if it
    /// cannot be, the caller gets a JSON-RPC error for the request instead of waiting forever.
    async fn read_stream(self: Arc<Self>, body: B, awaiting: Option<Value>) {
        let mut events = SseStream::new(body, self.config.max_event_bytes);
        let mut last_id: Option<String> = None;
        let mut resumptions = 0;
        // Event ids delivered from this request's stream, so a server replaying from an earlier
        // point on resumption does not deliver a message twice.
        let mut delivered_ids = std::collections::HashSet::new();
        loop {
            let mut answered = false;
            let mut previous_id = None;
            while let Some(event) = events.next().await {
                let Ok(event) = event else { break };
                resumptions = 0;
                // An event that set an id of its own (not one carried over from the event
                // before it) and was delivered already is a replay.
                let own_id = event
                    .id
                    .clone()
                    .filter(|id| Some(id) != previous_id.as_ref());
                previous_id = event.id.clone();
                if let Some(id) = own_id {
                    if delivered_ids.contains(&id) {
                        continue;
                    }
                    if delivered_ids.len() < MAX_REMEMBERED_EVENT_IDS {
                        delivered_ids.insert(id);
                    }
                }
                if event.event != "message" || event.data.is_empty() {
                    continue;
                }
                match serde_json::from_str::<Value>(&event.data) {
                    Ok(message) => {
                        answered |= awaiting.is_some()
                            && message.get("id") == awaiting.as_ref()
                            && message.get("method").is_none();
                        self.deliver(message).await;
                    }
                    Err(_) => tracing::warn!("ignoring an SSE event that is not JSON"),
                }
                if answered {
                    // The answer is the stream's last word: a server that keeps it open must
                    // not pin a connection and a task per request.
                    return;
                }
            }
            let decoder = events.decoder();
            last_id = decoder.last_event_id().map(str::to_owned).or(last_id);
            let retry = clamp_retry(decoder.retry().unwrap_or(self.config.default_retry));
            let Some(id) = awaiting.as_ref().filter(|_| !answered) else {
                return;
            };
            if self.tasks.is_stopped() {
                return;
            }
            resumptions += 1;
            let reason = match (&last_id, resumptions > self.config.max_resumptions) {
                (None, _) => Some("the server closed the stream before answering"),
                (Some(_), true) => Some("the event stream kept dropping before the answer came"),
                (Some(_), false) => None,
            };
            if let Some(reason) = reason {
                self.fail_request(id, reason).await;
                return;
            }
            tokio::time::sleep(retry).await;
            match self.open_get(last_id.as_deref()).await {
                Ok(Some(body)) => events = SseStream::new(body, self.config.max_event_bytes),
                Ok(None) => {
                    self.fail_request(id, "the stream broke and the server cannot resume it")
                        .await;
                    return;
                }
                Err(error) => {
                    self.fail_request(id, "the stream broke and resuming it failed")
                        .await;
                    let _ = self.incoming.send(Err(error)).await;
                    return;
                }
            }
        }
    }

    /// Answers a request the server will not answer, so its caller is not left waiting.
    async fn fail_request(&self, id: &Value, reason: &str) {
        tracing::warn!(%reason, "answering a request locally");
        let _ = self
            .incoming
            .send(Ok(serde_json::json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": {"code": -32000, "message": reason},
            })))
            .await;
    }

    /// GETs the event stream; `None` when the server has none (405).
    async fn open_get(&self, last_event_id: Option<&str>) -> Result<Option<B>> {
        let mut request = self.request(Method::GET, Full::default(), None)?;
        request
            .headers_mut()
            .insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        if let Some(id) = last_event_id.and_then(|id| HeaderValue::from_str(id).ok()) {
            request.headers_mut().insert(LAST_EVENT_ID, id);
        }
        let had_session = request.headers().contains_key(SESSION_ID);
        let response = self.call(request).await?;
        let status = response.status();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            return Ok(None);
        }
        if status == StatusCode::NOT_FOUND && had_session {
            *self.session.locked() = None;
            return Err(Error::new(
                ErrorKind::SessionExpired,
                "the server no longer knows this session: initialize again",
            ));
        }
        if !status.is_success() || !has_media_type(&response, "text/event-stream") {
            return Err(refusal(
                status,
                format!("the listening stream answered {status}"),
            ));
        }
        Ok(Some(response.into_body()))
    }

    /// The server's listening stream, reopened (with `Last-Event-ID`) whenever it drops. It is
    /// optional: a server without one (404 or 405) is left alone, and a stream that keeps
    /// failing or closing is retried with a growing delay, never ending the session, whose
    /// requests and answers go over POST.
    async fn listen(self: Arc<Self>, mut last_event_id: Option<String>) {
        let mut failures: u32 = 0;
        while !self.tasks.is_stopped() && !self.incoming.is_closed() {
            let opened_at = tokio::time::Instant::now();
            let body = match self.open_get(last_event_id.as_deref()).await {
                Ok(Some(body)) => body,
                Ok(None) => {
                    tracing::info!("the MCP server offers no listening stream; not listening");
                    return;
                }
                // A 404 for a session the server forgot: the caller must initialize again.
                Err(error) if error.kind() == ErrorKind::SessionExpired => {
                    let _ = self.incoming.send(Err(error)).await;
                    return;
                }
                Err(error) if no_listening_stream(&error) => {
                    tracing::info!(%error, "the MCP server offers no listening stream; not listening");
                    return;
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::debug!(%error, failures, "the listening stream could not be opened");
                    tokio::time::sleep(self.listen_backoff(failures)).await;
                    continue;
                }
            };
            let mut events = SseStream::new(body, self.config.max_event_bytes);
            let mut delivered = false;
            while let Some(event) = events.next().await {
                let event = match event {
                    Ok(event) => event,
                    // An event the decoder refuses would come back on every reconnection.
                    Err(error) if error.kind() == ErrorKind::BodyTooLarge => {
                        tracing::warn!(%error, "stopped listening: the server sent an oversized event");
                        return;
                    }
                    Err(_) => break,
                };
                delivered = true;
                if event.event == "message" && !event.data.is_empty() {
                    if let Ok(message) = serde_json::from_str::<Value>(&event.data) {
                        self.deliver(message).await;
                    }
                }
            }
            last_event_id = events
                .decoder()
                .last_event_id()
                .map(str::to_owned)
                .or(last_event_id);
            // A stream that carried events, or stayed open a good while, was healthy.
            if delivered || opened_at.elapsed() >= LISTEN_BACKOFF_MAX {
                failures = 0;
            }
            failures = failures.saturating_add(1);
            let retry = events
                .decoder()
                .retry()
                .map(clamp_retry)
                .unwrap_or_default()
                .max(self.listen_backoff(failures));
            tokio::time::sleep(retry).await;
        }
    }

    /// `default_retry`, doubled at each failure in a row, up to [`LISTEN_BACKOFF_MAX`].
    fn listen_backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        self.config
            .default_retry
            .saturating_mul(2u32.pow(doublings))
            .clamp(Duration::from_millis(100), LISTEN_BACKOFF_MAX)
    }
}

/// Event ids remembered per request stream to drop replays.
const MAX_REMEMBERED_EVENT_IDS: usize = 4096;

/// The longest wait between two attempts at the listening stream.
const LISTEN_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Whether a GET's failure says the server has no listening stream (a 404 without a session, as
/// stateless servers answer, or a 405), as opposed to one that failed this time.
fn no_listening_stream(error: &Error) -> bool {
    matches!(
        refused_with(error),
        Some(StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED)
    )
}

/// The server's `retry`, held between 100 ms (no busy loop) and a minute (no hostile stall).
/// A URL for messages: no query string, which may carry a key.
fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// A JSON-RPC error answering the request `id`, from an error response's body.
fn error_answer(body: &[u8], id: &Value) -> Option<Value> {
    let answer: Value = serde_json::from_slice(body).ok()?;
    (answer.get("error").is_some_and(Value::is_object) && answer.get("id") == Some(id))
        .then_some(answer)
}

fn clamp_retry(retry: Duration) -> Duration {
    retry.clamp(Duration::from_millis(100), Duration::from_secs(60))
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
