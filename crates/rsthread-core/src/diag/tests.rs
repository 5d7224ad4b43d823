//! Unit tests: every scenario drives one private [`Diagnostics`] from the
//! test's own thread, with thread ids as plain numbers and a fake clock.

use super::*;
use std::cell::Cell;

thread_local! {
    static NOW: Cell<u64> = const { Cell::new(1_000_000) };
}

fn now() -> u64 {
    NOW.with(Cell::get)
}

fn advance(ns: u64) {
    NOW.with(|c| c.set(c.get() + ns));
}

/// A private instance reporting inversions when found (the scenarios
/// check each report at the acquire that closes it); see
/// `inversions_judged_with_the_whole_run` for the default.
fn diag(flags: u32) -> Diagnostics {
    let d = Diagnostics::with_clock(now);
    d.set_flags(flags);
    d.set_immediate_inversions(true);
    d
}

fn site(s: &str) -> SiteId {
    intern_site(s)
}

/// Register thread `t` as started, named `T<t>`.
fn start(d: &Diagnostics, t: ThreadId) {
    d.thread_started(t, 1000 + t, Some(format!("T{t}")));
}

/// A plain lock, created cold (never used before), that `by` takes with
/// `with` (an owned hold) when the test calls [`enter`].
fn mutex(d: &Diagnostics, id: LockId, _by: ThreadId) {
    d.lock_created(id, LockKind::Lock, site(&format!("test.py:{id} in mutex")));
}

fn rlock(d: &Diagnostics, id: LockId) {
    d.lock_created(id, LockKind::RLock, site(&format!("test.py:{id} in rlock")));
}

fn idents(dl: &Deadlock) -> Vec<ThreadId> {
    dl.threads.iter().map(|c| c.thread.ident).collect()
}

/// Build a ring: thread i holds lock 100+i (mutex-like) and waits for lock
/// 100+(i+1)%n. Asserts only the last wait reports, and returns that report.
fn ring(d: &Diagnostics, n: u64) -> Deadlock {
    for i in 1..=n {
        start(d, i);
        mutex(d, 100 + i, i);
        d.entered(i, 100 + i, site(&format!("ring.py:{i} in take")), true, 0);
    }
    for i in 1..n {
        assert_eq!(
            d.wait_begin(i, 100 + i % n + 1, false),
            None,
            "wait {i} closes nothing"
        );
    }
    d.wait_begin(n, 101, false)
        .expect("the closing wait reports")
}

#[test]
fn two_thread_rlock_cycle() {
    let d = diag(DEADLOCK);
    start(&d, 1);
    start(&d, 2);
    rlock(&d, 10);
    rlock(&d, 20);
    let s1 = site("a.py:1 in f");
    d.acquired(1, 10, s1, true, 0);
    d.acquired(1, 10, s1, true, 0); // re-entry: depth 2
    d.acquired(2, 20, site("a.py:2 in g"), true, 0);
    advance(5);
    assert_eq!(d.wait_begin(1, 20, false), None);
    advance(5);
    let dl = d.wait_begin(2, 10, false).expect("deadlock");
    assert_eq!(dl.rule, DeadlockRule::Definite);
    assert_eq!(dl.detected_by, 2);
    assert_eq!(
        idents(&dl),
        [2, 1],
        "starts at the detecting thread, follows waits"
    );
    assert_eq!(dl.threads[0].waits_for.id, 10);
    assert_eq!(dl.threads[0].waits_for.kind, LockKind::RLock);
    assert_eq!(
        site_name(dl.threads[0].waits_for.site),
        "test.py:10 in rlock"
    );
    assert_eq!(dl.threads[1].thread.name.as_deref(), Some("T1"));
    assert_eq!(dl.threads[1].thread.native, 1001);
    assert_eq!(dl.threads[1].wait_since_ns, 1_000_005);
    let h = &dl.threads[1].held;
    assert_eq!(h.len(), 1);
    assert_eq!(
        (h[0].lock.id, h[0].acquire_site, h[0].depth, h[0].since_ns),
        (10, s1, 2, 1_000_000)
    );
    assert!(dl.other_cycles.is_empty());
    assert!(!dl.is_self_deadlock());
    // Reported once, even across a signal retry of a member's wait.
    assert_eq!(d.detect_deadlock(2), None);
    d.wait_end(1, 20, false);
    assert_eq!(d.wait_begin(1, 20, false), None);
}

#[test]
fn three_and_five_thread_cycles_with_a_bystander() {
    for n in [3, 5] {
        let d = diag(DEADLOCK);
        start(&d, 99); // runs, holds nothing, never waits
        let dl = ring(&d, n);
        assert_eq!(dl.rule, DeadlockRule::Definite);
        assert_eq!(dl.threads.len() as u64, n);
        let mut expect: Vec<u64> = vec![n];
        expect.extend(1..n);
        assert_eq!(idents(&dl), expect);
        for (i, c) in dl.threads.iter().enumerate() {
            let next = &dl.threads[(i + 1) % dl.threads.len()];
            assert!(
                next.held.iter().any(|h| h.lock.id == c.waits_for.id),
                "cycle order"
            );
        }
    }
}

#[test]
fn cycle_reported_again_after_it_broke_and_reformed() {
    let d = diag(DEADLOCK);
    assert!(ring(&d, 2).threads.len() == 2);
    // Thread 2 gives up (Raise mode) and releases its lock; 1 gets it.
    d.wait_end(2, 101, false);
    d.released(2, 102);
    d.wait_end(1, 102, true);
    d.acquired(1, 102, UNKNOWN_SITE, true, 7);
    d.released(1, 102);
    d.acquired(2, 102, UNKNOWN_SITE, true, 0);
    assert_eq!(
        d.wait_begin(1, 102, false),
        None,
        "1 still holds 101 but 2 runs"
    );
    assert!(
        d.wait_begin(2, 101, false).is_some(),
        "a new deadlock is a new report"
    );
}

#[test]
fn rlock_and_mutex_mixed_cycle() {
    let d = diag(DEADLOCK);
    start(&d, 1);
    start(&d, 2);
    start(&d, 3);
    rlock(&d, 10);
    mutex(&d, 20, 2);
    d.acquired(1, 10, UNKNOWN_SITE, true, 0);
    d.entered(2, 20, UNKNOWN_SITE, true, 0);
    assert_eq!(d.wait_begin(2, 10, false), None);
    let dl = d.wait_begin(1, 20, false).expect("RLock + mutex-like Lock");
    assert_eq!(dl.rule, DeadlockRule::Definite);
    assert_eq!(idents(&dl), [1, 2]);
}

#[test]
fn join_cycle_through_sentinel() {
    let d = diag(DEADLOCK);
    start(&d, 1);
    start(&d, 2);
    start(&d, 3);
    mutex(&d, 10, 1);
    // Thread 2's sentinel: acquired by 2 at start, never released before exit.
    d.lock_created(50, LockKind::Lock, site("threading.py:1 in _set_sentinel"));
    d.mark_sentinel(50);
    d.acquired(2, 50, UNKNOWN_SITE, true, 0);
    d.entered(1, 10, UNKNOWN_SITE, true, 0);
    assert_eq!(d.wait_begin(1, 50, false), None, "1 joins 2");
    let dl = d
        .wait_begin(2, 10, false)
        .expect("2 waits for a lock 1 holds");
    assert_eq!(dl.rule, DeadlockRule::Definite);
    assert_eq!(idents(&dl), [2, 1]);
    assert_eq!(dl.threads[1].waits_for.id, 50);
}

#[test]
fn signal_pattern_is_not_a_deadlock() {
    // A acquires L (a plain lock used as a signal); C holds mutex M; A waits
    // for M; C waits for L: a cycle on paper, but B will release L.
    let d = diag(DEADLOCK | LOCK_ORDER);
    let (a, b, c) = (1, 2, 3);
    for t in [a, b, c] {
        start(&d, t);
    }
    d.lock_created(7, LockKind::Lock, site("sig.py:1 in main"));
    mutex(&d, 8, c);
    d.acquired(a, 7, UNKNOWN_SITE, true, 0);
    d.acquired(c, 8, UNKNOWN_SITE, true, 0);
    assert_eq!(d.wait_begin(a, 8, false), None);
    assert_eq!(d.wait_begin(c, 7, false), None, "B runs and may release L");
    assert!(
        matches!(d.wait_chains()[0].end, ChainEnd::Cycle { .. }),
        "still visible to the watchdog"
    );
    d.released(b, 7);
    d.wait_end(c, 7, true);
    assert_eq!(d.acquired(c, 7, UNKNOWN_SITE, true, 10), None);
    // L is now known signal-like: same picture again, still nothing.
    d.released(c, 8);
    d.wait_end(a, 8, true);
    d.acquired(a, 8, UNKNOWN_SITE, true, 0);
    d.released(a, 8);
    d.acquired(c, 8, UNKNOWN_SITE, true, 0);
    assert_eq!(d.wait_begin(a, 8, false), None);
    assert_eq!(
        d.wait_begin(c, 7, false),
        None,
        "held by C itself now: self-wait, B runs"
    );
    assert!(d.leaked_at_exit().is_empty());
}

#[test]
fn condition_pattern_is_silent() {
    // threading.Condition(RLock) wait/notify, with lock order on.
    let d = diag(ALL);
    let (waiter_t, notifier_t) = (1, 2);
    start(&d, waiter_t);
    start(&d, notifier_t);
    let cond = 10;
    d.lock_created(cond, LockKind::RLock, site("app.py:1 in <module>"));
    for round in 0..3 {
        let waiter = 100 + round;
        let timed_out = round == 2;
        d.lock_created(waiter, LockKind::Lock, site("threading.py:325 in wait"));
        assert_eq!(
            d.acquired(waiter_t, cond, site("app.py:5 in consume"), true, 0),
            None
        );
        assert_eq!(
            d.acquired(waiter_t, waiter, site("threading.py:326 in wait"), true, 0),
            None
        );
        d.release_all(waiter_t, cond);
        assert_eq!(
            d.wait_begin(waiter_t, waiter, timed_out),
            None,
            "the notifier runs"
        );
        if timed_out {
            d.wait_end(waiter_t, waiter, false);
        } else {
            assert_eq!(
                d.acquired(notifier_t, cond, site("app.py:9 in produce"), true, 0),
                None
            );
            d.released(notifier_t, waiter); // notify
            d.released(notifier_t, cond);
            d.wait_end(waiter_t, waiter, true);
            assert_eq!(
                d.acquired(waiter_t, waiter, site("threading.py:327 in wait"), true, 0),
                None
            );
        }
        // _acquire_restore while still holding the waiter lock.
        assert_eq!(
            d.acquired(waiter_t, cond, site("threading.py:335 in wait"), true, 0),
            None
        );
        d.set_rlock_depth(cond, 1);
        d.released(waiter_t, cond);
        d.lock_destroyed(waiter); // dropped while held: not a leak
    }
    assert!(d.thread_exited(waiter_t).is_empty());
    assert!(d.leaked_at_exit().is_empty());
}

#[test]
fn condition_wait_zero_timeout_is_silent() {
    // Condition.wait(0): waiter.acquire(False) fails on the waiter lock the
    // thread holds, then _acquire_restore takes the condition lock.
    let d = diag(LOCK_ORDER | DEADLOCK);
    start(&d, 1);
    let cond = 10;
    d.lock_created(cond, LockKind::Lock, site("q.py:1 in Queue.__init__"));
    for waiter in [100, 101] {
        d.lock_created(waiter, LockKind::Lock, site("threading.py:325 in wait"));
        assert_eq!(d.acquired(1, cond, UNKNOWN_SITE, true, 0), None);
        assert_eq!(d.acquired(1, waiter, UNKNOWN_SITE, true, 0), None);
        d.released(1, cond);
        d.acquire_failed(1, waiter);
        assert_eq!(
            d.acquired(1, cond, UNKNOWN_SITE, true, 0),
            None,
            "waiter {waiter}"
        );
        d.released(1, cond);
        d.lock_destroyed(waiter);
    }
    // Without the hook the same sequence would look like an inversion.
    let d = diag(LOCK_ORDER);
    d.lock_created(cond, LockKind::Lock, site("q.py:1 in Queue.__init__"));
    d.lock_created(100, LockKind::Lock, site("threading.py:325 in wait"));
    d.acquired(1, cond, UNKNOWN_SITE, true, 0);
    d.acquired(1, 100, UNKNOWN_SITE, true, 0);
    d.released(1, cond);
    assert!(d.acquired(1, cond, UNKNOWN_SITE, true, 0).is_some());
}

#[test]
fn self_deadlock_only_when_everyone_is_blocked() {
    let d = diag(DEADLOCK);
    start(&d, 1);
    start(&d, 2);
    mutex(&d, 10, 1);
    d.acquired(1, 10, site("self.py:3 in f"), true, 0);
    assert_eq!(
        d.wait_begin(1, 10, false),
        None,
        "thread 2 could release it"
    );
    d.wait_end(1, 10, false);
    // Thread 2 blocks on the same lock (chain 2 -> 1 -> 1), then 1 retries.
    assert_eq!(d.wait_begin(2, 10, false), None);
    let dl = d
        .wait_begin(1, 10, false)
        .expect("nobody left to release it");
    assert_eq!(dl.rule, DeadlockRule::AllBlocked);
    assert!(dl.is_self_deadlock());
    assert_eq!(idents(&dl), [1]);
    assert_eq!(dl.threads[0].held[0].acquire_site, site("self.py:3 in f"));
}

#[test]
fn plain_acquire_cycle_reported_when_all_block() {
    // a.acquire(); b.acquire()  /  b.acquire(); a.acquire(), first time,
    // while main still runs: a plain hold may be released by main.
    let d = diag(DEADLOCK);
    for t in [1, 2, 3] {
        start(&d, t);
    }
    d.lock_created(10, LockKind::Lock, site("demo.py:1 in <module>"));
    d.lock_created(20, LockKind::Lock, site("demo.py:2 in <module>"));
    d.lock_created(30, LockKind::Lock, site("threading.py:1 in _set_sentinel"));
    d.mark_sentinel(30);
    d.acquired(1, 30, UNKNOWN_SITE, true, 0);
    d.acquired(1, 10, UNKNOWN_SITE, true, 0);
    d.acquired(2, 20, UNKNOWN_SITE, true, 0);
    assert_eq!(d.wait_begin(1, 20, false), None);
    assert_eq!(
        d.wait_begin(2, 10, false),
        None,
        "plain holds: main (3) may release them"
    );
    let dl = d
        .wait_begin(3, 30, false)
        .expect("main joins: everyone blocked");
    assert_eq!(dl.rule, DeadlockRule::AllBlocked);
    assert_eq!(
        dl.detected_by, 2,
        "the error goes to the cycle's last waiter, not the joiner"
    );
    let mut ids = idents(&dl);
    ids.sort_unstable();
    assert_eq!(ids, [1, 2], "the cycle, not the joiner");
    assert_eq!(d.detect_deadlock(3), None, "once");
}

#[test]
fn first_use_with_cycle_reported_at_once_despite_busy_bystanders() {
    // with a: b.acquire()  /  with b: a.acquire(), cold locks, while main
    // polls join(timeout) and a heartbeat thread runs.
    for bystander_waits_timed in [false, true] {
        let d = diag(DEADLOCK);
        for t in [1, 2, 3, 4] {
            start(&d, t);
        }
        d.lock_created(10, LockKind::Lock, site("demo.py:1 in <module>"));
        d.lock_created(20, LockKind::Lock, site("demo.py:2 in <module>"));
        d.lock_created(30, LockKind::Lock, site("threading.py:1 in _set_sentinel"));
        d.mark_sentinel(30);
        d.acquired(1, 30, UNKNOWN_SITE, true, 0);
        if bystander_waits_timed {
            assert_eq!(d.wait_begin(3, 30, true), None, "main: join(0.2)");
        }
        d.entered(1, 10, UNKNOWN_SITE, true, 0);
        d.entered(2, 20, UNKNOWN_SITE, true, 0);
        assert_eq!(d.wait_begin(1, 20, false), None);
        let dl = d
            .wait_begin(2, 10, false)
            .expect("owned holds: nobody else can release them");
        assert_eq!(dl.rule, DeadlockRule::Definite);
        assert_eq!(dl.detected_by, 2);
        assert_eq!(idents(&dl), [2, 1]);
    }
}

#[test]
fn self_deadlock_through_with_is_reported_at_once() {
    let d = diag(DEADLOCK);
    start(&d, 1);
    start(&d, 2); // a heartbeat: runs, never waits
    d.lock_created(10, LockKind::Lock, site("self.py:1 in <module>"));
    d.entered(1, 10, site("self.py:3 in f"), true, 0);
    let dl = d.wait_begin(1, 10, false).expect("with a: a.acquire()");
    assert_eq!(dl.rule, DeadlockRule::Definite);
    assert!(dl.is_self_deadlock());
    assert_eq!(dl.detected_by, 1);
}

#[test]
fn lock_released_once_by_its_acquirer_is_no_evidence() {
    // The readers-writers reproduction: res is taken and released
    // by main once, then taken by main with acquire() and released by a
    // timer thread (sleeping: a running thread to diagnostics).
    let d = diag(DEADLOCK);
    let (main, writer, timer) = (1, 2, 3);
    for t in [main, writer, timer] {
        start(&d, t);
    }
    d.lock_created(10, LockKind::Lock, site("rw.py:2 in <module>")); // gate
    d.lock_created(20, LockKind::Lock, site("rw.py:2 in <module>")); // res
    for l in [10, 20] {
        d.acquired(main, l, UNKNOWN_SITE, true, 0);
        d.released(main, l);
    }
    d.acquired(main, 20, UNKNOWN_SITE, true, 0);
    d.entered(writer, 10, UNKNOWN_SITE, true, 0);
    assert_eq!(d.wait_begin(writer, 20, false), None);
    assert_eq!(
        d.wait_begin(main, 10, false),
        None,
        "res is a plain hold and the timer still runs"
    );
    // The timer releases res: the writer proceeds, no report ever.
    d.released(timer, 20);
    d.wait_end(writer, 20, true);
    d.acquired(writer, 20, UNKNOWN_SITE, true, 1);
    d.released(writer, 20);
    d.released(writer, 10);
    d.wait_end(main, 10, true);
    d.entered(main, 10, UNKNOWN_SITE, true, 1);
    assert_eq!(d.detect_deadlock(main), None);
}

#[test]
fn posted_deadlock_is_taken_only_while_its_wait_lasts() {
    let d = diag(DEADLOCK);
    for t in [1, 2, 3] {
        start(&d, t);
    }
    d.lock_created(10, LockKind::Lock, UNKNOWN_SITE);
    d.lock_created(20, LockKind::Lock, UNKNOWN_SITE);
    d.lock_created(30, LockKind::Lock, site("threading.py:1 in _set_sentinel"));
    d.mark_sentinel(30);
    d.acquired(1, 30, UNKNOWN_SITE, true, 0);
    d.acquired(1, 10, UNKNOWN_SITE, true, 0);
    d.acquired(2, 20, UNKNOWN_SITE, true, 0);
    assert_eq!(d.wait_begin(1, 20, false), None);
    assert_eq!(d.wait_begin(2, 10, false), None);
    let dl = d.wait_begin(3, 30, false).expect("all blocked");
    assert_eq!(dl.detected_by, 2);
    d.post_deadlock(dl.clone());
    assert_eq!(d.take_deadlock(3), None, "not for the joiner");
    assert_eq!(d.take_deadlock(2), Some(dl.clone()));
    assert_eq!(d.take_deadlock(2), None, "taken once");
    d.post_deadlock(dl);
    d.wait_end(2, 10, false);
    d.wait_begin(2, 20, false);
    assert_eq!(
        d.take_deadlock(2),
        None,
        "stale: 2 waits for another lock now"
    );
}

#[test]
fn timed_waits_not_reported_by_default() {
    let d = diag(DEADLOCK);
    start(&d, 1);
    start(&d, 2);
    rlock(&d, 10);
    rlock(&d, 20);
    d.acquired(1, 10, UNKNOWN_SITE, true, 0);
    d.acquired(2, 20, UNKNOWN_SITE, true, 0);
    assert_eq!(d.wait_begin(1, 20, true), None);
    assert_eq!(
        d.wait_begin(2, 10, false),
        None,
        "1's timeout will break it"
    );
    d.set_report_timed(true);
    assert!(d.detect_deadlock(2).is_some());
    // All-blocked rule: a timed bystander can still release.
    let d = diag(DEADLOCK);
    start(&d, 1);
    start(&d, 2);
    mutex(&d, 10, 1);
    d.lock_created(30, LockKind::Lock, site("x.py:1 in y"));
    d.acquired(2, 30, UNKNOWN_SITE, true, 0);
    assert_eq!(d.wait_begin(2, 30, true), None);
    d.acquired(1, 10, UNKNOWN_SITE, true, 0);
    assert_eq!(d.wait_begin(1, 10, false), None, "2 is in a timed wait");
}

#[test]
fn deadlock_flag_off_means_no_detection() {
    let d = diag(HANG);
    start(&d, 1);
    start(&d, 2);
    rlock(&d, 10);
    rlock(&d, 20);
    d.acquired(1, 10, UNKNOWN_SITE, true, 0);
    d.acquired(2, 20, UNKNOWN_SITE, true, 0);
    assert_eq!(d.wait_begin(1, 20, false), None);
    assert_eq!(d.wait_begin(2, 10, false), None);
    assert_eq!(d.wait_chains().len(), 2, "waits are still recorded");
}

fn inversion_setup(d: &Diagnostics) -> (LockId, LockId) {
    start(d, 1);
    start(d, 2);
    d.lock_created(1, LockKind::Lock, site("bank.py:1 in <module>"));
    d.lock_created(2, LockKind::RLock, site("bank.py:2 in <module>"));
    (1, 2)
}

#[test]
fn classic_inversion_reported_once_with_sites() {
    let d = diag(LOCK_ORDER);
    let (a, b) = inversion_setup(&d);
    let (s1, s2, s3, s4) = (
        site("ab.py:1 in f"),
        site("ab.py:2 in f"),
        site("ab.py:3 in g"),
        site("ab.py:4 in g"),
    );
    assert_eq!(d.acquired(1, a, s1, true, 0), None);
    assert_eq!(d.acquired(1, b, s2, true, 0), None);
    d.released(1, b);
    d.released(1, a);
    assert_eq!(d.acquired(2, b, s3, true, 0), None);
    let inv = d.acquired(2, a, s4, true, 0).expect("B -> A after A -> B");
    assert!(!inv.same_class);
    assert_eq!(inv.thread, 2);
    let ca = LockClass::Site(site("bank.py:1 in <module>"));
    let cb = LockClass::Site(site("bank.py:2 in <module>"));
    assert_eq!(inv.edges.len(), 2);
    let e0 = &inv.edges[0];
    assert_eq!(
        (
            e0.from,
            e0.to,
            e0.held_site,
            e0.acquire_site,
            e0.thread.ident
        ),
        (ca, cb, s1, s2, 1)
    );
    assert_eq!(e0.thread.name.as_deref(), Some("T1"));
    let e1 = &inv.edges[1];
    assert_eq!(
        (
            e1.from,
            e1.to,
            e1.held_site,
            e1.acquire_site,
            e1.thread.ident
        ),
        (cb, ca, s3, s4, 2)
    );
    d.released(2, a);
    d.released(2, b);
    // Same orders again: nothing new.
    d.acquired(2, b, s3, true, 0);
    assert_eq!(d.acquired(2, a, s4, true, 0), None);
    d.released(2, a);
    d.released(2, b);
    d.acquired(1, a, s1, true, 0);
    assert_eq!(d.acquired(1, b, s2, true, 0), None);
}

#[test]
fn non_blocking_acquire_adds_no_edge() {
    let d = diag(LOCK_ORDER);
    let (a, b) = inversion_setup(&d);
    d.acquired(1, a, UNKNOWN_SITE, true, 0);
    assert_eq!(d.acquired(1, b, UNKNOWN_SITE, false, 0), None); // try-acquire
    d.released(1, b);
    d.released(1, a);
    d.acquired(2, b, UNKNOWN_SITE, true, 0);
    assert_eq!(
        d.acquired(2, a, UNKNOWN_SITE, true, 0),
        None,
        "no A -> B edge exists"
    );
    d.released(2, a);
    d.released(2, b);
    d.acquired(1, a, UNKNOWN_SITE, true, 0);
    assert!(
        d.acquired(1, b, UNKNOWN_SITE, true, 0).is_some(),
        "now A -> B closes it"
    );
}

#[test]
fn lock_order_flag_off_records_nothing() {
    let d = diag(DEADLOCK);
    let (a, b) = inversion_setup(&d);
    d.acquired(1, a, UNKNOWN_SITE, true, 0);
    d.acquired(1, b, UNKNOWN_SITE, true, 0);
    d.released(1, b);
    d.released(1, a);
    d.set_flags(DEADLOCK | LOCK_ORDER);
    d.acquired(2, b, UNKNOWN_SITE, true, 0);
    assert_eq!(d.acquired(2, a, UNKNOWN_SITE, true, 0), None);
}

#[test]
fn same_class_ring_reported() {
    // Five forks made at one site, each philosopher takes fork i then fork
    // i+1: the fifth closes a ring of five objects of one class.
    let d = diag(LOCK_ORDER);
    let fork = site("dine.py:5 in <listcomp>");
    for id in 1..=5 {
        d.lock_created(id, LockKind::Lock, fork);
    }
    let eat = |t: ThreadId, first: LockId, second: LockId| {
        start(&d, t);
        assert_eq!(
            d.acquired(t, first, site("dine.py:9 in eat"), true, 0),
            None
        );
        let r = d.acquired(t, second, site("dine.py:10 in eat"), true, 0);
        d.released(t, second);
        d.released(t, first);
        r
    };
    for i in 1..=4 {
        assert_eq!(eat(i, i, i + 1), None, "a chain, no cycle yet");
    }
    let inv = eat(5, 5, 1).expect("5 -> 1 closes 1 -> 2 -> 3 -> 4 -> 5");
    assert!(inv.same_class);
    let ring: Vec<(LockId, LockId)> = inv.edges.iter().map(|e| (e.from_lock, e.to_lock)).collect();
    assert_eq!(ring, [(1, 2), (2, 3), (3, 4), (4, 5), (5, 1)]);
    assert_eq!(eat(5, 5, 1), None, "once");
    // A shortcut later closes a smaller cycle: reported on its own.
    let inv = eat(6, 3, 1).expect("3 -> 1 closes 1 -> 2 -> 3");
    assert_eq!(inv.edges.len(), 3);
}

#[test]
fn same_class_transfer_reported() {
    let d = diag(LOCK_ORDER);
    start(&d, 1);
    start(&d, 2);
    let acct = site("bank.py:10 in Account.__init__");
    for id in [1, 2, 3, 4] {
        d.lock_created(id, LockKind::Lock, acct);
    }
    let (tx1, tx2) = (
        site("bank.py:20 in transfer"),
        site("bank.py:21 in transfer"),
    );
    let transfer = |t: ThreadId, from: LockId, to: LockId| {
        assert_eq!(d.acquired(t, from, tx1, true, 0), None);
        let r = d.acquired(t, to, tx2, true, 0);
        d.released(t, to);
        d.released(t, from);
        r
    };
    assert_eq!(transfer(1, 1, 2), None);
    assert_eq!(transfer(1, 1, 2), None);
    assert_eq!(transfer(1, 3, 4), None, "other objects, consistent order");
    assert_eq!(transfer(2, 1, 3), None);
    let inv = transfer(2, 2, 1).expect("transfer(b, a) after transfer(a, b)");
    assert!(inv.same_class);
    assert_eq!(inv.edges.len(), 2);
    assert_eq!(
        (
            inv.edges[0].from_lock,
            inv.edges[0].to_lock,
            inv.edges[0].thread.ident
        ),
        (1, 2, 1)
    );
    assert_eq!(
        (
            inv.edges[1].from_lock,
            inv.edges[1].to_lock,
            inv.edges[1].thread.ident
        ),
        (2, 1, 2)
    );
    assert_eq!(inv.edges[0].from, LockClass::Site(acct));
    assert_eq!(
        (inv.edges[1].held_site, inv.edges[1].acquire_site),
        (tx1, tx2)
    );
    assert_eq!(transfer(2, 2, 1), None, "once per pair");
    assert_eq!(transfer(1, 1, 2), None);
    // A destroyed object's pairs go; a reused id starts fresh.
    d.lock_destroyed(2);
    d.lock_created(2, LockKind::Lock, acct);
    assert_eq!(transfer(2, 2, 1), None);
    assert!(transfer(1, 1, 2).is_some());
}

#[test]
fn three_class_cycle_and_smallest_cycle() {
    let d = diag(LOCK_ORDER);
    for t in 1..=3 {
        start(&d, t);
    }
    let class: Vec<SiteId> = (0..4)
        .map(|i| site(&format!("cyc.py:{i} in <module>")))
        .collect();
    for (i, &s) in class.iter().enumerate() {
        d.lock_created(i as LockId + 1, LockKind::Lock, s);
    }
    let nest = |t: ThreadId, x: LockId, y: LockId| {
        d.acquired(t, x, UNKNOWN_SITE, true, 0);
        let r = d.acquired(t, y, UNKNOWN_SITE, true, 0);
        d.released(t, y);
        d.released(t, x);
        r
    };
    // 1 -> 2 -> 3 -> 1 over three threads.
    assert_eq!(nest(1, 1, 2), None);
    assert_eq!(nest(2, 2, 3), None);
    let inv = nest(3, 3, 1).expect("3-cycle");
    let path: Vec<(LockClass, LockClass)> = inv.edges.iter().map(|e| (e.from, e.to)).collect();
    let c = |i: usize| LockClass::Site(class[i]);
    assert_eq!(
        path,
        [(c(0), c(1)), (c(1), c(2)), (c(2), c(0))],
        "ends with the closing edge"
    );
    // Smallest: with 1 -> 2 -> 3 -> 4 and 2 -> 4, the edge 4 -> 1 closes
    // 1 -> 2 -> 4 -> 1 (3 edges) and 1 -> 2 -> 3 -> 4 -> 1 (4 edges).
    let d = diag(LOCK_ORDER);
    for (i, &s) in class.iter().enumerate() {
        d.lock_created(i as LockId + 1, LockKind::Lock, s);
    }
    let nest = |x: LockId, y: LockId| {
        d.acquired(1, x, UNKNOWN_SITE, true, 0);
        let r = d.acquired(1, y, UNKNOWN_SITE, true, 0);
        d.released(1, y);
        d.released(1, x);
        r
    };
    assert_eq!(nest(1, 2), None);
    assert_eq!(nest(2, 3), None);
    assert_eq!(nest(3, 4), None);
    assert_eq!(nest(2, 4), None);
    let inv = nest(4, 1).expect("closes two cycles");
    let path: Vec<(LockClass, LockClass)> = inv.edges.iter().map(|e| (e.from, e.to)).collect();
    assert_eq!(path, [(c(0), c(1)), (c(1), c(3)), (c(3), c(0))]);
    assert_eq!(nest(4, 1), None, "never twice");
}

#[test]
fn rlock_reentry_is_not_a_new_hold() {
    let d = diag(PROFILE | LOCK_ORDER);
    start(&d, 1);
    rlock(&d, 10);
    let s = site("re.py:1 in f");
    d.acquired(1, 10, s, true, 0);
    advance(10);
    assert_eq!(
        d.acquired(1, 10, site("re.py:2 in g"), true, 0),
        None,
        "no self-edge"
    );
    let snap = d.snapshot();
    let held = &snap.threads[0].held;
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].depth, held[0].acquire_site), (2, s));
    d.released(1, 10);
    assert_eq!(d.snapshot().threads[0].held[0].depth, 1);
    advance(10);
    d.released(1, 10);
    assert!(d.snapshot().threads[0].held.is_empty());
    let st = d.stats();
    assert_eq!(
        (st[0].acquisitions, st[0].holds, st[0].total_hold_ns),
        (1, 1, 20)
    );
    // release_save / acquire_restore
    d.acquired(1, 10, s, true, 0);
    d.acquired(1, 10, s, true, 0);
    d.acquired(1, 10, s, true, 0);
    d.release_all(1, 10);
    assert!(d.snapshot().threads[0].held.is_empty());
    d.acquired(1, 10, s, true, 0);
    d.set_rlock_depth(10, 3);
    assert_eq!(d.snapshot().threads[0].held[0].depth, 3);
}

#[test]
fn plain_lock_released_by_another_thread() {
    let d = diag(PROFILE);
    start(&d, 1);
    start(&d, 2);
    d.lock_created(10, LockKind::Lock, site("p.py:1 in f"));
    d.acquired(1, 10, UNKNOWN_SITE, true, 0);
    advance(100);
    d.released(2, 10);
    let snap = d.snapshot();
    assert!(snap.threads.iter().all(|t| t.held.is_empty()));
    assert_eq!(d.stats()[0].total_hold_ns, 100);
}

#[test]
fn stats_numbers() {
    let d = diag(PROFILE);
    start(&d, 1);
    start(&d, 2);
    let (ca, cb) = (site("st.py:1 in <module>"), site("st.py:2 in <module>"));
    let (x, y, z) = (
        site("st.py:10 in x"),
        site("st.py:11 in y"),
        site("st.py:12 in z"),
    );
    d.lock_created(1, LockKind::Lock, ca);
    d.lock_created(2, LockKind::RLock, cb);
    let hold = |t: ThreadId, l: LockId, s: SiteId, waited: u64, held: u64| {
        d.acquired(t, l, s, true, waited);
        advance(held);
        d.released(t, l);
    };
    hold(1, 1, x, 0, 10);
    hold(2, 1, y, 500, 20);
    hold(1, 1, y, 300, 30);
    hold(2, 1, z, 0, 40);
    hold(1, 2, x, 50, 5);
    let st = d.stats();
    assert_eq!(st.len(), 2);
    let a = &st[0];
    assert_eq!(a.class, LockClass::Site(ca), "most wait first");
    assert_eq!(a.kind, LockKind::Lock);
    assert_eq!(
        (a.acquisitions, a.contended, a.total_wait_ns, a.max_wait_ns),
        (4, 2, 800, 500)
    );
    assert_eq!((a.holds, a.total_hold_ns, a.max_hold_ns), (4, 100, 40));
    // Sites: only the acquisitions that waited.
    let sites: Vec<(SiteId, u64, u64)> = a
        .top_sites
        .iter()
        .map(|s| (s.site, s.contended, s.total_wait_ns))
        .collect();
    assert_eq!(sites, [(y, 2, 800)]);
    assert_eq!(a.top_sites[0].max_wait_ns, 500);
    assert_eq!(a.top_sites[0].contended, 2);
    let b = &st[1];
    assert_eq!(
        (
            b.kind,
            b.acquisitions,
            b.contended,
            b.total_wait_ns,
            b.max_hold_ns
        ),
        (LockKind::RLock, 1, 1, 50, 5)
    );
    d.reset_stats();
    assert!(d.stats().is_empty());
    // PROFILE off: nothing counted.
    d.set_flags(0);
    hold(1, 1, x, 5, 5);
    assert!(d.stats().is_empty());
}

#[test]
fn top_sites_are_bounded() {
    let d = diag(PROFILE);
    d.lock_created(1, LockKind::Lock, site("many.py:1 in <module>"));
    for i in 0..(TOP_SITES as u64 + 3) {
        d.acquired(
            1,
            1,
            site(&format!("many.py:{} in f", i + 10)),
            true,
            i * 10,
        );
        d.released(1, 1);
    }
    let st = d.stats();
    assert_eq!(st[0].top_sites.len(), TOP_SITES);
    assert_eq!(
        st[0].top_sites[0].total_wait_ns,
        (TOP_SITES as u64 + 2) * 10
    );
}

#[test]
fn leaks() {
    let d = diag(0);
    start(&d, 1);
    start(&d, 2);
    rlock(&d, 10);
    d.lock_created(20, LockKind::Lock, site("leak.py:2 in <module>"));
    d.lock_created(30, LockKind::Lock, site("leak.py:3 in <module>"));
    d.lock_created(40, LockKind::Lock, site("leak.py:4 in <module>"));
    d.lock_created(50, LockKind::Lock, site("threading.py:1 in _set_sentinel"));
    d.mark_sentinel(50);
    let s = site("leak.py:9 in worker");
    d.acquired(1, 50, UNKNOWN_SITE, true, 0);
    d.acquired(1, 10, s, true, 0);
    d.acquired(1, 10, s, true, 0);
    d.acquired(1, 20, s, true, 0);
    d.acquired(1, 30, s, true, 0);
    d.acquired(1, 40, s, true, 0);
    advance(7);
    let leaks = d.thread_exited(1);
    assert_eq!(leaks.len(), 1, "only the RLock at once");
    let l = &leaks[0];
    assert_eq!(
        (l.lock.id, l.lock.kind, l.acquire_site, l.depth),
        (10, LockKind::RLock, s, 2)
    );
    assert_eq!(
        (
            l.thread.ident,
            l.thread.name.as_deref(),
            l.since_ns,
            l.exited_ns
        ),
        (1, Some("T1"), 1_000_000, 1_000_007)
    );
    let ids = |v: Vec<Leak>| v.iter().map(|l| l.lock.id).collect::<Vec<_>>();
    assert_eq!(ids(d.leaked_at_exit()), [20, 30, 40], "sentinel excluded");
    d.released(2, 30); // released later by another thread: not a leak
    d.lock_destroyed(40);
    assert_eq!(ids(d.leaked_at_exit()), [20]);
    // Somebody waiting on the orphaned lock sees who left it.
    d.wait_begin(2, 20, false);
    let chains = d.wait_chains();
    assert_eq!(chains[0].end, ChainEnd::HolderExited(1));
    assert_eq!(
        d.snapshot().threads[0]
            .waiting
            .as_ref()
            .unwrap()
            .holder_exited,
        Some(1)
    );
    assert_eq!(d.thread_exited(1), vec![], "unknown thread: nothing");
    assert_eq!(d.snapshot().threads.len(), 1);
}

#[test]
fn snapshot_chains_and_long_waits() {
    let d = diag(HANG);
    for t in 1..=4 {
        start(&d, t);
    }
    for l in [10, 20, 30] {
        d.lock_created(l, LockKind::Lock, site(&format!("h.py:{l} in <module>")));
    }
    d.acquired(2, 10, UNKNOWN_SITE, true, 0);
    d.acquired(3, 20, UNKNOWN_SITE, true, 0);
    d.wait_begin(1, 10, false); // 1 -> 2 -> 3 (running)
    advance(100);
    d.wait_begin(2, 20, true);
    advance(100);
    let snap = d.snapshot();
    assert_eq!(snap.taken_ns, now());
    assert_eq!(
        snap.threads
            .iter()
            .map(|t| t.thread.ident)
            .collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    let w1 = snap.threads[0].waiting.as_ref().unwrap();
    assert_eq!(
        (
            w1.lock.id,
            w1.holder.as_ref().map(|h| h.ident),
            w1.waited_ns,
            w1.timed
        ),
        (10, Some(2), 200, false)
    );
    assert!(snap.threads[1].waiting.as_ref().unwrap().timed);
    assert_eq!(snap.threads[1].held[0].lock.id, 10);
    let chains = d.wait_chains();
    assert_eq!(chains.len(), 2);
    assert_eq!(
        chains[0]
            .links
            .iter()
            .map(|l| l.thread.ident)
            .collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(
        chains[0].end,
        ChainEnd::Running(ThreadRef {
            ident: 3,
            native: 1003,
            name: Some("T3".into())
        })
    );
    // Long waits, and a stable episode across a signal retry.
    let lw = d.longest_waits(150);
    assert_eq!(lw.len(), 1);
    assert_eq!(lw[0].thread.ident, 1);
    let ep = lw[0].wait.episode;
    d.wait_end(1, 10, false);
    d.wait_begin(1, 10, false);
    let lw = d.longest_waits(150);
    assert_eq!((lw[0].wait.episode, lw[0].wait.waited_ns), (ep, 200));
    assert_eq!(d.longest_waits(0).len(), 2);
    // A retry long after the previous wait gave up is a new episode.
    d.wait_end(2, 20, false);
    advance(2_000_000_000);
    d.wait_begin(2, 20, true);
    let lw = d.longest_waits(0);
    let w2 = lw.iter().find(|w| w.thread.ident == 2).unwrap();
    assert_eq!(w2.wait.waited_ns, 0);
    let ep2 = w2.wait.episode;
    d.wait_end(2, 20, false);
    d.wait_begin(2, 20, true);
    assert_eq!(
        d.longest_waits(0)
            .iter()
            .find(|w| w.thread.ident == 2)
            .unwrap()
            .wait
            .episode,
        ep2
    );
    // A new acquire ends the episode.
    d.wait_end(1, 10, true);
    d.released(2, 10);
    d.acquired(1, 10, UNKNOWN_SITE, true, 0);
    d.released(1, 10);
    d.acquired(4, 10, UNKNOWN_SITE, true, 0);
    d.wait_begin(1, 10, false);
    let lw = d.longest_waits(0);
    let w = lw.iter().find(|w| w.thread.ident == 1).unwrap();
    assert_ne!(w.wait.episode, ep);
    // Chain into a cycle from a tail: 1 -> 4 -> 3 -> 4.
    d.acquired(4, 30, UNKNOWN_SITE, true, 0);
    d.wait_begin(4, 20, false);
    d.wait_begin(3, 30, false);
    let chains = d.wait_chains();
    let c1 = &chains[0];
    assert_eq!(
        c1.links.iter().map(|l| l.thread.ident).collect::<Vec<_>>(),
        [1, 4, 3]
    );
    assert_eq!(c1.end, ChainEnd::Cycle { start: 1 });
    // A lock with no holder.
    d.released(9, 30);
    assert_eq!(
        d.wait_chains()
            .iter()
            .find(|c| c.links[0].thread.ident == 3)
            .unwrap()
            .end,
        ChainEnd::NoHolder
    );
}

#[test]
fn implicit_registration_and_ident_reuse() {
    let d = diag(DEADLOCK);
    d.acquired(7, 1, UNKNOWN_SITE, true, 0); // unknown thread and lock
    let snap = d.snapshot();
    assert_eq!(
        snap.threads[0].thread,
        ThreadRef {
            ident: 7,
            native: 0,
            name: None
        }
    );
    assert_eq!(snap.threads[0].held[0].lock.class(), LockClass::Object(1));
    d.thread_started(7, 77, Some("late".into()));
    let snap = d.snapshot();
    assert_eq!(snap.threads[0].thread.native, 77);
    assert_eq!(snap.threads[0].held.len(), 1, "upgrade keeps state");
    d.thread_named(7, "renamed");
    assert_eq!(
        d.snapshot().threads[0].thread.name.as_deref(),
        Some("renamed")
    );
    // Started again without an exit: the old thread is retired.
    d.thread_started(7, 78, None);
    let snap = d.snapshot();
    assert!(snap.threads[0].held.is_empty());
    assert_eq!(d.leaked_at_exit().len(), 1);
}

#[test]
fn reset_after_fork_keeps_only_the_survivor() {
    let d = diag(ALL);
    for t in 1..=3 {
        start(&d, t);
    }
    rlock(&d, 10);
    mutex(&d, 20, 2);
    d.acquired(1, 10, UNKNOWN_SITE, true, 0);
    d.entered(2, 20, UNKNOWN_SITE, true, 0);
    d.wait_begin(3, 20, false);
    d.reset_after_fork(1, 4242);
    let snap = d.snapshot();
    assert_eq!(snap.threads.len(), 1);
    assert_eq!(snap.threads[0].thread.native, 4242);
    assert_eq!(snap.threads[0].held[0].lock.id, 10);
    assert!(snap.threads[0].waiting.is_none());
    assert!(d.wait_chains().is_empty());
    assert!(d.stats().is_empty());
    assert!(d.timeline().is_empty());
    // The child's own life goes on: lock 20 is free for it, and with every
    // other thread gone a self-wait is a self-deadlock.
    d.acquired(1, 20, UNKNOWN_SITE, true, 0);
    assert!(d.wait_begin(1, 20, false).unwrap().is_self_deadlock());
}

#[test]
fn reset_keeps_the_present() {
    let d = diag(ALL);
    let (a, b) = inversion_setup(&d);
    d.acquired(1, a, UNKNOWN_SITE, true, 5);
    d.acquired(1, b, UNKNOWN_SITE, true, 0);
    d.reset();
    assert!(d.stats().is_empty());
    assert!(d.timeline().is_empty());
    assert_eq!(d.snapshot().threads[0].held.len(), 2);
    d.released(1, b);
    d.released(1, a);
    d.acquired(2, b, UNKNOWN_SITE, true, 0);
    assert_eq!(
        d.acquired(2, a, UNKNOWN_SITE, true, 0),
        None,
        "order graph forgotten"
    );
}

#[test]
fn timeline_records_only_with_trace_and_wraps() {
    let d = diag(DEADLOCK);
    d.set_timeline_capacity(8);
    start(&d, 1);
    d.lock_created(1, LockKind::RLock, site("tl.py:1 in <module>"));
    d.acquired(1, 1, UNKNOWN_SITE, true, 0);
    d.released(1, 1);
    assert!(d.timeline().is_empty());
    d.set_flags(TRACE);
    for _ in 0..5 {
        advance(1);
        d.acquired(1, 1, site("tl.py:5 in f"), true, 0);
        advance(1);
        d.released(1, 1);
    }
    let tl = d.timeline();
    assert_eq!(tl.len(), 8);
    assert_eq!(d.timeline_dropped(), 2);
    assert_eq!(tl[0].kind, EventKind::HoldBegin);
    assert_eq!(tl[7].kind, EventKind::HoldEnd);
    assert!(tl.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns));
    assert_eq!(
        (tl[0].tid, tl[0].lock, tl[0].lock_kind, tl[0].aux),
        (1001, 1, LockKind::RLock, site("tl.py:5 in f"))
    );
    assert_eq!(tl[0].site, site("tl.py:1 in <module>"));
}

#[test]
fn deadlock_and_inversion_markers_in_timeline() {
    let d = diag(ALL);
    let (a, b) = inversion_setup(&d);
    d.acquired(1, a, UNKNOWN_SITE, true, 0);
    d.acquired(1, b, UNKNOWN_SITE, true, 0);
    d.released(1, b);
    d.released(1, a);
    d.acquired(2, b, UNKNOWN_SITE, true, 0);
    assert!(d.acquired(2, a, UNKNOWN_SITE, true, 0).is_some());
    let kinds: Vec<EventKind> = d.timeline().iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&EventKind::Inversion));
    let d = diag(ALL);
    ring(&d, 2);
    let tl = d.timeline();
    assert_eq!(tl.last().unwrap().kind, EventKind::Deadlock);
    assert!(tl
        .iter()
        .any(|e| e.kind == EventKind::WaitBegin && e.aux == 0));
}

#[test]
fn flags_and_settings() {
    let d = diag(0);
    assert_eq!(d.flags(), 0);
    d.set_flags(u32::MAX);
    assert_eq!(d.flags(), ALL);
    assert_eq!(d.deadlock_mode(), DeadlockMode::Warn);
    d.set_deadlock_mode(DeadlockMode::Raise);
    assert_eq!(d.deadlock_mode(), DeadlockMode::Raise);
    assert!(!d.report_timed());
    assert_eq!(d.timeline_capacity(), DEFAULT_TIMELINE_CAPACITY);
    assert_eq!(DEFAULT_TIMELINE_CAPACITY, 1 << 20);
}

#[test]
fn diagnostics_is_thread_safe() {
    // Real threads hammering one instance (real clock): no panic, consistent end state.
    let d = std::sync::Arc::new(Diagnostics::new());
    d.set_flags(ALL);
    d.set_timeline_capacity(1024);
    d.lock_created(1, LockKind::Lock, site("mt.py:1 in <module>"));
    let hs: Vec<_> = (1..=4u64)
        .map(|t| {
            let d = d.clone();
            std::thread::spawn(move || {
                d.thread_started(t, t, None);
                for i in 0..2000u64 {
                    let l = 100 + (i % 7);
                    d.acquired(t, l, UNKNOWN_SITE, true, i % 3);
                    d.released(t, l);
                }
                d.thread_exited(t)
            })
        })
        .collect();
    for h in hs {
        assert!(h.join().unwrap().is_empty());
    }
    assert!(d.snapshot().threads.is_empty());
    assert_eq!(d.stats().iter().map(|s| s.acquisitions).sum::<u64>(), 8000);
}

#[test]
fn waiter_whose_lock_was_released_is_not_blocked() {
    // Condition.wait's waiter pattern: main's waiter lock was just released
    // (notify) but main has not woken yet when thread 2 starts to wait on its
    // own waiter lock: main is not blocked, so no "all blocked" report.
    let d = diag(DEADLOCK);
    start(&d, 1);
    start(&d, 2);
    d.acquired(1, 10, UNKNOWN_SITE, false, 0);
    assert_eq!(d.wait_begin(1, 10, false), None);
    d.released(2, 10); // notify by thread 2; thread 1 still asleep
    d.acquired(2, 20, UNKNOWN_SITE, false, 0);
    assert_eq!(d.wait_begin(2, 20, false), None, "thread 1 is about to run");
    // Once thread 1 is really blocked again, the self-wait of 2 is reported.
    d.wait_end(1, 10, true);
    d.acquired(1, 10, UNKNOWN_SITE, true, 0);
    d.acquired(1, 30, UNKNOWN_SITE, false, 0);
    let dl = d
        .wait_begin(1, 30, false)
        .expect("both wait on locks they hold");
    assert_eq!(dl.rule, DeadlockRule::AllBlocked);
}

#[test]
fn no_inversion_through_a_lock_later_released_by_another_thread() {
    // test_threading's test_tstate_lock: main takes `started` then `finish`;
    // a child releases `started` (a signal), main takes `started` again while
    // holding `finish`.
    let d = diag(LOCK_ORDER);
    start(&d, 1);
    start(&d, 2);
    d.lock_created(10, LockKind::Lock, site("t.py:1 in started"));
    d.lock_created(20, LockKind::Lock, site("t.py:2 in finish"));
    d.acquired(1, 10, UNKNOWN_SITE, true, 0);
    assert_eq!(d.acquired(1, 20, UNKNOWN_SITE, true, 0), None);
    d.released(2, 10);
    assert_eq!(
        d.acquired(1, 10, UNKNOWN_SITE, true, 0),
        None,
        "started is a signal lock"
    );
}

#[test]
fn leaked_at_exit_skips_handoff_locks() {
    let d = diag(0);
    start(&d, 1);
    start(&d, 2);
    start(&d, 3);
    for id in [60, 61, 62] {
        d.lock_created(
            id,
            LockKind::Lock,
            site(&format!("handoff.py:{id} in <module>")),
        );
    }
    // 60: used as a signal before (acquired by 2, released by 1).
    d.acquired(2, 60, UNKNOWN_SITE, true, 0);
    d.released(1, 60);
    d.acquired(1, 60, UNKNOWN_SITE, true, 0);
    // 61: a Condition-style waiter lock: its holder blocked on it (timed out).
    d.acquired(1, 61, UNKNOWN_SITE, true, 0);
    d.wait_begin(1, 61, true);
    d.wait_end(1, 61, false);
    // 62: a plain mutex held at exit.
    d.acquired(1, 62, UNKNOWN_SITE, true, 0);
    assert!(d.thread_exited(1).is_empty());
    let ids: Vec<LockId> = d.leaked_at_exit().iter().map(|l| l.lock.id).collect();
    assert_eq!(ids, [62]);
    // Acquired by 3, released by 2 after 3 exited: a handoff, no leak.
    d.lock_created(63, LockKind::Lock, site("handoff.py:63 in <module>"));
    d.acquired(3, 63, UNKNOWN_SITE, true, 0);
    d.thread_exited(3);
    d.released(2, 63);
    assert_eq!(d.leaked_at_exit().len(), 1);
}

#[test]
fn order_edges_recorded_at_the_attempt() {
    // with a: b.acquire()  /  with b: a.acquire(), cold: neither second
    // acquire ever succeeds, the inversion is reported at the attempt.
    let d = diag(LOCK_ORDER);
    start(&d, 1);
    start(&d, 2);
    d.lock_created(10, LockKind::Lock, site("inv.py:1 in <module>"));
    d.lock_created(20, LockKind::Lock, site("inv.py:2 in <module>"));
    d.entered(1, 10, site("inv.py:5 in f"), true, 0);
    d.entered(2, 20, site("inv.py:9 in g"), true, 0);
    assert_eq!(d.attempt(1, 20, site("inv.py:6 in f"), None), None);
    let inv = d
        .attempt(2, 10, site("inv.py:10 in g"), None)
        .expect("the second attempt closes the cycle");
    assert_eq!(inv.edges.len(), 2);
    let sites: Vec<String> = inv
        .edges
        .iter()
        .map(|e| site_name(e.acquire_site))
        .collect();
    assert!(sites.contains(&"inv.py:6 in f".to_owned()), "{sites:?}");
    assert!(sites.contains(&"inv.py:10 in g".to_owned()), "{sites:?}");
    // The acquire, if it finally succeeds, reports nothing again.
    d.released(2, 20);
    d.acquired(1, 20, UNKNOWN_SITE, true, 5);
    assert_eq!(d.attempt(2, 10, site("inv.py:10 in g"), None), None);
    // Off without LOCK_ORDER.
    let d = diag(DEADLOCK);
    start(&d, 1);
    d.lock_created(10, LockKind::Lock, UNKNOWN_SITE);
    d.entered(1, 10, UNKNOWN_SITE, true, 0);
    assert_eq!(d.attempt(1, 20, UNKNOWN_SITE, None), None);
}

#[test]
fn inversions_judged_with_the_whole_run() {
    // The readers-writers shape: gate and res, one class; res is later
    // released by another thread (a semaphore): the inversion found at the
    // attempt is suppressed when judged at the end, reported if immediate.
    for immediate in [false, true] {
        let d = Diagnostics::with_clock(now);
        d.set_flags(LOCK_ORDER);
        d.set_immediate_inversions(immediate);
        let (main, writer, timer) = (1, 2, 3);
        for t in [main, writer, timer] {
            start(&d, t);
        }
        let s = site("rw.py:2 in <module>");
        d.lock_created(10, LockKind::Lock, s);
        d.lock_created(20, LockKind::Lock, s);
        d.acquired(main, 20, UNKNOWN_SITE, true, 0);
        d.entered(writer, 10, UNKNOWN_SITE, true, 0);
        assert_eq!(d.attempt(writer, 20, UNKNOWN_SITE, None), None);
        let now_report = d.attempt(main, 10, UNKNOWN_SITE, None);
        assert_eq!(now_report.is_some(), immediate, "immediate: {immediate}");
        d.released(timer, 20);
        let v = d.take_inversions();
        assert!(v.reported.is_empty());
        assert_eq!(
            v.suppressed.len(),
            usize::from(!immediate),
            "kept once, judged once"
        );
        if let Some((_, why)) = v.suppressed.first() {
            assert_eq!(*why, Suppressed::Semaphore);
        }
        assert_eq!(d.take_inversions(), InversionVerdicts::default());
    }
    // Without a semaphore, a deferred inversion is reported at the end.
    let d = Diagnostics::with_clock(now);
    d.set_flags(LOCK_ORDER);
    start(&d, 1);
    start(&d, 2);
    d.lock_created(10, LockKind::Lock, site("inv.py:1 in <module>"));
    d.lock_created(20, LockKind::Lock, site("inv.py:2 in <module>"));
    d.entered(1, 10, UNKNOWN_SITE, true, 0);
    d.entered(2, 20, UNKNOWN_SITE, true, 0);
    assert_eq!(d.attempt(1, 20, UNKNOWN_SITE, None), None);
    assert_eq!(d.attempt(2, 10, UNKNOWN_SITE, None), None, "deferred");
    let v = d.take_inversions();
    assert_eq!((v.reported.len(), v.suppressed.len()), (1, 0));
    assert_eq!(v.reported[0].edges.len(), 2);
}

#[test]
fn reinit_forgets_the_holder_and_adds_no_edge() {
    let d = diag(LOCK_ORDER | DEADLOCK);
    start(&d, 1);
    d.lock_created(10, LockKind::Lock, site("f.py:1 in <module>"));
    d.lock_created(20, LockKind::Lock, site("f.py:2 in <module>"));
    d.acquired(1, 10, UNKNOWN_SITE, true, 0);
    d.lock_reinit(10);
    assert!(d.snapshot().threads[0].held.is_empty(), "nobody holds it");
    // Taking 20 then 10 and later 10 then 20 would be an inversion only if
    // the reinitialised 10 still counted as held.
    d.acquired(1, 20, UNKNOWN_SITE, true, 0);
    d.released(1, 20);
    d.acquired(1, 10, UNKNOWN_SITE, true, 0);
    d.released(1, 10);
    d.entered(1, 20, UNKNOWN_SITE, true, 0);
    assert_eq!(
        d.acquired(1, 10, UNKNOWN_SITE, true, 0),
        None,
        "20 -> 10 only"
    );
    assert!(d.take_inversions().suppressed.is_empty());
}

#[test]
fn gate_lock_and_id_order_suppress_inversions() {
    // (a) Opposite orders, always under one gate lock.
    let d = Diagnostics::with_clock(now);
    d.set_flags(LOCK_ORDER);
    start(&d, 1);
    start(&d, 2);
    for (id, s) in [(5, "g.py:1"), (10, "g.py:2"), (20, "g.py:3")] {
        d.lock_created(id, LockKind::Lock, site(s));
    }
    d.entered(1, 5, UNKNOWN_SITE, true, 0);
    d.entered(1, 10, UNKNOWN_SITE, true, 0);
    d.entered(1, 20, UNKNOWN_SITE, true, 0);
    for l in [20, 10, 5] {
        d.released(1, l);
    }
    d.entered(2, 5, UNKNOWN_SITE, true, 0);
    d.entered(2, 20, UNKNOWN_SITE, true, 0);
    d.entered(2, 10, UNKNOWN_SITE, true, 0);
    for l in [10, 20, 5] {
        d.released(2, l);
    }
    let v = d.take_inversions();
    assert!(v.reported.is_empty(), "{v:?}");
    assert_eq!(v.suppressed.len(), 1);
    assert_eq!(v.suppressed[0].1, Suppressed::GateLock);

    // The same, but one occurrence of an edge without the gate: reported.
    let d = Diagnostics::with_clock(now);
    d.set_flags(LOCK_ORDER);
    start(&d, 1);
    for (id, s) in [(5, "g.py:1"), (10, "g.py:2"), (20, "g.py:3")] {
        d.lock_created(id, LockKind::Lock, site(s));
    }
    d.entered(1, 5, UNKNOWN_SITE, true, 0);
    d.entered(1, 10, UNKNOWN_SITE, true, 0);
    d.entered(1, 20, UNKNOWN_SITE, true, 0);
    for l in [20, 10, 5] {
        d.released(1, l);
    }
    d.entered(1, 10, UNKNOWN_SITE, true, 0); // 10 -> 20 without the gate
    d.entered(1, 20, UNKNOWN_SITE, true, 0);
    for l in [20, 10] {
        d.released(1, l);
    }
    d.entered(1, 5, UNKNOWN_SITE, true, 0);
    d.entered(1, 20, UNKNOWN_SITE, true, 0);
    d.entered(1, 10, UNKNOWN_SITE, true, 0);
    let v = d.take_inversions();
    assert_eq!((v.reported.len(), v.suppressed.len()), (1, 0), "{v:?}");

    // (b) Two sites, objects always taken in increasing address order.
    for descending_once in [false, true] {
        let d = Diagnostics::with_clock(now);
        d.set_flags(LOCK_ORDER);
        start(&d, 1);
        // a1 < b1 (a then b), b2 < a2 (b then a): a class cycle a <-> b.
        let locks = [
            (1, "a.py:1", 100),
            (2, "b.py:1", 200),
            (3, "b.py:1", 300),
            (4, "a.py:1", 400),
        ];
        for (id, s, addr) in locks {
            d.lock_created(id, LockKind::Lock, site(s));
            d.cell_of(id).set_addr(addr);
        }
        let pairs: &[(LockId, LockId)] = if descending_once {
            &[(1, 2), (2, 1), (3, 4)]
        } else {
            &[(1, 2), (3, 4)]
        };
        for &(x, y) in pairs {
            d.entered(1, x, UNKNOWN_SITE, true, 0);
            d.entered(1, y, UNKNOWN_SITE, true, 0);
            d.released(1, y);
            d.released(1, x);
        }
        let v = d.take_inversions();
        if descending_once {
            assert_eq!(v.reported.len(), 1, "{v:?}");
        } else {
            assert!(v.reported.is_empty(), "{v:?}");
            assert_eq!(v.suppressed[0].1, Suppressed::IdOrder);
        }
    }
}
