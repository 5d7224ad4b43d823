//! The mutable state behind one [`Diagnostics`](super::Diagnostics): thread
//! and lock registries, holds and waits (the wait-for graph), the lock-order
//! graph, statistics, pending leaks and the timeline. Always used under the
//! owner's mutex; see the module docs of `diag` for the rules.
//!
//! This file holds the records and the helpers every part uses; the parts
//! are in the submodules: [`registry`] (locks and threads coming and going,
//! leaks), [`holds`] (acquires and releases), [`order`] (the lock-order
//! graph and inversions), [`deadlock`] (waits, the wait-for graph and
//! deadlock detection), [`inspect`] (snapshots, wait chains), [`stats`]
//! (contention statistics) and [`describe`] (marker texts).

mod deadlock;
mod describe;
mod holds;
mod inspect;
mod order;
mod registry;
mod stats;

use super::cell::{self, LockCell, ORPHANED};
use super::report::{Deadlock, EventKind, HeldLock, Leak, LockRef, OrderInversion, ThreadRef};
use super::timeline::{Event, Timeline, TraceData};
use super::{LockClass, LockId, LockKind, ThreadId, PROFILE, TRACE, UNKNOWN_SITE};
use order::OrderGraph;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use stats::ClassAcc;

/// Per-call context, computed under the lock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx {
    pub now: u64,
    pub flags: u32,
    pub report_timed: bool,
}

impl Ctx {
    fn on(&self, bit: u32) -> bool {
        self.flags & bit != 0
    }
}

#[derive(Debug, Clone, Copy)]
struct WaitRec {
    lock: LockId,
    since: u64,
    timed: bool,
    episode: u64,
}

#[derive(Debug)]
struct ThreadRec {
    native: u64,
    name: Option<String>,
    /// Registered by first use rather than `thread_started`.
    implicit: bool,
    wait: Option<WaitRec>,
    /// The last wait and when it ended, if it ended without the lock (a
    /// signal or a timeout): a prompt new wait on the same lock continues
    /// the same episode.
    interrupted: Option<(WaitRec, u64)>,
}

impl ThreadRec {
    fn new(native: u64, name: Option<String>, implicit: bool) -> ThreadRec {
        ThreadRec {
            native,
            name,
            implicit,
            wait: None,
            interrupted: None,
        }
    }
    fn tid(&self, ident: ThreadId) -> u64 {
        if self.native != 0 {
            self.native
        } else {
            ident
        }
    }
}

/// What the state keeps about a lock beside its [`LockCell`].
#[derive(Debug)]
struct LockRec {
    cell: &'static LockCell,
    /// Its holder exited while holding it (and nobody released it since).
    orphaned_by: Option<ThreadId>,
    /// Same-class objects it forms recorded pairs with (for cleanup).
    partners: Vec<LockId>,
}

impl LockRec {
    fn lref(&self, id: LockId) -> LockRef {
        LockRef {
            id,
            kind: self.cell.kind(),
            site: self.cell.site(),
        }
    }
    fn holder(&self) -> Option<ThreadId> {
        self.cell.holder()
    }
}

pub(crate) struct State {
    threads: HashMap<ThreadId, ThreadRec>,
    locks: HashMap<LockId, LockRec>,
    /// Live threads in an untimed / timed wait.
    waiting_untimed: usize,
    waiting_timed: usize,
    next_episode: u64,
    /// Reported wait cycles, as sorted (thread, lock) lists.
    pub(crate) reported: Vec<Vec<(ThreadId, LockId)>>,
    pending_leaks: HashMap<LockId, Leak>,
    /// Deadlocks to raise in a thread of their cycle (posted by a bystander).
    posted: HashMap<ThreadId, Deadlock>,
    /// Lock classes that behave as semaphores: a lock of the class was
    /// released by another thread than its acquirer. Left out of lock-order
    /// analysis (as lockdep leaves semaphores out).
    semaphore_classes: HashSet<LockClass>,
    /// Inversions found, judged with the evidence of the whole run when
    /// taken ([`State::take_inversions`]), unless `immediate_inversions`.
    pending_inversions: Vec<OrderInversion>,
    /// Report inversions when found (judged with the evidence so far).
    pub(crate) immediate_inversions: bool,
    order: OrderGraph,
    stats: HashMap<LockClass, ClassAcc>,
    slab: cell::Slab,
    pub(crate) timeline: Timeline,
}

impl State {
    pub(crate) fn new(timeline_capacity: usize) -> State {
        State {
            threads: HashMap::default(),
            locks: HashMap::default(),
            waiting_untimed: 0,
            waiting_timed: 0,
            next_episode: 1,
            reported: Vec::new(),
            pending_leaks: HashMap::default(),
            posted: HashMap::default(),
            semaphore_classes: HashSet::default(),
            pending_inversions: Vec::new(),
            immediate_inversions: false,
            order: OrderGraph::default(),
            stats: HashMap::default(),
            slab: cell::Slab::default(),
            timeline: Timeline::new(timeline_capacity),
        }
    }

    // ----- helpers -------------------------------------------------------

    fn thread_entry(&mut self, t: ThreadId) -> &mut ThreadRec {
        self.threads.entry(t).or_insert_with(|| {
            // Met through its own call (the binding's case): its kernel id is
            // at hand, and the fast path's timeline events use it too.
            let native = if t == crate::ident::current() {
                crate::ident::native()
            } else {
                0
            };
            ThreadRec::new(native, None, true)
        })
    }

    fn lock_entry(&mut self, l: LockId) -> &mut LockRec {
        let slab = &mut self.slab;
        self.locks.entry(l).or_insert_with(|| LockRec {
            cell: slab.alloc(l, LockKind::Lock, UNKNOWN_SITE),
            orphaned_by: None,
            partners: Vec::new(),
        })
    }

    /// The cell of lock `l` (registering it as a plain lock of unknown site).
    pub(crate) fn cell_of(&mut self, l: LockId) -> &'static LockCell {
        self.lock_entry(l).cell
    }

    fn tref(&self, t: ThreadId) -> ThreadRef {
        match self.threads.get(&t) {
            Some(r) => ThreadRef {
                ident: t,
                native: r.native,
                name: r.name.clone(),
            },
            None => ThreadRef {
                ident: t,
                native: 0,
                name: None,
            },
        }
    }

    fn tid(&self, t: ThreadId) -> u64 {
        self.threads.get(&t).map_or(t, |r| r.tid(t))
    }

    /// Locks `t` holds, oldest first.
    fn held_ids(&self, t: ThreadId) -> Vec<LockId> {
        let mut v: Vec<(u64, u64, LockId)> = self
            .locks
            .iter()
            .filter(|(_, l)| l.holder() == Some(t))
            .map(|(&id, l)| (l.cell.since(), l.cell.seq(), id))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, _, id)| id).collect()
    }

    pub(crate) fn held_ids_of(&self, t: ThreadId) -> Vec<LockId> {
        self.held_ids(t)
    }

    fn held_of(&self, t: ThreadId) -> Vec<HeldLock> {
        self.held_ids(t)
            .into_iter()
            .filter_map(|id| {
                let l = self.locks.get(&id)?;
                Some(HeldLock {
                    lock: l.lref(id),
                    acquire_site: l.cell.hold_site(),
                    since_ns: l.cell.since(),
                    depth: l.cell.depth(),
                })
            })
            .collect()
    }

    fn lref(&self, l: LockId) -> LockRef {
        match self.locks.get(&l) {
            Some(r) => r.lref(l),
            None => LockRef {
                id: l,
                kind: LockKind::Lock,
                site: UNKNOWN_SITE,
            },
        }
    }

    fn event(&mut self, cx: &Ctx, t: ThreadId, kind: EventKind, lock: LockId, aux: u32) {
        if !cx.on(TRACE) {
            return;
        }
        let tid = self.tid(t);
        let (lk, site) = match kind {
            EventKind::ThreadStart
            | EventKind::ThreadEnd
            | EventKind::Deadlock
            | EventKind::Inversion => (LockKind::Lock, UNKNOWN_SITE),
            _ => self
                .locks
                .get(&lock)
                .map_or((LockKind::Lock, UNKNOWN_SITE), |l| {
                    (l.cell.kind(), l.cell.site())
                }),
        };
        self.timeline
            .push(Event::new(cx.now, tid, kind, lock, lk, site, aux));
    }

    /// Install or clear `t`'s wait, keeping the waiting counters right.
    fn set_wait(&mut self, t: ThreadId, w: Option<WaitRec>) {
        let Some(r) = self.threads.get_mut(&t) else {
            return;
        };
        if let Some(old) = r.wait.take() {
            if old.timed {
                self.waiting_timed -= 1
            } else {
                self.waiting_untimed -= 1
            }
        }
        if let Some(new) = w {
            if new.timed {
                self.waiting_timed += 1
            } else {
                self.waiting_untimed += 1
            }
            r.wait = Some(new);
        }
    }

    fn forget_reported(&mut self, t: ThreadId) {
        if !self.reported.is_empty() {
            self.reported.retain(|c| !c.iter().any(|&(u, _)| u == t));
        }
    }

    /// Close `lock`'s current hold (stats, timeline); `releaser` is who released it.
    fn end_hold(&mut self, cx: &Ctx, lock: LockId, releaser: ThreadId) {
        let Some(l) = self.locks.get(&lock) else {
            return;
        };
        if l.holder().is_none() {
            return;
        }
        l.cell.end_hold(cx.now, cx.on(PROFILE));
        self.event(cx, releaser, EventKind::HoldEnd, lock, 0);
    }

    fn set_orphaned(&mut self, lock: LockId, by: Option<ThreadId>) {
        let pending = self.pending_leaks.contains_key(&lock);
        if let Some(l) = self.locks.get_mut(&lock) {
            l.orphaned_by = by;
            if by.is_some() || pending {
                l.cell.set_bit(ORPHANED);
            } else {
                l.cell.clear_bit(ORPHANED);
            }
        }
    }

    /// Forget history (stats, timeline, order graph, reported cycles, pending
    /// leaks); keep what is true now (threads, locks, holds, waits).
    pub(crate) fn reset(&mut self) {
        self.reset_stats();
        self.timeline.clear();
        self.order = OrderGraph::default();
        self.pending_inversions.clear();
        self.semaphore_classes.clear();
        for l in self.locks.values_mut() {
            l.partners.clear();
        }
        self.reported.clear();
        let ids: Vec<LockId> = self.pending_leaks.drain().map(|(id, _)| id).collect();
        for id in ids {
            let by = self.locks.get(&id).and_then(|l| l.orphaned_by);
            self.set_orphaned(id, by);
        }
    }

    pub(crate) fn trace_data(&self, now: u64) -> TraceData {
        self.timeline.trace_data(now)
    }

    pub(crate) fn reset_after_fork(&mut self, surviving: ThreadId, native: u64) {
        let mut me = self
            .threads
            .remove(&surviving)
            .unwrap_or_else(|| ThreadRec::new(native, None, true));
        me.native = native;
        me.wait = None;
        me.interrupted = None;
        self.threads.clear();
        self.waiting_timed = 0;
        self.waiting_untimed = 0;
        self.pending_leaks.clear();
        let ids: Vec<LockId> = self.locks.keys().copied().collect();
        for id in ids {
            let c = self.locks[&id].cell;
            if c.holder().is_some_and(|h| h != surviving) {
                c.end_hold(0, false);
            }
            self.set_orphaned(id, None);
        }
        self.threads.insert(surviving, me);
        self.reported.clear();
        self.posted.clear();
        // The parent reports what it found; the child starts afresh.
        self.pending_inversions.clear();
        self.reset_stats();
        self.timeline.clear();
        self.timeline.names.clear();
        self.record_name(surviving);
    }
}
