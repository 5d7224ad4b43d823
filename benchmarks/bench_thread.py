#!/usr/bin/env python3
"""Micro-benchmarks: stock ``_thread`` vs ``rsthread._thread``, side by side.

Both modules are measured in ONE run of the same interpreter; for every
figure the two are measured alternately, N times each, and the best
(lowest time / highest throughput) of the N is kept.

Usage (from the repository root, with rsthread installed in the venv)::

    .venv/bin/python benchmarks/bench_thread.py                # ~70 s on 2 cores
    .venv/bin/python benchmarks/bench_thread.py --quick        # smoke run, a few seconds
    .venv/bin/python benchmarks/bench_thread.py -n 9 --json out.json

Timing loops follow ``timeit``: bound methods are cached in locals, the loop
is ``for _ in itertools.repeat(None, n)`` and the loop count is calibrated
once (on the stock module) so both modules run the same number of
iterations. Per-op figures include the loop's own overhead, printed as the
first row so it can be subtracted by eye.

The second row is the *call floor*: the same loop making two calls of no-op
builtin methods (``(0).bit_length()`` and ``[].__len__()``, bound once
outside the loop), the least an ``acquire()``/``release()`` pair can cost on
this interpreter. Lock figures print ``ratio to floor`` beside ``ratio to
stock``: how many empty call pairs a lock operation costs, which compares
across interpreter versions and machines better than raw nanoseconds.

If ``rsthread`` cannot be imported (checked in a child interpreter first, so
a crash on import cannot take the benchmark down), only the stock column is
filled in and the run says "rsthread: not available on this version".
"""

from __future__ import annotations

import _thread as stock
import argparse
import gc
import json
import math
import statistics
import sys
import time
from itertools import repeat

from _benchutil import OtherLoad, loadavg, print_run_header, run_meta

perf_counter_ns = time.perf_counter_ns
perf_counter = time.perf_counter



def _probe_rsthread() -> str | None:
    """None if ``import rsthread._thread`` works in a child interpreter,
    else the last line it printed (or how it died)."""
    import subprocess
    p = subprocess.run([sys.executable, "-c", "import rsthread._thread"],
                       capture_output=True, text=True)
    if p.returncode == 0:
        return None
    lines = p.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit status {p.returncode}"


RS_IMPORT_ERROR = _probe_rsthread()
rs = None
if RS_IMPORT_ERROR is None:
    try:
        import rsthread._thread as rs
    except Exception as exc:  # pragma: no cover - depends on the build
        RS_IMPORT_ERROR = repr(exc)


# --------------------------------------------------------------------------
# helpers


def calibrate(fn, target_s: float) -> int:
    """Smallest n in 1, 2, 5, 10, 20, 50... with fn(n) >= target (like timeit.autorange)."""
    i = 1
    while True:
        for j in (1, 2, 5):
            n = i * j
            if fn(n) / 1e9 >= target_s:
                return n
        i *= 10


def best_of(fns: dict, n_loops: int, repeats: int) -> dict:
    """Alternate the modules' timers `repeats` times; best ns per loop for each."""
    best = {name: math.inf for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            gc.collect()
            best[name] = min(best[name], fn(n_loops) / n_loops)
    return best


# --------------------------------------------------------------------------
# per-op timers: each takes a module and returns fn(n) -> elapsed ns


def t_loop_overhead(mod):
    def run(n):
        it = repeat(None, n)
        t0 = perf_counter_ns()
        for _ in it:
            pass
        return perf_counter_ns() - t0
    return run


def _one_call_loop(bind):
    """Timer of a loop calling `f()`, where `(f,) = bind()` is bound before the clock starts."""
    def run(n):
        (f,) = bind()
        it = repeat(None, n)
        t0 = perf_counter_ns()
        for _ in it:
            f()
        return perf_counter_ns() - t0
    return run


def _two_calls_loop(bind):
    """Timer of a loop calling `a(); b()`, where `a, b = bind()` are bound
    before the clock starts: the shape of every acquire+release figure and of
    the call floor."""
    def run(n):
        a, b = bind()
        it = repeat(None, n)
        t0 = perf_counter_ns()
        for _ in it:
            a()
            b()
        return perf_counter_ns() - t0
    return run


def t_call_floor(mod):
    """Two no-op builtin method calls per loop: the floor of a call pair."""
    return _two_calls_loop(lambda: ((0).bit_length, [].__len__))


def _acquire_release_loop(lock):
    return _two_calls_loop(lambda: (lock.acquire, lock.release))


def _with_loop(lock):
    def run(n):
        lk = lock
        it = repeat(None, n)
        t0 = perf_counter_ns()
        for _ in it:
            with lk:
                pass
        return perf_counter_ns() - t0
    return run


def t_acquire_release(mod):
    return _acquire_release_loop(mod.allocate_lock())


def t_with_lock(mod):
    return _with_loop(mod.allocate_lock())


def t_acquire_timeout_release(mod):
    lock = mod.allocate_lock()

    def run(n):
        acq = lock.acquire
        rel = lock.release
        it = repeat(None, n)
        t0 = perf_counter_ns()
        for _ in it:
            acq(True, 1.0)
            rel()
        return perf_counter_ns() - t0
    return run


def t_allocate_lock(mod):
    return _one_call_loop(lambda: (mod.allocate_lock,))


def t_rlock_acquire_release(mod):
    return _acquire_release_loop(mod.RLock())


def t_with_rlock(mod):
    return _with_loop(mod.RLock())


def t_get_ident(mod):
    return _one_call_loop(lambda: (mod.get_ident,))


def _thread_body(lock):
    lock.release()


def t_start_thread(mod):
    """start_new_thread, then wait until the thread released the lock it was given."""
    def run(n):
        lock = mod.allocate_lock()
        acq = lock.acquire
        rel = lock.release
        start = mod.start_new_thread
        body = _thread_body
        args = (lock,)
        it = repeat(None, n)
        t0 = perf_counter_ns()
        for _ in it:
            acq()
            start(body, args)
            acq()   # blocks until the new thread released it
            rel()
        dt = perf_counter_ns() - t0
        # Let the finished threads actually exit before the next measurement.
        deadline = time.monotonic() + 2.0
        count = getattr(mod, "_count", lambda: 0)
        while count() > 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        return dt
    return run


def t_pingpong(mod):
    """Two threads, two locks, each releases the lock the other waits on."""
    def run(n):
        ping = mod.allocate_lock()
        pong = mod.allocate_lock()
        ready = mod.allocate_lock()
        done = mod.allocate_lock()
        ping.acquire()
        pong.acquire()
        ready.acquire()
        done.acquire()

        def other():
            pa = ping.acquire
            pr = pong.release
            ready.release()
            for _ in repeat(None, n):
                pa()
                pr()
            done.release()

        mod.start_new_thread(other, ())
        ready.acquire()
        pr = ping.release
        pa = pong.acquire
        it = repeat(None, n)
        t0 = perf_counter_ns()
        for _ in it:
            pr()
            pa()
        dt = perf_counter_ns() - t0
        done.acquire()
        return dt
    return run


# --------------------------------------------------------------------------
# timed-acquire overshoot


def overshoot(mods: dict, samples: int, timeout: float = 0.005) -> dict:
    """Timed acquire of a held lock: how late it returns; never early."""
    held = {}
    for name, mod in mods.items():
        lk = mod.allocate_lock()
        lk.acquire()
        held[name] = lk
    over = {name: [] for name in mods}
    early = {name: 0 for name in mods}
    got = {name: 0 for name in mods}
    for _ in range(samples):
        for name in mods:
            acq = held[name].acquire
            t0 = perf_counter()
            r = acq(True, timeout)
            dt = perf_counter() - t0
            if r:
                got[name] += 1
            if dt < timeout:
                early[name] += 1
            over[name].append((dt - timeout) * 1e6)
    out = {}
    for name in mods:
        xs = over[name]
        out[name] = {
            "median_us": statistics.median(xs),
            "max_us": max(xs),
            "min_us": min(xs),
            "early": early[name],
            "acquired": got[name],
            "samples": len(xs),
        }
    return out


# --------------------------------------------------------------------------
# contended throughput


def contended_run(mod, nthreads: int, duration: float) -> dict:
    """nthreads hammer one lock for `duration` s; ops/s and the longest single wait.

    Every op is acquire(); counter += 1; release(). Each thread records its
    longest wait in acquire(). A thread that is still waiting when the time is
    up finishes that acquire (and counts its wait) before it exits, so a
    starved thread shows up as a wait close to the whole duration. Bounded in
    time: after `stop` is set every thread does at most one more acquire.
    """
    lock = mod.allocate_lock()
    go = mod.allocate_lock()
    all_done = mod.allocate_lock()
    count_lock = mod.allocate_lock()
    go.acquire()
    all_done.acquire()
    state = {"stop": False, "started": 0, "finished": 0}
    ops = [0] * nthreads
    max_wait = [0.0] * nthreads
    started_lock = mod.allocate_lock()
    started_lock.acquire()

    def worker(i):
        acq = lock.acquire
        rel = lock.release
        pc = perf_counter
        with count_lock:
            state["started"] += 1
            if state["started"] == nthreads:
                started_lock.release()
        go.acquire()
        go.release()
        n = 0
        worst = 0.0
        st = state
        while True:
            t0 = pc()
            acq()
            w = pc() - t0
            if w > worst:
                worst = w
            if st["stop"]:
                rel()
                break
            n += 1
            rel()
        ops[i] = n
        max_wait[i] = worst
        with count_lock:
            state["finished"] += 1
            if state["finished"] == nthreads:
                all_done.release()

    old_stack = None
    if nthreads > 64:
        # Keep 1000 threads cheap on address space.
        old_stack = mod.stack_size(256 * 1024)
    try:
        for i in range(nthreads):
            mod.start_new_thread(worker, (i,))
    finally:
        if old_stack is not None:
            mod.stack_size(old_stack)
    started_lock.acquire()          # every thread is running
    t0 = perf_counter()
    go.release()
    time.sleep(duration)
    state["stop"] = True
    t_stop = perf_counter()
    all_done.acquire()
    drain = perf_counter() - t_stop
    elapsed = t_stop - t0
    total = sum(ops)
    return {
        "threads": nthreads,
        "ops_per_s": total / elapsed,
        "max_wait_ms": max(max_wait) * 1e3,
        "starved_threads": sum(1 for x in ops if x == 0),
        "min_ops_per_thread": min(ops),
        "max_ops_per_thread": max(ops),
        "elapsed_s": elapsed,
        "drain_s": drain,
    }


# --------------------------------------------------------------------------
# main


FLOOR = "call floor: (0).bit_length()+[].__len__()"

PER_OP = [
    ("loop overhead (for _ in repeat)", t_loop_overhead, 1.0),
    (FLOOR, t_call_floor, 1.0),
    ("lock acquire()+release()", t_acquire_release, 1.0),
    ("with lock:", t_with_lock, 1.0),
    ("lock acquire(True, 1.0)+release()", t_acquire_timeout_release, 1.0),
    ("allocate_lock()", t_allocate_lock, 1.0),
    ("RLock acquire()+release()", t_rlock_acquire_release, 1.0),
    ("with rlock:", t_with_rlock, 1.0),
    ("get_ident()", t_get_ident, 1.0),
    ("start_new_thread until done", t_start_thread, 1.0),
    ("2-thread ping-pong (round trip)", t_pingpong, 1.0),
]

# Figures printed with their ratio to the call floor (two calls each).
FLOOR_RELATIVE = {
    "lock acquire()+release()",
    "with lock:",
    "lock acquire(True, 1.0)+release()",
    "RLock acquire()+release()",
    "with rlock:",
}


# Diagnostics settings for the overhead figures: (label, flag names).
DIAG_SETTINGS = [
    ("off", ()),
    ("deadlock detection", ("DEADLOCK",)),
    ("deadlock + hang watchdog bookkeeping", ("DEADLOCK", "HANG")),
    ("deadlock + lock-order + profile", ("DEADLOCK", "LOCK_ORDER", "PROFILE")),
]


def diag_overhead(repeats: int, target: float) -> list[dict]:
    """rsthread's uncontended acquire+release and `with lock:` with each
    diagnostics setting, alternated within every repeat; best of N each."""
    diag = sys.modules["rsthread._diag"]

    def setting(names):
        flags = 0
        for name in names:
            flags |= getattr(diag, name)
        return flags

    def timed(maker, flags):
        lock = rs.allocate_lock()  # made while the setting is on, as a program's would be
        run = maker(lock)

        def fn(n):
            diag.set_config(flags, False, False)
            try:
                return run(n)
            finally:
                diag.set_config(0, False, False)
        return fn

    out = []
    for figure, maker in (("lock acquire()+release()", _acquire_release_loop), ("with lock:", _with_loop)):
        diag.set_config(setting(DIAG_SETTINGS[0][1]), False, False)
        fns = {}
        for label, names in DIAG_SETTINGS:
            diag.set_config(setting(names), False, False)
            fns[label] = timed(maker, setting(names))
            diag.set_config(0, False, False)
        n = calibrate(fns["off"], target)
        best = best_of(fns, n, repeats)
        for label, _ in DIAG_SETTINGS:
            out.append({"figure": figure, "setting": label, "ns": best[label],
                        "ratio_to_off": best[label] / best["off"]})
    diag.set_config(0, False, False)
    diag.reset()
    return out


def add_floor_ratios(rows: list[dict]) -> None:
    """Give each FLOOR_RELATIVE row `stock_to_floor` / `rsthread_to_floor`:
    its time over the same module's call-floor time from the same run."""
    floor = next(r for r in rows if r["figure"] == FLOOR)
    for r in rows:
        if r["figure"] in FLOOR_RELATIVE:
            for side in ("stock", "rsthread"):
                v, f = r[side], floor[side]
                r[f"{side}_to_floor"] = v / f if (v is not None and f) else None


def fmt_num(x, unit):
    if x is None:
        return "-"
    if unit == "ns":
        return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"
    if unit == "ops/s":
        return f"{x:,.0f}"
    if unit in ("us", "ms"):
        return f"{x:,.1f}"
    return f"{x:,}" if isinstance(x, int) else f"{x:,.1f}"


def fmt_ratio(x):
    return "-" if x is None else f"{x:.2f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--repeats", type=int, default=7,
                    help="best-of-N for each figure (default 7; contended figures use at most 3)")
    ap.add_argument("--target", type=float, default=0.2,
                    help="seconds per timing run for per-op figures (default 0.2)")
    ap.add_argument("--contended-duration", type=float, default=1.0,
                    help="seconds per contended run (default 1.0)")
    ap.add_argument("--contended-threads", default="2,4,16,1000",
                    help="thread counts for the contended figures (default 2,4,16,1000)")
    ap.add_argument("--overshoot-samples", type=int, default=100,
                    help="timed acquires per module for the overshoot figure (default 100)")
    ap.add_argument("--quick", action="store_true", help="fast smoke run")
    ap.add_argument("--json", metavar="OUT", help="write the results as JSON")
    ap.add_argument("--stock-only", action="store_true",
                    help="measure stock _thread only (also automatic if rsthread is missing)")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats = min(args.repeats, 2)
        args.target = min(args.target, 0.01)
        args.contended_duration = min(args.contended_duration, 0.1)
        args.overshoot_samples = min(args.overshoot_samples, 10)

    mods = {"stock": stock}
    if rs is not None and not args.stock_only:
        mods["rsthread"] = rs
    elif rs is None:
        print(f"note: rsthread: not available on this version ({RS_IMPORT_ERROR}); stock only",
              file=sys.stderr)

    meta = {
        **run_meta(),
        "rsthread_file": getattr(rs, "__file__", None),
        "rsthread_error": RS_IMPORT_ERROR,
        "repeats": args.repeats,
        "quick": args.quick,
        "switchinterval": sys.getswitchinterval(),
    }
    other_load = OtherLoad()
    t_start = time.monotonic()
    rows = []

    def add(figure, unit, better, stock_v, rs_v, **extra):
        ratio = (rs_v / stock_v) if (rs_v is not None and stock_v) else None
        rows.append({"figure": figure, "unit": unit, "better": better,
                     "stock": stock_v, "rsthread": rs_v, "ratio": ratio, **extra})

    def progress(msg):
        print(f"  .. {msg}", file=sys.stderr, flush=True)

    # per-op figures
    for figure, maker, scale in PER_OP:
        progress(figure)
        timers = {name: maker(mod) for name, mod in mods.items()}
        target = args.target
        if maker in (t_start_thread, t_pingpong):
            target = max(target, 0.05)
        n = calibrate(timers["stock"], target)
        best = best_of(timers, n, args.repeats)
        add(figure, "ns", "lower", best["stock"] * scale,
            best.get("rsthread") and best["rsthread"] * scale, loops=n)
    add_floor_ratios(rows)

    # timed-acquire overshoot
    progress("timed acquire overshoot")
    ov = overshoot(mods, args.overshoot_samples)
    add("5 ms timed acquire: median overshoot", "us", "lower",
        ov["stock"]["median_us"], ov.get("rsthread", {}).get("median_us"))
    add("5 ms timed acquire: max overshoot", "us", "lower",
        ov["stock"]["max_us"], ov.get("rsthread", {}).get("max_us"))
    add("5 ms timed acquire: returned early (must be 0)", "count", "zero",
        ov["stock"]["early"], ov.get("rsthread", {}).get("early"),
        acquired_stock=ov["stock"]["acquired"],
        acquired_rsthread=ov.get("rsthread", {}).get("acquired"),
        samples=args.overshoot_samples)

    # contended throughput
    for nthreads in [int(x) for x in args.contended_threads.split(",") if x]:
        progress(f"contended, {nthreads} threads")
        best = {}
        for _ in range(max(1, min(args.repeats, 3 if nthreads < 1000 else 2))):
            for name, mod in mods.items():
                gc.collect()
                r = contended_run(mod, nthreads, args.contended_duration)
                b = best.setdefault(name, {"ops_per_s": 0.0, "max_wait_ms": 0.0,
                                           "starved_threads": 0, "drain_s": 0.0})
                b["ops_per_s"] = max(b["ops_per_s"], r["ops_per_s"])
                # worst case over the runs for the fairness figures
                b["max_wait_ms"] = max(b["max_wait_ms"], r["max_wait_ms"])
                b["starved_threads"] = max(b["starved_threads"], r["starved_threads"])
                b["drain_s"] = max(b["drain_s"], r["drain_s"])
        s, r = best["stock"], best.get("rsthread")
        add(f"contended {nthreads} threads: throughput", "ops/s", "higher",
            s["ops_per_s"], r and r["ops_per_s"])
        add(f"contended {nthreads} threads: longest wait", "ms", "lower",
            s["max_wait_ms"], r and r["max_wait_ms"], duration_s=args.contended_duration)
        add(f"contended {nthreads} threads: threads with 0 ops", "count", "lower",
            s["starved_threads"], r and r["starved_threads"])

    # diagnostics overhead (rsthread only)
    diag_rows = []
    if "rsthread" in mods:
        progress("diagnostics overhead")
        diag_rows = diag_overhead(args.repeats, args.target)

    # sizes
    add("sys.getsizeof(lock)", "bytes", "lower", sys.getsizeof(stock.allocate_lock()),
        sys.getsizeof(rs.allocate_lock()) if "rsthread" in mods else None)
    add("sys.getsizeof(RLock)", "bytes", "lower", sys.getsizeof(stock.RLock()),
        sys.getsizeof(rs.RLock()) if "rsthread" in mods else None)

    meta["loadavg_end"] = loadavg()
    meta["wall_s"] = round(time.monotonic() - t_start, 1)
    meta["other_cpu_fraction"] = other_load.fraction()

    # table
    print_run_header(meta, f"best of {args.repeats}")
    w = max(len(r["figure"]) for r in rows) + 8
    head = (f"{'figure':<{w}} {'stock':>14} {'rsthread':>14} {'ratio to stock':>15} "
            f"{'ratio to floor (stock / rs)':>28}")
    print(head)
    print("-" * len(head))
    for r in rows:
        label = f"{r['figure']} [{r['unit']}]"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        if r["better"] == "zero":
            ratio = "ok" if r["rsthread"] == 0 else ("-" if r["rsthread"] is None else "EARLY!")
        to_floor = ""
        if "stock_to_floor" in r:
            sf, rf = r["stock_to_floor"], r["rsthread_to_floor"]
            to_floor = f"{fmt_ratio(sf)} / {fmt_ratio(rf)}"
        rs_cell = fmt_num(r["rsthread"], r["unit"])
        if rs is None:
            rs_cell = "n/a"
        print(f"{label:<{w}} {fmt_num(r['stock'], r['unit']):>14} "
              f"{rs_cell:>14} {ratio:>15} {to_floor:>28}")
    if rs is None:
        print(f"rsthread: not available on this version ({RS_IMPORT_ERROR})")
    print("ratio < 1 is better for times, waits and sizes; > 1 is better for throughput.")
    print("ratio to floor: the figure over the same module's call floor (two no-op builtin calls).")
    if diag_rows:
        print()
        print("diagnostics overhead (rsthread, uncontended; stock without diagnostics for reference):")
        wd = max(len(r["setting"]) for r in diag_rows) + 2
        stock_ns = {r["figure"]: r["stock"] for r in rows}
        for figure in dict.fromkeys(r["figure"] for r in diag_rows):
            print(f"  {figure}   (stock: {fmt_num(stock_ns.get(figure), 'ns')} ns)")
            for r in (x for x in diag_rows if x["figure"] == figure):
                print(f"    {r['setting']:<{wd}} {fmt_num(r['ns'], 'ns'):>10} ns   x{r['ratio_to_off']:.2f} of off")

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": rows, "diag": diag_rows}, f, indent=2)
        print(f"wrote {args.json}")

    early = [r for r in rows if r["better"] == "zero" and r["rsthread"]]
    return 1 if early else 0


if __name__ == "__main__":
    sys.exit(main())
