"""Run CPython's threading suites on stock _thread and on rsthread, side by
side, and fail unless rsthread runs the same number of tests with no more
failures/errors than stock.

    .venv/bin/python tests/cpython/compare.py [--diag] [test names...]

Writes the table to stdout and to tests/cpython/RESULTS.md.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SUITES = ["test_thread", "test_threading", "test_threadsignals", "test_threading_local"]
TOTAL = re.compile(r"Total tests: (.*)")


def run(suite: str, stock: bool, env_extra: dict[str, str]) -> dict[str, object]:
    cmd = [sys.executable, os.path.join(HERE, "regrtest.py"), "--timeout", "300"]
    if stock:
        cmd.append("--stock")
    cmd.append(suite)
    env = dict(os.environ, **env_extra)
    if stock:
        env.pop("RSTHREAD_DIAG", None)
        env.pop("RSTHREAD", None)
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    dt = time.monotonic() - t0
    m = TOTAL.search(p.stdout)
    counts = {"run": 0, "failures": 0, "errors": 0, "skipped": 0}
    if m:
        for part in m.group(1).split():
            k, _, v = part.partition("=")
            if k in counts:
                counts[k] = int(v)
    return {**counts, "rc": p.returncode, "secs": dt, "out": p.stdout + p.stderr}


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    diag = "--diag" in sys.argv
    suites = args or SUITES
    env_extra = {"RSTHREAD_DIAG": "deadlock=warn,lock-order"} if diag else {}
    rows, ok = [], True
    for s in suites:
        st = run(s, True, {})
        ours = run(s, False, env_extra)
        good = (ours["run"] == st["run"] and ours["run"] > 0
                and ours["failures"] + ours["errors"] <= st["failures"] + st["errors"]
                and ours["skipped"] <= st["skipped"])
        if diag and ("deadlock detected" in ours["out"] or "lock-order inversion" in ours["out"]):
            good = False
            print(f"{s}: diagnostics reported something on a correct suite", file=sys.stderr)
        if not good:
            ok = False
            print(ours["out"][-6000:], file=sys.stderr)
        rows.append((s, st, ours, good))
    title = "CPython 3.11 suites, stock _thread vs rsthread" + (" (diagnostics on, warn mode)" if diag else "")
    lines = [f"### {title}", "",
             "| suite | stock run | stock fail | stock skip | rsthread run | rsthread fail | rsthread skip | stock s | rsthread s | ok |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s, st, ours, good in rows:
        lines.append(
            f"| {s} | {st['run']} | {st['failures'] + st['errors']} | {st['skipped']} | "
            f"{ours['run']} | {ours['failures'] + ours['errors']} | {ours['skipped']} | "
            f"{st['secs']:.1f} | {ours['secs']:.1f} | {'yes' if good else 'NO'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    name = "RESULTS-diag.md" if diag else "RESULTS.md"
    with open(os.path.join(HERE, name), "w") as f:
        f.write(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
