"""Issue 4: stdlib threading (and what is built on it) carried by rsthread."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from helpers import run_py


def test_install_before_threading_is_complete():
    r = run_py("""
        import _thread, threading, queue, concurrent.futures, logging, io, sys
        import rsthread._thread as rt
        assert _thread is rt
        assert threading._allocate_lock is rt.allocate_lock
        if sys.version_info >= (3, 13):  # thread handles
            assert threading._start_joinable_thread is rt.start_joinable_thread
            main = threading.main_thread()  # 3.14+ names it _os_thread_handle
            assert type(getattr(main, "_handle", None) or main._os_thread_handle) is rt._ThreadHandle
        else:
            assert threading._start_new_thread is rt.start_new_thread
            # the main thread's sentinel is ours too
            assert type(threading.main_thread()._tstate_lock) is rt.LockType
        assert type(threading.Lock()) is rt.LockType
        assert type(threading.RLock()) is rt.RLock
        assert threading.local is rt._local
        assert threading.excepthook is rt._excepthook
        # a small thread pool / queue / condition / event / logging workload
        q = queue.Queue()
        def producer():
            for i in range(1000): q.put(i)
            q.put(None)
        out = []
        def consumer():
            while (x := q.get()) is not None: out.append(x)
        ts = [threading.Thread(target=producer), threading.Thread(target=consumer)]
        for t in ts: t.start()
        for t in ts: t.join()
        assert out == list(range(1000))
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            assert list(ex.map(lambda x: x * 2, range(100))) == [x * 2 for x in range(100)]
        ev = threading.Event(); c = threading.Condition(); box = []
        def waiter():
            with c:
                c.wait_for(lambda: box)
            ev.set()
        t = threading.Thread(target=waiter); t.start()
        with c:
            box.append(1); c.notify_all()
        assert ev.wait(10)
        t.join()
        buf = io.StringIO()
        logging.basicConfig(stream=buf, level=logging.INFO, format="%(threadName)s %(message)s")
        ths = [threading.Thread(target=logging.info, args=("hello %d", i), name=f"w{i}") for i in range(8)]
        for t in ths: t.start()
        for t in ths: t.join()
        assert sorted(buf.getvalue().splitlines()) == sorted(f"w{i} hello {i}" for i in range(8))
        assert threading.active_count() == 1
        print("OK")
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "OK"


def test_install_after_threading_new_objects_use_rsthread():
    r = run_py("""
        import threading, _thread as stock
        old_lock = threading.Lock()
        old_local = threading.local()
        import rsthread, rsthread._thread as rt
        assert not rsthread.installed()
        rsthread.install()
        assert rsthread.installed()
        import _thread
        assert _thread is rt
        assert type(threading.Lock()) is rt.LockType
        assert type(threading.RLock()) is rt.RLock
        assert type(threading.Condition()._lock) is rt.RLock
        assert threading.local is rt._local
        assert type(old_lock) is stock.LockType      # created before: stays stock
        assert type(old_local) is stock._local
        t = threading.Thread(target=lambda: None); t.start(); t.join()
        if hasattr(t, "_handle") or hasattr(t, "_os_thread_handle"):  # 3.13+: thread handles
            assert type(getattr(t, "_handle", None) or t._os_thread_handle) is rt._ThreadHandle
        else:
            assert type(t._tstate_lock) in (rt.LockType, type(None))
        e = threading.Event(); threading.Timer(0.01, e.set).start(); assert e.wait(10)
        rsthread.install()  # idempotent
        assert rsthread.installed()
        print("OK")
    """, rsthread=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "OK"


def test_excepthook_output_identical_to_stock():
    code = """
        import threading, sys
        def boom():
            raise ValueError("boom in thread")
        t = threading.Thread(target=boom, name="worker-1"); t.start(); t.join()
        # direct call of the hook with a structured argument, as threading does
        try:
            raise KeyError("k")
        except KeyError:
            args = threading.ExceptHookArgs([*sys.exc_info(), None])
        threading.excepthook(args)
        print(type(args).__name__, args.exc_type.__name__, args.thread, len(args))
        threading.excepthook(threading.ExceptHookArgs([SystemExit, SystemExit(), None, None]))
    """
    ours = run_py(code)
    stock = run_py(code, rsthread=False)
    assert ours.returncode == stock.returncode == 0, ours.stderr
    assert ours.stdout == stock.stdout
    def norm(s):  # thread idents differ between runs
        import re
        return re.sub(r"Exception in thread \d+", "Exception in thread N", s)
    assert norm(ours.stderr) == norm(stock.stderr)
    assert "Exception in thread worker-1:" in ours.stderr


def test_unraisable_from_start_new_thread_matches_stock():
    code = """
        import _thread, sys, time
        seen = []
        # 3.13+ names the function in err_msg (object None); earlier in object
        sys.unraisablehook = lambda u: seen.append((u.err_msg.split(" at 0x")[0],
            getattr(u.object, "__name__", None), type(u.exc_value).__name__))
        def f(): raise RuntimeError("x")
        def g(): raise SystemExit(3)
        done = _thread.allocate_lock()
        _thread.start_new_thread(f, ())
        _thread.start_new_thread(g, ())
        for _ in range(1000):
            if _thread._count() == 0 and seen: break
            time.sleep(0.01)
        print(seen)
    """
    ours, stock = run_py(code), run_py(code, rsthread=False)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == stock.stdout
    assert "Exception ignored in thread started by" in ours.stdout


def same_as_stock(code: str, timeout: float = 60):
    """Run `code` on rsthread and on stock; the exit status and stdout must
    be the same. Returns rsthread's run."""
    ours = run_py(code, timeout=timeout)
    stock = run_py(code, rsthread=False, timeout=timeout)
    assert (ours.returncode, ours.stdout) == (stock.returncode, stock.stdout), (ours, stock)
    return ours


@pytest.mark.parametrize("where", ["atexit", "finalizer"])
def test_thread_started_at_shutdown_matches_stock(where):
    # 3.12 refuses a thread from an atexit handler (the interpreter's own
    # finalizing flag is set before they run); 3.13+ allows it there and
    # refuses it from a finalizer at interpreter shutdown; 3.11 allows both.
    code = """
        import _thread, atexit, sys
        def say(line):  # one write per line: the two threads' lines never mix
            sys.stdout.write(line + "\\n")
            sys.stdout.flush()
        def f():
            say("thread ran")
        def start():
            try:
                _thread.start_new_thread(f, ())
                say("started")
            except BaseException as e:
                say(f"{type(e).__name__} {e}")
        class AtFinalization:
            def __del__(self):
                start()
        if sys.argv[1] == "atexit":
            atexit.register(start)
        else:
            at_finalization = AtFinalization()
    """
    ours = run_py(code, args=[where])
    stock = run_py(code, rsthread=False, args=[where])
    # the scenario itself ran (it always says something): no vacuous match
    assert stock.stdout.strip() and "Traceback" not in stock.stderr, stock.stderr
    assert ours.returncode == stock.returncode, ours.stderr
    # whether (and when) the started thread got to run before exit is a race
    said = [[ln for ln in s.stdout.splitlines() if ln != "thread ran"] for s in (ours, stock)]
    assert said[0] == said[1], (ours.stdout, stock.stdout)
    if sys.version_info >= (3, 12) and where == ("atexit" if sys.version_info < (3, 13) else "finalizer"):
        assert "can't create new thread at interpreter shutdown" in ours.stdout


def test_join_daemon_thread_in_finalization_matches_stock():
    # 3.14+ refuses to join a still-running thread once the interpreter
    # finalizes (it could never finish); earlier versions differ in whether
    # the finalizer runs at all. Either way: as stock.
    code = """
        import threading
        def loop():
            while True:
                pass
        def done():
            pass
        class Cycle:
            def __init__(self):
                self.self_ref = self
                self.thr = threading.Thread(target=loop, daemon=True)
                self.thr.start()
                self.fin = threading.Thread(target=done, daemon=True)
                self.fin.start()
                self.fin.join()
            def __del__(self):
                # 3.13 (stock too) waits forever for a running thread here
                tries = ((self.thr, 0), (self.thr, 0.01), (self.fin, None))
                if UNBOUNDED:
                    tries += ((self.thr, None), (self.thr, 10))
                for t, to in tries:
                    try:
                        t.join(timeout=to)
                        print("joined", to, flush=True)
                    except BaseException as e:
                        print(to, type(e).__name__, e, flush=True)
        Cycle()
    """
    unbounded = sys.version_info[:2] != (3, 13)
    ours = same_as_stock(f"UNBOUNDED = {unbounded}\n" + textwrap.dedent(code))
    if sys.version_info >= (3, 14):
        assert "None PythonFinalizationError cannot join thread at interpreter shutdown" in ours.stdout


def test_acquire_daemon_thread_lock_in_finalization_matches_stock():
    # 3.15 refuses to wait for a lock at interpreter finalization (its
    # holder can never run again); a lock that is free is still taken.
    code = """
        import threading, time, _thread
        ev = threading.Event()
        locks = {"Lock": threading.Lock(), "RLock": threading.RLock(), "raw": _thread.allocate_lock()}
        free = threading.Lock()
        def loop():
            for l in locks.values():
                l.acquire()
            ev.set()
            while True:
                time.sleep(1)
        class Cycle:
            def __init__(self):
                self.self_ref = self
                self.thr = threading.Thread(target=loop, daemon=True)
                self.thr.start()
                ev.wait()
            def __del__(self):
                print("free", free.acquire(), flush=True)
                for name, l in locks.items():
                    # before 3.15 an unbounded wait here never ends
                    for args in ((True, 0.01), (False,)) + (((), (True, 5)) if UNBOUNDED else ()):
                        try:
                            print(name, args, l.acquire(*args), flush=True)
                        except BaseException as e:
                            print(name, args, type(e).__name__, e, flush=True)
        Cycle()
    """
    code = f"UNBOUNDED = {sys.version_info >= (3, 15)}\n" + textwrap.dedent(code)
    ours = same_as_stock(code)
    if sys.version_info >= (3, 15):
        assert "Lock () PythonFinalizationError cannot acquire lock at interpreter finalization" in ours.stdout


def test_fork_with_threads_holding_locks():
    r = run_py("""
        import os, threading, time, _thread
        lock, rlock = threading.Lock(), threading.RLock()
        held = threading.Event(); stop = threading.Event()
        def holder():
            with lock, rlock:
                held.set(); stop.wait()
        t = threading.Thread(target=holder, daemon=True); t.start(); held.wait()
        pid = os.fork()
        if pid == 0:
            try:
                # The child's copies of locks held by a dead thread: threading
                # reinitialises its own; ours can be re-initialised as stock.
                lock._at_fork_reinit(); rlock._at_fork_reinit()
                assert not lock.locked() and lock.acquire(timeout=1)
                assert rlock.acquire(timeout=1) and rlock._is_owned()
                out = []
                ts = [threading.Thread(target=out.append, args=(i,)) for i in range(5)]
                for x in ts: x.start()
                for x in ts: x.join()
                assert sorted(out) == list(range(5))
                assert threading.active_count() == 1, threading.enumerate()
                assert threading.current_thread() is threading.main_thread()
                os._exit(0)
            except BaseException as e:
                import traceback; traceback.print_exc(); os._exit(1)
        _, status = os.waitpid(pid, 0)
        stop.set(); t.join()
        print(os.waitstatus_to_exitcode(status))
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0", r.stderr


def test_local_values_die_with_thread_and_callbacks_fire():
    r = run_py("""
        import threading, weakref, gc
        class V: pass
        loc = threading.local()
        died = []
        def work(i):
            v = V(); loc.v = v
            weakref.finalize(v, died.append, i)
        ts = [threading.Thread(target=work, args=(i,)) for i in range(10)]
        for t in ts: t.start()
        for t in ts: t.join()   # join waits for the sentinel, released after the values die
        assert sorted(died) == list(range(10)), died
        # the local dying frees every thread's values, including the main thread's
        loc.v = V(); weakref.finalize(loc.v, died.append, "main")
        del loc; gc.collect()
        assert died[-1] == "main", died
        # cycles through a local are collected
        class X: pass
        x = X(); x.local = threading.local(); x.local.x = x
        wr = weakref.ref(x); del x; gc.collect()
        assert wr() is None
        print("OK")
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "OK"


def test_local_subclass_init_runs_per_thread():
    r = run_py("""
        import threading, _thread
        class L(threading.local):
            def __init__(self, a, b=0):
                self.a, self.b, self.tid = a, b, threading.get_ident()
        loc = L(1, b=2)
        res = []
        def f(): res.append((loc.a, loc.b, loc.tid == threading.get_ident()))
        t = threading.Thread(target=f); t.start(); t.join()
        assert res == [(1, 2, True)], res
        try:
            _thread._local(1)
        except TypeError as e:
            print(e)
        loc2 = _thread._local()
        loc2.x = 1
        assert loc2.__dict__ == {"x": 1}
        try:
            loc2.__dict__ = {}
        except AttributeError as e:
            print(e)
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "Initialization arguments are not supported",
        "'_thread._local' object attribute '__dict__' is read-only",
    ]


def test_count_and_sentinel_with_threading():
    r = run_py("""
        import threading, _thread, time
        base = _thread._count()
        go = threading.Event()
        t = threading.Thread(target=go.wait); t.start()
        assert _thread._count() == base + 1 and t.is_alive()
        go.set(); t.join(5)
        assert not t.is_alive()
        for _ in range(500):
            if _thread._count() == base: break
            time.sleep(0.01)
        assert _thread._count() == base
        if hasattr(_thread, "_set_sentinel"):  # gone from 3.13
            s = _thread._set_sentinel()
            assert type(s) is _thread.LockType and not s.locked()
        print("OK")
    """)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("timed", [False, True])
def test_ctrl_c_interrupts_blocked_acquire(timed):
    code = f"""
        import threading, sys
        lock = threading.Lock(); lock.acquire()
        print("ready", flush=True)
        try:
            lock.acquire({'timeout=60' if timed else ''})
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(0)
        sys.exit(1)
    """
    src = "import rsthread; rsthread.install()\n" + textwrap.dedent(code)
    p = subprocess.Popen([sys.executable, "-c", src], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "interrupted" in out
    assert time.monotonic() - t0 < 10


def test_signal_handler_runs_and_wait_continues():
    r = run_py("""
        import signal, threading, time
        hits = []
        signal.signal(signal.SIGALRM, lambda *a: hits.append(1))
        signal.setitimer(signal.ITIMER_REAL, 0.02, 0.02)
        lock = threading.Lock(); lock.acquire()
        t0 = time.monotonic()
        assert lock.acquire(timeout=0.5) is False
        dt = time.monotonic() - t0
        signal.setitimer(signal.ITIMER_REAL, 0)
        assert dt >= 0.5, dt          # never early, despite the interruptions
        assert len(hits) >= 5, hits   # handlers ran while blocked
        threading.Timer(0.2, lock.release).start()
        signal.setitimer(signal.ITIMER_REAL, 0.01, 0.01)
        assert lock.acquire() is True  # untimed: handlers run, then the wait goes on
        signal.setitimer(signal.ITIMER_REAL, 0)
        print("OK")
    """)
    assert r.returncode == 0, r.stderr


def test_interrupt_main_simulates_sigint():
    r = run_py("""
        import _thread, signal, time, threading
        try:
            threading.Timer(0.05, _thread.interrupt_main).start()
            time.sleep(5)
        except KeyboardInterrupt:
            print("KI")
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _thread.interrupt_main()   # ignored handler: nothing happens
        time.sleep(0.05)
        got = []
        signal.signal(signal.SIGUSR1, lambda *a: got.append(1))
        _thread.interrupt_main(signal.SIGUSR1)
        for _ in range(10): time.sleep(0.001)
        print(got)
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["KI", "[1]"]


@pytest.mark.parametrize("state", ["blocked", "running", "starting", "sleeping"])
def test_exit_with_daemon_threads(state):
    r = run_py(f"""
        import threading, time, sys, _thread
        lock = threading.Lock(); lock.acquire()
        def blocked(): lock.acquire()
        def running():
            while True: sum(range(100))
        def starting():
            while True: _thread.start_new_thread(lambda: None, ())
        def sleeping(): time.sleep(100)
        for _ in range(4):
            threading.Thread(target={state}, daemon=True).start()
        time.sleep(0.05)
        sys.exit(7)
    """, timeout=60)
    assert r.returncode == 7, r.stderr
    assert "Fatal" not in r.stderr and "panicked" not in r.stderr, r.stderr


def test_stack_size_applies_to_new_threads():
    r = run_py("""
        import threading, _thread, resource
        assert _thread.stack_size() == 0
        old = threading.stack_size(1 << 20)
        assert old == 0
        assert threading.stack_size() == 1 << 20   # returns it ... and resets it to 0
        assert threading.stack_size(1 << 20) == 0
        # a thread with 1 MiB of stack still runs deep Python recursion safely
        res = []
        def rec(n): return 0 if n == 0 else 1 + rec(n - 1)
        t = threading.Thread(target=lambda: res.append(rec(500))); t.start(); t.join()
        assert res == [500]
        # stack_size() with no argument returns the size AND resets it to 0 (stock behaviour)
        assert _thread.stack_size() == 1 << 20 and _thread.stack_size() == 0
        print("OK")
    """)
    assert r.returncode == 0, r.stderr


RUNNER_SCRIPT = """
import sys, threading
print(sys.argv, __name__, sys.path[0] == __import__('os').path.dirname(__file__), flush=True)
def f(): raise ValueError("boom")
if len(sys.argv) > 1 and sys.argv[1] == "exit": sys.exit(5)
f()
"""


def test_runner_matches_python(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(RUNNER_SCRIPT)
    for extra in ([], ["exit"]):
        a = subprocess.run([sys.executable, "-m", "rsthread", str(script), *extra], capture_output=True, text=True, timeout=60)
        b = subprocess.run([sys.executable, str(script), *extra], capture_output=True, text=True, timeout=60)
        assert (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr)
    (tmp_path / "modprog.py").write_text("import sys, _thread, rsthread\nprint(sys.argv[1:], __name__, _thread is rsthread._thread)\n")
    a = subprocess.run([sys.executable, "-m", "rsthread", "-m", "modprog", "x", "--y"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert a.returncode == 0, a.stderr
    assert a.stdout.strip() == "['x', '--y'] __main__ True"
    h = subprocess.run([sys.executable, "-m", "rsthread", "--help"], capture_output=True, text=True, timeout=60)
    for opt in ("--deadlock", "--lock-order", "--profile", "--trace", "--hang-timeout", "--dump-signal", "-m MODULE"):
        assert opt in h.stdout


def test_env_var_installs_at_startup_in_children():
    code = (
        "import sys, subprocess, threading, _thread\n"
        "import rsthread\n"
        "print(rsthread.installed(), _thread is rsthread._thread)\n"
        "out = subprocess.run([sys.executable, '-c', 'import threading, rsthread; print(rsthread.installed())'],"
        " capture_output=True, text=True).stdout.strip()\n"
        "print(out)\n"
    )
    env = dict(os.environ, RSTHREAD="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True", "True"]
    env["RSTHREAD"] = "0"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert r.stdout.split() == ["False", "False", "False"], r.stderr


def test_env_var_hook_is_quiet_in_subinterpreters():
    # A subinterpreter runs `site` too; rsthread cannot load there, and the
    # hook must leave it on stock threading without a word.
    _testcapi = pytest.importorskip("_testcapi")
    code = (
        "import _testcapi, sys\n"
        "r = _testcapi.run_in_subinterp('import threading')\n"
        "import rsthread\n"
        "print(r, rsthread.installed())\n"
    )
    env = dict(os.environ, RSTHREAD="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "True"]
    assert r.stderr == ""


def test_env_var_hook_warns_once_when_rsthread_cannot_load(tmp_path):
    # What an unsupported interpreter sees: `import rsthread` raises
    # ImportError (here a stand-in package earlier on sys.path raises it).
    fake = tmp_path / "rsthread"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('rsthread supports CPython 3.11 to 3.15, not 3.99')\n")
    code = (
        "import subprocess, sys, threading, _thread\n"
        "print(type(threading.Lock()).__module__, _thread.__name__)\n"
        "subprocess.run([sys.executable, '-c', 'import threading'])\n"
    )
    env = dict(os.environ, RSTHREAD="1", PYTHONPATH=str(tmp_path))
    env.pop("_RSTHREAD_WARNED", None)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["_thread", "_thread"]
    assert r.stderr == "rsthread: not installed, stock threading stays in place: " \
                       "rsthread supports CPython 3.11 to 3.15, not 3.99\n"
