"""Shared fixtures for the rsthread Python tests.

``thread_mod`` runs a test once against CPython's own ``_thread`` ("stock")
and once against ``rsthread._thread`` ("rsthread").  If ``rsthread._thread``
cannot be imported, the rsthread case FAILS (it is never skipped).
"""
import importlib
import signal

import pytest

# Started as a background job of a non-interactive shell (as CI's parallel
# lanes are), this process inherits SIGINT ignored, and so would every child
# interpreter the tests start: Python keeps an ignored SIGINT ignored, and
# the tests that interrupt a child with Ctrl-C would wait in vain. A handler
# here is reset to the default at exec, so children start as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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
