//! The lock-order graph: edges between lock classes (and between same-class
//! objects), the cycles they close, and the judging of those inversions.

use super::describe::describe_inversion;
use super::{Ctx, State};
use crate::diag::cell::{self, SENTINEL};
use crate::diag::report::{
    EventKind, InversionVerdicts, OrderEdge, OrderInversion, Suppressed, ThreadRef,
};
use crate::diag::{LockClass, LockId, SiteId, ThreadId, LOCK_ORDER, TRACE};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::collections::VecDeque;

/// Same-class object pairs remembered at most (then no new pairs are added).
const MAX_SAME_CLASS_PAIRS: usize = 1 << 20;

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
pub(super) struct OrderGraph {
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

impl State {
    /// Forget the same-class pairs of destroyed lock `lock` (with its
    /// `partners`) and the reported cycles through it.
    pub(super) fn forget_pairs(&mut self, lock: LockId, partners: Vec<LockId>) {
        for p in partners {
            self.order.pairs.remove(&(lock, p));
            self.order.pairs.remove(&(p, lock));
            self.order.reported_cycles.retain(|c| !c.contains(&lock));
            if let Some(pl) = self.locks.get_mut(&p) {
                pl.partners.retain(|&x| x != lock);
            }
        }
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
    pub(super) fn inversion_marker(&mut self, cx: &Ctx, t: ThreadId, inv: &OrderInversion) {
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
    pub(super) fn judge_now(&mut self, inv: OrderInversion) -> Option<OrderInversion> {
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
    pub(super) fn order_edges(
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
