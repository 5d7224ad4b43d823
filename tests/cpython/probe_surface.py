"""Print the running interpreter's stock ``_thread`` surface: names, kinds,
text signatures, a few reprs and error messages. Kept as the record of how
the surface differs between versions (run it with each interpreter and diff).

    python tests/cpython/probe_surface.py [--module rsthread._thread]
"""
from __future__ import annotations

import argparse
import importlib
import sys
import sysconfig


def probe(mod) -> list[str]:
    out = [f"python {sys.version.split()[0]} gil_disabled={sysconfig.get_config_var('Py_GIL_DISABLED')}"]
    for name in sorted(dir(mod)):
        if name.startswith("__") and name != "__doc__":
            continue
        obj = getattr(mod, name)
        sig = getattr(obj, "__text_signature__", None)
        out.append(f"name {name}: {type(obj).__name__} sig={sig!r}")
        if isinstance(obj, type):
            for attr in sorted(vars(obj)):
                if attr.startswith("__") and attr not in ("__init__", "__new__", "__enter__", "__exit__"):
                    continue
                a = getattr(obj, attr, None)
                out.append(f"  {name}.{attr}: sig={getattr(a, '__text_signature__', None)!r}")

    def err(label, fn):
        try:
            r = fn()
            out.append(f"call {label}: ok {r!r}"[:200])
        except BaseException as e:
            out.append(f"call {label}: {type(e).__name__}: {e}")

    err("LockType()", lambda: type(mod.LockType()).__name__)
    err("LockType is allocate_lock type", lambda: mod.LockType is type(mod.allocate_lock()))
    lk = mod.allocate_lock()
    err("acquire(timeout=-2)", lambda: lk.acquire(timeout=-2))
    err("acquire(False, 1)", lambda: lk.acquire(False, 1))
    err("acquire(timeout=1e300)", lambda: lk.acquire(timeout=1e300))
    err("release unlocked", lk.release)
    r = mod.RLock()
    err("RLock.release unowned", r.release)
    err("RLock.locked", lambda: r.locked())
    err("start_new_thread(1, ())", lambda: mod.start_new_thread(1, ()))
    err("start_new_thread(print, [])", lambda: mod.start_new_thread(print, []))
    err("stack_size(-1)", lambda: mod.stack_size(-1))
    err("stack_size(100)", lambda: mod.stack_size(100))
    err("interrupt_main(0)", lambda: mod.interrupt_main(0))
    err("interrupt_main('x')", lambda: mod.interrupt_main("x"))
    err("acquire(timeout=10**30)", lambda: lk.acquire(timeout=10**30))
    err("acquire(timeout=nan)", lambda: lk.acquire(timeout=float("nan")))
    err("acquire(timeout=1e10)", lambda: lk.acquire(timeout=1e10))
    err("acquire(None)", lambda: lk.acquire(None))
    err("acquire(x=1)", lambda: lk.acquire(x=1))
    err("acquire(1,2,3)", lambda: lk.acquire(1, 2, 3))
    err("release(1)", lambda: lk.release(1))
    err("start_new_thread()", lambda: mod.start_new_thread())
    err("start_new_thread(1,2,3,4)", lambda: mod.start_new_thread(1, 2, 3, 4))
    err("start_new_thread(print,(),1)", lambda: mod.start_new_thread(print, (), 1))
    err("start_new_thread(f=1)", lambda: mod.start_new_thread(f=1))
    err("stack_size(1,2)", lambda: mod.stack_size(1, 2))
    err("stack_size(size=1)", lambda: mod.stack_size(size=1))
    err("stack_size('x')", lambda: mod.stack_size("x"))
    err("stack_size(2**70)", lambda: mod.stack_size(2**70))
    err("stack_size(40000)", lambda: (mod.stack_size(40000), mod.stack_size(0)))
    err("stack_size(60000)", lambda: (mod.stack_size(60000), mod.stack_size(0)))
    err("_excepthook(1)", lambda: mod._excepthook(1))
    err("_excepthook()", lambda: mod._excepthook())
    err("RLock(1)", lambda: mod.RLock(1))
    err("RLock repr", lambda: repr(r).split(" at ")[0])
    err("lock repr", lambda: repr(lk).split(" at ")[0])
    err("RLock._acquire_restore(1)", lambda: r._acquire_restore(1))
    err("allocate_lock(1)", lambda: mod.allocate_lock(1))
    err("LockType(1)", lambda: mod.LockType(1))
    err("_local(1)", lambda: mod._local(1))
    err("_count", lambda: mod._count())
    seen = []
    old = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append((u.err_msg, u.object, u.exc_type.__name__))
    def boom():
        raise ValueError("x")
    done = mod.allocate_lock()
    done.acquire()
    def run():
        try:
            boom()
        finally:
            done.release()
    mod.start_new_thread(run, ())
    done.acquire()
    import time
    time.sleep(0.2)
    sys.unraisablehook = old
    out.append(f"unraisable {[(m.replace(repr(run), 'FUNC'), o is run, t) for m, o, t in seen]}")
    if hasattr(mod, "start_joinable_thread"):
        err("start_joinable_thread(1)", lambda: mod.start_joinable_thread(1))
        err("start_joinable_thread(print, handle=1)", lambda: mod.start_joinable_thread(print, handle=1))
        err("_ThreadHandle()", lambda: mod._ThreadHandle())
        h = mod._make_thread_handle(mod.get_ident())
        err("handle repr", lambda: repr(h).split(" at ")[0])
        err("handle dir", lambda: [a for a in dir(h) if not a.startswith("__")])
        err("join self", lambda: h.join())
        err("_get_main_thread_ident", lambda: mod._get_main_thread_ident() == mod.get_ident())
    if hasattr(mod, "set_name"):
        err("_NAME_MAXLEN", lambda: mod._NAME_MAXLEN)
        err("set_name(1)", lambda: mod.set_name(1))
        err("_get_name", lambda: mod._get_name())
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--module", default="_thread")
    a = ap.parse_args()
    print("\n".join(probe(importlib.import_module(a.module))))
