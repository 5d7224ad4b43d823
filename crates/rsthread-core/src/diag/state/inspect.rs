//! Inspection of what is true now: snapshots of every thread, wait chains
//! and the longest waits.

use super::deadlock::End;
use super::{LockRec, State, WaitRec};
use crate::diag::report::{
    ChainEnd, ChainLink, LongWait, Snapshot, ThreadState, WaitChain, WaitState,
};
use crate::diag::ThreadId;

impl State {
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
}
