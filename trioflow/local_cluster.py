"""``trioflow.LocalCluster(n_workers=..., threads_per_worker=...)``: dask's spelling of a
local cluster, for plain (blocking) programs: ``Client(LocalCluster(n_workers=2))``.

It runs ``open_local_cluster`` on a Trio loop in a background thread until ``close()``
(or the end of a ``with`` block). In async code use ``open_local_cluster`` directly.
"""

from __future__ import annotations

import contextlib
from typing import Any

import trio

from . import cluster as _cluster
from .config import STARTUP_TIMEOUT
from .engine.background import BackgroundContext
from .net.scheduler_server import SchedulerServer
from .net.worker_node import WorkerNode


def dask_shape(n_workers: int | None, workers: int | None) -> int | None:
    """``n_workers`` (dask's name) or ``workers`` (trioflow's); both is an error."""
    if n_workers is not None and workers is not None and n_workers != workers:
        raise TypeError(f"got n_workers={n_workers} and workers={workers}: they are two "
                        "spellings of one option, give one")
    return n_workers if n_workers is not None else workers


#: dask's local-cluster options that change nothing here, and why
DASK_ONLY = {
    # dask sets its loggers' level with it; trioflow never configures logging (set the
    # level of the "trioflow" logger yourself)
    "silence_logs",
}


def drop_dask_only(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` without the dask-only ones (``DASK_ONLY``), accepted and ignored."""
    return {k: v for k, v in options.items() if k not in DASK_ONLY}


class LocalCluster:
    """A scheduler and workers on this machine, running in a background thread.

    Args:
        n_workers: how many workers (``workers=`` is the same; default: fill the cores).
        threads_per_worker: slots per worker.
        processes: workers as subprocesses (default, as dask) or in this process.
        timeout: how long starting may take.
        **options: more ``open_local_cluster`` options (``token``, ``auto_secede``, ...).

    Attributes:
        address, scheduler_address: the scheduler's ``ws://`` address.
        scheduler, workers, processes: as on the cluster ``open_local_cluster`` yields.
    """

    def __init__(self, n_workers: int | None = None, threads_per_worker: int | None = None,
                 processes: bool = True, *, workers: int | None = None,
                 timeout: float = STARTUP_TIMEOUT, **options: Any) -> None:
        n = dask_shape(n_workers, workers)
        options = drop_dask_only(options)
        self._held = BackgroundContext(
            lambda: _cluster.open_local_cluster(n, threads_per_worker, processes=processes,
                                                **options),
            name="trioflow-cluster", timeout=timeout,
            message=f"the local cluster did not start in {timeout}s")
        self._running: _cluster.LocalCluster = self._held.value

    @property
    def address(self) -> str:
        return self._running.address

    @property
    def scheduler_address(self) -> str:
        return self._running.address

    @property
    def scheduler(self) -> SchedulerServer:
        return self._running.scheduler

    @property
    def workers(self) -> list[WorkerNode]:
        return self._running.workers

    @property
    def processes(self) -> list[trio.Process]:
        return self._running.processes

    def close(self) -> None:
        """Stop the workers and the scheduler (idempotent)."""
        self._held.close()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        held = getattr(self, "_held", None)
        if held is not None and held.open:
            with contextlib.suppress(Exception):
                self.close()

    def __repr__(self) -> str:
        return f"<LocalCluster {self.address} (background thread)>"
