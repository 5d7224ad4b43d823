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
//! ## Exclusive access ([`try_acquire_exclusive`](RawLock::try_acquire_exclusive))
//!
//! Those two compare-exchanges are locked instructions that wait for the
//! store buffer to drain, and in an interpreter loop that is about a third
//! of a lock round trip. A caller that knows no other thread can write the
//! word meanwhile (every writer holds one outer lock, such as CPython's GIL,
//! and none is waiting outside it) may use the `_exclusive` forms: a plain
//! load and store when the word is `0` or `LOCKED`, the atomic path for
//! anything else. The outer lock orders them with every other access.
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
//!
//! ## Adaptive spinning ([`SpinScore`])
//!
//! Waking a sleeping thread costs a context switch, and on a VM whose idle
//! vCPUs halt, tens of microseconds. A lock that is *handed* from one thread
//! to another (ping-pong, a producer releasing a consumer) pays that on
//! every hand-over; a lock that a running holder keeps re-taking (barging)
//! does not, and spinning on it only steals the holder's cache line and
//! turns cheap re-acquisitions into hand-offs. So a blocking acquire that
//! is given a [`SpinScore`] spins (polling, not writing) before it sleeps
//! only while that lock has recently been won that way: the lock was seen
//! free for [`SPIN_SETTLE_NS`] (its holder let it go rather than re-taking
//! it) within [`SPIN_WORTH_NS`] (longer waits are as cheap asleep). Seeing
//! it re-taken while free means barging: the score drops to zero and the
//! waiter sleeps without grabbing it. A lock with score zero is probed
//! again once every [`SPIN_EXPLORE_EVERY`] contended acquires. At most
//! (CPUs − 1) threads of the process poll a *held* lock at once, so the
//! thread holding the GIL always has a CPU; on one CPU nothing spins.

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
            && LAST_HANDOFF_NS
                .compare_exchange(last, now, O::Relaxed, O::Relaxed)
                .is_ok()
    }
}

/// How many times a contended acquire spins (loads only) before sleeping.
/// No spin under loom: it only delays, and a loom `yield_now` (the spin hint
/// there) keeps the yielding thread off the CPU until the others block,
/// which hides the interleavings where a waiter sleeps before the release.
#[cfg(not(loom))]
const SPIN_LIMIT: u32 = 100;

/// Longest adaptive spin before sleeping (see [`SpinScore`]): about two
/// wake-ups of a halted vCPU, so that a ping-pong partner that itself had
/// to be woken is still waited for.
pub const SPIN_MAX_NS: u64 = 50_000;
/// A spin that won the lock only after this long earns no confidence: a
/// sleep and wake-up would have cost about as much, without burning a CPU.
pub const SPIN_WORTH_NS: u64 = 20_000;
/// How long the lock must stay free before a spinner takes it: longer than
/// a Python thread takes to release and re-take a lock in a loop, so a
/// barging holder is recognised (and not robbed), and about what the
/// releasing thread needs to drop the GIL when it goes on to block.
pub const SPIN_SETTLE_NS: u64 = 1_000;
/// A lock whose score is zero is probed with a spin once per this many
/// contended acquires.
pub const SPIN_EXPLORE_EVERY: u32 = 64;
/// `spin_hint`s between two polls of the lock word (about 0.7 µs on current
/// x86): few enough cache-line transfers that a running holder is not slowed.
const SPIN_POLL_PAUSES: u32 = 64;
/// After a spin saw barging, how many polls a free lock is left to the
/// barging holder before this waiter takes it anyway.
#[cfg(not(loom))]
const SPIN_POLITE_POLLS: u32 = 256;
/// Most confidence a score holds (successive won spins).
const SPIN_CONF_MAX: u32 = 8;

/// Per-lock history for adaptive spinning (see the module docs). A
/// heuristic only: relaxed, racy updates are fine.
///
/// Bits 0..8: confidence (spins that won the lock, capped at
/// `SPIN_CONF_MAX`); bits 8..: contended acquires since the last probe.
///
/// # Examples
///
/// ```
/// use rsthread_core::{Acquire, Deadline, RawLock, SpinScore};
///
/// let (lock, score) = (RawLock::new(), SpinScore::new());
/// assert_eq!(score.confidence(), 0);
/// assert_eq!(lock.acquire_adaptive(None, &score), Acquire::Acquired);
/// // Held: a short spin (if a CPU is spare) then a sleep until the deadline.
/// assert_eq!(lock.acquire_adaptive(Some(Deadline::after_ns(100_000)), &score), Acquire::TimedOut);
/// assert!(SpinScore::confident().confidence() > 0);
/// ```
#[derive(Debug, Default)]
pub struct SpinScore(std::sync::atomic::AtomicU32);

impl SpinScore {
    /// No history: the lock spins only when probed.
    pub const fn new() -> SpinScore {
        SpinScore(std::sync::atomic::AtomicU32::new(0))
    }
    /// Full confidence: spins from the first contended acquire (for locks
    /// known to be handed over, and for tests).
    pub const fn confident() -> SpinScore {
        SpinScore(std::sync::atomic::AtomicU32::new(SPIN_CONF_MAX))
    }
    /// Current confidence (0: this lock does not spin except when probed).
    pub fn confidence(&self) -> u32 {
        self.0.load(std::sync::atomic::Ordering::Relaxed) & 0xff
    }
}

/// How an adaptive spin ended.
#[cfg(not(loom))]
#[derive(Clone, Copy, PartialEq, Eq)]
enum SpinEnd {
    /// The lock stayed free for SPIN_SETTLE_NS: take it.
    Won,
    /// The lock was re-taken while free: a running holder barges.
    Barging,
    /// Spin budget or deadline used up, lock still held.
    Timeout,
}

/// How many threads of the process may spin at once: the CPUs the calling
/// thread may run on, minus one (0: never spin; the holder could not run
/// meanwhile).
///
/// The CPU count is re-read at most every [`AFFINITY_RECHECK_NS`] (one
/// `sched_getaffinity`), so a process or thread pinned to one CPU after its
/// first contended wait (`os.sched_setaffinity`) stops spinning within that
/// time instead of spinning for nothing for the rest of its life.
#[cfg(not(loom))]
fn max_spinners() -> u32 {
    use std::sync::atomic::{AtomicBool, AtomicU32 as A, AtomicU64 as A64, Ordering as O};
    static MAX: A = A::new(u32::MAX);
    // Upper bound from the first call: the affinity mask and cgroup quota.
    static LIMIT: A = A::new(0);
    static CHECKED_AT: A64 = A64::new(0);
    // Not a `Once`: `pthread_atfork` waits while another thread forks, and a
    // `Once` caught running by that fork stays running in the child forever
    // (its first contended acquire then hung: CPython's
    // test_3_join_in_forked_from_thread, under load).
    static FORK_HANDLER: AtomicBool = AtomicBool::new(false);
    // Relaxed (all three): a heuristic's cache; a stale or torn view only
    // costs one more or one fewer spin.
    let m = MAX.load(O::Relaxed);
    let now = crate::timeout::monotonic_ns();
    if m != u32::MAX && now.wrapping_sub(CHECKED_AT.load(O::Relaxed)) < AFFINITY_RECHECK_NS {
        return m;
    }
    CHECKED_AT.store(now, O::Relaxed);
    let mut limit = LIMIT.load(O::Relaxed);
    if limit == 0 {
        limit = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        LIMIT.store(limit, O::Relaxed);
    }
    let cpus = rustix::thread::sched_getaffinity(None).map_or(limit, |set| set.count().min(limit));
    let m = cpus.saturating_sub(1);
    // Relaxed: only decides who registers; nothing is published through it.
    if !FORK_HANDLER.swap(true, O::Relaxed) {
        // A fork while another thread spins would leave its slot taken in
        // the child, where only the forking (non-spinning) thread survives.
        // (A child forked while this registers misses the reset: it then
        // spins less, never wrongly.)
        extern "C" fn reset_in_child() {
            SPINNERS.store(0, O::Relaxed);
        }
        // SAFETY: registers a handler that only stores to an atomic.
        unsafe { libc::pthread_atfork(None, None, Some(reset_in_child)) };
    }
    MAX.store(m, O::Relaxed);
    m
}

/// How often [`max_spinners`] re-reads the calling thread's CPU affinity.
#[cfg(not(loom))]
const AFFINITY_RECHECK_NS: u64 = 20_000_000;

/// Threads spinning now (adaptive spins only).
#[cfg(not(loom))]
static SPINNERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The outcome of a blocking or timed acquire.
///
/// # Examples
///
/// ```
/// use rsthread_core::{Acquire, Deadline, RawLock};
///
/// let lock = RawLock::new();
/// assert_eq!(lock.acquire(None), Acquire::Acquired);
/// // Held by us (a lock has no owner, so this would wait forever without a deadline).
/// assert_eq!(lock.acquire(Some(Deadline::after_ns(1_000_000))), Acquire::TimedOut);
/// ```
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
///
/// # Examples
///
/// ```
/// use rsthread_core::{NotLocked, RawLock};
///
/// let lock = RawLock::new();
/// assert_eq!(lock.release(), Err(NotLocked));
/// assert!(!lock.is_locked(), "the failed release changed nothing");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotLocked;

/// A futex lock with no owner.
///
/// # Examples
///
/// Taken on one thread, released on another (what `threading.Event` and
/// `Thread.join` do):
///
/// ```
/// use rsthread_core::{Acquire, RawLock};
/// use std::sync::Arc;
///
/// let lock = Arc::new(RawLock::new());
/// assert!(lock.try_acquire());
/// let l2 = Arc::clone(&lock);
/// std::thread::spawn(move || l2.release().unwrap()).join().unwrap();
/// assert!(!lock.is_locked());
/// assert_eq!(lock.acquire(None), Acquire::Acquired);
/// ```
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
        RawLock {
            state: AtomicU32::new(0),
        }
    }
    /// A new, unlocked lock.
    #[cfg(loom)]
    pub fn new() -> RawLock {
        RawLock {
            state: AtomicU32::new(0),
        }
    }

    /// Take the lock if it is free; never blocks.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        // Acquire on success: everything written before the matching release is visible.
        // Relaxed on failure: we learn nothing and publish nothing.
        self.state
            .compare_exchange(0, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
            || self.try_acquire_slow()
    }

    /// [`try_acquire`](Self::try_acquire) without a read-modify-write when
    /// the lock is free with no other bit set (see the module docs).
    ///
    /// # Safety
    /// No other thread writes this lock's state during the call, and every
    /// earlier write by another thread happens before it (for example: all
    /// writers hold one outer lock, and none writes without it).
    #[inline]
    pub unsafe fn try_acquire_exclusive(&self) -> bool {
        // Relaxed (load and store): per the contract, the outer lock orders
        // this with every other write; no other thread can interleave.
        match self.state.load(Ordering::Relaxed) {
            0 => {
                self.state.store(LOCKED, Ordering::Relaxed);
                true
            }
            s if s & LOCKED != 0 => false,
            _ => self.try_acquire_slow(),
        }
    }

    /// The lock may be free with other bits set (sleepers, starving count).
    #[cold]
    fn try_acquire_slow(&self) -> bool {
        // Relaxed: the CAS below synchronises.
        let mut s = self.state.load(Ordering::Relaxed);
        while s & LOCKED == 0 {
            // Acquire: as in try_acquire.
            match self.state.compare_exchange_weak(
                s,
                s | LOCKED,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
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
        self.acquire_contended(deadline, None)
    }

    /// [`acquire`](Self::acquire), spinning before it sleeps when `score`
    /// says this lock is usually handed over rather than re-taken (see the
    /// module docs). Same outcomes and guarantees as `acquire`.
    #[inline]
    pub fn acquire_adaptive(&self, deadline: Option<Deadline>, score: &SpinScore) -> Acquire {
        if self.try_acquire() {
            return Acquire::Acquired;
        }
        self.acquire_contended(deadline, Some(score))
    }

    /// Adaptive spin (see the module docs); returns how many polls a free
    /// lock should be left to a barging holder (0: take it when free).
    #[cfg(not(loom))]
    fn spin_adaptive(&self, deadline: Option<Deadline>, score: &SpinScore) -> u32 {
        use std::sync::atomic::Ordering as O;
        let sc = score.0.load(O::Relaxed);
        let conf = sc & 0xff;
        if conf == 0 {
            let n = (sc >> 8) + 1;
            if n < SPIN_EXPLORE_EVERY {
                score.0.store(n << 8, O::Relaxed);
                return 0;
            }
        }
        let max = max_spinners();
        if max == 0 {
            return 0;
        }
        if SPINNERS.fetch_add(1, O::Relaxed) >= max {
            SPINNERS.fetch_sub(1, O::Relaxed);
            return 0;
        }
        let t0 = crate::timeout::monotonic_ns();
        let end = deadline
            .map_or(u64::MAX, Deadline::as_nanos)
            .min(t0 + SPIN_MAX_NS);
        let mut free_since = 0u64;
        let end_how = 'spin: loop {
            for _ in 0..16 {
                for _ in 0..SPIN_POLL_PAUSES {
                    spin_hint();
                }
                // Relaxed: a hint; the acquiring CAS synchronises.
                if self.state.load(Ordering::Relaxed) & LOCKED == 0 {
                    let now = crate::timeout::monotonic_ns();
                    if free_since == 0 {
                        free_since = now;
                        // About to take it (and then the GIL): let the
                        // thread that just released it spin in turn.
                        SPINNERS.fetch_sub(1, O::Relaxed);
                    } else if now - free_since >= SPIN_SETTLE_NS {
                        break 'spin SpinEnd::Won;
                    }
                } else if free_since != 0 {
                    break 'spin SpinEnd::Barging;
                }
            }
            if crate::timeout::monotonic_ns() >= end {
                break SpinEnd::Timeout;
            }
        };
        if free_since == 0 {
            SPINNERS.fetch_sub(1, O::Relaxed);
        }
        let new = match end_how {
            // Won, but after longer than a sleep and wake-up would have
            // taken: not worth spinning for next time.
            SpinEnd::Won if crate::timeout::monotonic_ns() - t0 > SPIN_WORTH_NS => conf / 2,
            SpinEnd::Won => (conf + 1).min(SPIN_CONF_MAX),
            SpinEnd::Barging => 0,
            SpinEnd::Timeout => conf / 2,
        };
        score.0.store(new, O::Relaxed);
        if end_how == SpinEnd::Barging {
            SPIN_POLITE_POLLS
        } else {
            0
        }
    }

    #[cold]
    fn acquire_contended(&self, deadline: Option<Deadline>, score: Option<&SpinScore>) -> Acquire {
        // Spin briefly with loads only (no cache-line ping-pong) in case the
        // holder is about to release; a Python holder usually is not, so keep it short.
        // Not when this process has a single CPU: the holder cannot run
        // meanwhile. (Pinned to one CPU, this spin cost a `threading.Condition`
        // ping-pong about 5 µs of CPU per round trip, for nothing.)
        #[cfg(not(loom))]
        if max_spinners() > 0 {
            let mut spins = 0;
            // Relaxed: only a hint; the CAS below does the synchronising.
            while self.state.load(Ordering::Relaxed) == LOCKED && spins < SPIN_LIMIT {
                spin_hint();
                spins += 1;
            }
        }
        // Polls a free lock is still left to a barging holder (see spin_adaptive).
        #[allow(unused_mut)]
        let mut polite = 0u32;
        #[cfg(not(loom))]
        if let Some(score) = score {
            // Relaxed: a hint, as above.
            if self.state.load(Ordering::Relaxed) & LOCKED != 0 {
                polite = self.spin_adaptive(deadline, score);
            }
        }
        #[cfg(loom)]
        let _ = score;
        let mut since: Option<u64> = None;
        let mut wakeups = 0u32;
        let mut starving = false;
        let outcome = loop {
            // Relaxed: every transition below is a CAS with the right ordering.
            let s = self.state.load(Ordering::Relaxed);
            if s & LOCKED == 0 && polite > 0 {
                // A barging holder is about to re-take it: let it, then sleep.
                polite -= 1;
                for _ in 0..SPIN_POLL_PAUSES {
                    spin_hint();
                }
                continue;
            }
            if s & LOCKED == 0 {
                // Free: take it. Keep PARKED if we ever slept: others may still sleep.
                let new = s | LOCKED | if since.is_some() { PARKED } else { 0 };
                // Acquire: taking the lock must see the previous holder's writes.
                if self
                    .state
                    .compare_exchange(s, new, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    break Acquire::Acquired;
                }
                continue;
            }
            if s & HANDOFF != 0 {
                if starving {
                    // Claim the hand-off: the lock stays LOCKED and is now ours.
                    // Acquire: pairs with the Release that set HANDOFF.
                    if self
                        .state
                        .compare_exchange(s, s & !HANDOFF, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
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
                if self
                    .state
                    .compare_exchange(s, s | PARKED, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
                {
                    continue;
                }
            }
            if since.is_none() {
                since = Some(if cfg!(loom) {
                    0
                } else {
                    crate::timeout::monotonic_ns()
                });
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
            match self
                .state
                .compare_exchange(s, s & !HANDOFF, Ordering::Acquire, Ordering::Relaxed)
            {
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
        if self
            .state
            .compare_exchange(LOCKED, 0, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(());
        }
        self.release_slow()
    }

    /// [`release`](Self::release) without a read-modify-write when the lock
    /// is held with no other bit set (nobody to wake, no hand-off).
    ///
    /// # Safety
    /// As for [`try_acquire_exclusive`](Self::try_acquire_exclusive).
    #[inline]
    pub unsafe fn release_exclusive(&self) -> Result<(), NotLocked> {
        // Relaxed (load and store): as in `try_acquire_exclusive`.
        if self.state.load(Ordering::Relaxed) == LOCKED {
            self.state.store(0, Ordering::Relaxed);
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
            match self
                .state
                .compare_exchange(s, new, Ordering::Release, Ordering::Relaxed)
            {
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
    fn pinned_to_one_cpu_stops_spinning() {
        let all = rustix::thread::sched_getaffinity(None).unwrap();
        if all.count() < 2 {
            return; // nothing to observe: a single CPU never spins
        }
        // In a thread of its own: the affinity is per thread.
        std::thread::spawn(move || {
            assert!(max_spinners() > 0, "{} CPUs, no spinning", all.count());
            let cpu = (0..1024).find(|&c| all.is_set(c)).unwrap();
            let mut one = rustix::thread::CpuSet::new();
            one.set(cpu);
            rustix::thread::sched_setaffinity(None, &one).unwrap();
            // Within a few recheck periods (another test thread may refresh
            // the cache meanwhile from its own, unpinned, mask).
            let stopped = (0..10).any(|_| {
                std::thread::sleep(Duration::from_nanos(AFFINITY_RECHECK_NS + 5_000_000));
                max_spinners() == 0
            });
            assert!(stopped, "still spinning on one CPU");
        })
        .join()
        .unwrap();
    }

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
        assert_eq!(
            l.acquire(Some(Deadline::after(Duration::ZERO))),
            Acquire::Acquired
        );
        assert_eq!(
            l.acquire(Some(Deadline::after(Duration::ZERO))),
            Acquire::TimedOut
        );
    }

    #[test]
    fn release_from_another_thread_wakes_waiter() {
        let l = Arc::new(RawLock::new());
        assert!(l.try_acquire());
        let l2 = l.clone();
        let waiter = std::thread::spawn(move || l2.acquire(None));
        std::thread::sleep(Duration::from_millis(20));
        let l3 = l.clone();
        std::thread::spawn(move || l3.release().unwrap())
            .join()
            .unwrap();
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

    /// Two threads hand two locks back and forth with adaptive spinning:
    /// every hand-over happens exactly once, in order.
    #[test]
    fn adaptive_ping_pong_exact() {
        use std::sync::atomic::AtomicU64 as StdU64;
        const N: u64 = 20_000;
        let ping = Arc::new((RawLock::new(), SpinScore::new()));
        let pong = Arc::new((RawLock::new(), SpinScore::new()));
        let turns = Arc::new(StdU64::new(0));
        assert!(ping.0.try_acquire());
        assert!(pong.0.try_acquire());
        let (pi, po, t) = (ping.clone(), pong.clone(), turns.clone());
        let other = std::thread::spawn(move || {
            for i in 0..N {
                assert_eq!(pi.0.acquire_adaptive(None, &pi.1), Acquire::Acquired);
                assert_eq!(t.load(std::sync::atomic::Ordering::Relaxed), 2 * i + 1);
                t.store(2 * i + 2, std::sync::atomic::Ordering::Relaxed);
                po.0.release().unwrap();
            }
        });
        for i in 0..N {
            turns.store(2 * i + 1, std::sync::atomic::Ordering::Relaxed);
            ping.0.release().unwrap();
            assert_eq!(pong.0.acquire_adaptive(None, &pong.1), Acquire::Acquired);
            assert_eq!(turns.load(std::sync::atomic::Ordering::Relaxed), 2 * i + 2);
        }
        other.join().unwrap();
        // Each side holds the lock it took last.
        assert!(pong.0.is_locked() && ping.0.is_locked());
        assert!(ping.1.confidence() <= SPIN_CONF_MAX && pong.1.confidence() <= SPIN_CONF_MAX);
    }

    /// A spinning timed acquire still never returns before its deadline, and
    /// a deadline shorter than the spin budget ends the spin.
    #[test]
    fn adaptive_timed_acquire_never_early() {
        let l = RawLock::new();
        let score = SpinScore::new();
        assert!(l.try_acquire());
        // Full confidence: these acquires spin (when there is a spare CPU).
        score
            .0
            .store(SPIN_CONF_MAX, std::sync::atomic::Ordering::Relaxed);
        for d in [5_000u64, 20_000, 200_000] {
            let t0 = Instant::now();
            assert_eq!(
                l.acquire_adaptive(Some(Deadline::after_ns(d)), &score),
                Acquire::TimedOut
            );
            assert!(t0.elapsed() >= Duration::from_nanos(d));
        }
        // Each spin that ran timed out and halved the confidence (a spin is
        // skipped while other tests' threads hold the spare CPUs).
        assert!(score.confidence() <= SPIN_CONF_MAX);
        l.release().unwrap();
    }

    /// A spinning waiter next to a holder that keeps re-taking the lock:
    /// the waiter ends (acquired or timed out) and the lock stays consistent.
    /// (Whether the spin sees the barging depends on scheduling, so the
    /// score is not checked here.)
    #[test]
    fn adaptive_waiter_with_barging_holder() {
        use std::sync::atomic::AtomicBool;
        let l = Arc::new((RawLock::new(), SpinScore::new()));
        let stop = Arc::new(AtomicBool::new(false));
        assert!(l.0.try_acquire());
        let (l2, stop2) = (l.clone(), stop.clone());
        let holder = std::thread::spawn(move || {
            // Already holding; release and re-take in a tight loop.
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                l2.0.release().unwrap();
                while !l2.0.try_acquire() {}
            }
            l2.0.release().unwrap();
        });
        l.1 .0
            .store(SPIN_CONF_MAX, std::sync::atomic::Ordering::Relaxed);
        let waiter = {
            let l = l.clone();
            std::thread::spawn(move || {
                l.0.acquire_adaptive(Some(Deadline::after(Duration::from_millis(50))), &l.1)
            })
        };
        let r = waiter.join().unwrap();
        if r == Acquire::Acquired {
            // The holder is waiting to re-take it.
            l.0.release().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        holder.join().unwrap();
        assert!(matches!(r, Acquire::Acquired | Acquire::TimedOut));
        assert!(!l.0.is_locked());
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
            tid2.store(
                unsafe { libc::pthread_self() } as u64,
                std::sync::atomic::Ordering::SeqCst,
            );
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
