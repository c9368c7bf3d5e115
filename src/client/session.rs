//! The engine behind [`OAuthState`](super::OAuthState) and [`OAuth`](super::OAuth): one
//! [`Session`] per MCP server, shared by every clone.
//!
//! Reads are cheap: the current `Authorization` header value sits in a snapshot behind a
//! read-write lock. Refresh and authorization are single-flight: the first request that needs one
//! spawns it as a task and publishes a shared future; every other request joins that future. No
//! lock is held while anything waits on the network, and a caller that gives up (a timeout above
//! us) does not cancel the refresh under way, so a rotated refresh token is never lost.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use http::header::HeaderValue;
use tracing::Instrument;
use url::Url;

use crate::challenge::BearerChallenge;
use crate::client::authorization::{self, PendingAuthorization};
use crate::client::discovery::{discover, Discovery};
use crate::client::registration::{obtain_client, ClientRegistration, RegistrationSource};
use crate::client::state::OAuthConfig;
use crate::client::store::{now_secs, CredentialKey, StoredCredentials};
use crate::client::tokens::{self, TokenSet};
use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;
use crate::sync::{LockExt, RwLockExt};

/// At most this many refreshes or authorizations may start within [`BRAKE_WINDOW`]; more means
/// something is looping (a server that rejects every new token, say) and we stop.
const BRAKE_LIMIT: usize = 6;
const BRAKE_WINDOW: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(crate) struct SessionState {
    pub(crate) discovery: Option<Discovery>,
    pub(crate) client: Option<ClientRegistration>,
    pub(crate) tokens: Option<TokenSet>,
    /// Bumped whenever the tokens change, so a waiter can tell that someone else recovered.
    generation: u64,
    pub(crate) pending: Option<PendingAuthorization>,
}

/// What a request needs to attach the current token: built once per token, not per request.
#[derive(Debug)]
pub(crate) struct TokenSnapshot {
    /// `Bearer …`, marked sensitive.
    pub(crate) header: HeaderValue,
    pub(crate) generation: u64,
    refresh_due_at: Option<u64>,
    expires_at: Option<u64>,
    refreshable: bool,
}

impl TokenSnapshot {
    fn build(tokens: &TokenSet, generation: u64, margin_secs: u64) -> Option<Self> {
        let mut header =
            HeaderValue::from_str(&format!("Bearer {}", tokens.access_token.expose())).ok()?;
        header.set_sensitive(true);
        let margin = match (tokens.expires_at, tokens.issued_at) {
            (Some(expires_at), Some(issued_at)) => {
                margin_secs.min(expires_at.saturating_sub(issued_at) / 2)
            }
            _ => margin_secs,
        };
        Some(Self {
            header,
            generation,
            refresh_due_at: tokens.expires_at.map(|at| at.saturating_sub(margin)),
            expires_at: tokens.expires_at,
            refreshable: tokens.refresh_token.is_some(),
        })
    }

    fn due(&self, now: u64) -> bool {
        self.refresh_due_at.is_some_and(|at| at <= now)
    }

    fn expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// What a request attaches: the `Authorization` value and the token generation it belongs to.
#[derive(Clone)]
pub(crate) struct Attach {
    pub(crate) header: HeaderValue,
    pub(crate) generation: u64,
}

impl Attach {
    fn from_snapshot(snapshot: &TokenSnapshot) -> Self {
        Self {
            header: snapshot.header.clone(),
            generation: snapshot.generation,
        }
    }
}

/// A thread's own copy of a session's current header. Requests on many cores would otherwise
/// all bump the same reference counts (the lock, the snapshot, the header bytes) and fight over
/// one cache line; with a copy per thread, the hot path only reads shared memory.
struct LocalToken {
    session: u64,
    generation: u64,
    header: HeaderValue,
    refresh_due_at: Option<u64>,
}

thread_local! {
    static LOCAL_TOKENS: std::cell::RefCell<Vec<LocalToken>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Sessions get process-unique ids (not addresses, which a later session could reuse).
static NEXT_SESSION_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
/// How many sessions a thread keeps copies for.
const LOCAL_TOKEN_SLOTS: usize = 8;

/// What a flight does.
pub(crate) enum FlightOp {
    /// The token is due: refresh, authorizing again if the refresh grant is gone.
    Refresh,
    /// An explicit refresh: the refresh grant only.
    RefreshOnly,
    /// A 401: with a token, rediscover and refresh; without one, authorize.
    Recover {
        had_token: bool,
        challenge: Option<BearerChallenge>,
    },
    /// A 403 `insufficient_scope`: authorize for more scopes.
    StepUp {
        challenge: BearerChallenge,
        scopes: Vec<String>,
    },
    /// Authorize now.
    Authorize,
}

impl FlightOp {
    fn name(&self) -> &'static str {
        match self {
            Self::Refresh => "refresh",
            Self::RefreshOnly => "refresh_only",
            Self::Recover {
                had_token: true, ..
            } => "recover_rejected_token",
            Self::Recover {
                had_token: false, ..
            } => "authorize_after_401",
            Self::StepUp { .. } => "step_up",
            Self::Authorize => "authorize",
        }
    }
}

type Flight = Shared<BoxFuture<'static, Result<()>>>;

/// Shared state for one MCP server: discovery, registration, tokens.
pub(crate) struct Session {
    id: u64,
    /// The generation of the published snapshot, 0 when there is none: read (never written) on
    /// the hot path.
    published: std::sync::atomic::AtomicU64,
    pub(crate) server_url: Url,
    origin: (String, String, u16),
    pub(crate) config: OAuthConfig,
    state: Mutex<SessionState>,
    snapshot: RwLock<Option<Arc<TokenSnapshot>>>,
    flight: Mutex<Option<Flight>>,
    recent_flights: Mutex<VecDeque<Instant>>,
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
    pub(crate) fn new(server_url: Url, config: OAuthConfig) -> Self {
        let origin = (
            server_url.scheme().to_owned(),
            server_url
                .host_str()
                .unwrap_or_default()
                .to_ascii_lowercase(),
            server_url.port_or_known_default().unwrap_or(0),
        );
        Self {
            id: NEXT_SESSION_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            published: std::sync::atomic::AtomicU64::new(0),
            server_url,
            origin,
            config,
            state: Mutex::new(SessionState::default()),
            snapshot: RwLock::new(None),
            flight: Mutex::new(None),
            recent_flights: Mutex::new(VecDeque::new()),
        }
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut SessionState) -> T) -> T {
        let mut guard = self.state.locked();
        f(&mut guard)
    }

    /// Whether `uri` is on the MCP server's origin: the only place a token may go.
    pub(crate) fn is_for_resource(&self, uri: &http::Uri) -> bool {
        let (scheme, host, port) = &self.origin;
        let Some(uri_scheme) = uri.scheme_str() else {
            return false;
        };
        let default_port = match uri_scheme {
            "https" => 443,
            "http" => 80,
            _ => return false,
        };
        uri_scheme == scheme
            && uri.host().is_some_and(|h| h.eq_ignore_ascii_case(host))
            && uri.port_u16().unwrap_or(default_port) == *port
    }

    /// The store's resource key: the MCP server URL as configured.
    pub(crate) fn resource_key(&self) -> &str {
        self.server_url.as_str()
    }

    pub(crate) async fn restore(&self) -> Result<()> {
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
            self.replace_tokens(s, record.tokens.clone());
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

    /// Persists, logging instead of failing: the tokens are good even when the disk is not.
    async fn persist_logged(&self) {
        if let Err(error) = self.persist().await {
            tracing::warn!(%error, "could not store the new credentials");
        }
    }

    pub(crate) fn tokens(&self) -> Option<TokenSet> {
        self.with(|s| s.tokens.clone())
    }

    /// The generation of the token requests attach, `None` when none is attached. Taken from
    /// what is published, not from what is stored: a stored token that cannot be attached must
    /// not make a 401 look already recovered.
    fn current_generation(&self) -> Option<u64> {
        let published = self.published.load(std::sync::atomic::Ordering::Acquire);
        (published != 0).then_some(published)
    }

    /// Replaces the tokens under the state lock and republishes the snapshot.
    fn replace_tokens(&self, s: &mut SessionState, tokens: Option<TokenSet>) {
        s.generation += 1;
        let snapshot = tokens
            .as_ref()
            .and_then(|t| {
                TokenSnapshot::build(t, s.generation, self.config.refresh_margin.as_secs())
            })
            .map(Arc::new);
        s.tokens = tokens;
        let published = snapshot.as_ref().map_or(0, |snapshot| snapshot.generation);
        *self.snapshot.write_locked() = snapshot;
        self.published
            .store(published, std::sync::atomic::Ordering::Release);
    }

    /// The header to attach, from this thread's copy when it is current and not due for
    /// refresh; `None` sends the caller down the full path.
    pub(crate) fn fast_attach(&self) -> Option<Attach> {
        let published = self.published.load(std::sync::atomic::Ordering::Acquire);
        if published == 0 {
            return None;
        }
        LOCAL_TOKENS.with(|cell| {
            let mut local = cell.borrow_mut();
            let fresh = local
                .iter()
                .position(|t| t.session == self.id && t.generation == published);
            let index = match fresh {
                Some(index) => index,
                None => {
                    let snapshot = self.snapshot().filter(|s| s.generation == published)?;
                    // A copy of the bytes: its reference count belongs to this thread alone.
                    let mut header = HeaderValue::from_bytes(snapshot.header.as_bytes()).ok()?;
                    header.set_sensitive(true);
                    local.retain(|t| t.session != self.id);
                    if local.len() >= LOCAL_TOKEN_SLOTS {
                        local.remove(0);
                    }
                    local.push(LocalToken {
                        session: self.id,
                        generation: published,
                        header,
                        refresh_due_at: snapshot.refresh_due_at,
                    });
                    local.len() - 1
                }
            };
            let token = &local[index];
            if token.refresh_due_at.is_some_and(|at| at <= now_secs()) {
                return None;
            }
            Some(Attach {
                header: token.header.clone(),
                generation: published,
            })
        })
    }

    /// The current token to attach, if any.
    pub(crate) fn current_attach(&self) -> Option<Attach> {
        self.fast_attach()
            .or_else(|| self.snapshot().map(|s| Attach::from_snapshot(&s)))
    }

    pub(crate) fn set_tokens(&self, tokens: Option<TokenSet>) {
        self.with(|s| self.replace_tokens(s, tokens));
    }

    /// The current token for attaching, without any I/O.
    pub(crate) fn snapshot(&self) -> Option<Arc<TokenSnapshot>> {
        self.snapshot.read_locked().clone()
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
                self.replace_tokens(s, stored_client.and_then(|r| r.tokens));
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
        self.persist_logged().await;
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

    /// Tokens another process stored for `key` that are newer than `current` and still good.
    async fn newer_stored_tokens(
        &self,
        key: &CredentialKey,
        current: &TokenSet,
    ) -> Result<Option<TokenSet>> {
        let stored = self
            .config
            .store
            .load(key)
            .await?
            .and_then(|record| record.tokens);
        Ok(stored.filter(|stored| {
            stored.access_token != current.access_token
                && !stored.expires_within(self.config.refresh_margin.as_secs())
        }))
    }

    /// Refreshes under the store's lease, adopting what another process stored meanwhile.
    /// `Ok(false)` when the refresh grant is gone (or there is none) and authorization is needed.
    async fn refresh_tokens(&self) -> Result<bool> {
        let (discovery, client, current) =
            self.with(|s| (s.discovery.clone(), s.client.clone(), s.tokens.clone()));
        let client = self.config.client.pre_registered.clone().or(client);
        let (Some(discovery), Some(client), Some(current)) = (discovery, client, current) else {
            return Ok(false);
        };
        if current.refresh_token.is_none() {
            return Ok(false);
        }
        if client.secret_expired(now_secs()) {
            // The server said when the secret stops working: register again before sending it.
            tracing::info!("the client secret has expired; registering again");
            self.forget_client();
            return Ok(false);
        }
        let key = CredentialKey::new(self.resource_key(), discovery.issuer());
        // Other processes sharing the store wait here, so no two redeem the same refresh token.
        let _lease = self.config.store.lease(&key).await?;
        if let Some(newer) = self.newer_stored_tokens(&key, &current).await? {
            tracing::info!("another process already refreshed; using its tokens");
            self.set_tokens(Some(newer));
            return Ok(true);
        }
        match tokens::refresh(&self.config.http, &discovery, &client, &current).await {
            Ok(tokens) => {
                self.set_tokens(Some(tokens));
                self.persist_logged().await;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::InvalidGrant => {
                tracing::info!("refresh token rejected; authorization needed");
                Ok(false)
            }
            Err(e) if e.kind() == ErrorKind::InvalidClient => {
                tracing::info!("client rejected at refresh; registering again");
                self.forget_client();
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Refreshes the tokens, or authorizes again when the refresh grant is gone.
    async fn refresh_or_authorize(&self, challenge: Option<&BearerChallenge>) -> Result<()> {
        if self.refresh_tokens().await? {
            return Ok(());
        }
        self.set_tokens(None);
        self.authorize_interactively(challenge, None)
            .await
            .map(|_| ())
    }

    async fn ensure_discovery(&self) -> Result<()> {
        if self.with(|s| s.discovery.is_none()) {
            self.discover(None).await?;
        }
        Ok(())
    }

    async fn execute(&self, op: FlightOp) -> Result<()> {
        let span = tracing::info_span!("oauth_flight", op = op.name());
        self.execute_op(op).instrument(span).await
    }

    async fn execute_op(&self, op: FlightOp) -> Result<()> {
        match op {
            FlightOp::Refresh => {
                self.ensure_discovery().await?;
                self.refresh_or_authorize(None).await
            }
            FlightOp::RefreshOnly => {
                self.ensure_discovery().await?;
                if self.refresh_tokens().await? {
                    Ok(())
                } else {
                    Err(Error::new(
                        ErrorKind::InvalidGrant,
                        "the refresh token was refused or there is none; authorize again",
                    ))
                }
            }
            FlightOp::Recover {
                had_token: false,
                challenge,
            } => self
                .authorize_interactively(challenge.as_ref(), None)
                .await
                .map(|_| ()),
            FlightOp::Recover {
                had_token: true,
                challenge,
            } => {
                // The server said the token is bad: rediscover (it may have moved), then refresh.
                self.discover(challenge.as_ref()).await?;
                self.refresh_or_authorize(challenge.as_ref()).await
            }
            FlightOp::StepUp { challenge, scopes } => self
                .authorize_interactively(Some(&challenge), Some(scopes))
                .await
                .map(|_| ()),
            FlightOp::Authorize => self.authorize_interactively(None, None).await.map(|_| ()),
        }
    }

    fn brake(&self) -> Result<()> {
        let now = Instant::now();
        let mut recent = self.recent_flights.locked();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > BRAKE_WINDOW)
        {
            recent.pop_front();
        }
        if recent.len() >= BRAKE_LIMIT {
            return Err(Error::new(
                ErrorKind::TooManyAttempts,
                format!(
                    "{BRAKE_LIMIT} refreshes or authorizations within {BRAKE_WINDOW:?}: the server keeps rejecting new tokens; stopping instead of looping"
                ),
            ));
        }
        recent.push_back(now);
        Ok(())
    }

    /// Runs `op` once for everyone who saw token generation `observed`: the first caller starts
    /// it, later callers join it, and callers that come after the tokens changed return at once.
    pub(crate) async fn run_flight(
        self: &Arc<Self>,
        observed: Option<u64>,
        op: FlightOp,
    ) -> Result<()> {
        let flight = {
            let mut slot = self.flight.locked();
            match slot.as_ref() {
                Some(flight) => flight.clone(),
                None => {
                    if self.current_generation() != observed {
                        return Ok(());
                    }
                    self.brake()?;
                    let session = self.clone();
                    let task = tokio::spawn(async move {
                        let result = session.execute(op).await;
                        *session.flight.locked() = None;
                        result
                    });
                    let flight = async move {
                        task.await.unwrap_or_else(|_| {
                            Err(Error::new(
                                ErrorKind::Handler,
                                "the authorization task failed",
                            ))
                        })
                    }
                    .boxed()
                    .shared();
                    *slot = Some(flight.clone());
                    flight
                }
            }
        };
        flight.await
    }

    /// The token to attach, refreshing first when it is due. `None` when there is no token yet
    /// (the request then goes out bare and its 401 starts the flow).
    pub(crate) async fn usable_token(self: &Arc<Self>) -> Result<Option<Attach>> {
        if let Some(attach) = self.fast_attach() {
            return Ok(Some(attach));
        }
        let Some(snapshot) = self.snapshot() else {
            return Ok(None);
        };
        let now = now_secs();
        if !snapshot.due(now) || !snapshot.refreshable {
            return Ok(Some(Attach::from_snapshot(&snapshot)));
        }
        match self
            .run_flight(Some(snapshot.generation), FlightOp::Refresh)
            .await
        {
            Ok(()) => Ok(self.current_attach()),
            // A token that has not expired yet is still worth sending.
            Err(error) if !snapshot.expired(now_secs()) => {
                tracing::warn!(%error, "early refresh failed; using the current token until it expires");
                Ok(Some(Attach::from_snapshot(&snapshot)))
            }
            Err(error) => Err(error),
        }
    }

    /// Recovers after a 401 to a request made with token `generation`.
    pub(crate) async fn recover(
        self: &Arc<Self>,
        generation: Option<u64>,
        challenge: Option<BearerChallenge>,
    ) -> Result<()> {
        let op = FlightOp::Recover {
            had_token: generation.is_some(),
            challenge,
        };
        self.run_flight(generation, op).await
    }

    /// Steps up after a 403 `insufficient_scope` to a request made with token `generation`:
    /// authorizes again for the scopes already granted plus the ones the challenge names.
    /// Returns `false`, without authorizing, when the challenge asks for nothing the token
    /// lacks: asking again for the same scopes cannot help.
    pub(crate) async fn step_up(
        self: &Arc<Self>,
        generation: Option<u64>,
        challenge: &BearerChallenge,
    ) -> Result<bool> {
        let mut scopes = self.tokens().map(|t| t.scopes).unwrap_or_default();
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
        let op = FlightOp::StepUp {
            challenge: challenge.clone(),
            scopes,
        };
        self.run_flight(generation, op).await?;
        Ok(true)
    }

    /// Runs `op` now, whatever the tokens are.
    pub(crate) async fn run_now(self: &Arc<Self>, op: FlightOp) -> Result<()> {
        self.run_flight(self.current_generation(), op).await
    }

    pub(crate) async fn begin_manual(
        &self,
        scopes: Option<Vec<String>>,
        redirect_uri: &Url,
    ) -> Result<PendingAuthorization> {
        let discovery = self.discover(None).await?;
        let scopes = scopes.unwrap_or_else(|| select_scopes(None, &discovery));
        self.begin(&discovery, scopes, redirect_uri).await
    }

    pub(crate) async fn finish_manual(
        &self,
        pending: &PendingAuthorization,
        code: &Secret,
    ) -> Result<TokenSet> {
        self.finish(pending, code).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn host() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("mcp.example.com".to_owned()),
            Just("MCP.example.com".to_owned()),
            Just("evil.example.com".to_owned()),
            Just("mcp.example.com.evil.net".to_owned()),
            Just("127.0.0.1".to_owned()),
            Just("[::1]".to_owned()),
        ]
    }

    proptest! {
        /// Tokens go only to the resource's origin: same scheme, host (any case) and port,
        /// default ports included.
        #[test]
        fn a_request_is_for_the_resource_exactly_when_its_origin_matches(
            server in (prop_oneof![Just("https"), Just("http")], host(), proptest::option::of(prop_oneof![Just(443u16), Just(80), Just(8443)])),
            request in (prop_oneof![Just("https"), Just("http"), Just("ws")], host(), proptest::option::of(prop_oneof![Just(443u16), Just(80), Just(8443)])),
            path in "/[a-z]{0,6}",
        ) {
            let url = |(scheme, host, port): &(&str, String, Option<u16>)| match port {
                Some(port) => format!("{scheme}://{host}:{port}"),
                None => format!("{scheme}://{host}"),
            };
            let session = Session::new(Url::parse(&format!("{}/mcp", url(&server))).unwrap(), OAuthConfig::new());
            let uri: http::Uri = format!("{}{path}", url(&request)).parse().unwrap();
            let effective_port = |(scheme, _, port): &(&str, String, Option<u16>)| {
                port.unwrap_or(if *scheme == "https" { 443 } else { 80 })
            };
            let same_origin = server.0 == request.0
                && server.1.eq_ignore_ascii_case(&request.1)
                && effective_port(&server) == effective_port(&request);
            prop_assert_eq!(session.is_for_resource(&uri), same_origin);
        }
    }
}
