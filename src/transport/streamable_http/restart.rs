//! Sessions the server forgot, started again inside the transport: the client's own
//! `initialize` sent again under the transport's id and answered here, one at a time, then
//! the refused message once more.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use serde_json::Value;
use tower::Service;

use super::Shared;
use crate::error::{BoxError, Error, ErrorKind, Result};
use crate::sync::LockExt;

/// How long starting a new session may take, all told.
const REINITIALIZE_TIMEOUT: Duration = Duration::from_secs(30);

impl<S, B> Shared<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    /// Sends `message`; when the server has forgotten the session, starts a new one with the
    /// client's `initialize` (see [`StreamableHttpConfig::reinitialize`]) and sends it again,
    /// once.
    pub(crate) async fn post(self: &Arc<Self>, message: Value) -> Result<()> {
        let is_initialize = message.get("method").and_then(Value::as_str) == Some("initialize");
        if is_initialize {
            if self.config.reinitialize {
                *self.initialize_message.locked() = Some(message.clone());
            }
            return self.post_once(message).await;
        }
        // While a new session starts, messages wait for it to hear `initialized`.
        drop(self.reinitializing.lock().await);
        if self.expired.load(Ordering::SeqCst) {
            self.reinitialize().await?;
        }
        let again = self.can_reinitialize().then(|| message.clone());
        match (self.post_once(message).await, again) {
            (Err(error), Some(again)) if error.kind() == ErrorKind::SessionExpired => {
                self.reinitialize().await?;
                self.post_once(again).await
            }
            (outcome, _) => outcome,
        }
    }

    fn can_reinitialize(&self) -> bool {
        self.config.reinitialize
            && self.session.locked().is_some()
            && self.initialize_message.locked().is_some()
    }

    /// Starts a new session with the client's `initialize`, unless another send already has
    /// since the old one was found gone.
    async fn reinitialize(self: &Arc<Self>) -> Result<()> {
        let mut started = self.reinitializing.lock().await;
        if !self.expired.load(Ordering::SeqCst) {
            return Ok(());
        }
        let initialize = self.initialize_message.locked().clone();
        let Some(mut initialize) = initialize.filter(|_| self.config.reinitialize) else {
            return Err(Error::new(
                ErrorKind::SessionExpired,
                "the server forgot the session: initialize again before sending more",
            ));
        };
        *started += 1;
        let id = Value::from(format!("tower-mcp-oauth/initialize-{}", *started));
        initialize["id"] = id.clone();
        let (answer, answered) = tokio::sync::oneshot::channel();
        *self.own_answer.locked() = Some((id, answer));
        tracing::info!("the server forgot the session; initializing again");
        // Bounded as a whole: every send waits on this, so a server that stalls the new
        // initialize must not hold them for ever.
        let starting = async {
            Box::pin(self.post_once(initialize)).await?;
            let answer = answered.await.map_err(|_| {
                Error::new(ErrorKind::SessionExpired, "a new initialize got no answer")
            })?;
            if answer.get("result").is_none() {
                return Err(Error::new(
                    ErrorKind::SessionExpired,
                    "the server forgot the session and refused a new one",
                ));
            }
            let initialized =
                serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
            Box::pin(self.post_once(initialized)).await
        };
        let outcome = tokio::time::timeout(REINITIALIZE_TIMEOUT, starting)
            .await
            .unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Timeout,
                    "the server did not start a new session in time",
                ))
            });
        self.own_answer.locked().take();
        if outcome.is_err() {
            self.expired.store(true, Ordering::SeqCst);
        }
        outcome
    }
}
