//! Third-party accounts through URL-mode elicitation (SEP-1036): the MCP server calls an API of
//! another trust domain (GitHub, Google) as its user, with the user's own account there.
//!
//! [`LinkedAccounts::access_token`] gives the caller's token at a [`ThirdParty`], refreshed
//! when due, or a [`LinkRequired`]: a short-lived, single-use link for the user to open. The
//! MCP server answers the tool call with it: `-32042` with a URL-mode elicitation at
//! 2025-11-25, an `InputRequiredResult` at 2026-07-28 ([`LinkRequired::into_tool_response`]).
//!
//! What the link does, on the server's own pages ([`LinkedAccounts::router`]):
//!
//! 1. `GET /accounts/link?ticket=…`: the ticket is taken (once) and a cookie binds the rest of
//!    the flow to this browser.
//! 2. The browser signs in at the MCP server's own authorization server ([`ConfirmUser`]),
//!    and the token it gets must name the issuer and subject the link was made for. Someone
//!    who opens a link made for another user (SEP-1036's phishing case) is refused here, and
//!    nothing is linked.
//! 3. A page names the third party, the MCP user, and the MCP client that asked; the user
//!    continues to the third party (authorization code with PKCE, the server's own client and
//!    redirect URI).
//! 4. The callback redeems the code and seals the tokens into the [`AccountVault`] under the
//!    user's issuer, subject and the provider; the client is told the link is complete.
//!
//! What the server can prove, and what it cannot: it proves that whoever finishes the flow is
//! signed in at the authorization server as the user who asked (step 2), and that the third
//! party's tokens came back to its own redirect URI for this browser (the cookie and the
//! single-use `state`). It cannot prove that the third-party account belongs to that person:
//! a user who signs in at the third party with someone else's account links that account.
//! Without [`ConfirmUser`] ([`LinkedAccountsBuilder::allow_unconfirmed_links`]) the link is a bearer
//! capability: whoever holds it within its lifetime links their account to the asking user.
//!
//! Tokens never reach the MCP client, and the client's token is never sent to the third party.
//!
//! A server whose users sign in at the same third party (the embedded authorization server's
//! upstream sign-in, with [`UpstreamSignIn::keep_tokens`]) names it with
//! [`LinkedAccountsBuilder::sign_in_tokens`]: a user who signed in there and has linked
//! nothing uses the sign-in's tokens, so they link nothing; an account they link later takes
//! precedence (wider scopes, say), and a user with neither gets a link as anyone else.

mod answer;
mod link;
#[cfg(feature = "postgres")]
mod postgres;
mod vault;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use url::Url;

use crate::authorization_server::{
    random_token, AuthorizationServer, OAuth2Profile, SealingKey, SignInError, SigningKey,
    Upstream, UpstreamIdentity, UpstreamSignIn, UpstreamTokens,
};
use crate::clock::now_secs;
use crate::error::{Error, ErrorKind, Result};
use crate::http::{parse_url, HttpClient};
use crate::server::{AuthInfo, TokenVerifier};
use crate::Secret;

pub use answer::LinkRequired;
#[cfg(feature = "postgres")]
pub use postgres::PostgresAccountVault;
pub use vault::{AccountKey, AccountVault, MemoryAccountVault};

/// Binds sealed tokens to their purpose; the account's key follows.
const TOKENS_CONTEXT: &[u8] = b"tower-mcp-oauth linked account v1\0";
/// Binds sealed records of links in progress; the handle's hash follows.
const PENDING_CONTEXT: &[u8] = b"tower-mcp-oauth link in progress v1\0";
/// How long a link may wait to be opened, by default.
pub const DEFAULT_LINK_TTL: Duration = Duration::from_secs(600);
/// How long a retried call waits for a link still in progress, by default.
pub const DEFAULT_LINK_WAIT: Duration = Duration::from_secs(120);
/// How long one replica may hold a refresh before another may try: past the HTTP client's
/// 30 s timeout twice (discovery, then the refresh), so a slow third party is not asked twice
/// with one refresh token.
const REFRESH_CLAIM_SECS: u64 = 90;
/// 2025-11-25 completion notices awaited at once in this process; past it, clients retry
/// after their own wait.
const MAX_NOTICE_TASKS: usize = 1_000;
/// How often a waiting call looks at the vault for what another replica did.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A third party whose API the server calls as its users: its authorization server and the
/// MCP server's client registration there. Register
/// [`LinkedAccounts::redirect_uri`] as the client's redirect URI.
#[derive(Debug, Clone)]
pub struct ThirdParty {
    name: String,
    sign_in: UpstreamSignIn,
}

impl ThirdParty {
    /// An authorization server discovered from `issuer` (RFC 8414, then OpenID Connect
    /// discovery), where the server is the client `client_id`. `name` keys the accounts in
    /// the vault and names the provider in [`LinkedAccounts::access_token`].
    pub fn discover(
        name: impl Into<String>,
        issuer: impl Into<String>,
        client_id: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            sign_in: UpstreamSignIn::openid(issuer, client_id).scopes(Vec::<String>::new()),
        }
    }

    /// Endpoints given by hand (GitHub's shape: no metadata).
    pub fn endpoints(
        name: impl Into<String>,
        profile: OAuth2Profile,
        client_id: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            sign_in: UpstreamSignIn::oauth2(profile, client_id).scopes(Vec::<String>::new()),
        }
    }

    /// GitHub, as the provider `github` (an OAuth app or GitHub App's client).
    pub fn github(client_id: impl Into<String>) -> Self {
        Self::endpoints("github", OAuth2Profile::github(), client_id)
    }

    /// Authenticates with `client_secret_basic`.
    pub fn client_secret(mut self, secret: impl Into<Secret>) -> Self {
        self.sign_in = self.sign_in.client_secret(secret);
        self
    }

    /// Authenticates with `client_secret_post` (GitHub's way).
    pub fn client_secret_post(mut self, secret: impl Into<Secret>) -> Self {
        self.sign_in = self.sign_in.client_secret_post(secret);
        self
    }

    /// The scopes asked of the third party.
    pub fn scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.sign_in = self.sign_in.scopes(scopes);
        self
    }

    /// The name shown to users (default: the profile's name, or the issuer's host).
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.sign_in = self.sign_in.display_name(name);
        self
    }

    /// The HTTP client for calls to the third party (default: https, loopback http allowed).
    pub fn http_client(mut self, http: HttpClient) -> Self {
        self.sign_in = self.sign_in.http_client(http);
        self
    }
}

/// How the link page learns who opened it: a sign-in at the MCP server's own authorization
/// server, whose access token (for the MCP resource) must name the user the link was made for.
/// Register [`LinkedAccounts::confirm_redirect_uri`] as the client's redirect URI there.
pub struct ConfirmUser {
    sign_in: UpstreamSignIn,
    resource: String,
    verifier: Arc<dyn TokenVerifier>,
}

impl std::fmt::Debug for ConfirmUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfirmUser")
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

impl ConfirmUser {
    /// Sign-in at `issuer` as the confidential client `client_id` (`client_secret_basic`), for
    /// a token for `resource` that `verifier` (the one the MCP server's `RequireBearer` uses)
    /// reads.
    pub fn new(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
        resource: impl Into<String>,
        verifier: impl TokenVerifier,
    ) -> Self {
        Self {
            sign_in: UpstreamSignIn::openid(issuer, client_id)
                .client_secret(client_secret)
                .scopes(Vec::<String>::new()),
            resource: resource.into(),
            verifier: Arc::new(verifier),
        }
    }

    /// The scopes asked for (default: none, the server's default).
    pub fn scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.sign_in = self.sign_in.scopes(scopes);
        self
    }

    /// The HTTP client for calls to the authorization server.
    pub fn http_client(mut self, http: HttpClient) -> Self {
        self.sign_in = self.sign_in.http_client(http);
        self
    }
}

/// Why [`LinkedAccounts::access_token`] gave no token.
#[derive(Debug)]
pub enum AccountError {
    /// The user has not linked the account (or must link it again): send them the link.
    LinkRequired(LinkRequired),
    /// The request named no user (it did not pass `RequireBearer`, or its token has no `sub`).
    NoCaller,
    /// No third party of that name is configured.
    UnknownProvider(String),
    /// The vault or the third party failed for now; the same call may succeed later.
    Unavailable(Error),
}

impl std::fmt::Display for AccountError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::LinkRequired(link) => write!(
                f,
                "the user must link their {} account",
                link.provider_name()
            ),
            Self::NoCaller => f.write_str("the request names no user"),
            Self::UnknownProvider(name) => write!(f, "no third party named {name:?} is configured"),
            Self::Unavailable(error) => write!(f, "the linked account is unavailable: {error}"),
        }
    }
}

impl std::error::Error for AccountError {}

/// Third-party accounts linked to MCP users; see the [module](self). Cheap to clone.
#[derive(Clone)]
pub struct LinkedAccounts {
    inner: Arc<Inner>,
}

struct Inner {
    base: Url,
    providers: HashMap<String, Upstream>,
    vault: Arc<dyn AccountVault>,
    key: SealingKey,
    confirm: Option<(Upstream, String, Arc<dyn TokenVerifier>)>,
    /// The provider whose tokens upstream sign-in keeps, and the server keeping them.
    sign_in: Option<(String, AuthorizationServer)>,
    /// Signs nothing today (client secrets only), but the provider leg takes one.
    signing_key: SigningKey,
    link_ttl: Duration,
    link_wait: Duration,
    /// Wakes calls waiting in this process when a link completes.
    linked: tokio::sync::Notify,
    /// Bounds the tasks awaiting links for 2025-11-25's completion notice.
    notice_tasks: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for LinkedAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkedAccounts")
            .field("base", &self.inner.base.as_str())
            .field(
                "providers",
                &self.inner.providers.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Builds [`LinkedAccounts`].
#[derive(Debug)]
pub struct LinkedAccountsBuilder {
    base: String,
    vault: Arc<dyn AccountVault>,
    key: SealingKey,
    providers: Vec<ThirdParty>,
    confirm: Option<ConfirmUser>,
    sign_in: Option<(String, AuthorizationServer)>,
    unconfirmed: bool,
    link_ttl: Duration,
    link_wait: Duration,
}

impl std::fmt::Debug for dyn AccountVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccountVault")
    }
}

impl LinkedAccounts {
    /// Linked accounts served under `public_url` (the MCP server's origin as browsers reach it;
    /// the pages are at `/accounts/…` beneath it), kept in `vault`, sealed with `key` (which
    /// replicas must share).
    pub fn builder(
        public_url: impl Into<String>,
        vault: impl AccountVault,
        key: SealingKey,
    ) -> LinkedAccountsBuilder {
        LinkedAccountsBuilder {
            base: public_url.into(),
            vault: Arc::new(vault),
            key,
            providers: Vec::new(),
            confirm: None,
            sign_in: None,
            unconfirmed: false,
            link_ttl: DEFAULT_LINK_TTL,
            link_wait: DEFAULT_LINK_WAIT,
        }
    }

    /// The redirect URI to register at every third party.
    pub fn redirect_uri(&self) -> String {
        self.inner.url(link::CALLBACK_PATH)
    }

    /// The redirect URI to register for [`ConfirmUser`]'s client.
    pub fn confirm_redirect_uri(&self) -> String {
        self.inner.url(link::CONFIRMED_PATH)
    }

    /// The caller's access token at `provider`, refreshed first when it is about to expire.
    ///
    /// # Errors
    /// [`AccountError::LinkRequired`] when the user has not linked the account, or its tokens
    /// can no longer be refreshed; the others as they say.
    pub async fn access_token(
        &self,
        caller: &AuthInfo,
        provider: &str,
    ) -> std::result::Result<Secret, AccountError> {
        let (account, upstream) = self.account(caller, provider)?;
        if let Some(token) = self.inner.current(&account, upstream).await? {
            return Ok(token);
        }
        if let Some(token) = self.sign_in_token(caller, provider).await? {
            return Ok(token);
        }
        Err(self.link_required(caller, account).await?)
    }

    /// [`access_token`](Self::access_token) for a call retried after a link
    /// ([`LinkRequired::into_tool_response`] at 2026-07-28): when `request_state` is the one
    /// that link sent, for this caller, it first waits (up to the configured wait) for the
    /// link to complete.
    ///
    /// # Errors
    /// As [`access_token`](Self::access_token).
    pub async fn access_token_after(
        &self,
        caller: &AuthInfo,
        provider: &str,
        request_state: Option<&str>,
    ) -> std::result::Result<Secret, AccountError> {
        let (account, _) = self.account(caller, provider)?;
        if let Some(expires_at) =
            request_state.and_then(|state| answer::open_request_state(self, &account, state))
        {
            let deadline =
                expires_at.min(now_secs().saturating_add(self.inner.link_wait.as_secs()));
            self.inner.wait_linked(&account, deadline).await;
        }
        self.access_token(caller, provider).await
    }

    /// Forgets `caller`'s account at `provider` (their next call asks to link again, or uses
    /// their sign-in tokens with [`LinkedAccountsBuilder::sign_in_tokens`]); whether one was
    /// linked. Tokens already issued by the third party stay valid there until they
    /// expire or the user revokes the grant at the third party.
    ///
    /// # Errors
    /// The vault's errors.
    pub async fn disconnect(&self, caller: &AuthInfo, provider: &str) -> Result<bool> {
        let (account, _) = self
            .account(caller, provider)
            .map_err(|e| Error::new(ErrorKind::Config, e.to_string()))?;
        self.inner.vault.remove(&account).await
    }

    /// The caller's token from upstream sign-in, when `provider` is the one they signed in at,
    /// this server issued their token, and its subject is one upstream sign-in made
    /// (`{upstream issuer}#{id}`: not a client's, a workload's or a trusted issuer's).
    async fn sign_in_token(
        &self,
        caller: &AuthInfo,
        provider: &str,
    ) -> std::result::Result<Option<Secret>, AccountError> {
        let Some((name, server)) = &self.inner.sign_in else {
            return Ok(None);
        };
        if name != provider || caller.issuer.as_deref() != Some(server.issuer()) {
            return Ok(None);
        }
        let Some(subject) = caller.subject.as_deref() else {
            return Ok(None);
        };
        let signed_in_upstream = server
            .kept_upstream_issuer()
            .is_some_and(|issuer| UpstreamIdentity::qualifies(issuer, subject));
        if !signed_in_upstream {
            return Ok(None);
        }
        match server.upstream_access_token(subject).await {
            Ok(token) => Ok(token),
            // A refused refresh: the user links (or signs in) again.
            Err(e) if e.kind() == ErrorKind::InvalidGrant => Ok(None),
            Err(e) => Err(AccountError::Unavailable(e)),
        }
    }

    fn account(
        &self,
        caller: &AuthInfo,
        provider: &str,
    ) -> std::result::Result<(AccountKey, &Upstream), AccountError> {
        let subject = caller.subject.clone().ok_or(AccountError::NoCaller)?;
        let upstream = self
            .inner
            .providers
            .get(provider)
            .ok_or_else(|| AccountError::UnknownProvider(provider.to_owned()))?;
        let account = AccountKey {
            issuer: caller.issuer.clone().unwrap_or_default(),
            subject,
            provider: provider.to_owned(),
        };
        Ok((account, upstream))
    }

    /// A new single-use link for `account`.
    async fn link_required(
        &self,
        caller: &AuthInfo,
        account: AccountKey,
    ) -> std::result::Result<AccountError, AccountError> {
        let ticket = random_token();
        let elicitation_id = random_token();
        let expires_at = now_secs().saturating_add(self.inner.link_ttl.as_secs());
        let record = link::Pending::Ticket(link::Ticket {
            account: account.clone(),
            client_id: caller.client_id.clone(),
            elicitation_id: elicitation_id.clone(),
        });
        self.inner
            .put_pending(&ticket, &record, expires_at)
            .await
            .map_err(AccountError::Unavailable)?;
        let mut url = Url::parse(&self.inner.url(link::LINK_PATH)).map_err(|_| {
            AccountError::Unavailable(Error::new(ErrorKind::Config, "bad link URL"))
        })?;
        url.query_pairs_mut().append_pair("ticket", &ticket);
        let name = self.inner.providers[&account.provider].display_name();
        Ok(AccountError::LinkRequired(LinkRequired::new(
            self.clone(),
            account,
            name,
            url.into(),
            elicitation_id,
            expires_at,
        )))
    }
}

impl LinkedAccountsBuilder {
    /// A third party users may link.
    pub fn provider(mut self, provider: ThirdParty) -> Self {
        self.providers.push(provider);
        self
    }

    /// Confirms who opens a link by a sign-in at the MCP server's authorization server.
    pub fn confirm_user(mut self, confirm: ConfirmUser) -> Self {
        self.confirm = Some(confirm);
        self
    }

    /// Users of `server` who signed in at the third party `provider` (its upstream sign-in,
    /// keeping tokens) use those tokens for it: no link, no second authorization. `provider`
    /// must name a [`provider`](Self::provider) at the same third party (the same issuer),
    /// for the users without sign-in tokens; an account a user links takes precedence. Only
    /// callers whose tokens `server` issued after an upstream sign-in are looked up there.
    /// The sign-in's scopes must cover what the tools call.
    pub fn sign_in_tokens(
        mut self,
        provider: impl Into<String>,
        server: &AuthorizationServer,
    ) -> Self {
        self.sign_in = Some((provider.into(), server.clone()));
        self
    }

    /// Lets links work without [`ConfirmUser`]: then a link is a bearer capability, and
    /// whoever opens it in time links their account to the user who asked. For development,
    /// or where the link reaches only its user by other means.
    pub fn allow_unconfirmed_links(mut self) -> Self {
        self.unconfirmed = true;
        self
    }

    /// How long a link may wait to be opened (default [`DEFAULT_LINK_TTL`]).
    pub fn link_ttl(mut self, ttl: Duration) -> Self {
        self.link_ttl = ttl;
        self
    }

    /// How long a retried call waits for a link in progress (default [`DEFAULT_LINK_WAIT`]).
    pub fn link_wait(mut self, wait: Duration) -> Self {
        self.link_wait = wait;
        self
    }

    /// The linked accounts.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for a public URL that is not https (or loopback http), two third
    /// parties of one name, or neither [`confirm_user`](Self::confirm_user) nor
    /// [`allow_unconfirmed_links`](Self::allow_unconfirmed_links); a third party's own
    /// configuration errors.
    pub fn build(self) -> Result<LinkedAccounts> {
        let config = |why: &str| Error::new(ErrorKind::Config, why.to_owned());
        let base = parse_url(
            self.base.trim_end_matches('/'),
            "linked accounts' public URL",
        )?;
        crate::http::ensure_secure_url(&base, "linked accounts' public URL")?;
        if self.confirm.is_none() && !self.unconfirmed {
            return Err(config(
                "linked accounts need confirm_user (or allow_unconfirmed_links, knowing a link is then a bearer capability)",
            ));
        }
        let mut providers = HashMap::new();
        for provider in self.providers {
            if providers.contains_key(&provider.name) {
                return Err(config("two third parties have the same name"));
            }
            providers.insert(provider.name, Upstream::new(provider.sign_in)?);
        }
        if let Some((name, server)) = &self.sign_in {
            let Some(provider) = providers.get(name) else {
                return Err(config(
                    "sign_in_tokens names a third party that is not a provider",
                ));
            };
            let Some(signed_in_at) = server.kept_upstream_issuer() else {
                return Err(config(
                    "sign_in_tokens needs a server whose upstream sign-in keeps tokens (keep_tokens)",
                ));
            };
            if provider.config.subject_issuer() != signed_in_at {
                return Err(config(
                    "sign_in_tokens names a third party other than the one users sign in at",
                ));
            }
        }
        let confirm = match self.confirm {
            Some(confirm) => Some((
                Upstream::new(confirm.sign_in)?,
                confirm.resource,
                confirm.verifier,
            )),
            None => None,
        };
        Ok(LinkedAccounts {
            inner: Arc::new(Inner {
                base,
                providers,
                vault: self.vault,
                key: self.key,
                confirm,
                sign_in: self.sign_in,
                signing_key: SigningKey::generate()?,
                link_ttl: self.link_ttl,
                link_wait: self.link_wait,
                linked: tokio::sync::Notify::new(),
                notice_tasks: Arc::new(tokio::sync::Semaphore::new(MAX_NOTICE_TASKS)),
            }),
        })
    }
}

impl Inner {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }

    fn is_https(&self) -> bool {
        self.base.scheme() == "https"
    }

    /// The account's token, refreshed when due; `None` when it must be linked (again).
    async fn current(
        &self,
        account: &AccountKey,
        upstream: &Upstream,
    ) -> std::result::Result<Option<Secret>, AccountError> {
        let deadline = now_secs().saturating_add(REFRESH_CLAIM_SECS);
        // The token seen due: another refresher's result is any other token.
        let mut seen_due: Option<Secret> = None;
        loop {
            let Some((sealed, tokens)) = self.load(account).await? else {
                return Ok(None);
            };
            let now = now_secs();
            let expired = tokens.expires_at.is_some_and(|at| at <= now);
            let refreshed_by_another = seen_due
                .as_ref()
                .is_some_and(|due| due.expose() != tokens.access_token.expose());
            if !tokens.due(now) || (refreshed_by_another && !expired) {
                return Ok(Some(tokens.access_token));
            }
            let Some(refresh_token) = tokens.refresh_token.clone() else {
                if expired {
                    self.forget(account).await?;
                    return Ok(None);
                }
                return Ok(Some(tokens.access_token));
            };
            let claimed = self
                .vault
                .claim_refresh(account, &sealed, now.saturating_add(REFRESH_CLAIM_SECS))
                .await
                .map_err(AccountError::Unavailable)?;
            if claimed {
                return self
                    .refresh(account, upstream, tokens, &refresh_token)
                    .await;
            }
            // Another task or replica refreshes: its result lands in the vault.
            if now >= deadline {
                return Err(AccountError::Unavailable(Error::new(
                    ErrorKind::Timeout,
                    "another refresh of the linked account did not finish in time",
                )));
            }
            seen_due = Some(tokens.access_token);
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn refresh(
        &self,
        account: &AccountKey,
        upstream: &Upstream,
        tokens: UpstreamTokens,
        refresh_token: &Secret,
    ) -> std::result::Result<Option<Secret>, AccountError> {
        match upstream.refresh(refresh_token, &self.signing_key).await {
            Ok(mut fresh) => {
                // A provider that does not rotate refresh tokens sends none back.
                if fresh.refresh_token.is_none() {
                    fresh.refresh_token = tokens.refresh_token;
                }
                if fresh.scopes.is_empty() {
                    fresh.scopes = tokens.scopes;
                }
                self.store(account, &fresh).await?;
                Ok(Some(fresh.access_token))
            }
            Err(SignInError::Refused(why)) => {
                tracing::info!(provider = %account.provider, %why, "a linked account's refresh was refused: it must be linked again");
                self.forget(account).await?;
                Ok(None)
            }
            Err(other) => {
                let _ = self.vault.release_refresh(account).await;
                Err(AccountError::Unavailable(Error::new(
                    other.kind(),
                    other.to_string(),
                )))
            }
        }
    }

    /// The kept record and its tokens. One that does not open (another key, or altered) is
    /// removed: the user links again.
    async fn load(
        &self,
        account: &AccountKey,
    ) -> std::result::Result<Option<(Vec<u8>, UpstreamTokens)>, AccountError> {
        let Some(sealed) = self
            .vault
            .load(account)
            .await
            .map_err(AccountError::Unavailable)?
        else {
            return Ok(None);
        };
        match UpstreamTokens::open_for(&sealed, &self.key, &account.seal_context(TOKENS_CONTEXT)) {
            Ok(tokens) => Ok(Some((sealed, tokens))),
            Err(error) => {
                tracing::warn!(provider = %account.provider, %error, "a linked account cannot be opened: it must be linked again");
                self.forget(account).await?;
                Ok(None)
            }
        }
    }

    async fn store(
        &self,
        account: &AccountKey,
        tokens: &UpstreamTokens,
    ) -> std::result::Result<(), AccountError> {
        let sealed = tokens
            .seal_for(&self.key, &account.seal_context(TOKENS_CONTEXT))
            .map_err(AccountError::Unavailable)?;
        self.vault
            .save(account, sealed)
            .await
            .map_err(AccountError::Unavailable)
    }

    async fn forget(&self, account: &AccountKey) -> std::result::Result<(), AccountError> {
        self.vault
            .remove(account)
            .await
            .map(drop)
            .map_err(AccountError::Unavailable)
    }

    /// Whether `account` is linked, waiting until `deadline` (seconds since the epoch).
    async fn wait_linked(&self, account: &AccountKey, deadline: u64) -> bool {
        loop {
            let notified = self.linked.notified();
            if matches!(self.load(account).await, Ok(Some(_))) {
                return true;
            }
            if now_secs() >= deadline {
                return false;
            }
            // Woken by a link in this process, or looking again for one on another replica.
            let _ = tokio::time::timeout(POLL_INTERVAL * 4, notified).await;
        }
    }

    async fn put_pending(
        &self,
        handle: &str,
        record: &link::Pending,
        expires_at: u64,
    ) -> Result<()> {
        let hash = handle_hash(handle);
        let plain = serde_json::to_vec(record)
            .map_err(|_| Error::new(ErrorKind::Storage, "a link record cannot be encoded"))?;
        let sealed = self.key.seal(&plain, &pending_context(&hash));
        self.vault.put_pending(hash, sealed, expires_at).await
    }

    /// The record under `handle`, taken once; `None` when unknown, used or expired.
    async fn take_pending(&self, handle: &str) -> Result<Option<link::Pending>> {
        let hash = handle_hash(handle);
        let Some(sealed) = self.vault.take_pending(hash).await? else {
            return Ok(None);
        };
        Ok(self
            .key
            .open(&sealed, &pending_context(&hash))
            .and_then(|plain| serde_json::from_slice(&plain).ok()))
    }
}

fn handle_hash(handle: &str) -> [u8; 32] {
    Sha256::digest(handle.as_bytes()).into()
}

fn pending_context(hash: &[u8; 32]) -> Vec<u8> {
    let mut context = PENDING_CONTEXT.to_vec();
    context.extend_from_slice(hash);
    context
}
