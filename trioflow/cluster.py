"""Local clusters: a scheduler and workers in one nursery.

``open_local_cluster`` starts the scheduler on loopback (port 0) and N workers, either
as subprocesses running the real ``trioflow-worker`` CLI (``processes=True``) or as Trio
tasks in this process (``processes=False``, for tests and debugging), and returns once
every worker has joined. Worker processes are supervised (``nanny.Nanny``): one that dies
is started again under the same name, with backoff and a restart budget.

Leaving it stops everything, workers first: they are asked to stop (SIGTERM) while the
scheduler still runs, so they leave quietly instead of reporting a lost scheduler; then
the scheduler stops. No thread or process is left behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Mapping
from typing import Any

import attrs
import trio

from .config import ALLOWED_FAILURES, LOCAL_DEATH_TIMEOUT, NO_WORKERS_TIMEOUT, STARTUP_TIMEOUT
from .core import resource_spec
from .dashboard.server import Dashboard, parse_address
from .nanny import Nanny, RestartPolicy
from .net.memory import parse_memory_limit
from .net.scheduler_server import SchedulerServer
from .net.worker_node import WorkerNode

logger = logging.getLogger(__name__)


def default_shape(workers: int | None, threads_per_worker: int | None) -> tuple[int, int]:
    """Workers and threads per worker, filling the machine's cores by default."""
    cores = os.cpu_count() or 1
    if workers is None:
        workers = max(1, min(cores, 4) if threads_per_worker is None else cores // threads_per_worker)
    if threads_per_worker is None:
        threads_per_worker = max(1, cores // workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if threads_per_worker < 1:
        raise ValueError(f"threads_per_worker must be >= 1, got {threads_per_worker}")
    return workers, threads_per_worker


@attrs.define(eq=False)
class LocalCluster:
    """A running local cluster.

    Attributes:
        address: the scheduler's ``ws://`` address.
        scheduler: the in-process SchedulerServer (its ``state`` is the core).
        workers: in-process WorkerNodes (empty with processes=True).
        nannies: the supervisors of the worker processes (empty with processes=False).
    """

    address: str
    scheduler: SchedulerServer
    workers: list[WorkerNode]
    nannies: list[Nanny]
    nursery: trio.Nursery
    #: the live dashboard (None when started with ``dashboard_address=None``)
    dashboard: Dashboard | None = None

    @property
    def processes(self) -> list[trio.Process]:
        """The worker processes running now (a restarted worker's is a new one)."""
        return [n.process for n in self.nannies if n.process is not None]

    def __repr__(self) -> str:
        n = len(self.workers) or len(self.nannies)
        return f"<LocalCluster {self.address} workers={n}>"

    @property
    def dashboard_link(self) -> str:
        """The dashboard's URL to open ("" without a dashboard)."""
        return self.dashboard.link if self.dashboard is not None else ""


@contextlib.asynccontextmanager
async def open_local_cluster(
    workers: int | None = None,
    threads_per_worker: int | None = None,
    *,
    processes: bool = False,
    host: str = "127.0.0.1",
    token: str | None = None,
    auto_secede: bool = False,
    max_parked_threads: int | None = None,
    inline_limit: int | None = None,
    allowed_failures: int = ALLOWED_FAILURES,
    memory_limit: str | float | None = None,
    dashboard_address: str | None = "127.0.0.1:0",
    restart_policy: RestartPolicy | None = None,
    no_workers_timeout: float | None = NO_WORKERS_TIMEOUT,
    peer_timeout: float | None = None,
    resources: Mapping[str, float] | str | None = None,
    local_directory: str | os.PathLike[str] | None = None,
) -> AsyncIterator[LocalCluster]:
    """Start a scheduler and workers; yield once all workers have joined.

    ``memory_limit`` is per worker, in dask's spelling (``"4GiB"``, a fraction, ``"auto"``:
    the machine's memory shared by the workers; see ``net/memory.py``).
    ``dashboard_address`` (``HOST:PORT``; None for none) is where the live dashboard is
    served; it needs the token off loopback.
    ``restart_policy`` says how dead worker processes are restarted (default:
    ``RestartPolicy()``). ``no_workers_timeout``: seconds a task may have no connected
    worker able to run it before it fails with ``NoWorkersError`` (None or 0: never).
    ``peer_timeout``: the scheduler's and the worker processes' silence limit (default
    ``config.PEER_TIMEOUT``). ``local_directory``: where the workers spill values
    (default: the system's temp directory).

    Cancellation: leaving the block cancels everything started here and terminates the
    worker processes.
    """
    n, nthreads = default_shape(workers, threads_per_worker)
    limit = parse_memory_limit(memory_limit, workers=n)
    # every worker offers these abstract resources (``"GPU=2"`` or ``{"GPU": 2}``)
    offered = (resource_spec.parse_resources(resources) if isinstance(resources, str)
               else resource_spec.check_resources(resources))
    extra: dict[str, Any] = {}
    if inline_limit is not None:
        extra["inline_limit"] = inline_limit
    server_extra: dict[str, Any] = {}
    if peer_timeout is not None:
        server_extra["peer_timeout"] = peer_timeout
    async with trio.open_nursery() as nursery:
        server = SchedulerServer(token=token, allowed_failures=allowed_failures,
                                 no_workers_timeout=no_workers_timeout, **extra,
                                 **server_extra)
        dashboard = None
        if dashboard_address is not None:
            # first, so that every peer's Welcome carries its address
            dashboard = Dashboard(server)
            await nursery.start(dashboard.serve, *parse_address(dashboard_address))
        address = await nursery.start(server.serve, host, 0)
        nodes: list[WorkerNode] = []
        nannies: list[Nanny] = []
        policy = restart_policy or RestartPolicy()
        try:
            # the workers live in a nursery of their own, so they stop (and are gone)
            # before the scheduler does (see the module doc)
            async with trio.open_nursery() as workers_nursery:
                for i in range(n):
                    if processes:
                        argv = [sys.executable, "-m", "trioflow.cli", "worker", address,
                                "--nthreads", str(nthreads), "--name", f"worker-{i}",
                                "--death-timeout", str(LOCAL_DEATH_TIMEOUT),
                                # its scheduler lives in this process: no point in
                                # reconnecting to it (the nanny starts a fresh worker)
                                "--no-reconnect", "--supervised"]
                        if auto_secede:
                            argv.append("--auto-secede")
                        if peer_timeout is not None:
                            argv += ["--peer-timeout", str(peer_timeout)]
                        if max_parked_threads is not None:
                            argv += ["--max-parked-threads", str(max_parked_threads)]
                        if limit is not None:
                            argv += ["--memory-limit", str(limit)]
                        if local_directory is not None:
                            argv += ["--local-directory", os.fspath(local_directory)]
                        if offered:
                            argv += ["--resources",
                                     ",".join(f"{k}={v!r}" for k, v in offered.items())]
                        env = dict(os.environ)
                        if token:
                            env["TRIOFLOW_TOKEN"] = token
                        nanny = Nanny(argv, f"worker-{i}", env=env, policy=policy)
                        nannies.append(nanny)
                        await workers_nursery.start(nanny.run)
                    else:
                        opts: dict[str, Any] = dict(extra)
                        if max_parked_threads is not None:
                            opts["max_parked_threads"] = max_parked_threads
                        if limit is not None:
                            opts["memory_limit"] = limit
                        if offered:
                            opts["resources"] = offered
                        if local_directory is not None:
                            opts["local_directory"] = os.fspath(local_directory)
                        node = WorkerNode(address, nthreads=nthreads, name=f"worker-{i}",
                                          token=token, auto_secede=auto_secede, host=host,
                                          **opts)
                        nodes.append(node)
                        workers_nursery.start_soon(node.serve)
                with trio.fail_after(STARTUP_TIMEOUT):
                    await server.wait_for_workers(n)
                try:
                    yield LocalCluster(address, server, nodes, nannies, nursery, dashboard)
                finally:
                    workers_nursery.cancel_scope.cancel()
        finally:
            nursery.cancel_scope.cancel()

