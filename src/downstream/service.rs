//! [`OnBehalfOf`]: a tower HTTP service authorized for a downstream API as the current caller.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use tower::{BoxError, Service, ServiceExt};

use super::error::ExchangeError;
use super::exchange::{cache_key, Caller, Downstream, DownstreamToken, Key, TokenExchange};
use crate::challenge::BearerChallenge;
use crate::client::{CloneBodies, NonceCell, Replay, ReplayPolicy};
use crate::dpop::{access_token_hash, DPOP};

/// What every request of one [`OnBehalfOf`] shares.
struct Shared {
    exchange: TokenExchange,
    caller: Caller,
    target: Downstream,
    key: Key,
    /// `scheme://host[:port]` of the target's resource, when it names one: the only origin
    /// its token goes to.
    origin: Option<String>,
    /// The downstream API's DPoP nonce (RFC 9449 §9), for DPoP-bound tokens.
    nonce: NonceCell,
}

/// `inner` with the caller's exchanged token on every request (see
/// [`TokenExchange::on_behalf_of`]). A 401 from the API drops the token and exchanges again,
/// once, then replays the request when its body can be copied (the [`ReplayPolicy`], as
/// [`OAuthLayer`](crate::client::OAuthLayer)'s). Errors are [`ExchangeError`]s or the inner
/// service's, boxed.
#[derive(Clone)]
pub struct OnBehalfOf<S, P = CloneBodies> {
    inner: S,
    shared: Arc<Shared>,
    replay: P,
}

impl<S, P> std::fmt::Debug for OnBehalfOf<S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnBehalfOf")
            .field("target", &self.shared.target)
            .finish_non_exhaustive()
    }
}

impl TokenExchange {
    /// `inner` (an HTTP client) authorized for `target` as `caller`: each request carries the
    /// caller's exchanged token, from the cache while it is good. When `target` names a
    /// resource URL, requests to any other origin are refused, so the token goes nowhere else.
    ///
    /// ```no_run
    /// # async fn tool(exchange: tower_mcp_oauth::downstream::TokenExchange, parts: http::request::Parts) -> Result<(), tower::BoxError> {
    /// use tower::ServiceExt;
    /// use tower_mcp_oauth::downstream::{Caller, Downstream};
    ///
    /// let caller = Caller::from_extensions(&parts.extensions)?;
    /// let crm = exchange.on_behalf_of(
    ///     caller,
    ///     Downstream::resource("https://crm.example.com/api").scopes(["crm:read"]),
    ///     tower_mcp_oauth::http::HttpClient::new(),
    /// );
    /// let request = http::Request::get("https://crm.example.com/api/contacts")
    ///     .body(http_body_util::Full::default())?;
    /// let response = crm.oneshot(request).await?;
    /// # Ok(()) }
    /// ```
    pub fn on_behalf_of<S>(&self, caller: Caller, target: Downstream, inner: S) -> OnBehalfOf<S> {
        let key = cache_key(&caller, &target);
        let origin = target
            .resource_url()
            .map(|url| url.origin().ascii_serialization());
        OnBehalfOf {
            inner,
            shared: Arc::new(Shared {
                exchange: self.clone(),
                caller,
                target,
                key,
                origin,
                nonce: NonceCell::default(),
            }),
            replay: CloneBodies,
        }
    }
}

impl<S, P> OnBehalfOf<S, P> {
    /// Which request bodies may be copied to send again after a 401 (default
    /// [`CloneBodies`]).
    pub fn replay_policy<Q>(self, replay: Q) -> OnBehalfOf<S, Q> {
        OnBehalfOf {
            inner: self.inner,
            shared: self.shared,
            replay,
        }
    }
}

impl Shared {
    /// The caller's token for the target: cached, or exchanged once for every waiter.
    async fn token(&self) -> Result<Arc<DownstreamToken>, ExchangeError> {
        self.exchange
            .token_at(self.key, &self.caller, &self.target)
            .await
    }

    /// Refuses a request to any origin but the target resource's, when it names one.
    fn check_origin<B>(&self, request: &Request<B>) -> Result<(), BoxError> {
        if let Some(origin) = &self.origin {
            let uri = request.uri();
            let same = uri
                .scheme_str()
                .zip(uri.authority())
                .is_some_and(|(scheme, authority)| same_origin(origin, scheme, authority.as_str()));
            if !same {
                return Err(ExchangeError::Misconfigured(
                    "the request goes to another origin than the downstream resource; its token is not sent there"
                        .into(),
                )
                .into());
            }
        }
        Ok(())
    }

    /// Puts `token` (and, for a DPoP-bound one, a proof) on `request`.
    fn authorize<B>(
        &self,
        request: &mut Request<B>,
        token: &DownstreamToken,
    ) -> Result<(), BoxError> {
        let headers = request.headers_mut();
        headers.insert(AUTHORIZATION, token.authorization().clone());
        if token.is_dpop() {
            let signer = self.exchange.dpop_key().ok_or_else(|| {
                ExchangeError::Misconfigured("a DPoP-bound token without a DPoP key".into())
            })?;
            let ath = access_token_hash(token.access_token().expose());
            let nonce = self.nonce.get();
            let proof = signer.proof(
                request.method().as_str(),
                &request.uri().to_string(),
                Some(&ath),
                nonce.as_deref(),
            )?;
            let mut value = HeaderValue::from_str(&proof)?;
            value.set_sensitive(true);
            request.headers_mut().insert(DPOP, value);
        }
        Ok(())
    }
}

fn same_origin(origin: &str, scheme: &str, authority: &str) -> bool {
    let default_port = match scheme {
        "https" => ":443",
        "http" => ":80",
        _ => "",
    };
    let authority = authority.strip_suffix(default_port).unwrap_or(authority);
    origin
        .strip_prefix(scheme)
        .and_then(|rest| rest.strip_prefix("://"))
        .is_some_and(|rest| rest.eq_ignore_ascii_case(authority))
}

impl<S, P, ReqBody, ResBody> Service<Request<ReqBody>> for OnBehalfOf<S, P>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    ReqBody: Body + Default + Send + 'static,
    ResBody: Send + 'static,
    P: ReplayPolicy<ReqBody> + Send + Sync + 'static,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<ResBody>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        let policy = self.replay.clone();
        Box::pin(async move {
            shared.check_origin(&request)?;
            // From the cache, without waiting, on every request after the first.
            let mut token = shared.token().await?;
            let replay = Replay::capture(&request, &policy);
            shared.authorize(&mut request, &token)?;
            let response = inner.call(request).await.map_err(Into::into)?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            let Some(mut retry) = replay.as_ref().and_then(Replay::build) else {
                // Still forget the token, so the caller's own retry gets a new one.
                shared.exchange.forget(&shared.key, &token);
                return Ok(response);
            };
            let new_nonce = token.is_dpop() && shared.nonce.update_from(response.headers());
            if !(new_nonce && asks_for_nonce(&response)) {
                shared.exchange.forget(&shared.key, &token);
                token = shared.token().await?;
            }
            shared.authorize(&mut retry, &token)?;
            inner
                .ready()
                .await
                .map_err(Into::into)?
                .call(retry)
                .await
                .map_err(Into::into)
        })
    }
}

/// RFC 9449 §9: `WWW-Authenticate: DPoP error="use_dpop_nonce"`, read by the challenge parser
/// the client's layer uses.
fn asks_for_nonce<B>(response: &Response<B>) -> bool {
    BearerChallenge::from_headers_dpop_first(response.headers())
        .is_some_and(|challenge| challenge.error.as_deref() == Some("use_dpop_nonce"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_effective_port() {
        assert!(same_origin("https://crm.test", "https", "crm.test"));
        assert!(same_origin("https://crm.test", "https", "crm.test:443"));
        assert!(same_origin(
            "http://127.0.0.1:8080",
            "http",
            "127.0.0.1:8080"
        ));
        assert!(!same_origin("https://crm.test", "http", "crm.test"));
        assert!(!same_origin("https://crm.test", "https", "crm.test.evil"));
        assert!(!same_origin("https://crm.test", "https", "evil@crm.test"));
        assert!(!same_origin(
            "http://127.0.0.1:8080",
            "http",
            "127.0.0.1:8081"
        ));
    }
}
