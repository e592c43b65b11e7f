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
* If that worker is lost, or the upload fails, the scatter is placed again and the
  owner uploads again (its session still holds the value while it holds the future);
  after ``MAX_SCATTER_ATTEMPTS`` the key fails with ``WorkerLost``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import protocol as p
from .records import TaskRecord, TaskStatus, WorkerRecord

if TYPE_CHECKING:
    from .scheduler import SchedulerState

#: placements of one scatter (first upload + re-uploads after failures) before it fails
MAX_SCATTER_ATTEMPTS = 3


def scatter_data(state: SchedulerState, peer_id: str, msg: p.ScatterData) -> None:
    from .tasks import _want, reached_memory

    existing = state.tasks.get(msg.key)
    if existing is not None:
        _want(state, peer_id, existing)
        return
    task = TaskRecord(key=msg.key, fn_id="", payload=b"", deps=(), priority=(0, 0, 0),
                      owner=peer_id, nbytes=msg.nbytes)
    state.tasks[msg.key] = task
    task.wanted_by.add(peer_id)
    state.peers[peer_id].wants.add(msg.key)
    if msg.blob:  # small: kept here, forwarded inline
        task.inline = msg.blob
        reached_memory(state, task, None)
    else:
        state.scatters.append(msg.key)  # placed by place_scatters, on this turn


def place_scatters(state: SchedulerState) -> None:
    """Give each large scatter waiting for a worker the one holding the least data."""
    from .tasks import reached_memory

    workers = [w for w in state.workers.values() if not w.closing]
    if not workers:
        return
    pending, state.scatters = state.scatters, []
    for key in pending:
        task = state.tasks.get(key)
        if task is None or task.status is not TaskStatus.WAITING or task.fn_id:
            continue  # released, or failed, before it could be placed
        candidates = [w for w in workers if w.name not in task.deaths] or workers
        owner = state.workers.get(task.owner)
        if owner is not None and owner in candidates:
            worker = owner  # scattered from a task: keep it where it is
        else:
            worker = min(candidates, key=lambda w: (len(w.has_what), w.id))
        task.who_has.add(worker.id)
        worker.has_what.add(key)
        state.send(worker.id, p.ExpectData([key]))
        state.send(task.owner, p.ScatterTo(key, worker.data_address))
        reached_memory(state, task, None)


def scatter_lost(state: SchedulerState, task: TaskRecord, worker_name: str, why: str) -> bool:
    """A scattered value's only copy is gone: place it again if the owner can re-upload.

    Returns False if it cannot (the owner left, or too many attempts); the caller fails
    the key then.
    """
    task.deaths.append(worker_name)
    if task.owner not in state.peers or len(task.deaths) >= MAX_SCATTER_ATTEMPTS:
        return False
    task.status = TaskStatus.WAITING
    for wanter in sorted(task.wanted_by):
        state.send(wanter, p.KeyRestarted(task.key))
    state.scatters.append(task.key)
    return True


def scatter_failed(state: SchedulerState, peer_id: str, msg: p.ScatterFailed) -> None:
    """An upload failed (said by the owner) or never came (said by the worker): drop the
    placement, then place it again (the owner uploads again) or fail the key."""
    from .tasks import fail, mark_lost, maybe_release

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
    mark_lost(state, task)
    if not scatter_lost(state, task, worker.name, msg.text):
        fail(state, task, p.KeyErred(
            task.key, "lost", b"", "trioflow.errors.WorkerLost",
            f"could not place scattered data {task.key!r}: {msg.text}"))
        maybe_release(state, task)


def get_data(state: SchedulerState, peer_id: str, msg: p.GetData) -> None:
    """Small values at once; for large ones, where to fetch them."""
    keys, blobs, missing, far_keys, far = [], [], [], [], []
    for key in msg.keys:
        task = state.tasks.get(key)
        if task is None or task.status is not TaskStatus.MEMORY:
            missing.append(key)
        elif task.inline is not None:
            keys.append(key)
            blobs.append(task.inline)
        elif task.who_has:
            far_keys.append(key)
            far.append(_holder(state, task).data_address)
        else:
            missing.append(key)
    state.send(peer_id, p.DataReply(msg.request_id, keys, blobs, missing, far_keys, far))


def _holder(state: SchedulerState, task: TaskRecord) -> WorkerRecord:
    """The worker to fetch ``task``'s value from: the one with the fewest runs."""
    return min((state.workers[w] for w in task.who_has),
               key=lambda w: (len(w.processing), w.id))
