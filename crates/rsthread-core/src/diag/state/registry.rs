//! The lock and thread registries: locks created, re-initialised and
//! destroyed; threads started, named and exited, with the locks an exiting
//! thread leaves held (leaks).

use super::stats::fold_cell;
use super::{Ctx, LockRec, State, ThreadRec};
use crate::diag::cell::{LockCell, RELEASED_BY_OTHER, SELF_BLOCKED, SENTINEL};
use crate::diag::report::{EventKind, Leak};
use crate::diag::{LockId, LockKind, SiteId, ThreadId};

impl State {
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
        fold_cell(&mut self.stats, l.cell);
        self.forget_pairs(lock, l.partners);
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

    pub(super) fn record_name(&mut self, t: ThreadId) {
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
}
