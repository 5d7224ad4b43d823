#!/usr/bin/env bash
# Run the test suites of real threading libraries (from their sdists on PyPI)
# with and without rsthread's diagnostics, and look for reports (issue 15,
# item 9):
#
#   scripts/real-suites-diag.sh [CACHE_DIR [PACKAGE...]]
#
# For each of waitress, fasteners and readerwriterlock: download the sdist
# (pip download --no-binary :all: --no-deps) into CACHE_DIR (default
# ~/.cache/rsthread-real-suites), unpack it, install the package and its test
# dependencies into .venv, then run its suite with pytest -rP twice: stock
# threading, then under rsthread with RSTHREAD_DIAG='deadlock=warn,lock-order'
# (rsthread installed before threading by the RSTHREAD=1 auto-install hook).
# Prints the pass/fail summary of both runs and every diagnostics report
# found in the second; exits 1 if any report was found or the results differ.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python
CACHE=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/rsthread-real-suites}
shift || true
PKGS=("$@")
[ ${#PKGS[@]} -gt 0 ] || PKGS=(waitress fasteners readerwriterlock)
DIAG=${RSTHREAD_DIAG_SUITES:-deadlock=warn,lock-order}
mkdir -p "$CACHE"
status=0

# package -> extra test dependencies
declare -A DEPS=(
  [waitress]="pytest-cov"
  [fasteners]="diskcache more_itertools eventlet"
  [readerwriterlock]="typing_extensions"
)

# pytest -q's result line ("52 passed, 2 skipped in 30.28s") and failed tests.
summary() { grep -E "^([0-9]+ (passed|failed|error)|=+ .*(passed|failed).* =+|FAILED [^ ]+::)" "$1" | tail -5; }

for pkg in "${PKGS[@]}"; do
  echo "=== $pkg"
  if ! ls "$CACHE"/"$pkg"-*.tar.gz >/dev/null 2>&1; then
    "$PY" -m pip download -q --disable-pip-version-check --no-binary :all: --no-deps -d "$CACHE" "$pkg" \
      || { echo "$pkg: download failed"; status=1; continue; }
  fi
  sdist=$(ls -t "$CACHE"/"$pkg"-*.tar.gz | head -1)
  src="$CACHE/src/$(basename "$sdist" .tar.gz)"
  if [ ! -d "$src" ]; then
    mkdir -p "$CACHE/src" && tar -xzf "$sdist" -C "$CACHE/src" || { status=1; continue; }
  fi
  "$PY" -m pip install -q --disable-pip-version-check "$src" ${DEPS[$pkg]} \
    || { echo "$pkg: install failed"; status=1; continue; }
  tests=tests
  [ -d "$src/$tests" ] || tests=.
  stock="$CACHE/$pkg.stock.log"
  diag="$CACHE/$pkg.diag.log"
  (cd "$src" && env -u RSTHREAD_DIAG -u RSTHREAD timeout 900 "$PY" -m pytest -rP -q -p no:cacheprovider "$tests") \
    >"$stock" 2>&1
  (cd "$src" && RSTHREAD=1 RSTHREAD_DIAG="$DIAG" timeout 900 "$PY" -m pytest -rP -q -p no:cacheprovider "$tests") \
    >"$diag" 2>&1
  echo "--- stock:";  summary "$stock"
  echo "--- rsthread + $DIAG:"; summary "$diag"
  reports=$(grep -cE "rsthread: (deadlock detected|lock-order inversion)" "$diag")
  echo "--- reports: $reports (full output: $diag)"
  if [ "$reports" != 0 ]; then
    grep -E -A12 "rsthread: (deadlock detected|lock-order inversion)" "$diag" | head -80
    status=1
  fi
  grep -E "rsthread: lock order: .* not reported" "$diag" | sort | uniq -c
  (cd "$src" && RSTHREAD=1 RSTHREAD_DIAG="$DIAG" "$PY" -c \
    'import threading, rsthread, rsthread.diagnostics as d; print("--- rsthread installed:", rsthread.installed(), "diagnostics:", d.enabled())')
  if [ "$(summary "$stock" | tail -1 | sed 's/ in .*//')" != "$(summary "$diag" | tail -1 | sed 's/ in .*//')" ]; then
    echo "--- results differ"
    status=1
  fi
done
exit $status
