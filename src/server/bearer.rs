//! [`RequireBearerLayer`]: bearer tokens (RFC 6750) in front of any tower HTTP service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderMap, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use tower::{Layer, Service};

use crate::challenge::BearerChallenge;
use crate::server::verify::{now_secs, AuthInfo, TokenCache, TokenVerifier, VerifyError};

/// The longest `Authorization` header accepted; longer is a malformed request.
pub const MAX_AUTHORIZATION_BYTES: usize = 16 * 1024;

/// Why a request was turned away; found in the response extensions, for logging.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// No `Authorization` header.
    MissingCredentials,
    /// An `Authorization` header with another scheme than Bearer.
    UnsupportedScheme,
    /// The header or request is malformed.
    InvalidRequest(&'static str),
    /// The token was refused by the verifier or by the layer's own checks.
    InvalidToken(String),
    /// The token lacks scopes; every scope the request needs is listed.
    InsufficientScope(Vec<String>),
    /// The verifier could not decide.
    Unavailable(String),
    /// The body was too large to decide its scopes.
    BodyTooLarge,
    /// The body is compressed, so its scopes cannot be decided.
    UnsupportedEncoding,
}

struct Config<V> {
    verifier: Arc<V>,
    resource: Option<String>,
    challenges: Arc<Challenges>,
    cache: Option<Arc<TokenCache>>,
}

/// How rejections are answered: what every challenge says of the resource. Handed on in the
/// request extensions, so a layer further in (such as
/// [`RequireMcpScopes`](crate::server::RequireMcpScopes)) answers in the same words.
#[derive(Debug, Clone, Default)]
pub(crate) struct Challenges {
    realm: Option<String>,
    resource_metadata: Option<String>,
    pub(crate) required_scopes: Vec<String>,
}

// By hand: deriving would ask `V: Clone`, and the verifier is shared through its `Arc`.
impl<V> Clone for Config<V> {
    fn clone(&self) -> Self {
        Self {
            verifier: self.verifier.clone(),
            resource: self.resource.clone(),
            challenges: self.challenges.clone(),
            cache: self.cache.clone(),
        }
    }
}

/// [`RequireBearerLayer`]: protects any tower HTTP service with bearer tokens (RFC 6750), answering
/// every failure with the proper status and challenge (RFC 6750 §3, RFC 9728 §5.1) and handing
/// [`AuthInfo`] to the service through the request extensions.
///
/// | what came in | answer |
/// |---|---|
/// | no credentials, or another scheme | 401, `Bearer resource_metadata=…` (and `scope` when configured), no error code |
/// | a malformed `Authorization` header | 400, `error="invalid_request"` |
/// | a bad, expired or wrong-audience token | 401, `error="invalid_token"` |
/// | a token without a required scope | 403, `error="insufficient_scope"`, `scope` lists every required scope |
/// | the verifier cannot decide | 503, never a pass |
///
/// Tokens are read from the `Authorization` header only, never from a query string or a form body.
/// The request body is never read here, so any body type passes through (hyper's `Incoming`,
/// axum's `Body`); scopes per MCP tool are
/// [`RequireMcpScopesLayer`](crate::server::RequireMcpScopesLayer)'s job.
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_mcp_oauth::server::{AuthData, RequireBearerLayer, StaticVerifier};
///
/// let verifier = StaticVerifier::new().token("dev-token", AuthData {
///     scopes: vec!["mcp".into()],
///     audience: vec!["https://mcp.example.com/mcp".into()],
///     ..Default::default()
/// });
/// let layer = RequireBearerLayer::new(verifier)
///     .resource("https://mcp.example.com/mcp")
///     .resource_metadata("https://mcp.example.com/.well-known/oauth-protected-resource/mcp")
///     .required_scopes(["mcp"]);
/// let service = ServiceBuilder::new().layer(layer).service_fn(|_request: http::Request<http_body_util::Full<bytes::Bytes>>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::<bytes::Bytes>::default()))
/// });
/// # let _ = service;
/// ```
///
/// Layer that applies [`RequireBearer`].
pub struct RequireBearerLayer<V> {
    config: Config<V>,
}

impl<V> Clone for RequireBearerLayer<V> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
        }
    }
}

impl<V> std::fmt::Debug for RequireBearerLayer<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequireBearerLayer")
            .field("resource", &self.config.resource)
            .field("challenges", &self.config.challenges)
            .field("cache", &self.config.cache.is_some())
            .finish_non_exhaustive()
    }
}

/// Verified tokens are remembered this long at most (and never past their expiry).
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);
const DEFAULT_CACHE_CAPACITY: usize = 10_000;

impl<V: TokenVerifier> RequireBearerLayer<V> {
    /// Protects with `verifier`, caching verified tokens (see [`Self::cache`]).
    pub fn new(verifier: V) -> Self {
        Self {
            config: Config {
                verifier: Arc::new(verifier),
                resource: None,
                challenges: Arc::default(),
                cache: Some(Arc::new(TokenCache::new(
                    DEFAULT_CACHE_TTL,
                    DEFAULT_CACHE_CAPACITY,
                ))),
            },
        }
    }

    /// The canonical URL of the protected resource. Tokens must name it in `aud` (RFC 8707);
    /// the verifier's own audience check comes first, this one makes sure of it.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.config.resource = Some(resource.into());
        self
    }

    /// The protected resource metadata URL sent in every challenge (RFC 9728 §5.1).
    pub fn resource_metadata(mut self, url: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.config.challenges).resource_metadata = Some(url.into());
        self
    }

    /// The `realm` of the challenges.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.config.challenges).realm = Some(realm.into());
        self
    }

    /// Scopes every request needs. For route-level scopes, put a layer on each route; for
    /// scopes per MCP method or tool, add [`RequireMcpScopesLayer`](crate::server::RequireMcpScopesLayer)
    /// inside this one.
    pub fn required_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Arc::make_mut(&mut self.config.challenges).required_scopes =
            scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Remembers verified tokens (by SHA-256) for at most `ttl`, and never past their expiry,
    /// keeping at most `capacity` of them.
    pub fn cache(mut self, ttl: Duration, capacity: usize) -> Self {
        self.config.cache = Some(Arc::new(TokenCache::new(ttl, capacity.max(1))));
        self
    }

    /// Verifies every request anew.
    pub fn without_cache(mut self) -> Self {
        self.config.cache = None;
        self
    }
}

impl<S, V> Layer<S> for RequireBearerLayer<V> {
    type Service = RequireBearer<S, V>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireBearer {
            inner,
            config: Arc::new(self.config.clone()),
        }
    }
}

/// Middleware that requires a valid bearer token: see [`RequireBearerLayer`].
pub struct RequireBearer<S, V> {
    inner: S,
    config: Arc<Config<V>>,
}

impl<S: Clone, V> Clone for RequireBearer<S, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S, V> std::fmt::Debug for RequireBearer<S, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequireBearer")
            .field("resource", &self.config.resource)
            .finish_non_exhaustive()
    }
}

impl<S, V: TokenVerifier> RequireBearer<S, V> {
    /// Protects `inner` with `verifier` (the defaults of [`RequireBearerLayer::new`]).
    pub fn new(inner: S, verifier: V) -> Self {
        RequireBearerLayer::new(verifier).layer(inner)
    }

    /// A layer for `verifier`: the same as [`RequireBearerLayer::new`].
    pub fn layer(verifier: V) -> RequireBearerLayer<V> {
        RequireBearerLayer::new(verifier)
    }
}

impl<S, V> RequireBearer<S, V> {
    inner_service_accessors!();
}

type SlowFuture<ResBody, E> = Pin<Box<dyn Future<Output = Result<Response<ResBody>, E>> + Send>>;

pin_project_lite::pin_project! {
    /// The future of [`RequireBearer`]. A token found in the cache, with no body to read, goes
    /// straight to the inner service's future; everything else (verification, reading the
    /// body, a rejection) runs boxed.
    pub struct ResponseFuture<F, ResBody, E> {
        #[pin]
        kind: Kind<F, ResBody, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F, ResBody, E> {
        Direct { #[pin] inner: F },
        Verifying { future: SlowFuture<ResBody, E> },
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F, ResBody, E>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Direct { inner } => inner.poll(cx),
            KindProj::Verifying { future } => future.as_mut().poll(cx),
        }
    }
}

impl<S, V, ReqBody, ResBody> Service<Request<ReqBody>> for RequireBearer<S, V>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    V: TokenVerifier,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if self.config.admit_cached(&mut request) {
            return ResponseFuture {
                kind: Kind::Direct {
                    inner: self.inner.call(request),
                },
            };
        }
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            kind: Kind::Verifying {
                future: Box::pin(protect(self.config.clone(), inner, request)),
            },
        }
    }
}

async fn protect<S, V, ReqBody, ResBody>(
    config: Arc<Config<V>>,
    mut inner: S,
    request: Request<ReqBody>,
) -> Result<Response<ResBody>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    V: TokenVerifier,
    ResBody: Default,
{
    match authorize(&config, request).await {
        Ok(request) => inner.call(request).await,
        Err(rejection) => Ok(config.challenges.reject(rejection)),
    }
}

/// The bearer token of the request, or why there is none.
fn bearer_token(headers: &HeaderMap) -> Result<&str, Rejection> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(Rejection::MissingCredentials)?;
    if values.next().is_some() {
        return Err(Rejection::InvalidRequest("several Authorization headers"));
    }
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return Err(Rejection::InvalidRequest(
            "the Authorization header is too large",
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| Rejection::InvalidRequest("the Authorization header is not ASCII"))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Rejection::UnsupportedScheme);
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Err(Rejection::InvalidRequest("the bearer token is empty"));
    }
    // RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    let body = token.trim_end_matches('=');
    let well_formed = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if !well_formed {
        return Err(Rejection::InvalidRequest(
            "the bearer token is not a b64token",
        ));
    }
    Ok(token)
}

fn same_resource(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

async fn authorize<V, ReqBody>(
    config: &Config<V>,
    mut request: Request<ReqBody>,
) -> Result<Request<ReqBody>, Rejection>
where
    V: TokenVerifier,
{
    let info = config.authenticate(request.headers()).await?;
    config.checks(&info)?;
    let required = &config.challenges.required_scopes;
    if required.iter().any(|scope| !info.has_scope(scope)) {
        return Err(Rejection::InsufficientScope(required.clone()));
    }
    config.admit(&mut request, info);
    Ok(request)
}

/// The bearer value of a request with one well-shaped `Authorization: Bearer …` header, unchecked
/// beyond that: enough to look a token up in the cache, which only holds validated tokens.
fn cached_candidate(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

impl<V: TokenVerifier> Config<V> {
    /// The fast path: a cached token that passes every check, on a request with no body to
    /// inspect, is admitted without any await. Anything else returns `false` and takes the full
    /// path, which decides again (and answers any rejection).
    fn admit_cached<B>(&self, request: &mut Request<B>) -> bool {
        let Some(cache) = &self.cache else {
            return false;
        };
        let Some(info) = cached_candidate(request.headers()).and_then(|token| cache.get(token))
        else {
            return false;
        };
        if self.checks(&info).is_err()
            || self
                .challenges
                .required_scopes
                .iter()
                .any(|s| !info.has_scope(s))
        {
            return false;
        }
        self.admit(request, info);
        true
    }

    /// Hands the token's facts, and how to answer for this resource, to the layers within.
    fn admit<B>(&self, request: &mut Request<B>, info: AuthInfo) {
        let extensions = request.extensions_mut();
        extensions.insert(info);
        extensions.insert(self.challenges.clone());
    }

    /// Expiry and audience, checked on every request whoever verified the token.
    fn checks(&self, info: &AuthInfo) -> Result<(), Rejection> {
        if info.expires_at.is_some_and(|at| at <= now_secs()) {
            return Err(Rejection::InvalidToken("the token has expired".into()));
        }
        if let Some(resource) = &self.resource {
            if !info.audience.iter().any(|aud| same_resource(aud, resource)) {
                return Err(Rejection::InvalidToken(
                    "the token is not for this resource (audience)".into(),
                ));
            }
        }
        Ok(())
    }

    async fn authenticate(&self, headers: &HeaderMap) -> Result<AuthInfo, Rejection> {
        // A cache hit is a token seen and validated before: skip parsing it again.
        if let Some(cache) = &self.cache {
            if let Some(info) = cached_candidate(headers).and_then(|token| cache.get(token)) {
                return Ok(info);
            }
        }
        let token = bearer_token(headers)?;
        self.verify(token).await
    }

    async fn verify(&self, token: &str) -> Result<AuthInfo, Rejection> {
        let info = match self.verifier.verify(token).await {
            Ok(info) => info,
            Err(VerifyError::Invalid(reason)) => return Err(Rejection::InvalidToken(reason)),
            Err(VerifyError::Unavailable(reason)) => return Err(Rejection::Unavailable(reason)),
        };
        if let Some(cache) = &self.cache {
            cache.insert(token, info.clone());
        }
        Ok(info)
    }
}

impl Challenges {
    fn challenge(&self) -> BearerChallenge {
        BearerChallenge {
            realm: self.realm.clone(),
            resource_metadata: self.resource_metadata.clone(),
            ..Default::default()
        }
    }

    /// The answer to `rejection`, with the rejection in its extensions for logging.
    pub(crate) fn reject<B: Default>(&self, rejection: Rejection) -> Response<B> {
        let mut response = self.rejection_response(&rejection);
        response.extensions_mut().insert(rejection);
        response
    }

    fn rejection_response<B: Default>(&self, rejection: &Rejection) -> Response<B> {
        let mut challenge = self.challenge();
        let status = match rejection {
            Rejection::MissingCredentials | Rejection::UnsupportedScheme => {
                if !self.required_scopes.is_empty() {
                    challenge.scope = Some(self.required_scopes.join(" "));
                }
                StatusCode::UNAUTHORIZED
            }
            Rejection::InvalidRequest(reason) => {
                challenge.error = Some("invalid_request".into());
                challenge.error_description = Some(error_description(reason));
                StatusCode::BAD_REQUEST
            }
            Rejection::InvalidToken(reason) => {
                challenge.error = Some("invalid_token".into());
                challenge.error_description = Some(error_description(reason));
                StatusCode::UNAUTHORIZED
            }
            Rejection::InsufficientScope(required) => {
                challenge.error = Some("insufficient_scope".into());
                challenge.scope = Some(required.join(" "));
                challenge.error_description = Some("the token lacks a required scope".into());
                StatusCode::FORBIDDEN
            }
            Rejection::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        };
        tracing::debug!(?rejection, %status, "bearer token rejected");
        let mut response = Response::new(B::default());
        *response.status_mut() = status;
        if matches!(
            status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST
        ) {
            // The description is already limited to RFC 6750's characters; should the rest ever
            // not fit a header, the challenge still goes out without it.
            let value = HeaderValue::from_str(&challenge.to_string()).or_else(|_| {
                challenge.error_description = None;
                HeaderValue::from_str(&challenge.to_string())
            });
            if let Ok(value) = value {
                response.headers_mut().insert(WWW_AUTHENTICATE, value);
            }
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// RFC 6750 §3: `error_description` is limited to `%x20-21 / %x23-5B / %x5D-7E`; anything else
/// (a verifier's reason may hold quotes, backslashes or non-ASCII) becomes a space.
fn error_description(reason: &str) -> String {
    reason
        .chars()
        .map(|c| match c {
            '\x20'..='\x7e' if c != '"' && c != '\\' => c,
            _ => ' ',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn header_parsing() {
        assert_eq!(
            bearer_token(&headers(&["Bearer abc.def-_~+/=="])),
            Ok("abc.def-_~+/==")
        );
        assert_eq!(bearer_token(&headers(&["bearer  abc"])), Ok("abc"));
        assert_eq!(
            bearer_token(&headers(&[])),
            Err(Rejection::MissingCredentials)
        );
        assert_eq!(
            bearer_token(&headers(&["Basic dXNlcjpw"])),
            Err(Rejection::UnsupportedScheme)
        );
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer ===",
            "Bearer a,b",
        ] {
            assert!(
                matches!(
                    bearer_token(&headers(&[bad])),
                    Err(Rejection::InvalidRequest(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            bearer_token(&headers(&["Bearer a", "Bearer b"])),
            Err(Rejection::InvalidRequest(_))
        ));
    }

    /// `RequireBearer` never reads the body: hyper's own request body type goes straight in.
    #[allow(dead_code)]
    fn wraps_hyper_incoming_directly() {
        fn assert_service<T: Service<Request<hyper::body::Incoming>>>(_: &T) {}
        let inner = tower::service_fn(|_: Request<hyper::body::Incoming>| async {
            Ok::<_, std::convert::Infallible>(Response::new(String::new()))
        });
        let service = RequireBearer::new(inner, crate::server::StaticVerifier::new());
        assert_service(&service);
    }
}
