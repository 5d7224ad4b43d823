#!/usr/bin/env bash
# Set up everything rsthread needs on a fresh machine: a virtualenv (.venv)
# with CPython 3.11, the build and test tools, and rsthread itself built with
# maturin and installed with `pip install .`.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=""
for c in python3.11 python3; do
  if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    PY="$c"; break
  fi
done
[ -n "$PY" ] || { echo "setup: CPython 3.11 is required" >&2; exit 1; }
command -v cargo >/dev/null || { echo "setup: a Rust toolchain (cargo) is required" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# The machine's system interpreter may import threading at start-up (a site
# hook); a venv without system site-packages must not, or install() could not
# replace _thread before threading binds it.
.venv/bin/python - <<'PYEOF'
import sys
if "threading" in sys.modules:
    sys.exit("setup: threading is imported at interpreter start-up inside .venv; "
             "rsthread.install() could not take full effect")
PYEOF
# perfetto (+ protobuf): optional at run time (the .pftrace export); the tests
# parse the exported traces with its official schema.
.venv/bin/python -m pip install -q --disable-pip-version-check "maturin>=1.9.4,<2" "pytest>=8" "pytest-timeout>=2.3" "pytest-xdist>=3" "mypy>=1.10" "ruff>=0.6" \
  "perfetto>=0.59" "protobuf"
# Build the CPython 3.11 wheel and install it (pip builds through maturin).
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --force-reinstall .
.venv/bin/python -c 'import rsthread, rsthread._thread; print("setup: rsthread installed from", rsthread.__file__)'
