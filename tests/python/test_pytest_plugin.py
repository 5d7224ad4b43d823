"""The pytest plugin (``--rsthread``), run on small test suites with
``pytester`` in subprocesses (each session installs rsthread and sets
diagnostics: it must not share this process)."""
from __future__ import annotations

import importlib.util
import re
import textwrap
import time

import pytest

pytest_plugins = ["pytester"]

TIMEOUT = 60  # per inner session: a hang of the plugin itself fails the test

# Two workers taking two locks in opposite orders, meeting at a barrier.
PAIR = """
import threading

def test_deadlock_pair():
    a, b = threading.Lock(), threading.Lock()
    both = threading.Barrier(2)
    def one():
        with a:
            both.wait()
            with b:  # ONE waits here
                pass
    def two():
        with b:
            both.wait()
            with a:  # TWO waits here
                pass
    ts = [threading.Thread(target=one, name="ONE"), threading.Thread(target=two, name="TWO")]
    for t in ts:
        t.start()
    for t in ts:
        t.join()

def test_next():
    assert True
"""

SELF = """
import threading

def test_self_deadlock():
    lock = threading.Lock()
    lock.acquire()
    lock.acquire()  # the second acquire

def test_next():
    assert True
"""

HANG = """
import threading, time

def test_hang():
    lock = threading.Lock()
    ready = threading.Event()
    def holder():
        with lock:
            ready.set()
            time.sleep(30)  # the holder is stuck here
    threading.Thread(target=holder, name="HOLDER").start()
    ready.wait()
    with lock:
        pass

def test_next():
    assert True
"""

INVERSION = """
import threading

def test_inversion():
    a, b = threading.Lock(), threading.Lock()
    def ab():
        with a:
            with b:
                pass
    def ba():
        with b:
            with a:
                pass
    for f in (ab, ba):
        t = threading.Thread(target=f)
        t.start()
        t.join()
"""

CLEAN = """
import queue, threading
from concurrent.futures import ThreadPoolExecutor

def test_clean():
    lock = threading.Lock()
    cond = threading.Condition()
    q = queue.Queue()
    out = []
    def work(i):
        with lock:
            out.append(i)
        with cond:
            cond.notify_all()
        q.put(i)
    ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    with ThreadPoolExecutor(4) as ex:
        assert sorted(ex.map(lambda x: x * 2, range(20))) == [x * 2 for x in range(20)]
    assert sorted(out) == list(range(8)) and q.qsize() == 8
"""


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for var in ("RSTHREAD_DIAG", "RSTHREAD", "_RSTHREAD_DIAG_PID", "PYTEST_ADDOPTS"):
        monkeypatch.delenv(var, raising=False)


def run(pytester: pytest.Pytester, *args: str, timeout: float = TIMEOUT):
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=timeout)


def failure_text(result, name: str) -> str:
    """The FAILURES block of test ``name``."""
    out = result.stdout.str()
    m = re.search(rf"^_+ {re.escape(name)} _+$(.*?)(?=^_{{3,}} \w|^=+ )", out, re.S | re.M)
    assert m, f"no failure block for {name}:\n{out}"
    return m.group(1)


def line_of(source: str, marker: str) -> int:
    """The line number (1-based) of the line containing ``marker``."""
    for i, line in enumerate(source.lstrip("\n").splitlines(), 1):  # as makepyfile writes it
        if marker in line:
            return i
    raise AssertionError(marker)


# ----- off: no change at all ----------------------------------------------------------

def test_off_changes_nothing(pytester):
    pytester.makepyfile(test_off="""
        import sys, threading, _thread

        def test_stock():
            # threading.Lock is the factory up to 3.12, the type from 3.13
            assert threading.Lock in (_thread.allocate_lock, getattr(_thread, "lock", None))
            assert threading._allocate_lock is _thread.allocate_lock
            rs = sys.modules.get("rsthread._thread")
            assert rs is None or _thread is not rs
            assert type(threading.Lock()) is type(_thread.allocate_lock())
            assert threading.RLock().__class__.__module__ == "_thread"
            diag = sys.modules.get("rsthread._diag")
            assert diag is None or diag.flags() == 0
    """)
    pytester.makepyfile(test_clean=CLEAN)
    result = run(pytester, "-v")
    result.assert_outcomes(passed=2)
    assert "rsthread" not in result.stdout.str().split("collected", 1)[1]
    # The same session with the plugin disabled outright: the same outcome, the same lines.
    disabled = run(pytester, "-v", "-p", "no:rsthread")
    disabled.assert_outcomes(passed=2)
    strip = re.compile(r"^(platform|plugins|rootdir|cachedir).*$|in [0-9.]+s|\[ *\d+%\]", re.M)
    assert strip.sub("", result.stdout.str()) == strip.sub("", disabled.stdout.str())


def test_plugin_registered_and_off_by_default(pytester):
    pytester.makepyfile(test_x="""
        def test_x(pytestconfig):
            assert pytestconfig.pluginmanager.has_plugin("rsthread")
            assert not pytestconfig.pluginmanager.has_plugin("rsthread-session")
    """)
    run(pytester).assert_outcomes(passed=1)


def test_module_import_locks_are_tracked(pytester):
    pytester.makepyfile(test_mod="""
        import threading
        from rsthread import diagnostics

        MODULE_LOCK = threading.Lock()  # created at import, during collection

        def test_tracked():
            with MODULE_LOCK:
                me = next(t for t in diagnostics.snapshot(stacks=False)["threads"]
                          if t["ident"] == threading.get_ident())
            sites = [h["lock"]["site"] for h in me["held"]]
            assert any(s.endswith("test_mod.py:4 in <module>") for s in sites), sites
    """)
    run(pytester, "--rsthread").assert_outcomes(passed=1)


# ----- 1. deadlocks ----------------------------------------------------------------------

def test_deadlock_in_worker_pair_fails_with_report(pytester):
    pytester.makepyfile(test_pair=PAIR)
    t0 = time.monotonic()
    result = run(pytester, "--rsthread")
    assert time.monotonic() - t0 < TIMEOUT
    result.assert_outcomes(failed=1, passed=1)
    assert result.ret == 1
    text = failure_text(result, "test_deadlock_pair")
    assert "rsthread: deadlock detected" in text
    for name, fn, line in (("ONE", "one", "with b:  # ONE waits here"), ("TWO", "two", "with a:  # TWO waits here")):
        assert f"Thread '{name}'" in text, text
        assert f'test_pair.py", line {line_of(PAIR, line)}, in {fn}' in text, text
    assert f"created at test_pair.py:{line_of(PAIR, 'a, b = threading.Lock()')} in test_deadlock_pair" in text
    assert "_pytest" not in text and "pluggy" not in text  # the runner's frames are left out


def test_self_deadlock_fails_with_report(pytester):
    pytester.makepyfile(test_self=SELF)
    result = run(pytester, "--rsthread")
    result.assert_outcomes(failed=1, passed=1)
    text = failure_text(result, "test_self_deadlock")
    assert "a thread waits for a lock it holds itself" in text
    assert f'test_self.py", line {line_of(SELF, "the second acquire")}, in test_self_deadlock' in text


def test_deadlock_while_main_waits_on_event(pytester):
    """The test's thread is not in the cycle (it waits for an Event the
    workers would set): the test fails with the report, and the session
    goes on."""
    src = PAIR.replace("    for t in ts:\n        t.join()", "    done = threading.Event()\n    done.wait()")
    assert "done.wait()" in src
    pytester.makepyfile(test_pair_event=src)
    result = run(pytester, "--rsthread")
    result.assert_outcomes(failed=1, passed=1)
    text = failure_text(result, "test_deadlock_pair")
    assert "rsthread: deadlock detected" in text and "Thread 'ONE'" in text and "Thread 'TWO'" in text


# A fair reader-writer lock as in the readerwriterlock package: the first
# reader takes `write` for all readers and the last one releases it, so a
# cycle through `write` resolves when another reader leaves.
RWLOCK = """
import threading, time

class RWLockFair:
    def __init__(self):
        self.count = 0
        self.count_lock = threading.Lock()
        self.read = threading.Lock()
        self.write = threading.Lock()

    def acquire_read(self):
        with self.read:
            with self.count_lock:
                self.count += 1
                if self.count == 1:
                    self.write.acquire()

    def release_read(self):
        with self.count_lock:
            self.count -= 1
            if self.count == 0:
                self.write.release()

    def acquire_write(self):
        self.read.acquire()
        self.write.acquire()

    def release_write(self):
        self.write.release()
        self.read.release()

def test_readers_and_writers():
    rw = RWLockFair()
    stop = time.monotonic() + 2
    done = []
    def reader():
        while time.monotonic() < stop:
            rw.acquire_read()
            time.sleep(0.0005)
            rw.release_read()
        done.append(1)
    def writer():
        while time.monotonic() < stop:
            rw.acquire_write()
            rw.release_write()
            time.sleep(0.0005)
        done.append(1)
    ts = [threading.Thread(target=f) for f in (reader,) * 4 + (writer,) * 2]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(done) == 6
"""


def test_handoff_lock_cycle_is_not_a_deadlock(pytester):
    """A wait cycle through a Lock that another thread than its acquirer
    releases resolves by itself: the test passes (found on the real suite of
    readerwriterlock; lock-order inversions may still be reported)."""
    pytester.makepyfile(test_rw=RWLOCK)
    result = run(pytester, "--rsthread", "--rsthread-hang-timeout=5")
    result.assert_outcomes(passed=1)
    assert "deadlock detected" not in result.stdout.str()


# ----- 2. hangs ---------------------------------------------------------------------------

def test_hang_behind_sleeping_holder(pytester):
    pytester.makepyfile(test_hang=HANG)
    t0 = time.monotonic()
    result = run(pytester, "--rsthread", "--rsthread-hang-timeout=1")
    elapsed = time.monotonic() - t0
    result.assert_outcomes(failed=1, passed=1)
    assert elapsed < 20, elapsed  # the holder sleeps 30 s: it was left behind as a daemon
    text = failure_text(result, "test_hang")
    assert "rsthread: hang: thread 'MainThread' has been waiting" in text
    assert "held by 'HOLDER'" in text
    assert f"which is running at test_hang.py:{line_of(HANG, 'the holder is stuck here')} in holder" in text
    assert "time.sleep(30)" in text
    assert "interrupted at" in text
    out = result.stdout.str()
    assert "thread 'HOLDER' started by this test is left behind" in out


POOL_HANG = """
import threading, time
from concurrent.futures import ThreadPoolExecutor

def test_pool_hang():
    lock = threading.Lock()
    ex = ThreadPoolExecutor(2)  # never shut down: the executor joins its workers at exit
    got = threading.Event()
    def holder():
        with lock:
            got.set()
            time.sleep(60)  # the holder is stuck here
    def waiter():
        got.wait()
        with lock:
            return 1
    ex.submit(holder)
    assert ex.submit(waiter).result() == 1  # the test waits here
"""


def test_hang_in_executor_workers_session_ends(pytester):
    """The waiting thread is a pool worker, the test's thread waits on a
    future: the test fails with the chain, and the process exits although
    the executor's workers stay blocked (they are left behind)."""
    pytester.makepyfile(test_pool=POOL_HANG)
    t0 = time.monotonic()
    result = run(pytester, "--rsthread", "--rsthread-hang-timeout=1")
    assert time.monotonic() - t0 < 30
    result.assert_outcomes(failed=1)
    text = failure_text(result, "test_pool_hang")
    assert "rsthread: hang: thread 'ThreadPoolExecutor-0_1' has been waiting" in text
    assert f"which is running at test_pool.py:{line_of(POOL_HANG, 'holder is stuck')} in holder" in text
    assert f"interrupted at {pytester.path / 'test_pool.py'}:{line_of(POOL_HANG, 'the test waits here')}" in text
    assert "'ThreadPoolExecutor-0_0' (from test_pool.py::test_pool_hang)" in result.stdout.str()


def test_hang_timeout_from_marker_and_ini(pytester):
    pytester.makepyfile(test_hang=HANG.replace("def test_hang", "@pytest.mark.rsthread(hang_timeout=0.5)\ndef test_hang")
                        .replace("import threading", "import pytest, threading"))
    result = run(pytester, "--rsthread")
    result.assert_outcomes(failed=1, passed=1)
    assert "hang timeout 0.5s" in failure_text(result, "test_hang")
    pytester.makeini("[pytest]\nrsthread = true\nrsthread_hang_timeout = 0.7\n")
    pytester.makepyfile(test_hang=HANG)
    result = run(pytester)
    result.assert_outcomes(failed=1, passed=1)
    assert "hang timeout 0.7s" in failure_text(result, "test_hang")


def test_no_hang_report_for_a_short_wait(pytester):
    pytester.makepyfile(test_short=HANG.replace("time.sleep(30)", "time.sleep(0.3)"))
    result = run(pytester, "--rsthread", "--rsthread-hang-timeout=2")
    result.assert_outcomes(passed=2)
    assert "rsthread" not in result.stdout.str().split("collected", 1)[1]


# ----- 3. inversions and leaks ----------------------------------------------------------------

def test_inversion_reported_not_failed(pytester):
    pytester.makepyfile(test_inv=INVERSION)
    result = run(pytester, "--rsthread", "-rP")
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert re.search(r"^-+ rsthread lock order -+$", out, re.M), out  # the test's section
    assert re.search(r"^=+ rsthread =+$", out, re.M), out  # the session summary
    assert "2 locks created at test_inv.py:4 in test_inversion taken in inconsistent orders" in out
    assert "acquired at test_inv.py:6 in ab" in out and "at test_inv.py:7 in ab" in out
    assert "acquired at test_inv.py:10 in ba" in out and "at test_inv.py:11 in ba" in out
    assert "(in test_inv.py::test_inversion)" in out


def test_inversion_fails_under_strict(pytester):
    pytester.makepyfile(test_inv=INVERSION)
    result = run(pytester, "--rsthread", "--rsthread-strict")
    result.assert_outcomes(failed=1)
    assert "lock-order inversion" in failure_text(result, "test_inversion")
    # The marker turns strict off for one test.
    pytester.makepyfile(test_inv="import pytest\n" + INVERSION.replace(
        "def test_inversion", "@pytest.mark.rsthread(strict=False)\ndef test_inversion"))
    run(pytester, "--rsthread", "--rsthread-strict").assert_outcomes(passed=1)


def test_inversion_summary_is_deduplicated(pytester):
    pytester.makepyfile(test_inv=INVERSION.replace("def test_inversion():", "def run():") + textwrap.dedent("""
        def test_one():
            run()

        def test_two():
            run()
    """))
    result = run(pytester, "--rsthread")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    summary = out.split("= rsthread =", 1)[1]
    assert summary.count("taken in inconsistent orders") == 1, summary
    assert "1 distinct report(s) in 'rsthread lock order'" in summary


LEAK = """
import threading

LOCK = threading.Lock()

def grab():
    LOCK.acquire()  # and never released

def test_leak():
    t = threading.Thread(target=grab, name="LEAKER")
    t.start()
    t.join()

def test_left_running():
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, args=(3,), name="LINGER")
    t.start()
"""


def test_leaks_and_left_running_threads(pytester):
    pytester.makepyfile(test_leak=LEAK)
    result = run(pytester, "--rsthread")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert "rsthread: lock leaked: Lock" in out and "by thread 'LEAKER'" in out
    assert f"created at test_leak.py:{line_of(LEAK, 'LOCK = ')} in <module>" in out
    assert f"acquired at test_leak.py:{line_of(LEAK, 'never released')} in grab" in out
    assert "to be notified (a Condition/Event/queue wait)" in out
    assert "thread 'LINGER' started by this test is still running after the test ended" in out
    strict = run(pytester, "--rsthread", "--rsthread-strict")
    strict.assert_outcomes(passed=2, errors=2)  # reported at teardown
    assert strict.ret == 1


def test_clean_threaded_test_has_no_report(pytester):
    pytester.makepyfile(test_clean=CLEAN)
    result = run(pytester, "--rsthread", "--rsthread-hang-timeout=5", "--rsthread-strict", "-rA")
    result.assert_outcomes(passed=1)
    assert "rsthread" not in result.stdout.str().split("collected", 1)[1]


# ----- 4. where pytest runs -----------------------------------------------------------------

def test_junitxml_has_the_report(pytester):
    pytester.makepyfile(test_pair=PAIR)
    result = run(pytester, "--rsthread", "--junitxml=out.xml", "-o", "junit_logging=all")
    result.assert_outcomes(failed=1, passed=1)
    xml = (pytester.path / "out.xml").read_text()
    failure = re.search(r"<failure message=\"(.*?)\">(.*?)</failure>", xml, re.S)
    assert failure and "rsthread: deadlock detected" in failure.group(1)
    assert "Thread 'ONE'" in failure.group(2) and "Thread 'TWO'" in failure.group(2)
    assert re.search(r"<system-err>.*rsthread: deadlock detected.*Thread 'ONE'.*</system-err>", xml, re.S), xml


def test_exitfirst_and_last_failed(pytester):
    pytester.makepyfile(test_a=SELF, test_b=CLEAN)
    result = pytester.runpytest_subprocess("--rsthread", "-x", timeout=TIMEOUT)
    result.assert_outcomes(failed=1)
    assert result.ret == 1
    result = pytester.runpytest_subprocess("--rsthread", "--lf", timeout=TIMEOUT)
    result.assert_outcomes(failed=1)  # only the failed test ran again
    assert "run-last-failure: rerun previous 1 failure" in result.stdout.str()
    assert "rsthread: deadlock detected" in failure_text(result, "test_self_deadlock")


def require(module: str, package: str) -> None:
    """Fail (not skip) when a test-only package is missing: it is in the
    ``test`` extra of pyproject.toml."""
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"this test needs {package} (pip install {package}; it is in the 'test' extra)", pytrace=False)


def test_xdist_workers_report(pytester):
    require("xdist", "pytest-xdist")
    pytester.makepyfile(test_pair=PAIR, test_clean=CLEAN, test_inv=INVERSION, test_hang=HANG)
    result = run(pytester, "-p", "xdist", "-n", "2", "--rsthread", "--rsthread-hang-timeout=1")
    result.assert_outcomes(failed=2, passed=4)
    assert result.ret == 1
    text = failure_text(result, "test_deadlock_pair")
    assert "rsthread: deadlock detected" in text and "Thread 'ONE'" in text
    text = failure_text(result, "test_hang")
    assert "held by 'HOLDER'" in text and "time.sleep(30)" in text
    out = result.stdout.str()
    assert "taken in inconsistent orders" in out.split("= rsthread =", 1)[1]


def test_with_pytest_timeout(pytester):
    require("pytest_timeout", "pytest-timeout")
    pytester.makepyfile(test_hang=HANG)
    # Ours is shorter: the hang report fires first, pytest-timeout never does.
    result = run(pytester, "--rsthread", "--rsthread-hang-timeout=1", "--timeout=20")
    result.assert_outcomes(failed=1, passed=1)
    text = failure_text(result, "test_hang")
    assert "rsthread: hang:" in text and "Timeout" not in text
    # pytest-timeout's is shorter (signal method): its failure, the session goes on,
    # and the holder is still reported as left behind.
    result = run(pytester, "--rsthread", "--rsthread-hang-timeout=20", "--timeout=1", "--timeout-method=signal")
    result.assert_outcomes(failed=1, passed=1)
    text = failure_text(result, "test_hang")
    assert "Timeout (>1.0s)" in text and "rsthread: hang:" not in text
    assert "thread 'HOLDER' started by this test is still running" in result.stdout.str()


# ----- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["-1", "0", "abc"])
def test_bad_hang_timeout(pytester, value):
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = run(pytester, "--rsthread", f"--rsthread-hang-timeout={value}")
    assert result.ret != 0
    assert "hang-timeout" in result.stderr.str()


def test_bad_marker(pytester):
    pytester.makepyfile(test_x="""
        import pytest

        @pytest.mark.rsthread(timeout=3)
        def test_x():
            pass
    """)
    result = run(pytester, "--rsthread")
    assert result.ret != 0
    assert "unknown @pytest.mark.rsthread argument(s): timeout" in result.stdout.str() + result.stderr.str()


def test_enabled_by_environment(pytester, monkeypatch):
    monkeypatch.setenv("RSTHREAD_DIAG", "hang=0.8")
    pytester.makepyfile(test_hang=HANG)
    result = run(pytester)
    result.assert_outcomes(failed=1, passed=1)
    assert "hang timeout 0.8s" in failure_text(result, "test_hang")


# ----- the whole story, in one session ----------------------------------------------------

def test_user_suite_end_to_end(pytester):
    """A user's suite with a deadlocking test, a hanging one, an inversion
    and ordinary threaded tests: each failure has its report, the others
    pass, the run ends by itself; --rsthread-strict also fails the
    inversion."""
    pytester.makepyfile(test_pair=PAIR, test_hang=HANG, test_inv=INVERSION, test_clean=CLEAN, test_self=SELF)
    t0 = time.monotonic()
    result = run(pytester, "--rsthread", "--rsthread-hang-timeout=3")
    assert time.monotonic() - t0 < 40
    result.assert_outcomes(failed=3, passed=5)
    assert result.ret == 1
    pair = failure_text(result, "test_deadlock_pair")
    assert pair.lstrip().startswith("rsthread: deadlock detected (2 threads"), pair
    assert "'ONE'" in pair and "'TWO'" in pair and ", in one" in pair and ", in two" in pair
    # The hang test left a thread sleeping with a lock held: "every other thread is blocked" is false
    # from then on; the self-deadlock is a hang past the timeout.
    own = failure_text(result, "test_self_deadlock")
    assert own.lstrip().startswith("rsthread: hang: thread 'MainThread'"), own
    assert f"test_self.py\", line {line_of(SELF, 'the second acquire')}, in test_self_deadlock" in own
    hang = failure_text(result, "test_hang")
    assert f"which is running at test_hang.py:{line_of(HANG, 'the holder is stuck here')} in holder" in hang
    out = result.stdout.str()
    assert "taken in inconsistent orders" in out.split("= rsthread =", 1)[1]
    strict = run(pytester, "--rsthread", "--rsthread-hang-timeout=3", "--rsthread-strict", "test_inv.py",
                 "test_clean.py")
    strict.assert_outcomes(failed=1, passed=1)
    assert "lock-order inversion" in failure_text(strict, "test_inversion")
