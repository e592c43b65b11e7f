"""Where values live: scattered data and answers to "where is this result?".

The scheduler holds only small values (inline, at most ``inline_limit`` pickled bytes).
Large ones move over the bulk data path between clients and workers; the scheduler
only says where they are or where they should go:

* ``GetData`` is answered with the small values and, for each large one, the bulk data
  address of a worker holding it; the asker fetches it from there directly.
* A large scatter is placed like a tiny task: the scheduler picks a worker, tells it to
  expect the key (``ExpectData``) and tells the client where to upload it
  (``ScatterTo``). The key is in memory from then on: runs needing it are placed
  there and wait on that worker for the upload, not for a scheduler round trip.
* ``scatter(workers=[...])`` restricts that choice to the named workers; it waits for
  one of them to connect, as any large scatter waits for a first worker.
* If that worker is lost, or the upload fails, the scatter is placed again and the
  owner uploads again (its session still holds the value while it holds the future);
  after ``ops.MAX_SCATTER_ATTEMPTS`` the key fails with ``WorkerLost``.
"""

from __future__ import annotations

from ... import protocol as p
from . import ops
from .records import TaskRecord, TaskStatus
from .state import SchedulerState


def scatter_data(state: SchedulerState, peer_id: str, msg: p.ScatterData) -> None:
    existing = state.tasks.get(msg.key)
    if existing is not None:
        ops.want(state, peer_id, existing)
        return
    task = TaskRecord(key=msg.key, fn_id="", payload=b"", deps=(), priority=(0, 0, 0),
                      owner=peer_id, nbytes=msg.nbytes, restrict=tuple(msg.workers))
    state.tasks[msg.key] = task
    task.wanted_by.add(peer_id)
    state.peers[peer_id].wants.add(msg.key)
    if msg.blob:  # small: kept here, forwarded inline
        task.inline = msg.blob
        ops.reached_memory(state, task, None)
    else:
        # placed now, not at the end of the event: a status request in the same frame
        # (``who_has`` right after ``scatter``) then sees where it went. One that no
        # connected worker may take waits in ``scatters`` for the pass after each event.
        state.scatters.append(msg.key)
        place_scatters(state)


def place_scatters(state: SchedulerState) -> None:
    """Give each large scatter waiting for a worker the one holding the least data."""
    workers = [w for w in state.workers.values() if not w.closing]
    if not workers:
        return
    pending, state.scatters = state.scatters, []
    for key in pending:
        task = state.tasks.get(key)
        if task is None or task.status is not TaskStatus.WAITING or task.fn_id:
            continue  # released, or failed, before it could be placed
        allowed = [w for w in workers if w.name in task.restrict] if task.restrict else workers
        if not allowed:  # (scatter(workers=[...]): none of them is connected yet)
            state.scatters.append(key)
            continue
        candidates = [w for w in allowed if w.name not in task.deaths] or allowed
        owner = state.workers.get(task.owner)
        if owner is not None and owner in candidates:
            worker = owner  # scattered from a task: keep it where it is
        else:
            worker = min(candidates, key=lambda w: (len(w.has_what), w.id))
        task.who_has.add(worker.id)
        worker.has_what.add(key)
        state.send(worker.id, p.ExpectData([key]))
        state.send(task.owner, p.ScatterTo(key, worker.data_address))
        ops.reached_memory(state, task, None)


def scatter_failed(state: SchedulerState, peer_id: str, msg: p.ScatterFailed) -> None:
    """An upload failed (said by the owner) or never came (said by the worker): drop the
    placement, then place it again (the owner uploads again) or fail the key."""
    task = state.tasks.get(msg.key)
    if task is None or task.fn_id or task.status is not TaskStatus.MEMORY or (
            peer_id != task.owner and peer_id not in task.who_has):
        return  # (the owner's upload failed, or the worker gave up waiting for it)
    holders = [w for w in state.workers.values()
               if w.id in task.who_has and w.data_address == msg.address]
    if not holders:
        return  # already placed elsewhere since (stale report)
    worker = holders[0]
    task.who_has.discard(worker.id)
    worker.has_what.discard(task.key)
    state.send(worker.id, p.FreeKeys([task.key]))
    ops.mark_lost(state, task)
    if not ops.scatter_lost(state, task, worker.name, msg.text):
        ops.fail(state, task, p.KeyErred(
            task.key, "lost", b"", "trioflow.errors.WorkerLost",
            f"could not place scattered data {task.key!r}: {msg.text}"))
        ops.maybe_release(state, task)


def get_data(state: SchedulerState, peer_id: str, msg: p.GetData) -> None:
    """Small values at once; for large ones, where to fetch them."""
    keys: list[str] = []
    blobs: list[bytes] = []
    missing: list[str] = []
    far_keys: list[str] = []
    far: list[str] = []
    for key in msg.keys:
        task = state.tasks.get(key)
        if task is None or task.status is not TaskStatus.MEMORY:
            missing.append(key)
        elif task.inline is not None:
            keys.append(key)
            blobs.append(task.inline)
        elif task.who_has:
            far_keys.append(key)
            far.append(ops.holder_of(state, task).data_address)
        else:
            missing.append(key)
    state.send(peer_id, p.DataReply(msg.request_id, keys, blobs, missing, far_keys, far))
