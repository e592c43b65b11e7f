"""The scheduler's state machine: events in, commands out. No I/O, no clock, no pickle.

Theory of operation:

* ``SchedulerState.handle(event)`` applies one event and returns the commands it caused.
  A frame of messages is one event, and scheduling/deadlock checks run once per event,
  not once per message: that is where batching pays on the scheduler.
* Handlers are module-level functions grouped by concern: task lifecycle in
  :mod:`.tasks`, placement and stealing in :mod:`.placement`, deadlock detection in
  :mod:`.deadlock`. This module owns the records, peer membership and dispatch.
* Expected races (stale run ids, unknown keys, a finish for a cancelled task) are not
  errors: they are dropped. Only broken invariants raise ``InvalidTransition``.
* Iteration order is always insertion order (dicts) or sorted: the core is deterministic,
  which the hypothesis state machines rely on.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from .. import protocol as p
from ..errors import InvalidTransition
from . import data, deadlock, placement, tasks
from .events import Close, MessagesReceived, PeerJoined, PeerLeft, Send
from .records import PeerRecord, TaskRecord, TaskStatus, WorkerRecord

#: results up to this many pickled bytes travel inside messages and are kept here too
DEFAULT_INLINE_LIMIT = 64 * 1024
#: a task that was running on this many dying workers fails with KilledWorker
DEFAULT_ALLOWED_FAILURES = 3
#: rebuild the key containers once ``tasks`` has shrunk to a quarter of its peak, if the
#: peak was at least this big (see ``SchedulerState._compact``)
COMPACT_MIN = 4096


def heap_priority(priority: tuple[int, int, int]) -> int:
    """``priority`` (user priority negated, depth negated, submission counter) as one int.

    The order is the same as the tuples': the depth is > -2**63 and the counter in
    [0, 2**64), so the last two fields span less than 2**128. The ready heap compares
    one int instead of two nested tuples at each of its log2(n) levels, which was a
    third of the cost of placing a task with 200,000 queued.
    """
    user, depth, counter = priority
    if not user and not depth:
        return counter  # the common case; shares the record's int
    return (user << 128) + (depth << 64) + counter


class SchedulerState:
    """Everything the scheduler knows, and the rules for changing it.

    Args:
        inline_limit: results this small (pickled bytes) are forwarded by the scheduler
            and kept here; larger ones stay on workers and are fetched on demand.
        allowed_failures: worker deaths a task may suffer before ``KilledWorker``.
        steal: steal queued work back from workers whose slots are all blocked or that
            have more queued than an idle worker.
    """

    def __init__(
        self,
        *,
        inline_limit: int = DEFAULT_INLINE_LIMIT,
        allowed_failures: int = DEFAULT_ALLOWED_FAILURES,
        scheduler_id: str = "scheduler",
    ) -> None:
        self.inline_limit = inline_limit
        self.allowed_failures = allowed_failures
        self.scheduler_id = scheduler_id
        #: every task the scheduler knows, by key
        self.tasks: dict[str, TaskRecord] = {}
        #: connected workers by peer id (insertion order = join order)
        self.workers: dict[str, WorkerRecord] = {}
        #: every connected peer (clients and workers) by id
        self.peers: dict[str, PeerRecord] = {}
        #: pickled functions by content id; opaque bytes
        self.functions: dict[str, bytes] = {}
        #: ready tasks: (``heap_priority(task.priority)``, key); lazily cleaned (entries
        #: may be stale)
        self.ready: list[tuple[int, str]] = []
        #: tasks whose worker restriction could not be met yet
        self.unplaceable: dict[str, TaskRecord] = {}
        #: all and only the runs that are seceded, by key
        self.seceded: dict[str, TaskRecord] = {}
        #: mean run duration by function id (feeds prefetch depth)
        self.durations: dict[str, float] = {}
        #: large scatters waiting for a worker to upload to (see core/data.py)
        self.scatters: list[str] = []
        self.counter = 0  # submission order; tie-breaks priorities
        #: set when something changed that may form (or clear) a deadlock
        self.deadlock_dirty = False
        #: deadlock reports issued so far (for introspection and tests)
        self.deadlocks: list[str] = []
        self._out: list[Any] = []
        #: peer -> keys of the FreeKeys that is the last message queued for it in this
        #: event (more frees join it; any other message to that peer ends it)
        self._freeing: dict[str, list[str]] = {}
        #: the most tasks held since the key containers were last rebuilt
        self._peak_tasks = 0
        self._dispatch: dict[type, Callable[[SchedulerState, str, Any], None]] = {
            p.RegisterFunction: tasks.register_function,
            p.SubmitTask: tasks.submit_task,
            p.ReleaseKeys: tasks.release_keys,
            p.AcquireKeys: tasks.acquire_keys,
            p.CancelKeys: tasks.cancel_keys,
            p.TaskFinished: tasks.task_finished,
            p.TaskErred: tasks.task_erred,
            p.ScatterData: data.scatter_data,
            p.ScatterFailed: data.scatter_failed,
            p.GetData: data.get_data,
            p.WaitKeys: deadlock.wait_keys,
            p.WaitEnded: deadlock.wait_ended,
            p.Seceded: deadlock.seceded,
            p.RejoinRequested: deadlock.rejoin_requested,
            p.Rejoined: deadlock.rejoined,
            p.TasksReturned: placement.tasks_returned,
            p.Heartbeat: _ignore,
            p.WorkerClosing: _worker_closing,
            p.StatusRequest: _status,
        }

    # ------------------------------------------------------------------ entry point

    def handle(self, event: Any) -> list[Any]:
        """Apply one event; return the commands it caused (``Send``/``Close``)."""
        if type(event) is MessagesReceived:
            peer_id = event.peer_id
            if peer_id not in self.peers:
                return []  # the peer left while its frame was being handled
            dispatch = self._dispatch
            for msg in event.messages:
                handler = dispatch.get(type(msg))
                if handler is None:
                    self.close(peer_id, p.CLOSE_PROTOCOL_ERROR, f"unexpected {type(msg).__name__}")
                    break
                handler(self, peer_id, msg)
        elif type(event) is PeerJoined:
            _peer_joined(self, event.peer_id, event.hello)
        elif type(event) is PeerLeft:
            _peer_left(self, event.peer_id)
        else:
            raise InvalidTransition(f"unknown event {event!r}")
        if self.scatters:
            data.place_scatters(self)
        placement.schedule(self)
        if self.deadlock_dirty:
            self.deadlock_dirty = False
            deadlock.check(self)
        ntasks = len(self.tasks)
        if ntasks > self._peak_tasks:
            self._peak_tasks = ntasks
        elif ntasks <= self._peak_tasks // 4 and self._peak_tasks >= COMPACT_MIN:
            self._compact()
        out, self._out = self._out, []
        self._freeing.clear()
        return out

    # ------------------------------------------------------------------ helpers for handlers

    def send(self, to: str, message: Any) -> None:
        """Queue a message for a peer.

        A FreeKeys that would directly follow another FreeKeys to the same peer joins
        it instead: releasing a batch of keys is one message per worker, not one per
        key, and what each peer receives keeps its order.
        """
        freeing = self._freeing
        if type(message) is p.FreeKeys:
            keys = freeing.get(to)
            if keys is not None:
                keys.extend(message.keys)
                return
            message = p.FreeKeys(list(message.keys))
            freeing[to] = message.keys
        elif freeing:
            freeing.pop(to, None)
        self._out.append(Send(to, message))

    def free_key(self, worker_id: str, key: str) -> None:
        """Tell a worker to drop its result for ``key`` (joins a FreeKeys, see ``send``)."""
        self.send(worker_id, p.FreeKeys([key]))

    def _compact(self) -> None:
        """Rebuild the containers that held every key, after most keys were released.

        Python dicts and sets never shrink when entries are removed: after a burst of a
        million tasks, ``tasks`` and a client's ``wants`` would keep tables sized for a
        million entries. Rebuilding them once ``tasks`` is down to a quarter of its peak
        costs O(remaining) per 3/4 of the peak released: amortized O(1) per task.
        Iteration order is kept (dicts) or irrelevant (sets are only iterated sorted).
        """
        self.tasks = dict(self.tasks)
        for peer in self.peers.values():
            peer.wants = set(peer.wants)
        for worker in self.workers.values():
            worker.has_what = set(worker.has_what)
        self._peak_tasks = len(self.tasks)

    def close(self, to: str, code: int, reason: str) -> None:
        """Ask the shell to close a peer's connection; it will report PeerLeft."""
        self._freeing.pop(to, None)
        self._out.append(Close(to, code, reason))

    def push_ready(self, task: TaskRecord) -> None:
        """Mark ``task`` QUEUED and put it in the ready heap."""
        task.status = TaskStatus.QUEUED
        heapq.heappush(self.ready, (heap_priority(task.priority), task.key))

    def statistics(self) -> dict[str, Any]:
        """Counts for monitoring and tests: tasks by status, slots, seceded runs."""
        by_status: dict[str, int] = {}
        for t in self.tasks.values():
            by_status[t.status.value] = by_status.get(t.status.value, 0) + 1
        return {
            "tasks": by_status,
            "workers": len(self.workers),
            "clients": len(self.peers) - len(self.workers),
            "seceded": len(self.seceded),
            "deadlocks": len(self.deadlocks),
        }


def _ignore(state: SchedulerState, peer_id: str, msg: Any) -> None:
    pass


def _worker_closing(state: SchedulerState, peer_id: str, msg: p.WorkerClosing) -> None:
    worker = state.workers.get(peer_id)
    if worker is not None:
        worker.closing = True
        state.deadlock_dirty = True


def _peer_joined(state: SchedulerState, peer_id: str, hello: p.Hello) -> None:
    if peer_id in state.peers:
        raise InvalidTransition(f"peer {peer_id!r} joined twice")
    state.peers[peer_id] = PeerRecord(peer_id, hello.role, hello.name or peer_id)
    if hello.role == "worker":
        state.workers[peer_id] = WorkerRecord(
            peer_id, hello.name or peer_id, max(1, hello.nthreads), hello.data_address
        )
        # a new worker may take tasks that could not be placed before
        for task in state.unplaceable.values():
            state.push_ready(task)
        state.unplaceable.clear()
        state.deadlock_dirty = True


def _peer_left(state: SchedulerState, peer_id: str) -> None:
    peer = state.peers.pop(peer_id, None)
    if peer is None:
        return
    worker = state.workers.pop(peer_id, None)
    if worker is not None:
        tasks.worker_lost(state, worker)
    # a vanished client (or a dead worker's in-task client) releases its futures
    for key in sorted(peer.wants):
        task = state.tasks.get(key)
        if task is not None:
            task.wanted_by.discard(peer_id)
            tasks.maybe_release(state, task)
    state.deadlock_dirty = True


def _status(state: SchedulerState, peer_id: str, msg: p.StatusRequest) -> None:
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
            "data_address": w.data_address,
        }
        for w in state.workers.values()
    ]
    state.send(peer_id, p.StatusReply(msg.request_id, workers, state.statistics()))
