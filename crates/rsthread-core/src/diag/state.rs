//! The mutable state behind one [`Diagnostics`](super::Diagnostics): thread
//! and lock registries, holds and waits (the wait-for graph), the lock-order
//! graph, statistics, pending leaks and the timeline. Always used under the
//! owner's mutex; see the module docs of `diag` for the rules.

use super::cell::{
    self, LockCell, ORPHANED, RELEASED_BY_OTHER, RELEASED_BY_SELF, SELF_BLOCKED, SENTINEL,
};
use super::report::*;
use super::timeline::{Event, Timeline, TraceData};
use super::{
    LockClass, LockId, LockKind, SiteId, ThreadId, DEADLOCK, LOCK_ORDER, PROFILE, TRACE,
    UNKNOWN_SITE,
};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::collections::VecDeque;

/// Same-class object pairs remembered at most (then no new pairs are added).
const MAX_SAME_CLASS_PAIRS: usize = 1 << 20;

/// A wait on the same lock that begins within this long after a wait ended
/// without the lock continues its episode (a retry after a signal handler).
const RETRY_GRACE_NS: u64 = 1_000_000_000;

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

#[derive(Debug, Clone)]
struct EdgeRec {
    from_lock: LockId,
    to_lock: LockId,
    held_site: SiteId,
    acquire_site: SiteId,
    thread: ThreadRef,
    /// The gate lock every occurrence held (the oldest other held lock, the
    /// same one each time), or `None`.
    gate: Option<LockId>,
    /// Every occurrence went up in `id()` order (held lower than acquired).
    ascending: bool,
    /// The stack of the first occurrence (see [`OrderEdge::stack`]).
    stack: Option<std::sync::Arc<str>>,
}

impl EdgeRec {
    /// Fold a later occurrence (`gate`, `ascending`) into the record.
    fn again(&mut self, gate: Option<LockId>, ascending: bool) {
        if self.gate != gate {
            self.gate = None;
        }
        self.ascending &= ascending;
    }
}

impl EdgeRec {
    fn edge(&self, from: LockClass, to: LockClass) -> OrderEdge {
        OrderEdge {
            from,
            to,
            from_lock: self.from_lock,
            to_lock: self.to_lock,
            held_site: self.held_site,
            acquire_site: self.acquire_site,
            thread: self.thread.clone(),
            stack: self.stack.clone(),
        }
    }
}

#[derive(Debug, Default)]
struct OrderGraph {
    adj: HashMap<LockClass, Vec<LockClass>>,
    edges: HashMap<(LockClass, LockClass), EdgeRec>,
    reported: HashSet<Vec<LockClass>>,
    /// Same-class nesting per object: (held, acquired).
    pairs: HashMap<(LockId, LockId), EdgeRec>,
    /// Reported same-class object cycles, as sorted id lists.
    reported_cycles: HashSet<Vec<LockId>>,
}

impl OrderGraph {
    /// Add `from -> to` (a new edge only); return the smallest cycle it closes
    /// if that cycle was never reported.
    fn add_edge(&mut self, from: LockClass, to: LockClass, rec: EdgeRec) -> Option<Vec<OrderEdge>> {
        if let Some(old) = self.edges.get_mut(&(from, to)) {
            old.again(rec.gate, rec.ascending);
            return None;
        }
        self.edges.insert((from, to), rec);
        self.adj.entry(from).or_default().push(to);
        // The shortest path to -> ... -> from closes the cycle with the new edge.
        let path = shortest_path(to, from, |c| self.adj.get(&c).cloned().unwrap_or_default())?;
        let mut key = path.clone();
        let min = key
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| **c)
            .map_or(0, |(i, _)| i);
        key.rotate_left(min);
        if !self.reported.insert(key) {
            return None;
        }
        let mut edges: Vec<OrderEdge> = path
            .windows(2)
            .map(|w| self.edges[&(w[0], w[1])].edge(w[0], w[1]))
            .collect();
        edges.push(self.edges[&(from, to)].edge(from, to));
        Some(edges)
    }
}

/// Per-class statistics the cells do not keep: waits and acquire sites
/// (slow path), plus the counters of destroyed locks.
#[derive(Debug, Default, Clone)]
struct ClassAcc {
    kind: Option<LockKind>,
    folded: cell::CellStats,
    contended: u64,
    total_wait: u64,
    max_wait: u64,
    sites: HashMap<SiteId, SiteStats>,
}

/// Where a chain walk stopped (internal form of [`ChainEnd`]).
enum End {
    Running(ThreadId),
    NoHolder,
    HolderExited(ThreadId),
    Cycle(usize),
}

/// A link of a walk: `thread` waits for `lock`, held by `holder`.
struct Link {
    thread: ThreadId,
    lock: LockId,
    holder: Option<ThreadId>,
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

    // ----- registries ----------------------------------------------------

    pub(crate) fn lock_created(
        &mut self,
        lock: LockId,
        kind: LockKind,
        site: SiteId,
    ) -> &'static LockCell {
        // A reused id: the old object is gone.
        if self.locks.contains_key(&lock) {
            self.drop_lock(lock);
        }
        let c = self.slab.alloc(lock, kind, site);
        self.locks.insert(
            lock,
            LockRec {
                cell: c,
                orphaned_by: None,
                partners: Vec::new(),
            },
        );
        c
    }

    /// Whether lock `lock` has a hold open.
    pub(crate) fn is_held(&self, lock: LockId) -> bool {
        self.locks.get(&lock).is_some_and(|l| l.holder().is_some())
    }

    /// `_at_fork_reinit`: the lock is new and unlocked. Its hold (if any)
    /// ends without counting as a release by anybody, so no thread keeps
    /// it in its held set; a pending leak of it is forgotten.
    pub(crate) fn lock_reinit(&mut self, lock: LockId) {
        let Some(l) = self.locks.get(&lock) else {
            return;
        };
        if l.holder().is_some() {
            l.cell.end_hold(0, false);
        }
        self.pending_leaks.remove(&lock);
        self.set_orphaned(lock, None);
    }

    pub(crate) fn mark_sentinel(&mut self, lock: LockId) {
        self.lock_entry(lock).cell.set_bit(SENTINEL);
    }

    pub(crate) fn lock_destroyed(&mut self, cx: &Ctx, lock: LockId) {
        if let Some(h) = self.locks.get(&lock).and_then(LockRec::holder) {
            self.end_hold(cx, lock, h);
        }
        self.drop_lock(lock);
    }

    fn drop_lock(&mut self, lock: LockId) {
        let Some(l) = self.locks.remove(&lock) else {
            return;
        };
        self.pending_leaks.remove(&lock);
        let st = l.cell.stats();
        if st != cell::CellStats::default() {
            let acc = self.stats.entry(l.cell.class()).or_default();
            acc.kind = Some(l.cell.kind());
            add_stats(&mut acc.folded, &st);
        }
        for p in l.partners {
            self.order.pairs.remove(&(lock, p));
            self.order.pairs.remove(&(p, lock));
            self.order.reported_cycles.retain(|c| !c.contains(&lock));
            if let Some(pl) = self.locks.get_mut(&p) {
                pl.partners.retain(|&x| x != lock);
            }
        }
        self.slab.free(l.cell);
    }

    pub(crate) fn thread_started(
        &mut self,
        cx: &Ctx,
        t: ThreadId,
        native: u64,
        name: Option<String>,
    ) {
        match self.threads.get_mut(&t) {
            Some(r) if r.implicit => {
                r.native = native;
                r.name = name;
                r.implicit = false;
            }
            Some(_) => {
                // The ident was reused without an exit: retire the old thread.
                self.thread_exited(cx, t);
                self.threads.insert(t, ThreadRec::new(native, name, false));
            }
            None => {
                self.threads.insert(t, ThreadRec::new(native, name, false));
            }
        }
        self.record_name(t);
        self.event(cx, t, EventKind::ThreadStart, t, 0);
    }

    fn record_name(&mut self, t: ThreadId) {
        let Some(r) = self.threads.get(&t) else {
            return;
        };
        let tid = r.tid(t);
        let name = r.name.clone().unwrap_or_else(|| format!("thread {t:#x}"));
        self.timeline.names.insert(tid, name);
        if !self.timeline.names_need_pruning(self.threads.len()) {
            return;
        }
        let live: std::collections::HashSet<u64> =
            self.threads.iter().map(|(&i, r)| r.tid(i)).collect();
        self.timeline.prune_names(&live);
    }

    pub(crate) fn thread_named(&mut self, t: ThreadId, name: String) {
        self.thread_entry(t).name = Some(name);
        self.record_name(t);
    }

    pub(crate) fn thread_exited(&mut self, cx: &Ctx, t: ThreadId) -> Vec<Leak> {
        if !self.threads.contains_key(&t) {
            return Vec::new();
        }
        self.event(cx, t, EventKind::ThreadEnd, t, 0);
        self.set_wait(t, None);
        self.forget_reported(t);
        self.posted.remove(&t);
        let who = self.tref(t);
        let mut leaks = Vec::new();
        for id in self.held_ids(t) {
            let l = &self.locks[&id];
            let c = l.cell;
            let leak = Leak {
                thread: who.clone(),
                lock: l.lref(id),
                acquire_site: c.hold_site(),
                since_ns: c.since(),
                exited_ns: cx.now,
                depth: c.depth(),
            };
            c.end_hold(cx.now, false);
            if c.bits() & SENTINEL != 0 {
                // Released by the runtime right around exit: never a leak.
                continue;
            }
            match c.kind() {
                LockKind::RLock => leaks.push(leak),
                LockKind::Lock => {
                    self.pending_leaks.insert(id, leak);
                }
            }
            self.set_orphaned(id, Some(t));
        }
        self.threads.remove(&t);
        leaks
    }

    pub(crate) fn leaked_at_exit(&self) -> Vec<Leak> {
        // Only mutex-like uses: a lock some other thread released once, or
        // that its holder blocked on itself, is a signal (handoff) lock.
        let mut v: Vec<Leak> = self
            .pending_leaks
            .iter()
            .filter(|(id, _)| {
                self.locks
                    .get(id)
                    .is_some_and(|l| l.cell.bits() & (RELEASED_BY_OTHER | SELF_BLOCKED) == 0)
            })
            .map(|(_, l)| l.clone())
            .collect();
        v.sort_by_key(|l| (l.exited_ns, l.lock.id));
        v
    }

    // ----- holds ---------------------------------------------------------

    /// `t` acquired `lock`; `held` is what `t` holds (oldest first), when the
    /// caller keeps it (the fast path's hold stack), else it is looked up.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn acquired(
        &mut self,
        cx: &Ctx,
        t: ThreadId,
        lock: LockId,
        site: SiteId,
        blocking: bool,
        waited_ns: u64,
        entered: bool,
        held: Option<&[LockId]>,
    ) -> Option<OrderInversion> {
        self.thread_entry(t);
        let c = self.lock_entry(lock).cell;
        if c.kind() == LockKind::RLock && c.holder() == Some(t) {
            c.set_depth(c.depth().saturating_add(1));
            return None;
        }
        // A wait the binding did not close, an interrupted wait: both over now.
        if let Some(r) = self.threads.get_mut(&t) {
            r.interrupted = None;
        }
        self.set_wait(t, None);
        self.forget_reported(t);
        // A hold whose release we did not see (acquired before enabling, say).
        if let Some(h) = c.holder() {
            self.end_hold(cx, lock, h);
        }
        self.pending_leaks.remove(&lock);
        self.set_orphaned(lock, None);

        let inversion = if cx.on(LOCK_ORDER) && blocking {
            let looked_up;
            let held = match held {
                Some(h) => h,
                None => {
                    looked_up = self.held_ids(t);
                    &looked_up
                }
            };
            self.order_edges(cx, t, lock, site, held)
                .and_then(|inv| self.judge_now(inv))
        } else {
            None
        };

        c.begin_hold(t, site, cx.now, cell::next_seq(), entered);
        let class = c.class();
        if cx.on(PROFILE) {
            c.count_acquisition();
            let acc = self.stats.entry(class).or_default();
            acc.kind = Some(c.kind());
            if waited_ns > 0 {
                acc.contended += 1;
                acc.total_wait = acc.total_wait.saturating_add(waited_ns);
                acc.max_wait = acc.max_wait.max(waited_ns);
                let s = acc.sites.entry(site).or_insert_with(|| SiteStats {
                    site,
                    ..Default::default()
                });
                s.contended += 1;
                s.total_wait_ns = s.total_wait_ns.saturating_add(waited_ns);
                s.max_wait_ns = s.max_wait_ns.max(waited_ns);
            }
        }
        self.event(cx, t, EventKind::HoldBegin, lock, site);
        if let Some(inv) = &inversion {
            self.inversion_marker(cx, t, inv);
        }
        inversion
    }

    /// `t` starts a blocking acquire of `lock` at `site` (it may never
    /// succeed): record the lock-order edges from what it holds (`held`,
    /// oldest first) now, as lockdep does, so an inversion that deadlocks on
    /// its first occurrence is still reported.
    pub(crate) fn attempt(
        &mut self,
        cx: &Ctx,
        t: ThreadId,
        lock: LockId,
        site: SiteId,
        held: &[LockId],
    ) -> Option<OrderInversion> {
        if !cx.on(LOCK_ORDER) {
            return None;
        }
        self.thread_entry(t);
        let c = self.lock_entry(lock).cell;
        if c.holder() == Some(t) {
            return None; // a re-entry or a wait on its own lock: no edge
        }
        let inv = self
            .order_edges(cx, t, lock, site, held)
            .and_then(|inv| self.judge_now(inv))?;
        self.inversion_marker(cx, t, &inv);
        Some(inv)
    }

    /// A timeline marker for an inversion reported now (under [`TRACE`]).
    fn inversion_marker(&mut self, cx: &Ctx, t: ThreadId, inv: &OrderInversion) {
        if cx.on(TRACE) {
            let text = describe_inversion(inv);
            let id = self.timeline.marker(text);
            self.event(cx, t, EventKind::Inversion, 0, id);
        }
    }

    /// Why inversion `inv` is no evidence of a possible deadlock, if it is
    /// not (with what is known now).
    fn suppressed_because(&self, inv: &OrderInversion) -> Option<Suppressed> {
        let semaphore = inv.edges.iter().any(|e| {
            self.semaphore_classes.contains(&e.from) || self.semaphore_classes.contains(&e.to)
        });
        if semaphore {
            return Some(Suppressed::Semaphore);
        }
        // The edges as recorded now (later occurrences folded in).
        let recs: Vec<&EdgeRec> = inv
            .edges
            .iter()
            .filter_map(|e| {
                if inv.same_class {
                    self.order.pairs.get(&(e.from_lock, e.to_lock))
                } else {
                    self.order.edges.get(&(e.from, e.to))
                }
            })
            .collect();
        if recs.len() != inv.edges.len() {
            return None; // forgotten (a lock destroyed): judge as found
        }
        let gate = recs[0].gate;
        if gate.is_some() && recs.iter().all(|r| r.gate == gate) {
            return Some(Suppressed::GateLock);
        }
        if recs.iter().all(|r| r.ascending) {
            return Some(Suppressed::IdOrder);
        }
        None
    }

    /// A new inversion: returned to report now under
    /// `immediate_inversions` (unless already suppressed), else kept for
    /// [`take_inversions`](Self::take_inversions).
    fn judge_now(&mut self, inv: OrderInversion) -> Option<OrderInversion> {
        if !self.immediate_inversions {
            self.pending_inversions.push(inv);
            return None;
        }
        match self.suppressed_because(&inv) {
            None => Some(inv),
            Some(_) => {
                self.pending_inversions.push(inv);
                None
            }
        }
    }

    /// The inversions kept so far, judged with all the evidence gathered
    /// since: those to report, and those suppressed (with the reason).
    pub(crate) fn take_inversions(&mut self) -> InversionVerdicts {
        let mut v = InversionVerdicts::default();
        for inv in std::mem::take(&mut self.pending_inversions) {
            match self.suppressed_because(&inv) {
                None if !self.immediate_inversions => v.reported.push(inv),
                None => {} // reported when found
                Some(why) => v.suppressed.push((inv, why)),
            }
        }
        v
    }

    /// Record lock-order edges for `t` acquiring `lock` at `site` while
    /// holding `held`.
    fn order_edges(
        &mut self,
        cx: &Ctx,
        t: ThreadId,
        lock: LockId,
        site: SiteId,
        held: &[LockId],
    ) -> Option<OrderInversion> {
        let new = self.locks[&lock].cell;
        if new.bits() & SENTINEL != 0 {
            return None;
        }
        let to = new.class();
        let held: Vec<(LockId, LockClass, SiteId, u64)> = held
            .iter()
            .filter(|&&h| h != lock)
            .filter_map(|&h| {
                let c = self.locks.get(&h)?.cell;
                (c.holder() == Some(t) && c.orders())
                    .then(|| (h, c.class(), c.hold_site(), c.addr()))
            })
            .collect();
        let me = self.tref(t);
        let mut best: Option<OrderInversion> = None;
        for &(h, from, held_site, addr) in &held {
            // The gate: the oldest other lock held (as the fast path's key).
            let gate = held.iter().map(|g| g.0).find(|&g| g != h);
            let rec = EdgeRec {
                from_lock: h,
                to_lock: lock,
                held_site,
                acquire_site: site,
                thread: me.clone(),
                gate,
                ascending: cell::ascending(addr, new.addr()),
                stack: cell::edge_stack(),
            };
            let found = if from == to {
                self.same_class_pair(h, lock, rec)
                    .map(|edges| (true, edges))
            } else {
                self.order
                    .add_edge(from, to, rec)
                    .map(|edges| (false, edges))
            };
            if let Some((same_class, edges)) = found {
                // An edge recorded while its held lock still looked like a
                // mutex, before another thread released it (a signal lock:
                // its "hold" orders nothing), is no evidence.
                let stale = edges.iter().any(|e| {
                    self.locks
                        .get(&e.from_lock)
                        .is_some_and(|l| !l.cell.orders())
                });
                if !stale && best.as_ref().is_none_or(|b| edges.len() < b.edges.len()) {
                    best = Some(OrderInversion {
                        thread: t,
                        at_ns: cx.now,
                        same_class,
                        edges,
                    });
                }
            }
        }
        best
    }

    /// Object `h` (held) then `lock` (acquired), both of one class: the
    /// edge `h -> lock` in the graph of same-class objects. Returns the
    /// shortest cycle it closes (`transfer(a, b)` / `transfer(b, a)` is a
    /// cycle of two; forks taken in a ring, of five), once per cycle.
    fn same_class_pair(&mut self, h: LockId, lock: LockId, rec: EdgeRec) -> Option<Vec<OrderEdge>> {
        let class = self.locks[&lock].cell.class();
        if let Some(old) = self.order.pairs.get_mut(&(h, lock)) {
            old.again(rec.gate, rec.ascending);
            return None;
        }
        if self.order.pairs.len() >= MAX_SAME_CLASS_PAIRS {
            return None;
        }
        self.order.pairs.insert((h, lock), rec);
        for (a, b) in [(h, lock), (lock, h)] {
            if let Some(l) = self.locks.get_mut(&a) {
                if !l.partners.contains(&b) {
                    l.partners.push(b);
                }
            }
        }
        // The shortest path lock -> ... -> h over recorded pairs closes a cycle.
        let (locks, pairs) = (&self.locks, &self.order.pairs);
        let path = shortest_path(lock, h, |x| {
            locks.get(&x).map_or_else(Vec::new, |l| {
                l.partners
                    .iter()
                    .copied()
                    .filter(|&y| pairs.contains_key(&(x, y)))
                    .collect()
            })
        })?;
        let mut key = path.clone();
        key.sort_unstable();
        if !self.order.reported_cycles.insert(key) {
            return None;
        }
        let mut edges: Vec<OrderEdge> = path
            .windows(2)
            .map(|w| self.order.pairs[&(w[0], w[1])].edge(class, class))
            .collect();
        edges.push(self.order.pairs[&(h, lock)].edge(class, class));
        Some(edges)
    }

    pub(crate) fn released(&mut self, cx: &Ctx, t: ThreadId, lock: LockId) {
        self.forget_reported(t);
        if let Some(r) = self.threads.get_mut(&t) {
            r.interrupted = None;
        }
        let Some(l) = self.locks.get(&lock) else {
            self.pending_leaks.remove(&lock);
            return;
        };
        let c = l.cell;
        if c.kind() == LockKind::RLock && c.holder() == Some(t) && c.depth() > 1 {
            c.set_depth(c.depth() - 1);
            return;
        }
        match c.holder() {
            Some(h) => {
                if h == t {
                    c.set_bit(RELEASED_BY_SELF);
                } else {
                    c.set_bit(RELEASED_BY_OTHER);
                    self.semaphore_classes.insert(c.class());
                }
                self.end_hold(cx, lock, t);
            }
            None => {
                if l.orphaned_by.is_some_and(|o| o != t) {
                    c.set_bit(RELEASED_BY_OTHER);
                    self.semaphore_classes.insert(c.class());
                }
                self.pending_leaks.remove(&lock);
                self.set_orphaned(lock, None);
            }
        }
    }

    pub(crate) fn release_all(&mut self, cx: &Ctx, t: ThreadId, lock: LockId) {
        if let Some(l) = self.locks.get(&lock) {
            l.cell.set_depth(l.cell.depth().min(1));
        }
        self.released(cx, t, lock);
    }

    pub(crate) fn set_rlock_depth(&mut self, lock: LockId, depth: u64) {
        if let Some(l) = self.locks.get(&lock) {
            if l.holder().is_some() {
                l.cell.set_depth(depth.max(1));
            }
        }
    }

    pub(crate) fn acquire_failed(&mut self, t: ThreadId, lock: LockId) {
        if let Some(l) = self.locks.get(&lock) {
            cell::acquire_failed(l.cell, t);
        }
    }

    // ----- waits ---------------------------------------------------------

    pub(crate) fn wait_begin(
        &mut self,
        cx: &Ctx,
        t: ThreadId,
        lock: LockId,
        timed: bool,
    ) -> Option<Deadlock> {
        self.thread_entry(t);
        let c = self.lock_entry(lock).cell;
        if c.kind() == LockKind::Lock && c.holder() == Some(t) {
            c.set_bit(SELF_BLOCKED);
        }
        let r = self.threads.get_mut(&t).expect("entry made above");
        let (since, episode) = match r.interrupted.take() {
            Some((p, ended))
                if p.lock == lock && cx.now.saturating_sub(ended) <= RETRY_GRACE_NS =>
            {
                (p.since, p.episode)
            }
            _ => {
                self.next_episode += 1;
                (cx.now, self.next_episode)
            }
        };
        self.set_wait(
            t,
            Some(WaitRec {
                lock,
                since,
                timed,
                episode,
            }),
        );
        self.event(cx, t, EventKind::WaitBegin, lock, timed as u32);
        if cx.on(DEADLOCK) {
            self.detect(cx, t)
        } else {
            None
        }
    }

    pub(crate) fn wait_end(&mut self, cx: &Ctx, t: ThreadId, lock: LockId, acquired: bool) {
        let Some(r) = self.threads.get_mut(&t) else {
            return;
        };
        let w = r.wait;
        r.interrupted = if acquired {
            None
        } else {
            w.filter(|w| w.lock == lock).map(|w| (w, cx.now))
        };
        self.set_wait(t, None);
        if acquired {
            self.forget_reported(t);
        }
        self.event(cx, t, EventKind::WaitEnd, lock, acquired as u32);
    }

    fn all_blocked(&self, report_timed: bool) -> bool {
        let waiting = if report_timed {
            self.waiting_untimed + self.waiting_timed
        } else {
            self.waiting_untimed
        };
        if self.threads.is_empty() || waiting != self.threads.len() {
            return false;
        }
        // A thread whose lock was released has not woken up yet, but it is
        // not blocked: it will take the lock (a notify just happened).
        self.threads.values().all(|r| {
            r.wait.is_some_and(|w| {
                self.locks
                    .get(&w.lock)
                    .is_some_and(|l| l.holder().is_some())
            })
        })
    }

    /// Follow the wait-for chain from `start` (which should be waiting).
    fn follow(&self, start: ThreadId) -> (Vec<Link>, End) {
        let mut links: Vec<Link> = Vec::new();
        let mut pos: HashMap<ThreadId, usize> = HashMap::default();
        let mut cur = start;
        loop {
            let Some(r) = self.threads.get(&cur) else {
                return (links, End::HolderExited(cur));
            };
            let Some(w) = r.wait else {
                return (links, End::Running(cur));
            };
            let l = self.locks.get(&w.lock);
            let holder = l.and_then(LockRec::holder);
            pos.insert(cur, links.len());
            links.push(Link {
                thread: cur,
                lock: w.lock,
                holder,
            });
            match holder {
                None => {
                    return (
                        links,
                        l.and_then(|l| l.orphaned_by)
                            .map_or(End::NoHolder, End::HolderExited),
                    );
                }
                Some(h) => {
                    if let Some(&i) = pos.get(&h) {
                        return (links, End::Cycle(i));
                    }
                    cur = h;
                }
            }
        }
    }

    /// Which rule (if any) makes `cycle` a deadlock now.
    fn cycle_rule(&self, cycle: &[Link], report_timed: bool) -> Option<DeadlockRule> {
        let timed = cycle
            .iter()
            .any(|k| self.threads[&k.thread].wait.is_some_and(|w| w.timed));
        if timed && !report_timed {
            return None;
        }
        let definite = cycle
            .iter()
            .all(|k| self.locks.get(&k.lock).is_some_and(|l| l.cell.owned()));
        if definite {
            Some(DeadlockRule::Definite)
        } else if self.all_blocked(report_timed) {
            Some(DeadlockRule::AllBlocked)
        } else {
            None
        }
    }

    fn cycle_key(cycle: &[Link]) -> Vec<(ThreadId, LockId)> {
        let mut k: Vec<(ThreadId, LockId)> = cycle.iter().map(|l| (l.thread, l.lock)).collect();
        k.sort_unstable();
        k
    }

    fn cycle_threads(&self, cycle: &[Link]) -> Vec<CycleThread> {
        cycle
            .iter()
            .map(|k| {
                let w = self.threads[&k.thread].wait.expect("cycle members wait");
                CycleThread {
                    thread: self.tref(k.thread),
                    waits_for: self.lref(k.lock),
                    wait_since_ns: w.since,
                    timed: w.timed,
                    held: self.held_of(k.thread),
                }
            })
            .collect()
    }

    /// Look for an unreported deadlock visible now, preferring one through `t`.
    pub(crate) fn detect(&mut self, cx: &Ctx, t: ThreadId) -> Option<Deadlock> {
        let mut found: Vec<(DeadlockRule, Vec<Link>)> = Vec::new();
        let mut keys: Vec<Vec<(ThreadId, LockId)>> = Vec::new();
        let mut consider =
            |s: &State, cycle: Vec<Link>, found: &mut Vec<(DeadlockRule, Vec<Link>)>| {
                let key = Self::cycle_key(&cycle);
                if s.reported.contains(&key) || keys.contains(&key) {
                    return;
                }
                if let Some(rule) = s.cycle_rule(&cycle, cx.report_timed) {
                    keys.push(key);
                    found.push((rule, cycle));
                }
            };
        if self.threads.get(&t).is_some_and(|r| r.wait.is_some()) {
            let (mut links, end) = self.follow(t);
            if let End::Cycle(i) = end {
                consider(self, links.split_off(i), &mut found);
            }
        }
        if self.all_blocked(cx.report_timed) {
            let mut waiting: Vec<ThreadId> = self
                .threads
                .iter()
                .filter(|(_, r)| r.wait.is_some())
                .map(|(&i, _)| i)
                .collect();
            waiting.sort_unstable();
            for u in waiting {
                let (mut links, end) = self.follow(u);
                if let End::Cycle(i) = end {
                    consider(self, links.split_off(i), &mut found);
                }
            }
        }
        if found.is_empty() {
            return None;
        }
        // The cycle through `t` first (it was considered first if there is one).
        let (rule, first) = found.remove(0);
        // The error goes to a thread of the cycle: `t` if it is one, else the
        // member that began waiting last (its wait closed the cycle).
        let closer = if first.iter().any(|k| k.thread == t) {
            t
        } else {
            first
                .iter()
                .max_by_key(|k| self.threads[&k.thread].wait.map_or(0, |w| w.episode))
                .map_or(t, |k| k.thread)
        };
        let dl = Deadlock {
            detected_by: closer,
            at_ns: cx.now,
            rule,
            threads: self.cycle_threads(&first),
            other_cycles: found.iter().map(|(_, c)| self.cycle_threads(c)).collect(),
        };
        self.reported.extend(keys);
        if cx.on(TRACE) {
            let text = describe_deadlock(&dl);
            let id = self.timeline.marker(text);
            let lock = dl.threads[0].waits_for.id;
            self.event(cx, t, EventKind::Deadlock, lock, id);
        }
        Some(dl)
    }

    pub(crate) fn post_deadlock(&mut self, d: Deadlock) {
        self.posted.insert(d.detected_by, d);
    }

    pub(crate) fn take_deadlock(&mut self, t: ThreadId) -> Option<Deadlock> {
        let d = self.posted.remove(&t)?;
        // Still current: t waits for the lock it waited for in the report.
        let me = d.threads.iter().find(|c| c.thread.ident == t)?;
        let w = self.threads.get(&t)?.wait?;
        (w.lock == me.waits_for.id).then_some(d)
    }

    // ----- inspection ----------------------------------------------------

    fn wait_state(&self, now: u64, w: &WaitRec) -> WaitState {
        let l = self.locks.get(&w.lock);
        WaitState {
            lock: self.lref(w.lock),
            holder: l.and_then(LockRec::holder).map(|h| self.tref(h)),
            holder_exited: l.and_then(|l| l.orphaned_by),
            since_ns: w.since,
            waited_ns: now.saturating_sub(w.since),
            timed: w.timed,
            episode: w.episode,
        }
    }

    pub(crate) fn snapshot(&self, now: u64) -> Snapshot {
        let mut threads: Vec<ThreadState> = self
            .threads
            .iter()
            .map(|(&t, r)| ThreadState {
                thread: self.tref(t),
                held: self.held_of(t),
                waiting: r.wait.as_ref().map(|w| self.wait_state(now, w)),
            })
            .collect();
        threads.sort_by_key(|s| s.thread.ident);
        Snapshot {
            taken_ns: now,
            threads,
        }
    }

    pub(crate) fn wait_chains(&self) -> Vec<WaitChain> {
        let mut waiting: Vec<ThreadId> = self
            .threads
            .iter()
            .filter(|(_, r)| r.wait.is_some())
            .map(|(&i, _)| i)
            .collect();
        waiting.sort_unstable();
        waiting
            .into_iter()
            .map(|t| {
                let (links, end) = self.follow(t);
                let links = links
                    .iter()
                    .map(|k| {
                        let w = self.threads[&k.thread].wait.expect("links wait");
                        ChainLink {
                            thread: self.tref(k.thread),
                            lock: self.lref(k.lock),
                            since_ns: w.since,
                            timed: w.timed,
                            holder: k.holder,
                        }
                    })
                    .collect();
                let end = match end {
                    End::Running(h) => ChainEnd::Running(self.tref(h)),
                    End::NoHolder => ChainEnd::NoHolder,
                    End::HolderExited(h) => ChainEnd::HolderExited(h),
                    End::Cycle(start) => ChainEnd::Cycle { start },
                };
                WaitChain { links, end }
            })
            .collect()
    }

    pub(crate) fn longest_waits(&self, now: u64, threshold_ns: u64) -> Vec<LongWait> {
        let mut v: Vec<LongWait> = self
            .threads
            .iter()
            .filter_map(|(&t, r)| {
                let w = r.wait.as_ref()?;
                (now.saturating_sub(w.since) >= threshold_ns).then(|| LongWait {
                    thread: self.tref(t),
                    wait: self.wait_state(now, w),
                })
            })
            .collect();
        v.sort_by(|a, b| {
            b.wait
                .waited_ns
                .cmp(&a.wait.waited_ns)
                .then(a.thread.ident.cmp(&b.thread.ident))
        });
        v
    }

    pub(crate) fn stats(&self, top_sites: usize) -> Vec<ClassStats> {
        // The live cells' counters on top of what the state accumulated.
        let mut accs: HashMap<LockClass, ClassAcc> = self.stats.clone();
        for l in self.locks.values() {
            let st = l.cell.stats();
            if st != cell::CellStats::default() {
                let acc = accs.entry(l.cell.class()).or_default();
                acc.kind = Some(l.cell.kind());
                add_stats(&mut acc.folded, &st);
            }
        }
        let mut v: Vec<ClassStats> = accs
            .into_iter()
            .map(|(class, a)| {
                let mut sites: Vec<SiteStats> = a.sites.values().cloned().collect();
                sites.sort_by(|x, y| {
                    y.total_wait_ns
                        .cmp(&x.total_wait_ns)
                        .then(y.contended.cmp(&x.contended))
                        .then(x.site.cmp(&y.site))
                });
                sites.truncate(top_sites);
                ClassStats {
                    class,
                    kind: a.kind.unwrap_or(LockKind::Lock),
                    acquisitions: a.folded.acquisitions,
                    contended: a.contended,
                    total_wait_ns: a.total_wait,
                    max_wait_ns: a.max_wait,
                    holds: a.folded.holds,
                    total_hold_ns: a.folded.total_hold,
                    max_hold_ns: a.folded.max_hold,
                    top_sites: sites,
                }
            })
            .collect();
        v.sort_by(|x, y| {
            y.total_wait_ns
                .cmp(&x.total_wait_ns)
                .then(y.acquisitions.cmp(&x.acquisitions))
                .then(x.class.cmp(&y.class))
        });
        v
    }

    pub(crate) fn reset_stats(&mut self) {
        self.stats.clear();
        for l in self.locks.values() {
            l.cell.reset_stats();
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

/// The shortest path `from -> ... -> to` in the graph given by `next`
/// (breadth-first), as the list of its nodes.
fn shortest_path<K: Copy + Eq + std::hash::Hash>(
    from: K,
    to: K,
    next: impl Fn(K) -> Vec<K>,
) -> Option<Vec<K>> {
    let mut parent: HashMap<K, K> = HashMap::default();
    let mut seen: HashSet<K> = HashSet::default();
    seen.insert(from);
    let mut queue = VecDeque::from([from]);
    while let Some(x) = queue.pop_front() {
        if x == to {
            let mut path = vec![to];
            let mut c = to;
            while c != from {
                c = parent[&c];
                path.push(c);
            }
            path.reverse();
            return Some(path);
        }
        for n in next(x) {
            if seen.insert(n) {
                parent.insert(n, x);
                queue.push_back(n);
            }
        }
    }
    None
}

fn add_stats(into: &mut cell::CellStats, s: &cell::CellStats) {
    into.acquisitions = into.acquisitions.saturating_add(s.acquisitions);
    into.holds = into.holds.saturating_add(s.holds);
    into.total_hold = into.total_hold.saturating_add(s.total_hold);
    into.max_hold = into.max_hold.max(s.max_hold);
}

fn class_name(c: LockClass) -> String {
    match c {
        LockClass::Site(s) => super::site_name(s),
        LockClass::Object(id) => format!("lock {id:#x}"),
    }
}

fn thread_label(t: &ThreadRef) -> String {
    match &t.name {
        Some(n) => format!("{n} ({:#x})", t.ident),
        None => format!("thread {:#x}", t.ident),
    }
}

/// One line per edge, for timeline markers.
pub(crate) fn describe_inversion(inv: &OrderInversion) -> String {
    inv.edges
        .iter()
        .map(|e| {
            format!(
                "{} held {} (acquired at {}) then acquired {} at {}",
                thread_label(&e.thread),
                class_name(e.from),
                super::site_name(e.held_site),
                class_name(e.to),
                super::site_name(e.acquire_site)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One clause per thread, for timeline markers.
pub(crate) fn describe_deadlock(d: &Deadlock) -> String {
    let n = d.threads.len();
    d.threads
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let next = &d.threads[(i + 1) % n].thread;
            format!(
                "{} waits for {:?} {:#x} (created at {}) held by {}",
                thread_label(&c.thread),
                c.waits_for.kind,
                c.waits_for.id,
                super::site_name(c.waits_for.site),
                thread_label(next)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}
