"""A run's waits on coordination primitives: the bookkeeping that both the primitives'
handlers (:mod:`.coordination`) and the deadlock pass (:mod:`.deadlock`) need.

A wait made by a running task is recorded in the run's ``blocked_on`` as the wait's
``marker`` (never a task key), with the same slot accounting as a wait on keys
(``worker.blocked``), so placement and stealing see a slot held by a blocked run.
This module holds no handler: it sits below them, beside :mod:`.ops`.
"""

from __future__ import annotations

from ... import protocol as p
from . import ops
from .records import PrimitiveRecord, PrimitiveWait, TaskRecord
from .state import SchedulerState


def current_run(state: SchedulerState, peer_id: str, run_key: str, run_id: int
                ) -> TaskRecord | None:
    """The run ``(run_key, run_id)`` on ``peer_id`` if it is still the task's current run."""
    if not run_key:
        return None
    task = state.tasks.get(run_key)
    if task is None or task.worker != peer_id or task.run_id != run_id:
        return None
    return task


def wait_run(state: SchedulerState, wait: PrimitiveWait) -> TaskRecord | None:
    """The current run that made ``wait``, if a task made it and that run goes on."""
    req = wait.request
    return current_run(state, wait.peer_id, req.run_key, req.run_id)


def reply(state: SchedulerState, peer_id: str, request_id: int, status: str = "ok", *,
          values: list[bytes] | None = None, number: int = 0, text: str = "") -> None:
    """Answer request ``request_id`` of ``peer_id`` (request id 0 wants no answer)."""
    if request_id:
        state.send(peer_id, p.PrimitiveReply(request_id, status, values or [], number, text))


def block(state: SchedulerState, run: TaskRecord, wait: PrimitiveWait) -> None:
    """``run`` is blocked on ``wait``: the same accounting as a wait on keys.

    A run already blocked (an async task waiting on several things at once) stays as
    it is: the deadlock rule checks every pending primitive wait of every run anyway,
    and replacing a timed wait by this one could make a run that will wake up look
    stuck (a false report), while keeping it can only miss one.
    """
    if run.blocked_on is not None:
        return
    run.blocked_on = {wait.marker}
    run.blocked_timeout = wait.request.has_timeout
    run.blocked_any = False
    if not run.seceded and not run.blocked_timeout:
        assert run.worker is not None
        state.workers[run.worker].blocked += 1
    state.deadlock_dirty = True


def end_wait(state: SchedulerState, rec: PrimitiveRecord, wait: PrimitiveWait) -> None:
    """``wait`` is over (served, cancelled or failed): its run is no longer blocked on it."""
    rec.waits.remove(wait)
    run = wait_run(state, wait)
    if run is not None and run.blocked_on is not None and wait.marker in run.blocked_on:
        ops.unblock(state, run)
    state.deadlock_dirty = True


def find_wait(state: SchedulerState, marker: str) -> tuple[PrimitiveRecord, PrimitiveWait] | None:
    """The primitive and the wait a run's ``blocked_on`` marker stands for."""
    if not marker.startswith("\x00"):
        return None
    for rec in state.primitives.values():
        for wait in rec.waits:
            if wait.marker == marker:
                return rec, wait
    return None
