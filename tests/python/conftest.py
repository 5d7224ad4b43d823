"""Shared fixtures for the rsthread Python tests.

``thread_mod`` runs a test once against CPython's own ``_thread`` ("stock")
and once against ``rsthread._thread`` ("rsthread").  If ``rsthread._thread``
cannot be imported, the rsthread case FAILS (it is never skipped).
"""
import importlib

import pytest


@pytest.fixture(params=["stock", "rsthread"])
def thread_mod(request):
    if request.param == "stock":
        import _thread

        return _thread
    try:
        return importlib.import_module("rsthread._thread")
    except Exception as exc:  # pragma: no cover - only when the build is missing
        pytest.fail(f"cannot import rsthread._thread: {type(exc).__name__}: {exc}",
                    pytrace=False)
