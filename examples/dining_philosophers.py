"""Five philosophers, five forks, and a deadlock.

Every philosopher takes the fork on their left, then the one on their right.
When all of them hold their left fork at once, nobody can take a right one:
a wait cycle through all five threads. The barrier makes that happen every
time (a real program gets there by bad luck). The forks are cold: this is
their first use, as when a real bug strikes, and the main thread is busy
polling ``join(timeout)``; rsthread reports it all the same, because every
fork is held through ``with`` (only its holder can put it down).

    python -m rsthread --deadlock warn  examples/dining_philosophers.py
    python -m rsthread --deadlock raise examples/dining_philosophers.py

``warn`` prints the report (every philosopher: the fork it waits for, the
fork it holds, its traceback) and the program stays stuck: it gives up after
two seconds and exits with status 1. ``raise`` raises ``DeadlockError`` in the
philosopher whose acquire closed the cycle; it puts its fork down, the others
can eat, and the program ends normally.
"""
import sys
import threading

N = 5
forks = [threading.Lock() for _ in range(N)]
all_seated = threading.Barrier(N)
meals = []


def philosopher(i: int) -> None:
    left, right = forks[i], forks[(i + 1) % N]
    try:
        with left:
            all_seated.wait()  # everybody now holds their left fork
            with right:  # ... and waits for their neighbour's: deadlock
                meals.append(i)
    except RuntimeError as e:  # rsthread.DeadlockError under --deadlock raise
        print(f"philosopher {i} gives up ({type(e).__name__}) and puts the fork down", flush=True)


def main() -> int:
    threads = [threading.Thread(target=philosopher, args=(i,), name=f"philosopher-{i}", daemon=True)
               for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=2.0)
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        print(f"deadlock: {len(stuck)} philosophers are stuck ({', '.join(stuck)}); giving up", flush=True)
        return 1
    print(f"everybody ate: {len(meals)} meals", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
