"""The cluster's run history as clients ask for it: dask's task stream
(``get_task_stream``) and performance reports (``performance_report``). Mixed into both
clients: ``Client`` blocks, ``AsyncClient`` awaits.

The runs come from the scheduler's run log (``config.RUN_LOG_LENGTH`` runs), asked for
in pages (``dashboard/trace.py`` pages and renders them).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

from .config import CLIENT_CALL_TIMEOUT
from .dashboard.trace import collect_runs, task_stream, write_report
from .engine.session import Session


def _no_plot(plot: bool) -> None:
    if plot:
        raise ValueError("get_task_stream(plot=True): trioflow draws no bokeh figures; the "
                         "dashboard's task stream and performance_report show the runs")


class AsyncRunHistory:
    """The async client's run history calls (each awaited; ``_on_trio`` is
    ``AsyncioSupport``'s: under asyncio they run on the client's Trio thread)."""

    _session: Session

    async def get_task_stream(self, start: float | None = None, stop: float | None = None,
                              count: int | None = None,
                              plot: bool = False) -> list[dict[str, Any]]:
        """See the blocking client's ``get_task_stream``."""
        _no_plot(plot)
        session = self._session
        runs: list[dict[str, Any]] = await self._on_trio(  # type: ignore[attr-defined]
            lambda: task_stream(session.runs, start, stop, count))
        return runs

    @contextlib.asynccontextmanager
    async def performance_report(self, path: str | os.PathLike[str]) -> AsyncIterator[None]:
        """``async with client.performance_report("run.json"):`` writes every run that
        finished on the cluster during the block as a Chrome trace (Perfetto opens it);
        a path ending in ``.html`` gets an HTML summary, with the trace beside it.

        Cancellation: a cancelled or failing block writes nothing.
        """
        session = self._session
        start = (await self._on_trio(  # type: ignore[attr-defined]
            lambda: session.runs(0, 0))).total
        yield
        runs, missed = await self._on_trio(  # type: ignore[attr-defined]
            lambda: collect_runs(session.runs, start))
        write_report(path, runs, missed=missed)


class SyncRunHistory:
    """The blocking client's run history calls (``_on_loop`` is ``Client``'s)."""

    _session: Session

    @contextlib.contextmanager
    def performance_report(self, path: str | os.PathLike[str],
                           timeout: float = CLIENT_CALL_TIMEOUT) -> Iterator[None]:
        """``with client.performance_report("run.html"):`` — see
        ``AsyncClient.performance_report``."""
        session = self._session
        start = self._on_loop(  # type: ignore[attr-defined]
            lambda: session.runs(0, 0), timeout).total
        yield
        runs, missed = self._on_loop(  # type: ignore[attr-defined]
            lambda: collect_runs(session.runs, start), timeout)
        write_report(path, runs, missed=missed)

    def get_task_stream(self, start: float | None = None, stop: float | None = None,
                        count: int | None = None, plot: bool = False) -> list[dict[str, Any]]:
        """The runs the scheduler keeps (``config.RUN_LOG_LENGTH``), as dask's task
        stream records, oldest first: the last ``count``, started within [``start``,
        ``stop``) (seconds since the epoch), when given. For a block of code, ``with
        trioflow.get_task_stream() as ts:``.

        Raises:
            ValueError: ``plot=True`` (trioflow draws no bokeh figures: the dashboard's
                task stream and ``performance_report`` show the runs).
        """
        _no_plot(plot)
        session = self._session
        runs: list[dict[str, Any]] = self._on_loop(  # type: ignore[attr-defined]
            lambda: task_stream(session.runs, start, stop, count), CLIENT_CALL_TIMEOUT)
        return runs
