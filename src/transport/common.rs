//! What the transports share: the queue of incoming messages, the status carried by an HTTP
//! refusal, one way to call the service beneath, and the background tasks that stop with the
//! transport.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::Value;
use tokio::task::JoinHandle;
use tower::{Service, ServiceExt};

use crate::error::{BoxError, Error, ErrorKind, Result};
use crate::sync::LockExt;

/// The Streamable HTTP session header.
pub(crate) const SESSION_ID: &str = "mcp-session-id";
/// The header that resumes an event stream after the last event seen.
pub(crate) const LAST_EVENT_ID: &str = "last-event-id";

/// A message for the application, or why the transport could not get one.
pub(crate) type Incoming = Result<Value>;

/// Messages waiting for the application. When it falls this far behind, reading from the
/// server pauses (and TCP pushes back), instead of buffering without bound.
pub(crate) const INCOMING_CAPACITY: usize = 1024;

/// An HTTP status, as the source of an error, so callers can tell 404 from 405.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusError(pub StatusCode);

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.0)
    }
}

impl std::error::Error for StatusError {}

/// An [`ErrorKind::InvalidResponse`] error for a refusal with `status`, which
/// [`refused_with`] finds again.
pub(crate) fn refusal(status: StatusCode, message: String) -> Error {
    Error::new(ErrorKind::InvalidResponse, message).with_source(StatusError(status))
}

/// The status an error made by [`refusal`] carries.
pub(crate) fn refused_with(error: &Error) -> Option<StatusCode> {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<StatusError>())
        .map(|status| status.0)
}

/// Sends `request` through a clone of `service`, so the transport's handle stays ready for
/// the next caller.
pub(crate) async fn call<S, B>(
    service: &SharedService<S>,
    request: Request<Full<Bytes>>,
) -> Result<Response<B>>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: Into<BoxError>,
{
    service
        .get()
        .oneshot(request)
        .await
        .map_err(Error::from_service)
}

/// The tower service a transport shares with its background tasks. Held under a lock that
/// is taken only to clone it, so a service that is `Send` but not `Sync` (a
/// `tower::util::BoxCloneService`) serves a transport shared between tasks.
pub(crate) struct SharedService<S>(Mutex<S>);

impl<S: Clone> SharedService<S> {
    pub(crate) fn new(service: S) -> Self {
        Self(Mutex::new(service))
    }

    /// A clone to call: each request drives its own.
    pub(crate) fn get(&self) -> S {
        self.0.locked().clone()
    }
}

impl<S: Clone> Clone for SharedService<S> {
    fn clone(&self) -> Self {
        Self::new(self.get())
    }
}

impl<S> std::fmt::Debug for SharedService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedService")
    }
}

/// A transport's background tasks: every one is tracked, and all stop with the transport.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    stopped: AtomicBool,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl Tasks {
    /// Runs `task` in the background, unless the transport has stopped.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        let mut handles = self.handles.locked();
        // Checked under the lock `stop` takes: a task started while the transport was being
        // closed or dropped does not outlive it.
        if self.is_stopped() {
            handle.abort();
            return;
        }
        handles.retain(|h| !h.is_finished());
        handles.push(handle);
    }

    /// Whether the transport has stopped.
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Stops every task; needs no bounds, so `Drop` can call it.
    pub(crate) fn stop(&self) {
        let mut handles = self.handles.locked();
        self.stopped.store(true, Ordering::SeqCst);
        for handle in handles.drain(..) {
            handle.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stopping_aborts_every_task_and_refuses_new_ones() {
        let tasks = Tasks::default();
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<()>(1);
        let held = sender.clone();
        tasks.spawn(async move {
            let _held = held;
            std::future::pending::<()>().await
        });
        tasks.stop();
        tasks.spawn(async move {
            let _held = sender;
            std::future::pending::<()>().await
        });
        // Both senders are dropped once their tasks are aborted: the channel closes.
        let closed = tokio::time::timeout(std::time::Duration::from_secs(5), receiver.recv()).await;
        assert_eq!(closed, Ok(None));
        assert!(tasks.is_stopped());
    }

    #[test]
    fn a_refusal_carries_its_status() {
        let error = refusal(StatusCode::METHOD_NOT_ALLOWED, "no".into());
        assert_eq!(refused_with(&error), Some(StatusCode::METHOD_NOT_ALLOWED));
        assert_eq!(refused_with(&Error::new(ErrorKind::Http, "x")), None);
    }
}
