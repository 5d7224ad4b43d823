#!/usr/bin/env python3
"""Write benchmarks/RESULTS.md from the outputs of one benchmarks/run.sh.

Inputs: the JSON of bench_thread.py and bench_stdlib.py, and criterion's
estimates under benchmarks/target/criterion (only those written since
``--since``, so older runs are not mixed in).

    python3 benchmarks/summarize.py --thread t.json --stdlib s.json \
        --criterion benchmarks/target/criterion --since EPOCH --out benchmarks/RESULTS.md

With ``--versions DIR`` (what ``run.sh --python ...`` writes: one
subdirectory per interpreter, each with ``thread.json`` and ``stdlib.json``)
it writes instead one table with the interpreters as columns and the
figures as rows; a version where rsthread does not import says so in its
column.

    python3 benchmarks/summarize.py --versions benchmarks/target/results/versions \
        --out benchmarks/RESULTS-versions.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

from _benchutil import BUSY_THRESHOLD, cpu_model

LOCKS = ["rsthread_core::RawLock", "parking_lot::RawMutex", "std::sync::Mutex<()>"]


def nproc() -> str:
    try:
        return subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return str(os.cpu_count())


def fmt(x, unit=""):
    if x is None:
        return "-"
    if isinstance(x, int):
        return f"{x:,}"
    if unit == "ops/s" or abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.1f}"


def load_note(other) -> str:
    if other is None:
        return "background load unknown"
    note = f"other processes used {other:.0%} of the CPUs meanwhile"
    if other > BUSY_THRESHOLD:
        note += " (**noisy**)"
    return note


def thread_section(path: Path) -> list[str]:
    d = json.loads(path.read_text())
    m = d["meta"]
    out = ["## `_thread` micro-benchmarks (bench_thread.py)", ""]
    out.append(f"Best of {m['repeats']}, one interpreter, stock and rsthread alternated; "
               f"{m['wall_s']} s; {load_note(m.get('other_cpu_fraction'))}.")
    out.append("Ratio = rsthread / stock: below 1 is better for times, waits and sizes, "
               "above 1 is better for throughput.")
    out.append("")
    out.append("Ratio to floor = the figure / the same module's call floor (two no-op builtin "
               "method calls in the same loop).")
    out.append("")
    out.append("| figure | unit | stock | rsthread | ratio to stock | ratio to floor (rsthread / stock) |")
    out.append("|---|---|---:|---:|---:|---:|")
    for r in d["results"]:
        if r["better"] == "zero":
            ratio = "-" if r["rsthread"] is None else ("never early" if r["rsthread"] == 0
                                                       else "**RETURNED EARLY**")
        else:
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        to_floor = ""
        if "stock_to_floor" in r:
            rf, sf = r.get("rsthread_to_floor"), r["stock_to_floor"]
            to_floor = f"{'-' if rf is None else format(rf, '.2f')} / {'-' if sf is None else format(sf, '.2f')}"
        out.append(f"| {r['figure']} | {r['unit']} | {fmt(r['stock'], r['unit'])} | "
                   f"{fmt(r['rsthread'], r['unit'])} | {ratio} | {to_floor} |")
    if m.get("rsthread_error"):
        out += ["", f"{NOT_AVAILABLE} ({m['rsthread_error']})."]
    if d.get("diag"):
        out += ["", "### Diagnostics overhead (rsthread, uncontended)", "",
                "| figure | setting | ns/op | ratio to off |", "|---|---|---:|---:|"]
        for r in d["diag"]:
            out.append(f"| {r['figure']} | {r['setting']} | {fmt(r['ns'], 'ns')} | {r['ratio_to_off']:.2f} |")
    return out


def stdlib_section(path: Path) -> list[str]:
    d = json.loads(path.read_text())
    m = d["meta"]
    out = ["## stdlib workloads (bench_stdlib.py)", ""]
    out.append(f"Each run in a fresh interpreter; best of {m['repeats']}, stock and rsthread "
               f"alternated; {m['wall_s']} s; {load_note(m.get('other_cpu_fraction'))}. "
               "Ratio = rsthread / stock (below 1: rsthread faster).")
    out.append("")
    out.append("| workload | n | stock µs/op | rsthread µs/op | ratio |")
    out.append("|---|---:|---:|---:|---:|")
    for r in d["results"]:
        rr, sr = r["rsthread_us_per_op"], r["stock_us_per_op"]
        fails = r.get("failed", [])
        rr_s = ("**FAILED**" if "rsthread" in fails else "-") if rr is None else f"{rr:.3f}"
        sr_s = ("**FAILED**" if "stock" in fails else "-") if sr is None else f"{sr:.3f}"
        ratio_s = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        out.append(f"| {r['description']} (`{r['workload']}`) | {r['n']:,} | "
                   f"{sr_s} | {rr_s} | {ratio_s} |")
    g = m.get("geomean_ratio")
    out.append(f"| **geometric mean of ratios** | | | | **{'-' if g is None else format(g, '.2f')}** |")
    if m.get("diag"):
        out += ["", f"With diagnostics on (`RSTHREAD_DIAG={m['diag']}`), same runs; "
                "ratio = rsthread with them / rsthread without:", "",
                "| workload | rsthread µs/op | with diagnostics µs/op | ratio |", "|---|---:|---:|---:|"]
        for r in d["results"]:
            du, dr, rr = r.get("diag_us_per_op"), r.get("diag_ratio"), r["rsthread_us_per_op"]
            out.append(f"| `{r['workload']}` | {'-' if rr is None else format(rr, '.3f')} | "
                       f"{'-' if du is None else format(du, '.3f')} | {'-' if dr is None else format(dr, '.2f')} |")
        dg = m.get("diag_geomean_ratio")
        out.append(f"| **geometric mean** | | | **{'-' if dg is None else format(dg, '.2f')}** |")
    return out


def criterion_section(root: Path, since: float, load: Path | None) -> list[str]:
    rows: dict[str, dict[str, float]] = {}
    order: list[str] = []
    for bj in sorted(root.glob("**/new/benchmark.json")):
        est = bj.with_name("estimates.json")
        if not est.exists() or est.stat().st_mtime < since:
            continue
        b = json.loads(bj.read_text())
        e = json.loads(est.read_text())
        ns = e["median"]["point_estimate"]
        elems = (b.get("throughput") or {}).get("Elements") or 1
        parts = [b["group_id"], b.get("function_id"), b.get("value_str")]
        lock = next((p for p in parts if p in LOCKS), None)
        if lock is None:
            continue
        label = "/".join(p for p in parts if p and p != lock)
        if label not in rows:
            rows[label] = {}
            order.append(label)
        rows[label][lock] = ns / elems
    if not rows:
        return ["## Rust core locks (criterion)", "", "(no criterion results found)"]
    out = ["## Rust core locks (criterion, benches/locks.rs)", ""]
    other = None
    if load and load.exists():
        other = json.loads(load.read_text()).get("other_cpu_fraction")
    out.append("Median ns per lock/unlock pair (contended: per pair over all threads; "
               "handoff: per round trip). Ratio = RawLock / other (below 1: RawLock faster); "
               f"{load_note(other)}.")
    out.append("")
    out.append("| benchmark | RawLock | parking_lot | std Mutex | RawLock/parking_lot | RawLock/std |")
    out.append("|---|---:|---:|---:|---:|---:|")
    def key(label):
        group = label.split("/")[0]
        return (["uncontended", "contended", "handoff"].index(group)
                if group in ("uncontended", "contended", "handoff") else 9, label)
    for label in sorted(order, key=key):
        v = rows[label]
        a, p, s = (v.get(k) for k in LOCKS)
        rp = f"{a / p:.2f}" if a and p else "-"
        rs = f"{a / s:.2f}" if a and s else "-"
        out.append(f"| {label} | {fmt(a)} | {fmt(p)} | {fmt(s)} | {rp} | {rs} |")
    return out


# Rows of the per-version table: (label, bench_thread figure) ...
VERSION_THREAD_ROWS = [
    ("acquire()+release()", "lock acquire()+release()"),
    ("`with lock:`", "with lock:"),
    ("timed acquire(True, 1.0)+release()", "lock acquire(True, 1.0)+release()"),
    ("RLock acquire()+release()", "RLock acquire()+release()"),
    ("`with rlock:`", "with rlock:"),
    ("thread start until done", "start_new_thread until done"),
    ("2-thread lock ping-pong (round trip)", "2-thread ping-pong (round trip)"),
]
NOT_AVAILABLE = "rsthread: not available on this version"


def _version_key(d: Path):
    try:
        v = json.loads((d / "thread.json").read_text())["meta"]["python"]
        return tuple(int(x) for x in v.split(".")[:3] if x.isdigit()), d.name
    except (OSError, ValueError, KeyError):
        return (99,), d.name


def _pair(stock, rs, available: bool, unit: str, digits: int = 1) -> str:
    """`rsthread / stock (ratio)` for one cell."""
    def f(x):
        return "-" if x is None else (f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.{digits}f}")
    if not available:
        return f"stock {f(stock)} {unit}; {NOT_AVAILABLE}"
    ratio = f"{rs / stock:.2f}" if (rs is not None and stock) else "-"
    return f"{f(rs)} / {f(stock)} {unit} (**{ratio}**)"


def versions_section(root: Path) -> list[str]:
    """One table: a column per interpreter (a subdirectory of `root`), a row
    per figure. Cells: rsthread / stock (ratio)."""
    dirs = sorted((d for d in root.iterdir() if d.is_dir() and (d / "thread.json").exists()),
                  key=_version_key)
    if not dirs:
        return ["(no per-version results found under " + str(root) + ")"]
    cols = []
    for d in dirs:
        t = json.loads((d / "thread.json").read_text())
        st = json.loads((d / "stdlib.json").read_text()) if (d / "stdlib.json").exists() else None
        rows = {r["figure"]: r for r in t["results"]}
        available = any(r.get("rsthread") is not None for r in t["results"])
        cols.append({"dir": d, "meta": t["meta"], "rows": rows, "stdlib": st,
                     "available": available})
    head = ["figure"] + [f"{c['meta']['python']} (`{c['meta'].get('base_executable') or c['meta']['executable']}`)"
                         for c in cols]
    out = ["## Per interpreter version", "",
           "Each column is one run of `benchmarks/run.sh --python PATH`: stock and rsthread "
           "measured side by side on that interpreter. Cells: rsthread / stock "
           "(**ratio**, below 1: rsthread faster). Only a column from an optimized build "
           "(e.g. Debian's `/usr/bin/python3.X`) gives figures worth quoting; pyenv builds "
           "are unoptimized (correctness only).", ""]
    out.append("| " + " | ".join(head) + " |")
    out.append("|---" + "|---:" * len(cols) + "|")

    def row(label, cells):
        out.append("| " + " | ".join([label, *cells]) + " |")

    row("load during the run", [load_note(c["meta"].get("other_cpu_fraction")) for c in cols])
    floor = "call floor: (0).bit_length()+[].__len__()"
    row("call floor: 2 no-op builtin calls", [
        "-" if floor not in c["rows"] else
        f"{c['rows'][floor]['stock']:.1f} ns" for c in cols])
    for label, figure in VERSION_THREAD_ROWS:
        cells = []
        for c in cols:
            r = c["rows"].get(figure)
            cells.append("-" if r is None else
                         _pair(r["stock"], r["rsthread"], c["available"], "ns"))
        row(label, cells)
    for label, figure in VERSION_THREAD_ROWS[:5]:
        cells = []
        for c in cols:
            r = c["rows"].get(figure)
            if r is None or "stock_to_floor" not in r:
                cells.append("-")
            elif not c["available"]:
                cells.append(f"stock {r['stock_to_floor']:.2f}x")
            else:
                rf = r.get("rsthread_to_floor")
                cells.append(f"{'-' if rf is None else format(rf, '.2f')}x / "
                             f"{r['stock_to_floor']:.2f}x")
        row(f"{label}: ratio to floor (rsthread / stock)", cells)
    names = []
    for c in cols:
        for r in (c["stdlib"] or {}).get("results", []):
            if r["workload"] not in names:
                names.append(r["workload"])
    for name in names:
        cells = []
        for c in cols:
            r = next((x for x in (c["stdlib"] or {}).get("results", []) if x["workload"] == name), None)
            if r is None:
                cells.append("-")
            elif "rsthread" in r.get("failed", []):
                cells.append("rsthread **FAILED**")
            else:
                avail = c["available"] and c["stdlib"]["meta"].get("rsthread") is not None
                cells.append(_pair(r["stock_us_per_op"], r["rsthread_us_per_op"], avail, "µs", 3))
        row(f"stdlib `{name}` (per op)", cells)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--thread", type=Path)
    ap.add_argument("--stdlib", type=Path)
    ap.add_argument("--criterion", type=Path)
    ap.add_argument("--criterion-load", type=Path, help="JSON from `_benchutil.py measure`")
    ap.add_argument("--since", type=float, default=0.0)
    ap.add_argument("--note", default="", help="free text added under the header")
    ap.add_argument("--versions", type=Path,
                    help="directory of per-interpreter results (run.sh --python): write the "
                         "per-version table instead")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()

    lines = ["# rsthread benchmark results", ""]
    lines.append(f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}")
    lines.append(f"- nproc: {nproc()}")
    lines.append(f"- CPU: {cpu_model()}")
    lines.append(f"- Python: {platform.python_version()}; kernel {platform.release()}")
    lines.append("- produced by `benchmarks/run.sh`")
    if a.note:
        lines.append(f"- note: {a.note}")
    if a.versions:
        lines += [""] + versions_section(a.versions) + [""]
        a.out.write_text("\n".join(lines))
        print(f"wrote {a.out}")
        return 0
    for path, fn, title in ((a.thread, thread_section, "bench_thread.py"),
                            (a.stdlib, stdlib_section, "bench_stdlib.py")):
        if path and path.exists():
            lines += [""] + fn(path)
        elif path:
            lines += ["", f"## {title}", "", f"No results: {title} failed before writing {path}."]
    if a.criterion and a.criterion.exists():
        lines += [""] + criterion_section(a.criterion, a.since, a.criterion_load)
    lines += ["", "## Reading these figures", "",
              "- Ping-pong figures (`2-thread ping-pong`, `condition_pingpong`) are bimodal on a "
              "2-vCPU VM: a round trip takes either a few µs or tens of µs depending on whether "
              "the woken thread lands on an idle vCPU, for stock and rsthread alike. Best-of-N "
              "smooths this only partly; compare several runs before reading a ratio there.",
              "- Contended figures run under the GIL: throughput mostly shows whether the releasing "
              "thread can take the lock straight back (barging), and `longest wait` / `threads "
              "with 0 ops` show what that costs in fairness.",
              "- Figures taken while other processes used more than "
              f"{BUSY_THRESHOLD:.0%} of the CPUs are marked **noisy**; "
              "`WAIT_IDLE=240 benchmarks/run.sh` waits for a quiet machine before each step."]
    lines.append("")
    a.out.write_text("\n".join(lines))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
