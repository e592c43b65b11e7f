"""What the scheduler knows (its records) and the outbox it writes commands to.

Rule 1: every change of a ``TaskRecord.status`` is made here (``push_ready``) or in
:mod:`.ops`. Handlers and passes decide *that* a task moves; the primitives move it and
keep the invariants of :mod:`.records` (slot counts, waiters, the seceded table) true
while they do. A new status change goes into ``ops``, never inline in a handler.

Rule 2: this module holds no handlers and imports nothing of the scheduler but the
records. Everything above it (``ops``, the handler modules, ``machine``) imports it;
nothing here imports them.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any

from ... import protocol as p
from ...config import ALLOWED_FAILURES, INLINE_LIMIT, RUN_LOG_LENGTH
from ..events import Close, SchedulerCommand, Send
from .records import (
    Dataset,
    PeerRecord,
    PluginWait,
    PrimitiveRecord,
    TaskRecord,
    TaskStatus,
    WorkerRecord,
)

#: results up to this many pickled bytes travel inside messages and are kept here too;
#: a task that was running on this many dying workers fails with KilledWorker
DEFAULT_INLINE_LIMIT, DEFAULT_ALLOWED_FAILURES = INLINE_LIMIT, ALLOWED_FAILURES


#: one finished run: (key, worker id, thread, start (worker's epoch s), duration (s),
#: result bytes, parent key, depth, whether it returned (False: it raised)). A plain
#: tuple: appending one per finished run is the whole cost of the task stream on the
#: scheduler.
RunRecord = tuple[str, str, str, float, float, int, str, int, bool]


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
    """Everything the scheduler knows, plus the outbox of commands for the shell.

    The rules for changing it live above it: :mod:`.ops` (the primitives), the handler
    modules, and :class:`~.machine.Scheduler`, which has one of these.

    Args:
        inline_limit: results this small (pickled bytes) are forwarded by the scheduler
            and kept here; larger ones stay on workers and are fetched on demand.
        allowed_failures: worker deaths a task may suffer before ``KilledWorker``.
        scheduler_id: the id this scheduler gives itself in its Welcome.
        no_workers_timeout: see ``starvation.py`` (None: tasks wait for workers forever).
    """

    def __init__(
        self,
        *,
        inline_limit: int = DEFAULT_INLINE_LIMIT,
        allowed_failures: int = DEFAULT_ALLOWED_FAILURES,
        scheduler_id: str = "scheduler",
        no_workers_timeout: float | None = None,
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
        #: large scatters waiting for a worker to upload to (see data.py)
        self.scatters: list[str] = []
        #: ``Client.replicate`` requests waiting for copies (``replicas.Replication``)
        self.replications: list[Any] = []
        self.counter = 0  # submission order; tie-breaks priorities
        #: set when something changed that may form (or clear) a deadlock
        self.deadlock_dirty = False
        #: deadlock reports issued so far (for introspection and tests)
        self.deadlocks: list[str] = []
        #: coordination primitives by (kind, name) (see coordination.py)
        self.primitives: dict[tuple[str, str], PrimitiveRecord] = {}
        #: worker plugins by name (pickled by their clients; plugins.py), and the
        #: registrations waiting for their workers' setups
        self.plugins: dict[str, bytes] = {}
        self.plugin_waits: list[PluginWait] = []
        #: published datasets by name, and how many of them hold each key (datasets.py)
        self.datasets: dict[str, Dataset] = {}
        self.dataset_holds: dict[str, int] = {}
        #: ``Client.set_metadata``'s tree and ``log_event``'s events by topic, as plain
        #: msgpack data (metadata.py)
        self.metadata: dict[str, Any] = {}
        self.events: dict[str, deque[list[Any]]] = {}
        #: the latest finished runs, oldest first, as ``RunRecord`` tuples; read (never
        #: written) by the dashboard and performance reports
        self.runs: deque[RunRecord] = deque(maxlen=RUN_LOG_LENGTH)
        #: runs ever appended to ``runs`` (so readers know how many they missed)
        self.runs_total = 0
        #: each worker's latest report of its threads and memory (for the dashboard;
        #: entries of departed workers are dropped lazily, see ``timeline``)
        self.worker_threads: dict[str, p.WorkerThreads] = {}
        #: seconds a queued task may go without any connected worker able to run it
        #: before it fails with NoWorkersError (None: never); see starvation.py
        self.no_workers_timeout = no_workers_timeout
        #: the shell's clock at its last TimePassed
        self.now = 0.0
        #: key -> the tick since which no connected worker could run that queued task
        self.starving: dict[str, float] = {}
        #: status requests waiting for their ``min_workers`` (peer id, request), in
        #: arrival order (``peers.status``)
        self.status_waits: list[tuple[str, p.StatusRequest]] = []
        #: warnings for the shell to log (and clear); see explain.note_timed_deadlock
        self.warnings: list[str] = []
        #: the runs of the would-be deadlock last warned about (warn once per set)
        self.timed_deadlock_seen: frozenset[tuple[str, int]] | None = None
        #: commands for the shell, collected during one event
        self._out: list[SchedulerCommand] = []
        #: peer -> keys of the FreeKeys that is the last message queued for it in this
        #: event (more frees join it; any other message to that peer ends it)
        self._freeing: dict[str, list[str]] = {}

    # ------------------------------------------------------------------ the outbox

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
        keys = self._freeing.get(worker_id)
        if keys is not None:  # (what ``send`` would do, without a message per key)
            keys.append(key)
        else:
            self.send(worker_id, p.FreeKeys([key]))

    def close(self, to: str, code: int, reason: str) -> None:
        """Ask the shell to close a peer's connection; it will report PeerLeft."""
        self._freeing.pop(to, None)
        self._out.append(Close(to, code, reason))

    def take_commands(self) -> list[SchedulerCommand]:
        """The commands of the event just handled; the outbox starts empty again."""
        out, self._out = self._out, []
        self._freeing.clear()
        return out

    # ------------------------------------------------------------------ records

    def push_ready(self, task: TaskRecord) -> None:
        """Mark ``task`` QUEUED and put it in the ready heap."""
        task.status = TaskStatus.QUEUED
        heapq.heappush(self.ready, (heap_priority(task.priority), task.key))

    def compact(self) -> None:
        """Rebuild the containers that held every key, after most keys were released.

        Python dicts and sets never shrink when entries are removed: after a burst of a
        million tasks, ``tasks`` and a client's ``wants`` would keep tables sized for a
        million entries. Rebuilding them costs O(remaining); the machine calls this once
        ``tasks`` is down to a quarter of its peak, so the cost is amortized O(1) per
        task. Iteration order is kept (dicts) or irrelevant (sets are only iterated
        sorted).
        """
        self.tasks = dict(self.tasks)
        for peer in self.peers.values():
            peer.wants = set(peer.wants)
        for worker in self.workers.values():
            worker.has_what = set(worker.has_what)

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
