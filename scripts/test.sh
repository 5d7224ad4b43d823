#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run every test: Rust unit and integration
# tests, loom model checking, pytest, stub check, and CPython's own threading
# suites on stock _thread and on rsthread side by side; then the same on
# CPython 3.12-3.15 (scripts/versions.sh: one summary line per version).
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || { echo "test: setup failed"; echo "tests: 0 passed, 1 failed"; exit 1; }

passed=0; failed=0; failures=()
stage() {
  local name="$1"; shift
  echo; echo "=== $name: $*"
  if "$@"; then passed=$((passed+1)); echo "=== $name: ok"
  else failed=$((failed+1)); failures+=("$name"); echo "=== $name: FAILED"; fi
}

# Gates first: fast, and a failure here says what to fix before the long stages.
stage fmt cargo fmt --all -- --check
stage clippy cargo clippy --workspace --all-targets -- -D warnings
stage doc env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
stage ruff .venv/bin/ruff check python tests benchmarks examples scripts
stage rust-core cargo test -p rsthread-core
stage rust-binding cargo test -p rsthread-py
stage loom env RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=3 \
  cargo test -p rsthread-core --release --test loom
stage pytest .venv/bin/python -m pytest -q -p no:cacheprovider tests/python
stage stubtest .venv/bin/python -m mypy.stubtest rsthread._thread --allowlist tests/stubtest-allowlist.txt
stage valgrind scripts/valgrind.sh
stage cpython-suites .venv/bin/python tests/cpython/compare.py
# Issue 16's whole list (queue, tempfile, sched, logging, thread pool too)
# with RSTHREAD=1: child interpreters run rsthread as well; as on every
# other version (scripts/versions.sh).
stage cpython-suites-everywhere .venv/bin/python tests/cpython/compare.py --everywhere --full
stage cpython-suites-diag .venv/bin/python tests/cpython/compare.py --diag test_thread test_threading test_threading_local
stage deadlock-smoke .venv/bin/python scripts/deadlock_smoke.py
# 3.12 and 3.13 (pyenv), 3.13, 3.14, 3.15 (Debian's builds, in a cached
# Debian root): build, pytest, CPython's suites, diagnostics smoke each.
stage versions scripts/versions.sh

echo
[ ${#failures[@]} -gt 0 ] && echo "failed stages: ${failures[*]}"
echo "stages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
