#!/usr/bin/env bash
# Run every rsthread benchmark and write benchmarks/RESULTS.md.
#
#   benchmarks/run.sh            # full run: ~4 minutes on an idle 2-core machine
#   benchmarks/run.sh --quick    # smoke run: ~1-2 minutes (mostly compiling)
#   benchmarks/run.sh --python /usr/bin/python3.11 --python "$(pyenv prefix 3.12.1)/bin/python3.12"
#                                # per interpreter: stock and rsthread side by side on
#                                # each, then one table with the versions as columns
#
# Per interpreter (--python PATH, repeatable, or a comma-separated list):
#   - PATH itself is used if it imports rsthread._thread (e.g. .venv/bin/python);
#     otherwise a venv benchmarks/target/venvs/<tag> is made with `PATH -m venv` and
#     this tree is (re)built into it with `pip install --force-reinstall .` on every
#     run (log in benchmarks/target/results/versions/<tag>/build.log; BUILD_RSTHREAD=0
#     measures whatever build the venv holds);
#   - a version where rsthread does not build or import is still measured: stock
#     only, its column says "rsthread: not available on this version";
#   - bench_thread.py and bench_stdlib.py write versions/<tag>/{thread,stdlib}.json
#     (no criterion, no diagnostics runs), and summarize.py --versions writes
#     benchmarks/RESULTS-versions.md from every versions/<tag>/ present, so runs
#     made elsewhere (inside the Debian root, see benchmarks/README.md) join the table.
#
# Environment:
#   REPEATS=N        best-of-N for the Python benchmarks (default: 7 for
#                    bench_thread, 5 for bench_stdlib; --quick: 2)
#   SKIP_CRITERION=1 skip the Rust criterion bench
#   NOTE="..."       free text written into RESULTS.md (e.g. "machine busy")
#   WAIT_IDLE=S      before each benchmark, wait up to S seconds for other
#                    processes to leave the CPUs idle (default 0: don't wait)
#
# Steps:
#   1. Use the repository's .venv if .venv/bin/python can import rsthread;
#      otherwise create it and build rsthread into it:
#        python3 -m venv .venv && .venv/bin/pip install maturin \
#          && .venv/bin/maturin develop --release
#   2. benchmarks/bench_thread.py  (stock _thread vs rsthread._thread, one interpreter)
#   3. benchmarks/bench_stdlib.py  (stdlib workloads, fresh interpreter per run;
#      also rsthread with deadlock, lock-order and profile diagnostics on)
#   4. cargo bench --bench locks   (in benchmarks/, a standalone crate)
#   5. benchmarks/summarize.py -> benchmarks/RESULTS.md
# Raw outputs (JSON, logs) go to benchmarks/target/results/ (git-ignored).
#
# Benchmarks on a 2-core machine are sensitive to anything else running
# (a cargo build, a test suite): the Python scripts record the load average
# and warn when the machine was busy. Run on an idle machine for figures
# worth comparing.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
PYTHONS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --python)
            [ $# -ge 2 ] || { echo "--python needs a path" >&2; exit 2; }
            IFS=, read -r -a more <<< "$2"
            PYTHONS+=("${more[@]}")
            shift ;;
        --python=*)
            IFS=, read -r -a more <<< "${1#--python=}"
            PYTHONS+=("${more[@]}") ;;
        -h|--help) sed -n '2,45p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

if [ "${#PYTHONS[@]}" -gt 0 ]; then
    OUT=benchmarks/target/results/versions
    mkdir -p "$OUT"
    PYARGS=()
    [ "$QUICK" = 1 ] && PYARGS+=(--quick)
    [ -n "${REPEATS:-}" ] && PYARGS+=(-n "$REPEATS")
    STATUS=0
    for P in "${PYTHONS[@]}"; do
        if ! VER=$("$P" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null); then
            echo "== $P: not a working interpreter, skipped" >&2; STATUS=1; continue
        fi
        # The tag tells apart two interpreters of one version (Debian's, pyenv's).
        TAG="$VER-$(printf '%s' "$P" | tr -c 'A-Za-z0-9._' '_' | sed 's/^_*//')"
        DIR="$OUT/$TAG"
        mkdir -p "$DIR"
        rm -f "$DIR"/thread.json "$DIR"/stdlib.json
        if "$P" -c 'import rsthread._thread' 2>/dev/null; then
            VPY="$P"
            echo "== $VER ($P): rsthread already installed"
        else
            VENV="benchmarks/target/venvs/$TAG"
            [ -x "$VENV/bin/python" ] || "$P" -m venv "$VENV"
            VPY="$VENV/bin/python"
            # Always (re)build this tree into the venv: an old build left there
            # would be measured instead (BUILD_RSTHREAD=0: use what is there).
            # A cargo target dir per interpreter keeps the rebuild incremental.
            if [ "${BUILD_RSTHREAD:-1}" != 0 ]; then
                echo "== $VER ($P): building rsthread into $VENV (log: $DIR/build.log)"
                CARGO_TARGET_DIR="benchmarks/target/cargo/$TAG" "$VPY" -m pip install -q \
                    --disable-pip-version-check --no-deps --force-reinstall . > "$DIR/build.log" 2>&1 \
                    || echo "   build failed (see $DIR/build.log)"
            else
                echo "== $VER ($P): using $VENV as it is (BUILD_RSTHREAD=0)"
            fi
            "$VPY" -c 'import rsthread._thread' 2>/dev/null \
                || echo "   rsthread: not available on this version (stock only)"
        fi
        "$VPY" benchmarks/bench_thread.py "${PYARGS[@]}" --json "$DIR/thread.json" | tee "$DIR/thread.txt" \
            || { STATUS=1; echo "bench_thread.py failed on $VER" >&2; }
        "$VPY" benchmarks/bench_stdlib.py "${PYARGS[@]}" --json "$DIR/stdlib.json" | tee "$DIR/stdlib.txt" \
            || { STATUS=1; echo "bench_stdlib.py failed on $VER" >&2; }
    done
    "${PYTHONS[0]}" benchmarks/summarize.py --versions "$OUT" --note "${NOTE:-}" \
        --out benchmarks/RESULTS-versions.md
    cat benchmarks/RESULTS-versions.md
    exit "$STATUS"
fi

PY=.venv/bin/python
if [ -x "$PY" ] && "$PY" -c 'import rsthread._thread' 2>/dev/null; then
    echo "== using $PY (rsthread already installed)"
else
    echo "== building rsthread into .venv"
    [ -x "$PY" ] || python3 -m venv .venv
    [ -x .venv/bin/maturin ] || .venv/bin/pip install maturin
    VIRTUAL_ENV="$PWD/.venv" .venv/bin/maturin develop --release
    "$PY" -c 'import rsthread._thread' || { echo "rsthread still not importable" >&2; exit 1; }
fi

OUT=benchmarks/target/results
mkdir -p "$OUT"
rm -f "$OUT"/thread.json "$OUT"/stdlib.json "$OUT"/criterion-load.json
STATUS=0
PYARGS=()
CRITARGS=()
if [ "$QUICK" = 1 ]; then
    PYARGS+=(--quick)
    CRITARGS+=(--quick)
fi
if [ -n "${REPEATS:-}" ]; then
    PYARGS+=(-n "$REPEATS")
fi
START=$(date +%s)
wait_idle() {
    if [ "${WAIT_IDLE:-0}" != 0 ]; then
        echo "-- waiting up to ${WAIT_IDLE}s for an idle machine"
        "$PY" benchmarks/_benchutil.py wait-idle "$WAIT_IDLE"
    fi
}

echo "== bench_thread.py"
wait_idle
"$PY" benchmarks/bench_thread.py "${PYARGS[@]}" --json "$OUT/thread.json" | tee "$OUT/thread.txt" \
    || { STATUS=1; echo "bench_thread.py failed" >&2; }

echo "== bench_stdlib.py"
wait_idle
"$PY" benchmarks/bench_stdlib.py "${PYARGS[@]}" --diag "deadlock=warn,lock-order,profile" --json "$OUT/stdlib.json" | tee "$OUT/stdlib.txt" \
    || { STATUS=1; echo "bench_stdlib.py failed (see above; partial results kept)" >&2; }

if [ "${SKIP_CRITERION:-0}" != 1 ]; then
    echo "== cargo bench --bench locks"
    cargo bench --manifest-path benchmarks/Cargo.toml --bench locks --no-run -q 2>&1 | tail -5 || true
    wait_idle
    # A failing benchmark is reported, the others still run, and the script exits 1.
    # Wrapped to record how much CPU other processes took meanwhile.
    "$PY" benchmarks/_benchutil.py measure "$OUT/criterion-load.json" -- \
        cargo bench --manifest-path benchmarks/Cargo.toml --bench locks -- "${CRITARGS[@]}" \
        > "$OUT/criterion.txt" 2>&1 \
        || { tail -30 "$OUT/criterion.txt" >&2; echo "cargo bench failed, see $OUT/criterion.txt" >&2; STATUS=1; }
    grep -E '^[a-z_]+/|time:|thrpt:' "$OUT/criterion.txt" || true
fi

"$PY" benchmarks/summarize.py --thread "$OUT/thread.json" --stdlib "$OUT/stdlib.json" \
    --criterion benchmarks/target/criterion --criterion-load "$OUT/criterion-load.json" \
    --since "$START" --note "${NOTE:-}" \
    --out benchmarks/RESULTS.md
cat benchmarks/RESULTS.md
exit "$STATUS"
