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
///
/// # Examples
///
/// ```
/// use rsthread_core::{RawRLock, ReleaseError};
///
/// let r = RawRLock::new();
/// assert_eq!(r.release(1), Err(ReleaseError::NotOwner), "nobody owns it");
/// assert_eq!(r.try_acquire(1), Ok(true));
/// assert_eq!(r.release(2), Err(ReleaseError::NotOwner), "1 owns it");
/// assert_eq!(r.count(), 1, "the failed release changed nothing");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseError {
    /// The caller does not own the lock (or nobody does).
    NotOwner,
}

/// The recursion count would overflow.
///
/// # Examples
///
/// ```
/// use rsthread_core::{CountOverflow, RawRLock};
///
/// let r = RawRLock::new();
/// assert!(r.try_acquire_inner());
/// r.restore(1, u64::from(u32::MAX)); // as deep as a count goes
/// assert_eq!(r.try_acquire(1), Err(CountOverflow));
/// assert_eq!(r.count(), u64::from(u32::MAX), "the refused re-entry changed nothing");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountOverflow;

/// A reentrant futex lock.
///
/// # Examples
///
/// ```
/// use rsthread_core::{Acquire, RawRLock};
/// use std::sync::Arc;
///
/// let r = Arc::new(RawRLock::new());
/// assert_eq!(r.try_acquire(1), Ok(true));
/// assert_eq!(r.try_acquire(1), Ok(true), "the owner re-enters");
/// let r2 = Arc::clone(&r);
/// let other = std::thread::spawn(move || {
///     // Not the owner: try first (re-entry), then wait.
///     if r2.try_acquire(2) != Ok(true) {
///         assert_eq!(r2.acquire_contended(2, None), Acquire::Acquired);
///     }
///     let who = r2.owner();
///     r2.release(2).unwrap();
///     who
/// });
/// r.release(1).unwrap();
/// r.release(1).unwrap();
/// assert_eq!(other.join().unwrap(), 2);
/// assert_eq!((r.owner(), r.count()), (0, 0));
/// ```
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
        self.try_acquire_with(me, RawLock::try_acquire)
    }

    /// [`try_acquire`](Self::try_acquire) through
    /// [`RawLock::try_acquire_exclusive`].
    ///
    /// # Safety
    /// As for [`RawLock::try_acquire_exclusive`].
    #[inline]
    pub unsafe fn try_acquire_exclusive(&self, me: u64) -> Result<bool, CountOverflow> {
        // SAFETY: per this function's contract.
        self.try_acquire_with(me, |l| unsafe { l.try_acquire_exclusive() })
    }

    #[inline(always)]
    fn try_acquire_with(
        &self,
        me: u64,
        take: impl FnOnce(&RawLock) -> bool,
    ) -> Result<bool, CountOverflow> {
        if let Some(r) = self.try_reenter(me) {
            return r.map(|()| true);
        }
        if take(&self.lock) {
            self.set_owner(me, 1);
            return Ok(true);
        }
        Ok(false)
    }

    /// Take the lock for `me`, waiting until `deadline`. Does not re-enter:
    /// call [`try_acquire`](Self::try_acquire) first. An owner that came
    /// here would wait for itself forever (debug builds panic instead).
    pub fn acquire_contended(&self, me: u64, deadline: Option<Deadline>) -> Acquire {
        debug_assert!(
            !self.is_owned_by(me),
            "RawRLock::acquire_contended by its owner: re-entry must go through try_acquire"
        );
        let r = self.lock.acquire(deadline);
        if r == Acquire::Acquired {
            self.set_owner(me, 1);
        }
        r
    }

    /// Release one level held by `me`.
    #[inline]
    pub fn release(&self, me: u64) -> Result<(), ReleaseError> {
        self.release_with(me, |l| {
            // Cannot fail: count > 0 means the inner lock is held.
            let _ = l.release();
        })
    }

    /// [`release`](Self::release) through [`RawLock::release_exclusive`].
    ///
    /// # Safety
    /// As for [`RawLock::try_acquire_exclusive`].
    #[inline]
    pub unsafe fn release_exclusive(&self, me: u64) -> Result<(), ReleaseError> {
        self.release_with(me, |l| {
            // SAFETY: per this function's contract. Cannot fail: as above.
            let _ = unsafe { l.release_exclusive() };
        })
    }

    #[inline(always)]
    fn release_with(&self, me: u64, unlock: impl FnOnce(&RawLock)) -> Result<(), ReleaseError> {
        let c = self.count.load(Ordering::Relaxed);
        // Relaxed: see the module notes.
        if c == 0 || self.owner.load(Ordering::Relaxed) != me {
            return Err(ReleaseError::NotOwner);
        }
        if c > 1 {
            // Relaxed: only the owner writes the count.
            self.count.store(c - 1, Ordering::Relaxed);
            return Ok(());
        }
        self.set_owner(0, 0);
        unlock(&self.lock);
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

    /// The owner re-enters while another thread sleeps on the contended
    /// path (the word then carries PARKED, not just LOCKED): re-entry must
    /// look at owner and count only, never block, and the waiter gets the
    /// lock only after the last level is released.
    #[test]
    fn owner_reenters_while_another_thread_waits() {
        use std::sync::atomic::{AtomicBool, Ordering as O};
        use std::sync::Arc;
        use std::time::Duration;
        let r = Arc::new(RawRLock::new());
        let got = Arc::new(AtomicBool::new(false));
        assert_eq!(r.try_acquire(1), Ok(true));
        let (r2, got2) = (r.clone(), got.clone());
        let waiter = std::thread::spawn(move || {
            assert_eq!(r2.try_acquire(2), Ok(false));
            let a = r2.acquire_contended(2, None);
            // SeqCst: test bookkeeping, read by the main thread.
            got2.store(true, O::SeqCst);
            assert_eq!((r2.owner(), r2.count()), (2, 1));
            r2.release(2).unwrap();
            a
        });
        // Let the waiter fall asleep on the inner lock.
        std::thread::sleep(Duration::from_millis(30));
        for depth in 2..=4 {
            assert_eq!(r.try_acquire(1), Ok(true), "re-entry blocked or refused");
            assert_eq!((r.owner(), r.count()), (1, depth));
        }
        for _ in 0..3 {
            r.release(1).unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
        assert!(
            !got.load(O::SeqCst),
            "waiter got the lock while the owner held a level"
        );
        assert_eq!((r.owner(), r.count()), (1, 1));
        r.release(1).unwrap();
        assert_eq!(waiter.join().unwrap(), Acquire::Acquired);
        assert!(got.load(O::SeqCst));
        assert_eq!((r.owner(), r.count()), (0, 0));
        assert!(!r.is_locked());
    }

    /// The trap itself: the owner calling `acquire_contended` would wait
    /// for itself; debug builds say so instead of hanging.
    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "re-entry must go through try_acquire")]
    fn owner_in_contended_path_panics_in_debug() {
        let r = RawRLock::new();
        assert_eq!(r.try_acquire(5), Ok(true));
        let _ = r.acquire_contended(5, Some(Deadline::from_nanos(0)));
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
