#!/usr/bin/env python3
"""Write benchmarks/RESULTS.md from the outputs of one benchmarks/run.sh.

Inputs: the JSON of bench_thread.py and bench_stdlib.py, and criterion's
estimates under benchmarks/target/criterion (only those written since
``--since``, so older runs are not mixed in).

    python3 benchmarks/summarize.py --thread t.json --stdlib s.json \
        --criterion benchmarks/target/criterion --since EPOCH --out benchmarks/RESULTS.md
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
    out.append("| figure | unit | stock | rsthread | ratio |")
    out.append("|---|---|---:|---:|---:|")
    for r in d["results"]:
        if r["better"] == "zero":
            ratio = "-" if r["rsthread"] is None else ("never early" if r["rsthread"] == 0
                                                       else "**RETURNED EARLY**")
        else:
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        out.append(f"| {r['figure']} | {r['unit']} | {fmt(r['stock'], r['unit'])} | "
                   f"{fmt(r['rsthread'], r['unit'])} | {ratio} |")
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--thread", type=Path)
    ap.add_argument("--stdlib", type=Path)
    ap.add_argument("--criterion", type=Path)
    ap.add_argument("--criterion-load", type=Path, help="JSON from `_benchutil.py measure`")
    ap.add_argument("--since", type=float, default=0.0)
    ap.add_argument("--note", default="", help="free text added under the header")
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
