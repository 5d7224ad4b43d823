"""Imported at interpreter start-up by ``rsthread_autoinstall.pth`` when the
environment variable ``RSTHREAD`` (any non-empty value but ``0``) or
``RSTHREAD_DIAG`` is set: installs rsthread before ``threading`` is imported
and applies ``RSTHREAD_DIAG``. Child processes inherit the variables, so a
whole process tree runs on rsthread with no code change.

A top-level module, not part of the ``rsthread`` package: importing the
package is what fails on an interpreter rsthread does not support (and in a
subinterpreter), and that failure must be caught here, not printed by
``site`` as an error in the ``.pth`` file."""
import os
import sys

if os.environ.get("RSTHREAD", "") != "0":
    try:
        import rsthread

        rsthread.install()  # rsthread/__init__ applies RSTHREAD_DIAG itself
    except ImportError as exc:
        # Subinterpreters stay stock, silently. An unsupported interpreter
        # (untested version, free-threaded build) warns once per process
        # tree: children inherit RSTHREAD, and the marker, and stay quiet.
        if "subinterpreter" not in str(exc) and not os.environ.get("_RSTHREAD_WARNED"):
            os.environ["_RSTHREAD_WARNED"] = "1"
            print(f"rsthread: not installed, stock threading stays in place: {exc}", file=sys.stderr)
    except Exception as exc:  # never break interpreter start-up
        print(f"rsthread: automatic install failed: {exc!r}", file=sys.stderr)
