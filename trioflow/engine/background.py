"""An async context held open by a Trio program in a background thread, for blocking
callers: the blocking ``Client`` (its connection, and the local cluster it may start)
and dask's spelling ``LocalCluster``."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, TypeVar

import trio

T = TypeVar("T")


class BackgroundContext(Generic[T]):
    """Enter ``enter()`` in ``trio.run`` on a daemon thread named ``name``; ``value`` is
    what it yielded. ``close()`` leaves the context and ends the thread.

    Raises (from the constructor): whatever entering raised, or ``TimeoutError(message)``
    if it did not finish within ``timeout`` seconds (the thread goes on trying; a late
    success is closed at exit of the process, the thread being a daemon).
    """

    def __init__(self, enter: Callable[[], AbstractAsyncContextManager[T]], *, name: str,
                 timeout: float, message: str) -> None:
        self._stop: Callable[[], None] | None = None
        ready = threading.Event()
        box: dict[str, Any] = {}

        async def hold() -> None:
            try:
                async with enter() as value:
                    box["value"] = value
                    stop = trio.Event()
                    token = trio.lowlevel.current_trio_token()
                    self._stop = lambda: token.run_sync_soon(stop.set)
                    ready.set()
                    await stop.wait()
            except BaseException as exc:
                box["error"] = exc
                ready.set()
                if not isinstance(exc, Exception):
                    raise

        self._thread = threading.Thread(target=trio.run, args=(hold,), daemon=True, name=name)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError(message)
        if "error" in box:
            raise box["error"]
        self.value: T = box["value"]

    @property
    def open(self) -> bool:
        """Whether ``close`` has not been called yet."""
        return self._stop is not None

    def close(self, join_timeout: float = 30) -> None:
        """Leave the context and wait (at most ``join_timeout`` s) for the thread to end.
        Idempotent; safe if the Trio program already ended."""
        stop, self._stop = self._stop, None
        if stop is not None:
            with contextlib.suppress(trio.RunFinishedError):
                stop()
            self._thread.join(join_timeout)
