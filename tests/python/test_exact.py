"""Exact-behaviour tests: names, docs, signatures, reprs and semantics of
``_thread`` must match the running interpreter's stock module (3.11 to 3.15;
the name lists below follow each version's additions and removals).  Every test runs on both "stock"
(proving the expectation) and "rsthread" via the ``thread_mod`` fixture.
"""
import _thread as STOCK
import io
import signal
import sys
import threading
import time

import pytest

try:  # the lead installs pytest-timeout into the project venv
    import pytest_timeout  # noqa: F401

    pytestmark = pytest.mark.timeout(10)
except ImportError:  # pragma: no cover
    pass


def wait_until(pred, timeout=2.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


class guard:
    """Watchdog for a held plain lock: if the code under test blocks on it for
    longer than ``after`` seconds (i.e. wrongly ignored a non-blocking flag or
    timeout), release it so the test fails instead of hanging."""

    def __init__(self, lock, after=1.5):
        self.lock = lock
        self.fired = False
        self.timer = threading.Timer(after, self._fire)
        self.timer.daemon = True

    def _fire(self):
        if self.lock.locked():
            self.fired = True
            try:
                self.lock.release()
            except Exception:
                pass

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.cancel()
        assert not self.fired, "blocked on a held lock (watchdog released it)"


def run_in_thread(mod, func, *args):
    """Start ``func`` with ``mod.start_new_thread`` and wait for it to finish."""
    done = threading.Event()
    box = {}

    def runner():
        try:
            box["result"] = func(*args)
        except BaseException as exc:
            box["exc"] = exc
        finally:
            done.set()

    mod.start_new_thread(runner, ())
    assert done.wait(2), "thread did not finish"
    if "exc" in box:
        raise box["exc"]
    return box.get("result")


# ---------------------------------------------------------------------------
# names, types, docs, signatures
# ---------------------------------------------------------------------------
STOCK_MODULE_NAMES = [
    "LockType", "RLock", "TIMEOUT_MAX", "_ExceptHookArgs", "_count", "_excepthook",
    "_local", "_set_sentinel", "allocate", "allocate_lock", "error", "exit", "exit_thread",
    "get_ident", "get_native_id", "interrupt_main", "stack_size", "start_new",
    "start_new_thread",
]
STOCK_LOCK_NAMES = ["_at_fork_reinit", "acquire", "acquire_lock", "locked", "locked_lock",
                    "release", "release_lock", "__enter__", "__exit__"]
STOCK_RLOCK_NAMES = ["_acquire_restore", "_at_fork_reinit", "_is_owned", "_recursion_count",
                     "_release_save", "acquire", "release", "__enter__", "__exit__"]
# What each version changed (3.11's lists above are the base).
if sys.version_info >= (3, 12):
    STOCK_MODULE_NAMES += ["daemon_threads_allowed", "_is_main_interpreter"]
if sys.version_info >= (3, 13):
    STOCK_MODULE_NAMES.remove("_set_sentinel")
    STOCK_MODULE_NAMES += ["start_joinable_thread", "_ThreadHandle", "_make_thread_handle",
                           "_shutdown", "_get_main_thread_ident", "lock"]
if sys.version_info >= (3, 14):
    STOCK_MODULE_NAMES += ["set_name", "_get_name", "_NAME_MAXLEN"]
    STOCK_RLOCK_NAMES += ["locked"]


def _public_and_private(names):
    return sorted(n for n in names if not (n.startswith("__") and n.endswith("__")))


def test_stock_name_lists_are_current():
    assert _public_and_private(dir(STOCK)) == sorted(STOCK_MODULE_NAMES)
    assert set(_public_and_private(dir(STOCK.allocate_lock()))) | {"__enter__", "__exit__"} \
        == set(STOCK_LOCK_NAMES)
    assert set(_public_and_private(dir(STOCK.RLock()))) | {"__enter__", "__exit__"} \
        == set(STOCK_RLOCK_NAMES)


def _stock_and_ours(thread_mod):
    return [
        ("module", STOCK, thread_mod),
        ("lock", STOCK.allocate_lock(), thread_mod.allocate_lock()),
        ("RLock", STOCK.RLock(), thread_mod.RLock()),
        ("_local", STOCK._local(), thread_mod._local()),
        ("_ExceptHookArgs", STOCK._ExceptHookArgs((1, 2, 3, 4)),
         thread_mod._ExceptHookArgs((1, 2, 3, 4))),
    ]


def test_dir_has_every_stock_name(thread_mod):
    missing = {}
    for what, stock_obj, our_obj in _stock_and_ours(thread_mod):
        lacking = sorted(set(dir(stock_obj)) - set(dir(our_obj)))
        if lacking:
            missing[what] = lacking
    assert missing == {}


def test_doc_presence(thread_mod):
    lacking = []
    for what, stock_obj, our_obj in _stock_and_ours(thread_mod):
        if bool(stock_obj.__doc__) and not our_obj.__doc__:
            lacking.append(f"{what}.__doc__")
        for name in dir(stock_obj):
            if name.startswith("__") and name not in ("__enter__", "__exit__"):
                continue
            s_attr = getattr(stock_obj, name)
            o_attr = getattr(our_obj, name, None)
            if isinstance(s_attr, (int, float, str)):
                continue  # docs of int/float/str values are the type's
            if getattr(s_attr, "__doc__", None) and not getattr(o_attr, "__doc__", None):
                lacking.append(f"{what}.{name}")
    assert lacking == []


def test_docstrings_equal_stock(thread_mod):
    # The running version's own wording (each version words them differently):
    # every public callable, the lock types' methods and the types themselves.
    diffs = []
    for what, stock_obj, our_obj in _stock_and_ours(thread_mod):
        if what != "module" and type(stock_obj).__doc__ != type(our_obj).__doc__:
            diffs.append((f"type({what})", type(stock_obj).__doc__, type(our_obj).__doc__))
        for name in dir(stock_obj):
            if name.startswith("__") and name not in ("__enter__", "__exit__"):
                continue
            s_attr = getattr(stock_obj, name)
            if not callable(s_attr) or what == "_ExceptHookArgs":
                continue
            o_attr = getattr(our_obj, name, None)
            if getattr(s_attr, "__doc__", None) != getattr(o_attr, "__doc__", None):
                diffs.append((f"{what}.{name}", s_attr.__doc__, getattr(o_attr, "__doc__", None)))
    assert diffs == []


def test_signatures_equal_stock(thread_mod):
    # What inspect.signature (and so help(), IDEs) sees: equal to stock's, or
    # refused on both sides (up to 3.12 most of _thread has no signature).
    import inspect

    def sig(f):
        try:
            return str(inspect.signature(f))
        except (ValueError, TypeError) as e:
            return type(e).__name__

    diffs = []
    for name in dir(STOCK):
        s = getattr(STOCK, name)
        if callable(s) and not name.startswith("__"):
            o = getattr(thread_mod, name)
            if sig(s) != sig(o):
                diffs.append((name, sig(s), sig(o)))
    for what, s_obj, o_obj in (("lock", STOCK.allocate_lock(), thread_mod.allocate_lock()),
                               ("RLock", STOCK.RLock(), thread_mod.RLock())):
        for name in dir(s_obj):
            if name.startswith("__") and name not in ("__enter__", "__exit__"):
                continue
            if sig(getattr(s_obj, name)) != sig(getattr(o_obj, name)):
                diffs.append((f"{what}.{name}", sig(getattr(s_obj, name)), sig(getattr(o_obj, name))))
    assert diffs == []


def test_text_signature_where_stock_has_one(thread_mod):
    diffs = []
    for what, stock_obj, our_obj in _stock_and_ours(thread_mod):
        objs = [(what, stock_obj, our_obj)]
        if what not in ("module",):
            objs.append((f"type({what})", type(stock_obj), type(our_obj)))
        for label, s, o in objs:
            for name in dir(s):
                s_sig = getattr(getattr(s, name), "__text_signature__", None)
                if s_sig is None:
                    continue
                o_sig = getattr(getattr(o, name, None), "__text_signature__", None)
                if o_sig != s_sig:
                    diffs.append((f"{label}.{name}", s_sig, o_sig))
    assert diffs == []


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="3.13+ stock has text signatures")
def test_stock_public_functions_have_no_text_signature():
    # Documented here so the rsthread comparison below is meaningful.
    for name in ("allocate_lock", "start_new_thread", "stack_size", "interrupt_main",
                 "get_ident", "exit"):
        assert getattr(STOCK, name).__text_signature__ is None
    assert STOCK.allocate_lock().acquire.__text_signature__ is None


def test_public_function_text_signature_matches_stock(thread_mod):
    diffs = []
    for name in STOCK_MODULE_NAMES:
        s = getattr(STOCK, name)
        if callable(s) and not isinstance(s, type):
            o_sig = getattr(getattr(thread_mod, name), "__text_signature__", None)
            if o_sig != s.__text_signature__:
                diffs.append((name, s.__text_signature__, o_sig))
    for meth in STOCK_LOCK_NAMES:
        o_sig = getattr(getattr(thread_mod.allocate_lock(), meth), "__text_signature__", None)
        s_sig = getattr(STOCK.allocate_lock(), meth).__text_signature__
        if o_sig != s_sig:
            diffs.append(("lock." + meth, s_sig, o_sig))
    for meth in STOCK_RLOCK_NAMES:
        o_sig = getattr(getattr(thread_mod.RLock(), meth), "__text_signature__", None)
        s_sig = getattr(STOCK.RLock(), meth).__text_signature__
        if o_sig != s_sig:
            diffs.append(("RLock." + meth, s_sig, o_sig))
    assert diffs == []


def test_function_and_method_names(thread_mod):
    for name in STOCK_MODULE_NAMES:
        s = getattr(STOCK, name)
        if callable(s) and not isinstance(s, type):
            o = getattr(thread_mod, name)
            assert (o.__name__, o.__qualname__) == (s.__name__, s.__qualname__), name
    for factory, names in ((lambda m: m.allocate_lock(), STOCK_LOCK_NAMES),
                           (lambda m: m.RLock(), STOCK_RLOCK_NAMES)):
        for meth in names:
            s = getattr(factory(STOCK), meth)
            o = getattr(factory(thread_mod), meth)
            assert (o.__name__, o.__qualname__) == (s.__name__, s.__qualname__), meth


def test_error_is_runtimeerror(thread_mod):
    assert thread_mod.error is RuntimeError


def test_timeout_max(thread_mod):
    assert STOCK.TIMEOUT_MAX == 9223372036.0
    assert type(thread_mod.TIMEOUT_MAX) is float
    assert thread_mod.TIMEOUT_MAX == STOCK.TIMEOUT_MAX


@pytest.mark.parametrize("attr, name, flags", [
    ("LockType", "lock", "final"),
    ("RLock", "RLock", "base"),
    ("_local", "_local", "base"),
    ("_ExceptHookArgs", "_ExceptHookArgs", "final"),
])
def test_type_identity(thread_mod, attr, name, flags):
    t = getattr(thread_mod, attr)
    assert isinstance(t, type)
    assert (t.__name__, t.__qualname__, t.__module__) == (name, name, "_thread")
    assert bool(t.__flags__ & (1 << 10)) == (flags == "base")  # Py_TPFLAGS_BASETYPE


def test_lock_factories_return_locktype(thread_mod):
    factories = [thread_mod.allocate_lock, thread_mod.allocate]
    if hasattr(STOCK, "_set_sentinel"):  # gone from 3.13
        factories.append(thread_mod._set_sentinel)
    else:
        assert not hasattr(thread_mod, "_set_sentinel")
    for factory in factories:
        lk = factory()
        assert type(lk) is thread_mod.LockType
        assert lk.locked() is False
    assert type(thread_mod.RLock()) is thread_mod.RLock
    assert thread_mod.LockType is not thread_mod.RLock


def test_locktype_not_instantiable(thread_mod):
    if sys.version_info >= (3, 13):  # `threading.Lock` is `_thread.lock` from 3.13
        lk = thread_mod.LockType()
        assert type(lk) is thread_mod.LockType and lk.locked() is False
        with pytest.raises(TypeError) as ei:
            thread_mod.LockType(1)
        with pytest.raises(TypeError) as es:
            STOCK.LockType(1)
        assert str(ei.value) == str(es.value)
        return
    with pytest.raises(TypeError) as ei:
        thread_mod.LockType()
    assert ei.type is TypeError
    assert str(ei.value) == "cannot create '_thread.lock' instances"


def test_lock_weakref_hash_and_equality(thread_mod):
    import weakref

    for make in (thread_mod.allocate_lock, thread_mod.RLock):
        obj, twin = make(), make()
        r = weakref.ref(obj)
        assert r() is obj
        # Stock keeps object's identity hash and equality: two locks in the
        # same state are different keys.
        assert hash(obj) == object.__hash__(obj)
        assert (obj == twin, obj != twin) == (False, True)
        assert len({obj, twin}) == 2
        del obj
        assert r() is None, "the weak reference outlived the lock"


# ---------------------------------------------------------------------------
# reprs
# ---------------------------------------------------------------------------
def test_lock_repr(thread_mod):
    lk = thread_mod.allocate_lock()
    assert repr(lk) == f"<unlocked _thread.lock object at {hex(id(lk))}>"
    lk.acquire()
    assert repr(lk) == f"<locked _thread.lock object at {hex(id(lk))}>"
    lk.release()
    assert repr(lk) == f"<unlocked _thread.lock object at {hex(id(lk))}>"
    assert str(lk) == repr(lk)


def test_rlock_repr(thread_mod):
    r = thread_mod.RLock()
    me = thread_mod.get_ident()
    assert repr(r) == f"<unlocked _thread.RLock object owner=0 count=0 at {hex(id(r))}>"
    r.acquire()
    r.acquire()
    r.acquire()
    assert repr(r) == f"<locked _thread.RLock object owner={me} count=3 at {hex(id(r))}>"
    r.release()
    assert repr(r) == f"<locked _thread.RLock object owner={me} count=2 at {hex(id(r))}>"
    r.release()
    r.release()
    assert repr(r) == f"<unlocked _thread.RLock object owner=0 count=0 at {hex(id(r))}>"


class RLockSub(STOCK.RLock):
    pass


def test_rlock_subclass_repr(thread_mod):
    sub = type("RLockSub", (thread_mod.RLock,), {})
    r = sub()
    assert repr(r) == f"<unlocked RLockSub object owner=0 count=0 at {hex(id(r))}>"
    r.acquire()
    me = thread_mod.get_ident()
    assert repr(r) == f"<locked RLockSub object owner={me} count=1 at {hex(id(r))}>"
    r.release()


def test_rlock_repr_owned_by_other_thread(thread_mod):
    r = thread_mod.RLock()
    got, done = threading.Event(), threading.Event()
    ident = []

    def holder():
        ident.append(thread_mod.get_ident())
        r.acquire()
        got.set()
        done.wait(2)
        r.release()

    t = threading.Thread(target=holder, daemon=True)
    t.start()
    try:
        assert got.wait(2)
        assert repr(r) == (f"<locked _thread.RLock object owner={ident[0]} count=1 "
                           f"at {hex(id(r))}>")
        assert r._is_owned() is False
        assert r._recursion_count() == 0
        assert r.acquire(False) is False
        with pytest.raises(RuntimeError) as ei:
            r.release()
        assert str(ei.value) == "cannot release un-acquired lock"
    finally:
        done.set()
        t.join(2)
    assert repr(r).startswith("<unlocked _thread.RLock object owner=0 count=0 at ")


def test_local_repr(thread_mod):
    loc = thread_mod._local()
    assert repr(loc) == f"<_thread._local object at {hex(id(loc))}>"


# ---------------------------------------------------------------------------
# lock semantics
# ---------------------------------------------------------------------------
def test_lock_basic(thread_mod):
    lk = thread_mod.allocate_lock()
    assert lk.acquire() is True
    assert lk.locked() is True and lk.locked_lock() is True
    with guard(lk):
        assert lk.acquire(False) is False
        assert lk.acquire(0) is False
        assert lk.acquire(blocking=False) is False
        assert lk.acquire(blocking=False, timeout=-1) is False
        assert lk.acquire(timeout=0) is False
    assert lk.release() is None
    assert lk.locked() is False
    assert lk.acquire_lock(blocking=True, timeout=-1) is True
    assert lk.release_lock() is None
    with pytest.raises(RuntimeError) as ei:
        lk.release()
    assert ei.type is RuntimeError and str(ei.value) == "release unlocked lock"
    assert isinstance(ei.value, thread_mod.error)


def test_lock_timeout_waits(thread_mod):
    lk = thread_mod.allocate_lock()
    lk.acquire()
    with guard(lk):
        t0 = time.monotonic()
        assert lk.acquire(timeout=0.05) is False
        assert time.monotonic() - t0 >= 0.045
        t0 = time.monotonic()
        assert lk.acquire(True, 0.05) is False
        assert time.monotonic() - t0 >= 0.045
        assert lk.locked()


def test_lock_released_by_other_thread_wakes_waiter(thread_mod):
    lk = thread_mod.allocate_lock()
    lk.acquire()
    threading.Timer(0.05, lk.release).start()
    t0 = time.monotonic()
    assert lk.acquire(timeout=2) is True
    assert time.monotonic() - t0 < 1.5
    lk.release()


def test_lock_context_manager(thread_mod):
    lk = thread_mod.allocate_lock()
    with lk as entered:
        assert entered is True
        assert lk.locked()
    assert not lk.locked()
    with pytest.raises(ZeroDivisionError):
        with lk:
            1 / 0  # noqa: B018 -- raises inside the with block
    assert not lk.locked()
    assert lk.__enter__() is True
    assert lk.__exit__(None, None, None) is None
    assert not lk.locked()


def test_lock_at_fork_reinit(thread_mod):
    lk = thread_mod.allocate_lock()
    lk.acquire()
    assert lk._at_fork_reinit() is None
    assert lk.locked() is False
    assert lk.acquire(False) is True


def test_acquire_timeout_edge_values(thread_mod):
    lk = thread_mod.allocate_lock()
    lk.acquire()
    with guard(lk):
        _edge_values_on_held_lock(lk)
    assert lk.locked()
    lk.release()
    # NB: stock 3.11 on 64-bit Linux never says "timeout value is too large":
    # TIMEOUT_MAX < t <= ~9223372036.854 is accepted, larger values fail in the
    # time-conversion layer with the messages above.
    assert lk.acquire(timeout=thread_mod.TIMEOUT_MAX + 0.5) is True
    lk.release()
    # -1 seconds after rounding (away from zero, to ns) counts as "no timeout"
    assert lk.acquire(False, -0.9999999999) is True
    lk.release()


def _outcome(call, lk):
    try:
        return ("ok", call(lk))
    except Exception as e:  # the exception is the outcome
        return (type(e), str(e))


# Bad or edge arguments on a held lock, with stock 3.11's outcome. Other
# versions word some of them differently (3.13: "timeout value must be a
# non-negative number"; the time layer's overflow texts changed within 3.13's
# patch releases; from 3.12 `blocking` is a truth value): there the running
# version's stock, called the same way in the same test, is the expectation.
_EDGE_CALLS = [
    ("acquire(False, 1)", lambda lk: lk.acquire(False, 1),
     (ValueError, "can't specify a timeout for a non-blocking call")),
    ("acquire(timeout=-2)", lambda lk: lk.acquire(timeout=-2),
     (ValueError, "timeout value must be positive")),
    ("acquire(timeout=nan)", lambda lk: lk.acquire(timeout=float("nan")),
     (ValueError, "Invalid value NaN (not a number)")),
    ("acquire(timeout=inf)", lambda lk: lk.acquire(timeout=float("inf")),
     (OverflowError, "timestamp out of range for platform time_t")),
    ("acquire(timeout=2**63)", lambda lk: lk.acquire(timeout=2**63),
     (OverflowError, "timestamp too large to convert to C _PyTime_t")),
    ("acquire(None)", lambda lk: lk.acquire(None),
     (TypeError, "'NoneType' object cannot be interpreted as an integer")),
]


def _edge_values_on_held_lock(lk):
    held = STOCK.allocate_lock()
    held.acquire()
    for what, call, lit in _EDGE_CALLS:
        expected = _outcome(call, held)
        if sys.version_info[:2] == (3, 11):
            assert expected == lit, what
        assert expected[0] != "ok" or expected[1] is False, what  # never takes a held lock
        assert _outcome(call, lk) == expected, what
    assert held.locked()


# ---------------------------------------------------------------------------
# RLock semantics
# ---------------------------------------------------------------------------
def test_rlock_basic(thread_mod):
    r = thread_mod.RLock()
    me = thread_mod.get_ident()
    assert (r._is_owned(), r._recursion_count()) == (False, 0)
    assert r.acquire() is True
    assert r.acquire(False) is True
    assert r.acquire(timeout=0) is True
    assert (r._is_owned(), r._recursion_count()) == (True, 3)
    assert r._release_save() == (3, me)
    assert (r._is_owned(), r._recursion_count()) == (False, 0)
    with pytest.raises(RuntimeError) as ei:
        r._release_save()
    assert str(ei.value) == "cannot release un-acquired lock"
    assert r._acquire_restore((3, me)) is None
    assert (r._is_owned(), r._recursion_count()) == (True, 3)
    for _ in range(3):
        assert r.release() is None
    assert (r._is_owned(), r._recursion_count()) == (False, 0)
    with pytest.raises(RuntimeError) as ei:
        r.release()
    assert ei.type is RuntimeError
    assert str(ei.value) == "cannot release un-acquired lock"


def test_rlock_context_manager_and_at_fork_reinit(thread_mod):
    r = thread_mod.RLock()
    with r as entered:
        assert entered is True
        with r:
            assert r._recursion_count() == 2
    assert r._recursion_count() == 0
    r.acquire()
    r.acquire()
    assert r._at_fork_reinit() is None
    assert (r._is_owned(), r._recursion_count()) == (False, 0)
    assert repr(r).startswith("<unlocked _thread.RLock object owner=0 count=0")


def test_rlock_args_ignored(thread_mod):
    if sys.version_info >= (3, 15):  # 3.15's RLock() takes no arguments
        with pytest.raises(TypeError, match=r"^RLock\(\) takes no positional arguments$"):
            thread_mod.RLock(1, 2, x=3)
        with pytest.raises(TypeError, match=r"^RLock\(\) takes no keyword arguments$"):
            thread_mod.RLock(x=3)
        return
    r = thread_mod.RLock(1, 2, x=3)
    assert r._recursion_count() == 0 and r.acquire() is True
    r.release()


def test_rlock_subclass_init_args(thread_mod):
    class Sub(thread_mod.RLock):
        def __init__(self, a, b=None):
            self.a, self.b = a, b

    s = Sub(1, b=2)
    assert (s.a, s.b) == (1, 2)
    assert s.acquire() is True and s._is_owned()
    s.release()


def test_rlock_other_thread_waits(thread_mod):
    r = thread_mod.RLock()
    r.acquire()
    out = []

    def other():
        t0 = time.monotonic()
        out.append(r.acquire(timeout=0.05))
        out.append(time.monotonic() - t0)
        out.append(r.acquire(False))

    t = threading.Thread(target=other, daemon=True)
    t.start()
    t.join(2)
    assert out[0] is False and out[1] >= 0.045 and out[2] is False
    r.release()


# ---------------------------------------------------------------------------
# threads
# ---------------------------------------------------------------------------
def test_get_ident_and_native_id(thread_mod):
    assert thread_mod.get_ident() == STOCK.get_ident() == threading.get_ident()
    assert thread_mod.get_native_id() == STOCK.get_native_id()
    assert type(thread_mod.get_ident()) is int and type(thread_mod.get_native_id()) is int

    def inner():
        return (thread_mod.get_ident(), STOCK.get_ident(),
                thread_mod.get_native_id(), STOCK.get_native_id())

    a, b, c, d = run_in_thread(thread_mod, inner)
    assert a == b != thread_mod.get_ident()
    assert c == d != thread_mod.get_native_id()


def test_start_new_thread_args_kwargs_and_ident(thread_mod):
    got = []
    done = threading.Event()

    def f(*args, **kwargs):
        got.append((args, kwargs, thread_mod.get_ident()))
        done.set()

    class T(tuple):
        pass

    class D(dict):
        pass

    ident = thread_mod.start_new_thread(f, T((1, 2)), D(k=3))
    assert type(ident) is int
    assert done.wait(2)
    assert got == [((1, 2), {"k": 3}, ident)]
    done.clear()
    ident = thread_mod.start_new(f, ())
    assert done.wait(2)
    assert got[-1] == ((), {}, ident)


def test_count(thread_mod):
    base = thread_mod._count()
    go, started = threading.Event(), threading.Event()

    def f():
        started.set()
        go.wait(2)

    thread_mod.start_new_thread(f, ())
    assert started.wait(2)
    assert thread_mod._count() == base + 1
    go.set()
    assert wait_until(lambda: thread_mod._count() == base)


@pytest.fixture
def unraisable():
    seen = []
    old = sys.unraisablehook
    sys.unraisablehook = seen.append
    try:
        yield seen
    finally:
        sys.unraisablehook = old


def _start_and_wait_for_exit(mod, func):
    base = mod._count()
    started = threading.Event()

    def wrapper():
        started.set()
        return func()

    mod.start_new_thread(wrapper, ())
    assert started.wait(2)
    assert wait_until(lambda: mod._count() == base)
    time.sleep(0.02)


def _check_started_by(u, func):
    if sys.version_info >= (3, 13):  # the function's repr in the message, no object
        assert u.err_msg == f"Exception ignored in thread started by {func!r}"
        assert u.object is None
    else:
        assert u.err_msg == "Exception ignored in thread started by"
        assert u.object is func


def test_thread_exception_goes_to_unraisablehook(thread_mod, unraisable):
    def boom():
        raise ValueError("boom")

    thread_mod.start_new_thread(boom, ())
    assert wait_until(lambda: unraisable)
    (u,) = unraisable
    assert u.exc_type is ValueError
    assert str(u.exc_value) == "boom"
    _check_started_by(u, boom)
    assert u.exc_traceback is not None


def test_thread_keyboardinterrupt_goes_to_unraisablehook(thread_mod, unraisable):
    def boom():
        raise KeyboardInterrupt

    thread_mod.start_new_thread(boom, ())
    assert wait_until(lambda: unraisable)
    assert unraisable[0].exc_type is KeyboardInterrupt
    _check_started_by(unraisable[0], boom)


def test_thread_bad_kwargs_go_to_unraisablehook(thread_mod, unraisable):
    thread_mod.start_new_thread(print, (), {1: 2})
    assert wait_until(lambda: unraisable)
    u = unraisable[0]
    assert (u.exc_type, str(u.exc_value)) == (TypeError, "keywords must be strings")
    _check_started_by(u, print)


@pytest.mark.parametrize("how", ["SystemExit", "SystemExit(3)", "exit", "exit_thread"])
def test_thread_systemexit_is_silent(thread_mod, unraisable, how):
    def f():
        if how == "SystemExit":
            raise SystemExit
        if how == "SystemExit(3)":
            raise SystemExit(3)
        getattr(thread_mod, how)()

    _start_and_wait_for_exit(thread_mod, f)
    assert unraisable == []


def test_exit_raises_systemexit(thread_mod):
    for f in (thread_mod.exit, thread_mod.exit_thread):
        with pytest.raises(SystemExit) as ei:
            f()
        assert ei.type is SystemExit
        assert ei.value.args == ()


needs_set_sentinel = pytest.mark.skipif(
    not hasattr(STOCK, "_set_sentinel"), reason="_set_sentinel is gone from 3.13 (thread handles)")


@needs_set_sentinel
def test_set_sentinel(thread_mod):
    """Like threading.Thread: the thread acquires its sentinel; the lock is
    released when the thread state is destroyed (after the function ends)."""
    box = {}
    go = threading.Event()

    def f():
        lk = thread_mod._set_sentinel()
        box["locked_at_birth"] = lk.locked()
        lk.acquire()
        box["lock"] = lk
        go.wait(2)

    thread_mod.start_new_thread(f, ())
    assert wait_until(lambda: "lock" in box)
    lk = box["lock"]
    assert type(lk) is thread_mod.LockType
    assert box["locked_at_birth"] is False
    assert lk.locked() is True
    assert lk.acquire(timeout=0.02) is False
    go.set()
    assert lk.acquire(timeout=2) is True  # released when the thread state dies
    lk.release()


@needs_set_sentinel
def test_set_sentinel_returns_new_unlocked_lock(thread_mod):
    a, b = thread_mod._set_sentinel(), thread_mod._set_sentinel()
    assert a is not b
    assert a.locked() is False and b.locked() is False


# ---------------------------------------------------------------------------
# stack_size
# ---------------------------------------------------------------------------
@pytest.fixture
def restore_stack(thread_mod):
    old = thread_mod.stack_size()
    try:
        yield
    finally:
        thread_mod.stack_size(old)


def test_stack_size_semantics(thread_mod, restore_stack):
    thread_mod.stack_size()  # reset; the previous value is whatever it was
    assert thread_mod.stack_size() == 0
    assert thread_mod.stack_size(1 << 20) == 0
    # 1 << 17: above every version's minimum (32 KiB; 3.14+: the interpreter's own)
    assert thread_mod.stack_size(1 << 17) == 1 << 20
    assert thread_mod.stack_size(0) == 1 << 17
    assert thread_mod.stack_size(1 << 20) == 0
    # no-arg call returns the previous size AND resets it to 0
    assert thread_mod.stack_size() == 1 << 20
    assert thread_mod.stack_size() == 0
    # failed calls leave it unchanged
    thread_mod.stack_size(1 << 20)
    for bad in (-1, 1, 32767, None, 1.5, 2**64, "x"):
        with pytest.raises((ValueError, TypeError, OverflowError)):
            thread_mod.stack_size(bad)
    assert thread_mod.stack_size(0) == 1 << 20


def test_thread_with_custom_stack_size_runs(thread_mod, restore_stack):
    thread_mod.stack_size(1 << 18)

    def deep(n):
        return 0 if n == 0 else 1 + deep(n - 1)

    assert run_in_thread(thread_mod, deep, 50) == 50


# ---------------------------------------------------------------------------
# interrupt_main
# ---------------------------------------------------------------------------
@pytest.fixture
def restore_sigint():
    old = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _spin():
    for _ in range(1000):
        pass


def test_interrupt_main_default_handler_raises_keyboardinterrupt(thread_mod, restore_sigint):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with pytest.raises(KeyboardInterrupt):
        thread_mod.interrupt_main()
        _spin()
    with pytest.raises(KeyboardInterrupt):
        thread_mod.interrupt_main(signal.SIGINT)
        _spin()


def test_interrupt_main_from_other_thread(thread_mod, restore_sigint):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    done = threading.Event()

    def f():
        thread_mod.interrupt_main()
        done.set()

    with pytest.raises(KeyboardInterrupt):
        thread_mod.start_new_thread(f, ())
        assert done.wait(2)
        _spin()


@pytest.mark.parametrize("handler", ["SIG_IGN", "SIG_DFL"])
def test_interrupt_main_ignored_or_default_does_nothing(thread_mod, restore_sigint, handler):
    signal.signal(signal.SIGINT, getattr(signal, handler))
    assert thread_mod.interrupt_main() is None
    _spin()
    assert thread_mod.interrupt_main(signal.SIGINT) is None
    _spin()


def test_interrupt_main_custom_handler_other_signal(thread_mod):
    seen = []
    old = signal.signal(signal.SIGUSR1, lambda s, f: seen.append(s))
    try:
        assert thread_mod.interrupt_main(signal.SIGUSR1) is None
        _spin()
        assert seen == [signal.SIGUSR1]
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_interrupt_main_valid_signal_with_sig_dfl_is_noop(thread_mod):
    assert signal.getsignal(64) == signal.SIG_DFL
    assert thread_mod.interrupt_main(64) is None  # SIGRTMAX, not delivered
    assert thread_mod.interrupt_main(True) is None  # SIGHUP (default) too
    _spin()


# ---------------------------------------------------------------------------
# _local
# ---------------------------------------------------------------------------
def test_local_per_thread(thread_mod):
    loc = thread_mod._local()
    loc.x = 1
    assert loc.__dict__ == {"x": 1}

    def inner():
        before = hasattr(loc, "x")
        loc.x = 2
        return before, loc.x, dict(loc.__dict__)

    assert run_in_thread(thread_mod, inner) == (False, 2, {"x": 2})
    assert loc.x == 1
    del loc.x
    assert not hasattr(loc, "x")


def test_local_subclass_init_runs_per_thread(thread_mod):
    calls = []

    class Loc(thread_mod._local):
        def __init__(self, a, b=0):
            calls.append((a, b, thread_mod.get_ident()))
            self.a = a
            self.b = b

    loc = Loc(1, b=2)
    assert (loc.a, loc.b) == (1, 2)
    other = run_in_thread(thread_mod, lambda: (loc.a, loc.b, thread_mod.get_ident()))
    assert other[:2] == (1, 2)
    assert [c[:2] for c in calls] == [(1, 2), (1, 2)]
    assert calls[1][2] == other[2] != calls[0][2]


def test_local_subclass_init_once_in_constructing_thread(thread_mod):
    calls = []

    class Loc(thread_mod._local):
        def __init__(self, a):
            calls.append(a)
            self.a = a

    loc = Loc(1)
    assert calls == [1]
    assert loc.a == 1
    loc.b = 2
    assert loc.__dict__ == {"a": 1, "b": 2}
    assert calls == [1]  # attribute access must not re-run __init__


def test_local_subclass_slots_and_class_attrs(thread_mod):
    class Loc(thread_mod._local):
        shared = "cls"

    loc = Loc()
    assert loc.shared == "cls"
    loc.shared = "inst"
    assert run_in_thread(thread_mod, lambda: loc.shared) == "cls"
    assert loc.shared == "inst"


# ---------------------------------------------------------------------------
# _excepthook / _ExceptHookArgs
# ---------------------------------------------------------------------------
def test_excepthookargs_structseq(thread_mod):
    E = thread_mod._ExceptHookArgs
    e = E((1, 2, 3, 4))
    assert (e.exc_type, e.exc_value, e.exc_traceback, e.thread) == (1, 2, 3, 4)
    assert tuple(e) == (1, 2, 3, 4) and len(e) == 4 and isinstance(e, tuple)
    assert (E.n_fields, E.n_sequence_fields, E.n_unnamed_fields) == (4, 4, 0)
    assert E.__match_args__ == ("exc_type", "exc_value", "exc_traceback", "thread")
    assert repr(e) == ("_thread._ExceptHookArgs(exc_type=1, exc_value=2, "
                       "exc_traceback=3, thread=4)")
    assert E.__doc__ == STOCK._ExceptHookArgs.__doc__


def _err():
    try:
        1 / 0  # noqa: B018 -- raises
    except ZeroDivisionError as e:
        return e


class _NamedThread:
    name = "worker-7"


class _BadName:
    @property
    def name(self):
        raise KeyError("no name")


EXCEPTHOOK_CASES = {
    "traceback-no-thread": lambda: (ZeroDivisionError, _err(), _err().__traceback__, None),
    "no-traceback": lambda: (ValueError, ValueError("boom"), None, None),
    "value-None": lambda: (ValueError, None, None, None),
    "int-args": lambda: (1, 2, 3, 4),
    "named-thread": lambda: (ValueError, ValueError("boom"), None, _NamedThread()),
    "thread-current": lambda: (ValueError, ValueError("boom"), None, threading.current_thread()),
    "thread-bad-name": lambda: (ValueError, ValueError("boom"), None, _BadName()),
    "systemexit": lambda: (SystemExit, SystemExit(2), None, None),
}


def _run_hook(mod, args):
    err = io.StringIO()
    old = sys.stderr
    sys.stderr = err
    try:
        try:
            res = ("ok", mod._excepthook(mod._ExceptHookArgs(args)))
        except Exception as exc:
            res = ("raise", type(exc), str(exc))
    finally:
        sys.stderr = old
    return res, err.getvalue()


@pytest.mark.parametrize("case", list(EXCEPTHOOK_CASES))
def test_excepthook_output_matches_stock(thread_mod, case):
    args = EXCEPTHOOK_CASES[case]()
    expected = _run_hook(STOCK, args)
    got = _run_hook(thread_mod, args)
    assert got == expected


def test_excepthook_literal_output(thread_mod):
    ident = thread_mod.get_ident()
    res, out = _run_hook(thread_mod, (ValueError, ValueError("boom"), None, None))
    assert res == ("ok", None)
    assert out == f"Exception in thread {ident}:\nValueError: boom\n"
    res, out = _run_hook(thread_mod, (ValueError, ValueError("x"), None, _NamedThread()))
    assert out == "Exception in thread worker-7:\nValueError: x\n"
    res, out = _run_hook(thread_mod, (SystemExit, SystemExit(), None, None))
    assert (res, out) == (("ok", None), "")


def test_excepthook_stderr_none_uses_thread_stderr(thread_mod):
    class T:
        name = "t"
        _stderr = io.StringIO()

    old = sys.stderr
    sys.stderr = None
    try:
        thread_mod._excepthook(thread_mod._ExceptHookArgs(
            (ValueError, ValueError("x"), None, T)))
        # and with no usable stream at all it is silent
        assert thread_mod._excepthook(thread_mod._ExceptHookArgs(
            (ValueError, ValueError("x"), None, None))) is None
    finally:
        sys.stderr = old
    if sys.version_info >= (3, 13):
        # 3.13+ prints the header to the thread's stream and the exception
        # through traceback._print_exception_bltin, to sys.__stderr__
        assert T._stderr.getvalue() == "Exception in thread t:\n"
    else:
        assert T._stderr.getvalue() == "Exception in thread t:\nValueError: x\n"


def test_excepthook_rejects_foreign_args_like_stock(thread_mod):
    """Stock only accepts its own _ExceptHookArgs type."""
    with pytest.raises(TypeError) as ei:
        thread_mod._excepthook((ValueError, ValueError("x"), None, None))
    assert str(ei.value) == "_thread.excepthook argument type must be ExceptHookArgs"
