"""Hostile-argument table for every public callable of ``_thread``.

Each row is run on a fresh target object twice: once on stock CPython 3.11
``_thread`` (to obtain the expected outcome) and once on the module under
test (``thread_mod``: "stock" or "rsthread").  The outcome -- exception type
and exact message, or the returned value -- must be identical, and the target
object's observable state afterwards must be identical too.  When the call
raised, the state must also be exactly what it was before the call (a failed
call corrupts nothing).

Rows that carry a literal expectation pin the stock behaviour as well, so a
change in stock CPython would be noticed (the "stock" parametrization checks
the literal against the real stock module). The literals are CPython 3.11's:
on other versions only the running version's stock gives the expectation,
and a row for a name that version's stock lacks is skipped (reported).
"""
import _thread as STOCK
import math
import signal
import sys
import threading

import pytest

try:  # the lead installs pytest-timeout into the project venv
    import pytest_timeout  # noqa: F401

    pytestmark = pytest.mark.timeout(10)
except ImportError:  # pragma: no cover
    pass


# --------------------------------------------------------------------------
# hostile argument helpers (module level so their names are stable)
# --------------------------------------------------------------------------
class BadIndex:
    def __index__(self):
        raise ZeroDivisionError("__index__ exploded")


class WrongIndex:
    def __index__(self):
        return "x"


class BadFloat:
    def __float__(self):
        raise ZeroDivisionError("__float__ exploded")


class WrongFloat:
    def __float__(self):
        return "x"


class GoodIndex:
    def __index__(self):
        return 1


class GoodFloat:
    def __float__(self):
        return 0.0


class BadBool:
    def __bool__(self):
        raise ZeroDivisionError("__bool__ exploded")


class IntSub(int):
    pass


class FloatSub(float):
    pass


class TupleSub(tuple):
    pass


class DictSub(dict):
    pass


def _noop(*args, **kwargs):
    return None


HUGE = 10**100
NAN = math.nan
INF = math.inf

SIGNAL_RANGE = "signal number out of range"
NOT_INT = "'{}' object cannot be interpreted as an integer"
C_LONG = "Python int too large to convert to C long"
INT_MAX = "signed integer is greater than maximum"
INT_MIN = "signed integer is less than minimum"
C_SSIZE = "Python int too large to convert to C ssize_t"
PYTIME = "timestamp too large to convert to C _PyTime_t"
TIME_T = "timestamp out of range for platform time_t"
NAN_MSG = "Invalid value NaN (not a number)"
NONBLOCK = "can't specify a timeout for a non-blocking call"
POSITIVE = "timeout value must be positive"
UNLOCKED = "release unlocked lock"
UNACQUIRED = "cannot release un-acquired lock"
IDX_RAISE = (ZeroDivisionError, "__index__ exploded")
IDX_WRONG = (TypeError, "__index__ returned non-int (type str)")


def TE(msg):
    return (TypeError, msg)


def VE(msg):
    return (ValueError, msg)


def OE(msg):
    return (OverflowError, msg)


def RE(msg):
    return (RuntimeError, msg)


def NI(tname):
    return TE(NOT_INT.format(tname))


OK = object()  # literal marker: "stock accepts this call"


# --------------------------------------------------------------------------
# targets: fresh object + state snapshot
# --------------------------------------------------------------------------
STACK_PROBE = 1 << 20  # a non-default stack size so a silent reset is visible


def _rlock_state(r):
    owned = r._is_owned()
    count = r._recursion_count()
    # Probe: can this thread take it without blocking?  (Undone at once.)
    probe = r.acquire(False)
    if probe:
        r.release()
    return ("rlock", owned, count, probe)


class Target:
    """Creates the object a row is applied to and snapshots its state."""

    def __init__(self, kind, mod):
        self.kind = kind
        self.mod = mod
        self._cleanup = []
        if kind == "module":
            self.saved_stack = mod.stack_size(STACK_PROBE)
            self.obj = mod
            # Any SIGINT "delivered" by a wrongly accepted interrupt_main()
            # argument is recorded instead of aborting the pytest run.
            self.sigints = []
            self.saved_sigint = signal.signal(
                signal.SIGINT, lambda signum, frame: self.sigints.append(signum))
            self._cleanup.append(
                lambda: signal.signal(signal.SIGINT, self.saved_sigint))
        elif kind == "lock":
            self.obj = mod.allocate_lock()
        elif kind == "locked":
            self.obj = mod.allocate_lock()
            self.obj.acquire()
            # Watchdog: if an implementation wrongly *accepts* a hostile
            # argument and blocks on the held lock, release it so the test
            # fails with a mismatch instead of hanging.
            self.fired = []
            lk = self.obj

            def watchdog():
                if lk.locked():
                    self.fired.append(True)
                    try:
                        lk.release()
                    except Exception:
                        pass

            t = threading.Timer(2.0, watchdog)
            t.daemon = True
            t.start()
            self._cleanup.append(t.cancel)
        elif kind == "rlock":
            self.obj = mod.RLock()
        elif kind == "rlock2":
            self.obj = mod.RLock()
            self.obj.acquire()
            self.obj.acquire()
        elif kind == "rlock_other":
            # owned (count 1) by a helper thread for the whole row
            self.obj = mod.RLock()
            got = threading.Event()
            done = threading.Event()
            r = self.obj

            def holder():
                r.acquire()
                got.set()
                done.wait(3)
                try:
                    r.release()
                except RuntimeError:
                    pass

            t = threading.Thread(target=holder, daemon=True)
            t.start()
            assert got.wait(2)
            self._cleanup.append(lambda: (done.set(), t.join(2)))
        else:  # pragma: no cover
            raise AssertionError(kind)

    def state(self):
        o = self.obj
        if self.kind == "module":
            cur = self.mod.stack_size()  # NB: resets to 0 and returns previous
            self.mod.stack_size(cur)  # put it back
            for _ in range(3):  # let a pending Python signal handler run
                pass
            return ("stack_size", cur, tuple(self.sigints))
        if self.kind in ("lock", "locked"):
            return ("lock", o.locked())
        return _rlock_state(o)

    def close(self):
        for fn in self._cleanup:
            fn()
        if self.kind == "module":
            self.mod.stack_size(self.saved_stack)


def _normalize(value, mod):
    """Make a returned value comparable across the two modules."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return (type(value).__name__, value)
    if isinstance(value, tuple) and type(value) is tuple:
        return ("tuple", tuple(_normalize(v, mod) for v in value))
    # objects created by the module: compare the type's name and repr shape
    tname = type(value).__name__
    if isinstance(value, tuple):  # structseq
        return ("structseq", tname, tuple(_normalize(v, mod) for v in value))
    return ("object", tname)


def run_row(row, mod):
    """Returns (outcome, state_before, state_after, watchdog_fired)."""
    target = Target(row.target, mod)
    try:
        before = target.state()
        try:
            value = row.call(target.obj, mod)
        except Exception as exc:
            outcome = ("raise", type(exc), str(exc))
        else:
            outcome = ("ok", _normalize(value, mod))
        after = target.state()
        fired = bool(getattr(target, "fired", None))
    finally:
        target.close()
    return outcome, before, after, fired


class Row:
    def __init__(self, rid, target, call, literal=None):
        self.id = rid
        self.target = target
        self.call = call
        self.literal = literal


ROWS = []


def row(rid, target, call, literal=None):
    ROWS.append(Row(rid, target, call, literal))


# --------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------
# Values for the ``blocking`` parameter (parsed as a C int via __index__).
BLOCKING_BAD = [
    ("None", None, NI("NoneType")),
    ("str", "1", NI("str")),
    ("bytes", b"x", NI("bytes")),
    ("list", [], NI("list")),
    ("nan", NAN, NI("float")),
    ("inf", INF, NI("float")),
    ("-inf", -INF, NI("float")),
    ("-0.0", -0.0, NI("float")),
    ("0.5", 0.5, NI("float")),
    ("FloatSub", FloatSub(1.0), NI("FloatSub")),
    ("GoodFloat", GoodFloat(), NI("GoodFloat")),
    ("BadFloat", BadFloat(), NI("BadFloat")),
    ("WrongFloat", WrongFloat(), NI("WrongFloat")),
    ("BadBool", BadBool(), NI("BadBool")),
    ("huge", HUGE, OE(C_LONG)),
    ("-huge", -HUGE, OE(C_LONG)),
    ("2**63", 2**63, OE(C_LONG)),
    ("2**64", 2**64, OE(C_LONG)),
    ("-2**63-1", -(2**63) - 1, OE(C_LONG)),
    ("2**31", 2**31, OE(INT_MAX)),
    ("2**63-1", 2**63 - 1, OE(INT_MAX)),
    ("-2**31-1", -(2**31) - 1, OE(INT_MIN)),
    ("BadIndex", BadIndex(), IDX_RAISE),
    ("WrongIndex", WrongIndex(), IDX_WRONG),
]
BLOCKING_OK = [
    ("True", True), ("False", False), ("0", 0), ("1", 1), ("-1", -1), ("-2", -2),
    ("2**31-1", 2**31 - 1), ("-2**31", -(2**31)), ("IntSub", IntSub(1)),
    ("GoodIndex", GoodIndex()),
]

# Values for ``timeout`` (blocking=True).  Parsed by _PyTime_FromSecondsObject.
TIMEOUT_BAD = [
    ("None", None, NI("NoneType")),
    ("str", "1", NI("str")),
    ("bytes", b"x", NI("bytes")),
    ("list", [], NI("list")),
    ("nan", NAN, VE(NAN_MSG)),
    ("-nan", -NAN, VE(NAN_MSG)),
    ("inf", INF, OE(TIME_T)),
    ("-inf", -INF, OE(TIME_T)),
    ("1e300", 1e300, OE(TIME_T)),
    ("-1e300", -1e300, OE(TIME_T)),
    ("TIMEOUT_MAX+1", STOCK.TIMEOUT_MAX + 1, OE(TIME_T)),
    ("-TIMEOUT_MAX-1", -STOCK.TIMEOUT_MAX - 1, OE(TIME_T)),
    ("huge", HUGE, OE(PYTIME)),
    ("-huge", -HUGE, OE(PYTIME)),
    ("2**63", 2**63, OE(PYTIME)),
    ("2**64", 2**64, OE(PYTIME)),
    ("int_TIMEOUT_MAX+1", int(STOCK.TIMEOUT_MAX) + 1, OE(PYTIME)),
    ("-2", -2, VE(POSITIVE)),
    ("-2.0", -2.0, VE(POSITIVE)),
    ("-0.5", -0.5, VE(POSITIVE)),
    ("-1e-10", -1e-10, VE(POSITIVE)),
    ("-1.0000000001", -1.0000000001, VE(POSITIVE)),
    ("-TIMEOUT_MAX", -STOCK.TIMEOUT_MAX, VE(POSITIVE)),
    ("BadIndex", BadIndex(), IDX_RAISE),
    ("WrongIndex", WrongIndex(), IDX_WRONG),
    ("BadFloat", BadFloat(), NI("BadFloat")),
    ("WrongFloat", WrongFloat(), NI("WrongFloat")),
    ("GoodFloat", GoodFloat(), NI("GoodFloat")),
    ("BadBool", BadBool(), NI("BadBool")),
]
# accepted by stock; on an unlocked lock they return True immediately
TIMEOUT_OK = [
    ("-1", -1), ("-1.0", -1.0), ("-0.9999999999", -0.9999999999), ("-0.0", -0.0),
    ("0", 0), ("0.0", 0.0), ("1e-10", 1e-10), ("0.5", 0.5), ("True", True), ("False", False),
    ("IntSub", IntSub(0)), ("FloatSub", FloatSub(0.25)), ("GoodIndex", GoodIndex()),
    ("TIMEOUT_MAX", STOCK.TIMEOUT_MAX), ("TIMEOUT_MAX+0.5", STOCK.TIMEOUT_MAX + 0.5),
    ("int_TIMEOUT_MAX", int(STOCK.TIMEOUT_MAX)),
]
# second positional argument with blocking=False
NONBLOCK_TIMEOUT = [
    ("1", 1, VE(NONBLOCK)), ("0", 0, VE(NONBLOCK)), ("0.0", 0.0, VE(NONBLOCK)),
    ("-0.0", -0.0, VE(NONBLOCK)), ("-2", -2, VE(NONBLOCK)), ("True", True, VE(NONBLOCK)),
    ("-1e-10", -1e-10, VE(NONBLOCK)), ("0.5", 0.5, VE(NONBLOCK)),
    ("nan", NAN, VE(NAN_MSG)), ("inf", INF, OE(TIME_T)), ("huge", HUGE, OE(PYTIME)),
    ("None", None, NI("NoneType")), ("str", "1", NI("str")),
    ("BadIndex", BadIndex(), IDX_RAISE),
    ("-1", -1, OK), ("-1.0", -1.0, OK), ("-0.9999999999", -0.9999999999, OK),
]


def _acquire_rows(prefix, target, meth, is_rlock):
    # positional blocking
    for name, v, lit in BLOCKING_BAD:
        row(f"{prefix}({name})", target, lambda o, m, v=v: getattr(o, meth)(v), lit)
        row(f"{prefix}(blocking={name})", target,
            lambda o, m, v=v: getattr(o, meth)(blocking=v), lit)
    # timeout keyword
    for name, v, lit in TIMEOUT_BAD:
        row(f"{prefix}(timeout={name})", target,
            lambda o, m, v=v: getattr(o, meth)(timeout=v), lit)
        row(f"{prefix}(True, {name})", target, lambda o, m, v=v: getattr(o, meth)(True, v), lit)
    # non-blocking with a timeout
    for name, v, lit in NONBLOCK_TIMEOUT:
        row(f"{prefix}(False, {name})", target,
            lambda o, m, v=v: getattr(o, meth)(False, v), lit)
        row(f"{prefix}(blocking=False, timeout={name})", target,
            lambda o, m, v=v: getattr(o, meth)(blocking=False, timeout=v), lit)
    # bad blocking takes precedence over bad timeout (parse order)
    row(f"{prefix}(None, nan)", target, lambda o, m: getattr(o, meth)(None, NAN), NI("NoneType"))
    row(f"{prefix}(blocking=BadIndex, timeout=None)", target,
        lambda o, m: getattr(o, meth)(blocking=BadIndex(), timeout=None), IDX_RAISE)
    # argument-count / keyword errors
    row(f"{prefix}(1, 2, 3)", target, lambda o, m: getattr(o, meth)(1, 2, 3),
        TE("acquire() takes at most 2 arguments (3 given)"))
    row(f"{prefix}(True, -1, timeout=1)", target,
        lambda o, m: getattr(o, meth)(True, -1, timeout=1),
        TE("acquire() takes at most 2 arguments (3 given)"))
    row(f"{prefix}(foo=1)", target, lambda o, m: getattr(o, meth)(foo=1),
        TE("'foo' is an invalid keyword argument for acquire()"))
    row(f"{prefix}(True, foo=1)", target, lambda o, m: getattr(o, meth)(True, foo=1),
        TE("'foo' is an invalid keyword argument for acquire()"))
    row(f"{prefix}(blocking=True, timeout=-1, x=1)", target,
        lambda o, m: getattr(o, meth)(blocking=True, timeout=-1, x=1),
        TE("acquire() takes at most 2 keyword arguments (3 given)"))
    row(f"{prefix}(True, blocking=True)", target,
        lambda o, m: getattr(o, meth)(True, blocking=True),
        TE("argument for acquire() given by name ('blocking') and position (1)"))
    row(f"{prefix}(True, -1, timeout=-1)", target,
        lambda o, m: getattr(o, meth)(True, -1, timeout=-1),
        TE("acquire() takes at most 2 arguments (3 given)"))


# ---- lock.acquire / acquire_lock / __enter__ on an unlocked lock ----------
for meth in ("acquire", "acquire_lock", "__enter__"):
    _acquire_rows(f"lock.{meth}", "lock", meth, False)
    for name, v in BLOCKING_OK:
        row(f"lock.{meth}({name})", "lock", lambda o, m, v=v, meth=meth: getattr(o, meth)(v), OK)
    for name, v in TIMEOUT_OK:
        row(f"lock.{meth}(timeout={name})", "lock",
            lambda o, m, v=v, meth=meth: getattr(o, meth)(timeout=v), OK)
    row(f"lock.{meth}()", "lock", lambda o, m, meth=meth: getattr(o, meth)(), OK)
    row(f"lock.{meth}(timeout=0.5, blocking=True)", "lock",
        lambda o, m, meth=meth: getattr(o, meth)(timeout=0.5, blocking=True), OK)

# ---- lock.acquire on a *held* lock: errors must not release it; the
#      non-blocking forms must return False -----------------------------------
if sys.version_info[:2] == (3, 11):
    for name, v, lit in BLOCKING_BAD:
        row(f"locked.acquire({name})", "locked", lambda o, m, v=v: o.acquire(v), lit)
else:
    # From 3.12 `blocking` is a truth value: a truthy one blocks on a held lock
    # (stock too), so the row gives a zero timeout. What is checked is the same:
    # the value is parsed as stock parses it, and a failure releases nothing.
    for name, v, lit in BLOCKING_BAD:
        row(f"locked.acquire({name}, 0)", "locked", lambda o, m, v=v: o.acquire(v, 0), lit)
for name, v, lit in TIMEOUT_BAD:
    row(f"locked.acquire(timeout={name})", "locked", lambda o, m, v=v: o.acquire(timeout=v), lit)
for name, v, lit in NONBLOCK_TIMEOUT:
    if lit is not OK:
        row(f"locked.acquire(False, {name})", "locked", lambda o, m, v=v: o.acquire(False, v), lit)
for name, call in [
    ("acquire(False)", lambda o, m: o.acquire(False)),
    ("acquire(0)", lambda o, m: o.acquire(0)),
    ("acquire(blocking=False)", lambda o, m: o.acquire(blocking=False)),
    ("acquire(False, -1)", lambda o, m: o.acquire(False, -1)),
    ("acquire(timeout=0)", lambda o, m: o.acquire(timeout=0)),
    ("acquire(timeout=-0.0)", lambda o, m: o.acquire(timeout=-0.0)),
    ("acquire(timeout=1e-10)", lambda o, m: o.acquire(timeout=1e-10)),
    ("acquire(True, 0.01)", lambda o, m: o.acquire(True, 0.01)),
    ("acquire_lock(0)", lambda o, m: o.acquire_lock(0)),
    ("__enter__(False)", lambda o, m: o.__enter__(False)),
]:
    row(f"locked.{name}", "locked", call, OK)
row("locked.acquire(1, 2, 3)", "locked", lambda o, m: o.acquire(1, 2, 3),
    TE("acquire() takes at most 2 arguments (3 given)"))
row("locked.acquire(foo=1)", "locked", lambda o, m: o.acquire(foo=1),
    TE("'foo' is an invalid keyword argument for acquire()"))

# ---- lock: release / locked / __exit__ / _at_fork_reinit ------------------
for meth in ("release", "release_lock"):
    row(f"lock.{meth}()", "lock", lambda o, m, meth=meth: getattr(o, meth)(), RE(UNLOCKED))
    row(f"locked.{meth}()", "locked", lambda o, m, meth=meth: getattr(o, meth)(), OK)
    for tgt in ("lock", "locked"):
        row(f"{tgt}.{meth}(1)", tgt, lambda o, m, meth=meth: getattr(o, meth)(1),
            TE(f"lock.{meth}() takes no arguments (1 given)"))
        row(f"{tgt}.{meth}(None)", tgt, lambda o, m, meth=meth: getattr(o, meth)(None),
            TE(f"lock.{meth}() takes no arguments (1 given)"))
        row(f"{tgt}.{meth}(x=1)", tgt, lambda o, m, meth=meth: getattr(o, meth)(x=1),
            TE(f"lock.{meth}() takes no keyword arguments"))
for meth in ("locked", "locked_lock"):
    for tgt in ("lock", "locked"):
        row(f"{tgt}.{meth}()", tgt, lambda o, m, meth=meth: getattr(o, meth)(), OK)
        row(f"{tgt}.{meth}(1)", tgt, lambda o, m, meth=meth: getattr(o, meth)(1),
            TE(f"lock.{meth}() takes no arguments (1 given)"))
        row(f"{tgt}.{meth}(1, 2)", tgt, lambda o, m, meth=meth: getattr(o, meth)(1, 2),
            TE(f"lock.{meth}() takes no arguments (2 given)"))
        row(f"{tgt}.{meth}(x=1)", tgt, lambda o, m, meth=meth: getattr(o, meth)(x=1),
            TE(f"lock.{meth}() takes no keyword arguments"))
row("lock.__exit__()", "lock", lambda o, m: o.__exit__(), RE(UNLOCKED))
row("lock.__exit__(None, None, None)", "lock", lambda o, m: o.__exit__(None, None, None),
    RE(UNLOCKED))
row("locked.__exit__()", "locked", lambda o, m: o.__exit__(), OK)
row("locked.__exit__(None, None, None)", "locked", lambda o, m: o.__exit__(None, None, None), OK)
row("locked.__exit__(1, 2, 3, 4)", "locked", lambda o, m: o.__exit__(1, 2, 3, 4), OK)
row("locked.__exit__(x=1)", "locked", lambda o, m: o.__exit__(x=1),
    TE("lock.__exit__() takes no keyword arguments"))
row("lock.__exit__(x=1)", "lock", lambda o, m: o.__exit__(x=1),
    TE("lock.__exit__() takes no keyword arguments"))
for tgt in ("lock", "locked"):
    row(f"{tgt}._at_fork_reinit(1)", tgt, lambda o, m: o._at_fork_reinit(1),
        TE("lock._at_fork_reinit() takes no arguments (1 given)"))
    row(f"{tgt}._at_fork_reinit(x=1)", tgt, lambda o, m: o._at_fork_reinit(x=1),
        TE("lock._at_fork_reinit() takes no keyword arguments"))
    row(f"{tgt}._at_fork_reinit()", tgt, lambda o, m: o._at_fork_reinit(), OK)

# ---- lock objects: attributes, pickling, comparisons, unbound descriptors --
row("lock.x = 1", "lock", lambda o, m: setattr(o, "x", 1),
    (AttributeError, "'_thread.lock' object has no attribute 'x'"))
row("lock.acquire = 1", "lock", lambda o, m: setattr(o, "acquire", 1),
    (AttributeError, "'_thread.lock' object attribute 'acquire' is read-only"))
row("del lock.release", "lock", lambda o, m: delattr(o, "release"),
    (AttributeError, "'_thread.lock' object attribute 'release' is read-only"))
row("lock.__dict__", "lock", lambda o, m: o.__dict__,
    (AttributeError, "'_thread.lock' object has no attribute '__dict__'"))
row("pickle(lock)", "locked", lambda o, m: __import__("pickle").dumps(o),
    TE("cannot pickle '_thread.lock' object"))
row("copy(lock)", "lock", lambda o, m: __import__("copy").copy(o),
    TE("cannot pickle '_thread.lock' object"))
row("lock < lock", "lock", lambda o, m: o < o,
    TE("'<' not supported between instances of '_thread.lock' and '_thread.lock'"))
row("lock == other", "lock", lambda o, m: o == m.allocate_lock(), OK)
row("LockType.acquire(None)", "lock", lambda o, m: type(o).acquire(None),
    TE("descriptor 'acquire' for '_thread.lock' objects doesn't apply to a 'NoneType' object"))
row("LockType.release(RLock())", "locked", lambda o, m: type(o).release(m.RLock()),
    TE("descriptor 'release' for '_thread.lock' objects doesn't apply to a "
       "'_thread.RLock' object"))
row("LockType.locked()", "lock", lambda o, m: type(o).locked(),
    TE("unbound method lock.locked() needs an argument"))
row("LockType()", "module", lambda o, m: m.LockType(),
    TE("cannot create '_thread.lock' instances"))
row("LockType(1, x=2)", "module", lambda o, m: m.LockType(1, x=2),
    TE("cannot create '_thread.lock' instances"))
row("LockType.__new__(LockType)", "module", lambda o, m: m.LockType.__new__(m.LockType),
    TE("object.__new__(_thread.lock) is not safe, use _thread.lock.__new__()"))
row("subclass LockType", "module", lambda o, m: type("X", (m.LockType,), {}),
    TE("type '_thread.lock' is not an acceptable base type"))

# ---- RLock ------------------------------------------------------------------
for meth in ("acquire", "__enter__"):
    for tgt in ("rlock", "rlock2"):
        _acquire_rows(f"{tgt}.{meth}", tgt, meth, True)
        for name, v in BLOCKING_OK:
            row(f"{tgt}.{meth}({name})", tgt,
                lambda o, m, v=v, meth=meth: getattr(o, meth)(v), OK)
        for name, v in TIMEOUT_OK:
            row(f"{tgt}.{meth}(timeout={name})", tgt,
                lambda o, m, v=v, meth=meth: getattr(o, meth)(timeout=v), OK)
for name, v, lit in TIMEOUT_BAD:
    row(f"rlock_other.acquire(timeout={name})", "rlock_other",
        lambda o, m, v=v: o.acquire(timeout=v), lit)
for name, v, lit in BLOCKING_BAD:
    row(f"rlock_other.acquire({name})", "rlock_other", lambda o, m, v=v: o.acquire(v), lit)
for name, call in [
    ("acquire(False)", lambda o, m: o.acquire(False)),
    ("acquire(timeout=0)", lambda o, m: o.acquire(timeout=0)),
    ("acquire(True, 0.01)", lambda o, m: o.acquire(True, 0.01)),
    ("acquire(blocking=False, timeout=-1)", lambda o, m: o.acquire(blocking=False, timeout=-1)),
]:
    row(f"rlock_other.{name}", "rlock_other", call, OK)
row("rlock_other.acquire(False, 1)", "rlock_other", lambda o, m: o.acquire(False, 1),
    VE(NONBLOCK))

for tgt, lit in (("rlock", RE(UNACQUIRED)), ("rlock2", OK), ("rlock_other", RE(UNACQUIRED))):
    row(f"{tgt}.release()", tgt, lambda o, m: o.release(), lit)
    row(f"{tgt}.__exit__()", tgt, lambda o, m: o.__exit__(), lit)
    row(f"{tgt}.__exit__(None, None, None)", tgt, lambda o, m: o.__exit__(None, None, None), lit)
    row(f"{tgt}.__exit__(1, 2, 3, 4, 5)", tgt, lambda o, m: o.__exit__(1, 2, 3, 4, 5), lit)
for tgt in ("rlock", "rlock2", "rlock_other"):
    for meth in ("release", "_is_owned", "_recursion_count", "_release_save",
                 "_at_fork_reinit"):
        row(f"{tgt}.{meth}(1)", tgt, lambda o, m, meth=meth: getattr(o, meth)(1),
            TE(f"RLock.{meth}() takes no arguments (1 given)"))
        row(f"{tgt}.{meth}(None, None)", tgt,
            lambda o, m, meth=meth: getattr(o, meth)(None, None),
            TE(f"RLock.{meth}() takes no arguments (2 given)"))
        row(f"{tgt}.{meth}(x=1)", tgt, lambda o, m, meth=meth: getattr(o, meth)(x=1),
            TE(f"RLock.{meth}() takes no keyword arguments"))
    row(f"{tgt}.__exit__(x=1)", tgt, lambda o, m: o.__exit__(x=1),
        TE("RLock.__exit__() takes no keyword arguments"))
    row(f"{tgt}._is_owned()", tgt, lambda o, m: o._is_owned(), OK)
    row(f"{tgt}._recursion_count()", tgt, lambda o, m: o._recursion_count(), OK)
    row(f"{tgt}._acquire_restore()", tgt, lambda o, m: o._acquire_restore(),
        TE("_acquire_restore() takes exactly 1 argument (0 given)"))
    row(f"{tgt}._acquire_restore((1, 1), 2)", tgt, lambda o, m: o._acquire_restore((1, 1), 2),
        TE("_acquire_restore() takes exactly 1 argument (2 given)"))
    row(f"{tgt}._acquire_restore(x=1)", tgt, lambda o, m: o._acquire_restore(x=1),
        TE("RLock._acquire_restore() takes no keyword arguments"))
# Sequence-parse failures only on an unowned RLock: on a held one, an
# implementation that acquired before parsing would deadlock instead of failing.
# (The state probe catches "acquired, then failed" on the unowned one.)
for tgt in ("rlock",):
    for name, v, lit in [
        ("None", None, TE("_acquire_restore() argument 1 must be 2-item sequence, not None")),
        ("1", 1, TE("_acquire_restore() argument 1 must be 2-item sequence, not int")),
        ("'ab'", "ab", TE("_acquire_restore() argument 1, item 0 must be int, not str")),
        ("(1,)", (1,), TE("_acquire_restore() argument 1 must be sequence of length 2, not 1")),
        ("(1,2,3)", (1, 2, 3),
         TE("_acquire_restore() argument 1 must be sequence of length 2, not 3")),
        ("(1,'x')", (1, "x"), TE("_acquire_restore() argument 1, item 1 must be int, not str")),
        ("('x',1)", ("x", 1), TE("_acquire_restore() argument 1, item 0 must be int, not str")),
        ("(1.0,1)", (1.0, 1), TE("_acquire_restore() argument 1, item 0 must be int, not float")),
        ("(1,1.5)", (1, 1.5), TE("_acquire_restore() argument 1, item 1 must be int, not float")),
        ("(BadIndex,1)", (BadIndex(), 1),
         TE("_acquire_restore() argument 1, item 0 must be int, not BadIndex")),
        ("(1,BadIndex)", (1, BadIndex()),
         TE("_acquire_restore() argument 1, item 1 must be int, not BadIndex")),
        ("(None,None)", (None, None),
         TE("_acquire_restore() argument 1, item 0 must be int, not None")),
    ]:
        row(f"{tgt}._acquire_restore({name})", tgt,
            lambda o, m, v=v: o._acquire_restore(v), lit)
row("rlock._release_save()", "rlock", lambda o, m: o._release_save(), RE(UNACQUIRED))
row("rlock2._release_save()", "rlock2", lambda o, m: o._release_save(), OK)
# Stock quirk: _release_save does not check the owner, only the count.
# (only the count is compared: the owner ident is the helper thread's)
row("rlock_other._release_save()", "rlock_other", lambda o, m: o._release_save()[0], OK)
# _acquire_restore with odd-but-parseable values ("k" format: no range check)
for name, v in [("(1, ident)", None), ("(-1, 1)", (-1, 1)), ("(2**64, 1)", (2**64, 1)),
                ("(1, -1)", (1, -1)), ("(1, 2**64)", (1, 2**64)), ("(0, 1)", (0, 1)),
                ("(1, 0)", (1, 0)), ("[3, ident]", None), ("TupleSub(2, ident)", None)]:
    if v is None:
        def call(o, m, name=name):
            ident = m.get_ident()
            if name.startswith("["):
                return o._acquire_restore([3, ident])
            if name.startswith("TupleSub"):
                return o._acquire_restore(TupleSub((2, ident)))
            return o._acquire_restore((1, ident))
    else:
        def call(o, m, v=v):
            return o._acquire_restore(v)
    row(f"rlock._acquire_restore{name}", "rlock", call, OK)
row("rlock.x = 1", "rlock", lambda o, m: setattr(o, "x", 1),
    (AttributeError, "'_thread.RLock' object has no attribute 'x'"))
row("pickle(rlock)", "rlock2", lambda o, m: __import__("pickle").dumps(o),
    TE("cannot pickle '_thread.RLock' object"))
row("RLock.acquire(lock)", "rlock", lambda o, m: type(o).acquire(m.allocate_lock()),
    TE("descriptor 'acquire' for '_thread.RLock' objects doesn't apply to a "
       "'_thread.lock' object"))
row("RLock.release(None)", "rlock2", lambda o, m: type(o).release(None),
    TE("descriptor 'release' for '_thread.RLock' objects doesn't apply to a "
       "'NoneType' object"))
row("RLock.__new__(int)", "module", lambda o, m: m.RLock.__new__(int),
    TE("_thread.RLock.__new__(int): int is not a subtype of _thread.RLock"))
row("RLock.__new__(RLock, 1, x=2)", "module", lambda o, m: m.RLock.__new__(m.RLock, 1, x=2), OK)
row("RLock(1, 2, x=3)", "module", lambda o, m: m.RLock(1, 2, x=3), OK)
row("RLock(None)", "module", lambda o, m: m.RLock(None), OK)

# ---- module-level functions --------------------------------------------------
for fname in ("allocate_lock", "allocate", "get_ident", "get_native_id", "_count",
              "_set_sentinel", "exit", "exit_thread"):
    row(f"{fname}(1)", "module", lambda o, m, f=fname: getattr(m, f)(1),
        TE(f"_thread.{fname}() takes no arguments (1 given)"))
    row(f"{fname}(None, None, None)", "module",
        lambda o, m, f=fname: getattr(m, f)(None, None, None),
        TE(f"_thread.{fname}() takes no arguments (3 given)"))
    row(f"{fname}(x=1)", "module", lambda o, m, f=fname: getattr(m, f)(x=1),
        TE(f"_thread.{fname}() takes no keyword arguments"))

# stack_size([size]) -- positional only, Py_ssize_t via __index__
for name, v, lit in [
    ("None", None, NI("NoneType")),
    ("str", "1", NI("str")),
    ("bytes", b"x", NI("bytes")),
    ("nan", NAN, NI("float")),
    ("inf", INF, NI("float")),
    ("1.5", 1.5, NI("float")),
    ("65536.0", 65536.0, NI("float")),
    ("FloatSub", FloatSub(65536.0), NI("FloatSub")),
    ("GoodFloat", GoodFloat(), NI("GoodFloat")),
    ("BadFloat", BadFloat(), NI("BadFloat")),
    ("True", True, VE("size not valid: 1 bytes")),
    ("1", 1, VE("size not valid: 1 bytes")),
    ("32767", 32767, VE("size not valid: 32767 bytes")),
    ("GoodIndex", GoodIndex(), VE("size not valid: 1 bytes")),
    ("-1", -1, VE("size must be 0 or a positive value")),
    ("-32768", -32768, VE("size must be 0 or a positive value")),
    ("-2**63", -(2**63), VE("size must be 0 or a positive value")),
    ("2**63", 2**63, OE(C_SSIZE)),
    ("2**64", 2**64, OE(C_SSIZE)),
    ("huge", HUGE, OE(C_SSIZE)),
    ("-huge", -HUGE, OE(C_SSIZE)),
    ("BadIndex", BadIndex(), IDX_RAISE),
    ("WrongIndex", WrongIndex(), IDX_WRONG),
    ("0", 0, OK),
    ("False", False, OK),
    ("32768", 32768, OK),
    ("40001", 40001, OK),
    ("IntSub", IntSub(65536), OK),
    ("2**31", 2**31, OK),
]:
    row(f"stack_size({name})", "module", lambda o, m, v=v: m.stack_size(v), lit)
row("stack_size(1, 2)", "module", lambda o, m: m.stack_size(1, 2),
    TE("stack_size() takes at most 1 argument (2 given)"))
row("stack_size(size=32768)", "module", lambda o, m: m.stack_size(size=32768),
    TE("stack_size() takes no keyword arguments"))
row("stack_size(x=1)", "module", lambda o, m: m.stack_size(x=1),
    TE("stack_size() takes no keyword arguments"))

# interrupt_main(signum=SIGINT, /) -- never with a live SIGINT here
for name, v, lit in [
    ("None", None, NI("NoneType")),
    ("str", "2", NI("str")),
    ("2.0", 2.0, NI("float")),
    ("nan", NAN, NI("float")),
    ("IntSub-float", FloatSub(2.0), NI("FloatSub")),
    ("0", 0, VE(SIGNAL_RANGE)),
    ("-1", -1, VE(SIGNAL_RANGE)),
    ("65", 65, VE(SIGNAL_RANGE)),
    ("1000", 1000, VE(SIGNAL_RANGE)),
    ("2**31-1", 2**31 - 1, VE(SIGNAL_RANGE)),
    ("-2**31", -(2**31), VE(SIGNAL_RANGE)),
    ("2**31", 2**31, OE(INT_MAX)),
    ("-2**31-1", -(2**31) - 1, OE(INT_MIN)),
    ("2**63-1", 2**63 - 1, OE(INT_MAX)),
    ("2**63", 2**63, OE(C_LONG)),
    ("2**64", 2**64, OE(C_LONG)),
    ("huge", HUGE, OE(C_LONG)),
    ("-huge", -HUGE, OE(C_LONG)),
    ("BadIndex", BadIndex(), IDX_RAISE),
    ("WrongIndex", WrongIndex(), IDX_WRONG),
    # (valid signal numbers are exercised in test_exact.py)
]:
    row(f"interrupt_main({name})", "module", lambda o, m, v=v: m.interrupt_main(v), lit)
row("interrupt_main(2, 3)", "module", lambda o, m: m.interrupt_main(2, 3),
    TE("signum() takes at most 1 argument (2 given)"))
row("interrupt_main(signum=2)", "module", lambda o, m: m.interrupt_main(signum=2),
    TE("interrupt_main() takes no keyword arguments"))
row("interrupt_main(x=3)", "module", lambda o, m: m.interrupt_main(x=3),
    TE("interrupt_main() takes no keyword arguments"))

# start_new_thread / start_new -- only failing calls here (no thread starts)
for fname in ("start_new_thread", "start_new"):
    for name, args, lit in [
        ("()", (), TE("start_new_thread expected at least 2 arguments, got 0")),
        ("(f,)", (_noop,), TE("start_new_thread expected at least 2 arguments, got 1")),
        ("(f, (), {}, 4)", (_noop, (), {}, 4),
         TE("start_new_thread expected at most 3 arguments, got 4")),
        ("(None, ())", (None, ()), TE("first arg must be callable")),
        ("(1, ())", (1, ()), TE("first arg must be callable")),
        ("('f', ())", ("f", ()), TE("first arg must be callable")),
        ("(None, None)", (None, None), TE("first arg must be callable")),
        ("(f, None)", (_noop, None), TE("2nd arg must be a tuple")),
        ("(f, [1])", (_noop, [1]), TE("2nd arg must be a tuple")),
        ("(f, 'ab')", (_noop, "ab"), TE("2nd arg must be a tuple")),
        ("(f, {})", (_noop, {}), TE("2nd arg must be a tuple")),
        ("(f, (), None)", (_noop, (), None), TE("optional 3rd arg must be a dictionary")),
        ("(f, (), [])", (_noop, (), []), TE("optional 3rd arg must be a dictionary")),
        ("(f, (), 1)", (_noop, (), 1), TE("optional 3rd arg must be a dictionary")),
        ("(f, (), (('a', 1),))", (_noop, (), (("a", 1),)),
         TE("optional 3rd arg must be a dictionary")),
        ("(f, None, None)", (_noop, None, None), TE("2nd arg must be a tuple")),
    ]:
        row(f"{fname}{name}", "module", lambda o, m, a=args, f=fname: getattr(m, f)(*a), lit)
    row(f"{fname}(function=f, args=())", "module",
        lambda o, m, f=fname: getattr(m, f)(function=_noop, args=()),
        TE(f"{fname}() takes no keyword arguments"))
    row(f"{fname}(f, (), x=1)", "module",
        lambda o, m, f=fname: getattr(m, f)(_noop, (), x=1),
        TE(f"{fname}() takes no keyword arguments"))

# _excepthook / _ExceptHookArgs
row("_excepthook()", "module", lambda o, m: m._excepthook(),
    TE("_thread._excepthook() takes exactly one argument (0 given)"))
row("_excepthook(1, 2)", "module", lambda o, m: m._excepthook(1, 2),
    TE("_thread._excepthook() takes exactly one argument (2 given)"))
row("_excepthook(x=1)", "module", lambda o, m: m._excepthook(x=1),
    TE("_thread._excepthook() takes no keyword arguments"))
for name, v in [("None", None), ("1", 1), ("tuple4", (ValueError, ValueError(), None, None))]:
    row(f"_excepthook({name})", "module", lambda o, m, v=v: m._excepthook(v),
        TE("_thread.excepthook argument type must be ExceptHookArgs"))
EHA = "_thread._ExceptHookArgs"
for name, call, lit in [
    ("()", lambda m: m._ExceptHookArgs(),
     TE("structseq() missing required argument 'sequence' (pos 1)")),
    ("(x=1)", lambda m: m._ExceptHookArgs(x=1),
     TE("structseq() missing required argument 'sequence' (pos 1)")),
    ("(1)", lambda m: m._ExceptHookArgs(1), TE("constructor requires a sequence")),
    ("(None)", lambda m: m._ExceptHookArgs(None), TE("constructor requires a sequence")),
    ("((1,2,3))", lambda m: m._ExceptHookArgs((1, 2, 3)),
     TE(f"{EHA}() takes a 4-sequence (3-sequence given)")),
    ("((1,2,3,4,5))", lambda m: m._ExceptHookArgs((1, 2, 3, 4, 5)),
     TE(f"{EHA}() takes a 4-sequence (5-sequence given)")),
    ("((1,2,3,4), 1)", lambda m: m._ExceptHookArgs((1, 2, 3, 4), 1),
     TE(f"{EHA}() takes a dict as second arg, if any")),
    ("((1,2,3,4), 1, 2)", lambda m: m._ExceptHookArgs((1, 2, 3, 4), 1, 2),
     TE("structseq() takes at most 2 arguments (3 given)")),
    ("((1,2,3,4))", lambda m: m._ExceptHookArgs((1, 2, 3, 4)), OK),
    ("([1,2,3,4])", lambda m: m._ExceptHookArgs([1, 2, 3, 4]), OK),
    ("(sequence=(1,2,3,4))", lambda m: m._ExceptHookArgs(sequence=(1, 2, 3, 4)), OK),
    ("((1,2,3,4), {})", lambda m: m._ExceptHookArgs((1, 2, 3, 4), {}), OK),
    ("subclass", lambda m: type("X", (m._ExceptHookArgs,), {}),
     TE(f"type '{EHA}' is not an acceptable base type")),
    ("setattr", lambda m: setattr(m._ExceptHookArgs((1, 2, 3, 4)), "exc_type", 5),
     (AttributeError, "readonly attribute")),
]:
    row(f"_ExceptHookArgs{name}", "module", lambda o, m, c=call: c(m), lit)

# _local
for name, call, lit in [
    ("_local(1)", lambda m: m._local(1), TE("Initialization arguments are not supported")),
    ("_local(x=1)", lambda m: m._local(x=1), TE("Initialization arguments are not supported")),
    ("_local(1, x=2)", lambda m: m._local(1, x=2),
     TE("Initialization arguments are not supported")),
    ("_local()", lambda m: m._local(), OK),
    ("subclass-no-init(1)", lambda m: type("LocalNoInit", (m._local,), {})(1),
     TE("Initialization arguments are not supported")),
    ("subclass-no-init(x=1)", lambda m: type("LocalNoInit", (m._local,), {})(x=1),
     TE("Initialization arguments are not supported")),
    ("_local.__new__(_local, 1)", lambda m: m._local.__new__(m._local, 1),
     TE("Initialization arguments are not supported")),
    ("_local.__new__(int)", lambda m: m._local.__new__(int),
     TE("_thread._local.__new__(int): int is not a subtype of _thread._local")),
    ("_local.__new__(1)", lambda m: m._local.__new__(1),
     TE("_thread._local.__new__(X): X is not a type object (int)")),
    ("_local().__dict__ = {}", lambda m: setattr(m._local(), "__dict__", {}),
     (AttributeError, "'_thread._local' object attribute '__dict__' is read-only")),
    ("del _local().__dict__", lambda m: delattr(m._local(), "__dict__"),
     (AttributeError, "'_thread._local' object attribute '__dict__' is read-only")),
    ("_local().missing", lambda m: m._local().missing,
     (AttributeError, "'_thread._local' object has no attribute 'missing'")),
    ("del _local().missing", lambda m: delattr(m._local(), "missing"),
     (AttributeError, "'_thread._local' object has no attribute 'missing'")),
    ("setattr(_local(), 1, 2)", lambda m: m._local().__setattr__(1, 2),
     TE("attribute name must be string, not 'int'")),
    ("getattr(_local(), 1)", lambda m: m._local().__getattribute__(1),
     TE("attribute name must be string, not 'int'")),
    ("delattr(_local(), None)", lambda m: m._local().__delattr__(None),
     TE("attribute name must be string, not 'NoneType'")),
]:
    row(name, "module", lambda o, m, c=call: c(m), lit)

# ids must be unique
_seen = set()
for _r in ROWS:
    assert _r.id not in _seen, _r.id
    _seen.add(_r.id)


# --------------------------------------------------------------------------
# the test
# --------------------------------------------------------------------------
@pytest.mark.parametrize("r", ROWS, ids=[r.id for r in ROWS])
def test_table(thread_mod, r):
    expected, exp_before, exp_after, fired = run_row(r, STOCK)
    assert not fired, "stock blocked on a held lock?!"
    if (expected[0] == "raise" and expected[1] is AttributeError
            and str(expected[2]).startswith("module '_thread' has no attribute")):
        pytest.skip(f"not in CPython {sys.version_info[0]}.{sys.version_info[1]}'s _thread")

    # 1. stock itself must match the literal we wrote down (catches a change
    #    in stock CPython, and proves every literal below is real). 3.11 only.
    if sys.version_info[:2] != (3, 11):
        pass
    elif r.literal is OK:
        assert expected[0] == "ok", f"stock unexpectedly raised: {expected}"
    elif r.literal is not None:
        assert expected[0] == "raise", f"stock unexpectedly returned: {expected}"
        assert (expected[1], expected[2]) == r.literal
    if expected[0] == "raise":
        assert exp_after == exp_before, "stock changed state on failure?!"

    # 2. the module under test must behave identically.
    target = Target(r.target, thread_mod)
    try:
        before = target.state()
        assert before == exp_before
        if expected[0] == "raise":
            exp_type, exp_msg = expected[1], expected[2]
            with pytest.raises(exp_type) as excinfo:
                r.call(target.obj, thread_mod)
            assert excinfo.type is exp_type, (
                f"wrong exception type: {excinfo.type.__name__}: {excinfo.value}")
            assert str(excinfo.value) == exp_msg
        else:
            try:
                value = r.call(target.obj, thread_mod)
            except Exception as exc:
                pytest.fail(f"stock returned {expected[1]!r} but module raised "
                            f"{type(exc).__name__}: {exc}")
            assert ("ok", _normalize(value, thread_mod)) == expected
        after = target.state()
        fired = bool(getattr(target, "fired", None))
    finally:
        target.close()
    assert not fired, "call blocked on a held lock (watchdog had to release it)"
    # 3. state afterwards: same as stock; and untouched when the call failed.
    assert after == exp_after
    if expected[0] == "raise":
        assert after == before
