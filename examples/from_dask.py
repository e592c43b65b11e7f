"""A dask.distributed program on trioflow: the imports change, the rest stays.

What it shows:
    * ``from trioflow import Client, LocalCluster, as_completed, wait, fire_and_forget``
      in place of ``from dask.distributed import ...``: ``LocalCluster(n_workers=...,
      threads_per_worker=...)`` passed to ``Client``, ``submit``/``map``/``gather``,
      ``as_completed(...).batches()``, ``wait(..., return_when=...)``,
      ``add_done_callback``, ``client.run`` and ``client.nthreads()``;
    * ``client.get_executor()``: a ``concurrent.futures.Executor`` for standard-library
      code;
    * dask collections (when dask is installed: ``pip install 'trioflow[dask]'``): with
      the trioflow ``Client`` current, ``x.compute()`` runs on trioflow, as it would on
      dask.distributed;
    * the same cluster from an asyncio program: ``async with AsyncClient(address)``
      under ``asyncio.run``, ``await future``, ``async for ... in as_completed(...)``.

Run:
    python examples/from_dask.py
    python examples/from_dask.py --scheduler ws://127.0.0.1:8786

Try:
    * change the imports back to ``dask.distributed`` (and ``LocalCluster(...,
      processes=True)``): the output is the same apart from worker names (dask names
      workers by address);
    * docs/api.md, "Coming from dask", lists what differs on purpose.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import threading

from trioflow import (
    AsyncClient,
    Client,
    LocalCluster,
    as_completed,
    fire_and_forget,
    wait,
)


def inc(x: int) -> int:
    return x + 1


def square(x: int) -> int:
    return x * x


def dask_part() -> None:
    try:
        import dask
        import dask.array as da
    except ImportError:
        print("dask is not installed: pip install 'trioflow[dask]' for collections")
        return
    x = da.arange(10_000, chunks=1_000)
    print(f"dask.array sum on trioflow: {int((x * 2).sum().compute())}")
    total = dask.delayed(sum)([dask.delayed(square)(i) for i in range(10)])
    print(f"dask.delayed on trioflow: {total.compute()}")


async def asyncio_part(address: str) -> None:
    async with AsyncClient(address) as client:
        one = await client.submit(inc, 41)
        seen = sorted([await f async for f in as_completed(client.map(square, range(4)))])
        print(f"asyncio: await future = {one}, as_completed = {seen}")


def main(address: str | None) -> None:
    with contextlib.ExitStack() as stack:
        if address is None:
            cluster = stack.enter_context(LocalCluster(n_workers=2, threads_per_worker=1))
            address = cluster.address
        client = stack.enter_context(Client(address))
        print(f"workers and their threads: {sorted(client.nthreads().values())}")

        futures = client.map(inc, range(10))
        print(f"gather(map(inc, range(10))) = {client.gather(futures)}")
        batches = list(as_completed(client.map(square, range(6))).batches())
        print(f"as_completed batches hold {sum(map(len, batches))} futures")
        done, not_done = wait(futures, return_when="FIRST_EXCEPTION")
        print(f"wait(FIRST_EXCEPTION): {len(done)} done, {len(not_done)} not done")

        called = threading.Event()
        f = client.submit(inc, 1)
        f.add_done_callback(lambda fut: called.set())
        fire_and_forget(client.submit(inc, 2))  # runs even though nothing holds it
        print(f"add_done_callback called: {called.wait(30)}")
        print(f"client.run(inc, 1) on each worker: {sorted(client.run(inc, 1).values())}")

        with client.get_executor() as ex:
            cf = [ex.submit(square, i) for i in range(4)]
            results = sorted(c.result() for c in concurrent.futures.as_completed(cf))
            print(f"executor (concurrent.futures): {results}")

        dask_part()
        asyncio.run(asyncio_part(address))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheduler", help="ws://host:port of a running cluster")
    main(parser.parse_args().scheduler)
