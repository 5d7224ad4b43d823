"""The timeline file written at exit (``trace=PATH``): Chrome trace JSON, or
Perfetto's protobuf format through :mod:`rsthread._perfetto`. Private: the
API is :mod:`rsthread.diagnostics`."""
from __future__ import annotations

import os

from ._diag_common import _diag, _threading, _write


def _refresh_names() -> None:
    th = _threading()
    if th is None:
        return
    for t in list(th._active.values()):
        if t.ident is not None:
            _diag.thread_named(t.ident, t.name)


def _export_trace(path: str) -> str:
    """Write the timeline to `path`: Chrome trace JSON, or Perfetto's protobuf
    format if `path` ends in ``.pftrace`` / ``.perfetto-trace`` (converted
    from the JSON by :mod:`rsthread._perfetto`). Without the ``perfetto``
    package, or if the conversion fails, the JSON goes to ``PATH.json``
    instead, with a message saying why. Returns the path written."""
    from . import _perfetto

    if not _perfetto.is_perfetto_path(path):
        _diag.export_chrome_trace(path)
        return path
    fallback = path + ".json"
    try:
        import perfetto.trace_builder.proto_builder  # type: ignore[import-untyped]  # noqa: F401
    except Exception as e:  # missing, or broken (a protobuf runtime it does not support)
        why = "missing" if isinstance(e, ImportError) else f"broken ({type(e).__name__}: {e})"
        _diag.export_chrome_trace(fallback)
        _write(f"rsthread: cannot write the Perfetto protobuf trace {path}: the 'perfetto' package is "
               f"{why} (pip install perfetto); wrote Chrome trace JSON to {fallback} instead\n")
        return fallback
    import json
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(prefix=".rsthread-trace-", suffix=".json", dir=os.path.dirname(path) or ".")
    except OSError as e:
        raise OSError(f"cannot write trace to {path}: {e.strerror or e}") from None
    os.close(fd)
    try:
        _diag.export_chrome_trace(tmp)
        try:
            with open(tmp, encoding="utf-8") as f:
                doc = json.load(f)
            _perfetto.write_perfetto(path, doc)
            return path
        except Exception as e:  # TraceFormatError, or a bug: keep the data as JSON
            import shutil

            shutil.copyfile(tmp, fallback)  # a new file: the usual permissions, not mkstemp's 0600
            _write(f"rsthread: cannot convert the trace to Perfetto's protobuf format "
                   f"({type(e).__name__}: {e}); wrote Chrome trace JSON to {fallback} instead\n")
            return fallback
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
