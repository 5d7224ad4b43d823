#!/usr/bin/env python3
"""Stdlib workloads on stock ``threading`` vs ``threading`` carried by rsthread.

Every measurement runs in a FRESH interpreter (a subprocess of
``sys.executable``). For rsthread the child does ``import rsthread;
rsthread.install()`` before it imports ``threading`` and then checks that
``threading`` really is carried by rsthread (the type of ``threading.Lock()``
and ``threading.RLock()`` and ``threading._allocate_lock``); the stock child
checks the opposite. A child that fails its check aborts the benchmark.

Stock and rsthread runs alternate, N times each, and the best time is kept.
Times are measured inside the child around the workload only (interpreter
start-up and imports are not counted), after a short warm-up.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_stdlib.py              # ~1 min on 2 cores
    .venv/bin/python benchmarks/bench_stdlib.py --quick      # smoke run
    .venv/bin/python benchmarks/bench_stdlib.py -n 7 --json out.json
    .venv/bin/python benchmarks/bench_stdlib.py --only queue_1thread,event
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _benchutil import OtherLoad, loadavg, print_run_header, run_meta

# --------------------------------------------------------------------------
# child side: the workloads (threading is imported lazily, after install())

WORKLOADS = {}  # name -> (description, default n, function(threading, n))


def workload(name, description, n):
    def deco(fn):
        WORKLOADS[name] = (description, n, fn)
        return fn
    return deco


@workload("queue_1thread", "queue.Queue put+get, one thread", 100_000)
def w_queue_1thread(threading, n):
    import queue
    q = queue.Queue()
    put, get = q.put, q.get
    for i in range(n):
        put(i)
        get()


@workload("queue_2threads", "queue.Queue(maxsize=64) producer -> consumer", 50_000)
def w_queue_2threads(threading, n):
    import queue
    q = queue.Queue(maxsize=64)

    def producer():
        put = q.put
        for i in range(n):
            put(i)

    t = threading.Thread(target=producer)
    t.start()
    get = q.get
    for _ in range(n):
        get()
    t.join()


@workload("condition_pingpong", "Condition ping-pong, 2 threads (per round trip)", 10_000)
def w_condition_pingpong(threading, n):
    cond = threading.Condition()
    state = {"turn": 0}

    def player(me, other, rounds):
        with cond:
            for _ in range(rounds):
                while state["turn"] != me:
                    cond.wait()
                state["turn"] = other
                cond.notify()

    t = threading.Thread(target=player, args=(1, 0, n))
    t.start()
    player(0, 1, n)
    t.join()


@workload("condition_pingpong_1cpu",
          "Condition ping-pong, 2 threads pinned to one CPU (per round trip)", 10_000)
def w_condition_pingpong_1cpu(threading, n):
    # Unpinned, the figure is bimodal: it depends on whether the scheduler
    # puts the two threads on one CPU or two (see README.md). Pinned, both
    # implementations pay one local context switch per hand-over.
    if not hasattr(os, "sched_setaffinity"):
        return w_condition_pingpong(threading, n)
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {max(before)})  # threads started now inherit it
    try:
        w_condition_pingpong(threading, n)
    finally:
        os.sched_setaffinity(0, before)


@workload("event", "Event() create + set() + wait()", 100_000)
def w_event(threading, n):
    Event = threading.Event
    for _ in range(n):
        e = Event()
        e.set()
        e.wait()


@workload("tpe_map", "ThreadPoolExecutor(4).map of a trivial function", 20_000)
def w_tpe_map(threading, n):
    from concurrent.futures import ThreadPoolExecutor

    def f(x):
        return x + 1

    with ThreadPoolExecutor(max_workers=4) as ex:
        for _ in ex.map(f, range(n)):
            pass


@workload("thread_start_join", "Thread(target=f).start() + join()", 3_000)
def w_thread_start_join(threading, n):
    def f():
        pass

    Thread = threading.Thread
    for _ in range(n):
        t = Thread(target=f)
        t.start()
        t.join()


def _logging_threads(threading, n, handler):
    import logging
    logger = logging.getLogger(f"bench.{id(handler)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    nthreads = 4
    per = n // nthreads

    def work(k):
        info = logger.info
        for i in range(per):
            info("thread %d message %d", k, i)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(nthreads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    logger.removeHandler(handler)


@workload("logging_null", "logging.info from 4 threads to a NullHandler", 100_000)
def w_logging_null(threading, n):
    import logging
    _logging_threads(threading, n, logging.NullHandler())


@workload("logging_stringio", "logging.info from 4 threads to a StreamHandler(StringIO)", 40_000)
def w_logging_stringio(threading, n):
    import io
    import logging
    buf = io.StringIO()
    h = logging.StreamHandler(buf)
    h.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(levelname)s %(message)s"))
    _logging_threads(threading, n, h)
    assert buf.getvalue().count("\n") == (n // 4) * 4


def child(impl: str, name: str, n: int) -> None:
    # Nothing above may have imported threading (subprocess does: it is only
    # imported lazily, in the parent).
    if "threading" in sys.modules:
        print(json.dumps({"error": "threading imported before install()", "check": False}))
        sys.exit(3)
    hang = float(os.environ.get("BENCH_CHILD_TIMEOUT", "0"))
    if hang > 0:
        # A hang prints every thread's stack and exits, instead of timing out silently.
        import faulthandler
        faulthandler.dump_traceback_later(hang, exit=True)
    if impl == "rsthread":
        import rsthread
        rsthread.install()
    import _thread
    import threading

    lock_type = type(threading.Lock())
    rlock_type = type(threading.RLock())
    info = {
        "lock_type": f"{lock_type.__module__}.{lock_type.__qualname__}",
        "rlock_type": f"{rlock_type.__module__}.{rlock_type.__qualname__}",
        "_thread": getattr(sys.modules.get("_thread"), "__name__", None),
    }
    if impl == "rsthread":
        import rsthread._thread as rs
        uses = (lock_type is type(rs.allocate_lock())
                and rlock_type is type(rs.RLock())
                and threading._allocate_lock is rs.allocate_lock
                and getattr(rsthread, "installed", lambda: True)())
    else:
        uses_rs = "rsthread" in sys.modules
        uses = (not uses_rs and lock_type is type(_thread.allocate_lock())
                and lock_type.__module__ in ("_thread", "builtins"))
    info["check"] = bool(uses)
    info["carried_by"] = impl if uses else "?"
    if not uses:
        print(json.dumps({"error": f"{impl} child does not use {impl}", **info}))
        sys.exit(3)

    if name == "__check__":
        print(json.dumps({"seconds": 0.0, "n": 0, **info}))
        return
    _, _, fn = WORKLOADS[name]
    fn(threading, max(4, n // 20))  # warm-up
    t0 = time.perf_counter()
    fn(threading, n)
    dt = time.perf_counter() - t0
    print(json.dumps({"seconds": dt, "n": n, **info}))


# --------------------------------------------------------------------------
# parent side


class ChildFailed(Exception):
    pass


# RSTHREAD_DIAG for the "rsthread-diag" runs (--diag).
DIAG_SPEC = ""


def run_child(impl: str, name: str, n: int, timeout: float) -> dict:
    """One fresh interpreter: "stock", "rsthread", or "rsthread-diag"
    (rsthread with RSTHREAD_DIAG=DIAG_SPEC)."""
    import subprocess
    child_impl = "rsthread" if impl == "rsthread-diag" else impl
    cmd = [sys.executable, os.path.abspath(__file__), "--child", child_impl, name, str(n)]
    env = dict(os.environ, BENCH_CHILD_TIMEOUT=str(max(1.0, timeout - 5)))
    env.pop("RSTHREAD_DIAG", None)
    if impl == "rsthread-diag":
        # Applied by the child's own `import rsthread`; RSTHREAD=0 keeps
        # the start-up hook from installing before the child's check.
        env.update(RSTHREAD_DIAG=DIAG_SPEC, RSTHREAD="0")
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        raise ChildFailed(f"child {impl}/{name} hung for {timeout} s:\n{e.stderr or ''}") from None
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        raise ChildFailed(f"child {impl}/{name} failed (rc={p.returncode}):\n"
                         f"{p.stdout}\n{p.stderr}")
    res = json.loads(lines[-1])
    if not res.get("check"):
        raise ChildFailed(f"child {impl}/{name}: implementation check failed: {res}")
    return res


def rsthread_available() -> tuple[bool, str]:
    import subprocess
    p = subprocess.run([sys.executable, "-c", "import rsthread, rsthread._thread; "
                        "print(rsthread._thread.__file__)"],
                       capture_output=True, text=True)
    return p.returncode == 0, (p.stdout.strip() or p.stderr.strip().splitlines()[-1:] or [""])[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--repeats", type=int, default=5,
                    help="fresh-interpreter runs per implementation and workload; best is kept (default 5)")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply every workload's iteration count (default 1.0)")
    ap.add_argument("--only", help="comma-separated workload names (default: all)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 repeats, 1/10 of the work")
    ap.add_argument("--json", metavar="OUT", help="write the results as JSON")
    ap.add_argument("--stock-only", action="store_true", help="measure stock threading only")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per child (default 120)")
    ap.add_argument("--diag", metavar="SPEC",
                    help="also run rsthread with RSTHREAD_DIAG=SPEC (e.g. 'deadlock=warn,lock-order,profile') "
                         "and print its time and its ratio to rsthread with diagnostics off")
    ap.add_argument("--child", nargs=3, metavar=("IMPL", "WORKLOAD", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        impl, name, n = args.child
        child(impl, name, int(n))
        return 0

    global DIAG_SPEC
    DIAG_SPEC = args.diag or ""
    if args.quick:
        args.repeats = min(args.repeats, 2)
        args.scale *= 0.1
    names = list(WORKLOADS)
    if args.only:
        names = [x for x in args.only.split(",") if x]
        unknown = [x for x in names if x not in WORKLOADS]
        if unknown:
            ap.error(f"unknown workloads {unknown}; known: {', '.join(WORKLOADS)}")

    impls = ["stock"]
    have_rs, rs_where = rsthread_available()
    if have_rs and not args.stock_only:
        impls.append("rsthread")
        if args.diag:
            impls.append("rsthread-diag")
    elif not have_rs:
        print(f"note: rsthread not importable ({rs_where}); stock only", file=sys.stderr)

    meta = {
        **run_meta(),
        "rsthread": rs_where if have_rs else None,
        "repeats": args.repeats,
        "scale": args.scale,
        "diag": args.diag,
    }
    other_load = OtherLoad()
    t_start = time.monotonic()
    # Preflight: each implementation installs and passes its check in a
    # fresh interpreter, or nothing is measured.
    for impl in impls:
        try:
            run_child(impl, "__check__", 0, min(args.timeout, 30.0))
        except ChildFailed as e:
            print(f"preflight failed: {e}", file=sys.stderr)
            return 2
    rows = []
    failures = []
    for name in names:
        desc, n0, _ = WORKLOADS[name]
        n = max(8, int(n0 * args.scale))
        print(f"  .. {name} (n={n})", file=sys.stderr, flush=True)
        best = {impl: math.inf for impl in impls}
        types = {}
        failed = {}
        for rep in range(args.repeats):
            # alternate which implementation goes first
            order = impls if rep % 2 == 0 else impls[::-1]
            for impl in order:
                if impl in failed:
                    continue
                try:
                    res = run_child(impl, name, n, args.timeout)
                except ChildFailed as e:
                    # Keep going with the other workloads; reported at the end.
                    failed[impl] = str(e)
                    failures.append((name, impl, str(e)))
                    print(f"  !! {name} failed on {impl}", file=sys.stderr, flush=True)
                    continue
                best[impl] = min(best[impl], res["seconds"])
                types[impl] = f"{res['lock_type']} from {res['carried_by']}"
        s = None if "stock" in failed else best["stock"]
        r = None if ("rsthread" in failed or "rsthread" not in best) else best["rsthread"]
        d = None if ("rsthread-diag" in failed or "rsthread-diag" not in best) else best["rsthread-diag"]
        rows.append({
            "workload": name, "description": desc, "n": n,
            "stock_s": s, "rsthread_s": r,
            "stock_us_per_op": s / n * 1e6 if s is not None else None,
            "rsthread_us_per_op": r / n * 1e6 if r is not None else None,
            "ratio": r / s if (r is not None and s is not None) else None,
            "diag_s": d,
            "diag_us_per_op": d / n * 1e6 if d is not None else None,
            "diag_ratio": d / r if (d is not None and r is not None) else None,
            "lock_types": types,
            "failed": sorted(failed),
        })

    ratios = [row["ratio"] for row in rows if row["ratio"]]
    geomean = math.exp(sum(math.log(x) for x in ratios) / len(ratios)) if ratios else None
    meta["loadavg_end"] = loadavg()
    meta["wall_s"] = round(time.monotonic() - t_start, 1)
    meta["other_cpu_fraction"] = other_load.fraction()
    meta["geomean_ratio"] = geomean
    dratios = [row["diag_ratio"] for row in rows if row["diag_ratio"]]
    dgeo = math.exp(sum(math.log(x) for x in dratios) / len(dratios)) if dratios else None
    meta["diag_geomean_ratio"] = dgeo

    print_run_header(meta, f"best of {args.repeats} fresh interpreters")
    w = max(len(r["workload"]) for r in rows) + 2
    head = (f"{'workload':<{w}} {'n':>8} {'stock us/op':>12} {'rsthread us/op':>15} "
            f"{'ratio rs/stock':>15}")
    if args.diag:
        head += f" {'diag us/op':>11} {'diag/rs':>8}"
    print(head)
    print("-" * len(head))
    for row in rows:
        rr, sr = row["rsthread_us_per_op"], row["stock_us_per_op"]
        rr_s = ("FAILED" if "rsthread" in row["failed"] else "-") if rr is None else f"{rr:.3f}"
        sr_s = ("FAILED" if "stock" in row["failed"] else "-") if sr is None else f"{sr:.3f}"
        ratio_s = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
        line = f"{row['workload']:<{w}} {row['n']:>8} {sr_s:>12} {rr_s:>15} {ratio_s:>15}"
        if args.diag:
            du, dr = row["diag_us_per_op"], row["diag_ratio"]
            line += f" {'-' if du is None else format(du, '.3f'):>11} {'-' if dr is None else format(dr, '.2f'):>8}"
        print(line)
    print("-" * len(head))
    geo = f"{'geometric mean of ratios':<{w + 38}} {'-' if geomean is None else format(geomean, '.2f'):>15}"
    if args.diag:
        geo += f" {'':>11} {'-' if dgeo is None else format(dgeo, '.2f'):>8}"
    print(geo)
    if args.diag:
        print(f"diag: RSTHREAD_DIAG={args.diag!r}; diag/rs: rsthread with it / rsthread without.")
    print("ratio < 1: rsthread faster.")
    if "rsthread" in impls:
        print(f"lock types seen: stock={rows[0]['lock_types'].get('stock')} "
              f"rsthread={rows[0]['lock_types'].get('rsthread')}")

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": rows}, f, indent=2)
        print(f"wrote {args.json}")
    for name, impl, err in failures:
        print(f"\nFAILED: {name} on {impl}:\n{err}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
