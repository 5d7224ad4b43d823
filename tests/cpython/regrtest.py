"""Run CPython's own regression tests with rsthread installed as ``_thread``
before anything imports ``threading``.

    python tests/cpython/regrtest.py [--stock] [regrtest options] test_thread ...

``--stock`` runs the same tests on stock ``_thread`` (for side-by-side counts).
"""
import sys

if "threading" in sys.modules:
    # Only acceptable when rsthread's own start-up hook (RSTHREAD /
    # RSTHREAD_DIAG) installed it before threading was imported.
    _rs = sys.modules.get("rsthread")
    if "--stock" in sys.argv or _rs is None or not _rs.installed():
        sys.exit("regrtest.py: threading was imported before rsthread could be installed "
                 "(run from a virtualenv without site hooks)")

stock = "--stock" in sys.argv
if stock:
    sys.argv.remove("--stock")
else:
    import os

    import rsthread

    rsthread.install()
    # --diag=SPEC: diagnostics on in this process only (RSTHREAD_DIAG would
    # also reach every child interpreter the tests start).
    diag = [a for a in sys.argv if a.startswith("--diag=")]
    for a in diag:
        sys.argv.remove(a)
        os.environ["RSTHREAD_DIAG"] = a.split("=", 1)[1]
        rsthread.diagnostics.configure_from_env()
        del os.environ["RSTHREAD_DIAG"]
    if not rsthread.installed():
        sys.exit("regrtest.py: rsthread.install() did not take effect")
    import _thread
    assert _thread is rsthread._thread

from test.libregrtest.main import main  # noqa: E402

main()
