"""The systems under test, each behind the same small adapter.

A workload is written once against ``Cluster`` (below); each system module provides
``open_cluster()`` (a context manager yielding its ``Cluster``) with the agreed shape:
**2 worker processes x 1 thread each**. By default (``--cluster cli``) the scheduler and
the workers are separate processes started from each system's own CLI and the benchmark
process holds only the client, connected by address (``processes.py``): the shape the
issues' tables were measured in. ``--cluster in-process`` runs the scheduler inside the
benchmark process instead (trioflow's ``Client(workers=2)``, dask's ``LocalCluster``),
sharing the client's GIL. Ray always runs its own processes (``ray.init``).

The adapter adds one Python method call per operation, the same for every system.
The modules import their system at the top, and workers import them to unpickle the
recursive task functions, so a trioflow worker never imports dask and vice versa.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any, Protocol

#: system name -> the module that must import for it to run, and its adapter module
SYSTEMS: dict[str, tuple[str, str]] = {
    "trioflow": ("trioflow", "benchmarks.systems.trioflow_system"),
    "dask": ("distributed", "benchmarks.systems.dask_system"),
    "ray": ("ray", "benchmarks.systems.ray_system"),
}


class Cluster(Protocol):
    """What a workload may do with a running cluster of one system."""

    #: the system's name ("trioflow", "dask", "ray")
    name: str
    #: workload features this system cannot run (e.g. {"pinning", "delayed"})
    unsupported: frozenset[str]

    def submit(self, fn: Callable[..., Any], *args: Any, worker: int | None = None) -> Any:
        """Submit a distinct (not content-addressed) task, optionally pinned to a worker
        by index (0 or 1)."""

    def map(self, fn: Callable[..., Any], items: Iterable[Any]) -> list[Any]:
        """One distinct task per item."""

    def result(self, future: Any) -> Any:
        """Block until one future is done; its value."""

    def gather(self, futures: list[Any]) -> list[Any]:
        """Block until all futures are done; their values."""

    def wait(self, futures: list[Any]) -> None:
        """Block until all futures are done, without fetching their values."""

    def scatter(self, data: Any) -> Any:
        """Place ``data`` on a worker; a future for it."""

    def worker_pids(self) -> list[int]:
        """Pids of the worker processes, by worker index."""

    def task(self, kind: str) -> Callable[..., Any]:
        """The system's own version of a task that launches tasks: ``"fib"`` (sync,
        seceding while it waits), ``"async_fib"`` or ``"fanout"``."""

    def delayed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """The system's ``delayed`` decorator (distinct keys, not pure)."""

    def compute(self, obj: Any) -> Any:
        """Compute one delayed object on the cluster; its value."""


#: the environment variable that carries ``--cluster`` to the benchmark's subprocesses
SHAPE_ENV = "TRIOFLOW_BENCH_CLUSTER"
SHAPES = ("cli", "in-process")


def cluster_shape() -> str:
    """``"cli"`` (default: scheduler and workers are CLI processes) or ``"in-process"``
    (the scheduler runs in the benchmark process), from ``SHAPE_ENV``."""
    shape = os.environ.get(SHAPE_ENV) or "cli"
    if shape not in SHAPES:
        raise ValueError(f"{SHAPE_ENV}={shape!r}: use one of {SHAPES}")
    return shape


def unavailable_reason(system: str) -> str | None:
    """Why ``system`` cannot run here (its package does not import), or None."""
    package, _ = SYSTEMS[system]
    try:
        found = importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return f"`import {package}` fails (not installed)"
    return None


def open_cluster(system: str) -> AbstractContextManager[Cluster]:
    """Start a local cluster of ``system`` with the benchmark shape."""
    _, module = SYSTEMS[system]
    return importlib.import_module(module).open_cluster()
