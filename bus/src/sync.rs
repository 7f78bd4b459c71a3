//! Locks that outlive a panicking holder: every service shares its indexes behind `RwLock`s
//! whose writers replace whole entries, so a poisoned lock still holds consistent data.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Reads a lock, even one a panicking thread left poisoned (the data stays consistent: every
/// writer replaces whole entries).
pub fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes a lock, even a poisoned one (see [`read`]).
pub fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}
