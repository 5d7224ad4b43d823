"""Make the standard ``threading`` module run on ``rsthread._thread``."""
from __future__ import annotations

import sys

from . import _thread

# The names ``threading`` binds from ``_thread`` at import time, and ours.
# Each version binds its own subset (3.13 joins threads through handles,
# 3.14 names OS threads); only names present on both sides are repointed.
_THREADING_NAMES = {
    "_start_new_thread": "start_new_thread",
    "_start_joinable_thread": "start_joinable_thread",
    "_daemon_threads_allowed": "daemon_threads_allowed",
    "_allocate_lock": "allocate_lock",
    "_LockType": "LockType",
    "_thread_shutdown": "_shutdown",
    "_make_thread_handle": "_make_thread_handle",
    "_ThreadHandle": "_ThreadHandle",
    "_get_main_thread_ident": "_get_main_thread_ident",
    "_is_main_interpreter": "_is_main_interpreter",
    "_set_name": "set_name",
    # 3.13+: ``threading.Lock`` is the lock type itself.
    "Lock": "LockType" if sys.version_info >= (3, 13) else "allocate_lock",
    "_set_sentinel": "_set_sentinel",
    "get_ident": "get_ident",
    "get_native_id": "get_native_id",
    "_CRLock": "RLock",
    "TIMEOUT_MAX": "TIMEOUT_MAX",
    "ThreadError": "error",
}

_stock_thread = None


def installed() -> bool:
    """Whether ``threading`` creates (or, not imported yet, will create) its
    locks and threads with rsthread."""
    if sys.modules.get("_thread") is not _thread:
        return False
    threading = sys.modules.get("threading")
    if threading is None:
        return True  # it will bind rsthread's names when it is imported
    start = "_start_joinable_thread" if hasattr(_thread, "start_joinable_thread") else "_start_new_thread"
    ours = _thread.start_joinable_thread if start == "_start_joinable_thread" else _thread.start_new_thread
    return (
        getattr(threading, "_allocate_lock", None) is _thread.allocate_lock
        and getattr(threading, start, None) is ours
    )


def install() -> None:
    """Make ``_thread`` and ``threading`` run on rsthread.

    Called before ``threading`` is imported (``install()`` does not import
    it), the switch is complete: every
    lock, RLock, Condition, Event, Semaphore, Thread, ``threading.local``
    (and so ``queue``, ``concurrent.futures``, ``logging``...) is rsthread's.

    Called after ``threading`` was imported, ``threading``'s module-level
    bindings are repointed, so everything *created from then on* uses
    rsthread; objects created before the call (for example
    ``threading.main_thread()``'s sentinel, ``logging``'s module lock, an
    existing ``threading.local()``) stay stock. Idempotent.
    """
    global _stock_thread
    current = sys.modules.get("_thread")
    if current is not _thread:
        _stock_thread = current
        sys.modules["_thread"] = _thread
    threading = sys.modules.get("threading")
    if threading is None:
        # Nothing more to do: whenever threading is imported it binds
        # rsthread's names. Not importing it here keeps start-up unchanged
        # (a program may check that threading is not imported yet).
        return
    for name, ours in _THREADING_NAMES.items():
        if hasattr(threading, name) and hasattr(_thread, ours):
            setattr(threading, name, getattr(_thread, ours))
    stock_shutdown = getattr(_stock_thread, "_shutdown", None)
    if stock_shutdown is not None and getattr(threading, "_thread_shutdown", None) is _thread._shutdown:
        # 3.13+: non-daemon threads started before the switch are stock's
        # to wait for; interpreter exit waits for both kinds.
        def _thread_shutdown() -> None:
            _thread._shutdown()
            stock_shutdown()

        threading._thread_shutdown = _thread_shutdown
    if _stock_thread is not None:
        # Swap only hooks that are still the stock ones (keep user overrides).
        if getattr(threading, "excepthook", None) is getattr(_stock_thread, "_excepthook", object()):
            threading.excepthook = _thread._excepthook
        if getattr(threading, "__excepthook__", None) is getattr(_stock_thread, "_excepthook", object()):
            threading.__excepthook__ = _thread._excepthook
        if getattr(threading, "ExceptHookArgs", None) is getattr(_stock_thread, "_ExceptHookArgs", object()):
            threading.ExceptHookArgs = _thread._ExceptHookArgs
        if getattr(threading, "local", None) is getattr(_stock_thread, "_local", object()):
            threading.local = _thread._local
