//! Criterion benchmarks: `rsthread_core::RawLock` vs `parking_lot::RawMutex`
//! (through `lock_api::RawMutex`) vs `std::sync::Mutex<()>`.
//!
//! Every lock is driven through one small local trait, [`BenchLock`], so the
//! three run exactly the same loops:
//!
//! * `uncontended`: one thread, lock + unlock.
//! * `contended/{2,4,8}`: N threads each doing K lock/unlock pairs around a
//!   tiny critical section (a non-atomic counter increment); throughput is
//!   reported as lock/unlock pairs per second over all threads.
//! * `handoff/turn`: two threads take turns through the lock alone (a turn
//!   flag read and flipped under the lock); time per round trip (two handoffs).
//! * `handoff/release_by_other`: the shape of a Python `_thread.lock`
//!   ping-pong, where each thread releases a lock the *other* thread acquired.
//!   Only for locks that allow release from another thread (RawLock, and
//!   parking_lot's RawMutex with its `send_guard` feature); `std::sync::Mutex`
//!   cannot do this and is left out.
//!
//! Measurement times are kept short so `cargo bench` finishes in a few
//! minutes on 2 cores: `cargo bench --bench locks` (add `-- --quick` for a
//! smoke run).

use std::cell::UnsafeCell;
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use parking_lot::lock_api::RawMutex as _;
use rsthread_core::{Acquire, RawLock};

/// The one trait all three locks are benchmarked through.
trait BenchLock: Send + Sync + 'static {
    const NAME: &'static str;
    fn create() -> Self;
    /// Run `f` with the lock held.
    fn with<R>(&self, f: impl FnOnce() -> R) -> R;
}

/// Locks that any thread may release (needed for the Python-style ping-pong).
trait CrossRelease: BenchLock {
    fn acquire(&self);
    /// # Safety
    /// The lock must be held (by any thread).
    unsafe fn release(&self);
}

impl BenchLock for RawLock {
    const NAME: &'static str = "rsthread_core::RawLock";
    fn create() -> Self {
        RawLock::new()
    }
    #[inline]
    fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        CrossRelease::acquire(self);
        let r = f();
        // SAFETY: acquired just above.
        unsafe { CrossRelease::release(self) };
        r
    }
}

impl CrossRelease for RawLock {
    #[inline]
    fn acquire(&self) {
        // No deadline, no signals in this process: Interrupted cannot occur,
        // but loop on it anyway as the binding does.
        while RawLock::acquire(self, None) != Acquire::Acquired {}
    }
    #[inline]
    unsafe fn release(&self) {
        RawLock::release(self).expect("release of a held lock");
    }
}

impl BenchLock for parking_lot::RawMutex {
    const NAME: &'static str = "parking_lot::RawMutex";
    fn create() -> Self {
        <parking_lot::RawMutex as parking_lot::lock_api::RawMutex>::INIT
    }
    #[inline]
    fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        self.lock();
        let r = f();
        // SAFETY: locked just above, in this thread.
        unsafe { self.unlock() };
        r
    }
}

impl CrossRelease for parking_lot::RawMutex {
    #[inline]
    fn acquire(&self) {
        self.lock();
    }
    #[inline]
    unsafe fn release(&self) {
        // SAFETY: the caller guarantees the mutex is held; parking_lot's
        // `send_guard` feature (enabled in Cargo.toml) makes its GuardMarker
        // GuardSend, i.e. unlocking from another thread is allowed.
        unsafe { self.unlock() };
    }
}

struct StdMutex(std::sync::Mutex<()>);

impl BenchLock for StdMutex {
    const NAME: &'static str = "std::sync::Mutex<()>";
    fn create() -> Self {
        StdMutex(std::sync::Mutex::new(()))
    }
    #[inline]
    fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        let _g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f()
    }
}

/// A counter only ever touched under the lock it is paired with.
struct Guarded<L> {
    lock: L,
    value: UnsafeCell<u64>,
}
// SAFETY: `value` is only accessed while `lock` is held.
unsafe impl<L: Sync> Sync for Guarded<L> {}

const CONTENDED_OPS_PER_THREAD: u64 = 20_000;

fn uncontended<L: BenchLock>(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncontended");
    g.throughput(Throughput::Elements(1));
    let l = L::create();
    g.bench_function(L::NAME, |b| b.iter(|| l.with(|| black_box(()))));
    g.finish();
}

/// `threads` threads each doing `ops` lock/unlock pairs; returns the wall time
/// from the first thread starting its loop to the last one finishing it.
///
/// Each worker takes its own start and end time: on a loaded 2-core machine
/// the coordinating thread may be scheduled late after the start barrier, so
/// timing from it would miss part of the work.
fn contended_run<L: BenchLock>(threads: usize, ops: u64) -> Duration {
    let shared = Arc::new(Guarded {
        lock: L::create(),
        value: UnsafeCell::new(0),
    });
    let start = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (shared, start) = (shared.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let t0 = Instant::now();
                for _ in 0..ops {
                    shared.lock.with(|| {
                        // SAFETY: under the lock.
                        unsafe { *shared.value.get() += 1 };
                    });
                }
                (t0, Instant::now())
            })
        })
        .collect();
    let spans: Vec<(Instant, Instant)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let first = spans.iter().map(|s| s.0).min().unwrap();
    let last = spans.iter().map(|s| s.1).max().unwrap();
    // SAFETY: all threads joined.
    assert_eq!(
        unsafe { *shared.value.get() },
        threads as u64 * ops,
        "lost update"
    );
    last - first
}

fn contended<L: BenchLock>(c: &mut Criterion) {
    let mut g = c.benchmark_group("contended");
    for threads in [2usize, 4, 8] {
        g.throughput(Throughput::Elements(
            threads as u64 * CONTENDED_OPS_PER_THREAD,
        ));
        g.bench_with_input(
            BenchmarkId::new(L::NAME, threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| contended_run::<L>(threads, CONTENDED_OPS_PER_THREAD))
                        .sum()
                })
            },
        );
    }
    g.finish();
}

/// Two threads take turns through the lock alone: each waits (polling under
/// the lock) until the turn flag names it, then hands the turn over.
fn handoff_turn<L: BenchLock>(c: &mut Criterion) {
    let mut g = c.benchmark_group("handoff");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("turn", L::NAME), |b| {
        b.iter_custom(|rounds| {
            let shared = Arc::new((L::create(), AtomicU32::new(0)));
            let start = Arc::new(Barrier::new(2));
            let take_turn = |shared: &(L, AtomicU32), me: u32| {
                let mut spins = 0u32;
                loop {
                    // Relaxed: the lock orders every access to the flag.
                    let mine = shared.0.with(|| {
                        if shared.1.load(Ordering::Relaxed) == me {
                            shared.1.store(1 - me, Ordering::Relaxed);
                            true
                        } else {
                            false
                        }
                    });
                    if mine {
                        break;
                    }
                    // Poll politely: spin a little, then let the other thread
                    // run (with 2 cores and other load, pure spinning can burn
                    // whole time slices while the turn-holder is descheduled).
                    spins += 1;
                    if spins % 64 == 0 {
                        std::thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                }
            };
            let other = {
                let (shared, start) = (shared.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    for _ in 0..rounds {
                        take_turn(&shared, 1);
                    }
                })
            };
            start.wait();
            let t0 = Instant::now();
            for _ in 0..rounds {
                take_turn(&shared, 0);
            }
            other.join().unwrap();
            t0.elapsed()
        })
    });
    g.finish();
}

/// Python's lock ping-pong: `ping` and `pong` start held; each thread
/// releases the lock the other one waits on, then blocks on its own.
fn handoff_release_by_other<L: CrossRelease>(c: &mut Criterion) {
    let mut g = c.benchmark_group("handoff");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("release_by_other", L::NAME), |b| {
        b.iter_custom(|rounds| {
            let locks = Arc::new((L::create(), L::create()));
            locks.0.acquire();
            locks.1.acquire();
            let start = Arc::new(Barrier::new(2));
            let other = {
                let (locks, start) = (locks.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    for _ in 0..rounds {
                        locks.0.acquire(); // wait for ping
                                           // SAFETY: `pong` is held (by the main thread's acquire or the start).
                        unsafe { locks.1.release() }; // send pong
                    }
                })
            };
            start.wait();
            let t0 = Instant::now();
            for _ in 0..rounds {
                // SAFETY: `ping` is held (from the start or the other thread's acquire).
                unsafe { locks.0.release() }; // send ping
                locks.1.acquire(); // wait for pong
            }
            let elapsed = t0.elapsed();
            other.join().unwrap();
            // Leave both locks free.
            // SAFETY: `ping` was taken by the other thread's last acquire, `pong` by ours.
            unsafe {
                locks.0.release();
                locks.1.release();
            }
            elapsed
        })
    });
    g.finish();
}

fn all(c: &mut Criterion) {
    uncontended::<RawLock>(c);
    uncontended::<parking_lot::RawMutex>(c);
    uncontended::<StdMutex>(c);

    contended::<RawLock>(c);
    contended::<parking_lot::RawMutex>(c);
    contended::<StdMutex>(c);

    handoff_turn::<RawLock>(c);
    handoff_turn::<parking_lot::RawMutex>(c);
    handoff_turn::<StdMutex>(c);

    handoff_release_by_other::<RawLock>(c);
    handoff_release_by_other::<parking_lot::RawMutex>(c);
}

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = all
}
criterion_main!(benches);
