"""The scheduler core: a sans-IO state machine over the records of every task, worker
and peer. Layers, bottom up (each imports only those below it):

* :mod:`.records`: ``TaskRecord``, ``WorkerRecord``, ``PeerRecord``, ``TaskStatus``;
* :mod:`.state`: ``SchedulerState``, the records plus the outbox;
* :mod:`.ops`: the primitives that change a task's status (and only they do);
  :mod:`.runnable`: whether a connected worker could run a task (read-only queries);
* handlers, which never import one another: :mod:`.lifecycle` (task messages),
  :mod:`.peers` (membership, worker loss), :mod:`.data` (scatters, GetData),
  :mod:`.waits` (waits, secede/rejoin), :mod:`.placement` (assign, steal),
  :mod:`.deadlock` (the rule and the report), :mod:`.starvation` (the no-workers
  timeout), :mod:`.explain` (``why``: the reasons a task waits);
* :mod:`.machine`: ``Scheduler``, which has a state, dispatches events to handlers and
  runs the once-per-event passes.
"""

from .machine import Scheduler
from .records import TERMINAL, PeerRecord, TaskRecord, TaskStatus, WorkerRecord
from .state import DEFAULT_ALLOWED_FAILURES, DEFAULT_INLINE_LIMIT, SchedulerState

__all__ = [
    "DEFAULT_ALLOWED_FAILURES",
    "DEFAULT_INLINE_LIMIT",
    "TERMINAL",
    "PeerRecord",
    "Scheduler",
    "SchedulerState",
    "TaskRecord",
    "TaskStatus",
    "WorkerRecord",
]
