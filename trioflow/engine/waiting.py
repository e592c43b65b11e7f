"""Waiting on many futures: ``wait`` and ``as_completed``.

``wait`` and ``as_completed`` follow the same rule as trioflow's other dual calls: from
the event loop thread they return an awaitable / async iterator, from any other thread
they block / iterate synchronously.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import trio

from ..core.session import WaitEnd
from .context import RunContext, current_run
from .futures import Future
from .keys import PENDING, SyncWaiter


def _on_loop(futures: list[Future]) -> bool:
    if not futures:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            return False
        return True
    return futures[0]._session.on_loop()


def wait(futures: Iterable[Future], timeout: float | None = None,
         return_when: str = "ALL_COMPLETED") -> Any:
    """Wait for futures: all of them (default) or ``return_when="FIRST_COMPLETED"``.

    Returns ``(done, not_done)`` sets. On the event loop thread this returns an
    awaitable: ``done, pending = await trioflow.wait(futures)``.
    """
    futures = list(futures)
    if return_when not in ("ALL_COMPLETED", "FIRST_COMPLETED"):
        raise ValueError(f"return_when must be ALL_COMPLETED or FIRST_COMPLETED, got {return_when!r}")
    if _on_loop(futures):
        return _wait_async(futures, timeout, return_when)
    if return_when == "ALL_COMPLETED":
        by_session: dict[int, list[Future]] = {}
        for f in futures:
            by_session.setdefault(id(f._session), []).append(f)
        for group in by_session.values():
            group[0]._session.wait_sync([f._state for f in group], timeout)
    else:
        it = as_completed(futures, timeout=timeout)
        next(iter(it), None)
    done = {f for f in futures if f.done()}
    return done, set(futures) - done


async def _wait_async(futures: list[Future], timeout: float | None, return_when: str):
    with trio.move_on_after(timeout if timeout is not None else float("inf")) as scope:
        if return_when == "ALL_COMPLETED":
            for f in futures:
                await f._session.wait_async([f._state])
        else:
            async for _ in as_completed(futures):
                break
    if scope.cancelled_caught and return_when == "ALL_COMPLETED":
        raise TimeoutError(f"futures not done after {timeout}s")
    done = {f for f in futures if f.done()}
    return done, set(futures) - done


class as_completed:
    """Iterate over futures as they finish: ``for f in as_completed(fs)`` in a thread,
    ``async for f in as_completed(fs)`` on the event loop. ``add(future)`` adds more
    while iterating.
    """

    def __init__(self, futures: Iterable[Future] = (), timeout: float | None = None,
                 with_results: bool = False) -> None:
        self._pending: list[Future] = []
        self._done: list[Future] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._event = trio.Event() if _in_trio() else None
        self.timeout = timeout
        self.with_results = with_results
        self._failure: BaseException | None = None
        for f in futures:
            self.add(f)

    def add(self, future: Future) -> None:
        """Yield ``future`` too once it is done."""
        with self._lock:
            self._pending.append(future)
        self._watch(future)

    def _watch(self, future: Future) -> None:
        def done() -> None:
            with self._cond:
                if future in self._pending:
                    self._pending.remove(future)
                    self._done.append(future)
                self._cond.notify_all()
            if self._event is not None:
                ev = self._event
                try:
                    future._session.trio_token.run_sync_soon(ev.set)
                except trio.RunFinishedError:
                    pass

        session, st = future._session, future._state

        class _Once(SyncWaiter):
            def key_done(self) -> None:
                done()

        with session.lock:
            if st.status is PENDING:
                st.waiters.append(_Once(1))
                return
        done()

    def _item(self, f: Future) -> Any:
        return (f, f.result()) if self.with_results else f

    def fail(self, exc: BaseException) -> None:
        """The scheduler found this task's wait can never end (called on the loop)."""
        with self._cond:
            self._failure = exc
            self._cond.notify_all()

    def _task_wait(self) -> RunContext | None:
        """The run context when iterating inside a task of the futures' worker: then
        the scheduler is told what the task waits on (deadlock detection)."""
        ctx = current_run()
        with self._lock:
            first = (self._pending or self._done or [None])[0]
        if ctx is None or first is None or first._session is not ctx.session:
            return None
        return ctx

    def __iter__(self) -> Iterator[Any]:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        ctx = self._task_wait()
        while True:
            with self._cond:
                f = self._done.pop(0) if self._done else None
                keys = [x.key for x in self._pending]
            if f is not None:
                yield self._item(f)
                continue
            if not keys:
                return
            if ctx is not None:  # a wait that ends when any of them is done
                ctx.begin_any_wait(keys, deadline is not None, self)
            with self._cond:
                while not self._done and self._pending:
                    if self._failure is not None:
                        failure, self._failure = self._failure, None
                        if ctx is not None:
                            ctx.end_any_wait(WaitEnd.FAILED)
                        try:
                            raise failure
                        finally:
                            del failure
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        if ctx is not None:
                            ctx.end_any_wait(WaitEnd.ABANDONED)
                        raise TimeoutError(f"{len(self._pending)} futures not done in time")
                    self._cond.wait(left)
            if ctx is not None:
                ctx.end_any_wait(WaitEnd.DONE)

    async def __aiter__(self) -> AsyncIterator[Any]:
        if self._event is None:
            self._event = trio.Event()
        ctx = self._task_wait()
        try:
            with trio.fail_after(self.timeout if self.timeout is not None else float("inf")):
                while True:
                    with self._lock:
                        f = self._done.pop(0) if self._done else None
                        keys = [x.key for x in self._pending]
                    if f is not None:
                        if self.with_results:
                            yield (f, await f)
                        else:
                            yield f
                        continue
                    if not keys:
                        return
                    if ctx is not None and ctx.is_async:
                        # an async task gives its slot back while it waits, as for gather
                        await ctx.wait_async(keys, self._event.wait, any_of=True)
                    else:
                        await self._event.wait()
                    self._event = trio.Event()
        except trio.TooSlowError:
            raise TimeoutError(f"futures not done within {self.timeout}s") from None


def _in_trio() -> bool:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True
