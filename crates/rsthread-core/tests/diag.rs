//! Integration tests of `rsthread_core::diag` through its public API: real
//! threads and real locks driven with the protocol the binding uses, the
//! Chrome trace export, and the process-wide instance (including fork).

use rsthread_core::diag::{
    self, Deadlock, DeadlockRule, Diagnostics, LockId, LockKind, SiteId, ThreadId,
};
use rsthread_core::{ident, Acquire, Deadline, RawLock, RawRLock};
use serde_json::Value;
use std::cell::Cell;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// What the binding does around a real lock.
enum Raw {
    Lock(RawLock),
    RLock(RawRLock),
}

struct Lk {
    raw: Raw,
    id: LockId,
}

impl Lk {
    fn new(d: &Diagnostics, id: LockId, kind: LockKind, site: &str) -> Lk {
        d.lock_created(id, kind, diag::intern_site(site));
        let raw = match kind {
            LockKind::Lock => Raw::Lock(RawLock::new()),
            LockKind::RLock => Raw::RLock(RawRLock::new()),
        };
        Lk { raw, id }
    }

    /// Blocking acquire in Raise mode: `Err` when this wait closed a deadlock.
    fn acquire(
        &self,
        d: &Diagnostics,
        site: SiteId,
        timeout: Option<Duration>,
    ) -> Result<bool, Deadlock> {
        let me = ident::current();
        let fast = match &self.raw {
            Raw::Lock(l) => l.try_acquire(),
            Raw::RLock(r) => r.try_acquire(me).unwrap(),
        };
        if fast {
            d.acquired(me, self.id, site, true, 0);
            return Ok(true);
        }
        let t0 = Instant::now();
        if let Some(dl) = d.wait_begin(me, self.id, timeout.is_some()) {
            d.wait_end(me, self.id, false);
            return Err(dl);
        }
        let deadline = timeout.map(Deadline::after);
        let r = match &self.raw {
            Raw::Lock(l) => l.acquire(deadline),
            Raw::RLock(r) => r.acquire_contended(me, deadline),
        };
        let ok = r == Acquire::Acquired;
        d.wait_end(me, self.id, ok);
        if ok {
            d.acquired(
                me,
                self.id,
                site,
                true,
                t0.elapsed().as_nanos().max(1) as u64,
            );
        }
        Ok(ok)
    }

    /// Bookkeeping first, while the lock is still held; then the real release.
    fn release(&self, d: &Diagnostics) {
        let me = ident::current();
        d.released(me, self.id);
        match &self.raw {
            Raw::Lock(l) => l.release().unwrap(),
            Raw::RLock(r) => r.release(me).unwrap(),
        }
    }
}

fn register(d: &Diagnostics, name: &str) -> ThreadId {
    let me = ident::current();
    d.thread_started(me, ident::native(), Some(name.to_owned()));
    me
}

fn parse(d: &Diagnostics) -> Value {
    let mut out = Vec::new();
    d.export_chrome_trace(&mut out).unwrap();
    serde_json::from_slice(&out).expect("valid JSON")
}

fn events(v: &Value) -> &Vec<Value> {
    v["traceEvents"].as_array().expect("traceEvents array")
}

#[test]
fn real_two_thread_deadlock_raises_in_one_thread() {
    let d = Arc::new(Diagnostics::new());
    d.set_flags(diag::DEADLOCK | diag::TRACE | diag::PROFILE);
    let a = Arc::new(Lk::new(&d, 1, LockKind::RLock, "real.py:1 in <module>"));
    let b = Arc::new(Lk::new(&d, 2, LockKind::RLock, "real.py:2 in <module>"));
    let barrier = Arc::new(Barrier::new(2));
    let worker = |name: &'static str, first: Arc<Lk>, second: Arc<Lk>| {
        let (d, barrier) = (d.clone(), barrier.clone());
        std::thread::spawn(move || {
            let me = register(&d, name);
            let s1 = diag::intern_site(&format!("real.py:10 in {name}"));
            let s2 = diag::intern_site(&format!("real.py:11 in {name}"));
            assert_eq!(first.acquire(&d, s1, None), Ok(true));
            barrier.wait();
            let r = second.acquire(&d, s2, None);
            if r == Ok(true) {
                second.release(&d);
            }
            first.release(&d);
            assert!(d.thread_exited(me).is_empty());
            r.err()
        })
    };
    let h1 = worker("worker-1", a.clone(), b.clone());
    let h2 = worker("worker-2", b.clone(), a.clone());
    let r1 = h1.join().unwrap();
    let r2 = h2.join().unwrap();
    let dl = match (r1, r2) {
        (Some(dl), None) | (None, Some(dl)) => dl,
        other => panic!("exactly one thread must see the deadlock: {other:?}"),
    };
    assert_eq!(dl.rule, DeadlockRule::Definite);
    assert_eq!(dl.threads.len(), 2);
    let mut names: Vec<String> = dl
        .threads
        .iter()
        .map(|c| c.thread.name.clone().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["worker-1", "worker-2"]);
    assert!(dl
        .threads
        .iter()
        .all(|c| c.held.len() == 1 && c.thread.native != 0));
    assert_eq!(dl.threads[0].thread.ident, dl.detected_by);

    // The timeline of it, as Perfetto would read it.
    let v = parse(&d);
    assert_eq!(v["displayTimeUnit"], "ms");
    let evs = events(&v);
    let pid = std::process::id();
    assert!(evs.iter().all(|e| e["pid"] == pid));
    let thread_names: Vec<&str> = evs
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| e["args"]["name"].as_str().unwrap())
        .collect();
    assert!(
        thread_names.contains(&"worker-1") && thread_names.contains(&"worker-2"),
        "{thread_names:?}"
    );
    let waits = evs.iter().filter(|e| {
        e["ph"] == "X"
            && e["name"]
                .as_str()
                .unwrap()
                .starts_with("wait RLock real.py:")
    });
    assert!(waits.count() >= 2);
    let holds: Vec<&Value> = evs
        .iter()
        .filter(|e| {
            e["ph"] == "X"
                && e["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("hold RLock real.py:")
        })
        .collect();
    assert!(holds.len() >= 3, "{holds:?}");
    assert!(holds.iter().all(|h| h["ts"].is_f64()
        && h["dur"].as_f64().unwrap() >= 0.0
        && h["args"]["open"] == false));
    let marker = evs
        .iter()
        .find(|e| e["ph"] == "i" && e["name"] == "deadlock")
        .expect("deadlock marker");
    assert!(marker["args"]["report"]
        .as_str()
        .unwrap()
        .contains("worker-"));
    // Profile: the lock the survivor waited for was contended.
    let st = d.stats();
    assert_eq!(st.iter().map(|s| s.acquisitions).sum::<u64>(), 3);
    assert_eq!(st.iter().map(|s| s.contended).sum::<u64>(), 1);
}

#[test]
fn real_event_handoff_is_silent() {
    // main: L.acquire(); start worker; L.acquire()  -- worker: L.release()
    let d = Arc::new(Diagnostics::new());
    d.set_flags(diag::ALL);
    let l = Arc::new(Lk::new(&d, 1, LockKind::Lock, "handoff.py:1 in <module>"));
    let me = register(&d, "MainThread");
    let site = diag::intern_site("handoff.py:2 in <module>");
    assert_eq!(l.acquire(&d, site, None), Ok(true));
    let started = Arc::new(Barrier::new(2));
    let h = {
        let (d, l, started) = (d.clone(), l.clone(), started.clone());
        std::thread::spawn(move || {
            let w = register(&d, "worker");
            started.wait();
            std::thread::sleep(Duration::from_millis(20));
            l.release(&d);
            d.thread_exited(w)
        })
    };
    started.wait();
    assert_eq!(
        l.acquire(&d, site, None),
        Ok(true),
        "self-wait on a signal lock while the worker runs"
    );
    assert!(h.join().unwrap().is_empty());
    l.release(&d);
    d.thread_exited(me);
    assert!(d.leaked_at_exit().is_empty());
    let v = parse(&d);
    assert!(!events(&v).iter().any(
        |e| e["ph"] == "i" && (e["name"] == "deadlock" || e["name"] == "lock-order inversion")
    ));
}

thread_local! {
    static NOW: Cell<u64> = const { Cell::new(5_000_000) };
}
fn fake_now() -> u64 {
    NOW.with(Cell::get)
}
fn advance(ns: u64) {
    NOW.with(|c| c.set(c.get() + ns));
}

#[test]
fn chrome_trace_shapes() {
    let d = Diagnostics::with_clock(fake_now);
    d.set_flags(diag::TRACE | diag::DEADLOCK);
    d.thread_started(1, 101, Some("Main \"quoted\" \u{e9}".into()));
    d.thread_started(2, 102, None);
    d.thread_named(2, "Renamed-2");
    d.lock_created(10, LockKind::Lock, diag::intern_site("tr.py:1 in <module>"));
    d.lock_created(
        20,
        LockKind::RLock,
        diag::intern_site("tr.py:2 in <module>"),
    );
    let s = diag::intern_site("tr.py:5 in f");
    d.acquired(1, 10, s, true, 0); // [0, 3000) on 101, released by 2
    advance(1000);
    d.acquired(1, 20, s, true, 0); // [1000, open) on 101
    d.wait_begin(2, 10, false); // [1000, 3000) on 102
    advance(2000);
    d.released(2, 10);
    d.wait_end(2, 10, true);
    d.acquired(2, 10, s, true, 2000); // [3000, 4000)
    advance(1000);
    d.released(2, 10);
    d.thread_exited(2);
    advance(500);
    let v = parse(&d);
    let evs = events(&v);
    let name_of = |tid: u64| {
        evs.iter()
            .find(|e| e["ph"] == "M" && e["name"] == "thread_name" && e["tid"] == tid)
            .map(|e| e["args"]["name"].as_str().unwrap().to_owned())
    };
    assert_eq!(name_of(101).as_deref(), Some("Main \"quoted\" \u{e9}"));
    assert_eq!(name_of(102).as_deref(), Some("Renamed-2"));
    assert!(evs
        .iter()
        .any(|e| e["ph"] == "M" && e["name"] == "process_name"));
    let x = |name: &str, tid: u64| -> Vec<(f64, f64, bool)> {
        evs.iter()
            .filter(|e| e["ph"] == "X" && e["name"] == name && e["tid"] == tid)
            .map(|e| {
                (
                    e["ts"].as_f64().unwrap(),
                    e["dur"].as_f64().unwrap(),
                    e["args"]["open"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        x("hold Lock tr.py:1 in <module>", 101),
        [(5000.0, 3.0, false)]
    );
    // Overlaps the first hold without nesting in it: an extra track of the thread.
    let rl = evs
        .iter()
        .find(|e| e["ph"] == "X" && e["name"] == "hold RLock tr.py:2 in <module>")
        .unwrap();
    assert_eq!(
        (
            rl["ts"].as_f64(),
            rl["dur"].as_f64(),
            rl["args"]["open"].as_bool()
        ),
        (Some(5001.0), Some(3.5), Some(true))
    );
    let lane = rl["tid"].as_u64().unwrap();
    assert_ne!(lane, 101);
    assert_eq!(
        name_of(lane).as_deref(),
        Some("Main \"quoted\" \u{e9} (overlapping holds 1)")
    );
    assert_eq!(
        x("wait Lock tr.py:1 in <module>", 102),
        [(5001.0, 2.0, false)]
    );
    assert_eq!(
        x("hold Lock tr.py:1 in <module>", 102),
        [(5003.0, 1.0, false)]
    );
    let hold = evs
        .iter()
        .find(|e| e["ph"] == "X" && e["tid"] == 101 && e["args"]["open"] == false)
        .unwrap();
    assert_eq!(hold["args"]["released_by_tid"], 102);
    assert_eq!(hold["args"]["acquired_at"], "tr.py:5 in f");
    assert!(evs
        .iter()
        .any(|e| e["ph"] == "i" && e["name"] == "thread exit" && e["tid"] == 102));
    // Everything is an object with the required keys.
    for e in evs {
        for k in ["name", "ph", "pid", "tid"] {
            assert!(e.get(k).is_some(), "{k} missing in {e}");
        }
    }
}

#[test]
fn chrome_trace_after_wrap_still_valid() {
    let d = Diagnostics::with_clock(fake_now);
    d.set_flags(diag::TRACE);
    d.set_timeline_capacity(5);
    d.thread_started(1, 1, Some("t".into()));
    for i in 0..7 {
        d.lock_created(
            i,
            LockKind::Lock,
            diag::intern_site("wrap.py:1 in <module>"),
        );
        d.acquired(1, i, diag::UNKNOWN_SITE, true, 0);
        advance(10);
        d.released(1, i);
    }
    assert_eq!(d.timeline().len(), 5);
    let v = parse(&d);
    let xs = events(&v).iter().filter(|e| e["ph"] == "X").count();
    assert_eq!(xs, 2, "the oldest hold lost its begin, so it is dropped");
    // Empty timeline: still a valid document.
    let d = Diagnostics::new();
    let v = parse(&d);
    assert_eq!(events(&v).len(), 1, "only the process name");
}

/// The process-wide instance; one test only, so nothing else races with it.
#[test]
fn global_instance_and_fork() {
    assert_eq!(diag::global().flags(), 0, "off by default");
    assert!(std::ptr::eq(diag::global(), diag::global()));
    diag::global().set_flags(diag::DEADLOCK | diag::LOCK_ORDER | diag::PROFILE);
    diag::global().set_deadlock_mode(diag::DeadlockMode::Raise);
    assert_eq!(diag::global().deadlock_mode(), diag::DeadlockMode::Raise);
    diag::global().set_report_timed(false);
    assert!(!diag::global().report_timed());
    diag::global().set_timeline_capacity(1 << 10);
    let me = ident::current();
    diag::global().thread_started(me, ident::native(), Some("MainThread".into()));
    diag::global().thread_started(2, 2, Some("other".into()));
    let ca = diag::intern_site("g.py:1 in <module>");
    let cb = diag::intern_site("g.py:2 in <module>");
    diag::global().lock_created(1, LockKind::Lock, ca);
    diag::global().lock_created(2, LockKind::Lock, cb);
    assert_eq!(
        diag::global().acquired(me, 1, diag::UNKNOWN_SITE, true, 0),
        None
    );
    assert_eq!(
        diag::global().acquired(me, 2, diag::UNKNOWN_SITE, true, 0),
        None
    );
    diag::global().released(me, 2);
    diag::global().released(me, 1);
    assert_eq!(
        diag::global().acquired(2, 2, diag::UNKNOWN_SITE, true, 0),
        None
    );
    assert!(
        diag::global()
            .acquired(2, 1, diag::UNKNOWN_SITE, true, 0)
            .is_none(),
        "inversions are kept to be judged with the whole run"
    );
    diag::global().released(2, 1);
    let v = diag::global().take_inversions();
    assert_eq!((v.reported.len(), v.suppressed.len()), (1, 0));
    assert_eq!(diag::global().wait_begin(me, 2, false), None);
    assert_eq!(diag::global().wait_chains().len(), 1);
    assert_eq!(diag::global().longest_waits(0).len(), 1);
    assert_eq!(diag::global().snapshot().threads.len(), 2);
    assert!(diag::global().detect_deadlock(me).is_none());
    assert_eq!(diag::global().stats().len(), 2);

    // fork: the child keeps only this thread.
    diag::before_fork();
    // SAFETY: the child only touches diag (its locks are held by this thread
    // across the fork) and the allocator (fork-safe in glibc), then _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = std::panic::catch_unwind(|| {
            diag::after_fork_child(me, 4242);
            let snap = diag::global().snapshot();
            snap.threads.len() == 1
                && snap.threads[0].thread.native == 4242
                && snap.threads[0].waiting.is_none()
                && diag::global().wait_chains().is_empty()
                && diag::global().stats().is_empty()
        })
        .unwrap_or(false);
        // SAFETY: leaving the child without running the parent's atexit handlers.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    diag::after_fork_parent();
    let mut status = 0;
    // SAFETY: waiting for the child we just forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status}"
    );
    assert_eq!(
        diag::global().snapshot().threads.len(),
        2,
        "the parent is untouched"
    );

    diag::global().wait_end(me, 2, false);
    diag::global().released(2, 2);
    diag::global().reset();
    diag::global().reset_stats();
    assert!(diag::global().stats().is_empty());
    assert!(diag::global().timeline().is_empty());
    assert!(diag::global().thread_exited(2).is_empty());
    assert_eq!(diag::global().leaked_at_exit().len(), 0);
    diag::global().set_flags(0);
    assert_eq!(diag::global().flags(), 0);
}
