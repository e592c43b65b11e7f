"""Abstract resources on the scheduler: what a worker has, what its runs hold.

A task that asks for resources (``submit(..., resources={"GPU": 1})``) is placed only
on a worker with that much free (``fits``); its run takes them when assigned
(``take``) and gives them back when it secedes or ends (``give_back``). A seceded run
takes them again before it rejoins: it asks (a ``PrimitiveRequest`` of kind
"resources", served by :mod:`.coordination` oldest first, before any new task may take
them), and that wait is part of the wait-for graph like any other.

This module holds no handler and imports only the records: ``ops``, the handlers and
the deadlock pass all use it.
"""

from __future__ import annotations

from .records import TaskRecord, WorkerRecord

#: resource amounts are floats (MEM=16e9): compare with this much slack
EPSILON = 1e-9


def fits(worker: WorkerRecord, need: dict[str, float]) -> bool:
    """Whether ``worker`` has ``need`` free right now."""
    have, used = worker.resources, worker.used
    for name, amount in need.items():
        if used.get(name, 0.0) + amount > have.get(name, 0.0) + EPSILON:
            return False
    return True


def could_ever_fit(worker: WorkerRecord, need: dict[str, float]) -> bool:
    """Whether ``worker`` has ``need`` at all (once nothing else holds any)."""
    have = worker.resources
    return all(have.get(name, 0.0) + EPSILON >= amount for name, amount in need.items())


def take(worker: WorkerRecord, task: TaskRecord) -> None:
    """``task``'s run holds its resources on ``worker`` from now on."""
    if task.resources is None or task.holds_resources:
        return
    used = worker.used
    for name, amount in task.resources.items():
        used[name] = used.get(name, 0.0) + amount
    task.holds_resources = True


def give_back(worker: WorkerRecord, task: TaskRecord) -> None:
    """``task``'s run no longer holds its resources (it seceded, or its run ended)."""
    if task.resources is None or not task.holds_resources:
        return
    used = worker.used
    for name, amount in task.resources.items():
        left = used.get(name, 0.0) - amount
        if left > EPSILON:
            used[name] = left
        else:
            used.pop(name, None)
    task.holds_resources = False


def describe_need(need: dict[str, float]) -> str:
    """``GPU=1, MEM=1.6e+10``."""
    return ", ".join(f"{name}={amount:g}" for name, amount in need.items())


def why_unplaceable(workers: list[WorkerRecord], task: TaskRecord) -> str | None:
    """Why no connected worker can ever run ``task`` for its resources, or None if one
    could (for reports, ``why`` and the no-workers timeout: a worker with them may join)."""
    if not task.resources:
        return None
    if any(could_ever_fit(w, task.resources) for w in workers if not w.closing):
        return None
    missing = sorted(name for name, amount in task.resources.items()
                     if not any(w.resources.get(name, 0.0) + EPSILON >= amount
                                for w in workers))
    have = "; ".join(f"{w.name!r} has {describe_need(w.resources) or 'none'}" for w in workers)
    return (f"task {task.key} needs resources {describe_need(task.resources)}, and no "
            f"connected worker has {', '.join(missing) or 'all of them at once'}"
            f"{' (' + have + ')' if have else ''}")
