"""Small helpers shared by the benchmark scripts (machine facts, background load)."""

from __future__ import annotations

import os
import platform
import sys


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _proc_stat() -> tuple[int, int] | None:
    """(busy, total) clock ticks over all CPUs since boot."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user/nice
    return total - idle, total


def run_meta() -> dict:
    """What every benchmark records about the interpreter and machine at its start."""
    import time

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "python": sys.version.split()[0],
        "executable": sys.executable,
        # The interpreter a venv was made from (what run.sh --python names).
        "base_executable": getattr(sys, "_base_executable", sys.executable),
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "loadavg_start": loadavg(),
    }


class OtherLoad:
    """How much CPU *other* processes used while we ran.

    The load average is useless here: our own benchmark threads raise it.
    Instead: busy CPU time of the whole machine (/proc/stat) minus the CPU
    time of this process and its waited-for children, as a fraction of all
    CPU time available during the run.
    """

    def __init__(self) -> None:
        self.start = _proc_stat()
        self.self_start = self._self()

    @staticmethod
    def _self() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def fraction(self) -> float | None:
        end = _proc_stat()
        if self.start is None or end is None:
            return None
        tick = os.sysconf("SC_CLK_TCK")
        busy = (end[0] - self.start[0]) / tick
        total = (end[1] - self.start[1]) / tick
        if total <= 0:
            return None
        mine = self._self() - self.self_start
        return max(0.0, min(1.0, (busy - mine) / total))


# Above this share of all CPUs used by other processes, figures are noisy.
BUSY_THRESHOLD = 0.10


def busy_warning(other: float | None) -> str | None:
    if other is not None and other > BUSY_THRESHOLD:
        return (f"WARNING: other processes used {other:.0%} of the CPUs during this run; "
                "figures are noisy")
    return None


def print_run_header(meta: dict, how: str) -> None:
    """The lines above a results table: interpreter, machine, load, noise warning."""
    print()
    print(f"Python {meta['python']}  nproc={meta['nproc']}  cpu={meta['cpu']}")
    other = meta["other_cpu_fraction"]
    print(f"{how}; load average before {meta['loadavg_start']}; "
          f"other processes' CPU share {'-' if other is None else f'{other:.0%}'}; "
          f"wall {meta['wall_s']} s")
    warn = busy_warning(other)
    if warn:
        print(warn)


def wait_idle(max_wait: float, window: float = 5.0, threshold: float = 0.05) -> float | None:
    """Sample `window`-second windows until other processes use less than
    `threshold` of the CPUs, or `max_wait` seconds passed. Returns the last share."""
    import time

    deadline = time.monotonic() + max_wait
    while True:
        load = OtherLoad()
        time.sleep(window)
        share = load.fraction()
        if share is None or share < threshold or time.monotonic() >= deadline:
            return share


def _measure_main(argv: list[str]) -> int:
    """``python _benchutil.py measure OUT.json -- CMD...``: run CMD, then write
    its exit code and the other processes' CPU share during it to OUT.json."""
    import json
    import subprocess

    if len(argv) < 4 or argv[0] != "measure" or argv[2] != "--":
        print("usage: _benchutil.py measure OUT.json -- CMD...", file=sys.stderr)
        return 2
    load = OtherLoad()
    rc = subprocess.call(argv[3:])
    with open(argv[1], "w") as f:
        json.dump({"rc": rc, "other_cpu_fraction": load.fraction()}, f)
    return rc


if __name__ == "__main__":
    if sys.argv[1:2] == ["wait-idle"]:
        # python _benchutil.py wait-idle MAX_SECONDS
        share = wait_idle(float(sys.argv[2]))
        print(f"other processes' CPU share now: {'-' if share is None else f'{share:.0%}'}")
        raise SystemExit(0)
    raise SystemExit(_measure_main(sys.argv[1:]))
