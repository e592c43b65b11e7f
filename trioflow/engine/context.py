"""Where code runs: the task running here (``RunContext``), and the default clients.

Each run on a worker has a ``RunContext`` in a ContextVar, so it follows the task into
its thread or its Trio task. It carries the run's :class:`~trioflow.core.session.TaskView`
(the pure in-task protocol) and executes its commands: posting messages on the
worker's session and moving the slot through the worker (``HostWorker``), always in
order with what the task sent before.

Outside tasks, ``get_client()`` returns the latest open client registered here by
``trioflow.run``, ``Client`` and ``AsyncClient``.

This module knows no client class: ``in_task.get_client`` builds the in-task client
and caches it on the context (``RunContext.client``); every run of one worker session
shares it.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import Any, Protocol

import trio

from .. import protocol as p
from ..core.session import GiveSlot, Post, TakeSlot, TaskCommand, TaskView, WaitEnd
from ..core.worker import LocalRun
from ..errors import DeadlockError
from .keys import AsyncWaiter, SyncWaiter
from .protocols import BoundClient, FutureSession, HostWorker, Wakeup
from .replies import PendingReply

_current: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar(
    "trioflow_run", default=None
)
#: the session futures unpickled here belong to, when set (``binding_futures_to``)
_binding: contextvars.ContextVar[FutureSession | None] = contextvars.ContextVar(
    "trioflow_binding", default=None
)


def current_run() -> RunContext | None:
    """The context of the task running here, or None outside tasks."""
    return _current.get()


def enter_run(ctx: RunContext) -> contextvars.Token[RunContext | None]:
    """Make ``ctx`` the current run (the worker does this around a task's body)."""
    return _current.set(ctx)


def leave_run(token: contextvars.Token[RunContext | None]) -> None:
    _current.reset(token)


class Failable(Protocol):
    """Anything a ``WaitFailed`` from the scheduler can wake (a waiter, as_completed)."""

    def fail(self, exc: BaseException) -> None: ...


class Grant:
    """The slot grant an async run waits for to rejoin (a ``Wakeup``; loop only).

    ``wait`` cannot be cancelled, as if shielded: the grant comes soon, and the ledger
    expects the slot taken once it is granted. Without a cancel scope: a shielded
    scope per rejoin was a visible part of an async task's cost.
    """

    __slots__ = ("_task", "granted")

    def __init__(self) -> None:
        self.granted = False
        self._task: trio.lowlevel.Task | None = None

    def set(self) -> None:
        """The slot is the run's (on the loop): wake its wait."""
        self.granted = True
        task, self._task = self._task, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    async def wait(self) -> None:
        """Until ``set``; cancellation is held off until then (the caller's next
        checkpoint sees it)."""
        if self.granted:
            return
        self._task = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(_refuse_abort)


def _refuse_abort(_: Any) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


class RunContext:
    """One run of a task, as the task itself sees it, bound to its worker.

    Args:
        host: the worker running it.
        session: the worker's session (its in-task clients post through it).
        run: the ledger's record of the run (also the slot limiter's borrower).
        is_async: an ``async def`` task.

    Cancellation: for async tasks, cancelling the run (worker shutdown) cancels a wait
    in progress; the slot is still taken back before the task unwinds.
    """

    # (one per run, built on the run's hot path: slots make it smaller and its
    # attributes cheaper)
    __slots__ = ("client", "depth", "host", "is_async", "rejoin_event", "run", "session",
                 "short", "view", "wait_failure", "wait_scope", "waiter",
                 "worker_client_depth")

    def __init__(self, host: HostWorker, session: FutureSession, run: LocalRun,
                 is_async: bool) -> None:
        self.host = host
        self.session = session
        self.run = run
        #: the task's depth in the tree (threads only help deeper work)
        self.depth = -run.priority[1]
        self.view = TaskView(run.key, run.run_id, self.depth, is_async)
        self.is_async = is_async
        #: what a WaitFailed wakes while the task waits (a SyncWaiter or as_completed)
        self.waiter: Failable | None = None
        #: set by the worker on its loop (HostWorker.rejoin_run), with the grant
        self.rejoin_event: Wakeup | None = None
        self.wait_failure: BaseException | None = None
        self.wait_scope: trio.CancelScope | None = None
        self.worker_client_depth = 0
        self.short = False  # expected to finish within microseconds (frame batching)
        #: the in-task client (its worker session's, shared by its runs), set on first
        #: use by ``in_task.get_client``
        self.client: BoundClient | None = None

    def __repr__(self) -> str:
        return f"<RunContext {self.run.key!r} seceded={self.seceded}>"

    @property
    def seceded(self) -> bool:
        return self.view.seceded

    # ------------------------------------------------------------------ commands

    def _post(self, commands: list[TaskCommand]) -> TakeSlot | None:
        """Execute every command but a trailing ``TakeSlot``, which is returned (the
        caller waits for the grant in its own way: a thread blocks, a Trio task awaits)."""
        session, run = self.session, self.run
        take = None
        for cmd in commands:
            if type(cmd) is Post:
                session.post(cmd.message)
            elif type(cmd) is GiveSlot:
                # on this thread (or the loop, for async runs), at once: the ledger
                # sends the Seceded behind what was posted before (worker_ledger.py).
                # A sync run's slot is kept free until it waits (``wait_sync``): the
                # children it submits meanwhile then start there, on its own thread,
                # instead of a queued run starting on another thread first
                self.host.secede_run(run, not self.is_async)
            else:
                assert type(cmd) is TakeSlot
                take = cmd
        return take

    def _resources_request(self) -> PendingReply | None:
        """A task with abstract resources takes them back before it takes a slot again
        (it gave them back when it seceded): the scheduler answers once they are free."""
        if not self.run.spec.has_resources:
            return None
        pending = self.session.replies.open(asynchronous=self.session.on_loop())
        try:
            self.session.post(p.PrimitiveRequest(pending.id, "resources", "", "acquire",
                                                 run_key=self.run.key, run_id=self.run.run_id))
        except BaseException:
            self.session.replies.forget(pending)
            raise
        return pending

    @staticmethod
    def _resources_answer(pending: PendingReply) -> None:
        if pending.error is not None:
            raise pending.error
        if pending.reply is not None and pending.reply.status == "deadlock":
            raise DeadlockError(pending.reply.text)

    def _take_slot_sync(self) -> None:
        pending = self._resources_request()
        if pending is not None:
            pending.wait_sync(None)
            self._resources_answer(pending)
        waiter = SyncWaiter(1)
        # on this thread: a free slot is granted in the call (the wait returns at once)
        self.host.rejoin_run(self.run, waiter)
        waiter.wait(None)
        self.rejoin_event = None
        self.view.rejoined()

    async def _take_slot_async(self) -> None:
        pending = self._resources_request()
        if pending is not None:
            try:
                await pending.wait_async()
            except trio.Cancelled:  # (the worker is stopping: the run ends seceded)
                with contextlib.suppress(Exception):
                    self.session.post(p.PrimitiveCancel(pending.id))
                raise
            self._resources_answer(pending)
        grant = Grant()
        self.host.rejoin_run(self.run, grant)
        if not grant.granted:  # (on the loop, a free slot is often granted in the call)
            await grant.wait()
        self.rejoin_event = None
        self.view.rejoined()

    # ------------------------------------------------------------------ secede / rejoin

    def secede(self) -> None:
        """Give the slot back; the thread goes on, parked outside the slots."""
        self._post(self.view.secede())

    def rejoin(self) -> None:
        """Block this thread until the run holds a slot again.

        Rejoiners get freed slots before new tasks start. The thread just sleeps while
        it waits; it runs no queued work (a thread that helps while *rejoining* would
        hold the granted slot idle while it runs someone else's job).
        """
        if self._post(self.view.rejoin()) is not None:
            self._take_slot_sync()

    # ------------------------------------------------------------------ waits

    def wait_sync(self, waiter: SyncWaiter, keys: list[str], timeout: float | None) -> bool:
        """Block this task thread on ``waiter`` (its ``keys`` are pending), as a wait the
        scheduler sees; with ``auto_secede`` the slot is given back meanwhile.

        Returns False on timeout. Raises the ``DeadlockError`` a WaitFailed brought.
        """
        how = WaitEnd.ABANDONED
        self.waiter = waiter
        self._post(self.view.begin_wait(keys, timed=timeout is not None,
                                        give_slot=self.host.auto_secede))
        try:
            if self.view.seceded:
                # the slot kept since the secede is filled once this thread can be
                # handed the jobs of the keys it waits on
                done = self.host.threads.wait_helping(
                    waiter, timeout, partial(self.host.unreserve_run, self.run))
            else:
                done = waiter.wait(timeout)
            if waiter.failure is not None:
                how = WaitEnd.FAILED
                _raise_failure(waiter)
            if done:
                how = WaitEnd.DONE
            return done
        finally:
            self.waiter = None
            if self._post(self.view.end_wait(how)) is not None:
                self._take_slot_sync()

    def begin_any_wait(self, keys: list[str], timed: bool, waiter: Failable) -> None:
        """A sync ``as_completed`` blocks until any of ``keys`` is done (holding its slot,
        unless seceded); ``waiter.fail`` receives a DeadlockError."""
        self.waiter = waiter
        self._post(self.view.begin_wait(keys, timed=timed, any_of=True))
        self.host.unreserve_run(self.run)

    def end_any_wait(self, how: WaitEnd) -> None:
        self.waiter = None
        self._post(self.view.end_wait(how))

    async def wait_async(self, keys: list[str], wait: Callable[[], Awaitable[None]],
                         any_of: bool = False) -> None:
        """Run ``await wait()`` as a wait on ``keys`` the scheduler sees, without holding
        a slot: it is given back first and taken again after.

        Cancellation: the wait stops; the slot is still taken back before unwinding.
        """
        self._post(self.view.begin_wait(keys, any_of=any_of, give_slot=True))
        self.wait_failure = None
        how = WaitEnd.ABANDONED
        try:
            with trio.CancelScope() as scope:
                self.wait_scope = scope
                await wait()
                how = WaitEnd.DONE
            if self.wait_failure is not None:
                how = WaitEnd.FAILED
                raise self.wait_failure
        finally:
            self.wait_scope = None
            if self._post(self.view.end_wait(how)) is not None:
                await self._take_slot_async()

    async def wait_keys_async(self, keys: list[str], waiter: AsyncWaiter) -> None:
        """``wait_async`` for a gather: wait on ``waiter`` (registered on ``keys``), which
        a ``WaitFailed`` fails directly (no cancel scope per wait).

        Raises the ``DeadlockError`` a WaitFailed brought. Cancellation: as
        ``wait_async``.
        """
        self._post(self.view.begin_wait(keys, give_slot=True))
        how = WaitEnd.ABANDONED
        self.waiter = waiter
        try:
            await waiter.wait()
            if waiter.failure is not None:
                how = WaitEnd.FAILED
                _raise_failure(waiter)
            how = WaitEnd.DONE
        finally:
            if self.waiter is waiter:
                self.waiter = None
            if self._post(self.view.end_wait(how)) is not None:
                await self._take_slot_async()

    def fail_wait(self, exc: BaseException) -> None:
        """The scheduler says the current wait can never finish (on the loop)."""
        if self.waiter is not None:
            self.waiter.fail(exc)
        if self.wait_scope is not None:
            self.wait_failure = exc
            self.wait_scope.cancel()


def _raise_failure(waiter: Any) -> None:
    """Raise the failure a ``WaitFailed`` left on ``waiter``, and forget it there."""
    failure, waiter.failure = waiter.failure, None
    try:
        raise failure
    finally:
        del failure  # no cycle: traceback -> this frame -> the exception


# ---------------------------------------------------------------------- default clients

#: (client, its session): the clients get_client() may return outside tasks, newest last
_defaults: list[tuple[BoundClient, FutureSession]] = []


def push_default(client: BoundClient, session: FutureSession) -> None:
    """``client`` (on ``session``) is what get_client() returns outside tasks, from now."""
    _defaults.append((client, session))


def remove_default(client: BoundClient) -> None:
    for i in range(len(_defaults) - 1, -1, -1):
        if _defaults[i][0] is client:
            del _defaults[i]


def pop_default(client: BoundClient) -> None:
    """Undo ``client``'s newest ``push_default`` (a ``with client.as_current():`` left)."""
    for i in range(len(_defaults) - 1, -1, -1):
        if _defaults[i][0] is client:
            del _defaults[i]
            return


def default_client() -> tuple[BoundClient, FutureSession] | None:
    """The newest open default client and its session, if any."""
    for client, session in reversed(_defaults):
        if not client.closed:
            return client, session
    return None


@contextlib.contextmanager
def binding_futures_to(session: FutureSession) -> Iterator[None]:
    """Futures unpickled inside the block belong to ``session``: data one client asked
    for (a dataset) holds that client's futures, whichever client is the default."""
    token = _binding.set(session)
    try:
        yield
    finally:
        _binding.reset(token)


def current_session() -> FutureSession | None:
    """The session a future met here belongs to: the one of ``binding_futures_to``,
    else the running task's worker session, else the default client's."""
    bound = _binding.get()
    if bound is not None:
        return bound
    ctx = _current.get()
    if ctx is not None:
        return ctx.session
    found = default_client()
    return found[1] if found is not None else None
