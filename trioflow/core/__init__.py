"""The sans-IO core: scheduler and worker state machines. No trio, no sockets, no clock,
no pickle. Events in, commands out.

* :mod:`.events`: the scheduler's events and commands;
* :mod:`.scheduler`: ``Scheduler`` (the machine) over ``SchedulerState`` (the records);
* :mod:`.worker`: ``WorkerState``, one worker's runs and slot ledger, and its commands;
* :mod:`.validate`: the invariants of both, as checks that raise ``InvalidTransition``.
"""

from .events import (
    Close,
    MessagesReceived,
    PeerJoined,
    PeerLeft,
    SchedulerCommand,
    SchedulerEvent,
    Send,
)
from .scheduler import (
    DEFAULT_ALLOWED_FAILURES,
    DEFAULT_INLINE_LIMIT,
    PeerRecord,
    Scheduler,
    SchedulerState,
    TaskRecord,
    TaskStatus,
    WorkerRecord,
)
from .worker import LocalRun, RunState, WorkerCommand, WorkerState

__all__ = [
    "DEFAULT_ALLOWED_FAILURES",
    "DEFAULT_INLINE_LIMIT",
    "Close",
    "LocalRun",
    "MessagesReceived",
    "PeerJoined",
    "PeerLeft",
    "PeerRecord",
    "RunState",
    "Scheduler",
    "SchedulerCommand",
    "SchedulerEvent",
    "SchedulerState",
    "Send",
    "TaskRecord",
    "TaskStatus",
    "WorkerCommand",
    "WorkerRecord",
    "WorkerState",
]
