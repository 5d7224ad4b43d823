"""pytest plugin: a deadlocking or hanging test fails with rsthread's report,
and the session goes on.

Registered through the ``pytest11`` entry point as ``rsthread``. Inert unless
enabled with ``--rsthread``, the ini option ``rsthread = true`` or a
non-empty ``RSTHREAD_DIAG`` in the environment: without them it only
registers its options and the ``rsthread`` marker, imports nothing beyond
the ``rsthread`` package itself (which does not touch ``threading``) and
leaves ``threading`` stock.

Enabled, at ``pytest_configure`` (before collection) it calls
:func:`rsthread.install` and turns on deadlock detection in raise mode,
lock-order analysis and leak reports. pytest has imported ``threading``
long before plugins load, so ``install()`` takes its late path: locks
created before that point stay stock and untracked (pytest's own locks,
``logging``'s module lock, locks made by modules imported by pytest's
start-up or by ``conftest.py`` files loaded before the plugin's
``pytest_configure``). Everything created from then on, including locks
created when test modules are imported (collection comes after), is
rsthread's.

Per test:

* a deadlock (a :class:`~rsthread.DeadlockError` in any thread, or a cycle
  the test's thread is not part of) fails the test, the report being its
  failure text; if the test's thread is still blocked a moment after the
  deadlock, it is interrupted;
* with a hang timeout (``--rsthread-hang-timeout``, the ini option
  ``rsthread_hang_timeout``, ``RSTHREAD_DIAG=hang=S`` or the marker), a
  lock wait longer than it fails the test with the wait chains and every
  thread's stack, and the test's thread is interrupted (a real signal,
  :data:`INTERRUPT_SIGNAL`, which breaks lock waits, joins and sleeps);
* lock-order inversions, threads the test left running and locks left
  held by exited threads become report sections ("rsthread lock order",
  "rsthread leaks") and a deduplicated summary at the end of the session;
  with ``--rsthread-strict`` (or ``@pytest.mark.rsthread(strict=True)``)
  they fail the test.

Threads left blocked by a deadlock or a hang cannot be stopped: they are
reported as left behind and turned into daemon threads, so the interpreter
does not wait for them at exit.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import sys

import pytest

__all__ = ["INTERRUPT_SIGNAL", "HangInterrupt"]

#: The signal sent to the test's thread to break a hang. Its handler is set
#: for the session (and the previous one restored at the end); a test that
#: replaces it cannot be interrupted.
INTERRUPT_SIGNAL = signal.SIGUSR2

ENV_VAR = "RSTHREAD_DIAG"
# After a deadlock, how long the test's thread may stay blocked before it is
# interrupted (a worker's DeadlockError usually unblocks it at once).
DEADLOCK_GRACE = 1.0
# How long a wait cycle that the deadlock rules did not report (see
# _watch_cycles) must last for the watchdog to call it a deadlock: RLocks
# only (CONFIRM), or through a plain Lock (CYCLE_PLAIN).
CONFIRM = 0.5
CYCLE_PLAIN = 2.0
# How long the watchdog sleeps between looks.
POLL = 0.1
# How long teardown waits for the threads a test started to end before
# calling them left running.
THREAD_GRACE = 0.2

SECTION_DEADLOCK = "rsthread deadlock"
SECTION_HANG = "rsthread hang"
SECTION_ORDER = "rsthread lock order"
SECTION_LEAKS = "rsthread leaks"
# Reports inside a section are separated by this line; the first line of
# each is its key in the end-of-session summary.
SEPARATOR = "\n" + "~" * 60 + "\n"


class HangInterrupt(BaseException):
    """Raised in the test's thread to end a hung or deadlocked test (a
    ``BaseException``, like pytest's own outcomes, so that ``except
    Exception`` in the code under test does not swallow it)."""


# ----- options ----------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rsthread", "rsthread deadlock and hang diagnosis")
    group.addoption("--rsthread", action="store_true", default=False,
                    help="run threading on rsthread: deadlocks and hangs fail their test with a report; "
                         "lock-order inversions and leaks are reported")
    group.addoption("--rsthread-hang-timeout", type=float, default=None, metavar="SECONDS",
                    help="fail a test when one of its threads waits for a lock longer than this")
    group.addoption("--rsthread-strict", action="store_true", default=False,
                    help="lock-order inversions, threads left running and leaked locks fail their test")
    parser.addini("rsthread", type="bool", default=False, help="enable the rsthread plugin (as --rsthread)")
    parser.addini("rsthread_hang_timeout", default="",
                  help="as --rsthread-hang-timeout (seconds)")
    parser.addini("rsthread_strict", type="bool", default=False, help="as --rsthread-strict")


def _env_enabled() -> bool:
    return os.environ.get(ENV_VAR, "").strip().lower() not in ("", "0", "off", "none")


def _is_enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("rsthread") or config.getini("rsthread") or _env_enabled())


def _positive(value, what: str) -> float | None:
    if value in (None, ""):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{what} must be a number of seconds, not {value!r}") from None
    if not v > 0:
        raise pytest.UsageError(f"{what} must be a positive number of seconds, not {value!r}")
    return v


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "rsthread(hang_timeout=None, strict=None): per-test settings of the rsthread plugin "
        "(active with --rsthread)")
    if not _is_enabled(config):
        return
    hang = _positive(config.getoption("rsthread_hang_timeout"), "--rsthread-hang-timeout")
    if hang is None:
        hang = _positive(config.getini("rsthread_hang_timeout"), "rsthread_hang_timeout")
    strict = bool(config.getoption("rsthread_strict") or config.getini("rsthread_strict"))
    # A DeadlockError that ends a worker thread already fails its test with
    # the report: pytest's unhandled-thread-exception warning would repeat it.
    config.addinivalue_line(
        "filterwarnings",
        r"ignore:(?s)Exception in thread .*rsthread\.diagnostics\.DeadlockError"
        ":pytest.PytestUnhandledThreadExceptionWarning")
    plugin = RsthreadPlugin(config, hang, strict)
    config.pluginmanager.register(plugin, "rsthread-session")
    plugin.start()


# ----- per-test state -----------------------------------------------------------

class _TestRun:
    """What happened during one test (all its phases)."""

    def __init__(self, item: pytest.Item, hang_timeout: float | None, strict: bool, ident: int) -> None:
        self.item = item
        self.hang_timeout = hang_timeout
        self.strict = strict
        self.ident = ident  # the thread running the test
        self.threads_before: set = set()
        self.phase = "setup"
        self.events: list[tuple[str, str, str]] = []  # (phase, section, text)
        self.failing: list[tuple[str, str]] = []  # (phase, text): deadlocks, hangs
        self.deadlock_at: float | None = None
        self.hung = False
        self.interrupt: str | None = None  # message of a pending interruption
        self.interrupted = False
        self.in_phase = False  # inside a setup/call/teardown hook


def _marker_settings(item: pytest.Item, hang: float | None, strict: bool) -> tuple[float | None, bool]:
    m = item.get_closest_marker("rsthread")
    if m is None:
        return hang, strict
    if m.args:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.rsthread takes keyword arguments only")
    unknown = set(m.kwargs) - {"hang_timeout", "strict"}
    if unknown:
        raise pytest.UsageError(f"{item.nodeid}: unknown @pytest.mark.rsthread argument(s): "
                                f"{', '.join(sorted(unknown))}")
    if "hang_timeout" in m.kwargs:
        hang = _positive(m.kwargs["hang_timeout"], "@pytest.mark.rsthread(hang_timeout=...)")
    if m.kwargs.get("strict") is not None:
        strict = bool(m.kwargs["strict"])
    return hang, strict


# ----- the plugin ---------------------------------------------------------------

class RsthreadPlugin:
    """The session's plugin object (registered as ``rsthread-session``)."""

    def __init__(self, config: pytest.Config, hang_timeout: float | None, strict: bool) -> None:
        self.config = config
        self.hang_timeout = hang_timeout
        self.strict = strict
        self.run: _TestRun | None = None
        self.outside: list[tuple[str, str]] = []  # reports made outside any test
        self.summary: dict[str, dict] = {}  # key -> {"section", "text", "tests"}
        self.left_behind: list[str] = []
        self.failed: list[str] = []  # tests failed by a deadlock or hang report
        self.seen_leaks: set = set()
        self._orig_reporters: dict = {}
        self._prev_diag: dict | None = None
        self._prev_handler = None
        self._stop = None
        self._stopped = None
        self._watchdog_ident: int | None = None
        self._quiet = False

    # ----- session set-up and tear-down -----

    def start(self) -> None:
        import rsthread
        from rsthread import diagnostics

        rsthread.install()  # threading is imported: the late path (see the module docs)

        self._prev_diag = diagnostics.enabled()
        prev = self._prev_diag
        if self.hang_timeout is None and prev["hang_timeout"]:
            self.hang_timeout = prev["hang_timeout"]  # RSTHREAD_DIAG=hang=S: per test, by the plugin
        # Diagnostics' own watchdog would print hang dumps to stderr: the
        # plugin watches waits itself and turns them into test failures.
        diagnostics.configure(deadlock="raise", lock_order=True, profile=prev["profile"], trace=prev["trace"],
                              hang_timeout=None, dump_signal=prev["dump_signal"], leaks=True)
        self._hook_reporters()
        self._install_handler()
        self._start_watchdog()

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self._stop is not None:
            self._stop.release()
            self._stopped.acquire(timeout=2)
        self._unhook_reporters()
        if self._prev_handler is not None:
            with contextlib.suppress(ValueError):
                signal.signal(INTERRUPT_SIGNAL, self._prev_handler)
        if self._prev_diag is not None:
            from rsthread import diagnostics

            with contextlib.suppress(Exception):
                diagnostics.configure(**self._prev_diag)

    # ----- reports from diagnostics -----

    def _hook_reporters(self) -> None:
        """Route diagnostics' reports (called by the native module as
        ``rsthread.diagnostics._report_*``) to the current test."""
        from rsthread import diagnostics

        wrappers = {
            "_report_deadlock": self._on_deadlock,
            "_report_inversion": self._on_inversion,
            "_report_leaks": self._on_leaks,
        }
        missing = [name for name in wrappers if not callable(getattr(diagnostics, name, None))]
        if missing:
            self.config.issue_config_time_warning(
                pytest.PytestWarning(f"rsthread plugin: rsthread.diagnostics has no {', '.join(missing)}; "
                                     "those reports go to stderr instead of the tests' reports"),
                stacklevel=2)
        for name, wrapper in wrappers.items():
            if name in missing:
                continue
            self._orig_reporters[name] = getattr(diagnostics, name)
            setattr(diagnostics, name, wrapper)

    def _unhook_reporters(self) -> None:
        from rsthread import diagnostics

        for name, orig in self._orig_reporters.items():
            setattr(diagnostics, name, orig)
        self._orig_reporters.clear()

    def _record(self, section: str, text: str, failing: bool = False, echo: bool = True) -> None:
        run = self.run
        if run is None:
            self.outside.append((section, text))
            return
        run.events.append((run.phase, section, text))
        if failing:
            run.failing.append((run.phase, text))
        if echo and self.config.getoption("xmlpath", None):
            # Captured with the test's output: junitxml's system-err.
            _write_stderr(text)

    def _on_deadlock(self, report: dict, raise_: bool):
        import time

        if self._quiet or (self.run is None and report.get("rule") == "all-blocked" and self._untracked_threads()):
            # Between tests, "every other thread is blocked" is not known while
            # threads diagnostics do not see run: pytest-xdist's worker waits
            # there for its execnet thread to hand it the next test. Keep waiting.
            return None
        err = self._orig_reporters["_report_deadlock"](report, True)  # formats, prints nothing
        text = _trim_frames(str(err))
        run = self.run
        self._record(SECTION_DEADLOCK, text, failing=True)
        if run is not None and run.deadlock_at is None:
            run.deadlock_at = time.monotonic()
        if raise_:
            return err
        if run is None:
            _write_stderr(text)
        return None

    def _on_inversion(self, inv: dict) -> None:
        self._record(SECTION_ORDER, _format_inversion(inv))

    def _on_leaks(self, leaks: list) -> None:
        for lk in leaks:
            self._record_leak(lk, "exited while holding it")

    def _record_leak(self, lk: dict, how: str, echo: bool = True) -> None:
        key = (lk["lock"]["id"], lk["thread"]["ident"], lk["depth"])
        if key in self.seen_leaks:
            return
        self.seen_leaks.add(key)
        t = lk["thread"]
        name = t.get("name") or f"Thread {t['ident']:#x}"
        text = (f"rsthread: lock leaked: {_lock_label(lk['lock'])}, acquired at {_short(lk['acquire_site'])} "
                f"by thread {name!r}, which {how}; nobody can release it now")
        self._record(SECTION_LEAKS, text, echo=echo)

    def _untracked_threads(self) -> list[int]:
        """Live threads diagnostics do not track (started by stock
        ``_thread`` before rsthread was installed, outside ``threading``),
        except the plugin's watchdog."""
        from rsthread import diagnostics

        known = {t["ident"] for t in diagnostics.snapshot(stacks=False)["threads"]}
        return [i for i in sys._current_frames() if i not in known and i != self._watchdog_ident]

    # ----- interrupting the test's thread -----

    def _install_handler(self) -> None:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set by the main thread
        try:
            self._prev_handler = signal.signal(INTERRUPT_SIGNAL, self._on_signal)
        except (ValueError, OSError):  # pragma: no cover - not the main interpreter
            self._prev_handler = None

    def _on_signal(self, signum, frame) -> None:
        run = self.run
        if run is None or run.interrupt is None or run.interrupted or not run.in_phase:
            return  # late: that test (or its phase) is over; never raise inside pytest itself
        run.interrupted = True
        raise HangInterrupt(run.interrupt)

    def _interrupt(self, run: _TestRun, why: str) -> None:
        import _thread

        if run.interrupt is not None or self._prev_handler is None:
            return
        run.interrupt = why
        try:
            signal.pthread_kill(run.ident, INTERRUPT_SIGNAL)
        except (AttributeError, OSError):  # pragma: no cover - no pthread_kill
            _thread.interrupt_main(INTERRUPT_SIGNAL)

    # ----- the watchdog -----

    def _start_watchdog(self) -> None:
        # A stock thread with stock locks: diagnostics never see it (it is
        # not a thread the program could wait for, and its sleeps must not
        # count as "running" for the deadlock rules).
        stock = sys.modules["rsthread._install"]._stock_thread
        if stock is None:  # pragma: no cover - install() found rsthread in place already
            import _thread as stock
        self._stock = stock
        self._stop = stock.allocate_lock()
        self._stop.acquire()
        self._stopped = stock.allocate_lock()
        self._stopped.acquire()
        stock.start_new_thread(self._watchdog, ())

    def _watchdog(self) -> None:
        self._watchdog_ident = self._stock.get_ident()
        try:
            while not self._stop.acquire(timeout=POLL):
                run = self.run
                if run is None or run.interrupt is not None:
                    continue
                try:
                    self._watch(run)
                except Exception as e:  # pragma: no cover - a bug: say it, keep watching
                    _write_stderr(f"rsthread plugin: watchdog error: {e!r}\n")
        finally:
            self._stopped.release()

    def _watch_cycles(self, run: _TestRun) -> bool:
        """Fail the test on a wait cycle of two or more of its threads that
        has lasted CONFIRM (RLocks only) or CYCLE_PLAIN. The deadlock rules miss some at the moment they form: "every
        other thread is blocked" is false while any thread runs (one left
        behind by an earlier test, sleeping with a lock, say), and a cycle
        through plain Locks is re-checked (see ``_on_deadlock``)."""
        from rsthread import diagnostics

        ours = {run.ident} | {t.ident for t in _started_by(run)}
        for c in diagnostics.wait_chains():
            end = c["end"]
            if end["kind"] != "cycle":
                continue
            cycle = c["links"][end["start"]:]
            if len(cycle) == 1:
                continue  # a self-wait on a plain Lock may be a signal: the hang timeout judges those
            # A plain Lock may be released by a thread outside the cycle (a
            # hand-off): give such cycles longer than RLock-only ones.
            least = CONFIRM if all(link["lock"]["kind"] == "RLock" for link in cycle) else CYCLE_PLAIN
            if any(link["timed"] or link["waited"] < least for link in cycle):
                continue  # a timeout will break it, or too young to tell
            if not any(link["ident"] in ours for link in c["links"]) or run is not self.run:
                continue
            names = [link["name"] for link in cycle]
            arrows = " -> ".join(f"{link['name']!r} waits for {_lock_label(link['lock'])}, held by"
                                 for link in cycle) + f" {names[0]!r}"
            what = f"{len(cycle)} threads, each waiting for a lock held by the next"
            out = io.StringIO()
            out.write(f"rsthread: deadlock detected ({what}; a wait cycle that has lasted "
                      f"{min(link['waited'] for link in cycle):.2f}s)\n  {arrows}\n")
            diagnostics.dump(out)
            self._record(SECTION_DEADLOCK, _trim_frames(_drop_thread(out.getvalue(), self._watchdog_ident)),
                         failing=True)
            import time

            run.deadlock_at = time.monotonic()
            return True
        return False

    def _watch(self, run: _TestRun) -> None:
        import time

        from rsthread import diagnostics

        if run.deadlock_at is not None:
            if time.monotonic() - run.deadlock_at < DEADLOCK_GRACE:
                return
            snap = diagnostics.snapshot(stacks=False)
            me = next((t for t in snap["threads"] if t["ident"] == run.ident), None)
            if me is not None and me["waiting"] is not None and run is self.run:
                self._interrupt(run, "rsthread: the test's thread was still blocked after a deadlock")
            return
        if not run.hung and self._watch_cycles(run):
            return
        if run.hang_timeout is None or run.hung:
            return
        snap = diagnostics.snapshot(stacks=False)
        long = [t for t in snap["threads"] if _hang_worthy(t, run.hang_timeout)]
        if long:  # only the test's own threads: not those left behind by earlier tests
            ours = {run.ident} | {t.ident for t in _started_by(run)}
            long = [t for t in long if t["ident"] in ours]
        if not long or run is not self.run:
            return
        run.hung = True
        out = io.StringIO()
        for t in sorted(long, key=lambda t: -t["waiting"]["waited"]):
            w = t["waiting"]
            out.write(f"rsthread: hang: thread {t['name']!r} has been waiting {w['waited']:.2f}s for "
                      f"{_lock_label(w['lock'])} (hang timeout {run.hang_timeout:g}s)\n")
        diagnostics.dump(out)
        text = _trim_frames(_drop_thread(out.getvalue(), self._watchdog_ident))
        self._record(SECTION_HANG, text, failing=True)
        self._interrupt(run, text.split("\n", 1)[0])

    # ----- the test protocol -----

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem):
        import threading

        hang, strict = _marker_settings(item, self.hang_timeout, self.strict)
        run = _TestRun(item, hang, strict, threading.get_ident())
        run.threads_before = set(threading.enumerate())
        self.run = run
        try:
            yield
        finally:
            self.run = None

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item):
        yield from self._phase("setup")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        yield from self._phase("call")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_teardown(self, item):
        yield from self._phase("teardown")

    def _phase(self, phase: str):
        run = self.run
        if run is not None:
            run.phase = phase
            run.in_phase = True  # the test's own code runs: it may be interrupted
        try:
            yield
        finally:
            if run is not None:
                run.in_phase = False

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        report: pytest.TestReport = outcome.get_result()
        run = self.run
        if run is None or run.item is not item:
            return
        # Lock-order inversions are judged with the evidence gathered so far
        # (rsthread.diagnostics reports them at exit by default): judge them
        # at the end of each phase, so that each lands in the test that
        # revealed it.
        from rsthread import diagnostics

        diagnostics.check_inversions()
        if call.when == "teardown":
            self._check_threads_and_leaks(run)
        events = [(s, t) for p, s, t in run.events if p == call.when]
        # Deadlocks and hangs are the failure text itself: no section repeats them.
        shown = [(s, t) for s, t in events if s not in (SECTION_DEADLOCK, SECTION_HANG)]
        failing = [t for p, t in run.failing if p == call.when]
        sections: dict[str, list[str]] = {}
        for section, text in shown:
            sections.setdefault(section, []).append(text)
        for section, texts in sections.items():
            report.sections.append((section, SEPARATOR.join(texts)))
        interrupted = call.excinfo is not None and call.excinfo.errisinstance(HangInterrupt)
        strict_texts = [t for s, t in events if s in (SECTION_ORDER, SECTION_LEAKS)] if run.strict else []
        if hasattr(report, "wasxfail"):
            return  # an expected failure (or an xpass): pytest's verdict stands
        if failing or strict_texts or interrupted:
            self._fail(item, report, call, failing, strict_texts, interrupted)

    def _fail(self, item, report, call, failing: list[str], strict_texts: list[str], interrupted: bool) -> None:
        from rsthread import DeadlockError

        parts = list(failing)
        if strict_texts:
            parts.append("rsthread (strict): this test revealed the following; it fails under "
                         "--rsthread-strict\n\n" + SEPARATOR.join(strict_texts))
        exc = call.excinfo
        if exc is not None and exc.errisinstance(DeadlockError):
            entry = exc.traceback[-1] if exc.traceback else None
            where = f" at {entry.path}:{entry.lineno + 1}" if entry is not None else ""
            parts.append(f"(the test ended with the DeadlockError above{where})")
        elif interrupted:
            entries = ([e for e in exc.traceback if str(e.path) == str(item.path)]
                       or [e for e in exc.traceback if str(e.path) != __file__])
            where = f" at {entries[-1].path}:{entries[-1].lineno + 1}" if entries else ""
            parts.append(f"(the test's thread was interrupted{where}, to end the test)")
            if not failing:  # a late interruption whose report was attached to another phase
                parts.insert(0, "rsthread: the test's thread was interrupted after a hang or deadlock")
        elif report.failed and report.longrepr is not None:
            parts.append("the test's own failure:\n" + str(report.longrepr))
        report.outcome = "failed"
        report.longrepr = "\n\n".join(parts)

    def _check_threads_and_leaks(self, run: _TestRun) -> None:
        import time

        from rsthread import DeadlockError, diagnostics

        new = _started_by(run)
        waiting = {t["ident"] for t in diagnostics.snapshot(stacks=False)["threads"] if t["waiting"]}
        deadline = time.monotonic() + THREAD_GRACE
        self._quiet = True  # a join here must not report (or raise) the test's deadlock again
        try:
            for t in new:
                if t.ident not in waiting:  # give threads that are finishing a moment
                    with contextlib.suppress(DeadlockError):
                        t.join(max(0.0, deadline - time.monotonic()))
        finally:
            self._quiet = False
        # A join interrupted by an exception (a DeadlockError, our interruption)
        # marks the thread stopped though it runs on (bpo-45274): ask the
        # interpreter which threads exist.
        frames = sys._current_frames()
        alive = [t for t in new if t.is_alive() or t.ident in frames]
        if alive:
            stuck = bool(run.failing) or run.interrupted
            snap = {t["ident"]: t for t in diagnostics.snapshot(stacks=False)["threads"]}
            for t in alive:
                self._record(SECTION_LEAKS, _format_left_running(t, frames, snap, stuck), echo=False)
                if stuck:
                    _daemonize(t)
                    self.left_behind.append(f"{t.name!r} (from {run.item.nodeid})")
        diag = sys.modules.get("rsthread._diag")
        if diag is not None and hasattr(diag, "leaked_at_exit"):
            for lk in diag.leaked_at_exit():
                self._record_leak(lk, "exited without releasing it", echo=False)

    # ----- the summary -----

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed and str(report.longrepr).startswith("rsthread:"):
            self.failed.append(f"{report.nodeid} ({str(report.longrepr).split(chr(10), 1)[0]})")
        for title, content in report.sections:
            if title not in (SECTION_DEADLOCK, SECTION_HANG, SECTION_ORDER, SECTION_LEAKS):
                continue
            for text in content.split(SEPARATOR):
                key = title + "\0" + _summary_key(title, text)
                entry = self.summary.setdefault(key, {"section": title, "text": text, "tests": []})
                if report.nodeid not in entry["tests"]:
                    entry["tests"].append(report.nodeid)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        tr = terminalreporter
        if not (self.summary or self.outside or self.left_behind or self.failed):
            return
        tr.write_sep("=", "rsthread")
        for line in self.failed:  # their reports are their failure texts, above
            tr.write_line(f"failed: {line}")
        counts: dict[str, int] = {}
        for entry in self.summary.values():
            counts[entry["section"]] = counts.get(entry["section"], 0) + 1
        if counts:
            tr.write_line(", ".join(f"{n} distinct report(s) in '{s}'" for s, n in counts.items()))
        for section in (SECTION_ORDER, SECTION_LEAKS):
            for entry in self.summary.values():
                if entry["section"] != section:
                    continue
                tr.write_line("")
                tr.write_line(entry["text"].rstrip("\n"))
                tests = entry["tests"]
                more = f" and {len(tests) - 5} more" if len(tests) > 5 else ""
                tr.write_line(f"  (in {', '.join(tests[:5])}{more})")
        for section, text in self.outside:
            tr.write_line("")
            tr.write_line(f"[{section}, outside any test]")
            tr.write_line(text.rstrip("\n"))
        if self.left_behind:
            n = len(self.left_behind)
            more = f" and {n - 10} more" if n > 10 else ""
            tr.write_line("")
            tr.write_line(f"{n} thread(s) left behind (blocked after a deadlock or hang; made daemon threads so "
                          "that the interpreter does not wait for them): " + ", ".join(self.left_behind[:10]) + more)


# ----- formatting ---------------------------------------------------------------

def _write_stderr(text: str) -> None:
    f = sys.stderr if sys.stderr is not None else sys.__stderr__
    with contextlib.suppress(Exception):
        f.write(text)
        f.flush()


def _short(site: str) -> str:
    try:
        cwd = os.getcwd()
    except OSError:  # pragma: no cover
        return site
    return site[len(cwd) + 1:] if site.startswith(cwd + os.sep) else site


_SENTINEL_PREFIX = "<thread sentinel>"


def _lock_label(lock: dict) -> str:
    site = lock.get("site") or "<unknown>"
    if site.startswith(_SENTINEL_PREFIX):
        return f"the end of a thread (Thread.join, sentinel #{lock['id']})"
    if site == "<unknown>":
        return f"{lock['kind']} #{lock['id']} (created before rsthread was installed)"
    return f"{lock['kind']} #{lock['id']} created at {_short(site)}"


def _hang_worthy(t: dict, timeout: float) -> bool:
    """A lock wait longer than ``timeout`` for a lock held by another thread
    (or by an exited one), or by the waiter itself when the lock is the
    program's own (a self-deadlock, which the deadlock rules cannot call
    while another thread runs: one left behind by an earlier test, say).
    Not a join (the joined thread may just be busy) nor a Condition/Event/
    queue wait (on a waiter lock that ``threading`` creates: its site says
    "via threading.py")."""
    w = t["waiting"]
    if w is None or w["waited"] < timeout:
        return False
    site = w["lock"].get("site") or ""
    if site.startswith(_SENTINEL_PREFIX):
        return False
    holder = w["holder"]
    if holder is not None and holder["ident"] == t["ident"] and w["lock"]["kind"] == "Lock":
        return "(via threading.py:" not in site
    return holder is not None or bool(w.get("holder_exited"))


def _format_inversion(inv: dict) -> str:
    """An inversion: a first line naming the lock sites in order (its key
    in the summary), then rsthread.diagnostics' own text of each edge: its
    thread, the sites, and the Python stack where the edge was first seen
    (so both code paths show)."""
    from rsthread import diagnostics

    edges = inv["edges"]
    if inv.get("same_class"):
        what = f"{len(edges)} locks created at {_short(edges[0]['from'])} taken in inconsistent orders"
    else:
        what = "locks created at " + " -> ".join(_short(e["from"]) for e in edges) + " -> " + \
            _short(edges[0]["from"]) + " taken in a cycle of orders"
    body = diagnostics._format_inversion(inv).split("\n", 1)[1]  # its own first line says less
    return f"rsthread: lock-order inversion (potential deadlock): {what}\n" + _trim_frames(body)


def _format_left_running(t, frames: dict, snap: dict, stuck: bool) -> str:
    import traceback

    how = "left behind (made a daemon thread)" if stuck else "still running after the test ended"
    lines = [f"rsthread: thread {t.name!r} started by this test is {how}"]
    s = snap.get(t.ident)
    if s is not None:
        w = s["waiting"]
        if w is not None and w["holder"] is not None and w["holder"]["ident"] == t.ident and \
                w["lock"]["kind"] == "Lock":
            lines.append(f"  waiting {w['waited']:.2f}s to be notified (a Condition/Event/queue wait)")
        elif w is not None:
            holder = repr(w["holder"]["name"]) if w["holder"] else "nobody known"
            lines.append(f"  waiting {w['waited']:.2f}s for {_lock_label(w['lock'])}, held by {holder}")
        waited = w["lock"]["id"] if w is not None else None
        for h in s["held"]:
            if h["lock"]["id"] != waited and not (h["lock"].get("site") or "").startswith(_SENTINEL_PREFIX):
                lines.append(f"  holds {_lock_label(h['lock'])}, acquired at {_short(h['acquire_site'])}")
    f = frames.get(t.ident)
    if f is not None:
        lines.append("  Traceback (most recent call last):")
        lines += ["  " + x for x in "".join(traceback.format_stack(f)).rstrip("\n").split("\n")]
    return "\n".join(lines) + "\n"


def _summary_key(section: str, text: str) -> str:
    first = text.lstrip("\n").split("\n", 1)[0]
    if section == SECTION_LEAKS and "started by this test" in first:
        return text  # each left-running thread is its own report
    return first


def _drop_thread(dump: str, ident: int | None) -> str:
    """A :func:`rsthread.diagnostics.dump` text without the block of thread
    ``ident`` (the plugin's watchdog, which made the dump)."""
    if ident is None:
        return dump
    blocks = dump.split("\n\n")
    return "\n\n".join(b for b in blocks if f" ident={ident:#x} " not in b.split("\n", 1)[0] + " ")


def _started_by(run: _TestRun) -> list:
    """The threads started during ``run`` that are still alive."""
    import threading

    frames = sys._current_frames()
    return [t for t in threading.enumerate()
            if t not in run.threads_before and not isinstance(t, threading._DummyThread)
            and (t.is_alive() or t.ident in frames)]


# Frames of the machinery running a test, left out of reports: pytest,
# pluggy, the interpreter's start-up, this plugin, a thread's bootstrap.
_MACHINERY = re.compile(r'^\s*File "(?:(?:<frozen runpy>|.*[/\\](?:_pytest|pluggy|pytest|xdist|execnet)[/\\].*|'
                        + re.escape(__file__) + r')", line \d+, in |'
                        r'.*[/\\]threading\.py", line \d+, in (?:_bootstrap|_bootstrap_inner|run)$)')


def _trim_frames(text: str) -> str:
    """``text`` without the traceback entries of :data:`_MACHINERY` (an entry
    is its ``File ...`` line and the more indented source line after it)."""
    out: list[str] = []
    skip_indent = None
    for line in text.split("\n"):
        indent = len(line) - len(line.lstrip(" "))
        if skip_indent is not None and indent > skip_indent and line.strip():
            continue
        skip_indent = None
        if _MACHINERY.match(line):
            skip_indent = indent
            continue
        out.append(line)
    return "\n".join(out)


def _daemonize(t) -> None:
    """Make a started thread a daemon: the interpreter no longer waits for it
    at exit. Up to 3.12 ``threading._shutdown`` joins the sentinels in
    ``threading._shutdown_locks``; from 3.13 ``_thread._shutdown`` waits for
    every thread started as non-daemon, and rsthread's diagnostics module can
    take one off that list. ``concurrent.futures`` joins its workers at exit
    too."""
    import threading

    with contextlib.suppress(Exception):
        t._daemonic = True
    if hasattr(threading, "_shutdown_locks"):
        with contextlib.suppress(Exception):
            lock = getattr(t, "_tstate_lock", None)
            with threading._shutdown_locks_lock:
                threading._shutdown_locks.discard(lock)
    else:
        diag = sys.modules.get("rsthread._diag")
        if diag is not None and hasattr(diag, "forget_at_shutdown") and t.ident is not None:
            diag.forget_at_shutdown(t.ident)
    pool = sys.modules.get("concurrent.futures.thread")
    if pool is not None:
        with contextlib.suppress(Exception):
            with pool._global_shutdown_lock:
                pool._threads_queues.pop(t, None)
