"""Simulated client sessions: a client connection's futures, top-level or in-task.

A :class:`SimSession` keeps its keys in a ``core.session.SessionKeys``, the table the
real ``Session`` keeps: which messages a submit and a release send
(``RegisterFunction`` once per function, ``SubmitTask``, one ``ReleaseKeys`` for the
futures that die together) is the product's code too. A worker's in-task session hands
children of its runs to its :class:`Placer` (the worker), as ``Session.submit`` hands
them to ``WorkerNode.place_child``.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

import attrs

from .. import protocol as p
from ..core import fold
from ..core.session import PENDING, KeyStatus, SessionKeys
from .ops import PRIMITIVE_OF, Op
from .program import Outcome, Program, encode_payload

#: function ids of the two interpreter functions (sync and async) every task uses
SYNC_FN = "trioflow.testing.live:run_sync_program"
ASYNC_FN = "trioflow.testing.live:run_async_program"


@attrs.define
class SimKey:
    """What a session knows about one key it holds a future for (a ``KeyRecord``)."""

    key: str
    status: KeyStatus = PENDING
    inline: bytes | None = None
    nbytes: int = 0
    type_name: str = ""
    error: Any = None
    holder: str = ""
    #: what the key's future gives: its value or its error (once done)
    outcome: Outcome | None = None


@attrs.define(eq=False)
class SimSession:
    """A client connection's futures: the top-level client, or a worker's in-task client.

    Args:
        peer_id: the connection's peer id (a worker's in-task client shares the worker's).
        link: the connection's FIFO link to the scheduler.
        local_data: the results held by the worker whose in-task client this is (a
            result too large to travel inline is read from there).
    """

    peer_id: str
    link: deque[Any]
    local_data: dict[str, int] | None = None
    table: SessionKeys[SimKey] = attrs.Factory(lambda: SessionKeys(SimKey))
    counter: int = 0
    #: primitive requests sent (ids, like ``engine.replies.ReplyTable``) and answers got
    requests: int = 0
    replies: dict[int, p.PrimitiveReply] = attrs.Factory(dict)
    #: a worker's in-task client: where children of its runs are placed (``Placer``);
    #: None sends every task to the scheduler
    placer: Placer | None = None

    @property
    def keys(self) -> dict[str, SimKey]:
        return self.table.keys

    def post(self, msg: Any) -> None:
        """Send a message to the scheduler (FIFO, like ``Session.post``)."""
        fold.append_folded(self.link, msg)  # as a worker's connection does (core.fold)

    def submit(self, program: Program, path: str, parent: str = "", depth: int = 0) -> str:
        """Submit ``program`` as a task; returns its key.

        A child (``parent`` set, ``depth`` its depth) of a run of a worker whose in-task
        client this is goes to the worker's ``placer``, as ``Session.submit`` hands it to
        ``WorkerNode.place_child``: at once, in order with what the run posted before.
        """
        self.counter += 1
        key = f"p{path}-{self.peer_id}-{self.counter}"
        fn_id = ASYNC_FN if program.is_async else SYNC_FN
        gpu = program.uses == "gpu"
        payload = encode_payload(program, path)
        _, messages, fresh = self.table.submit(key, fn_id, b"sim:" + fn_id.encode())
        for msg in messages:
            self.post(msg)
        if not fresh:
            return key
        # (a task asking for resources goes to the scheduler, as in ``Session.submit``)
        if parent and not gpu and self.placer is not None:
            self.placer.place_child(p.TaskPlaced(key, 1, fn_id, payload, parent,
                                                 program.is_async), depth)
        else:
            self.post(p.SubmitTask(key, fn_id, payload, [], parent, program.is_async, 0,
                                   0, [], False, ["GPU"] if gpu else [],
                                   [1.0] if gpu else []))
        return key

    def release(self, keys: list[str]) -> None:
        """The futures of ``keys`` died (together, like a task's frame): the session
        releases them in one message, as ``Session`` does on the loop's next turn."""
        for key in keys:
            rec = self.table.keys.get(key)
            if rec is not None:
                self.table.release(rec)
        msg = self.table.take_releases()
        if msg is not None:
            self.post(msg)

    def request_resources(self, run_key: str, run_id: int) -> int:
        """A seceded run asks for its resources back before it rejoins (like
        ``RunContext._resources_request``); the request's id."""
        self.requests += 1
        self.post(p.PrimitiveRequest(self.requests, "resources", "", "acquire",
                                     run_key=run_key, run_id=run_id))
        return self.requests

    def request(self, op: Op, run_key: str, run_id: int) -> int:
        """Send a primitive request of ``op`` from run ``run_key``; its id (0 for a
        put, whose answer nobody waits for: the queue is unbounded)."""
        kind, name = PRIMITIVE_OF[op]
        rid = 0
        if op is not Op.PUT:
            self.requests += 1
            rid = self.requests
        self.post(p.PrimitiveRequest(rid, kind, name, op.value, f"{run_key}#{run_id}",
                                     b"1" if op is Op.PUT else None, 0, False, False,
                                     run_key, run_id))
        return rid

    def handle(self, msg: Any) -> None:
        """A KeyFinished/KeyErred for one of our keys (others are ignored)."""
        if type(msg) is p.PrimitiveReply:
            self.replies[msg.request_id] = msg
        elif type(msg) is p.KeyFinished:
            rec = self.table.finished(msg)
            if rec is not None:
                self._finished(rec)
        elif type(msg) is p.KeyErred:
            rec = self.table.erred(msg)
            if rec is not None:
                rec.outcome = Outcome(error=msg.type_name or msg.kind, text=msg.text)

    def finished_here(self, report: p.TaskFinished) -> None:
        """A task of this (worker) session's futures finished on this very worker: its
        waiters wake without waiting for the scheduler's KeyFinished."""
        rec = self.table.finished_here(report)
        if rec is not None:
            self._finished(rec)

    def _finished(self, rec: SimKey) -> None:
        if rec.inline is not None:
            rec.outcome = Outcome(value=int(rec.inline))
        elif self.local_data is not None:
            rec.outcome = Outcome(value=self.local_data.get(rec.key))
        else:
            rec.outcome = Outcome(value=None)

    def pending(self, keys: list[str]) -> list[str]:
        table = self.table.keys
        return [k for k in keys if k in table and table[k].status is PENDING]


# ----------------------------------------------------------------------------- runs


class Placer(Protocol):
    """Where a worker's in-task client places the children of its runs
    (``simulate.SimWorker``, as ``WorkerNode.place_child``)."""

    def place_child(self, msg: p.TaskPlaced, depth: int) -> None:
        """Queue the child here and report ``msg``, or send its ``SubmitTask``."""


