//! [`RequireBearerLayer`]: bearer tokens (RFC 6750) in front of any tower HTTP service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderMap, AUTHORIZATION};
use http::{Request, Response};
use subtle::ConstantTimeEq;
use tower::{Layer, Service};

use crate::dpop::{verify_proof, ProofCheck, DPOP};
use crate::server::caller::CallerToken;
use crate::server::challenges::{Challenges, DpopChallenge, Rejection};
use crate::server::dpop::DpopPolicy;
use crate::server::verify::{now_secs, AuthInfo, TokenCache, TokenVerifier, VerifyError};

/// The longest `Authorization` header accepted; longer is a malformed request.
pub const MAX_AUTHORIZATION_BYTES: usize = 16 * 1024;

struct Config<V> {
    verifier: Arc<V>,
    resource: Option<String>,
    /// `scheme://host[:port]` of `resource`: where DPoP proofs must point (`htu`).
    origin: Option<String>,
    challenges: Arc<Challenges>,
    /// The same, for requests that came with DPoP: errors go in the DPoP challenge.
    dpop_challenges: Arc<Challenges>,
    cache: Option<Arc<TokenCache>>,
    dpop: Option<Arc<DpopPolicy>>,
    /// Whether DPoP is on by default only (not by `.dpop(..)`): without a `resource` it is
    /// then off; an explicit policy without one refuses DPoP requests instead.
    dpop_implicit: bool,
}

// By hand: deriving would ask `V: Clone`, and the verifier is shared through its `Arc`.
impl<V> Clone for Config<V> {
    fn clone(&self) -> Self {
        Self {
            verifier: self.verifier.clone(),
            resource: self.resource.clone(),
            origin: self.origin.clone(),
            challenges: self.challenges.clone(),
            dpop_challenges: self.dpop_challenges.clone(),
            cache: self.cache.clone(),
            dpop: self.dpop.clone(),
            dpop_implicit: self.dpop_implicit,
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
            .field("dpop", &self.config.dpop)
            .finish_non_exhaustive()
    }
}

/// Verified tokens are remembered this long at most (and never past their expiry).
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);
const DEFAULT_CACHE_CAPACITY: usize = 10_000;

impl<V: TokenVerifier> RequireBearerLayer<V> {
    /// Protects with `verifier`, caching verified tokens (see [`Self::cache`]) and, once
    /// [`Self::resource`] names the public URL proofs are checked against, taking DPoP-bound
    /// tokens beside Bearer ones ([`DpopPolicy::accepted`]: every proof checked, replays
    /// refused), so a client that got a bound token from an authorization server offering
    /// DPoP is served. [`Self::without_dpop`] takes Bearer tokens only. An explicit
    /// [`Self::dpop`] needs a resource too: without one, DPoP requests are refused (503, logged
    /// as an error), since the `Host` a request names is the client's to choose.
    pub fn new(verifier: V) -> Self {
        Self {
            config: Config {
                verifier: Arc::new(verifier),
                resource: None,
                origin: None,
                challenges: Arc::default(),
                dpop_challenges: Arc::default(),
                cache: Some(Arc::new(TokenCache::new(
                    DEFAULT_CACHE_TTL,
                    DEFAULT_CACHE_CAPACITY,
                ))),
                dpop: None,
                dpop_implicit: true,
            },
        }
        .dpop(DpopPolicy::accepted())
        .implicitly()
    }

    fn implicitly(mut self) -> Self {
        self.config.dpop_implicit = true;
        self
    }

    /// The canonical URL of the protected resource. Tokens must name it in `aud` (RFC 8707);
    /// the verifier's own audience check comes first, this one makes sure of it. It is also the
    /// public origin DPoP proofs are checked against (`htu`: this origin and the path the
    /// request arrived with), so a resource behind a TLS terminator checks the URL its clients
    /// use; DPoP needs it. A proxy that rewrites paths (public `/api/mcp`, here `/mcp`) breaks
    /// every proof: keep the paths, or take Bearer only ([`Self::without_dpop`]).
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        let resource = resource.into();
        self.config.origin = url::Url::parse(&resource)
            .ok()
            .map(|url| url.origin().ascii_serialization())
            .filter(|origin| origin != "null");
        self.config.resource = Some(resource);
        self
    }

    /// How DPoP-bound tokens (RFC 9449) are taken: beside Bearer ones (the default,
    /// [`DpopPolicy::accepted`]) or only them ([`DpopPolicy::required`]), with which algorithms,
    /// nonces and replay cache. The challenges offer the DPoP scheme with its `algs`.
    pub fn dpop(mut self, policy: DpopPolicy) -> Self {
        Arc::make_mut(&mut self.config.challenges).dpop = Some(DpopChallenge {
            algs: policy.algs(),
            required: policy.required,
            nonces: policy.nonces.clone(),
        });
        self.config.dpop = Some(Arc::new(policy));
        self.config.dpop_implicit = false;
        self
    }

    /// Takes Bearer tokens only: `Authorization: DPoP` is answered like any unknown scheme,
    /// the challenges and the metadata ([`Self::describe`]) offer Bearer alone, and a
    /// DPoP-bound token sent as Bearer is still refused.
    pub fn without_dpop(mut self) -> Self {
        Arc::make_mut(&mut self.config.challenges).dpop = None;
        self.config.dpop = None;
        self.config.dpop_implicit = false;
        self
    }

    /// Fills in what the protected resource metadata says of DPoP
    /// (`dpop_signing_alg_values_supported`, `dpop_bound_access_tokens_required`), so the
    /// document and the layer agree.
    pub fn describe(&self, metadata: &mut crate::metadata::ProtectedResourceMetadata) {
        metadata.dpop_signing_alg_values_supported = None;
        metadata.dpop_bound_access_tokens_required = false;
        if let Some(policy) = &self.settled().config.dpop {
            metadata.dpop_signing_alg_values_supported = Some(
                policy
                    .algorithms
                    .iter()
                    .map(|a| a.as_str().to_owned())
                    .collect(),
            );
            metadata.dpop_bound_access_tokens_required = policy.required;
        }
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

impl<V> RequireBearerLayer<V> {
    /// The default DPoP policy stands only with a `resource`, the URL proofs are checked
    /// against; an explicit [`Self::dpop`] without one refuses DPoP requests (see
    /// [`Self::new`]).
    fn settled(&self) -> std::borrow::Cow<'_, Self> {
        if !(self.config.dpop_implicit && self.config.origin.is_none()) {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut bearer_only = self.clone();
        Arc::make_mut(&mut bearer_only.config.challenges).dpop = None;
        bearer_only.config.dpop = None;
        std::borrow::Cow::Owned(bearer_only)
    }
}

impl<S, V> Layer<S> for RequireBearerLayer<V> {
    type Service = RequireBearer<S, V>;

    fn layer(&self, inner: S) -> Self::Service {
        let mut config = self.settled().config.clone();
        config.dpop_challenges = Arc::new(Challenges {
            used_dpop: true,
            ..(*config.challenges).clone()
        });
        RequireBearer {
            inner,
            config: Arc::new(config),
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
    let used_dpop = config.dpop.is_some() && scheme_is(request.headers(), "dpop");
    match authorize(&config, request).await {
        Ok(request) => inner.call(request).await,
        Err(rejection) if used_dpop => Ok(config.dpop_challenges.reject(rejection)),
        Err(rejection) => Ok(config.challenges.reject(rejection)),
    }
}

fn scheme_is(headers: &HeaderMap, scheme: &str) -> bool {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(' ').next())
        .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
}

/// How the token came: `Authorization: Bearer` or `Authorization: DPoP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Bearer,
    Dpop,
}

/// The token of the request and its scheme, or why there is none.
fn credentials(headers: &HeaderMap) -> Result<(Scheme, &str), Rejection> {
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
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Err(Rejection::UnsupportedScheme);
    };
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
    Ok((scheme, token))
}

async fn authorize<V, ReqBody>(
    config: &Config<V>,
    mut request: Request<ReqBody>,
) -> Result<Request<ReqBody>, Rejection>
where
    V: TokenVerifier,
{
    let (scheme, token) = credentials(request.headers())?;
    let info = match (scheme, config.dpop.as_deref()) {
        (Scheme::Bearer, Some(policy)) if policy.required => {
            return Err(Rejection::UnsupportedScheme)
        }
        (Scheme::Bearer, _) => {
            let info = config.authenticate(token).await?;
            if info.dpop_jkt().is_some() {
                // RFC 9449 §7.2: a bound token is worthless without the proof that goes with it.
                return Err(Rejection::InvalidToken(
                    "the token is DPoP-bound; send it with the DPoP scheme and a proof".into(),
                ));
            }
            info
        }
        (Scheme::Dpop, None) => return Err(Rejection::UnsupportedScheme),
        (Scheme::Dpop, Some(policy)) => {
            let Some(htu) = config.htu(&request) else {
                tracing::error!(
                    "DPoP is on but the layer has no .resource(url): proofs cannot be checked"
                );
                return Err(Rejection::Unavailable(
                    "DPoP needs the resource's public URL: configure .resource(url)".into(),
                ));
            };
            let proof = proof_header(request.headers())?;
            let check = ProofCheck::new(request.method().as_str(), &htu)
                .access_token(token)
                .algorithms(&policy.algorithms)
                .window(policy.max_age, policy.max_skew);
            config
                .authenticate_dpop(policy, proof, &check, token)
                .await?
        }
    };
    config.checks(&info)?;
    let required = &config.challenges.required_scopes;
    if required.iter().any(|scope| !info.has_scope(scope)) {
        return Err(Rejection::InsufficientScope(required.clone()));
    }
    config.admit(&mut request, info, scheme);
    Ok(request)
}

/// The one `DPoP` header of a request.
fn proof_header(headers: &HeaderMap) -> Result<&str, Rejection> {
    let mut values = headers.get_all(DPOP).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(Rejection::InvalidDpopProof(
            "a DPoP request needs exactly one DPoP header".into(),
        ));
    };
    value
        .to_str()
        .map_err(|_| Rejection::InvalidDpopProof("the DPoP header is not ASCII".into()))
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
        // A DPoP-bound token presented as Bearer takes the full path, which refuses it.
        if info.dpop_jkt().is_some()
            || self.checks(&info).is_err()
            || self
                .challenges
                .required_scopes
                .iter()
                .any(|s| !info.has_scope(s))
        {
            return false;
        }
        self.admit(request, info, Scheme::Bearer);
        true
    }

    /// Hands the token's facts, and how to answer for this resource, to the layers within.
    fn admit<B>(&self, request: &mut Request<B>, info: AuthInfo, scheme: Scheme) {
        let caller = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|header| CallerToken::from_admitted(header, scheme == Scheme::Dpop));
        let extensions = request.extensions_mut();
        extensions.insert(info);
        if let Some(caller) = caller {
            extensions.insert(caller);
        }
        extensions.insert(match scheme {
            Scheme::Bearer => self.challenges.clone(),
            Scheme::Dpop => self.dpop_challenges.clone(),
        });
    }

    /// Expiry and audience, checked on every request whoever verified the token (the
    /// audience only where the verifier does not decide it itself).
    fn checks(&self, info: &AuthInfo) -> Result<(), Rejection> {
        if info.expires_at.is_some_and(|at| at <= now_secs()) {
            return Err(Rejection::InvalidToken("the token has expired".into()));
        }
        if let Some(resource) = &self.resource {
            if !super::verify::is_for_resource(&self.verifier, info, resource) {
                return Err(Rejection::InvalidToken(
                    "the token is not for this resource (audience)".into(),
                ));
            }
        }
        Ok(())
    }

    async fn authenticate(&self, token: &str) -> Result<AuthInfo, Rejection> {
        // A cache hit is a token seen and validated before: skip checking it again.
        if let Some(info) = self.cache.as_ref().and_then(|cache| cache.get(token)) {
            return Ok(info);
        }
        self.verify(token).await
    }

    /// RFC 9449 §7.1: the proof, the token, the binding between them, the nonce, and that the
    /// proof is new, in that order (only a proof that passed everything is remembered).
    async fn authenticate_dpop(
        &self,
        policy: &DpopPolicy,
        proof: &str,
        check: &ProofCheck<'_>,
        token: &str,
    ) -> Result<AuthInfo, Rejection> {
        let proof = verify_proof(proof, check)
            .map_err(|e| Rejection::InvalidDpopProof(e.reason().into()))?;
        let info = self.authenticate(token).await?;
        match info.dpop_jkt() {
            Some(jkt) if bool::from(jkt.as_bytes().ct_eq(proof.jkt.as_bytes())) => {}
            Some(_) => {
                return Err(Rejection::InvalidToken(
                    "the token is bound to another key than the proof's".into(),
                ))
            }
            None => {
                return Err(Rejection::InvalidToken(
                    "the token is not DPoP-bound (no cnf.jkt)".into(),
                ))
            }
        }
        if let Some(nonces) = &policy.nonces {
            if !proof.nonce.as_deref().is_some_and(|n| nonces.accepts(n)) {
                return Err(Rejection::UseDpopNonce);
            }
        }
        match policy
            .replay
            .first_use(&proof.jkt, proof.replay_id(), proof.expires_at, now_secs())
            .await
        {
            Ok(true) => Ok(info),
            Ok(false) => Err(Rejection::InvalidDpopProof(
                "the proof was used before".into(),
            )),
            Err(error) => Err(Rejection::Unavailable(format!(
                "the DPoP replay cache cannot answer: {error}"
            ))),
        }
    }

    /// The URL a proof for this request must name: the configured resource's origin (the
    /// public one) with the path the client asked for; `None` without a resource.
    fn htu<B>(&self, request: &Request<B>) -> Option<String> {
        // Inside axum's `nest_service` the URI has lost its prefix; the original has it.
        #[cfg(any(feature = "axum", feature = "authorization-server"))]
        let path = request
            .extensions()
            .get::<axum::extract::OriginalUri>()
            .map_or(request.uri().path(), |original| original.0.path());
        #[cfg(not(any(feature = "axum", feature = "authorization-server")))]
        let path = request.uri().path();
        // Never from the request: its Host (or authority) is the client's to choose, so a
        // proof made for another server naming that host would pass.
        let origin = self.origin.as_ref()?;
        Some(format!("{origin}{path}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(AUTHORIZATION, http::HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn header_parsing() {
        assert_eq!(
            credentials(&headers(&["Bearer abc.def-_~+/=="])),
            Ok((Scheme::Bearer, "abc.def-_~+/=="))
        );
        assert_eq!(
            credentials(&headers(&["bearer  abc"])),
            Ok((Scheme::Bearer, "abc"))
        );
        assert_eq!(
            credentials(&headers(&["DPoP abc"])),
            Ok((Scheme::Dpop, "abc"))
        );
        assert_eq!(
            credentials(&headers(&[])),
            Err(Rejection::MissingCredentials)
        );
        assert_eq!(
            credentials(&headers(&["Basic dXNlcjpw"])),
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
                    credentials(&headers(&[bad])),
                    Err(Rejection::InvalidRequest(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            credentials(&headers(&["Bearer a", "Bearer b"])),
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
