//! Holds: a lock acquired (counted, and checked for lock order), released,
//! re-entered or given up.

use super::{Ctx, State};
use crate::diag::cell::{self, RELEASED_BY_OTHER, RELEASED_BY_SELF};
use crate::diag::report::{EventKind, OrderInversion};
use crate::diag::{LockId, LockKind, SiteId, ThreadId, LOCK_ORDER, PROFILE};

impl State {
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
        if cx.on(PROFILE) {
            self.profile_acquire(c, site, waited_ns);
        }
        self.event(cx, t, EventKind::HoldBegin, lock, site);
        if let Some(inv) = &inversion {
            self.inversion_marker(cx, t, inv);
        }
        inversion
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
}
