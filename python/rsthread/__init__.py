"""rsthread: CPython's ``_thread`` rebuilt in Rust.

``rsthread._thread`` is a drop-in for the standard ``_thread`` module;
:func:`install` makes the standard ``threading`` module (and everything built
on it: ``queue``, ``concurrent.futures``, ``logging``...) run on it.
"""
from __future__ import annotations

from . import _thread
from ._install import install, installed

__all__ = ["install", "installed", "_thread"]
