"""The same recursion as deadlock_broken.py, fixed: wait inside ``worker_client()``.

What it shows:
    ``with trioflow.worker_client() as client:`` gives the task's slot back on entry
    (secede) and takes a slot again on exit (rejoin). While ``fib(n)`` waits for its
    children it holds no slot, so the children can run, and two slots are enough for
    any ``n``. Inside a task the client reuses the worker's own connection to the
    scheduler: entering ``worker_client`` opens nothing.

    ``--auto-secede`` instead runs the *unchanged* broken function on a local cluster
    started with ``auto_secede=True``, which gives the slot back on every wait made
    inside a task.

Run:
    python examples/deadlock_fixed.py                 # fib(3) and fib(12) on 2 slots
    python examples/deadlock_fixed.py --auto-secede   # the broken code, rescued by the cluster
    python examples/deadlock_fixed.py --scheduler ws://127.0.0.1:8786

Try:
    * move ``client.gather`` out of the ``with`` block: the wait then holds a slot
      again, and on two slots you are back to a DeadlockError;
    * the other fixes, side by side: examples/fibonacci.py (delayed/compute,
      secede/rejoin, worker_client, async def).
"""

from __future__ import annotations

import argparse
import time

import trioflow


def fib(n: int) -> int:
    if n < 2:
        return n
    with trioflow.worker_client() as client:  # FIXED: no slot held while waiting
        a = client.submit(fib, n - 1)
        b = client.submit(fib, n - 2)
        x, y = client.gather([a, b])
    return x + y


def fib_no_secede(n: int) -> int:
    """deadlock_broken.py's fib, unchanged (only safe with auto_secede=True)."""
    if n < 2:
        return n
    client = trioflow.get_client()
    a = client.submit(fib_no_secede, n - 1)
    b = client.submit(fib_no_secede, n - 2)
    x, y = client.gather([a, b])
    return x + y


def main(fn, ns: list[int]) -> dict[int, int]:
    client = trioflow.get_client()
    results = {}
    for n in ns:
        t0 = time.perf_counter()
        results[n] = client.submit(fn, n).result()
        print(f"fib({n}) = {results[n]} with {fn.__name__} in {time.perf_counter() - t0:.2f}s")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="*", type=int, default=[3, 12],
                        help="Fibonacci numbers to compute (default: 3 12)")
    parser.add_argument("--auto-secede", action="store_true",
                        help="run the broken function on a local cluster with auto_secede=True")
    parser.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help="use the running scheduler at ADDRESS (ws://host:port) instead "
                             "of starting a local cluster; set TRIOFLOW_TOKEN if it has a token")
    args = parser.parse_args()
    if args.auto_secede:
        if args.scheduler:
            parser.error("--auto-secede starts its own cluster; for a running one, start "
                         "its workers with `trioflow-worker ADDRESS --auto-secede`")
        trioflow.run(main, fib_no_secede, args.n, workers=2, threads_per_worker=1,
                     auto_secede=True)
    else:
        trioflow.run(main, fib, args.n, address=args.scheduler, workers=2, threads_per_worker=1)
