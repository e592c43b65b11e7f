"""``Client.get_executor()``: the cluster as a ``concurrent.futures.Executor``.

For code written against the standard library (``executor.submit``, ``executor.map``,
``concurrent.futures.wait``/``as_completed``): its futures are real
``concurrent.futures.Future`` objects, each mirroring one trioflow Future through a
done-callback (run in the callback thread, never on an event loop).

Cancellation: ``cf_future.cancel()`` cancels the trioflow task too (as dask's executor
does); it returns False once the task is done, as ``concurrent.futures`` requires.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from .engine.futures import Future


class _Submitter(Protocol):
    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]: ...


class _Mirror(concurrent.futures.Future[Any]):
    """A concurrent.futures.Future that follows a trioflow Future."""

    def __init__(self, future: Future[Any]) -> None:
        super().__init__()
        self.trioflow_future = future
        self.set_running_or_notify_cancel()  # submitted: no longer cancellable locally

    def cancel(self) -> bool:
        if self.done():
            return False
        self.trioflow_future.cancel()
        return True

    def cancelled(self) -> bool:
        return self.trioflow_future.status == "cancelled"


def _settle(mirror: _Mirror, future: Future[Any]) -> None:
    if future.status == "cancelled":
        # concurrent.futures has no "cancelled after running": deliver the error
        mirror.set_exception(future.exception())
        return
    exc = future.exception()
    if exc is not None:
        mirror.set_exception(exc)
    else:
        mirror.set_result(future.result())


class ClusterExecutor(concurrent.futures.Executor):
    """Runs calls as trioflow tasks; returned by ``Client.get_executor(**options)``.

    Args:
        client: the client to submit with.
        **options: ``submit`` options for every call (``pure``, ``retries``,
            ``workers``, ``priority``, ...).
    """

    def __init__(self, client: _Submitter, **options: Any) -> None:
        self._client = client
        self._options = options
        self._lock = threading.Lock()
        self._mirrors: set[_Mirror] = set()
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any,
               **kwargs: Any) -> concurrent.futures.Future[Any]:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit after shutdown()")
        future = self._client.submit(fn, *args, **self._options, **kwargs)
        mirror = _Mirror(future)
        with self._lock:
            self._mirrors.add(mirror)

        def done(f: Future[Any]) -> None:
            try:
                _settle(mirror, f)
            finally:
                with self._lock:
                    self._mirrors.discard(mirror)

        future.add_done_callback(done)
        return mirror

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any],
            timeout: float | None = None, chunksize: int = 1) -> Iterator[Any]:
        """As ``Executor.map``: results in order (``chunksize`` has no effect here)."""
        return super().map(fn, *iterables, timeout=timeout)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new calls; with ``wait`` block until the submitted ones are done."""
        with self._lock:
            self._shutdown = True
            pending = list(self._mirrors)
        if cancel_futures:
            for m in pending:
                m.cancel()
        if wait and pending:
            concurrent.futures.wait(pending)
