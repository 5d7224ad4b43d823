"""End-to-end tests of rsthread's diagnostics (deadlocks, lock order, profile,
trace, dump). Every scenario runs in a subprocess, with diagnostics enabled
through ``RSTHREAD_DIAG`` (read when ``rsthread`` is imported, before
``threading``) or the ``python -m rsthread`` runner, and a timeout.

The trace is checked against the Chrome trace-event format field by field
here; test_perfetto.py checks both export formats with Perfetto's official
protobuf schema (Perfetto's trace processor itself needs a binary download,
which is not available offline)."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from helpers import MODULE_LISTCOMP, line_of
from helpers import run_script as run

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
FORKS_LINE = line_of((EXAMPLES / "dining_philosophers.py").read_text(), "forks = [")

PRELUDE = "import rsthread; rsthread.install()\nimport threading, sys, os, time, signal\n"

# Cold locks (first use) held through `with`: owned holds, so a cycle through
# them is a definite deadlock even while other threads (main) still run.
CYCLE = PRELUDE + textwrap.dedent("""
    N = int(sys.argv[1])
    locks = [threading.Lock() for _ in range(N)]
    seated = threading.Barrier(N)
    caught = []

    def worker(i):
        mine, nxt = locks[i], locks[(i + 1) % N]
        try:
            with mine:  # the cycle
                seated.wait()
                with nxt:
                    pass
        except rsthread.DeadlockError as e:
            caught.append((threading.current_thread().name, e))

    ts = [threading.Thread(target=worker, args=(i,), name=f"W-{i}", daemon=True) for i in range(N)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=3)
    alive = [t.name for t in ts if t.is_alive()]
    print("ALIVE", alive)
    for name, e in caught:
        print("CAUGHT", name, isinstance(e, RuntimeError), len(e.report["threads"]),
              e.report["detected_by"] == next(t.ident for t in ts if t.name == name))
""")



def reports(stderr: str, what: str = "rsthread: deadlock detected") -> int:
    return stderr.count(what)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_deadlock_cycle_reported_with_threads_locks_and_tracebacks(tmp_path, n):
    r = run(CYCLE, str(n), diag="deadlock=warn", tmp_path=tmp_path)
    assert reports(r.stderr) == 1, r.stderr
    assert f"{n} threads, each waiting for a lock held by the next" in r.stderr
    for i in range(n):
        assert f"Thread 'W-{i}' (ident 0x" in r.stderr
    assert r.stderr.count("    waits for Lock #") == n
    assert r.stderr.count("    holds Lock #") == n
    assert f"created at scenario.py:{line_of(CYCLE, 'locks = [')} in {MODULE_LISTCOMP}" in r.stderr
    assert f"acquired at scenario.py:{line_of(CYCLE, 'with mine:  # the cycle')} in worker" in r.stderr
    assert r.stderr.count("Traceback (most recent call last):") == n
    # `with nxt:` at the top of every traceback
    assert r.stderr.count(f'line {line_of(CYCLE, "with nxt:")}, in worker\n') == n
    assert "ALIVE ['W-0'" in r.stdout  # warn: they stay stuck


def test_deadlock_raise_mode(tmp_path):
    r = run(CYCLE, "3", diag="deadlock=raise", tmp_path=tmp_path)
    assert "ALIVE []" in r.stdout, (r.stdout, r.stderr)
    caught = [line for line in r.stdout.splitlines() if line.startswith("CAUGHT")]
    assert len(caught) == 1, r.stdout
    _, name, is_runtime, nthreads, detected_here = caught[0].split()
    assert name.startswith("W-") and is_runtime == "True" and nthreads == "3" and detected_here == "True"
    assert reports(r.stderr) == 0  # raised, not printed


def test_deadlock_error_exported():
    import rsthread

    assert rsthread.DeadlockError is rsthread.diagnostics.DeadlockError
    assert issubclass(rsthread.DeadlockError, RuntimeError)
    e = rsthread.DeadlockError("x", {"threads": []})
    assert e.report == {"threads": []} and str(e) == "x"


def test_plain_acquire_cycle_reported_once_everyone_blocks(tmp_path):
    # Fresh locks held through acquire() (anyone may release them): reported
    # once main joins without a timeout ("every other thread is blocked").
    code = PRELUDE + textwrap.dedent("""
        signal.signal(signal.SIGALRM, lambda *a: (print("TIMEOUT", flush=True), os._exit(3)))
        signal.alarm(3)
        a, b = threading.Lock(), threading.Lock()
        bar = threading.Barrier(2)
        def w(x, y):
            x.acquire()
            bar.wait()
            y.acquire()
        t1 = threading.Thread(target=w, args=(a, b), name="first")
        t2 = threading.Thread(target=w, args=(b, a), name="second")
        t1.start(); t2.start()
        time.sleep(0.3)
        print("NOT YET", flush=True)
        t1.join()
    """)
    r = run(code, diag="deadlock=warn", tmp_path=tmp_path)
    assert r.returncode == 3 and "TIMEOUT" in r.stdout
    assert reports(r.stderr) == 1, r.stderr
    assert "every other thread is blocked too" in r.stderr
    assert "Thread 'first'" in r.stderr and "Thread 'second'" in r.stderr
    assert "Thread 'MainThread'" not in r.stderr, "the joiner is no part of the cycle"


def test_rlock_participates(tmp_path):
    code = PRELUDE + textwrap.dedent("""
        r = threading.RLock()
        m = threading.Lock()
        bar = threading.Barrier(2)
        def a():
            with r:
                with r:
                    bar.wait()
                    with m:
                        pass
        def b():
            with m:
                bar.wait()
                with r:
                    pass
        ts = [threading.Thread(target=f, name=f.__name__, daemon=True) for f in (a, b)]
        for t in ts: t.start()
        for t in ts: t.join(timeout=2)
    """)
    r = run(code, diag="deadlock=warn", tmp_path=tmp_path)
    assert reports(r.stderr) == 1, r.stderr
    assert "RLock #" in r.stderr and "depth 2" in r.stderr
    assert f"created at scenario.py:{line_of(code, 'r = threading.RLock()')} in <module>" in r.stderr


def test_join_deadlock(tmp_path):
    # main holds a lock and joins a thread that needs it.
    code = PRELUDE + textwrap.dedent("""
        signal.signal(signal.SIGALRM, lambda *a: (print("TIMEOUT", flush=True), os._exit(3)))
        signal.alarm(3)
        lock = threading.Lock()
        def child():
            with lock:
                pass
        with lock:
            t = threading.Thread(target=child, name="child")
            t.start()
            t.join()
    """)
    r = run(code, diag="deadlock=warn", tmp_path=tmp_path)
    assert r.returncode == 3
    assert reports(r.stderr) == 1, r.stderr
    assert "Thread 'MainThread'" in r.stderr and "Thread 'child'" in r.stderr
    assert "waits for thread sentinel" in r.stderr
    assert "in <module>\n" in r.stderr and "t.join()" in r.stderr


def test_join_deadlock_raise_in_joiner(tmp_path):
    code = PRELUDE + textwrap.dedent("""
        lock = threading.Lock()
        def child():
            with lock:
                pass
        with lock:
            t = threading.Thread(target=child, name="child", daemon=True)
            t.start()
            time.sleep(0.2)  # child blocks first: main's join closes the cycle
            try:
                t.join()
            except rsthread.DeadlockError as e:
                print("JOIN RAISED", [th["name"] for th in e.report["threads"]])
        t.join(2)
        print("DONE", t.is_alive())
    """)
    r = run(code, diag="deadlock=raise", tmp_path=tmp_path)
    assert "JOIN RAISED" in r.stdout and "'child'" in r.stdout, (r.stdout, r.stderr)
    assert "DONE False" in r.stdout


QUIET = PRELUDE + textwrap.dedent("""
    import queue
    from concurrent.futures import ThreadPoolExecutor

    def cond_pingpong():
        cond = threading.Condition()
        box = []
        def producer():
            for i in range(200):
                with cond:
                    box.append(i)
                    cond.notify()
        def consumer():
            got = 0
            while got < 200:
                with cond:
                    cond.wait_for(lambda: box)
                    got += len(box)
                    box.clear()
        ts = [threading.Thread(target=producer), threading.Thread(target=consumer)]
        for t in ts: t.start()
        for t in ts: t.join()

    def events_and_semaphores():
        ev = threading.Event()
        sem = threading.Semaphore(2)
        bsem = threading.BoundedSemaphore(1)
        def w():
            ev.wait()
            for _ in range(50):
                with sem:
                    with bsem:
                        time.sleep(0)
        ts = [threading.Thread(target=w) for _ in range(4)]
        for t in ts: t.start()
        time.sleep(0.05)
        ev.set()
        for t in ts: t.join()

    def barrier():
        bar = threading.Barrier(4)
        def w():
            for _ in range(20):
                bar.wait()
        ts = [threading.Thread(target=w) for _ in range(4)]
        for t in ts: t.start()
        for t in ts: t.join()

    def queues():
        q = queue.Queue(maxsize=2)
        out = queue.Queue()
        def w():
            while (x := q.get()) is not None:
                out.put(x)
                q.task_done()
            q.task_done()
        ts = [threading.Thread(target=w) for _ in range(3)]
        for t in ts: t.start()
        for i in range(300):
            q.put(i)
        for _ in ts:
            q.put(None)
        q.join()
        for t in ts: t.join()
        assert out.qsize() == 300

    def pool():
        with ThreadPoolExecutor(max_workers=4) as ex:
            assert sum(ex.map(lambda x: x * 2, range(500))) == 249500

    def rlock_condition():
        cond = threading.Condition(threading.RLock())
        done = []
        def w():
            with cond:
                with cond:
                    cond.wait(timeout=0.01)
            done.append(1)
        ts = [threading.Thread(target=w) for _ in range(4)]
        for t in ts: t.start()
        for t in ts: t.join()

    def ordered_nesting():
        a, b = threading.Lock(), threading.Lock()
        def w():
            for _ in range(100):
                with a:
                    with b:
                        pass
        ts = [threading.Thread(target=w) for _ in range(3)]
        for t in ts: t.start()
        for t in ts: t.join()

    for _ in range(3):
        for f in (cond_pingpong, events_and_semaphores, barrier, queues, pool, rlock_condition, ordered_nesting):
            f()
    print("OK")
""")


def test_no_reports_for_correct_synchronization(tmp_path):
    r = run(QUIET, diag="deadlock=warn,lock-order", tmp_path=tmp_path, timeout=120)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr
    assert "rsthread:" not in r.stderr, r.stderr


runner_available = pytest.mark.skipif(not (ROOT / "python" / "rsthread" / "__main__.py").exists(),
                                      reason="python -m rsthread runner not present")


@runner_available
def test_lock_order_inversion_bank_transfer(tmp_path):
    r = run(runner=["--lock-order"], script=EXAMPLES / "bank_transfer.py", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert reports(r.stderr, "rsthread: lock-order inversion") == 1, r.stderr
    assert "bank_transfer.py:22 in __init__" in r.stderr  # creation site of the account locks
    assert r.stderr.count("in transfer") >= 4  # both acquisition sites of both paths
    assert "Thread 'transfer-1-to-2'" in r.stderr and "Thread 'transfer-2-to-1'" in r.stderr
    assert reports(r.stderr) == 0


@runner_available
def test_lock_order_ring_of_same_site_locks(tmp_path):
    # Five forks made in one list comprehension, each philosopher takes its
    # left then its right: a ring of five objects of one class.
    r = run(runner=["--lock-order"], script=EXAMPLES / "dining_philosophers.py", tmp_path=tmp_path)
    assert reports(r.stderr, "rsthread: lock-order inversion") == 1, r.stderr
    assert "5 locks created at the same site were taken in a cycle" in r.stderr, r.stderr
    assert r.stderr.count(f"dining_philosophers.py:{FORKS_LINE} in {MODULE_LISTCOMP}") == 5
    assert all(f"Thread 'philosopher-{i}'" in r.stderr for i in range(5)), r.stderr


@runner_available
def test_no_lock_order_report_for_consistent_order(tmp_path):
    r = run("", "--ordered", runner=["--lock-order"], script=EXAMPLES / "bank_transfer.py", tmp_path=tmp_path)
    assert r.returncode == 0 and "ordered=True" in r.stdout
    assert "rsthread:" not in r.stderr, r.stderr


def test_lock_order_inversion_between_sites(tmp_path):
    code = PRELUDE + textwrap.dedent("""
        a = threading.Lock()
        b = threading.Lock()
        def f():
            with a:
                with b:
                    pass
        def g():
            with b:
                with a:
                    pass
        for fn in (f, g):
            t = threading.Thread(target=fn); t.start(); t.join()
    """)
    r = run(code, diag="lock-order", tmp_path=tmp_path)
    assert reports(r.stderr, "rsthread: lock-order inversion") == 1, r.stderr
    assert f"scenario.py:{line_of(code, 'a = threading')} in <module>" in r.stderr
    assert f"scenario.py:{line_of(code, 'b = threading')} in <module>" in r.stderr


@runner_available
def test_profile_table_at_exit(tmp_path):
    r = run(runner=["--profile"], script=EXAMPLES / "pipeline.py", tmp_path=tmp_path)
    assert r.returncode == 0 and "processed 200 items" in r.stdout, r.stderr
    lines = r.stderr.splitlines()
    i = lines.index("rsthread: lock contention profile (sorted by total wait)")
    header = lines[i + 1]
    for col in ("lock site", "acquisitions", "contended", "total wait", "max wait", "total hold", "max hold",
                "top waiting sites"):
        assert col in header
    rows = [line for line in lines[i + 3:] if line.startswith("  ")]
    assert any("pipeline.py:18 in <module>" in row and "pipeline.py:32 in worker" in row for row in rows), rows
    shared = next(row for row in rows if "pipeline.py:18 in <module>" in row)
    assert " 200 " in shared


def test_stats_api(tmp_path):
    code = PRELUDE + textwrap.dedent("""
        from rsthread import diagnostics
        lock = threading.Lock()
        def w():
            for _ in range(100):
                with lock:
                    time.sleep(0.0001)
        ts = [threading.Thread(target=w) for _ in range(3)]
        for t in ts: t.start()
        for t in ts: t.join()
        s = diagnostics.stats()
        row = next(r for r in s if r["site"].endswith("scenario.py:5 in <module>"))
        assert row["acquisitions"] == 300 and row["kind"] == "Lock", row
        assert row["holds"] == 300 and row["total_hold"] > 0
        assert row["top_sites"][0]["site"].endswith("scenario.py:8 in w")
        assert [r["total_wait"] for r in s] == sorted((r["total_wait"] for r in s), reverse=True)
        diagnostics.reset_stats()
        assert all(r["acquisitions"] == 0 for r in diagnostics.stats())
        print("OK")
    """)
    r = run(code, diag="profile", tmp_path=tmp_path)
    assert "OK" in r.stdout, r.stderr


def check_chrome_trace(doc: dict) -> list[dict]:
    """Strict Chrome trace-event (JSON object format) checks."""
    assert isinstance(doc, dict) and isinstance(doc["traceEvents"], list)
    assert doc.get("displayTimeUnit", "ms") in ("ms", "ns")
    events = doc["traceEvents"]
    assert events
    for e in events:
        assert isinstance(e["name"], str) and e["name"]
        assert e["ph"] in ("X", "B", "E", "i", "I", "M", "C", "s", "t", "f")
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        if e["ph"] == "M":
            assert e["name"] in ("process_name", "thread_name", "process_sort_index", "thread_sort_index")
            assert isinstance(e["args"]["name"] if "name" in e["name"] else e["args"]["sort_index"], (str, int))
            continue
        assert isinstance(e["ts"], (int, float)) and e["ts"] >= 0
        if e["ph"] == "X":
            assert isinstance(e["dur"], (int, float)) and e["dur"] >= 0
        if e["ph"] in ("i", "I"):
            assert e.get("s", "t") in ("g", "p", "t")
        if "args" in e:
            assert isinstance(e["args"], dict)
    return events


@runner_available
def test_trace_file(tmp_path):
    out = tmp_path / "trace.json"
    r = run(runner=["--trace", str(out)], script=EXAMPLES / "pipeline.py", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"rsthread: trace written to {out} (open in https://ui.perfetto.dev)" in r.stderr
    events = check_chrome_trace(json.loads(out.read_text()))
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    for n in ("MainThread", "producer", "consumer", "worker-0", "worker-3"):
        assert any(x.startswith(n) for x in names), names
    slices = [e for e in events if e["ph"] == "X"]
    assert any(e["name"].startswith("hold Lock") and "pipeline.py:18" in e["name"] for e in slices)
    assert any(e["name"].startswith("wait Lock") for e in slices)
    pids = {e["pid"] for e in events}
    assert len(pids) == 1


def test_trace_records_deadlock_marker(tmp_path):
    out = tmp_path / "dl.json"
    r = run(CYCLE, "2", diag=f"deadlock=warn,trace={out}", tmp_path=tmp_path)
    assert reports(r.stderr) == 1
    events = check_chrome_trace(json.loads(out.read_text()))
    assert any(e["ph"] in ("i", "I") and "report" in e.get("args", {}) for e in events)


def test_snapshot_and_dump(tmp_path):
    code = PRELUDE + textwrap.dedent("""
        from rsthread import diagnostics
        import io
        lock = threading.Lock()
        held = threading.Event()
        def holder():
            with lock:
                held.set()
                time.sleep(0.5)
        def waiter():
            held.wait()
            with lock:
                pass
        ts = [threading.Thread(target=holder, name="holder"), threading.Thread(target=waiter, name="waiter")]
        for t in ts: t.start()
        held.wait(); time.sleep(0.1)
        snap = diagnostics.snapshot()
        by = {t["name"]: t for t in snap["threads"]}
        w = by["waiter"]["waiting"]
        assert w["holder"]["name"] == "holder" and w["lock"]["site"].endswith("scenario.py:6 in <module>"), w
        assert any(h["lock"]["id"] == w["lock"]["id"] for h in by["holder"]["held"])
        buf = io.StringIO()
        diagnostics.dump(file=buf)
        text = buf.getvalue()
        print(text)
        for t in ts: t.join()
    """)
    r = run(code, diag="deadlock=warn", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "rsthread: thread dump" in out
    assert "'waiter' ident=0x" in out and "native_id=" in out
    assert "WAITING for Lock #" in out and "held by 'holder'" in out
    assert "holds Lock #" in out and f"acquired at scenario.py:{line_of(code, '    with lock:')} in holder" in out, out
    assert "wait chains:" in out and "'waiter' -> Lock #" in out and "'holder' (running)" in out
    assert f"line {line_of(code, 'time.sleep(0.5)')}, in holder" in out  # holder's traceback


def test_dump_labels_cycles(tmp_path):
    code = CYCLE.replace('print("ALIVE", alive)', 'print("ALIVE", alive); rsthread.diagnostics.dump(sys.stdout)')
    r = run(code, "2", diag="deadlock=warn", tmp_path=tmp_path)
    assert "DEADLOCK (cycle)" in r.stdout, r.stdout


def test_hang_watchdog_and_dump_signal(tmp_path):
    code = PRELUDE + textwrap.dedent("""
        from rsthread import diagnostics
        diagnostics.configure(hang_timeout=0.3, dump_signal="SIGUSR1")
        lock = threading.Lock()
        lock.acquire()
        t = threading.Thread(target=lambda: lock.acquire(timeout=1.5), name="slow")
        t.start()
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGUSR1)
        t.join()
        print("DONE")
    """)
    r = run(code, tmp_path=tmp_path)
    assert "DONE" in r.stdout, r.stderr
    assert r.stderr.count("rsthread: thread dump") >= 2, r.stderr  # signal + watchdog
    assert "rsthread: thread 'slow' has been waiting" in r.stderr
    assert r.stderr.count("thread 'slow' has been waiting") == 1  # once per wait
    assert "CYCLE (a wait with a timeout will break it)" in r.stderr


def test_env_parsing_and_bad_value(tmp_path):
    r = run(PRELUDE + "from rsthread import diagnostics\nprint(diagnostics.enabled())\n",
            diag="deadlock=raise,lock-order,profile,trace=t.json,hang=5", tmp_path=tmp_path)
    assert "'deadlock': 'raise'" in r.stdout and "'lock_order': True" in r.stdout
    assert "'trace': 't.json'" in r.stdout and "'hang_timeout': 5.0" in r.stdout
    r = run(PRELUDE + "print('RAN')\n", diag="bogus", tmp_path=tmp_path)
    assert "RAN" in r.stdout and "rsthread: ignoring RSTHREAD_DIAG='bogus'" in r.stderr


def test_env_reaches_subprocesses(tmp_path):
    child = tmp_path / "child.py"
    child.write_text(CYCLE)
    code = ("import subprocess, sys\n"
            f"subprocess.run([sys.executable, {str(child)!r}, '2'], check=False)\n")
    r = run(code, diag="deadlock=warn", tmp_path=tmp_path)
    assert reports(r.stderr) == 1, r.stderr


def test_disabled_by_default(tmp_path):
    r = run(CYCLE, "2", tmp_path=tmp_path)
    assert "rsthread:" not in r.stderr
    r = run(PRELUDE + "import rsthread._diag as d\nprint(d.flags())\n", tmp_path=tmp_path)
    assert r.stdout.strip() == "0"


@runner_available
def test_runner_dining_philosophers_warn(tmp_path):
    r = run(runner=["--deadlock", "warn"], script=EXAMPLES / "dining_philosophers.py", tmp_path=tmp_path)
    assert r.returncode == 1 and "philosophers are stuck" in r.stdout
    assert reports(r.stderr) == 1, r.stderr
    assert "5 threads, each waiting for a lock held by the next" in r.stderr
    for i in range(5):
        assert f"Thread 'philosopher-{i}'" in r.stderr
    assert r.stderr.count("with right:") == 5


@runner_available
def test_runner_dining_philosophers_raise(tmp_path):
    r = run(runner=["--deadlock", "raise"], script=EXAMPLES / "dining_philosophers.py", tmp_path=tmp_path)
    assert r.returncode == 0 and "everybody ate" in r.stdout, (r.stdout, r.stderr)
    assert r.stdout.count("gives up (DeadlockError)") == 1


@runner_available
def test_runner_profile_and_trace(tmp_path):
    out = tmp_path / "p.json"
    r = run(runner=["--profile", "--trace", str(out), "--lock-order"], script=EXAMPLES / "pipeline.py",
            tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "rsthread: lock contention profile" in r.stderr
    assert "lock-order inversion" not in r.stderr
    check_chrome_trace(json.loads(out.read_text()))


def test_rlock_leak_reported_on_request(tmp_path):
    code = PRELUDE + textwrap.dedent("""
        r = threading.RLock()
        t = threading.Thread(target=r.acquire, name="leaker")
        t.start(); t.join()
    """)
    r = run(code, diag="leaks", tmp_path=tmp_path)
    assert "rsthread: thread 'leaker'" in r.stderr and "exited while holding RLock #" in r.stderr, r.stderr
    r = run(code, diag="deadlock=warn", tmp_path=tmp_path)
    assert "rsthread:" not in r.stderr
