"""Deadlock detection: the rule, checked once per event, and the report.

The scheduler sees every wait a task makes (in-task clients talk through their worker's
connection), so it holds the wait-for graph: run -> keys it is blocked on (kept by the
handlers of :mod:`.waits`).

Deadlock rule (zero false positives): the cluster is deadlocked when

1. every slot of every worker is held by a run blocked on keys, without a timeout
   (``worker.blocked >= worker.nthreads`` for all workers, and there is a worker), and
2. no seceded run could still be computing: each is blocked without a timeout, or
   waiting to rejoin, and
3. no StealTasks answer is in flight, and
4. no large scatter is waiting to be placed (its upload needs no slot).

Then nothing computes, nothing can start (every task needs a slot), and the only thing
that could unblock a run is a key finishing, which needs a slot. The scheduler's view of
"blocked" is exact because a run is unblocked only by a key it awaits finishing: either
the scheduler sends the result (and updates its records as it sends), or the key's run
ends on the waiter's own worker (``finished_here``), whose ``TaskFinished`` precedes in
that worker's stream everything the woken run does next. A child placed on its
parent's worker (``TaskPlaced``) is likewise known before anything it sends, so the
records of a worker, after a prefix of its stream, are its ledger at that point (see
docs/design/local-placement.md). A timeout or a new worker would change the picture,
which is why timed waits never count as blocked.

When the rule holds, every slot-holding blocked run gets ``WaitFailed(kind="deadlock")``
with a report naming each waiter, its slot, and what it waits on; its wait raises
``DeadlockError``, the slot frees and the rest of the program can go on.
"""

from __future__ import annotations

from ... import protocol as p
from . import ops
from .records import TaskRecord, TaskStatus
from .state import SchedulerState

FIXES = (
    "Fix it in one of these ways:\n"
    "  * call trioflow.secede() before waiting and trioflow.rejoin() after it;\n"
    "  * wait inside `with trioflow.worker_client() as client:` (it secedes for you);\n"
    "  * make the task `async def` and `await` the futures (waiting holds no slot);\n"
    "  * or start the cluster with auto_secede=True."
)


def is_deadlocked(state: SchedulerState) -> bool:
    """Whether the rule in the module docstring holds right now."""
    if not state.workers or state.scatters:
        return False  # (a scatter waiting for a worker needs an upload, not a slot)
    for w in state.workers.values():
        if w.blocked < w.nthreads or w.steal_pending:
            return False
    for run in state.seceded.values():
        if run.rejoin_pending:
            continue
        if run.blocked_on is None or run.blocked_timeout:
            return False  # it may be computing, or will wake up
    return True


def check(state: SchedulerState) -> None:
    """Report a deadlock to its waiters if one has formed."""
    if not is_deadlocked(state):
        return
    victims = [
        t
        for w in state.workers.values()
        for t in w.processing.values()
        if not t.seceded and t.blocked_on is not None and not t.blocked_timeout
    ]
    report = describe(state, victims)
    state.deadlocks.append(report)
    for run in victims:
        worker_id = run.worker
        assert worker_id is not None
        state.send(worker_id, p.WaitFailed(run.key, run.run_id, "deadlock", report))
        ops.unblock(state, run)


def _where(state: SchedulerState, key: str, depth: int = 0) -> str:
    task = state.tasks.get(key)
    if task is None:
        return f"{key} (released)"
    if task.status is TaskStatus.QUEUED:
        return f"{key} (queued: no free slot)"
    if task.status is TaskStatus.WAITING:
        waits = sorted(task.waiting_on)
        if depth >= 2 or not waits:
            return f"{key} (waiting on its inputs)"
        return f"{key} (needs {_where(state, waits[0], depth + 1)})"
    if task.status is TaskStatus.PROCESSING and task.worker is not None:
        wname = state.workers[task.worker].name
        if task.blocked_on and depth < 2:
            inner = _where(state, sorted(task.blocked_on)[0], depth + 1)
            how = "seceded and " if task.seceded else ""
            return f"{key} ({how}running on {wname!r}, itself waiting on {inner})"
        if task.rejoin_pending:
            return f"{key} (seceded on {wname!r}, waiting for a slot to rejoin)"
        return f"{key} (queued on {wname!r} behind blocked slots)"
    return key


def describe(state: SchedulerState, victims: list[TaskRecord]) -> str:
    """A human report of the deadlock: who holds which slot, waiting on what."""
    nslots = sum(w.nthreads for w in state.workers.values())
    lines = [
        f"trioflow detected a deadlock: all {nslots} slot(s) on {len(state.workers)} worker(s) "
        "are held by tasks that wait, without seceding, on work that needs a slot to run.",
        "",
    ]
    for run in victims:
        wname = state.workers[run.worker].name if run.worker else "?"
        waits = sorted(run.blocked_on or ())
        shown = ", ".join(_where(state, k) for k in waits[:3])
        more = f" and {len(waits) - 3} more" if len(waits) > 3 else ""
        lines.append(f"  task {run.key} holds a slot on worker {wname!r} and waits on {shown}{more}")
    lines += ["", FIXES]
    return "\n".join(lines)
