"""Tasks no connected worker can run: found on each tick, failed after the timeout.

A ready task waits for a worker with room; that is normal. A ready task that *no
connected worker could ever take* (there is none at all, or none with the name it is
restricted to) waits for a worker to join, and if none does it would wait forever. The
shell's clock drives this module: it feeds ``TimePassed`` events (a few per timeout);
on each, every queued task is checked, and one that has been unrunnable since a tick at
least ``no_workers_timeout`` seconds ago fails with ``NoWorkersError`` naming what is
missing (its dependents fail with it). A task becomes runnable again, and its clock
restarts, as soon as a fitting worker joins.

``CHECKS`` is the list of reasons, each a function that says why no connected worker
can run a task (or None). The abstract-resources work adds "none with the resources it
needs" by appending one function; ``why`` (``explain.py``) shows the same reasons.

Closing (draining) workers count as absent: they take no new work.
"""

from __future__ import annotations

from collections.abc import Callable

from ... import protocol as p
from . import ops
from .records import TaskRecord, TaskStatus, WorkerRecord
from .state import SchedulerState

#: why no worker in ``workers`` (the connected, non-closing ones) can run ``task``;
#: None if one can
Check = Callable[[SchedulerState, TaskRecord, list[WorkerRecord]], "str | None"]


def no_worker_at_all(state: SchedulerState, task: TaskRecord,
                     workers: list[WorkerRecord]) -> str | None:
    if workers:
        return None
    if state.workers:
        return "every connected worker is closing"
    return "no worker is connected"


def none_with_its_name(state: SchedulerState, task: TaskRecord,
                       workers: list[WorkerRecord]) -> str | None:
    if not task.restrict or not workers or any(w.name in task.restrict for w in workers):
        return None
    names = ", ".join(repr(n) for n in task.restrict)
    connected = ", ".join(sorted({repr(w.name) for w in workers}))
    plural = "s" if len(task.restrict) > 1 else ""
    return (f"it is restricted to worker{plural} {names}, which {'are' if plural else 'is'} "
            f"not connected (connected: {connected})")


#: the reasons, in the order they are reported; append to add one
CHECKS: list[Check] = [no_worker_at_all, none_with_its_name]


def runnable_workers(state: SchedulerState) -> list[WorkerRecord]:
    return [w for w in state.workers.values() if not w.closing]


def why_unrunnable(state: SchedulerState, task: TaskRecord,
                   workers: list[WorkerRecord] | None = None) -> str | None:
    """Why no connected worker can run ``task`` (None if one can)."""
    if workers is None:
        workers = runnable_workers(state)
    for check in CHECKS:
        reason = check(state, task, workers)
        if reason is not None:
            return reason
    return None


def queued_tasks(state: SchedulerState) -> list[TaskRecord]:
    """Every task waiting for a worker: in the ready heap or set aside (restricted)."""
    seen: dict[str, TaskRecord] = {}
    for _, key in state.ready:
        task = state.tasks.get(key)
        if task is not None and task.status is TaskStatus.QUEUED:
            seen[key] = task
    for key, task in state.unplaceable.items():
        # set aside (``ops.set_aside``): WAITING outside the heap until room frees
        if state.tasks.get(key) is task and task.status is not TaskStatus.ERRED:
            seen[key] = task
    return list(seen.values())


def tick(state: SchedulerState, now: float) -> None:
    """The shell's clock says ``now``: fail tasks unrunnable for the timeout."""
    state.now = now
    timeout = state.no_workers_timeout
    starving = state.starving
    if timeout is None or timeout == float("inf"):
        return
    if not state.ready and not state.unplaceable:
        starving.clear()
        return
    workers = runnable_workers(state)
    still: dict[str, float] = {}
    doomed: list[tuple[TaskRecord, str]] = []
    for task in queued_tasks(state):
        reason = why_unrunnable(state, task, workers)
        if reason is None:
            continue
        since = starving.get(task.key, now)
        if now - since >= timeout:
            doomed.append((task, reason))
        else:
            still[task.key] = since
    state.starving = still
    for task, reason in doomed:
        if task.status is TaskStatus.ERRED:
            continue  # failed with a dependency that was failed just now
        text = (f"task {task.key!r} could not run for {timeout:g}s: {reason} "
                "(the scheduler's --no-workers-timeout)")
        ops.fail(state, task, p.KeyErred(task.key, "no-workers", b"",
                                         "trioflow.errors.NoWorkersError", text))
