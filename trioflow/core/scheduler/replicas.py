"""Copies of results on more workers (``Client.replicate``, ``scatter(broadcast=True)``).

A result normally lives on the worker that computed (or received) it. A
``ReplicateRequest`` asks for each key to be held by ``n`` workers: the scheduler picks
the workers lacking it that hold the least data, tells each to fetch it from a holder
over the bulk data path (``FetchReplicas``), and adds it to ``who_has`` when the worker
says it has it (``ReplicasFetched``); the client's request is answered once every copy
is made, failed, or its worker is gone. As in dask, a smaller ``n`` than the current
number of copies frees the extra ones (but never one a queued or running task on that
worker needs). Small results the scheduler keeps itself (inline) need
no copies: every task gets them with its message.
"""

from __future__ import annotations

import attrs

from ... import protocol as p
from .records import TaskRecord, TaskStatus, WorkerRecord
from .state import SchedulerState


@attrs.define(eq=False)
class Replication:
    """One client's ``ReplicateRequest`` still waiting for copies."""

    peer_id: str
    request_id: int
    keys: list[str]
    #: copies wanted per key (0: one on every worker of ``pool``)
    n: int
    #: worker ids the copies may go to (empty: every connected worker)
    pool: list[str]
    started: bool = False
    #: (worker id, key) copies asked for and not reported yet
    outstanding: set[tuple[str, str]] = attrs.Factory(set)
    failed: list[str] = attrs.Factory(list)


def replicate_request(state: SchedulerState, peer_id: str, msg: p.ReplicateRequest) -> None:
    """Handler of ``ReplicateRequest``: checked now, started by ``pump`` (after this
    turn's scatters are placed: a scatter sent just before is on a worker by then)."""
    pool: list[str] = []
    if msg.workers:
        by_name = {w.name: w for w in state.workers.values() if not w.closing}
        unknown = sorted(set(msg.workers) - set(by_name))
        if unknown:
            state.send(peer_id, p.ReplicateReply(
                msg.request_id, "value",
                f"replicate: no connected worker named {unknown}; the workers are "
                f"{sorted(by_name)}"))
            return
        pool = [by_name[n].id for n in dict.fromkeys(msg.workers)]
    state.replications.append(
        Replication(peer_id, msg.request_id, list(dict.fromkeys(msg.keys)), msg.n, pool))


def pump(state: SchedulerState) -> None:
    """Start the requests whose keys are all in memory (a pass of the machine)."""
    for job in [j for j in state.replications if not j.started]:
        _start(state, job)
    _settle(state, "", [], [])


def _start(state: SchedulerState, job: Replication) -> None:
    for key in job.keys:
        task = state.tasks.get(key)
        if task is not None and task.status is TaskStatus.WAITING and not task.fn_id:
            return  # a scatter not placed yet (no worker connected): next pass
        if task is None or task.status is not TaskStatus.MEMORY:
            job.started = True
            state.send(job.peer_id, p.ReplicateReply(
                job.request_id, "value",
                f"replicate: {key!r} has no result to copy (it failed, was cancelled "
                f"or released)"))
            state.replications.remove(job)
            return
    job.started = True
    live = [w for w in state.workers.values() if not w.closing]
    pool = [w for w in live if w.id in job.pool] if job.pool else live
    wanted = min(job.n, len(pool)) if job.n > 0 else len(pool)
    sends: dict[str, tuple[list[str], list[str]]] = {}
    for key in job.keys:
        task = state.tasks[key]
        if task.inline is not None or not task.who_has:
            continue  # kept by the scheduler: sent inline to whoever needs it
        holders = [state.workers[w] for w in sorted(task.who_has) if w in state.workers]
        missing = wanted - sum(1 for w in pool if w.id in task.who_has)
        lacking = sorted((w for w in pool if w.id not in task.who_has),
                         key=lambda w: (len(w.has_what), w.id))
        if missing < 0 and job.n > 0:
            _drop_extras(state, task, [w for w in pool if w.id in task.who_has], -missing)
        for i, worker in enumerate(lacking[:max(missing, 0)]):
            keys, addresses = sends.setdefault(worker.id, ([], []))
            keys.append(key)
            addresses.append(holders[i % len(holders)].data_address)
            job.outstanding.add((worker.id, key))
    for worker_id, (keys, addresses) in sends.items():
        state.send(worker_id, p.FetchReplicas(keys, addresses))


def _drop_extras(state: SchedulerState, task: TaskRecord, holding: list[WorkerRecord],
                 extra: int) -> None:
    """Free ``extra`` copies of ``task``'s result, as dask does for a smaller ``n``:
    from the workers holding the most data, never from one with a run needing it."""
    busy = {w.id for w in holding
            if any(task.key in t.deps for t in w.processing.values())}
    for worker in sorted((w for w in holding if w.id not in busy),
                         key=lambda w: (-len(w.has_what), w.id))[:extra]:
        if len(task.who_has) <= 1:
            break
        task.who_has.discard(worker.id)
        worker.has_what.discard(task.key)
        state.free_key(worker.id, task.key)


def replicas_fetched(state: SchedulerState, peer_id: str, msg: p.ReplicasFetched) -> None:
    """Handler of ``ReplicasFetched``: record the copies (or free the ones no longer
    wanted), and answer the requests they complete."""
    worker = state.workers.get(peer_id)
    for key in msg.keys:
        task = state.tasks.get(key)
        if worker is None:
            break
        if task is None or task.status is not TaskStatus.MEMORY or task.inline is not None:
            state.free_key(peer_id, key)  # released (or recomputed) meanwhile
            continue
        task.who_has.add(peer_id)
        worker.has_what.add(key)
    _settle(state, peer_id, msg.keys, msg.failed)


def peer_left(state: SchedulerState, peer_id: str) -> None:
    """A worker went (its copies fail) or a client went (its requests are dropped)."""
    state.replications = [j for j in state.replications if j.peer_id != peer_id]
    lost = [k for j in state.replications for (w, k) in j.outstanding if w == peer_id]
    _settle(state, peer_id, [], lost)


def _settle(state: SchedulerState, worker_id: str, done: list[str], failed: list[str]) -> None:
    bad = set(failed)
    remaining = []
    for job in state.replications:
        for key in (*done, *failed):
            if (worker_id, key) in job.outstanding:
                job.outstanding.discard((worker_id, key))
                if key in bad:
                    job.failed.append(key)
        if job.outstanding or not job.started:
            remaining.append(job)
        elif job.failed:
            state.send(job.peer_id, p.ReplicateReply(
                job.request_id, "lost",
                f"replicate: {len(job.failed)} copies could not be made (their worker "
                f"or the holder was lost): {sorted(set(job.failed))[:5]}"))
        else:
            state.send(job.peer_id, p.ReplicateReply(job.request_id, "", ""))
    state.replications = remaining
