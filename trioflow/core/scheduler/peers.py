"""Membership: peers joining and leaving, a worker's loss, closing workers, status.

A peer that leaves releases every future it held (an in-task client's futures leave
with its worker). A worker that leaves takes its runs and the results only it held:
runs go elsewhere, lost results are recomputed, or their keys fail.
"""

from __future__ import annotations

from ... import protocol as p
from ...errors import InvalidTransition
from .. import resource_spec
from . import ops
from .records import PeerRecord, TaskRecord, TaskStatus, WorkerRecord
from .state import SchedulerState


def peer_joined(state: SchedulerState, peer_id: str, hello: p.Hello) -> None:
    if peer_id in state.peers:
        raise InvalidTransition(f"peer {peer_id!r} joined twice")
    state.peers[peer_id] = PeerRecord(peer_id, hello.role, hello.name or peer_id)
    if hello.role == "worker":
        state.workers[peer_id] = WorkerRecord(
            peer_id, hello.name or peer_id, max(1, hello.nthreads), hello.data_address,
            hello.restartable,
        )
        # (malformed resources were refused by the handshake check; none, if they get here)
        offered = resource_spec.from_lists(hello.resource_names, hello.resource_amounts)
        state.workers[peer_id].resources = offered or {}
        # a new worker may take tasks that could not be placed before
        for task in state.unplaceable.values():
            state.push_ready(task)
        state.unplaceable.clear()
        state.deadlock_dirty = True
        if state.status_waits:  # (wait_for_workers: answered as the worker joins)
            waits, state.status_waits = state.status_waits, []
            for waiter, request in waits:
                status(state, waiter, request)


def peer_left(state: SchedulerState, peer_id: str) -> None:
    peer = state.peers.pop(peer_id, None)
    if peer is None:
        return
    if state.status_waits:
        state.status_waits = [w for w in state.status_waits if w[0] != peer_id]
    worker = state.workers.pop(peer_id, None)
    if worker is not None:
        worker_lost(state, worker)
    # a vanished client (or a dead worker's in-task client) releases its futures
    for key in sorted(peer.wants):
        task = state.tasks.get(key)
        if task is not None:
            task.wanted_by.discard(peer_id)
            ops.maybe_release(state, task)
    state.deadlock_dirty = True


def worker_lost(state: SchedulerState, worker: WorkerRecord) -> None:
    """``worker`` is gone: re-run its tasks elsewhere, recompute results only it held.

    Order matters: the results it held are marked lost *first*, so that the runs
    requeued next wait for them instead of being placed with an input nobody has.
    """
    lost: list[TaskRecord] = []
    for key in sorted(worker.has_what):
        task = state.tasks.get(key)
        if task is None:
            continue
        task.who_has.discard(worker.id)
        if task.who_has or task.inline is not None or task.status is not TaskStatus.MEMORY:
            continue
        ops.mark_lost(state, task)
        lost.append(task)
    for task in list(worker.processing.values()):
        ops.end_run(state, worker, task)
        if task.status is not TaskStatus.PROCESSING:
            ops.maybe_release(state, task)
            continue
        task.deaths.append(worker.name)
        if task.run_once or len(task.deaths) >= state.allowed_failures:
            why = "it may run only once (run_once=True)" if task.run_once else ""
            err = p.KeyErred(task.key, "killed-worker", b"", "trioflow.errors.KilledWorker",
                             why, "", list(task.deaths))
            ops.fail(state, task, err)
        else:
            ops.requeue(state, task)
    for task in lost:
        if state.tasks.get(task.key) is not task or task.status is not TaskStatus.WAITING:
            continue
        if not task.wanted_by and not task.dependents:
            ops.maybe_release(state, task)
            continue
        if not task.fn_id and ops.scatter_lost(state, task, worker.name, "its worker left"):
            continue  # the owner uploads it again
        missing = [d for d in task.deps if d not in state.tasks]
        if missing or not task.fn_id or task.run_once:
            why = ("it may run only once (run_once=True)" if task.run_once
                   else "it cannot be recomputed (its inputs were released)")
            err = p.KeyErred(task.key, "lost", b"", "trioflow.errors.WorkerLost",
                             f"the result of {task.key!r} was on worker {worker.name!r}, "
                             f"which left, and {why}")
            ops.fail(state, task, err)
        else:
            for wanter in sorted(task.wanted_by):
                state.send(wanter, p.KeyRestarted(task.key))
            ops.requeue(state, task)


def ignore(state: SchedulerState, peer_id: str, msg: p.Heartbeat) -> None:
    """A heartbeat only proves the peer is alive; the shell noted that already."""


def worker_closing(state: SchedulerState, peer_id: str, msg: p.WorkerClosing) -> None:
    worker = state.workers.get(peer_id)
    if worker is not None:
        worker.closing = True
        state.deadlock_dirty = True


def status(state: SchedulerState, peer_id: str, msg: p.StatusRequest) -> None:
    """Answer a status request; one asking for more workers than are connected waits
    (``state.status_waits``) until a worker join makes it true, or its peer leaves."""
    if msg.min_workers > len(state.workers):
        state.status_waits.append((peer_id, msg))
        return
    workers = [
        {
            "name": w.name,
            "id": w.id,
            "nthreads": w.nthreads,
            "occupying": w.occupying,
            "blocked": w.blocked,
            "seceded": sum(1 for t in w.processing.values() if t.seceded),
            "processing": len(w.processing),
            "memory": len(w.has_what),
            "bytes": sum(state.tasks[k].nbytes for k in w.has_what if k in state.tasks),
            "data_address": w.data_address,
            "resources": dict(w.resources),
            "resources_used": dict(w.used),
            "placed": w.placed,  # children its tasks placed on it (``TaskPlaced``), so far
        }
        for w in state.workers.values()
    ]
    if msg.with_keys:
        for info, w in zip(workers, state.workers.values()):
            info["keys"] = sorted(w.has_what)
            info["processing_keys"] = sorted(w.processing)
    state.send(peer_id, p.StatusReply(msg.request_id, workers, state.statistics()))
