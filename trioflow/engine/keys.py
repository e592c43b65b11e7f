"""What a session knows about one key, and the threads waiting on keys.

A ``KeyState`` is shared by every Future of one key in one session; it changes only on
the session's loop, under the session's lock. A ``SyncWaiter`` is a thread (a sync
client call, or a task thread) sleeping until some keys are done; while it sleeps it
may be handed jobs to run (helping, see ``net/slots.py``).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import trio

from .. import protocol as p
from .. import serialize
from ..core.session import ERRED, FINISHED, PENDING, KeyStatus  # noqa: F401 - re-exported
from ..errors import CancelledError, DeadlockError, KilledWorker, NoWorkersError, WorkerLost


class HelpingPool(Protocol):
    """Task threads that a waiting thread may help (``net.slots.SlotThreads``)."""

    def add_helper(self, waiter: SyncWaiter) -> None: ...

    def wait_helping(self, waiter: SyncWaiter, timeout: float | None,
                     helping: Callable[[], None] | None = None) -> bool: ...


#: ``KeyState.value`` when the session has not got the value itself
NO_VALUE = object()
#: ``KeyState.waiters`` of a key nobody waits on: one shared empty tuple. A list per key
#: was a third of the objects the cyclic GC traverses in a client holding many futures
#: (``map`` of 100,000: nine full collections, a quarter of the client's time)
NO_WAITERS: tuple[()] = ()


class KeyState:
    """What this session knows about one key it holds futures for (the record its
    ``core.session.SessionKeys`` table keeps), and who waits on it."""

    __slots__ = ("error", "event", "held", "holder", "inline", "key", "nbytes", "refs",
                 "status", "type_name", "value", "waiters")

    def __init__(self, key: str) -> None:
        self.key = key
        self.status = PENDING
        self.inline: bytes | None = None
        self.value: Any = NO_VALUE
        self.error: p.KeyErred | BaseException | None = None
        self.nbytes = 0
        self.type_name = ""
        #: a holder's bulk address, from KeyFinished ("": ask the scheduler)
        self.holder = ""
        self.refs = 0
        self.event: trio.Event | None = None
        self.waiters: list[SyncWaiter | AsyncWaiter] | tuple[()] = NO_WAITERS
        #: futures this key's task needs while it lives (its out-of-band arguments)
        self.held: list[Any] | None = None

    def add_waiter(self, waiter: SyncWaiter | AsyncWaiter) -> None:
        """Wake ``waiter`` (``key_done``) when this key is done (under the lock)."""
        if isinstance(self.waiters, list):
            self.waiters.append(waiter)
        else:
            self.waiters = [waiter]

    def drop_waiter(self, waiter: SyncWaiter | AsyncWaiter) -> None:
        """``waiter`` no longer waits (it ended early, or on another key); under the lock."""
        if isinstance(self.waiters, list) and waiter in self.waiters:
            self.waiters.remove(waiter)

    def take_waiters(self) -> list[SyncWaiter | AsyncWaiter] | tuple[()]:
        """Every waiter, now no longer registered (the key is done; under the lock)."""
        waiters, self.waiters = self.waiters, NO_WAITERS
        return waiters


class SyncWaiter:
    """A thread sleeping until ``remaining`` keys are done, a failure, or a job to help with.

    It sleeps on a lock of its own used as a bell (held from the start; any wake
    releases it once, and the sleeper takes it again before it looks): a lock
    acquire and release are one C call each, where a ``threading.Condition`` cost a
    new lock and a dozen Python calls per wait and per wake, once per task on the
    recursive path. Every wake is followed by a look at what changed, so a wake that
    finds nothing new (it rang before the look) only costs one more look.
    """

    __slots__ = ("_bell", "awaits", "depth", "failure", "jobs", "nesting", "owner", "pool",
                 "remaining")

    def __init__(self, remaining: int, depth: int = 0,
                 awaits: frozenset[str] = frozenset(), owner: Any = None) -> None:
        self.remaining = remaining
        #: the worker's run (``LocalRun``) whose task waits, if it is one: a run here
        #: whose end wakes it keeps its slot for it (``RunExecutor``)
        self.owner = owner
        self.depth = depth  # tree depth of the waiting task: it helps only deeper ones
        #: the keys it waits on: a run of one of them goes to this thread first
        #: (``SlotThreads.submit``)
        self.awaits = awaits
        self.pool: HelpingPool | None = None  # the thread pool this waiter helps, once registered
        self.failure: BaseException | None = None
        self.jobs: deque[Callable[[], None]] = deque()
        #: helping waits its thread is inside, this one included (set by the pool)
        self.nesting = 0
        self._bell = threading.Lock()
        self._bell.acquire()

    def _ring(self) -> None:
        try:
            self._bell.release()
        except RuntimeError:  # rung already, and not yet heard: once is enough
            pass

    def key_done(self) -> None:
        self.remaining -= 1
        if self.remaining <= 0:
            self._ring()

    def fail(self, exc: BaseException) -> None:
        self.failure = exc
        self._ring()

    def give_job(self, job: Callable[[], None]) -> None:
        self.jobs.append(job)
        self._ring()

    def set(self) -> None:
        """Wake the waiter (a rejoin granted): same as its only key finishing."""
        self.key_done()

    def take_jobs(self) -> list[Callable[[], None]]:
        """The jobs handed to it and not run yet (its own thread, once it stopped
        helping: no job is handed after ``remove_helper``)."""
        jobs = list(self.jobs)
        self.jobs.clear()
        return jobs

    def wait(self, timeout: float | None) -> bool:
        """Sleep until done or failed (True) or timed out (False), running handed jobs."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bell = self._bell
        jobs = self.jobs
        while True:
            while self.remaining > 0 and self.failure is None and not jobs:
                if deadline is None:
                    bell.acquire()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    bell.acquire(timeout=left)
            if not jobs:
                return True
            jobs.popleft()()  # helping: run another task's job in this parked thread
            if self.pool is not None:
                self.pool.add_helper(self)


class AsyncWaiter:
    """A Trio task waiting until ``remaining`` keys are done, or its wait fails: one
    wake-up however many keys (a per-key event costs one wake-up and one checkpoint per
    key).

    The task parks itself directly (``wait_task_rescheduled``), like ``Grant``: a
    ``trio.Event`` per wait cost an object, its ParkingLot and their calls for each
    ``async def`` task that gathers (one wait per parent; the Event's generality, many
    waiters and re-arming, is never used here).

    ``key_done`` is called under the session's lock, on its loop (``Session._notify``) or
    from another thread (``Session.cancel``, which then hands the count to the loop).
    ``fail`` is called on the loop (a ``WaitFailed``).
    """

    __slots__ = ("_task", "done", "failure", "loop_thread", "remaining", "token")

    #: no slot is kept for an async task woken here (``SyncWaiter.owner``): its next
    #: step is as often another wait (``await a + await b``), which would then find its
    #: next child still queued behind the kept slot (measured: async fib 5% slower
    #: that way, 4% faster with one gather)
    owner = None

    def __init__(self, remaining: int, token: trio.lowlevel.TrioToken, loop_thread: int) -> None:
        self.remaining = remaining
        #: every key is done, or the wait failed (set once, on the loop)
        self.done = False
        self.failure: BaseException | None = None
        self.token = token
        self.loop_thread = loop_thread
        #: the task parked in ``wait``, until it is woken or its wait is cancelled
        self._task: trio.lowlevel.Task | None = None

    def key_done(self) -> None:
        if threading.get_ident() != self.loop_thread:
            try:
                self.token.run_sync_soon(self.key_done)
            except trio.RunFinishedError:
                pass
            return
        self.remaining -= 1
        if self.remaining <= 0:
            self._wake()

    def fail(self, exc: BaseException) -> None:
        self.failure = exc
        self._wake()

    def _wake(self) -> None:
        """Done (loop): the parked task, if any, goes on; later wakes do nothing."""
        self.done = True
        task, self._task = self._task, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    async def wait(self) -> None:
        """Until done or failed (loop; one task at a time).

        Cancellation: the wait stops (``trio.Cancelled``); the waiter stays registered
        on its keys until its owner removes it, and a later wake finds nobody parked.
        """
        if self.done:
            await trio.lowlevel.checkpoint()  # (a trio wait always checkpoints)
            return
        self._task = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(self._abort)

    def _abort(self, _: Any) -> trio.lowlevel.Abort:
        self._task = None
        return trio.lowlevel.Abort.SUCCEEDED


def error_to_exception(err: p.KeyErred | BaseException | None) -> BaseException:
    """The exception a KeyErred message stands for."""
    if isinstance(err, BaseException):
        return err
    if err is None:
        raise AssertionError("a key in state ERRED always has an error")
    kind = err.kind
    if kind == "cancelled":
        return CancelledError(err.key, err.text or "cancelled")
    if kind == "killed-worker":
        return KilledWorker(err.key, err.workers, err.text)
    if kind == "deadlock":
        return DeadlockError(err.text)
    if kind == "lost":
        return WorkerLost(err.text)
    if kind == "no-workers":
        return NoWorkersError(err.key, err.text)
    # "" (the task raised) or "discarded" (its worker had to drop the value): pickled
    return serialize.loads_exception(err.key, err.error, err.type_name, err.text, err.traceback)
