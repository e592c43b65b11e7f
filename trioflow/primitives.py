"""Coordination primitives with dask's names: Lock, Semaphore, Queue, Event, Variable.

Each object names a primitive whose state lives on the scheduler (values as pickled
bytes, which the scheduler never unpickles). It works from a client, from a sync task
(its methods block the thread) and from an ``async def`` task or ``async def main``
(the ``*_async`` methods, ``async with``). Pickled into a task, an object is rebuilt
there by name, bound to the worker's connection.

A blocking wait from a task is part of the scheduler's wait-for graph: if it can never
end (a parent holding Lock "L" waits on a child that wants "L"), it raises
``DeadlockError`` with the scheduler's report. The waiting task keeps its slot, as a
plain thread would; wait inside ``worker_client()`` (or after ``secede()``) to give it
back (docs/coordination.md). Timed waits never count as deadlocked.

Cancellation (async forms): the request is withdrawn; if it was served meanwhile, its
effect is undone (a lease is released, an item goes back to the front of the queue).
"""

from __future__ import annotations

import math
import uuid
import weakref
from collections.abc import Callable
from typing import Any, ClassVar

import trio

from . import protocol as p
from . import serialize
from .client import AsyncClient, Client
from .engine.context import current_run, current_session
from .engine.replies import PendingReply
from .engine.session import Session
from .errors import DeadlockError, NoClientError, SerializationError

__all__ = ["Event", "Lock", "Queue", "Semaphore", "Variable"]


def _session_of(client: Client | AsyncClient | None) -> Session:
    if client is not None:
        if not isinstance(client, (Client, AsyncClient)):
            raise TypeError(f"client must be a Client or AsyncClient, got {type(client).__name__}")
        session = client._session
    else:
        found = current_session()
        if found is None:
            raise NoClientError(
                "a trioflow Lock, Semaphore, Queue, Event or Variable needs a client: "
                "create it inside a task, inside trioflow.run, or with a Client open "
                "(or pass client=)")
        session = found  # type: ignore[assignment]  # (the engine's one FutureSession)
    assert isinstance(session, Session)
    return session


def _check_timeout(timeout: float | None) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, got {timeout!r}")
    if timeout < 0 or math.isnan(timeout):
        raise ValueError(f"timeout must be >= 0 seconds, got {timeout!r}")


def _handle_gone(session: Session, kind: str, name: str) -> None:
    """A client-side object died (any thread, also inside the garbage collector): tell
    the scheduler through the loop, never taking the session's lock here."""
    try:
        session.trio_token.run_sync_soon(_post_quietly, session,
                                         p.PrimitiveHandles(kind, name, -1))
    except Exception:  # (the loop is gone: so is the connection)
        pass


def _post_quietly(session: Session, msg: Any) -> None:
    try:
        session.post(msg)
    except Exception:  # closed meanwhile: nothing to tell
        pass


class _Primitive:
    """What every primitive object shares: its name, its session, its requests."""

    kind: ClassVar[str]
    #: clients count their live objects of these kinds (see the deadlock rule)
    counted: ClassVar[bool] = False

    def __init__(self, name: str | None, client: Client | AsyncClient | None) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {type(name).__name__}")
        self.name = name if name else uuid.uuid4().hex
        self._session = _session_of(client)
        #: leases belong to this object (two Lock objects of one name exclude each other)
        self._id = uuid.uuid4().hex
        if self.counted and self._session.worker is None:
            self._session.post(p.PrimitiveHandles(self.kind, self.name, 1))
            weakref.finalize(self, _handle_gone, self._session, self.kind, self.name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def _extra(self) -> dict[str, Any]:
        return {}

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return (_rebuild, (type(self), self.name, self._extra()))

    # ------------------------------------------------------------------ requests

    def _message(self, pending_id: int, op: str, *, value: bytes | None, number: int,
                 timed: bool, nowait: bool) -> p.PrimitiveRequest:
        ctx = current_run()
        run_key, run_id = ("", 0)
        if ctx is not None and ctx.session is self._session:
            run_key, run_id = ctx.run.key, ctx.run.run_id
        return p.PrimitiveRequest(pending_id, self.kind, self.name, op, self._id, value,
                                  number, timed, nowait, run_key, run_id)

    def _call(self, op: str, *, value: bytes | None = None, number: int = 0,
              timeout: float | None = None, nowait: bool = False) -> p.PrimitiveReply:
        """Send one request and block this thread for its answer (``timeout``: give up
        waiting after that long; the answer is then "timeout", or what was served)."""
        session = self._session
        if session.on_loop():
            raise RuntimeError(
                f"{type(self).__name__}.{op}() blocks, and this is the event loop's thread: "
                f"use `await ....{op}_async()` (or `async with`) here")
        nowait = nowait or timeout == 0
        pending = session.replies.open()
        self._post(pending, self._message(pending.id, op, value=value, number=number,
                                          timed=timeout is not None, nowait=nowait))
        if not pending.wait_sync(None if nowait else timeout):
            session.post(p.PrimitiveCancel(pending.id))
            pending.wait_sync(None)  # "timeout", or served meanwhile: either way, once
        return self._answer(pending)

    async def _call_async(self, op: str, *, value: bytes | None = None, number: int = 0,
                          timeout: float | None = None, nowait: bool = False
                          ) -> p.PrimitiveReply:
        session = self._session
        if not session.on_loop():  # another loop (a blocking Client's runs in a thread)
            return await trio.to_thread.run_sync(
                lambda: self._call(op, value=value, number=number, timeout=timeout,
                                   nowait=nowait))
        nowait = nowait or timeout == 0
        pending = session.replies.open(asynchronous=True)
        self._post(pending, self._message(pending.id, op, value=value, number=number,
                                          timed=timeout is not None, nowait=nowait))
        try:
            with trio.move_on_after(math.inf if timeout is None or nowait else timeout):
                await pending.wait_async()
            if not pending.done:
                await self._withdraw(pending)
        except BaseException:
            if not pending.done:
                await self._withdraw(pending)
            if pending.reply is not None and pending.reply.status == "ok":
                self._undo(op, pending.reply)
            raise
        return self._answer(pending)

    async def _withdraw(self, pending: PendingReply) -> None:
        try:
            self._session.post(p.PrimitiveCancel(pending.id))
        except Exception:  # (closed: the pending request fails by itself)
            pass
        with trio.CancelScope(shield=True):  # the answer is one round trip away
            await pending.wait_async()

    def _undo(self, op: str, reply: p.PrimitiveReply) -> None:
        """A request served after its async caller was cancelled: give back what it got."""
        if op == "acquire":
            self._session.post(p.PrimitiveRequest(0, self.kind, self.name, "release", self._id))
        elif op == "get" and self.kind == "queue":
            for blob in reversed(reply.values):
                self._session.post(p.PrimitiveRequest(0, self.kind, self.name, "putback",
                                                      self._id, blob))

    def _post(self, pending: PendingReply, msg: p.PrimitiveRequest) -> None:
        try:
            self._session.post(msg)
        except BaseException:
            self._session.replies.forget(pending)
            raise

    def _answer(self, pending: PendingReply) -> p.PrimitiveReply:
        if pending.error is not None:
            raise pending.error
        reply = pending.reply
        assert reply is not None
        if reply.status == "deadlock":
            raise DeadlockError(reply.text)
        if reply.status == "error":
            raise RuntimeError(reply.text)
        if reply.status == "invalid":
            raise ValueError(reply.text)
        return reply

    def _dumps(self, value: Any, what: str) -> bytes:
        try:
            return serialize.dumps_value(value)
        except SerializationError as exc:
            where = f"the value {what} {type(self).__name__} {self.name!r}"
            raise SerializationError(
                serialize.describe_unpicklable(value, where, exc.__cause__ or exc)) from exc


def _rebuild(cls: type[_Primitive], name: str, extra: dict[str, Any]) -> _Primitive:
    """An object unpickled (inside a task, say): the same primitive, bound here."""
    return cls(name=name, **extra)


# ---------------------------------------------------------------------- Semaphore, Lock


class Semaphore(_Primitive):
    """At most ``max_leases`` holders at a time, cluster-wide, for one ``name``.

    A lease belongs to this object; it is released by :meth:`release`, or when the
    connection it was taken on goes (a worker that dies releases its tasks' leases).
    A holder's connection that stays silent for the scheduler's peer timeout is dropped,
    which is how a lease of a frozen process expires.
    """

    kind = "semaphore"

    def __init__(self, max_leases: int = 1, name: str | None = None, *,
                 client: Client | AsyncClient | None = None) -> None:
        if isinstance(max_leases, bool) or not isinstance(max_leases, int):
            raise TypeError(f"max_leases must be an int, got {type(max_leases).__name__}")
        if max_leases < 1:
            raise ValueError(f"max_leases must be >= 1, got {max_leases}")
        self.max_leases = max_leases
        super().__init__(name, client)

    def _extra(self) -> dict[str, Any]:
        return {"max_leases": self.max_leases}

    def acquire(self, timeout: float | None = None) -> bool:
        """Block until a lease is free and take it; False if ``timeout`` passed first.

        Raises:
            DeadlockError: only tasks could release a lease and none of them can run.
        """
        _check_timeout(timeout)
        return self._call("acquire", number=self.max_leases, timeout=timeout).status == "ok"

    async def acquire_async(self, timeout: float | None = None) -> bool:
        """:meth:`acquire` for event loops."""
        _check_timeout(timeout)
        reply = await self._call_async("acquire", number=self.max_leases, timeout=timeout)
        return reply.status == "ok"

    def release(self) -> bool:
        """Give back one lease of this object.

        Raises:
            RuntimeError: this object holds no lease.
        """
        return bool(self._call("release").number)

    async def release_async(self) -> bool:
        return bool((await self._call_async("release")).number)

    def get_value(self) -> int:
        """How many leases are held right now."""
        return self._call("value").number

    async def get_value_async(self) -> int:
        return (await self._call_async("value")).number

    def __enter__(self) -> Semaphore:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    async def __aenter__(self) -> Semaphore:
        await self.acquire_async()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release_async()


class Lock(Semaphore):
    """A cluster-wide lock: a :class:`Semaphore` of one lease (as in dask)."""

    kind = "lock"

    def __init__(self, name: str | None = None, *,
                 client: Client | AsyncClient | None = None) -> None:
        super().__init__(1, name, client=client)

    def _extra(self) -> dict[str, Any]:
        return {}

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Take the lock; False if ``blocking=False`` and it is held, or ``timeout``
        passed first.

        Raises:
            DeadlockError: only tasks could release it and none of them can run.
        """
        _check_timeout(timeout)
        if not blocking:
            if timeout is not None:
                raise ValueError("acquire(blocking=False) takes no timeout")
            return self._call("acquire", number=1, nowait=True).status == "ok"
        return self._call("acquire", number=1, timeout=timeout).status == "ok"

    async def acquire_async(self, blocking: bool = True,  # type: ignore[override]
                            timeout: float | None = None) -> bool:
        _check_timeout(timeout)
        reply = await self._call_async("acquire", number=1, timeout=timeout,
                                       nowait=not blocking)
        return reply.status == "ok"

    def locked(self) -> bool:
        """Whether some object holds the lock right now."""
        return self.get_value() > 0

    async def locked_async(self) -> bool:
        return await self.get_value_async() > 0

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    async def __aenter__(self) -> Lock:
        await self.acquire_async()
        return self


# ---------------------------------------------------------------------- Queue


class Queue(_Primitive):
    """A cluster-wide FIFO queue of pickled values; ``maxsize`` 0 is unbounded.

    The first object created for a name sets its ``maxsize``. While a client holds a
    live Queue object, tasks blocked on it are never reported as deadlocked: that
    client may still put.
    """

    kind = "queue"
    counted = True

    def __init__(self, name: str | None = None, client: Client | AsyncClient | None = None,
                 maxsize: int = 0) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError(f"maxsize must be an int, got {type(maxsize).__name__}")
        if maxsize < 0:
            raise ValueError(f"maxsize must be >= 0 (0: unbounded), got {maxsize}")
        self.maxsize = maxsize
        super().__init__(name, client)
        if maxsize:
            self._session.post(p.PrimitiveRequest(0, self.kind, self.name, "create",
                                                  number=maxsize))

    def _extra(self) -> dict[str, Any]:
        return {"maxsize": self.maxsize}

    def put(self, value: Any, timeout: float | None = None) -> None:
        """Append ``value``; with a ``maxsize``, block while the queue is full.

        Raises:
            TimeoutError: still full after ``timeout`` seconds.
            SerializationError: ``value`` cannot be pickled; says where.
        """
        _check_timeout(timeout)
        blob = self._dumps(value, "put in")
        if self._call("put", value=blob, timeout=timeout).status != "ok":
            raise TimeoutError(f"Queue {self.name!r} still full after {timeout}s")

    async def put_async(self, value: Any, timeout: float | None = None) -> None:
        _check_timeout(timeout)
        blob = self._dumps(value, "put in")
        if (await self._call_async("put", value=blob, timeout=timeout)).status != "ok":
            raise TimeoutError(f"Queue {self.name!r} still full after {timeout}s")

    def get(self, timeout: float | None = None, batch: bool = False) -> Any:
        """Take the oldest value, blocking while the queue is empty; ``batch=True``
        takes every value there is now (maybe none), as a list, without waiting.

        Raises:
            TimeoutError: still empty after ``timeout`` seconds.
            DeadlockError: only tasks could put and none of them can run.
        """
        _check_timeout(timeout)
        if batch:
            reply = self._call("get", nowait=True, number=1)
            return [serialize.loads_value(b) for b in reply.values]
        reply = self._call("get", timeout=timeout)
        return self._got(reply, timeout)

    async def get_async(self, timeout: float | None = None, batch: bool = False) -> Any:
        _check_timeout(timeout)
        if batch:
            reply = await self._call_async("get", nowait=True, number=1)
            return [serialize.loads_value(b) for b in reply.values]
        return self._got(await self._call_async("get", timeout=timeout), timeout)

    def _got(self, reply: p.PrimitiveReply, timeout: float | None) -> Any:
        if reply.status != "ok":
            raise TimeoutError(f"Queue {self.name!r} still empty after {timeout}s")
        return serialize.loads_value(reply.values[0])

    def qsize(self) -> int:
        """How many values are in the queue now."""
        return self._call("qsize").number

    async def qsize_async(self) -> int:
        return (await self._call_async("qsize")).number


# ---------------------------------------------------------------------- Event


class Event(_Primitive):
    """A cluster-wide flag that tasks and clients can wait for."""

    kind = "event"
    counted = True

    def __init__(self, name: str | None = None,
                 client: Client | AsyncClient | None = None) -> None:
        super().__init__(name, client)

    def set(self) -> None:
        """Set the flag: every waiter wakes, later waits return at once."""
        self._call("set")

    async def set_async(self) -> None:
        await self._call_async("set")

    def clear(self) -> None:
        """Clear the flag: later waits block until it is set again."""
        self._call("clear")

    async def clear_async(self) -> None:
        await self._call_async("clear")

    def is_set(self) -> bool:
        return bool(self._call("is_set").number)

    async def is_set_async(self) -> bool:
        return bool((await self._call_async("is_set")).number)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the flag is set; False if ``timeout`` passed first.

        Raises:
            DeadlockError: only tasks could set it and none of them can run.
        """
        _check_timeout(timeout)
        return self._call("wait", timeout=timeout).status == "ok"

    async def wait_async(self, timeout: float | None = None) -> bool:
        _check_timeout(timeout)
        return (await self._call_async("wait", timeout=timeout)).status == "ok"


# ---------------------------------------------------------------------- Variable


class Variable(_Primitive):
    """A cluster-wide named value: set it, get it (waiting until it is set), delete it."""

    kind = "variable"
    counted = True

    def __init__(self, name: str | None = None,
                 client: Client | AsyncClient | None = None) -> None:
        super().__init__(name, client)

    def set(self, value: Any) -> None:
        """Set the value (every waiting ``get`` gets it).

        Raises:
            SerializationError: ``value`` cannot be pickled; says where.
        """
        self._call("set", value=self._dumps(value, "set in"))

    async def set_async(self, value: Any) -> None:
        await self._call_async("set", value=self._dumps(value, "set in"))

    def get(self, timeout: float | None = None) -> Any:
        """The value, waiting until one is set.

        Raises:
            TimeoutError: none set after ``timeout`` seconds.
            DeadlockError: only tasks could set it and none of them can run.
        """
        _check_timeout(timeout)
        return self._got(self._call("get", timeout=timeout), timeout)

    async def get_async(self, timeout: float | None = None) -> Any:
        _check_timeout(timeout)
        return self._got(await self._call_async("get", timeout=timeout), timeout)

    def _got(self, reply: p.PrimitiveReply, timeout: float | None) -> Any:
        if reply.status != "ok":
            raise TimeoutError(f"Variable {self.name!r} not set after {timeout}s")
        return serialize.loads_value(reply.values[0])

    def delete(self) -> None:
        """Forget the value."""
        self._call("delete")

    async def delete_async(self) -> None:
        await self._call_async("delete")
