//! [`OAuthState`]: the seed's step-by-step API, and [`AuthorizedHttpClient`], which attaches the
//! token and recovers from a 401 on its own. Both run on one shared [`Session`].

use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION};
use http::{Request, Response, StatusCode};
use url::Url;

use crate::challenge::BearerChallenge;
use crate::client::authorization::{self, PendingAuthorization};
use crate::client::discovery::{discover, Discovery};
use crate::client::handler::AuthorizationHandler;
use crate::client::registration::{
    obtain_client, ClientRegistration, ClientSettings, RegistrationSource,
};
use crate::client::store::{
    now_secs, CredentialKey, CredentialStore, MemoryStore, StoredCredentials,
};
use crate::client::tokens::{self, TokenSet};
use crate::error::{Error, ErrorKind, Result};
use crate::http::{redact_url, HttpClient, RequestBody};
use crate::secret::Secret;

/// How many authorizations (after a 401, or stepping up after a 403) one request may cause.
const MAX_AUTHORIZATIONS: usize = 3;

/// The MCP protocol version sent on discovery requests unless configured otherwise.
pub const DEFAULT_PROTOCOL_VERSION: &str = "2025-11-25";

/// How an [`OAuthState`] talks to servers, remembers credentials and asks the user.
#[derive(Clone)]
pub struct OAuthConfig {
    http: HttpClient,
    store: Arc<dyn CredentialStore>,
    client: ClientSettings,
    handler: Option<Arc<dyn AuthorizationHandler>>,
    protocol_version: String,
    scopes: Option<Vec<String>>,
    refresh_margin: Duration,
}

impl std::fmt::Debug for OAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthConfig")
            .field("http", &self.http)
            .field("client", &self.client)
            .field("has_handler", &self.handler.is_some())
            .field("protocol_version", &self.protocol_version)
            .field("scopes", &self.scopes)
            .field("refresh_margin", &self.refresh_margin)
            .finish_non_exhaustive()
    }
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            http: HttpClient::new(),
            store: Arc::new(MemoryStore::new()),
            client: ClientSettings::default(),
            handler: None,
            protocol_version: DEFAULT_PROTOCOL_VERSION.into(),
            scopes: None,
            refresh_margin: Duration::from_secs(60),
        }
    }
}

impl OAuthConfig {
    /// The defaults: hyper client, memory store, dynamic registration, no interactive handler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `http` for every OAuth and MCP request.
    pub fn with_http(mut self, http: HttpClient) -> Self {
        self.http = http;
        self
    }

    /// Keeps credentials in `store`.
    pub fn with_store(mut self, store: impl CredentialStore) -> Self {
        self.store = Arc::new(store);
        self
    }

    /// Keeps credentials in a shared `store`.
    pub fn with_shared_store(mut self, store: Arc<dyn CredentialStore>) -> Self {
        self.store = store;
        self
    }

    /// Uses a client registered out of band.
    pub fn with_client(mut self, client: ClientRegistration) -> Self {
        self.client.pre_registered = Some(client);
        self
    }

    /// Uses the Client ID Metadata Document at `url` where the server supports it.
    pub fn with_client_metadata_url(mut self, url: Url) -> Self {
        self.client.metadata_document_url = Some(url);
        self
    }

    /// The client name sent at dynamic registration.
    pub fn with_client_name(mut self, name: impl Into<String>) -> Self {
        self.client.client_name = name.into();
        self
    }

    /// Whether dynamic registration may be used (default: yes).
    pub fn with_dynamic_registration(mut self, enabled: bool) -> Self {
        self.client.dynamic_registration = enabled;
        self
    }

    /// The interactive step used when a 401 needs a new authorization.
    pub fn with_handler(mut self, handler: impl AuthorizationHandler) -> Self {
        self.handler = Some(Arc::new(handler));
        self
    }

    /// The `MCP-Protocol-Version` sent on discovery requests.
    pub fn with_protocol_version(mut self, version: impl Into<String>) -> Self {
        self.protocol_version = version.into();
        self
    }

    /// Scopes to ask for instead of the ones the server suggests.
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// How long before expiry a token is refreshed (default 60 s).
    pub fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }
}

#[derive(Default)]
struct SessionState {
    discovery: Option<Discovery>,
    client: Option<ClientRegistration>,
    tokens: Option<TokenSet>,
    /// Bumped whenever the tokens change, so a waiter can tell that someone else recovered.
    generation: u64,
    pending: Option<PendingAuthorization>,
}

/// Shared state for one MCP server: discovery, registration, tokens. Cheap reads under a short
/// lock; refresh and authorization are single-flight under an async lock that no reader takes.
pub(crate) struct Session {
    server_url: Url,
    config: OAuthConfig,
    state: SyncMutex<SessionState>,
    flight: tokio::sync::Mutex<()>,
}

/// Scopes for an automatic authorization: the challenge's, else everything the resource lists,
/// else none; `offline_access` added when the authorization server offers it.
pub(crate) fn select_scopes(
    challenge: Option<&BearerChallenge>,
    discovery: &Discovery,
) -> Vec<String> {
    let mut scopes: Vec<String> = match challenge.and_then(|c| c.scope.as_deref()) {
        Some(scope) => scope.split_ascii_whitespace().map(str::to_owned).collect(),
        None => discovery
            .resource_metadata
            .as_ref()
            .and_then(|m| m.scopes_supported.clone())
            .unwrap_or_default(),
    };
    if discovery
        .authorization_server
        .supports_scope("offline_access")
        && !scopes.iter().any(|s| s == "offline_access")
    {
        scopes.push("offline_access".into());
    }
    scopes
}

impl Session {
    fn new(server_url: Url, config: OAuthConfig) -> Self {
        Self {
            server_url,
            config,
            state: SyncMutex::new(SessionState::default()),
            flight: tokio::sync::Mutex::new(()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut SessionState) -> T) -> T {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// The store's resource key: the MCP server URL as configured.
    fn resource_key(&self) -> &str {
        self.server_url.as_str()
    }

    async fn restore(&self) -> Result<()> {
        let Some((_, record)) = self.config.store.latest(self.resource_key()).await? else {
            return Ok(());
        };
        self.with(|s| {
            if let Some(metadata) = record.authorization_server.clone() {
                s.discovery = Some(Discovery {
                    resource: record
                        .resource_metadata
                        .as_ref()
                        .map(|m| m.resource.clone()),
                    resource_metadata: record.resource_metadata.clone(),
                    authorization_server: metadata,
                    default_endpoints: false,
                });
            }
            s.client = record.client.clone();
            s.tokens = record.tokens.clone();
            s.generation += 1;
        });
        tracing::debug!("restored stored credentials");
        Ok(())
    }

    async fn persist(&self) -> Result<()> {
        let (key, record) = self
            .with(|s| {
                let discovery = s.discovery.as_ref()?;
                Some((
                    CredentialKey::new(self.resource_key(), discovery.issuer()),
                    StoredCredentials {
                        client: s.client.clone(),
                        tokens: s.tokens.clone(),
                        resource_metadata: discovery.resource_metadata.clone(),
                        authorization_server: Some(discovery.authorization_server.clone()),
                        updated_at: 0,
                    },
                ))
            })
            .ok_or_else(|| Error::new(ErrorKind::Config, "nothing to store before discovery"))?;
        self.config.store.save(&key, &record).await
    }

    fn tokens(&self) -> Option<(TokenSet, u64)> {
        self.with(|s| s.tokens.clone().map(|t| (t, s.generation)))
    }

    fn set_tokens(&self, tokens: Option<TokenSet>) {
        self.with(|s| {
            s.tokens = tokens;
            s.generation += 1;
        });
    }

    async fn discover(&self, challenge: Option<&BearerChallenge>) -> Result<Discovery> {
        let discovery = discover(
            &self.config.http,
            &self.server_url,
            challenge,
            &self.config.protocol_version,
        )
        .await?;
        // A new issuer means the old client and tokens belong to someone else.
        let stored_client = self
            .config
            .store
            .load(&CredentialKey::new(self.resource_key(), discovery.issuer()))
            .await?;
        self.with(|s| {
            let same_issuer = s
                .discovery
                .as_ref()
                .is_some_and(|d| d.issuer() == discovery.issuer());
            if !same_issuer {
                s.client = stored_client.as_ref().and_then(|r| r.client.clone());
                s.tokens = stored_client.and_then(|r| r.tokens);
                s.generation += 1;
            }
            s.discovery = Some(discovery.clone());
        });
        Ok(discovery)
    }

    /// The client for the discovered server, registering when there is none usable.
    async fn client_for(
        &self,
        discovery: &Discovery,
        redirect_uri: &Url,
    ) -> Result<ClientRegistration> {
        if let Some(pre) = &self.config.client.pre_registered {
            return Ok(pre.clone());
        }
        let existing = self.with(|s| s.client.clone());
        if let Some(client) = existing {
            let stale = client.secret_expired(now_secs())
                || (client.source == RegistrationSource::Dynamic
                    && !client.allows_redirect(redirect_uri));
            let switched_to_cimd = client.source == RegistrationSource::Dynamic
                && self.config.client.metadata_document_url.is_some()
                && discovery
                    .authorization_server
                    .client_id_metadata_document_supported;
            if !stale && !switched_to_cimd {
                return Ok(client);
            }
        }
        let client = obtain_client(
            &self.config.http,
            &discovery.authorization_server,
            &self.config.client,
            redirect_uri,
        )
        .await?;
        self.with(|s| s.client = Some(client.clone()));
        Ok(client)
    }

    fn forget_client(&self) {
        self.with(|s| s.client = None);
    }

    async fn begin(
        &self,
        discovery: &Discovery,
        scopes: Vec<String>,
        redirect_uri: &Url,
    ) -> Result<PendingAuthorization> {
        authorization::validate_redirect_uri(redirect_uri)?;
        authorization::require_pkce(&discovery.authorization_server)?;
        let client = self.client_for(discovery, redirect_uri).await?;
        let pending = authorization::start(discovery, &client, scopes, redirect_uri)?;
        self.with(|s| s.pending = Some(pending.clone()));
        Ok(pending)
    }

    async fn finish(&self, pending: &PendingAuthorization, code: &Secret) -> Result<TokenSet> {
        let (discovery, client) = (&pending.discovery, &pending.client);
        let tokens = tokens::exchange_code(
            &self.config.http,
            discovery,
            client,
            &pending.redirect_uri,
            code,
            &pending.verifier,
            &pending.scopes,
        )
        .await;
        if let Err(e) = &tokens {
            if e.kind() == ErrorKind::InvalidClient {
                self.forget_client();
            }
        }
        let tokens = tokens?;
        self.with(|s| {
            s.pending = None;
            // The tokens belong to the server the authorization was started with.
            s.discovery = Some(discovery.clone());
            s.client = Some(client.clone());
        });
        self.set_tokens(Some(tokens.clone()));
        self.persist().await?;
        Ok(tokens)
    }

    /// Discovery, registration, the interactive step and the code exchange, in one go.
    async fn authorize_interactively(
        &self,
        challenge: Option<&BearerChallenge>,
        scopes: Option<Vec<String>>,
    ) -> Result<TokenSet> {
        let handler = self.config.handler.clone().ok_or_else(|| {
            Error::new(
                ErrorKind::NotAuthorized,
                "the server needs authorization and no authorization handler is configured",
            )
        })?;
        let discovery = self.discover(challenge).await?;
        let scopes = scopes
            .or_else(|| self.config.scopes.clone())
            .unwrap_or_else(|| select_scopes(challenge, &discovery));
        let redirect_uri = handler.redirect_uri();
        // A rejected client is registered again once.
        for attempt in 0..2 {
            let pending = self
                .begin(&discovery, scopes.clone(), &redirect_uri)
                .await?;
            let redirect = handler.authorize(&pending.url).await?;
            let callback = pending.verify_redirect(&redirect)?;
            match self.finish(&pending, &callback.code).await {
                Err(e)
                    if e.kind() == ErrorKind::InvalidClient
                        && attempt == 0
                        && self.config.client.pre_registered.is_none() =>
                {
                    tracing::warn!(
                        "the authorization server rejected the client; registering again"
                    );
                }
                result => return result,
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Refreshes the tokens, or authorizes again when the refresh grant is gone.
    async fn refresh_or_authorize(&self, challenge: Option<&BearerChallenge>) -> Result<()> {
        let (discovery, client, current) =
            self.with(|s| (s.discovery.clone(), s.client.clone(), s.tokens.clone()));
        let client = self.config.client.pre_registered.clone().or(client);
        if let (Some(discovery), Some(client), Some(current)) = (discovery, client, current) {
            if current.refresh_token.is_some() {
                match tokens::refresh(&self.config.http, &discovery, &client, &current).await {
                    Ok(tokens) => {
                        self.set_tokens(Some(tokens));
                        self.persist().await?;
                        return Ok(());
                    }
                    Err(e) if e.kind() == ErrorKind::InvalidGrant => {
                        tracing::info!("refresh token rejected; authorizing again");
                    }
                    Err(e) if e.kind() == ErrorKind::InvalidClient => {
                        tracing::info!("client rejected at refresh; registering again");
                        self.forget_client();
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        self.set_tokens(None);
        self.authorize_interactively(challenge, None)
            .await
            .map(|_| ())
    }

    /// A token good for at least the refresh margin, refreshing first when needed. `None` when
    /// there is no token yet (the request then goes out bare and its 401 starts the flow).
    pub(crate) async fn usable_token(&self) -> Result<Option<(Secret, u64)>> {
        let margin = self.config.refresh_margin.as_secs();
        let Some((tokens, generation)) = self.tokens() else {
            return Ok(None);
        };
        if !tokens.expires_within(margin) {
            return Ok(Some((tokens.access_token, generation)));
        }
        if tokens.refresh_token.is_none() {
            return Ok(Some((tokens.access_token, generation)));
        }
        let _flight = self.flight.lock().await;
        if let Some((tokens, generation)) = self.tokens().filter(|(_, g)| *g != generation) {
            return Ok(Some((tokens.access_token, generation)));
        }
        self.ensure_discovery().await?;
        self.refresh_or_authorize(None).await?;
        Ok(self.tokens().map(|(t, g)| (t.access_token, g)))
    }

    async fn ensure_discovery(&self) -> Result<()> {
        if self.with(|s| s.discovery.is_none()) {
            self.discover(None).await?;
        }
        Ok(())
    }

    /// Steps up after a 403 `insufficient_scope` to a request made with token `generation`:
    /// authorizes again for the scopes already granted plus the ones the challenge names.
    /// Returns `false`, without authorizing, when the challenge asks for nothing the token
    /// lacks: asking again for the same scopes cannot help.
    pub(crate) async fn step_up(
        &self,
        generation: Option<u64>,
        challenge: &BearerChallenge,
    ) -> Result<bool> {
        let _flight = self.flight.lock().await;
        let current = self.tokens();
        if current.as_ref().map(|(_, g)| *g) != generation {
            return Ok(true);
        }
        let mut scopes = current.map(|(t, _)| t.scopes).unwrap_or_default();
        let granted = scopes.len();
        for scope in challenge.scopes() {
            if !scopes.iter().any(|s| s == scope) {
                scopes.push(scope.to_owned());
            }
        }
        if scopes.len() == granted {
            tracing::info!(
                "insufficient scope, but every scope asked for is already granted; not stepping up"
            );
            return Ok(false);
        }
        tracing::info!(scopes = %scopes.join(" "), "insufficient scope; stepping up");
        self.authorize_interactively(Some(challenge), Some(scopes))
            .await?;
        Ok(true)
    }

    /// Recovers after a 401 to a request made with token `generation`: unless another request
    /// already did, refresh, else rediscover and authorize.
    pub(crate) async fn recover(
        &self,
        generation: Option<u64>,
        challenge: Option<&BearerChallenge>,
    ) -> Result<()> {
        let _flight = self.flight.lock().await;
        let current = self.tokens().map(|(_, g)| g);
        if current.is_some() && current != generation {
            return Ok(());
        }
        if generation.is_none() {
            self.authorize_interactively(challenge, None)
                .await
                .map(|_| ())
        } else {
            // The server said the token is bad: rediscover (it may have moved), then refresh.
            self.discover(challenge).await?;
            self.refresh_or_authorize(challenge).await
        }
    }
}

/// The seed's OAuth state machine: discovery, registration, authorization URL, callback.
///
/// ```no_run
/// # async fn example() -> Result<(), tower_mcp_oauth::Error> {
/// use tower_mcp_oauth::client::OAuthState;
///
/// let mut oauth_state = OAuthState::new("http://127.0.0.1:8000/mcp", None).await?;
/// oauth_state
///     .start_authorization(&["mcp", "profile", "email"], "http://127.0.0.1:8080/callback")
///     .await?;
/// let auth_url = oauth_state.get_authorization_url().await?;
/// println!("Open {auth_url}");
/// // …the user approves; the redirect brings a code and the state back…
/// # let (code, state) = ("", "");
/// let credentials = oauth_state.handle_callback(code, state).await?;
/// let client = oauth_state.to_authorized_http_client().await?;
/// # let _ = (credentials, client);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct OAuthState {
    session: Arc<Session>,
}

impl std::fmt::Debug for OAuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthState")
            .field("server_url", &redact_url(&self.session.server_url))
            .field("authorized", &self.session.tokens().is_some())
            .finish_non_exhaustive()
    }
}

impl OAuthState {
    /// State for the MCP server at `server_url`, restoring stored credentials when the
    /// configured store has some. `None` uses [`OAuthConfig::default`].
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for a URL that is not absolute http(s), [`ErrorKind::InsecureUrl`]
    /// for plain http off loopback, [`ErrorKind::Storage`] when the store cannot be read.
    pub async fn new(server_url: impl AsRef<str>, config: Option<OAuthConfig>) -> Result<Self> {
        let server_url = Url::parse(server_url.as_ref()).map_err(|e| {
            Error::new(ErrorKind::Config, "the MCP server URL is not a valid URL").with_source(e)
        })?;
        crate::http::ensure_secure_url(&server_url, "MCP server URL")?;
        let session = Arc::new(Session::new(server_url, config.unwrap_or_default()));
        session.restore().await?;
        Ok(Self { session })
    }

    /// The MCP server this state is for.
    pub fn server_url(&self) -> &Url {
        &self.session.server_url
    }

    /// Discovers the authorization server, registers the client if needed and prepares the
    /// authorization URL for `scopes` (empty: the scopes the resource suggests) and
    /// `redirect_uri` (https, or http on a loopback host).
    ///
    /// # Errors
    /// Discovery and registration errors; [`ErrorKind::PkceNotSupported`]; [`ErrorKind::Config`]
    /// for a bad redirect URI.
    pub async fn start_authorization(&mut self, scopes: &[&str], redirect_uri: &str) -> Result<()> {
        let redirect_uri = Url::parse(redirect_uri).map_err(|e| {
            Error::new(ErrorKind::Config, "the redirect URI is not a valid URL").with_source(e)
        })?;
        authorization::validate_redirect_uri(&redirect_uri)?;
        let discovery = self.session.discover(None).await?;
        let scopes = if scopes.is_empty() {
            select_scopes(None, &discovery)
        } else {
            scopes.iter().map(|s| (*s).to_owned()).collect()
        };
        self.session
            .begin(&discovery, scopes, &redirect_uri)
            .await?;
        Ok(())
    }

    /// The URL to send the user to.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when [`Self::start_authorization`] has not run.
    pub async fn get_authorization_url(&self) -> Result<String> {
        self.pending().map(|p| p.url.to_string())
    }

    fn pending(&self) -> Result<PendingAuthorization> {
        self.session.with(|s| s.pending.clone()).ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                "no authorization in progress: call start_authorization first",
            )
        })
    }

    /// Completes authorization with the `code` and `state` from the redirect and returns the
    /// tokens. The RFC 9207 `iss` check needs the whole redirect: prefer
    /// [`Self::handle_redirect`] where you have it.
    ///
    /// # Errors
    /// [`ErrorKind::StateMismatch`], token endpoint errors.
    pub async fn handle_callback(&mut self, code: &str, state: &str) -> Result<TokenSet> {
        let pending = self.pending()?;
        let callback = pending.verify(Some(code), Some(state), None, None, false)?;
        self.session.finish(&pending, &callback.code).await
    }

    /// Completes authorization from the whole redirect URL the browser was sent to, checking
    /// `state`, `iss` and error responses.
    ///
    /// # Errors
    /// [`ErrorKind::StateMismatch`], [`ErrorKind::IssuerMismatch`],
    /// [`ErrorKind::AuthorizationDenied`], token endpoint errors.
    pub async fn handle_redirect(&mut self, redirect_url: &str) -> Result<TokenSet> {
        let pending = self.pending()?;
        let redirect = Url::parse(redirect_url).map_err(|e| {
            Error::new(
                ErrorKind::InvalidResponse,
                "the redirect URL is not a valid URL",
            )
            .with_source(e)
        })?;
        let callback = pending.verify_redirect(&redirect)?;
        self.session.finish(&pending, &callback.code).await
    }

    /// What discovery found, once it has run (or was restored from the store).
    pub async fn discovery(&self) -> Option<Discovery> {
        self.session.with(|s| s.discovery.clone())
    }

    /// The client identity in use, once there is one.
    pub async fn client_registration(&self) -> Option<ClientRegistration> {
        self.session
            .config
            .client
            .pre_registered
            .clone()
            .or_else(|| self.session.with(|s| s.client.clone()))
    }

    /// The current tokens, if any.
    pub async fn credentials(&self) -> Option<TokenSet> {
        self.session.tokens().map(|(t, _)| t)
    }

    /// Runs the whole flow through the configured [`AuthorizationHandler`] now, instead of
    /// waiting for a 401.
    ///
    /// # Errors
    /// As the individual steps; [`ErrorKind::NotAuthorized`] without a handler.
    pub async fn authorize(&self) -> Result<TokenSet> {
        let _flight = self.session.flight.lock().await;
        self.session.authorize_interactively(None, None).await
    }

    /// Refreshes the access token now.
    ///
    /// # Errors
    /// Token endpoint errors; [`ErrorKind::InvalidGrant`] without a refresh token.
    pub async fn refresh(&self) -> Result<TokenSet> {
        let _flight = self.session.flight.lock().await;
        self.session.ensure_discovery().await?;
        let (discovery, client, current) = self
            .session
            .with(|s| (s.discovery.clone(), s.client.clone(), s.tokens.clone()));
        let (Some(discovery), Some(current)) = (discovery, current) else {
            return Err(Error::new(
                ErrorKind::NotAuthorized,
                "there are no tokens to refresh",
            ));
        };
        let client = self
            .session
            .config
            .client
            .pre_registered
            .clone()
            .or(client)
            .ok_or_else(|| {
                Error::new(ErrorKind::NotAuthorized, "there is no client registration")
            })?;
        let tokens =
            tokens::refresh(&self.session.config.http, &discovery, &client, &current).await?;
        self.session.set_tokens(Some(tokens.clone()));
        self.session.persist().await?;
        Ok(tokens)
    }

    /// An HTTP client for the MCP server that attaches the token, refreshes it, and on a 401
    /// authorizes again (through the configured handler) and replays the request once.
    ///
    /// # Errors
    /// None yet; the signature leaves room for checks.
    pub async fn to_authorized_http_client(&self) -> Result<AuthorizedHttpClient> {
        Ok(AuthorizedHttpClient {
            session: self.session.clone(),
        })
    }
}

/// An HTTP client bound to one MCP server's authorization: see
/// [`OAuthState::to_authorized_http_client`].
#[derive(Clone)]
pub struct AuthorizedHttpClient {
    session: Arc<Session>,
}

impl std::fmt::Debug for AuthorizedHttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizedHttpClient")
            .field("server_url", &redact_url(&self.session.server_url))
            .finish_non_exhaustive()
    }
}

impl AuthorizedHttpClient {
    /// Sends `request`, with the bearer token when it goes to the MCP server's origin. A 401
    /// starts recovery and one replay; a response that still fails comes back as it is.
    ///
    /// # Errors
    /// Transport errors, and errors of the authorization flow.
    pub async fn send(&self, request: Request<RequestBody>) -> Result<Response<Bytes>> {
        let for_resource =
            request_origin(&request).is_some_and(|o| o == self.session.server_url.origin());
        if !for_resource {
            return self.send_with(request, None).await;
        }
        let mut token = self.session.usable_token().await?;
        let mut recovered = false;
        let mut authorizations = 0;
        loop {
            let response = self
                .send_with(clone_request(&request), token.as_ref().map(|(t, _)| t))
                .await?;
            let challenge = BearerChallenge::from_headers(response.headers());
            let generation = token.as_ref().map(|(_, g)| *g);
            match (response.status(), &challenge) {
                (StatusCode::UNAUTHORIZED, _)
                    if !recovered && authorizations < MAX_AUTHORIZATIONS =>
                {
                    recovered = true;
                    authorizations += 1;
                    tracing::info!(error = ?challenge.as_ref().and_then(|c| c.error.as_deref()), "401 from the MCP server; authorizing");
                    self.session.recover(generation, challenge.as_ref()).await?;
                }
                (StatusCode::FORBIDDEN, Some(challenge))
                    if authorizations < MAX_AUTHORIZATIONS
                        && challenge.error.as_deref() == Some("insufficient_scope") =>
                {
                    authorizations += 1;
                    if !self.session.step_up(generation, challenge).await? {
                        return Ok(response);
                    }
                }
                _ => return Ok(response),
            }
            token = self.session.tokens().map(|(t, g)| (t.access_token, g));
        }
    }

    async fn send_with(
        &self,
        mut request: Request<RequestBody>,
        token: Option<&Secret>,
    ) -> Result<Response<Bytes>> {
        if let Some(token) = token {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidResponse,
                        "the access token is not a valid header value",
                    )
                })?;
            value.set_sensitive(true);
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        self.session.config.http.send(request).await
    }
}

fn request_origin(request: &Request<RequestBody>) -> Option<url::Origin> {
    Url::parse(&request.uri().to_string())
        .ok()
        .map(|u| u.origin())
}

fn clone_request(request: &Request<RequestBody>) -> Request<RequestBody> {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::TokenEndpointAuthMethod;
    use crate::metadata::{AuthorizationServerMetadata, ProtectedResourceMetadata};

    fn discovery(prm_scopes: Option<Vec<&str>>, as_scopes: Option<Vec<&str>>) -> Discovery {
        let strings = |v: Vec<&str>| v.into_iter().map(String::from).collect::<Vec<_>>();
        Discovery {
            resource: Some("https://mcp.example.com/mcp".into()),
            resource_metadata: Some(ProtectedResourceMetadata {
                resource: "https://mcp.example.com/mcp".into(),
                authorization_servers: vec!["https://auth.example.com".into()],
                scopes_supported: prm_scopes.map(strings),
                bearer_methods_supported: None,
                resource_name: None,
                jwks_uri: None,
                extra: Default::default(),
            }),
            authorization_server: AuthorizationServerMetadata {
                issuer: "https://auth.example.com".into(),
                scopes_supported: as_scopes.map(strings),
                ..Default::default()
            },
            default_endpoints: false,
        }
    }

    #[test]
    fn scope_selection_prefers_the_challenge_then_the_resource() {
        let d = discovery(Some(vec!["a", "b"]), None);
        let challenge = BearerChallenge {
            scope: Some("x y".into()),
            ..Default::default()
        };
        assert_eq!(select_scopes(Some(&challenge), &d), vec!["x", "y"]);
        assert_eq!(select_scopes(None, &d), vec!["a", "b"]);
        assert!(select_scopes(None, &discovery(None, None)).is_empty());
    }

    #[test]
    fn offline_access_only_when_the_server_lists_it() {
        let d = discovery(Some(vec!["a"]), Some(vec!["a", "offline_access"]));
        assert_eq!(select_scopes(None, &d), vec!["a", "offline_access"]);
        let d = discovery(Some(vec!["a"]), Some(vec!["a"]));
        assert_eq!(select_scopes(None, &d), vec!["a"]);
    }

    #[test]
    fn confidential_debug_hides_the_secret() {
        let c = ClientRegistration::confidential(
            "id",
            "s3cret-value",
            TokenEndpointAuthMethod::ClientSecretBasic,
        );
        assert!(!format!("{c:?}").contains("s3cret-value"));
    }
}

#[cfg(test)]
mod send_tests {
    fn assert_send<T: Send>(_: T) {}

    #[allow(dead_code)]
    fn futures_are_send(client: super::AuthorizedHttpClient, state: super::OAuthState) {
        assert_send(async move {
            let _ = client.send(http::Request::new(Default::default())).await;
            let _ = state.authorize().await;
            let _ = state.refresh().await;
        });
    }
}
