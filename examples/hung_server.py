"""A small server that hangs for a few seconds: run it with the hang watchdog

    python -m rsthread --hang-timeout 1 examples/hung_server.py

A pool of worker threads answers requests by querying a backend over one
shared connection, protected by a lock (one request at a time on the wire).
The backend never answers: the first worker blocks in ``sock.recv()`` while
holding the lock, and every other worker piles up waiting for it. After one
second the watchdog explains the hang: which thread holds the lock everyone
waits for, where it took it, and what it is doing now (its traceback, down
to the ``recv`` line). After 4 s without a reply the main thread gives up and
closes the backend connection: the blocked ``recv`` returns, the lock is
released, the workers drain the queue and the program exits (status 0).
"""
import queue
import socket
import threading

N_WORKERS = 4
GIVE_UP_AFTER = 4.0


class Backend:
    """A connection to a backend service, shared by every worker."""

    def __init__(self):
        self._sock, self._server_side = socket.socketpair()
        self.lock = threading.Lock()  # one request at a time on the connection

    def query(self, key):
        with self.lock:
            try:
                self._sock.sendall(f"GET {key}\n".encode())
                reply = self._sock.recv(4096)  # the backend never answers...
            except OSError:
                return None
            return reply.decode() or None

    def close(self):
        self._server_side.shutdown(socket.SHUT_WR)  # the pending recv() now returns b""


def worker(backend, jobs, results):
    while True:
        key = jobs.get()
        if key is None:
            return
        results.put((threading.current_thread().name, key, backend.query(key)))


def main():
    backend = Backend()
    jobs, results = queue.Queue(), queue.Queue()
    pool = [threading.Thread(target=worker, args=(backend, jobs, results), name=f"worker-{i}")
            for i in range(1, N_WORKERS + 1)]
    for t in pool:
        t.start()
    for key in ["user:1", "user:2", "user:3", "user:4", "user:5"]:
        jobs.put(key)
    try:
        print("first reply:", results.get(timeout=GIVE_UP_AFTER))
    except queue.Empty:
        print(f"no reply after {GIVE_UP_AFTER:g}s: closing the backend connection")
        backend.close()
    for _ in pool:
        jobs.put(None)
    for t in pool:
        t.join()
    answered = 0
    while not results.empty():
        results.get()
        answered += 1
    backend._sock.close()
    backend._server_side.close()
    print(f"done: {answered} requests finished (without an answer from the backend)")


if __name__ == "__main__":
    main()
