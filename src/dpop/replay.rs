//! [`ReplayCache`]: the proofs a server accepted, so none is accepted twice; and
//! [`MemoryReplayCache`], the bounded one-process kind.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::Mutex;

use crate::error::Result;
use crate::sync::LockExt;
use crate::BoxFuture;

#[cfg(doc)]
use super::VerifiedProof;

/// Remembers the proofs a server has accepted, so none is accepted twice (RFC 9449 §11.1).
/// Behind a trait so that replicas can share one (a database); [`MemoryReplayCache`] is the
/// one-process implementation.
pub trait ReplayCache: Send + Sync + 'static {
    /// Records proof `id` ([`VerifiedProof::replay_id`]), which stops being acceptable at
    /// `expires_at`. `Ok(true)` when it is new; `Ok(false)` when it was seen before, or when
    /// the cache can no longer vouch for proofs that old (see [`MemoryReplayCache`]).
    ///
    /// # Errors
    /// When the cache cannot answer (a shared store down); the proof is then refused.
    fn first_use(&self, id: [u8; 16], expires_at: u64, now: u64) -> BoxFuture<'_, Result<bool>>;
}

impl<C: ReplayCache + ?Sized> ReplayCache for std::sync::Arc<C> {
    fn first_use(&self, id: [u8; 16], expires_at: u64, now: u64) -> BoxFuture<'_, Result<bool>> {
        (**self).first_use(id, expires_at, now)
    }
}

/// A bounded in-memory [`ReplayCache`].
///
/// Entries leave when their proof expires. When the cache is full of live entries it drops the
/// one closest to expiry and from then on refuses every proof that would expire no later than
/// the dropped one: a proof it forgot can never come back, because the window closes behind
/// it. Under a flood the acceptance window shrinks (new proofs, made just now, still pass);
/// memory never grows past `capacity` entries.
pub struct MemoryReplayCache {
    capacity: usize,
    state: Mutex<ReplayState>,
}

#[derive(Default)]
struct ReplayState {
    seen: HashSet<[u8; 16], foldhash::fast::RandomState>,
    by_expiry: BTreeSet<(u64, [u8; 16])>,
    /// Proofs expiring at or before this were (or may have been) forgotten: refused.
    floor: u64,
}

impl fmt::Debug for MemoryReplayCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryReplayCache")
            .field("capacity", &self.capacity)
            .field("entries", &self.len())
            .finish()
    }
}

/// How many proofs [`MemoryReplayCache::default`] remembers.
pub const DEFAULT_REPLAY_CAPACITY: usize = 100_000;

impl Default for MemoryReplayCache {
    fn default() -> Self {
        Self::new(DEFAULT_REPLAY_CAPACITY)
    }
}

impl MemoryReplayCache {
    /// A cache of at most `capacity` proofs (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            state: Mutex::new(ReplayState::default()),
        }
    }

    /// How many proofs it holds now.
    pub fn len(&self) -> usize {
        self.state.locked().seen.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The synchronous check behind [`ReplayCache::first_use`].
    pub fn check(&self, id: [u8; 16], expires_at: u64, now: u64) -> bool {
        let mut state = self.state.locked();
        while let Some(&(at, old)) = state.by_expiry.first() {
            if at > now {
                break;
            }
            state.by_expiry.pop_first();
            state.seen.remove(&old);
        }
        if expires_at <= state.floor.max(now) || state.seen.contains(&id) {
            return false;
        }
        if state.seen.len() >= self.capacity {
            if let Some((at, old)) = state.by_expiry.pop_first() {
                state.seen.remove(&old);
                state.floor = state.floor.max(at);
            }
            if expires_at <= state.floor {
                return false;
            }
        }
        state.seen.insert(id);
        state.by_expiry.insert((expires_at, id));
        true
    }
}

impl ReplayCache for MemoryReplayCache {
    fn first_use(&self, id: [u8; 16], expires_at: u64, now: u64) -> BoxFuture<'_, Result<bool>> {
        Box::pin(std::future::ready(Ok(self.check(id, expires_at, now))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_cache_refuses_a_second_use_and_stays_bounded_when_full() {
        let cache = MemoryReplayCache::new(3);
        let now = 1_000;
        assert!(cache.check([1; 16], now + 300, now));
        assert!(!cache.check([1; 16], now + 300, now), "a replay");
        assert!(cache.check([2; 16], now + 290, now));
        assert!(cache.check([3; 16], now + 295, now));
        // Full: the entry closest to expiry (2, at +290) is dropped and the window closes behind it.
        assert!(cache.check([4; 16], now + 300, now));
        assert_eq!(cache.len(), 3);
        assert!(
            !cache.check([2; 16], now + 290, now),
            "a forgotten proof is still refused"
        );
        assert!(
            !cache.check([5; 16], now + 290, now),
            "as is anything as old"
        );
        assert!(
            !cache.check([1; 16], now + 300, now),
            "live entries are still remembered"
        );
        // Once the entries expire they go, and new proofs pass again.
        assert!(cache.check([6; 16], now + 700, now + 400));
        assert_eq!(cache.len(), 1);
        assert!(
            !cache.check([7; 16], now + 10, now + 20),
            "expired proofs never enter"
        );
    }
}
