"""Imported at interpreter start-up by ``rsthread_autoinstall.pth`` when the
environment variable ``RSTHREAD`` (any non-empty value but ``0``) or
``RSTHREAD_DIAG`` is set: installs rsthread before ``threading`` is imported
and applies ``RSTHREAD_DIAG``. Child processes inherit the variables, so a
whole process tree runs on rsthread with no code change."""
import os
import sys

if os.environ.get("RSTHREAD", "") != "0":
    try:
        import rsthread

        rsthread.install()  # rsthread/__init__ applies RSTHREAD_DIAG itself
    except ImportError as exc:
        if "subinterpreter" not in str(exc):  # subinterpreters stay stock, silently
            print(f"rsthread: automatic install failed: {exc!r}", file=sys.stderr)
    except Exception as exc:  # never break interpreter start-up
        print(f"rsthread: automatic install failed: {exc!r}", file=sys.stderr)
