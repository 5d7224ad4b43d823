//! The plain data handed back to the binding: everything a report needs,
//! detached from the live state (safe to format after the call returned).

use super::{LockClass, LockId, LockKind, SiteId, ThreadId};

/// A thread as it was known when the report was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadRef {
    /// Python ident (`_thread.get_ident()`).
    pub ident: ThreadId,
    /// Kernel thread id (0 if the binding never told us).
    pub native: u64,
    /// `Thread.name`, if the binding told us one.
    pub name: Option<String>,
}

/// A lock object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockRef {
    /// The binding's id for the object.
    pub id: LockId,
    /// `Lock` or `RLock`.
    pub kind: LockKind,
    /// Where it was created ([`UNKNOWN_SITE`](super::UNKNOWN_SITE) if it was
    /// never registered with `lock_created`).
    pub site: SiteId,
}

impl LockRef {
    /// Its lock-order class (the creation site, or the object itself when the
    /// site is unknown).
    pub fn class(&self) -> LockClass {
        LockClass::of(self.id, self.site)
    }
}

/// A lock some thread holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLock {
    /// The lock.
    pub lock: LockRef,
    /// Where the (first level of the) hold was acquired.
    pub acquire_site: SiteId,
    /// When the hold began (monotonic ns).
    pub since_ns: u64,
    /// RLock recursion depth (1 for a plain lock).
    pub depth: u64,
}

/// Which rule made a wait cycle a deadlock. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlockRule {
    /// Every edge is owned (RLock, sentinel, or a plain lock held through
    /// `with`): only a thread inside the cycle could break it, and all of
    /// them wait.
    Definite,
    /// Some edge is a plain lock held through `acquire()`, which anyone may
    /// release, and every live registered thread is blocked, so nobody is
    /// left to release it.
    AllBlocked,
}

/// One thread of a wait cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleThread {
    /// The thread.
    pub thread: ThreadRef,
    /// The lock it is blocked on (held by the next thread of the cycle).
    pub waits_for: LockRef,
    /// When the wait began (monotonic ns).
    pub wait_since_ns: u64,
    /// Whether the wait has a timeout.
    pub timed: bool,
    /// Every lock it holds, oldest first.
    pub held: Vec<HeldLock>,
}

/// A wait cycle that will not resolve by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadlock {
    /// The thread of the cycle that gets the error: the one whose wait
    /// closed the cycle, or (when a bystander's wait or the watchdog revealed
    /// it) the member that began waiting last. Under raise mode the binding
    /// raises in this thread only.
    pub detected_by: ThreadId,
    /// When (monotonic ns).
    pub at_ns: u64,
    /// Why it was judged a deadlock.
    pub rule: DeadlockRule,
    /// The cycle: `threads[i]` waits for `threads[i].waits_for`, held by
    /// `threads[(i + 1) % len]`. One entry: a self-deadlock (the thread waits
    /// for a plain lock it holds itself).
    pub threads: Vec<CycleThread>,
    /// Further cycles found at the same moment (only under
    /// [`DeadlockRule::AllBlocked`], when every thread just became blocked).
    pub other_cycles: Vec<Vec<CycleThread>>,
}

impl Deadlock {
    /// A single thread waiting for a lock it holds.
    pub fn is_self_deadlock(&self) -> bool {
        self.threads.len() == 1
    }
}

/// One edge of the lock-order graph: `thread` held a lock of class `from`
/// (acquired at `held_site`) and then acquired a lock of class `to` at
/// `acquire_site`. Recorded the first time the edge was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderEdge {
    /// Class of the lock already held.
    pub from: LockClass,
    /// Class of the lock acquired while holding it.
    pub to: LockClass,
    /// The held lock object (when first seen).
    pub from_lock: LockId,
    /// The acquired lock object (when first seen).
    pub to_lock: LockId,
    /// Where the held lock had been acquired.
    pub held_site: SiteId,
    /// Where the second lock was acquired.
    pub acquire_site: SiteId,
    /// Who did it.
    pub thread: ThreadRef,
    /// The caller's stack when the edge was first recorded (at the attempt
    /// of the second lock; the held lock's acquire is usually an outer frame
    /// of it), as the binding formatted it; `None` if it gave none.
    pub stack: Option<std::sync::Arc<str>>,
}

/// Locks acquired in inconsistent orders: a potential deadlock, reported
/// even if it never happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderInversion {
    /// The thread whose acquire closed the cycle.
    pub thread: ThreadId,
    /// When (monotonic ns).
    pub at_ns: u64,
    /// Two objects of the same class nested in both orders
    /// (`transfer(a, b)` / `transfer(b, a)`); then `edges` has two entries
    /// whose `from_lock`/`to_lock` name the objects.
    pub same_class: bool,
    /// The cycle, smallest through the new edge: `edges[i].to ==
    /// edges[i + 1].from`, the last edge is the acquire that closed it.
    pub edges: Vec<OrderEdge>,
}

/// Why a lock-order inversion is not reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suppressed {
    /// A lock class of the cycle behaves as a semaphore (a lock of it was
    /// released by another thread than its acquirer): its "holds" order
    /// nothing.
    Semaphore,
    /// Every edge of the cycle was taken while the same third lock (a gate)
    /// was held: two threads can never be inside the cycle at once.
    GateLock,
    /// Every edge of the cycle, each time, went from a lock of lower `id()`
    /// to one of higher `id()` (a `sorted(locks, key=id)` discipline): no
    /// wait cycle can form among objects taken in one global order.
    IdOrder,
}

/// Lock-order inversions judged with the evidence of the whole run (see
/// [`Diagnostics::take_inversions`](super::Diagnostics::take_inversions)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InversionVerdicts {
    /// Inversions to report.
    pub reported: Vec<OrderInversion>,
    /// Inversions left out, each with the reason.
    pub suppressed: Vec<(OrderInversion, Suppressed)>,
}

/// A lock left held by a thread that exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// The thread, as it was at exit.
    pub thread: ThreadRef,
    /// The lock.
    pub lock: LockRef,
    /// Where it had been acquired.
    pub acquire_site: SiteId,
    /// When it had been acquired (monotonic ns).
    pub since_ns: u64,
    /// When the thread exited (monotonic ns).
    pub exited_ns: u64,
    /// RLock depth at exit (1 for a plain lock).
    pub depth: u64,
}

/// What a thread is blocked on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitState {
    /// The lock.
    pub lock: LockRef,
    /// Who holds it (for a plain lock: who acquired it), if anybody known.
    pub holder: Option<ThreadRef>,
    /// Set when the last holder exited without releasing it.
    pub holder_exited: Option<ThreadId>,
    /// When the wait began; retries after a signal keep the first start.
    pub since_ns: u64,
    /// How long so far.
    pub waited_ns: u64,
    /// Whether it has a timeout.
    pub timed: bool,
    /// Unique per wait episode (stable across signal retries of the same
    /// acquire): a watchdog reports each episode once.
    pub episode: u64,
}

/// One registered live thread in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadState {
    /// The thread.
    pub thread: ThreadRef,
    /// Locks it holds, oldest first.
    pub held: Vec<HeldLock>,
    /// The lock it is blocked on, if any.
    pub waiting: Option<WaitState>,
}

/// Every registered live thread at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// When (monotonic ns).
    pub taken_ns: u64,
    /// Sorted by ident.
    pub threads: Vec<ThreadState>,
}

/// A waiting thread in a [`WaitChain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    /// The waiting thread.
    pub thread: ThreadRef,
    /// What it waits for.
    pub lock: LockRef,
    /// When the wait began.
    pub since_ns: u64,
    /// Whether the wait has a timeout.
    pub timed: bool,
    /// Who holds `lock` (the next link's thread, or the chain's end).
    pub holder: Option<ThreadId>,
}

/// How a wait chain ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainEnd {
    /// At a holder that is not blocked (it is running, or waits on something
    /// that is not a lock).
    Running(ThreadRef),
    /// At a lock with no known holder (just released, or acquired before
    /// diagnostics were enabled).
    NoHolder,
    /// At a lock whose holder exited without releasing it.
    HolderExited(ThreadId),
    /// The chain loops back: `links[start..]` is the cycle.
    Cycle {
        /// Index of the first link inside the cycle.
        start: usize,
    },
}

/// Where one waiting thread's wait leads: `links[0].thread` waits for a
/// lock held by `links[1].thread`, and so on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitChain {
    /// The links, starting at the waiting thread.
    pub links: Vec<ChainLink>,
    /// How it ends.
    pub end: ChainEnd,
}

/// A wait longer than the watchdog's threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongWait {
    /// The waiting thread.
    pub thread: ThreadRef,
    /// The wait (its `episode` is the key to report once).
    pub wait: WaitState,
}

/// Contention at one acquire site within a class. Only acquisitions that
/// waited are attributed to sites: the uncontended fast path does not look
/// at the caller's frame for statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteStats {
    /// The acquire site.
    pub site: SiteId,
    /// Acquisitions here that had to wait (`waited_ns > 0`).
    pub contended: u64,
    /// Sum of waits.
    pub total_wait_ns: u64,
    /// Longest wait.
    pub max_wait_ns: u64,
}

/// Contention statistics of one lock class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassStats {
    /// The class (creation site, or a single object of unknown origin).
    pub class: LockClass,
    /// Kind of the locks of the class (of the most recent one).
    pub kind: LockKind,
    /// Acquisitions (first-level).
    pub acquisitions: u64,
    /// Acquisitions that had to wait.
    pub contended: u64,
    /// Sum of waits.
    pub total_wait_ns: u64,
    /// Longest wait.
    pub max_wait_ns: u64,
    /// Completed holds.
    pub holds: u64,
    /// Sum of completed holds.
    pub total_hold_ns: u64,
    /// Longest completed hold.
    pub max_hold_ns: u64,
    /// The acquire sites with the most total wait (ties: more acquisitions,
    /// then more hold time), at most
    /// [`TOP_SITES`](super::TOP_SITES), busiest first.
    pub top_sites: Vec<SiteStats>,
}

/// What happened, in a [`TimelineEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EventKind {
    /// A thread registered (`lock` = its ident).
    ThreadStart = 1,
    /// A thread exited (`lock` = its ident).
    ThreadEnd = 2,
    /// A wait began (`aux` = 1 if timed).
    WaitBegin = 3,
    /// A wait ended (`aux` = 1 if the lock was acquired).
    WaitEnd = 4,
    /// A hold began (`aux` = acquire site).
    HoldBegin = 5,
    /// A hold ended (`tid` = the releasing thread).
    HoldEnd = 6,
    /// A deadlock was detected (`aux` = marker id).
    Deadlock = 7,
    /// A lock-order inversion was detected (`aux` = marker id).
    Inversion = 8,
}

/// One timeline record, as returned by `timeline()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineEvent {
    /// Monotonic ns.
    pub ts_ns: u64,
    /// The thread's native id (its ident when the native id is unknown).
    pub tid: u64,
    /// What happened.
    pub kind: EventKind,
    /// The lock (or thread ident for thread events; 0 for markers).
    pub lock: u64,
    /// The lock's kind (for lock events).
    pub lock_kind: LockKind,
    /// The lock's creation site (for lock events).
    pub site: SiteId,
    /// Kind-specific, see [`EventKind`].
    pub aux: u32,
}
