//! Per-lock hot records ("cells") and the lock-free fast path.
//!
//! Every lock that diagnostics know has a [`LockCell`]: its identity, its
//! current hold (holder, depth, since, acquire site), the bits that classify
//! it (sentinel, released by its acquirer / by another thread, re-acquired by
//! its holder) and its hold statistics. The binding keeps a pointer to the
//! cell in the lock object, so the common operations (an uncontended acquire
//! and its release by the same thread) update the cell directly, without the
//! state mutex or a map lookup: see [`acquired`] and [`released`]. Everything
//! else (waits, contended acquires, a release by another thread, RLock
//! `_release_save`, a new lock-order edge, the timeline) goes through
//! the diagnostics state under its mutex, which reads and writes the same
//! cells.
//!
//! Why this is race-free: a cell's hold fields are written only by the thread
//! that holds the lock (acquirer after the real acquire; releaser before the
//! real release), so the lock itself serializes the writers. Readers under
//! the state mutex (reports, deadlock walks) may see a hold a moment late or
//! early; a thread they see as holder is either really holding or running
//! (not waiting), and a running thread never closes a wait cycle.
//!
//! Cells live in a slab that is never freed (a freed cell is reused for a
//! later lock with a new id), so a stale pointer (a thread's held-lock stack
//! entry for a lock that was since destroyed) is always safe to read and is
//! recognised by its id.

use super::report::EventKind;
use super::timeline::Event;
use super::{
    global, LockClass, LockId, LockKind, OrderInversion, SiteId, ThreadId, HANG, LOCK_ORDER,
    PROFILE, TRACE,
};
use crate::timeout::{coarse_ns, monotonic_ns};
use rustc_hash::FxHashSet;
use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Bit: a thread's sentinel (`Thread.join` waits on it).
pub(crate) const SENTINEL: u32 = 1 << 0;
/// Bit: released at least once by the thread that had acquired it.
pub(crate) const RELEASED_BY_SELF: u32 = 1 << 1;
/// Bit: released at least once by another thread than the acquirer.
pub(crate) const RELEASED_BY_OTHER: u32 = 1 << 2;
/// Bit: its holder tried to acquire it again (a binary-semaphore use).
pub(crate) const SELF_BLOCKED: u32 = 1 << 3;
/// Bit: the state has a pending leak or an exited holder for it (slow path).
pub(crate) const ORPHANED: u32 = 1 << 4;
/// Bit: the current hold was taken through `__enter__` (a `with` block):
/// its release is the matching `__exit__` in the same thread, so only the
/// holder can end it. Set or cleared by every [`LockCell::begin_hold`].
pub(crate) const ENTERED: u32 = 1 << 5;

/// Hold-stack entries checked for staleness once the stack is this deep.
const PRUNE_DEPTH: usize = 16;
/// Lock-order edges a thread remembers as recorded (then it forgets them all).
const MAX_SEEN: usize = 1 << 16;
/// Timeline events a thread buffers before handing them to the state.
const EVENT_BATCH: usize = 256;

/// The hot record of one lock. All fields are atomics so that readers under
/// the state mutex never race with the holder's plain updates; the orderings
/// are explained at each access.
#[derive(Debug)]
pub struct LockCell {
    /// The lock's id while the cell is in use (0: free).
    id: AtomicU64,
    kind: AtomicU8,
    site: AtomicU32,
    bits: AtomicU32,
    holder: AtomicU64,
    depth: AtomicU64,
    since: AtomicU64,
    /// Orders a thread's holds (a per-thread counter) when `since` ties.
    seq: AtomicU64,
    hold_site: AtomicU32,
    /// The lock object's address order key (the binding's choice: an
    /// address inside the object; 0 unknown), for the `id()`-order rule.
    addr: AtomicU64,
    acquisitions: AtomicU64,
    holds: AtomicU64,
    total_hold: AtomicU64,
    max_hold: AtomicU64,
}

/// The hold statistics kept in a cell.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CellStats {
    pub acquisitions: u64,
    pub holds: u64,
    pub total_hold: u64,
    pub max_hold: u64,
}

impl LockCell {
    #[allow(clippy::declare_interior_mutable_const)] // used only to build the slab
    const EMPTY: LockCell = LockCell {
        id: AtomicU64::new(0),
        kind: AtomicU8::new(0),
        site: AtomicU32::new(0),
        bits: AtomicU32::new(0),
        holder: AtomicU64::new(0),
        depth: AtomicU64::new(0),
        since: AtomicU64::new(0),
        seq: AtomicU64::new(0),
        hold_site: AtomicU32::new(0),
        addr: AtomicU64::new(0),
        acquisitions: AtomicU64::new(0),
        holds: AtomicU64::new(0),
        total_hold: AtomicU64::new(0),
        max_hold: AtomicU64::new(0),
    };

    // Relaxed everywhere below unless said otherwise: these are diagnostic
    // values whose writers are serialized by the lock they describe (or by
    // the state mutex), and no other memory is published through them.

    /// The lock's id (0 once the cell is freed).
    #[inline]
    pub fn id(&self) -> LockId {
        self.id.load(Ordering::Relaxed)
    }
    /// `Lock` or `RLock`.
    #[inline]
    pub fn kind(&self) -> LockKind {
        if self.kind.load(Ordering::Relaxed) == 1 {
            LockKind::RLock
        } else {
            LockKind::Lock
        }
    }
    /// The creation site.
    #[inline]
    pub fn site(&self) -> SiteId {
        self.site.load(Ordering::Relaxed)
    }
    /// The lock-order class.
    #[inline]
    pub fn class(&self) -> LockClass {
        LockClass::of(self.id(), self.site())
    }
    #[inline]
    pub(crate) fn bits(&self) -> u32 {
        self.bits.load(Ordering::Relaxed)
    }
    /// Set `bit` (a no-op store avoided: most calls find it set already).
    #[inline]
    pub(crate) fn set_bit(&self, bit: u32) {
        if self.bits() & bit == 0 {
            self.bits.fetch_or(bit, Ordering::Relaxed);
        }
    }
    #[inline]
    pub(crate) fn clear_bit(&self, bit: u32) {
        if self.bits() & bit != 0 {
            self.bits.fetch_and(!bit, Ordering::Relaxed);
        }
    }
    /// The thread whose acquire is the current hold, if any.
    #[inline]
    pub fn holder(&self) -> Option<ThreadId> {
        // Acquire: pairs with the Release in set_holder, so a reader that sees
        // a holder also sees the since/site/depth written before it.
        match self.holder.load(Ordering::Acquire) {
            0 => None,
            t => Some(t),
        }
    }
    #[inline]
    fn holder_raw(&self) -> u64 {
        // Relaxed: compared with the caller's own ident only (the caller
        // wrote it, or somebody else did and it differs either way).
        self.holder.load(Ordering::Relaxed)
    }
    #[inline]
    pub(crate) fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }
    #[inline]
    pub(crate) fn set_depth(&self, d: u64) {
        self.depth.store(d, Ordering::Relaxed);
    }
    #[inline]
    pub(crate) fn since(&self) -> u64 {
        self.since.load(Ordering::Relaxed)
    }
    #[inline]
    pub(crate) fn seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }
    #[inline]
    pub(crate) fn hold_site(&self) -> SiteId {
        self.hold_site.load(Ordering::Relaxed)
    }

    /// The lock object's address key (0: unknown).
    #[inline]
    pub fn addr(&self) -> u64 {
        self.addr.load(Ordering::Relaxed)
    }
    /// Set the lock object's address key: any address inside the object,
    /// at the same offset for every lock of a type, orders locks as `id()`.
    #[inline]
    pub fn set_addr(&self, addr: u64) {
        self.addr.store(addr, Ordering::Relaxed);
    }

    /// Begin a hold by `t` (depth 1); `entered`: taken through `__enter__`.
    #[inline]
    pub(crate) fn begin_hold(
        &self,
        t: ThreadId,
        site: SiteId,
        since: u64,
        seq: u64,
        entered: bool,
    ) {
        if entered {
            self.set_bit(ENTERED);
        } else {
            self.clear_bit(ENTERED);
        }
        self.hold_site.store(site, Ordering::Relaxed);
        self.since.store(since, Ordering::Relaxed);
        self.seq.store(seq, Ordering::Relaxed);
        self.depth.store(1, Ordering::Relaxed);
        // Release: publishes the fields above to readers of holder().
        self.holder.store(t, Ordering::Release);
    }

    /// End the current hold; returns its length when `profile` (and counts it).
    #[inline]
    pub(crate) fn end_hold(&self, now: u64, profile: bool) {
        if profile {
            let d = now.saturating_sub(self.since());
            bump(&self.holds, 1);
            bump(&self.total_hold, d);
            if d > self.max_hold.load(Ordering::Relaxed) {
                self.max_hold.store(d, Ordering::Relaxed);
            }
        }
        self.depth.store(0, Ordering::Relaxed);
        // Release: see begin_hold.
        self.holder.store(0, Ordering::Release);
    }

    /// Count an acquisition (first level).
    #[inline]
    pub(crate) fn count_acquisition(&self) {
        bump(&self.acquisitions, 1);
    }

    /// An edge "waiter -> holder" through this lock can only be broken by
    /// the holder: evidence about the *current* hold, never about the
    /// lock's past (a plain lock may be released by any thread). An RLock
    /// only by its owner; a thread's sentinel only by its thread's exit; a
    /// plain lock only when this hold was taken through `__enter__`.
    pub(crate) fn owned(&self) -> bool {
        match self.kind() {
            LockKind::RLock => true,
            LockKind::Lock => self.bits() & (SENTINEL | ENTERED) != 0,
        }
    }

    /// Whether holding it orders later acquires (lock-order graph).
    pub(crate) fn orders(&self) -> bool {
        match self.kind() {
            LockKind::RLock => true,
            LockKind::Lock => self.bits() & (SENTINEL | RELEASED_BY_OTHER | SELF_BLOCKED) == 0,
        }
    }

    pub(crate) fn stats(&self) -> CellStats {
        CellStats {
            acquisitions: self.acquisitions.load(Ordering::Relaxed),
            holds: self.holds.load(Ordering::Relaxed),
            total_hold: self.total_hold.load(Ordering::Relaxed),
            max_hold: self.max_hold.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn reset_stats(&self) {
        for a in [
            &self.acquisitions,
            &self.holds,
            &self.total_hold,
            &self.max_hold,
        ] {
            a.store(0, Ordering::Relaxed);
        }
    }

    fn init(&self, id: LockId, kind: LockKind, site: SiteId) {
        self.kind
            .store(matches!(kind, LockKind::RLock) as u8, Ordering::Relaxed);
        self.site.store(site, Ordering::Relaxed);
        self.bits.store(0, Ordering::Relaxed);
        self.holder.store(0, Ordering::Relaxed);
        self.depth.store(0, Ordering::Relaxed);
        self.since.store(0, Ordering::Relaxed);
        self.seq.store(0, Ordering::Relaxed);
        self.hold_site.store(0, Ordering::Relaxed);
        self.addr.store(0, Ordering::Relaxed);
        self.reset_stats();
        // Relaxed: cells are handed out under the state mutex, and the
        // pointer reaches other threads through it (or through the lock
        // object, published by CPython under the GIL).
        self.id.store(id, Ordering::Relaxed);
    }
}

/// Add `v` to a counter only its writer (the holder) updates: load + store,
/// no read-modify-write needed.
#[inline]
fn bump(a: &AtomicU64, v: u64) {
    a.store(
        a.load(Ordering::Relaxed).saturating_add(v),
        Ordering::Relaxed,
    );
}

/// Whether an edge from the lock at address key `from` to the one at `to`
/// goes up in `id()` order (false when either is unknown).
#[inline]
pub(crate) fn ascending(from: u64, to: u64) -> bool {
    from != 0 && to != 0 && from < to
}

// ----- slab --------------------------------------------------------------

/// Free cells of one diagnostics state (used under its mutex).
#[derive(Debug, Default)]
pub(crate) struct Slab {
    free: Vec<&'static LockCell>,
}

/// Cells allocated per refill.
const CHUNK: usize = 256;

impl Slab {
    /// A cell for lock `id`.
    pub(crate) fn alloc(&mut self, id: LockId, kind: LockKind, site: SiteId) -> &'static LockCell {
        if self.free.is_empty() {
            // Leaked on purpose: cells are never freed (see the module docs).
            let chunk: &'static [LockCell] = Box::leak(
                (0..CHUNK)
                    .map(|_| LockCell::EMPTY)
                    .collect::<Box<[LockCell]>>(),
            );
            self.free.extend(chunk.iter());
        }
        let c = self.free.pop().expect("refilled above");
        c.init(id, kind, site);
        c
    }

    /// Take `c` back (its lock is gone).
    pub(crate) fn free(&mut self, c: &'static LockCell) {
        // Relaxed: stale readers compare ids and find 0; reuse goes through
        // init() under the same state mutex.
        c.id.store(0, Ordering::Relaxed);
        c.holder.store(0, Ordering::Relaxed);
        self.free.push(c);
    }
}

// ----- the calling thread ---------------------------------------------------

/// One lock on a thread's hold stack.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held {
    pub cell: &'static LockCell,
    pub id: LockId,
}

impl Held {
    /// Still held by `me` (not released by another thread, not destroyed).
    #[inline]
    fn live(&self, me: ThreadId) -> bool {
        self.cell.id() == self.id && self.cell.holder_raw() == me
    }
}

/// A lock-order edge known to be recorded in the global graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Seen {
    /// A class edge, with its gate (the oldest other held lock, 0: none)
    /// and whether it went up in address: an occurrence differing in either
    /// goes to the state, which keeps the gate-lock and `id()`-order rules
    /// sound.
    Classes(LockClass, LockClass, LockId, bool),
    Objects(LockId, LockId),
}

/// What the calling thread keeps for the fast path of the process-wide
/// diagnostics, in one thread-local so that an operation reaches it once.
#[derive(Debug)]
pub struct ThreadDiag {
    /// `ident::current()` of this thread (0 until first use).
    me: ThreadId,
    /// Locks this thread acquired, oldest first (entries may be stale).
    held: Vec<Held>,
    /// Edges recorded already, valid while `epoch` matches.
    seen: FxHashSet<Seen>,
    epoch: u64,
    /// The state knows this thread (registered or implicitly).
    known: bool,
    /// The state holds something about this thread that the next acquire or
    /// release must clear (a wait record, an interrupted wait).
    sync: bool,
    seq: u64,
    /// Acquires and releases recorded by this thread (see [`ops`]).
    ops: u64,
    /// The caller's own per-thread data (see [`ThreadDiag::ext`]).
    ext: Option<(TypeId, Box<dyn Any>)>,
    /// Kernel thread id for timeline events (0 until first needed).
    tid: u64,
    /// Timeline events not handed to the state yet (see [`take_events`]).
    events: Vec<Event>,
}

thread_local! {
    /// The caller's stack for lock-order edges recorded by this thread's
    /// next call into the state (see [`set_edge_stack`]).
    static EDGE_STACK: RefCell<Option<std::sync::Arc<str>>> = const { RefCell::new(None) };
}

/// Give the stack (formatted by the binding) that lock-order edges recorded
/// by this thread's coming calls keep; `None` to clear it after them.
pub(crate) fn set_edge_stack(stack: Option<String>) {
    let _ = EDGE_STACK.try_with(|s| *s.borrow_mut() = stack.map(std::sync::Arc::from));
}

/// The stack set by [`set_edge_stack`], if any.
pub(crate) fn edge_stack() -> Option<std::sync::Arc<str>> {
    EDGE_STACK.try_with(|s| s.borrow().clone()).ok().flatten()
}

/// Whether a blocking acquire (or attempt) of `cell` by the calling thread
/// may record a new lock-order edge (it holds an ordering lock with an edge
/// to `cell` not known as recorded): then the binding gives a stack.
pub(crate) fn may_add_edges(cell: &LockCell) -> bool {
    if global().flags() & LOCK_ORDER == 0 {
        return false;
    }
    with_thread(|l| {
        let me = l.me;
        l.held
            .iter()
            .any(|h| h.live(me) && h.cell.orders() && !std::ptr::eq(h.cell, cell))
            && !l.edges_known(cell)
    })
    .unwrap_or(false)
}

thread_local! {
    static LOCAL: RefCell<ThreadDiag> = const {
        RefCell::new(ThreadDiag {
            me: 0,
            held: Vec::new(),
            seen: FxHashSet::with_hasher(rustc_hash::FxBuildHasher),
            epoch: 0,
            known: false,
            sync: false,
            seq: 0,
            ops: 0,
            ext: None,
            tid: 0,
            events: Vec::new(),
        })
    };
}

/// Bumped when the lock-order graph is cleared or the flags change: every
/// thread drops its hold stack and its seen edges on its next operation.
static EPOCH: AtomicU64 = AtomicU64::new(1);

pub(crate) fn bump_epoch() {
    // Relaxed: a hint; a thread that sees it late records an edge twice
    // (harmless: the graph ignores known edges).
    EPOCH.fetch_add(1, Ordering::Relaxed);
}

/// Run `f` on the calling thread's record, refreshed to the current epoch.
/// `None` while the thread is being torn down. `f` must not call back into
/// functions of this module that take the record (they would find it
/// borrowed and do nothing).
#[inline]
pub fn with_thread<R>(f: impl FnOnce(&mut ThreadDiag) -> R) -> Option<R> {
    LOCAL
        .try_with(|l| {
            let mut l = l.try_borrow_mut().ok()?;
            // Relaxed: see bump_epoch.
            let e = EPOCH.load(Ordering::Relaxed);
            if l.epoch != e {
                l.epoch = e;
                l.held.clear();
                l.seen.clear();
            }
            if l.me == 0 {
                l.me = crate::ident::current();
            }
            Some(f(&mut l))
        })
        .ok()
        .flatten()
}

/// The next hold sequence number of the calling thread.
pub(crate) fn next_seq() -> u64 {
    with_thread(|l| {
        l.seq += 1;
        l.seq
    })
    .unwrap_or(0)
}

/// A counter of the calling thread's acquires and releases seen by
/// diagnostics: a wait compares it before and after running signal handlers
/// to notice that a handler took or released locks.
pub(crate) fn ops() -> u64 {
    with_thread(|l| l.ops).unwrap_or(0)
}

/// The calling thread's buffered timeline events, oldest first; the caller
/// hands them to the state (before anything else it tells the state).
pub(crate) fn take_events() -> Vec<Event> {
    with_thread(|l| std::mem::take(&mut l.events)).unwrap_or_default()
}

/// The next operation of the calling thread must go through the state.
pub(crate) fn mark_unsynced() {
    let _ = with_thread(|l| l.sync = true);
}

/// The calling thread is gone for the state (exited).
pub(crate) fn forget_thread() {
    let _ = with_thread(|l| {
        l.known = false;
        l.held.clear();
    });
}

fn time_now(flags: u32) -> u64 {
    if flags & (PROFILE | TRACE) != 0 {
        monotonic_ns()
    } else if flags & HANG != 0 {
        coarse_ns()
    } else {
        0
    }
}

impl ThreadDiag {
    /// This thread's ident.
    #[inline]
    pub fn me(&self) -> ThreadId {
        self.me
    }

    /// Per-thread data of the caller's own, of type `T` (made with
    /// `T::default()` on first use), so that an operation reaches its
    /// thread's records in one thread-local access (the binding keeps its
    /// site cache here). The core never looks inside.
    #[inline]
    pub fn ext<T: Any + Default>(&mut self) -> &mut T {
        // The type is compared here, not through `dyn Any` (a virtual call
        // per operation).
        if self
            .ext
            .as_ref()
            .is_none_or(|(t, _)| *t != TypeId::of::<T>())
        {
            self.ext = Some((TypeId::of::<T>(), Box::<T>::default()));
        }
        let (_, b) = self.ext.as_mut().expect("stored above");
        let p: *mut dyn Any = &mut **b;
        // SAFETY: the box holds a `T`: it was stored with `TypeId::of::<T>()`
        // just above or earlier, and the pair is only ever written here.
        unsafe { &mut *p.cast::<T>() }
    }

    /// The live holds, oldest first, except `except` (for the slow path).
    fn held_ids(&mut self, except: &LockCell) -> Vec<LockId> {
        let me = self.me;
        self.held.retain(|h| h.live(me));
        self.held
            .iter()
            .filter(|h| !std::ptr::eq(h.cell, except))
            .map(|h| h.id)
            .collect()
    }

    /// The edge "`h` held, then `cell` acquired", if `h` is still held by
    /// this thread and is not `cell`.
    fn edge_key(&self, h: &Held, cell: &LockCell) -> Option<Seen> {
        if !h.live(self.me) || std::ptr::eq(h.cell, cell) {
            return None;
        }
        let (from, to) = (h.cell.class(), cell.class());
        Some(if from == to {
            Seen::Objects(h.id, cell.id())
        } else {
            let gate = self
                .held
                .iter()
                .find(|g| {
                    g.live(self.me)
                        && g.cell.orders()
                        && !std::ptr::eq(g.cell, h.cell)
                        && !std::ptr::eq(g.cell, cell)
                })
                .map_or(0, |g| g.id);
            Seen::Classes(from, to, gate, ascending(h.cell.addr(), cell.addr()))
        })
    }

    /// Whether acquiring `cell` adds no lock-order edge not known to be
    /// recorded already.
    fn edges_known(&self, cell: &LockCell) -> bool {
        self.held.iter().all(|h| {
            !h.cell.orders()
                || self
                    .edge_key(h, cell)
                    .is_none_or(|k| self.seen.contains(&k))
        })
    }

    fn remember_edges(&mut self, cell: &LockCell) {
        if self.seen.len() > MAX_SEEN {
            self.seen.clear();
        }
        let keys: Vec<Seen> = self
            .held
            .iter()
            .filter_map(|h| self.edge_key(h, cell))
            .collect();
        self.seen.extend(keys);
    }

    fn push_held(&mut self, cell: &'static LockCell) {
        if self.held.len() >= PRUNE_DEPTH {
            let me = self.me;
            self.held.retain(|h| h.live(me));
        }
        self.held.push(Held {
            cell,
            id: cell.id(),
        });
    }

    /// Buffer a hold event of `cell` (under [`TRACE`]).
    fn event(&mut self, ts: u64, kind: EventKind, cell: &LockCell, aux: SiteId) {
        if self.tid == 0 {
            self.tid = crate::ident::native();
        }
        self.events.push(Event::new(
            ts,
            self.tid,
            kind,
            cell.id(),
            cell.kind(),
            cell.site(),
            aux,
        ));
    }

    fn pop_held(&mut self, cell: &LockCell) {
        if let Some(i) = self.held.iter().rposition(|h| std::ptr::eq(h.cell, cell)) {
            self.held.remove(i);
        }
    }

    /// Count the operation; the flags if the fast path may record it on
    /// `cell`, `None` if the state must: it does not know this thread yet,
    /// has a wait record of it or a reported cycle to forget, the lock has
    /// an exited holder, or the thread's timeline batch is full.
    #[inline]
    fn fast_flags(&mut self, cell: &LockCell) -> Option<u32> {
        let g = global();
        let flags = g.flags();
        self.ops = self.ops.wrapping_add(1);
        let batch_full = flags & TRACE != 0 && self.events.len() >= EVENT_BATCH;
        let slow =
            !self.known || self.sync || g.dirty() || cell.bits() & ORPHANED != 0 || batch_full;
        (!slow).then_some(flags)
    }

    /// The fast path of [`acquired`]: true if the acquire is fully recorded,
    /// false if the caller must call [`acquired`] (the slow path).
    #[inline]
    pub(crate) fn acquired_fast(
        &mut self,
        cell: &'static LockCell,
        site: SiteId,
        blocking: bool,
        entered: bool,
    ) -> bool {
        let Some(flags) = self.fast_flags(cell) else {
            return false;
        };
        let trace = flags & TRACE != 0;
        let me = self.me;
        let holder = cell.holder_raw();
        if holder == me && cell.kind() == LockKind::RLock {
            cell.set_depth(cell.depth().saturating_add(1));
            return true;
        }
        if holder != 0 {
            return false; // a hold whose release the state did not see
        }
        let order = flags & LOCK_ORDER != 0;
        if order && blocking && !self.edges_known(cell) {
            return false;
        }
        self.seq += 1;
        let now = time_now(flags);
        cell.begin_hold(me, site, now, self.seq, entered);
        if flags & PROFILE != 0 {
            cell.count_acquisition();
        }
        if trace {
            self.event(now, EventKind::HoldBegin, cell, site);
        }
        if order {
            self.push_held(cell);
        }
        true
    }

    /// The fast path of [`released`]: true if the release is fully
    /// recorded, false if the caller must call [`released`].
    #[inline]
    pub(crate) fn released_fast(&mut self, cell: &'static LockCell) -> bool {
        let Some(flags) = self.fast_flags(cell) else {
            return false;
        };
        let trace = flags & TRACE != 0;
        match cell.holder_raw() {
            0 => true, // no hold recorded: nothing to end
            h if h != self.me => false,
            _ => {
                let d = cell.depth();
                if d > 1 && cell.kind() == LockKind::RLock {
                    cell.set_depth(d - 1);
                    return true;
                }
                cell.set_bit(RELEASED_BY_SELF);
                let profile = flags & PROFILE != 0;
                let now = if profile || trace { monotonic_ns() } else { 0 };
                cell.end_hold(now, profile);
                if trace {
                    self.event(now, EventKind::HoldEnd, cell, 0);
                }
                if flags & LOCK_ORDER != 0 {
                    self.pop_held(cell);
                }
                true
            }
        }
    }
}

/// The calling thread (`me`) acquired the lock of `cell` at `site`
/// (`blocking` and `waited_ns` as for [`Diagnostics::acquired`](super::Diagnostics::acquired); `entered`: through
/// `__enter__`). Call after the real acquire succeeded, outside
/// [`with_thread`]. Returns a lock-order inversion to report.
pub fn acquired(
    cell: &'static LockCell,
    me: ThreadId,
    site: SiteId,
    blocking: bool,
    waited_ns: u64,
    entered: bool,
) -> Option<OrderInversion> {
    if waited_ns == 0
        && with_thread(|l| l.acquired_fast(cell, site, blocking, entered)) == Some(true)
    {
        return None;
    }
    acquired_slow(cell, me, site, blocking, waited_ns, entered)
}

/// The slow path of [`acquired`] (after [`ThreadDiag::acquired_fast`]
/// declined): the state does it all, with our hold stack for the edges.
pub(crate) fn acquired_slow(
    cell: &'static LockCell,
    me: ThreadId,
    site: SiteId,
    blocking: bool,
    waited_ns: u64,
    entered: bool,
) -> Option<OrderInversion> {
    let g = global();
    let flags = g.flags();
    let reentry = cell.holder_raw() == me && cell.kind() == LockKind::RLock;
    let held = with_thread(|l| l.held_ids(cell)).unwrap_or_default();
    super::flush_events();
    let inv = g.acquired_with(
        me,
        cell.id(),
        site,
        blocking,
        waited_ns,
        entered,
        Some(&held),
    );
    let _ = with_thread(|l| {
        l.known = true;
        l.sync = false;
        if !reentry && flags & LOCK_ORDER != 0 {
            if blocking {
                l.remember_edges(cell);
            }
            l.push_held(cell);
        }
    });
    inv
}

/// The calling thread (`me`) begins a blocking acquire of the lock of
/// `cell` at `site` (the fast try failed): record its lock-order edges now
/// (see [`super::Diagnostics::attempt`]). Call outside [`with_thread`].
pub(crate) fn attempting(
    cell: &'static LockCell,
    me: ThreadId,
    site: SiteId,
) -> Option<OrderInversion> {
    let g = global();
    if g.flags() & LOCK_ORDER == 0 {
        return None;
    }
    let held = with_thread(|l| l.held_ids(cell)).unwrap_or_default();
    super::flush_events();
    let inv = g.attempt(me, cell.id(), site, Some(&held));
    // The edges are recorded: the acquire, if it succeeds, adds none.
    let _ = with_thread(|l| l.remember_edges(cell));
    inv
}

/// The calling thread is about to release the lock of `cell` (one level of
/// an RLock). Call while it is still held, outside [`with_thread`].
pub fn released(cell: &'static LockCell) {
    match with_thread(|l| (l.released_fast(cell), l.me)) {
        Some((true, _)) => {}
        Some((false, me)) => released_slow(cell, me),
        None => released_slow(cell, crate::ident::current()),
    }
}

/// The slow path of [`released`].
pub(crate) fn released_slow(cell: &'static LockCell, me: ThreadId) {
    super::flush_events();
    global().released(me, cell.id());
    let _ = with_thread(|l| {
        l.known = true;
        l.sync = false;
        if cell.holder_raw() != me {
            l.pop_held(cell);
        }
    });
}

/// A non-blocking acquire of plain lock `cell` by thread `me` failed.
#[inline]
pub fn acquire_failed(cell: &LockCell, me: ThreadId) {
    if cell.kind() == LockKind::Lock && cell.holder_raw() == me {
        cell.set_bit(SELF_BLOCKED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext_keeps_one_value_per_thread_and_replaces_another_type() {
        let got = with_thread(|t| {
            *t.ext::<u32>() += 5;
            *t.ext::<u32>() += 1;
            let kept = *t.ext::<u32>();
            let other = *t.ext::<u64>();
            (kept, other, *t.ext::<u32>())
        });
        assert_eq!(got, Some((6, 0, 0)), "a u32 kept, then replaced by a u64");
    }
}
