#!/usr/bin/env bash
# Run real thread-heavy libraries' own test suites (sdists from PyPI) with and
# without the pytest plugin (--rsthread), and compare: the same pass/fail
# counts are expected, every rsthread report is printed for examination, and
# the wall time of both runs is recorded.
#
#   scripts/real-suites.sh [PACKAGE==VERSION ...]
#
# Needs network access once: the sdists are cached in target/real-suites/
# (pip download --no-binary :all: --no-deps), their test dependencies are
# installed into .venv. Results (full outputs and a summary table) go to
# target/real-suites/results/. Exit status 1 if any suite's counts differ.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python
CACHE=$ROOT/target/real-suites
OUT=$CACHE/results
mkdir -p "$CACHE/sdists" "$CACHE/src" "$OUT"

# package==version -> test dependencies, and pytest arguments (run from the
# unpacked sdist). Versions are pinned so that results are comparable.
declare -A DEPS=(
  [fasteners==0.20]="diskcache more_itertools"
  [readerwriterlock==1.0.10]="typing_extensions"
)
# A command run once in the unpacked sdist before the runs (cost only).
declare -A PATCH=(
  # Its soak tests hammer each lock type for 30 s (~6 min per run): 3 s
  # exercises the same code paths.
  [readerwriterlock==1.0.10]="sed -i 's/s_period_sec: int = 30/s_period_sec: int = 3/' tests/test_rwlock.py tests/test_rwlock_async.py"
)
declare -A ARGS=(
  # test_eventlet needs eventlet, which monkey-patches threading in child
  # processes: not a test of this interpreter's threading.
  [fasteners==0.20]="tests --ignore=tests/test_eventlet.py"
  [readerwriterlock==1.0.10]="tests"
)

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=("${!DEPS[@]}")

counts() {  # the "N passed, M failed ..." summary of a pytest output, without warnings and time
  grep -E '(passed|failed|error|skipped|no tests ran).* in [0-9.]+s' "$1" | tail -1 \
    | sed -E 's/^=+ //; s/ in [0-9.]+s.*//; s/, [0-9]+ warnings?//'
}

status=0
summary=$OUT/summary.md
[ -f "$summary" ] || {
  echo "| suite | without --rsthread | with --rsthread | time without | time with |"
  echo "|---|---|---|---|---|"
} > "$summary"  # appended to across runs: one row per suite and run
for spec in "${suites[@]}"; do
  name=${spec%%==*}
  ver=${spec##*==}
  if ! ls "$CACHE/sdists/$name-$ver".tar.gz >/dev/null 2>&1; then
    "$PY" -m pip download -q --disable-pip-version-check --no-binary :all: --no-deps -d "$CACHE/sdists" "$spec"
  fi
  src=$CACHE/src/$name-$ver
  if [ ! -d "$src" ]; then
    tar -xzf "$CACHE/sdists/$name-$ver.tar.gz" -C "$CACHE/src"
    if [ -n "${PATCH[$spec]:-}" ]; then (cd "$src" && eval "${PATCH[$spec]}"); fi
  fi
  # shellcheck disable=SC2086  # word splitting of the dependency list is intended
  "$PY" -m pip install -q --disable-pip-version-check "$spec" ${DEPS[$spec]}
  for mode in off on; do
    extra=()
    [ "$mode" = on ] && extra=(--rsthread)
    log=$OUT/$name-$ver.$mode.txt
    start=$(date +%s.%N)
    # shellcheck disable=SC2086
    # -c /dev/null --rootdir: the suite's own defaults, not this repository's
    # pytest settings (the sdists are unpacked below it).
    (cd "$src" && env -u RSTHREAD_DIAG -u RSTHREAD timeout 900 "$PY" -m pytest -p no:cacheprovider -q \
        -c /dev/null --rootdir="$src" ${ARGS[$spec]} "${extra[@]}") > "$log" 2>&1 || true
    end=$(date +%s.%N)
    printf -v "t_$mode" '%.1f' "$(echo "$end - $start" | bc)"
    printf -v "c_$mode" '%s' "$(counts "$log")"
  done
  # shellcheck disable=SC2154  # t_off, t_on, c_off, c_on are set by printf -v above
  echo "| $spec | $c_off | $c_on | ${t_off}s | ${t_on}s |" >> "$summary"
  if [ "$c_off" != "$c_on" ]; then
    echo "real-suites: $spec: counts differ: '$c_off' without, '$c_on' with --rsthread" >&2
    status=1
  fi
  echo "----- $spec: rsthread reports (full output: $OUT/$name-$ver.on.txt)"
  sed -n '/^=* rsthread =*$/,/^=* short test summary\|^=* [0-9].* in [0-9.]*s/p' "$OUT/$name-$ver.on.txt" | head -150 || true  # (SIGPIPE)
done
cat "$summary"
exit $status
