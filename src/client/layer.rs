//! [`OAuthLayer`]: tower middleware that makes any HTTP service an authorized MCP client.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use std::time::Duration;
//! use http_body_util::Full;
//! use bytes::Bytes;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_mcp_oauth::client::{LoopbackHandler, OAuthConfig, OAuthLayer, OAuthState};
//!
//! let config = OAuthConfig::new().with_handler(LoopbackHandler::bind().await?);
//! let state = OAuthState::new("https://mcp.example.com/mcp", Some(config)).await?;
//! let hyper_client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
//!     .build_http::<Full<Bytes>>();
//! let client = ServiceBuilder::new()
//!     .timeout(Duration::from_secs(30))
//!     .layer(OAuthLayer::new(state))
//!     .service(hyper_client);
//! let request = http::Request::post("https://mcp.example.com/mcp")
//!     .header("content-type", "application/json")
//!     .body(Full::new(Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)))?;
//! let response = client.oneshot(request).await?;
//! # let _ = response;
//! # Ok(()) }
//! ```
//!
//! What it does for each request to the MCP server's origin (requests elsewhere pass untouched,
//! without a token):
//! - attaches `Authorization: Bearer …`, marked sensitive, refreshing first when the token is due;
//! - on a 401, refreshes (or rediscovers and authorizes through the configured
//!   [`AuthorizationHandler`](super::AuthorizationHandler)) and replays the request once;
//! - on a 403 `insufficient_scope`, authorizes for the granted plus the challenged scopes and
//!   replays, at most three authorizations per request in all;
//! - a 401 or 403 it cannot handle (no handler to ask the user, nothing new to ask for, the
//!   attempts spent) goes back as it came, with the parsed [`BearerChallenge`] in its
//!   extensions. A failure of the authorization machinery is a [`crate::Error`] inside the
//!   [`BoxError`].
//!
//! Replaying needs a second copy of the request: empty bodies, `Full<Bytes>` and `String` bodies
//! are replayed; for any other body the session is still repaired, but the 401 goes back to the
//! caller, whose retry then succeeds (tower-http's `follow_redirect` makes the same choice). Every clone of the layer and of the service shares one token state, and concurrent
//! requests that need a refresh cause exactly one.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};

use crate::challenge::BearerChallenge;
use crate::client::session::{Attach, Session};
use crate::client::state::OAuthState;
use crate::error::{BoxError, Error, ErrorKind, Result};
use crate::http::{redact_url, HttpClient, RequestBody};

/// How many authorizations (after a 401, or stepping up after a 403) one request may cause.
const MAX_AUTHORIZATIONS: usize = 3;

/// Layer that applies [`OAuth`] to a service.
#[derive(Clone)]
pub struct OAuthLayer {
    session: Arc<Session>,
}

impl OAuthLayer {
    /// A layer authorizing requests to the MCP server of `state`. Every service it builds shares
    /// that state's tokens.
    pub fn new(state: OAuthState) -> Self {
        Self {
            session: state.session,
        }
    }
}

impl std::fmt::Debug for OAuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthLayer")
            .field("server_url", &redact_url(&self.session.server_url))
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for OAuthLayer {
    type Service = OAuth<S>;

    fn layer(&self, inner: S) -> OAuth<S> {
        OAuth {
            inner,
            session: self.session.clone(),
        }
    }
}

/// Middleware that authorizes requests to an MCP server: see the [module docs](self).
#[derive(Clone)]
pub struct OAuth<S> {
    inner: S,
    session: Arc<Session>,
}

impl<S> std::fmt::Debug for OAuth<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth")
            .field("server_url", &redact_url(&self.session.server_url))
            .finish_non_exhaustive()
    }
}

impl<S> OAuth<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

type BoxedResponse<ResBody> =
    Pin<Box<dyn Future<Output = std::result::Result<Response<ResBody>, BoxError>> + Send>>;

pin_project_lite::pin_project! {
    /// The future of [`OAuth`]. With a current token, the inner service is called at once and
    /// its future polled in place; only a refresh before sending, or a 401/403 to recover from,
    /// moves the work into a boxed future.
    pub struct ResponseFuture<F, S, B, ResBody> {
        #[pin]
        state: State<F, S, B, ResBody>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F, S, B, ResBody> {
        Sent {
            #[pin]
            future: F,
            // `None` for a request to another origin: its answer is never the layer's business.
            recovery: Option<Recovery<S, B>>,
        },
        Boxed { future: BoxedResponse<ResBody> },
    }
}

/// What a request sent with a token needs to recover from a 401 or 403 and replay.
struct Recovery<S, B> {
    session: Arc<Session>,
    inner: S,
    replay: Option<Replay<B>>,
    token: Option<Attach>,
}

impl<F, S, B, ResBody, E> Future for ResponseFuture<F, S, B, ResBody>
where
    F: Future<Output = std::result::Result<Response<ResBody>, E>>,
    E: Into<BoxError>,
    S: Service<Request<B>, Response = Response<ResBody>> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body + Default + Send + 'static,
    ResBody: Send + 'static,
{
    type Output = std::result::Result<Response<ResBody>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let boxed = match self.as_mut().project().state.project() {
                StateProj::Boxed { future } => return future.as_mut().poll(cx),
                StateProj::Sent { future, recovery } => {
                    let response = std::task::ready!(future.poll(cx)).map_err(Into::into)?;
                    let status = response.status();
                    if status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN {
                        return Poll::Ready(Ok(response));
                    }
                    let Some(recovery) = recovery.take() else {
                        return Poll::Ready(Ok(response));
                    };
                    Box::pin(recover_and_replay(recovery, response))
                }
            };
            self.as_mut()
                .project()
                .state
                .set(State::Boxed { future: boxed });
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for OAuth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    ReqBody: Body + Default + Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if !self.session.is_for_resource(request.uri()) {
            // Never a token to another origin.
            request.headers_mut().remove(AUTHORIZATION);
            return ResponseFuture::sent(self.inner.call(request), None);
        }
        if let Some(token) = self.session.fast_attach() {
            // The common case: a current token, no I/O before sending.
            let replay = Replay::capture(&request);
            attach(&mut request, Some(&token));
            let future = self.inner.call(request);
            let recovery = Recovery {
                session: self.session.clone(),
                inner: self.inner.clone(),
                replay,
                token: Some(token),
            };
            return ResponseFuture::sent(future, Some(recovery));
        }
        // The ready service goes into the future; a fresh clone stays for the next poll_ready.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            state: State::Boxed {
                future: Box::pin(authorize_and_send(self.session.clone(), inner, request)),
            },
        }
    }
}

impl<F, S, B, ResBody> ResponseFuture<F, S, B, ResBody> {
    fn sent(future: F, recovery: Option<Recovery<S, B>>) -> Self {
        Self {
            state: State::Sent { future, recovery },
        }
    }
}

fn attach<B>(request: &mut Request<B>, token: Option<&Attach>) {
    match token {
        Some(token) => {
            request
                .headers_mut()
                .insert(AUTHORIZATION, token.header.clone());
        }
        None => {
            request.headers_mut().remove(AUTHORIZATION);
        }
    }
}

/// The slow start: the token is missing or due, so a refresh may come before sending.
async fn authorize_and_send<S, ReqBody, ResBody>(
    session: Arc<Session>,
    mut inner: S,
    mut request: Request<ReqBody>,
) -> std::result::Result<Response<ResBody>, BoxError>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ReqBody: Body + Default + 'static,
{
    let token = session.usable_token().await?;
    let replay = Replay::capture(&request);
    attach(&mut request, token.as_ref());
    let response = inner.call(request).await.map_err(Into::into)?;
    let recovery = Recovery {
        session,
        inner,
        replay,
        token,
    };
    recover_and_replay(recovery, response).await
}

/// Handles a 401 or 403 to a request for the MCP server: recovers, replays, and repeats while
/// the answers call for it and the attempts last.
async fn recover_and_replay<S, ReqBody, ResBody>(
    recovery: Recovery<S, ReqBody>,
    mut response: Response<ResBody>,
) -> std::result::Result<Response<ResBody>, BoxError>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ReqBody: Body + Default + 'static,
{
    let Recovery {
        session,
        mut inner,
        replay,
        mut token,
    } = recovery;
    let mut recovered = false;
    let mut authorizations = 0;
    loop {
        let status = response.status();
        if status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN {
            return Ok(response);
        }
        let challenge = BearerChallenge::from_headers(response.headers());
        let generation = token.as_ref().map(|t| t.generation);
        if authorizations >= MAX_AUTHORIZATIONS {
            return Ok(with_challenge(response, challenge));
        }
        // The copy is made before any await, so request bodies need not be Sync.
        let next = replay.as_ref().map(Replay::build);
        let outcome = if status == StatusCode::UNAUTHORIZED {
            if recovered {
                return Ok(with_challenge(response, challenge));
            }
            recovered = true;
            tracing::info!(
                error = challenge
                    .as_ref()
                    .and_then(|c| c.error.as_deref())
                    .unwrap_or("none"),
                "401 from the MCP server; authorizing"
            );
            session
                .recover(generation, challenge.clone())
                .await
                .map(|()| true)
        } else {
            let Some(scope_challenge) = challenge
                .as_ref()
                .filter(|c| c.error.as_deref() == Some("insufficient_scope"))
            else {
                return Ok(with_challenge(response, challenge));
            };
            session.step_up(generation, scope_challenge).await
        };
        match outcome {
            Ok(true) => {}
            Ok(false) => return Ok(with_challenge(response, challenge)),
            // No way to ask the user: the response is the caller's to handle.
            Err(error) if error.kind() == ErrorKind::NotAuthorized => {
                tracing::info!(%error, "cannot authorize; returning the response");
                return Ok(with_challenge(response, challenge));
            }
            Err(error) => return Err(error.into()),
        }
        // A body that cannot be copied is not replayed; the session is repaired, so the
        // caller's own retry will go through.
        let Some(mut next) = next else {
            return Ok(with_challenge(response, challenge));
        };
        authorizations += 1;
        drop(response);
        token = session.current_attach();
        attach(&mut next, token.as_ref());
        response = inner
            .ready()
            .await
            .map_err(Into::into)?
            .call(next)
            .await
            .map_err(Into::into)?;
    }
}

fn with_challenge<B>(mut response: Response<B>, challenge: Option<BearerChallenge>) -> Response<B> {
    if let Some(challenge) = challenge {
        response.extensions_mut().insert(challenge);
    }
    response
}

/// A copy of a request kept for one replay.
struct Replay<B> {
    parts: http::request::Parts,
    body: ReplayBody<B>,
}

enum ReplayBody<B> {
    Empty,
    Clone(B),
}

impl<B: Body + Default + 'static> Replay<B> {
    /// `None` for a body that cannot be copied: the request is then sent once.
    fn capture(request: &Request<B>) -> Option<Self> {
        let body = if request.body().size_hint().exact() == Some(0) {
            ReplayBody::Empty
        } else {
            ReplayBody::Clone(clone_known_body(request.body())?)
        };
        let mut parts = Request::new(()).into_parts().0;
        parts.method = request.method().clone();
        parts.uri = request.uri().clone();
        parts.version = request.version();
        parts.headers = request.headers().clone();
        parts.extensions = request.extensions().clone();
        Some(Self { parts, body })
    }

    fn build(&self) -> Request<B> {
        let body = match &self.body {
            ReplayBody::Empty => B::default(),
            ReplayBody::Clone(body) => clone_known_body(body).unwrap_or_default(),
        };
        let mut request = Request::new(body);
        *request.method_mut() = self.parts.method.clone();
        *request.uri_mut() = self.parts.uri.clone();
        *request.version_mut() = self.parts.version;
        *request.headers_mut() = self.parts.headers.clone();
        *request.extensions_mut() = self.parts.extensions.clone();
        request
    }
}

/// Clones the body types known to be cheap and complete copies: `Full<Bytes>` and `String`.
fn clone_known_body<B: 'static>(body: &B) -> Option<B> {
    let any = body as &dyn Any;
    let copy: Box<dyn Any> = if let Some(full) = any.downcast_ref::<Full<Bytes>>() {
        Box::new(full.clone())
    } else if let Some(text) = any.downcast_ref::<String>() {
        Box::new(text.clone())
    } else {
        return None;
    };
    copy.downcast::<B>().ok().map(|b| *b)
}

/// The seed's authorized HTTP client: [`OAuth`] over the crate's [`HttpClient`] (timeout, body
/// limit, no redirects), with whole bodies in and out.
#[derive(Clone)]
pub struct AuthorizedHttpClient {
    service: OAuth<HttpClient>,
}

impl std::fmt::Debug for AuthorizedHttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizedHttpClient")
            .field("server_url", &redact_url(&self.service.session.server_url))
            .finish_non_exhaustive()
    }
}

impl AuthorizedHttpClient {
    pub(crate) fn new(session: Arc<Session>) -> Self {
        let http = session.config.http.clone();
        Self {
            service: OAuth {
                inner: http,
                session,
            },
        }
    }

    /// Sends `request` through the layer and reads the whole response.
    ///
    /// # Errors
    /// Transport errors, and errors of the authorization flow, as [`crate::Error`].
    pub async fn send(&self, request: Request<RequestBody>) -> Result<Response<Bytes>> {
        self.service
            .clone()
            .oneshot(request)
            .await
            .map_err(Error::from_boxed)
    }

    /// The tower service, to stack further layers on.
    pub fn into_service(self) -> OAuth<HttpClient> {
        self.service
    }
}
