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
* **timeline** (``trace=PATH``): Chrome trace JSON written at exit, for
  https://ui.perfetto.dev;
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

from . import _thread  # noqa: F401  (registers rsthread._diag)

_diag = sys.modules["rsthread._diag"]

__all__ = [
    "DeadlockError", "configure", "configure_from_env", "enabled", "stats", "reset_stats",
    "snapshot", "dump", "wait_chains", "format_stats",
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


class _Config:
    deadlock: str | None = None
    lock_order = False
    profile = False
    trace: str | None = None
    hang_timeout: float | None = None
    dump_signal = None
    leaks = False
    pid = 0


_config = _Config()
_atexit_registered = False
_fork_registered = False
_watchdog_started = False


# ----- helpers ---------------------------------------------------------------

def _threading():
    return sys.modules.get("threading")


def _name_of(ident: int, fallback: str | None = None) -> str:
    """The name diagnostics recorded (``fallback``: the ``threading.Thread``
    name at start, safe against ident reuse), else the live thread's name."""
    if fallback:
        return fallback
    th = _threading()
    if th is not None:
        t = th._active.get(ident)
        if t is not None:
            try:
                return t.name
            except Exception:  # pragma: no cover
                pass
    return fallback or f"Thread {ident:#x}"


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


def _own_file(filename: str) -> bool:
    return os.path.splitext(filename)[0] == os.path.splitext(__file__)[0]


def _frames(skip_self: bool = True) -> dict:
    """Every thread's current frame, ours skipped past this module's frames."""
    frames = sys._current_frames()
    me = _thread.get_ident()
    f = frames.get(me)
    while f is not None and _own_file(f.f_code.co_filename):
        f = f.f_back
    if f is not None:
        frames[me] = f
    else:
        frames.pop(me, None)
    return frames


def _stack(frame) -> list[str]:
    import traceback

    if frame is None:
        return []
    return traceback.format_stack(frame)


def _enrich_thread(t: dict, frames: dict) -> dict:
    t["name"] = _name_of(t["ident"], t.get("name") if not str(t.get("name", "")).startswith("Thread 0x") else None)
    t["traceback"] = "".join(_stack(frames.get(t["ident"])))
    return t


# ----- reports called from Rust ---------------------------------------------

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


def _format_deadlock(report: dict) -> str:
    threads = report["threads"]
    n = len(threads)
    if n == 1:
        what = "a thread waits for a lock it holds itself"
    else:
        what = f"{n} threads, each waiting for a lock held by the next"
    rule = ("every other thread is blocked too" if report["rule"] == "all-blocked"
            else "only these threads could release these locks")
    lines = [f"rsthread: deadlock detected ({what}; {rule})"]
    lines += _format_cycle(threads, report["detected_by"])
    for other in report.get("other_cycles", []):
        lines.append("  another cycle, found at the same moment:")
        lines += _format_cycle(other)
    return "\n".join(lines) + "\n"


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


def _format_inversion(inv: dict) -> str:
    edges = inv["edges"]
    n = len(edges)
    if inv["same_class"]:
        head = ("rsthread: lock-order inversion: two locks created at the same site were taken in both "
                "orders (potential deadlock)")
    else:
        head = f"rsthread: lock-order inversion: {n} lock sites taken in a cycle of orders (potential deadlock)"
    lines = [head]
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
    lines.append("  Threads running these paths at the same time can deadlock: take the locks in one global order.")
    return "\n".join(lines) + "\n"


def _report_inversion(inv: dict) -> None:
    _write(_format_inversion(inv))


def _report_leaks(leaks: list) -> None:
    if not _config.leaks:
        return
    lines = []
    for lk in leaks:
        t = lk["thread"]
        name = t.get("name") or f"Thread {t['ident']:#x}"
        lines.append(f"rsthread: thread {name!r} (ident {t['ident']:#x}) exited while holding "
                     f"{_lock_label(lk['lock'])} (acquired at {_short(lk['acquire_site'])}, depth {lk['depth']}); "
                     "nobody can release it now")
    _write("\n".join(lines) + "\n")


def _write(text: str, file=None) -> None:
    f = file if file is not None else sys.stderr
    if f is None:  # pragma: no cover
        f = sys.__stderr__
    try:
        f.write(text)
        f.flush()
    except Exception:  # pragma: no cover
        pass


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
              dump_signal=None, leaks=False) -> None:
    """Set the diagnostics (replacing earlier settings; all off disables them).

    * ``deadlock``: ``None`` (off), ``"warn"`` (print a report, keep waiting)
      or ``"raise"`` (raise :class:`DeadlockError` in the thread whose acquire
      closes the cycle);
    * ``lock_order``: report lock-order inversions;
    * ``profile``: collect contention statistics, print a table at exit;
    * ``trace``: path of a Chrome trace JSON written at exit;
    * ``hang_timeout``: seconds; a watchdog dumps every thread when a wait
      lasts longer (once per wait);
    * ``dump_signal``: a signal (number or name, e.g. ``"SIGUSR1"``) that
      makes the process :func:`dump` to stderr;
    * ``leaks``: report RLocks still owned by a thread when it exits (they can
      never be released).

    Best called before threads and locks are created (``python -m rsthread``
    and ``RSTHREAD_DIAG`` do); locks created earlier are tracked with an
    unknown creation site.
    """
    global _atexit_registered, _fork_registered
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
    if hang_timeout:
        flags |= _diag.HANG
    if leaks and not flags:
        flags |= _diag.DEADLOCK  # bookkeeping of holds needs diagnostics on
    _config.deadlock = deadlock
    _config.lock_order = bool(lock_order)
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
    if flags and not _fork_registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_child)
        _fork_registered = True
    if trace and _PID_VAR not in os.environ:
        os.environ[_PID_VAR] = str(os.getpid())
    if sig is not None and sig != _config.dump_signal:
        import signal

        signal.signal(sig, _on_dump_signal)
    _config.dump_signal = sig
    if hang_timeout:
        _start_watchdog()


def _parse_env(value: str) -> dict:
    opts: dict = {}
    for item in value.split(","):
        item = item.strip()
        if not item or item in ("0", "off", "none"):
            continue
        key, sep, val = item.partition("=")
        key = key.strip().lower().replace("_", "-")
        val = val.strip()
        if key == "deadlock":
            opts["deadlock"] = val or "warn"
        elif key == "lock-order":
            opts["lock_order"] = True
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
            configure(**opts)
        return bool(opts)
    except ValueError as e:
        _write(f"rsthread: ignoring {ENV_VAR}={value!r}: {e}\n")
        return False


def _after_fork_child() -> None:
    if _diag.flags():
        _diag.after_fork_child()


# ----- data ------------------------------------------------------------------

def stats() -> list[dict]:
    """Contention statistics per lock site (with ``profile`` on), most total
    wait first: dicts with ``site``, ``kind``, ``acquisitions``,
    ``contended``, ``total_wait``, ``max_wait``, ``holds``, ``total_hold``,
    ``max_hold`` (seconds) and ``top_sites`` (the acquire sites, busiest
    first, with the same counters)."""
    s = _diag.stats()
    s.sort(key=lambda c: (-c["total_wait"], -c["acquisitions"]))
    return s


def reset_stats() -> None:
    """Zero the statistics."""
    _diag.reset_stats()


def snapshot() -> dict:
    """Every thread known to diagnostics: ``{"threads": [...]}``, each with
    ``ident``, ``native_id``, ``name``, ``held`` (locks, oldest first) and
    ``waiting`` (``None`` or the lock waited for, its ``holder``, ``waited``
    seconds, ``timed``)."""
    snap = _diag.snapshot()
    for t in snap["threads"]:
        t["name"] = _name_of(t["ident"], t.get("name"))
        w = t["waiting"]
        if w and w["holder"]:
            w["holder"]["name"] = _name_of(w["holder"]["ident"], w["holder"].get("name"))
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
            "top acquire sites"]
    table = [head]
    for r in rows:
        tops = "; ".join(
            f"{_short(s['site'])} ({s['acquisitions']}x, wait {_dur(s['total_wait'])})" for s in r["top_sites"][:3]
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
    traceback; then every wait chain followed to its end (a cycle is
    labelled DEADLOCK)."""
    file = sys.stderr if file is None else file
    frames = _frames()
    snap = {t["ident"]: t for t in snapshot()["threads"]}
    idents = list(dict.fromkeys(list(snap) + list(frames)))
    th = _threading()
    main = th.main_thread().ident if th is not None else None
    idents.sort(key=lambda i: (i != main, i))
    out = [f"rsthread: thread dump ({len(idents)} threads)"]
    for ident in idents:
        t = snap.get(ident)
        name = _name_of(ident, t.get("name") if t else None)
        native = t["native_id"] if t else "?"
        daemon = ""
        if th is not None and ident in th._active:
            daemon = " daemon" if th._active[ident].daemon else ""
        out.append("")
        out.append(f"{name!r} ident={ident:#x} native_id={native}{daemon}")
        if t and t["waiting"]:
            w = t["waiting"]
            if w["holder"]:
                who = f"held by {_name_of(w['holder']['ident'], w['holder'].get('name'))!r}"
            elif w["holder_exited"]:
                who = f"held by exited thread {w['holder_exited']:#x}"
            else:
                who = "no known holder"
            timed = ", with timeout" if w["timed"] else ""
            out.append(f"  WAITING for {_lock_label(w['lock'])}, {who}, for {_dur(w['waited'])}{timed}")
        elif t is not None:
            out.append("  RUNNABLE (not waiting for an rsthread lock)")
        else:
            out.append("  (not tracked by diagnostics)")
        for h in (_visible_held(t["held"]) if t else []):
            depth = f", depth {h['depth']}" if h["depth"] > 1 else ""
            out.append(f"  holds {_lock_label(h['lock'])}, acquired at {_short(h['acquire_site'])}, "
                       f"for {_dur(h['held_for'])}{depth}")
        stack = _stack(frames.get(ident))
        if stack:
            out.append("  Traceback (most recent call last):")
            for line in "".join(stack).rstrip("\n").split("\n"):
                out.append("  " + line)
    chains = wait_chains()
    if chains:
        out.append("")
        out.append("wait chains:")
        for c in chains:
            parts = []
            for link in c["links"]:
                parts.append(f"{link['name']!r} -> {_lock_label(link['lock'])}")
            end = c["end"]
            kind = end["kind"]
            if kind == "running":
                tail = f"-> {_name_of(end['thread']['ident'], end['thread'].get('name'))!r} (running)"
            elif kind == "cycle":
                first = c["links"][end["start"]]
                if any(link["timed"] for link in c["links"][end["start"]:]):
                    tail = f"-> {first['name']!r}  CYCLE (a wait with a timeout will break it)"
                else:
                    tail = f"-> {first['name']!r}  DEADLOCK (cycle)"
            elif kind == "holder-exited":
                tail = f"-> exited thread {end['ident']:#x} (the lock can never be released)"
            else:
                tail = "-> (no known holder)"
            out.append("  " + " -> ".join(parts) + " " + tail)
    _write("\n".join(out) + "\n", file)


def _on_dump_signal(signum, frame) -> None:
    dump()


# ----- watchdog --------------------------------------------------------------

def _watchdog() -> None:
    import time

    # Not a thread the program waits on: unregister, so "every thread is
    # blocked" can still be true while it sleeps.
    _diag.thread_exited(_thread.get_ident())
    reported: set = set()
    while True:
        timeout = _config.hang_timeout
        time.sleep(min(0.5, timeout / 2) if timeout else 0.5)
        if not timeout or not _diag.flags():
            continue
        try:
            if _config.deadlock:
                _diag.detect_deadlock(0)
            waits = _diag.longest_waits(timeout)
            new = [w for w in waits if w["wait"]["episode"] not in reported]
            if not new:
                continue
            for w in new:
                reported.add(w["wait"]["episode"])
            lines = []
            for w in new:
                lines.append(f"rsthread: thread {_name_of(w['ident'], w.get('name'))!r} has been waiting "
                             f"{_dur(w['wait']['waited'])} for {_lock_label(w['wait']['lock'])} "
                             f"(hang_timeout={timeout:g}s)")
            _write("\n".join(lines) + "\n")
            dump()
        except Exception as e:  # pragma: no cover
            _write(f"rsthread: watchdog error: {e!r}\n")


def _start_watchdog() -> None:
    global _watchdog_started
    if _watchdog_started:
        return
    _watchdog_started = True
    _thread.start_new_thread(_watchdog, ())


# ----- exit ------------------------------------------------------------------

def _refresh_names() -> None:
    th = _threading()
    if th is None:
        return
    for t in list(th._active.values()):
        if t.ident is not None:
            _diag.thread_named(t.ident, t.name)


def _at_exit() -> None:
    if _config.profile:
        _write(format_stats())
    if _config.trace:
        path = _config.trace
        if _config.pid and os.getpid() != _config.pid:  # a forked child
            root, ext = os.path.splitext(path)
            path = f"{root}.{os.getpid()}{ext}"
        try:
            _refresh_names()
            _diag.export_chrome_trace(path)
            dropped = _diag.timeline_dropped()
            extra = f"; {dropped} oldest events dropped" if dropped else ""
            _write(f"rsthread: trace written to {path} (open in https://ui.perfetto.dev){extra}\n")
        except OSError as e:
            _write(f"rsthread: {e}\n")
