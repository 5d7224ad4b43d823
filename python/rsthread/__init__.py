"""rsthread: CPython's ``_thread`` rebuilt in Rust.

``rsthread._thread`` is a drop-in for the standard ``_thread`` module;
:func:`install` makes the standard ``threading`` module (and everything built
on it: ``queue``, ``concurrent.futures``, ``logging``...) run on it.
"""
from __future__ import annotations

import os as _os
import sys as _sys

#: The CPython versions rsthread is built and tested for (each has its own
#: ``_thread`` surface; see docs/versions.md).
SUPPORTED_VERSIONS = ((3, 11), (3, 12), (3, 13), (3, 14), (3, 15))


def _check_interpreter() -> None:
    """Refuse, with a clear ImportError and before the extension is loaded,
    an interpreter rsthread was not tested on."""
    if _sys.implementation.name != "cpython":
        raise ImportError(f"rsthread supports CPython only, not {_sys.implementation.name}")
    # (Not sysconfig: from 3.13 it imports threading, which must not happen
    # before install().) A free-threaded build's ABI flags carry a "t".
    if "t" in getattr(_sys, "abiflags", ""):
        raise ImportError(
            "rsthread does not support free-threaded (--disable-gil) CPython builds: "
            "its locks rely on the GIL for the state they share with Python objects"
        )
    if tuple(_sys.version_info[:2]) not in SUPPORTED_VERSIONS:
        raise ImportError(
            f"rsthread supports CPython {SUPPORTED_VERSIONS[0][0]}.{SUPPORTED_VERSIONS[0][1]} to "
            f"{SUPPORTED_VERSIONS[-1][0]}.{SUPPORTED_VERSIONS[-1][1]}, not "
            f"{_sys.version_info[0]}.{_sys.version_info[1]}"
        )


_check_interpreter()

from . import _thread, diagnostics  # noqa: E402
from ._install import install, installed  # noqa: E402
from .diagnostics import DeadlockError  # noqa: E402

__all__ = ["SUPPORTED_VERSIONS", "DeadlockError", "_thread", "diagnostics", "install", "installed"]

if _os.environ.get(diagnostics.ENV_VAR):
    diagnostics.configure_from_env()
