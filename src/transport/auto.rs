//! [`AutoTransport`]: Streamable HTTP first, legacy HTTP+SSE when the server refuses it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use serde_json::Value;
use tokio::sync::{mpsc, Mutex};
use tower::Service;

use crate::error::{BoxError, Error, Result};
use crate::transport::common::{self, refused_with, Incoming, INCOMING_CAPACITY};
use crate::transport::legacy_sse::{LegacyShared, LegacySseConfig};
use crate::transport::streamable_http::{Shared, StreamableHttpConfig};

enum Chosen<S> {
    Streamable(Arc<Shared<S>>),
    Legacy(Arc<LegacyShared<S>>),
}

impl<S> Clone for Chosen<S> {
    fn clone(&self) -> Self {
        match self {
            Self::Streamable(t) => Self::Streamable(t.clone()),
            Self::Legacy(t) => Self::Legacy(t.clone()),
        }
    }
}

struct AutoShared<S> {
    service: common::SharedService<S>,
    streamable: StreamableHttpConfig,
    legacy: LegacySseConfig,
    sender: mpsc::Sender<Incoming>,
    chosen: Mutex<Option<Chosen<S>>>,
    /// Set by `close` and `Drop`, which may run while `send` holds `chosen` for the fallback:
    /// the transport `send` then picks is stopped at once instead of outliving this one.
    closed: AtomicBool,
}

impl<S> Chosen<S> {
    fn stop(&self) {
        match self {
            Self::Streamable(t) => t.abort_tasks(),
            Self::Legacy(t) => t.abort_reader(),
        }
    }
}

/// Stops a transport picked by a `send` whose future is dropped before it is kept.
struct StopUnlessKept<S>(Option<Chosen<S>>);

impl<S> StopUnlessKept<S> {
    fn keep(mut self) -> Chosen<S> {
        self.0.take().expect("kept once")
    }
}

impl<S> Drop for StopUnlessKept<S> {
    fn drop(&mut self) {
        if let Some(chosen) = &self.0 {
            chosen.stop();
        }
    }
}

impl<S> AutoShared<S> {
    /// Keeps the transport `send` picked, unless the `AutoTransport` was closed or dropped
    /// meanwhile: then it is stopped (the guard's drop) and the send fails.
    fn keep(&self, chosen: &mut Option<Chosen<S>>, picked: StopUnlessKept<S>) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::new(
                crate::error::ErrorKind::Config,
                "the transport is closed",
            ));
        }
        *chosen = Some(picked.keep());
        Ok(())
    }
}

/// Backwards compatibility: try Streamable HTTP first (the first message, `initialize`, or
/// `server/discover` at 2026-07-28, is POSTed), and fall back to the legacy HTTP+SSE transport
/// when that POST is refused with 400, 404 or 405 — never on 401 or 403, which belong to the
/// `OAuthLayer` beneath, and never when the refusal is a JSON-RPC error (or a 2025 server's 400
/// to `server/discover`): such a server speaks Streamable HTTP, and the error is the caller's
/// answer.
///
/// A transport that picks Streamable HTTP or legacy HTTP+SSE on its first message.
pub struct AutoTransport<S> {
    shared: Arc<AutoShared<S>>,
    receiver: mpsc::Receiver<Incoming>,
}

impl<S> std::fmt::Debug for AutoTransport<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoTransport")
            .field("url", &self.shared.streamable.url)
            .finish_non_exhaustive()
    }
}

impl<S> Drop for AutoTransport<S> {
    fn drop(&mut self) {
        // The chosen transport's background streams stop with it. When a `send` holds the
        // lock (a fallback in progress), it sees `closed` and stops what it picks.
        self.shared.closed.store(true, Ordering::SeqCst);
        if let Ok(chosen) = self.shared.chosen.try_lock() {
            if let Some(chosen) = chosen.as_ref() {
                chosen.stop();
            }
        }
    }
}

/// Whether a failed first POST means "this server speaks the older protocol".
fn falls_back(error: &Error) -> bool {
    matches!(
        refused_with(error),
        Some(StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED)
    )
}

impl<S, B> AutoTransport<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    /// A transport that tries Streamable HTTP with `streamable` and, when the server refuses it,
    /// the legacy HTTP+SSE transport with `legacy` (usually at the same URL: servers that speak
    /// both serve the SSE stream there).
    pub fn new(service: S, streamable: StreamableHttpConfig, legacy: LegacySseConfig) -> Self {
        let (sender, receiver) = mpsc::channel(INCOMING_CAPACITY);
        Self {
            shared: Arc::new(AutoShared {
                service: common::SharedService::new(service),
                streamable,
                legacy,
                sender,
                chosen: Mutex::new(None),
                closed: AtomicBool::new(false),
            }),
            receiver,
        }
    }

    /// Which transport the server got: `streamable-http`, `sse`, or `None` before the first
    /// message.
    pub async fn protocol(&self) -> Option<&'static str> {
        self.shared.chosen.lock().await.as_ref().map(|c| match c {
            Chosen::Streamable(_) => "streamable-http",
            Chosen::Legacy(_) => "sse",
        })
    }

    /// Sends one message; the first decides the transport.
    ///
    /// # Errors
    /// As the chosen transport's.
    pub fn send(
        &self,
        message: Value,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        let shared = self.shared.clone();
        async move {
            let mut chosen = shared.chosen.lock().await;
            if let Some(transport) = chosen.clone() {
                drop(chosen);
                return match transport {
                    Chosen::Streamable(t) => t.post(message).await,
                    Chosen::Legacy(t) => t.post(message).await,
                };
            }
            let streamable = Shared::new(
                shared.service.get(),
                shared.streamable.clone(),
                shared.sender.clone(),
            );
            let guard = StopUnlessKept(Some(Chosen::Streamable(streamable.clone())));
            match streamable.post(message.clone()).await {
                Ok(()) => shared.keep(&mut chosen, guard),
                Err(error) if falls_back(&error) => {
                    tracing::info!(%error, "Streamable HTTP refused; falling back to HTTP+SSE");
                    // If the server speaks neither, the first refusal says more than the second.
                    let legacy = LegacyShared::connect(
                        shared.service.get(),
                        shared.legacy.clone(),
                        shared.sender.clone(),
                    )
                    .await
                    .map_err(|_| error)?;
                    let guard = StopUnlessKept(Some(Chosen::Legacy(legacy.clone())));
                    legacy.post(message).await?;
                    shared.keep(&mut chosen, guard)
                }
                Err(error) => Err(error),
            }
        }
    }

    /// The next message from the server; `None` once the transport is closed, or once the
    /// legacy stream is gone for good and what it delivered has been received.
    pub async fn receive(&mut self) -> Option<Result<Value>> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return None;
        }
        let chosen = self.shared.chosen.lock().await.clone();
        match chosen {
            Some(Chosen::Legacy(legacy)) => legacy.receive_from(&mut self.receiver).await,
            _ => self.receiver.recv().await,
        }
    }

    /// Closes whichever transport was chosen.
    ///
    /// # Errors
    /// As the chosen transport's close.
    pub async fn close(&mut self) -> Result<()> {
        self.shared.closed.store(true, Ordering::SeqCst);
        let chosen = self.shared.chosen.lock().await.clone();
        match chosen {
            Some(Chosen::Streamable(t)) => t.close().await,
            Some(Chosen::Legacy(t)) => {
                t.abort_reader();
                Ok(())
            }
            None => Ok(()),
        }
    }
}
