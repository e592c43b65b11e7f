"""The user-facing clients: ``AsyncClient`` (trio-native) and ``Client`` (blocking).

Both wrap a ``Session`` and share ``submit``/``map``/``cancel`` (``client_api.py``;
they never block: the Future comes back at once). They differ in how they wait: ``AsyncClient`` awaits,
``Client`` blocks its thread.

* ``AsyncClient(address)`` is used as ``async with AsyncClient(address) as client:``.
* ``Client()`` with no address starts a local cluster in a background thread, like
  dask's ``Client()``; ``Client(address)`` connects to a running one. Inside a task, or
  inside ``trioflow.run``, ``get_client()`` returns a ``Client`` bound to the existing
  connection instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from collections.abc import (
    AsyncIterator,
    Generator,
    Iterable,
    Iterator,
)
from functools import partial
from typing import Any, Literal, TypeVar, overload

import trio

from .asyncio_client import AsyncioSupport
from .client_api import ClientAPI, worker_count
from .client_link import open_session
from .client_runs import AsyncRunHistory, SyncRunHistory
from .cluster import LocalCluster, open_local_cluster
from .cluster_queries import AsyncClusterQueries, SyncClusterQueries
from .config import (
    CLIENT_CALL_TIMEOUT,
    STARTUP_TIMEOUT,
    WAIT_FOR_WORKERS_FIRST_POLL,
    WAIT_FOR_WORKERS_LAST_POLL,
)
from .dask_integration import DaskCollections, DaskScheduler, watch_for_dask
from .datasets import AsyncDatasets, SyncDatasets
from .engine.asyncio_waits import running_asyncio
from .engine.background import BackgroundContext
from .engine.context import pop_default, push_default, remove_default
from .engine.futures import Future, task_error
from .engine.keys import ERRED
from .engine.nested import assemble, futures_in, key_of, scatter_workers, scattered, split_scatter
from .engine.session import Session
from .local_cluster import LocalCluster as BackgroundCluster
from .local_cluster import dask_shape, drop_dask_only
from .metadata import AsyncMetadata, SyncMetadata
from .net.scheduler_file import read_scheduler_file
from .net.scheduler_server import SchedulerServer
from .plugins import AsyncPlugins, SyncPlugins

logger = logging.getLogger(__name__)

T = TypeVar("T")


class AsyncClient(ClientAPI, DaskCollections, AsyncClusterQueries, AsyncRunHistory,
                  AsyncDatasets, AsyncPlugins, AsyncMetadata, AsyncioSupport):
    """A trio-native client: ``async with AsyncClient(address) as client: ...``.

    Args:
        address: ``ws://host:port`` (or ``wss://``) of the scheduler.
        token: the cluster token (default: ``$TRIOFLOW_TOKEN``).
        ssl_context: for ``wss://`` addresses.
        scheduler_file: instead of ``address``, the file ``trioflow-scheduler
            --scheduler-file`` writes it into (waited for, up to the start-up timeout).

    Cancellation: leaving the ``async with`` block (normally or by cancellation) closes
    the connection; the scheduler then releases everything this client held.
    """

    def __init__(self, address: str | None = None, *, token: str | None = None,
                 ssl_context: ssl.SSLContext | None = None, name: str = "",
                 scheduler_file: str | os.PathLike[str] | None = None,
                 _scheduler: SchedulerServer | None = None) -> None:
        if address is not None and scheduler_file is not None:
            raise TypeError("give the scheduler's address or scheduler_file=, not both")
        self.address = address
        #: read for the address on entering (``trioflow-scheduler --scheduler-file``)
        self._scheduler_file = scheduler_file
        self.token = token if token is not None else os.environ.get("TRIOFLOW_TOKEN")
        self.ssl_context = ssl_context
        self.name = name or f"client-{os.getpid()}"
        #: the SchedulerServer at ``address`` when it runs on this very loop (a local
        #: cluster started for this client): then the link is in-process, no socket
        self._scheduler = _scheduler
        self._stack: contextlib.AsyncExitStack | None = None

    @classmethod
    def _in_task(cls, session: Session) -> AsyncClient:
        self = cls.__new__(cls)
        self.address = None
        self.token = None
        self._scheduler = None
        self._scheduler_file = None
        self._session = session
        self._stack = None
        return self

    async def __aenter__(self) -> AsyncClient:
        if self.address is None and self._scheduler_file is not None:
            # (it may not be written yet: wait for it in a thread, not on the loop)
            read = partial(read_scheduler_file, self._scheduler_file, STARTUP_TIMEOUT)
            self.address = (await asyncio.get_running_loop().run_in_executor(None, read)
                            if running_asyncio() else await trio.to_thread.run_sync(read))
        if self.address is None:
            raise ValueError("AsyncClient needs an address; use trioflow.run(main) or "
                             "trioflow.open_local_cluster() to start a cluster")
        if running_asyncio():  # an asyncio program: Trio runs in a background thread
            await self._enter_asyncio(Client, self.address, token=self.token,
                                      ssl_context=self.ssl_context)
            return self
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            self._session = await open_session(stack, self.address, name=self.name,
                                               token=self.token, ssl_context=self.ssl_context,
                                               scheduler=self._scheduler)
        except BaseException:
            await stack.__aexit__(None, None, None)
            raise
        self._stack = stack
        push_default(self, self._session)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __await__(self) -> Generator[Any, None, AsyncClient]:
        """``client = await AsyncClient(address)`` (dask's spelling of ``async with``):
        connected when the await returns; ``await client.close()`` when done."""
        return self.__aenter__().__await__()

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._background is not None:
            await self._close_asyncio()
            return
        remove_default(self)
        stack, self._stack = self._stack, None
        if stack is not None:
            with trio.CancelScope(shield=True):
                await self._session.conn.flush()
            await stack.aclose()

    @overload
    async def gather(self, futures: Future[T], errors: str = "raise",
                     direct: bool | None = None) -> T: ...

    @overload
    async def gather(self, futures: list[Future[T]], errors: str = "raise",
                     direct: bool | None = None) -> list[T]: ...

    @overload
    async def gather(self, futures: Any, errors: str = "raise",
                     direct: bool | None = None) -> Any: ...

    async def gather(self, futures: Any, errors: str = "raise",
                     direct: bool | None = None) -> Any:
        """The values of futures (a Future, or lists/tuples/dicts of them), same shape.

        Args:
            errors: "raise" raises the first failure; "skip" leaves failed ones out
                (lists only).
        """
        found = futures_in(futures, errors)
        if self._background is not None:
            return assemble(futures, await self._gather_asyncio(found, errors), errors)
        session = self._session
        await session.wait_async([f._state for f in found])
        await session.prefetch_async([f._state for f in found])
        values: dict[str, Any] = {}
        for f in found:
            if f._state.status is ERRED:
                if errors == "raise":
                    raise task_error(f._state)  # here: no frames of trioflow's below
                continue
            try:
                values[f.key] = await session.value_async(f._state)
            except Exception:
                if errors == "raise":
                    raise
        return assemble(futures, values, errors)

    async def scatter(self, data: Any, workers: Iterable[str] | str | None = None,
                      broadcast: bool = False, direct: bool | None = None,
                      hash: bool = True, timeout: float | None = None) -> Any:
        """Place data on the cluster; Futures in the same shape (list, dict or one).
        ``workers``: names of the workers large values go to (small ones stay with the
        scheduler); ``broadcast=True``: then copy each to every worker (of
        ``workers``, when given; ``replicate``). dask's ``direct``, ``hash`` and
        ``timeout`` are accepted: every scatter gets a key of its own (dask's
        ``hash=False``), and uploads go straight to the worker anyway."""
        futures = split_scatter(self._session, data, workers)
        if broadcast:
            await self.replicate(scattered(futures), workers=scatter_workers(workers) or None)
        return futures

    async def wait_for_workers(self, n_workers: int = 1, timeout: float | None = None, *,
                               n: int | None = None) -> None:
        """Return once at least ``n_workers`` (or ``n``) workers are connected.

        Raises:
            TimeoutError: fewer after ``timeout`` seconds.
        """
        n = worker_count(n_workers, n)
        if self._background is not None:
            return await self._call_blocking("wait_for_workers", n, timeout)
        with trio.move_on_after(timeout if timeout is not None else float("inf")):
            delay = WAIT_FOR_WORKERS_FIRST_POLL
            while True:
                # the scheduler answers as the n-th worker joins (``min_workers``); the
                # poll is for one that answers at once (an older scheduler)
                reply = await self._session.status(min_workers=n)
                if len(reply.workers) >= n:
                    return
                await trio.sleep(delay)
                delay = min(delay * 2, WAIT_FOR_WORKERS_LAST_POLL)
        # (TimeoutError, as the blocking client and dask raise; not trio's TooSlowError)
        raise TimeoutError(f"fewer than {n} workers after {timeout}s")

    async def status(self) -> dict[str, Any]:
        """A snapshot of the cluster: workers with their slots, tasks by state."""
        if self._background is not None:
            return await self._call_blocking("status")
        reply = await self._session.status()
        return {"workers": reply.workers, "tasks": reply.tasks}

    async def why(self, future: Future | str) -> str:
        """Why ``future`` (or the task with that key) has not finished: the chain of
        reasons the scheduler sees, one per line (see docs/failures.md)."""
        return await self._session.why(key_of(future))


class Client(ClientAPI, DaskScheduler, SyncClusterQueries, SyncRunHistory, SyncDatasets,
             SyncPlugins, SyncMetadata):
    """A blocking client, for plain (non-async) programs and sync tasks.

    ``Client()`` starts a local cluster (subprocess workers) in a background thread;
    ``Client(address)`` connects to a running scheduler. Use it as a context manager or
    call ``close()``.

    Args:
        address: scheduler address, or a ``LocalCluster`` to connect to; None starts a
            local cluster.
        workers (or dask's ``n_workers``), threads_per_worker, processes: the local
            cluster's shape.
        token: the cluster token (default: ``$TRIOFLOW_TOKEN``).
        scheduler_file: instead of ``address``, the file ``trioflow-scheduler
            --scheduler-file`` writes it into (waited for, up to ``timeout``).
        **options: more local-cluster options (``auto_secede``, ``max_parked_threads``).
    """

    @overload
    def __new__(  # type: ignore[misc]  # (mypy sees a Client: only a subclass may come)
            cls, address: str | LocalCluster | BackgroundCluster | None = None, *,
            asynchronous: Literal[True], **options: Any) -> AsyncClient: ...

    @overload
    def __new__(cls, address: str | LocalCluster | BackgroundCluster | None = None, *,
                asynchronous: Literal[False] = False, **options: Any) -> Client: ...

    def __new__(cls, address: str | LocalCluster | BackgroundCluster | None = None, *,
                asynchronous: bool = False, **options: Any) -> Any:
        """``Client(address, asynchronous=True)`` is dask's spelling of an async client:
        it returns an ``AsyncClient`` (``async with`` it, or ``await`` it)."""
        if not asynchronous:
            return super().__new__(cls)
        if isinstance(address, LocalCluster | BackgroundCluster):
            address = address.address
        allowed = {"token", "ssl_context", "name", "scheduler_file"}
        extra = sorted(set(options) - allowed)
        if extra:
            raise TypeError(f"Client(asynchronous=True) is an AsyncClient, which takes "
                            f"address, token, ssl_context, name and scheduler_file, not {extra}")
        return AsyncClient(address, **options)

    def __init__(self, address: str | LocalCluster | BackgroundCluster | None = None, *,
                 workers: int | None = None,
                 threads_per_worker: int | None = None, processes: bool = True,
                 token: str | None = None, ssl_context: ssl.SSLContext | None = None,
                 timeout: float = STARTUP_TIMEOUT,
                 scheduler_file: str | os.PathLike[str] | None = None,
                 asynchronous: bool = False, **options: Any) -> None:
        if scheduler_file is not None:  # dask's: where trioflow-scheduler wrote its address
            if address is not None:
                raise TypeError("give the scheduler's address or scheduler_file=, not both")
            address = read_scheduler_file(scheduler_file, timeout)
        given = address if isinstance(address, LocalCluster | BackgroundCluster) else None
        if given is not None:  # dask's Client(cluster)
            address = given.address
        assert address is None or isinstance(address, str)
        workers = dask_shape(options.pop("n_workers", None), workers)  # dask's spelling
        options = drop_dask_only(options)
        self._held: BackgroundContext[tuple[AsyncClient, LocalCluster | None]] | None
        self._held = BackgroundContext(
            lambda: open_client(address, workers=workers, threads_per_worker=threads_per_worker,
                                processes=processes, token=token, ssl_context=ssl_context,
                                **options),
            name="trioflow-client", timeout=timeout,
            message=f"could not start or reach the cluster in {timeout}s")
        client, cluster = self._held.value
        self._session = client._session
        self.cluster = cluster if given is None else given
        #: the LocalCluster given as ``Client(cluster)``: ``shutdown`` closes it too
        self._given = given
        push_default(self, self._session)
        watch_for_dask()  # the current client is dask's default scheduler, as in dask

    @classmethod
    def _in_task(cls, session: Session) -> Client:
        self = cls.__new__(cls)
        self._session = session
        self._held = None
        self.cluster = None
        return self

    @overload
    def gather(self, futures: Future[T], errors: str = "raise",
               timeout: float | None = None, direct: bool | None = None) -> T: ...

    @overload
    def gather(self, futures: list[Future[T]], errors: str = "raise",
               timeout: float | None = None, direct: bool | None = None) -> list[T]: ...

    @overload
    def gather(self, futures: Any, errors: str = "raise", timeout: float | None = None,
               direct: bool | None = None) -> Any: ...

    def gather(self, futures: Any, errors: str = "raise", timeout: float | None = None,
               direct: bool | None = None) -> Any:
        """Block until futures are done; their values in the same shape.

        Inside a task this wait is seen by the scheduler: secede first (or use
        ``worker_client``), or it holds the slot while waiting. ``direct`` is accepted
        for dask's sake: large values always come straight from a worker holding them.
        """
        found = futures_in(futures, errors)
        session = self._session
        session.wait_sync([f._state for f in found], timeout)
        session.prefetch_sync([f._state for f in found])
        values: dict[str, Any] = {}
        for f in found:
            if f._state.status is ERRED:
                if errors == "raise":
                    raise task_error(f._state)  # here: no frames of trioflow's below
                continue
            try:
                values[f.key] = session.value(f._state)
            except Exception:
                if errors == "raise":
                    raise
        return assemble(futures, values, errors)

    def scatter(self, data: Any, workers: Iterable[str] | str | None = None,
                broadcast: bool = False, direct: bool | None = None, hash: bool = True,
                timeout: float | None = None) -> Any:
        """Place data on the cluster; Futures in the same shape (see
        ``AsyncClient.scatter`` for ``workers``, ``broadcast`` and dask's others)."""
        futures = split_scatter(self._session, data, workers)
        if broadcast:
            self.replicate(scattered(futures), workers=scatter_workers(workers) or None)
        return futures

    def status(self, timeout: float = CLIENT_CALL_TIMEOUT) -> dict[str, Any]:
        """A snapshot of the cluster: workers with their slots, tasks by state."""
        reply = self._on_loop(self._session.status, timeout)
        return {"workers": reply.workers, "tasks": reply.tasks}

    def why(self, future: Future | str, timeout: float = CLIENT_CALL_TIMEOUT) -> str:
        """Why ``future`` (or the task with that key) has not finished: the chain of
        reasons the scheduler sees, one per line (see docs/failures.md)."""
        text: str = self._on_loop(partial(self._session.why, key_of(future)), timeout)
        return text

    def wait_for_workers(self, n_workers: int = 1, timeout: float | None = None, *,
                         n: int | None = None) -> None:
        """Block until at least ``n_workers`` (or ``n``) workers are connected.

        Raises:
            TimeoutError: fewer after ``timeout`` seconds.
        """
        n = worker_count(n_workers, n)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = WAIT_FOR_WORKERS_FIRST_POLL
        session = self._session
        while True:
            left = float("inf") if deadline is None else deadline - time.monotonic()
            try:
                # answered as the n-th worker joins (see AsyncClient.wait_for_workers)
                reply = self._on_loop(partial(session.status, False, n), max(left, 0.0))
            except trio.TooSlowError:
                reply = None
            if reply is not None and len(reply.workers) >= n:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"fewer than {n} workers after {timeout}s")
            time.sleep(delay)
            delay = min(delay * 2, WAIT_FOR_WORKERS_LAST_POLL)

    def _on_loop(self, afn: Any, timeout: float) -> Any:
        if self._session.on_loop():
            raise RuntimeError("blocking Client calls cannot run on the event loop thread")

        async def call() -> Any:
            with trio.fail_after(timeout):
                return await afn()

        return trio.from_thread.run(call, trio_token=self._session.trio_token)

    def close(self) -> None:
        """Close the connection, and the local cluster if this client started one."""
        remove_default(self)
        if self._held is not None:
            self._held.close()

    def shutdown(self) -> None:
        """Close this client and the local cluster it runs on (one it started, or the
        ``trioflow.LocalCluster`` it was given), as dask's ``shutdown`` does. (A cluster
        of ``open_local_cluster`` closes when its ``async with`` block ends.)

        Raises:
            RuntimeError: the cluster is a remote one (an address): trioflow clients do
                not stop schedulers; this client is closed, the cluster keeps running.
        """
        cluster, given = self.cluster, getattr(self, "_given", None)
        self.close()
        if isinstance(given, BackgroundCluster):
            given.close()
        elif cluster is None:
            raise RuntimeError(
                "shutdown() stops the local cluster a Client runs on; this one is "
                "connected to a remote scheduler, which keeps running (this client is "
                "closed). Stop the scheduler itself (SIGTERM to `trioflow-scheduler`) to "
                "shut the cluster down")

    @contextlib.contextmanager
    def as_current(self) -> Iterator[Client]:
        """``with client.as_current():`` makes ``get_client()`` (and dask's default
        scheduler) this client inside the block, as in dask."""
        push_default(self, self._session)
        try:
            yield self
        finally:
            pop_default(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        held = getattr(self, "_held", None)
        if held is not None and held.open:
            with contextlib.suppress(Exception):
                self.close()



@contextlib.asynccontextmanager
async def open_client(address: str | None, *, workers: int | None = None,
                      threads_per_worker: int | None = None, processes: bool = True,
                      token: str | None = None, ssl_context: ssl.SSLContext | None = None,
                      **options: Any) -> AsyncIterator[tuple[AsyncClient, LocalCluster | None]]:
    """An AsyncClient connected to ``address``, or to a new local cluster if None.

    Cancellation: leaving the block closes the client, then the cluster started here.
    """
    async with contextlib.AsyncExitStack() as stack:
        cluster = None
        if address is None:
            cluster = await stack.enter_async_context(open_local_cluster(
                workers, threads_per_worker, processes=processes, token=token, **options))
            address = cluster.address
        elif options:
            raise TypeError(f"options {sorted(options)} only apply to a local cluster, "
                            "not with address=")
        # a cluster started here runs on this loop: its client needs no socket
        client = await stack.enter_async_context(
            AsyncClient(address, token=token, ssl_context=ssl_context,
                        _scheduler=cluster.scheduler if cluster is not None else None))
        if cluster is not None and client.dashboard_link:
            logger.info("local cluster at %s; dashboard at %s", address, client.dashboard_link)
        yield client, cluster
