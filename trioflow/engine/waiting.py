"""Waiting on many futures: ``wait`` and ``wait_async``.

Each blocking style has its own name, as in trio and dask: ``wait`` blocks its thread,
``await wait_async(...)`` waits on the event loop. (``as_completed``, one object with
both protocols, is in :mod:`.as_completed`.)

Deprecated (one release): ``wait`` called on its futures' event loop thread returns an
awaitable, as it used to, with a ``DeprecationWarning`` pointing to ``wait_async``.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Generic, Literal, NamedTuple, TypeVar, cast

import trio

from . import asyncio_waits
from .as_completed import as_completed
from .asyncio_waits import running_asyncio
from .futures import Future
from .keys import ERRED

T = TypeVar("T")

ReturnWhen = Literal["ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION"]

if sys.version_info >= (3, 11) or TYPE_CHECKING:
    class DoneAndNotDoneFutures(NamedTuple, Generic[T]):
        """What ``wait`` returns: ``done, not_done = trioflow.wait(futures)``."""

        done: set[Future[T]]
        not_done: set[Future[T]]
else:  # a NamedTuple cannot be generic before 3.11
    class DoneAndNotDoneFutures(NamedTuple):
        """What ``wait`` returns: ``done, not_done = trioflow.wait(futures)``."""

        done: set[Future[Any]]
        not_done: set[Future[Any]]


def _in_trio() -> bool:
    """Whether this thread is running a Trio loop (a task or a loop callback)."""
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return False
    return True


def _on_loop(futures: list[Future[Any]]) -> bool:
    """Whether this is the futures' event loop thread, where blocking would hang it."""
    if not futures:
        return _in_trio()
    return futures[0]._session.on_loop()


def _check(return_when: str) -> None:
    if return_when not in ("ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION"):
        raise ValueError("return_when must be ALL_COMPLETED, FIRST_COMPLETED or "
                         f"FIRST_EXCEPTION, got {return_when!r}")


def _futures(futures: Future[T] | Iterable[Future[T]]) -> list[Future[T]]:
    """A single future (as dask's ``wait(future)``) or an iterable of them, as a list."""
    return [futures] if isinstance(futures, Future) else list(futures)


def _split(futures: list[Future[T]]) -> DoneAndNotDoneFutures[T]:
    done = {f for f in futures if f.done()}
    return DoneAndNotDoneFutures(done, set(futures) - done)


def _by_session(futures: list[Future[T]]) -> list[list[Future[T]]]:
    """The futures grouped by session: one wait per session, seen as one by the scheduler."""
    groups: dict[int, list[Future[T]]] = {}
    for f in futures:
        groups.setdefault(id(f._session), []).append(f)
    return list(groups.values())


def wait(futures: Future[T] | Iterable[Future[T]], timeout: float | None = None,
         return_when: ReturnWhen = "ALL_COMPLETED") -> DoneAndNotDoneFutures[T]:
    """Block this thread until all the futures are done, or the first one with
    ``return_when="FIRST_COMPLETED"``; the named tuple ``(done, not_done)`` of sets.

    Inside a sync task the wait is reported to the scheduler (deadlock detection). On
    the futures' event loop use ``await wait_async(...)``: called there, ``wait`` returns
    that awaitable instead of blocking (deprecated, with a ``DeprecationWarning``).

    ``return_when="FIRST_EXCEPTION"`` returns once any future fails, or all are done
    (as ``concurrent.futures.wait``; dask has no such option). ``futures`` may be a
    single Future.

    Raises:
        TimeoutError: not done within ``timeout`` seconds.
    """
    futures = _futures(futures)
    _check(return_when)
    if _on_loop(futures):
        warnings.warn(
            "trioflow.wait() on the event loop returns an awaitable only for backwards "
            "compatibility; use `await trioflow.wait_async(...)` instead",
            DeprecationWarning, stacklevel=2)
        return cast("DoneAndNotDoneFutures[T]", wait_async(futures, timeout, return_when))
    if return_when == "ALL_COMPLETED":
        # one overall deadline, however many sessions the futures come from
        deadline = None if timeout is None else time.monotonic() + timeout
        for group in _by_session(futures):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            group[0]._session.wait_sync([f._state for f in group], left)
    elif return_when == "FIRST_EXCEPTION":
        for f in as_completed(futures, timeout=timeout):
            if f._state.status is ERRED:
                break
    elif futures:
        next(iter(as_completed(futures, timeout=timeout)))
    return _split(futures)


async def wait_async(futures: Future[T] | Iterable[Future[T]], timeout: float | None = None,
                     return_when: ReturnWhen = "ALL_COMPLETED") -> DoneAndNotDoneFutures[T]:
    """``wait`` for the event loop: ``done, not_done = await trioflow.wait_async(fs)``.

    Inside an async task the slot is given back while waiting and taken again after.

    Raises:
        TimeoutError: not done within ``timeout`` seconds.

    Cancellation: the wait stops; the futures and their tasks are not affected.
    """
    futures = _futures(futures)
    _check(return_when)
    if running_asyncio():  # an asyncio program: its loop waits, not Trio's
        return await _wait_asyncio(futures, timeout, return_when)
    if return_when == "ALL_COMPLETED":
        with trio.move_on_after(math.inf if timeout is None else timeout) as scope:
            for group in _by_session(futures):
                session = group[0]._session
                if session.on_loop():
                    await session.wait_async([f._state for f in group])
                else:  # a blocking Client's futures: its loop runs in another thread
                    async for _ in as_completed(group):
                        pass
        if scope.cancelled_caught:
            raise TimeoutError(f"futures not done after {timeout}s")
    elif return_when == "FIRST_EXCEPTION":
        async for f in as_completed(futures, timeout=timeout):
            if f._state.status is ERRED:
                break
    elif futures:
        await as_completed(futures, timeout=timeout).__aiter__().__anext__()
    return _split(futures)


async def _wait_asyncio(futures: list[Future[T]], timeout: float | None,
                        return_when: str) -> DoneAndNotDoneFutures[T]:
    import asyncio  # only under asyncio (already loaded then); see asyncio_waits

    async def waiting() -> None:
        if return_when == "ALL_COMPLETED":
            for group in _by_session(futures):
                await asyncio_waits.wait_states(group[0]._session, [f._state for f in group])
        elif futures:
            async for f in as_completed(futures):
                if return_when == "FIRST_COMPLETED" or f._state.status is ERRED:
                    break
    try:
        await asyncio.wait_for(waiting(), timeout)
    except asyncio.TimeoutError:
        raise TimeoutError(f"futures not done after {timeout}s") from None
    return _split(futures)
