#!/usr/bin/env bash
# Long reliability run (minutes; NOT part of scripts/test.sh).
#
#   1. the Rust stress example (crates/rsthread-core/examples/stress.rs), release
#      build, 64 threads x 20000 critical sections per round, 1/4/16 Locks and
#      RLocks, repeated for SOAK_MINUTES (default 5) minutes;
#   2. tests/python/test_reliability.py with RSTHREAD_SOAK=1: the same Python
#      scenarios with bigger counts (1000 threads x 400 ops per counter test,
#      1000 fork/exit iterations -> 300 forks and 1000 shutdowns, 10,000,000
#      locks and 1,000,000 threads created and dropped, ...). Figures are
#      printed as `FIGURES {...}` lines.
#
# Usage: scripts/soak.sh [minutes]      (or SOAK_MINUTES=N scripts/soak.sh)
set -uo pipefail
cd "$(dirname "$0")/.."
MIN="${1:-${SOAK_MINUTES:-5}}"
rc=0
echo "== rust stress example, ${MIN} min"
cargo run -q --release -p rsthread-core --example stress -- \
  --threads 64 --ops 20000 --locks 1,4,16 --seconds $((MIN * 60)) --watchdog 300 || rc=1
echo "== python reliability (RSTHREAD_SOAK=1)"
RSTHREAD_SOAK=1 .venv/bin/python -m pytest -q -s -p no:cacheprovider -o timeout=3600 \
  tests/python/test_reliability.py || rc=1
[ "$rc" = 0 ] && echo "soak: ok" || echo "soak: FAILED"
exit "$rc"
