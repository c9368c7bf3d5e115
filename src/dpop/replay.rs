//! [`ReplayCache`]: the proofs a server accepted, so none is accepted twice; and
//! [`MemoryReplayCache`], the bounded one-process kind, fair between owners.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

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
    /// `owner` is who vouched for the id, already authenticated: the client at an
    /// authorization server, the token's key at a resource server, the issuer of an assertion.
    /// A bounded cache makes room from the owner holding the most, so one owner's flood never
    /// pushes out another's proofs. A live id is refused whoever presents it; one an owner's
    /// flood pushed out stays refused to that owner.
    ///
    /// # Errors
    /// When the cache cannot answer (a shared store down); the proof is then refused.
    fn first_use<'a>(
        &'a self,
        owner: &'a str,
        id: [u8; 16],
        expires_at: u64,
        now: u64,
    ) -> BoxFuture<'a, Result<bool>>;
}

impl<C: ReplayCache + ?Sized> ReplayCache for std::sync::Arc<C> {
    fn first_use<'a>(
        &'a self,
        owner: &'a str,
        id: [u8; 16],
        expires_at: u64,
        now: u64,
    ) -> BoxFuture<'a, Result<bool>> {
        (**self).first_use(owner, id, expires_at, now)
    }
}

/// A bounded in-memory [`ReplayCache`], fair between owners.
///
/// Entries leave when their proof expires. When the cache is full of live entries it makes
/// room from the owner holding the most: it drops that owner's entry closest to expiry and
/// from then on refuses that owner's proofs expiring no later than the dropped one, so a
/// forgotten proof can never come back. A flooding owner thus narrows only its own window;
/// everyone else's proofs, old and new, are still remembered and still accepted. An owner
/// whose every entry was dropped leaves its floor to the owners the cache holds nothing of,
/// until that floor passes. Memory never grows past `capacity` entries.
pub struct MemoryReplayCache {
    capacity: usize,
    state: Mutex<ReplayState>,
}

#[derive(Default)]
struct ReplayState {
    /// Every live id, with its owner: a replay is refused whoever presents it.
    seen: HashMap<[u8; 16], Arc<str>, foldhash::fast::RandomState>,
    by_expiry: BTreeSet<(u64, [u8; 16])>,
    owners: HashMap<Arc<str>, Owner, foldhash::fast::RandomState>,
    /// Owners by how many entries they hold, to find the largest.
    by_size: BTreeSet<(usize, Arc<str>)>,
    /// The floor of owners the cache holds nothing of (see [`Owner::floor`]).
    orphan_floor: u64,
}

struct Owner {
    entries: BTreeSet<(u64, [u8; 16])>,
    /// Its proofs expiring at or before this were (or may have been) forgotten: refused.
    floor: u64,
}

impl ReplayState {
    fn floor_of(&self, owner: &str) -> u64 {
        self.owners
            .get(owner)
            .map_or(self.orphan_floor, |record| record.floor)
    }

    fn insert(&mut self, owner: &str, id: [u8; 16], expires_at: u64) {
        let name: Arc<str> = match self.owners.get_key_value(owner) {
            Some((name, _)) => name.clone(),
            None => {
                let name: Arc<str> = Arc::from(owner);
                let record = Owner {
                    entries: BTreeSet::new(),
                    floor: self.orphan_floor,
                };
                self.owners.insert(name.clone(), record);
                name
            }
        };
        let record = self.owners.get_mut(&name).expect("inserted above");
        let size = record.entries.len();
        record.entries.insert((expires_at, id));
        if size > 0 {
            self.by_size.remove(&(size, name.clone()));
        }
        self.by_size.insert((size + 1, name.clone()));
        self.by_expiry.insert((expires_at, id));
        self.seen.insert(id, name);
    }

    /// Forgets entry `(at, id)` of `name`; with `floor`, the owner's window closes behind it.
    fn remove(&mut self, name: &Arc<str>, at: u64, id: [u8; 16], raise_floor: bool) {
        self.seen.remove(&id);
        self.by_expiry.remove(&(at, id));
        let Some(record) = self.owners.get_mut(name) else {
            return;
        };
        let size = record.entries.len();
        record.entries.remove(&(at, id));
        if raise_floor {
            record.floor = record.floor.max(at);
        }
        self.by_size.remove(&(size, name.clone()));
        if record.entries.is_empty() {
            let floor = record.floor;
            self.owners.remove(name);
            self.orphan_floor = self.orphan_floor.max(floor);
        } else {
            self.by_size.insert((size - 1, name.clone()));
        }
    }

    fn drop_expired(&mut self, now: u64) {
        while let Some(&(at, id)) = self.by_expiry.first() {
            if at > now {
                break;
            }
            match self.seen.get(&id).cloned() {
                Some(name) => self.remove(&name, at, id, false),
                None => {
                    self.by_expiry.pop_first();
                }
            }
        }
    }

    /// Makes room for one entry: from the owner holding the most, its entry closest to expiry.
    fn evict_one(&mut self) {
        let Some((_, name)) = self.by_size.last().cloned() else {
            return;
        };
        let first = self
            .owners
            .get(&name)
            .and_then(|record| record.entries.first().copied());
        if let Some((at, id)) = first {
            self.remove(&name, at, id, true);
        }
    }
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
    pub fn check(&self, owner: &str, id: [u8; 16], expires_at: u64, now: u64) -> bool {
        let mut state = self.state.locked();
        state.drop_expired(now);
        if expires_at <= state.floor_of(owner).max(now) || state.seen.contains_key(&id) {
            return false;
        }
        if state.seen.len() >= self.capacity {
            state.evict_one();
            if expires_at <= state.floor_of(owner) {
                return false;
            }
        }
        state.insert(owner, id, expires_at);
        true
    }
}

impl ReplayCache for MemoryReplayCache {
    fn first_use<'a>(
        &'a self,
        owner: &'a str,
        id: [u8; 16],
        expires_at: u64,
        now: u64,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(std::future::ready(Ok(
            self.check(owner, id, expires_at, now)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_cache_refuses_a_second_use_and_stays_bounded_when_full() {
        let cache = MemoryReplayCache::new(3);
        let now = 1_000;
        assert!(cache.check("a", [1; 16], now + 300, now));
        assert!(!cache.check("a", [1; 16], now + 300, now), "a replay");
        assert!(cache.check("a", [2; 16], now + 290, now));
        assert!(cache.check("a", [3; 16], now + 295, now));
        // Full: the entry closest to expiry (2, at +290) is dropped and the window closes behind it.
        assert!(cache.check("a", [4; 16], now + 300, now));
        assert_eq!(cache.len(), 3);
        assert!(
            !cache.check("a", [2; 16], now + 290, now),
            "a forgotten proof is still refused"
        );
        assert!(
            !cache.check("a", [5; 16], now + 290, now),
            "as is anything as old"
        );
        assert!(
            !cache.check("a", [1; 16], now + 300, now),
            "live entries are still remembered"
        );
        // Once the entries expire they go, and new proofs pass again.
        assert!(cache.check("a", [6; 16], now + 700, now + 400));
        assert_eq!(cache.len(), 1);
        assert!(
            !cache.check("a", [7; 16], now + 10, now + 20),
            "expired proofs never enter"
        );
    }

    #[test]
    fn a_flooding_owner_pushes_out_only_its_own_proofs() {
        let cache = MemoryReplayCache::new(100);
        let now = 1_000;
        // An honest owner's proofs, one a minute ago and one now.
        assert!(cache.check("honest", [1; 16], now - 60 + 300, now));
        // A flood dated as far ahead as a proof may be (iat now + 60), ten times the capacity.
        for n in 0..1_000u32 {
            let mut id = [9; 16];
            id[..4].copy_from_slice(&n.to_le_bytes());
            cache.check("flooder", id, now + 360, now);
        }
        assert!(cache.len() <= 100);
        assert!(
            !cache.check("honest", [1; 16], now - 60 + 300, now),
            "still remembered"
        );
        assert!(
            cache.check("honest", [2; 16], now + 300, now),
            "a new proof passes"
        );
        assert!(
            cache.check("newcomer", [3; 16], now + 300, now),
            "so does a newcomer's"
        );
        // The flooder's window closed behind what it lost.
        assert!(!cache.check("flooder", [4; 16], now + 300, now));
        assert!(cache.len() <= 100);
    }

    #[test]
    fn a_replay_is_refused_whoever_presents_it() {
        let cache = MemoryReplayCache::new(10);
        assert!(cache.check("a", [1; 16], 1_300, 1_000));
        assert!(!cache.check("b", [1; 16], 1_300, 1_000));
    }

    #[test]
    fn an_owner_dropped_whole_leaves_its_floor_to_unknown_owners() {
        let cache = MemoryReplayCache::new(2);
        assert!(cache.check("a", [1; 16], 1_300, 1_000));
        assert!(cache.check("b", [2; 16], 1_310, 1_000));
        // Full: one of the two single-entry owners loses its entry, and its floor stays.
        assert!(cache.check("c", [3; 16], 1_320, 1_000));
        assert_eq!(cache.len(), 2);
        let replays = [("a", [1; 16], 1_300), ("b", [2; 16], 1_310)];
        for (owner, id, expires_at) in replays {
            assert!(
                !cache.check(owner, id, expires_at, 1_000),
                "{owner}'s proof"
            );
            assert!(
                !cache.check("d", id, expires_at, 1_000),
                "{owner}'s proof under another name"
            );
        }
    }

    proptest::proptest! {
        /// Whatever the order of checks, the cache stays bounded and never accepts an id
        /// twice while it is live (an id comes with one owner and one expiry, as a proof's do).
        #[test]
        fn never_twice_and_bounded(
            checks in proptest::collection::vec((0u8..40, 0u64..120, 0u64..60), 1..400)
        ) {
            let cache = MemoryReplayCache::new(8);
            let mut accepted = std::collections::HashMap::new();
            let mut now = 1_000;
            let mut expiry_of = std::collections::HashMap::new();
            for (id, ttl, step) in checks {
                now += step / 20;
                // A proof's id comes with its expiry, fixed when it was made.
                let expires_at = *expiry_of.entry(id).or_insert(now + ttl);
                let owner = ["a", "b", "c", "d"][usize::from(id % 4)];
                if cache.check(owner, [id; 16], expires_at, now) {
                    if let Some(&previous) = accepted.get(&id) {
                        proptest::prop_assert!(previous <= now, "id {id} accepted twice while live");
                    }
                    accepted.insert(id, expires_at);
                }
                proptest::prop_assert!(cache.len() <= 8);
            }
        }
    }
}
