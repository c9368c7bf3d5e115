//! Storage for the authorization server: clients, pending codes, refresh-token families and
//! opaque access tokens. Credentials are kept as SHA-256 hashes.
//!
//! The operations that decide a credential's fate ([`AuthorizationStore::redeem_code`],
//! [`AuthorizationStore::rotate_refresh`]) must be atomic: two concurrent redemptions of one code
//! or one refresh token must not both succeed.

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod sign_in;

use crate::error::Result;
use crate::metadata::ClientMetadata;

pub use crate::BoxFuture;
pub use memory::{MemoryAuthorizationStore, MemoryStoreLimits};
#[cfg(feature = "postgres")]
pub use postgres::PostgresAuthorizationStore;
pub use sign_in::{
    PendingSignIn, RememberedConsent, SealedUpstreamTokens, SignInSession, UpstreamIdentity,
};

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
    /// A JWT signed with the client's private key (RFC 7523 §2.2), checked against the public
    /// keys it registered (`jwks` or `jwks_uri`).
    PrivateKeyJwt,
}

impl ClientAuthMethod {
    /// The RFC 7591 name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretPost => "client_secret_post",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::PrivateKeyJwt => "private_key_jwt",
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
    /// The DPoP key the refresh tokens are bound to (a public client's, RFC 9449 §5): a
    /// refresh with another key fails.
    pub dpop_jkt: Option<String>,
}

/// The outcome of rotating a refresh token.
#[derive(Debug)]
pub enum RefreshRotation {
    /// The token was current: it is spent and the new one is current.
    Rotated(TokenFamily),
    /// The token was rotated to the same new one moments ago (within the grace period): its
    /// holder never kept the answer (a crash, a lost connection). Nothing changed; the new
    /// token is still current.
    Repeated(TokenFamily),
    /// The token was spent before: a sign of theft. The family is now revoked.
    Reused(TokenFamily),
    /// Unknown, expired or revoked.
    Invalid,
}

/// The outcome of saving a new token family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyStart {
    /// The family is saved and live.
    Started,
    /// The family was revoked before it was saved (its code was reused while the first
    /// redemption was in flight): nothing may be issued in it.
    Revoked,
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
    /// The thumbprint of the DPoP key the token is bound to (`cnf.jkt`), if any.
    pub dpop_jkt: Option<String>,
    /// Who acts for the subject (RFC 8693 §4.1 `act`, as JSON text), for an exchanged token.
    pub act: Option<String>,
}

/// A consent page shown and not answered yet: what the user is asked to approve. Kept by the
/// store, so the answer may reach any replica.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PendingConsent {
    /// The client asking.
    pub client_id: String,
    /// Its name, as shown.
    pub client_name: Option<String>,
    /// Where the answer goes.
    pub redirect_uri: String,
    /// Whether the authorization request named the redirect URI.
    pub redirect_uri_in_request: bool,
    /// The client's `state`, returned with the answer.
    pub state: Option<String>,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// The resource (RFC 8707) the tokens would be for.
    pub resource: String,
    /// The PKCE S256 challenge.
    pub code_challenge: String,
    /// The user asked.
    pub subject: String,
    /// The hash of the page's anti-forgery token.
    pub csrf_hash: TokenHash,
    /// When the page stops being answerable.
    pub expires_at: u64,
}

/// A device authorization (RFC 8628) waiting for the user's answer on the verification page,
/// then for the device to collect it.
#[derive(Debug, Clone)]
pub struct DeviceGrant {
    /// The client (the device) asking.
    pub client_id: String,
    /// Its name, as shown on the verification page.
    pub client_name: Option<String>,
    /// The hash of the user code (normalized: upper case, no dash).
    pub user_code: TokenHash,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// The resource (RFC 8707) the tokens would be for.
    pub resource: String,
    /// When the device code and user code stop working.
    pub expires_at: u64,
    /// Seconds the device must wait between polls; raised by 5 at each `slow_down`.
    pub interval: u64,
    /// When the device last polled (0: never).
    pub last_poll: u64,
    /// The user's answer so far.
    pub status: DeviceStatus,
    /// The token family the approval starts.
    pub family_id: String,
}

/// Where a [`DeviceGrant`] stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceStatus {
    /// The user has not answered.
    Pending,
    /// The user approved; the tokens are for `subject`.
    Approved {
        /// The user who approved.
        subject: String,
    },
    /// The user denied.
    Denied,
}

/// The outcome of saving a device authorization ([`AuthorizationStore::save_device`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSave {
    /// Saved.
    Saved,
    /// A live grant has this user code: draw another.
    UserCodeTaken,
    /// The store keeps as many device authorizations as it may (for this client, or in all).
    Full,
}

/// The outcome of a device's poll ([`AuthorizationStore::poll_device`]).
#[derive(Debug)]
pub enum DevicePoll {
    /// No answer yet (`authorization_pending`).
    Pending,
    /// Polled sooner than the interval allows; the interval is now 5 s longer (`slow_down`).
    SlowDown,
    /// The user approved: the grant is spent, and tokens are issued from it.
    Approved(DeviceGrant),
    /// The user denied (`access_denied`); the grant is spent.
    Denied,
    /// The grant expired before it was collected (`expired_token`).
    Expired,
    /// No such device code for this client (`invalid_grant`).
    Unknown,
}

impl DeviceGrant {
    /// A device's poll at `now` (RFC 8628 §3.5): updates the poll time and interval of a
    /// pending grant. After any other outcome than `Pending` and `SlowDown`, the store forgets
    /// the grant.
    pub fn poll(&mut self, now: u64) -> DevicePoll {
        if self.expires_at <= now {
            return DevicePoll::Expired;
        }
        match &self.status {
            DeviceStatus::Approved { .. } => DevicePoll::Approved(self.clone()),
            DeviceStatus::Denied => DevicePoll::Denied,
            DeviceStatus::Pending => {
                let too_soon = self.last_poll != 0 && now < self.last_poll + self.interval;
                self.last_poll = now;
                if too_soon {
                    self.interval += DEVICE_SLOW_DOWN_SECS;
                    DevicePoll::SlowDown
                } else {
                    DevicePoll::Pending
                }
            }
        }
    }
}

/// What RFC 8628 §3.5 adds to the interval at each `slow_down`.
pub const DEVICE_SLOW_DOWN_SECS: u64 = 5;

/// Storage behind the authorization server.
///
/// Codes and tokens arrive as SHA-256 hashes; the store never sees the credentials. A store
/// shared by several processes must give these guarantees through its database (transactions,
/// row locks, conditional updates), not through a lock in one process:
///
/// - [`redeem_code`](Self::redeem_code) and [`rotate_refresh`](Self::rotate_refresh) are atomic:
///   of two concurrent calls with one code or one refresh token, only one succeeds.
/// - A revocation sticks whatever the order: [`revoke_family`](Self::revoke_family) may arrive
///   before [`save_family`](Self::save_family) for the same id (a code reused while its first
///   redemption is still issuing tokens). The store records the revocation against the family id,
///   and the later `save_family` answers [`FamilyStart::Revoked`].
pub trait AuthorizationStore: Send + Sync + 'static {
    /// Saves (or replaces) a client.
    fn save_client(&self, client: RegisteredClient) -> BoxFuture<'_, Result<()>>;
    /// Loads a client.
    fn client<'a>(&'a self, client_id: &'a str) -> BoxFuture<'a, Result<Option<RegisteredClient>>>;
    /// Saves a new authorization code.
    fn save_code(&self, code: TokenHash, grant: CodeGrant) -> BoxFuture<'_, Result<()>>;
    /// Spends a code, atomically: only the first call gets [`CodeRedemption::Redeemed`].
    fn redeem_code(&self, code: TokenHash) -> BoxFuture<'_, Result<CodeRedemption>>;
    /// Starts a token family with its first refresh token, unless the family id was revoked
    /// already ([`FamilyStart::Revoked`]; the family must then stay revoked).
    fn save_family(
        &self,
        family: TokenFamily,
        refresh: TokenHash,
    ) -> BoxFuture<'_, Result<FamilyStart>>;
    /// Replaces the current refresh token `old` of its family by `new`, atomically. Presenting a
    /// spent token revokes the family, except the one rotated last, within `grace_secs` of its
    /// rotation, to the same `new` ([`RefreshRotation::Repeated`]: successors are derived from
    /// the token they replace, so a repeat asks for the same one).
    fn rotate_refresh(
        &self,
        old: TokenHash,
        new: TokenHash,
        now: u64,
        grace_secs: u64,
    ) -> BoxFuture<'_, Result<RefreshRotation>>;
    /// The family a refresh token (current or spent) belongs to, and whether it is the
    /// family's current token.
    fn family_of_refresh(
        &self,
        refresh: TokenHash,
    ) -> BoxFuture<'_, Result<Option<(TokenFamily, bool)>>>;
    /// Loads a family.
    fn family<'a>(&'a self, family_id: &'a str) -> BoxFuture<'a, Result<Option<TokenFamily>>>;
    /// Revokes a family: its refresh tokens and the access tokens issued in it. A family id
    /// that is not saved yet is revoked all the same (see the trait's docs).
    fn revoke_family<'a>(&'a self, family_id: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Records an issued access token.
    fn save_access(&self, token: TokenHash, record: AccessRecord) -> BoxFuture<'_, Result<()>>;
    /// Loads an access token's record; `None` once revoked or forgotten.
    fn access(&self, token: TokenHash) -> BoxFuture<'_, Result<Option<AccessRecord>>>;
    /// Revokes one access token.
    fn revoke_access(&self, token: TokenHash) -> BoxFuture<'_, Result<()>>;
    /// Keeps a consent page's request under `id` (the hash of the page's request id) until it
    /// is answered or expires. A store may drop a client's oldest pages to bound what one
    /// client can keep.
    fn save_consent(&self, id: TokenHash, consent: PendingConsent) -> BoxFuture<'_, Result<()>>;
    /// Takes the consent request `id` out, atomically: of two concurrent answers, one gets it.
    fn take_consent(&self, id: TokenHash) -> BoxFuture<'_, Result<Option<PendingConsent>>>;
    /// Keeps a device authorization under `device_code` (its hash) until it is collected or
    /// expires. User codes are short, so they can collide: a store refuses one in use by a
    /// live grant ([`DeviceSave::UserCodeTaken`]; the server draws another). A store bounds
    /// what it keeps by refusing new grants ([`DeviceSave::Full`]), never by dropping live
    /// ones: a client id can be public, and whoever uses it must not end others' sign-ins.
    fn save_device(
        &self,
        device_code: TokenHash,
        grant: DeviceGrant,
    ) -> BoxFuture<'_, Result<DeviceSave>>;
    /// The device authorization a user code stands for, whatever its status.
    fn device_by_user_code(
        &self,
        user_code: TokenHash,
    ) -> BoxFuture<'_, Result<Option<DeviceGrant>>>;
    /// Records the user's answer, atomically: only a pending, unexpired grant takes one.
    /// Returns whether it did.
    fn answer_device(
        &self,
        user_code: TokenHash,
        answer: DeviceStatus,
        now: u64,
    ) -> BoxFuture<'_, Result<bool>>;
    /// A device's poll with `device_code` by `client_id`, atomically: an answered grant is
    /// handed out once, and the poll time and interval are kept (see [`DevicePoll`]).
    fn poll_device<'a>(
        &'a self,
        device_code: TokenHash,
        client_id: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<DevicePoll>>;
    /// Where the server remembers the one-time ids it accepted (DPoP proofs, client
    /// assertions, ID-JAGs) unless told otherwise: a store that replicas share returns a
    /// cache they share too, so an id used at one replica is refused at every other. `None`
    /// (the default): each server keeps its own, in memory.
    fn replay_cache(&self) -> Option<std::sync::Arc<dyn crate::dpop::ReplayCache>> {
        None
    }
    /// Keeps an authorization waiting for the user to sign in upstream, under `id` (the hash
    /// of the `state` sent upstream), until taken or expired. Upstream sign-in needs this and
    /// the methods below; a store without them (the default bodies) refuses with
    /// [`ErrorKind::Config`](crate::ErrorKind::Config).
    fn save_sign_in(&self, id: TokenHash, pending: PendingSignIn) -> BoxFuture<'_, Result<()>> {
        let _ = (id, pending);
        sign_in_unsupported()
    }
    /// Takes the waiting authorization `id` out, atomically: of two callbacks, one gets it.
    fn take_sign_in(&self, id: TokenHash) -> BoxFuture<'_, Result<Option<PendingSignIn>>> {
        let _ = id;
        sign_in_unsupported()
    }
    /// Saves a browser session under `id` (the hash of its cookie's value).
    fn save_session(&self, id: TokenHash, session: SignInSession) -> BoxFuture<'_, Result<()>> {
        let _ = (id, session);
        sign_in_unsupported()
    }
    /// Loads a session; `None` once ended or expired.
    fn session(&self, id: TokenHash) -> BoxFuture<'_, Result<Option<SignInSession>>> {
        let _ = id;
        sign_in_unsupported()
    }
    /// Ends a session.
    fn end_session(&self, id: TokenHash) -> BoxFuture<'_, Result<()>> {
        let _ = id;
        sign_in_unsupported()
    }
    /// Remembers a user's consent to a client, replacing the one before.
    fn remember_consent(&self, consent: RememberedConsent) -> BoxFuture<'_, Result<()>> {
        let _ = consent;
        sign_in_unsupported()
    }
    /// The consent `subject` gave `client_id`, if remembered and not expired.
    fn remembered_consent<'a>(
        &'a self,
        subject: &'a str,
        client_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<RememberedConsent>>> {
        let _ = (subject, client_id);
        sign_in_unsupported()
    }
    /// Forgets the consent `subject` gave `client_id` (every client's when `client_id` is
    /// `None`).
    fn forget_consent<'a>(
        &'a self,
        subject: &'a str,
        client_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<()>> {
        let _ = (subject, client_id);
        sign_in_unsupported()
    }
    /// Keeps a user's upstream tokens, sealed, replacing the ones before.
    fn save_upstream_tokens<'a>(
        &'a self,
        subject: &'a str,
        tokens: SealedUpstreamTokens,
    ) -> BoxFuture<'a, Result<()>> {
        let _ = (subject, tokens);
        sign_in_unsupported()
    }
    /// A user's upstream tokens, sealed.
    fn upstream_tokens<'a>(
        &'a self,
        subject: &'a str,
    ) -> BoxFuture<'a, Result<Option<SealedUpstreamTokens>>> {
        let _ = subject;
        sign_in_unsupported()
    }
}

fn sign_in_unsupported<'a, T: Send + 'a>() -> BoxFuture<'a, Result<T>> {
    Box::pin(std::future::ready(Err(crate::Error::new(
        crate::ErrorKind::Config,
        "this authorization store keeps no upstream sign-ins (sessions, remembered consents, \
         upstream tokens); use MemoryAuthorizationStore or PostgresAuthorizationStore",
    ))))
}

/// A shared store is a store: one `Arc` can back several servers (or a server and a test).
impl<S: AuthorizationStore + ?Sized> AuthorizationStore for std::sync::Arc<S> {
    fn save_client(&self, client: RegisteredClient) -> BoxFuture<'_, Result<()>> {
        (**self).save_client(client)
    }
    fn client<'a>(&'a self, client_id: &'a str) -> BoxFuture<'a, Result<Option<RegisteredClient>>> {
        (**self).client(client_id)
    }
    fn save_code(&self, code: TokenHash, grant: CodeGrant) -> BoxFuture<'_, Result<()>> {
        (**self).save_code(code, grant)
    }
    fn redeem_code(&self, code: TokenHash) -> BoxFuture<'_, Result<CodeRedemption>> {
        (**self).redeem_code(code)
    }
    fn save_family(
        &self,
        family: TokenFamily,
        refresh: TokenHash,
    ) -> BoxFuture<'_, Result<FamilyStart>> {
        (**self).save_family(family, refresh)
    }
    fn rotate_refresh(
        &self,
        old: TokenHash,
        new: TokenHash,
        now: u64,
        grace_secs: u64,
    ) -> BoxFuture<'_, Result<RefreshRotation>> {
        (**self).rotate_refresh(old, new, now, grace_secs)
    }
    fn family_of_refresh(
        &self,
        refresh: TokenHash,
    ) -> BoxFuture<'_, Result<Option<(TokenFamily, bool)>>> {
        (**self).family_of_refresh(refresh)
    }
    fn family<'a>(&'a self, family_id: &'a str) -> BoxFuture<'a, Result<Option<TokenFamily>>> {
        (**self).family(family_id)
    }
    fn revoke_family<'a>(&'a self, family_id: &'a str) -> BoxFuture<'a, Result<()>> {
        (**self).revoke_family(family_id)
    }
    fn save_access(&self, token: TokenHash, record: AccessRecord) -> BoxFuture<'_, Result<()>> {
        (**self).save_access(token, record)
    }
    fn access(&self, token: TokenHash) -> BoxFuture<'_, Result<Option<AccessRecord>>> {
        (**self).access(token)
    }
    fn revoke_access(&self, token: TokenHash) -> BoxFuture<'_, Result<()>> {
        (**self).revoke_access(token)
    }
    fn save_consent(&self, id: TokenHash, consent: PendingConsent) -> BoxFuture<'_, Result<()>> {
        (**self).save_consent(id, consent)
    }
    fn take_consent(&self, id: TokenHash) -> BoxFuture<'_, Result<Option<PendingConsent>>> {
        (**self).take_consent(id)
    }
    fn save_device(
        &self,
        device_code: TokenHash,
        grant: DeviceGrant,
    ) -> BoxFuture<'_, Result<DeviceSave>> {
        (**self).save_device(device_code, grant)
    }
    fn device_by_user_code(
        &self,
        user_code: TokenHash,
    ) -> BoxFuture<'_, Result<Option<DeviceGrant>>> {
        (**self).device_by_user_code(user_code)
    }
    fn answer_device(
        &self,
        user_code: TokenHash,
        answer: DeviceStatus,
        now: u64,
    ) -> BoxFuture<'_, Result<bool>> {
        (**self).answer_device(user_code, answer, now)
    }
    fn poll_device<'a>(
        &'a self,
        device_code: TokenHash,
        client_id: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<DevicePoll>> {
        (**self).poll_device(device_code, client_id, now)
    }
    fn replay_cache(&self) -> Option<std::sync::Arc<dyn crate::dpop::ReplayCache>> {
        (**self).replay_cache()
    }
    fn save_sign_in(&self, id: TokenHash, pending: PendingSignIn) -> BoxFuture<'_, Result<()>> {
        (**self).save_sign_in(id, pending)
    }
    fn take_sign_in(&self, id: TokenHash) -> BoxFuture<'_, Result<Option<PendingSignIn>>> {
        (**self).take_sign_in(id)
    }
    fn save_session(&self, id: TokenHash, session: SignInSession) -> BoxFuture<'_, Result<()>> {
        (**self).save_session(id, session)
    }
    fn session(&self, id: TokenHash) -> BoxFuture<'_, Result<Option<SignInSession>>> {
        (**self).session(id)
    }
    fn end_session(&self, id: TokenHash) -> BoxFuture<'_, Result<()>> {
        (**self).end_session(id)
    }
    fn remember_consent(&self, consent: RememberedConsent) -> BoxFuture<'_, Result<()>> {
        (**self).remember_consent(consent)
    }
    fn remembered_consent<'a>(
        &'a self,
        subject: &'a str,
        client_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<RememberedConsent>>> {
        (**self).remembered_consent(subject, client_id)
    }
    fn forget_consent<'a>(
        &'a self,
        subject: &'a str,
        client_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<()>> {
        (**self).forget_consent(subject, client_id)
    }
    fn save_upstream_tokens<'a>(
        &'a self,
        subject: &'a str,
        tokens: SealedUpstreamTokens,
    ) -> BoxFuture<'a, Result<()>> {
        (**self).save_upstream_tokens(subject, tokens)
    }
    fn upstream_tokens<'a>(
        &'a self,
        subject: &'a str,
    ) -> BoxFuture<'a, Result<Option<SealedUpstreamTokens>>> {
        (**self).upstream_tokens(subject)
    }
}
