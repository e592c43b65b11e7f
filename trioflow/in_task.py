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
import weakref
from collections.abc import Iterator
from typing import Any

import attrs

from .client import AsyncClient, Client
from .engine import context
from .engine.context import RunContext, current_run
from .errors import NoClientError, NotInTaskError


def _require_sync_task(what: str) -> RunContext:
    ctx = current_run()
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


#: the in-task clients of each worker session, one per kind: like dask's worker client,
#: every task on a worker shares it (a client per run cost an object and its finalizer
#: per task on the recursive path)
_TASK_CLIENTS: weakref.WeakKeyDictionary[Any, tuple[Client, AsyncClient]] = (
    weakref.WeakKeyDictionary())


def _task_client(ctx: RunContext) -> Client | AsyncClient:
    """The in-task client of ``ctx``'s run: its worker session's, built once."""
    client = ctx.client
    if client is None:
        pair = _TASK_CLIENTS.get(ctx.session)
        if pair is None:
            session: Any = ctx.session
            pair = _TASK_CLIENTS[session] = (Client._in_task(session),
                                             AsyncClient._in_task(session))
        client = ctx.client = pair[1] if ctx.is_async else pair[0]
    assert isinstance(client, Client | AsyncClient)
    return client


def get_client() -> Client | AsyncClient:
    """The client to use here: inside a task, one bound to its worker's connection
    (``Client`` in a sync task, ``AsyncClient`` in an async one); elsewhere the client of
    the surrounding ``trioflow.run`` or the latest one created.

    To a type checker it is either; narrow it where it matters
    (``assert isinstance(client, trioflow.AsyncClient)``).

    Raises:
        NoClientError: no cluster is known here (also a ``ValueError``).
    """
    ctx = current_run()
    if ctx is not None:
        return _task_client(ctx)
    found = context.default_client()
    if found is not None:
        client = found[0]
        assert isinstance(client, Client | AsyncClient)
        return client
    raise NoClientError(
        "no trioflow client here: call get_client() inside trioflow.run(main), inside a "
        "task, or after creating a trioflow.Client"
    )


def default_client(c: Client | AsyncClient | None = None) -> Client | AsyncClient:
    """dask's ``default_client``: ``c`` if given, else ``get_client()``.

    Raises:
        NoClientError: no client is known here (also a ``ValueError``, as dask's).
    """
    return c if c is not None else get_client()


@contextlib.contextmanager
def worker_client(timeout: float | None = None,
                  separate_thread: bool = True) -> Iterator[Client | AsyncClient]:
    """A client for submitting from a task, with the slot given back while inside.

    Equivalent to ``get_client()`` then ``secede()`` on enter and ``rejoin()`` on exit.
    Nested uses secede only once. In an async task it just yields the AsyncClient.
    dask's arguments: ``separate_thread=False`` keeps the slot (no secede, no rejoin:
    waiting inside then holds it, which the deadlock rule watches); ``timeout`` (dask's
    connection timeout) changes nothing, as the task's client is connected already.

    Raises:
        NotInTaskError: outside a task.
    """
    ctx = current_run()
    if ctx is None:
        raise NotInTaskError("worker_client() can only be used inside a task on a worker")
    client = _task_client(ctx)
    if ctx.is_async:
        yield client
        return
    outer = separate_thread and ctx.worker_client_depth == 0 and not ctx.seceded
    if outer:
        ctx.secede()
    ctx.worker_client_depth += 1
    try:
        yield client
    finally:
        ctx.worker_client_depth -= 1
        if outer:
            ctx.rejoin()


@attrs.frozen
class WorkerInfo:
    """The worker running the current task, as ``get_worker()`` describes it.

    Attributes:
        name: the worker's name (what ``workers=`` restrictions name).
        id: its id at the scheduler.
        nthreads: its slots.
        address: where it serves results to other workers and clients.
        key: the key of the task calling ``get_worker()``.
    """

    name: str
    id: str
    nthreads: int
    address: str
    key: str

    def log_event(self, topic: str | list[str], msg: Any) -> None:
        """dask's ``get_worker().log_event``: ``get_client().log_event(topic, msg)``
        (plain data; see ``Client.log_event``)."""
        client = get_client()
        if isinstance(client, AsyncClient):
            raise RuntimeError("get_worker().log_event blocks; in an async task, "
                               "`await get_client().log_event(topic, msg)`")
        client.log_event(topic, msg)


def get_worker() -> WorkerInfo:
    """The worker running this task (dask's ``get_worker``; a description, not the
    worker object itself: a task cannot reach into its worker's internals).

    Raises:
        NotInTaskError: outside a task.
    """
    ctx = current_run()
    if ctx is None:
        raise NotInTaskError("get_worker() can only be called inside a task on a worker")
    host = ctx.host
    return WorkerInfo(name=getattr(host, "name", ""), id=getattr(host, "peer_id", ""),
                      nthreads=getattr(host, "nthreads", 0), address=host.data_address,
                      key=ctx.run.key)
