"""The deadlock rule on cold locks (issue 15): a cycle of holds taken through
``with`` (or RLocks) is reported the first time, whatever the other threads
do; a cycle through a plain ``acquire()`` hold waits for everybody else to
block; the error reaches a thread of the cycle; correct programs whose plain
locks are released by other threads get no report.

Every scenario runs in a subprocess with ``RSTHREAD_DIAG`` and an alarm that
ends it (status 3) if it hangs. No lock is warmed up before the bug."""
from __future__ import annotations

import textwrap

import pytest
from helpers import run_script as run

PRELUDE = ("import rsthread; rsthread.install()\nimport threading, sys, os, time, signal\n"
           "signal.signal(signal.SIGALRM, lambda *a: (print('TIMEOUT', flush=True), os._exit(3)))\n"
           "signal.alarm(int(os.environ.get('ALARM', '5')))\n")

REPORT = "rsthread: deadlock detected"

# The textbook deadlock, cold; sys.argv[1] says what the main thread does
# meanwhile, sys.argv[2] whether a heartbeat thread keeps running.
TEXTBOOK = PRELUDE + textwrap.dedent("""
    a, b = threading.Lock(), threading.Lock()
    both = threading.Barrier(2)
    caught = []
    def t1():
        try:
            with a:
                both.wait()
                b.acquire()
                b.release()
        except rsthread.DeadlockError as e:
            caught.append(("t1", e))
    def t2():
        try:
            with b:
                both.wait()
                a.acquire()
                a.release()
        except rsthread.DeadlockError as e:
            caught.append(("t2", e))
    stop = threading.Event()
    def heartbeat():
        n = 0
        while not stop.is_set():
            n += 1
            time.sleep(0.01)
    if sys.argv[2] == "heartbeat":
        threading.Thread(target=heartbeat, name="heartbeat", daemon=True).start()
    ts = [threading.Thread(target=f, name=f.__name__, daemon=True) for f in (t1, t2)]
    for t in ts:
        t.start()
    main_raised = False
    try:
        if sys.argv[1] == "poll":
            for _ in range(10):
                for t in ts:
                    t.join(0.2)
        elif sys.argv[1] == "sleep":
            time.sleep(2)
    except rsthread.DeadlockError:
        main_raised = True
    stop.set()
    print("ALIVE", sorted(t.name for t in ts if t.is_alive()))
    print("CAUGHT", sorted(n for n, _ in caught), "MAIN", main_raised)
    sys.stdout.flush()
    os._exit(0)
""")


@pytest.mark.parametrize("main", ["poll", "sleep"])
@pytest.mark.parametrize("extra", ["heartbeat", "alone"])
def test_cold_with_cycle_warned_whatever_main_does(tmp_path, main, extra):
    r = run(TEXTBOOK, main, extra, diag="deadlock=warn", tmp_path=tmp_path)
    assert "TIMEOUT" not in r.stdout, (r.stdout, r.stderr)
    assert r.stderr.count(REPORT) == 1, r.stderr
    assert "only these threads could release these locks" in r.stderr
    assert "Thread 't1'" in r.stderr and "Thread 't2'" in r.stderr
    assert r.stderr.count("Traceback (most recent call last):") == 2
    assert "ALIVE ['t1', 't2']" in r.stdout  # warn: they stay stuck


@pytest.mark.parametrize("main", ["poll", "sleep"])
@pytest.mark.parametrize("extra", ["heartbeat", "alone"])
def test_cold_with_cycle_raised_in_a_thread_of_the_cycle(tmp_path, main, extra):
    r = run(TEXTBOOK, main, extra, diag="deadlock=raise", tmp_path=tmp_path)
    assert "TIMEOUT" not in r.stdout, (r.stdout, r.stderr)
    caught = next(line for line in r.stdout.splitlines() if line.startswith("CAUGHT"))
    assert caught in ("CAUGHT ['t1'] MAIN False", "CAUGHT ['t2'] MAIN False"), r.stdout
    assert "ALIVE []" in r.stdout, r.stdout
    assert r.stderr.count(REPORT) == 0, r.stderr  # raised, not printed


def test_cold_with_cycle_under_the_runner(tmp_path):
    r = run(TEXTBOOK, "poll", "heartbeat", runner=["--deadlock", "raise"], tmp_path=tmp_path)
    assert "MAIN False" in r.stdout and "ALIVE []" in r.stdout, (r.stdout, r.stderr)
    assert "CAUGHT ['t1']" in r.stdout or "CAUGHT ['t2']" in r.stdout


SELF = PRELUDE + textwrap.dedent("""
    lock = threading.Lock()
    stop = threading.Event()
    def heartbeat():
        while not stop.is_set():
            time.sleep(0.01)
    def worker():
        try:
            with lock:
                lock.acquire()  # re-acquires its own lock: never returns
        except rsthread.DeadlockError as e:
            print("WORKER RAISED", len(e.report["threads"]), flush=True)
    threading.Thread(target=heartbeat, daemon=True).start()
    t = threading.Thread(target=worker, name="worker", daemon=True)
    t.start()
    for _ in range(10):
        t.join(0.1)
    stop.set()
    print("ALIVE", t.is_alive(), flush=True)
    os._exit(0)
""")


def test_self_deadlock_through_with_despite_heartbeat(tmp_path):
    r = run(SELF, diag="deadlock=warn", tmp_path=tmp_path)
    assert r.stderr.count(REPORT) == 1, r.stderr
    assert "a thread waits for a lock it holds itself" in r.stderr
    assert "ALIVE True" in r.stdout
    r = run(SELF, diag="deadlock=raise", tmp_path=tmp_path)
    assert "WORKER RAISED 1" in r.stdout and "ALIVE False" in r.stdout, (r.stdout, r.stderr)


# A cycle through plain acquire() holds, with main in an untimed join: the
# joiner (a bystander) completes the picture, the error goes to the cycle.
PLAIN_JOIN = PRELUDE + textwrap.dedent("""
    a, b = threading.Lock(), threading.Lock()
    both = threading.Barrier(2)
    def w(x, y, name):
        x.acquire()
        try:
            both.wait()
            y.acquire()
            y.release()
            print("GOT", name, flush=True)
        except rsthread.DeadlockError:
            print("RAISED IN", name, flush=True)
        finally:
            x.release()
    ts = [threading.Thread(target=w, args=(a, b, "first"), name="first"),
          threading.Thread(target=w, args=(b, a, "second"), name="second")]
    for t in ts:
        t.start()
    time.sleep(0.3)
    try:
        for t in ts:
            t.join()
        print("MAIN JOINED", flush=True)
    except rsthread.DeadlockError:
        print("RAISED IN main", flush=True)
""")


def test_error_reaches_the_cycle_not_the_joining_bystander(tmp_path):
    r = run(PLAIN_JOIN, diag="deadlock=raise", tmp_path=tmp_path)
    assert "TIMEOUT" not in r.stdout, (r.stdout, r.stderr)
    assert "RAISED IN main" not in r.stdout
    assert r.stdout.count("RAISED IN") == 1 and r.stdout.count("GOT") == 1, r.stdout
    assert "MAIN JOINED" in r.stdout


EVENT_BYSTANDER = PRELUDE + textwrap.dedent("""
    a, b = threading.Lock(), threading.Lock()
    both = threading.Barrier(2)
    ev = threading.Event()
    out = []
    def w(x, y, name):
        x.acquire()
        try:
            both.wait()
            y.acquire()
            y.release()
        except rsthread.DeadlockError:
            out.append(name)
        finally:
            x.release()
    def waiter():
        try:
            ev.wait()
            out.append("waiter woke")
        except rsthread.DeadlockError:
            out.append("waiter raised")
    tw = threading.Thread(target=waiter, name="waiter")
    tw.start()
    ts = [threading.Thread(target=w, args=(a, b, "first")), threading.Thread(target=w, args=(b, a, "second"))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ev.set()
    tw.join()
    print("OUT", sorted(out), flush=True)
""")


def test_error_never_raised_in_an_event_waiter(tmp_path):
    # The last thread to block is either the Event waiter or main's join:
    # neither is in the cycle, so one of first/second gets the error.
    r = run(EVENT_BYSTANDER, diag="deadlock=raise", tmp_path=tmp_path)
    assert "TIMEOUT" not in r.stdout, (r.stdout, r.stderr)
    out = next(line for line in r.stdout.splitlines() if line.startswith("OUT"))
    assert out in ("OUT ['first', 'waiter woke']", "OUT ['second', 'waiter woke']"), r.stdout


# The library-free reproduction of readerwriterlock's RWLockFair: a
# lock released once by its acquirer, then released by a third thread.
RW_REPRO = PRELUDE + textwrap.dedent("""
    gate, res = threading.Lock(), threading.Lock()
    gate.acquire(); gate.release()
    res.acquire(); res.release()          # "released by its acquirer once"
    res.acquire()                         # main takes res; a third thread will release it
    def writer():
        with gate:
            res.acquire(); res.release()
    t = threading.Thread(target=writer); t.start(); time.sleep(0.3)
    threading.Timer(0.3, res.release).start()
    with gate:                            # a cycle on paper; it resolves by itself
        pass
    t.join(); print("finished normally")
""")


@pytest.mark.parametrize("mode", ["warn", "raise"])
def test_readers_writers_reproduction_is_not_a_deadlock(tmp_path, mode):
    r = run(RW_REPRO, diag=f"deadlock={mode},lock-order", tmp_path=tmp_path)
    assert r.returncode == 0 and "finished normally" in r.stdout, (r.stdout, r.stderr)
    assert REPORT not in r.stderr and "lock-order inversion" not in r.stderr, r.stderr
    # The attempt-time inversion (gate/res) is judged at exit: res's class
    # behaves as a semaphore; counted, not silently dropped.
    assert "rsthread: lock order: 1 cycle not reported: a lock class of the cycle behaves as a semaphore" \
        in r.stderr, r.stderr


def test_readers_writers_reproduction_immediate_mode_reports_early(tmp_path):
    # Asked for immediate reports, the inversion is reported when found,
    # before the evidence that res is a semaphore arrives.
    r = run(RW_REPRO, diag="lock-order=immediate", tmp_path=tmp_path)
    assert r.returncode == 0 and "finished normally" in r.stdout, (r.stdout, r.stderr)
    assert r.stderr.count("rsthread: lock-order inversion") == 1, r.stderr


DONE_LOCK = PRELUDE + textwrap.dedent("""
    # The classic _thread "done" lock: taken by main, released by a worker.
    import _thread
    done = _thread.allocate_lock()
    done.acquire()
    def work():
        time.sleep(0.2)
        done.release()
    _thread.start_new_thread(work, ())
    done.acquire()  # main blocks on a lock it holds: the worker releases it
    print("done")
""")


def test_done_lock_released_by_another_thread(tmp_path):
    r = run(DONE_LOCK, diag="deadlock=raise,lock-order", tmp_path=tmp_path)
    assert r.returncode == 0 and "done" in r.stdout, (r.stdout, r.stderr)
    assert "rsthread:" not in r.stderr, r.stderr


def test_plain_self_wait_reported_when_nobody_is_left(tmp_path):
    # acquire() twice with no other thread: the binary-semaphore shape, but
    # nobody is left to release it.
    code = PRELUDE + textwrap.dedent("""
        lock = threading.Lock()
        lock.acquire()
        try:
            lock.acquire()
        except rsthread.DeadlockError as e:
            print("RAISED", e.report["rule"])
    """)
    r = run(code, diag="deadlock=raise", tmp_path=tmp_path)
    assert "RAISED all-blocked" in r.stdout, (r.stdout, r.stderr)


# Lock-order edges at the attempt: the inversion deadlocks on its first run,
# with deadlock detection off; sys.argv[1] is how the second lock is taken.
INVERSION = PRELUDE + textwrap.dedent("""
    a, b = threading.Lock(), threading.Lock()
    both = threading.Barrier(2)
    how = sys.argv[1]
    def take(lock):
        if how == "blocking":
            return lock.acquire()
        if how == "timed":
            return lock.acquire(timeout=0.5)
        return lock.acquire(False)
    def t1():
        with a:
            both.wait()
            if take(b):
                b.release()
    def t2():
        with b:
            both.wait()
            if take(a):
                a.release()
    ts = [threading.Thread(target=f, name=f.__name__, daemon=True) for f in (t1, t2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(1.5)
    print("ALIVE", sorted(t.name for t in ts if t.is_alive()), flush=True)
""")


@pytest.mark.parametrize("how", ["blocking", "timed"])
def test_inversion_reported_at_the_attempt_on_its_first_run(tmp_path, how):
    r = run(INVERSION, how, diag="lock-order", tmp_path=tmp_path)
    assert "TIMEOUT" not in r.stdout, (r.stdout, r.stderr)
    assert r.stderr.count("rsthread: lock-order inversion") == 1, r.stderr
    assert "Thread 't1'" in r.stderr and "Thread 't2'" in r.stderr
    assert REPORT not in r.stderr  # detection is off


def test_non_blocking_attempts_add_no_edge(tmp_path):
    r = run(INVERSION, "try", diag="lock-order", tmp_path=tmp_path)
    assert "ALIVE []" in r.stdout, (r.stdout, r.stderr)
    assert "rsthread:" not in r.stderr, r.stderr


REINIT = PRELUDE + textwrap.dedent("""
    a, b = threading.Lock(), threading.Lock()
    a.acquire()
    a._at_fork_reinit()          # a is new and unlocked: nobody holds it
    with b:                      # a stale "held a" would record a -> b here ...
        pass
    with b:
        with a:                  # ... and b -> a here: a false inversion
            pass
    print("OK")
""")


def test_at_fork_reinit_forgets_the_holder(tmp_path):
    r = run(REINIT, diag="deadlock=raise,lock-order", tmp_path=tmp_path)
    assert r.returncode == 0 and "OK" in r.stdout, (r.stdout, r.stderr)
    assert "rsthread:" not in r.stderr, r.stderr


FORK = PRELUDE + textwrap.dedent("""
    import logging  # re-initialises its locks at fork
    a, b = threading.Lock(), threading.Lock()
    def f():
        with a:
            with b:
                pass
    def g():
        with b:
            with a:
                pass
    f(); g()                     # one inversion, in the parent
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            f(); g()             # already reported: not again in the child
            c, d = threading.Lock(), threading.Lock()
            with c:
                with d:
                    pass
            with d:
                with c:          # a new one: says which process it comes from
                    pass
            from rsthread import diagnostics
            diagnostics.check_inversions()
            os._exit(0)
        os.waitpid(pid, 0)
    print("OK")
""")


def test_fork_children_do_not_repeat_the_parent_report(tmp_path):
    r = run(FORK, diag="lock-order", tmp_path=tmp_path)
    assert r.returncode == 0 and "OK" in r.stdout, (r.stdout, r.stderr)
    assert r.stderr.count("rsthread: lock-order inversion") == 4, r.stderr
    assert r.stderr.count(", forked from ") == 3, r.stderr


DISCIPLINES = PRELUDE + textwrap.dedent("""
    how = sys.argv[1]
    if how == "gate":
        gate = threading.Lock()
        a, b = threading.Lock(), threading.Lock()
        def f():
            with gate:
                with a:
                    with b:
                        pass
        def g():
            with gate:
                with b:
                    with a:
                        pass
        fs = [f, g]
    else:
        # Locks from two creation sites, always taken in increasing id().
        xs, ys = [], []
        for _ in range(4):  # alternately: their ids interleave
            xs.append(threading.Lock())
            ys.append(threading.Lock())
        def take_all(locks):
            locks = sorted(locks, key=id)
            for l in locks:
                l.acquire()
            for l in reversed(locks):
                l.release()
        def f():
            for x in xs:
                for y in ys:
                    take_all([x, y])
        fs = [f, f]
        mixed = any((id(x) < id(y)) for x in xs for y in ys) and any((id(y) < id(x)) for x in xs for y in ys)
        print("MIXED", mixed)
    ts = [threading.Thread(target=fn) for fn in fs for _ in range(2)]
    for t in ts: t.start()
    for t in ts: t.join()
    print("OK")
""")


@pytest.mark.parametrize("how", ["gate", "sorted-by-id"])
def test_gate_lock_and_id_order_disciplines_give_no_inversion(tmp_path, how):
    r = run(DISCIPLINES, how, diag="deadlock=raise,lock-order", tmp_path=tmp_path)
    assert r.returncode == 0 and "OK" in r.stdout, (r.stdout, r.stderr)
    assert "lock-order inversion" not in r.stderr and REPORT not in r.stderr, r.stderr
    if how == "gate":
        assert "1 cycle not reported: every edge was taken while the same gate lock was held" in r.stderr, r.stderr
    elif "MIXED True" in r.stdout:  # the two sites' ids interleave: a class cycle exists
        assert "not reported: every edge was taken in increasing id() order" in r.stderr, r.stderr


STACKS = PRELUDE + textwrap.dedent("""
    a, b = threading.Lock(), threading.Lock()
    def inner_b():
        with b:
            pass
    def path_one():
        with a:
            inner_b()
    def inner_a():
        with a:
            pass
    def path_two():
        with b:
            inner_a()
    path_one()
    path_two()
""")


def test_inversion_report_shows_each_edge_stack(tmp_path):
    r = run(STACKS, diag="lock-order", tmp_path=tmp_path)
    assert r.stderr.count("rsthread: lock-order inversion") == 1, r.stderr
    assert r.stderr.count("Stack at that acquire") == 2, r.stderr
    # Both code paths, outer frame (the held lock) and inner one (the next lock).
    for fn in ("path_one", "inner_b", "path_two", "inner_a"):
        assert f"in {fn}\n" in r.stderr, (fn, r.stderr)


FORK_BUSY = PRELUDE + textwrap.dedent("""
    # Fork again and again while other threads export the timeline (the
    # state mutex held without the GIL) and run deadlock checks; every
    # child then uses diagnostics (locks, a snapshot, a deadlock check).
    from rsthread import diagnostics
    import rsthread._diag as D
    stop = threading.Event()
    path = sys.argv[1]
    def exporter():
        while not stop.is_set():
            D.export_chrome_trace(path)
    def checker():
        lk = threading.Lock()
        while not stop.is_set():
            with lk:
                D.detect_deadlock(0)
            diagnostics.snapshot()
    ts = [threading.Thread(target=f, daemon=True) for f in (exporter, checker)]
    for t in ts:
        t.start()
    bad = 0
    for i in range(40):
        pid = os.fork()
        if pid == 0:
            signal.alarm(5)
            a, b = threading.Lock(), threading.Lock()
            with a:
                with b:
                    pass
            snap = diagnostics.snapshot()
            ok = len(snap["threads"]) == 1 and not D.detect_deadlock(0)
            os._exit(0 if ok else 1)
        _, st = os.waitpid(pid, 0)
        bad += st != 0
    stop.set()
    for t in ts:
        t.join()
    print("BAD CHILDREN", bad)
""")


def test_fork_during_export_and_deadlock_checks(tmp_path):
    r = run(FORK_BUSY, str(tmp_path / "t.json"), diag="deadlock=warn,lock-order,trace=" + str(tmp_path / "x.json"),
            tmp_path=tmp_path, env_extra={"ALARM": "60"})
    assert "BAD CHILDREN 0" in r.stdout, (r.stdout, r.stderr)
    assert "TIMEOUT" not in r.stdout
