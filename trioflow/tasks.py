"""What a running task can call: get_client, secede, rejoin, worker_client.

Each run on a worker has a ``RunContext`` (in a ContextVar, so it follows the task into
its thread or its Trio task). Through it a task reaches its worker's own scheduler
connection: ``get_client()`` inside a task opens nothing and costs nothing.

Slot rules (see docs/slots.md):

* ``secede()`` gives the run's slot token back; the scheduler may then place one more
  task on this worker. The thread keeps running, "parked" outside the slots.
* ``rejoin()`` blocks until a token is free again; rejoiners get freed tokens before new
  tasks start.
* ``worker_client()`` = ``get_client()`` + ``secede()`` on enter + ``rejoin()`` on exit;
  nesting is fine (only the outermost secedes).
* ``async def`` tasks never need these: every ``await`` on futures gives the slot back
  and takes it again afterwards.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import trio

from . import protocol as p
from .errors import NotInTaskError

if TYPE_CHECKING:
    from .keys import KeyState, SyncWaiter
    from .session import Session

_current: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar(
    "trioflow_run", default=None
)
#: the client that get_client() returns outside tasks (set by run(), Client(), AsyncClient)
_default_client: list[Any] = []


def current_run() -> RunContext | None:
    """The context of the task running here, or None outside tasks."""
    return _current.get()


class RunContext:
    """One run of a task, as the task itself sees it.

    Cancellation: for async tasks, cancelling the run (worker shutdown) cancels a wait
    in progress; the slot is still taken back before the task unwinds.
    """

    def __init__(self, worker: Any, run: Any, is_async: bool) -> None:
        self.worker = worker
        self.run = run
        self.is_async = is_async
        self.seceded = False  # the task's own view, ahead of the ledger's
        self.waiter: SyncWaiter | None = None
        self.rejoin_event: Any = None
        self.wait_failure: BaseException | None = None
        self.wait_scope: trio.CancelScope | None = None
        self.worker_client_depth = 0
        self.short = False  # expected to finish within microseconds (frame batching)
        self._client: Any = None

    def __repr__(self) -> str:
        return f"<RunContext {self.run.key!r} seceded={self.seceded}>"

    def client(self) -> Any:
        if self._client is None:
            from .client import AsyncClient, Client

            cls = AsyncClient if self.is_async else Client
            self._client = cls._in_task(self.worker.session)
        return self._client

    # ------------------------------------------------------------------ slots

    def secede(self) -> None:
        if self.seceded:
            raise NotInTaskError("this task has already seceded; call rejoin() first")
        self.seceded = True
        self.worker.session.call_in_order(self.worker.do_secede, self.run)

    def rejoin(self) -> None:
        """Block this thread until the run holds a slot again.

        While no slot is free, this parked thread runs queued work instead of sleeping:
        those runs hold the slots we wait for, and at the thread cap no other thread may
        be there to run them. Before running one it steps out of the rejoin line (a slot
        granted to a run whose thread is busy elsewhere would be a slot nobody uses, and
        the work it runs may need exactly that slot), and lines up again afterwards.
        """
        if not self.seceded:
            raise NotInTaskError("rejoin() without secede(): this task holds its slot already")
        from .keys import SyncWaiter

        waiter = SyncWaiter(1)
        self.worker.session.call_in_order(self.worker.do_rejoin, self.run, waiter)
        waiter.wait(None)
        self.rejoin_event = None
        self.seceded = False

    async def rejoin_async(self) -> None:
        event = trio.Event()
        self.worker.session.call_in_order(self.worker.do_rejoin, self.run, event)
        with trio.CancelScope(shield=True):  # the grant comes soon; the ledger expects it taken
            await event.wait()
        self.rejoin_event = None
        self.seceded = False

    async def wait_async(self, pending: list[KeyState], session: Session) -> None:
        """An async task waits on keys: the slot goes back for the wait, then comes back."""

        async def all_done() -> None:
            for ks in pending:
                assert ks.event is not None
                await ks.event.wait()

        await self.blocked(session, [k.key for k in pending], all_done)

    async def blocked(self, session: Session, keys: list[str], wait: Any,
                      any_of: bool = False) -> None:
        """Run ``await wait()`` as a wait on ``keys`` seen by the scheduler, without
        holding a slot (it is given back first and taken again after).

        Cancellation: the wait stops; the slot is still taken back before unwinding.
        """
        held = not self.seceded
        if held:
            self.seceded = True
            self.worker.session.call_in_order(self.worker.do_secede, self.run)
        session.post(p.WaitKeys(self.run.key, self.run.run_id, keys, False, any_of))
        self.wait_failure = None
        normal = False
        try:
            with trio.CancelScope() as scope:
                self.wait_scope = scope
                await wait()
                normal = True
            if self.wait_failure is not None:
                raise self.wait_failure
        finally:
            self.wait_scope = None
            if not normal:
                session.post(p.WaitEnded(self.run.key, self.run.run_id))
            if held:
                await self.rejoin_async()

    def fail_wait(self, exc: BaseException) -> None:
        """The scheduler says the current wait can never finish (on the loop)."""
        if self.waiter is not None:
            self.waiter.fail(exc)
        if self.wait_scope is not None:
            self.wait_failure = exc
            self.wait_scope.cancel()


def _require_sync_task(what: str) -> RunContext:
    ctx = _current.get()
    if ctx is None:
        raise NotInTaskError(f"{what}() can only be called inside a task running on a worker")
    if ctx.is_async:
        raise NotInTaskError(
            f"{what}() is for sync tasks: an async def task gives its slot back by itself "
            "whenever it awaits futures"
        )
    return ctx


def secede() -> None:
    """Give this task's slot back to its worker while the task goes on running.

    Call it before waiting on other tasks, so that they can use the slot.

    Raises:
        NotInTaskError: outside a task, in an async task, or when already seceded.
    """
    _require_sync_task("secede").secede()


def rejoin() -> None:
    """Block until this (seceded) task holds a slot of its worker again.

    Raises:
        NotInTaskError: outside a task, or without a prior secede().
    """
    _require_sync_task("rejoin").rejoin()


def get_client() -> Any:
    """The client to use here: inside a task, one bound to its worker's connection
    (``Client`` in a sync task, ``AsyncClient`` in an async one); elsewhere the client of
    the surrounding ``trioflow.run`` or the latest one created.

    Raises:
        ValueError: no cluster is known here.
    """
    ctx = _current.get()
    if ctx is not None:
        return ctx.client()
    for client in reversed(_default_client):
        if not client.closed:
            return client
    raise ValueError(
        "no trioflow client here: call get_client() inside trioflow.run(main), inside a "
        "task, or after creating a trioflow.Client"
    )


@contextlib.contextmanager
def worker_client() -> Iterator[Any]:
    """A client for submitting from a task, with the slot given back while inside.

    Equivalent to ``get_client()`` then ``secede()`` on enter and ``rejoin()`` on exit.
    Nested uses secede only once. In an async task it just yields the AsyncClient.

    Raises:
        NotInTaskError: outside a task.
    """
    ctx = _current.get()
    if ctx is None:
        raise NotInTaskError("worker_client() can only be used inside a task on a worker")
    client = ctx.client()
    if ctx.is_async:
        yield client
        return
    outer = ctx.worker_client_depth == 0 and not ctx.seceded
    if outer:
        ctx.secede()
    ctx.worker_client_depth += 1
    try:
        yield client
    finally:
        ctx.worker_client_depth -= 1
        if outer:
            ctx.rejoin()
