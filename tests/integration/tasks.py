"""Task functions that several integration tests run."""

import threading

import trioflow


def fib_no_secede(n):
    """Recursive Fibonacci whose tasks wait on their children while keeping their slot:
    on too few slots, the slot deadlock the scheduler must report."""
    if n < 2:
        return n
    client = trioflow.get_client()
    return sum(client.gather([client.submit(fib_no_secede, n - 1),
                              client.submit(fib_no_secede, n - 2)]))


def inc(x):
    return x + 1


def boom():
    raise ValueError("boom")


#: what ``wait_gate`` tasks wait for; the ``gate`` fixture (conftest.py) closes it for a
#: test and always opens it after, so no worker thread is left blocked
GATE = threading.Event()


def wait_gate():
    # module-level: pickled by reference, so an in-process worker sees this very Event
    assert GATE.wait(30)
    return "gate"
