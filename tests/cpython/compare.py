"""Run CPython's threading suites on stock _thread and on rsthread, side by
side, and fail unless rsthread runs the same number of tests with no more
failures/errors than stock.

    .venv/bin/python tests/cpython/compare.py [--diag] [--everywhere] [--full] [test names...]

--full: issue 16's list (the threading suites, plus test_queue,
test_threadedtempfile, test_sched, test_logging and the thread-pool part of
test_concurrent_futures where this interpreter ships it).
Counts come from regrtest's --junit-xml report (the text summary's format
changed in 3.13), so they are exact on every version.

--diag: deadlock/lock-order/profile diagnostics on in the test process (no
report may appear). --everywhere: RSTHREAD=1, so the child interpreters
that the tests start run rsthread as well.

Writes the table to stdout and to tests/cpython/RESULTS.md.
"""
from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

# Run as a background job of a non-interactive shell (versions.sh's lanes),
# this process inherits SIGINT ignored, and so would the suites (their Ctrl-C
# tests then test nothing): a handler here is reset to the default at exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

HERE = os.path.dirname(os.path.abspath(__file__))
SUITES = ["test_thread", "test_threading", "test_threadsignals", "test_threading_local"]
EXTRA = ["test_queue", "test_threadedtempfile", "test_sched", "test_logging"]
TOTAL = re.compile(r"Total tests: (.*)")
VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"


def full_suites() -> list[str]:
    """Issue 16's list for this interpreter."""
    suites = SUITES + EXTRA
    # 3.12+ split test_concurrent_futures into a package; its thread-pool
    # part is one module. Some distributions (3.11 here) do not ship it.
    if importlib.util.find_spec("test.test_concurrent_futures") is not None:
        try:
            tp = importlib.util.find_spec("test.test_concurrent_futures.test_thread_pool")
        except ModuleNotFoundError:
            tp = None
        suites.append("test.test_concurrent_futures.test_thread_pool" if tp else "test_concurrent_futures")
    return suites


def junit_counts(path: str) -> dict[str, int] | None:
    """run/failures/errors/skipped summed over a regrtest --junit-xml file."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    counts = {"run": 0, "failures": 0, "errors": 0, "skipped": 0}
    suites = [root] if root.tag == "testsuite" else root.iter("testsuite")
    for ts in suites:
        counts["run"] += int(ts.get("tests", 0))
        counts["failures"] += int(ts.get("failures", 0))
        counts["errors"] += int(ts.get("errors", 0))
        counts["skipped"] += int(ts.get("skipped", 0))
    # regrtest counts skipped tests in "tests"; its text summary does not.
    counts["run"] -= counts["skipped"]
    return counts


def run(suite: str, stock: bool, diag: str | None, everywhere: bool = False) -> dict[str, object]:
    fd, junit = tempfile.mkstemp(suffix=".xml", prefix="rsthread-junit-")
    os.close(fd)
    cmd = [sys.executable, os.path.join(HERE, "regrtest.py"), "--timeout", "300", "--junit-xml", junit]
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
    counts = junit_counts(junit)
    os.unlink(junit)
    if counts is None:  # no report (the run crashed): fall back to the text summary
        counts = {"run": 0, "failures": 0, "errors": 0, "skipped": 0}
        m = TOTAL.search(p.stdout)
        for part in m.group(1).split() if m else ():
            k, _, v = part.partition("=")
            if k in counts:
                counts[k] = int(v)
    return {**counts, "rc": p.returncode, "secs": dt, "out": p.stdout + p.stderr}


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    diag = "--diag" in sys.argv
    suites = args or (full_suites() if "--full" in sys.argv else SUITES)
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
    title = (f"CPython {VERSION} suites, stock _thread vs rsthread"
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
    def total(side: int) -> str:
        run_, fail, skip = (sum(int(r[side][k]) for r in rows) for k in ("run", "failures", "skipped"))
        fail += sum(int(r[side]["errors"]) for r in rows)
        return f"run={run_} fail={fail} skip={skip}"

    print(f"summary {VERSION}: stock {total(1)}; rsthread {total(2)}; {'ok' if ok else 'FAILED'}")
    name = "RESULTS-diag.md" if diag else ("RESULTS-everywhere.md" if everywhere else "RESULTS.md")
    if "--full" in sys.argv or VERSION != "3.11":
        name = name.replace(".md", f"-{VERSION}.md")
    elif args:  # a chosen list: keep the default run's table
        name = name.replace(".md", "-" + "-".join(a.removeprefix("test_") for a in args) + ".md")
    with open(os.path.join(HERE, name), "w") as f:
        f.write(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
