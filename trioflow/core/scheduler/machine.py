"""The scheduler's state machine: events in, commands out. No I/O, no clock, no pickle.

Theory of operation:

* ``Scheduler.handle(event)`` applies one event and returns the commands it caused.
  A frame of messages is one event, and the placement and deadlock passes run once per
  event, not once per message: that is where batching pays on the scheduler.
* ``Scheduler`` *has* a :class:`~.state.SchedulerState` (h11's ``Connection`` and its
  ``ConnectionState``): the records and the outbox live there, the dispatch table and
  the passes here. Handlers are module-level functions grouped by concern, task
  messages in :mod:`.lifecycle`, membership in :mod:`.peers`, values in :mod:`.data`,
  waits and secession in :mod:`.waits`, placement and stealing in :mod:`.placement`,
  Lock/Semaphore/Queue/Event/Variable in :mod:`.coordination`, named datasets in
  :mod:`.datasets`, ``Client.retry`` in :mod:`.retry`, worker plugins in :mod:`.plugins`,
  tasks no worker can run in :mod:`.starvation` (on ``TimePassed``), why a task
  waits in :mod:`.explain`;
  they share the primitives of :mod:`.ops` and never import one another. Only this
  module imports them all.
* Expected races (stale run ids, unknown keys, a finish for a cancelled task) are not
  errors: they are dropped. Broken invariants raise an ``InternalError``
  (``InvalidTransition``); after one, the state may be corrupt, so this machine
  refuses every later event instead of going on from it.
* Iteration order is always insertion order (dicts) or sorted: the core is deterministic,
  which the hypothesis state machines rely on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ... import protocol as p
from ...errors import InternalError, InvalidTransition
from .. import fold
from ..events import (
    MessagesReceived,
    PeerJoined,
    PeerLeft,
    SchedulerCommand,
    SchedulerEvent,
    TimePassed,
)
from . import (
    coordination,
    data,
    datasets,
    deadlock,
    explain,
    lifecycle,
    metadata,
    peers,
    placement,
    plugins,
    replicas,
    restart,
    retry,
    starvation,
    timeline,
    waits,
)
from .state import DEFAULT_ALLOWED_FAILURES, DEFAULT_INLINE_LIMIT, SchedulerState

#: rebuild the key containers once ``tasks`` has shrunk to a quarter of its peak, if the
#: peak was at least this big (see ``SchedulerState.compact``)
COMPACT_MIN = 4096

#: what a message handler looks like: it reads ``msg`` from ``peer_id`` and changes
#: ``state`` (the message type is the dispatch key, so ``Any`` here)
Handler = Callable[[SchedulerState, str, Any], None]

#: message type -> handler; a type missing here is a protocol error of the peer
HANDLERS: dict[type, Handler] = {
    p.RegisterFunction: lifecycle.register_function,
    p.SubmitTask: lifecycle.submit_task,
    p.ReleaseKeys: lifecycle.release_keys,
    p.AcquireKeys: lifecycle.acquire_keys,
    p.CancelKeys: lifecycle.cancel_keys,
    p.TaskFinished: lifecycle.task_finished,
    p.TaskErred: lifecycle.task_erred,
    p.ScatterData: data.scatter_data,
    p.ScatterFailed: data.scatter_failed,
    p.GetData: data.get_data,
    p.WaitKeys: waits.wait_keys,
    p.WaitEnded: waits.wait_ended,
    p.Seceded: waits.seceded,
    p.RejoinRequested: waits.rejoin_requested,
    p.Rejoined: waits.rejoined,
    p.TasksReturned: placement.tasks_returned,
    p.Heartbeat: peers.ignore,
    p.WorkerClosing: peers.worker_closing,
    p.StatusRequest: peers.status,
    p.PrimitiveRequest: coordination.request,
    p.PrimitiveCancel: coordination.cancel,
    p.PrimitiveHandles: coordination.handles,
    p.RunsRequest: timeline.runs_request,
    p.WorkerThreads: timeline.worker_threads,
    p.WhyRequest: explain.why,
    p.TaskPlaced: lifecycle.task_placed,
    p.ReplicateRequest: replicas.replicate_request,
    p.ReplicasFetched: replicas.replicas_fetched,
    p.RestartRequest: restart.restart_request,
    p.DatasetRequest: datasets.request,
    p.RetryRequest: retry.retry_request,
    p.PluginRequest: plugins.request,
    p.PluginInstalled: plugins.installed,
    p.MetadataRequest: metadata.metadata_request,
    p.EventRequest: metadata.event_request,
}


def _then_folded_reports(handler: Handler) -> Handler:
    """``handler``, followed by the slot reports folded into its message (``core.fold``):
    they applied right after it, in order, as when they came on their own."""

    def handle(state: SchedulerState, peer_id: str, msg: Any) -> None:
        handler(state, peer_id, msg)
        if msg.slot_reports:
            waits.folded_reports(state, peer_id, msg.slot_reports)

    handle.__name__ = handler.__name__
    return handle


for _carrier in fold.CARRIERS:
    HANDLERS[_carrier] = _then_folded_reports(HANDLERS[_carrier])


class Scheduler:
    """The scheduler core: feed it events, execute the commands it returns.

    Args:
        inline_limit: results this small (pickled bytes) are forwarded by the scheduler
            and kept here; larger ones stay on workers and are fetched on demand.
        allowed_failures: worker deaths a task may suffer before ``KilledWorker``.
        scheduler_id: the id this scheduler gives itself.
        no_workers_timeout: seconds a queued task may have no connected worker able to
            run it before it fails with ``NoWorkersError`` (None: never); the shell
            drives it with ``TimePassed`` events (``starvation.py``).

    Attributes:
        state: the records (``state.tasks``, ``state.workers``, ...), for the shell's
            introspection and for tests; change them only through ``handle``.
    """

    def __init__(
        self,
        *,
        inline_limit: int = DEFAULT_INLINE_LIMIT,
        allowed_failures: int = DEFAULT_ALLOWED_FAILURES,
        scheduler_id: str = "scheduler",
        no_workers_timeout: float | None = None,
    ) -> None:
        self.state = SchedulerState(
            inline_limit=inline_limit, allowed_failures=allowed_failures,
            scheduler_id=scheduler_id, no_workers_timeout=no_workers_timeout,
        )
        #: the internal error that stopped this machine (None while it is sound)
        self.failure: InternalError | None = None
        #: the most tasks held since the key containers were last rebuilt
        self._peak_tasks = 0

    def __repr__(self) -> str:
        s = self.state
        broken = " BROKEN" if self.failure is not None else ""
        return f"<Scheduler tasks={len(s.tasks)} workers={len(s.workers)} peers={len(s.peers)}{broken}>"

    # ------------------------------------------------------------------ entry point

    def handle(self, event: SchedulerEvent) -> list[SchedulerCommand]:
        """Apply one event; return the commands it caused (``Send``/``Close``).

        Raises:
            InternalError: a broken invariant (a bug in trioflow), now or in an earlier
                event; the machine stays stopped and the shell must stop too.
        """
        if self.failure is not None:
            raise InvalidTransition(
                f"the scheduler core stopped after an internal error: {self.failure}"
            ) from self.failure
        try:
            self._apply(event)
            self._passes()
        except InternalError as exc:
            self.failure = exc
            raise
        return self.state.take_commands()

    def _apply(self, event: SchedulerEvent) -> None:
        state = self.state
        if type(event) is MessagesReceived:
            peer_id = event.peer_id
            if peer_id not in state.peers:
                return  # the peer left while its frame was being handled
            handlers = HANDLERS
            for msg in event.messages:
                handler = handlers.get(type(msg))
                if handler is None:
                    state.close(peer_id, p.CLOSE_PROTOCOL_ERROR, f"unexpected {type(msg).__name__}")
                    break
                handler(state, peer_id, msg)
        elif type(event) is PeerJoined:
            peers.peer_joined(state, event.peer_id, event.hello)
            plugins.worker_joined(state, event.peer_id)
        elif type(event) is PeerLeft:
            peers.peer_left(state, event.peer_id)
            coordination.peer_left(state, event.peer_id)
            replicas.peer_left(state, event.peer_id)
            plugins.peer_left(state, event.peer_id)
        elif type(event) is TimePassed:
            starvation.tick(state, event.now)
        else:
            raise InvalidTransition(f"unknown event {event!r}")

    def _passes(self) -> None:
        """What runs once per event, after its messages: place, detect, compact."""
        state = self.state
        if state.scatters:
            data.place_scatters(state)
        if state.replications:  # (after the scatters: a broadcast copies them)
            replicas.pump(state)
        if state.primitives:  # (runs rejoining with resources go before new tasks)
            coordination.pump_resources(state)
        placement.schedule(state)
        if state.deadlock_dirty:
            state.deadlock_dirty = False
            self.check_deadlock()
            explain.note_timed_deadlock(state)
        ntasks = len(state.tasks)
        if ntasks > self._peak_tasks:
            self._peak_tasks = ntasks
        elif ntasks <= self._peak_tasks // 4 and self._peak_tasks >= COMPACT_MIN:
            state.compact()
            self._peak_tasks = len(state.tasks)

    def check_deadlock(self) -> None:
        """The deadlock pass (run when something changed that may form one); a test
        harness overrides it to see what would happen without the detector."""
        deadlock.check(self.state)
