"""Iterating over futures as they finish: ``as_completed``.

One object with both protocols, as dask has it: ``for f in as_completed(fs)`` blocks
its thread, ``async for f in as_completed(fs)`` awaits on the event loop; nothing in it
depends on which thread built it. Inside a task, its waits are reported to the
scheduler as waits on any of the futures (``RunContext.begin_any_wait``).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, Generic, Literal, TypeVar, cast, overload

import trio

from ..core.session import WaitEnd
from . import asyncio_waits
from .asyncio_waits import running_asyncio
from .context import RunContext, current_run
from .futures import Future
from .keys import PENDING, SyncWaiter, error_to_exception

T = TypeVar("T")
#: what an as_completed yields: a Future, or (Future, value) with ``with_results=True``
Item = TypeVar("Item")


class _Arrival(SyncWaiter):
    """Tells an as_completed that one of its futures is done (called on the futures'
    loop, under their session's lock).

    One module-level class, holding its as_completed weakly and its future by id: an
    iteration given up on frees its futures at once, with no cycle for gc to find.
    """

    __slots__ = ("_ident", "_owner")

    def __init__(self, owner: weakref.ref[as_completed[Any]], ident: int) -> None:
        super().__init__(1)
        self._owner = owner
        self._ident = ident

    def key_done(self) -> None:
        owner = self._owner()
        if owner is not None:
            owner._arrived(self._ident)


class _Wakeup:
    """An ``async for`` waiting for the next future, on the loop that ``token`` names."""

    __slots__ = ("event", "token")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.token = trio.lowlevel.current_trio_token()

    def set(self) -> None:
        """Wake it from any thread (futures may belong to another loop than the waiter)."""
        try:
            here = trio.lowlevel.current_trio_token() is self.token
        except RuntimeError:
            here = False
        if here:
            self.event.set()
        else:
            with contextlib.suppress(trio.RunFinishedError):
                self.token.run_sync_soon(self.event.set)


class as_completed(Generic[Item]):
    """Iterate over futures as they finish: ``for f in as_completed(fs)`` blocks its
    thread, ``async for f in as_completed(fs)`` awaits on the event loop.

    ``add(future)`` adds more while iterating. With ``with_results=True`` it yields
    ``(future, value)`` pairs: a failed future raises its exception, or with
    ``raise_errors=False`` is yielded as ``(future, exception)``. ``timeout`` counts
    from the start of an iteration; when it passes with futures still pending, the
    iteration raises ``TimeoutError``.

    Inside a task the waits are reported to the scheduler as waits on any of the
    pending keys: an async task gives its slot back meanwhile, a sync one keeps it
    unless it seceded.
    """

    @overload
    def __init__(self: as_completed[Future[T]], futures: Iterable[Future[T]] = (),
                 timeout: float | None = None, with_results: Literal[False] = False,
                 raise_errors: bool = True) -> None: ...

    @overload
    def __init__(self: as_completed[tuple[Future[T], T]], futures: Iterable[Future[T]],
                 timeout: float | None = None, *, with_results: Literal[True],
                 raise_errors: Literal[True] = True) -> None: ...

    @overload
    def __init__(self: as_completed[tuple[Future[T], T | BaseException]],
                 futures: Iterable[Future[T]], timeout: float | None = None, *,
                 with_results: Literal[True], raise_errors: Literal[False]) -> None: ...

    @overload
    def __init__(self: as_completed[Any], futures: Iterable[Future[Any]] = (),
                 timeout: float | None = None, with_results: bool = False,
                 raise_errors: bool = True) -> None: ...

    def __init__(self, futures: Iterable[Future[Any]] = (), timeout: float | None = None,
                 with_results: bool = False, raise_errors: bool = True) -> None:
        #: pending futures by id(their KeyState): an _Arrival finds its future in O(1)
        self._pending: dict[int, list[Future[Any]]] = {}
        self._done: deque[Future[Any]] = deque()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._wakeups: list[_Wakeup | asyncio_waits.AsyncioWakeup] = []
        self._ref = weakref.ref(self)
        self.timeout = timeout
        self.with_results = with_results
        #: with results: a failed future's exception is raised (True), or yielded as
        #: its result (False), as dask's ``raise_errors``
        self.raise_errors = raise_errors
        self._failure: BaseException | None = None
        for f in futures:
            self.add(f)

    def add(self, future: Future[Any]) -> None:
        """Yield ``future`` too once it is done."""
        if not isinstance(future, Future):
            raise TypeError(f"as_completed takes trioflow Futures, not {type(future).__name__}")
        session, st = future._session, future._state
        ident = id(st)
        with self._lock:
            self._pending.setdefault(ident, []).append(future)
        with session.lock:
            if st.status is PENDING:
                st.add_waiter(_Arrival(self._ref, ident))
                return
        self._arrived(ident)

    def update(self, futures: Iterable[Future[Any]]) -> None:
        """``add`` each of ``futures`` (dask's ``as_completed.update``)."""
        for f in futures:
            self.add(f)

    def batches(self) -> _Batches[Item]:
        """Iterate over lists of the items done so far: each step waits for one, then
        takes every other one already done too (``for batch in ac.batches()`` blocks,
        ``async for`` awaits), as dask's ``as_completed.batches``."""
        return _Batches(self)

    def _take_done(self) -> list[Future[Any]]:
        with self._lock:
            done = list(self._done)
            self._done.clear()
        return done

    def _arrived(self, ident: int) -> None:
        with self._cond:
            same = self._pending.get(ident)
            if not same:
                return
            self._done.append(same.pop())
            if not same:
                del self._pending[ident]
            self._cond.notify_all()
            wakeups, self._wakeups = self._wakeups, []
        for w in wakeups:
            w.set()

    def count(self) -> int:
        """How many futures are still to be yielded."""
        with self._lock:
            return len(self._done) + sum(map(len, self._pending.values()))

    def is_empty(self) -> bool:
        """Whether nothing is left to yield."""
        return self.count() == 0

    def fail(self, exc: BaseException) -> None:
        """The scheduler found this task's wait can never end (called on the loop)."""
        with self._cond:
            self._failure = exc
            self._cond.notify_all()

    def _any_future(self) -> Future[Any] | None:
        with self._lock:
            if self._done:
                return self._done[0]
            for same in self._pending.values():
                return same[0]
        return None

    def _task_wait(self) -> RunContext | None:
        """The run context when iterating inside a task of the futures' worker: then
        the scheduler is told what the task waits on (deadlock detection)."""
        ctx = current_run()
        first = self._any_future()
        if ctx is None or first is None or first._session is not ctx.session:
            return None
        return ctx

    def _take_or_listen(self, make_wakeup: Callable[[], Any], ctx: RunContext | None = None,
                        ) -> tuple[Future[Any] | None, Any, list[str]]:
        """Under the lock: the next done future, or else a wake-up (``make_wakeup()``)
        registered for the next one to finish, with the keys a task's wait covers
        (``ctx``'s); raises StopAsyncIteration once nothing is pending."""
        with self._lock:
            if self._done:
                return self._done.popleft(), None, []
            if not self._pending:
                raise StopAsyncIteration
            wakeup = make_wakeup()
            self._wakeups.append(wakeup)
            return None, wakeup, self._pending_keys(ctx)

    def _stop_listening(self, wakeup: Any) -> None:
        with self._lock:
            if wakeup in self._wakeups:
                self._wakeups.remove(wakeup)

    def _pending_keys(self, ctx: RunContext | None) -> list[str]:
        """What a wait in a task waits on, for the scheduler (none outside tasks)."""
        return [same[0].key for same in self._pending.values()] if ctx is not None else []

    # ------------------------------------------------------------------ for

    def __iter__(self) -> Iterator[Item]:
        first = self._any_future()
        if first is not None and first._session.on_loop():
            raise RuntimeError("`for f in as_completed(...)` would block the event loop "
                               "thread; use `async for` there")
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        ctx = self._task_wait()
        while True:
            with self._cond:
                if self._done:
                    f = self._done.popleft()
                elif not self._pending:
                    return
                else:
                    f, keys = None, self._pending_keys(ctx)
            if f is not None:
                yield self._sync_item(f)
                continue
            if ctx is not None:  # a wait that ends when any of them is done
                ctx.begin_any_wait(keys, deadline is not None, self)
            how = WaitEnd.ABANDONED
            try:
                failure = self._block(deadline)
                how = WaitEnd.DONE if failure is None else WaitEnd.FAILED
            finally:
                if ctx is not None:
                    ctx.end_any_wait(how)
            if failure is not None:
                try:
                    raise failure
                finally:
                    del failure  # no cycle: traceback -> this frame -> the exception

    def _block(self, deadline: float | None) -> BaseException | None:
        """Sleep until a future is done (None), or the scheduler says this wait can never
        end (the failure it sent); TimeoutError at ``deadline``."""
        with self._cond:
            while not self._done and self._pending:
                if self._failure is not None:
                    failure, self._failure = self._failure, None
                    return failure
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"{sum(map(len, self._pending.values()))} futures "
                                       f"not done within {self.timeout}s")
                self._cond.wait(left)
            self._failure = None  # came too late: this wait ended anyway
        return None

    def _sync_item(self, f: Future[Any]) -> Item:
        if not self.with_results:
            return cast(Item, f)
        if not self.raise_errors and f.status != "finished":
            return cast(Item, (f, f.exception()))
        return cast(Item, (f, f.result()))

    async def _async_item(self, f: Future[Any]) -> Item:
        """``_sync_item`` on the event loop (Trio's or asyncio's)."""
        if not self.with_results:
            return cast(Item, f)
        if not self.raise_errors and f.status != "finished":
            return cast(Item, (f, error_to_exception(f._state.error)))
        return cast(Item, (f, await f))

    # ------------------------------------------------------------------ async for

    def __aiter__(self) -> AsyncIterator[Item]:
        if running_asyncio():  # an asyncio program: its loop waits, not Trio's
            return _AsyncioIteration(self)
        return _AsyncIteration(self)


class _AsyncIteration(Generic[Item]):
    """One ``async for`` over an as_completed.

    A plain object, not an async generator: each ``__anext__`` opens and closes its own
    cancel scope (the deadline), so nothing is left open across a ``yield`` and a
    ``break``, an early ``return`` or an exception in the loop body are all safe.

    Cancellation: a cancelled ``__anext__`` loses nothing; the future it was about to
    yield is yielded by the next call.
    """

    def __init__(self, ac: as_completed[Item]) -> None:
        self._ac = ac
        self._started = False
        self._deadline = math.inf
        self._ctx: RunContext | None = None

    def __aiter__(self) -> _AsyncIteration[Item]:
        return self

    async def __anext__(self) -> Item:
        if not self._started:  # here, not in __init__: aiter() need not run in a task
            self._started = True
            ac = self._ac
            if ac.timeout is not None:
                self._deadline = trio.current_time() + ac.timeout
            self._ctx = ac._task_wait()
        with trio.move_on_at(self._deadline) as scope:
            return await self._next()
        assert scope.cancelled_caught
        raise TimeoutError(f"{self._ac.count()} futures not done within {self._ac.timeout}s")

    async def _next(self) -> Item:
        ac = self._ac
        while True:
            f, wakeup, keys = ac._take_or_listen(_Wakeup, self._ctx)
            if f is not None:
                return await self._item(f)
            try:
                await self._wait(keys, wakeup.event.wait)
            finally:
                ac._stop_listening(wakeup)

    async def _wait(self, keys: list[str], wait: Callable[[], Awaitable[None]]) -> None:
        ctx = self._ctx
        if ctx is not None and ctx.is_async:
            # an async task gives its slot back while it waits, as for gather
            await ctx.wait_async(keys, wait, any_of=True)
        else:
            await wait()

    async def _item(self, f: Future[Any]) -> Item:
        try:
            return await self._ac._async_item(f)
        except trio.Cancelled:
            with self._ac._lock:
                self._ac._done.appendleft(f)  # yield it next time instead
            raise



class _Batches(Generic[Item]):
    """What ``as_completed.batches()`` returns: iterable both ways, like as_completed."""

    def __init__(self, ac: as_completed[Item]) -> None:
        self._ac = ac

    def __iter__(self) -> Iterator[list[Item]]:
        ac = self._ac
        for first in ac:
            rest = ac._take_done()
            yield [first, *(ac._sync_item(f) for f in rest)]

    def __aiter__(self) -> AsyncIterator[list[Item]]:
        return self._async()

    async def _async(self) -> AsyncIterator[list[Item]]:
        # (an async generator yields outside any cancel scope here: the scopes of the
        # iteration open and close within each __anext__; Trio's or asyncio's alike)
        ac = self._ac
        it = ac.__aiter__()
        while True:
            try:
                first = await it.__anext__()
            except StopAsyncIteration:
                return
            rest = [await ac._async_item(f) for f in ac._take_done()]
            yield [first, *rest]


class _AsyncioIteration(Generic[Item]):
    """One ``async for`` over an as_completed in an asyncio program (no Trio here).

    Cancellation: a cancelled ``__anext__`` loses nothing, as with Trio.
    """

    def __init__(self, ac: as_completed[Item]) -> None:
        self._ac = ac
        self._deadline: float | None = None
        self._started = False

    def __aiter__(self) -> _AsyncioIteration[Item]:
        return self

    async def __anext__(self) -> Item:
        import asyncio  # only under asyncio (already loaded then); see asyncio_waits

        ac = self._ac
        loop = asyncio.get_running_loop()
        if not self._started:
            self._started = True
            if ac.timeout is not None:
                self._deadline = loop.time() + ac.timeout
        while True:
            f, wakeup, _ = ac._take_or_listen(asyncio_waits.AsyncioWakeup)
            if f is not None:
                break
            try:
                left = None if self._deadline is None else self._deadline - loop.time()
                await asyncio.wait_for(wakeup.future, left)
            except asyncio.TimeoutError:
                raise TimeoutError(f"{ac.count()} futures not done within "
                                   f"{ac.timeout}s") from None
            finally:
                ac._stop_listening(wakeup)
        try:
            return await ac._async_item(f)
        except asyncio.CancelledError:
            with ac._lock:
                ac._done.appendleft(f)  # yield it next time instead
            raise
