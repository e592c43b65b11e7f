"""The sans-IO core: scheduler and worker state machines. No trio, no sockets, no clock,
no pickle. Events in, commands out.

* :mod:`.events`: the scheduler's events and commands;
* :mod:`.scheduler`: ``Scheduler`` (the machine) over ``SchedulerState`` (the records);
* :mod:`.worker`: ``WorkerState``, one worker's runs and slot ledger, and its commands;
* :mod:`.validate`: the invariants of both, as checks that raise ``InvalidTransition``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..lazy_exports import lazy_exports

if TYPE_CHECKING:
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

#: re-exported name -> its submodule, imported on first use (PEP 562): a worker or a client
#: that needs ``core.worker`` or ``core.session`` does not load the scheduler machine
_LAZY = {
    "Close": "events",
    "MessagesReceived": "events",
    "PeerJoined": "events",
    "PeerLeft": "events",
    "SchedulerCommand": "events",
    "SchedulerEvent": "events",
    "Send": "events",
    "DEFAULT_ALLOWED_FAILURES": "scheduler",
    "DEFAULT_INLINE_LIMIT": "scheduler",
    "PeerRecord": "scheduler",
    "Scheduler": "scheduler",
    "SchedulerState": "scheduler",
    "TaskRecord": "scheduler",
    "TaskStatus": "scheduler",
    "WorkerRecord": "scheduler",
    "LocalRun": "worker",
    "RunState": "worker",
    "WorkerCommand": "worker",
    "WorkerState": "worker",
}


__getattr__ = lazy_exports(__name__, _LAZY, globals())


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
