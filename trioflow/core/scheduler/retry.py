"""``Client.retry``: run failed tasks again, with the failed tasks they depend on.

As in dask, retrying a task that failed because an input failed retries that input
too: the request's keys and every failed task they depend on, inputs first, go back
to waiting. What cannot run again is refused, with the reason: a cancelled task (its
cancel was the answer), a value its worker had to drop (the write would fail again), a
scattered value (there is nothing to run), a task whose input was released meanwhile,
and what depends on any of those. The holders of each key are told ``KeyRestarted``
before the reply, so a future reads "pending" once ``retry`` returns.
"""

from __future__ import annotations

from ... import protocol as p
from . import ops
from .records import TaskRecord, TaskStatus
from .state import SchedulerState

#: failure kinds that running the task again cannot undo
_FINAL = {"cancelled": "it was cancelled", "discarded": "its worker had to drop its value"}


def retry_request(state: SchedulerState, peer_id: str, msg: p.RetryRequest) -> None:
    """Handler of ``RetryRequest``."""
    order = _failed_closure(state, msg.keys)
    why: dict[str, str] = {}
    for task in order:  # inputs before dependents
        reason = _cannot_run(state, task, why)
        if reason:
            why[task.key] = reason
    retried = []
    for task in order:
        if task.key not in why:
            ops.run_again(state, task)
            retried.append(task.key)
    unknown = [k for k in dict.fromkeys(msg.keys) if k not in state.tasks]
    for key in unknown:
        why[key] = "no such task (its futures were released)"
    state.send(peer_id, p.RetryReply(msg.request_id, retried, list(why),
                                     "\n".join(f"{k!r}: {r}" for k, r in why.items())))
    if retried:
        state.deadlock_dirty = True


def _failed_closure(state: SchedulerState, keys: list[str]) -> list[TaskRecord]:
    """The failed tasks among ``keys`` and the failed tasks they depend on,
    transitively, inputs before their dependents."""
    order: list[TaskRecord] = []
    seen: set[str] = set()
    for key in keys:
        task = state.tasks.get(key)
        if task is None or task.key in seen or task.status is not TaskStatus.ERRED:
            continue
        # iterative depth-first walk, emitting a task after its failed inputs
        stack: list[tuple[TaskRecord, bool]] = [(task, False)]
        while stack:
            t, expanded = stack.pop()
            if expanded:
                order.append(t)
                continue
            if t.key in seen:
                continue
            seen.add(t.key)
            stack.append((t, True))
            for dep_key in reversed(t.deps):
                dep = state.tasks.get(dep_key)
                if dep is not None and dep.status is TaskStatus.ERRED and dep_key not in seen:
                    stack.append((dep, False))
    return order


def _cannot_run(state: SchedulerState, task: TaskRecord, refused: dict[str, str]) -> str:
    """Why ``task`` cannot run again ("" if it can); its failed inputs were judged
    already (``refused``)."""
    assert task.error is not None  # (ERRED: ``ops.fail`` set it)
    for dep_key in task.deps:  # (first: a failure inherited from an input is that one's)
        if dep_key not in state.tasks:
            return f"its input {dep_key!r} was released: submit it again"
        if dep_key in refused:
            return f"its input {dep_key!r} cannot run again"
    if task.error.kind in _FINAL:
        return _FINAL[task.error.kind]
    if not task.fn_id:
        return "it is a scattered value, not a task: scatter it again"
    return ""
