"""Make the standard ``threading`` module run on ``rsthread._thread``."""
from __future__ import annotations

import sys

from . import _thread

# The names ``threading`` binds from ``_thread`` at import time, and ours.
_THREADING_NAMES = {
    "_start_new_thread": "start_new_thread",
    "_allocate_lock": "allocate_lock",
    "Lock": "allocate_lock",
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
    return (
        getattr(threading, "_allocate_lock", None) is _thread.allocate_lock
        and getattr(threading, "_start_new_thread", None) is _thread.start_new_thread
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
        if hasattr(threading, name):
            setattr(threading, name, getattr(_thread, ours))
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
