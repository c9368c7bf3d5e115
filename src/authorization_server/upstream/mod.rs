//! Upstream sign-in: the embedded authorization server signs users in at the identity provider
//! they already have, then issues its own tokens. The flow and its rules are on
//! [`UpstreamSignIn`].

mod answer;
mod id_token;
mod provider;
mod vault;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use url::Url;

use super::store::{BoxFuture, UpstreamIdentity};
use crate::error::Result;
use crate::http::{parse_url, HttpClient};
use crate::seal::SealingKey;
use crate::Secret;

pub(crate) use answer::SignInError;
#[cfg(feature = "downstream")]
pub(crate) use answer::UpstreamTokens;
pub(crate) use provider::Upstream;
pub(super) use vault::access_token;

/// How long a browser session lasts by default.
const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// How long a consent is remembered by default.
const DEFAULT_CONSENT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// A check of the application's own, run on every sign-in after the built-in rules: GitHub
/// organisation membership, a directory lookup. It gets the provider's access token to ask the
/// provider. `Err` refuses the sign-in; its text is shown to the user, so keep it plain.
pub trait SignInCheck: Send + Sync + 'static {
    /// Admits `identity`, or says why not.
    fn check<'a>(
        &'a self,
        identity: &'a UpstreamIdentity,
        upstream_access_token: &'a Secret,
    ) -> BoxFuture<'a, std::result::Result<(), String>>;
}

/// Which scopes a user may get: given who signed in and what the client asked for, the
/// subset to grant. Anything outside the request is ignored: a mapping can only narrow.
pub type ScopeMapper = dyn Fn(&UpstreamIdentity, &[String]) -> Vec<String> + Send + Sync;

/// A plain OAuth 2.0 provider with a user API (GitHub's shape): endpoints given by hand, the
/// identity read from the user API with the access token.
#[derive(Debug, Clone)]
pub struct OAuth2Profile {
    name: String,
    issuer: String,
    authorization_endpoint: Url,
    token_endpoint: Url,
    user_endpoint: Url,
    subject_field: String,
    name_field: String,
    scopes: Vec<String>,
}

impl OAuth2Profile {
    /// A provider named `name` (shown on the consent page). `issuer` qualifies its users'
    /// subjects (`{issuer}#{id}`); the endpoints must be https (or loopback http).
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) for a URL that does not parse.
    pub fn new(
        name: impl Into<String>,
        issuer: impl Into<String>,
        authorization_endpoint: &str,
        token_endpoint: &str,
        user_endpoint: &str,
    ) -> Result<Self> {
        Ok(Self {
            name: name.into(),
            issuer: issuer.into(),
            authorization_endpoint: parse_url(authorization_endpoint, "authorization endpoint")?,
            token_endpoint: parse_url(token_endpoint, "token endpoint")?,
            user_endpoint: parse_url(user_endpoint, "user API")?,
            subject_field: "id".into(),
            name_field: "login".into(),
            scopes: Vec::new(),
        })
    }

    /// GitHub (OAuth apps and GitHub Apps): `github.com/login/oauth/*`, the user from
    /// `api.github.com/user`, the subject its numeric `id` (a login can be renamed), the
    /// scope `read:user`.
    pub fn github() -> Self {
        Self::new(
            "GitHub",
            "https://github.com",
            "https://github.com/login/oauth/authorize",
            "https://github.com/login/oauth/access_token",
            "https://api.github.com/user",
        )
        .expect("GitHub's endpoints parse")
        .scopes(["read:user"])
    }

    /// The user API field holding the stable user id (default `id`).
    pub fn subject_field(mut self, field: impl Into<String>) -> Self {
        self.subject_field = field.into();
        self
    }

    /// The user API field holding the name to show (default `login`).
    pub fn name_field(mut self, field: impl Into<String>) -> Self {
        self.name_field = field.into();
        self
    }

    /// The scopes asked of the provider by default.
    pub fn scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }
}

#[derive(Debug, Clone)]
enum ProviderKind {
    OpenId { issuer: String },
    OAuth2(Box<OAuth2Profile>),
}

/// How the server authenticates at the provider's token endpoint.
#[derive(Debug, Clone)]
enum ClientAuth {
    /// No secret: PKCE only (a provider that treats the server as a public client).
    None,
    Basic(Secret),
    Post(Secret),
    /// A JWT signed with the server's own signing key: register its `/jwks` at the provider.
    PrivateKeyJwt,
}

/// Upstream sign-in: the embedded authorization server signs users in at the identity provider
/// they already have (OpenID Connect, or plain OAuth 2.0 with a user API, GitHub's shape), then
/// issues **its own** tokens for the MCP resource. The provider's tokens never reach the MCP
/// client (token passthrough is forbidden); they are kept sealed for the server's own tools.
///
/// The order of a first authorization keeps MCP's confused-deputy rule (security best
/// practices, 2025-11-25): the user approves *this* MCP client on our consent page before any
/// redirect upstream, because the provider may remember its consent for our one fixed client.
///
/// 1. `GET /authorize` from the MCP client: no session, so our consent page names the client,
///    its scopes, its full redirect URI and the provider the user will sign in with.
/// 2. Approve: the request, a `nonce` and a PKCE verifier are kept under the hash of a fresh
///    `state` (any replica can finish it), a `SameSite=Lax` cookie holding that `state` is set,
///    and the browser goes upstream.
/// 3. `GET /authorize/callback`: the `state` is taken once and must match the cookie; `iss` is
///    checked (RFC 9207) where the provider sends it; the code is redeemed with the server's
///    own client credentials and PKCE; the ID token is checked (or the user API read); the
///    sign-in rules run. Then a session starts, the consent is remembered for the user and the
///    client (its scopes, for its resource), and the MCP client gets its code.
///
/// With a session, the consent page shows who is signed in, and a remembered consent that
/// covers the client's scopes skips it.
///
/// ```no_run
/// # fn example() -> tower_mcp_oauth::Result<()> {
/// use tower_mcp_oauth::authorization_server::{
///     AuthorizationServer, AuthorizationServerConfig, UpstreamSignIn,
/// };
///
/// let sign_in = UpstreamSignIn::openid("https://accounts.example.com", "mcp-server")
///     .client_secret(std::env::var("UPSTREAM_CLIENT_SECRET").expect("the client secret"))
///     .allow_email_domains(["example.com"]);
/// let server = AuthorizationServer::new(
///     AuthorizationServerConfig::new("https://mcp.example.com")?
///         .resource("https://mcp.example.com/mcp")
///         .upstream_sign_in(sign_in),
/// )?;
/// // Register this at the provider as the client's redirect URI:
/// println!("{}", server.upstream_redirect_uri().unwrap_or_default());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct UpstreamSignIn {
    provider: ProviderKind,
    client_id: String,
    auth: ClientAuth,
    scopes: Option<Vec<String>>,
    display_name: Option<String>,
    email_domains: Vec<String>,
    required_claims: Vec<(String, Value)>,
    check: Option<Arc<dyn SignInCheck>>,
    map_scopes: Option<Arc<ScopeMapper>>,
    session_ttl: Duration,
    consent_ttl: Duration,
    token_key: Option<Arc<SealingKey>>,
    http: HttpClient,
}

#[cfg(feature = "downstream")]
impl UpstreamSignIn {
    /// The issuer that qualifies this provider's subjects.
    pub(crate) fn subject_issuer(&self) -> &str {
        match &self.provider {
            ProviderKind::OpenId { issuer } => issuer,
            ProviderKind::OAuth2(profile) => &profile.issuer,
        }
    }
}

impl std::fmt::Debug for UpstreamSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamSignIn")
            .field("provider", &self.provider)
            .field("client_id", &self.client_id)
            .field("auth", &self.auth)
            .field("email_domains", &self.email_domains)
            .finish_non_exhaustive()
    }
}

impl UpstreamSignIn {
    fn with(provider: ProviderKind, client_id: String) -> Self {
        Self {
            provider,
            client_id,
            auth: ClientAuth::None,
            scopes: None,
            display_name: None,
            email_domains: Vec::new(),
            required_claims: Vec::new(),
            check: None,
            map_scopes: None,
            session_ttl: DEFAULT_SESSION_TTL,
            consent_ttl: DEFAULT_CONSENT_TTL,
            token_key: None,
            http: HttpClient::new(),
        }
    }

    /// An OpenID Connect provider, discovered from `issuer` (exactly as it names itself), where
    /// the server is registered as the client `client_id`; give its credentials with
    /// [`client_secret`](Self::client_secret) or [`private_key_jwt`](Self::private_key_jwt)
    /// (without, it authenticates with PKCE alone, as a public client). Scopes
    /// `openid email profile` unless set.
    pub fn openid(issuer: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self::with(
            // Exactly as the provider names itself (Auth0's ends in `/`).
            ProviderKind::OpenId {
                issuer: issuer.into(),
            },
            client_id.into(),
        )
    }

    /// A plain OAuth 2.0 provider with a user API.
    pub fn oauth2(profile: OAuth2Profile, client_id: impl Into<String>) -> Self {
        Self::with(ProviderKind::OAuth2(Box::new(profile)), client_id.into())
    }

    /// GitHub, where the server is the OAuth app `client_id`.
    pub fn github(client_id: impl Into<String>) -> Self {
        Self::oauth2(OAuth2Profile::github(), client_id)
    }

    /// Authenticates with `secret` in HTTP Basic (`client_secret_basic`).
    pub fn client_secret(mut self, secret: impl Into<Secret>) -> Self {
        self.auth = ClientAuth::Basic(secret.into());
        self
    }

    /// Authenticates with `secret` in the form body (`client_secret_post`; GitHub takes this).
    pub fn client_secret_post(mut self, secret: impl Into<Secret>) -> Self {
        self.auth = ClientAuth::Post(secret.into());
        self
    }

    /// Authenticates with a JWT signed by the server's own signing key (`private_key_jwt`):
    /// register the server's `/jwks` URL (or its keys) with the provider.
    pub fn private_key_jwt(mut self) -> Self {
        self.auth = ClientAuth::PrivateKeyJwt;
        self
    }

    /// The scopes asked of the provider.
    pub fn scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// The provider's name on the consent page (default: the profile's name, or the issuer's
    /// host).
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }

    /// Admits only users whose email is in one of `domains` and that the provider says it
    /// verified (`email_verified: true`). GitHub's user API says no such thing: check emails
    /// there with a [`SignInCheck`] on `/user/emails`.
    pub fn allow_email_domains<I, T>(mut self, domains: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.email_domains = domains
            .into_iter()
            .map(|d| d.into().trim_start_matches('@').to_ascii_lowercase())
            .collect();
        self
    }

    /// Admits only users whose claim `name` is `value`, or an array holding it (a group).
    pub fn require_claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.required_claims.push((name.into(), value.into()));
        self
    }

    /// Runs `check` on every sign-in, after the built-in rules.
    pub fn check(mut self, check: impl SignInCheck) -> Self {
        self.check = Some(Arc::new(check));
        self
    }

    /// Maps who signed in to the scopes they may get (see [`ScopeMapper`]).
    pub fn map_scopes(
        mut self,
        mapper: impl Fn(&UpstreamIdentity, &[String]) -> Vec<String> + Send + Sync + 'static,
    ) -> Self {
        self.map_scopes = Some(Arc::new(mapper));
        self
    }

    /// How long a browser stays signed in (default 8 hours).
    pub fn session_ttl(mut self, ttl: Duration) -> Self {
        self.session_ttl = ttl;
        self
    }

    /// How long a user's consent to a client is remembered (default 30 days).
    pub fn remember_consent_for(mut self, ttl: Duration) -> Self {
        self.consent_ttl = ttl;
        self
    }

    /// Keeps each user's upstream tokens, sealed with `key`, for the server's tools
    /// ([`AuthorizationServer::upstream_access_token`](super::AuthorizationServer::upstream_access_token)).
    /// Without a key they are dropped after sign-in. Replicas must share the key.
    pub fn keep_tokens(mut self, key: SealingKey) -> Self {
        self.token_key = Some(Arc::new(key));
        self
    }

    /// The HTTP client for calls to the provider (default: https, loopback http allowed).
    pub fn http_client(mut self, http: HttpClient) -> Self {
        self.http = http;
        self
    }
}

/// Upstream sign-in, as the server's owner and tools see it.
impl super::AuthorizationServer {
    /// The redirect URI to register at the upstream identity provider, when upstream sign-in
    /// is configured.
    pub fn upstream_redirect_uri(&self) -> Option<String> {
        self.inner
            .upstream
            .as_ref()
            .map(|_| format!("{}{}", self.inner.issuer, super::authorize::CALLBACK_PATH))
    }

    /// The issuer that qualifies upstream users' subjects (`{issuer}#{id}`), when upstream
    /// sign-in keeps their tokens.
    #[cfg(feature = "downstream")]
    pub(crate) fn kept_upstream_issuer(&self) -> Option<&str> {
        let upstream = self.inner.upstream.as_ref()?;
        upstream.config.token_key.as_ref()?;
        Some(upstream.config.subject_issuer())
    }

    /// The upstream provider's access token of the user `subject` (the `sub` of the tokens
    /// this server issued), refreshed first when it is about to expire: for the server's own
    /// tools that call the provider's API as the user. Never hand it to the MCP client.
    ///
    /// `None` when upstream sign-in keeps no tokens ([`UpstreamSignIn::keep_tokens`]), the
    /// user never signed in, or the tokens expired with no refresh token.
    ///
    /// # Errors
    /// The store's errors; [`ErrorKind::Storage`](crate::ErrorKind::Storage) when the kept tokens cannot be opened with
    /// the configured key; the provider's refusal of a refresh ([`ErrorKind::InvalidGrant`](crate::ErrorKind::InvalidGrant):
    /// the user must sign in again).
    pub async fn upstream_access_token(&self, subject: &str) -> Result<Option<crate::Secret>> {
        let Some(upstream) = &self.inner.upstream else {
            return Ok(None);
        };
        access_token(
            upstream,
            self.inner.config.store.as_ref(),
            &self.inner.key,
            subject,
        )
        .await
    }

    /// Forgets the consent the user `subject` gave `client_id` (every client's when `None`):
    /// their next authorization shows the consent page again. Tokens already issued stay
    /// valid until revoked.
    ///
    /// # Errors
    /// The store's errors.
    pub async fn forget_consent(&self, subject: &str, client_id: Option<&str>) -> Result<()> {
        self.inner
            .config
            .store
            .forget_consent(subject, client_id)
            .await
    }
}
