"""trioflow behind the benchmark adapter.

Cluster (default, ``cluster_shape() == "cli"``): a ``trioflow-scheduler`` process on a
free port and two ``trioflow-worker --nthreads 1`` processes named ``worker-0`` and
``worker-1``, each started from the CLI (``benchmarks.systems.processes``); the benchmark
process holds only ``trioflow.Client(address)``. With ``python -m benchmarks --cluster
in-process`` it is ``trioflow.Client(workers=2, threads_per_worker=1)`` instead: the
scheduler and the client's event loop share a background thread of the benchmark
process (and its GIL), the workers are subprocesses with the same names. Every task is
distinct (trioflow's default ``pure=False``).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import trioflow

# imported here, as a program's `from trioflow import Client` does: `import trioflow`
# alone imports nothing until a name is used, and the start-up row counts from the end of
# the system's import (workloads/startup.py), as `from dask.distributed import Client`
# imports dask's client
from trioflow import Client

from ..task_bodies import noop, pid
from . import cluster_shape
from .processes import process_cluster

WORKERS = 2


def fib(n: int) -> int:
    """Recursive Fibonacci: every call with n >= 2 submits two child tasks and waits on
    them inside ``worker_client()`` (which secedes while waiting)."""
    if n < 2:
        return n
    with trioflow.worker_client() as client:
        a = client.submit(fib, n - 1)
        b = client.submit(fib, n - 2)
        x, y = client.gather([a, b])
    return x + y


async def async_fib(n: int) -> int:
    """Recursive Fibonacci as ``async def`` tasks: awaiting children holds no thread."""
    if n < 2:
        return n
    client = trioflow.get_client()
    x, y = await client.gather([client.submit(async_fib, n - 1),
                                client.submit(async_fib, n - 2)])
    return x + y


def fanout(n: int) -> int:
    """Submit ``n`` no-op tasks from inside a task and gather them; how many came back."""
    with trioflow.worker_client() as client:
        return len(client.gather(client.map(noop, range(n))))


def locks(n: int) -> int:
    """Take and give back one Lock ``n`` times from inside a task (a round trip each)."""
    lock = trioflow.Lock("bench-lock")
    for _ in range(n):
        lock.acquire()
        lock.release()
    return n


def queue_pingpong(n: int) -> int:
    """Put ``n`` items into a Queue and get them back, from inside a task."""
    q = trioflow.Queue("bench-queue")
    for i in range(n):
        q.put(i)
    return sum(1 for _ in range(n) if q.get() is not None)


class TrioflowCluster:
    """The adapter (see ``benchmarks.systems.Cluster``)."""

    name = "trioflow"
    unsupported: frozenset[str] = frozenset()

    def __init__(self, client: Client) -> None:
        self.client = client

    def submit(self, fn: Callable[..., Any], *args: Any, worker: int | None = None) -> Any:
        if worker is None:
            return self.client.submit(fn, *args)
        return self.client.submit(fn, *args, workers=[f"worker-{worker}"])

    def map(self, fn: Callable[..., Any], items: Iterable[Any]) -> list[Any]:
        return self.client.map(fn, items)

    def result(self, future: Any) -> Any:
        return future.result()

    def gather(self, futures: list[Any]) -> list[Any]:
        return self.client.gather(futures)

    def wait(self, futures: list[Any]) -> None:
        trioflow.wait(futures)

    def scatter(self, data: Any) -> Any:
        return self.client.scatter(data)

    def worker_pids(self) -> list[int]:
        return [self.submit(pid, worker=i).result() for i in range(WORKERS)]

    def task(self, kind: str) -> Callable[..., Any]:
        return {"fib": fib, "async_fib": async_fib, "fanout": fanout, "locks": locks,
                "queue": queue_pingpong}[kind]

    def delayed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return trioflow.delayed(fn)

    def compute(self, obj: Any) -> Any:
        return trioflow.compute(obj)[0]


def scheduler_argv(port: int = 0) -> list[str]:
    """``trioflow-scheduler`` on a free loopback port (it prints its address on stdout), no
    dashboard (dask's runs without one too)."""
    return [sys.executable, "-m", "trioflow.cli", "scheduler", "--port", str(port),
            "--dashboard-address", "none", "--log-level", "warning"]


def worker_argv(address: str, i: int) -> list[str]:
    """``trioflow-worker`` number ``i`` with one thread; it exits when the scheduler goes."""
    return [sys.executable, "-m", "trioflow.cli", "worker", address, "--nthreads", "1",
            "--name", f"worker-{i}", "--no-reconnect"]


def address_for(port: int) -> str:
    """The address the scheduler started by ``scheduler_argv(port)`` prints."""
    return f"ws://127.0.0.1:{port}"


#: the scheduler's stdout line that carries its address
ADDRESS_PATTERN = r"^(wss?://\S+)"


@contextlib.contextmanager
def open_cluster() -> Iterator[TrioflowCluster]:
    """A trioflow cluster of 2 worker processes x 1 thread (shape: module doc)."""
    if cluster_shape() == "in-process":
        client = Client(workers=WORKERS, threads_per_worker=1)
        try:
            yield TrioflowCluster(client)
        finally:
            client.close()
        return
    with process_cluster(scheduler_argv, "stdout", ADDRESS_PATTERN, address_for, worker_argv,
                         WORKERS, "trioflow") as address:
        client = Client(address)
        try:
            client.wait_for_workers(WORKERS)
            yield TrioflowCluster(client)
        finally:
            client.close()
