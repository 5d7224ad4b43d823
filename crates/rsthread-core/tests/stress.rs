//! Short stress of `RawLock` / `RawRLock` under `cargo test` (< 20 s in
//! debug): 64 threads hammering 1, 4 and 16 locks with plain counters that
//! must come out exact; untimed, timed, try-spin and hand-off (acquired by
//! one thread, released by another) acquirers mixed; every thread must finish
//! its quota before a watchdog fires (no thread starves forever).
//!
//! The work itself lives in `examples/stress.rs` (shared with
//! `scripts/valgrind.sh` and `scripts/soak.sh`); see its docs for what each
//! round checks.

#[path = "../examples/stress.rs"]
mod stress; // it allows its own dead code (main() is unused here)

use std::time::Duration;
use stress::{lock_round, rlock_round, Config};

const THREADS: usize = 64;

fn cfg(ops: u64) -> Config {
    Config {
        threads: THREADS,
        ops,
        locks: vec![],
        watchdog: Duration::from_secs(60),
        verbose: false,
    }
}

#[test]
fn raw_lock_64_threads() {
    let c = cfg(8000);
    for (seed, n) in [1usize, 4, 16].into_iter().enumerate() {
        match lock_round(&c, n, seed as u64 + 1) {
            Ok(r) => {
                assert_eq!(r.ops, THREADS as u64 * c.ops);
                assert_eq!(
                    r.handoffs,
                    (THREADS as u64 / 4) * c.ops,
                    "every hand-off thread's releases happened"
                );
                eprintln!("lock  locks={n:2}: {r:?}");
            }
            Err(e) => panic!("lock round with {n} locks: {e}"),
        }
    }
}

#[test]
fn raw_rlock_64_threads() {
    let c = cfg(8000);
    for (seed, n) in [1usize, 4, 16].into_iter().enumerate() {
        match rlock_round(&c, n, seed as u64 + 11) {
            Ok(r) => {
                assert_eq!(r.ops, THREADS as u64 * c.ops);
                eprintln!("rlock locks={n:2}: {r:?}");
            }
            Err(e) => panic!("rlock round with {n} locks: {e}"),
        }
    }
}
