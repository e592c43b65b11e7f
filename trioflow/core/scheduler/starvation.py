"""Tasks no connected worker can run: found on each tick, failed after the timeout.

A ready task waits for a worker with room; that is normal. A ready task that *no
connected worker could ever take* (there is none at all, or none with the name it is
restricted to) waits for a worker to join, and if none does it would wait forever. The
shell's clock drives this module: it feeds ``TimePassed`` events (a few per timeout);
on each, every queued task is checked, and one that has been unrunnable since a tick at
least ``no_workers_timeout`` seconds ago fails with ``NoWorkersError`` naming what is
missing (its dependents fail with it). A task becomes runnable again, and its clock
restarts, as soon as a fitting worker joins.

The reasons live in ``runnable.CHECKS``, each a function that says why no connected
worker can run a task (or None). The abstract-resources work adds "none with the
resources it needs" by appending one function; ``why`` (``explain.py``) shows the same
reasons.

Closing (draining) workers count as absent: they take no new work.
"""

from __future__ import annotations

from ... import protocol as p
from . import ops
from .records import TaskRecord, TaskStatus
from .runnable import runnable_workers, why_unrunnable
from .state import SchedulerState


def queued_tasks(state: SchedulerState, *, only_demanding: bool = False) -> list[TaskRecord]:
    """Every task waiting for a worker: in the ready heap or set aside (restricted).

    ``only_demanding``: leave out the heap's tasks that are neither restricted to
    workers nor need resources (while any worker runs, no check fails for them: a tick
    during a large ``map`` then costs a pass over the heap, not a check per task)."""
    seen: dict[str, TaskRecord] = {}
    tasks = state.tasks
    queued = TaskStatus.QUEUED
    for _, key in state.ready:
        task = tasks.get(key)
        if task is not None and task.status is queued and (
                not only_demanding or task.restrict or task.resources):
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
    # (with a worker running, ``runnable.CHECKS`` can only fail for a task restricted to
    # workers or needing resources)
    for task in queued_tasks(state, only_demanding=bool(workers)):
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
