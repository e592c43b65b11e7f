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

import copyreg
import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from .lazy_exports import lazy_exports

if TYPE_CHECKING:
    from .client import AsyncClient, Client
    from .cluster import open_local_cluster
    from .delayed import Delayed, compute, compute_async, delayed
    from .engine.as_completed import as_completed
    from .engine.futures import Future, fire_and_forget
    from .engine.nested import futures_of
    from .engine.waiting import DoneAndNotDoneFutures, wait, wait_async
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
        TimeoutError,
        TrioflowError,
        WorkerLost,
    )
    from .executor import ClusterExecutor
    from .in_task import (
        WorkerInfo,
        default_client,
        get_client,
        get_worker,
        rejoin,
        secede,
        worker_client,
    )
    from .local_cluster import LocalCluster
    from .plugins import PluginWorker, WorkerPlugin
    from .primitives import Event, Lock, Queue, Semaphore, Variable
    from .progress import progress
    from .run import run
    from .task_stream import get_task_stream, performance_report

#: public name -> the module (relative to this package) that defines it. A name is imported
#: on first use (PEP 562), so a process pays only for what it touches: the scheduler and
#: worker command lines never load the client, the dashboard or asyncio support, and start
#: faster (issue 12, start to first result). ``tests/unit/test_package.py`` checks this table
#: against the ``TYPE_CHECKING`` imports above, which is what mypy and the layer test read.
_LAZY: dict[str, str] = {
    "AsyncClient": "client",
    "Client": "client",
    "open_local_cluster": "cluster",
    "Delayed": "delayed",
    "compute": "delayed",
    "compute_async": "delayed",
    "delayed": "delayed",
    "Future": "engine.futures",
    "fire_and_forget": "engine.futures",
    "futures_of": "engine.nested",
    "DoneAndNotDoneFutures": "engine.waiting",
    "as_completed": "engine.as_completed",
    "wait": "engine.waiting",
    "wait_async": "engine.waiting",
    "AddressError": "errors",
    "AuthenticationError": "errors",
    "CancelledError": "errors",
    "ClientClosedError": "errors",
    "DeadlockError": "errors",
    "KilledWorker": "errors",
    "NoClientError": "errors",
    "NotInTaskError": "errors",
    "NoWorkersError": "errors",
    "RemoteProtocolError": "errors",
    "SerializationError": "errors",
    "TaskFailed": "errors",
    "TimeoutError": "errors",
    "TrioflowError": "errors",
    "WorkerLost": "errors",
    "ClusterExecutor": "executor",
    "WorkerInfo": "in_task",
    "default_client": "in_task",
    "get_client": "in_task",
    "get_worker": "in_task",
    "rejoin": "in_task",
    "secede": "in_task",
    "worker_client": "in_task",
    "LocalCluster": "local_cluster",
    "Event": "primitives",
    "Lock": "primitives",
    "Queue": "primitives",
    "Semaphore": "primitives",
    "Variable": "primitives",
    "progress": "progress",
    "PluginWorker": "plugins",
    "WorkerPlugin": "plugins",
    "run": "run",
    "get_task_stream": "task_stream",
    "performance_report": "task_stream",
}


__getattr__ = lazy_exports(__name__, _LAZY, globals())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """The package's module type: a public name stays itself when its namesake loads.

    ``trioflow.delayed``, ``trioflow.run`` and ``trioflow.progress`` are functions defined
    in submodules of the same name. Importing a submodule sets it as an attribute of the
    package (anyone may import it first, e.g. unpickling a task on a worker); this keeps the
    function there instead, as the eager imports did.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if (isinstance(value, types.ModuleType) and _LAZY.get(name) == name
                and value.__name__ == f"{__name__}.{name}"):
            value = getattr(value, name)
        super().__setattr__(name, value)


def _reduce_package(package: types.ModuleType) -> tuple[Any, tuple[str]]:
    return importlib.import_module, (package.__name__,)


sys.modules[__name__].__class__ = _Package
# pickled by reference, as any module is: a function defined in ``__main__`` that names
# ``trioflow`` carries it in its globals to the workers (cloudpickle, and pickle, find a
# module's reducer by its exact type, which is now ``_Package``)
copyreg.pickle(_Package, _reduce_package)


from .versions import __version__  # noqa: E402  (after the module type is set)

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
    "PluginWorker",
    "Queue",
    "RemoteProtocolError",
    "Semaphore",
    "SerializationError",
    "TaskFailed",
    "TimeoutError",
    "TrioflowError",
    "Variable",
    "WorkerInfo",
    "WorkerLost",
    "WorkerPlugin",
    "__version__",
    "as_completed",
    "compute",
    "compute_async",
    "default_client",
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
