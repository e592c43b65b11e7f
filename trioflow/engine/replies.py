"""Requests that get exactly one answer: the pending ones of a session, by request id.

A coordination primitive (``trioflow/primitives.py``) sends a ``PrimitiveRequest`` and
waits for its ``PrimitiveReply``; a service call (``engine/services.py``: status, why,
run history, replicas, restart) waits for its own kind of reply. Either waits from a
thread (``PendingReply.wait_sync``) or from a Trio task on the session's loop
(``wait_async``). Answers arrive on the loop (:meth:`ReplyTable.reply`); one of another
kind than its request expects fails that request. When the connection is lost, every
pending request fails with the error given to :meth:`ReplyTable.fail_all`.

One table per session, one counter: request ids are unique on the connection whatever
the request, so an answer can only reach the request it was made for.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any, Generic, TypeVar, overload

import trio

from .. import protocol as p
from ..errors import ProtocolError

R = TypeVar("R")


class PendingReply(Generic[R]):
    """One request waiting for its answer (``reply``, of type ``expect``) or a failure
    (``error``)."""

    __slots__ = ("_thread_event", "_trio_event", "error", "expect", "id", "reply")

    def __init__(self, request_id: int, asynchronous: bool, expect: type[R]) -> None:
        self.id = request_id
        self.expect = expect
        self.reply: R | None = None
        self.error: BaseException | None = None
        self._thread_event = None if asynchronous else threading.Event()
        self._trio_event = trio.Event() if asynchronous else None

    @property
    def done(self) -> bool:
        return self.reply is not None or self.error is not None

    def _set(self) -> None:
        if self._thread_event is not None:
            self._thread_event.set()
        if self._trio_event is not None:
            self._trio_event.set()

    def wait_sync(self, timeout: float | None) -> bool:
        """Block this thread until answered; False when ``timeout`` passed first."""
        assert self._thread_event is not None
        return self._thread_event.wait(timeout)

    async def wait_async(self) -> None:
        """Wait on the session's loop until answered. Cancellation: just stops waiting."""
        assert self._trio_event is not None
        await self._trio_event.wait()


class ReplyTable:
    """The requests of one session still waiting for their answer."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._pending: dict[int, PendingReply[Any]] = {}
        self._lock = threading.Lock()
        self._closed: BaseException | None = None

    @overload
    def open(self, asynchronous: bool = False) -> PendingReply[p.PrimitiveReply]: ...

    @overload
    def open(self, asynchronous: bool, expect: type[R]) -> PendingReply[R]: ...

    def open(self, asynchronous: bool = False, expect: type[Any] = p.PrimitiveReply
             ) -> PendingReply[Any]:
        """A new request id and what waits for its answer, a message of type ``expect``
        (any thread).

        Raises:
            the error given to :meth:`fail_all`, once the session is closed.
        """
        with self._lock:
            if self._closed is not None:
                raise self._closed
            pending = PendingReply(next(self._ids), asynchronous, expect)
            self._pending[pending.id] = pending
        return pending

    def forget(self, pending: PendingReply[Any]) -> None:
        """Its request was never sent (posting failed)."""
        with self._lock:
            self._pending.pop(pending.id, None)

    def reply(self, msg: Any) -> None:
        """An answer (a message with a ``request_id``) arrived, on the loop. An answer to
        nobody is dropped (its request gave up); one of the wrong kind fails its
        request, since a scheduler that answers a status request with a primitive's
        reply is not one this client can trust to have done what was asked."""
        with self._lock:
            pending = self._pending.pop(msg.request_id, None)
        if pending is None:
            return
        if type(msg) is pending.expect:
            pending.reply = msg
        else:
            pending.error = ProtocolError(
                f"request {msg.request_id} expected a {pending.expect.__name__}, the "
                f"scheduler answered with a {type(msg).__name__}: is it the same trioflow "
                "version as this client?")
        pending._set()

    def fail_all(self, error: BaseException) -> None:
        """The session closed: every pending request fails with ``error``, and so does
        every later :meth:`open`."""
        with self._lock:
            self._closed = error
            pending, self._pending = list(self._pending.values()), {}
        for one in pending:
            one.error = error
            one._set()
