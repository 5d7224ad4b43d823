//! Property tests: random sequences of lock operations spread over 2–4 real
//! threads agree with a simple sequential model.
//!
//! A scheduler (the test thread) drives worker threads over channels, one
//! operation at a time, so every outcome is determined by the model:
//!
//! * `RawLock`: the model is "held / not held" plus the set of workers
//!   blocked in an untimed (or long-deadline) acquire. `try_acquire` on a held
//!   lock fails; a short timed acquire on a held lock times out and never
//!   returns before its timeout; a release of an unlocked lock is `Err` and
//!   leaves it unlocked; a release with blocked workers hands the lock to
//!   exactly one of them (the scheduler waits for that worker's report before
//!   issuing anything else, so no barging thread can interfere), and a
//!   blocked worker that reports without a release is a mutual-exclusion bug.
//! * `RawRLock`: the model is `(owner, count)`. Recursion counts, `owner()`,
//!   `is_owned_by()` and `is_locked()` are checked after every step; release
//!   by a non-owner (or of an unowned lock) is `Err` and changes nothing;
//!   `release_save` / `restore` round-trips.
//!
//! Results from all workers arrive on one channel, so a report from a worker
//! that should still be blocked is caught as an unexpected message. A report
//! that never arrives (lost wake-up, hang) fails after [`STUCK`].
//!
//! Case counts are kept small so the file runs in well under 30 s in debug.

use proptest::prelude::*;
use rsthread_core::{Acquire, Deadline, NotLocked, RawLock, RawRLock, ReleaseError, SpinScore};
use std::collections::BTreeSet;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// How long the scheduler waits for a report that the model says must come.
const STUCK: Duration = Duration::from_secs(5);
/// Deadline of a "long" timed acquire: it must be woken by a release long before.
const LONG: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// RawLock

#[derive(Debug, Clone, Copy)]
enum LOp {
    Try,
    /// Untimed acquire.
    Acquire,
    /// Timed acquire with a short timeout (ms).
    Timed(u8),
    /// Timed acquire with a deadline far away: behaves like `Acquire`.
    TimedLong,
    Release,
    /// The scheduler sleeps (ms) so blocked waiters can become "starving"
    /// (exercises the hand-off path of lock.rs).
    Pause(u8),
}

fn lop() -> impl Strategy<Value = LOp> {
    prop_oneof![
        3 => Just(LOp::Try),
        3 => Just(LOp::Acquire),
        2 => (1u8..=3).prop_map(LOp::Timed),
        1 => Just(LOp::TimedLong),
        4 => Just(LOp::Release),
        1 => (5u8..=15).prop_map(LOp::Pause),
    ]
}

#[derive(Debug, PartialEq)]
enum LRes {
    Try(bool),
    Acquire(Acquire),
    /// Outcome of a short timed acquire, with the time it took and its timeout.
    Timed(Acquire, Duration, Duration),
    Release(Result<(), NotLocked>),
}

type Report<R> = (usize, R);

/// Odd workers acquire with adaptive spinning (a score that always spins),
/// even ones without: both must follow the same model.
fn lock_worker(id: usize, lock: Arc<RawLock>, cmds: Receiver<LOp>, out: Sender<Report<LRes>>) {
    let score = SpinScore::confident();
    let acquire = |d: Option<Deadline>| {
        if id % 2 == 1 {
            lock.acquire_adaptive(d, &score)
        } else {
            lock.acquire(d)
        }
    };
    for op in cmds {
        let r = match op {
            LOp::Try => LRes::Try(lock.try_acquire()),
            LOp::Acquire => LRes::Acquire(acquire(None)),
            LOp::TimedLong => LRes::Acquire(acquire(Some(Deadline::after(LONG)))),
            LOp::Timed(ms) => {
                let d = Duration::from_millis(u64::from(ms));
                let t0 = Instant::now();
                let a = acquire(Some(Deadline::after(d)));
                LRes::Timed(a, t0.elapsed(), d)
            }
            LOp::Release => LRes::Release(lock.release()),
            LOp::Pause(_) => unreachable!("pauses are the scheduler's"),
        };
        if out.send((id, r)).is_err() {
            return;
        }
    }
}

/// Receive the next report, failing if none comes within [`STUCK`].
fn next<R>(rx: &Receiver<Report<R>>, what: &str) -> Result<Report<R>, TestCaseError> {
    match rx.recv_timeout(STUCK) {
        Ok(r) => Ok(r),
        Err(RecvTimeoutError::Timeout) => Err(TestCaseError::fail(format!(
            "no report for {what} within {STUCK:?} (lost wake-up or hang)"
        ))),
        Err(RecvTimeoutError::Disconnected) => Err(TestCaseError::fail("a worker died")),
    }
}

/// Pick the worker for a step: `want` if it is free, otherwise the next free one.
fn pick(want: usize, n: usize, blocked: &BTreeSet<usize>) -> Option<usize> {
    (0..n)
        .map(|k| (want + k) % n)
        .find(|w| !blocked.contains(w))
}

fn run_lock_case(nthreads: usize, steps: &[(usize, LOp)]) -> Result<(), TestCaseError> {
    let lock = Arc::new(RawLock::new());
    let (out_tx, out_rx) = channel();
    let mut cmd = Vec::new();
    let mut handles = Vec::new();
    for id in 0..nthreads {
        let (tx, rx) = channel();
        let (l, o) = (lock.clone(), out_tx.clone());
        handles.push(thread::spawn(move || lock_worker(id, l, rx, o)));
        cmd.push(tx);
    }
    drop(out_tx);

    let mut held = false;
    let mut blocked: BTreeSet<usize> = BTreeSet::new();

    // A release by `w` when the model has blocked waiters: expect w's Ok and
    // exactly one waiter's Acquired, in either order.
    let release_to_waiter =
        |w: usize, blocked: &mut BTreeSet<usize>| -> Result<(), TestCaseError> {
            cmd[w].send(LOp::Release).unwrap();
            let mut got_release = false;
            let mut winner = None;
            while !got_release || winner.is_none() {
                let (from, r) = next(&out_rx, "a release with blocked waiters")?;
                if from == w && !got_release {
                    prop_assert_eq!(r, LRes::Release(Ok(())));
                    got_release = true;
                } else if blocked.contains(&from) && winner.is_none() {
                    prop_assert_eq!(r, LRes::Acquire(Acquire::Acquired), "waiter {}", from);
                    winner = Some(from);
                } else {
                    return Err(TestCaseError::fail(format!(
                        "unexpected report from {from}: {r:?}"
                    )));
                }
            }
            blocked.remove(&winner.unwrap());
            Ok(())
        };

    for &(want, op) in steps {
        if let LOp::Pause(ms) = op {
            thread::sleep(Duration::from_millis(u64::from(ms)));
            continue;
        }
        let w = pick(want, nthreads, &blocked).expect("the scheduler always keeps one worker free");
        match op {
            LOp::Acquire | LOp::TimedLong if held => {
                // Keep at least one worker free to release.
                let free = nthreads - blocked.len();
                if free <= 1 {
                    cmd[w].send(LOp::Try).unwrap();
                    let (from, r) = next(&out_rx, "try_acquire")?;
                    prop_assert_eq!((from, r), (w, LRes::Try(false)));
                } else {
                    cmd[w].send(op).unwrap();
                    blocked.insert(w);
                }
            }
            LOp::Release if held && !blocked.is_empty() => release_to_waiter(w, &mut blocked)?,
            _ => {
                cmd[w].send(op).unwrap();
                let (from, r) = next(&out_rx, "an immediate operation")?;
                prop_assert_eq!(
                    from,
                    w,
                    "report from a worker that should be blocked or idle: {:?}",
                    r
                );
                match (op, r) {
                    (LOp::Try, LRes::Try(ok)) => {
                        prop_assert_eq!(ok, !held, "try_acquire");
                        held = true;
                    }
                    (LOp::Acquire | LOp::TimedLong, LRes::Acquire(a)) => {
                        prop_assert!(!held);
                        prop_assert_eq!(a, Acquire::Acquired);
                        held = true;
                    }
                    (LOp::Timed(_), LRes::Timed(a, took, timeout)) => {
                        if held {
                            prop_assert_eq!(a, Acquire::TimedOut, "timed acquire on a held lock");
                            prop_assert!(
                                took >= timeout,
                                "timed out early: {:?} < {:?}",
                                took,
                                timeout
                            );
                        } else {
                            prop_assert_eq!(a, Acquire::Acquired, "timed acquire on a free lock");
                        }
                        held = true;
                    }
                    (LOp::Release, LRes::Release(r)) => {
                        if held {
                            prop_assert_eq!(r, Ok(()));
                            held = false;
                        } else {
                            prop_assert_eq!(r, Err(NotLocked), "release of an unlocked lock");
                        }
                    }
                    (op, r) => return Err(TestCaseError::fail(format!("{op:?} gave {r:?}"))),
                }
            }
        }
        prop_assert_eq!(
            lock.is_locked(),
            held,
            "is_locked() vs model after {:?}",
            op
        );
    }

    // Drain: release until every blocked worker got the lock, then the last hold.
    while !blocked.is_empty() {
        let w = pick(0, nthreads, &blocked).unwrap();
        prop_assert!(held);
        release_to_waiter(w, &mut blocked)?;
        prop_assert!(lock.is_locked());
    }
    if held {
        prop_assert_eq!(lock.release(), Ok(()));
    }
    prop_assert!(!lock.is_locked());
    prop_assert_eq!(lock.release(), Err(NotLocked));
    prop_assert!(
        !lock.is_locked(),
        "a failed release leaves the lock unlocked"
    );
    drop(cmd);
    for h in handles {
        h.join().unwrap();
    }
    // Nothing left over: a stray report would mean a second holder.
    prop_assert!(out_rx.try_recv().is_err(), "stray report after the run");
    Ok(())
}

// ---------------------------------------------------------------------------
// RawRLock

#[derive(Debug, Clone, Copy)]
enum ROp {
    Try,
    /// `try_acquire` then `acquire_contended(None)` (what the binding does).
    Acquire,
    /// `try_acquire` then a short timed `acquire_contended`.
    Timed(u8),
    Release,
    /// `release_save` then `try_acquire_inner` + `restore` (a Condition.wait
    /// round trip with nobody else interfering).
    SaveRestore,
    Pause(u8),
}

fn rop() -> impl Strategy<Value = ROp> {
    prop_oneof![
        3 => Just(ROp::Try),
        3 => Just(ROp::Acquire),
        2 => (1u8..=3).prop_map(ROp::Timed),
        5 => Just(ROp::Release),
        1 => Just(ROp::SaveRestore),
        1 => (5u8..=15).prop_map(ROp::Pause),
    ]
}

#[derive(Debug, PartialEq)]
enum RRes {
    Try(bool),
    Acquire(Acquire),
    Timed(Acquire, Duration, Duration),
    Release(Result<(), ReleaseError>),
    /// What `release_save` returned, and (count, owner, locked) right after it.
    Saved(Option<(u64, u64)>, (u64, u64, bool)),
}

/// Worker `id` uses ident `id + 1` (0 means "nobody").
fn rlock_worker(id: usize, lock: Arc<RawRLock>, cmds: Receiver<ROp>, out: Sender<Report<RRes>>) {
    let me = id as u64 + 1;
    for op in cmds {
        let r = match op {
            ROp::Try => RRes::Try(lock.try_acquire(me).unwrap()),
            ROp::Acquire => {
                if lock.try_acquire(me).unwrap() {
                    RRes::Acquire(Acquire::Acquired)
                } else {
                    RRes::Acquire(lock.acquire_contended(me, None))
                }
            }
            ROp::Timed(ms) => {
                let d = Duration::from_millis(u64::from(ms));
                let t0 = Instant::now();
                let a = if lock.try_acquire(me).unwrap() {
                    Acquire::Acquired
                } else {
                    lock.acquire_contended(me, Some(Deadline::after(d)))
                };
                RRes::Timed(a, t0.elapsed(), d)
            }
            ROp::Release => RRes::Release(lock.release(me)),
            ROp::SaveRestore => {
                let saved = lock.release_save();
                let after = (lock.count(), lock.owner(), lock.is_locked());
                if let Some((count, owner)) = saved {
                    // Nobody else is running an operation: the inner lock is free.
                    assert!(
                        lock.try_acquire_inner(),
                        "inner lock taken after release_save"
                    );
                    lock.restore(owner, count);
                }
                RRes::Saved(saved, after)
            }
            ROp::Pause(_) => unreachable!(),
        };
        if out.send((id, r)).is_err() {
            return;
        }
    }
}

fn run_rlock_case(nthreads: usize, steps: &[(usize, ROp)]) -> Result<(), TestCaseError> {
    let lock = Arc::new(RawRLock::new());
    let (out_tx, out_rx) = channel();
    let mut cmd = Vec::new();
    let mut handles = Vec::new();
    for id in 0..nthreads {
        let (tx, rx) = channel();
        let (l, o) = (lock.clone(), out_tx.clone());
        handles.push(thread::spawn(move || rlock_worker(id, l, rx, o)));
        cmd.push(tx);
    }
    drop(out_tx);

    // Model: owner worker (None = unowned) and recursion count.
    let mut owner: Option<usize> = None;
    let mut count: u64 = 0;
    let mut blocked: BTreeSet<usize> = BTreeSet::new();

    let check = |owner: Option<usize>, count: u64, after: &str| -> Result<(), TestCaseError> {
        prop_assert_eq!(lock.count(), count, "count() after {}", after);
        prop_assert_eq!(
            lock.owner(),
            owner.map_or(0, |o| o as u64 + 1),
            "owner() after {}",
            after
        );
        prop_assert_eq!(
            lock.is_locked(),
            owner.is_some(),
            "is_locked() after {}",
            after
        );
        for w in 0..nthreads {
            prop_assert_eq!(
                lock.is_owned_by(w as u64 + 1),
                owner == Some(w),
                "is_owned_by({}) after {}",
                w + 1,
                after
            );
        }
        Ok(())
    };

    // The owner's final release with blocked waiters: one waiter becomes owner.
    let final_release = |w: usize, blocked: &mut BTreeSet<usize>| -> Result<usize, TestCaseError> {
        cmd[w].send(ROp::Release).unwrap();
        let mut got_release = false;
        let mut winner = None;
        while !got_release || winner.is_none() {
            let (from, r) = next(&out_rx, "an RLock release with blocked waiters")?;
            if from == w && !got_release {
                prop_assert_eq!(r, RRes::Release(Ok(())));
                got_release = true;
            } else if blocked.contains(&from) && winner.is_none() {
                prop_assert_eq!(r, RRes::Acquire(Acquire::Acquired), "waiter {}", from);
                winner = Some(from);
            } else {
                return Err(TestCaseError::fail(format!(
                    "unexpected report from {from}: {r:?}"
                )));
            }
        }
        let win = winner.unwrap();
        blocked.remove(&win);
        Ok(win)
    };

    for &(want, op) in steps {
        if let ROp::Pause(ms) = op {
            thread::sleep(Duration::from_millis(u64::from(ms)));
            continue;
        }
        // The owner is never blocked (it re-enters), so there is always a free worker.
        let w = pick(want, nthreads, &blocked).unwrap();
        // release_save frees the inner lock: with blocked waiters one of them
        // would (rightly) take it, so the round trip is only modelled without them.
        let op = if matches!(op, ROp::SaveRestore) && !blocked.is_empty() {
            ROp::Try
        } else {
            op
        };
        let label = format!("{op:?} by {w}");
        match op {
            ROp::Acquire if owner.is_some() && owner != Some(w) => {
                cmd[w].send(op).unwrap();
                blocked.insert(w);
            }
            ROp::Release if owner == Some(w) && count == 1 && !blocked.is_empty() => {
                let win = final_release(w, &mut blocked)?;
                owner = Some(win);
                count = 1;
            }
            _ => {
                cmd[w].send(op).unwrap();
                let (from, r) = next(&out_rx, "an immediate RLock operation")?;
                prop_assert_eq!(
                    from,
                    w,
                    "report from a worker that should be blocked or idle: {:?}",
                    r
                );
                let mine = owner == Some(w);
                match (op, r) {
                    (ROp::Try, RRes::Try(ok)) => {
                        prop_assert_eq!(ok, owner.is_none() || mine, "try_acquire");
                        if ok {
                            owner = Some(w);
                            count += 1;
                        }
                    }
                    (ROp::Acquire, RRes::Acquire(a)) => {
                        prop_assert_eq!(a, Acquire::Acquired);
                        owner = Some(w);
                        count += 1;
                    }
                    (ROp::Timed(_), RRes::Timed(a, took, timeout)) => {
                        if owner.is_none() || mine {
                            prop_assert_eq!(a, Acquire::Acquired);
                            owner = Some(w);
                            count += 1;
                        } else {
                            prop_assert_eq!(
                                a,
                                Acquire::TimedOut,
                                "timed acquire of an RLock owned by another"
                            );
                            prop_assert!(
                                took >= timeout,
                                "timed out early: {:?} < {:?}",
                                took,
                                timeout
                            );
                        }
                    }
                    (ROp::Release, RRes::Release(r)) => {
                        if mine {
                            prop_assert_eq!(r, Ok(()));
                            count -= 1;
                            if count == 0 {
                                owner = None;
                            }
                        } else {
                            prop_assert_eq!(
                                r,
                                Err(ReleaseError::NotOwner),
                                "release by a non-owner"
                            );
                        }
                    }
                    (ROp::SaveRestore, RRes::Saved(saved, after)) => {
                        if let Some(o) = owner {
                            prop_assert_eq!(saved, Some((count, o as u64 + 1)), "release_save");
                            prop_assert_eq!(after, (0, 0, false), "state right after release_save");
                        } else {
                            prop_assert_eq!(saved, None, "release_save of an unowned RLock");
                            prop_assert_eq!(after, (0, 0, false));
                        }
                        // Restored: the model is unchanged.
                    }
                    (op, r) => return Err(TestCaseError::fail(format!("{op:?} gave {r:?}"))),
                }
            }
        }
        check(owner, count, &label)?;
    }

    // Drain: the owner releases fully, handing over to each blocked worker in turn.
    while let Some(o) = owner {
        while count > 1 {
            prop_assert_eq!(lock.release(o as u64 + 1), Ok(()));
            count -= 1;
        }
        if blocked.is_empty() {
            prop_assert_eq!(lock.release(o as u64 + 1), Ok(()));
            owner = None;
            count = 0;
        } else {
            // The release must come from the owner's own worker (the owner's ident).
            let win = final_release(o, &mut blocked)?;
            owner = Some(win);
            count = 1;
        }
        check(owner, count, "drain")?;
    }
    for w in 0..nthreads {
        prop_assert_eq!(lock.release(w as u64 + 1), Err(ReleaseError::NotOwner));
    }
    check(None, 0, "the end")?;
    drop(cmd);
    for h in handles {
        h.join().unwrap();
    }
    prop_assert!(out_rx.try_recv().is_err(), "stray report after the run");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        // A hang costs STUCK per shrink step: bound the shrinking.
        max_shrink_time: 120_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn raw_lock_agrees_with_model(
        nthreads in 2usize..=4,
        steps in prop::collection::vec((0usize..4, lop()), 1..48),
    ) {
        let steps: Vec<_> = steps.into_iter().map(|(w, op)| (w % nthreads, op)).collect();
        run_lock_case(nthreads, &steps)?;
    }

    #[test]
    fn raw_rlock_agrees_with_model(
        nthreads in 2usize..=4,
        steps in prop::collection::vec((0usize..4, rop()), 1..48),
    ) {
        let steps: Vec<_> = steps.into_iter().map(|(w, op)| (w % nthreads, op)).collect();
        run_rlock_case(nthreads, &steps)?;
    }
}
