"""Task lifecycle on the scheduler: submit, finish, fail, cancel, release, worker loss.

Every status change of a TaskRecord except placement (``placement.assign``) happens in
this module. Rules:

* a task is kept while some peer wants it or some unfinished task depends on it;
* a result is forwarded to every peer that wants the key, inline when small (the
  worker that computed it gets no copy: it has the object already);
* when a run ends, its slot accounting is undone first (``end_run``), whatever
  happens to the task afterwards;
* a failure propagates to dependents, which fail with the same error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import protocol as p
from .data import scatter_lost
from .records import TERMINAL, TaskRecord, TaskStatus, WorkerRecord

if TYPE_CHECKING:
    from .scheduler import SchedulerState


def register_function(state: SchedulerState, peer_id: str, msg: p.RegisterFunction) -> None:
    state.functions.setdefault(msg.fn_id, msg.blob)


def submit_task(state: SchedulerState, peer_id: str, msg: p.SubmitTask) -> None:
    peer = state.peers[peer_id]
    existing = state.tasks.get(msg.key)
    if existing is not None:
        # same key again (pure=True, or a retry of a lost message): share it
        _want(state, peer_id, existing)
        return
    if msg.fn_id not in state.functions:
        state.close(peer_id, p.CLOSE_PROTOCOL_ERROR, f"task {msg.key!r} uses an unregistered function")
        return
    parent = state.tasks.get(msg.parent) if msg.parent else None
    depth = parent.depth + 1 if parent is not None else 0
    state.counter += 1
    task = TaskRecord(
        key=msg.key,
        fn_id=msg.fn_id,
        payload=msg.payload,
        deps=tuple(dict.fromkeys(msg.deps)),
        # higher user priority first, then deeper (children before roots), then FIFO
        priority=(-msg.priority, -depth, state.counter),
        owner=peer_id,
        parent=msg.parent,
        depth=depth,
        is_async=msg.is_async,
        retries=msg.retries,
        run_once=msg.run_once,
        restrict=tuple(msg.workers),
    )
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
            error = dep.error
        fail(state, task, error)
    elif not task._waiting_on:  # a peek: no set is allocated for a ready task
        state.push_ready(task)


def _want(state: SchedulerState, peer_id: str, task: TaskRecord) -> None:
    if peer_id in task.wanted_by:
        return
    task.wanted_by.add(peer_id)
    state.peers[peer_id].wants.add(task.key)
    # tell the newcomer what it missed
    if task.status is TaskStatus.MEMORY:
        state.send(peer_id, p.KeyFinished(task.key, task.nbytes, task.inline, task.type_name))
    elif task.status is TaskStatus.ERRED:
        state.send(peer_id, _error_for(task, task.error))


def acquire_keys(state: SchedulerState, peer_id: str, msg: p.AcquireKeys) -> None:
    for key in msg.keys:
        task = state.tasks.get(key)
        if task is None:
            state.send(peer_id, p.KeyErred(key, "lost", b"", "trioflow.errors.WorkerLost",
                                           f"{key!r} was released before this future arrived"))
        else:
            _want(state, peer_id, task)


def release_keys(state: SchedulerState, peer_id: str, msg: p.ReleaseKeys) -> None:
    peer = state.peers[peer_id]
    for key in msg.keys:
        peer.wants.discard(key)
        task = state.tasks.get(key)
        if task is not None:
            task.wanted_by.discard(peer_id)
            maybe_release(state, task)


def cancel_keys(state: SchedulerState, peer_id: str, msg: p.CancelKeys) -> None:
    for key in msg.keys:
        task = state.tasks.get(key)
        if task is None or task.status in TERMINAL:
            continue
        err = p.KeyErred(key, "cancelled", b"", "trioflow.errors.CancelledError", msg.reason)
        fail(state, task, err, retry=False)


def maybe_release(state: SchedulerState, task: TaskRecord) -> None:
    """Forget ``task`` if nobody wants it and no unfinished task depends on it.

    A PROCESSING task is left alone: its run finishes (threads cannot be stopped) and the
    finish handler calls this again.
    """
    if task.wanted_by or task._dependents or task.status is TaskStatus.PROCESSING:
        return
    if task.worker is not None:
        return  # a cancelled run still occupies its worker; released when it ends
    del state.tasks[task.key]
    state.unplaceable.pop(task.key, None)
    for wid in sorted(task._who_has or ()):
        worker = state.workers.get(wid)
        if worker is not None:
            worker.has_what.discard(task.key)
            state.free_key(wid, task.key)
    _unblock_waiters(state, task)
    for dep_key in task.deps:
        dep = state.tasks.get(dep_key)
        if dep is not None and task.key in dep.dependents:
            dep.dependents.discard(task.key)
            maybe_release(state, dep)


def end_run(state: SchedulerState, worker: WorkerRecord, task: TaskRecord) -> None:
    """Undo the slot accounting of ``task``'s run on ``worker`` (it ended or was returned)."""
    del worker.processing[task.key]
    worker.steal_futile = False
    if task.seceded:
        task.seceded = False
        del state.seceded[task.key]
    else:
        worker.occupying -= 1
        if task.blocked_on is not None and not task.blocked_timeout:
            worker.blocked -= 1
    if task.blocked_on is not None:
        for key in task.blocked_on:
            waited = state.tasks.get(key)
            if waited is not None:
                waited.waiters.discard(task.key)
        task.blocked_on = None
    task.rejoin_pending = False
    task.worker = None
    state.deadlock_dirty = True


def _current_run(state: SchedulerState, peer_id: str, key: str, run_id: int):
    """The (worker, task) of a run message, or (None, None) when stale."""
    worker = state.workers.get(peer_id)
    task = state.tasks.get(key)
    if worker is None or task is None or task.worker != peer_id or task.run_id != run_id:
        return None, None
    return worker, task


def task_finished(state: SchedulerState, peer_id: str, msg: p.TaskFinished) -> None:
    worker, task = _current_run(state, peer_id, msg.key, msg.run_id)
    if task is None:
        # stale (cancelled and released, or a run we already gave up on): drop its result
        if peer_id in state.workers and msg.key not in state.tasks:
            state.send(peer_id, p.FreeKeys([msg.key]))
        return
    end_run(state, worker, task)
    if task.status is not TaskStatus.PROCESSING:
        # cancelled while running: the result is not wanted
        state.send(peer_id, p.FreeKeys([msg.key]))
        maybe_release(state, task)
        return
    old = state.durations.get(task.fn_id)
    state.durations[task.fn_id] = msg.duration if old is None else 0.8 * old + 0.2 * msg.duration
    task.nbytes = msg.nbytes
    task.inline = msg.inline
    task.type_name = msg.type_name
    task.who_has.add(peer_id)
    worker.has_what.add(task.key)
    # the payload is kept: a lost result may have to be recomputed from it
    reached_memory(state, task, peer_id)
    _drop_deps(state, task)
    maybe_release(state, task)


def reached_memory(state: SchedulerState, task: TaskRecord, holder: str | None) -> None:
    """``task``'s value exists now: tell its wanters (inline when small, except to
    ``holder``, which has it), wake the runs waiting on it, make dependents ready."""
    task.status = TaskStatus.MEMORY
    for wanter in sorted(task.wanted_by):
        inline = None if wanter == holder else task.inline
        state.send(wanter, p.KeyFinished(task.key, task.nbytes, inline, task.type_name))
    _unblock_waiters(state, task)
    for dep_key in sorted(task._dependents or ()):
        dependent = state.tasks[dep_key]
        dependent.waiting_on.discard(task.key)
        if not dependent.waiting_on and dependent.status is TaskStatus.WAITING:
            state.push_ready(dependent)


def _drop_deps(state: SchedulerState, task: TaskRecord) -> None:
    """``task`` no longer needs its dependencies (it finished or failed)."""
    for dep_key in task.deps:
        dep = state.tasks.get(dep_key)
        if dep is not None:
            dep.dependents.discard(task.key)
            maybe_release(state, dep)


def _unblock_waiters(state: SchedulerState, task: TaskRecord) -> None:
    """Runs blocked on ``task`` stop waiting on it; those with nothing left are unblocked."""
    waiters = task._waiters
    if not waiters:
        return
    for run_key in sorted(waiters):
        run = state.tasks.get(run_key)
        if run is None or run.blocked_on is None:
            continue
        run.blocked_on.discard(task.key)
        if not run.blocked_on or run.blocked_any:
            unblock(state, run)
    waiters.clear()


def unblock(state: SchedulerState, run: TaskRecord) -> None:
    """Mark ``run`` as no longer waiting on anything."""
    if run.blocked_on is None:
        return
    for key in run.blocked_on:
        waited = state.tasks.get(key)
        if waited is not None:
            waited.waiters.discard(run.key)
    if not run.seceded and not run.blocked_timeout and run.worker is not None:
        state.workers[run.worker].blocked -= 1
    run.blocked_on = None
    run.blocked_timeout = False
    run.blocked_any = False
    state.deadlock_dirty = True


def task_erred(state: SchedulerState, peer_id: str, msg: p.TaskErred) -> None:
    worker, task = _current_run(state, peer_id, msg.key, msg.run_id)
    if task is None:
        return
    end_run(state, worker, task)
    if task.status is not TaskStatus.PROCESSING:
        maybe_release(state, task)
        return
    if task.retries > 0:
        task.retries -= 1
        state.push_ready(task)
        return
    err = p.KeyErred(task.key, "", msg.error, msg.type_name, msg.text, msg.traceback)
    fail(state, task, err)


def _error_for(task: TaskRecord, error) -> p.KeyErred:
    """``error`` (a dependency's, maybe) re-addressed to ``task``'s key."""
    if error.key == task.key:
        return error
    return p.KeyErred(task.key, error.kind, error.error, error.type_name, error.text,
                      error.traceback, error.workers)


def fail(state: SchedulerState, task: TaskRecord, error, *, retry: bool = False) -> None:
    """``task`` failed with ``error`` (a KeyErred); so does everything that depends on it."""
    stack = [task]
    failed = []
    while stack:
        t = stack.pop()
        if t.status is TaskStatus.ERRED:
            continue
        t.status = TaskStatus.ERRED
        t.error = _error_for(t, error)
        failed.append(t)
        t.waiting_on.clear()
        state.unplaceable.pop(t.key, None)
        if t.worker is not None:
            # its run goes on (a thread cannot be stopped); ask for it back if not started
            state.send(t.worker, p.StealTasks([t.key], [t.run_id]))
        for wanter in sorted(t.wanted_by):
            state.send(wanter, t.error)
        _unblock_waiters(state, t)
        for dep_key in sorted(t.dependents):
            stack.append(state.tasks[dep_key])
        _drop_deps(state, t)
    # failures release what nobody wants any more
    for t in failed:
        if state.tasks.get(t.key) is t:
            maybe_release(state, t)
    state.deadlock_dirty = True


def worker_lost(state: SchedulerState, worker: WorkerRecord) -> None:
    """``worker`` is gone: re-run its tasks elsewhere, recompute results only it held.

    Order matters: the results it held are marked lost *first*, so that the runs
    requeued next wait for them instead of being placed with an input nobody has.
    """
    lost = []
    for key in sorted(worker.has_what):
        task = state.tasks.get(key)
        if task is None:
            continue
        task.who_has.discard(worker.id)
        if task.who_has or task.inline is not None or task.status is not TaskStatus.MEMORY:
            continue
        mark_lost(state, task)
        lost.append(task)
    for task in list(worker.processing.values()):
        end_run(state, worker, task)
        if task.status is not TaskStatus.PROCESSING:
            maybe_release(state, task)
            continue
        task.deaths.append(worker.name)
        if task.run_once or len(task.deaths) >= state.allowed_failures:
            why = "it may run only once (run_once=True)" if task.run_once else ""
            err = p.KeyErred(task.key, "killed-worker", b"", "trioflow.errors.KilledWorker",
                             why, "", list(task.deaths))
            fail(state, task, err)
        else:
            _requeue(state, task)
    for task in lost:
        if state.tasks.get(task.key) is not task or task.status is not TaskStatus.WAITING:
            continue
        if not task.wanted_by and not task.dependents:
            maybe_release(state, task)
            continue
        if not task.fn_id and scatter_lost(state, task, worker.name, "its worker left"):
            continue  # the owner uploads it again
        missing = [d for d in task.deps if d not in state.tasks]
        if missing or not task.fn_id or task.run_once:
            why = ("it may run only once (run_once=True)" if task.run_once
                   else "it cannot be recomputed (its inputs were released)")
            err = p.KeyErred(task.key, "lost", b"", "trioflow.errors.WorkerLost",
                             f"the result of {task.key!r} was on worker {worker.name!r}, "
                             f"which left, and {why}")
            fail(state, task, err)
        else:
            for wanter in sorted(task.wanted_by):
                state.send(wanter, p.KeyRestarted(task.key))
            _requeue(state, task)


def mark_lost(state: SchedulerState, task: TaskRecord) -> None:
    """No copy of ``task``'s value is left anywhere: it and its dependents must wait."""
    task.status = TaskStatus.WAITING
    for dep_key in task.dependents:  # ready dependents must wait for it again
        dependent = state.tasks[dep_key]
        if dependent.status in (TaskStatus.QUEUED, TaskStatus.WAITING):
            dependent.status = TaskStatus.WAITING
            dependent.waiting_on.add(task.key)


def _requeue(state: SchedulerState, task: TaskRecord) -> None:
    task.status = TaskStatus.WAITING
    task.waiting_on = {
        d for d in task.deps if state.tasks[d].status is not TaskStatus.MEMORY
    }
    for d in task.waiting_on:
        dep = state.tasks[d]
        dep.dependents.add(task.key)
        if dep.status is TaskStatus.ERRED:
            fail(state, task, dep.error)
            return
    if not task.waiting_on:
        state.push_ready(task)
