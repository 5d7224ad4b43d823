//! The lock-free fast path of the process-wide diagnostics (`diag::cell`),
//! driven as the binding drives it: real threads, real locks, one
//! `LockCell` per lock. The state under the mutex must see what the fast
//! path recorded (holders, bits, statistics), and a lock-order inversion or
//! a deadlock made only of fast-path holds must still be reported.
//!
//! Everything runs in one test function: the global instance is shared.

use rsthread_core::diag::{self, cell, DeadlockRule, LockCell, LockKind, ThreadId};
use rsthread_core::{ident, RawLock};
use std::sync::{Arc, Barrier};
use std::thread;

struct Lk {
    raw: RawLock,
    cell: &'static LockCell,
}

impl Lk {
    fn new(id: u64, site: &str) -> Arc<Lk> {
        let cell = diag::global().lock_created(id, LockKind::Lock, diag::intern_site(site));
        Arc::new(Lk {
            raw: RawLock::new(),
            cell,
        })
    }
    /// A plain `acquire()`.
    fn try_take(&self) -> bool {
        self.take_as(false)
    }
    /// An acquire through `__enter__` (an owned hold).
    fn try_enter(&self) -> bool {
        self.take_as(true)
    }
    fn take_as(&self, entered: bool) -> bool {
        let me = ident::current();
        if self.raw.try_acquire() {
            let site = diag::intern_site("fast.rs:acquire");
            assert!(cell::acquired(self.cell, me, site, true, 0, entered).is_none());
            true
        } else {
            false
        }
    }
    fn give(&self) {
        cell::released(self.cell);
        self.raw.release().unwrap();
    }
}

fn held_by(t: ThreadId) -> Vec<u64> {
    let snap = diag::global().snapshot();
    snap.threads
        .iter()
        .find(|s| s.thread.ident == t)
        .map(|s| s.held.iter().map(|h| h.lock.id).collect())
        .unwrap_or_default()
}

#[test]
fn fast_path_feeds_the_state() {
    diag::global().set_flags(diag::DEADLOCK | diag::LOCK_ORDER | diag::PROFILE);
    diag::global().set_immediate_inversions(true);

    // 1. Statistics and holds recorded on the fast path.
    let a = Lk::new(9001, "fast.rs:1 in a");
    for _ in 0..1000 {
        assert!(a.try_take());
        a.give();
    }
    assert!(a.try_take());
    assert_eq!(
        held_by(ident::current()),
        vec![9001],
        "a fast-path hold is visible in the snapshot"
    );
    a.give();
    assert!(held_by(ident::current()).is_empty());
    let st = diag::global().stats();
    let row = st
        .iter()
        .find(|s| s.class == a.cell.class())
        .expect("a row for a");
    assert_eq!((row.acquisitions, row.holds), (1001, 1001));

    // 2. A lock-order inversion made of fast-path acquires (a then b here,
    //    b then a in another thread) is reported once, by the closing acquire.
    let b = Lk::new(9002, "fast.rs:2 in b");
    assert!(a.try_take());
    assert!(b.try_take());
    b.give();
    a.give();
    let (a2, b2) = (a.clone(), b.clone());
    let inv = thread::spawn(move || {
        let me = ident::current();
        assert!(b2.raw.try_acquire());
        assert!(cell::acquired(
            b2.cell,
            me,
            diag::intern_site("fast.rs:b-first"),
            true,
            0,
            false
        )
        .is_none());
        assert!(a2.raw.try_acquire());
        let inv = cell::acquired(
            a2.cell,
            me,
            diag::intern_site("fast.rs:then-a"),
            true,
            0,
            false,
        );
        a2.give();
        b2.give();
        // The same order again: known edges, nothing new.
        assert!(b2.try_take());
        assert!(a2.try_take());
        a2.give();
        b2.give();
        diag::global().thread_exited(me); // as the binding does at thread end
        inv
    })
    .join()
    .unwrap();
    let inv = inv.expect("the b -> a acquire closes a cycle with a -> b");
    assert_eq!(inv.edges.len(), 2);

    // 3. A deadlock whose holds were all taken on the fast path, cold (no
    //    earlier use) and through `__enter__`: both holds are owned, so the
    //    rule is Definite as soon as the second wait closes the cycle.
    let (x, y) = (
        Lk::new(9003, "fast.rs:3 in x"),
        Lk::new(9004, "fast.rs:4 in y"),
    );
    let go = Arc::new(Barrier::new(2));
    let (x2, y2, go2) = (x.clone(), y.clone(), go.clone());
    let other = thread::spawn(move || {
        let me = ident::current();
        assert!(y2.try_enter());
        go2.wait(); // both hold their lock
        go2.wait(); // main began its wait
        let d = diag::global().wait_begin(me, x2.cell.id(), false);
        diag::global().wait_end(me, x2.cell.id(), false);
        y2.give();
        diag::global().thread_exited(me);
        d
    });
    let me = ident::current();
    assert!(x.try_enter());
    go.wait();
    assert!(
        diag::global().wait_begin(me, y.cell.id(), false).is_none(),
        "half a cycle"
    );
    go.wait();
    let d = other
        .join()
        .unwrap()
        .expect("the second wait closes the cycle");
    diag::global().wait_end(me, y.cell.id(), false);
    assert_eq!(d.rule, DeadlockRule::Definite);
    let mut held: Vec<u64> = d
        .threads
        .iter()
        .flat_map(|t| t.held.iter().map(|h| h.lock.id))
        .collect();
    held.sort_unstable();
    assert_eq!(
        held,
        vec![9003, 9004],
        "each thread's fast-path hold is in the report"
    );
    x.give();

    // 4. A plain lock released by another thread becomes signal-like: the
    //    release goes through the state, which sees the other releaser.
    let s = Lk::new(9005, "fast.rs:5 in s");
    assert!(s.try_take());
    let s2 = s.clone();
    thread::spawn(move || {
        s2.give();
        diag::global().thread_exited(ident::current());
    })
    .join()
    .unwrap();
    assert!(
        held_by(ident::current()).is_empty(),
        "the hold ended with the other thread's release"
    );
    assert!(s.try_take());
    s.give();

    // 5. The timeline: fast-path holds are buffered per thread and handed in
    //    at thread exit (the other thread) and at export (this one).
    diag::global().set_flags(diag::DEADLOCK | diag::TRACE);
    let t = Lk::new(9006, "fast.rs:6 in traced");
    let t2 = t.clone();
    thread::spawn(move || {
        for _ in 0..10 {
            assert!(t2.try_take());
            t2.give();
        }
        diag::global().thread_exited(ident::current());
    })
    .join()
    .unwrap();
    for _ in 0..300 {
        // more than one batch
        assert!(t.try_take());
        t.give();
    }
    let mut out = Vec::new();
    diag::global().export_chrome_trace(&mut out).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let holds: Vec<&serde_json::Value> = v["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == "hold Lock fast.rs:6 in traced")
        .collect();
    assert_eq!(holds.len(), 310, "every hold of both threads, closed");
    assert!(holds
        .iter()
        .all(|e| e["ph"] == "X" && e["args"]["open"] == false));
    let tids: std::collections::HashSet<u64> =
        holds.iter().map(|e| e["tid"].as_u64().unwrap()).collect();
    assert_eq!(tids.len(), 2, "one track per thread: {tids:?}");

    diag::global().set_flags(0);
    diag::global().reset();
}
