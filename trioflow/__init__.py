"""trioflow: a task runtime for Python built on Trio, for tasks that launch tasks.

    import trioflow

    def inc(x):
        return x + 1

    async def main():
        client = trioflow.get_client()
        futures = client.map(inc, range(10))
        return sum(await client.gather(futures))

    print(trioflow.run(main))   # 55

See docs/ for the API, the slot rules (secede/rejoin) and the architecture.
"""

from __future__ import annotations

from .client import AsyncClient, Client
from .cluster import open_local_cluster
from .delayed import Delayed, compute, compute_async, delayed
from .engine.futures import Future, fire_and_forget
from .engine.nested import futures_of
from .engine.waiting import DoneAndNotDoneFutures, as_completed, wait, wait_async
from .errors import (
    AddressError,
    AuthenticationError,
    CancelledError,
    ClientClosedError,
    DeadlockError,
    KilledWorker,
    NoClientError,
    NotInTaskError,
    NoWorkersError,
    RemoteProtocolError,
    SerializationError,
    TaskFailed,
    TrioflowError,
    WorkerLost,
)
from .executor import ClusterExecutor
from .in_task import WorkerInfo, get_client, get_worker, rejoin, secede, worker_client
from .local_cluster import LocalCluster
from .primitives import Event, Lock, Queue, Semaphore, Variable
from .progress import progress
from .run import run
from .task_stream import get_task_stream, performance_report

__version__ = "0.3.0"

__all__ = [
    "AddressError",
    "AsyncClient",
    "AuthenticationError",
    "CancelledError",
    "Client",
    "ClientClosedError",
    "ClusterExecutor",
    "DeadlockError",
    "Delayed",
    "DoneAndNotDoneFutures",
    "Event",
    "Future",
    "KilledWorker",
    "LocalCluster",
    "Lock",
    "NoClientError",
    "NoWorkersError",
    "NotInTaskError",
    "Queue",
    "RemoteProtocolError",
    "Semaphore",
    "SerializationError",
    "TaskFailed",
    "TrioflowError",
    "Variable",
    "WorkerInfo",
    "WorkerLost",
    "__version__",
    "as_completed",
    "compute",
    "compute_async",
    "delayed",
    "fire_and_forget",
    "futures_of",
    "get_client",
    "get_task_stream",
    "get_worker",
    "open_local_cluster",
    "performance_report",
    "progress",
    "rejoin",
    "run",
    "secede",
    "wait",
    "wait_async",
    "worker_client",
]
