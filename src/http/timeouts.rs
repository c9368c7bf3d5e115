//! [`ResponseTimeoutsLayer`]: how long to wait for a response's headers, and for each next piece
//! of its body. A whole-request timeout cannot serve a stream that lives for hours; an idle gap
//! can.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

use crate::error::BoxError;

/// Bounds the wait for a response's headers and the gap between two pieces of its body; either
/// may be off. A bound that runs out fails the request (headers) or the body (a gap) with an
/// error that says which. Stack it below `OAuthLayer`, so each of the layer's own sends is
/// bounded, not the whole sign-in.
///
/// ```
/// use std::time::Duration;
/// use tower::ServiceBuilder;
/// use tower_mcp_oauth::http::{hyper_client, ResponseTimeoutsLayer};
///
/// # async fn run() {
/// let http = ServiceBuilder::new()
///     .layer(ResponseTimeoutsLayer::new().headers(Duration::from_secs(300)).body_idle(Duration::from_secs(300)))
///     .service(hyper_client());
/// # let _ = http; }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ResponseTimeoutsLayer {
    headers: Option<Duration>,
    body_idle: Option<Duration>,
}

impl ResponseTimeoutsLayer {
    /// No bound until one is set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The longest wait from sending to the response's headers.
    pub fn headers(mut self, timeout: Duration) -> Self {
        self.headers = Some(timeout);
        self
    }

    /// The longest gap between two pieces of a response body (an SSE stream quieter than this
    /// is closed).
    pub fn body_idle(mut self, timeout: Duration) -> Self {
        self.body_idle = Some(timeout);
        self
    }
}

impl<S> Layer<S> for ResponseTimeoutsLayer {
    type Service = ResponseTimeouts<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResponseTimeouts {
            inner,
            limits: *self,
        }
    }
}

/// The service [`ResponseTimeoutsLayer`] makes.
#[derive(Clone, Debug)]
pub struct ResponseTimeouts<S> {
    inner: S,
    limits: ResponseTimeoutsLayer,
}

/// A response's headers or its next body piece did not come in time.
#[derive(Debug)]
pub struct ResponseTimedOut {
    what: &'static str,
    after: Duration,
}

impl std::fmt::Display for ResponseTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no {} within {:?}", self.what, self.after)
    }
}

impl std::error::Error for ResponseTimedOut {}

impl<S, B, R> Service<Request<B>> for ResponseTimeouts<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    R: Body<Data = Bytes>,
    R::Error: Into<BoxError>,
{
    type Response = Response<IdleTimeoutBody<R>>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let limits = self.limits;
        let sent = self.inner.call(request);
        async move {
            let response = match limits.headers {
                Some(after) => match tokio::time::timeout(after, sent).await {
                    Ok(result) => result.map_err(Into::into)?,
                    Err(_) => {
                        return Err(Box::new(ResponseTimedOut {
                            what: "response headers",
                            after,
                        }) as BoxError)
                    }
                },
                None => sent.await.map_err(Into::into)?,
            };
            Ok(response.map(|body| IdleTimeoutBody::new(body, limits.body_idle)))
        }
        .boxed()
    }
}

pin_project_lite::pin_project! {
    /// A body whose next piece must come within a bound (none: as the inner body).
    pub struct IdleTimeoutBody<B> {
        #[pin]
        inner: B,
        idle: Option<(Duration, Pin<Box<Sleep>>)>,
        // A frame went out since the timer was armed: the silence starts at the next poll
        // that finds nothing, not when the reader took the frame (it may be slow).
        rearm: bool,
    }
}

impl<B> IdleTimeoutBody<B> {
    fn new(inner: B, idle: Option<Duration>) -> Self {
        Self {
            inner,
            idle: idle.map(|after| (after, Box::pin(tokio::time::sleep(after)))),
            rearm: false,
        }
    }
}

impl<B> Body for IdleTimeoutBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                *this.rearm = true;
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending => {
                let Some((after, sleep)) = this.idle else {
                    return Poll::Pending;
                };
                if std::mem::take(this.rearm) {
                    sleep.as_mut().reset(Instant::now() + *after);
                }
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                Poll::Ready(Some(Err(Box::new(ResponseTimedOut {
                    what: "response body data",
                    after: *after,
                }))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn slow_body(gaps: &'static [u64]) -> impl Body<Data = Bytes, Error = BoxError> {
        let stream = futures_util::stream::iter(gaps).then(|gap| async move {
            tokio::time::sleep(Duration::from_millis(*gap)).await;
            Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"x")))
        });
        StreamBody::new(stream)
    }

    use futures_util::StreamExt;

    #[tokio::test(start_paused = true)]
    async fn a_body_gap_past_the_bound_fails_and_shorter_ones_pass() {
        let body = IdleTimeoutBody::new(slow_body(&[50, 90, 90]), Some(Duration::from_millis(100)));
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 3);
        let body = IdleTimeoutBody::new(slow_body(&[50, 150]), Some(Duration::from_millis(100)));
        let error = body.collect().await.err().unwrap();
        assert!(error.to_string().contains("response body data"), "{error}");
        // A slow reader is not the server's silence: the wait starts when it asks again.
        let mut body = std::pin::pin!(IdleTimeoutBody::new(
            slow_body(&[10, 10]),
            Some(Duration::from_millis(100))
        ));
        assert!(body.frame().await.unwrap().is_ok());
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(body.frame().await.unwrap().is_ok());
        let unbounded = IdleTimeoutBody::new(slow_body(&[500, 5_000]), None);
        assert_eq!(unbounded.collect().await.unwrap().to_bytes().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn headers_later_than_the_bound_fail_the_request() {
        let slow = tower::service_fn(|_: Request<()>| async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok::<_, BoxError>(Response::new(http_body_util::Empty::<Bytes>::new()))
        });
        let mut service = ResponseTimeoutsLayer::new()
            .headers(Duration::from_secs(1))
            .layer(slow);
        let error = service.call(Request::new(())).await.err().unwrap();
        assert!(error.is::<ResponseTimedOut>());
        let mut patient = ResponseTimeoutsLayer::new()
            .headers(Duration::from_secs(3))
            .layer(slow);
        assert!(patient.call(Request::new(())).await.is_ok());
    }
}
