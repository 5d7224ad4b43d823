"""Helpers shared by the pytest modules: run Python snippets in a fresh
interpreter, on rsthread (installed before threading) or on stock."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

PRELUDE_RSTHREAD = "import rsthread; rsthread.install(); assert rsthread.installed()\n"
PRELUDE_STOCK = "import sys; assert \"threading\" not in sys.modules\n"  # same line count
# The function a module-level list comprehension runs in, as a site names it:
# its own frame up to 3.11, inlined into the module from 3.12 (PEP 709).
MODULE_LISTCOMP = "<listcomp>" if sys.version_info < (3, 12) else "<module>"


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


def run_script(code: str | None = None, *args: str, diag: str | None = None, runner: list[str] | None = None,
               script: Path | None = None, tmp_path: Path, timeout: float = 60,
               env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """Run `code` (written to tmp_path/scenario.py) or `script` in a fresh
    interpreter, under ``python -m rsthread RUNNER...`` when `runner` is given,
    with ``RSTHREAD_DIAG=diag`` when `diag` is given (no inherited setting)
    and `env_extra` added to the environment."""
    env = dict(os.environ)
    for var in ("RSTHREAD_DIAG", "_RSTHREAD_DIAG_PID", "RSTHREAD"):
        env.pop(var, None)
    if diag is not None:
        env["RSTHREAD_DIAG"] = diag
    env.update(env_extra or {})
    if script is None:
        script = tmp_path / "scenario.py"
        script.write_text(code or "")
    cmd = [sys.executable]
    cmd += ["-m", "rsthread", *runner] if runner is not None else []
    cmd += [str(script), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path)


def line_of(code: str, snippet: str) -> int:
    """1-based line number of the first line of `code` containing `snippet`."""
    return next(i for i, line in enumerate(code.splitlines(), 1) if snippet in line)
