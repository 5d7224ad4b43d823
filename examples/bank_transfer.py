"""A lock-order inversion that has not deadlocked (yet).

``transfer(a, b)`` locks the source account, then the destination. One
thread moves money from Alice to Bob, another from Bob to Alice: the same
two locks taken in opposite orders. Here the threads run one after the other,
so nothing hangs, but run them at the same time and they can deadlock.

    python -m rsthread --lock-order examples/bank_transfer.py
    python -m rsthread --lock-order examples/bank_transfer.py --ordered

The first run reports the inversion (both acquisition paths); the second
locks accounts in a global order (by account number) and reports nothing.
"""
import sys
import threading


class Account:
    def __init__(self, number: int, balance: int) -> None:
        self.number = number
        self.balance = balance
        self.lock = threading.Lock()


ORDERED = "--ordered" in sys.argv


def transfer(src: Account, dst: Account, amount: int) -> None:
    first, second = (src, dst)
    if ORDERED and dst.number < src.number:
        first, second = dst, src
    with first.lock:
        with second.lock:
            src.balance -= amount
            dst.balance += amount


def main() -> None:
    alice, bob = Account(1, 100), Account(2, 100)
    for src, dst in ((alice, bob), (bob, alice)):
        t = threading.Thread(target=lambda s=src, d=dst: [transfer(s, d, 1) for _ in range(10)],
                             name=f"transfer-{src.number}-to-{dst.number}")
        t.start()
        t.join()
    print(f"alice={alice.balance} bob={bob.balance} (ordered={ORDERED})")


if __name__ == "__main__":
    main()
