"""Ray behind the benchmark adapter (only used when ``import ray`` works).

Cluster: ``ray.init(num_cpus=2)``: a local Ray node whose scheduler lets two 1-CPU tasks
run at once, in Ray's own worker processes. Ray has no futures API of the dask kind, so
``submit`` is ``ray.remote(fn).remote(...)`` and ``result``/``gather`` are ``ray.get``.
A task blocked in ``ray.get`` gives its CPU back (Ray's equivalent of secede). Ray has
no named workers and no ``delayed``, so the delayed workloads are skipped. Pinning is
accepted and ignored: on one node every Ray worker reads the same shared-memory object
store, so where the consumer runs does not change the data path (the w2w rows measure
a value made by one task and read by another through that store).

Not exercised on the machine where these benchmarks were written (Ray is not installed
there); treat Ray numbers from it with care.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import ray

from ..task_bodies import noop

_remote: dict[Callable[..., Any], Any] = {}


def _as_remote(fn: Callable[..., Any]) -> Any:
    wrapped = _remote.get(fn)
    if wrapped is None:
        wrapped = _remote[fn] = ray.remote(num_cpus=1)(fn)
    return wrapped


def fib(n: int) -> int:
    """Recursive Fibonacci: each call submits two child tasks and blocks in ``ray.get``."""
    if n < 2:
        return n
    remote = _as_remote(fib)
    return sum(ray.get([remote.remote(n - 1), remote.remote(n - 2)]))


def fanout(n: int) -> int:
    """Submit ``n`` no-op tasks from inside a task and get them; how many came back."""
    remote = _as_remote(noop)
    return len(ray.get([remote.remote(i) for i in range(n)]))


class RayCluster:
    """The adapter (see ``benchmarks.systems.Cluster``)."""

    name = "ray"
    unsupported: frozenset[str] = frozenset({"delayed", "async_fib"})

    def submit(self, fn: Callable[..., Any], *args: Any, worker: int | None = None) -> Any:
        # (worker is ignored: see the module docstring)
        return _as_remote(fn).remote(*args)

    def map(self, fn: Callable[..., Any], items: Iterable[Any]) -> list[Any]:
        remote = _as_remote(fn)
        return [remote.remote(x) for x in items]

    def result(self, future: Any) -> Any:
        return ray.get(future)

    def gather(self, futures: list[Any]) -> list[Any]:
        return ray.get(futures)

    def wait(self, futures: list[Any]) -> None:
        ray.wait(futures, num_returns=len(futures))

    def scatter(self, data: Any) -> Any:
        return ray.put(data)

    def worker_pids(self) -> list[int]:
        return []  # Ray starts and reuses worker processes on its own; none to watch

    def task(self, kind: str) -> Callable[..., Any]:
        return {"fib": fib, "fanout": fanout}[kind]

    def delayed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        raise NotImplementedError("Ray has no delayed")

    def compute(self, obj: Any) -> Any:
        raise NotImplementedError("Ray has no delayed")


@contextlib.contextmanager
def open_cluster() -> Iterator[RayCluster]:
    """A local Ray node with 2 CPUs."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield RayCluster()
    finally:
        ray.shutdown()
