#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the main job: the rsthread runner on a
# bundled program that deadlocks (dining philosophers), with deadlock
# detection, the contention profile and a timeline trace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
mkdir -p out
echo
echo "\$ python -m rsthread --deadlock warn --lock-order --profile --trace out/trace.json examples/dining_philosophers.py"
status=0
.venv/bin/python -m rsthread --deadlock warn --lock-order --profile --trace out/trace.json examples/dining_philosophers.py || status=$?
echo
echo "demo: the program exited with status $status (it deadlocks on purpose and gives up after 2 s)." 
echo "demo: the timeline is in out/trace.json: open https://ui.perfetto.dev and drag the file in."
