"""Diagnostics smoke run for one interpreter: an AB/BA deadlock under
``python -m rsthread --deadlock raise`` must end in ``DeadlockError`` with a
traceback for each thread involved.

    python scripts/deadlock_smoke.py      # exit 0 on success
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

PROGRAM = '''
import threading
from rsthread import DeadlockError

a, b = threading.Lock(), threading.Lock()
both = threading.Barrier(2)
errors = []

def take(first, second):
    with first:
        both.wait()
        try:
            with second:
                pass
        except DeadlockError as e:
            errors.append(e)

# The thread that closes the cycle gets the error: one of the two, or the
# main thread when its join() is the last wait (then the two stay blocked:
# daemon threads, so that the process can still exit).
t1 = threading.Thread(target=take, args=(a, b), name="ab", daemon=True)
t2 = threading.Thread(target=take, args=(b, a), name="ba", daemon=True)
t1.start(); t2.start()
for t in (t1, t2):
    try:
        t.join()
    except DeadlockError as e:
        errors.append(e)
        break
assert errors, "no DeadlockError"
print("DEADLOCK-REPORT-BEGIN")
print(errors[0])
print("DEADLOCK-REPORT-END")
'''


def main() -> int:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "abba.py")
        with open(path, "w") as f:
            f.write(PROGRAM)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RSTHREAD")}
        p = subprocess.run([sys.executable, "-m", "rsthread", "--deadlock", "raise", path],
                           capture_output=True, text=True, timeout=120, env=env)
    out = p.stdout + p.stderr
    report = out.partition("DEADLOCK-REPORT-BEGIN")[2].partition("DEADLOCK-REPORT-END")[0]
    ok = p.returncode == 0 and "abba.py" in report and report.count("line ") >= 2
    print(f"deadlock smoke {sys.version_info[0]}.{sys.version_info[1]}: "
          f"{'ok' if ok else 'FAILED'} (rc={p.returncode})")
    if not ok:
        print(out[-4000:], file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
