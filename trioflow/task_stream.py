"""dask's module-level context managers for what ran: ``performance_report`` and
``get_task_stream``, on the current client (``get_client()``) or a given one.

``with trioflow.performance_report(filename="report.html"):`` writes the runs that
finished during the block, as ``Client.performance_report`` does. ``with
trioflow.get_task_stream() as ts:`` keeps them in ``ts.data``, one dict per run in
dask's shape (``key``, ``worker``, ``thread``, ``nbytes``, ``status`` "OK" or "error",
``startstops`` with the run's ``compute`` interval), plus trioflow's ``parent`` and
``depth`` of tasks launched from tasks. Both work with ``with`` from a thread (a
blocking client, a sync task) and with ``async with`` on an event loop.

The runs come from the scheduler's bounded run log (``config.RUN_LOG_LENGTH``): a block
that outlasts it misses the oldest, and says so in a warning.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from .client import AsyncClient, Client
from .config import CLIENT_CALL_TIMEOUT
from .dashboard.trace import Run, collect_runs, task_record, write_report
from .engine.session import Session
from .in_task import get_client

R = TypeVar("R")


def _session(client: Client | AsyncClient | None) -> Session:
    chosen = client if client is not None else get_client()
    if not isinstance(chosen, Client | AsyncClient):
        raise TypeError(f"client must be a Client or AsyncClient, got {type(chosen).__name__}")
    return chosen._session


def _call(session: Session, afn: Callable[[], Awaitable[R]]) -> R:
    """``afn()`` on the session's loop, from another thread (blocking)."""
    if session.on_loop():
        raise RuntimeError("this `with` blocks, and this is the event loop's thread: use "
                           "`async with` here")

    async def call() -> R:
        with trio.fail_after(CLIENT_CALL_TIMEOUT):
            return await afn()

    return trio.from_thread.run(call, trio_token=session.trio_token)


async def _acall(session: Session, afn: Callable[[], Awaitable[R]]) -> R:
    """``afn()`` on the session's loop, awaited from this loop (it may be another)."""
    if session.on_loop():
        return await afn()
    return await trio.to_thread.run_sync(_call, session, afn)


class _RunsDuring:
    """The runs that finished on the cluster between entering and leaving the block."""

    def __init__(self, client: Client | AsyncClient | None) -> None:
        self._client = client
        self._session: Session | None = None
        self._start = 0

    def _begin(self) -> tuple[Session, Callable[[], Awaitable[Any]]]:
        session = self._session = _session(self._client)
        return session, lambda: session.runs(0, 0)

    def _end(self) -> tuple[Session, Callable[[], Awaitable[tuple[list[Run], int]]]]:
        session, start = self._session, self._start
        assert session is not None
        return session, lambda: collect_runs(session.runs, start)

    def __enter__(self) -> Any:
        self._start = _call(*self._begin()).total
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: Any) -> None:
        if kind is None:
            self._finished(*_call(*self._end()))

    async def __aenter__(self) -> Any:
        self._start = (await _acall(*self._begin())).total
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *exc: Any) -> None:
        if kind is None:
            self._finished(*await _acall(*self._end()))

    def _finished(self, runs: list[Run], missed: int) -> None:
        raise NotImplementedError


class performance_report(_RunsDuring):
    """``with trioflow.performance_report(filename="report.html"):`` (or ``async
    with``): write the runs that finished during the block as ``Client.
    performance_report`` does (HTML summary with a Chrome trace beside it, or a
    ``.json`` trace). A block that raises writes nothing.

    Args:
        filename: where to write (dask's default name).
        client: the client whose cluster to watch (default: ``get_client()``).
    """

    def __init__(self, filename: str | os.PathLike[str] = "dask-report.html",
                 client: Client | AsyncClient | None = None) -> None:
        super().__init__(client)
        self.filename = filename

    def _finished(self, runs: list[Run], missed: int) -> None:
        write_report(self.filename, runs, missed=missed)


class get_task_stream(_RunsDuring):
    """``with trioflow.get_task_stream() as ts:`` (or ``async with``): afterwards
    ``ts.data`` lists the runs that finished during the block, one dict each in dask's
    shape (see the module's docstring). A block that raises leaves ``data`` empty.

    Args:
        client: the client whose cluster to watch (default: ``get_client()``).
    """

    def __init__(self, client: Client | AsyncClient | None = None) -> None:
        super().__init__(client)
        self.data: list[dict[str, Any]] = []

    def _finished(self, runs: list[Run], missed: int) -> None:
        self.data = [task_record(run) for run in runs]
