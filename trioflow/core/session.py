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

This module is pure: no I/O, no clock, no threads.
"""

from __future__ import annotations

import enum
from typing import Any

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
        return [GiveSlot()]

    def rejoin(self) -> list[TaskCommand]:
        """The task wants its slot back (``trioflow.rejoin``); it blocks until
        :meth:`rejoined`.

        Raises:
            NotInTaskError: it holds its slot already.
        """
        if not self.seceded:
            raise NotInTaskError("rejoin() without secede(): this task holds its slot already")
        return [TakeSlot()]

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
            out.append(GiveSlot())
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
            out.append(TakeSlot())
        return out
