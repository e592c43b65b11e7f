"""dask.distributed behind the benchmark adapter.

Cluster (default, ``cluster_shape() == "cli"``): a ``dask scheduler`` process on a free
port and two ``dask worker --nthreads 1`` processes (each under its own nanny, dask's
default), started from the CLI (``benchmarks.systems.processes``); the benchmark process
holds only ``Client(address)``. With ``python -m benchmarks --cluster in-process`` it is
``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` and a ``Client`` on
it: the scheduler runs in the benchmark process (as trioflow's does in that shape).
dask's defaults otherwise. Every
``submit``/``map`` passes ``pure=False`` so each task is distinct, as in trioflow.
``scatter`` passes ``hash=False``: trioflow does not hash scattered data either, and we
measure transport, not tokenizing 100 MB.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import dask
import distributed

from ..task_bodies import noop, pid
from . import cluster_shape
from .processes import process_cluster

WORKERS = 2


def fib(n: int) -> int:
    """Recursive Fibonacci: every call with n >= 2 submits two child tasks and waits on
    them inside ``worker_client()`` (which secedes while waiting)."""
    if n < 2:
        return n
    with distributed.worker_client() as client:
        a = client.submit(fib, n - 1, pure=False)
        b = client.submit(fib, n - 2, pure=False)
        x, y = client.gather([a, b])
    return x + y


def fanout(n: int) -> int:
    """Submit ``n`` no-op tasks from inside a task and gather them; how many came back."""
    with distributed.worker_client() as client:
        return len(client.gather(client.map(noop, range(n), pure=False)))


def locks(n: int) -> int:
    """Take and give back one Lock ``n`` times from inside a task (a round trip each)."""
    lock = distributed.Lock("bench-lock")
    for _ in range(n):
        lock.acquire()
        lock.release()
    return n


def queue_pingpong(n: int) -> int:
    """Put ``n`` items into a Queue and get them back, from inside a task."""
    q = distributed.Queue("bench-queue")
    for i in range(n):
        q.put(i)
    return sum(1 for _ in range(n) if q.get() is not None)


class DaskCluster:
    """The adapter (see ``benchmarks.systems.Cluster``)."""

    name = "dask"
    unsupported: frozenset[str] = frozenset({"async_fib"})

    def __init__(self, client: distributed.Client) -> None:
        self.client = client
        self.addresses = sorted(client.scheduler_info()["workers"])

    def submit(self, fn: Callable[..., Any], *args: Any, worker: int | None = None) -> Any:
        workers = None if worker is None else [self.addresses[worker]]
        return self.client.submit(fn, *args, pure=False, workers=workers)

    def map(self, fn: Callable[..., Any], items: Iterable[Any]) -> list[Any]:
        return self.client.map(fn, list(items), pure=False)

    def result(self, future: Any) -> Any:
        return future.result()

    def gather(self, futures: list[Any]) -> list[Any]:
        return self.client.gather(futures)

    def wait(self, futures: list[Any]) -> None:
        distributed.wait(futures)

    def scatter(self, data: Any) -> Any:
        return self.client.scatter(data, hash=False)

    def worker_pids(self) -> list[int]:
        return [self.submit(pid, worker=i).result() for i in range(len(self.addresses))]

    def task(self, kind: str) -> Callable[..., Any]:
        return {"fib": fib, "fanout": fanout, "locks": locks,
                "queue": queue_pingpong}[kind]

    def delayed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return dask.delayed(fn, pure=False)

    def compute(self, obj: Any) -> Any:
        return self.client.compute(obj).result()


def scheduler_argv(port: int = 0) -> list[str]:
    """``dask scheduler`` on a free loopback port (it logs its address on stderr)."""
    return [sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
            "--no-dashboard"]


def worker_argv(address: str, i: int) -> list[str]:
    """``dask worker`` number ``i`` with one thread."""
    return [sys.executable, "-m", "dask", "worker", address, "--nthreads", "1",
            "--name", f"worker-{i}", "--no-dashboard", "--host", "127.0.0.1"]


#: as LocalCluster(silence_logs=logging.ERROR) in the in-process shape (the address line
#: is an INFO line of distributed.scheduler, which stays on)
QUIET = {"DASK_LOGGING": repr({"distributed": "error", "distributed.scheduler": "info"})}

def address_for(port: int) -> str:
    """The address the scheduler started by ``scheduler_argv(port)`` prints."""
    return f"tcp://127.0.0.1:{port}"


#: the scheduler's log line that carries its address
ADDRESS_PATTERN = r"Scheduler at:\s*(tcp://\S+)"


@contextlib.contextmanager
def open_cluster() -> Iterator[DaskCluster]:
    """A dask cluster of 2 worker processes x 1 thread and a Client on it (shape: module
    doc)."""
    if cluster_shape() == "cli":
        with process_cluster(scheduler_argv, "stderr", ADDRESS_PATTERN, address_for, worker_argv,
                             WORKERS, "dask", env=QUIET) as address, \
                distributed.Client(address) as client:
            client.wait_for_workers(WORKERS)
            yield DaskCluster(client)
        return
    with distributed.LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                                  silence_logs=logging.ERROR) as cluster, \
            distributed.Client(cluster) as client:
        client.wait_for_workers(WORKERS)
        yield DaskCluster(client)
