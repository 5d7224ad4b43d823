"""What the diagnostics modules share: the native module, the settings, the
watchdog thread's ident, thread names, Python frames and output. Private:
the API is :mod:`rsthread.diagnostics`."""
from __future__ import annotations

import os
import sys

from . import _thread

_diag = sys.modules["rsthread._diag"]


class _Config:
    deadlock: str | None = None
    lock_order = False
    profile = False
    trace: str | None = None
    hang_timeout: float | None = None
    dump_signal = None
    leaks = False
    pid = 0


_config = _Config()
# The hang watchdog's thread (set by it): left out of dumps.
_watchdog_ident = None


def _threading():
    return sys.modules.get("threading")


def _name_of(ident: int, fallback: str | None = None) -> str:
    """The name diagnostics recorded (``fallback``: the ``threading.Thread``
    name at start, safe against ident reuse), else the live thread's name."""
    if fallback:
        return fallback
    th = _threading()
    if th is not None:
        t = th._active.get(ident)
        if t is not None:
            try:
                return t.name
            except Exception:  # pragma: no cover
                pass
    return fallback or f"Thread {ident:#x}"


def _exited_name(t: dict) -> str:
    """The recorded name of a thread that has exited (its ident may already
    belong to another thread, so live threads are not consulted)."""
    return t.get("name") or f"Thread {t['ident']:#x}"


_HERE = os.path.dirname(__file__)


def _own_file(filename: str) -> bool:
    """Whether ``filename`` is one of the diagnostics modules (this package's
    ``diagnostics.py`` and ``_diag_*.py``)."""
    where, name = os.path.split(os.path.splitext(filename)[0])
    return where == _HERE and (name == "diagnostics" or name.startswith("_diag_"))


def _frames(skip_self: bool = True) -> dict:
    """Every thread's current frame, ours skipped past the diagnostics
    modules' frames."""
    frames = sys._current_frames()
    me = _thread.get_ident()
    f = frames.get(me)
    while f is not None and _own_file(f.f_code.co_filename):
        f = f.f_back
    if f is not None:
        frames[me] = f
    else:
        frames.pop(me, None)
    return frames


def _stack(frame) -> list[str]:
    import traceback

    if frame is None:
        return []
    return traceback.format_stack(frame)


def _write(text: str, file=None) -> None:
    f = file if file is not None else sys.stderr
    if f is None:  # pragma: no cover
        f = sys.__stderr__
    try:
        f.write(text)
        f.flush()
    except Exception:  # pragma: no cover
        pass
