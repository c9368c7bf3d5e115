//! Locks that stay usable after a panic elsewhere: every lock in the crate guards state that is
//! consistent between statements, so a guard poisoned by another thread's panic is taken as is
//! rather than turning one panic into many.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// [`Mutex::lock`], ignoring poisoning.
#[cfg_attr(
    not(any(
        feature = "client",
        feature = "authorization-server",
        feature = "rmcp-server"
    )),
    allow(dead_code)
)]
pub(crate) trait LockExt<T> {
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> LockExt<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// [`RwLock::read`] and [`RwLock::write`], ignoring poisoning.
#[cfg_attr(not(any(feature = "client", feature = "server")), allow(dead_code))]
pub(crate) trait RwLockExt<T> {
    fn read_locked(&self) -> RwLockReadGuard<'_, T>;
    fn write_locked(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T> RwLockExt<T> for RwLock<T> {
    fn read_locked(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_locked(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
}
