//! Storage for the authorization server: clients, pending codes, refresh-token families and
//! opaque access tokens. Credentials are kept as SHA-256 hashes.
//!
//! The operations that decide a credential's fate ([`AuthorizationStore::redeem_code`],
//! [`AuthorizationStore::rotate_refresh`]) must be atomic: two concurrent redemptions of one code
//! or one refresh token must not both succeed.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use crate::error::Result;
use crate::metadata::ClientMetadata;

/// A boxed future, as the object-safe store trait returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The SHA-256 of a code or token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMethod {
    /// A public client: no secret.
    None,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// HTTP Basic.
    ClientSecretBasic,
}

impl ClientAuthMethod {
    /// The RFC 7591 name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretPost => "client_secret_post",
            Self::ClientSecretBasic => "client_secret_basic",
        }
    }
}

/// A registered client.
#[derive(Debug, Clone)]
pub struct RegisteredClient {
    /// The client identifier.
    pub client_id: String,
    /// The hash of its secret, for confidential clients.
    pub secret_hash: Option<TokenHash>,
    /// How it authenticates.
    pub auth_method: ClientAuthMethod,
    /// Its metadata as registered.
    pub metadata: ClientMetadata,
    /// When it was registered (seconds since the epoch).
    pub issued_at: u64,
    /// Registered by the operator (not through `/register` or a metadata document): only such
    /// clients may use `client_credentials` and introspect.
    pub pre_registered: bool,
}

impl RegisteredClient {
    /// Whether the client registered `grant_type`.
    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.metadata.grant_types.iter().any(|g| g == grant_type)
    }
}

/// What an authorization code stands for, until it is redeemed.
#[derive(Debug, Clone)]
pub struct CodeGrant {
    /// The client the code was issued to.
    pub client_id: String,
    /// The user who approved.
    pub subject: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// The resource (RFC 8707) the tokens are for.
    pub resource: String,
    /// The redirect URI the code goes to.
    pub redirect_uri: String,
    /// Whether the authorization request named it: the token request must then repeat it.
    pub redirect_uri_in_request: bool,
    /// The PKCE S256 challenge.
    pub code_challenge: String,
    /// When the code expires.
    pub expires_at: u64,
    /// The token family the code starts; revoked if the code is used twice.
    pub family_id: String,
}

/// The outcome of redeeming a code.
#[derive(Debug)]
pub enum CodeRedemption {
    /// First use: the code is now spent.
    Redeemed(CodeGrant),
    /// The code was already used; the tokens of `family_id` should be revoked.
    Reused {
        /// The family the first redemption started.
        family_id: String,
    },
    /// No such code (or it was forgotten after expiring).
    Unknown,
}

/// The tokens issued from one authorization: a chain of refresh tokens, of which only the
/// newest is valid.
#[derive(Debug, Clone)]
pub struct TokenFamily {
    /// Family identifier.
    pub id: String,
    /// The client.
    pub client_id: String,
    /// The user.
    pub subject: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// The resource the tokens are for.
    pub resource: String,
    /// When the family (its refresh tokens) expires.
    pub expires_at: u64,
    /// Set when reuse was detected or the grant revoked.
    pub revoked: bool,
}

/// The outcome of rotating a refresh token.
#[derive(Debug)]
pub enum RefreshRotation {
    /// The token was current: it is spent and the new one is current.
    Rotated(TokenFamily),
    /// The token was spent before: a sign of theft. The family is now revoked.
    Reused(TokenFamily),
    /// Unknown, expired or revoked.
    Invalid,
}

/// An issued access token, for introspection and revocation.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    /// The client.
    pub client_id: String,
    /// The user, or the client itself for `client_credentials`.
    pub subject: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// The resource (`aud`).
    pub resource: String,
    /// Issued at.
    pub issued_at: u64,
    /// Expires at.
    pub expires_at: u64,
    /// The family it was issued in, if any.
    pub family_id: Option<String>,
}

/// Storage behind the authorization server.
///
/// [`redeem_code`](Self::redeem_code) and [`rotate_refresh`](Self::rotate_refresh) must be
/// atomic: of two concurrent calls with one code or one refresh token, only one may succeed.
/// Codes and tokens arrive as SHA-256 hashes; the store never sees the credentials.
pub trait AuthorizationStore: Send + Sync + 'static {
    /// Saves (or replaces) a client.
    fn save_client(&self, client: RegisteredClient) -> BoxFuture<'_, Result<()>>;
    /// Loads a client.
    fn client<'a>(&'a self, client_id: &'a str) -> BoxFuture<'a, Result<Option<RegisteredClient>>>;
    /// Saves a new authorization code.
    fn save_code(&self, code: TokenHash, grant: CodeGrant) -> BoxFuture<'_, Result<()>>;
    /// Spends a code, atomically: only the first call gets [`CodeRedemption::Redeemed`].
    fn redeem_code(&self, code: TokenHash) -> BoxFuture<'_, Result<CodeRedemption>>;
    /// Starts a token family with its first refresh token.
    fn save_family(&self, family: TokenFamily, refresh: TokenHash) -> BoxFuture<'_, Result<()>>;
    /// Replaces the current refresh token `old` of its family by `new`, atomically. Presenting a
    /// spent token revokes the family.
    fn rotate_refresh(
        &self,
        old: TokenHash,
        new: TokenHash,
        now: u64,
    ) -> BoxFuture<'_, Result<RefreshRotation>>;
    /// The family a refresh token (current or spent) belongs to, and whether it is the
    /// family's current token.
    fn family_of_refresh(
        &self,
        refresh: TokenHash,
    ) -> BoxFuture<'_, Result<Option<(TokenFamily, bool)>>>;
    /// Loads a family.
    fn family<'a>(&'a self, family_id: &'a str) -> BoxFuture<'a, Result<Option<TokenFamily>>>;
    /// Revokes a family: its refresh tokens and the access tokens issued in it.
    fn revoke_family<'a>(&'a self, family_id: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Records an issued access token.
    fn save_access(&self, token: TokenHash, record: AccessRecord) -> BoxFuture<'_, Result<()>>;
    /// Loads an access token's record; `None` once revoked or forgotten.
    fn access(&self, token: TokenHash) -> BoxFuture<'_, Result<Option<AccessRecord>>>;
    /// Revokes one access token.
    fn revoke_access(&self, token: TokenHash) -> BoxFuture<'_, Result<()>>;
}

/// An in-memory [`AuthorizationStore`]: for one process, lost at exit. Expired codes, families
/// and access records are dropped as new ones are saved. Registration is open to anyone, so
/// the number of clients is capped (10,000 by default); past it, registration fails.
#[derive(Debug)]
pub struct MemoryAuthorizationStore {
    state: Mutex<MemoryState>,
    max_clients: usize,
}

impl Default for MemoryAuthorizationStore {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            max_clients: 10_000,
        }
    }
}

#[derive(Debug, Default)]
struct MemoryState {
    clients: HashMap<String, RegisteredClient>,
    codes: HashMap<TokenHash, StoredCode>,
    families: HashMap<String, StoredFamily>,
    refresh: HashMap<TokenHash, String>,
    access: HashMap<TokenHash, AccessRecord>,
    saves_since_sweep: usize,
}

#[derive(Debug)]
struct StoredCode {
    grant: CodeGrant,
    redeemed: bool,
}

#[derive(Debug)]
struct StoredFamily {
    family: TokenFamily,
    current: TokenHash,
}

/// Spent codes are remembered this long after expiring, to detect a late reuse.
const SPENT_CODE_MEMORY_SECS: u64 = 600;
const SWEEP_EVERY: usize = 256;

impl MemoryAuthorizationStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The most clients kept.
    pub fn with_client_limit(mut self, max_clients: usize) -> Self {
        self.max_clients = max_clients;
        self
    }

    fn with<T>(&self, f: impl FnOnce(&mut MemoryState) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut state)
    }
}

impl MemoryState {
    fn sweep_now_and_then(&mut self) {
        self.saves_since_sweep += 1;
        if self.saves_since_sweep < SWEEP_EVERY {
            return;
        }
        self.saves_since_sweep = 0;
        let now = super::now_secs();
        self.codes
            .retain(|_, c| c.grant.expires_at + SPENT_CODE_MEMORY_SECS > now);
        self.access.retain(|_, a| a.expires_at > now);
        let expired: Vec<String> = self
            .families
            .iter()
            .filter(|(_, f)| f.family.expires_at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.families.remove(id);
        }
        let families = &self.families;
        self.refresh.retain(|_, id| families.contains_key(id));
    }
}

fn ready<T: Send + 'static>(value: T) -> BoxFuture<'static, T> {
    Box::pin(std::future::ready(value))
}

impl AuthorizationStore for MemoryAuthorizationStore {
    fn save_client(&self, client: RegisteredClient) -> BoxFuture<'_, Result<()>> {
        let saved = self.with(|s| {
            if s.clients.len() >= self.max_clients && !s.clients.contains_key(&client.client_id) {
                return false;
            }
            s.clients.insert(client.client_id.clone(), client);
            true
        });
        ready(if saved {
            Ok(())
        } else {
            Err(crate::Error::new(
                crate::ErrorKind::Storage,
                "the client limit of the memory store is reached",
            ))
        })
    }

    fn client<'a>(&'a self, client_id: &'a str) -> BoxFuture<'a, Result<Option<RegisteredClient>>> {
        ready(Ok(self.with(|s| s.clients.get(client_id).cloned())))
    }

    fn save_code(&self, code: TokenHash, grant: CodeGrant) -> BoxFuture<'_, Result<()>> {
        self.with(|s| {
            s.sweep_now_and_then();
            s.codes.insert(
                code,
                StoredCode {
                    grant,
                    redeemed: false,
                },
            );
        });
        ready(Ok(()))
    }

    fn redeem_code(&self, code: TokenHash) -> BoxFuture<'_, Result<CodeRedemption>> {
        let outcome = self.with(|s| match s.codes.get_mut(&code) {
            None => CodeRedemption::Unknown,
            Some(stored) if stored.redeemed => CodeRedemption::Reused {
                family_id: stored.grant.family_id.clone(),
            },
            Some(stored) => {
                stored.redeemed = true;
                CodeRedemption::Redeemed(stored.grant.clone())
            }
        });
        ready(Ok(outcome))
    }

    fn save_family(&self, family: TokenFamily, refresh: TokenHash) -> BoxFuture<'_, Result<()>> {
        self.with(|s| {
            s.sweep_now_and_then();
            s.refresh.insert(refresh, family.id.clone());
            s.families.insert(
                family.id.clone(),
                StoredFamily {
                    family,
                    current: refresh,
                },
            );
        });
        ready(Ok(()))
    }

    fn rotate_refresh(
        &self,
        old: TokenHash,
        new: TokenHash,
        now: u64,
    ) -> BoxFuture<'_, Result<RefreshRotation>> {
        let outcome = self.with(|s| {
            let Some(family_id) = s.refresh.get(&old).cloned() else {
                return RefreshRotation::Invalid;
            };
            let Some(stored) = s.families.get_mut(&family_id) else {
                return RefreshRotation::Invalid;
            };
            if stored.family.revoked || stored.family.expires_at <= now {
                return RefreshRotation::Invalid;
            }
            if stored.current != old {
                stored.family.revoked = true;
                let family = stored.family.clone();
                s.access
                    .retain(|_, a| a.family_id.as_deref() != Some(family_id.as_str()));
                return RefreshRotation::Reused(family);
            }
            stored.current = new;
            let family = stored.family.clone();
            s.refresh.insert(new, family_id);
            RefreshRotation::Rotated(family)
        });
        ready(Ok(outcome))
    }

    fn family_of_refresh(
        &self,
        refresh: TokenHash,
    ) -> BoxFuture<'_, Result<Option<(TokenFamily, bool)>>> {
        let family = self.with(|s| {
            let id = s.refresh.get(&refresh)?;
            s.families
                .get(id)
                .map(|f| (f.family.clone(), f.current == refresh))
        });
        ready(Ok(family))
    }

    fn family<'a>(&'a self, family_id: &'a str) -> BoxFuture<'a, Result<Option<TokenFamily>>> {
        ready(Ok(self.with(|s| {
            s.families.get(family_id).map(|f| f.family.clone())
        })))
    }

    fn revoke_family<'a>(&'a self, family_id: &'a str) -> BoxFuture<'a, Result<()>> {
        self.with(|s| {
            if let Some(stored) = s.families.get_mut(family_id) {
                stored.family.revoked = true;
            }
            s.access
                .retain(|_, a| a.family_id.as_deref() != Some(family_id));
        });
        ready(Ok(()))
    }

    fn save_access(&self, token: TokenHash, record: AccessRecord) -> BoxFuture<'_, Result<()>> {
        self.with(|s| {
            s.sweep_now_and_then();
            s.access.insert(token, record);
        });
        ready(Ok(()))
    }

    fn access(&self, token: TokenHash) -> BoxFuture<'_, Result<Option<AccessRecord>>> {
        ready(Ok(self.with(|s| s.access.get(&token).cloned())))
    }

    fn revoke_access(&self, token: TokenHash) -> BoxFuture<'_, Result<()>> {
        self.with(|s| s.access.remove(&token));
        ready(Ok(()))
    }
}
