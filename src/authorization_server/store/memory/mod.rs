//! [`MemoryAuthorizationStore`]: the store for one process, bounded in everything it keeps.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

mod sign_in;

use super::{
    AccessRecord, AuthorizationStore, CodeGrant, CodeRedemption, DeviceGrant, DevicePoll,
    DeviceSave, DeviceStatus, FamilyStart, PendingConsent, PendingSignIn, RefreshRotation,
    RegisteredClient, RememberedConsent, SealedUpstreamTokens, SignInSession, TokenFamily,
    TokenHash,
};
use crate::error::Result;
use crate::sync::LockExt;
use crate::BoxFuture;

/// How much the [`MemoryAuthorizationStore`] keeps, so that no client (registration is open to
/// anyone) can grow it without bound or push another client's grants out.
#[derive(Debug, Clone, Copy)]
pub struct MemoryStoreLimits {
    /// Registered clients; past it, registration fails (default 10,000).
    pub(crate) max_clients: usize,
    /// Live token families of one client; past it, its oldest family is dropped (default 1,000).
    pub(crate) max_families_per_client: usize,
    /// Live token families in all; past it, the oldest family of the client holding the most
    /// is dropped (default 100,000).
    pub(crate) max_families: usize,
    /// Spent refresh tokens remembered per family for reuse detection (default 16). An older
    /// spent token is then refused as unknown, without revoking the family.
    pub(crate) spent_refresh_per_family: usize,
    /// Access tokens kept live per family: a refresh past it retires the oldest (default 4).
    pub(crate) access_per_family: usize,
    /// Exchanged tokens (RFC 8693) kept live per family, apart from the family's own: past it,
    /// the oldest exchanged one is retired, never the user's token (default 32).
    pub(crate) exchanged_per_family: usize,
    /// Access tokens issued outside a family (`client_credentials`, or no refresh token) kept
    /// live per client (default 100).
    pub(crate) loose_access_per_client: usize,
    /// Authorization codes kept per client, spent ones included (default 100).
    pub(crate) codes_per_client: usize,
}

impl MemoryStoreLimits {
    /// Registered clients; past it, registration fails (default 10,000).
    pub fn max_clients(mut self, max_clients: usize) -> Self {
        self.max_clients = max_clients;
        self
    }

    /// Live token families of one client; past it, its oldest family is dropped (default 1,000).
    pub fn max_families_per_client(mut self, max_families_per_client: usize) -> Self {
        self.max_families_per_client = max_families_per_client;
        self
    }

    /// Live token families in all; past it, the oldest family of the client holding the most
    /// is dropped (default 100,000).
    pub fn max_families(mut self, max_families: usize) -> Self {
        self.max_families = max_families;
        self
    }

    /// Spent refresh tokens remembered per family for reuse detection (default 16). An older
    /// spent token is then refused as unknown, without revoking the family.
    pub fn spent_refresh_per_family(mut self, spent_refresh_per_family: usize) -> Self {
        self.spent_refresh_per_family = spent_refresh_per_family;
        self
    }

    /// Access tokens kept live per family: a refresh past it retires the oldest (default 4).
    pub fn access_per_family(mut self, access_per_family: usize) -> Self {
        self.access_per_family = access_per_family;
        self
    }

    /// Exchanged tokens (RFC 8693) kept live per family, apart from the family's own: past it,
    /// the oldest exchanged one is retired, never the user's token (default 32). With
    /// [`max_families`](Self::max_families), it bounds the access records a full store holds
    /// (`max_families × (access_per_family + exchanged_per_family)`).
    pub fn exchanged_per_family(mut self, exchanged_per_family: usize) -> Self {
        self.exchanged_per_family = exchanged_per_family;
        self
    }

    /// Access tokens issued outside a family (`client_credentials`, or no refresh token) kept
    /// live per client (default 100).
    pub fn loose_access_per_client(mut self, loose_access_per_client: usize) -> Self {
        self.loose_access_per_client = loose_access_per_client;
        self
    }

    /// Authorization codes kept per client, spent ones included (default 100).
    pub fn codes_per_client(mut self, codes_per_client: usize) -> Self {
        self.codes_per_client = codes_per_client;
        self
    }
}

impl Default for MemoryStoreLimits {
    fn default() -> Self {
        Self {
            max_clients: 10_000,
            max_families_per_client: 1_000,
            max_families: 100_000,
            spent_refresh_per_family: 16,
            access_per_family: 4,
            exchanged_per_family: 32,
            loose_access_per_client: 100,
            codes_per_client: 100,
        }
    }
}

/// An in-memory [`AuthorizationStore`]: for one process, lost at exit. Expired codes, families
/// and access records are dropped as new ones are saved, and everything it holds is capped per
/// family, per client and in all ([`MemoryStoreLimits`]).
#[derive(Debug, Default)]
pub struct MemoryAuthorizationStore {
    state: Mutex<MemoryState>,
    limits: MemoryStoreLimits,
    sign_in: sign_in::SignInRecords,
}

#[derive(Debug, Default)]
struct MemoryState {
    clients: HashMap<String, RegisteredClient>,
    codes: HashMap<TokenHash, StoredCode>,
    families: HashMap<String, StoredFamily>,
    refresh: HashMap<TokenHash, String>,
    access: HashMap<TokenHash, AccessRecord>,
    /// What each client holds, oldest first, for the per-client caps.
    holdings: HashMap<String, Holdings>,
    /// Family ids revoked before they were saved, with when to forget them.
    revoked_unsaved: HashMap<String, u64>,
    consents: HashMap<TokenHash, PendingConsent>,
    /// Device authorizations by device code, and the device code of each user code.
    devices: HashMap<TokenHash, DeviceGrant>,
    device_users: HashMap<TokenHash, TokenHash>,
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
    /// When `current` replaced the last spent token.
    rotated_at: u64,
    /// Spent refresh tokens, oldest first.
    spent: VecDeque<TokenHash>,
    /// Live access tokens issued in the family, oldest first.
    access: VecDeque<TokenHash>,
    /// Live tokens exchanged for downstream APIs from the family's tokens, oldest first: apart
    /// from `access`, so exchanges never retire the user's own token.
    exchanged: VecDeque<TokenHash>,
}

/// One client's entries, oldest first. An entry may be gone already (expired, revoked); the
/// sweep drops such ones.
#[derive(Debug, Default)]
struct Holdings {
    codes: VecDeque<TokenHash>,
    families: VecDeque<String>,
    loose_access: VecDeque<TokenHash>,
}

impl Holdings {
    fn is_empty(&self) -> bool {
        self.codes.is_empty() && self.families.is_empty() && self.loose_access.is_empty()
    }
}

/// Spent codes are remembered this long after expiring, to detect a late reuse.
const SPENT_CODE_MEMORY_SECS: u64 = 600;
/// How long a revocation of a family not saved yet is kept: longer than any redemption takes.
const UNSAVED_REVOCATION_SECS: u64 = 3_600;
const SWEEP_EVERY: usize = 256;
/// Most consent pages open at once.
const MAX_CONSENTS: usize = 2_000;
/// Consent pages one client may have waiting: a user rarely has more than a few tabs open.
const MAX_CONSENTS_PER_CLIENT: usize = 16;
/// Most device authorizations waiting at once.
const MAX_DEVICES: usize = 2_000;
/// Device authorizations one client may have waiting: a client id may be shared by everyone
/// who runs one program.
const MAX_DEVICES_PER_CLIENT: usize = 500;

impl MemoryAuthorizationStore {
    /// An empty store with the default [`MemoryStoreLimits`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets what the store keeps at most.
    pub fn limits(mut self, limits: MemoryStoreLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The most clients kept.
    pub fn client_limit(mut self, max_clients: usize) -> Self {
        self.limits.max_clients = max_clients;
        self
    }

    fn with<T>(&self, f: impl FnOnce(&mut MemoryState, &MemoryStoreLimits) -> T) -> T {
        let mut state = self.state.locked();
        f(&mut state, &self.limits)
    }
}

impl MemoryState {
    fn sweep_now_and_then(&mut self) {
        self.saves_since_sweep += 1;
        if self.saves_since_sweep < SWEEP_EVERY {
            return;
        }
        self.saves_since_sweep = 0;
        let now = crate::clock::now_secs();
        self.codes
            .retain(|_, c| c.grant.expires_at + SPENT_CODE_MEMORY_SECS > now);
        self.access.retain(|_, a| a.expires_at > now);
        self.families.retain(|_, f| f.family.expires_at > now);
        self.revoked_unsaved.retain(|_, forget_at| *forget_at > now);
        // Kept a while past expiry, so a late poll hears `expired_token`.
        self.devices
            .retain(|_, d| d.expires_at + SPENT_CODE_MEMORY_SECS > now);
        let devices = &self.devices;
        self.device_users
            .retain(|_, code| devices.contains_key(code));
        let (codes, families, access) = (&self.codes, &self.families, &self.access);
        self.refresh.retain(|_, id| families.contains_key(id));
        self.holdings.retain(|_, held| {
            held.codes.retain(|code| codes.contains_key(code));
            held.families.retain(|id| families.contains_key(id));
            held.loose_access.retain(|token| access.contains_key(token));
            !held.is_empty()
        });
        for stored in self.families.values_mut() {
            stored.access.retain(|token| access.contains_key(token));
            stored.exchanged.retain(|token| access.contains_key(token));
        }
    }

    fn holdings(&mut self, client_id: &str) -> &mut Holdings {
        self.holdings.entry(client_id.to_owned()).or_default()
    }

    /// Drops a family with every token it holds.
    fn drop_family(&mut self, family_id: &str) {
        if let Some(stored) = self.families.remove(family_id) {
            self.refresh.remove(&stored.current);
            for spent in &stored.spent {
                self.refresh.remove(spent);
            }
            for token in stored.access.iter().chain(&stored.exchanged) {
                self.access.remove(token);
            }
        }
    }

    /// Makes room for one more family of `client_id`: its own oldest past its cap, then the
    /// oldest of the client holding the most when the store is full.
    fn make_room_for_family(&mut self, client_id: &str, limits: &MemoryStoreLimits) {
        while self.holdings(client_id).families.len() >= limits.max_families_per_client.max(1) {
            match self.holdings(client_id).families.pop_front() {
                Some(oldest) => self.drop_family(&oldest),
                None => break,
            }
        }
        while self.families.len() >= limits.max_families.max(1) {
            let Some(largest) = self
                .holdings
                .iter()
                .max_by_key(|(_, held)| held.families.len())
                .map(|(id, _)| id.clone())
            else {
                break;
            };
            match self.holdings(&largest).families.pop_front() {
                Some(oldest) => self.drop_family(&oldest),
                None => break,
            }
        }
    }

    fn revoke_family(&mut self, family_id: &str, now: u64) {
        match self.families.get_mut(family_id) {
            Some(stored) => {
                stored.family.revoked = true;
                let exchanged = std::mem::take(&mut stored.exchanged);
                for token in std::mem::take(&mut stored.access)
                    .into_iter()
                    .chain(exchanged)
                {
                    self.access.remove(&token);
                }
            }
            None => {
                self.revoked_unsaved
                    .insert(family_id.to_owned(), now + UNSAVED_REVOCATION_SECS);
            }
        }
    }
}

impl MemoryState {
    /// One client's pages push out only its own: its oldest past its share, then, when the
    /// store is full, the oldest of the client holding the most.
    fn make_room_for_consent(&mut self, client_id: &str, now: u64) {
        if self.consents.len() >= MAX_CONSENTS {
            self.consents.retain(|_, c| c.expires_at > now);
        }
        let held = |consents: &HashMap<TokenHash, PendingConsent>, client: &str| {
            consents.values().filter(|c| c.client_id == client).count()
        };
        if held(&self.consents, client_id) >= MAX_CONSENTS_PER_CLIENT {
            self.drop_oldest_consent_of(client_id);
        }
        if self.consents.len() >= MAX_CONSENTS {
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for consent in self.consents.values() {
                *counts.entry(consent.client_id.as_str()).or_default() += 1;
            }
            if let Some((largest, _)) = counts.into_iter().max_by_key(|(_, count)| *count) {
                let largest = largest.to_owned();
                self.drop_oldest_consent_of(&largest);
            }
        }
    }

    fn drop_oldest_consent_of(&mut self, client_id: &str) {
        let oldest = self
            .consents
            .iter()
            .filter(|(_, c)| c.client_id == client_id)
            .min_by_key(|(_, c)| c.expires_at)
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.consents.remove(&id);
        }
    }
}

impl MemoryState {
    /// Whether one more device authorization of `client_id` fits, once expired ones are gone
    /// and, when the store is full, the largest holder's oldest waiting one.
    fn has_room_for_device(&mut self, client_id: &str, now: u64) -> bool {
        if self.devices.len() >= MAX_DEVICES {
            let expired: Vec<TokenHash> = self
                .devices
                .iter()
                .filter(|(_, d)| d.expires_at <= now)
                .map(|(code, _)| *code)
                .collect();
            for code in expired {
                self.forget_device(code);
            }
        }
        let held = self
            .devices
            .values()
            .filter(|d| d.client_id == client_id && d.expires_at > now)
            .count();
        if held >= MAX_DEVICES_PER_CLIENT {
            return false;
        }
        if self.devices.len() >= MAX_DEVICES {
            // Full: the client holding the most unapproved authorizations (waiting or denied)
            // loses its oldest, so a few flooding clients never keep out the others. One a user
            // approved is never dropped for room.
            let droppable = |d: &DeviceGrant| !matches!(d.status, DeviceStatus::Approved { .. });
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for device in self.devices.values().filter(|d| droppable(d)) {
                *counts.entry(device.client_id.as_str()).or_default() += 1;
            }
            let largest = counts
                .into_iter()
                .max_by_key(|(_, count)| *count)
                .map(|(client, _)| client.to_owned());
            let oldest_waiting = largest.and_then(|largest| {
                self.devices
                    .iter()
                    .filter(|(_, d)| d.client_id == largest && droppable(d))
                    .min_by_key(|(_, d)| d.expires_at)
                    .map(|(code, _)| *code)
            });
            match oldest_waiting {
                Some(code) => self.forget_device(code),
                None => return false,
            }
        }
        true
    }

    fn forget_device(&mut self, device_code: TokenHash) {
        if let Some(device) = self.devices.remove(&device_code) {
            self.device_users.remove(&device.user_code);
        }
    }
}

/// Pushes `entry` onto `queue`, first dropping (with `remove`) the oldest entries past `max`.
fn push_capped<T>(queue: &mut VecDeque<T>, entry: T, max: usize, mut remove: impl FnMut(T)) {
    while queue.len() >= max.max(1) {
        match queue.pop_front() {
            Some(oldest) => remove(oldest),
            None => break,
        }
    }
    queue.push_back(entry);
}

fn ready<T: Send + 'static>(value: T) -> BoxFuture<'static, T> {
    Box::pin(std::future::ready(value))
}

impl AuthorizationStore for MemoryAuthorizationStore {
    fn save_client(&self, client: RegisteredClient) -> BoxFuture<'_, Result<()>> {
        let saved = self.with(|s, limits| {
            if s.clients.len() >= limits.max_clients && !s.clients.contains_key(&client.client_id) {
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
        ready(Ok(self.with(|s, _| s.clients.get(client_id).cloned())))
    }

    fn save_code(&self, code: TokenHash, grant: CodeGrant) -> BoxFuture<'_, Result<()>> {
        self.with(|s, limits| {
            s.sweep_now_and_then();
            let MemoryState {
                codes, holdings, ..
            } = s;
            let held = holdings.entry(grant.client_id.clone()).or_default();
            push_capped(&mut held.codes, code, limits.codes_per_client, |oldest| {
                codes.remove(&oldest);
            });
            codes.insert(
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
        let outcome = self.with(|s, _| match s.codes.get_mut(&code) {
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

    fn save_family(
        &self,
        family: TokenFamily,
        refresh: TokenHash,
    ) -> BoxFuture<'_, Result<FamilyStart>> {
        let start = self.with(|s, limits| {
            s.sweep_now_and_then();
            if s.revoked_unsaved.contains_key(&family.id) {
                return FamilyStart::Revoked;
            }
            s.make_room_for_family(&family.client_id, limits);
            s.holdings(&family.client_id)
                .families
                .push_back(family.id.clone());
            s.refresh.insert(refresh, family.id.clone());
            s.families.insert(
                family.id.clone(),
                StoredFamily {
                    family,
                    current: refresh,
                    rotated_at: 0,
                    spent: VecDeque::new(),
                    access: VecDeque::new(),
                    exchanged: VecDeque::new(),
                },
            );
            FamilyStart::Started
        });
        ready(Ok(start))
    }

    fn rotate_refresh(
        &self,
        old: TokenHash,
        new: TokenHash,
        now: u64,
        grace_secs: u64,
    ) -> BoxFuture<'_, Result<RefreshRotation>> {
        let outcome = self.with(|s, limits| {
            let Some(family_id) = s.refresh.get(&old).cloned() else {
                return RefreshRotation::Invalid;
            };
            let Some(stored) = s.families.get_mut(&family_id) else {
                return RefreshRotation::Invalid;
            };
            if stored.family.revoked || stored.family.expires_at <= now {
                return RefreshRotation::Invalid;
            }
            let repeated = grace_secs > 0
                && stored.spent.back() == Some(&old)
                && stored.current == new
                && now <= stored.rotated_at.saturating_add(grace_secs);
            if stored.current != old && repeated {
                return RefreshRotation::Repeated(stored.family.clone());
            }
            if stored.current != old {
                let family = stored.family.clone();
                s.revoke_family(&family_id, now);
                return RefreshRotation::Reused(TokenFamily {
                    revoked: true,
                    ..family
                });
            }
            stored.current = new;
            stored.rotated_at = now;
            let family = stored.family.clone();
            let mut forgotten = Vec::new();
            push_capped(
                &mut stored.spent,
                old,
                limits.spent_refresh_per_family,
                |oldest| forgotten.push(oldest),
            );
            for oldest in forgotten {
                s.refresh.remove(&oldest);
            }
            s.refresh.insert(new, family_id);
            RefreshRotation::Rotated(family)
        });
        ready(Ok(outcome))
    }

    fn family_of_refresh(
        &self,
        refresh: TokenHash,
    ) -> BoxFuture<'_, Result<Option<(TokenFamily, bool)>>> {
        let family = self.with(|s, _| {
            let id = s.refresh.get(&refresh)?;
            s.families
                .get(id)
                .map(|f| (f.family.clone(), f.current == refresh))
        });
        ready(Ok(family))
    }

    fn family<'a>(&'a self, family_id: &'a str) -> BoxFuture<'a, Result<Option<TokenFamily>>> {
        ready(Ok(self.with(|s, _| {
            s.families.get(family_id).map(|f| f.family.clone())
        })))
    }

    fn revoke_family<'a>(&'a self, family_id: &'a str) -> BoxFuture<'a, Result<()>> {
        self.with(|s, _| s.revoke_family(family_id, crate::clock::now_secs()));
        ready(Ok(()))
    }

    fn save_access(&self, token: TokenHash, record: AccessRecord) -> BoxFuture<'_, Result<()>> {
        self.with(|s, limits| {
            s.sweep_now_and_then();
            let MemoryState {
                families,
                access,
                holdings,
                ..
            } = s;
            let family = record
                .family_id
                .as_deref()
                .and_then(|id| families.get_mut(id));
            let queue = match family {
                Some(stored) if stored.family.revoked => return,
                Some(stored) if record.act.is_some() => {
                    (&mut stored.exchanged, limits.exchanged_per_family)
                }
                Some(stored) => (&mut stored.access, limits.access_per_family),
                None => (
                    &mut holdings
                        .entry(record.client_id.clone())
                        .or_default()
                        .loose_access,
                    limits.loose_access_per_client,
                ),
            };
            push_capped(queue.0, token, queue.1, |oldest| {
                access.remove(&oldest);
            });
            access.insert(token, record);
        });
        ready(Ok(()))
    }

    fn access(&self, token: TokenHash) -> BoxFuture<'_, Result<Option<AccessRecord>>> {
        ready(Ok(self.with(|s, _| s.access.get(&token).cloned())))
    }

    fn save_consent(&self, id: TokenHash, consent: PendingConsent) -> BoxFuture<'_, Result<()>> {
        self.with(|s, _| {
            s.make_room_for_consent(&consent.client_id, crate::clock::now_secs());
            s.consents.insert(id, consent);
        });
        ready(Ok(()))
    }

    fn take_consent(&self, id: TokenHash) -> BoxFuture<'_, Result<Option<PendingConsent>>> {
        ready(Ok(self.with(|s, _| s.consents.remove(&id))))
    }

    fn revoke_access(&self, token: TokenHash) -> BoxFuture<'_, Result<()>> {
        self.with(|s, _| s.access.remove(&token));
        ready(Ok(()))
    }

    fn save_device(
        &self,
        device_code: TokenHash,
        grant: DeviceGrant,
    ) -> BoxFuture<'_, Result<DeviceSave>> {
        let saved = self.with(|s, _| {
            let now = crate::clock::now_secs();
            if let Some(holder) = s.device_users.get(&grant.user_code).copied() {
                if s.devices.get(&holder).is_some_and(|d| d.expires_at > now) {
                    return DeviceSave::UserCodeTaken;
                }
                s.forget_device(holder);
            }
            if !s.has_room_for_device(&grant.client_id, now) {
                return DeviceSave::Full;
            }
            s.device_users.insert(grant.user_code, device_code);
            s.devices.insert(device_code, grant);
            DeviceSave::Saved
        });
        ready(Ok(saved))
    }

    fn device_by_user_code(
        &self,
        user_code: TokenHash,
    ) -> BoxFuture<'_, Result<Option<DeviceGrant>>> {
        ready(Ok(self.with(|s, _| {
            let device_code = s.device_users.get(&user_code)?;
            s.devices.get(device_code).cloned()
        })))
    }

    fn answer_device(
        &self,
        user_code: TokenHash,
        answer: DeviceStatus,
        now: u64,
    ) -> BoxFuture<'_, Result<bool>> {
        let answered = self.with(|s, _| {
            let Some(device_code) = s.device_users.get(&user_code) else {
                return false;
            };
            match s.devices.get_mut(device_code) {
                Some(device)
                    if device.status == DeviceStatus::Pending && device.expires_at > now =>
                {
                    device.status = answer;
                    true
                }
                _ => false,
            }
        });
        ready(Ok(answered))
    }

    fn poll_device<'a>(
        &'a self,
        device_code: TokenHash,
        client_id: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<DevicePoll>> {
        let outcome = self.with(|s, _| {
            let Some(device) = s.devices.get_mut(&device_code) else {
                return DevicePoll::Unknown;
            };
            if device.client_id != client_id {
                return DevicePoll::Unknown;
            }
            let outcome = device.poll(now);
            if !matches!(outcome, DevicePoll::Pending | DevicePoll::SlowDown) {
                s.forget_device(device_code);
            }
            outcome
        });
        ready(Ok(outcome))
    }
    fn save_sign_in(&self, id: TokenHash, pending: PendingSignIn) -> BoxFuture<'_, Result<()>> {
        self.sign_in.save_pending(id, pending);
        ready(Ok(()))
    }
    fn take_sign_in(&self, id: TokenHash) -> BoxFuture<'_, Result<Option<PendingSignIn>>> {
        ready(Ok(self.sign_in.take_pending(id)))
    }
    fn save_session(&self, id: TokenHash, session: SignInSession) -> BoxFuture<'_, Result<()>> {
        self.sign_in.save_session(id, session);
        ready(Ok(()))
    }
    fn session(&self, id: TokenHash) -> BoxFuture<'_, Result<Option<SignInSession>>> {
        ready(Ok(self.sign_in.session(id)))
    }
    fn end_session(&self, id: TokenHash) -> BoxFuture<'_, Result<()>> {
        self.sign_in.end_session(id);
        ready(Ok(()))
    }
    fn remember_consent(&self, consent: RememberedConsent) -> BoxFuture<'_, Result<()>> {
        self.sign_in.remember(consent);
        ready(Ok(()))
    }
    fn remembered_consent<'a>(
        &'a self,
        subject: &'a str,
        client_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<RememberedConsent>>> {
        ready(Ok(self.sign_in.remembered(subject, client_id)))
    }
    fn forget_consent<'a>(
        &'a self,
        subject: &'a str,
        client_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<()>> {
        self.sign_in.forget(subject, client_id);
        ready(Ok(()))
    }
    fn save_upstream_tokens<'a>(
        &'a self,
        subject: &'a str,
        tokens: SealedUpstreamTokens,
    ) -> BoxFuture<'a, Result<()>> {
        ready(self.sign_in.save_tokens(subject, tokens))
    }
    fn upstream_tokens<'a>(
        &'a self,
        subject: &'a str,
    ) -> BoxFuture<'a, Result<Option<SealedUpstreamTokens>>> {
        ready(Ok(self.sign_in.tokens(subject)))
    }
}

#[cfg(test)]
mod tests;
