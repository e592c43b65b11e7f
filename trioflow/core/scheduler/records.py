"""What the scheduler remembers: one record per task, per worker and per connected peer.

Invariants (checked by :func:`trioflow.core.validate.check_scheduler`):

* a task is PROCESSING iff it has a run on exactly one worker (``worker`` is set and the
  worker's ``processing`` holds it); a CANCELLED/ERRED task may still have a run there
  until the run ends, because a Python thread cannot be stopped;
* ``worker.occupying`` == the number of its runs that are not seceded;
* ``worker.blocked`` == the number of its non-seceded runs blocked (without a timeout);
* a task is in ``waiters`` of every key in its ``blocked_on``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from ... import protocol as p


class TaskStatus(enum.Enum):
    """Where a task is in its life on the scheduler."""

    WAITING = "waiting"  # some dependency is not in memory yet
    QUEUED = "queued"  # ready to run, no worker chosen yet
    PROCESSING = "processing"  # a worker has it: queued there, running, or seceded
    MEMORY = "memory"  # finished; the result is on workers and/or inline here
    ERRED = "erred"  # failed, was cancelled, or was lost (see ``error``)


#: statuses a waiter no longer waits on
TERMINAL = frozenset({TaskStatus.MEMORY, TaskStatus.ERRED})


@attrs.define(eq=False, repr=False)
class TaskRecord:
    """One task: its spec, where it is, who wants it, and its current run."""

    key: str
    fn_id: str
    payload: bytes
    deps: tuple[str, ...]
    priority: tuple[int, int, int]
    owner: str
    parent: str = ""
    depth: int = 0
    is_async: bool = False
    retries: int = 0
    run_once: bool = False
    restrict: tuple[str, ...] = ()
    #: changed only by ``SchedulerState.push_ready`` and ``ops`` (Rule 1 of state.py)
    status: TaskStatus = TaskStatus.WAITING
    # The sets below (and ``deaths``) are allocated on first access, through the
    # properties of the same name installed after the class (see ``_lazy``): an empty
    # set costs 216 bytes, and a queued task usually needs none of them. Code reads and
    # writes ``task.waiting_on`` etc. as plain sets; ``_waiting_on`` is None until then.
    #: dependencies not in memory yet
    _waiting_on: set[str] | None = None
    #: unfinished tasks that need this one's result
    _dependents: set[str] | None = None
    #: peer ids holding at least one future for this key, and ``DATASETS`` while a
    #: published dataset holds it (datasets.py)
    wanted_by: set[str] = attrs.Factory(set)
    #: keys of runs blocked on this key
    _waiters: set[str] | None = None
    # --- the current run (when a worker has it)
    worker: str | None = None
    run_id: int = 0
    seceded: bool = False
    rejoin_pending: bool = False
    #: keys this run waits on that are not terminal yet (None: not waiting)
    blocked_on: set[str] | None = None
    blocked_timeout: bool = False
    #: the wait ends when any one of ``blocked_on`` is done (as_completed)
    blocked_any: bool = False
    # --- the result
    #: ids of the workers holding the result
    _who_has: set[str] | None = None
    nbytes: int = 0
    inline: bytes | None = None
    type_name: str = ""
    #: the KeyErred message sent to wanters when this task failed
    error: p.KeyErred | None = None
    #: names of workers that died while running this task
    _deaths: list[str] | None = None
    #: abstract resources it needs (``resources=``), None for none
    resources: dict[str, float] | None = None
    #: its current run holds them on its worker (taken at assignment and at rejoin,
    #: given back when it secedes or ends)
    holds_resources: bool = False

    if TYPE_CHECKING:  # what the properties installed by ``_lazy`` look like
        waiting_on: set[str]
        dependents: set[str]
        waiters: set[str]
        who_has: set[str]
        deaths: list[str]

    def __repr__(self) -> str:
        return f"<TaskRecord {self.key!r} {self.status.value} on={self.worker!r} run={self.run_id}>"


def _lazy(cls: type, name: str, factory: Callable[[], Any]) -> None:
    """Give ``cls`` a property ``name`` over slot ``_name`` that allocates on first access."""
    slot = cls.__dict__["_" + name]  # the slot's member descriptor
    slot_get, slot_set = slot.__get__, slot.__set__

    def get(self: Any) -> Any:
        value = slot_get(self)
        if value is None:
            value = factory()
            slot_set(self, value)
        return value

    setattr(cls, name, property(get, slot_set, doc=f"``{name}``, allocated on first access"))


for _name in ("waiting_on", "dependents", "waiters", "who_has"):
    _lazy(TaskRecord, _name, set)
_lazy(TaskRecord, "deaths", list)


@attrs.define(eq=False, repr=False)
class WorkerRecord:
    """One connected worker: its slots and what the scheduler gave it."""

    id: str
    name: str
    nthreads: int
    data_address: str
    #: it runs under a nanny and can be restarted (``Client.restart``)
    restartable: bool = False
    #: key -> task for every run this worker has (queued there, running or seceded)
    processing: dict[str, TaskRecord] = attrs.Factory(dict)
    #: runs that count against slots: all of ``processing`` that is not seceded
    occupying: int = 0
    #: non-seceded runs blocked on keys without a timeout (they hold a slot doing nothing)
    blocked: int = 0
    #: keys whose results this worker holds
    has_what: set[str] = attrs.Factory(set)
    #: functions already sent to this worker
    fn_ids: set[str] = attrs.Factory(set)
    #: a StealTasks is in flight
    steal_pending: bool = False
    #: its last StealTasks got nothing back; no idle-steal again until a run ends here
    #: (the scheduler cannot tell queued runs from running ones: asking again at once
    #: would be a storm of StealTasks)
    steal_futile: bool = False
    #: refilling its prefetch queue (hysteresis: refill from half empty to full, so
    #: assignments go out in batches rather than one per finished task)
    filling: bool = True
    #: shutting down: gets no new work
    closing: bool = False
    #: its abstract resources (``--resources``) and how much of each runs hold now
    resources: dict[str, float] = attrs.Factory(dict)
    used: dict[str, float] = attrs.Factory(dict)
    #: tasks this worker placed on itself (``TaskPlaced``): a statistic for ``status``
    placed: int = 0

    def __repr__(self) -> str:
        return (
            f"<WorkerRecord {self.name!r} slots={self.nthreads} occupying={self.occupying} "
            f"blocked={self.blocked} processing={len(self.processing)}>"
        )


#: the holder that stands for the published datasets in ``TaskRecord.wanted_by``: no
#: peer has this id (ids never start with a NUL), so what is sent to it goes nowhere
DATASETS = "\x00datasets"


@attrs.define(eq=False, repr=False)
class Dataset:
    """One published dataset: the client's pickled data (never unpickled here) and the
    keys of the futures inside it, which it holds."""

    blob: bytes
    keys: list[str]


@attrs.define(eq=False, repr=False)
class PluginWait:
    """A ``Client.register_plugin`` waiting for the workers connected when it came to
    set the plugin up (or leave)."""

    peer_id: str
    request_id: int
    name: str
    #: worker ids still to answer
    waiting: set[str]
    #: [worker name, error text] of those that did
    results: list[list[str]] = attrs.Factory(list)


@attrs.define(eq=False, repr=False)
class PeerRecord:
    """One connection: a client, or a worker acting as a client for its tasks."""

    id: str
    role: str
    name: str
    #: keys this peer holds futures for
    wants: set[str] = attrs.Factory(set)

    def __repr__(self) -> str:
        return f"<PeerRecord {self.id!r} {self.role} {self.name!r} wants={len(self.wants)}>"


@attrs.define(eq=False, repr=False)
class Lease:
    """One lease of a Lock or Semaphore: who holds it, and the run that took it."""

    peer_id: str
    holder: str  # the client-side object's id
    run_key: str = ""  # "" when a client (not a task) holds it
    run_id: int = 0


@attrs.define(eq=False, repr=False)
class PrimitiveWait:
    """A request that waits on a primitive (an acquire, a get, a put on a full queue,
    an event's wait); answered when it can be served, times out, or is a deadlock."""

    peer_id: str
    request: p.PrimitiveRequest

    @property
    def marker(self) -> str:
        """What the waiting run's ``blocked_on`` holds while it waits (never a task key)."""
        return f"\x00{self.request.kind}:{self.request.name}#{self.peer_id}:{self.request.request_id}"


@attrs.define(eq=False, repr=False)
class PrimitiveRecord:
    """One named Lock, Semaphore, Queue, Event or Variable; values are opaque bytes."""

    kind: str
    name: str
    #: leases allowed at once (Lock: 1); items a queue holds (0: unbounded)
    limit: int = 0
    leases: list[Lease] = attrs.Factory(list)
    items: list[bytes] = attrs.Factory(list)  # a queue's items, oldest first
    value: bytes | None = None  # a Variable's value
    is_set: bool = False  # an Event's flag
    waits: list[PrimitiveWait] = attrs.Factory(list)  # oldest first
    #: client peer id -> live objects it holds for this primitive
    handles: dict[str, int] = attrs.Factory(dict)

    @property
    def title(self) -> str:
        """How reports name it: ``Lock 'name'``."""
        return f"{self.kind.capitalize()} {self.name!r}"

    def __repr__(self) -> str:
        return (f"<PrimitiveRecord {self.kind} {self.name!r} leases={len(self.leases)} "
                f"items={len(self.items)} waits={len(self.waits)}>")
