"""The text of diagnostics' reports: lock labels, durations, and the
deadlock, lock-order inversion and exit-leak reports. Private: the API is
:mod:`rsthread.diagnostics`."""
from __future__ import annotations

import os

from ._diag_common import _config, _exited_name, _name_of


def _short(site: str) -> str:
    """A site with the current directory stripped from its file name."""
    try:
        cwd = os.getcwd()
    except OSError:  # pragma: no cover
        return site
    if site.startswith(cwd + os.sep):
        return site[len(cwd) + 1:]
    return site


_SENTINEL_SITE = "<thread sentinel> (Thread.join waits for it)"


def _is_sentinel(lock: dict) -> bool:
    return lock.get("site") == _SENTINEL_SITE


def _visible_held(held: list) -> list:
    """Held locks worth showing: a thread's own sentinel is always held."""
    return [h for h in held if not _is_sentinel(h["lock"])]


def _lock_label(lock: dict) -> str:
    site = lock.get("site", "<unknown>")
    if site == _SENTINEL_SITE:
        return f"thread sentinel #{lock['id']} (Thread.join: the thread's end)"
    if site == "<unknown>":
        return f"{lock['kind']} #{lock['id']} (created before diagnostics were enabled)"
    return f"{lock['kind']} #{lock['id']} created at {_short(site)}"


def _dur(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f}us"
    if s < 1.0:
        return f"{s * 1e3:.1f}ms"
    return f"{s:.2f}s"


def _format_cycle(threads: list[dict], detected_by: int | None = None) -> list[str]:
    out = []
    n = len(threads)
    for i, t in enumerate(threads):
        nxt = threads[(i + 1) % n]
        mark = "  <- detected here" if t["ident"] == detected_by else ""
        out.append(f"  Thread {t['name']!r} (ident {t['ident']:#x}, native id {t['native_id']}){mark}")
        holder = "itself" if nxt is t else f"{nxt['name']!r}"
        out.append(f"    waits for {_lock_label(t['waits_for'])}, held by {holder}"
                   f" (waiting {_dur(t['waited'])})")
        held = _visible_held(t["held"])
        if not held:
            out.append("    holds no locks")
        for h in held:
            depth = f", depth {h['depth']}" if h["depth"] > 1 else ""
            out.append(f"    holds {_lock_label(h['lock'])}, acquired at {_short(h['acquire_site'])}{depth}")
        if t.get("traceback"):
            out.append("    Traceback (most recent call last):")
            for line in t["traceback"].rstrip("\n").split("\n"):
                out.append("    " + line)
    return out


def _process_note() -> str:
    """In a forked child, which process a report comes from."""
    pid = os.getpid()
    if _config.pid and pid != _config.pid:
        return f" [in process {pid}, forked from {_config.pid}]"
    return ""


def _format_deadlock(report: dict) -> str:
    threads = report["threads"]
    n = len(threads)
    if n == 1:
        what = "a thread waits for a lock it holds itself"
    else:
        what = f"{n} threads, each waiting for a lock held by the next"
    rule = ("every other thread is blocked too" if report["rule"] == "all-blocked"
            else "only these threads could release these locks")
    lines = [f"rsthread: deadlock detected ({what}; {rule}){_process_note()}"]
    lines += _format_cycle(threads, report["detected_by"])
    for other in report.get("other_cycles", []):
        lines.append("  another cycle, found at the same moment:")
        lines += _format_cycle(other)
    return "\n".join(lines) + "\n"


def _format_inversion(inv: dict) -> str:
    edges = inv["edges"]
    n = len(edges)
    if inv["same_class"] and n == 2:
        head = ("rsthread: lock-order inversion: two locks created at the same site were taken in both "
                "orders (potential deadlock)")
    elif inv["same_class"]:
        head = (f"rsthread: lock-order inversion: {n} locks created at the same site were taken in a cycle "
                "of orders (potential deadlock)")
    else:
        head = f"rsthread: lock-order inversion: {n} lock sites taken in a cycle of orders (potential deadlock)"
    lines = [head + _process_note()]
    for e in edges:
        t = e["thread"]
        name = _name_of(t["ident"], t.get("name"))
        if inv["same_class"]:
            first = f"lock #{e['from_lock']} (created at {_short(e['from'])})"
            second = f"lock #{e['to_lock']}"
        else:
            first = f"a lock created at {_short(e['from'])}"
            second = f"a lock created at {_short(e['to'])}"
        lines.append(f"  Thread {name!r} (ident {t['ident']:#x}) held {first}, acquired at {_short(e['held_site'])},")
        lines.append(f"      then acquired {second} at {_short(e['acquire_site'])}")
        if e.get("stack"):
            lines.append("    Stack at that acquire (most recent call last; the held lock was taken in an outer frame):")
            for line in e["stack"].rstrip("\n").split("\n"):
                lines.append("      " + line)
    lines.append("  Threads running these paths at the same time can deadlock: take the locks in one global order.")
    return "\n".join(lines) + "\n"


def _format_leaks(leaks: list) -> str:
    """Locks still held by threads that just exited (reported at once)."""
    lines = []
    for lk in leaks:
        t = lk["thread"]
        name = _exited_name(t)
        lines.append(f"rsthread: thread {name!r} (ident {t['ident']:#x}) exited while holding "
                     f"{_lock_label(lk['lock'])} (acquired at {_short(lk['acquire_site'])}, depth {lk['depth']}); "
                     "nobody can release it now")
    return "\n".join(lines) + "\n"


def _format_exit_leaks(leaks: list) -> str:
    lines = []
    for lk in leaks:
        t = lk["thread"]
        name = _exited_name(t)
        lines.append(f"rsthread: lock leaked: {_lock_label(lk['lock'])} is still held at exit; thread {name!r} "
                     f"(ident {t['ident']:#x}) acquired it at {_short(lk['acquire_site'])} and exited without "
                     "releasing it, and no other thread released it since")
    return "\n".join(lines) + "\n" if lines else ""
