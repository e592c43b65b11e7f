"""Task functions that several integration tests run."""

import trioflow


def fib_no_secede(n):
    """Recursive Fibonacci whose tasks wait on their children while keeping their slot:
    on too few slots, the slot deadlock the scheduler must report."""
    if n < 2:
        return n
    client = trioflow.get_client()
    return sum(client.gather([client.submit(fib_no_secede, n - 1),
                              client.submit(fib_no_secede, n - 2)]))
