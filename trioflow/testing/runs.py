"""Simulated task runs and client sessions: what a task's code does, step by step.

A :class:`SimRun` is one run of a task on a simulated worker. It interprets its
:class:`~.program.Program` the way :func:`~.live.run_sync_program` and
:func:`~.live.run_async_program` do, as a list of *ops*. Each call to :meth:`SimRun.step`
performs one op (what a task thread does between two points where the event loop may
run something else); where the real shell is atomic on its event loop, a step is too.

What the run *tells the cluster* when it secedes, rejoins or waits is not written here:
the run owns a :class:`~trioflow.core.session.TaskView`, the same pure machine the real
``RunContext`` drives, and executes the commands it returns as the real shell does:

* ``Post(msg)``: the message goes on the worker's link to the scheduler (FIFO: the
  session's ordered queue).
* ``GiveSlot``: the worker's ledger secedes the run (``RunHost.secede``); ``Seceded``
  follows on the same link, after everything posted before. A sync run's slot is kept
  free until its wait begins (``RunHost.unreserve``), as ``RunContext`` does.
* ``TakeSlot``: the worker's ledger queues the run to rejoin (``RunHost.rejoin``); the
  run then blocks until the ledger's ``GrantRejoin`` reaches it (:meth:`SimRun.granted`,
  which calls ``TaskView.rejoined``), at once if a slot is free.

========================  ===========================================================
wait style                ops
========================  ===========================================================
leaf                      END
``Wait.NONE``             SUBMIT x n, WAIT, END
``Wait.SECEDE``           SUBMIT x n, SECEDE, WAIT, REJOIN, END (an error skips REJOIN:
                          ``secede(); gather(); rejoin()`` raises out of ``gather``)
``Wait.WORKER_CLIENT``    SECEDE, SUBMIT x n, WAIT, REJOIN, END (REJOIN always: it is
                          the ``with`` block's exit)
``Wait.ASYNC``            SUBMIT x n, ASYNC_WAIT, END; the wait gives its slot back
                          and takes it again when it ends (``RunContext.wait_async``).
                          The task does not await between its submits, but a sync
                          child placed in a free slot starts on its thread at once and
                          may submit its own children before the next submit: so each
                          submit is a step of its own (what else may step between them
                          is over-approximated, never under)
========================  ===========================================================

A task that uses a primitive (``Program.uses``) does it first: ACQUIRE (the lock, held
until END), PUT or GET on the queue. ACQUIRE and GET block, holding the slot, until the
scheduler's ``PrimitiveReply``; a "deadlock" answer raises DeadlockError.

A wait covers the keys its session still sees pending (like ``Session.wait_sync``;
with none pending there is no wait at all) and blocks until every one is done or a
``WaitFailed`` arrives. When the run wakes, ``TaskView.end_wait`` says what follows
(for an async wait: taking the slot back). A run's end releases its futures before the
worker reports it (the task's frame, holding the futures, dies first); the worker then
ends it or hands its thread over (see :mod:`.workers`).

The sessions a run submits through are in :mod:`.sessions`.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs

from .. import protocol as p
from ..core import worker as wcore
from ..core.session import (
    GiveSlot,
    Post,
    TakeSlot,
    TaskCommand,
    TaskView,
    WaitEnd,
)
from .ops import PRIMITIVE_OF, Op, ops_for
from .program import (
    DEADLOCK_TYPE,
    FAILURE_TYPE,
    Outcome,
    Program,
    Wait,
    decode_payload,
)
from .sessions import SimSession


def encode_value(value: int) -> bytes:
    """The inline result bytes of a simulated task."""
    return str(value).encode()


# ----------------------------------------------------------------------------- runs


class RunHost(Protocol):
    """What a run needs from the worker it runs on (``simulate.SimWorker``)."""

    @property
    def session(self) -> SimSession:
        """The worker's in-task client, whose link is the worker's."""

    @property
    def duration(self) -> float:
        """The run time the worker reports."""

    def secede(self, run: wcore.LocalRun, reserve: bool = False) -> None:
        """``run`` gives its slot back (through the ledger); kept for it until its next
        event, with ``reserve``."""

    def unreserve(self, run: wcore.LocalRun) -> None:
        """The slot kept for ``run``, if any, is filled (its wait begins)."""

    def rejoin(self, run: wcore.LocalRun) -> None:
        """``run`` asks for a slot again; :meth:`SimRun.granted` follows when it has one."""

    def run_done(self, run: SimRun, value: int | None, report: Any) -> None:
        """``run`` returned ``value`` or raised; ``report`` is its TaskFinished/TaskErred."""


@attrs.define(eq=False)
class SimRun:
    """One started run of a task on a simulated worker: its program and where it is."""

    worker: str
    local: wcore.LocalRun
    path: str
    program: Program
    ops: list[Op]
    view: TaskView
    pc: int = 0
    futures: list[str] = attrs.Factory(list)
    #: a WaitFailed report arrived while waiting: the wait raises DeadlockError
    wait_failure: str | None = None
    #: a TakeSlot was executed and its grant has not woken the run yet
    rejoin_pending: bool = False
    #: the grant for the pending TakeSlot came (the run's waiter is set)
    was_granted: bool = False
    #: the error the task is raising (its wait failed, or a child failed)
    error: Outcome | None = None
    done: bool = False
    #: the primitive request the run is blocked on (its id), if any
    prim_wait: int = 0
    #: it holds Lock "L"
    holds_lock: bool = False
    #: a TakeSlot waits for the answer to its resources request (its id) first
    resources_wait: int = 0

    @classmethod
    def start(cls, worker: str, local: wcore.LocalRun) -> SimRun:
        path, program = decode_payload(local.spec.payload)
        # the task's depth, as RunContext reads it from the scheduler's priority
        view = TaskView(local.key, local.run_id, -local.priority[1], program.is_async)
        return cls(worker, local, path, program, ops_for(program), view)

    @property
    def key(self) -> str:
        return self.local.key

    @property
    def run_id(self) -> int:
        return self.local.run_id

    @property
    def op(self) -> Op:
        return self.ops[self.pc]

    @property
    def seceded(self) -> bool:
        """The task's own view: it gave its slot back and has not been granted one since."""
        return self.view.seceded

    @property
    def waiting(self) -> bool:
        """A wait is registered (WaitKeys sent) and the run has not woken from it."""
        return self.view.waiting

    def __repr__(self) -> str:
        return f"<SimRun {self.key}#{self.run_id} on {self.worker} at {self.op.value}>"

    def blocked_in_wait(self, session: SimSession) -> bool:
        """Waiting on keys that are not all done, and no failure has arrived."""
        return (self.view.waiting and self.wait_failure is None
                and bool(session.pending(self.futures)))

    def can_step(self, session: SimSession) -> bool:
        """Whether the task's thread (or Trio task) can do its next op now."""
        if self.done:
            return False
        if self.prim_wait:
            return self.prim_wait in session.replies
        if self.resources_wait:
            return self.resources_wait in session.replies
        if self.view.waiting:
            return not self.blocked_in_wait(session)
        if self.rejoin_pending:
            return self.was_granted
        return True

    def granted(self) -> None:
        """The ledger granted the slot a TakeSlot asked for (``GrantRejoin``)."""
        self.was_granted = True
        self.view.rejoined()

    def step(self, worker: RunHost) -> None:
        """Perform the next op."""
        session = worker.session
        op = self.op
        if self.prim_wait:
            self._prim_wake(session)
        elif self.resources_wait:  # resources back: now take the slot (TakeSlot's rest)
            reply = session.replies.pop(self.resources_wait)
            assert reply.status == "ok", reply  # (a seceded run is never a victim)
            self.resources_wait = 0
            self._take_slot(worker)
        elif op in PRIMITIVE_OF:
            rid = session.request(op, self.key, self.run_id)
            self.pc += 1
            if rid:
                self.prim_wait = rid
        elif self.view.waiting:
            self._wake(worker)
        elif self.rejoin_pending:
            self.rejoin_pending = False  # the grant woke the run: rejoin() returns
        elif op is Op.SUBMIT:
            self._submit_next(session)
            self.pc += 1
        elif op is Op.SECEDE:
            self._execute(worker, self.view.secede())
            self.pc += 1
        elif op is Op.WAIT:
            self._wait(worker)
        elif op is Op.ASYNC_WAIT:
            self._wait(worker, give_slot=True)
        elif op is Op.REJOIN:
            self.pc += 1
            self._execute(worker, self.view.rejoin())
        else:
            self._end(worker)

    # -------------------------------------------------------------- the shell's part

    def _execute(self, worker: RunHost, commands: list[TaskCommand]) -> None:
        """Carry out the view's commands in order, as ``RunContext`` does."""
        for cmd in commands:
            if type(cmd) is Post:
                worker.session.post(cmd.message)
            elif type(cmd) is GiveSlot:
                # (a sync run's slot is kept until it waits, as RunContext._post does)
                worker.secede(self.local, not self.program.is_async)
            else:
                assert type(cmd) is TakeSlot
                if self.local.spec.has_resources:  # (RunContext._take_slot_sync)
                    self.resources_wait = worker.session.request_resources(self.key,
                                                                           self.run_id)
                else:
                    self._take_slot(worker)

    def _take_slot(self, worker: RunHost) -> None:
        self.rejoin_pending, self.was_granted = True, False
        worker.rejoin(self.local)
        if self.was_granted:  # a free slot was granted at once: no wait
            self.rejoin_pending = False

    # -------------------------------------------------------------- ops

    def _submit_next(self, session: SimSession) -> None:
        i = len(self.futures)
        child = self.program.children[i]
        self.futures.append(session.submit(child, f"{self.path}.{i}", parent=self.key,
                                           depth=self.view.depth + 1))

    def _wait(self, worker: RunHost, give_slot: bool = False) -> None:
        pending = worker.session.pending(self.futures)
        if pending:
            self._execute(worker, self.view.begin_wait(pending, give_slot=give_slot))
            if self.view.seceded and not self.program.is_async:
                worker.unreserve(self.local)  # (RunContext.wait_sync, once it may help)
        else:
            self._after_wait(worker.session)

    def _wake(self, worker: RunHost) -> None:
        """The wait is over (its keys are done, or it failed): end it, then go on."""
        failed = self.wait_failure is not None
        if failed:
            self.error = Outcome(error=DEADLOCK_TYPE, text=self.path)
            self._skip_to_error_exit()
        else:
            self._after_wait(worker.session)
        self._execute(worker, self.view.end_wait(WaitEnd.FAILED if failed else WaitEnd.DONE))

    def _prim_wake(self, session: SimSession) -> None:
        """The answer to the primitive request came: go on, or raise DeadlockError."""
        reply = session.replies.pop(self.prim_wait)
        self.prim_wait = 0
        if reply.status == "ok":
            self.holds_lock = self.holds_lock or self.ops[self.pc - 1] is Op.ACQUIRE
        else:
            assert reply.status == "deadlock", reply
            self.error = Outcome(error=DEADLOCK_TYPE, text=self.path)
            self.pc = len(self.ops) - 1  # (nothing was submitted yet: straight to END)

    def _after_wait(self, session: SimSession) -> None:
        """The wait is over: gather raises the first failed child's error, if any."""
        self.pc += 1
        for key in self.futures:
            out = session.keys[key].outcome
            if out is not None and not out.ok:
                self.error = out
                self._skip_to_error_exit()
                return

    def _skip_to_error_exit(self) -> None:
        if self.program.wait is Wait.WORKER_CLIENT:
            self.pc = self.ops.index(Op.REJOIN)  # the with block's exit rejoins
        else:
            self.pc = len(self.ops) - 1  # straight to END (a SECEDE task ends seceded)

    def _end(self, worker: RunHost) -> None:
        session = worker.session
        value = None
        report: Any
        if self.error is not None:
            report = p.TaskErred(self.key, self.run_id, b"", self.error.error,
                                 self.error.text)
        elif self.program.fail:
            report = p.TaskErred(self.key, self.run_id, b"", FAILURE_TYPE, self.path)
        else:
            value = 1 + sum(self._child_value(session, k) for k in self.futures)
            blob = encode_value(value)
            report = p.TaskFinished(self.key, self.run_id, len(blob), blob,
                                    worker.duration, "builtins.int")
        session.release(self.futures)
        if self.holds_lock:  # (``with Lock("L"):`` exits before the task returns)
            self.holds_lock = False
            session.post(p.PrimitiveRequest(0, "lock", "L", "release",
                                            f"{self.key}#{self.run_id}"))
        self.done = True
        worker.run_done(self, value, report)

    def _child_value(self, session: SimSession, key: str) -> int:
        out = session.keys[key].outcome
        if out is None or out.value is None:
            raise AssertionError(f"{self!r}: the value of {key} is not available here "
                                 "(the simulator does not model GetData)")
        return out.value
