"""Placement: which ready task goes to which worker, and taking queued work back.

Rules:

* Ready tasks leave the heap in priority order: higher user priority, then deeper
  (children of running tasks before new roots), then submission order.
* A worker takes a task while its non-seceded runs are fewer than its slots plus a
  prefetch allowance. Prefetch hides the scheduler round trip for short tasks: it is
  derived from the function's mean duration (none for tasks longer than the window).
* Among workers with room, a task goes to the one holding most bytes of its inputs,
  then the least occupied one.
* A worker whose every slot is held by a blocked run cannot start what it has queued:
  that work is stolen back (``StealTasks``) and placed elsewhere. While a worker is
  idle, the others give back half of their queues (the runs they would start last).
"""

from __future__ import annotations

import heapq

from ... import protocol as p
from . import ops, resources
from .records import TaskRecord, TaskStatus, WorkerRecord
from .state import SchedulerState

#: prefetch covers this much expected run time per slot
PREFETCH_WINDOW = 0.002
#: and never more than this many queued tasks per slot. The window is what bounds the
#: expected wait behind a prefetch queue; this cap only matters for tasks under 16 us,
#: where each frame of assignments (refilled from half-empty) then carries ~64 tasks
#: instead of ~8: a 10k no-op map cost the workers ~23 -> ~15 us and the scheduler
#: ~35 -> ~29 us of CPU per task (issue 12; 16 before)
PREFETCH_MAX = 128


def prefetch_per_slot(state: SchedulerState, fn_id: str) -> int:
    """How many tasks of ``fn_id`` a worker may hold queued per slot."""
    duration = state.durations.get(fn_id)
    if duration is None:
        return 1
    return min(PREFETCH_MAX, int(PREFETCH_WINDOW / max(duration, 1e-6)))


def schedule(state: SchedulerState) -> None:
    """Assign ready tasks to workers with room, best first, until either runs out."""
    ready = state.ready
    if state.unplaceable:
        # tasks set aside because their allowed workers were full: room may have freed
        for aside in state.unplaceable.values():
            state.push_ready(aside)
        state.unplaceable.clear()
    if ready and state.workers:
        workers = list(state.workers.values())
        extras: dict[str, int] = {}  # fn_id -> prefetch (durations do not change here)
        while ready:
            _, key = ready[0]
            task = state.tasks.get(key)
            if task is None or task.status is not TaskStatus.QUEUED:
                heapq.heappop(ready)  # stale entry
                continue
            if task.deps:
                missing = [d for d in task.deps if not _available(state.tasks.get(d))]
                if missing:  # an input was lost since the task became ready: wait for it
                    heapq.heappop(ready)
                    ops.wait_for_inputs(task, missing)
                    continue
            extra = extras.get(task.fn_id, -1)
            if extra < 0:
                extra = extras[task.fn_id] = prefetch_per_slot(state, task.fn_id)
            worker = _choose(state, task, workers, extra)
            if worker is None:
                if (task.restrict or task.resources) and _restricted_room(workers, extra):
                    heapq.heappop(ready)  # its workers are full or absent; others may fit
                    ops.set_aside(state, task)
                    continue
                break
            heapq.heappop(ready)
            assign(state, task, worker)
    _steal(state)


def _available(dep: TaskRecord | None) -> bool:
    """Whether a dependency's value can be had: held by a worker or inline here."""
    return (dep is not None and dep.status is TaskStatus.MEMORY
            and (bool(dep.who_has) or dep.inline is not None))


def _restricted_room(workers: list[WorkerRecord], extra: int) -> bool:
    return any(w.occupying < w.nthreads * (1 + extra) for w in workers)


def _choose(
    state: SchedulerState, task: TaskRecord, workers: list[WorkerRecord], extra: int
) -> WorkerRecord | None:
    best: WorkerRecord | None = None
    best_score: tuple[int, float] | None = None
    for w in workers:
        if w.closing:
            continue
        free = w.nthreads - w.blocked  # slots not held by blocked runs
        load = w.occupying - w.blocked
        cap = free * (1 + extra)
        if free <= 0 or load >= cap:
            w.filling = False
            continue
        if load >= free and not w.filling:
            if load > free + (cap - free) // 2:
                continue
            w.filling = True
        if task.restrict and w.name not in task.restrict:
            continue
        if task.resources is not None and (
                not resources.fits(w, task.resources) or ("resources", w.id) in state.primitives):
            continue  # (a run waiting there to take resources back goes first)
        local = 0
        for dep_key in task.deps:
            dep = state.tasks.get(dep_key)
            if dep is not None and w.id in dep.who_has:
                local += dep.nbytes
        score = (-local, w.occupying / w.nthreads)
        if best_score is None or score < best_score:
            best, best_score = w, score
    return best


def assign(state: SchedulerState, task: TaskRecord, worker: WorkerRecord) -> None:
    """Give ``task`` to ``worker`` as a new run."""
    ops.start_run(state, task, worker)
    if task.resources is not None:
        resources.take(worker, task)
    if task.fn_id not in worker.fn_ids:
        worker.fn_ids.add(task.fn_id)
        state.send(worker.id, p.Function(task.fn_id, state.functions[task.fn_id]))
    dep_inline: list[bytes | None] = []
    dep_holders: list[str] = []
    for dep_key in task.deps:
        dep = state.tasks[dep_key]
        if worker.id in dep.who_has:
            dep_inline.append(None)
            dep_holders.append("")
        elif dep.inline is not None:
            dep_inline.append(dep.inline)
            dep_holders.append("")
        else:
            holder = state.workers[min(dep.who_has)]
            dep_inline.append(None)
            dep_holders.append(holder.data_address)
    state.send(
        worker.id,
        p.ComputeTask(
            task.key,
            task.run_id,
            task.fn_id,
            task.payload,
            list(task.priority),
            list(task.deps),
            dep_inline,
            dep_holders,
            task.is_async,
            task.resources is not None,
        ),
    )


def _steal(state: SchedulerState) -> None:
    """Take queued runs back from workers that cannot start them soon."""
    idle = any(w.occupying < w.nthreads and w.blocked < w.nthreads for w in state.workers.values())
    for w in state.workers.values():
        if w.steal_pending:
            continue
        queued = w.occupying - w.nthreads  # at least this many runs have not started
        if w.blocked >= w.nthreads:
            # every slot is held by a blocked run: nothing else there can start
            victims = [t for t in w.processing.values() if not t.seceded and t.blocked_on is None]
        elif idle and queued > 0 and not state.ready and not w.steal_futile:
            # which of them started is unknown here (a run that submitted a child did);
            # ask for half of what is queued, plus one per slot that may be running, of
            # the runs the worker would start last (shallowest, newest): in a recursion
            # the thief gets the biggest subtrees, so steals grow with depth, not with
            # tasks. Asking for a started run is harmless: the worker keeps it.
            runs = [t for t in w.processing.values() if not t.seceded and t.blocked_on is None]
            started = {t.parent for t in w.processing.values()}
            candidates = [t for t in runs if t.key not in started] or runs
            victims = heapq.nlargest((queued + 1) // 2 + w.nthreads, candidates,
                                     key=_priority)
        else:
            continue
        if victims:
            w.steal_pending = True
            state.send(w.id, p.StealTasks([t.key for t in victims], [t.run_id for t in victims]))


def _priority(task: TaskRecord) -> tuple[int, int, int]:
    return task.priority


def tasks_returned(state: SchedulerState, peer_id: str, msg: p.TasksReturned) -> None:
    worker = state.workers.get(peer_id)
    if worker is None:
        return
    worker.steal_pending = False
    worker.steal_futile = not msg.keys
    state.deadlock_dirty = True  # (no steal in flight any more: rule 3 may hold now)
    for key, run_id in zip(msg.keys, msg.run_ids):
        task = worker.processing.get(key)
        if task is None or task.run_id != run_id:
            continue
        ops.end_run(state, worker, task)
        if task.status is TaskStatus.PROCESSING:
            state.push_ready(task)
        else:
            ops.maybe_release(state, task)
