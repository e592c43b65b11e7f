"""A task that waits on its children without giving its slot back: a deadlock, reported.

What it shows:
    ``fib`` submits its two children and then waits for them while still holding its
    slot (no ``secede``, no ``worker_client``, a plain sync task). On a cluster of two
    slots, ``fib(3)`` takes one slot and waits; its child ``fib(2)`` takes the other and
    waits too; the grandchildren can never start. dask would hang here forever. The
    trioflow scheduler sees that every slot is held by a task blocked on work that needs
    a slot, and raises ``trioflow.DeadlockError`` in the waiting tasks, with a report
    naming each waiter, the slot it holds, what it waits on, and the ways to fix it.

    The script catches the error, prints the report and exits with status 0 (1 if no
    deadlock happened, which would mean the cluster had more slots than fib(n) fills).
    The fixed program is deadlock_fixed.py.

Run:
    python examples/deadlock_broken.py                # local cluster: 2 workers x 1 slot
    python examples/deadlock_broken.py --scheduler ws://127.0.0.1:8786
        (on a running cluster it computes fib(slots + 1), enough to fill every slot)

Try:
    * add ``trioflow.secede()`` before ``client.gather`` and ``trioflow.rejoin()`` after
      it, and the program finishes;
    * pass ``-n 1``: a leaf launches nothing, so nothing waits and nothing deadlocks.
"""

from __future__ import annotations

import argparse
import sys
import time

import trioflow


def fib(n: int) -> int:
    if n < 2:
        return n
    client = trioflow.get_client()
    a = client.submit(fib, n - 1)
    b = client.submit(fib, n - 2)
    x, y = client.gather([a, b])  # BROKEN: waits while holding this task's slot
    return x + y


async def main(n: int | None) -> int:
    client = trioflow.get_client()  # an AsyncClient: main is async def
    status = await client.status()
    slots = sum(w["nthreads"] for w in status["workers"])
    if n is None:
        n = slots + 1
    print(f"computing fib({n}) on {slots} slot(s) with tasks that wait without seceding")
    t0 = time.perf_counter()
    try:
        value = await client.submit(fib, n)
    except trioflow.DeadlockError as exc:
        print(f"trioflow.DeadlockError after {time.perf_counter() - t0:.2f}s. The report:\n")
        print(exc.report)
        return 0
    print(f"fib({n}) = {value}: no deadlock (fewer waiting tasks than slots)")
    return 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=None,
                        help="which Fibonacci number (default: slots + 1, i.e. 3 locally)")
    parser.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help="use the running scheduler at ADDRESS (ws://host:port) instead "
                             "of starting a local cluster; set TRIOFLOW_TOKEN if it has a token")
    args = parser.parse_args()
    sys.exit(trioflow.run(main, args.n, address=args.scheduler, workers=2, threads_per_worker=1))
