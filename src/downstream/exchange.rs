//! [`TokenExchange`]: the caller's token traded at the authorization server for one to a
//! downstream API, cached per caller and target until it is due, one exchange at a time per key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use http::HeaderValue;
use sha2::{Digest, Sha256};
use url::Url;

use super::error::ExchangeError;
use crate::client::{
    fetch_authorization_server_metadata, is_attachable, request_outcome, ClientRegistration,
    DpopSigner, NonceCell, TokenEndpoint, TokenResponse,
};
use crate::clock::now_secs;
use crate::dpop::DpopKey;
use crate::error::{Error, ErrorClass, ErrorKind, Result};
use crate::http::HttpClient;
use crate::server::{AuthInfo, CallerToken};
use crate::sync::LockExt;
use crate::Secret;

/// RFC 8693 token exchange.
const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 7523: Entra ID's on-behalf-of request is this grant with `requested_token_use`.
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// Cached tokens are exchanged again this long before they expire.
const REFRESH_MARGIN_SECS: u64 = 30;
/// How long a token the server gave no `expires_in` for is used.
const UNSTATED_LIFETIME_SECS: u64 = 300;
/// The longest a token is cached, whatever the server says.
const MAX_CACHED_LIFETIME_SECS: u64 = 24 * 3600;
/// Default bound on cached tokens (callers × targets).
pub const DEFAULT_MAX_CACHED_TOKENS: usize = 10_000;

/// How the exchange is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ExchangeProfile {
    /// RFC 8693 (Keycloak, Okta, Auth0, this crate's authorization server): `subject_token`
    /// with its type, `audience` and `resource`, `scope`, `requested_token_type`.
    #[default]
    Rfc8693,
    /// Microsoft Entra ID's on-behalf-of flow: the JWT-bearer grant with the caller's token as
    /// `assertion`, `requested_token_use=on_behalf_of`, and the downstream API's scopes
    /// (`api://…/.default`). The target is named by the scopes alone ([`Downstream::scoped`]):
    /// a [`Downstream`] without scopes is refused, and its audience is not sent. Entra's access
    /// tokens name an issuer (`sts.windows.net/…`) other than its metadata's, so callers'
    /// issuers are not compared with it.
    EntraOnBehalfOf,
}

/// Where the token endpoint is.
#[derive(Debug, Clone)]
enum Endpoint {
    /// Found in the issuer's metadata (RFC 8414, then OpenID Connect) at first use.
    Issuer(Url),
    Given {
        issuer: String,
        url: Url,
    },
}

/// The token endpoint once known, and whether the server takes DPoP.
#[derive(Debug, Clone)]
struct Resolved {
    issuer: String,
    url: String,
    dpop: bool,
}

/// The downstream API a token is asked for: its audience and resource (RFC 8693 §2.1, RFC
/// 8707), and the scopes wanted there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Downstream {
    audience: Option<String>,
    resource: Option<String>,
    scopes: Vec<String>,
}

impl Downstream {
    /// The API known by `audience` (a logical name or its URI, as the authorization server
    /// knows it).
    pub fn audience(audience: impl Into<String>) -> Self {
        Self {
            audience: Some(audience.into()),
            ..Self::default()
        }
    }

    /// The API at `resource`, an absolute URI (RFC 8707).
    pub fn resource(resource: impl Into<String>) -> Self {
        Self {
            resource: Some(resource.into()),
            ..Self::default()
        }
    }

    /// Only scopes (Entra's on-behalf-of flow names the API in them: `api://crm/.default`).
    pub fn scoped<I, T>(scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Self::default().scopes(scopes)
    }

    /// The scopes wanted at the API; none leaves them to the authorization server.
    pub fn scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The resource as an http(s) URL, when it is one: the origin its token may go to.
    pub(crate) fn resource_url(&self) -> Option<Url> {
        self.resource
            .as_deref()
            .and_then(|r| Url::parse(r).ok())
            .filter(|url| matches!(url.scheme(), "http" | "https"))
    }

    /// Also names the resource, beside the audience.
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }
}

/// Who a request came from: its verified [`AuthInfo`] and the token it was admitted with.
#[derive(Debug, Clone)]
pub struct Caller {
    info: AuthInfo,
    token: CallerToken,
}

impl Caller {
    /// The caller [`RequireBearer`](crate::server::RequireBearer) admitted, from a request's
    /// extensions: an axum request's, or in an rmcp tool the request's parts, taken as a
    /// parameter `Extension(parts): Extension<http::request::Parts>` (README recipe (f)).
    ///
    /// # Errors
    /// [`ExchangeError::NoCaller`] when the request did not pass `RequireBearer`, or its token
    /// names no subject.
    pub fn from_extensions(
        extensions: &http::Extensions,
    ) -> std::result::Result<Self, ExchangeError> {
        let info = extensions
            .get::<AuthInfo>()
            .ok_or(ExchangeError::NoCaller)?;
        let token = extensions
            .get::<CallerToken>()
            .ok_or(ExchangeError::NoCaller)?;
        Self::new(info.clone(), token.clone())
    }

    /// A caller from its parts, for a layer of one's own that verifies tokens. `info` must be
    /// what `token` says: tokens are cached under `info`'s issuer, subject, client and scopes,
    /// so a mismatched pair hands one user's downstream token to another.
    ///
    /// # Errors
    /// [`ExchangeError::NoCaller`] when `info` names no subject.
    pub fn new(info: AuthInfo, token: CallerToken) -> std::result::Result<Self, ExchangeError> {
        if info.subject.is_none() {
            return Err(ExchangeError::NoCaller);
        }
        Ok(Self { info, token })
    }

    /// What the caller's token says.
    pub fn info(&self) -> &AuthInfo {
        &self.info
    }
}

/// A token for a downstream API, as a header value ready to attach. `Debug` shows no token.
pub struct DownstreamToken {
    header: HeaderValue,
    token: Secret,
    dpop: bool,
    expires_at: u64,
}

impl std::fmt::Debug for DownstreamToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownstreamToken")
            .field("dpop", &self.dpop)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl DownstreamToken {
    /// The token itself.
    pub fn access_token(&self) -> &Secret {
        &self.token
    }

    /// `Authorization`'s value: `Bearer …`, or `DPoP …` for a DPoP-bound token (whose requests
    /// also need a proof, which [`OnBehalfOf`](super::OnBehalfOf) adds).
    pub fn authorization(&self) -> &HeaderValue {
        &self.header
    }

    /// Whether the token is DPoP-bound to the exchanger's key.
    pub fn is_dpop(&self) -> bool {
        self.dpop
    }

    /// When it expires (or is taken to), seconds since the epoch.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    fn fresh(&self, now: u64) -> bool {
        self.expires_at > now + REFRESH_MARGIN_SECS
    }
}

type Flight = Shared<BoxFuture<'static, std::result::Result<Arc<DownstreamToken>, ExchangeError>>>;

enum Slot {
    Ready(Arc<DownstreamToken>),
    /// An exchange under way, every waiter joins it; the number tells flights apart.
    Pending(u64, Flight),
}

/// The cache key: a hash of everything that decides what a token may do (issuer, subject,
/// client and scopes of the caller's token; the target), so no caller is ever given a token
/// obtained with another's rights, and no subject is kept in the clear.
pub(crate) type Key = [u8; 32];

pub(crate) fn cache_key(caller: &Caller, target: &Downstream) -> Key {
    let mut hash = Sha256::new();
    let mut field = |value: &str| {
        hash.update((value.len() as u64).to_be_bytes());
        hash.update(value.as_bytes());
    };
    let info = &caller.info;
    field(info.issuer.as_deref().unwrap_or(""));
    field(info.subject.as_deref().unwrap_or(""));
    field(info.client_id.as_deref().unwrap_or(""));
    let mut caller_scopes: Vec<&str> = info.scopes.iter().map(String::as_str).collect();
    caller_scopes.sort_unstable();
    field(&caller_scopes.join(" "));
    field(target.audience.as_deref().unwrap_or(""));
    field(target.resource.as_deref().unwrap_or(""));
    let mut scopes: Vec<&str> = target.scopes.iter().map(String::as_str).collect();
    scopes.sort_unstable();
    field(&scopes.join(" "));
    hash.finalize().into()
}

/// Trades a verified caller's token for tokens to downstream APIs, on the caller's behalf, at
/// the authorization server that issued it (RFC 8693, or Entra's on-behalf-of flow). The
/// resource server authenticates as its own confidential client (a secret or
/// `private_key_jwt`, [`ClientRegistration`]) and binds tokens to its DPoP key where the server
/// offers DPoP and a key is set.
///
/// Tokens are cached per caller (issuer, subject, client, scopes) and target until 30 s before
/// they expire; concurrent requests for one key make one exchange. Cloning is cheap and shares
/// the cache. Configure it before cloning: each builder method returns an exchange with a cache
/// (and endpoint discovery) of its own.
///
/// The caller's token goes only to the authorization server that issued it: with the RFC 8693
/// profile, a caller whose token names another issuer than the server's metadata is refused
/// ([`Self::any_caller_issuer`] lifts that, for a server that exchanges other issuers' tokens).
#[derive(Clone)]
pub struct TokenExchange {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TokenExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenExchange")
            .field("endpoint", &self.inner.settings.endpoint)
            .field("client", &self.inner.settings.client)
            .field("profile", &self.inner.settings.profile)
            .finish_non_exhaustive()
    }
}

/// What the builder sets.
#[derive(Clone)]
struct Settings {
    http: HttpClient,
    endpoint: Endpoint,
    client: ClientRegistration,
    profile: ExchangeProfile,
    dpop: Option<DpopSigner>,
    max_cached: usize,
    any_caller_issuer: bool,
}

struct Inner {
    settings: Settings,
    resolved: tokio::sync::OnceCell<Resolved>,
    cache: Mutex<HashMap<Key, Slot>>,
    flights: AtomicU64,
    exchanges: AtomicU64,
}

impl TokenExchange {
    /// Exchanges at the authorization server `issuer`, its token endpoint found in its metadata
    /// at first use, as `client` (confidential: a secret or `private_key_jwt`).
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for an issuer that is not an URL, or a public client;
    /// [`ErrorKind::InsecureUrl`] for http off loopback.
    pub fn new(issuer: &str, client: ClientRegistration) -> Result<Self> {
        let issuer = parse_secure(issuer, "issuer")?;
        Self::build(Endpoint::Issuer(issuer), client)
    }

    /// Exchanges at `token_endpoint`, given outright; `issuer` is the server's issuer identifier
    /// (the audience of `private_key_jwt` assertions).
    ///
    /// # Errors
    /// As [`Self::new`].
    pub fn with_token_endpoint(
        issuer: &str,
        token_endpoint: &str,
        client: ClientRegistration,
    ) -> Result<Self> {
        let url = parse_secure(token_endpoint, "token_endpoint")?;
        Self::build(
            Endpoint::Given {
                issuer: issuer.trim_end_matches('/').to_owned(),
                url,
            },
            client,
        )
    }

    fn build(endpoint: Endpoint, client: ClientRegistration) -> Result<Self> {
        if client.auth_method == crate::client::TokenEndpointAuthMethod::None {
            return Err(Error::new(
                ErrorKind::Config,
                "token exchange needs a confidential client (a secret or private_key_jwt): \
                 the resource server authenticates as itself",
            ));
        }
        Ok(Self::from_settings(Settings {
            http: HttpClient::new(),
            endpoint,
            client,
            profile: ExchangeProfile::default(),
            dpop: None,
            max_cached: DEFAULT_MAX_CACHED_TOKENS,
            any_caller_issuer: false,
        }))
    }

    fn from_settings(settings: Settings) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                resolved: tokio::sync::OnceCell::new(),
                cache: Mutex::new(HashMap::new()),
                flights: AtomicU64::new(0),
                exchanges: AtomicU64::new(0),
            }),
        }
    }

    /// A changed configuration starts with its own, empty cache.
    fn configure(self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.inner.settings.clone();
        change(&mut settings);
        Self::from_settings(settings)
    }

    /// Also sends callers' tokens from other issuers than the authorization server's (one that
    /// trusts them for exchange, as [`TokenExchangePolicy::trust_subject_tokens`](crate::authorization_server::TokenExchangePolicy::trust_subject_tokens)
    /// does). Off by default, so a resource server that accepts several issuers never hands one
    /// issuer's tokens to another.
    pub fn any_caller_issuer(self) -> Self {
        self.configure(|settings| settings.any_caller_issuer = true)
    }

    /// How the exchange is asked for (default RFC 8693).
    pub fn profile(self, profile: ExchangeProfile) -> Self {
        self.configure(|inner| inner.profile = profile)
    }

    /// Binds exchanged tokens to `key` (RFC 9449) where the authorization server offers DPoP
    /// (its metadata lists `dpop_signing_alg_values_supported`, or the endpoint was given).
    pub fn dpop(self, key: DpopKey) -> Self {
        self.configure(|inner| {
            inner.dpop = Some(DpopSigner {
                key,
                nonce: Arc::new(NonceCell::default()),
            })
        })
    }

    /// The HTTP client for the authorization server (default [`HttpClient::new`]).
    pub fn http(self, http: HttpClient) -> Self {
        self.configure(|inner| inner.http = http)
    }

    /// At most `max` tokens are cached (default [`DEFAULT_MAX_CACHED_TOKENS`]); past it the
    /// expired go first, then any.
    pub fn max_cached_tokens(self, max: usize) -> Self {
        self.configure(|inner| inner.max_cached = max.max(1))
    }

    /// The key exchanged tokens are bound to, when DPoP is set.
    pub(crate) fn dpop_key(&self) -> Option<&DpopKey> {
        self.inner.settings.dpop.as_ref().map(|signer| &signer.key)
    }

    /// How many exchanges were sent to the authorization server so far.
    pub fn exchanges_sent(&self) -> u64 {
        self.inner.exchanges.load(Ordering::Relaxed)
    }

    /// The caller's token for `target`: from the cache while it is good, else exchanged (once
    /// for every concurrent request of the same caller and target).
    ///
    /// # Errors
    /// [`ExchangeError::Refused`] when the authorization server says no for this caller,
    /// [`ExchangeError::Unavailable`] when it cannot be reached, and
    /// [`ExchangeError::Misconfigured`] for the rest.
    pub async fn token(
        &self,
        caller: &Caller,
        target: &Downstream,
    ) -> std::result::Result<Arc<DownstreamToken>, ExchangeError> {
        let key = cache_key(caller, target);
        self.token_at(key, caller, target).await
    }

    pub(crate) async fn token_at(
        &self,
        key: Key,
        caller: &Caller,
        target: &Downstream,
    ) -> std::result::Result<Arc<DownstreamToken>, ExchangeError> {
        let flight = {
            let mut cache = self.inner.cache.locked();
            match cache.get(&key) {
                Some(Slot::Ready(token)) if token.fresh(now_secs()) => return Ok(token.clone()),
                Some(Slot::Pending(_, flight)) => flight.clone(),
                _ => {
                    let flight = self.start_flight(key, caller, target);
                    self.inner.make_room(&mut cache);
                    cache.insert(key, Slot::Pending(flight.0, flight.1.clone()));
                    flight.1
                }
            }
        };
        flight.await
    }

    /// Forgets `token` for `key` after the downstream API refused it, unless it was replaced
    /// already: the next request exchanges again, once for all who saw the refusal.
    pub(crate) fn forget(&self, key: &Key, token: &Arc<DownstreamToken>) {
        let mut cache = self.inner.cache.locked();
        if matches!(cache.get(key), Some(Slot::Ready(cached)) if Arc::ptr_eq(cached, token)) {
            cache.remove(key);
        }
    }

    /// Spawns the exchange, so a caller that gives up does not cancel it for the others.
    fn start_flight(&self, key: Key, caller: &Caller, target: &Downstream) -> (u64, Flight) {
        let number = self.inner.flights.fetch_add(1, Ordering::Relaxed);
        let inner = self.inner.clone();
        let subject_token = caller.token.clone();
        let caller_issuer = caller.info.issuer.clone();
        let target = target.clone();
        let task = tokio::spawn(async move {
            let result = inner
                .exchange(caller_issuer.as_deref(), &subject_token, &target)
                .await
                .map(Arc::new);
            let mut cache = inner.cache.locked();
            if matches!(cache.get(&key), Some(Slot::Pending(n, _)) if *n == number) {
                match &result {
                    Ok(token) => cache.insert(key, Slot::Ready(token.clone())),
                    Err(_) => cache.remove(&key),
                };
            }
            result
        });
        let inner = self.inner.clone();
        let flight = async move {
            task.await.unwrap_or_else(|_| {
                // A panic or a runtime shutting down: free the key for the next try.
                let mut cache = inner.cache.locked();
                if matches!(cache.get(&key), Some(Slot::Pending(n, _)) if *n == number) {
                    cache.remove(&key);
                }
                Err(ExchangeError::Unavailable(
                    "the exchange stopped before it finished".into(),
                ))
            })
        }
        .boxed()
        .shared();
        (number, flight)
    }
}

impl Inner {
    /// Room for one more entry: expired tokens go first, then whatever comes first.
    fn make_room(&self, cache: &mut HashMap<Key, Slot>) {
        let max = self.settings.max_cached;
        if cache.len() < max {
            return;
        }
        let now = now_secs();
        cache.retain(|_, slot| match slot {
            Slot::Ready(token) => token.fresh(now),
            Slot::Pending(..) => true,
        });
        while cache.len() >= max {
            let Some(victim) = cache
                .iter()
                .find(|(_, slot)| matches!(slot, Slot::Ready(_)))
                .or_else(|| cache.iter().next())
                .map(|(key, _)| *key)
            else {
                break;
            };
            cache.remove(&victim);
        }
    }

    async fn resolve(&self) -> std::result::Result<&Resolved, ExchangeError> {
        let settings = &self.settings;
        self.resolved
            .get_or_try_init(|| async {
                match &settings.endpoint {
                    Endpoint::Given { issuer, url } => Ok(Resolved {
                        issuer: issuer.clone(),
                        url: url.to_string(),
                        dpop: settings.dpop.is_some(),
                    }),
                    Endpoint::Issuer(issuer) => {
                        let metadata = fetch_authorization_server_metadata(&settings.http, issuer)
                            .await
                            .map_err(|e| from_error(&e))?;
                        let url = metadata.token_endpoint.clone().ok_or_else(|| {
                            ExchangeError::Misconfigured(format!(
                                "the authorization server {} publishes no token_endpoint",
                                metadata.issuer
                            ))
                        })?;
                        let dpop = settings.dpop.is_some()
                            && metadata
                                .dpop_signing_alg_values_supported
                                .as_ref()
                                .is_some_and(|algs| !algs.is_empty());
                        Ok(Resolved {
                            issuer: metadata.issuer,
                            url,
                            dpop,
                        })
                    }
                }
            })
            .await
    }

    async fn exchange(
        &self,
        caller_issuer: Option<&str>,
        subject_token: &CallerToken,
        target: &Downstream,
    ) -> std::result::Result<DownstreamToken, ExchangeError> {
        let settings = &self.settings;
        if settings.profile == ExchangeProfile::EntraOnBehalfOf && target.scopes.is_empty() {
            return Err(ExchangeError::Misconfigured(
                "Entra's on-behalf-of flow names the API by its scopes: give the Downstream scopes"
                    .into(),
            ));
        }
        let resolved = self.resolve().await?;
        let foreign = caller_issuer
            .is_some_and(|issuer| !crate::client::same_issuer(issuer, &resolved.issuer));
        if foreign && settings.profile == ExchangeProfile::Rfc8693 && !settings.any_caller_issuer {
            return Err(ExchangeError::Misconfigured(
                "the caller's token comes from another issuer than the exchange's authorization \
                 server; it is not sent there (TokenExchange::any_caller_issuer allows it)"
                    .into(),
            ));
        }
        settings
            .client
            .check_issuer(&resolved.issuer)
            .map_err(|e| ExchangeError::Misconfigured(e.to_string()))?;
        let endpoint = TokenEndpoint {
            url: &resolved.url,
            issuer: &resolved.issuer,
            client: &settings.client,
            extra_params: &[],
        };
        let scope = target.scopes.join(" ");
        let mut params: Vec<(&str, &str)> = Vec::with_capacity(6);
        let grant_type = match settings.profile {
            ExchangeProfile::Rfc8693 => {
                params.push(("subject_token", subject_token.expose()));
                params.push(("subject_token_type", ACCESS_TOKEN_TYPE));
                params.push(("requested_token_type", ACCESS_TOKEN_TYPE));
                if let Some(audience) = &target.audience {
                    params.push(("audience", audience));
                }
                if let Some(resource) = &target.resource {
                    params.push(("resource", resource));
                }
                TOKEN_EXCHANGE_GRANT
            }
            ExchangeProfile::EntraOnBehalfOf => {
                params.push(("assertion", subject_token.expose()));
                params.push(("requested_token_use", "on_behalf_of"));
                JWT_BEARER_GRANT
            }
        };
        if !scope.is_empty() {
            params.push(("scope", &scope));
        }
        let dpop = settings.dpop.as_ref().filter(|_| resolved.dpop);
        self.exchanges.fetch_add(1, Ordering::Relaxed);
        let response = match request_outcome(&settings.http, &endpoint, grant_type, &params, dpop)
            .await
        {
            Ok(Ok(response)) => response,
            Ok(Err(refusal)) => {
                let error =
                    ExchangeError::from_oauth(&refusal.error, refusal.error_description.as_deref());
                tracing::info!(%error, "token exchange refused");
                return Err(error);
            }
            Err(error) => return Err(from_error(&error)),
        };
        downstream_token(response, settings.profile, dpop.is_some())
    }
}

/// The exchanged token, checked to be one usable access token of the kind asked for.
fn downstream_token(
    response: TokenResponse,
    profile: ExchangeProfile,
    sent_proof: bool,
) -> std::result::Result<DownstreamToken, ExchangeError> {
    if profile == ExchangeProfile::Rfc8693 {
        match response.issued_token_type.as_deref() {
            Some(ACCESS_TOKEN_TYPE | JWT_TOKEN_TYPE) => {}
            // RFC 8693 requires it; some servers leave it out of plain access tokens.
            None => tracing::debug!("the exchange answer names no issued_token_type"),
            Some(_) => {
                return Err(ExchangeError::Misconfigured(
                    "the authorization server issued something other than an access token".into(),
                ))
            }
        }
    }
    let dpop = if response.token_type.eq_ignore_ascii_case("bearer") {
        false
    } else if response.token_type.eq_ignore_ascii_case("dpop") && sent_proof {
        true
    } else {
        return Err(ExchangeError::Misconfigured(format!(
            "the exchanged token is of type {:?}, which cannot be sent",
            crate::error::peer_text(&response.token_type, 32)
        )));
    };
    let token = response.access_token;
    if !is_attachable(token.expose()) {
        return Err(ExchangeError::Misconfigured(
            "the exchanged token cannot be sent in a header".into(),
        ));
    }
    let scheme = if dpop { "DPoP" } else { "Bearer" };
    let mut header = HeaderValue::from_str(&format!("{scheme} {}", token.expose()))
        .map_err(|_| ExchangeError::Misconfigured("the exchanged token is not ASCII".into()))?;
    header.set_sensitive(true);
    let lifetime = response
        .expires_in
        .unwrap_or(UNSTATED_LIFETIME_SECS)
        .min(MAX_CACHED_LIFETIME_SECS);
    Ok(DownstreamToken {
        header,
        token,
        dpop,
        expires_at: now_secs().saturating_add(lifetime),
    })
}

fn from_error(error: &Error) -> ExchangeError {
    match error.class() {
        ErrorClass::Transient => ExchangeError::Unavailable(error.to_string()),
        _ => ExchangeError::Misconfigured(error.to_string()),
    }
}

fn parse_secure(url: &str, what: &str) -> Result<Url> {
    let parsed = Url::parse(url).map_err(|_| {
        Error::new(
            ErrorKind::Config,
            format!("the {what} is not an absolute URL"),
        )
    })?;
    crate::http::ensure_secure_url(&parsed, what)?;
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_resources_bound_the_origin_tokens_go_to() {
        let origin = |r: &str| {
            Downstream::resource(r)
                .resource_url()
                .map(|u| u.to_string())
        };
        assert_eq!(
            origin("https://crm.test/api").as_deref(),
            Some("https://crm.test/api")
        );
        assert_eq!(origin("api://crm"), None);
        assert_eq!(origin("urn:example:crm"), None);
        assert_eq!(Downstream::audience("crm").resource_url(), None);
    }

    #[test]
    fn the_cache_key_separates_callers_and_targets() {
        let caller = |sub: &str, client: &str, scopes: &[&str]| {
            Caller::new(
                AuthInfo::from(crate::server::AuthData {
                    subject: Some(sub.into()),
                    issuer: Some("https://idp.test".into()),
                    client_id: Some(client.into()),
                    scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                    ..Default::default()
                }),
                CallerToken::bearer("t").unwrap(),
            )
            .unwrap()
        };
        let target = Downstream::audience("crm").scopes(["a", "b"]);
        let base = cache_key(&caller("alice", "c", &["x", "y"]), &target);
        assert_eq!(base, cache_key(&caller("alice", "c", &["y", "x"]), &target));
        assert_eq!(
            base,
            cache_key(
                &caller("alice", "c", &["x", "y"]),
                &Downstream::audience("crm").scopes(["b", "a"])
            )
        );
        for other in [
            cache_key(&caller("bob", "c", &["x", "y"]), &target),
            cache_key(&caller("alice", "d", &["x", "y"]), &target),
            cache_key(&caller("alice", "c", &["x"]), &target),
            cache_key(
                &caller("alice", "c", &["x", "y"]),
                &Downstream::audience("crm"),
            ),
            cache_key(
                &caller("alice", "c", &["x", "y"]),
                &Downstream::audience("crm2").scopes(["a", "b"]),
            ),
            // Length-prefixed: moving a boundary is another key.
            cache_key(&caller("alic", "ec", &["x", "y"]), &target),
        ] {
            assert_ne!(base, other);
        }
    }
}
