"""rsthread: CPython's ``_thread`` rebuilt in Rust.

``rsthread._thread`` is a drop-in for the standard ``_thread`` module;
:func:`install` makes the standard ``threading`` module (and everything built
on it: ``queue``, ``concurrent.futures``, ``logging``...) run on it.
"""
from __future__ import annotations

import os as _os

from . import _thread, diagnostics
from ._install import install, installed
from .diagnostics import DeadlockError

__all__ = ["DeadlockError", "_thread", "diagnostics", "install", "installed"]

if _os.environ.get(diagnostics.ENV_VAR):
    diagnostics.configure_from_env()
