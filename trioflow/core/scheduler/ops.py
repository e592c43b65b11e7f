"""The primitives that change a task's status, and keep the records consistent doing it.

Every handler module (:mod:`.lifecycle`, :mod:`.peers`, :mod:`.data`, :mod:`.waits`,
:mod:`.placement`) and pass (:mod:`.deadlock`) calls these; none of them calls another
handler module. This is where Rule 1 of :mod:`.state` lives: a status change is one of
the functions below (or ``SchedulerState.push_ready``). Rules they keep:

* a task is kept while some peer wants it or some unfinished task depends on it
  (``maybe_release``);
* a run's slot accounting is done in one place each way: ``start_run`` when it is
  given to a worker, ``end_run`` when it ended or came back, whatever happens to the
  task afterwards;
* a result is forwarded to every peer that wants the key, inline when small (the
  worker that computed it gets no message: its in-task client knew first);
* a failure propagates to dependents, which fail with the same error (``fail``).

Loops that send messages or may fail tasks iterate in a fixed order (insertion or
sorted); loops over sets only where every step commutes (``discard``).
"""

from __future__ import annotations

from ... import protocol as p
from . import resources
from .records import DATASETS, Dataset, TaskRecord, TaskStatus, WorkerRecord
from .state import SchedulerState

#: placements of one scatter (first upload + re-uploads after failures) before it fails
MAX_SCATTER_ATTEMPTS = 3


# ----------------------------------------------------------------------- wanting


def want(state: SchedulerState, peer_id: str, task: TaskRecord) -> None:
    """``peer_id`` holds a future for ``task`` now; tell it what it missed."""
    if peer_id in task.wanted_by:
        return
    task.wanted_by.add(peer_id)
    state.peers[peer_id].wants.add(task.key)
    if task.status is TaskStatus.MEMORY:
        state.send(peer_id, finished_message(state, task))
    elif task.status is TaskStatus.ERRED:
        assert task.error is not None  # (set by ``fail`` with the status)
        state.send(peer_id, error_for(task, task.error))


def finished_message(state: SchedulerState, task: TaskRecord) -> p.KeyFinished:
    """``task`` is done: its value inline when small, else where to fetch it from."""
    where = "" if task.inline is not None or not task.who_has else holder_of(state, task).data_address
    return p.KeyFinished(task.key, task.nbytes, task.inline, task.type_name, where)


def holder_of(state: SchedulerState, task: TaskRecord) -> WorkerRecord:
    """The worker to fetch ``task``'s value from: the one with the fewest runs."""
    return min((state.workers[w] for w in task.who_has),
               key=lambda w: (len(w.processing), w.id))


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
    unblock_waiters(state, task)
    for dep_key in task.deps:
        dep = state.tasks.get(dep_key)
        if dep is not None and task.key in dep.dependents:
            dep.dependents.discard(task.key)
            maybe_release(state, dep)


def drop_deps(state: SchedulerState, task: TaskRecord) -> None:
    """``task`` no longer needs its dependencies (it finished or failed)."""
    for dep_key in task.deps:
        dep = state.tasks.get(dep_key)
        if dep is not None:
            dep.dependents.discard(task.key)
            maybe_release(state, dep)


# ----------------------------------------------------------------------- runs


def start_run(state: SchedulerState, task: TaskRecord, worker: WorkerRecord) -> None:
    """Record ``task`` as a new run on ``worker`` (the caller sends the ComputeTask)."""
    task.status = TaskStatus.PROCESSING
    task.worker = worker.id
    task.run_id += 1
    worker.processing[task.key] = task
    worker.occupying += 1


def end_run(state: SchedulerState, worker: WorkerRecord, task: TaskRecord) -> None:
    """Undo the slot accounting of ``task``'s run on ``worker`` (it ended or was returned)."""
    del worker.processing[task.key]
    worker.steal_futile = False
    if task.holds_resources:
        resources.give_back(worker, task)
    if task.seceded:
        task.seceded = False
        del state.seceded[task.key]
    else:
        worker.occupying -= 1
        if task.blocked_on is not None and not task.blocked_timeout:
            worker.blocked -= 1
    if task.blocked_on is not None:
        for key in task.blocked_on:  # (discards commute: any order)
            waited = state.tasks.get(key)
            if waited is not None:
                waited.waiters.discard(task.key)
        task.blocked_on = None
    task.rejoin_pending = False
    task.worker = None
    state.deadlock_dirty = True


def wait_for_inputs(task: TaskRecord, missing: list[str]) -> None:
    """A ready ``task`` found inputs gone (lost since it became ready): it waits again."""
    task.status = TaskStatus.WAITING
    task.waiting_on.update(missing)


def set_aside(state: SchedulerState, task: TaskRecord) -> None:
    """``task``'s allowed workers are full or absent: keep it out of the heap until a
    worker joins or room frees (``placement.schedule`` puts it back)."""
    state.unplaceable[task.key] = task
    task.status = TaskStatus.WAITING


def requeue(state: SchedulerState, task: TaskRecord) -> None:
    """Run ``task`` again from the start (its run was lost): wait for the inputs that
    are not in memory, or fail with the first failed one (in ``deps`` order)."""
    task.status = TaskStatus.WAITING
    tasks = state.tasks
    # (the slot under the lazy ``waiting_on`` property, which mypy cannot see assigned)
    task._waiting_on = waiting_on = {
        d for d in task.deps if tasks[d].status is not TaskStatus.MEMORY}
    for d in task.deps:
        if d not in waiting_on:
            continue
        dep = tasks[d]
        dep.dependents.add(task.key)
        if dep.status is TaskStatus.ERRED:
            assert dep.error is not None
            fail(state, task, dep.error)
            return
    if not waiting_on:
        state.push_ready(task)


# ----------------------------------------------------------------------- results


def run_again(state: SchedulerState, task: TaskRecord) -> None:
    """A failed ``task`` is to run again (``Client.retry``): it waits for its inputs
    as if just submitted, and its holders are told to wait for it again. Its inputs
    exist (the caller checked); failed ones were set running again first."""
    task.status = TaskStatus.WAITING
    task.error = None
    if task._deaths:
        task._deaths.clear()
    for dep_key in task.deps:
        dep = state.tasks[dep_key]
        dep.dependents.add(task.key)
        if dep.status is not TaskStatus.MEMORY:
            task.waiting_on.add(dep_key)
    for wanter in sorted(task.wanted_by):
        state.send(wanter, p.KeyRestarted(task.key))
    if not task._waiting_on:
        state.push_ready(task)


def let_go_dataset(state: SchedulerState, dataset: Dataset) -> None:
    """A published dataset is gone (datasets.py): release the results no other dataset
    (and nobody else) holds."""
    holds = state.dataset_holds
    for key in dataset.keys:
        left = holds[key] - 1
        if left:
            holds[key] = left
            continue
        del holds[key]
        task = state.tasks.get(key)
        if task is not None:
            task.wanted_by.discard(DATASETS)
            maybe_release(state, task)


def forget_datasets(state: SchedulerState) -> None:
    """Every dataset is deleted (``Client.restart`` cancels the work they hold)."""
    datasets, state.datasets = state.datasets, {}
    for dataset in datasets.values():
        let_go_dataset(state, dataset)


def reached_memory(state: SchedulerState, task: TaskRecord, holder: str | None) -> None:
    """``task``'s value exists now: tell its wanters (inline when small), wake the runs
    waiting on it, make dependents ready.

    ``holder`` is the worker whose run computed it (None for a scatter). It is told
    nothing: its in-task client marked the key finished when the run ended there
    (``SessionKeys.finished_here``), before it sent the ``TaskFinished`` this answers.
    """
    task.status = TaskStatus.MEMORY
    message = None
    wanted_by = task.wanted_by
    for wanter in (wanted_by if len(wanted_by) < 2 else sorted(wanted_by)):
        if wanter != holder:
            message = message or finished_message(state, task)
            state.send(wanter, message)
    if task._waiters:
        unblock_waiters(state, task)
    for dep_key in sorted(task._dependents or ()):
        dependent = state.tasks[dep_key]
        dependent.waiting_on.discard(task.key)
        if not dependent.waiting_on and dependent.status is TaskStatus.WAITING:
            state.push_ready(dependent)


def mark_lost(state: SchedulerState, task: TaskRecord) -> None:
    """No copy of ``task``'s value is left anywhere: it and its dependents must wait."""
    task.status = TaskStatus.WAITING
    for dep_key in task.dependents:  # ready dependents must wait for it again (commutes)
        dependent = state.tasks[dep_key]
        if dependent.status in (TaskStatus.QUEUED, TaskStatus.WAITING):
            dependent.status = TaskStatus.WAITING
            dependent.waiting_on.add(task.key)


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


def drop_value(state: SchedulerState, task: TaskRecord) -> None:
    """Free every copy of a finished ``task``'s value (it is cancelled: nobody may use it)."""
    for wid in sorted(task._who_has or ()):
        worker = state.workers.get(wid)
        if worker is not None:
            worker.has_what.discard(task.key)
            state.free_key(wid, task.key)
    if task._who_has:
        task._who_has.clear()
    task.inline = None


# ----------------------------------------------------------------------- failures


def error_for(task: TaskRecord, error: p.KeyErred) -> p.KeyErred:
    """``error`` (a dependency's, maybe) re-addressed to ``task``'s key."""
    if error.key == task.key:
        return error
    return p.KeyErred(task.key, error.kind, error.error, error.type_name, error.text,
                      error.traceback, error.workers)


def value_dropped(state: SchedulerState, peer_id: str, msg: p.TaskErred) -> None:
    """A worker dropped a finished value it could not keep (``TaskErred.dropped``: its
    spill write failed). It no longer holds it; with no copy left (on another worker, or
    inline here) the key fails with the worker's error (``KeyErred`` kind "discarded"),
    and so do the tasks waiting on it. Never recomputed: the same write would fail."""
    task = state.tasks.get(msg.key)
    worker = state.workers.get(peer_id)
    if task is None or worker is None or task.status is not TaskStatus.MEMORY or (
            peer_id not in task.who_has):
        return  # (freed, or failed, meanwhile)
    task.who_has.discard(peer_id)
    worker.has_what.discard(task.key)
    if task.who_has or task.inline is not None:
        return  # a copy is left: nothing fails
    fail(state, task, p.KeyErred(task.key, "discarded", msg.error, msg.type_name, msg.text))


def fail(state: SchedulerState, task: TaskRecord, error: p.KeyErred) -> None:
    """``task`` failed with ``error``; so does everything that depends on it."""
    stack = [task]
    failed = []
    while stack:
        t = stack.pop()
        if t.status is TaskStatus.ERRED:
            continue
        t.status = TaskStatus.ERRED
        t.error = err = error_for(t, error)
        failed.append(t)
        t.waiting_on.clear()
        state.unplaceable.pop(t.key, None)
        if t.worker is not None:
            # its run goes on (a thread cannot be stopped); ask for it back if not started
            state.send(t.worker, p.StealTasks([t.key], [t.run_id]))
        for wanter in sorted(t.wanted_by):
            state.send(wanter, err)
        unblock_waiters(state, t)
        for dep_key in sorted(t.dependents):
            stack.append(state.tasks[dep_key])
        drop_deps(state, t)
    # failures release what nobody wants any more
    for t in failed:
        if state.tasks.get(t.key) is t:
            maybe_release(state, t)
    state.deadlock_dirty = True


# ----------------------------------------------------------------------- waits


def unblock_waiters(state: SchedulerState, task: TaskRecord) -> None:
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
    for key in run.blocked_on:  # (discards commute: any order)
        waited = state.tasks.get(key)
        if waited is not None:
            waited.waiters.discard(run.key)
    if not run.seceded and not run.blocked_timeout and run.worker is not None:
        state.workers[run.worker].blocked -= 1
    run.blocked_on = None
    run.blocked_timeout = False
    run.blocked_any = False
    state.deadlock_dirty = True
