//! [`RawLock`]: a lock that any thread may release (a Python `_thread.lock`).
//!
//! ## State
//!
//! One 32-bit futex word:
//!
//! | bits      | name       | meaning                                                   |
//! |-----------|------------|-----------------------------------------------------------|
//! | 0         | `LOCKED`   | held                                                      |
//! | 1         | `PARKED`   | some thread may be asleep on the word: release must wake  |
//! | 2         | `HANDOFF`  | released *to* a starving waiter: still held, not yet claimed |
//! | 3..=31    | starving   | how many waiters have waited longer than [`STARVE_NS`]    |
//!
//! Uncontended acquire is one compare-exchange `0 -> LOCKED`, uncontended
//! release one compare-exchange `LOCKED -> 0`.
//!
//! ## Eventual fairness
//!
//! Normally the lock *barges*: a release frees it and wakes one sleeper, and
//! whichever thread gets there first takes it. Under the GIL the running
//! thread nearly always wins, which gives high throughput but can starve a
//! sleeper indefinitely. So a waiter that has waited longer than
//! [`STARVE_NS`] registers as starving; while any waiter is starving, a
//! release (at most one per [`HANDOFF_INTERVAL_NS`] in the process) does
//! not free the lock but hands it off (sets `HANDOFF`, keeps
//! `LOCKED`) and wakes a sleeper. Only a starving waiter may claim a
//! hand-off (clearing `HANDOFF`); a non-starving waiter woken by it passes
//! the wake-up on to the next sleeper. A starving waiter that gives up
//! (timeout, signal) first withdraws from the count and then claims a
//! pending hand-off if there is one, so a hand-off is never stranded: the
//! count and `HANDOFF` live in the same word, so a release and a withdrawal
//! cannot both miss each other.
//!
//! There is no owner: a Python lock may be released by any thread, which is
//! what `threading.Condition`, `Event` and `Thread.join` rely on.

use crate::sync::futex::{self, Wait};
use crate::sync::{spin_hint, AtomicU32, Ordering};
use crate::timeout::Deadline;

/// Held.
const LOCKED: u32 = 1;
/// Some thread may be asleep on the word.
const PARKED: u32 = 2;
/// Handed off to a starving waiter, not yet claimed.
const HANDOFF: u32 = 4;
/// One starving waiter (the count occupies the bits from here up).
const STARVING_ONE: u32 = 8;

/// How long a waiter waits before asking for a hand-off: twice CPython's
/// default GIL switch interval (5 ms), so ordinary GIL scheduling does not
/// trigger it and throughput stays that of a barging lock.
pub const STARVE_NS: u64 = 10_000_000;

/// At most one hand-off per this interval, process-wide. A hand-off gives
/// the lock to a sleeping thread, which under the GIL must then wait for the
/// running thread to yield the GIL before it can use the lock: handing off on
/// every release would convoy the whole program behind GIL switches. Between
/// hand-offs the lock barges as usual, so starving waiters are still served
/// (one per interval) and throughput stays that of a barging lock.
pub const HANDOFF_INTERVAL_NS: u64 = 1_000_000;

#[cfg(not(loom))]
static LAST_HANDOFF_NS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Whether a release may hand off now (rate limit, see [`HANDOFF_INTERVAL_NS`]).
#[inline]
fn handoff_allowed() -> bool {
    #[cfg(loom)]
    {
        true
    }
    #[cfg(not(loom))]
    {
        use std::sync::atomic::Ordering as O;
        let now = crate::timeout::monotonic_ns();
        // Relaxed: a rate limiter; a lost race only allows or skips one hand-off.
        let last = LAST_HANDOFF_NS.load(O::Relaxed);
        now.saturating_sub(last) >= HANDOFF_INTERVAL_NS
            && LAST_HANDOFF_NS.compare_exchange(last, now, O::Relaxed, O::Relaxed).is_ok()
    }
}

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

/// Whether a waiter that first slept at `since` (ns) and has been woken
/// `wakeups` times should now ask for a hand-off. Under loom time does not
/// pass, so one wake-up counts as starving to explore the hand-off paths.
#[inline]
fn starving_now(since: u64, wakeups: u32) -> bool {
    if cfg!(loom) {
        wakeups >= 1
    } else {
        crate::timeout::monotonic_ns().saturating_sub(since) >= STARVE_NS
    }
}

impl RawLock {
    /// A new, unlocked lock.
    #[cfg(not(loom))]
    pub const fn new() -> RawLock {
        RawLock { state: AtomicU32::new(0) }
    }
    /// A new, unlocked lock.
    #[cfg(loom)]
    pub fn new() -> RawLock {
        RawLock { state: AtomicU32::new(0) }
    }

    /// Take the lock if it is free; never blocks.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        // Acquire on success: everything written before the matching release is visible.
        // Relaxed on failure: we learn nothing and publish nothing.
        self.state.compare_exchange(0, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_ok()
            || self.try_acquire_slow()
    }

    /// The lock may be free with other bits set (sleepers, starving count).
    #[cold]
    fn try_acquire_slow(&self) -> bool {
        // Relaxed: the CAS below synchronises.
        let mut s = self.state.load(Ordering::Relaxed);
        while s & LOCKED == 0 {
            // Acquire: as in try_acquire.
            match self.state.compare_exchange_weak(s, s | LOCKED, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(x) => s = x,
            }
        }
        false
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
        let mut spins = 0;
        // Relaxed: only a hint; the CAS below does the synchronising.
        while self.state.load(Ordering::Relaxed) == LOCKED && spins < SPIN_LIMIT {
            spin_hint();
            spins += 1;
        }
        let mut since: Option<u64> = None;
        let mut wakeups = 0u32;
        let mut starving = false;
        let outcome = loop {
            // Relaxed: every transition below is a CAS with the right ordering.
            let s = self.state.load(Ordering::Relaxed);
            if s & LOCKED == 0 {
                // Free: take it. Keep PARKED if we ever slept: others may still sleep.
                let new = s | LOCKED | if since.is_some() { PARKED } else { 0 };
                // Acquire: taking the lock must see the previous holder's writes.
                if self.state.compare_exchange(s, new, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    break Acquire::Acquired;
                }
                continue;
            }
            if s & HANDOFF != 0 {
                if starving {
                    // Claim the hand-off: the lock stays LOCKED and is now ours.
                    // Acquire: pairs with the Release that set HANDOFF.
                    if self.state.compare_exchange(s, s & !HANDOFF, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                        break Acquire::Acquired;
                    }
                    continue;
                }
                if since.is_some() {
                    // Not ours to claim: pass the wake-up towards a starving sleeper.
                    futex::wake_one(&self.state);
                }
            }
            if !starving {
                if let Some(t0) = since {
                    if starving_now(t0, wakeups) {
                        // Relaxed: the count is only read by CASes on the same word.
                        self.state.fetch_add(STARVING_ONE, Ordering::Relaxed);
                        starving = true;
                        continue;
                    }
                }
            }
            if s & PARKED == 0 {
                // Relaxed: announcing a sleeper publishes no data.
                if self.state.compare_exchange(s, s | PARKED, Ordering::Relaxed, Ordering::Relaxed).is_err() {
                    continue;
                }
            }
            if since.is_none() {
                since = Some(if cfg!(loom) { 0 } else { crate::timeout::monotonic_ns() });
            }
            match futex::wait(&self.state, s | PARKED, deadline) {
                Wait::Woken => wakeups = wakeups.saturating_add(1),
                Wait::Interrupted => break Acquire::Interrupted,
                Wait::TimedOut => break Acquire::TimedOut,
            }
        };
        if outcome != Acquire::Acquired {
            // One last try: the lock may have been freed just as we gave up.
            if self.try_acquire_slow() {
                if starving {
                    self.withdraw_starving();
                }
                return Acquire::Acquired;
            }
        }
        if starving {
            self.withdraw_starving();
            if outcome != Acquire::Acquired && self.claim_handoff() {
                return Acquire::Acquired;
            }
        }
        outcome
    }

    /// Leave the starving count.
    fn withdraw_starving(&self) {
        // Relaxed: see fetch_add above; a concurrent release CAS sees the new count.
        self.state.fetch_sub(STARVING_ONE, Ordering::Relaxed);
    }

    /// Claim a pending hand-off, if any (a starving waiter giving up must not
    /// strand one that was made for it).
    fn claim_handoff(&self) -> bool {
        // Relaxed load; the claiming CAS is Acquire.
        let mut s = self.state.load(Ordering::Relaxed);
        while s & HANDOFF != 0 {
            match self.state.compare_exchange(s, s & !HANDOFF, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(x) => s = x,
            }
        }
        false
    }

    /// Release the lock, waking one sleeper if there may be one. Any thread may call this.
    #[inline]
    pub fn release(&self) -> Result<(), NotLocked> {
        // Release: publishes the critical section to the next acquirer.
        if self.state.compare_exchange(LOCKED, 0, Ordering::Release, Ordering::Relaxed).is_ok() {
            return Ok(());
        }
        self.release_slow()
    }

    #[cold]
    fn release_slow(&self) -> Result<(), NotLocked> {
        // Relaxed load; every transition is a Release CAS.
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & LOCKED == 0 {
                return Err(NotLocked);
            }
            let (new, wake) = if s & HANDOFF != 0 {
                // Released again before the hand-off was claimed (a second,
                // unmatched release from Python): just unlock.
                (s & !(LOCKED | HANDOFF | PARKED), s & PARKED != 0)
            } else if s >= STARVING_ONE && handoff_allowed() {
                // Someone is starving: hand the lock off instead of freeing it.
                (s | HANDOFF, true)
            } else {
                (s & !(LOCKED | PARKED), s & PARKED != 0)
            };
            // Release: publishes the critical section to the next holder.
            match self.state.compare_exchange(s, new, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => {
                    if wake {
                        futex::wake_one(&self.state);
                    }
                    return Ok(());
                }
                Err(x) => s = x,
            }
        }
    }

    /// Whether the lock is held by some thread (a snapshot).
    #[inline]
    pub fn is_locked(&self) -> bool {
        // Relaxed: a snapshot that synchronises nothing, like CPython's locked().
        self.state.load(Ordering::Relaxed) & LOCKED != 0
    }

    /// Forget every holder and waiter: the state after `fork()` in the child,
    /// where only the forking thread survives. Only safe when no other thread
    /// of this process can touch the lock.
    pub fn reinit_after_fork(&self) {
        // Relaxed: single-threaded by contract.
        self.state.store(0, Ordering::Relaxed);
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
