"""RLock re-entry while another thread waits on the contended path.

The core's ``RawRLock::acquire_contended`` does not re-enter: a caller must
try ``try_acquire`` (which re-enters) first, or an owner that reaches the
contended path waits for itself. These tests make the owner re-enter through
every acquire form while another thread sleeps on the lock, with diagnostics
off (in this process, on stock and rsthread) and on (a subprocess with
``RSTHREAD_DIAG=all``, whose acquire path is a different one).
"""
import textwrap

import pytest
from helpers import run_py

try:  # the lead installs pytest-timeout into the project venv
    import pytest_timeout  # noqa: F401

    pytestmark = pytest.mark.timeout(30)
except ImportError:  # pragma: no cover
    pass

# `run(mod)` checks one RLock of `mod`; it raises AssertionError on failure.
SCENARIO = textwrap.dedent("""
    import threading
    import time


    def run(mod):
        r = mod.RLock()
        assert r.acquire() is True
        started = threading.Event()
        got = []

        def waiter():
            started.set()
            ok = r.acquire(timeout=20)
            got.append((ok, r._is_owned(), r._recursion_count()))
            if ok:
                r.release()

        t = threading.Thread(target=waiter, daemon=True)
        t.start()
        assert started.wait(5)
        time.sleep(0.05)  # let the waiter fall asleep on the lock
        assert got == [], "the waiter got a lock that was held"
        t0 = time.monotonic()
        # Timed forms first: a trapped owner would time out (False) here
        # instead of hanging the whole test.
        assert r.acquire(True, 5) is True
        assert r.acquire(timeout=5) is True
        assert r.acquire(blocking=True, timeout=-1) is True
        assert r.acquire() is True
        assert r.acquire(True) is True
        with r as entered:
            assert entered is True
            assert r._recursion_count() == 7
        assert r.acquire(False) is True
        assert r.acquire(blocking=False) is True
        elapsed = time.monotonic() - t0
        assert elapsed < 2.0, f"re-entry waited {elapsed:.3f}s"
        assert (r._is_owned(), r._recursion_count()) == (True, 8)
        for _ in range(7):
            r.release()
        time.sleep(0.02)
        assert got == [], "the waiter got the lock while the owner held a level"
        assert (r._is_owned(), r._recursion_count()) == (True, 1)
        r.release()
        t.join(10)
        assert not t.is_alive(), "the waiter was never woken"
        assert got == [(True, True, 1)]
        assert (r._is_owned(), r._recursion_count()) == (False, 0)
""")


def _run():
    ns: dict = {}
    exec(compile(SCENARIO, "rlock_contended_scenario", "exec"), ns)
    return ns["run"]


def test_owner_reenters_while_another_waits(thread_mod):
    _run()(thread_mod)


def test_owner_reenters_while_another_waits_rlock_subclass(thread_mod):
    class Sub(thread_mod.RLock):
        pass

    class Mod:
        RLock = Sub

    _run()(Mod)


@pytest.mark.parametrize("diag", ["all", "deadlock=raise,lock-order"])
def test_owner_reenters_with_diagnostics(diag):
    code = SCENARIO + "\nimport _thread\nrun(_thread)\nrun(threading)\nprint('OK')\n"
    r = run_py(code, env={"RSTHREAD_DIAG": diag}, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "OK", (r.stdout, r.stderr)
    # `all` prints the profile table at exit; nothing else may appear.
    assert "Traceback" not in r.stderr and "eadlock" not in r.stderr, r.stderr
