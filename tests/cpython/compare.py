"""Run CPython's threading suites on stock _thread and on rsthread, side by
side, and fail unless rsthread runs the same number of tests with no more
failures/errors than stock.

    .venv/bin/python tests/cpython/compare.py [--diag] [--everywhere] [test names...]

--diag: deadlock/lock-order/profile diagnostics on in the test process (no
report may appear). --everywhere: RSTHREAD=1, so the child interpreters
that the tests start run rsthread as well.

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


def run(suite: str, stock: bool, diag: str | None, everywhere: bool = False) -> dict[str, object]:
    cmd = [sys.executable, os.path.join(HERE, "regrtest.py"), "--timeout", "300"]
    if stock:
        cmd.append("--stock")
    elif diag:
        cmd.append(f"--diag={diag}")
    cmd.append(suite)
    env = dict(os.environ)
    env.pop("RSTHREAD_DIAG", None)
    env.pop("RSTHREAD", None)
    if everywhere and not stock:
        env["RSTHREAD"] = "1"  # child interpreters started by the tests run rsthread too
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
    spec = "deadlock=warn,lock-order,profile" if diag else None
    everywhere = "--everywhere" in sys.argv
    rows, ok = [], True
    for s in suites:
        st = run(s, True, None)
        ours = run(s, False, spec, everywhere)
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
    title = ("CPython 3.11 suites, stock _thread vs rsthread"
             + (" (diagnostics on, warn mode)" if diag else "")
             + (" (RSTHREAD=1: child interpreters on rsthread too)" if everywhere else ""))
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
    name = "RESULTS-diag.md" if diag else ("RESULTS-everywhere.md" if everywhere else "RESULTS.md")
    with open(os.path.join(HERE, name), "w") as f:
        f.write(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
