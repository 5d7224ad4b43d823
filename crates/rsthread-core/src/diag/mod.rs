//! Concurrency diagnostics: why, where and who when a threaded program hangs.
//!
//! Off by default. Everything here is bookkeeping the binding feeds from its
//! slow paths (or from every acquire/release once enabled); the lock fast path
//! pays one Relaxed load of `global().flags()` and a branch while it is 0.
//!
//! Once enabled, the common case stays cheap: every lock known to
//! diagnostics has a [`LockCell`] (holder, depth, acquire site, the bits that
//! classify it, hold statistics) that the binding reaches through a pointer
//! in the lock object. An uncontended acquire and its release by the same
//! thread update the cell and the thread's own record ([`cell`]) without
//! taking the state mutex; waits, contended acquires, releases by another
//! thread, new lock-order edges and the timeline go through the state, which
//! reads and writes the same cells.
//!
//! * **Deadlocks** ([`DEADLOCK`]): a wait-for graph (thread → lock it blocks
//!   on → thread holding it → …). [`wait_begin`](Diagnostics::wait_begin) returns a [`Deadlock`] when
//!   the new wait completes a cycle that cannot resolve (rules below).
//! * **Lock order** ([`LOCK_ORDER`]): a graph over lock *classes* (a class is
//!   the creation site of a lock); [`acquired`](Diagnostics::acquired) returns an [`OrderInversion`]
//!   when an acquire closes a cycle, whether or not it ever deadlocked.
//! * **Profile** ([`PROFILE`]): per-class contention statistics ([`stats`](Diagnostics::stats)).
//! * **Trace** ([`TRACE`]): a bounded timeline exported as Chrome trace JSON
//!   ([`export_chrome_trace`](Diagnostics::export_chrome_trace)) for Perfetto UI.
//! * **Hang** ([`HANG`]): for the binding's watchdog, [`longest_waits`](Diagnostics::longest_waits),
//!   [`snapshot`](Diagnostics::snapshot) and [`wait_chains`](Diagnostics::wait_chains). Waits are recorded whenever
//!   [`wait_begin`](Diagnostics::wait_begin) is called, whatever the flags; the flag only tells the
//!   binding to run its watchdog.
//!
//! Identities are plain integers: [`ThreadId`] is the Python ident,
//! [`LockId`] a number unique among live lock objects (the binding's choice,
//! e.g. the object address), [`SiteId`] an interned `"file:line in func"`.
//! Unknown threads and locks are registered on first use (a lock so met is a
//! plain lock of unknown site, its own class).
//!
//! ## How the binding uses this
//!
//! The binding calls the methods of the process-wide instance, [`global()`]
//! (the only one the per-thread fast path in [`cell`] records into); tests
//! (and anything else wanting isolation) can make their own instance.
//!
//! 1. `rsthread.diag.enable(...)` → [`set_flags`](Diagnostics::set_flags), [`set_deadlock_mode`](Diagnostics::set_deadlock_mode),
//!    [`set_report_timed`](Diagnostics::set_report_timed), [`set_timeline_capacity`](Diagnostics::set_timeline_capacity); then register the
//!    threads that already exist with [`thread_started`](Diagnostics::thread_started) (the "all threads
//!    blocked" rule counts only registered threads). Disable with
//!    `set_flags(0)`; the state is kept until [`reset`](Diagnostics::reset).
//! 2. Lock objects: [`lock_created`](Diagnostics::lock_created) with the interned creation site
//!    ([`intern_site`]) when `flags() != 0` (it returns the lock's cell; a
//!    lock first seen later gets one from [`cell_of`](Diagnostics::cell_of)); [`lock_destroyed`](Diagnostics::lock_destroyed) in
//!    dealloc (when the lock was registered; calling it for unknown ids is
//!    harmless). The binding feeds acquires and releases of its own thread
//!    through [`acquire::acquired_now`] (uncontended),
//!    [`acquire::acquire_blocking`] (the whole wait) and [`cell::released`]
//!    (fast path, falling back to the methods below), and non-blocking
//!    failures through [`cell::acquire_failed`].
//!    Thread sentinels (`_set_sentinel`, the `_tstate_lock` that
//!    `Thread.join` waits on) additionally get [`mark_sentinel`](Diagnostics::mark_sentinel).
//! 3. Threads: [`thread_started`](Diagnostics::thread_started) at bootstrap (ident, native id, name),
//!    [`thread_named`](Diagnostics::thread_named) when `Thread.name` changes, [`thread_exited`](Diagnostics::thread_exited) at the
//!    very end (report the returned RLock leaks at once); [`leaked_at_exit`](Diagnostics::leaked_at_exit)
//!    at interpreter shutdown for plain locks never released.
//! 4. **Ordering** (this is what makes reports trustworthy under races):
//!    call [`acquired`](Diagnostics::acquired) *after* the real acquire succeeded and [`released`](Diagnostics::released)
//!    *before* the real release (while the lock is still held), so a hold
//!    recorded here is always a real hold; call [`wait_begin`](Diagnostics::wait_begin) before going
//!    to sleep and [`wait_end`](Diagnostics::wait_end) after waking. For a plain-lock release that
//!    may fail (`release()` of an unlocked lock), check `locked()` first; for
//!    an RLock, call [`released`](Diagnostics::released) only when the caller owns it.
//!
//!    Every acquire that succeeds, when `flags() != 0`:
//!    [`acquired`](Diagnostics::acquired)`(me, lock, site, blocking, waited_ns)`, where `blocking`
//!    is false for `acquire(False)` / `acquire(timeout=0)` (such acquires
//!    add no lock-order edge), `site` the interned caller frame (or
//!    [`UNKNOWN_SITE`] when stacks are not collected) and `waited_ns` the
//!    time spent blocked (0 on the fast path: that is what "contended"
//!    means). RLock re-entries are passed too and only counted as depth.
//!    Every release: [`released`](Diagnostics::released)`(me, lock)`. A failed non-blocking
//!    acquire of a plain lock: [`acquire_failed`](Diagnostics::acquire_failed). RLock `_release_save` →
//!    [`release_all`](Diagnostics::release_all); `_acquire_restore` → [`acquired`](Diagnostics::acquired) then
//!    [`set_rlock_depth`](Diagnostics::set_rlock_depth). Report a returned inversion (under [`LOCK_ORDER`]).
//! 5. The slow path of a blocking acquire (the fast try failed):
//!    [`acquire::acquire_blocking`] does all of what follows, given the
//!    binding's wait and reports ([`acquire::Binding`]). Once per sleep: [`wait_begin`](Diagnostics::wait_begin)`(me, lock, timed)` *before* blocking. If it
//!    returns a [`Deadlock`]: under [`DeadlockMode::Warn`] print it (with
//!    `sys._current_frames()` for the threads in it) and keep waiting; under
//!    [`DeadlockMode::Raise`] call [`wait_end`](Diagnostics::wait_end)`(me, lock, false)` and raise
//!    in `me`. After the sleep: [`wait_end`](Diagnostics::wait_end)`(me, lock, acquired)`, then
//!    [`acquired`](Diagnostics::acquired) if it was. A retry after a signal handler (EINTR) calls
//!    `wait_end(.., false)` and `wait_begin` again: within a second, on the
//!    same lock, it continues the same episode (same start, same
//!    [`WaitState::episode`]). `Thread.join` is a wait on the target's
//!    sentinel.
//! 6. A watchdog thread (under [`HANG`]) polls [`longest_waits`](Diagnostics::longest_waits)`(threshold)`
//!    and reports each [`WaitState::episode`] once, using [`wait_chains`](Diagnostics::wait_chains) for
//!    the "who waits for whom" picture. [`detect_deadlock`](Diagnostics::detect_deadlock) re-runs the
//!    deadlock rules without a new wait (e.g. after a thread exited and left
//!    every other one blocked).
//! 7. Fork: [`before_fork`] in the parent before `fork()`,
//!    [`after_fork_parent`] in the parent after, [`after_fork_child`] in the
//!    child (only the forking thread survives; history is cleared).
//! 8. [`stats`](Diagnostics::stats), [`reset_stats`](Diagnostics::reset_stats), [`export_chrome_trace`](Diagnostics::export_chrome_trace), [`snapshot`](Diagnostics::snapshot) back
//!    the Python-level reporting functions.
//!
//! ## Deadlock rules
//!
//! A plain `Lock` has no owner: any thread may release it, and the standard
//! library relies on that (Condition waiter locks, hence Event, Semaphore,
//! Barrier, `queue.Queue`; `Thread.join` on the sentinel). In those signal
//! patterns a thread blocks on a plain lock "held" by the thread that
//! acquired it long ago, often itself, and somebody else will release it.
//! They must never be reported. A lock's past says nothing about who may
//! release it *now* (a lock released by its acquirer a thousand times may be
//! released by another thread the next time: the first-reader/last-reader
//! design), so only evidence about the **current hold** counts. Each wait
//! edge `waiter → lock → holder` is classified:
//!
//! * **owned**: the lock is an RLock (only its owner can release it), a
//!   sentinel (only its thread's exit releases it), or a plain lock whose
//!   current hold was taken through `__enter__` (a `with` block: its release
//!   is the matching `__exit__` in the holder's thread; see
//!   [`Diagnostics::entered`]);
//! * **plain**: a plain lock held through `acquire()`: any thread may
//!   release it (a binary semaphore, a "done" lock, a reader-writer gate).
//!
//! A cycle (found by walking the chain from the thread that begins to wait,
//! or from every waiting thread when all are blocked) is reported when its
//! threads are all in untimed waits (any waits with
//! [`set_report_timed`](Diagnostics::set_report_timed)`(true)`: a timeout would break the cycle) and either
//!
//! * every edge is owned → [`DeadlockRule::Definite`], at once, the first
//!   time, whatever the rest of the program does (a polling main thread, a
//!   heartbeat, a server loop cannot release those locks). A thread waiting
//!   for a lock it holds through `with` is such a cycle of one; or
//! * some edge is plain, and every other live registered thread is blocked
//!   (the same timing condition) or gone, so nobody is left to release it →
//!   [`DeadlockRule::AllBlocked`].
//!
//! The [`Deadlock::detected_by`] thread is always a thread of the cycle: the
//! one whose wait closed it, or, when a bystander's wait (a `join`) or the
//! watchdog revealed it, the cycle's thread that began waiting last. Under
//! [`DeadlockMode::Raise`] the binding raises there; when that is not the
//! calling thread it posts the error with [`post_deadlock`](Diagnostics::post_deadlock) and the cycle's
//! thread collects it with [`take_deadlock`](Diagnostics::take_deadlock) during its wait. Each cycle is
//! reported once until one of its threads acquires or releases something.
//!
//! ## Lock-order rules
//!
//! On a `blocking` first-level acquire of lock `n` by thread `t`, for each
//! lock `h` that `t` holds and that *orders* (an RLock, or a plain lock that
//! is not a sentinel, was never released by another thread and was never
//! re-acquired by its holder: those are signal locks whose "hold" means
//! nothing), add the class edge `class(h) → class(n)`, remembering the first
//! acquire sites seen for it. A new edge that closes a cycle yields the
//! smallest such cycle, once. Two locks of the same class are compared per
//! object: `x` held while acquiring `y`, and elsewhere `y` held while
//! acquiring `x`, is reported once per pair (`transfer(a, b)` /
//! `transfer(b, a)`); a same-class pair never makes a class self-edge.

pub mod acquire;
pub mod cell;
mod report;
mod sites;
mod state;
mod timeline;

pub use cell::LockCell;
pub use report::*;
pub use sites::{intern_site, site_name};
pub use timeline::DEFAULT_CAPACITY as DEFAULT_TIMELINE_CAPACITY;

use state::{Ctx, State};
use std::cell::RefCell;
use std::io::{self, Write};
// Not the crate::sync shim: diag is never built under loom.
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// A Python thread ident (`_thread.get_ident()`).
pub type ThreadId = u64;
/// A lock object, unique among live locks (assigned by the binding).
pub type LockId = u64;
/// An interned site string (see [`intern_site`]).
pub type SiteId = u32;

/// The site of locks and acquires nobody told us about.
pub const UNKNOWN_SITE: SiteId = 0;

/// Flag: detect deadlocks in [`wait_begin`](Diagnostics::wait_begin).
pub const DEADLOCK: u32 = 1 << 0;
/// Flag: maintain the lock-order graph in [`acquired`](Diagnostics::acquired).
pub const LOCK_ORDER: u32 = 1 << 1;
/// Flag: contention statistics.
pub const PROFILE: u32 = 1 << 2;
/// Flag: record the timeline.
pub const TRACE: u32 = 1 << 3;
/// Flag: the binding runs its hang watchdog.
pub const HANG: u32 = 1 << 4;
/// Every flag.
pub const ALL: u32 = DEADLOCK | LOCK_ORDER | PROFILE | TRACE | HANG;

/// How many acquire sites [`ClassStats::top_sites`] lists.
pub const TOP_SITES: usize = 5;

/// `Lock` or `RLock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockKind {
    /// `_thread.lock`: no owner, any thread may release.
    Lock,
    /// `_thread.RLock`: owned, reentrant.
    RLock,
}

/// A lock-order class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LockClass {
    /// All locks created at this site.
    Site(SiteId),
    /// One lock whose creation site is unknown.
    Object(LockId),
}

impl LockClass {
    /// The class of lock `id` created at `site`.
    pub fn of(id: LockId, site: SiteId) -> LockClass {
        if site == UNKNOWN_SITE {
            LockClass::Object(id)
        } else {
            LockClass::Site(site)
        }
    }
}

/// What the binding does with a detected deadlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeadlockMode {
    /// Print a report and keep waiting.
    #[default]
    Warn,
    /// Raise in the thread whose wait closed the cycle.
    Raise,
}

/// One diagnostics universe: settings plus state behind one mutex.
///
/// The process-wide instance is [`global()`]; separate instances are
/// independent (tests use them with a fake clock).
pub struct Diagnostics {
    flags: AtomicU32,
    mode: AtomicU8,
    report_timed: AtomicBool,
    timeline_capacity: AtomicUsize,
    /// Some wait cycle was reported and not forgotten yet: every acquire and
    /// release must go through the state (which forgets it).
    dirty: AtomicBool,
    clock: fn() -> u64,
    state: Mutex<Option<State>>,
}

impl Default for Diagnostics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Diagnostics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Diagnostics")
            .field("flags", &self.flags())
            .finish_non_exhaustive()
    }
}

impl Diagnostics {
    /// All off, on the monotonic clock.
    pub const fn new() -> Diagnostics {
        Diagnostics::with_clock(crate::timeout::monotonic_ns)
    }

    /// All off, reading time (ns) from `clock`.
    pub const fn with_clock(clock: fn() -> u64) -> Diagnostics {
        Diagnostics {
            flags: AtomicU32::new(0),
            mode: AtomicU8::new(0),
            report_timed: AtomicBool::new(false),
            timeline_capacity: AtomicUsize::new(timeline::DEFAULT_CAPACITY),
            dirty: AtomicBool::new(false),
            clock,
            state: Mutex::new(None),
        }
    }

    /// The enabled flags.
    #[inline]
    pub fn flags(&self) -> u32 {
        // Relaxed: an independent switch; a thread seeing a stale value for a
        // moment only misses or adds one record.
        self.flags.load(Ordering::Relaxed)
    }

    /// Enable exactly `flags`.
    pub fn set_flags(&self, flags: u32) {
        // Relaxed: see flags().
        self.flags.store(flags & ALL, Ordering::Relaxed);
        // Holds recorded while off are unknown: threads start their hold
        // stacks afresh.
        cell::bump_epoch();
    }

    /// Whether a reported cycle is still remembered (see `dirty`).
    #[inline]
    pub(crate) fn dirty(&self) -> bool {
        // Relaxed: a hint read by the fast path; the state (under its mutex)
        // is what decides, and a thread that sees the flag late only skips
        // forgetting a cycle it is not part of.
        self.dirty.load(Ordering::Relaxed)
    }

    /// The deadlock mode (for the binding; the core only stores it).
    pub fn deadlock_mode(&self) -> DeadlockMode {
        // Relaxed: an independent setting.
        if self.mode.load(Ordering::Relaxed) == 1 {
            DeadlockMode::Raise
        } else {
            DeadlockMode::Warn
        }
    }

    /// Set the deadlock mode.
    pub fn set_deadlock_mode(&self, mode: DeadlockMode) {
        // Relaxed: an independent setting.
        self.mode.store(mode as u8, Ordering::Relaxed);
    }

    /// Whether cycles containing timed waits are reported (default false).
    pub fn report_timed(&self) -> bool {
        // Relaxed: an independent setting, read under the state mutex.
        self.report_timed.load(Ordering::Relaxed)
    }

    /// Report cycles that a timeout will break too.
    pub fn set_report_timed(&self, on: bool) {
        // Relaxed: see report_timed().
        self.report_timed.store(on, Ordering::Relaxed);
    }

    /// Timeline capacity in events.
    pub fn timeline_capacity(&self) -> usize {
        // Relaxed: an independent setting.
        self.timeline_capacity.load(Ordering::Relaxed)
    }

    /// Set the timeline capacity (at least 1); drops the recorded events.
    pub fn set_timeline_capacity(&self, events: usize) {
        let events = events.max(1);
        // Relaxed: read under the state mutex below and at state creation.
        self.timeline_capacity.store(events, Ordering::Relaxed);
        let mut g = self.lock();
        if let Some(s) = g.as_mut() {
            s.timeline.set_capacity(events);
        }
    }

    /// Whether this is the process-wide instance ([`global`]), the one the
    /// per-thread fast path records into.
    #[inline]
    fn is_global(&self) -> bool {
        std::ptr::eq(self, &GLOBAL)
    }

    fn lock(&self) -> MutexGuard<'_, Option<State>> {
        // A panic under the lock (a bug) leaves bookkeeping at worst stale;
        // diagnostics must not turn it into a panic in every lock operation.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run<R>(&self, g: &mut Option<State>, f: impl FnOnce(&mut State, &Ctx) -> R) -> R {
        self.run_at(g, true, f)
    }

    /// `timed`: read the clock into `Ctx::now` (else 0).
    fn run_at<R>(
        &self,
        g: &mut Option<State>,
        timed: bool,
        f: impl FnOnce(&mut State, &Ctx) -> R,
    ) -> R {
        let s = g.get_or_insert_with(|| State::new(self.timeline_capacity()));
        let now = if timed { (self.clock)() } else { 0 };
        let cx = Ctx {
            now,
            flags: self.flags(),
            report_timed: self.report_timed(),
        };
        f(s, &cx)
    }

    fn with<R>(&self, f: impl FnOnce(&mut State, &Ctx) -> R) -> R {
        self.with_at(true, f)
    }

    /// Under the state mutex; `timed` as for `run_at`.
    fn with_at<R>(&self, timed: bool, f: impl FnOnce(&mut State, &Ctx) -> R) -> R {
        let mut g = self.lock();
        let r = self.run_at(&mut g, timed, f);
        let dirty = g.as_ref().is_some_and(|s| !s.reported.is_empty());
        if dirty != self.dirty() {
            // Relaxed: see dirty().
            self.dirty.store(dirty, Ordering::Relaxed);
        }
        r
    }

    /// A lock object was created at `site`; returns its cell.
    pub fn lock_created(&self, lock: LockId, kind: LockKind, site: SiteId) -> &'static LockCell {
        self.with_at(false, |s, _| s.lock_created(lock, kind, site))
    }

    /// The cell of lock `lock` (registered as a plain lock of unknown site
    /// if it is new).
    pub fn cell_of(&self, lock: LockId) -> &'static LockCell {
        self.with_at(false, |s, _| s.cell_of(lock))
    }

    /// A lock object is gone (its id may be reused). A hold still open ends
    /// (a Condition waiter lock is dropped while held: not a leak).
    pub fn lock_destroyed(&self, lock: LockId) {
        // The clock only for a lock destroyed while held (its hold ends).
        let mut g = self.lock();
        let held = g.as_mut().is_some_and(|s| s.is_held(lock));
        self.run_at(&mut g, held, |s, cx| s.lock_destroyed(cx, lock))
    }

    /// `lock` was re-initialised (`_at_fork_reinit`, with or without a
    /// fork): it is unlocked and held by nobody; forget its holder.
    pub fn lock_reinit(&self, lock: LockId) {
        self.with(|s, _| s.lock_reinit(lock))
    }

    /// `lock` is a thread's sentinel: treated as owned by the thread holding
    /// it, never a leak, and left out of the lock-order graph.
    pub fn mark_sentinel(&self, lock: LockId) {
        self.with(|s, _| s.mark_sentinel(lock))
    }

    /// Thread `t` started (native id 0 if unknown). An ident still registered
    /// is taken as reused: the old thread is retired first.
    pub fn thread_started(&self, t: ThreadId, native: u64, name: Option<String>) {
        self.with(|s, cx| s.thread_started(cx, t, native, name))
    }

    /// Thread `t` is now called `name`.
    pub fn thread_named(&self, t: ThreadId, name: &str) {
        self.with(|s, _| s.thread_named(t, name.to_owned()))
    }

    /// Thread `t` exited. Returns the RLocks it still owned (they can never be
    /// released). Plain locks it still held are remembered for
    /// [`leaked_at_exit`](Self::leaked_at_exit) unless somebody releases them later.
    ///
    /// On the [`global`] instance, called by `t` itself: its buffered
    /// timeline events are handed in first and its fast-path record forgotten.
    pub fn thread_exited(&self, t: ThreadId) -> Vec<Leak> {
        if self.is_global() && t == crate::ident::current() {
            flush_events();
            cell::forget_thread();
        }
        self.with(|s, cx| s.thread_exited(cx, t))
    }

    /// Plain locks acquired by threads that exited and never released since
    /// (sentinels excluded), oldest exit first.
    pub fn leaked_at_exit(&self) -> Vec<Leak> {
        self.with(|s, _| s.leaked_at_exit())
    }

    /// `t` acquired `lock` at `site`. See the module docs for `blocking` and
    /// `waited_ns`. Returns a lock-order inversion this acquire revealed.
    pub fn acquired(
        &self,
        t: ThreadId,
        lock: LockId,
        site: SiteId,
        blocking: bool,
        waited_ns: u64,
    ) -> Option<OrderInversion> {
        self.with(|s, cx| s.acquired(cx, t, lock, site, blocking, waited_ns, false, None))
    }

    /// [`acquired`](Self::acquired) through `__enter__` (a `with` block):
    /// the hold is owned, only `t` can end it (see the deadlock rules).
    pub fn entered(
        &self,
        t: ThreadId,
        lock: LockId,
        site: SiteId,
        blocking: bool,
        waited_ns: u64,
    ) -> Option<OrderInversion> {
        self.with(|s, cx| s.acquired(cx, t, lock, site, blocking, waited_ns, true, None))
    }

    /// [`acquired`](Self::acquired) (or [`entered`](Self::entered)), with
    /// what `t` holds (oldest first) given by the caller instead of looked up.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn acquired_with(
        &self,
        t: ThreadId,
        lock: LockId,
        site: SiteId,
        blocking: bool,
        waited_ns: u64,
        entered: bool,
        held: Option<&[LockId]>,
    ) -> Option<OrderInversion> {
        self.with(|s, cx| s.acquired(cx, t, lock, site, blocking, waited_ns, entered, held))
    }

    /// `t` begins a blocking acquire of `lock` at `site` (before its wait):
    /// the lock-order edges from what `t` holds (`held`, oldest first; looked
    /// up if `None`) are recorded at the attempt. Returns an inversion the
    /// attempt revealed (under [`LOCK_ORDER`]).
    pub fn attempt(
        &self,
        t: ThreadId,
        lock: LockId,
        site: SiteId,
        held: Option<&[LockId]>,
    ) -> Option<OrderInversion> {
        self.with(|s, cx| {
            let looked_up;
            let held = match held {
                Some(h) => h,
                None => {
                    looked_up = s.held_ids_of(t);
                    &looked_up
                }
            };
            s.attempt(cx, t, lock, site, held)
        })
    }

    /// Report lock-order inversions as soon as they are found (`true`), or
    /// keep them to be judged with the evidence of the whole run by
    /// [`take_inversions`](Self::take_inversions) (`false`, the default):
    /// a lock class may show later that it behaves as a semaphore.
    pub fn set_immediate_inversions(&self, on: bool) {
        self.with(|s, _| s.immediate_inversions = on)
    }

    /// The lock-order inversions kept since the last call, judged now: to
    /// report, and suppressed with the reason (under immediate reports,
    /// only the suppressed ones: the others were returned when found).
    pub fn take_inversions(&self) -> InversionVerdicts {
        self.with(|s, _| s.take_inversions())
    }

    /// Hand deadlock `d` to its [`Deadlock::detected_by`] thread, to raise
    /// there (it collects it with [`take_deadlock`](Self::take_deadlock)).
    pub fn post_deadlock(&self, d: Deadlock) {
        self.with(|s, _| s.post_deadlock(d))
    }

    /// A deadlock posted for thread `t` that is still current (`t` still
    /// waits as it did in the report), taken away.
    pub fn take_deadlock(&self, t: ThreadId) -> Option<Deadlock> {
        self.with(|s, _| s.take_deadlock(t))
    }

    /// `t` released `lock` (one level of an RLock). For a plain lock `t` may
    /// differ from the acquirer: the hold ends all the same.
    pub fn released(&self, t: ThreadId, lock: LockId) {
        self.with(|s, cx| s.released(cx, t, lock))
    }

    /// `t` released every level of RLock `lock` (`_release_save`).
    pub fn release_all(&self, t: ThreadId, lock: LockId) {
        self.with(|s, cx| s.release_all(cx, t, lock))
    }

    /// The RLock `lock` just acquired now has recursion depth `depth`
    /// (`_acquire_restore`).
    pub fn set_rlock_depth(&self, lock: LockId, depth: u64) {
        self.with(|s, _| s.set_rlock_depth(lock, depth))
    }

    /// A non-blocking (or zero-timeout) acquire of `lock` by `t` failed.
    /// Only needed for plain locks: a thread trying to take a lock it holds
    /// itself (`Condition.wait(0)` on its waiter lock) marks it signal-like.
    pub fn acquire_failed(&self, t: ThreadId, lock: LockId) {
        self.with(|s, _| s.acquire_failed(t, lock))
    }

    /// `t` is about to block on `lock`. Returns a deadlock this wait made
    /// visible (under [`DEADLOCK`]).
    ///
    /// On the [`global`] instance, called by `t` itself: its buffered
    /// timeline events are handed in first, and its next acquire or release
    /// goes through the state (which must clear the wait record).
    pub fn wait_begin(&self, t: ThreadId, lock: LockId, timed: bool) -> Option<Deadlock> {
        if self.is_global() && t == crate::ident::current() {
            flush_events();
            cell::mark_unsynced();
        }
        self.with(|s, cx| s.wait_begin(cx, t, lock, timed))
    }

    /// `t` stopped blocking on `lock`, with it (`acquired`) or not.
    /// (On the [`global`] instance, called by `t`: as for
    /// [`wait_begin`](Self::wait_begin).)
    pub fn wait_end(&self, t: ThreadId, lock: LockId, acquired: bool) {
        if self.is_global() && t == crate::ident::current() {
            cell::mark_unsynced();
        }
        self.with(|s, cx| s.wait_end(cx, t, lock, acquired))
    }

    /// Run the deadlock rules now, without a new wait, preferring a cycle
    /// through `t`; reports only cycles not reported yet.
    pub fn detect_deadlock(&self, t: ThreadId) -> Option<Deadlock> {
        self.with(|s, cx| s.detect(cx, t))
    }

    /// Every registered live thread: holds and wait.
    pub fn snapshot(&self) -> Snapshot {
        self.with(|s, cx| s.snapshot(cx.now))
    }

    /// For each waiting thread (by ident), where its wait leads.
    pub fn wait_chains(&self) -> Vec<WaitChain> {
        self.with(|s, _| s.wait_chains())
    }

    /// Waits running for at least `threshold_ns`, longest first.
    pub fn longest_waits(&self, threshold_ns: u64) -> Vec<LongWait> {
        self.with(|s, cx| s.longest_waits(cx.now, threshold_ns))
    }

    /// Per-class contention statistics, most total wait first.
    pub fn stats(&self) -> Vec<ClassStats> {
        self.with(|s, _| s.stats(TOP_SITES))
    }

    /// Zero the statistics.
    pub fn reset_stats(&self) {
        self.with(|s, _| s.reset_stats())
    }

    /// Forget history: statistics, timeline, lock-order graph, reported
    /// cycles and pending leaks. What is true now (threads, locks, holds,
    /// waits) is kept.
    pub fn reset(&self) {
        self.with(|s, _| s.reset());
        cell::bump_epoch();
    }

    /// The timeline, oldest first (on the [`global`] instance, with the
    /// calling thread's buffered events handed in first).
    pub fn timeline(&self) -> Vec<TimelineEvent> {
        if self.is_global() {
            flush_events();
        }
        self.with(|s, _| {
            s.timeline
                .events()
                .iter()
                .map(|e| TimelineEvent {
                    ts_ns: e.ts,
                    tid: e.tid,
                    kind: e.event_kind(),
                    lock: e.lock,
                    lock_kind: e.lock_kind(),
                    site: e.site,
                    aux: e.aux,
                })
                .collect()
        })
    }

    /// Events overwritten because the timeline was full.
    pub fn timeline_dropped(&self) -> u64 {
        self.with(|s, _| s.timeline.dropped())
    }

    /// Write the timeline as Chrome trace-event JSON (see the `timeline`
    /// submodule docs for the mapping). The state lock is held only to copy
    /// the events.
    pub fn export_chrome_trace<W: Write + ?Sized>(&self, w: &mut W) -> io::Result<()> {
        if self.is_global() {
            flush_events();
        }
        let data = self.with(|s, cx| s.trace_data(cx.now));
        timeline::write_chrome_trace(w, &data)
    }

    /// In a forked child: only `surviving` (now with kernel id `native`)
    /// exists. Other threads, their waits and holds are dropped; history
    /// (statistics, timeline, reported cycles, pending leaks) is cleared. The
    /// lock registry and the lock-order graph stay.
    pub fn reset_after_fork(&self, surviving: ThreadId, native: u64) {
        self.with(|s, _| s.reset_after_fork(surviving, native))
    }
}

/// The process-wide instance.
static GLOBAL: Diagnostics = Diagnostics::new();

/// Hand the calling thread's buffered timeline events to the global state.
/// Threads buffer the events of their fast path (up to a batch) and hand
/// them in before any other call into the state, before blocking, at exit
/// and before an export, so each thread's events reach the timeline in
/// order; the export sorts all of them by time. A thread that is still
/// running at export time may have up to a batch of recent events missing.
pub(crate) fn flush_events() {
    let events = cell::take_events();
    if !events.is_empty() {
        GLOBAL.with_at(false, |s, _| {
            for e in events {
                s.timeline.push(e);
            }
        });
    }
}

/// The process-wide instance: what the binding feeds, and the only one
/// the per-thread fast path ([`cell`]) works with. A reference to a static
/// (no lazy initialisation): `global().flags()` is one Relaxed load, the
/// lock fast path's whole cost while diagnostics are off.
#[inline(always)]
pub fn global() -> &'static Diagnostics {
    &GLOBAL
}

/// The global state and site table locks, held across `fork()`.
type ForkGuards = (
    MutexGuard<'static, Option<State>>,
    MutexGuard<'static, Option<sites::Interner>>,
);

thread_local! {
    /// The global state and site table, held from `before_fork` until the
    /// matching `after_fork_*` in the forking thread, so that no other thread
    /// holds them across `fork()` (the child would find them locked forever).
    static FORK_GUARDS: RefCell<Option<ForkGuards>> = const { RefCell::new(None) };
}

/// Call in the parent just before `fork()`: takes the global locks (state,
/// then sites: the documented order) and keeps them in this thread.
pub fn before_fork() {
    let state = GLOBAL.lock();
    let sites = sites::lock_sites();
    FORK_GUARDS.with(|g| *g.borrow_mut() = Some((state, sites)));
}

/// Call in the parent after `fork()`: releases what [`before_fork`] took.
pub fn after_fork_parent() {
    FORK_GUARDS.with(|g| drop(g.borrow_mut().take()));
}

/// Call in the child after `fork()` (in the forking thread, now the only
/// one, ident `surviving`, kernel id `native`): see
/// [`Diagnostics::reset_after_fork`]. Without a prior [`before_fork`] it
/// locks normally (and would hang if another thread held the lock at fork).
pub fn after_fork_child(surviving: ThreadId, native: u64) {
    let taken = FORK_GUARDS.with(|g| g.borrow_mut().take());
    match taken {
        Some((mut state, sites)) => {
            drop(sites);
            GLOBAL.run(&mut state, |s, _| s.reset_after_fork(surviving, native));
        }
        None => GLOBAL.reset_after_fork(surviving, native),
    }
}

#[cfg(test)]
mod tests;
