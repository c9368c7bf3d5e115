//! [`RetryTransient`]: a [`tower::retry::Policy`] that retries what may succeed later and
//! nothing else, for stacks with [`OAuthLayer`](super::OAuthLayer) in them.
//!
//! Put the retry layer above `OAuthLayer`: each try then goes through the layer, which attaches
//! the current token (refreshed, or just obtained) to the copy. A sign-in is never repeated by
//! a retry: an error that ended a sign-in involving the user is of
//! [`ErrorClass::Authorization`](crate::ErrorClass::Authorization), never transient.
//!
//! ```
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//! use tower::retry::RetryLayer;
//! use tower_mcp_oauth::client::{OAuthLayer, OAuthState, RetryTransient};
//!
//! # async fn build(state: OAuthState) {
//! let service = ServiceBuilder::new()
//!     .layer(RetryLayer::new(RetryTransient::new(2)))
//!     .layer(OAuthLayer::new(state))
//!     .timeout(Duration::from_secs(30))
//!     .service(tower_mcp_oauth::http::hyper_client());
//! # let _ = service;
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use http::{Request, Response, StatusCode};

use crate::error::{BoxError, Error};

/// Retries a request whose failure may pass, and only when trying again cannot do twice what
/// the server already did:
///
/// - any request answered 429, or 503 with a `Retry-After` (the server itself says it did not
///   act; after that pause when it is no longer than the longest), or whose connection was
///   refused;
/// - an idempotent request (GET, HEAD, OPTIONS, PUT, DELETE) also after a 503 without
///   `Retry-After` (a proxy's answer when its upstream failed, perhaps after acting), a 502 or
///   504 answer, a connection lost mid-way or a timeout below.
///
/// A POST (an MCP `tools/call`) that may have reached the server is not sent again by this
/// policy (the hyper client below still sends a request again, once, when a pooled connection
/// turns out closed before any answer). Never
/// retried: an answer the server meant (4xx), or an error of
/// [`ErrorClass::Authorization`](crate::ErrorClass::Authorization) or
/// [`ErrorClass::Configuration`](crate::ErrorClass::Configuration). Pauses double from `base`
/// (100 ms) up to `max` (2 s).
///
/// Only requests whose body can be cloned (`Full<Bytes>`, `String`, `()`, …) are retried.
#[derive(Debug, Clone)]
pub struct RetryTransient {
    remaining: usize,
    pause: Duration,
    max: Duration,
}

impl RetryTransient {
    /// At most `retries` more tries after the first.
    pub fn new(retries: usize) -> Self {
        Self {
            remaining: retries,
            pause: Duration::from_millis(100),
            max: Duration::from_secs(2),
        }
    }

    /// The first pause, and the longest.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.pause = base.min(max);
        self.max = max;
        self
    }

    /// The pause before the next try, `None` to give up.
    fn next_pause(&mut self, asked: Option<Duration>) -> Option<Duration> {
        if self.remaining == 0 {
            return None;
        }
        let pause = match asked {
            Some(asked) if asked > self.max => return None,
            Some(asked) => asked.max(self.pause),
            None => self.pause,
        };
        self.remaining -= 1;
        self.pause = (self.pause * 2).min(self.max);
        Some(pause)
    }
}

/// Whether a failure from the stack may pass: a crate error says so itself; a timeout below
/// and any other error from beneath (a connection refused or reset) may.
pub(crate) fn is_transient(error: &BoxError) -> bool {
    match error.downcast_ref::<Error>() {
        Some(error) => error.is_transient(),
        None => true,
    }
}

/// Whether the request never reached the server: the connection was refused or could not be
/// made, anywhere in the error's chain.
fn never_sent(error: &BoxError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
    while let Some(error) = cause {
        if error
            .downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(|e| e.is_connect())
        {
            return true;
        }
        if error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        cause = error.source();
    }
    false
}

/// Whether sending the request twice does what sending it once does (RFC 9110 §9.2.2).
fn idempotent(method: &http::Method) -> bool {
    use http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(method)
}

/// A `Retry-After` in seconds (the date form is not worth a clock here).
fn retry_after<B>(response: &Response<B>) -> Option<Duration> {
    response
        .headers()
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

impl<B, ResBody> tower::retry::Policy<Request<B>, Response<ResBody>, BoxError> for RetryTransient
where
    B: Clone,
{
    type Future = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn retry(
        &mut self,
        request: &mut Request<B>,
        result: &mut Result<Response<ResBody>, BoxError>,
    ) -> Option<Self::Future> {
        let repeatable = idempotent(request.method());
        let pause = match result {
            Ok(response) => match response.status() {
                StatusCode::TOO_MANY_REQUESTS => self.next_pause(retry_after(response))?,
                StatusCode::SERVICE_UNAVAILABLE
                    if repeatable || response.headers().contains_key(http::header::RETRY_AFTER) =>
                {
                    self.next_pause(retry_after(response))?
                }
                StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT if repeatable => {
                    self.next_pause(retry_after(response))?
                }
                _ => return None,
            },
            Err(error) if is_transient(error) && (repeatable || never_sent(error)) => {
                self.next_pause(None)?
            }
            Err(_) => return None,
        };
        tracing::debug!(?pause, "transient failure; trying again");
        // Lazily: the timer is made when the retry polls it, inside the runtime.
        Some(Box::pin(async move { tokio::time::sleep(pause).await }))
    }

    fn clone_request(&mut self, request: &Request<B>) -> Option<Request<B>> {
        Some(request.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use tower::retry::Policy;

    fn answer(status: u16, retry_after: Option<&str>) -> Result<Response<()>, BoxError> {
        let mut response = Response::builder().status(status);
        if let Some(value) = retry_after {
            response = response.header(http::header::RETRY_AFTER, value);
        }
        Ok(response.body(()).unwrap())
    }

    fn retried(policy: &mut RetryTransient, result: Result<Response<()>, BoxError>) -> bool {
        retried_for(http::Method::GET, policy, result)
    }

    fn retried_for(
        method: http::Method,
        policy: &mut RetryTransient,
        mut result: Result<Response<()>, BoxError>,
    ) -> bool {
        let mut request = Request::builder().method(method).body(()).unwrap();
        policy.retry(&mut request, &mut result).is_some()
    }

    #[test]
    fn only_passing_trouble_is_retried() {
        let mut policy = RetryTransient::new(100);
        for status in [502, 503, 504, 429] {
            assert!(retried(&mut policy, answer(status, None)), "{status}");
        }
        for status in [200, 400, 401, 403, 404, 500] {
            assert!(!retried(&mut policy, answer(status, None)), "{status}");
        }
        let network: BoxError = Error::new(ErrorKind::Http, "refused").into();
        assert!(retried(&mut policy, Err(network)));
        let foreign: BoxError = "connection reset".into();
        assert!(retried(&mut policy, Err(foreign)));
        let refused: BoxError = Error::new(ErrorKind::AuthorizationDenied, "denied").into();
        assert!(!retried(&mut policy, Err(refused)));
        let signed_in: BoxError = Error::new(ErrorKind::Http, "lost").in_sign_in().into();
        assert!(!retried(&mut policy, Err(signed_in)));
        let config: BoxError = Error::new(ErrorKind::InsecureUrl, "http").into();
        assert!(!retried(&mut policy, Err(config)));
    }

    #[test]
    fn a_post_that_may_have_run_is_not_sent_again() {
        let mut policy = RetryTransient::new(100);
        let post = || http::Method::POST;
        // The server says it did not act.
        assert!(retried_for(post(), &mut policy, answer(503, Some("1"))));
        assert!(retried_for(post(), &mut policy, answer(429, None)));
        let refused: BoxError = std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into();
        assert!(retried_for(post(), &mut policy, Err(refused)));
        let wrapped: BoxError = Error::new(ErrorKind::Http, "request failed")
            .with_source(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
            .into();
        assert!(retried_for(post(), &mut policy, Err(wrapped)));
        // It may have acted: a proxy's bare 503 after its upstream failed, say.
        assert!(!retried_for(post(), &mut policy, answer(503, None)));
        assert!(!retried_for(post(), &mut policy, answer(502, None)));
        assert!(!retried_for(post(), &mut policy, answer(504, None)));
        let reset: BoxError = std::io::Error::from(std::io::ErrorKind::ConnectionReset).into();
        assert!(!retried_for(post(), &mut policy, Err(reset)));
        let elapsed: BoxError = Box::new(tower::timeout::error::Elapsed::new());
        assert!(!retried_for(post(), &mut policy, Err(elapsed)));
        // The same for a GET is retried.
        let elapsed: BoxError = Box::new(tower::timeout::error::Elapsed::new());
        assert!(retried_for(http::Method::GET, &mut policy, Err(elapsed)));
    }

    #[test]
    fn tries_are_counted_and_pauses_grow_to_the_cap() {
        let mut policy =
            RetryTransient::new(4).backoff(Duration::from_millis(400), Duration::from_secs(1));
        assert_eq!(policy.next_pause(None), Some(Duration::from_millis(400)));
        assert_eq!(policy.next_pause(None), Some(Duration::from_millis(800)));
        assert_eq!(policy.next_pause(None), Some(Duration::from_secs(1)));
        // A server asking for more than the longest pause is not waited for.
        assert_eq!(policy.next_pause(Some(Duration::from_secs(30))), None);
        assert_eq!(
            policy.next_pause(Some(Duration::from_secs(1))),
            Some(Duration::from_secs(1))
        );
        assert_eq!(policy.next_pause(None), None);
        let mut none = RetryTransient::new(0);
        assert!(!retried(&mut none, answer(503, None)));
    }

    #[test]
    fn retry_after_in_seconds_is_read() {
        let Ok(response) = answer(503, Some(" 3 ")) else {
            unreachable!()
        };
        assert_eq!(retry_after(&response), Some(Duration::from_secs(3)));
        let Ok(dated) = answer(503, Some("Wed, 21 Oct 2015 07:28:00 GMT")) else {
            unreachable!()
        };
        assert_eq!(retry_after(&dated), None);
    }

    #[test]
    fn the_request_is_copied_whole() {
        let mut policy = RetryTransient::new(1);
        let request = Request::post("http://127.0.0.1/mcp")
            .header("x-a", "1")
            .body(bytes::Bytes::from_static(b"{}"))
            .unwrap();
        let copy = <RetryTransient as Policy<_, Response<()>, BoxError>>::clone_request(
            &mut policy,
            &request,
        )
        .unwrap();
        assert_eq!(copy.uri(), request.uri());
        assert_eq!(copy.headers()["x-a"], "1");
        assert_eq!(copy.body(), request.body());
    }
}
