//! The memory store's upstream sign-in records: bounded, expired ones swept on the way.

use std::collections::HashMap;
use std::sync::Mutex;

use super::super::{
    PendingSignIn, RememberedConsent, SealedUpstreamTokens, SignInSession, TokenHash,
};
use crate::clock::now_secs;
use crate::error::{Error, ErrorKind, Result};
use crate::sync::LockExt;

/// Sign-ins waiting for the provider at once: past it, the one expiring first goes.
const MAX_PENDING: usize = 2_000;
/// Live sessions: past it, the one expiring first goes (its user signs in again).
const MAX_SESSIONS: usize = 100_000;
/// Remembered consents: past it, the one expiring first is forgotten.
const MAX_CONSENTS: usize = 100_000;
/// Kept upstream tokens: past it, saving fails (a user's tokens are not dropped silently).
const MAX_USER_RECORDS: usize = 100_000;

#[derive(Debug, Default)]
pub(super) struct SignInRecords(Mutex<State>);

#[derive(Debug, Default)]
struct State {
    pending: HashMap<TokenHash, PendingSignIn>,
    sessions: HashMap<TokenHash, SignInSession>,
    consents: HashMap<(String, String), RememberedConsent>,
    tokens: HashMap<String, SealedUpstreamTokens>,
}

fn full(what: &str) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("the memory authorization store holds as many {what} as it may; use PostgreSQL"),
    )
}

/// Makes room for one more entry in `map`: expired entries go, then the one expiring first.
fn make_room<K: Clone + Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    max: usize,
    expires_at: impl Fn(&V) -> u64,
) {
    if map.len() < max {
        return;
    }
    let now = now_secs();
    map.retain(|_, v| expires_at(v) > now);
    if map.len() >= max {
        if let Some(first) = map
            .iter()
            .min_by_key(|(_, v)| expires_at(v))
            .map(|(k, _)| k.clone())
        {
            map.remove(&first);
        }
    }
}

impl SignInRecords {
    pub(super) fn save_pending(&self, id: TokenHash, pending: PendingSignIn) {
        let mut state = self.0.locked();
        make_room(&mut state.pending, MAX_PENDING, |p| p.consent.expires_at);
        state.pending.insert(id, pending);
    }

    pub(super) fn take_pending(&self, id: TokenHash) -> Option<PendingSignIn> {
        self.0
            .locked()
            .pending
            .remove(&id)
            .filter(|p| p.consent.expires_at > now_secs())
    }

    pub(super) fn save_session(&self, id: TokenHash, session: SignInSession) {
        let mut state = self.0.locked();
        make_room(&mut state.sessions, MAX_SESSIONS, |s| s.expires_at);
        state.sessions.insert(id, session);
    }

    pub(super) fn session(&self, id: TokenHash) -> Option<SignInSession> {
        let mut state = self.0.locked();
        match state.sessions.get(&id) {
            Some(session) if session.expires_at > now_secs() => Some(session.clone()),
            Some(_) => {
                state.sessions.remove(&id);
                None
            }
            None => None,
        }
    }

    pub(super) fn end_session(&self, id: TokenHash) {
        self.0.locked().sessions.remove(&id);
    }

    pub(super) fn remember(&self, consent: RememberedConsent) {
        let mut state = self.0.locked();
        let key = (consent.subject.clone(), consent.client_id.clone());
        if !state.consents.contains_key(&key) {
            // Full: the consent expiring first is forgotten (its user is asked again).
            make_room(&mut state.consents, MAX_CONSENTS, |c| c.expires_at);
        }
        state.consents.insert(key, consent);
    }

    pub(super) fn remembered(&self, subject: &str, client_id: &str) -> Option<RememberedConsent> {
        let state = self.0.locked();
        state
            .consents
            .get(&(subject.to_owned(), client_id.to_owned()))
            .filter(|c| c.expires_at > now_secs())
            .cloned()
    }

    pub(super) fn forget(&self, subject: &str, client_id: Option<&str>) {
        self.0
            .locked()
            .consents
            .retain(|(s, c), _| s != subject || client_id.is_some_and(|id| id != c));
    }

    pub(super) fn save_tokens(&self, subject: &str, tokens: SealedUpstreamTokens) -> Result<()> {
        let mut state = self.0.locked();
        if state.tokens.len() >= MAX_USER_RECORDS && !state.tokens.contains_key(subject) {
            return Err(full("upstream tokens"));
        }
        state.tokens.insert(subject.to_owned(), tokens);
        Ok(())
    }

    pub(super) fn tokens(&self, subject: &str) -> Option<SealedUpstreamTokens> {
        self.0.locked().tokens.get(subject).cloned()
    }
}
