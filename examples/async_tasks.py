"""``async def`` tasks: awaiting child tasks holds no slot and no thread.

What it shows:
    A task written ``async def`` runs on its worker's Trio event loop, not in a thread.
    Whenever it awaits futures (``await future``, ``await client.gather(...)``,
    ``await trioflow.wait_async(...)``) it gives its slot back for the wait and takes one
    again afterwards: no ``secede``/``rejoin`` needed, and no thread is parked.

    The local cluster here has ONE worker with ONE slot, the worst case for tasks that
    launch tasks:

    1. a recursive divide-and-conquer sum, every level awaiting the next (the same
       code as a plain sync function would deadlock on one slot);
    2. 50 async tasks waiting at the same time, each on a sync child that needs the one
       slot, and the worker process still runs only a handful of threads;
    3. ``main`` itself is ``async def``, so ``trioflow.get_client()`` is an AsyncClient.

Run:
    python examples/async_tasks.py
    python examples/async_tasks.py --scheduler ws://127.0.0.1:8786

Try:
    * drop the ``async``/``await`` from ``tree_sum``: on one slot that is the
      secede-less recursion of deadlock_broken.py, and you get a DeadlockError;
    * note what does NOT give the slot back: ``await trio.sleep()`` or other awaits
      on non-futures keep it, as ordinary computation does.
"""

from __future__ import annotations

import argparse
import threading
import time

import trioflow


async def tree_sum(lo: int, hi: int) -> int:
    """sum(range(lo, hi)), split in halves, each half a task."""
    if hi - lo <= 8:
        return sum(range(lo, hi))
    mid = (lo + hi) // 2
    client = trioflow.get_client()  # an AsyncClient bound to the worker's connection
    left = client.submit(tree_sum, lo, mid)
    right = client.submit(tree_sum, mid, hi)
    a, b = await client.gather([left, right])  # the slot is free while we wait
    return a + b


def square(x: int) -> int:
    """A plain sync child: it needs the slot the waiting parents gave back."""
    return x * x


async def parent(x: int) -> int:
    client = trioflow.get_client()
    child = client.submit(square, x)
    await trioflow.wait_async([child])  # the slot is free while we wait
    return await child


async def worker_threads() -> int:
    """How many threads the worker process running this task has."""
    return threading.active_count()


async def main(width: int) -> None:
    client = trioflow.get_client()

    t0 = time.perf_counter()
    total = await client.submit(tree_sum, 0, 1000)
    assert total == sum(range(1000)), total
    print(f"tree_sum(0, 1000) = {total} in {time.perf_counter() - t0:.2f}s "
          "(about 250 tasks, each level awaiting the next)")

    t0 = time.perf_counter()
    squares = await client.gather(client.map(parent, range(width)))
    assert squares == [x * x for x in range(width)], squares
    print(f"{width} async parents awaited their sync children: sum of squares "
          f"{sum(squares)} in {time.perf_counter() - t0:.2f}s")
    threads = await client.submit(worker_threads)
    print(f"threads in a worker process: {threads}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=50, help="parents waiting at once (default 50)")
    parser.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help="use the running scheduler at ADDRESS (ws://host:port) instead "
                             "of starting a local cluster; set TRIOFLOW_TOKEN if it has a token")
    args = parser.parse_args()
    trioflow.run(main, args.width, address=args.scheduler, workers=1, threads_per_worker=1)
