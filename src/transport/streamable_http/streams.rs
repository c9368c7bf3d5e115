//! The event streams of a Streamable HTTP transport: a POST's stream read until its answer and
//! resumed with `Last-Event-ID` when it breaks, and the GET listening stream, backing off while
//! it fails and stopping when the server has none.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{HeaderValue, ACCEPT};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use serde_json::Value;
use tower::Service;

use super::Shared;
use crate::error::{BoxError, Error, ErrorKind, Result};
use crate::http::has_media_type;
use crate::transport::common::{refusal, refused_with, LAST_EVENT_ID, SESSION_ID};
use crate::transport::sse::SseStream;

impl<S, B> Shared<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    /// Reads a POST's event stream until the answer to `awaiting` (the request's id) has come.
    /// A stream that breaks or ends before that is resumed with GET and `Last-Event-ID`; if it
    /// cannot be, the caller gets a JSON-RPC error for the request instead of waiting forever.
    pub(super) async fn read_stream(self: Arc<Self>, body: B, awaiting: Option<Value>) {
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
            // SEP-1699: the client waits what the server's `retry` says, no less and no more.
            let retry = decoder.retry().unwrap_or(self.config.default_retry);
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
    pub(super) async fn fail_request(&self, id: &Value, reason: &str) {
        tracing::warn!(%reason, "answering a request locally");
        // Through `deliver`: the transport's own `initialize` takes its answer there.
        self.deliver(serde_json::json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": -32000, "message": reason},
        }))
        .await;
    }

    /// GETs the event stream; `None` when the server has none (405, or 404 in a session).
    async fn open_get(&self, last_event_id: Option<&str>) -> Result<Option<B>> {
        let mut request = self.request(Method::GET, Full::default(), None)?;
        request
            .headers_mut()
            .insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        if let Some(id) = last_event_id.and_then(|id| HeaderValue::from_str(id).ok()) {
            request.headers_mut().insert(LAST_EVENT_ID, id);
        }
        let sent_session = request.headers().get(SESSION_ID).cloned();
        let response = self.call(request).await?;
        let status = response.status();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            return Ok(None);
        }
        // A 404 says only that there is no listening stream here: the listening GET is
        // optional, and only a POST refused with 404 means the session is gone.
        if status == StatusCode::NOT_FOUND && sent_session.is_some() {
            return Ok(None);
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
    pub(super) async fn listen(self: Arc<Self>, mut last_event_id: Option<String>) {
        let mut failures: u32 = 0;
        while !self.tasks.is_stopped() && !self.incoming.is_closed() {
            let opened_at = tokio::time::Instant::now();
            let opened = self.open_get(last_event_id.as_deref()).await;
            // Whatever the answer, requests waiting for the first attempt may go now.
            self.listen_attempted.send_replace(true);
            let body = match opened {
                Ok(Some(body)) => body,
                Ok(None) => {
                    tracing::info!("the MCP server offers no listening stream; not listening");
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
            let backoff = self.listen_backoff(failures);
            // The server's `retry` is the wait after a healthy stream (SEP-1699), however short:
            // a server that sends an event and closes costs no more than one that streams them.
            // A stream that keeps failing is backed off further, so no server makes the client
            // spin on nothing.
            let wait = match events.decoder().retry() {
                Some(retry) if failures == 1 => retry,
                Some(retry) => retry.max(backoff),
                None => backoff,
            };
            tokio::time::sleep(wait).await;
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
