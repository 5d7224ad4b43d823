"""Helpers shared by the pytest modules: run Python snippets in a fresh
interpreter, on rsthread (installed before threading) or on stock."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

PRELUDE_RSTHREAD = "import rsthread; rsthread.install(); assert rsthread.installed()\n"
PRELUDE_STOCK = "import sys; assert \"threading\" not in sys.modules\n"  # same line count


def run_py(code: str, *, rsthread: bool = True, timeout: float = 60, env: dict | None = None,
           args: list[str] | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    src = (PRELUDE_RSTHREAD if rsthread else PRELUDE_STOCK) + textwrap.dedent(code)
    e = dict(os.environ)
    e.pop("RSTHREAD_DIAG", None)
    e.pop("RSTHREAD", None)
    e["PYTHONFAULTHANDLER"] = "1"
    if env:
        e.update(env)
    return subprocess.run([sys.executable, "-c", src, *(args or [])], capture_output=True, text=True,
                          timeout=timeout, env=e, input=input)
