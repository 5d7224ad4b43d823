//! [`RawRLock`]: a reentrant lock owned by one thread (a Python `_thread.RLock`).
//!
//! Implementation details: an inner [`RawLock`] is held while `count > 0`.
//! `owner` is the holder's ident (0 = none) and `count` its recursion depth;
//! both are written only by the holder while it holds the inner lock.
//! Reading `owner` with `Relaxed` to ask "do I own it?" is sound because only
//! this thread ever stores its own ident there: a stale value written by
//! another thread can never equal ours, and our own last store is always
//! visible to us.

use crate::lock::{Acquire, RawLock};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::timeout::Deadline;

/// Why an RLock release failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseError {
    /// The caller does not own the lock (or nobody does).
    NotOwner,
}

/// The recursion count would overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountOverflow;

/// A reentrant futex lock.
#[derive(Debug, Default)]
pub struct RawRLock {
    lock: RawLock,
    owner: AtomicU64,
    /// u32 keeps `RLock` objects as small as stock's; 4 billion levels of
    /// re-entry raise `CountOverflow` (stock: 2^64).
    count: AtomicU32,
}

impl RawRLock {
    /// A new, unowned RLock.
    pub fn new() -> RawRLock {
        RawRLock {
            lock: RawLock::new(),
            owner: AtomicU64::new(0),
            count: AtomicU32::new(0),
        }
    }

    /// If `me` already owns it, count one more level and return `Some`.
    #[inline]
    pub fn try_reenter(&self, me: u64) -> Option<Result<(), CountOverflow>> {
        // Relaxed: see the module notes; only `me` stores `me`.
        if self.count.load(Ordering::Relaxed) > 0 && self.owner.load(Ordering::Relaxed) == me {
            let c = self.count.load(Ordering::Relaxed);
            if c == u32::MAX {
                return Some(Err(CountOverflow));
            }
            // Relaxed: only the owner writes the count.
            self.count.store(c + 1, Ordering::Relaxed);
            return Some(Ok(()));
        }
        None
    }

    #[inline]
    fn set_owner(&self, me: u64, count: u32) {
        // Relaxed: we hold the inner lock, whose Acquire ordered us after the last owner.
        self.owner.store(me, Ordering::Relaxed);
        self.count.store(count, Ordering::Relaxed);
    }

    /// Take the lock without blocking (re-entering if `me` owns it).
    #[inline]
    pub fn try_acquire(&self, me: u64) -> Result<bool, CountOverflow> {
        if let Some(r) = self.try_reenter(me) {
            return r.map(|()| true);
        }
        if self.lock.try_acquire() {
            self.set_owner(me, 1);
            return Ok(true);
        }
        Ok(false)
    }

    /// Take the lock for `me`, waiting until `deadline`. Does not re-enter:
    /// call [`try_acquire`](Self::try_acquire) first.
    pub fn acquire_contended(&self, me: u64, deadline: Option<Deadline>) -> Acquire {
        let r = self.lock.acquire(deadline);
        if r == Acquire::Acquired {
            self.set_owner(me, 1);
        }
        r
    }

    /// Release one level held by `me`.
    #[inline]
    pub fn release(&self, me: u64) -> Result<(), ReleaseError> {
        let c = self.count.load(Ordering::Relaxed);
        // Relaxed: see the module notes.
        if c == 0 || self.owner.load(Ordering::Relaxed) != me {
            return Err(ReleaseError::NotOwner);
        }
        if c > 1 {
            self.count.store(c - 1, Ordering::Relaxed);
            return Ok(());
        }
        self.set_owner(0, 0);
        // Cannot fail: count > 0 means the inner lock is held.
        let _ = self.lock.release();
        Ok(())
    }

    /// Release every level at once, whoever owns it (CPython's `_release_save`
    /// does not check the owner); returns `(count, owner)` or `None` if unowned.
    pub fn release_save(&self) -> Option<(u64, u64)> {
        let c = self.count.load(Ordering::Relaxed);
        if c == 0 {
            return None;
        }
        let owner = self.owner.load(Ordering::Relaxed);
        self.set_owner(0, 0);
        let _ = self.lock.release();
        Some((u64::from(c), owner))
    }

    /// Record `owner`/`count` after the inner lock has been taken by
    /// [`acquire_contended`](Self::acquire_contended) or `try_acquire`.
    /// A count above `u32::MAX` is clamped (it cannot come from `release_save`).
    pub fn restore(&self, owner: u64, count: u64) {
        self.set_owner(owner, u32::try_from(count).unwrap_or(u32::MAX));
    }

    /// Take the inner lock without blocking and without touching owner/count
    /// (for `_acquire_restore`, which then calls [`restore`](Self::restore)).
    pub fn try_acquire_inner(&self) -> bool {
        self.lock.try_acquire()
    }

    /// Take the inner lock, waiting as long as it takes and ignoring signals
    /// (stock `_acquire_restore` is not interruptible).
    pub fn acquire_inner_blocking(&self) {
        while self.lock.acquire(None) != Acquire::Acquired {}
    }

    /// Owner ident, 0 when unowned (a snapshot).
    pub fn owner(&self) -> u64 {
        if self.count.load(Ordering::Relaxed) == 0 {
            0
        } else {
            self.owner.load(Ordering::Relaxed)
        }
    }

    /// Recursion count (a snapshot).
    pub fn count(&self) -> u64 {
        u64::from(self.count.load(Ordering::Relaxed))
    }

    /// Whether `me` owns it.
    pub fn is_owned_by(&self, me: u64) -> bool {
        self.count.load(Ordering::Relaxed) > 0 && self.owner.load(Ordering::Relaxed) == me
    }

    /// Whether the inner lock is held by anyone.
    pub fn is_locked(&self) -> bool {
        self.lock.is_locked()
    }

    /// State after `fork()` in the child: unowned and unlocked.
    pub fn reinit_after_fork(&self) {
        self.set_owner(0, 0);
        self.lock.reinit_after_fork();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn reentry_and_release() {
        let r = RawRLock::new();
        assert_eq!(r.try_acquire(7), Ok(true));
        assert_eq!(r.try_acquire(7), Ok(true));
        assert_eq!(r.count(), 2);
        assert_eq!(r.try_acquire(8), Ok(false));
        assert_eq!(r.release(8), Err(ReleaseError::NotOwner));
        assert_eq!(r.count(), 2, "failed release changes nothing");
        r.release(7).unwrap();
        r.release(7).unwrap();
        assert_eq!(r.release(7), Err(ReleaseError::NotOwner));
        assert_eq!(r.owner(), 0);
        assert!(!r.is_locked());
    }

    #[test]
    fn save_restore() {
        let r = RawRLock::new();
        assert_eq!(r.release_save(), None);
        r.try_acquire(3).unwrap();
        r.try_acquire(3).unwrap();
        assert_eq!(r.release_save(), Some((2, 3)));
        assert!(!r.is_locked());
        assert_eq!(r.try_acquire(3), Ok(true));
        r.restore(3, 2);
        assert_eq!(r.count(), 2);
    }
}
