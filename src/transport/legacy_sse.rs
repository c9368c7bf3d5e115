//! The legacy MCP HTTP+SSE client transport (protocol 2024-11-05) on any tower HTTP service.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use http::{Method, Request, Response};
use http_body::Body;
use http_body_util::Full;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tower::Service;
use url::Url;

use crate::error::{BoxError, Error, ErrorKind, Result};
use crate::http::{has_media_type, redact_url};
use crate::sync::LockExt;
use crate::transport::common::{self, refusal, Incoming, Tasks, INCOMING_CAPACITY};
use crate::transport::sse::SseStream;

/// How a dropped event stream is reopened (the `retry_config` of [`create_authorized_transport`](super::create_authorized_transport)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    /// Attempts in a row before giving up.
    pub(crate) max_attempts: usize,
    /// The first delay; each further attempt doubles it.
    pub(crate) initial_backoff: Duration,
    /// The longest delay.
    pub(crate) max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RetryConfig {
    fn delay(&self, attempt: usize) -> Duration {
        let factor = 1u32 << attempt.min(16) as u32;
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    /// Attempts in a row before giving up.
    pub fn max_attempts(mut self, max_attempts: usize) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// The first delay; each further attempt doubles it.
    pub fn initial_backoff(mut self, initial_backoff: Duration) -> Self {
        self.initial_backoff = initial_backoff;
        self
    }

    /// The longest delay.
    pub fn max_backoff(mut self, max_backoff: Duration) -> Self {
        self.max_backoff = max_backoff;
        self
    }
}

/// Settings of a legacy HTTP+SSE transport.
#[derive(Debug, Clone)]
pub struct LegacySseConfig {
    /// The SSE endpoint (often `…/sse`).
    pub(crate) url: String,
    /// The largest SSE event accepted.
    pub(crate) max_event_bytes: usize,
    /// Reconnection when the stream drops.
    pub(crate) retry: RetryConfig,
    /// How long to wait for the `endpoint` event.
    pub(crate) endpoint_timeout: Duration,
}

impl LegacySseConfig {
    /// Defaults for the SSE endpoint `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_event_bytes: crate::transport::DEFAULT_MAX_MESSAGE_BYTES,
            retry: RetryConfig::default(),
            endpoint_timeout: Duration::from_secs(30),
        }
    }

    /// The largest SSE event accepted.
    pub fn max_event_bytes(mut self, max_event_bytes: usize) -> Self {
        self.max_event_bytes = max_event_bytes;
        self
    }

    /// Reconnection when the stream drops.
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// How long to wait for the `endpoint` event.
    pub fn endpoint_timeout(mut self, endpoint_timeout: Duration) -> Self {
        self.endpoint_timeout = endpoint_timeout;
        self
    }
}

/// The id of the `initialize` request repeated after a reconnection.
const REINITIALIZE_ID: &str = "tower-mcp-oauth/reinitialize";

pub(crate) struct LegacyShared<S> {
    service: common::SharedService<S>,
    config: LegacySseConfig,
    sse_url: Url,
    endpoint: watch::Sender<Option<String>>,
    incoming: mpsc::Sender<Incoming>,
    /// The reader, and the posts that initialize a new session after a reconnection.
    tasks: Tasks,
    /// The stream dropped for good: what is queued is delivered, then `receive` ends.
    gave_up: AtomicBool,
    /// Wakes a `receive` waiting when the stream is given up.
    given_up: tokio::sync::Notify,
    /// Requests sent and not answered yet: answered locally if the stream drops, since a new
    /// session never answers the old one's requests.
    pending: Mutex<Vec<Value>>,
    /// The caller's `initialize` request once the handshake completed
    /// (`notifications/initialized` sent), to repeat on a new session.
    handshake: Mutex<Handshake>,
}

#[derive(Default)]
struct Handshake {
    initialize: Option<Value>,
    initialized: bool,
}

impl Handshake {
    /// The request to repeat on a new session, if the caller completed the handshake.
    fn replay(&self) -> Option<Value> {
        let mut request = self.initialize.clone().filter(|_| self.initialized)?;
        request["id"] = Value::from(REINITIALIZE_ID);
        Some(request)
    }
}

/// The legacy MCP HTTP+SSE client transport (protocol 2024-11-05) on any tower HTTP service.
///
/// **Deprecated by the protocol**: Streamable HTTP replaced it in 2025-03-26, and 2026-07-28
/// deprecates it. It is kept for servers that speak nothing else; [`AutoTransport`](super::AutoTransport) falls back
/// to it only when a server refuses Streamable HTTP.
///
/// A GET opens the event stream; its first `endpoint` event names the URL (same origin only) to
/// POST messages to; answers arrive as `message` events. When the stream drops, it is opened
/// again per the [`RetryConfig`] (attempts, exponential backoff), and the new `endpoint` is used.
///
/// A new stream is a new session on the server, which knows nothing of the client. So after a
/// reconnection the transport repeats the client's `initialize` request (under an id of its own,
/// its answer kept from the caller) and `notifications/initialized`, and only then lets the
/// caller's messages through.
///
/// A legacy HTTP+SSE client transport.
pub struct LegacySseTransport<S> {
    shared: Arc<LegacyShared<S>>,
    receiver: mpsc::Receiver<Incoming>,
}

impl<S> std::fmt::Debug for LegacySseTransport<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacySseTransport")
            .field("url", &self.shared.config.url)
            .finish_non_exhaustive()
    }
}

impl<S, B> LegacySseTransport<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    /// Opens the event stream and waits for the `endpoint` event.
    ///
    /// # Errors
    /// Transport errors; [`ErrorKind::InvalidResponse`] when the stream is not SSE or names no
    /// endpoint; [`ErrorKind::UnexpectedRedirect`] for an endpoint on another origin.
    pub async fn connect(service: S, config: LegacySseConfig) -> Result<Self> {
        let (sender, receiver) = mpsc::channel(INCOMING_CAPACITY);
        let shared = LegacyShared::connect(service, config, sender).await?;
        Ok(Self { shared, receiver })
    }

    /// Sends one JSON-RPC message to the endpoint the server named.
    ///
    /// # Errors
    /// Transport errors, or a status that is not 2xx.
    pub fn send(
        &self,
        message: Value,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        let shared = self.shared.clone();
        async move { shared.post(message).await }
    }

    /// The next message from the server; `None` once the transport is closed, or once the
    /// stream is gone for good and what it delivered has been received.
    pub async fn receive(&mut self) -> Option<Result<Value>> {
        self.shared.receive_from(&mut self.receiver).await
    }

    /// Stops reading the stream.
    ///
    /// # Errors
    /// None today.
    pub async fn close(&mut self) -> Result<()> {
        self.shared.abort_reader();
        Ok(())
    }
}

impl<S> LegacyShared<S> {
    /// The next message on `receiver`, as [`LegacySseTransport::receive`] describes.
    pub(crate) async fn receive_from(
        &self,
        receiver: &mut mpsc::Receiver<Incoming>,
    ) -> Option<Incoming> {
        if self.tasks.is_stopped() {
            return None;
        }
        // Armed before `gave_up` is read, so a give-up between the two is not missed: the reader
        // queues its last error, then sets `gave_up`, then wakes us.
        let given_up = self.given_up.notified();
        tokio::pin!(given_up);
        given_up.as_mut().enable();
        if self.gave_up.load(Ordering::SeqCst) {
            return receiver.try_recv().ok();
        }
        tokio::select! {
            message = receiver.recv() => message,
            () = given_up => receiver.try_recv().ok(),
        }
    }

    /// Stops reading the stream; needs no bounds, so `Drop` can call it.
    pub(crate) fn abort_reader(&self) {
        self.tasks.stop();
    }
}

impl<S> Drop for LegacySseTransport<S> {
    fn drop(&mut self) {
        self.shared.abort_reader();
    }
}

impl<S, B> LegacyShared<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    pub(crate) async fn connect(
        service: S,
        config: LegacySseConfig,
        incoming: mpsc::Sender<Incoming>,
    ) -> Result<Arc<Self>> {
        let sse_url = Url::parse(&config.url).map_err(|e| {
            Error::new(ErrorKind::Config, "the SSE endpoint is not a valid URL").with_source(e)
        })?;
        let (endpoint, mut endpoint_seen) = watch::channel(None);
        let shared = Arc::new(Self {
            service: common::SharedService::new(service),
            config,
            sse_url,
            endpoint,
            incoming,
            tasks: Tasks::default(),
            gave_up: AtomicBool::new(false),
            given_up: tokio::sync::Notify::new(),
            pending: Mutex::default(),
            handshake: Mutex::default(),
        });
        let body = shared.open().await?;
        shared.tasks.spawn(shared.clone().read(body));
        let named = tokio::time::timeout(
            shared.config.endpoint_timeout,
            endpoint_seen.wait_for(Option::is_some),
        )
        .await;
        match named {
            Ok(Ok(_)) => Ok(shared),
            _ => {
                shared.abort_reader();
                Err(Error::new(
                    ErrorKind::InvalidResponse,
                    "the SSE stream named no endpoint to POST messages to",
                ))
            }
        }
    }

    async fn call(&self, request: Request<Full<Bytes>>) -> Result<Response<B>> {
        common::call(&self.service, request).await
    }

    async fn open(&self) -> Result<B> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(self.config.url.as_str())
            .header(ACCEPT, "text/event-stream")
            .body(Full::default())
            .map_err(|e| {
                Error::new(ErrorKind::Config, "the SSE endpoint is not a valid URI").with_source(e)
            })?;
        let response = self.call(request).await?;
        let status = response.status();
        let is_sse = has_media_type(&response, "text/event-stream");
        if !status.is_success() || !is_sse {
            return Err(refusal(
                status,
                format!(
                    "the SSE endpoint {} answered {status}",
                    redact_url(&self.sse_url)
                ),
            ));
        }
        Ok(response.into_body())
    }

    /// The endpoint named by an `endpoint` event, resolved and held to the stream's origin.
    fn accept_endpoint(&self, data: &str) -> Result<String> {
        let url = self.sse_url.join(data.trim()).map_err(|e| {
            Error::new(
                ErrorKind::InvalidResponse,
                "the endpoint event is not a URL",
            )
            .with_source(e)
        })?;
        if url.origin() != self.sse_url.origin() {
            return Err(Error::new(
                ErrorKind::UnexpectedRedirect,
                format!(
                    "the SSE stream named an endpoint on another origin ({}); refused",
                    redact_url(&url)
                ),
            ));
        }
        Ok(url.to_string())
    }

    async fn read(self: Arc<Self>, mut body: B) {
        let mut attempt = 0;
        let mut reconnected = false;
        // The new session's endpoint, held back until it is initialized again.
        let mut reinitializing: Option<String> = None;
        loop {
            let mut events = SseStream::new(body, self.config.max_event_bytes);
            while let Some(event) = events.next().await {
                let Ok(event) = event else { break };
                match event.event.as_str() {
                    "endpoint" => match self.accept_endpoint(&event.data) {
                        Ok(endpoint) => {
                            let replay = self.handshake_replay();
                            match replay.filter(|_| reconnected) {
                                Some(initialize) => {
                                    tracing::info!("initializing the new SSE session");
                                    reinitializing = Some(endpoint.clone());
                                    let shared = self.clone();
                                    self.tasks.spawn(async move {
                                        if let Err(error) =
                                            shared.post_to(&endpoint, &initialize).await
                                        {
                                            let _ = shared.incoming.send(Err(error)).await;
                                        }
                                    });
                                }
                                None => {
                                    self.endpoint.send_replace(Some(endpoint));
                                }
                            }
                        }
                        Err(error) => {
                            let _ = self.incoming.send(Err(error)).await;
                            return;
                        }
                    },
                    "message" => match serde_json::from_str::<Value>(&event.data) {
                        Ok(message) if message["id"] == REINITIALIZE_ID => {
                            if let Some(endpoint) = reinitializing.take() {
                                self.clone().finish_reinitialize(endpoint, &message).await;
                            }
                        }
                        Ok(message) => {
                            // Real traffic: the stream works. An `endpoint` alone does not
                            // count, or a server that names one and hangs up would be
                            // reconnected to forever.
                            attempt = 0;
                            if message.get("method").is_none() {
                                if let Some(id) = message.get("id") {
                                    self.pending.locked().retain(|pending| pending != id);
                                }
                            }
                            let _ = self.incoming.send(Ok(message)).await;
                        }
                        Err(_) => tracing::warn!("ignoring an SSE message that is not JSON"),
                    },
                    _ => {}
                }
            }
            reconnected = true;
            reinitializing = None;
            // The stream is gone: the old endpoint belongs to a dead session, and so do the
            // requests waiting for answers.
            self.endpoint.send_replace(None);
            let orphans = std::mem::take(&mut *self.pending.locked());
            for id in orphans {
                let _ = self
                    .incoming
                    .send(Ok(serde_json::json!({
                        "jsonrpc": "2.0",
                        "id": id,
                        "error": {"code": -32000, "message": "the SSE stream dropped before the answer came"},
                    })))
                    .await;
            }
            loop {
                if self.tasks.is_stopped() {
                    return;
                }
                if attempt >= self.config.retry.max_attempts {
                    let _ = self
                        .incoming
                        .send(Err(Error::new(
                            ErrorKind::Http,
                            "the SSE stream dropped and could not be reopened",
                        )))
                        .await;
                    self.gave_up.store(true, Ordering::SeqCst);
                    self.given_up.notify_waiters();
                    return;
                }
                tokio::time::sleep(self.config.retry.delay(attempt)).await;
                attempt += 1;
                match self.open().await {
                    Ok(reopened) => {
                        tracing::info!(attempt, "SSE stream reopened");
                        body = reopened;
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, attempt, "reopening the SSE stream failed")
                    }
                }
            }
        }
    }

    fn handshake_replay(&self) -> Option<Value> {
        self.handshake.locked().replay()
    }

    /// Remembers the caller's handshake, to repeat it on a new session.
    fn note_handshake(&self, message: &Value) {
        let handshake = || self.handshake.locked();
        match message["method"].as_str() {
            Some("initialize") => {
                *handshake() = Handshake {
                    initialize: Some(message.clone()),
                    initialized: false,
                }
            }
            Some("notifications/initialized") => handshake().initialized = true,
            _ => {}
        }
    }

    /// The answer to the repeated `initialize`: on success, `notifications/initialized`, then
    /// the endpoint opens to the caller's messages.
    async fn finish_reinitialize(self: Arc<Self>, endpoint: String, answer: &Value) {
        if answer.get("error").is_some() {
            let _ = self
                .incoming
                .send(Err(Error::new(
                    ErrorKind::InvalidResponse,
                    "the server refused to initialize the new SSE session",
                )))
                .await;
            return;
        }
        let initialized =
            serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let shared = self.clone();
        self.tasks.spawn(async move {
            match shared.post_to(&endpoint, &initialized).await {
                Ok(()) => {
                    tracing::info!("the new SSE session is initialized");
                    shared.endpoint.send_replace(Some(endpoint));
                }
                Err(error) => {
                    let _ = shared.incoming.send(Err(error)).await;
                }
            }
        });
    }

    pub(crate) async fn post(&self, message: Value) -> Result<()> {
        self.note_handshake(&message);
        let request_id = message
            .get("method")
            .and(message.get("id"))
            .filter(|id| !id.is_null())
            .cloned();
        // After a reconnection, wait (briefly) for the new endpoint.
        let mut endpoint = self.endpoint.subscribe();
        let endpoint = tokio::time::timeout(
            self.config.endpoint_timeout,
            endpoint.wait_for(Option::is_some),
        )
        .await
        .ok()
        .and_then(|r| r.ok().and_then(|e| e.clone()))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Http,
                "the SSE session has no endpoint (stream down)",
            )
        })?;
        if let Some(id) = &request_id {
            self.pending.locked().push(id.clone());
        }
        let sent = self.post_to(&endpoint, &message).await;
        if let (Err(_), Some(id)) = (&sent, &request_id) {
            // The caller has the error; no answer is awaited.
            self.pending.locked().retain(|pending| pending != id);
        }
        sent
    }

    async fn post_to(&self, endpoint: &str, message: &Value) -> Result<()> {
        let body = serde_json::to_vec(message).map_err(|e| {
            Error::new(ErrorKind::Config, "cannot serialize a JSON-RPC message").with_source(e)
        })?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(endpoint)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| {
                Error::new(ErrorKind::Config, "the endpoint is not a valid URI").with_source(e)
            })?;
        let response = self.call(request).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(refusal(
                response.status(),
                format!("the message endpoint answered {}", response.status()),
            ))
        }
    }
}
