"""Handlers for a run's waits and its secession: the wait-for graph and slot accounting.

A run blocked in a wait (``WaitKeys``) holds its slot doing nothing, unless it waits
with a timeout or has seceded; ``worker.blocked`` counts the runs that do. A seceded
run holds no slot (``worker.occupying`` leaves it out) until it has rejoined. These
counts feed placement (blocked slots take no new work) and the deadlock rule.

Messages about a run that is no longer current (stale run id, task released, worker
gone) are dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ... import protocol as p
from .. import fold
from . import ops, resources
from .records import TERMINAL, TaskRecord
from .state import SchedulerState


def _run(state: SchedulerState, peer_id: str, key: str, run_id: int) -> TaskRecord | None:
    task = state.tasks.get(key)
    if task is None or task.worker != peer_id or task.run_id != run_id:
        return None  # stale: the run ended, was returned, or its worker left
    return task


def wait_keys(state: SchedulerState, peer_id: str, msg: p.WaitKeys) -> None:
    run = _run(state, peer_id, msg.run_key, msg.run_id)
    if run is None:
        return
    ops.unblock(state, run)  # a new wait replaces an old one
    pending: set[str] = set()
    for key in msg.keys:
        task = state.tasks.get(key)
        if task is not None and task.status not in TERMINAL and key != run.key:
            pending.add(key)
            task.waiters.add(run.key)
    if not pending:
        return
    run.blocked_on = pending
    run.blocked_timeout = msg.has_timeout
    run.blocked_any = msg.any_of
    if not run.seceded and not msg.has_timeout:
        state.workers[peer_id].blocked += 1
    state.deadlock_dirty = True


def wait_ended(state: SchedulerState, peer_id: str, msg: p.WaitEnded) -> None:
    run = _run(state, peer_id, msg.run_key, msg.run_id)
    if run is not None:
        ops.unblock(state, run)


def seceded(state: SchedulerState, peer_id: str, msg: p.Seceded) -> None:
    run = _run(state, peer_id, msg.key, msg.run_id)
    if run is None or run.seceded:
        return
    worker = state.workers[peer_id]
    run.seceded = True
    state.seceded[run.key] = run
    worker.occupying -= 1
    if run.holds_resources:  # a seceded task holds no resources (dask issue 6565)
        resources.give_back(worker, run)
    if run.blocked_on is not None and not run.blocked_timeout:
        worker.blocked -= 1
    state.deadlock_dirty = True


def rejoin_requested(state: SchedulerState, peer_id: str, msg: p.RejoinRequested) -> None:
    run = _run(state, peer_id, msg.key, msg.run_id)
    if run is not None and run.seceded:
        run.rejoin_pending = True
        state.deadlock_dirty = True


def rejoined(state: SchedulerState, peer_id: str, msg: p.Rejoined) -> None:
    run = _run(state, peer_id, msg.key, msg.run_id)
    if run is None or not run.seceded:
        return
    worker = state.workers[peer_id]
    run.seceded = False
    run.rejoin_pending = False
    del state.seceded[run.key]
    worker.occupying += 1
    # (it asked for its resources before rejoining; a peer that did not takes them now)
    if run.resources is not None and not run.holds_resources:
        resources.take(worker, run)
    if run.blocked_on is not None and not run.blocked_timeout:
        worker.blocked += 1
    state.deadlock_dirty = True


#: folded report kind (``core.fold``) -> its handler
_FOLDED: dict[int, Callable[[SchedulerState, str, Any], None]] = {
    fold.SECEDED: seceded, fold.REJOIN_REQUESTED: rejoin_requested, fold.REJOINED: rejoined}


def folded_reports(state: SchedulerState, peer_id: str, reports: list[int | str]) -> None:
    """Apply the slot reports folded into a message (its ``slot_reports``), in order, as
    if each had arrived on its own right after it. A malformed list is a protocol error
    of the peer: it is closed and nothing of the list is applied."""
    try:
        messages = fold.reports_of(reports)
    except ValueError as exc:
        state.close(peer_id, p.CLOSE_PROTOCOL_ERROR, str(exc))
        return
    for msg in messages:
        _FOLDED[fold.KINDS[type(msg)]](state, peer_id, msg)
