//! [`OAuthLayer`]: tower middleware that makes any HTTP service an authorized MCP client.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{HeaderValue, AUTHORIZATION};
use http::{Request, Response, StatusCode};
use http_body::Body;
use tower::{Layer, Service, ServiceExt};

use crate::challenge::BearerChallenge;
use crate::client::dpop::DPOP;
use crate::client::replay::{CloneBodies, Replay, ReplayPolicy};
use crate::client::session::{Attach, Session};
use crate::client::state::OAuthState;
use crate::error::{BoxError, ErrorKind};
use crate::http::redact_url;

/// How many authorizations (after a 401, or stepping up after a 403) one request may cause.
const MAX_AUTHORIZATIONS: usize = 3;

/// [`OAuthLayer`]: tower middleware that makes any HTTP service an authorized MCP client.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use std::time::Duration;
/// use http_body_util::Full;
/// use bytes::Bytes;
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_mcp_oauth::client::{LoopbackHandler, OAuthConfig, OAuthLayer, OAuthState};
///
/// let config = OAuthConfig::new().handler(LoopbackHandler::bind().await?);
/// let state = OAuthState::new("https://mcp.example.com/mcp", Some(config)).await?;
/// let hyper_client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
///     .build_http::<Full<Bytes>>();
/// let client = ServiceBuilder::new()
///     .timeout(Duration::from_secs(30))
///     .layer(OAuthLayer::new(state))
///     .service(hyper_client);
/// let request = http::Request::post("https://mcp.example.com/mcp")
///     .header("content-type", "application/json")
///     .body(Full::new(Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)))?;
/// let response = client.oneshot(request).await?;
/// # let _ = response;
/// # Ok(()) }
/// ```
///
/// What it does for each request to the MCP server's origin (requests elsewhere pass untouched,
/// without a token):
/// - attaches `Authorization: Bearer …`, marked sensitive, refreshing first when the token is due;
///   a DPoP-bound token goes as `Authorization: DPoP …` with a fresh proof in the `DPoP` header,
///   and a `use_dpop_nonce` answer is replayed once with the server's nonce;
/// - on a 401, refreshes (or rediscovers and authorizes through the configured
///   [`AuthorizationHandler`](super::AuthorizationHandler)) and replays the request once;
/// - on a 403 `insufficient_scope`, authorizes for the granted plus the challenged scopes and
///   replays, at most three authorizations per request in all;
/// - a 401 or 403 it cannot handle (no handler to ask the user, nothing new to ask for, the
///   attempts spent) goes back as it came, with the parsed [`BearerChallenge`] in its
///   extensions. A failure of the authorization machinery is a [`crate::Error`] inside the
///   [`BoxError`].
///
/// Replaying needs a second copy of the request: the [`ReplayPolicy`] decides which bodies can be
/// copied (by default, any body type that is `Clone`; see [`ReplayPolicy`]). Every clone
/// of the layer and of the service shares one token state, and concurrent requests that need a
/// refresh cause exactly one.
///
/// Layer that applies [`OAuth`] to a service.
#[derive(Clone)]
pub struct OAuthLayer<P = CloneBodies> {
    session: Arc<Session>,
    replay: P,
}

impl OAuthLayer {
    /// A layer authorizing requests to the MCP server of `state`. Every service it builds shares
    /// that state's tokens.
    pub fn new(state: OAuthState) -> Self {
        Self {
            session: state.session,
            replay: CloneBodies,
        }
    }
}

impl<P> OAuthLayer<P> {
    /// Which request bodies may be copied to replay a request after a 401 or 403 (default:
    /// [`CloneBodies`]).
    pub fn replay_policy<Q>(self, policy: Q) -> OAuthLayer<Q> {
        OAuthLayer {
            session: self.session,
            replay: policy,
        }
    }
}

impl<P> std::fmt::Debug for OAuthLayer<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthLayer")
            .field("server_url", &redact_url(&self.session.server_url))
            .finish_non_exhaustive()
    }
}

impl<S, P: Clone> Layer<S> for OAuthLayer<P> {
    type Service = OAuth<S, P>;

    fn layer(&self, inner: S) -> OAuth<S, P> {
        OAuth {
            inner,
            session: self.session.clone(),
            replay: self.replay.clone(),
        }
    }
}

/// Middleware that authorizes requests to an MCP server: see [`OAuthLayer`].
#[derive(Clone)]
pub struct OAuth<S, P = CloneBodies> {
    inner: S,
    session: Arc<Session>,
    replay: P,
}

impl<S, P> std::fmt::Debug for OAuth<S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth")
            .field("server_url", &redact_url(&self.session.server_url))
            .finish_non_exhaustive()
    }
}

impl<S> OAuth<S> {
    /// Authorizes requests that `inner` sends to the MCP server of `state`.
    pub fn new(inner: S, state: OAuthState) -> Self {
        OAuthLayer::new(state).layer(inner)
    }

    /// A layer for `state`: the same as [`OAuthLayer::new`].
    pub fn layer(state: OAuthState) -> OAuthLayer {
        OAuthLayer::new(state)
    }
}

impl<S, P> OAuth<S, P> {
    inner_service_accessors!();
}

type BoxedResponse<ResBody> =
    Pin<Box<dyn Future<Output = std::result::Result<Response<ResBody>, BoxError>> + Send>>;

pin_project_lite::pin_project! {
    /// The future of [`OAuth`]. With a current token, the inner service is called at once and
    /// its future polled in place; only a refresh before sending, or a 401/403 to recover from,
    /// moves the work into a boxed future.
    pub struct ResponseFuture<F, S, B, ResBody, P = CloneBodies> {
        #[pin]
        state: State<F, S, B, ResBody, P>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F, S, B, ResBody, P> {
        Sent {
            #[pin]
            future: F,
            // `None` for a request to another origin: its answer is never the layer's business.
            recovery: Option<Recovery<S, B, P>>,
        },
        Boxed { future: BoxedResponse<ResBody> },
    }
}

/// What a request sent with a token needs to recover from a 401 or 403 and replay.
struct Recovery<S, B, P> {
    session: Arc<Session>,
    inner: S,
    replay: Option<Replay<B, P>>,
    token: Option<Attach>,
}

impl<S, B, P> Recovery<S, B, P> {
    fn sent_dpop(&self) -> bool {
        self.token.as_ref().is_some_and(|t| t.dpop.is_some())
    }
}

impl<F, S, B, ResBody, E, P> Future for ResponseFuture<F, S, B, ResBody, P>
where
    P: ReplayPolicy<B> + Send + 'static,
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
                    if let Some(recovery) = recovery.as_ref().filter(|r| r.sent_dpop()) {
                        // RFC 9449 §9: a server may hand out the next nonce in any response.
                        recovery
                            .session
                            .resource_nonce
                            .update_from(response.headers());
                    }
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

impl<S, P, ReqBody, ResBody> Service<Request<ReqBody>> for OAuth<S, P>
where
    P: ReplayPolicy<ReqBody> + Send + 'static,
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    ReqBody: Body + Default + Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S, ReqBody, ResBody, P>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if !self.session.is_for_resource(request.uri()) {
            // Never a token (or a proof of holding one) to another origin.
            request.headers_mut().remove(AUTHORIZATION);
            request.headers_mut().remove(DPOP);
            return ResponseFuture::sent(self.inner.call(request), None);
        }
        if let Some(token) = self.session.fast_attach() {
            // The common case: a current token, no I/O before sending.
            let replay = Replay::capture(&request, &self.replay);
            if let Err(error) = attach(&mut request, Some(&token), &self.session) {
                return ResponseFuture {
                    state: State::Boxed {
                        future: Box::pin(std::future::ready(Err(error.into()))),
                    },
                };
            }
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
                future: Box::pin(authorize_and_send(
                    self.session.clone(),
                    inner,
                    self.replay.clone(),
                    request,
                )),
            },
        }
    }
}

impl<F, S, B, ResBody, P> ResponseFuture<F, S, B, ResBody, P> {
    fn sent(future: F, recovery: Option<Recovery<S, B, P>>) -> Self {
        Self {
            state: State::Sent { future, recovery },
        }
    }
}

/// Puts the token on the request, with a fresh DPoP proof for this method and URI when the
/// token is bound to a key (a replay gets a new one).
fn attach<B>(
    request: &mut Request<B>,
    token: Option<&Attach>,
    session: &Session,
) -> crate::Result<()> {
    let headers = request.headers_mut();
    headers.remove(DPOP);
    let Some(token) = token else {
        headers.remove(AUTHORIZATION);
        return Ok(());
    };
    headers.insert(AUTHORIZATION, token.header.clone());
    let Some(dpop) = &token.dpop else {
        return Ok(());
    };
    let nonce = session.resource_nonce.get();
    let proof = dpop.key.proof(
        request.method().as_str(),
        &request.uri().to_string(),
        Some(&dpop.ath),
        nonce.as_deref(),
    )?;
    let mut value = HeaderValue::from_str(&proof).map_err(|e| {
        crate::Error::new(ErrorKind::Config, "the DPoP proof is not a header value").with_source(e)
    })?;
    value.set_sensitive(true);
    request.headers_mut().insert(DPOP, value);
    Ok(())
}

/// The slow start: the token is missing or due, so a refresh may come before sending.
async fn authorize_and_send<S, P, ReqBody, ResBody>(
    session: Arc<Session>,
    mut inner: S,
    policy: P,
    mut request: Request<ReqBody>,
) -> std::result::Result<Response<ResBody>, BoxError>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ReqBody: Body + Default,
    P: ReplayPolicy<ReqBody>,
{
    let token = session.usable_token().await?;
    let replay = Replay::capture(&request, &policy);
    attach(&mut request, token.as_ref(), &session)?;
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
async fn recover_and_replay<S, P, ReqBody, ResBody>(
    recovery: Recovery<S, ReqBody, P>,
    mut response: Response<ResBody>,
) -> std::result::Result<Response<ResBody>, BoxError>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ReqBody: Body + Default,
    P: ReplayPolicy<ReqBody>,
{
    let Recovery {
        session,
        mut inner,
        replay,
        mut token,
    } = recovery;
    let mut recovered = false;
    let mut authorizations = 0;
    let mut sent_nonce = false;
    loop {
        let sent_dpop = token.as_ref().is_some_and(|t| t.dpop.is_some());
        let new_nonce = sent_dpop && session.resource_nonce.update_from(response.headers());
        let status = response.status();
        if status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN {
            return Ok(response);
        }
        // A resource found to refuse DPoP gets one more recovery, for a Bearer token.
        let dpop_refused = status == StatusCode::UNAUTHORIZED
            && session.note_challenges(response.headers(), sent_dpop)?;
        let challenge = read_challenge(response.headers(), sent_dpop);
        let generation = token.as_ref().map(|t| t.generation);
        // The copy is made before any await, so request bodies need not be Sync.
        let next = replay.as_ref().and_then(Replay::build);
        let wants_nonce = status == StatusCode::UNAUTHORIZED
            && challenge
                .as_ref()
                .is_some_and(|c| c.error.as_deref() == Some("use_dpop_nonce"));
        if wants_nonce && new_nonce && !sent_nonce {
            // RFC 9449 §9: the same token again, with a proof carrying the server's nonce; once.
            if let Some(mut next) = next {
                sent_nonce = true;
                drop(response);
                attach(&mut next, token.as_ref(), &session)?;
                response = inner
                    .ready()
                    .await
                    .map_err(Into::into)?
                    .call(next)
                    .await
                    .map_err(Into::into)?;
                continue;
            }
            return Ok(with_challenge(response, challenge));
        }
        if authorizations >= MAX_AUTHORIZATIONS {
            return Ok(with_challenge(response, challenge));
        }
        let outcome = if status == StatusCode::UNAUTHORIZED {
            if recovered && !dpop_refused {
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
        attach(&mut next, token.as_ref(), &session)?;
        response = inner
            .ready()
            .await
            .map_err(Into::into)?
            .call(next)
            .await
            .map_err(Into::into)?;
    }
}

/// The challenge that speaks to the request: for a DPoP token the DPoP challenge, unless only
/// the Bearer one names an error (servers differ in where they put it).
fn read_challenge(headers: &http::HeaderMap, sent_dpop: bool) -> Option<BearerChallenge> {
    if !sent_dpop {
        return BearerChallenge::from_headers(headers);
    }
    let dpop = BearerChallenge::from_headers_dpop_first(headers);
    match dpop {
        Some(challenge) if challenge.error.is_none() => BearerChallenge::from_headers(headers)
            .filter(|bearer| bearer.error.is_some())
            .or(Some(challenge)),
        other => other,
    }
}

fn with_challenge<B>(mut response: Response<B>, challenge: Option<BearerChallenge>) -> Response<B> {
    if let Some(challenge) = challenge {
        response.extensions_mut().insert(challenge);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{
        CredentialKey, CredentialStore, MemoryStore, OAuthConfig, StoredCredentials, TokenSet,
    };
    use crate::dpop::{verify_proof, DpopKey, ProofCheck, VerifiedProof};
    use crate::metadata::AuthorizationServerMetadata;
    use crate::Secret;
    use bytes::Bytes;
    use http_body_util::Full;
    use std::convert::Infallible;
    use std::sync::Mutex;

    const MCP: &str = "https://mcp.example.com/mcp";

    /// A state holding a current token, restored from a memory store: no network at all.
    async fn signed_in() -> OAuthState {
        signed_in_with(None).await
    }

    async fn signed_in_with(dpop_key: Option<DpopKey>) -> OAuthState {
        let store = MemoryStore::new();
        let record = StoredCredentials {
            client: None,
            tokens: Some(TokenSet {
                access_token: Secret::new("at-1"),
                token_type: if dpop_key.is_some() { "DPoP" } else { "Bearer" }.into(),
                refresh_token: None,
                expires_at: None,
                scopes: vec!["mcp".into()],
                issued_at: None,
                dpop_key,
                id_token: None,
            }),
            resource_metadata: None,
            authorization_server: Some(AuthorizationServerMetadata {
                issuer: "https://auth.example.com".into(),
                ..Default::default()
            }),
            updated_at: 0,
        };
        store
            .save(
                &CredentialKey::new(MCP, "https://auth.example.com"),
                &record,
            )
            .await
            .unwrap();
        OAuthState::new(MCP, Some(OAuthConfig::new().store(store)))
            .await
            .unwrap()
    }

    /// An inner service that records the `Authorization` header it saw and answers `status`
    /// with `www-authenticate` when given.
    fn answering(
        status: StatusCode,
        challenge: Option<&'static str>,
        seen: Arc<Mutex<Vec<Option<String>>>>,
    ) -> impl Service<
        Request<Full<Bytes>>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Send,
    > + Clone
           + Send
           + 'static {
        tower::service_fn(move |request: Request<Full<Bytes>>| {
            let header = request
                .headers()
                .get(AUTHORIZATION)
                .map(|v| v.to_str().unwrap().to_owned());
            seen.lock().unwrap().push(header);
            let mut response = Response::builder().status(status);
            if let Some(challenge) = challenge {
                response = response.header(http::header::WWW_AUTHENTICATE, challenge);
            }
            std::future::ready(Ok::<_, Infallible>(
                response.body(Full::new(Bytes::new())).unwrap(),
            ))
        })
    }

    fn get(uri: &str) -> Request<Full<Bytes>> {
        Request::get(uri)
            .header(AUTHORIZATION, "Bearer caller-supplied")
            .body(Full::new(Bytes::new()))
            .unwrap()
    }

    #[tokio::test]
    async fn the_token_goes_to_the_resource_origin_and_nowhere_else() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let inner = answering(StatusCode::OK, None, seen.clone());
        let service = OAuth::new(inner, signed_in().await);
        for uri in [
            MCP,
            "https://MCP.example.com:443/other",
            "https://evil.example.com/mcp",
            "http://mcp.example.com/mcp",
        ] {
            let response = service.clone().oneshot(get(uri)).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                Some("Bearer at-1".to_owned()),
                Some("Bearer at-1".to_owned()),
                None,
                None
            ]
        );
    }

    #[tokio::test]
    async fn a_403_without_insufficient_scope_goes_back_with_its_challenge() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let inner = answering(
            StatusCode::FORBIDDEN,
            Some(r#"Bearer error="invalid_token", error_description="no""#),
            seen.clone(),
        );
        let response = OAuth::new(inner, signed_in().await)
            .oneshot(get(MCP))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let challenge = response.extensions().get::<BearerChallenge>().unwrap();
        assert_eq!(challenge.error.as_deref(), Some("invalid_token"));
        assert_eq!(seen.lock().unwrap().len(), 1, "not replayed");
    }

    #[tokio::test]
    async fn an_answer_from_another_origin_is_never_the_layers_business() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let inner = answering(StatusCode::UNAUTHORIZED, Some("Bearer"), seen.clone());
        let response = OAuth::new(inner, signed_in().await)
            .oneshot(get("https://elsewhere.example.com/"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.extensions().get::<BearerChallenge>().is_none());
        assert_eq!(*seen.lock().unwrap(), vec![None]);
    }

    /// A resource that wants `DPoP at-1` with a valid proof carrying its nonce `n-2`; it hands
    /// out the nonce on the first 401.
    fn nonce_demanding(
        proofs: Arc<Mutex<Vec<VerifiedProof>>>,
    ) -> impl Service<
        Request<Full<Bytes>>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Send,
    > + Clone
           + Send
           + 'static {
        tower::service_fn(move |request: Request<Full<Bytes>>| {
            let authorization = request
                .headers()
                .get(AUTHORIZATION)
                .unwrap()
                .to_str()
                .unwrap();
            assert_eq!(authorization, "DPoP at-1");
            let proof = request.headers().get(DPOP).unwrap().to_str().unwrap();
            let check = ProofCheck::new(request.method().as_str(), MCP).access_token("at-1");
            let verified = verify_proof(proof, &check).unwrap();
            let accepted = verified.nonce.as_deref() == Some("n-2");
            proofs.lock().unwrap().push(verified);
            let response = if accepted {
                Response::builder().status(StatusCode::OK)
            } else {
                Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .header(
                        http::header::WWW_AUTHENTICATE,
                        r#"DPoP error="use_dpop_nonce""#,
                    )
                    .header("dpop-nonce", "n-2")
            };
            std::future::ready(Ok::<_, Infallible>(
                response.body(Full::new(Bytes::new())).unwrap(),
            ))
        })
    }

    #[tokio::test]
    async fn a_dpop_token_goes_with_a_fresh_proof_and_the_servers_nonce() {
        let key = DpopKey::generate(crate::dpop::DpopAlgorithm::ES256).unwrap();
        let state = signed_in_with(Some(key.clone())).await;
        let proofs = Arc::new(Mutex::new(Vec::new()));
        let service = OAuth::new(nonce_demanding(proofs.clone()), state);
        let response = service
            .clone()
            .oneshot(get(&format!("{MCP}?q=1")))
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "retried once with the nonce"
        );
        let response = service.oneshot(get(MCP)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "the nonce is remembered");
        let proofs = proofs.lock().unwrap();
        assert_eq!(proofs.len(), 3);
        assert!(proofs.iter().all(|p| p.jkt == key.thumbprint()));
        let mut jtis: Vec<_> = proofs.iter().map(|p| p.jti.clone()).collect();
        jtis.dedup();
        assert_eq!(jtis.len(), 3, "a new proof for every request");
    }

    #[tokio::test]
    async fn a_dpop_proof_never_goes_to_another_origin() {
        let key = DpopKey::generate(crate::dpop::DpopAlgorithm::ES256).unwrap();
        let service = OAuth::new(
            tower::service_fn(|request: Request<Full<Bytes>>| {
                assert!(request.headers().get(DPOP).is_none());
                assert!(request.headers().get(AUTHORIZATION).is_none());
                std::future::ready(Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))))
            }),
            signed_in_with(Some(key)).await,
        );
        let mut request = get("https://elsewhere.example.com/mcp");
        request
            .headers_mut()
            .insert(DPOP, HeaderValue::from_static("caller-proof"));
        service.oneshot(request).await.unwrap();
    }

    #[tokio::test]
    async fn the_tower_accessors_reach_the_inner_service() {
        let mut service = OAuth::<u32>::layer(signed_in().await).layer(7u32);
        assert_eq!(*service.get_ref(), 7);
        *service.get_mut() = 8;
        assert_eq!(service.into_inner(), 8);
    }
}
