"""The invariants of the two core machines, as checks.

Each check reads one machine's records and raises ``InvalidTransition`` (an
``InternalError``) naming the first contradiction it finds. They are O(size of the
state): the simulator in ``trioflow.testing`` runs them after every step, tests call
them directly, and nothing on a hot path does.

The scheduler's invariants are stated in :mod:`trioflow.core.scheduler.records`; the
worker's in :mod:`trioflow.core.worker`. What only a whole simulated cluster can check
(a worker's ledger against the scheduler's record of it, the slot limiter's mirror)
stays in ``trioflow.testing.invariants``.
"""

from __future__ import annotations

from ..errors import InvalidTransition
from .scheduler.records import TaskStatus
from .scheduler.state import SchedulerState
from .worker import RunState, WorkerState


def check_scheduler(state: SchedulerState) -> None:
    """The scheduler's counters agree with its own records.

    * a task is in the ``processing`` of at most one worker, and that is its ``worker``;
    * a PROCESSING task is in its worker's ``processing``; a task with no worker is in
      none;
    * ``worker.occupying`` counts its non-seceded runs, ``worker.blocked`` those of
      them blocked without a timeout;
    * ``task.seceded`` iff the task is in the ``seceded`` table;
    * a run blocked on a key is among that key's ``waiters``.
    """
    owner: dict[str, str] = {}
    for w in state.workers.values():
        occupying = blocked = 0
        for key, task in w.processing.items():
            if key in owner:
                raise InvalidTransition(f"{key} is processing on {owner[key]} and {w.id}")
            owner[key] = w.id
            if task.worker != w.id:
                raise InvalidTransition(
                    f"{key} is in {w.id}'s processing but its worker is {task.worker}")
            if not task.seceded:
                occupying += 1
                if task.blocked_on is not None and not task.blocked_timeout:
                    blocked += 1
        if (occupying, blocked) != (w.occupying, w.blocked):
            raise InvalidTransition(
                f"scheduler record {w!r}: counted occupying={occupying} blocked={blocked}")
    for key, task in state.tasks.items():
        if task.status is TaskStatus.PROCESSING and owner.get(key) != task.worker:
            raise InvalidTransition(f"{task!r} is PROCESSING but not in its worker's processing")
        if task.worker is None and key in owner:
            raise InvalidTransition(f"{task!r} has no worker but {owner[key]} processes it")
        if task.seceded != (key in state.seceded):
            raise InvalidTransition(
                f"{task!r}: seceded={task.seceded} disagrees with the seceded table")
        for waited in sorted(task.blocked_on or ()):
            other = state.tasks.get(waited)
            if other is not None and key not in other.waiters:
                raise InvalidTransition(
                    f"{key} is blocked on {waited} but is not among its waiters")


def check_worker(ledger: WorkerState) -> None:
    """A worker's ledger agrees with its runs.

    * ``holding`` == the number of RUNNING runs <= ``nthreads`` (``WorkerState.check``);
    * the rejoin line holds all and only the REJOINING runs, each once, each current.
    """
    ledger.check()
    line = list(ledger._rejoining)
    if len({id(r) for r in line}) != len(line):
        raise InvalidTransition(f"a run waits twice in the rejoin line: {line}")
    for run in line:
        if ledger.runs.get(run.key) is not run or run.state is not RunState.REJOINING:
            raise InvalidTransition(f"{run!r} is in the rejoin line but not a current REJOINING run")
    rejoining = sum(1 for r in ledger.runs.values() if r.state is RunState.REJOINING)
    if rejoining != len(line):
        raise InvalidTransition(
            f"{rejoining} runs are REJOINING but {len(line)} wait in the rejoin line")
