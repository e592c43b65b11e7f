"""trioflow inside a Trio program: ``open_local_cluster``, ``AsyncClient``, a nursery.

What it shows:
    An existing Trio program uses the cluster without ``trioflow.run``:

    * ``trioflow.open_local_cluster(...)`` is an async context manager that starts a
      scheduler and workers and stops all of them on exit (``processes=True`` makes the
      workers subprocesses; the default runs them as tasks in this process);
    * ``async with trioflow.AsyncClient(address) as client:`` connects; ``submit`` and
      ``map`` never block, waiting is ``await``: ``await future``,
      ``await client.gather(...)``, ``async for f in trioflow.as_completed(...)``;
    * several waits run concurrently in one nursery, like any Trio code, and
      cancellation works as usual: a ``trio.move_on_after`` stops waiting (the task
      itself goes on running on its worker; ``client.cancel`` drops queued work).

Run:
    python examples/trio_native.py
    python examples/trio_native.py --scheduler ws://127.0.0.1:8786

Try:
    * pass ``processes=False`` to ``open_local_cluster``: everything in one process,
      handy under a debugger;
    * ``await client.status()`` shows workers, slots and task counts.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import trio

import trioflow


def slow_double(x: int) -> int:
    time.sleep(0.05)
    return 2 * x


async def report(client: trioflow.AsyncClient, name: str, xs: range) -> None:
    values = await client.gather(client.map(slow_double, xs))
    print(f"{name}: {values}")


async def main(address: str | None) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if address is None:
            cluster = await stack.enter_async_context(
                trioflow.open_local_cluster(workers=2, threads_per_worker=1, processes=True))
            address = cluster.address
        client = await stack.enter_async_context(trioflow.AsyncClient(address))
        status = await client.status()
        print(f"cluster at {address} with {len(status['workers'])} worker(s)")

        async with trio.open_nursery() as nursery:  # two gathers waiting concurrently
            nursery.start_soon(report, client, "evens", range(0, 6, 2))
            nursery.start_soon(report, client, "odds", range(1, 6, 2))

        total = 0
        async for future in trioflow.as_completed(client.map(slow_double, range(4))):
            total += await future
        print(f"as_completed total: {total}")

        with trio.move_on_after(0.01) as scope:
            await client.submit(slow_double, 21)  # takes 0.05 s: we stop waiting first
        print(f"stopped waiting after 10 ms: {scope.cancelled_caught}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help="use the running scheduler at ADDRESS (ws://host:port) instead "
                             "of starting a local cluster; set TRIOFLOW_TOKEN if it has a token")
    args = parser.parse_args()
    trio.run(main, args.scheduler)
