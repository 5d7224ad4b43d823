//! Standalone stress run of `RawLock` and `RawRLock` (no proptest): many
//! threads hammer a few locks with plain (non-atomic) counters that must come
//! out exact. Used three ways:
//!
//! * `tests/stress.rs` includes this file and runs short rounds under `cargo test`;
//! * `scripts/valgrind.sh` runs it under memcheck and drd/helgrind
//!   (`cargo run --example stress -- --threads 8 --ops 2000`);
//! * `scripts/soak.sh` runs it for minutes (`-- --seconds 300`).
//!
//! Per round, for each lock count in `--locks`:
//!
//! * **lock**: every thread does `--ops` critical sections on a random
//!   `RawLock`. Threads differ in how they acquire: untimed, timed with a
//!   random 0–2 ms timeout (retried; a time-out must never come early), a
//!   `try_acquire` spin, or a *hand-off*: the thread acquires, increments,
//!   and passes the held lock to its own releaser thread, which increments
//!   again and releases it (release by a thread that never acquired). Half
//!   the threads acquire with adaptive spinning (per-lock `SpinScore`).
//!   Each critical section also checks a per-lock "inside" flag, so two
//!   holders at once are caught directly, not only as a lost update.
//! * **rlock**: every thread does `--ops` holds of a random `RawRLock`
//!   (untimed, timed or try), re-enters it 1–3 levels deep checking
//!   `count()`/`is_owned_by()`, sometimes does a `release_save` /
//!   `acquire_inner_blocking` / `restore` round trip (what
//!   `Condition.wait` does), and first tries a release it does not own
//!   (must be `Err` and disturb nothing).
//!
//! Every thread must finish its quota (no starvation): a watchdog fails the
//! run, naming the threads that did not, if a round takes longer than
//! `--watchdog` seconds. Exit status 0 = all good, 1 = a check failed.
//!
//! Valgrind's race detectors do not understand futex hand-offs, so each
//! acquire/release is annotated with `ANNOTATE_HAPPENS_AFTER/BEFORE` on the
//! lock's address (a client request: a no-op when not under valgrind).
#![allow(dead_code)]

use rsthread_core::{Acquire, Deadline, RawLock, RawRLock, ReleaseError, SpinScore};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// Valgrind client requests (helgrind and drd share these codes: see
/// `_VG_USERREQ__HG_USERSO_SEND_PRE` in helgrind.h and
/// `VG_USERREQ__DRD_ANNOTATE_HAPPENS_BEFORE` in drd.h).
mod vg {
    const HAPPENS_BEFORE: u64 = 0x4847_0121;
    const HAPPENS_AFTER: u64 = 0x4847_0122;

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn request(req: u64, arg: usize) {
        let args: [u64; 6] = [req, arg as u64, 0, 0, 0, 0];
        let mut res: u64 = 0;
        // SAFETY: valgrind's amd64 "special instruction" sequence: four rotates
        // of rdi totalling 128 bits and `xchg rbx, rbx` leave every register
        // unchanged when not running under valgrind; under valgrind it reads
        // the argument block at rax and writes the result to rdx.
        unsafe {
            std::arch::asm!(
                "rol rdi, 3", "rol rdi, 13", "rol rdi, 61", "rol rdi, 51",
                "xchg rbx, rbx",
                inout("rdx") res,
                in("rax") args.as_ptr(),
                out("rdi") _,
                options(nostack),
            );
        }
        let _ = res;
    }
    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    fn request(_req: u64, _arg: usize) {}

    /// Everything this thread did so far happens before a later `after(obj)`.
    #[inline(always)]
    pub fn before<T>(obj: &T) {
        request(HAPPENS_BEFORE, obj as *const T as usize);
    }
    /// Everything before a matching `before(obj)` is visible from here on.
    #[inline(always)]
    pub fn after<T>(obj: &T) {
        request(HAPPENS_AFTER, obj as *const T as usize);
    }
}

/// A plain counter, only touched under its lock.
struct Counter(UnsafeCell<u64>);
// SAFETY: every access happens while holding the lock the counter belongs to
// (that is what the stress run checks).
unsafe impl Sync for Counter {}
impl Counter {
    fn new() -> Counter {
        Counter(UnsafeCell::new(0))
    }
    /// A deliberately non-atomic read-modify-write: lost updates show up
    /// as a wrong total if mutual exclusion ever fails.
    fn bump(&self) {
        // SAFETY: caller holds the lock (see the Sync impl).
        unsafe {
            let v = std::ptr::read_volatile(self.0.get());
            std::hint::spin_loop();
            std::ptr::write_volatile(self.0.get(), v + 1);
        }
    }
    fn get(&self) -> u64 {
        // SAFETY: read after every thread has been joined.
        unsafe { *self.0.get() }
    }
}

/// A tiny xorshift generator (no dependencies; deterministic per thread).
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Worker threads per round.
    pub threads: usize,
    /// Critical sections per worker per round.
    pub ops: u64,
    /// Lock counts to run a round with.
    pub locks: Vec<usize>,
    /// A round that takes longer than this fails (some thread starved or hung).
    pub watchdog: Duration,
    /// Print a line per round.
    pub verbose: bool,
}

/// What one round measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Critical sections completed (equals threads × ops).
    pub ops: u64,
    /// Timed acquires that timed out (and were retried).
    pub timeouts: u64,
    /// Hand-offs (acquired by one thread, released by another).
    pub handoffs: u64,
    /// release_save/restore round trips (RLock).
    pub save_restores: u64,
    /// Longest time any single acquire took.
    pub max_wait: Duration,
    /// Wall time of the round.
    pub elapsed: Duration,
}

/// Wait for every thread of a round, or fail naming the ones that did not finish.
fn watch(progress: &[AtomicU64], quota: u64, deadline: Duration, what: &str) -> Result<(), String> {
    let t0 = Instant::now();
    loop {
        if progress.iter().all(|p| p.load(Ordering::Relaxed) >= quota) {
            return Ok(());
        }
        if t0.elapsed() > deadline {
            let behind: Vec<String> = progress
                .iter()
                .enumerate()
                .filter(|(_, p)| p.load(Ordering::Relaxed) < quota)
                .map(|(i, p)| format!("t{i}:{}/{quota}", p.load(Ordering::Relaxed)))
                .collect();
            return Err(format!(
                "{what}: {} thread(s) did not finish within {deadline:?}: {}",
                behind.len(),
                behind.join(" ")
            ));
        }
        thread::sleep(Duration::from_millis(5));
    }
}

fn max_dur(a: &AtomicU64, d: Duration) {
    a.fetch_max(d.as_nanos() as u64, Ordering::Relaxed);
}

/// One round of the `RawLock` stress with `nlocks` locks.
pub fn lock_round(cfg: &Config, nlocks: usize, seed: u64) -> Result<Report, String> {
    struct Shared {
        locks: Vec<RawLock>,
        scores: Vec<SpinScore>,
        counters: Vec<Counter>,
        inside: Vec<AtomicBool>,
        progress: Vec<AtomicU64>,
        timeouts: AtomicU64,
        handoffs: AtomicU64,
        max_wait: AtomicU64,
        failed: AtomicBool,
    }
    let sh = Arc::new(Shared {
        locks: (0..nlocks).map(|_| RawLock::new()).collect(),
        scores: (0..nlocks).map(|_| SpinScore::new()).collect(),
        counters: (0..nlocks).map(|_| Counter::new()).collect(),
        inside: (0..nlocks).map(|_| AtomicBool::new(false)).collect(),
        progress: (0..cfg.threads).map(|_| AtomicU64::new(0)).collect(),
        timeouts: AtomicU64::new(0),
        handoffs: AtomicU64::new(0),
        max_wait: AtomicU64::new(0),
        failed: AtomicBool::new(false),
    });
    let fail = |sh: &Shared, msg: String| {
        if !sh.failed.swap(true, Ordering::Relaxed) {
            eprintln!("stress: {msg}");
        }
    };
    let enter = move |sh: &Shared, k: usize| {
        vg::after(&sh.locks[k]);
        if sh.inside[k].swap(true, Ordering::Relaxed) {
            fail(sh, format!("two holders of lock {k} at once"));
        }
    };
    let leave = move |sh: &Shared, k: usize| {
        sh.inside[k].store(false, Ordering::Relaxed);
        vg::before(&sh.locks[k]);
    };

    let t0 = Instant::now();
    let mut handles = Vec::new();
    // Start together, so every thread contends from its first operation.
    let start = Arc::new(Barrier::new(cfg.threads));
    for i in 0..cfg.threads {
        let sh = sh.clone();
        let ops = cfg.ops;
        let start = start.clone();
        handles.push(thread::spawn(move || {
            let mut rng = Rng::new(seed ^ (i as u64 + 1));
            let mode = i % 4;
            // Half the threads acquire with adaptive spinning (per-lock scores).
            let adaptive = i % 8 >= 4;
            // Mode 3: a releaser thread of our own receives held locks and releases them.
            let releaser = (mode == 3).then(|| {
                let (tx, rx) = sync_channel::<usize>(1);
                let sh = sh.clone();
                let h = thread::spawn(move || {
                    for k in rx {
                        sh.counters[k].bump();
                        leave(&sh, k);
                        if sh.locks[k].release().is_err() {
                            fail(
                                &sh,
                                format!("hand-off release of lock {k} failed: not locked"),
                            );
                        }
                        sh.handoffs.fetch_add(1, Ordering::Relaxed);
                    }
                });
                (tx, h)
            });
            start.wait();
            for _ in 0..ops {
                let k = rng.below(nlocks as u64) as usize;
                let l = &sh.locks[k];
                let w0 = Instant::now();
                match mode {
                    1 => loop {
                        let to = Duration::from_micros(rng.below(2000));
                        let t = Instant::now();
                        let d = Some(Deadline::after(to));
                        let r = if adaptive {
                            l.acquire_adaptive(d, &sh.scores[k])
                        } else {
                            l.acquire(d)
                        };
                        match r {
                            Acquire::Acquired => break,
                            Acquire::TimedOut => {
                                if t.elapsed() < to {
                                    fail(
                                        &sh,
                                        format!(
                                            "timed acquire returned after {:?} < {to:?}",
                                            t.elapsed()
                                        ),
                                    );
                                }
                                sh.timeouts.fetch_add(1, Ordering::Relaxed);
                            }
                            Acquire::Interrupted => fail(&sh, "Interrupted with no signal".into()),
                        }
                    },
                    2 => {
                        while !l.try_acquire() {
                            thread::yield_now();
                        }
                    }
                    _ => {
                        let r = if adaptive {
                            l.acquire_adaptive(None, &sh.scores[k])
                        } else {
                            l.acquire(None)
                        };
                        if r != Acquire::Acquired {
                            fail(&sh, "untimed acquire did not acquire".into());
                        }
                    }
                }
                max_dur(&sh.max_wait, w0.elapsed());
                enter(&sh, k);
                sh.counters[k].bump();
                if let Some((tx, _)) = &releaser {
                    tx.send(k).unwrap();
                } else {
                    leave(&sh, k);
                    if l.release().is_err() {
                        fail(&sh, format!("release of held lock {k} failed"));
                    }
                }
                sh.progress[i].fetch_add(1, Ordering::Relaxed);
            }
            if let Some((tx, h)) = releaser {
                drop(tx);
                h.join().unwrap();
            }
        }));
    }
    let watched = watch(
        &sh.progress,
        cfg.ops,
        cfg.watchdog,
        &format!("lock round ({nlocks} locks)"),
    );
    watched?;
    for h in handles {
        h.join().map_err(|_| "a worker panicked".to_string())?;
    }
    let elapsed = t0.elapsed();
    let handoffs = sh.handoffs.load(Ordering::Relaxed);
    let total: u64 = sh.counters.iter().map(Counter::get).sum();
    let expect = cfg.threads as u64 * cfg.ops + handoffs;
    let expected_handoffs = (0..cfg.threads).filter(|i| i % 4 == 3).count() as u64 * cfg.ops;
    if sh.failed.load(Ordering::Relaxed) {
        return Err("a check failed (see above)".into());
    }
    if handoffs != expected_handoffs {
        return Err(format!(
            "hand-offs: {handoffs}, expected {expected_handoffs}"
        ));
    }
    if total != expect {
        return Err(format!(
            "lock counters sum to {total}, expected {expect} (lost update)"
        ));
    }
    if let Some(k) = sh.locks.iter().position(RawLock::is_locked) {
        return Err(format!("lock {k} still locked at the end"));
    }
    Ok(Report {
        ops: cfg.threads as u64 * cfg.ops,
        timeouts: sh.timeouts.load(Ordering::Relaxed),
        handoffs,
        save_restores: 0,
        max_wait: Duration::from_nanos(sh.max_wait.load(Ordering::Relaxed)),
        elapsed,
    })
}

/// One round of the `RawRLock` stress with `nlocks` RLocks.
pub fn rlock_round(cfg: &Config, nlocks: usize, seed: u64) -> Result<Report, String> {
    struct Shared {
        locks: Vec<RawRLock>,
        counters: Vec<Counter>,
        inside: Vec<AtomicBool>,
        progress: Vec<AtomicU64>,
        timeouts: AtomicU64,
        save_restores: AtomicU64,
        max_wait: AtomicU64,
        failed: AtomicBool,
        expected: AtomicU64,
    }
    let sh = Arc::new(Shared {
        expected: AtomicU64::new(0),
        locks: (0..nlocks).map(|_| RawRLock::new()).collect(),
        counters: (0..nlocks).map(|_| Counter::new()).collect(),
        inside: (0..nlocks).map(|_| AtomicBool::new(false)).collect(),
        progress: (0..cfg.threads).map(|_| AtomicU64::new(0)).collect(),
        timeouts: AtomicU64::new(0),
        save_restores: AtomicU64::new(0),
        max_wait: AtomicU64::new(0),
        failed: AtomicBool::new(false),
    });
    let fail = |sh: &Shared, msg: String| {
        if !sh.failed.swap(true, Ordering::Relaxed) {
            eprintln!("stress: {msg}");
        }
    };
    let t0 = Instant::now();
    let mut handles = Vec::new();
    // Start together, so every thread contends from its first operation.
    let start = Arc::new(Barrier::new(cfg.threads));
    for i in 0..cfg.threads {
        let sh = sh.clone();
        let ops = cfg.ops;
        let start = start.clone();
        handles.push(thread::spawn(move || {
            let me = i as u64 + 1;
            let mut rng = Rng::new(seed ^ (me << 32));
            let mut bumped = 0u64;
            start.wait();
            for _ in 0..ops {
                let k = rng.below(nlocks as u64) as usize;
                let l = &sh.locks[k];
                // A release by a non-owner: Err, and the owner (checked below) sees no change.
                if l.release(me) != Err(ReleaseError::NotOwner) {
                    fail(&sh, format!("release of rlock {k} by non-owner {me} did not fail"));
                }
                let w0 = Instant::now();
                let got = match l.try_acquire(me) {
                    Ok(true) => true,
                    Ok(false) => match i % 3 {
                        0 => loop {
                            match l.acquire_contended(me, None) {
                                Acquire::Acquired => break true,
                                r => fail(&sh, format!("untimed rlock acquire gave {r:?}")),
                            }
                        },
                        1 => loop {
                            let to = Duration::from_micros(rng.below(500));
                            let t = Instant::now();
                            match l.acquire_contended(me, Some(Deadline::after(to))) {
                                Acquire::Acquired => break true,
                                Acquire::TimedOut => {
                                    if t.elapsed() < to {
                                        fail(&sh, format!("timed rlock acquire returned after {:?} < {to:?}", t.elapsed()));
                                    }
                                    sh.timeouts.fetch_add(1, Ordering::Relaxed);
                                    // Retry from the non-blocking path, like the binding.
                                    if l.try_acquire(me) == Ok(true) {
                                        break true;
                                    }
                                }
                                Acquire::Interrupted => fail(&sh, "Interrupted with no signal".into()),
                            }
                        },
                        _ => loop {
                            thread::yield_now();
                            if l.try_acquire(me) == Ok(true) {
                                break true;
                            }
                        },
                    },
                    Err(e) => {
                        fail(&sh, format!("try_acquire: {e:?}"));
                        false
                    }
                };
                if !got {
                    return;
                }
                max_dur(&sh.max_wait, w0.elapsed());
                vg::after(l);
                if sh.inside[k].swap(true, Ordering::Relaxed) {
                    fail(&sh, format!("two owners of rlock {k} at once"));
                }
                let depth = 1 + rng.below(3);
                for d in 1..=depth {
                    if d > 1 && l.try_acquire(me) != Ok(true) {
                        fail(&sh, format!("re-entry of rlock {k} failed"));
                    }
                    if l.count() != d || !l.is_owned_by(me) || l.owner() != me {
                        fail(&sh, format!("rlock {k}: count {} owner {} at depth {d} of {me}", l.count(), l.owner()));
                    }
                    sh.counters[k].bump();
                    bumped += 1;
                }
                if rng.below(8) == 0 {
                    // Condition.wait's round trip: give it up entirely, then take it back.
                    sh.inside[k].store(false, Ordering::Relaxed);
                    vg::before(l);
                    match l.release_save() {
                        Some((c, o)) if c == depth && o == me => {}
                        other => fail(&sh, format!("release_save gave {other:?}, expected ({depth}, {me})")),
                    }
                    thread::yield_now();
                    l.acquire_inner_blocking();
                    l.restore(me, depth);
                    vg::after(l);
                    if sh.inside[k].swap(true, Ordering::Relaxed) {
                        fail(&sh, format!("two owners of rlock {k} after restore"));
                    }
                    if l.count() != depth || !l.is_owned_by(me) {
                        fail(&sh, format!("restore of rlock {k}: count {}", l.count()));
                    }
                    sh.save_restores.fetch_add(1, Ordering::Relaxed);
                }
                for d in (1..=depth).rev() {
                    if d == 1 {
                        sh.inside[k].store(false, Ordering::Relaxed);
                        vg::before(l);
                    }
                    if l.release(me).is_err() {
                        fail(&sh, format!("owner release of rlock {k} failed"));
                    }
                }
                sh.progress[i].fetch_add(1, Ordering::Relaxed);
            }
            sh.expected.fetch_add(bumped, Ordering::Relaxed);
        }));
    }
    watch(
        &sh.progress,
        cfg.ops,
        cfg.watchdog,
        &format!("rlock round ({nlocks} rlocks)"),
    )?;
    for h in handles {
        h.join().map_err(|_| "a worker panicked".to_string())?;
    }
    let elapsed = t0.elapsed();
    if sh.failed.load(Ordering::Relaxed) {
        return Err("a check failed (see above)".into());
    }
    // Each thread counted the levels it bumped on its own; the shared
    // counters (bumped under the locks) must add up to exactly that.
    let expect = sh.expected.load(Ordering::Relaxed);
    let total: u64 = sh.counters.iter().map(Counter::get).sum();
    if total != expect {
        return Err(format!(
            "rlock counters sum to {total}, expected {expect} (lost update)"
        ));
    }
    if let Some(k) = sh.locks.iter().position(RawRLock::is_locked) {
        return Err(format!("rlock {k} still locked at the end"));
    }
    Ok(Report {
        ops: cfg.threads as u64 * cfg.ops,
        timeouts: sh.timeouts.load(Ordering::Relaxed),
        handoffs: 0,
        save_restores: sh.save_restores.load(Ordering::Relaxed),
        max_wait: Duration::from_nanos(sh.max_wait.load(Ordering::Relaxed)),
        elapsed,
    })
}

fn parse_args() -> (Config, Option<Duration>) {
    let mut cfg = Config {
        threads: 8,
        ops: 2000,
        locks: vec![1, 4, 16],
        watchdog: Duration::from_secs(120),
        verbose: true,
    };
    let mut seconds = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--threads" => cfg.threads = val().parse().expect("--threads N"),
            "--ops" => cfg.ops = val().parse().expect("--ops N"),
            "--locks" => cfg.locks = val().split(',').map(|s| s.parse().expect("--locks 1,4,16")).collect(),
            "--seconds" => seconds = Some(Duration::from_secs(val().parse().expect("--seconds N"))),
            "--watchdog" => cfg.watchdog = Duration::from_secs(val().parse().expect("--watchdog SECONDS")),
            "--quiet" => cfg.verbose = false,
            _ => panic!("usage: stress [--threads N] [--ops N] [--locks 1,4,16] [--seconds N] [--watchdog S] [--quiet]"),
        }
    }
    (cfg, seconds)
}

fn main() {
    let (cfg, seconds) = parse_args();
    let t0 = Instant::now();
    let mut rounds = 0u64;
    let mut ops = 0u64;
    let mut seed = 1u64;
    loop {
        for &n in &cfg.locks {
            for (kind, r) in [
                ("lock", lock_round(&cfg, n, seed)),
                ("rlock", rlock_round(&cfg, n, seed)),
            ] {
                match r {
                    Ok(rep) => {
                        ops += rep.ops;
                        if cfg.verbose {
                            println!(
                                "{kind:5} locks={n:2} threads={} ops={} timeouts={} handoffs={} save_restores={} max_wait={:?} elapsed={:?}",
                                cfg.threads, rep.ops, rep.timeouts, rep.handoffs, rep.save_restores, rep.max_wait, rep.elapsed
                            );
                        }
                    }
                    Err(e) => {
                        eprintln!("stress: FAILED ({kind}, {n} locks, seed {seed}): {e}");
                        std::process::exit(1);
                    }
                }
            }
            seed += 1;
        }
        rounds += 1;
        if seconds.is_none_or(|s| t0.elapsed() >= s) {
            break;
        }
    }
    println!(
        "stress: ok: {rounds} round(s), {ops} critical sections, {} threads, {:?}",
        cfg.threads,
        t0.elapsed()
    );
}
