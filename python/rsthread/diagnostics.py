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

_diag = sys.modules["rsthread._diag"]

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


def _exited_name(t: dict) -> str:
    """The recorded name of a thread that has exited (its ident may already
    belong to another thread, so live threads are not consulted)."""
    return t.get("name") or f"Thread {t['ident']:#x}"


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

def _stack_here() -> str:
    """The calling Python code's stack (called from Rust, whose frames are
    not Python frames: frame 1 is the code that called the lock method)."""
    import traceback

    return "".join(traceback.format_stack(sys._getframe(1), limit=25))


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


def _report_inversion(inv: dict) -> None:
    _write(_format_inversion(inv))


def _report_leaks(leaks: list) -> None:
    if not _config.leaks:
        return
    lines = []
    for lk in leaks:
        t = lk["thread"]
        name = _exited_name(t)
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


def _where(frame) -> str:
    """``file:line in func: source`` of a frame (the innermost Python frame of
    a thread: a thread blocked in C code or a system call, such as
    ``time.sleep`` or ``sock.recv``, shows the Python line that called it)."""
    import linecache

    if frame is None:
        return "<no Python frame>"
    code = frame.f_code
    src = linecache.getline(code.co_filename, frame.f_lineno).strip()
    where = f"{_short(code.co_filename)}:{frame.f_lineno} in {code.co_name}"
    return f"{where}: {src}" if src else where


def _is_self_wait(link: dict) -> bool:
    """A thread waiting for a plain lock it holds itself: a Condition/Event/
    queue waiter lock (released by whoever notifies it), not a hang."""
    return link.get("holder") == link["ident"] and link["lock"]["kind"] == "Lock"


def _what_waited(link: dict, holder_name: str | None) -> str:
    lock = link["lock"]
    if _is_sentinel(lock):
        return f"waits for thread {holder_name!r} to end (join)" if holder_name else "waits for a thread to end (join)"
    if _is_self_wait(link):
        return f"waits to be notified (on its own waiter {_lock_label(lock)}: a Condition/Event/queue wait)"
    who = f" held by {holder_name!r}" if holder_name else ""
    return f"waits for {_lock_label(lock)}{who}"


def _chain_prose(c: dict, frames: dict, firsts: list | None = None) -> str:
    """``'T1' waits for L1 held by 'T2', which waits for L2 held by 'T3', which
    is running at file:line``. ``firsts``: other chains that differ from
    ``c`` only by their first thread (threads piling up on the same lock)."""
    links = c["links"]
    end = c["end"]
    parts = []
    for i, link in enumerate(links):
        nxt = links[i + 1]["name"] if i + 1 < len(links) else None
        if nxt is None:
            if end["kind"] == "running":
                nxt = _name_of(end["thread"]["ident"], end["thread"].get("name"))
            elif end["kind"] == "cycle":
                nxt = links[end["start"]]["name"]
        text = _what_waited(link, nxt)
        if i == 0:
            firsts = [c] + [o for o in (firsts or []) if o is not c]
            who = ", ".join(f"{o['links'][0]['name']!r} (for {_dur(o['links'][0]['waited'])})" for o in firsts)
            if len(firsts) > 1:
                text = text.replace("waits ", "wait ", 1)
            parts.append(f"{who} {text}")
        else:
            parts.append(f", which {text}")
    kind = end["kind"]
    if kind == "running":
        ident = end["thread"]["ident"]
        parts.append(f", which is running at {_where(frames.get(ident))}")
    elif kind == "cycle":
        if len(links) - end["start"] == 1 and _is_self_wait(links[-1]):
            pass  # a Condition-style wait ends the chain
        elif any(link["timed"] for link in links[end["start"]:]):
            parts.append(": a cycle, which a timeout will break")
        else:
            parts.append(": a cycle - DEADLOCK, none of these threads can proceed")
    elif kind == "holder-exited":
        parts.append(f"; its holder (thread {end['ident']:#x}) exited without releasing it")
    else:
        parts.append("; nobody is known to hold it")
    return "".join(parts)


def _chain_arrows(c: dict, firsts: list | None = None) -> str:
    firsts = [c] + [o for o in (firsts or []) if o is not c]
    names = ", ".join(repr(o["links"][0]["name"]) for o in firsts)
    parts = [f"{link['name']!r} -> {_lock_label(link['lock'])}" for link in c["links"]]
    parts[0] = f"{names} -> {_lock_label(c['links'][0]['lock'])}"
    end = c["end"]
    kind = end["kind"]
    if kind == "running":
        tail = f"-> {_name_of(end['thread']['ident'], end['thread'].get('name'))!r} (running)"
    elif kind == "cycle":
        first = c["links"][end["start"]]
        if len(c["links"]) - end["start"] == 1 and _is_self_wait(c["links"][-1]):
            tail = f"-> {first['name']!r} (waiting to be notified)"
        elif any(link["timed"] for link in c["links"][end["start"]:]):
            tail = f"-> {first['name']!r}  CYCLE (a wait with a timeout will break it)"
        else:
            tail = f"-> {first['name']!r}  DEADLOCK (cycle)"
    elif kind == "holder-exited":
        tail = f"-> exited thread {end['ident']:#x} (the lock can never be released)"
    else:
        tail = "-> (no known holder)"
    return " -> ".join(parts) + " " + tail


def _merge_chains(chains: list[dict]) -> list[list[dict]]:
    """Group chains that differ only by their first thread (not in a cycle)."""
    groups: dict = {}
    for c in chains:
        end = c["end"]
        if end["kind"] == "cycle" and end["start"] == 0:
            key = ("own", c["links"][0]["ident"])
        else:
            rest = tuple((link["ident"], link["lock"]["id"]) for link in c["links"][1:])
            key = (c["links"][0]["lock"]["id"], rest, end["kind"], str(end.get("thread", end.get("ident"))),
                   end.get("start"))
        groups.setdefault(key, []).append(c)
    return list(groups.values())


def _distinct_chains(chains: list[dict]) -> list[dict]:
    """Chains without repeats: one contained in a longer one (its tail) is
    left out, and a cycle is shown once."""
    out: list[dict] = []
    shown: list[tuple] = []
    cycles: set = set()
    for c in sorted(chains, key=lambda c: -len(c["links"])):
        ids = tuple(link["ident"] for link in c["links"])
        if c["end"]["kind"] == "cycle":
            cyc = frozenset(ids[c["end"]["start"]:])
            if c["end"]["start"] == 0 and cyc in cycles:
                continue
            cycles.add(cyc)
        elif any(t[len(t) - len(ids):] == ids for t in shown):
            continue
        shown.append(ids)
        out.append(c)
    return out


def _format_thread(ident: int, t: dict | None, frames: dict, th, main) -> list[str]:
    name = _name_of(ident, t.get("name") if t else None)
    native = t["native_id"] if t else "?"
    daemon = ""
    if th is not None and ident in th._active:
        daemon = " daemon" if th._active[ident].daemon else ""
    out = [f"{name!r} ident={ident:#x} native_id={native}{daemon}"]
    if t and t["waiting"]:
        w = t["waiting"]
        if w["holder"]:
            holder = _name_of(w["holder"]["ident"], w["holder"].get("name"))
            who = "held by itself" if w["holder"]["ident"] == ident else f"held by {holder!r}"
        elif w["holder_exited"]:
            who = f"held by exited thread {w['holder_exited']:#x}"
        else:
            who = "no known holder"
        timed = ", with timeout" if w["timed"] else ""
        out.append(f"  WAITING for {_lock_label(w['lock'])}, {who}, for {_dur(w['waited'])}{timed}")
    elif t is not None:
        out.append("  RUNNABLE (not waiting for an rsthread lock)")
    else:
        out.append("  (not tracked by diagnostics)" if _diag.flags() else "  (lock state unknown)")
    for h in (_visible_held(t["held"]) if t else []):
        depth = f", depth {h['depth']}" if h["depth"] > 1 else ""
        held_for = f", for {_dur(h['held_for'])}" if h["held_for"] is not None else ""
        out.append(f"  holds {_lock_label(h['lock'])}, acquired at {_short(h['acquire_site'])}{held_for}{depth}")
    stack = _stack(frames.get(ident))
    if stack:
        out.append("  Traceback (most recent call last):")
        for line in "".join(stack).rstrip("\n").split("\n"):
            out.append("  " + line)
    return out


def _format_dump(frames: dict, snap: dict, chains: list[dict], only: set | None = None) -> str:
    """The dump text: every thread (or those in ``only``), then ``chains``."""
    idents = list(dict.fromkeys(list(snap) + list(frames)))
    idents = [i for i in idents if i != _watchdog_ident]
    total = len(idents)
    if only is not None:
        idents = [i for i in idents if i in only]
    th = _threading()
    main = th.main_thread().ident if th is not None else None
    idents.sort(key=lambda i: (i != main, i))
    if only is None:
        out = [f"rsthread: thread dump ({total} threads)"]
    else:
        out = [f"rsthread: thread dump ({len(idents)} of {total} threads: those in the wait chain)"]
    if not _diag.flags():
        out.append("(diagnostics are off: no lock information; enable them, e.g. with "
                   "RSTHREAD_DIAG=dump-signal=SIGUSR1 or configure(), before the threads start)")
    for ident in idents:
        out.append("")
        out += _format_thread(ident, snap.get(ident), frames, th, main)
    chains = _distinct_chains(chains)
    if chains:
        out.append("")
        out.append("wait chains:")
        deadlocks = 0
        for group in _merge_chains(chains):
            out.append("  " + _chain_arrows(group[0], group))
            out.append("    " + _chain_prose(group[0], frames, group))
            if "DEADLOCK" in out[-2]:
                deadlocks += 1
        if deadlocks:
            out.append(f"DEADLOCK: {deadlocks} wait cycle(s) above can never resolve")
    return "\n".join(out) + "\n"


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


# ----- watchdog --------------------------------------------------------------

_watchdog_ident = None


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

    global _watchdog_ident
    _watchdog_ident = _thread.get_ident()
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


# ----- exit ------------------------------------------------------------------

def _refresh_names() -> None:
    th = _threading()
    if th is None:
        return
    for t in list(th._active.values()):
        if t.ident is not None:
            _diag.thread_named(t.ident, t.name)


def _format_exit_leaks(leaks: list) -> str:
    lines = []
    for lk in leaks:
        t = lk["thread"]
        name = _exited_name(t)
        lines.append(f"rsthread: lock leaked: {_lock_label(lk['lock'])} is still held at exit; thread {name!r} "
                     f"(ident {t['ident']:#x}) acquired it at {_short(lk['acquire_site'])} and exited without "
                     "releasing it, and no other thread released it since")
    return "\n".join(lines) + "\n" if lines else ""


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


def _export_trace(path: str) -> str:
    """Write the timeline to `path`: Chrome trace JSON, or Perfetto's protobuf
    format if `path` ends in ``.pftrace`` / ``.perfetto-trace`` (converted
    from the JSON by :mod:`rsthread._perfetto`). Without the ``perfetto``
    package, or if the conversion fails, the JSON goes to ``PATH.json``
    instead, with a message saying why. Returns the path written."""
    from . import _perfetto

    if not _perfetto.is_perfetto_path(path):
        _diag.export_chrome_trace(path)
        return path
    fallback = path + ".json"
    try:
        import perfetto.trace_builder.proto_builder  # type: ignore[import-untyped]  # noqa: F401
    except Exception as e:  # missing, or broken (a protobuf runtime it does not support)
        why = "missing" if isinstance(e, ImportError) else f"broken ({type(e).__name__}: {e})"
        _diag.export_chrome_trace(fallback)
        _write(f"rsthread: cannot write the Perfetto protobuf trace {path}: the 'perfetto' package is "
               f"{why} (pip install perfetto); wrote Chrome trace JSON to {fallback} instead\n")
        return fallback
    import json
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(prefix=".rsthread-trace-", suffix=".json", dir=os.path.dirname(path) or ".")
    except OSError as e:
        raise OSError(f"cannot write trace to {path}: {e.strerror or e}") from None
    os.close(fd)
    try:
        _diag.export_chrome_trace(tmp)
        try:
            with open(tmp, encoding="utf-8") as f:
                doc = json.load(f)
            _perfetto.write_perfetto(path, doc)
            return path
        except Exception as e:  # TraceFormatError, or a bug: keep the data as JSON
            import shutil

            shutil.copyfile(tmp, fallback)  # a new file: the usual permissions, not mkstemp's 0600
            _write(f"rsthread: cannot convert the trace to Perfetto's protobuf format "
                   f"({type(e).__name__}: {e}); wrote Chrome trace JSON to {fallback} instead\n")
            return fallback
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
