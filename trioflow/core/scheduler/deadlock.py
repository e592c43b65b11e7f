"""Deadlock detection: the rule, checked once per event, and the report.

The scheduler sees every wait a task makes (in-task clients talk through their worker's
connection), so it holds the wait-for graph: run -> keys it is blocked on (kept by the
handlers of :mod:`.waits`).

Deadlock rule (zero false positives): the cluster is deadlocked when

1. every slot of every worker is held by a run blocked on keys, without a timeout
   (``worker.blocked >= worker.nthreads`` for all workers, and there is a worker), or
   is free but useless (1'): its worker runs nothing, no pending task can start there
   (each needs abstract resources that blocked runs hold, or other workers), and no
   task waits on a Queue, Event or Variable (a task submitted later could use the slot
   to put or set it; it could never end a wait on keys, a lease or resources), and
2. no seceded run could still be computing: each is blocked without a timeout, or
   waiting to rejoin, and
3. no StealTasks answer is in flight, and
4. no large scatter is waiting to be placed (its upload needs no slot).

5. every wait of a running task on a coordination primitive (Lock, Semaphore, Queue,
   Event, Variable; see :mod:`.coordination`) is without a timeout and can only be ended
   by a task: every lease it waits behind is held by a current run, and no client holds
   a live object of the Queue, Event or Variable it waits on (a client could put or
   set; runs cannot, since none computes).

Then nothing computes, nothing can start (every task needs a slot), and the only thing
that could unblock a run is a key finishing, which needs a slot, or a primitive
changing, which needs a running task. The scheduler's view of
"blocked" is exact because a run is unblocked only by a key it awaits finishing: either
the scheduler sends the result (and updates its records as it sends), or the key's run
ends on the waiter's own worker (``finished_here``), whose ``TaskFinished`` precedes in
that worker's stream everything the woken run does next. A child placed on its
parent's worker (``TaskPlaced``) is likewise known before anything it sends, so the
records of a worker, after a prefix of its stream, are its ledger at that point (see
docs/design/local-placement.md). A timeout or a new worker would change the picture,
which is why timed waits never count as blocked.

When the rule holds, every slot-holding blocked run gets ``WaitFailed(kind="deadlock")``
(or, for a wait on a primitive, a ``PrimitiveReply`` with status "deadlock") with a
report naming each waiter, its slot, and what it waits on (for a primitive: its
holders and its waiters); its wait raises
``DeadlockError``, the slot frees and the rest of the program can go on.
"""

from __future__ import annotations

from ... import protocol as p
from . import ops, resources, waitlines
from .records import PrimitiveRecord, PrimitiveWait, TaskRecord, TaskStatus, WorkerRecord
from .state import SchedulerState

FIXES = (
    "Fix it in one of these ways:\n"
    "  * call trioflow.secede() before waiting and trioflow.rejoin() after it;\n"
    "  * wait inside `with trioflow.worker_client() as client:` (it secedes for you);\n"
    "  * make the task `async def` and `await` the futures (waiting holds no slot);\n"
    "  * or start the cluster with auto_secede=True."
)

PRIMITIVE_FIXES = (
    "With coordination primitives:\n"
    "  * release a Lock or Semaphore before waiting on tasks that acquire it;\n"
    "  * wait on a Queue, Event or Variable inside worker_client() (or after secede()),\n"
    "    so that the tasks that put or set it can get a slot;\n"
    "  * or give the wait a timeout."
)


def is_deadlocked(state: SchedulerState) -> bool:
    """Whether the rule in the module docstring holds right now."""
    if not state.workers or state.scatters:
        return False  # (a scatter waiting for a worker needs an upload, not a slot)
    idle: list[WorkerRecord] = []
    blocked = 0
    for w in state.workers.values():
        if w.steal_pending:
            return False
        blocked += w.blocked
        if w.blocked < w.nthreads:
            if w.occupying > w.blocked or w.closing:
                return False  # a run there computes, or will start
            idle.append(w)
    if not blocked or (idle and not _idle_slots_useless(state, idle)):
        return False
    for run in state.seceded.values():
        if run.rejoin_pending:
            continue
        if run.blocked_on is None or run.blocked_timeout:
            return False  # it may be computing, or will wake up
    return _primitive_waits_stuck(state)


def _idle_slots_useless(state: SchedulerState, idle: list[WorkerRecord]) -> bool:
    """Rule 1': free slots do not help when no pending task can start in them: every
    one needs resources that the idle workers' runs hold (or restricts itself to other
    workers). A task that needs resources no connected worker has at all waits for a
    worker to join (the no-workers timeout), so it never makes this a deadlock.

    A seceded run waiting to rejoin on an idle worker takes a free slot there first.
    A task submitted later could use a free slot, and could put to a Queue or set an
    Event or Variable (though never end a wait on keys, leases or resources): so while a
    task waits on one of those, free slots are never useless.
    """
    for rec in state.primitives.values():
        if rec.kind in ("queue", "event", "variable") and any(
                waitlines.wait_run(state, w) is not None for w in rec.waits):
            return False
    idle_by_id = {w.id: w for w in idle}
    for run in state.seceded.values():
        w = idle_by_id.get(run.worker) if run.rejoin_pending and run.worker else None
        if w is not None:
            if run.resources is None or run.holds_resources or resources.fits(w, run.resources):
                return False  # its worker grants it the free slot (rejoiners go first)
    tasks = state.tasks
    for _, key in state.ready:  # (after ``schedule``, only stale entries are left here)
        task = tasks.get(key)
        if task is not None and task.status is TaskStatus.QUEUED:
            return False
    workers = list(state.workers.values())
    for task in state.unplaceable.values():
        if task.restrict and not any(w.name in task.restrict for w in workers):
            return False  # waits for a worker of that name to join
        if resources.why_unplaceable(workers, task) is not None:
            return False  # waits for a worker with those resources to join
        for w in idle:
            if task.restrict and w.name not in task.restrict:
                continue
            if task.resources is None or resources.fits(w, task.resources):
                return False  # it can start there (the next placement pass)
    return True


def _primitive_waits_stuck(state: SchedulerState) -> bool:
    """Rule 5: no wait of a running task on a primitive can end without a task running.

    Every current run's waits are checked, not only those its ``blocked_on`` shows: an
    async task may wait on several things at once, and one that can end (a timeout, a
    client's put) means the task may go on.
    """
    for rec in state.primitives.values():
        for wait in rec.waits:
            if waitlines.wait_run(state, wait) is None:
                continue  # a client's wait, or a stale one: neither holds a slot
            if wait.request.has_timeout or not only_tasks_end(state, rec, wait):
                return False
    return True


def only_tasks_end(state: SchedulerState, rec: PrimitiveRecord, wait: PrimitiveWait) -> bool:
    """Whether only a running task could end ``wait`` (so, if none runs, nothing can)."""
    if rec.kind == "resources":
        return True  # only slot-holding runs hold resources, and none of them runs
    if wait.request.op == "acquire":
        if len(rec.leases) < rec.limit:
            return False  # (served at the next change: not stuck)
        return all(
            waitlines.current_run(state, lease.peer_id, lease.run_key, lease.run_id) is not None
            for lease in rec.leases)
    return not rec.handles  # a client holding the object may still put or set it


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
    told: dict[str, tuple[list[str], list[int]]] = {}  # worker -> its victims, in one message
    for run in victims:
        worker_id = run.worker
        assert worker_id is not None
        marker = next(iter(run.blocked_on or ()), "")
        found = waitlines.find_wait(state, marker)
        if found is not None:
            rec, wait = found
            waitlines.end_wait(state, rec, wait)
            waitlines.reply(state, wait.peer_id, wait.request.request_id, "deadlock",
                            text=report)
        else:
            keys, run_ids = told.setdefault(worker_id, ([], []))
            keys.append(run.key)
            run_ids.append(run.run_id)
            ops.unblock(state, run)
    for worker_id, (keys, run_ids) in told.items():
        state.send(worker_id, p.WaitFailed(keys, run_ids, "deadlock", report))


def _where(state: SchedulerState, key: str, depth: int = 0) -> str:
    found = waitlines.find_wait(state, key)
    if found is not None:
        rec, wait = found
        return _primitive(state, rec, wait, depth)
    task = state.tasks.get(key)
    if task is None:
        return f"{key} (released)"
    if task.status is TaskStatus.QUEUED:
        return f"{key} (queued: no free slot)"
    if key in state.unplaceable and task.resources:
        holders = [t.key for w in state.workers.values() for t in w.processing.values()
                   if t.holds_resources]
        return (f"{key} (needs resources {resources.describe_need(task.resources)}, "
                f"held by {', '.join(holders) or 'nobody'})")
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
        if task.blocked_on:  # (deeper than the report follows: a cycle, usually)
            return f"{key} ({'seceded and ' if task.seceded else ''}running on {wname!r}, waiting)"
        if task.rejoin_pending:
            return f"{key} (seceded on {wname!r}, waiting for a slot to rejoin)"
        return f"{key} (queued on {wname!r} behind blocked slots)"
    return key


def _primitive(state: SchedulerState, rec: PrimitiveRecord, wait: PrimitiveWait,
               depth: int) -> str:
    """What a wait on ``rec`` waits for: a lease (held by whom) or a put/set."""
    if rec.kind == "resources":
        worker = state.workers.get(rec.name)
        holders = [t.key for t in worker.processing.values() if t.holds_resources] if worker else []
        return (f"its resources back, to rejoin (held by {', '.join(holders) or 'nobody'}"
                f" on {worker.name if worker else rec.name!r})")
    if wait.request.op == "acquire":
        holders = []
        for lease in rec.leases:
            holder = (_where(state, lease.run_key, depth + 1) if depth < 2
                      else lease.run_key)
            holders.append(f"task {holder}")
        return f"{rec.title} (to acquire; held by {', '.join(holders) or 'nobody'})"
    what = {"get": "an item to get" if rec.kind == "queue" else "a value to be set",
            "put": "room to put", "wait": "it to be set"}.get(wait.request.op, wait.request.op)
    return f"{rec.title} (for {what}; no client holds it, only tasks could)"


def _primitives_involved(state: SchedulerState) -> list[str]:
    """One line per primitive a running task waits on: its holders and its waiters."""
    lines = []
    for rec in state.primitives.values():
        waiters = [w for w in rec.waits if waitlines.wait_run(state, w) is not None]
        if not waiters or rec.kind == "resources":
            continue
        held = ", ".join(f"task {lease.run_key or '(a client)'}" for lease in rec.leases)
        waiting = ", ".join(f"task {w.request.run_key} ({w.request.op})" for w in waiters)
        if rec.kind in ("lock", "semaphore"):
            lines.append(f"  {rec.title}: {len(rec.leases)} of {rec.limit} lease(s), held by "
                         f"{held or 'nobody'}; waiting: {waiting}")
        elif rec.kind == "queue":
            lines.append(f"  {rec.title}: {len(rec.items)} item(s); waiting: {waiting}")
        else:
            lines.append(f"  {rec.title}: waiting: {waiting}")
    return lines


def describe(state: SchedulerState, victims: list[TaskRecord]) -> str:
    """A human report of the deadlock: who holds which slot, waiting on what."""
    nslots = sum(w.nthreads for w in state.workers.values())
    held = sum(min(w.blocked, w.nthreads) for w in state.workers.values())
    if held >= nslots:
        head = (f"trioflow detected a deadlock: all {nslots} slot(s) on {len(state.workers)} "
                "worker(s) are held by tasks that wait, without seceding, on work that needs "
                "a slot to run.")
    else:  # rule 1': the free slots cannot run anything that would help
        head = (f"trioflow detected a deadlock: {held} of {nslots} slot(s) on "
                f"{len(state.workers)} worker(s) are held by tasks that wait, and the free "
                "ones can run nothing that would end a wait (what is pending needs "
                "resources or workers that are taken).")
    lines = [head, ""]
    for run in victims:
        wname = state.workers[run.worker].name if run.worker else "?"
        waits = sorted(run.blocked_on or ())
        shown = ", ".join(_where(state, k) for k in waits[:3])
        more = f" and {len(waits) - 3} more" if len(waits) > 3 else ""
        lines.append(f"  task {run.key} holds a slot on worker {wname!r} and waits on {shown}{more}")
    for run in state.seceded.values():  # seceded runs stuck on a primitive or resources
        marker = next(iter(run.blocked_on or ()), "")
        if marker.startswith("\x00") and not run.blocked_timeout:
            lines.append(f"  task {run.key} has seceded and waits on {_where(state, marker)}")
    involved = _primitives_involved(state)
    if involved:
        lines += ["", "Coordination primitives in the cycle:", *involved]
    lines += ["", FIXES]
    if involved:
        lines += [PRIMITIVE_FIXES]
    return "\n".join(lines)
