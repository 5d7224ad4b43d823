"""End-to-end tests of hang diagnosis: on-demand dumps (API and signal), the
long-wait watchdog, leaked locks and snapshot(). Every scenario runs in a
subprocess with diagnostics enabled through ``RSTHREAD_DIAG`` (read at
``import rsthread``) or the ``python -m rsthread`` runner, with a timeout."""
from __future__ import annotations

import json
import re
import subprocess
import textwrap
from pathlib import Path

import pytest
from helpers import line_of, run_script

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

PRELUDE = "import rsthread; rsthread.install()\nimport threading, sys, os, time, signal, socket, json\n"


def run(*args, timeout: float = 15, **kw) -> subprocess.CompletedProcess:
    return run_script(*args, timeout=timeout, **kw)


# T1 waits for L1 held by T2, T2 waits for L2 held by T3, T3 sleeps.
CHAIN = PRELUDE + textwrap.dedent("""
    from rsthread import diagnostics
    L1 = threading.Lock()
    L2 = threading.Lock()
    has_l2, has_l1, go = threading.Event(), threading.Event(), threading.Event()
    def t3():
        with L2:
            has_l2.set()
            time.sleep(2)
    def t2():
        has_l2.wait()
        with L1:
            has_l1.set()
            with L2:
                pass
    def t1():
        has_l1.wait()
        with L1:
            pass
    ts = [threading.Thread(target=f, name=f.__name__.upper()) for f in (t3, t2, t1)]
    for t in ts:
        t.start()
    time.sleep(0.5)
    WHAT
    for t in ts:
        t.join()
    print("DONE")
""")


def test_dump_chain_of_three(tmp_path):
    code = CHAIN.replace("WHAT", "diagnostics.dump(sys.stdout)")
    r = run(code, diag="dump-signal=SIGUSR1", tmp_path=tmp_path)
    assert r.returncode == 0 and "DONE" in r.stdout, r.stderr
    out = r.stdout
    l1, l2 = line_of(code, "L1 = "), line_of(code, "L2 = ")
    sleep = line_of(code, "time.sleep(2)")
    assert re.search(
        rf"'T1' \(for [\d.]+m?s\) waits for Lock #\d+ created at scenario.py:{l1} in <module> held by 'T2', "
        rf"which waits for Lock #\d+ created at scenario.py:{l2} in <module> held by 'T3', "
        rf"which is running at scenario.py:{sleep} in t3: time.sleep\(2\)", out), out
    # T2's chain is the tail of T1's: shown once.
    assert out.count("wait chains:") == 1 and out.count("(running)") == 1, out
    # Per thread: WAITING ... held by, holds ... acquired at, traceback.
    assert re.search(r"'T1' ident=0x[0-9a-f]+ native_id=\d+\n  WAITING for Lock #\d+ created at "
                     rf"scenario.py:{l1} in <module>, held by 'T2', for [\d.]+m?s\n", out), out
    assert f"acquired at scenario.py:{line_of(code, '    with L1:')} in t2, for" in out
    assert f"acquired at scenario.py:{line_of(code, '    with L2:')} in t3, for" in out
    assert f'line {sleep}, in t3\n' in out
    assert "'T3' ident=" in out and "RUNNABLE" in out
    # Without diagnostics: tracebacks only, and a hint.
    r = run(code, tmp_path=tmp_path)
    assert "DONE" in r.stdout and f'line {sleep}, in t3' in r.stdout
    assert "diagnostics are off" in r.stdout


SIGNAL_MAIN = PRELUDE + textwrap.dedent("""
    lock = threading.Lock()
    taken = threading.Event()
    def holder():
        with lock:
            taken.set()
            time.sleep(1.5)
    h = threading.Thread(target=holder, name="holder")
    h.start()
    taken.wait()
    threading.Timer(0.4, os.kill, (os.getpid(), signal.SIGUSR1)).start()
    MODE = sys.argv[1]
    if MODE == "acquire":
        lock.acquire()  # blocked here when the signal arrives
        lock.release()
    elif MODE == "join":
        h.join()  # blocked here when the signal arrives
    else:
        time.sleep(1)  # blocked here when the signal arrives
    h.join()
    print("DONE", MODE)
""")


@pytest.mark.parametrize("mode", ["acquire", "join", "sleep"])
def test_dump_by_signal_while_main_blocked(tmp_path, mode):
    r = run(SIGNAL_MAIN, mode, diag="dump-signal=SIGUSR1", tmp_path=tmp_path)
    assert r.returncode == 0 and f"DONE {mode}" in r.stdout, r.stderr
    err = r.stderr
    assert err.count("rsthread: thread dump") == 1, err
    main = err[err.index("'MainThread' ident="):]
    main = main[:main.index("\n\n")]
    blocked_line = next(i for i, ln in enumerate(SIGNAL_MAIN.splitlines(), 1)
                        if "blocked here" in ln and (mode in ln or (mode == "sleep" and "sleep" in ln)))
    assert f"line {blocked_line}, in <module>" in main, main
    if mode == "acquire":
        assert re.search(r"WAITING for Lock #\d+ created at scenario.py:\d+ in <module>, held by 'holder', for", main)
        assert "'MainThread' (for" in err and "held by 'holder', which is running at scenario.py:" in err
    elif mode == "join":
        assert "WAITING for thread sentinel" in main and "held by 'holder'" in main
        assert "'MainThread' (for" in err and "waits for thread 'holder' to end (join)" in err
    else:
        assert "RUNNABLE" in main
    assert "holds Lock #" in err and "in holder, for" in err


WATCHDOG = PRELUDE + textwrap.dedent("""
    lock = threading.Lock()
    taken = threading.Event()
    a, b = socket.socketpair()
    MODE = sys.argv[1]
    def holder():
        with lock:
            taken.set()
            if MODE == "sleep":
                time.sleep(2.5)
            else:
                data = b.recv(16)  # blocks until main sends
    def waiter():
        taken.wait()
        with lock:
            pass
    h = threading.Thread(target=holder, name="holder")
    h.start()
    w1 = threading.Thread(target=waiter, name="waiter-1")
    w1.start()
    time.sleep(1.0)
    w2 = threading.Thread(target=waiter, name="waiter-2")  # piles up later
    w2.start()
    if MODE == "socket":
        time.sleep(1.5)
        a.send(b"x")
    for t in (h, w1, w2):
        t.join()
    print("DONE")
""")


@pytest.mark.parametrize("mode", ["sleep", "socket"])
def test_watchdog_reports_once_per_episode(tmp_path, mode):
    r = run(WATCHDOG, mode, diag="hang=0.5", tmp_path=tmp_path)
    assert r.returncode == 0 and "DONE" in r.stdout, r.stderr
    err = r.stderr
    assert err.count("rsthread: thread dump") == 1, err  # one episode: one dump
    assert err.count("rsthread: thread 'waiter-1' has been waiting") == 1, err
    assert "(hang_timeout=0.5s)" in err
    where = "time.sleep(2.5)" if mode == "sleep" else "data = b.recv(16)"
    line = line_of(WATCHDOG, where)
    assert ("'waiter-1' (for " in err and "held by 'holder', which is running at "
            f"scenario.py:{line} in holder: {where}" in err), err
    assert f'line {line}, in holder\n' in err  # the holder's traceback
    # The second waiter, stuck behind the same holder, is only mentioned.
    assert err.count("rsthread: thread 'waiter-2' has been waiting") == 1, err
    assert "(reported above)" in err
    assert "holds Lock #" in err and f"acquired at scenario.py:{line_of(WATCHDOG, '    with lock:')} in holder" in err
    # The main thread's join and Condition/Event waits are never reported.
    assert "'MainThread' has been waiting" not in err


def test_watchdog_ignores_joins_and_condition_waits(tmp_path):
    code = PRELUDE + textwrap.dedent("""
        import queue
        q = queue.Queue()
        ev = threading.Event()
        def idle():
            q.get()
            ev.wait()
        t = threading.Thread(target=idle, name="idle")
        t.start()
        time.sleep(1.2)
        q.put(1)
        ev.set()
        t.join()
        print("DONE")
    """)
    r = run(code, diag="hang=0.3", tmp_path=tmp_path)
    assert r.returncode == 0 and "DONE" in r.stdout, r.stderr
    assert "rsthread:" not in r.stderr, r.stderr


def test_runner_hang_timeout_with_deadlock_cycle(tmp_path):
    code = PRELUDE + textwrap.dedent("""
        a, b = threading.Lock(), threading.Lock()
        both = threading.Barrier(2)
        def one():
            with a:
                both.wait()
                b.acquire(timeout=2)
        def two():
            with b:
                both.wait()
                a.acquire(timeout=2)
        ts = [threading.Thread(target=f, name=f.__name__) for f in (one, two)]
        for t in ts: t.start()
        for t in ts: t.join()
        print("DONE")
    """)
    r = run(code, runner=["--hang-timeout", "0.5"], tmp_path=tmp_path)
    assert "DONE" in r.stdout, r.stderr
    assert r.stderr.count("rsthread: thread dump") == 1, r.stderr
    assert "CYCLE (a wait with a timeout will break it)" in r.stderr
    assert ": a cycle, which a timeout will break" in r.stderr


def test_rlock_leaked_by_exiting_thread(tmp_path):
    code = PRELUDE + textwrap.dedent("""
        r = threading.RLock()
        def leaker():
            r.acquire()
            r.acquire()
        t = threading.Thread(target=leaker, name="leaker")
        t.start(); t.join()
        print("AFTER JOIN", file=sys.stderr, flush=True)
        time.sleep(0.1)
    """)
    r = run(code, diag="hang=5", tmp_path=tmp_path)  # leaks come with hang
    err = r.stderr
    assert "rsthread: thread 'leaker' (ident 0x" in err and "exited while holding RLock #" in err, err
    assert err.index("exited while holding") < err.index("AFTER JOIN")  # at once, not at exit
    assert f"created at scenario.py:{line_of(code, 'RLock()')} in <module>" in err
    assert f"acquired at scenario.py:{line_of(code, 'r.acquire()')} in leaker, depth 2" in err
    assert err.count("rsthread:") == 1, err


def test_plain_lock_leaked_at_exit(tmp_path):
    code = PRELUDE + textwrap.dedent("""
        lk = threading.Lock()
        def leaker():
            lk.acquire()
        t = threading.Thread(target=leaker, name="leaker")
        t.start(); t.join()
        print("END OF MAIN", file=sys.stderr, flush=True)
    """)
    r = run(code, runner=["--dump-signal", "SIGUSR1"], tmp_path=tmp_path)  # leaks come with dump-signal
    err = r.stderr
    assert r.returncode == 0, err
    assert err.count("rsthread: lock leaked:") == 1, err
    assert err.index("END OF MAIN") < err.index("rsthread: lock leaked:")  # at exit
    assert ("Lock #" in err and f"created at scenario.py:{line_of(code, 'lk = ')} in <module> is still held at exit; "
            f"thread 'leaker' (ident 0x") in err, err
    assert f"acquired it at scenario.py:{line_of(code, 'lk.acquire()')} in leaker" in err
    # Off unless asked for.
    r = run(code, diag="deadlock=warn,lock-order", tmp_path=tmp_path)
    assert "rsthread:" not in r.stderr, r.stderr


def test_no_false_leaks_for_handoff_patterns(tmp_path):
    code = PRELUDE + textwrap.dedent("""
        import queue
        from concurrent.futures import ThreadPoolExecutor
        # Condition: a wait that times out (its waiter lock stays held), and one notified.
        cond = threading.Condition()
        def cwait(t):
            with cond:
                cond.wait(t)
        for t in (0.05, 5):
            th = threading.Thread(target=cwait, args=(t,)); th.start()
            if t == 5:
                time.sleep(0.1)
                with cond:
                    cond.notify_all()
            th.join()
        # Event
        ev = threading.Event()
        th = threading.Thread(target=ev.wait); th.start(); time.sleep(0.05); ev.set(); th.join()
        th = threading.Thread(target=ev.wait, args=(0.01,)); th.start(); th.join()
        # Semaphore acquired in one thread, released in another
        sem = threading.Semaphore(1)
        th = threading.Thread(target=sem.acquire); th.start(); th.join()
        th = threading.Thread(target=sem.release); th.start(); th.join()
        bsem = threading.BoundedSemaphore(2)
        th = threading.Thread(target=bsem.acquire); th.start(); th.join(); bsem.release()
        # Queue
        q = queue.Queue(maxsize=1)
        def producer():
            for i in range(20): q.put(i)
        def consumer():
            for i in range(20): q.get(); q.task_done()
        ths = [threading.Thread(target=producer), threading.Thread(target=consumer)]
        for th in ths: th.start()
        q.join()
        for th in ths: th.join()
        th = threading.Thread(target=q.get, kwargs={"timeout": 0.01})
        th.start(); th.join()
        # A plain lock acquired in one thread, released later by another.
        handoff = threading.Lock()
        th = threading.Thread(target=handoff.acquire); th.start(); th.join()
        time.sleep(0.05)
        handoff.release()
        # A lock used as a signal: acquired by a thread that exits, released by others before.
        sig = threading.Lock(); sig.acquire()
        th = threading.Thread(target=sig.release); th.start(); th.join()
        th = threading.Thread(target=sig.acquire); th.start(); th.join()
        # Barrier, Timer, thread pool, join with timeout
        bar = threading.Barrier(3)
        ths = [threading.Thread(target=bar.wait) for _ in range(3)]
        for th in ths: th.start()
        for th in ths: th.join()
        tm = threading.Timer(0.01, lambda: None); tm.start(); tm.join()
        with ThreadPoolExecutor(4) as ex:
            assert sum(ex.map(abs, range(-50, 50))) == 2500
        th = threading.Thread(target=time.sleep, args=(0.1,)); th.start(); th.join(0.01); th.join()
        # An RLock released completely before exit, also via a Condition.
        rl = threading.RLock()
        rc = threading.Condition(rl)
        def rwork():
            with rl:
                with rl:
                    with rc:
                        rc.wait(0.01)
        th = threading.Thread(target=rwork); th.start(); th.join()
        print("DONE")
    """)
    r = run(code, diag="leaks,hang=5,dump-signal=SIGUSR1", tmp_path=tmp_path)
    assert r.returncode == 0 and "DONE" in r.stdout, r.stderr
    assert "rsthread:" not in r.stderr, r.stderr


def test_snapshot_is_json_serialisable(tmp_path):
    code = CHAIN.replace("WHAT", "snap = diagnostics.snapshot(); print('SNAP', json.dumps(snap))")
    r = run(code, diag="hang=10", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("SNAP "))
    snap = json.loads(line[5:])
    assert set(snap) == {"threads", "wait_chains"}
    by = {t["name"]: t for t in snap["threads"]}
    assert {"MainThread", "T1", "T2", "T3"} <= set(by), by.keys()
    for t in snap["threads"]:
        assert {"ident", "native_id", "name", "held", "waiting", "stack"} <= set(t), t
        assert isinstance(t["ident"], int) and isinstance(t["native_id"], int)
    t1, t2, t3 = by["T1"], by["T2"], by["T3"]
    assert t1["waiting"]["holder"]["name"] == "T2" and t2["waiting"]["holder"]["name"] == "T3"
    assert t3["waiting"] is None
    assert t1["waiting"]["lock"]["kind"] == "Lock" and t1["waiting"]["waited"] > 0
    assert t1["waiting"]["lock"]["site"].endswith(f"scenario.py:{line_of(CHAIN, 'L1 = ')} in <module>")
    held = [h for h in t2["held"] if not h["lock"]["site"].startswith("<thread sentinel>")]
    assert [h["lock"]["id"] for h in held] == [t1["waiting"]["lock"]["id"]]
    assert held[0]["held_for"] > 0 and held[0]["depth"] == 1 and "in t2" in held[0]["acquire_site"]
    assert any(f"scenario.py:{line_of(CHAIN, 'time.sleep(2)')} in t3" in s for s in t3["stack"])
    chain = next(c for c in snap["wait_chains"] if c["links"][0]["name"] == "T1")
    assert [link["name"] for link in chain["links"]] == ["T1", "T2"]
    assert chain["end"]["kind"] == "running" and chain["end"]["thread"]["name"] == "T3"


def test_hung_server_example(tmp_path):
    r = run(runner=["--hang-timeout", "1"], script=EXAMPLES / "hung_server.py", tmp_path=tmp_path, timeout=15)
    assert r.returncode == 0 and "done: 5 requests finished" in r.stdout, (r.stdout, r.stderr)
    err = r.stderr
    assert err.count("rsthread: thread dump") == 1, err
    m = re.search(r"wait for Lock #\d+ created at \S*hung_server.py:\d+ in __init__ held by '(worker-\d)', "
                  r"which is running at \S*hung_server.py:\d+ in query: reply = self._sock.recv\(4096\)", err)
    assert m, err
    holder = m.group(1)
    assert f"'{holder}' ident=" in err and "holds Lock #" in err
    assert "rsthread: lock leaked" not in err and "exited while holding" not in err
