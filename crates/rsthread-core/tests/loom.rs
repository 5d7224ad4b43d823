//! Model checking of the lock state machines with loom: every interleaving
//! of 2–3 threads over the fast path, the contended path (futex sleep and
//! wake), timed waits that expire, a timed waiter racing a hand-off release,
//! and release by a thread that never acquired. Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=3 \
//!     cargo test -p rsthread-core --release --test loom
//! ```
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use rsthread_core::{Acquire, Deadline, RawLock, RawRLock};

fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

/// Two threads increment a non-atomic counter under the lock: no lost update,
/// no deadlock, and the lock ends unlocked.
#[test]
fn mutual_exclusion_two_threads() {
    model(|| {
        let lock = Arc::new(RawLock::new());
        let data = Arc::new(UnsafeCell::new(0u32));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (lock, data) = (lock.clone(), data.clone());
                thread::spawn(move || {
                    assert_eq!(lock.acquire(None), Acquire::Acquired);
                    // SAFETY: exclusive access while the lock is held.
                    data.with_mut(|p| unsafe { *p += 1 });
                    lock.release().unwrap();
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        // SAFETY: all threads joined.
        assert_eq!(data.with(|p| unsafe { *p }), 2);
        assert!(!lock.is_locked());
    });
}

/// Three contenders: the CONTENDED marking must never lose a wake-up.
#[test]
fn no_lost_wakeup_three_threads() {
    model(|| {
        let lock = Arc::new(RawLock::new());
        let hs: Vec<_> = (0..3)
            .map(|_| {
                let lock = lock.clone();
                thread::spawn(move || {
                    assert_eq!(lock.acquire(None), Acquire::Acquired);
                    lock.release().unwrap();
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert!(!lock.is_locked());
    });
}

/// A Python lock may be released by a thread that did not acquire it
/// (Event/Condition hand-off): the waiter is woken and gets the lock.
#[test]
fn release_by_other_thread() {
    model(|| {
        let lock = Arc::new(RawLock::new());
        assert!(lock.try_acquire());
        let l2 = lock.clone();
        let waiter = thread::spawn(move || {
            assert_eq!(l2.acquire(None), Acquire::Acquired);
            l2.release().unwrap();
        });
        let l3 = lock.clone();
        let releaser = thread::spawn(move || l3.release().unwrap());
        waiter.join().unwrap();
        releaser.join().unwrap();
        assert!(!lock.is_locked());
    });
}

/// A timed wait that expires leaves the state consistent: the holder's
/// release still works and a later acquire succeeds.
#[test]
fn timed_wait_expiry_keeps_state_consistent() {
    model(|| {
        let lock = Arc::new(RawLock::new());
        let l2 = lock.clone();
        let holder = thread::spawn(move || {
            if l2.try_acquire() {
                l2.release().unwrap();
            }
        });
        let r = lock.acquire(Some(Deadline::from_nanos(0)));
        if r == Acquire::Acquired {
            lock.release().unwrap();
        }
        holder.join().unwrap();
        assert!(!lock.is_locked());
        assert!(lock.try_acquire());
    });
}

/// A timed waiter that has asked for a hand-off (starving) races a release
/// that hands the lock to it, and then times out: the release may free the
/// lock or hand it off, before or after the waiter withdraws. Whatever the
/// interleaving, the waiter's outcome must match the lock state: `Acquired`
/// means it owns the lock, `TimedOut` that it does not, and no hand-off is
/// left stranded (that would keep the lock held by nobody forever).
///
/// With `untimed_too`, a second, untimed waiter joins: a hand-off that the
/// timed waiter gives up must still reach a thread (the untimed waiter may be
/// woken by it without being allowed to claim it, and must pass it on), so
/// both waiters finish.
fn timed_waiter_races_handoff(untimed_too: bool) {
    model(move || {
        let lock = Arc::new(RawLock::new());
        assert!(lock.try_acquire());
        let l2 = lock.clone();
        let timed = thread::spawn(move || {
            let r = l2.acquire(Some(Deadline::from_nanos(0)));
            assert_ne!(r, Acquire::Interrupted);
            if r == Acquire::Acquired {
                l2.release().unwrap();
            }
        });
        let untimed = untimed_too.then(|| {
            let l3 = lock.clone();
            thread::spawn(move || {
                assert_eq!(l3.acquire(None), Acquire::Acquired);
                l3.release().unwrap();
            })
        });
        lock.release().unwrap();
        timed.join().unwrap();
        if let Some(h) = untimed {
            h.join().unwrap();
        }
        assert!(
            !lock.is_locked(),
            "a hand-off was stranded, or the timed-out waiter kept the lock"
        );
        assert!(lock.try_acquire());
    });
}

#[test]
fn timed_waiter_races_handoff_release() {
    timed_waiter_races_handoff(false);
}

#[test]
fn timed_and_untimed_waiters_race_handoff_release() {
    timed_waiter_races_handoff(true);
}

/// RLock: a thread re-enters while another contends; counts and ownership
/// come out right and the lock ends free.
#[test]
fn rlock_reentry_and_contention() {
    model(|| {
        let r = Arc::new(RawRLock::new());
        let data = Arc::new(UnsafeCell::new(0u32));
        let hs: Vec<_> = (1..=2u64)
            .map(|me| {
                let (r, data) = (r.clone(), data.clone());
                thread::spawn(move || {
                    if !r.try_acquire(me).unwrap() {
                        assert_eq!(r.acquire_contended(me, None), Acquire::Acquired);
                    }
                    assert!(r.try_acquire(me).unwrap(), "re-entry never blocks");
                    assert_eq!(r.count(), 2);
                    // SAFETY: exclusive while owned.
                    data.with_mut(|p| unsafe { *p += 1 });
                    r.release(me).unwrap();
                    r.release(me).unwrap();
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        // SAFETY: all threads joined.
        assert_eq!(data.with(|p| unsafe { *p }), 2);
        assert_eq!(r.owner(), 0);
        assert!(!r.is_locked());
    });
}

/// The binding's protocol for the `_exclusive` forms (`Outside` in
/// rsthread-py): a holder of an outer lock (the GIL, here a mutex whose
/// value counts the threads waiting outside it) uses the plain-store forms
/// while nobody waits outside; a waiter registers under the outer lock,
/// waits without it, and unregisters under it again. No lost update, no
/// lost wake-up, no data race on the lock word.
#[test]
fn exclusive_forms_under_an_outer_lock() {
    model(|| {
        let gil = Arc::new(loom::sync::Mutex::new(0u32));
        let lock = Arc::new(RawLock::new());
        let data = Arc::new(UnsafeCell::new(0u32));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (gil, lock, data) = (gil.clone(), lock.clone(), data.clone());
                thread::spawn(move || {
                    let mut g = gil.lock().unwrap();
                    let got = if *g == 0 {
                        // SAFETY: the outer lock is held and nobody waits outside it.
                        unsafe { lock.try_acquire_exclusive() }
                    } else {
                        lock.try_acquire()
                    };
                    if !got {
                        *g += 1;
                        drop(g);
                        assert_eq!(lock.acquire(None), Acquire::Acquired);
                        g = gil.lock().unwrap();
                        *g -= 1;
                    }
                    // Give the outer lock up while holding the lock (as
                    // Python does on a GIL switch), so the other thread can
                    // find it held and wait outside.
                    drop(g);
                    // SAFETY: exclusive access while the lock is held.
                    data.with_mut(|p| unsafe { *p += 1 });
                    let g = gil.lock().unwrap();
                    let r = if *g == 0 {
                        // SAFETY: as above.
                        unsafe { lock.release_exclusive() }
                    } else {
                        lock.release()
                    };
                    r.unwrap();
                    drop(g);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        // SAFETY: all threads joined.
        assert_eq!(data.with(|p| unsafe { *p }), 2);
        assert!(!lock.is_locked());
    });
}
