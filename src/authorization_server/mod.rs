//! An embedded OAuth 2.1 authorization server, so an MCP server can be self-contained.
//!
//! [`AuthorizationServer::router`] is an axum [`Router`] serving:
//!
//! | path | what |
//! |---|---|
//! | `/.well-known/oauth-authorization-server`, `/.well-known/openid-configuration` | RFC 8414 metadata (OpenID Connect discovery path too) |
//! | `/register` | RFC 7591 dynamic registration |
//! | `/authorize` | the authorization endpoint: a consent page, or the decision of an [`ApprovalPolicy`] |
//! | `/token` | `authorization_code` (PKCE S256), `refresh_token` (rotation, reuse detection), `client_credentials`, the JWT-bearer grant (workload tokens, ID-JAGs), `device_code` |
//! | `/device_authorization`, `/device` | RFC 8628 device authorization, and the page where the user types the device's code |
//! | `/revoke` | RFC 7009 revocation |
//! | `/introspect` | RFC 7662 introspection, for confidential clients (resource servers) |
//! | `/jwks` | the public signing key (ES256) |
//!
//! Paths sit under the issuer's path, and the well-known documents are served at both the
//! path-inserted and the appended locations.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use tower_mcp_oauth::authorization_server::{AuthorizationServer, AuthorizationServerConfig};
//!
//! let config = AuthorizationServerConfig::new("http://127.0.0.1:8080")?
//!     .resource("http://127.0.0.1:8080/mcp")
//!     .scopes(["mcp:tools", "mcp:admin"]);
//! let server = AuthorizationServer::new(config)?;
//! let app = server.router(); // merge with the MCP routes and serve
//! # let _ = app; Ok(()) }
//! ```
//!
//! Access tokens are bound to one RFC 8707 resource (`aud`). As JWTs ([`TokenFormat::Jwt`], the
//! default) they are signed with ES256 and checked statelessly by the `server` module's
//! `JwtVerifier` from `/jwks`; a JWT stays valid until it expires, so keep lifetimes short. As
//! opaque tokens ([`TokenFormat::Opaque`]) they are checked by introspection and revocation is
//! immediate. An MCP server in the same process can skip both: `local_verifier` (feature
//! `server`) asks the store directly, so revocation is immediate for either format. The store
//! keeps hashes of codes and tokens, never the values.

mod approval;
mod assertion;
mod authorize;
mod cimd;
mod client_auth;
mod device;
mod exchange;
mod grant;
mod keys;
#[cfg(feature = "server")]
mod local;
mod page;
mod register;
mod revoke;
mod store;
mod token;
mod upstream;
mod wire;

use crate::dpop::{DpopAlgorithm, DpopNonces, MemoryReplayCache, ReplayCache};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use http::StatusCode;
use url::Url;

use crate::error::{Error, ErrorKind, Result};
use crate::http::cors;
use crate::metadata::AuthorizationServerMetadata;
use wire::json_response;

pub use crate::seal::SealingKey;
pub use approval::{
    ApprovalPolicy, AuthorizationDecision, AutoApprove, ConsentPage, ConsentRequest,
};
pub use assertion::{EnterpriseIdp, WorkloadIssuer};
pub use exchange::{DownstreamApi, TokenExchangePolicy};
pub use keys::SigningKey;
#[cfg(feature = "server")]
pub use local::LocalVerifier;
#[cfg(feature = "postgres")]
pub use store::PostgresAuthorizationStore;
pub use store::{
    AccessRecord, AuthorizationStore, BoxFuture, ClientAuthMethod, CodeGrant, CodeRedemption,
    DeviceGrant, DevicePoll, DeviceSave, DeviceStatus, FamilyStart, MemoryAuthorizationStore,
    MemoryStoreLimits, PendingConsent, PendingSignIn, RefreshRotation, RegisteredClient,
    RememberedConsent, SealedUpstreamTokens, SignInSession, TokenFamily, TokenHash,
    UpstreamIdentity, DEVICE_SLOW_DOWN_SECS,
};
pub use upstream::{OAuth2Profile, ScopeMapper, SignInCheck, UpstreamSignIn};
// For the linked accounts of `downstream::accounts`: the same provider leg and pages.
#[cfg(feature = "downstream")]
pub(crate) use grant::{random_token, s256_challenge};
#[cfg(feature = "downstream")]
pub(crate) use page::{escape, html_response, PAGE_STYLE};
#[cfg(feature = "downstream")]
pub(crate) use upstream::{SignInError, Upstream, UpstreamTokens};

/// Largest request body any endpoint reads.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// How access tokens are issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenFormat {
    /// Signed JWTs (ES256, RFC 9068 `at+jwt`), verifiable from the JWKS without a call back.
    #[default]
    Jwt,
    /// Random strings, checked by introspection; revocation takes effect at once.
    Opaque,
}

/// What the authorization server issues and accepts.
#[derive(Clone)]
pub struct AuthorizationServerConfig {
    issuer: Url,
    resources: Vec<String>,
    scopes: Vec<String>,
    default_scopes: Option<Vec<String>>,
    access_token_ttl: Duration,
    refresh_token_ttl: Duration,
    refresh_rotation_grace: Duration,
    code_ttl: Duration,
    token_format: TokenFormat,
    approval: Option<Arc<dyn ApprovalPolicy>>,
    store: Arc<dyn AuthorizationStore>,
    signing_key: Option<SigningKey>,
    retired_keys: Vec<SigningKey>,
    cimd: cimd::CimdConfig,
    redirect_rules: register::RedirectRules,
    dpop: Option<DpopSettings>,
    workload_issuers: Vec<WorkloadIssuer>,
    enterprise_idps: Vec<EnterpriseIdp>,
    assertion_replay: Arc<dyn ReplayCache>,
    /// Set by the caller: not replaced by the store's own.
    assertion_replay_given: bool,
    device: device::DeviceSettings,
    /// The trusted proxy's header naming the client's address.
    client_address_header: Option<http::HeaderName>,
    upstream: Option<UpstreamSignIn>,
    exchange: Option<TokenExchangePolicy>,
    /// The device grant was turned on or off by the caller, not left at its default.
    device_chosen: bool,
}

/// How the token endpoint takes DPoP proofs.
#[derive(Clone)]
struct DpopSettings {
    replay: Arc<dyn ReplayCache>,
    /// Set by the caller: not replaced by the store's own.
    replay_given: bool,
    nonces: Option<Arc<DpopNonces>>,
}

impl std::fmt::Debug for AuthorizationServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationServerConfig")
            .field("issuer", &self.issuer.as_str())
            .field("resources", &self.resources)
            .field("scopes", &self.scopes)
            .field("access_token_ttl", &self.access_token_ttl)
            .field("token_format", &self.token_format)
            .finish_non_exhaustive()
    }
}

impl AuthorizationServerConfig {
    /// A server whose issuer identifier is `issuer`: https, or http on loopback; no query or
    /// fragment. Defaults: JWT access tokens for 1 hour, refresh tokens for 30 days, codes for
    /// 60 s, an in-memory store, a new ES256 key. On a loopback issuer the approval policy
    /// defaults to the consent page for the user `user`; elsewhere it must be set, since the
    /// server cannot know who the user is.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for an issuer that is not such a URL.
    pub fn new(issuer: &str) -> Result<Self> {
        let issuer = Url::parse(issuer.trim_end_matches('/'))
            .map_err(|_| Error::new(ErrorKind::Config, "the issuer is not a URL"))?;
        if issuer.query().is_some() || issuer.fragment().is_some() {
            return Err(Error::new(
                ErrorKind::Config,
                "the issuer must not have a query or fragment (RFC 8414 §2)",
            ));
        }
        crate::http::ensure_secure_url(&issuer, "issuer")
            .map_err(|e| Error::new(ErrorKind::Config, e.to_string()))?;
        Ok(Self {
            issuer,
            resources: Vec::new(),
            scopes: Vec::new(),
            default_scopes: None,
            access_token_ttl: Duration::from_secs(3600),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            refresh_rotation_grace: Duration::from_secs(60),
            code_ttl: Duration::from_secs(60),
            token_format: TokenFormat::Jwt,
            device_chosen: false,
            upstream: None,
            exchange: None,
            approval: None,
            store: Arc::new(MemoryAuthorizationStore::new()),
            signing_key: None,
            retired_keys: Vec::new(),
            cimd: cimd::CimdConfig::default(),
            redirect_rules: register::RedirectRules::default(),
            dpop: Some(DpopSettings {
                replay: Arc::new(MemoryReplayCache::default()),
                replay_given: false,
                nonces: None,
            }),
            workload_issuers: Vec::new(),
            enterprise_idps: Vec::new(),
            assertion_replay: Arc::new(MemoryReplayCache::default()),
            assertion_replay_given: false,
            device: device::DeviceSettings::default(),
            client_address_header: None,
        })
    }

    /// Whether the device authorization grant (RFC 8628) is offered (default: yes, but not
    /// with upstream sign-in). It lets a machine without a browser sign in, and so lets anyone
    /// who talks a user into typing a code sign in as them: a server whose clients all have
    /// browsers can turn it off.
    pub fn device_grant(mut self, enabled: bool) -> Self {
        self.device.enabled = enabled;
        self.device_chosen = true;
        self
    }

    /// How many wrong user codes the device page takes per minute from one client network (an
    /// IPv4 /24, an IPv6 /48; default 60), and ten times that from everyone together, before it
    /// stops looking codes up for that network, or for all, until the minute is over (RFC 8628
    /// §5.1). One guesser holds off only its network; with 8-letter codes, guessers everywhere
    /// at once need about 15 days per hit with 2,000 codes waiting, a day and a half with
    /// 20,000 (PostgreSQL's most), years at a usual load.
    ///
    /// The address is the connection's peer when the router is served with
    /// `into_make_service_with_connect_info::<SocketAddr>()`, or the last entry of
    /// [`client_address_header`](Self::client_address_header) behind a proxy; requests whose
    /// address is unknown share one count.
    pub fn device_wrong_codes_per_minute(mut self, limit: u32) -> Self {
        self.device.wrong_codes_per_minute = limit;
        self
    }

    /// Behind a reverse proxy: the header it puts the client's address in (its last entry is
    /// read, the one the proxy added: `x-forwarded-for`, say). Only for a proxy that sets it
    /// on every request; otherwise clients choose their own address.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when `name` is not a header name.
    pub fn client_address_header(mut self, name: &str) -> Result<Self> {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Error::new(ErrorKind::Config, "not a header name"))?;
        self.client_address_header = Some(name);
        Ok(self)
    }

    /// How long a device authorization (RFC 8628) waits for the user (default 10 minutes).
    pub fn device_code_ttl(mut self, ttl: Duration) -> Self {
        self.device.ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// The least time a device waits between two polls of the token endpoint (default 5 s,
    /// at least 1 s); polling sooner gets `slow_down` and 5 s more.
    pub fn device_poll_interval(mut self, interval: Duration) -> Self {
        self.device.interval = interval.max(Duration::from_secs(1));
        self
    }

    /// Takes the JWT-bearer grant (RFC 7523 §2.1) with tokens of this workload identity issuer
    /// (SEP-1933), for the subjects it names. Clients using the grant are registered by the
    /// operator with the grant type `urn:ietf:params:oauth:grant-type:jwt-bearer`.
    pub fn trust_workload_issuer(mut self, issuer: WorkloadIssuer) -> Self {
        self.workload_issuers.push(issuer);
        self
    }

    /// Takes the JWT-bearer grant with ID-JAGs of this enterprise IdP (SEP-990): the IdP
    /// vouches for its user, the ID-JAG names the client, this server and the resource.
    pub fn trust_enterprise_idp(mut self, idp: EnterpriseIdp) -> Self {
        self.enterprise_idps.push(idp);
        self
    }

    /// Where the server remembers the `jti`s of the client assertions and ID-JAGs it accepted,
    /// so none is accepted twice (default: the store's
    /// [`replay_cache`](AuthorizationStore::replay_cache), else in memory).
    pub fn assertion_replay_cache(mut self, cache: impl ReplayCache) -> Self {
        self.assertion_replay = Arc::new(cache);
        self.assertion_replay_given = true;
        self
    }

    /// Whether the server issues DPoP-bound tokens (RFC 9449; default on): it then lists
    /// `dpop_signing_alg_values_supported`, and a token request with a valid proof gets tokens
    /// bound to its key (`token_type` `DPoP`, `cnf.jkt`), a public client's refresh tokens
    /// included. Requests without a proof still get Bearer tokens, unless the client
    /// registered `dpop_bound_access_tokens`.
    pub fn dpop(mut self, enabled: bool) -> Self {
        self.dpop = enabled.then(|| {
            self.dpop.take().unwrap_or_else(|| DpopSettings {
                replay: Arc::new(MemoryReplayCache::default()),
                replay_given: false,
                nonces: None,
            })
        });
        self
    }

    /// Asks token requests for a server nonce (RFC 9449 §8). Implies [`Self::dpop`].
    pub fn dpop_nonces(mut self, nonces: DpopNonces) -> Self {
        self = self.dpop(true);
        if let Some(settings) = &mut self.dpop {
            settings.nonces = Some(Arc::new(nonces));
        }
        self
    }

    /// Where the token endpoint remembers the proofs it accepted (default: the store's
    /// [`replay_cache`](AuthorizationStore::replay_cache), else in memory). Implies
    /// [`Self::dpop`].
    pub fn dpop_replay_cache(mut self, cache: impl ReplayCache) -> Self {
        self = self.dpop(true);
        if let Some(settings) = &mut self.dpop {
            settings.replay = Arc::new(cache);
            settings.replay_given = true;
        }
        self
    }

    /// Adds a resource (RFC 8707) tokens may be issued for: the MCP server's URL. A request
    /// without `resource` gets the first one.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resources.push(resource.into());
        self
    }

    /// The scopes clients may ask for (`scopes_supported`). Without any, a request naming a
    /// scope is refused with `invalid_scope`: the server never grants a scope it was not told of.
    pub fn scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The scopes granted when a client asks for none (default: none).
    pub fn default_scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.default_scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// Access token lifetime.
    pub fn access_token_ttl(mut self, ttl: Duration) -> Self {
        self.access_token_ttl = ttl;
        self
    }

    /// Refresh token family lifetime, from the first authorization.
    pub fn refresh_token_ttl(mut self, ttl: Duration) -> Self {
        self.refresh_token_ttl = ttl;
        self
    }

    /// How long a refresh token just rotated may be presented again (default 60 s; zero turns
    /// it off), by a confidential client or with a DPoP-bound refresh token (a public client's
    /// Bearer refresh token gets none: nothing ties it to its holder): the client gets the same
    /// successor it was given, instead of the family being revoked as for a stolen token. A client killed between the answer and its own write,
    /// or whose answer was lost on the way, is not signed out. Past the window, or for any
    /// older token, reuse revokes the family (OAuth 2.1 §4.3.1). The price: a thief who
    /// presents a token inside the window gets that successor too, and the theft is found
    /// only when the successor is used twice.
    pub fn refresh_rotation_grace(mut self, grace: Duration) -> Self {
        self.refresh_rotation_grace = grace;
        self
    }

    /// Authorization code lifetime, at most 60 s (OAuth 2.1 recommends short codes).
    pub fn code_ttl(mut self, ttl: Duration) -> Self {
        self.code_ttl = ttl.min(Duration::from_secs(60));
        self
    }

    /// JWT or opaque access tokens.
    pub fn token_format(mut self, format: TokenFormat) -> Self {
        self.token_format = format;
        self
    }

    /// Who approves authorization requests: [`ConsentPage`] (default) or [`AutoApprove`] for
    /// development and tests, or the application's own policy.
    pub fn approval_policy(mut self, policy: impl ApprovalPolicy) -> Self {
        self.approval = Some(Arc::new(policy));
        self
    }

    /// Signs users in at their identity provider (see [`UpstreamSignIn`]): the user of each
    /// authorization is who the provider says, the consent page is ours, and a session keeps
    /// the browser signed in. Takes the place of an approval policy. The device grant is not
    /// offered with it yet (its page has no sign-in), so it is off unless turned on, which
    /// [`AuthorizationServer::new`] refuses.
    pub fn upstream_sign_in(mut self, sign_in: UpstreamSignIn) -> Self {
        self.upstream = Some(sign_in);
        self
    }

    /// Takes the token-exchange grant (RFC 8693) for the downstream APIs `policy` names, so
    /// resource servers can call them on their callers' behalf. Off by default.
    pub fn token_exchange(mut self, policy: TokenExchangePolicy) -> Self {
        self.exchange = Some(policy);
        self
    }

    /// Where clients, codes and token families are kept (default: in memory).
    pub fn store(mut self, store: impl AuthorizationStore) -> Self {
        self.store = Arc::new(store);
        self
    }

    /// The ES256 key access tokens are signed with (default: a new one per process).
    pub fn signing_key(mut self, key: SigningKey) -> Self {
        self.signing_key = Some(key);
        self
    }

    /// A key tokens are no longer signed with, kept in the JWKS so the tokens it signed stay
    /// valid until they expire: rotate by making the new key the signing key and the old one
    /// retired, then drop it after the access token lifetime.
    pub fn retired_signing_key(mut self, key: SigningKey) -> Self {
        self.retired_keys.push(key);
        self
    }

    /// Also accept reverse-domain private-use redirect URI schemes (`com.example.app:/callback`,
    /// RFC 8252 §7.1) for native apps. Off by default: https and loopback http only.
    pub fn allow_private_use_redirect_schemes(mut self, allow: bool) -> Self {
        self.redirect_rules.private_use_schemes = allow;
        self.cimd.redirect_rules.private_use_schemes = allow;
        self
    }

    /// For development only: let Client ID Metadata Document URLs resolve to loopback, private
    /// and link-local addresses, and use http on loopback. Off by default: a CIMD URL is fetched
    /// by the server, so without this guard a client could make it call internal services.
    pub fn allow_private_client_metadata_hosts(mut self, allow: bool) -> Self {
        self.cimd.allow_private = allow;
        self
    }

    /// Also trusts the PEM certificates in `roots_pem` when fetching Client ID Metadata
    /// Documents (a private CA).
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when `roots_pem` holds no valid certificate.
    pub fn client_metadata_root_certificates(mut self, roots_pem: &[u8]) -> Result<Self> {
        self.cimd
            .extra_roots
            .extend(crate::http::parse_certificates(roots_pem)?);
        Ok(self)
    }

    /// How long a fetched Client ID Metadata Document is reused (default 5 minutes).
    pub fn client_metadata_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cimd.cache_ttl = ttl;
        self
    }

    /// The time a Client ID Metadata Document fetch may take (default 5 s).
    pub fn client_metadata_timeout(mut self, timeout: Duration) -> Self {
        self.cimd.timeout = timeout;
        self
    }
}

/// The embedded authorization server: see the [module docs](self).
#[derive(Clone)]
pub struct AuthorizationServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AuthorizationServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationServer")
            .field("issuer", &self.inner.config.issuer.as_str())
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: AuthorizationServerConfig,
    approval: Arc<dyn ApprovalPolicy>,
    issuer: String,
    key: SigningKey,
    cimd: cimd::CimdFetcher,
    trust: assertion::Trust,
    wrong_codes: device::WrongCodes,
    upstream: Option<upstream::Upstream>,
}

impl AuthorizationServer {
    /// Builds the server.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when no resource is configured, when an issuer off loopback has
    /// no approval policy, or when a key cannot be made.
    pub fn new(mut config: AuthorizationServerConfig) -> Result<Self> {
        if let Some(shared) = config.store.replay_cache() {
            if !config.assertion_replay_given {
                config.assertion_replay = shared.clone();
            }
            if let Some(dpop) = config.dpop.as_mut().filter(|d| !d.replay_given) {
                dpop.replay = shared;
            }
        }
        if config.resources.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                "the authorization server needs at least one resource (the MCP server's URL)",
            ));
        }
        if config.upstream.is_some() && config.approval.is_some() {
            return Err(Error::new(
                ErrorKind::Config,
                "upstream sign-in decides who the user is: drop the approval policy, or the \
                 upstream sign-in",
            ));
        }
        if config.upstream.is_some() && !config.device_chosen {
            config.device.enabled = false;
        }
        if config.upstream.is_some() && config.device.enabled {
            return Err(Error::new(
                ErrorKind::Config,
                "the device grant is not offered with upstream sign-in yet: turn it off \
                 (device_grant(false))",
            ));
        }
        let upstream = config
            .upstream
            .clone()
            .map(upstream::Upstream::new)
            .transpose()?;
        let approval =
            match &config.approval {
                Some(policy) => policy.clone(),
                // Upstream sign-in decides in its place; nothing else asks a policy then.
                None if config.upstream.is_some() => Arc::new(approval::RefuseAll),
                None if crate::http::is_loopback_host(&config.issuer) => {
                    Arc::new(ConsentPage::new("user")) as Arc<dyn ApprovalPolicy>
                }
                None => return Err(Error::new(
                    ErrorKind::Config,
                    "set an approval policy that knows the user (approval_policy); the default \
                     consent page, which lets anyone who reaches it approve, is for loopback only",
                )),
            };
        let key = match &config.signing_key {
            Some(key) => key.clone(),
            None => SigningKey::generate()?,
        };
        let issuer = config.issuer.as_str().trim_end_matches('/').to_owned();
        let cimd = cimd::CimdFetcher::new(config.cimd.clone());
        let trust = assertion::Trust::new(&config.workload_issuers, &config.enterprise_idps)?;
        let wrong_codes = device::WrongCodes::new(config.device.wrong_codes_per_minute);
        Ok(Self {
            inner: Arc::new(Inner {
                issuer,
                key,
                cimd,
                trust,
                wrong_codes,
                approval,
                upstream,
                config,
            }),
        })
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The RFC 8414 metadata this server publishes.
    pub fn metadata(&self) -> AuthorizationServerMetadata {
        let endpoint = |path: &str| Some(format!("{}{path}", self.inner.issuer));
        let strings = |items: &[&str]| Some(items.iter().map(|s| (*s).to_owned()).collect());
        AuthorizationServerMetadata {
            issuer: self.inner.issuer.clone(),
            authorization_endpoint: endpoint("/authorize"),
            token_endpoint: endpoint("/token"),
            registration_endpoint: endpoint("/register"),
            jwks_uri: endpoint("/jwks"),
            scopes_supported: Some(self.inner.config.scopes.clone()),
            response_types_supported: strings(&["code"]),
            grant_types_supported: Some(self.grant_types()),
            token_endpoint_auth_methods_supported: strings(&[
                "none",
                "client_secret_post",
                "client_secret_basic",
                "private_key_jwt",
            ]),
            code_challenge_methods_supported: strings(&["S256"]),
            revocation_endpoint: endpoint("/revoke"),
            introspection_endpoint: endpoint("/introspect"),
            device_authorization_endpoint: self
                .inner
                .config
                .device
                .enabled
                .then(|| format!("{}/device_authorization", self.inner.issuer)),
            authorization_response_iss_parameter_supported: true,
            client_id_metadata_document_supported: true,
            dpop_signing_alg_values_supported: self.inner.config.dpop.as_ref().map(|_| {
                DpopAlgorithm::ALL
                    .iter()
                    .map(|a| a.as_str().to_owned())
                    .collect()
            }),
            extra: serde_json::Map::from_iter([(
                "token_endpoint_auth_signing_alg_values_supported".to_owned(),
                serde_json::json!(crate::jwks::ASYMMETRIC
                    .iter()
                    .map(|alg| format!("{alg:?}"))
                    .collect::<Vec<_>>()),
            )]),
        }
    }

    /// The grant types the token endpoint takes.
    pub(crate) fn grant_types(&self) -> Vec<String> {
        let mut grants = vec![
            "authorization_code".to_owned(),
            "refresh_token".to_owned(),
            "client_credentials".to_owned(),
        ];
        if self.inner.config.device.enabled {
            grants.push(wire::DEVICE_CODE_GRANT.to_owned());
        }
        if self.inner.trust.takes_jwt_bearer() {
            grants.push(assertion::JWT_BEARER_GRANT.to_owned());
        }
        if self.inner.config.exchange.is_some() {
            grants.push(exchange::TOKEN_EXCHANGE_GRANT.to_owned());
        }
        grants
    }

    /// The JWKS document: the public signing key, then any retired ones.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<&jsonwebtoken::jwk::Jwk> = std::iter::once(&self.inner.key)
            .chain(&self.inner.config.retired_keys)
            .map(SigningKey::public_jwk)
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// The axum router serving every endpoint (see the [module docs](self)). Merge it with the
    /// MCP routes; it has its own request size limit.
    pub fn router(&self) -> Router {
        let base = self.inner.config.issuer.path().trim_end_matches('/');
        let at = |path: &str| format!("{base}{path}");
        // What a browser-based client calls (metadata, registration, tokens) allows any origin,
        // without credentials; the consent page and introspection do not.
        let mut public = Router::new();
        for well_known in [
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration",
        ] {
            public = public.route(
                &format!("{well_known}{base}"),
                get(serve_metadata).options(preflight),
            );
            if !base.is_empty() {
                public = public.route(&at(well_known), get(serve_metadata).options(preflight));
            }
        }
        let public = public
            .route(&at("/register"), post(register::handle).options(preflight))
            .route(&at("/token"), post(token::handle).options(preflight))
            .route(
                &at("/revoke"),
                post(revoke::handle_revoke).options(preflight),
            )
            .route(&at("/jwks"), get(serve_jwks).options(preflight));
        let public = if self.inner.config.device.enabled {
            public.route(
                &at("/device_authorization"),
                post(device::handle_authorization).options(preflight),
            )
        } else {
            public
        };
        let public = public.layer(tower::util::MapResponseLayer::new(allow_any_origin));
        let mut pages = Router::new().route(
            &at("/authorize"),
            get(authorize::handle_get).post(authorize::handle_post),
        );
        if self.inner.upstream.is_some() {
            pages = pages.route(
                &at(authorize::CALLBACK_PATH),
                get(authorize::upstream_callback),
            );
        }
        if self.inner.config.device.enabled {
            pages = pages.route(
                &at("/device"),
                get(device::handle_page).post(device::handle_post),
            );
        }
        pages
            .route(&at("/introspect"), post(revoke::handle_introspect))
            .merge(public)
            .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
            .with_state(self.clone())
    }
}

fn allow_any_origin(mut response: Response) -> Response {
    cors::OAUTH_ENDPOINTS.apply(response.headers_mut());
    response
}

async fn preflight() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    cors::OAUTH_ENDPOINTS.preflight(response.headers_mut());
    response
}

async fn serve_metadata(State(server): State<AuthorizationServer>) -> Response {
    json_response(StatusCode::OK, &server.metadata())
}

async fn serve_jwks(State(server): State<AuthorizationServer>) -> Response {
    json_response(StatusCode::OK, &server.jwks())
}
