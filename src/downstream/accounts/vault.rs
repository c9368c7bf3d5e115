//! Where linked accounts are kept: the [`AccountVault`] trait and its memory implementation.
//!
//! The vault holds only sealed bytes (AES-256-GCM, sealed by [`LinkedAccounts`](super::LinkedAccounts)
//! and bound to the account's key), so a vault's operator reads no token. It also keeps the
//! short-lived records of links in progress, so any replica can finish a link another began,
//! and the refresh claims that make one replica refresh a user's tokens while the others wait.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::Result;
use crate::BoxFuture;

/// Whose account at which third party: the MCP user (the issuer and subject of their verified
/// token) and the provider's name as configured.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct AccountKey {
    /// The issuer of the MCP user's token (`iss`; empty when the token names none).
    pub issuer: String,
    /// The MCP user (`sub`).
    pub subject: String,
    /// The third party's name, as given to [`ThirdParty`](super::ThirdParty).
    pub provider: String,
}

impl AccountKey {
    /// The bytes a sealed record is bound to: length-prefixed, so no two keys share them.
    pub(crate) fn seal_context(&self, purpose: &[u8]) -> Vec<u8> {
        let mut context = purpose.to_vec();
        for part in [&self.issuer, &self.subject, &self.provider] {
            context.extend_from_slice(&(part.len() as u64).to_be_bytes());
            context.extend_from_slice(part.as_bytes());
        }
        context
    }
}

/// Keeps linked accounts (sealed), links in progress (sealed, single use) and refresh claims.
/// [`MemoryAccountVault`] for one process; `PostgresAccountVault` (feature `postgres`) for
/// replicas and restarts.
pub trait AccountVault: Send + Sync + 'static {
    /// The sealed tokens of `account`, if linked.
    fn load<'a>(&'a self, account: &'a AccountKey) -> BoxFuture<'a, Result<Option<Vec<u8>>>>;

    /// Keeps `sealed` for `account`, replacing what was there, and ends any refresh claim.
    fn save<'a>(&'a self, account: &'a AccountKey, sealed: Vec<u8>) -> BoxFuture<'a, Result<()>>;

    /// Forgets `account`; whether it was linked.
    fn remove<'a>(&'a self, account: &'a AccountKey) -> BoxFuture<'a, Result<bool>>;

    /// Claims the refresh of `account` until `until` (seconds since the epoch): `true` when no
    /// one else holds an unexpired claim and the kept record is still `seen` (so no one
    /// refreshed since it was read, and its refresh token is unused). A claim ends with
    /// [`save`](Self::save), or at `until` if its holder died.
    fn claim_refresh<'a>(
        &'a self,
        account: &'a AccountKey,
        seen: &'a [u8],
        until: u64,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Ends a claim without saving (the refresh failed).
    fn release_refresh<'a>(&'a self, account: &'a AccountKey) -> BoxFuture<'a, Result<()>>;

    /// Keeps a sealed record of a link in progress under `handle` (a hash) until `expires_at`.
    fn put_pending<'a>(
        &'a self,
        handle: [u8; 32],
        record: Vec<u8>,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<()>>;

    /// Takes the record under `handle` (at most once), if it has not expired.
    fn take_pending(&self, handle: [u8; 32]) -> BoxFuture<'_, Result<Option<Vec<u8>>>>;
}

impl<V: AccountVault + ?Sized> AccountVault for std::sync::Arc<V> {
    fn load<'a>(&'a self, account: &'a AccountKey) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        (**self).load(account)
    }
    fn save<'a>(&'a self, account: &'a AccountKey, sealed: Vec<u8>) -> BoxFuture<'a, Result<()>> {
        (**self).save(account, sealed)
    }
    fn remove<'a>(&'a self, account: &'a AccountKey) -> BoxFuture<'a, Result<bool>> {
        (**self).remove(account)
    }
    fn claim_refresh<'a>(
        &'a self,
        account: &'a AccountKey,
        seen: &'a [u8],
        until: u64,
    ) -> BoxFuture<'a, Result<bool>> {
        (**self).claim_refresh(account, seen, until)
    }
    fn release_refresh<'a>(&'a self, account: &'a AccountKey) -> BoxFuture<'a, Result<()>> {
        (**self).release_refresh(account)
    }
    fn put_pending<'a>(
        &'a self,
        handle: [u8; 32],
        record: Vec<u8>,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<()>> {
        (**self).put_pending(handle, record, expires_at)
    }
    fn take_pending(&self, handle: [u8; 32]) -> BoxFuture<'_, Result<Option<Vec<u8>>>> {
        (**self).take_pending(handle)
    }
}

/// Links in progress kept at most by [`MemoryAccountVault`]: past it the oldest go first, so a
/// flood of link requests cannot grow memory without bound.
const MAX_PENDING: usize = 10_000;

/// An [`AccountVault`] in this process's memory: lost on restart, not shared by replicas.
#[derive(Debug, Default)]
pub struct MemoryAccountVault {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    accounts: HashMap<AccountKey, Vec<u8>>,
    claims: HashMap<AccountKey, u64>,
    pending: HashMap<[u8; 32], (Vec<u8>, u64)>,
}

impl MemoryAccountVault {
    /// An empty vault.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut MemoryInner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl AccountVault for MemoryAccountVault {
    fn load<'a>(&'a self, account: &'a AccountKey) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        let found = self.with(|inner| inner.accounts.get(account).cloned());
        Box::pin(async move { Ok(found) })
    }

    fn save<'a>(&'a self, account: &'a AccountKey, sealed: Vec<u8>) -> BoxFuture<'a, Result<()>> {
        self.with(|inner| {
            inner.claims.remove(account);
            inner.accounts.insert(account.clone(), sealed);
        });
        Box::pin(async { Ok(()) })
    }

    fn remove<'a>(&'a self, account: &'a AccountKey) -> BoxFuture<'a, Result<bool>> {
        let removed = self.with(|inner| {
            inner.claims.remove(account);
            inner.accounts.remove(account).is_some()
        });
        Box::pin(async move { Ok(removed) })
    }

    fn claim_refresh<'a>(
        &'a self,
        account: &'a AccountKey,
        seen: &'a [u8],
        until: u64,
    ) -> BoxFuture<'a, Result<bool>> {
        let now = crate::clock::now_secs();
        let claimed = self.with(|inner| {
            let unchanged = inner.accounts.get(account).is_some_and(|kept| kept == seen);
            match inner.claims.get(account) {
                Some(&held_until) if held_until > now => false,
                _ if !unchanged => false,
                _ => {
                    inner.claims.insert(account.clone(), until);
                    true
                }
            }
        });
        Box::pin(async move { Ok(claimed) })
    }

    fn release_refresh<'a>(&'a self, account: &'a AccountKey) -> BoxFuture<'a, Result<()>> {
        self.with(|inner| inner.claims.remove(account));
        Box::pin(async { Ok(()) })
    }

    fn put_pending<'a>(
        &'a self,
        handle: [u8; 32],
        record: Vec<u8>,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<()>> {
        let now = crate::clock::now_secs();
        self.with(|inner| {
            if inner.pending.len() >= MAX_PENDING {
                inner.pending.retain(|_, (_, expires)| *expires > now);
            }
            if inner.pending.len() >= MAX_PENDING {
                if let Some(oldest) = inner
                    .pending
                    .iter()
                    .min_by_key(|(_, (_, expires))| *expires)
                    .map(|(handle, _)| *handle)
                {
                    inner.pending.remove(&oldest);
                }
            }
            inner.pending.insert(handle, (record, expires_at));
        });
        Box::pin(async { Ok(()) })
    }

    fn take_pending(&self, handle: [u8; 32]) -> BoxFuture<'_, Result<Option<Vec<u8>>>> {
        let now = crate::clock::now_secs();
        let taken = self.with(|inner| inner.pending.remove(&handle));
        Box::pin(async move { Ok(taken.filter(|(_, expires)| *expires > now).map(|(r, _)| r)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(subject: &str) -> AccountKey {
        AccountKey {
            issuer: "https://as.example".into(),
            subject: subject.into(),
            provider: "github".into(),
        }
    }

    #[tokio::test]
    async fn keeps_accounts_claims_and_single_use_records() {
        let vault = MemoryAccountVault::new();
        let alice = key("alice");
        assert_eq!(vault.load(&alice).await.unwrap(), None);
        vault.save(&alice, vec![1, 2]).await.unwrap();
        assert_eq!(vault.load(&alice).await.unwrap(), Some(vec![1, 2]));
        assert_eq!(vault.load(&key("bob")).await.unwrap(), None);

        let later = crate::clock::now_secs() + 30;
        assert!(vault.claim_refresh(&alice, &[1, 2], later).await.unwrap());
        assert!(
            !vault.claim_refresh(&alice, &[1, 2], later).await.unwrap(),
            "held"
        );
        vault.save(&alice, vec![3]).await.unwrap();
        assert!(
            !vault.claim_refresh(&alice, &[1, 2], later).await.unwrap(),
            "refreshed since it was read"
        );
        assert!(
            vault.claim_refresh(&alice, &[3], later).await.unwrap(),
            "save ends it"
        );
        vault.release_refresh(&alice).await.unwrap();
        assert!(vault.claim_refresh(&alice, &[3], 0).await.unwrap());
        assert!(
            vault.claim_refresh(&alice, &[3], later).await.unwrap(),
            "expired"
        );

        vault.put_pending([7; 32], vec![9], later).await.unwrap();
        assert_eq!(vault.take_pending([7; 32]).await.unwrap(), Some(vec![9]));
        assert_eq!(vault.take_pending([7; 32]).await.unwrap(), None, "once");
        vault.put_pending([8; 32], vec![9], 1).await.unwrap();
        assert_eq!(vault.take_pending([8; 32]).await.unwrap(), None, "expired");

        assert!(vault.remove(&alice).await.unwrap());
        assert!(!vault.remove(&alice).await.unwrap());
    }

    #[test]
    fn seal_contexts_keep_field_boundaries() {
        let a = AccountKey {
            issuer: "ab".into(),
            subject: "c".into(),
            provider: "p".into(),
        };
        let b = AccountKey {
            issuer: "a".into(),
            subject: "bc".into(),
            provider: "p".into(),
        };
        assert_ne!(a.seal_context(b"x"), b.seal_context(b"x"));
    }
}
