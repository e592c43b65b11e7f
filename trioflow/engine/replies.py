"""Requests that get exactly one answer: the pending ones of a session, by request id.

A coordination primitive (``trioflow/primitives.py``) sends a ``PrimitiveRequest`` and
waits for its ``PrimitiveReply``, from a thread (``PendingReply.wait_sync``) or from a
Trio task on the session's loop (``wait_async``). Answers arrive on the loop
(:meth:`ReplyTable.reply`). When the connection is lost, every pending request fails
with the error given to :meth:`ReplyTable.fail_all`.
"""

from __future__ import annotations

import itertools
import threading

import trio

from .. import protocol as p


class PendingReply:
    """One request waiting for its answer (``reply``) or a failure (``error``)."""

    __slots__ = ("_thread_event", "_trio_event", "error", "id", "reply")

    def __init__(self, request_id: int, asynchronous: bool) -> None:
        self.id = request_id
        self.reply: p.PrimitiveReply | None = None
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
        self._pending: dict[int, PendingReply] = {}
        self._lock = threading.Lock()
        self._closed: BaseException | None = None

    def open(self, asynchronous: bool = False) -> PendingReply:
        """A new request id and what waits for its answer (any thread).

        Raises:
            the error given to :meth:`fail_all`, once the session is closed.
        """
        with self._lock:
            if self._closed is not None:
                raise self._closed
            pending = PendingReply(next(self._ids), asynchronous)
            self._pending[pending.id] = pending
        return pending

    def forget(self, pending: PendingReply) -> None:
        """Its request was never sent (posting failed)."""
        with self._lock:
            self._pending.pop(pending.id, None)

    def reply(self, msg: p.PrimitiveReply) -> None:
        """An answer arrived (on the loop); an answer to nobody is dropped."""
        with self._lock:
            pending = self._pending.pop(msg.request_id, None)
        if pending is not None:
            pending.reply = msg
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
