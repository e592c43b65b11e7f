"""The futures API in one page: submit, map, gather, futures as arguments, scatter, wait.

What it shows:
    A plain (non-async) program with a blocking ``trioflow.Client``:

    * ``trioflow.Client()`` with no address starts a local cluster (scheduler and worker
      processes) in the background, like dask's ``Client()``; ``Client(address)``
      connects to a running scheduler instead;
    * ``submit`` returns a Future at once; ``result()`` blocks for the value;
    * ``map`` submits one task per element; ``gather`` turns futures (also inside lists
      and dicts) into values;
    * a Future passed as an argument is a dependency: the task runs once it is done and
      receives its value, and the value never travels through the client;
    * ``scatter`` places client data on the cluster and returns futures for it;
    * ``trioflow.wait`` and ``trioflow.as_completed`` wait on many futures.

Run:
    python examples/quickstart.py
    python examples/quickstart.py --scheduler ws://127.0.0.1:8786

Try:
    * ``client.submit(inc, 1, pure=True)`` twice: both futures share one key and one
      run (without ``pure=True`` every call runs);
    * the same program with ``async def main`` and ``await``: see trio_native.py.
"""

from __future__ import annotations

import argparse
import time

import trioflow


def inc(x: int) -> int:
    return x + 1


def add(x: int, y: int) -> int:
    return x + y


def slow_square(x: int) -> int:
    time.sleep(0.01)
    return x * x


def main(address: str | None) -> None:
    with trioflow.Client(address, workers=2, threads_per_worker=1) as client:
        print(f"connected: {client!r}")

        future = client.submit(inc, 10)
        print(f"submit(inc, 10).result() = {future.result()}")

        futures = client.map(inc, range(5))
        print(f"gather(map(inc, range(5))) = {client.gather(futures)}")

        total = client.submit(add, futures[0], futures[4])  # futures as arguments
        print(f"add(futures[0], futures[4]) = {total.result()}")
        print(f"gather of a dict = {client.gather({'first': futures[0], 'total': total})}")

        [remote] = client.scatter([list(range(100))])  # client data, placed on the cluster
        print(f"sum of scattered data = {client.submit(sum, remote).result()}")

        squares = client.map(slow_square, range(5))
        done, not_done = trioflow.wait(squares)
        print(f"wait: {len(done)} done, {len(not_done)} not done")
        seen = [f.result() for f in trioflow.as_completed(client.map(slow_square, range(5)))]
        print(f"as_completed yielded, in finishing order: {seen}")
        assert sorted(seen) == [0, 1, 4, 9, 16]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help="use the running scheduler at ADDRESS (ws://host:port) instead "
                             "of starting a local cluster; set TRIOFLOW_TOKEN if it has a token")
    args = parser.parse_args()
    main(args.scheduler)
