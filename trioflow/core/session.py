"""The in-task protocol: what a running task's secede, rejoin and waits tell the cluster.

Rule 1: every ``WaitKeys``, every ``WaitEnded`` and every slot change around a wait that
a task makes is produced here, and nowhere else. The real shell (``engine/context.py``)
and the deterministic simulator (``testing/runs.py``) both drive this machine, so the
harness checks the ordering the product runs, not a copy of it.

The deadlock rule (``core/deadlock.py``) rests on this ordering:

* A wait that gives its slot back emits ``GiveSlot`` *before* ``Post(WaitKeys)``: the
  scheduler must count the slot free before it sees the wait, or a wait that holds no
  slot looks like one that does (a false deadlock).
* A wait that ends without its keys being done (a timeout, an exception, a
  cancellation) emits ``Post(WaitEnded)``, so the wait-for graph forgets it. A wait the
  scheduler itself failed (``WaitFailed``) needs none: the scheduler already dropped it.
* A slot given back for a wait is taken again (``TakeSlot``) after the wait, whatever
  ended it, before the task goes on.

Commands are executed in order by the shell. ``GiveSlot``/``TakeSlot`` go through the
worker's ledger (``Seceded``/``RejoinRequested`` come from there), in order with the
posted messages; a ``TakeSlot`` completes when the shell calls :meth:`TaskView.rejoined`.

The module also holds :class:`SessionKeys`, the key table of one session: the futures'
keys, which functions were sent, and the messages that follow from them (a function is
registered once per session, a key is submitted once while it is held, a key whose last
future died is released in one batch). The real ``engine.session.Session`` and the
simulator's ``SimSession`` both keep their keys in it.

This module is pure: no I/O, no clock, no threads.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import attrs

from .. import protocol as p
from ..errors import NotInTaskError


@attrs.frozen
class Post:
    """Send ``message`` to the scheduler, after everything posted before."""

    message: Any


@attrs.frozen
class GiveSlot:
    """Give the run's slot back to its worker (the ledger reports ``Seceded``)."""


@attrs.frozen
class TakeSlot:
    """Ask the worker for a slot again; the run continues once it is granted."""


TaskCommand = Post | GiveSlot | TakeSlot

#: the one instance of each field-less command (frozen: every wait shares them, instead
#: of building two objects per async task's gather)
GIVE_SLOT = GiveSlot()
TAKE_SLOT = TakeSlot()


class WaitEnd(enum.Enum):
    """How a wait ended."""

    DONE = "done"  # every key it waited on (or one, for any_of) is done
    FAILED = "failed"  # the scheduler reported it can never end (WaitFailed)
    ABANDONED = "abandoned"  # timeout, exception or cancellation in the waiting task


class TaskView:
    """One run of a task, as the task itself sees it: seceded or not, waiting or not.

    Args:
        key, run_id: the run.
        depth: the task's depth in the tree of tasks launching tasks (0 for a root).
        is_async: an ``async def`` task (its waits always give the slot back).
    """

    __slots__ = ("_wait_gave_slot", "depth", "is_async", "key", "run_id", "seceded",
                 "waits")

    def __init__(self, key: str, run_id: int, depth: int = 0, is_async: bool = False) -> None:
        self.key = key
        self.run_id = run_id
        self.depth = depth
        self.is_async = is_async
        #: the task's own view: ahead of the worker's ledger, which learns in order
        self.seceded = False
        #: waits reported (WaitKeys) that have not ended: an async task may wait on
        #: several things at once, from concurrent Trio tasks of its own
        self.waits = 0
        self._wait_gave_slot = False

    def __repr__(self) -> str:
        return f"<TaskView {self.key!r}#{self.run_id} seceded={self.seceded}>"

    @property
    def waiting(self) -> bool:
        return self.waits > 0

    # ------------------------------------------------------------------ secede / rejoin

    def secede(self) -> list[TaskCommand]:
        """The task gives its slot back and goes on running (``trioflow.secede``).

        Raises:
            NotInTaskError: it has seceded already.
        """
        if self.seceded:
            raise NotInTaskError("this task has already seceded; call rejoin() first")
        self.seceded = True
        return [GIVE_SLOT]

    def rejoin(self) -> list[TaskCommand]:
        """The task wants its slot back (``trioflow.rejoin``); it blocks until
        :meth:`rejoined`.

        Raises:
            NotInTaskError: it holds its slot already.
        """
        if not self.seceded:
            raise NotInTaskError("rejoin() without secede(): this task holds its slot already")
        return [TAKE_SLOT]

    def rejoined(self) -> None:
        """The worker granted the slot a ``TakeSlot`` asked for."""
        self.seceded = False

    # ------------------------------------------------------------------ waits

    def begin_wait(self, keys: list[str], *, timed: bool = False, any_of: bool = False,
                   give_slot: bool = False) -> list[TaskCommand]:
        """The task starts waiting on ``keys`` (those its session sees pending).

        Args:
            timed: the wait has a timeout (the deadlock rule never counts it).
            any_of: it ends when any one key is done (``as_completed``).
            give_slot: give the slot back for the wait and take it again after (async
                tasks, ``auto_secede``); a seceded task has none to give.

        Waits may overlap (concurrent Trio tasks of one async task): the scheduler keeps
        the latest one reported, the slot is given back by the first and taken again
        after the last.
        """
        out: list[TaskCommand] = []
        if give_slot and not self.seceded:
            self._wait_gave_slot = True
            self.seceded = True
            out.append(GIVE_SLOT)
        self.waits += 1
        out.append(Post(p.WaitKeys(self.key, self.run_id, list(keys), timed, any_of)))
        return out

    def end_wait(self, how: WaitEnd) -> list[TaskCommand]:
        """A wait is over, ``how``; after the last one, the slot the waits gave back (if
        any) is asked for again.

        An abandoned wait is withdrawn even while another overlapping wait goes on: a
        run the scheduler believes is not waiting can only make it miss a deadlock,
        never report a false one.
        """
        if not self.waits:
            return []
        self.waits -= 1
        out: list[TaskCommand] = []
        if how is WaitEnd.ABANDONED:
            out.append(Post(p.WaitEnded(self.key, self.run_id)))
        if self._wait_gave_slot and not self.waits:
            self._wait_gave_slot = False
            out.append(TAKE_SLOT)
        return out


# ---------------------------------------------------------------------- the key table


class KeyStatus(enum.Enum):
    """Where a key stands, as its session sees it (``Future.status`` is the value)."""

    PENDING = "pending"
    FINISHED = "finished"
    ERRED = "error"


PENDING, FINISHED, ERRED = KeyStatus.PENDING, KeyStatus.FINISHED, KeyStatus.ERRED


class KeyRecord(Protocol):
    """What the key table reads and writes of a key's record (``engine.keys.KeyState``)."""

    key: str
    status: KeyStatus
    inline: bytes | None
    nbytes: int
    type_name: str
    error: Any
    holder: str


R = TypeVar("R", bound=KeyRecord)


class SessionKeys(Generic[R]):
    """The keys one session holds futures for, and the messages they cost.

    Every method changes state and returns what to send or whose waiters to wake; the
    shell sends and wakes, holding its own lock around each call.

    Args:
        new_record: makes the record of a key seen for the first time.
    """

    __slots__ = ("fn_sent", "keys", "new_record", "releasing")

    def __init__(self, new_record: Callable[[str], R]) -> None:
        self.new_record = new_record
        #: key -> record, for every key a live future holds
        self.keys: dict[str, R] = {}
        #: function ids registered on this connection
        self.fn_sent: set[str] = set()
        #: keys whose last future died, not yet released (:meth:`take_releases`)
        self.releasing: dict[str, R] = {}

    def lookup(self, key: str) -> R | None:
        """The record of ``key``, also while its release is pending."""
        return self.keys.get(key) or self.releasing.get(key)

    def submit(self, key: str, fn_id: str, fn_blob: bytes) -> tuple[R, list[Any], bool]:
        """A task of ``key`` calling function ``fn_id`` is submitted: the key's record,
        the messages to send before the task, and whether the task is to be sent (or
        placed) at all.

        A function is registered (``RegisterFunction``) the first time it is used; the
        task is sent unless its key is held already (a pure key submitted again, also
        one whose release has not gone out: it is kept). The caller builds the task's
        message only then: a child placed on its worker is sent as a ``TaskPlaced``.
        """
        out: list[Any] = []
        rec = self.keys.get(key)
        fresh = rec is None
        if rec is None:
            rec = self.releasing.pop(key, None)
            if rec is not None:  # wanted again before its release went out
                fresh = False
            else:
                rec = self.new_record(key)
            self.keys[key] = rec
        if fn_id not in self.fn_sent:
            self.fn_sent.add(fn_id)
            out.append(p.RegisterFunction(fn_id, fn_blob))
        return rec, out, fresh

    def adopt(self, key: str) -> tuple[R, list[Any]]:
        """A future for ``key`` arrived from elsewhere: its record, and ``AcquireKeys``
        when this session did not hold the key."""
        rec = self.keys.get(key) or self.releasing.pop(key, None)
        if rec is not None:
            self.keys[key] = rec
            return rec, []
        rec = self.keys[key] = self.new_record(key)
        return rec, [p.AcquireKeys([key])]

    def release(self, rec: R) -> None:
        """The last future of ``rec`` died: the key leaves the table, to be released
        with the next :meth:`take_releases` (futures die in bursts: one message)."""
        if self.keys.get(rec.key) is rec:
            del self.keys[rec.key]
        self.releasing[rec.key] = rec

    def take_releases(self) -> p.ReleaseKeys | None:
        """The ``ReleaseKeys`` for every key released since the last call, if any."""
        if not self.releasing:
            return None
        keys = list(self.releasing)
        self.releasing.clear()
        return p.ReleaseKeys(keys)

    def finished(self, msg: p.KeyFinished) -> R | None:
        """The scheduler says a key is done: its record, if it was pending here (wake it)."""
        rec = self.keys.get(msg.key)
        if rec is None or rec.status is not PENDING:
            return None
        rec.status = FINISHED
        if msg.inline is not None:
            rec.inline = msg.inline
        rec.nbytes = msg.nbytes
        rec.type_name = msg.type_name
        rec.holder = msg.holder
        return rec

    def finished_here(self, report: p.TaskFinished) -> R | None:
        """A task of this (worker) session's futures finished on this very worker: its
        record, if it was pending (wake it now, not a scheduler round trip later).

        The scheduler sends this worker no ``KeyFinished`` for it (``ops.reached_memory``),
        so a record whose release is pending is marked too: it may be wanted again
        (``submit`` of a pure key takes it back) before the release goes out."""
        rec = self.lookup(report.key)
        if rec is None or rec.status is not PENDING:
            return None
        rec.status = FINISHED
        rec.nbytes = report.nbytes
        rec.type_name = report.type_name
        return rec

    def erred(self, msg: p.KeyErred) -> R | None:
        """The scheduler says a key failed: its record, if it was pending here (wake it)."""
        rec = self.keys.get(msg.key)
        if rec is None or rec.status is ERRED:
            return None
        if rec.status is FINISHED and msg.kind not in ("cancelled", "discarded"):
            return None
        # (a finished key is failed only by a cancel, or by its worker dropping the
        # value, TaskErred.dropped: its value is gone with it)
        rec.status = ERRED
        rec.error = msg
        rec.inline = None
        return rec

    def restarted(self, msg: p.KeyRestarted) -> R | None:
        """A finished key is being computed again (its holder was lost), or a failed one
        (``Client.retry``): its record, now pending again, if it was done here."""
        rec = self.keys.get(msg.key)
        if rec is None or rec.status is PENDING:
            return None
        rec.status = PENDING
        rec.inline = None
        rec.error = None
        return rec
