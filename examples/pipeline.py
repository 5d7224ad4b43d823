"""A contended worker pipeline: a producer, four workers and a consumer,
connected by ``queue.Queue``, all updating one shared statistics lock.

    python -m rsthread --profile --trace pipeline.json examples/pipeline.py

prints a contention table at exit (the shared lock and the queues' locks
on top) and writes a Chrome trace that https://ui.perfetto.dev opens.
"""
import queue
import threading
import time

ITEMS = 200
WORKERS = 4

jobs: "queue.Queue[int | None]" = queue.Queue(maxsize=16)
results: "queue.Queue[int | None]" = queue.Queue()
stats_lock = threading.Lock()
stats = {"processed": 0, "sum": 0}


def producer() -> None:
    for i in range(ITEMS):
        jobs.put(i)
    for _ in range(WORKERS):
        jobs.put(None)


def worker() -> None:
    while (item := jobs.get()) is not None:
        value = sum(range(item * 50))  # some work without the lock
        with stats_lock:  # ... and some with it: the contended part
            stats["processed"] += 1
            stats["sum"] += value
            time.sleep(0.0005)
        results.put(value)
    results.put(None)


def consumer(total: list) -> None:
    done = 0
    while done < WORKERS:
        value = results.get()
        if value is None:
            done += 1
        else:
            total.append(value)


def main() -> None:
    total: list = []
    threads = [threading.Thread(target=producer, name="producer"),
               threading.Thread(target=consumer, args=(total,), name="consumer")]
    threads += [threading.Thread(target=worker, name=f"worker-{i}") for i in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"processed {stats['processed']} items, {len(total)} results")


if __name__ == "__main__":
    main()
