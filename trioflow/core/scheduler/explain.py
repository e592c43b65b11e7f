"""Why a task has not finished: the chain of reasons, from the scheduler's records.

``explain(state, key)`` answers ``Client.why`` and ``trioflow why`` (a ``WhyRequest``).
It reads only what the scheduler already keeps (statuses, who runs what, the wait-for
graph, restrictions), never a payload. Each line is one reason; a reason that depends on
another task is followed by that task's own reasons, indented:

* running on worker X, or queued on X behind N runs that hold or wait for its slots;
* waiting for its inputs Y (and why Y waits);
* restricted to worker "ghost", which is not connected (``runnable.CHECKS``);
* no free slot, because the slots are held by tasks waiting on Z (and why Z waits);
* waiting inside the task, with a timeout, where without the timeout the cluster would
  be deadlocked (see ``timed_deadlock``; the shell also logs that once as a warning).

The text is bounded: ``MAX_DEPTH`` levels, ``MAX_LISTED`` tasks per list, each task
explained once.

``timed_deadlock`` is also the pass that notices such a wait when it forms
(``note_timed_deadlock``, run with the deadlock pass): it queues one warning per
distinct set of waits in ``state.warnings``, which the shell logs.
"""

from __future__ import annotations

from ... import protocol as p
from . import resources
from .records import TaskRecord, TaskStatus, WorkerRecord
from .runnable import runnable_workers, why_unrunnable
from .state import SchedulerState

MAX_DEPTH = 6
MAX_LISTED = 3


def why(state: SchedulerState, peer_id: str, msg: p.WhyRequest) -> None:
    """Handler of ``WhyRequest``."""
    state.send(peer_id, p.WhyReply(msg.request_id, msg.key, explain(state, msg.key)))


def explain(state: SchedulerState, key: str) -> str:
    """The reasons ``key`` has not finished (or that it has), one per line."""
    lines: list[str] = []
    _explain(state, key, 0, lines, set())
    return "\n".join(lines)


def _names(keys: list[str]) -> str:
    shown = ", ".join(repr(k) for k in keys[:MAX_LISTED])
    return shown + (f" and {len(keys) - MAX_LISTED} more" if len(keys) > MAX_LISTED else "")


def _explain(state: SchedulerState, key: str, depth: int, lines: list[str],
             seen: set[str]) -> None:
    pad = "  " * depth
    task = state.tasks.get(key)
    if task is None:
        lines.append(f"{pad}{key!r} is not known to the scheduler (never submitted, or "
                     "released: no future holds it)")
        return
    if key in seen:
        lines.append(f"{pad}{key!r}: see above")
        return
    seen.add(key)
    if depth >= MAX_DEPTH:
        lines.append(f"{pad}{key!r}: ...")
        return
    follow: list[str] = []
    status = task.status
    if status is TaskStatus.MEMORY:
        where = (", ".join(repr(state.workers[w].name) for w in sorted(task.who_has)
                           if w in state.workers) or "the scheduler")
        lines.append(f"{pad}{key!r} is finished: its result is held by {where}")
    elif status is TaskStatus.ERRED:
        err = task.error
        text = f"{err.type_name.rpartition('.')[2]}: {err.text}" if err else "an error"
        lines.append(f"{pad}{key!r} failed with {text.splitlines()[0] if text else text}")
    elif status is TaskStatus.PROCESSING and task.worker in state.workers:
        follow = _processing(state, task, state.workers[task.worker], pad, lines)
    elif status is TaskStatus.QUEUED or key in state.unplaceable:
        follow = _queued(state, task, pad, lines)
    elif status is TaskStatus.WAITING:
        missing = sorted(task.waiting_on)
        if missing:
            lines.append(f"{pad}{key!r} waits for its input{'s' if len(missing) > 1 else ''} "
                         f"{_names(missing)}")
            follow = missing[:MAX_LISTED]
        else:
            lines.append(f"{pad}{key!r} is waiting to be queued")
    else:
        lines.append(f"{pad}{key!r} is {status.value}")
    for k in follow:
        if k not in seen:  # (a cycle back to a task above says nothing new)
            _explain(state, k, depth + 1, lines, seen)


def _processing(state: SchedulerState, task: TaskRecord, worker: WorkerRecord, pad: str,
                lines: list[str]) -> list[str]:
    key, name = task.key, worker.name
    if task.blocked_on is not None:
        waited = sorted(task.blocked_on)
        how = "seceded (holds no slot) and " if task.seceded else ""
        line = f"{pad}{key!r} runs on worker {name!r}, {how}waits for {_names(waited)}"
        if task.blocked_timeout:
            line += " with a timeout"
            if not task.seceded and timed_deadlock(state):
                line += (": without the timeout this would be a deadlock (every slot is "
                         "held by a task that waits, and what they wait for needs a slot)")
        lines.append(line)
        return waited[:MAX_LISTED]
    if task.seceded:
        if task.rejoin_pending:
            lines.append(f"{pad}{key!r} runs on worker {name!r}, seceded, and waits for a "
                         "free slot to rejoin")
        else:
            lines.append(f"{pad}{key!r} runs on worker {name!r}, seceded (holds no slot)")
        return []
    ahead = []
    for other in worker.processing.values():
        if other is task:
            break
        if not other.seceded:
            ahead.append(other)
    if len(ahead) < worker.nthreads:
        lines.append(f"{pad}{key!r} is running on worker {name!r}")
        return []
    lines.append(f"{pad}{key!r} is queued on worker {name!r} behind {len(ahead)} task(s) "
                 f"({worker.nthreads} slot(s))")
    return _slot_holders(state, [worker], pad, lines)


def _queued(state: SchedulerState, task: TaskRecord, pad: str, lines: list[str]) -> list[str]:
    key = task.key
    workers = runnable_workers(state)
    reason = why_unrunnable(state, task, workers)
    if reason is not None:
        line = f"{pad}{key!r} cannot run: {reason}"
        timeout = state.no_workers_timeout
        if timeout is not None:
            since = state.starving.get(key, state.now)
            left = max(0.0, timeout - (state.now - since))
            line += f"; it fails with NoWorkersError in about {left:.0f}s"
        lines.append(line)
        return []
    if task.resources and not any(resources.fits(w, task.resources) for w in workers):
        holders = [t.key for w in workers for t in w.processing.values() if t.holds_resources]
        lines.append(f"{pad}{key!r} is queued for resources "
                     f"{resources.describe_need(task.resources)}, held now by "
                     f"{_names(holders) if holders else 'nobody'}")
        return []
    if task.restrict:
        workers = [w for w in workers if w.name in task.restrict]
        lines.append(f"{pad}{key!r} is queued for a free slot on worker(s) "
                     f"{_names([w.name for w in workers])} (it is restricted to them)")
    else:
        ahead = sum(1 for _, k in state.ready if k != key and k in state.tasks
                    and state.tasks[k].status is TaskStatus.QUEUED
                    and state.tasks[k].priority < task.priority)
        lines.append(f"{pad}{key!r} is queued at the scheduler for a free slot, behind "
                     f"{ahead} other task(s)")
    return _slot_holders(state, workers, pad, lines)


def _slot_holders(state: SchedulerState, workers: list[WorkerRecord], pad: str,
                  lines: list[str]) -> list[str]:
    """Say who holds the slots of ``workers``; the keys the holders wait on."""
    waiting: dict[str, list[str]] = {}
    running = 0
    nslots = sum(w.nthreads for w in workers)
    for w in workers:
        holders = [t for t in w.processing.values() if not t.seceded][:w.nthreads]
        for t in holders:
            if t.blocked_on is not None:
                waiting[t.key] = sorted(t.blocked_on)
            else:
                running += 1
    if waiting:
        shown = "; ".join(f"{k!r} waits for {_names(v)}"
                          for k, v in list(waiting.items())[:MAX_LISTED])
        more = f" (and {len(waiting) - MAX_LISTED} more)" if len(waiting) > MAX_LISTED else ""
        rest = f"; {running} by running tasks" if running else ""
        lines.append(f"{pad}  no slot is free: {len(waiting)} of the {nslots} slot(s) are "
                     f"held by tasks that wait: {shown}{more}{rest}")
        follow: list[str] = []
        for v in list(waiting.values())[:MAX_LISTED]:
            follow.extend(k for k in v[:MAX_LISTED] if k not in follow)
        return follow
    if running:
        lines.append(f"{pad}  the {nslots} slot(s) are held by running tasks")
    return []


def timed_deadlock(state: SchedulerState) -> list[TaskRecord]:
    """The slot-holding runs of a deadlock that only timeouts keep from being one: the
    deadlock rule (``deadlock.py``) with timed waits counted as blocked, and at least
    one of them timed. Empty if there is none."""
    if not state.workers or state.scatters:
        return []
    holders: list[TaskRecord] = []
    for w in state.workers.values():
        if w.steal_pending:
            return []
        waiting = [t for t in w.processing.values() if not t.seceded and t.blocked_on is not None]
        if len(waiting) < w.nthreads:
            return []
        holders.extend(waiting)
    for run in state.seceded.values():
        if not run.rejoin_pending and run.blocked_on is None:
            return []  # it may be computing
    if not any(t.blocked_timeout for t in holders):
        return []  # a real deadlock: deadlock.py reports it
    return holders


def note_timed_deadlock(state: SchedulerState) -> None:
    """Queue a warning (once per distinct set of waits) if a timed wait is all that
    keeps the cluster from a deadlock."""
    holders = timed_deadlock(state)
    if not holders:
        state.timed_deadlock_seen = None
        return
    signature = frozenset((t.key, t.run_id) for t in holders)
    if signature == state.timed_deadlock_seen:
        return
    state.timed_deadlock_seen = signature
    timed = [t.key for t in holders if t.blocked_timeout]
    state.warnings.append(
        f"tasks {_names(timed)} wait with a timeout, and every slot is held by a task that "
        "waits: without the timeouts this would be a deadlock. Their waits will time out; "
        "secede (or use worker_client()) before waiting so the work they wait for can run")
