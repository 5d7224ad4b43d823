"""Concurrency diagnostics for programs running on rsthread.

Off by default. Turn them on with any of:

* the runner: ``python -m rsthread --deadlock warn --lock-order --profile
  --trace out.json script.py``;
* the environment (no code change, inherited by subprocesses)::

      RSTHREAD_DIAG="deadlock=warn,lock-order,profile,trace=out.json"

  items: ``deadlock`` (= ``deadlock=warn``), ``deadlock=raise``,
  ``lock-order``, ``profile``, ``trace=PATH``, ``hang=SECONDS``,
  ``dump-signal=SIGUSR1``, ``leaks``; ``off`` (or an empty value) does nothing;
* this module: :func:`configure`.

What you get:

* **deadlocks**: when a thread starts waiting for a lock and that closes a
  wait cycle that cannot resolve, a report ("deadlock detected") with, for
  every thread of the cycle, its name and ident, the lock it waits for, the
  locks it holds (identified by where they were created) and its traceback.
  Mode ``warn`` prints it and keeps waiting; mode ``raise`` raises
  :class:`DeadlockError` in the thread whose acquire closed the cycle.
  Conditions, Events, Semaphores, Barriers, queues and joins are understood
  (a plain lock released by another thread is a signal, not a mutex) and
  never reported by themselves;
* **lock-order inversions** (``lock_order``): a report, once per cycle, when
  locks are taken in inconsistent orders (``transfer(a, b)`` /
  ``transfer(b, a)``), even if it never deadlocked;
* **contention profile** (``profile``): :func:`stats`, and a table printed at
  exit;
* **timeline** (``trace=PATH``): written at exit, for https://ui.perfetto.dev
  (open the file there; ``chrome://tracing`` reads the JSON too). A path
  ending in ``.pftrace`` or ``.perfetto-trace`` gets Perfetto's native
  protobuf format (a track per thread with its Python name, hold/wait slices
  named after the lock's creation site, deadlocks and inversions as instant
  events with the report text), converted from the JSON with the ``perfetto``
  package (``pip install perfetto``, or the ``perfetto`` extra); without that
  package the JSON is written to ``PATH.json`` instead, with a message. Any
  other path gets Chrome trace JSON;
* :func:`snapshot` and :func:`dump` (jstack-like) at any time; ``hang_timeout``
  (a watchdog that dumps when a wait lasts longer) and ``dump_signal`` (dump
  on a signal).

Thread names come from ``threading.Thread`` objects: the name a thread had
when it started is recorded; reports and traces look up the current name of
live threads (``threading._active``) when they are made.

Lock sites are ``"file:line in function"``: the first frame outside
``threading.py``, ``queue.py`` and ``concurrent/`` (so a Condition's lock is
attributed to the code that created the Condition). Locks created before
diagnostics were enabled have no site ("unknown origin").
"""
from __future__ import annotations

import os
import sys

from . import _thread
from ._diag_common import _config, _diag, _frames, _name_of, _stack, _threading, _write
from ._diag_dump import _format_dump
from ._diag_format import _dur, _format_deadlock, _format_exit_leaks, _format_inversion, _format_leaks, _short
from ._diag_trace import _export_trace, _refresh_names
from ._diag_watchdog import _start_watchdog

# The parts are in private modules: _diag_common (shared settings and
# helpers), _diag_format (report texts), _diag_dump (the thread dump and wait
# chains), _diag_watchdog (hang_timeout) and _diag_trace (the trace file).
# The native module calls _report_* and _stack_here here by name, and the
# pytest plugin replaces _report_* here (check_inversions calls
# _report_inversion through this module for that) and uses _format_inversion.

__all__ = [
    "DeadlockError",
    "check_inversions",
    "configure",
    "configure_from_env",
    "dump",
    "enabled",
    "format_stats",
    "reset_stats",
    "snapshot",
    "stats",
    "wait_chains",
]

ENV_VAR = "RSTHREAD_DIAG"
_PID_VAR = "_RSTHREAD_DIAG_PID"


class DeadlockError(RuntimeError):
    """Raised (deadlock mode ``"raise"``) in the thread whose acquire closed a
    wait cycle. ``report`` holds the structured report (a dict: ``rule``,
    ``detected_by`` and ``threads``, each with ``name``, ``ident``,
    ``native_id``, ``waits_for``, ``held`` and ``traceback``); ``str()`` is the
    text report."""

    def __init__(self, message: str, report: dict | None = None) -> None:
        super().__init__(message)
        self.report = report if report is not None else {}


_atexit_registered = False


# ----- reports called from Rust ---------------------------------------------

def _stack_here() -> str:
    """The calling Python code's stack (called from Rust, whose frames are
    not Python frames: frame 1 is the code that called the lock method)."""
    import traceback

    return "".join(traceback.format_stack(sys._getframe(1), limit=25))


def _enrich_thread(t: dict, frames: dict) -> dict:
    t["name"] = _name_of(t["ident"], t.get("name") if not str(t.get("name", "")).startswith("Thread 0x") else None)
    t["traceback"] = "".join(_stack(frames.get(t["ident"])))
    return t


def _report_deadlock(report: dict, raise_: bool):
    frames = _frames()
    for t in report["threads"]:
        _enrich_thread(t, frames)
    for c in report.get("other_cycles", []):
        for t in c:
            _enrich_thread(t, frames)
    text = _format_deadlock(report)
    if raise_:
        return DeadlockError(text, report)
    _write(text)
    return None


def _report_inversion(inv: dict) -> None:
    _write(_format_inversion(inv))


def _report_leaks(leaks: list) -> None:
    if not _config.leaks:
        return
    _write(_format_leaks(leaks))


# ----- configuration ---------------------------------------------------------

def enabled() -> dict:
    """The current settings (as accepted by :func:`configure`)."""
    return {
        "deadlock": _config.deadlock,
        "lock_order": _config.lock_order,
        "profile": _config.profile,
        "trace": _config.trace,
        "hang_timeout": _config.hang_timeout,
        "dump_signal": _config.dump_signal,
        "leaks": _config.leaks,
    }


def _register_threads() -> None:
    known = {t["ident"] for t in _diag.snapshot()["threads"]}
    th = _threading()
    if th is None:
        me = _thread.get_ident()
        if me not in known:
            _diag.thread_started(me, _thread.get_native_id(), None)
        return
    for t in list(th._active.values()):
        ident = t.ident
        if ident is None:
            continue
        if ident in known:
            _diag.thread_named(ident, t.name)
        else:
            _diag.thread_started(ident, getattr(t, "native_id", None) or 0, t.name)
        lock = getattr(t, "_tstate_lock", None)
        if isinstance(lock, _thread.LockType):
            _diag.mark_sentinel(lock)


def _parse_signal(sig):
    import signal

    if sig is None or isinstance(sig, int):
        return sig
    name = str(sig).upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return getattr(signal, name)
    except AttributeError:
        raise ValueError(f"unknown signal: {sig!r}") from None


def configure(deadlock=None, lock_order=False, profile=False, trace=None, hang_timeout=None,
              dump_signal=None, leaks=None, *, _from_env=False) -> None:
    """Set the diagnostics (replacing earlier settings; all off disables them).

    * ``deadlock``: ``None`` (off), ``"warn"`` (print a report, keep waiting)
      or ``"raise"`` (raise :class:`DeadlockError` in the thread whose acquire
      closes the cycle);
    * ``lock_order``: report lock-order inversions: ``True`` judges each one
      with the evidence of the whole run and reports at exit (or when
      :func:`check_inversions` is called), since a lock class may show late
      that it behaves as a semaphore (a lock of it released by another
      thread: left out, like lockdep leaves semaphores out);
      ``"immediate"`` reports each when found;
    * ``profile``: collect contention statistics, print a table at exit;
    * ``trace``: path of the timeline written at exit: Perfetto protobuf if
      it ends in ``.pftrace`` / ``.perfetto-trace``, else Chrome trace JSON
      (see the module docs);
    * ``hang_timeout``: seconds; a watchdog dumps every thread when a wait
      lasts longer (once per wait);
    * ``dump_signal``: a signal (number or name, e.g. ``"SIGUSR1"``) that
      makes the process :func:`dump` to stderr;
    * ``leaks``: report an RLock still owned by a thread when it exits (it
      can never be released), at once; and at exit, plain locks that a thread
      left held when it exited and that nobody released since (locks used
      for hand-offs, released by other threads, are not reported). ``None``
      (the default): on with ``hang_timeout`` or ``dump_signal``.

    Best called before threads and locks are created (``python -m rsthread``
    and ``RSTHREAD_DIAG`` do); locks created earlier are tracked with an
    unknown creation site.
    """
    global _atexit_registered
    if deadlock is True:
        deadlock = "warn"
    if deadlock is False:
        deadlock = None
    if deadlock not in (None, "warn", "raise"):
        raise ValueError(f"deadlock must be None, 'warn' or 'raise', not {deadlock!r}")
    if hang_timeout is not None:
        hang_timeout = float(hang_timeout)
        if not hang_timeout > 0:
            raise ValueError("hang_timeout must be a positive number of seconds")
    sig = _parse_signal(dump_signal)
    flags = 0
    if deadlock:
        flags |= _diag.DEADLOCK
    if lock_order:
        flags |= _diag.LOCK_ORDER
    if profile:
        flags |= _diag.PROFILE
    if trace:
        flags |= _diag.TRACE
        trace = os.fspath(trace)
    if leaks is None:
        leaks = bool(hang_timeout or sig is not None)
    if hang_timeout or sig is not None or leaks:
        flags |= _diag.HANG  # bookkeeping of holds and waits, nothing else
    if flags:
        import linecache  # noqa: F401  (imported now: never inside a report)
        import traceback  # noqa: F401
    _config.deadlock = deadlock
    if lock_order not in (True, False, None, "immediate"):
        raise ValueError(f"lock_order must be True, False or 'immediate', not {lock_order!r}")
    _config.lock_order = bool(lock_order)
    _diag.set_immediate_inversions(lock_order == "immediate")
    _config.profile = bool(profile)
    _config.trace = trace or None
    _config.hang_timeout = hang_timeout
    _config.leaks = bool(leaks)
    _config.pid = os.getpid()
    if flags:
        _register_threads()
    _diag.set_config(flags, deadlock == "raise", False)
    if flags and not _atexit_registered:
        import atexit

        atexit.register(_at_exit)
        _atexit_registered = True
    # Fork: set_config registers native pthread_atfork handlers that lock the
    # diagnostics state around fork() and reset it in the child.
    if trace and _PID_VAR not in os.environ:
        os.environ[_PID_VAR] = str(os.getpid())
    if sig is not None and sig != _config.dump_signal:
        import signal

        try:
            signal.signal(sig, _on_dump_signal)
        except ValueError:
            # Not the main thread of the main interpreter (a subinterpreter
            # inheriting RSTHREAD_DIAG, say): the main interpreter dumps.
            if not _from_env:
                raise
            sig = None
    _config.dump_signal = sig
    if hang_timeout:
        _start_watchdog()


def _parse_env(value: str) -> dict:
    opts: dict = {}
    for item in value.split(","):
        item = item.strip()
        if not item or item in ("0", "off", "none"):
            continue
        key, _sep, val = item.partition("=")
        key = key.strip().lower().replace("_", "-")
        val = val.strip()
        if key == "deadlock":
            opts["deadlock"] = val or "warn"
        elif key == "lock-order":
            if val not in ("", "immediate"):
                raise ValueError(f"lock-order takes no value or 'immediate', not {val!r}")
            opts["lock_order"] = val or True
        elif key == "profile":
            opts["profile"] = True
        elif key == "trace":
            opts["trace"] = val or "rsthread-trace.json"
        elif key in ("hang", "hang-timeout"):
            opts["hang_timeout"] = float(val or 10)
        elif key == "dump-signal":
            opts["dump_signal"] = val or "SIGUSR1"
        elif key == "leaks":
            opts["leaks"] = True
        elif key == "all":
            opts.update(deadlock="warn", lock_order=True, profile=True)
        else:
            raise ValueError(f"unknown item {item!r}")
    return opts


def configure_from_env() -> bool:
    """Apply ``RSTHREAD_DIAG`` (see the module docs); a no-op if unset or empty.
    Returns whether anything was enabled. A bad value is reported on stderr and
    ignored (it must not break the program it is set for). In a subprocess of a
    process that already writes the trace, ``.PID`` is added to the trace file
    name (before its extension)."""
    value = os.environ.get(ENV_VAR, "")
    if not value.strip():
        return False
    try:
        opts = _parse_env(value)
        trace = opts.get("trace")
        owner = os.environ.get(_PID_VAR)
        if trace and owner and owner != str(os.getpid()):
            root, ext = os.path.splitext(trace)
            opts["trace"] = f"{root}.{os.getpid()}{ext}"
        if opts:
            configure(**opts, _from_env=True)
        return bool(opts)
    except ValueError as e:
        _write(f"rsthread: ignoring {ENV_VAR}={value!r}: {e}\n")
        return False


# ----- data ------------------------------------------------------------------

def stats() -> list[dict]:
    """Contention statistics per lock site (with ``profile`` on), most total
    wait first: dicts with ``site``, ``kind``, ``acquisitions``,
    ``contended``, ``total_wait``, ``max_wait``, ``holds``, ``total_hold``,
    ``max_hold`` (seconds) and ``top_sites``: the acquire sites where
    threads had to wait, most total wait first, each with ``site``,
    ``contended``, ``total_wait`` and ``max_wait`` (uncontended acquires are
    counted per lock site only: attributing them to acquire sites would cost
    every acquire a stack lookup)."""
    s = _diag.stats()
    s.sort(key=lambda c: (-c["total_wait"], -c["acquisitions"]))
    return s


def reset_stats() -> None:
    """Zero the statistics."""
    _diag.reset_stats()


def snapshot(stacks: bool = True) -> dict:
    """Every thread known to diagnostics, as plain JSON-serialisable data:
    ``{"threads": [...], "wait_chains": [...]}``. Each thread has ``ident``,
    ``native_id``, ``name``, ``held`` (locks, oldest first: ``lock`` with
    ``id``, ``kind``, ``site``; ``acquire_site``, ``held_for`` seconds
    (``None`` unless ``profile``, ``hang_timeout``, ``dump_signal`` or
    ``leaks`` is on: only those time every hold), ``depth``), ``waiting`` (``None`` or the ``lock`` waited for, its
    ``holder``, ``waited`` seconds, ``timed``) and, with ``stacks``, ``stack``
    (``"file:line in function"`` strings, outermost first). ``wait_chains``
    is :func:`wait_chains`."""
    snap = _diag.snapshot()
    frames = _frames() if stacks else {}
    for t in snap["threads"]:
        t["name"] = _name_of(t["ident"], t.get("name"))
        w = t["waiting"]
        if w and w["holder"]:
            w["holder"]["name"] = _name_of(w["holder"]["ident"], w["holder"].get("name"))
        if stacks:
            st = []
            f = frames.get(t["ident"])
            while f is not None:
                st.append(f"{f.f_code.co_filename}:{f.f_lineno} in {f.f_code.co_name}")
                f = f.f_back
            t["stack"] = st[::-1]
    if stacks:
        snap["wait_chains"] = wait_chains()
    return snap


def wait_chains() -> list[dict]:
    """For every waiting thread, where its wait leads: ``links`` (thread, lock
    waited for, holder) and ``end`` (``running``, ``no-holder``,
    ``holder-exited`` or ``cycle`` with ``start``: a deadlock)."""
    chains = _diag.wait_chains()
    for c in chains:
        for link in c["links"]:
            link["name"] = _name_of(link["ident"], link.get("name"))
    return chains


def format_stats(rows: list[dict] | None = None, limit: int = 30) -> str:
    """The contention table printed at exit under ``profile``."""
    rows = stats() if rows is None else rows
    rows = [r for r in rows if r["acquisitions"] or r["holds"]][:limit]
    head = ["lock site", "acquisitions", "contended", "total wait", "max wait", "total hold", "max hold",
            "top waiting sites"]
    table = [head]
    for r in rows:
        tops = "; ".join(
            f"{_short(s['site'])} ({s['contended']}x, wait {_dur(s['total_wait'])})" for s in r["top_sites"][:3]
        )
        table.append([
            f"{r['kind']} {_short(r['site'])}", str(r["acquisitions"]), str(r["contended"]),
            _dur(r["total_wait"]), _dur(r["max_wait"]), _dur(r["total_hold"]), _dur(r["max_hold"]), tops,
        ])
    widths = [max(len(row[i]) for row in table) for i in range(len(head) - 1)]
    lines = ["rsthread: lock contention profile (sorted by total wait)"]
    for k, row in enumerate(table):
        cells = [row[0].ljust(widths[0])] + [row[i].rjust(widths[i]) for i in range(1, len(head) - 1)]
        lines.append("  " + "  ".join(cells) + "  " + row[-1])
        if k == 0:
            lines.append("  " + "  ".join("-" * w for w in widths) + "  " + "-" * len(head[-1]))
    if len(table) == 1:
        lines.append("  (no lock activity recorded)")
    return "\n".join(lines) + "\n"


def dump(file=None) -> None:
    """Print every thread (jstack-like): name, ident, native id, what it
    waits for (lock, holder, for how long), the locks it holds and its
    traceback; then every wait chain followed to its end ("'T1' waits for L1
    held by 'T2', which waits for L2 held by 'T3', which is running at
    file:line"; a cycle is labelled DEADLOCK)."""
    file = sys.stderr if file is None else file
    frames = _frames()
    snap = {t["ident"]: t for t in snapshot(stacks=False)["threads"]}
    _write(_format_dump(frames, snap, wait_chains()), file)


def _on_dump_signal(signum, frame) -> None:
    dump()


# ----- exit ------------------------------------------------------------------

def check_inversions() -> int:
    """Judge the lock-order inversions found so far with all the evidence
    gathered since, print the reports (and a count of the suppressed ones,
    with the reason) and forget them. Called at exit; a test harness may call
    it after each test. Returns how many inversions were reported."""
    reported, suppressed = _diag.take_inversions()
    for inv in reported:
        _report_inversion(inv)
    if suppressed:
        reasons: dict[str, int] = {}
        for _inv, why in suppressed:
            reasons[why] = reasons.get(why, 0) + 1
        for why, n in sorted(reasons.items()):
            what = "cycle" if n == 1 else "cycles"
            _write(f"rsthread: lock order: {n} {what} not reported: {why}\n")
    return len(reported)


def _at_exit() -> None:
    if _config.lock_order and _diag.flags():
        check_inversions()
    if _config.leaks and _diag.flags():
        _write(_format_exit_leaks(_diag.leaked_at_exit()))
    if _config.profile:
        _write(format_stats())
    if _config.trace:
        path = _config.trace
        if _config.pid and os.getpid() != _config.pid:  # a forked child
            root, ext = os.path.splitext(path)
            path = f"{root}.{os.getpid()}{ext}"
        try:
            _refresh_names()
            written = _export_trace(path)
            dropped = _diag.timeline_dropped()
            extra = f"; {dropped} oldest events dropped" if dropped else ""
            _write(f"rsthread: trace written to {written} (open in https://ui.perfetto.dev){extra}\n")
        except OSError as e:
            _write(f"rsthread: {e}\n")
