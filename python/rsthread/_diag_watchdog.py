"""The hang watchdog (``hang_timeout``): a thread that reports waits lasting
longer than the timeout, once per cause, with a dump of the threads
involved. Private: the API is :mod:`rsthread.diagnostics`."""
from __future__ import annotations

from . import _diag_common, _thread
from ._diag_common import _config, _diag, _frames, _name_of, _write
from ._diag_dump import _chain_prose, _format_dump
from ._diag_format import _dur, _is_sentinel, _lock_label

_watchdog_started = False


def _hang_worthy(w: dict) -> bool:
    """A long wait worth a report: for a lock held by another thread (or by
    nobody left), not a join (the joined thread is just running) nor a
    Condition/Event/queue wait (a thread waiting on its own waiter lock)."""
    wait = w["wait"]
    if _is_sentinel(wait["lock"]):
        return False
    holder = wait["holder"]
    return not (holder and holder["ident"] == w["ident"] and wait["lock"]["kind"] == "Lock")


def _chain_key(c: dict, snap: dict):
    """What a stuck chain is stuck on: a report per distinct cause (a hold
    by the thread at its end, a cycle of wait episodes...), so waiters piling
    up behind the same holder do not repeat the report."""
    end = c["end"]
    last = c["links"][-1]
    if end["kind"] == "running":
        holder = end["thread"]["ident"]
        t = snap.get(holder)
        since = next((h.get("since_ns") for h in (t["held"] if t else []) if h["lock"]["id"] == last["lock"]["id"]),
                     None)
        return ("running", holder, last["lock"]["id"], since)
    if end["kind"] == "cycle":
        eps = []
        for link in c["links"][end["start"]:]:
            t = snap.get(link["ident"])
            eps.append((link["ident"], t["waiting"]["episode"] if t and t["waiting"] else None))
        return ("cycle", frozenset(eps))
    first = snap.get(c["links"][0]["ident"])
    return (end["kind"], last["lock"]["id"],
            first["waiting"]["episode"] if first and first["waiting"] else None)


def _watch_once(timeout: float, reported_eps: set, reported_keys: set) -> None:
    waits = _diag.longest_waits(timeout)
    new = []
    for w in waits:
        ep = w["wait"]["episode"]
        if ep in reported_eps:
            continue
        reported_eps.add(ep)
        if _hang_worthy(w):
            new.append(w)
    if not new:
        return
    from .diagnostics import snapshot, wait_chains  # loaded: it started the watchdog

    frames = _frames()
    snap = {t["ident"]: t for t in snapshot(stacks=False)["threads"]}
    all_chains = wait_chains()
    by_first = {c["links"][0]["ident"]: c for c in all_chains}
    groups: dict = {}
    for w in new:
        c = by_first.get(w["ident"])
        if c is not None:
            groups.setdefault(_chain_key(c, snap), []).append((w, c))
    for key, items in groups.items():
        lines = []
        for w, _c in items:
            lines.append(f"rsthread: thread {_name_of(w['ident'], w.get('name'))!r} has been waiting "
                         f"{_dur(w['wait']['waited'])} for {_lock_label(w['wait']['lock'])} "
                         f"(hang_timeout={timeout:g}s)")
        if key in reported_keys:
            for _w, c in items:
                lines.append("  " + _chain_prose(c, frames) + " (reported above)")
            _write("\n".join(lines) + "\n")
            continue
        reported_keys.add(key)
        chains = [c for _, c in items]
        only = set()
        for c in chains:
            only.update(link["ident"] for link in c["links"])
            if c["end"]["kind"] == "running":
                only.add(c["end"]["thread"]["ident"])
        _write("\n".join(lines) + "\n" + _format_dump(frames, snap, chains, only))
    if len(reported_eps) > 100_000:  # pragma: no cover - bounded memory
        live = {w["wait"]["episode"] for w in waits}
        reported_eps.intersection_update(live)


def _watchdog() -> None:
    import time

    _diag_common._watchdog_ident = _thread.get_ident()
    # Not a thread the program waits on: unregister, so "every thread is
    # blocked" can still be true while it sleeps.
    _diag.thread_exited(_thread.get_ident())
    reported_eps: set = set()
    reported_keys: set = set()
    sleep = time.sleep
    while True:
        try:
            timeout = _config.hang_timeout
            sleep(min(0.5, timeout / 2) if timeout else 0.5)
            if not timeout or not _diag.flags():
                continue
            if _config.deadlock:
                _diag.detect_deadlock(0)
            _watch_once(timeout, reported_eps, reported_keys)
        except Exception as e:  # pragma: no cover
            if _diag is None or _config is None:  # module torn down at shutdown
                return
            _write(f"rsthread: watchdog error: {e!r}\n")


def _start_watchdog() -> None:
    global _watchdog_started
    if _watchdog_started:
        return
    try:  # only in the main interpreter (a subinterpreter must end its threads)
        import _xxsubinterpreters as _interp

        if _interp.get_current() != _interp.get_main():
            return
    except Exception:  # pragma: no cover
        pass
    _watchdog_started = True
    _thread.start_new_thread(_watchdog, ())
