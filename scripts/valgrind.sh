#!/usr/bin/env bash
# Run the standalone RawLock/RawRLock stress (crates/rsthread-core/examples/stress.rs:
# 8 threads x 2000 critical sections per round; 1, 4 and 16 locks; Lock and RLock)
# under valgrind memcheck with --leak-check=full --error-exitcode=1. That is the gate.
#
# Built into target/valgrind with the shipped configuration. rustix reads the
# aux vector through glibc's getauxval (feature `use-libc-auxv`, set in the
# workspace Cargo.toml): its default reads the kernel's auxv (PR_GET_AUXV or
# /proc/self/auxv), whose vDSO address valgrind does not map, so the first
# clock_gettime crashed in rustix's check_elf_base (rustix issue #1559).
# Under valgrind getauxval reports no vDSO and rustix makes the system call.
# When .venv has rsthread, the extension itself is also run once under
# valgrind (a timed acquire: clock_gettime, futex wait with a deadline).
#
# VALGRIND_RACE=1 also runs drd and helgrind and prints their summaries. They
# are not a gate: neither models C11 atomics nor futex hand-offs, so they
# report races in Rust's own std (its atomic spin lock in thread start-up) as
# well as in the futex word, even with the happens-before annotations the
# example makes around every acquire/release. See docs/RELIABILITY.md.
#
# Usage: scripts/valgrind.sh [example args, e.g. --threads 4 --ops 500]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind: not installed" >&2; exit 1; }
CARGO_TARGET_DIR=target/valgrind \
  cargo build -q -p rsthread-core --example stress
BIN=target/valgrind/debug/examples/stress
ARGS=(--threads 8 --ops 2000 --locks 1,4,16 --watchdog 600 "$@")

echo "== memcheck"
valgrind --tool=memcheck --error-exitcode=1 --quiet --leak-check=full \
  --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible \
  "$BIN" "${ARGS[@]}"
echo "== memcheck: clean"

if [ -x .venv/bin/python ] && .venv/bin/python -c 'import rsthread._thread' 2>/dev/null; then
  echo "== rsthread._thread under valgrind (timed acquire)"
  valgrind --tool=none --quiet .venv/bin/python -c '
import rsthread; rsthread.install()
import rsthread._thread as T, threading
l = T.allocate_lock(); l.acquire()
assert l.acquire(True, 0.01) is False
t = threading.Thread(target=l.release); t.start(); t.join()
assert l.acquire(True, 5) is True
print("rsthread under valgrind: ok")'
fi

if [ "${VALGRIND_RACE:-0}" = 1 ]; then
  for tool in drd helgrind; do
    echo "== $tool (informational)"
    valgrind --tool="$tool" "$BIN" "${ARGS[@]}" 2>&1 | grep -E "ERROR SUMMARY|stress: " || true
  done
fi
