"""Handlers for the task messages: register, submit, acquire, release, cancel, finish, fail.

Each handler reads one message and decides; the status changes themselves are the
primitives of :mod:`.ops` (Rule 1 of :mod:`.state`). Expected races are dropped, not
raised: a finish or failure for a run that is no longer current (stale run id, task
released or cancelled) only frees what it produced.
"""

from __future__ import annotations

from ... import protocol as p
from .. import resource_spec
from . import ops
from .records import TaskRecord, TaskStatus, WorkerRecord
from .state import SchedulerState


def register_function(state: SchedulerState, peer_id: str, msg: p.RegisterFunction) -> None:
    state.functions.setdefault(msg.fn_id, msg.blob)


def submit_task(state: SchedulerState, peer_id: str, msg: p.SubmitTask) -> None:
    peer = state.peers[peer_id]
    existing = state.tasks.get(msg.key)
    if existing is not None:
        # same key again (pure=True, or a retry of a lost message): share it
        ops.want(state, peer_id, existing)
        return
    if msg.fn_id not in state.functions:
        state.close(peer_id, p.CLOSE_PROTOCOL_ERROR, f"task {msg.key!r} uses an unregistered function")
        return
    need: dict[str, float] | None = None
    if msg.resource_names or msg.resource_amounts:  # (most tasks: none, nothing to check)
        need = resource_spec.from_lists(msg.resource_names, msg.resource_amounts)
        if need is None:
            state.close(peer_id, p.CLOSE_PROTOCOL_ERROR,
                        f"task {msg.key!r} has malformed resources")
            return
    task = _new_task(state, peer_id, msg, deps=tuple(dict.fromkeys(msg.deps)),
                     restrict=tuple(msg.workers))
    if need:
        task.resources = {name: amount for name, amount in need.items() if amount > 0} or None
    state.tasks[msg.key] = task
    task.wanted_by.add(peer_id)
    peer.wants.add(msg.key)
    failed_dep = None
    for dep_key in task.deps:
        dep = state.tasks.get(dep_key)
        if dep is None:
            failed_dep = dep_key
            break
        dep.dependents.add(task.key)
        if dep.status is TaskStatus.ERRED:
            failed_dep = dep_key
        elif dep.status is not TaskStatus.MEMORY:
            task.waiting_on.add(dep_key)
    if failed_dep is not None:
        dep = state.tasks.get(failed_dep)
        if dep is None:
            error = p.KeyErred(task.key, "lost", b"", "trioflow.errors.WorkerLost",
                               f"dependency {failed_dep!r} of {task.key!r} was released before "
                               "the task was submitted: keep its future alive")
        else:
            assert dep.error is not None  # (ERRED: ``ops.fail`` set it)
            error = dep.error
        ops.fail(state, task, error)
    elif not task._waiting_on:  # a peek: no set is allocated for a ready task
        state.push_ready(task)


def task_placed(state: SchedulerState, peer_id: str, msg: p.TaskPlaced) -> None:
    """A worker queued a child of one of its runs on itself: record it as assigned there.

    The record is what ``submit_task`` then ``placement.assign`` would have made (the
    worker's in-task client wants the key; the run is the worker's run 1), so stealing,
    retries, worker loss, status and the deadlock rule see no difference. Anything a
    correct worker cannot send closes it: a sender that is not a worker, a key that
    exists (keys of placed children are generated, so this is a bug or a hostile peer;
    sharing the key would feed another task's value to its waiters), an unregistered
    function, a run id other than 1.
    """
    worker = state.workers.get(peer_id)
    why = ""
    if worker is None:
        why = "only workers place tasks"
    elif msg.key in state.tasks:
        why = f"placed task {msg.key!r} already exists"
    elif msg.fn_id not in state.functions:
        why = f"placed task {msg.key!r} uses an unregistered function"
    elif msg.run_id != 1:
        why = f"placed task {msg.key!r} must be run 1, got {msg.run_id}"
    if worker is None or why:
        state.close(peer_id, p.CLOSE_PROTOCOL_ERROR, why)
        return
    task = _new_task(state, peer_id, msg, deps=(), restrict=())
    state.tasks[msg.key] = task
    task.wanted_by.add(peer_id)
    state.peers[peer_id].wants.add(msg.key)
    ops.start_run(state, task, worker)
    worker.fn_ids.add(msg.fn_id)
    worker.placed += 1


def _new_task(state: SchedulerState, peer_id: str, msg: p.SubmitTask | p.TaskPlaced, *,
              deps: tuple[str, ...], restrict: tuple[str, ...]) -> TaskRecord:
    """The record of a submitted or placed task (not yet in ``state.tasks``): one place
    for its priority order."""
    parent = state.tasks.get(msg.parent) if msg.parent else None
    depth = parent.depth + 1 if parent is not None else 0
    state.counter += 1
    return TaskRecord(
        key=msg.key,
        fn_id=msg.fn_id,
        payload=msg.payload,
        deps=deps,
        # higher user priority first, then deeper (children before roots), then FIFO
        priority=(-msg.priority, -depth, state.counter),
        owner=peer_id,
        parent=msg.parent,
        depth=depth,
        is_async=msg.is_async,
        retries=msg.retries,
        run_once=msg.run_once,
        restrict=restrict,
    )


def acquire_keys(state: SchedulerState, peer_id: str, msg: p.AcquireKeys) -> None:
    for key in msg.keys:
        task = state.tasks.get(key)
        if task is None:
            state.send(peer_id, p.KeyErred(key, "lost", b"", "trioflow.errors.WorkerLost",
                                           f"{key!r} was released before this future arrived"))
        else:
            ops.want(state, peer_id, task)


def release_keys(state: SchedulerState, peer_id: str, msg: p.ReleaseKeys) -> None:
    peer = state.peers[peer_id]
    for key in msg.keys:
        peer.wants.discard(key)
        task = state.tasks.get(key)
        if task is not None:
            task.wanted_by.discard(peer_id)
            ops.maybe_release(state, task)


def cancel_keys(state: SchedulerState, peer_id: str, msg: p.CancelKeys) -> None:
    """Cancel tasks, finished ones too (as dask): a finished task's value is dropped and
    it fails with CancelledError, and so does every task depending on it."""
    for key in msg.keys:
        task = state.tasks.get(key)
        if task is None or task.status is TaskStatus.ERRED:
            continue
        if task.status is TaskStatus.MEMORY:
            ops.drop_value(state, task)
        err = p.KeyErred(key, "cancelled", b"", "trioflow.errors.CancelledError", msg.reason)
        ops.fail(state, task, err)


def _current_run(
    state: SchedulerState, peer_id: str, key: str, run_id: int
) -> tuple[WorkerRecord, TaskRecord] | tuple[None, None]:
    """The (worker, task) of a run message, or (None, None) when stale."""
    worker = state.workers.get(peer_id)
    task = state.tasks.get(key)
    if worker is None or task is None or task.worker != peer_id or task.run_id != run_id:
        return None, None
    return worker, task


def task_finished(state: SchedulerState, peer_id: str, msg: p.TaskFinished) -> None:
    worker, task = _current_run(state, peer_id, msg.key, msg.run_id)
    if worker is None or task is None:
        # stale (cancelled and released, or a run we already gave up on): drop its result
        if peer_id in state.workers and msg.key not in state.tasks:
            state.send(peer_id, p.FreeKeys([msg.key]))
        return
    ops.end_run(state, worker, task)
    if task.status is not TaskStatus.PROCESSING:
        # cancelled while running: the result is not wanted
        state.send(peer_id, p.FreeKeys([msg.key]))
        ops.maybe_release(state, task)
        return
    old = state.durations.get(task.fn_id)
    state.durations[task.fn_id] = msg.duration if old is None else 0.8 * old + 0.2 * msg.duration
    state.runs.append((task.key, peer_id, msg.thread, msg.start, msg.duration, msg.nbytes,
                       task.parent, task.depth, True))
    state.runs_total += 1
    task.nbytes = msg.nbytes
    task.inline = msg.inline
    task.type_name = msg.type_name
    task.who_has.add(peer_id)
    worker.has_what.add(task.key)
    # the payload is kept: a lost result may have to be recomputed from it
    ops.reached_memory(state, task, peer_id)
    ops.drop_deps(state, task)
    ops.maybe_release(state, task)


def task_erred(state: SchedulerState, peer_id: str, msg: p.TaskErred) -> None:
    if msg.dropped:  # not a run: a held value its worker had to drop
        ops.value_dropped(state, peer_id, msg)
        return
    worker, task = _current_run(state, peer_id, msg.key, msg.run_id)
    if worker is None or task is None:
        return
    ops.end_run(state, worker, task)
    if task.status is not TaskStatus.PROCESSING:
        ops.maybe_release(state, task)
        return
    if msg.start:  # it ran (and raised): the task stream shows it
        state.runs.append((task.key, peer_id, msg.thread, msg.start, msg.duration, 0,
                           task.parent, task.depth, False))
        state.runs_total += 1
    if task.retries > 0:
        task.retries -= 1
        state.push_ready(task)
        return
    err = p.KeyErred(task.key, "", msg.error, msg.type_name, msg.text, msg.traceback)
    ops.fail(state, task, err)
