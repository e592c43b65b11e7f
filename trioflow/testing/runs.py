"""Simulated task runs and client sessions: what a task thread and its client send.

This module is the simulator's stand-in for ``trioflow/tasks.py``, ``trioflow/session.py``
and the run part of ``trioflow/net/worker_node.py``. It mirrors, message for message,
what the real shell sends; where the real shell is atomic on its event loop, a step
here is atomic too.

A :class:`SimRun` executes a :class:`~.program.Program` as a list of *ops*. Each call to
:meth:`SimRun.step` performs one op (one thing a task thread does between two points
where the event loop may run something else):

========================  ===========================================================
wait style                ops
========================  ===========================================================
leaf                      END
``Wait.NONE``             SUBMIT x n, WAIT, END
``Wait.SECEDE``           SUBMIT x n, SECEDE, WAIT, REJOIN, END (an error skips REJOIN:
                          ``secede(); gather(); rejoin()`` raises out of ``gather``)
``Wait.WORKER_CLIENT``    SECEDE, SUBMIT x n, WAIT, REJOIN, END (REJOIN always: it is
                          the ``with`` block's exit)
``Wait.ASYNC``            ASYNC_WAIT (submit all, secede, WaitKeys: no await between
                          them), REJOIN, END
========================  ===========================================================

WAIT posts ``WaitKeys`` only for keys its session still sees pending (like
``Session.wait_sync``) and then blocks until every key is done or a ``WaitFailed``
arrives; REJOIN blocks until the ledger grants the slot. Run ends post ``ReleaseKeys``
for the run's futures before ``TaskFinished``/``TaskErred`` (the task's frame, holding
the futures, dies before the worker reports the run).
"""

from __future__ import annotations

import enum
from collections import deque
from typing import TYPE_CHECKING, Any

import attrs

from .. import protocol as p
from ..core import worker as wcore
from .program import (
    DEADLOCK_TYPE,
    FAILURE_TYPE,
    Outcome,
    Program,
    Wait,
    decode_payload,
    encode_payload,
)

if TYPE_CHECKING:
    from .simulate import SimWorker

#: function ids of the two interpreter functions (sync and async) every task uses
SYNC_FN = "trioflow.testing.live:run_sync_program"
ASYNC_FN = "trioflow.testing.live:run_async_program"


class Op(enum.Enum):
    SUBMIT = "submit"
    SECEDE = "secede"
    WAIT = "wait"
    ASYNC_WAIT = "async-wait"
    REJOIN = "rejoin"
    END = "end"


def ops_for(program: Program) -> list[Op]:
    """The ops a run of ``program`` performs, in order (see the module docstring)."""
    n = len(program.children)
    if n == 0:
        return [Op.END]
    wait = program.wait
    if wait is Wait.NONE:
        return [Op.SUBMIT] * n + [Op.WAIT, Op.END]
    if wait is Wait.SECEDE:
        return [Op.SUBMIT] * n + [Op.SECEDE, Op.WAIT, Op.REJOIN, Op.END]
    if wait is Wait.WORKER_CLIENT:
        return [Op.SECEDE] + [Op.SUBMIT] * n + [Op.WAIT, Op.REJOIN, Op.END]
    return [Op.ASYNC_WAIT, Op.REJOIN, Op.END]


def encode_value(value: int) -> bytes:
    """The inline result bytes of a simulated task."""
    return str(value).encode()


# ----------------------------------------------------------------------------- sessions

PENDING, FINISHED, ERRED = "pending", "finished", "erred"


@attrs.define
class SimKey:
    """What a session knows about one key it holds a future for."""

    status: str = PENDING
    outcome: Outcome | None = None


@attrs.define(eq=False)
class SimSession:
    """A client connection's futures: the top-level client, or a worker's in-task client.

    Args:
        peer_id: the connection's peer id (a worker's in-task client shares the worker's).
        link: the connection's FIFO link to the scheduler.
        worker: the worker whose in-task client this is (it holds results locally).
    """

    peer_id: str
    link: deque[Any]
    worker: SimWorker | None = None
    keys: dict[str, SimKey] = attrs.Factory(dict)
    fn_sent: set[str] = attrs.Factory(set)
    counter: int = 0

    def post(self, msg: Any) -> None:
        """Send a message to the scheduler (FIFO, like ``Session.post``)."""
        self.link.append(msg)

    def submit(self, program: Program, path: str, parent: str = "") -> str:
        """Submit ``program`` as a task (RegisterFunction once per function, SubmitTask)."""
        self.counter += 1
        key = f"p{path}-{self.peer_id}-{self.counter}"
        fn_id = ASYNC_FN if program.is_async else SYNC_FN
        self.keys[key] = SimKey()
        if fn_id not in self.fn_sent:
            self.fn_sent.add(fn_id)
            self.post(p.RegisterFunction(fn_id, b"sim:" + fn_id.encode()))
        self.post(p.SubmitTask(key, fn_id, encode_payload(program, path), [], parent,
                               program.is_async))
        return key

    def release(self, key: str) -> None:
        """The last future for ``key`` died: forget it and tell the scheduler."""
        if self.keys.pop(key, None) is not None:
            self.post(p.ReleaseKeys([key]))

    def handle(self, msg: Any) -> None:
        """A KeyFinished/KeyErred for one of our keys (others are ignored)."""
        sk = self.keys.get(msg.key)
        if sk is None or sk.status != PENDING:
            return
        if type(msg) is p.KeyFinished:
            if msg.inline is not None:
                value: int | None = int(msg.inline)
            elif self.worker is not None:
                value = self.worker.data.get(msg.key)
            else:
                value = None
            sk.status = FINISHED
            sk.outcome = Outcome(value=value)
        else:
            sk.status = ERRED
            sk.outcome = Outcome(error=msg.type_name or msg.kind, text=msg.text)

    def pending(self, keys: list[str]) -> list[str]:
        return [k for k in keys if k in self.keys and self.keys[k].status == PENDING]


# ----------------------------------------------------------------------------- runs


@attrs.define(eq=False)
class SimRun:
    """One started run of a task on a simulated worker: its program and where it is."""

    worker: str
    local: wcore.LocalRun
    path: str
    program: Program
    ops: list[Op]
    pc: int = 0
    futures: list[str] = attrs.Factory(list)
    #: a wait is registered (WaitKeys sent, the thread sleeps on its waiter)
    waiting: bool = False
    #: a WaitFailed report arrived while waiting: the wait raises DeadlockError
    wait_failure: str | None = None
    #: the task's own view: it seceded and has not been granted a slot back since
    seceded: bool = False
    #: rejoin() was called and the slot has not been granted yet
    rejoin_pending: bool = False
    granted: bool = False
    #: the error the task is raising (its wait failed, or a child failed)
    error: Outcome | None = None
    done: bool = False

    @classmethod
    def start(cls, worker: str, local: wcore.LocalRun) -> SimRun:
        path, program = decode_payload(local.spec.payload)
        return cls(worker, local, path, program, ops_for(program))

    @property
    def key(self) -> str:
        return self.local.key

    @property
    def run_id(self) -> int:
        return self.local.run_id

    @property
    def op(self) -> Op:
        return self.ops[self.pc]

    def __repr__(self) -> str:
        return f"<SimRun {self.key}#{self.run_id} on {self.worker} at {self.op.value}>"

    def blocked_in_wait(self, session: SimSession) -> bool:
        """Waiting on keys that are not all done, and no failure has arrived."""
        return (self.waiting and self.wait_failure is None
                and bool(session.pending(self.futures)))

    def can_step(self, session: SimSession) -> bool:
        """Whether the task's thread (or Trio task) can do its next op now."""
        if self.done:
            return False
        if self.waiting:
            return not self.blocked_in_wait(session)
        if self.rejoin_pending:
            return self.granted
        return True

    def step(self, worker: SimWorker) -> None:
        """Perform the next op."""
        session = worker.session
        op = self.op
        if self.waiting:
            self._wake(session)
            if self.program.is_async and self.op is Op.REJOIN:
                self._rejoin(worker)  # wait_async's finally rejoins with no await between
            return
        if self.rejoin_pending:
            self.rejoin_pending = False
            self.pc += 1
            return
        if op is Op.SUBMIT:
            self._submit_next(session)
            self.pc += 1
        elif op is Op.SECEDE:
            self.seceded = True
            worker.do_secede(self.local)
            self.pc += 1
        elif op is Op.WAIT:
            self._wait(session)
        elif op is Op.ASYNC_WAIT:
            while len(self.futures) < len(self.program.children):
                self._submit_next(session)
            self.seceded = True
            worker.do_secede(self.local)
            self._wait(session)
        elif op is Op.REJOIN:
            self._rejoin(worker)
        else:
            self._end(worker)

    # -------------------------------------------------------------- ops

    def _submit_next(self, session: SimSession) -> None:
        i = len(self.futures)
        child = self.program.children[i]
        self.futures.append(session.submit(child, f"{self.path}.{i}", parent=self.key))

    def _wait(self, session: SimSession) -> None:
        pending = session.pending(self.futures)
        if pending:
            session.post(p.WaitKeys(self.key, self.run_id, pending, False))
            self.waiting = True
        else:
            self._after_wait(session)

    def _wake(self, session: SimSession) -> None:
        self.waiting = False
        if self.wait_failure is not None:
            self.error = Outcome(error=DEADLOCK_TYPE, text=self.path)
            self._skip_to_error_exit()
        else:
            self._after_wait(session)

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
        if Op.REJOIN in self.ops and self.program.wait is not Wait.SECEDE:
            self.pc = self.ops.index(Op.REJOIN)  # worker_client's exit / wait_async rejoin
        else:
            self.pc = len(self.ops) - 1  # straight to END (a SECEDE task ends seceded)

    def _rejoin(self, worker: SimWorker) -> None:
        self.granted = False
        self.rejoin_pending = True
        worker.do_rejoin(self.local)
        if self.granted:  # a free slot was granted at once: rejoin() returns
            self.rejoin_pending = False
            self.pc += 1

    def _end(self, worker: SimWorker) -> None:
        session = worker.session
        spec = self.local.spec
        value = None
        if self.error is not None:
            report: Any = p.TaskErred(self.key, self.run_id, b"", self.error.error,
                                      self.error.text)
        elif self.program.fail:
            report = p.TaskErred(self.key, self.run_id, b"", FAILURE_TYPE, self.path)
        else:
            value = 1 + sum(self._child_value(session, k) for k in self.futures)
            blob = encode_value(value)
            report = p.TaskFinished(self.key, self.run_id, len(blob), blob, worker.duration,
                                    "builtins.int")
        for key in self.futures:
            session.release(key)
        self.done = True
        worker.run_done(self, spec, value, report)

    def _child_value(self, session: SimSession, key: str) -> int:
        out = session.keys[key].outcome
        if out is None or out.value is None:
            raise AssertionError(f"{self!r}: the value of {key} is not available here "
                                 "(the simulator does not model GetData)")
        return out.value
