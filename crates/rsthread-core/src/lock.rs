//! [`RawLock`]: a lock that any thread may release (a Python `_thread.lock`).
//!
//! ## State
//!
//! One 32-bit futex word:
//!
//! | value        | meaning                                      |
//! |--------------|----------------------------------------------|
//! | `UNLOCKED`   | free                                         |
//! | `LOCKED`     | held, and no thread has gone to sleep on it  |
//! | `CONTENDED`  | held, and some thread may be asleep on it    |
//!
//! Uncontended acquire is one compare-exchange, uncontended release one swap.
//! A blocked acquirer marks the word `CONTENDED` before it sleeps, so the
//! release that finds `CONTENDED` wakes one sleeper. A woken thread takes the
//! lock with `swap(CONTENDED)`, conservatively assuming others still sleep.
//!
//! There is no owner: a Python lock may be released by any thread, which is
//! what `threading.Condition`, `Event` and `Thread.join` rely on.

use crate::sync::futex::{self, Wait};
use crate::sync::{spin_hint, AtomicU32, Ordering};
use crate::timeout::Deadline;

/// Free.
const UNLOCKED: u32 = 0;
/// Held, nobody asleep.
const LOCKED: u32 = 1;
/// Held, maybe somebody asleep.
const CONTENDED: u32 = 2;

/// How many times a contended acquire spins (loads only) before sleeping.
const SPIN_LIMIT: u32 = if cfg!(loom) { 1 } else { 100 };

/// The outcome of a blocking or timed acquire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// The lock is now held by the caller.
    Acquired,
    /// The deadline passed first (never reported before it).
    TimedOut,
    /// A signal arrived while sleeping; the caller should run its handlers and
    /// call again with the same deadline.
    Interrupted,
}

/// `release()` on a lock that is not held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotLocked;

/// A futex lock with no owner.
#[derive(Debug)]
pub struct RawLock {
    state: AtomicU32,
}

impl Default for RawLock {
    fn default() -> Self {
        Self::new()
    }
}

impl RawLock {
    /// A new, unlocked lock.
    #[cfg(not(loom))]
    pub const fn new() -> RawLock {
        RawLock { state: AtomicU32::new(UNLOCKED) }
    }
    /// A new, unlocked lock.
    #[cfg(loom)]
    pub fn new() -> RawLock {
        RawLock { state: AtomicU32::new(UNLOCKED) }
    }

    /// Take the lock if it is free; never blocks.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        // Acquire on success: everything written before the matching release is visible.
        // Relaxed on failure: we learn nothing and publish nothing.
        self.state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Take the lock, waiting until `deadline` (`None`: forever).
    ///
    /// Returns early with [`Acquire::Interrupted`] when a signal handler ran in
    /// this thread, so the caller can process it and call again.
    #[inline]
    pub fn acquire(&self, deadline: Option<Deadline>) -> Acquire {
        if self.try_acquire() {
            return Acquire::Acquired;
        }
        self.acquire_contended(deadline)
    }

    #[cold]
    fn acquire_contended(&self, deadline: Option<Deadline>) -> Acquire {
        // Spin briefly with loads only (no cache-line ping-pong) in case the
        // holder is about to release; a Python holder usually is not, so keep it short.
        let mut state = self.state.load(Ordering::Relaxed);
        let mut spins = 0;
        while state == LOCKED && spins < SPIN_LIMIT {
            spin_hint();
            spins += 1;
            // Relaxed: only a hint; the swap/CAS below does the synchronising.
            state = self.state.load(Ordering::Relaxed);
        }
        if state == UNLOCKED {
            // Acquire: as in try_acquire.
            if let Ok(_) = self.state.compare_exchange(
                UNLOCKED,
                LOCKED,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                return Acquire::Acquired;
            }
        }
        loop {
            // Acquire: taking the lock must see the previous holder's writes.
            // Marking CONTENDED (even when we get the lock) is what keeps a
            // wake-up from being lost: the next release will call wake_one.
            if self.state.swap(CONTENDED, Ordering::Acquire) == UNLOCKED {
                return Acquire::Acquired;
            }
            match futex::wait(&self.state, CONTENDED, deadline) {
                Wait::Woken => continue,
                Wait::Interrupted => return Acquire::Interrupted,
                Wait::TimedOut => {
                    // One last try: the lock may have been freed just as the deadline hit.
                    return if self.try_acquire() { Acquire::Acquired } else { Acquire::TimedOut };
                }
            }
        }
    }

    /// Release the lock, waking one sleeper if there may be one. Any thread may call this.
    #[inline]
    pub fn release(&self) -> Result<(), NotLocked> {
        // Release: publishes the critical section to the next acquirer.
        match self.state.swap(UNLOCKED, Ordering::Release) {
            UNLOCKED => Err(NotLocked),
            LOCKED => Ok(()),
            _ => {
                futex::wake_one(&self.state);
                Ok(())
            }
        }
    }

    /// Whether the lock is held by some thread (a snapshot).
    #[inline]
    pub fn is_locked(&self) -> bool {
        // Relaxed: a snapshot that synchronises nothing, like CPython's locked().
        self.state.load(Ordering::Relaxed) != UNLOCKED
    }

    /// Forget every holder and waiter: the state after `fork()` in the child,
    /// where only the forking thread survives. Only safe when no other thread
    /// of this process can touch the lock.
    pub fn reinit_after_fork(&self) {
        // Relaxed: single-threaded by contract.
        self.state.store(UNLOCKED, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn states() {
        let l = RawLock::new();
        assert!(!l.is_locked());
        assert!(l.try_acquire());
        assert!(l.is_locked());
        assert!(!l.try_acquire());
        assert_eq!(l.release(), Ok(()));
        assert_eq!(l.release(), Err(NotLocked));
        assert!(!l.is_locked(), "a failed release leaves the lock unlocked");
    }

    #[test]
    fn timed_acquire_never_early() {
        let l = RawLock::new();
        assert!(l.try_acquire());
        let t0 = Instant::now();
        let r = l.acquire(Some(Deadline::after(Duration::from_millis(20))));
        assert_eq!(r, Acquire::TimedOut);
        assert!(t0.elapsed() >= Duration::from_millis(20));
        assert!(l.is_locked());
    }

    #[test]
    fn zero_timeout_is_a_try() {
        let l = RawLock::new();
        assert_eq!(l.acquire(Some(Deadline::after(Duration::ZERO))), Acquire::Acquired);
        assert_eq!(l.acquire(Some(Deadline::after(Duration::ZERO))), Acquire::TimedOut);
    }

    #[test]
    fn release_from_another_thread_wakes_waiter() {
        let l = Arc::new(RawLock::new());
        assert!(l.try_acquire());
        let l2 = l.clone();
        let waiter = std::thread::spawn(move || l2.acquire(None));
        std::thread::sleep(Duration::from_millis(20));
        let l3 = l.clone();
        std::thread::spawn(move || l3.release().unwrap()).join().unwrap();
        assert_eq!(waiter.join().unwrap(), Acquire::Acquired);
        assert!(l.is_locked());
        l.release().unwrap();
    }

    #[test]
    fn counter_exact_under_contention() {
        let l = Arc::new(RawLock::new());
        let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let (l, n) = (l.clone(), n.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        assert_eq!(l.acquire(None), Acquire::Acquired);
                        // Non-atomic read-modify-write under the lock.
                        let v = n.load(std::sync::atomic::Ordering::Relaxed);
                        n.store(v + 1, std::sync::atomic::Ordering::Relaxed);
                        l.release().unwrap();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(n.load(std::sync::atomic::Ordering::Relaxed), 160_000);
        assert!(!l.is_locked());
    }

    #[test]
    fn interrupted_wait_is_reported() {
        use std::sync::atomic::{AtomicBool, AtomicU64 as StdU64};
        extern "C" fn handler(_: libc::c_int) {}
        // SAFETY: installing a no-op handler for SIGUSR2 without SA_RESTART; the
        // handler touches nothing.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut());
        }
        let l = Arc::new(RawLock::new());
        assert!(l.try_acquire());
        let tid = Arc::new(StdU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (l2, tid2, done2) = (l.clone(), tid.clone(), done.clone());
        let h = std::thread::spawn(move || {
            // SAFETY: pthread_self has no preconditions.
            tid2.store(unsafe { libc::pthread_self() } as u64, std::sync::atomic::Ordering::SeqCst);
            let r = l2.acquire(None);
            done2.store(true, std::sync::atomic::Ordering::SeqCst);
            r
        });
        std::thread::sleep(Duration::from_millis(30));
        let t = tid.load(std::sync::atomic::Ordering::SeqCst);
        // Signal until the waiter reports (the first signal might land before it sleeps).
        for _ in 0..200 {
            if done.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            // SAFETY: the thread is alive until it sets `done`; pthread_kill on it is valid.
            unsafe { libc::pthread_kill(t as libc::pthread_t, libc::SIGUSR2) };
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(h.join().unwrap(), Acquire::Interrupted);
        assert!(l.is_locked());
    }
}
