"""``python -m rsthread [options] script.py [args]`` / ``python -m rsthread [options] -m module [args]``

Runs a program exactly as ``python script.py`` / ``python -m module`` would
(same ``sys.argv``, ``__main__``, ``sys.path[0]``, exit code and tracebacks),
with the standard ``threading`` module running on rsthread.
"""
from __future__ import annotations

import sys

if "threading" in sys.modules:  # pragma: no cover - depends on the interpreter's site hooks
    print(
        "rsthread: warning: threading was imported before the runner started; "
        "objects it created stay stock (see README, install())",
        file=sys.stderr,
    )

import rsthread

rsthread.install()

import argparse  # noqa: E402
import os  # noqa: E402
import types  # noqa: E402

_KILL_BY_SIGINT = False


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rsthread",
        description=(
            "Run a Python program with the standard threading module on rsthread "
            "(CPython's _thread rebuilt in Rust), optionally with concurrency diagnostics. "
            "The program runs exactly as with `python script.py`: same sys.argv, "
            "__main__, sys.path[0], exit code and tracebacks."
        ),
        epilog=(
            "Diagnostics can also be enabled without the runner through the environment "
            "variable RSTHREAD_DIAG, e.g. RSTHREAD_DIAG='deadlock=warn,lock-order,profile,"
            "trace=out.pftrace' (inherited by subprocesses)."
        ),
    )
    p.add_argument("--deadlock", choices=["warn", "raise"],
                   help="detect deadlocks when a thread is about to block: 'warn' prints a report "
                        "(threads, locks with creation sites, tracebacks) and keeps waiting; "
                        "'raise' raises rsthread.DeadlockError in the thread that closes the cycle")
    p.add_argument("--lock-order", action="store_true",
                   help="report lock-order inversions (A then B here, B then A there) before "
                        "they deadlock, with the acquisition sites; judged with the evidence of "
                        "the whole run and reported at exit")
    p.add_argument("--lock-order-immediate", action="store_true",
                   help="like --lock-order, reporting each inversion when it is found")
    p.add_argument("--profile", action="store_true",
                   help="print a contention table per lock creation site at exit")
    p.add_argument("--trace", metavar="FILE",
                   help="write a timeline of thread/lock events to FILE at exit, for "
                        "https://ui.perfetto.dev: Perfetto's protobuf format if FILE ends in .pftrace "
                        "or .perfetto-trace (needs the 'perfetto' package: pip install perfetto; "
                        "without it, Chrome JSON goes to FILE.json), Chrome trace JSON otherwise")
    p.add_argument("--hang-timeout", type=float, metavar="SECONDS",
                   help="when a thread has waited for a lock longer than SECONDS, print who holds "
                        "it and what that thread is doing (once per episode)")
    p.add_argument("--dump-signal", metavar="SIGNAL",
                   help="print a dump of every thread, the locks it holds and waits for, on "
                        "receipt of SIGNAL (e.g. SIGUSR1)")
    p.add_argument("--leaks", action="store_true",
                   help="report locks a thread still holds when it exits: an RLock at once, "
                        "a plain lock nobody released at exit (also on with --hang-timeout/--dump-signal)")
    p.add_argument("-m", dest="module", metavar="MODULE",
                   help="run library module MODULE as a script (like python -m)")
    p.add_argument("target", nargs="?", metavar="script.py", help="the program to run")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the program")
    return p


def _diag_options(ns: argparse.Namespace) -> dict:
    return {
        "deadlock": ns.deadlock,
        "lock_order": "immediate" if ns.lock_order_immediate else ns.lock_order,
        "profile": ns.profile,
        "trace": ns.trace,
        "hang_timeout": ns.hang_timeout,
        "dump_signal": ns.dump_signal,
        # None, not False: --hang-timeout/--dump-signal turn leak reports on by default.
        "leaks": ns.leaks or None,
    }


def _report(exc: BaseException, main_globals: dict) -> None:
    """Print an uncaught exception as the interpreter would, without runner frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_globals is not main_globals:
        tb = tb.tb_next
    if tb is not None:
        exc.__traceback__ = tb  # the default hook prints exc.__traceback__
    sys.excepthook(type(exc), exc, exc.__traceback__)


def _die_by_sigint() -> None:
    # Like CPython after an uncaught KeyboardInterrupt: exit "killed by SIGINT".
    if _KILL_BY_SIGINT:
        import signal
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except Exception:
                pass
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)


def main(argv: list[str] | None = None) -> int:
    global _KILL_BY_SIGINT
    argv = sys.argv[1:] if argv is None else argv
    # Options stop at the program: everything after it belongs to it.
    split = len(argv)
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-m":
            split = i + 2
            break
        if a in ("--trace", "--hang-timeout", "--dump-signal", "--deadlock"):
            i += 2
            continue
        if not a.startswith("-") or a == "-":
            split = i + 1
            break
        i += 1
    ns = _parser().parse_args(argv[:split])
    ns.args = argv[split:]
    if ns.module is None and ns.target is None:
        _parser().print_usage(sys.stderr)
        print("python -m rsthread: error: a script or -m MODULE is required", file=sys.stderr)
        return 2
    opts = _diag_options(ns)
    if any(v for v in opts.values()):
        from rsthread import diagnostics
        diagnostics.configure(**opts)

    import atexit
    atexit.register(_die_by_sigint)  # registered first, so it runs last

    main_mod = types.ModuleType("__main__")
    main_globals = main_mod.__dict__
    main_globals["__builtins__"] = __builtins__
    sys.modules["__main__"] = main_mod
    try:
        if ns.module is not None:
            import runpy
            sys.argv = [ns.module, *ns.args]  # argv[0] becomes the module's path, like -m
            runpy._run_module_as_main(ns.module, alter_argv=True)  # type: ignore[attr-defined]
        else:
            path = os.path.abspath(ns.target)
            sys.argv = [ns.target, *ns.args]
            sys.path[0] = os.path.dirname(os.path.realpath(ns.target))
            with open(path, "rb") as f:
                source = f.read()
            code = compile(source, path, "exec", dont_inherit=True)
            main_globals.update(__file__=path, __cached__=None, __spec__=None,
                                __loader__=None, __package__=None)
            exec(code, main_globals)
    except SystemExit:
        raise
    except KeyboardInterrupt as exc:
        _report(exc, main_globals)
        _KILL_BY_SIGINT = True
        return 0
    except BaseException as exc:
        _report(exc, main_globals)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
