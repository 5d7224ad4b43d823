//! The wait-for graph: waits begun and ended, chain walks from a waiting
//! thread, and deadlock detection over the cycles they find.

use super::describe::describe_deadlock;
use super::{Ctx, LockRec, State, WaitRec};
use crate::diag::cell::SELF_BLOCKED;
use crate::diag::report::{CycleThread, Deadlock, DeadlockRule, EventKind};
use crate::diag::{LockId, LockKind, ThreadId, DEADLOCK, TRACE};
use rustc_hash::FxHashMap as HashMap;

/// A wait on the same lock that begins within this long after a wait ended
/// without the lock continues its episode (a retry after a signal handler).
const RETRY_GRACE_NS: u64 = 1_000_000_000;

/// Where a chain walk stopped (internal form of [`ChainEnd`](crate::diag::ChainEnd)).
pub(super) enum End {
    Running(ThreadId),
    NoHolder,
    HolderExited(ThreadId),
    Cycle(usize),
}

/// A link of a walk: `thread` waits for `lock`, held by `holder`.
pub(super) struct Link {
    pub(super) thread: ThreadId,
    pub(super) lock: LockId,
    pub(super) holder: Option<ThreadId>,
}

impl State {
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
    pub(super) fn follow(&self, start: ThreadId) -> (Vec<Link>, End) {
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
}
