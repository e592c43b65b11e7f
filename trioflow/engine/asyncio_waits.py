"""Waiting on futures from asyncio: ``await future``, ``await client.gather(...)`` and
``async for f in as_completed(...)`` in a program that never runs Trio itself.

The mechanism: under asyncio, ``AsyncClient`` runs its Trio loop in a background
thread (as the blocking ``Client`` does) and this module bridges waits to the asyncio
loop. A wait registers a ``SyncWaiter`` on the key states (the same hook blocking
threads use); when the keys are done, the Trio thread wakes the asyncio task with
``loop.call_soon_threadsafe``. No thread is parked per wait. Values already here (small
results come inline) are unpickled on the asyncio thread; large ones are fetched in
asyncio's default executor, never blocking its loop.

Why not Trio's guest mode on the asyncio loop: it would run Trio on the asyncio
thread, so a session could no longer tell its own loop's code (which must not block)
from asyncio code (which must not use Trio primitives); every path of the session
would need a third case. The background thread reuses the cross-thread path the
blocking client already has and tests, at the cost of one thread hop per wake-up.

Cancellation: a cancelled asyncio wait unregisters its waiter; the futures and their
tasks are not affected.
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Any

import trio

from .keys import ERRED, NO_VALUE, PENDING, KeyState, SyncWaiter
from .protocols import FutureSession

if TYPE_CHECKING:
    import asyncio

# asyncio is imported inside the functions that run on an asyncio loop, never at the top:
# only an asyncio program needs it, it is a tenth of a worker's start-up imports, and such
# a program has imported it already (the import there is a dict lookup)


def running_asyncio() -> bool:
    """Whether the caller is an asyncio task (and not a Trio one, guest mode included)."""
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        pass
    else:
        return False
    aio = sys.modules.get("asyncio")
    if aio is None:  # no asyncio loop can run before asyncio is imported
        return False
    try:
        aio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _LoopWaiter(SyncWaiter):
    """Wakes an asyncio future from the session's Trio thread once its keys are done
    (``key_done`` runs there, under the session's lock: it only schedules)."""

    __slots__ = ("_future", "_loop")

    def __init__(self, remaining: int, loop: asyncio.AbstractEventLoop,
                 future: asyncio.Future[None]) -> None:
        super().__init__(remaining)
        self._loop = loop
        self._future = future

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # the asyncio loop is closed
            self._loop.call_soon_threadsafe(_resolve, self._future)

    def key_done(self) -> None:
        self.remaining -= 1
        if self.remaining <= 0:
            self._wake()

    def fail(self, exc: BaseException) -> None:
        self._wake()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def wait_states(session: FutureSession, states: list[KeyState]) -> None:
    """Wait on the asyncio loop until every state is done."""
    import asyncio

    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    with session.lock:
        pending = [ks for ks in states if ks.status is PENDING]
        if not pending:
            return
        waiter = _LoopWaiter(len(pending), loop, done)
        for ks in pending:
            ks.add_waiter(waiter)
    try:
        await done
    finally:
        with session.lock:
            for ks in pending:
                ks.drop_waiter(waiter)


async def value(session: FutureSession, ks: KeyState) -> Any:
    """The value of a done key: here if it is here (or inline), else fetched in the
    default executor (a fetch blocks its thread)."""
    if ks.status is ERRED or ks.value is not NO_VALUE or ks.inline is not None:
        return session.value(ks)
    import asyncio

    return await asyncio.get_running_loop().run_in_executor(None, session.value, ks)


class AsyncioWakeup:
    """An ``async for`` over an as_completed, waiting on the asyncio loop (the
    counterpart of ``waiting._Wakeup``); ``set`` may be called from any thread."""

    __slots__ = ("future", "loop")

    def __init__(self) -> None:
        import asyncio

        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[None] = self.loop.create_future()

    def set(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_resolve, self.future)
