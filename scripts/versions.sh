#!/usr/bin/env bash
# Build and test rsthread on the CPython versions other than the host's 3.11
# (issue 16): for each, a release build (`pip install .`) into its own
# virtualenv and cargo target dir, both kept between runs (and between
# clones) under $RSTHREAD_CACHE (default ~/.cache/rsthread: LABEL/venv,
# LABEL/target; inside the Debian root, its own ~/.cache), so a CI run in a
# fresh clone rebuilds incrementally; CPython's own suites of that version,
# stock and rsthread side by side (tests/cpython/compare.py); one
# diagnostics smoke run (scripts/deadlock_smoke.py). One summary line per
# version at the end.
#
#   scripts/versions.sh [--quick] [--pytest] [LABEL...]   # default: every label
#
# By default (CI) each version gets: a release build, rsthread's exactness
# tests, issue 16's list of CPython suites stock vs rsthread with RSTHREAD=1
# (child interpreters on rsthread too), and the diagnostics smoke run.
# --quick: only the four threading suites, without RSTHREAD=1;
# --pytest: rsthread's whole pytest suite instead of the exactness files.
#
# Labels: 3.12, 3.13 (pyenv's 3.12.1 and 3.13.0, on the host) and sid-3.13,
# sid-3.14, sid-3.15 (Debian's builds, in the root that
# /work/shared/tools/sid-pythons.sh builds once and caches). The host lane
# and the Debian lane run side by side (two cores). RSTHREAD_SID_SRC=/DIR:
# the tree is already mounted at DIR inside the root (no --bind; lets
# several worktrees share the root). Exit status: 0 only if every stage of
# every version passed.
set -uo pipefail
cd "$(dirname "$0")/.."
# shared/ sits beside the repository (in CI too: a copy beside the clone).
SID_TOOL=${SID_TOOL:-$(cd .. && pwd)/shared/tools/sid-pythons.sh}
[ -f "$SID_TOOL" ] || [ ! -f /work/shared/tools/sid-pythons.sh ] || SID_TOOL=/work/shared/tools/sid-pythons.sh
CACHE=${RSTHREAD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rsthread}
LOGDIR=target/versions-logs
TOOLS=("maturin>=1.9.4,<2" "pytest>=8" "pytest-timeout>=2.3" "pytest-xdist>=3" "perfetto>=0.59" "protobuf")

# One version: LABEL PYTHON. Writes LOGDIR/LABEL.log and LOGDIR/LABEL.summary.
one() {
  local label=$1 py=$2 venv=$CACHE/$1/venv log=$LOGDIR/$1.log parts=() ok=1 t
  : > "$log"
  step() {  # NAME CMD...: run, time, record
    local name=$1; shift
    t=$SECONDS
    echo "=== $label $name: $*" >> "$log"
    if "$@" >> "$log" 2>&1; then parts+=("$name ok $((SECONDS - t))s")
    else parts+=("$name FAILED $((SECONDS - t))s"); ok=0; fi
  }
  build() {
    { [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"; } &&
      "$venv/bin/python" -m pip install -q --disable-pip-version-check "${TOOLS[@]}" &&
      CARGO_TARGET_DIR=$CACHE/$label/target nice "$venv/bin/python" -m pip install -q \
        --disable-pip-version-check --no-deps --force-reinstall . &&
      "$venv/bin/python" -c 'import rsthread._thread'
  }
  step build build
  if [ $ok = 1 ]; then
    # rsthread's own tests: by default the exactness and deadlock-rule files
    # (every name, message, docstring and signature against that version's
    # stock; hostile arguments; the threading carry; 1-2 min); the whole
    # suite (8-15 min per version) with --pytest.
    if [ -n "${VERSIONS_PYTEST:-}" ]; then
      step pytest "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/python
    else
      step pytest "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/python/test_exact.py \
        tests/python/test_bad_input.py tests/python/test_deadlock_rule.py tests/python/test_threading_carry.py
    fi
    # Issue 16's whole list of CPython suites (threading's four, queue,
    # tempfile, sched, logging, the thread pool) with RSTHREAD=1, so the
    # child interpreters the tests start run rsthread too; --quick: only the
    # four threading suites, rsthread in the test process only.
    if [ -n "${VERSIONS_QUICK:-}" ]; then
      step suites "$venv/bin/python" tests/cpython/compare.py
    else
      step suites "$venv/bin/python" tests/cpython/compare.py --everywhere --full
    fi
    step diag "$venv/bin/python" scripts/deadlock_smoke.py
  fi
  local pyv suites tests
  pyv=$("$py" -c 'import platform; print(platform.python_version())' 2>/dev/null)
  tests=$(grep -E '^=* ?[0-9]+ (passed|failed|skipped).* in [0-9.]+s' "$log" | tail -1 | sed -E 's/ in [0-9.]+s.*//; s/^=+ //')
  suites=$(grep '^summary ' "$log" | tail -1 | cut -d: -f2-)
  echo "version $label (CPython $pyv): ${parts[*]};${tests:+ pytest: $tests;}${suites:- suites: ?}" \
    | tee "$LOGDIR/$label.summary"
  [ $ok = 1 ]
}

while [ $# -gt 0 ]; do  # options, before the labels
  case $1 in
    --quick) export VERSIONS_QUICK=1; shift ;;
    --pytest) export VERSIONS_PYTEST=1; shift ;;
    *) break ;;
  esac
done
if [ "${1:-}" = --inside ]; then  # in the Debian root: run the sid-* labels given
  shift; st=0
  for label in "$@"; do one "$label" "python${label#sid-}" || st=1; done
  exit $st
fi

labels=("$@")
[ ${#labels[@]} -gt 0 ] || labels=(3.12 3.13 sid-3.13 sid-3.14 sid-3.15)
mkdir -p "$LOGDIR"
host=() sid=()
for l in "${labels[@]}"; do case $l in sid-*) sid+=("$l") ;; *) host+=("$l") ;; esac; done

host_lane() {
  local st=0 l p
  for l in "$@"; do
    p=$(pyenv prefix "$(pyenv versions --bare | grep -E "^${l//./\\.}\.[0-9]+$" | tail -1)" 2>/dev/null)/bin/python$l
    if [ ! -x "$p" ]; then echo "version $l: no pyenv interpreter" | tee "$LOGDIR/$l.summary"; st=1; continue; fi
    one "$l" "$p" || st=1
  done
  return $st
}
sid_lane() {
  [ $# -gt 0 ] || return 0
  local opts="VERSIONS_QUICK=${VERSIONS_QUICK:-} VERSIONS_PYTEST=${VERSIONS_PYTEST:-}"
  if [ -n "${RSTHREAD_SID_SRC:-}" ]; then
    bash "$SID_TOOL" --run "cd $RSTHREAD_SID_SRC && $opts scripts/versions.sh --inside $*"
  else
    bash "$SID_TOOL" --bind "$PWD" --run "cd /src && $opts scripts/versions.sh --inside $*"
  fi
}

host_lane "${host[@]}" > "$LOGDIR/host-lane.out" 2>&1 & hp=$!
sid_lane "${sid[@]}" > "$LOGDIR/sid-lane.out" 2>&1 & sp=$!
st=0
wait $hp || st=1
wait $sp || st=1
for l in "${labels[@]}"; do cat "$LOGDIR/$l.summary" 2>/dev/null || { echo "version $l: no result"; st=1; }; done
exit $st
