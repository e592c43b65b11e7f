"""Whether any connected worker could run a task, and if not, why: the queries the
no-workers timeout (``starvation``) and ``why`` (``explain``) share. Read-only: below
the handlers, beside ``ops``.

``CHECKS`` lists the reasons in the order they are reported; each says why no worker in
``workers`` (the connected, non-closing ones) can run ``task``, or None if one can. A
new kind of requirement (abstract resources) is one more function appended here.
"""

from __future__ import annotations

from collections.abc import Callable

from . import resources
from .records import TaskRecord, WorkerRecord
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


def none_with_its_resources(state: SchedulerState, task: TaskRecord,
                            workers: list[WorkerRecord]) -> str | None:
    """A task that asks for abstract resources no connected worker (of its name, if
    restricted) offers in that amount, even once nothing else holds them."""
    if not task.resources or not workers:
        return None
    candidates = [w for w in workers if not task.restrict or w.name in task.restrict]
    if not candidates or any(resources.could_ever_fit(w, task.resources) for w in candidates):
        return None
    have = ", ".join(f"{w.name!r} has {resources.describe_need(w.resources) or 'none'}"
                     for w in candidates)
    return (f"it needs resources {resources.describe_need(task.resources)}, which no "
            f"connected worker offers ({have})")


#: the reasons, in the order they are reported; append to add one. While any worker
#: runs, each fails only for a task restricted to workers or needing resources, and
#: ``starvation.tick`` checks only those: a check that can fail for other tasks must
#: change that shortcut too.
CHECKS: list[Check] = [no_worker_at_all, none_with_its_name, none_with_its_resources]


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
