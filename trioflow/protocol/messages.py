"""Every message that crosses a connection, as immutable attrs classes (see ``message``).

Theory of operation:

* A message class is ``<Verb><Noun>`` with a kebab-case wire tag (``SubmitTask`` is
  ``submit-task``), registered with :func:`message`.
* On the wire a message is a msgpack array ``[tag, field1, field2, ...]`` in field
  order: positional, so a message costs no field names. Compatibility rule within one
  protocol version: new fields are only ever *appended*, with defaults; a decoder
  ignores trailing fields it does not know and fills missing trailing fields from
  defaults.
* Every field is checked against its annotation when decoding (``check``), so a peer
  cannot smuggle an int where the core expects a key. A failed check is a
  ``RemoteProtocolError`` for that one connection.
* ``bytes`` fields are opaque payloads (pickled functions, arguments, results). The
  scheduler stores and forwards them and never unpickles them.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from ..config import INLINE_LIMIT
from ..errors import RemoteProtocolError

_M = TypeVar("_M")
_F = TypeVar("_F")

if TYPE_CHECKING:  # (typing.dataclass_transform is 3.11+; the checker has the backport)
    from typing_extensions import dataclass_transform
else:
    def dataclass_transform(**kwargs: Any) -> Callable[[_F], _F]:
        """At run time a no-op: it only tells type checkers what ``message`` makes."""
        return lambda f: f

#: wire tag -> message class
TAGS: dict[str, type] = {}
#: message class -> (tag, number of fields, per-field checkers, field names)
SPECS: dict[type, tuple[str, int, tuple[Callable[[Any], bool], ...], tuple[str, ...]]] = {}


def _checker(tp: Any) -> Callable[[Any], bool]:
    """A fast predicate telling whether a decoded value fits annotation ``tp``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return lambda v: True
    if tp is float:
        return lambda v: type(v) is float or type(v) is int
    if tp in (str, bytes, int, bool):
        return lambda v: type(v) is tp
    if origin is list:
        (item,) = typing.get_args(tp)
        check = _checker(item)
        return lambda v: type(v) is list and all(check(x) for x in v)
    if origin in (typing.Union, types.UnionType):
        checks = [_checker(a) for a in typing.get_args(tp)]
        return lambda v: any(c(v) for c in checks)
    if tp is type(None):
        return lambda v: v is None
    raise TypeError(f"unsupported message field type {tp!r}")  # pragma: no cover


@dataclass_transform(frozen_default=True)
def message(tag: str) -> Callable[[type[_M]], type[_M]]:
    """Class decorator: make ``cls`` a frozen attrs message with wire tag ``tag``."""

    def wrap(cls: type[_M]) -> type[_M]:
        # Immutable by contract, checked statically (``dataclass_transform`` tells type
        # checkers the class is frozen, so an assignment to a field is a mypy error), not
        # at run time: a frozen attrs class's ``__init__`` sets each field through
        # ``object.__setattr__``, about 4x the cost of a plain slotted one (2 us for a
        # SubmitTask, 0.5 us on a quiet box), and every task builds and decodes several
        # messages in each process it crosses. ``unsafe_hash``: hashable by value, as
        # frozen classes are.
        cls = attrs.define(cls, unsafe_hash=True)
        attrs.resolve_types(cls)  # type: ignore[type-var]  # (attrs' own types: an attrs class)
        fields = attrs.fields(cls)  # type: ignore[arg-type]
        checks = tuple(_checker(f.type) for f in fields)
        if tag in TAGS:  # pragma: no cover - programming error
            raise ValueError(f"duplicate message tag {tag!r}")
        TAGS[tag] = cls
        SPECS[cls] = (tag, len(fields), checks, tuple(f.name for f in fields))
        return cls

    return wrap


def to_wire(msg: Any) -> list[Any]:
    """The positional list form of ``msg``: ``[tag, *fields]``."""
    tag, _, _, names = SPECS[type(msg)]
    return [tag, *[getattr(msg, n) for n in names]]


def from_wire(item: Any) -> Any:
    """Rebuild a message from its list form, checking every field.

    Raises:
        RemoteProtocolError: the item is not a well-formed message of a known tag.
    """
    if type(item) is not list or not item:
        raise RemoteProtocolError(f"a message must be a non-empty array, got {type(item).__name__}")
    cls = TAGS.get(item[0]) if type(item[0]) is str else None
    if cls is None:
        raise RemoteProtocolError(f"unknown message type {item[0]!r}")
    tag, n, checks, names = SPECS[cls]
    values = item[1 : n + 1]
    for i, value in enumerate(values):
        if not checks[i](value):
            raise RemoteProtocolError(
                f"{tag}: field {names[i]!r} has a value of type {type(value).__name__}"
            )
    try:
        return cls(*values)
    except TypeError as exc:  # missing required fields
        raise RemoteProtocolError(f"{tag}: {exc}") from None


# --------------------------------------------------------------------------- handshake


@message("hello")
class Hello:
    """First message of every connection, peer -> scheduler."""

    role: str  # "client" or "worker"
    name: str
    versions: list[int]
    token: str = ""
    nthreads: int = 0
    data_address: str = ""
    pid: int = 0
    #: a worker's abstract resources (``--resources "GPU=2"``): names and amounts
    resource_names: list[str] = attrs.Factory(list)
    resource_amounts: list[float] = attrs.Factory(list)
    #: a worker run by a nanny: it exits on ``RestartWorker`` and comes back fresh
    restartable: bool = False


@message("welcome")
class Welcome:
    """The scheduler's answer to Hello: the version chosen and our id."""

    version: int
    peer_id: str
    scheduler_id: str = ""
    #: values whose pickle is at most this large travel inside control messages; larger
    #: ones over the bulk data path (clients scatter them straight to a worker)
    inline_limit: int = INLINE_LIMIT
    #: the scheduler's dashboard (``http://host:port``), "" if it serves none
    dashboard: str = ""


# --------------------------------------------------------------------- client -> scheduler


@message("register-function")
class RegisterFunction:
    """A pickled function, sent once per connection before the first task using it."""

    fn_id: str
    blob: bytes


@message("submit-task")
class SubmitTask:
    """One task. ``payload`` is the pickled (args, kwargs); ``deps`` are future keys in it."""

    key: str
    fn_id: str
    payload: bytes
    deps: list[str]
    parent: str = ""  # key of the task that submitted this one, "" from a client
    is_async: bool = False
    retries: int = 0
    priority: int = 0
    workers: list[str] = attrs.Factory(list)
    run_once: bool = False  # never run twice: fail instead of re-running after worker loss
    #: abstract resources the task needs while it holds its slot (``resources=``)
    resource_names: list[str] = attrs.Factory(list)
    resource_amounts: list[float] = attrs.Factory(list)


@message("release-keys")
class ReleaseKeys:
    """The sender holds no future for these keys any more."""

    keys: list[str]


@message("acquire-keys")
class AcquireKeys:
    """The sender now holds futures for these keys (a future arrived inside data)."""

    keys: list[str]


@message("cancel-keys")
class CancelKeys:
    """Cancel these tasks: queued ones never run, results are dropped."""

    keys: list[str]
    reason: str = "cancelled"


@message("get-data")
class GetData:
    """Ask for results that were too large to travel inline."""

    request_id: int
    keys: list[str]


@message("scatter-data")
class ScatterData:
    """Client data under ``key``: pickled in ``blob`` when small; when ``blob`` is empty
    the scheduler answers ``ScatterTo`` and the client uploads it to that worker."""

    key: str
    blob: bytes
    nbytes: int


@message("scatter-failed")
class ScatterFailed:
    """The upload asked for by ``ScatterTo`` failed (or the value is no longer here)."""

    key: str
    address: str
    text: str


@message("wait-keys")
class WaitKeys:
    """A running task blocks on these keys (from a worker's in-task client)."""

    run_key: str
    run_id: int
    keys: list[str]
    has_timeout: bool = False
    any_of: bool = False  # wakes when any key is done (as_completed), not all


@message("wait-ended")
class WaitEnded:
    """A task's wait ended before its keys finished (timeout, interrupt)."""

    run_key: str
    run_id: int


# --------------------------------------------------------------------- worker -> scheduler


@message("task-finished")
class TaskFinished:
    """A run finished; small results travel inline, large ones stay on the worker."""

    key: str
    run_id: int
    nbytes: int
    inline: bytes | None
    duration: float = 0.0
    type_name: str = ""
    #: when the run started (the worker's ``time.time()``) and on which thread; for the
    #: dashboard's task stream and performance reports
    start: float = 0.0
    thread: str = ""


@message("task-erred")
class TaskErred:
    """A run raised. ``error`` is the pickled exception (b"" if it would not pickle)."""

    key: str
    run_id: int
    error: bytes
    type_name: str
    text: str
    traceback: str = ""
    #: when the run started, how long it ran and on which thread (0, 0, "" when it
    #: failed before it began); for the dashboard's task stream and performance reports
    start: float = 0.0
    duration: float = 0.0
    thread: str = ""


@message("seceded")
class Seceded:
    """A run gave its slot back."""

    key: str
    run_id: int


@message("rejoin-requested")
class RejoinRequested:
    """A seceded run waits for a slot to come back to."""

    key: str
    run_id: int


@message("rejoined")
class Rejoined:
    """A seceded run holds a slot again."""

    key: str
    run_id: int


@message("tasks-returned")
class TasksReturned:
    """Answer to StealTasks: the runs that had not started and were dropped."""

    keys: list[str]
    run_ids: list[int]


@message("data-reply")
class DataReply:
    """Answer to GetData: small results in ``blobs``; large ones are fetched by the asker
    from the bulk data address of a worker holding them (``far_keys[i]`` is at
    ``far_addresses[i]``). ``missing`` are not in memory anywhere."""

    request_id: int
    keys: list[str]
    blobs: list[bytes]
    missing: list[str] = attrs.Factory(list)
    far_keys: list[str] = attrs.Factory(list)
    far_addresses: list[str] = attrs.Factory(list)


@message("worker-closing")
class WorkerClosing:
    """The worker is shutting down: assign it nothing more (it hands back its queue)."""


@message("heartbeat")
class Heartbeat:
    """I am alive (sent when a connection has been quiet)."""


# --------------------------------------------------------------------- scheduler -> worker


@message("function")
class Function:
    """A pickled function the worker has not seen; precedes the ComputeTask using it."""

    fn_id: str
    blob: bytes


@message("compute-task")
class ComputeTask:
    """Run ``key`` as run ``run_id``.

    Dependencies: ``deps[i]`` is available inline as ``dep_inline[i]`` (small results the
    scheduler holds) or must be fetched from the worker at data address ``dep_holders[i]``
    ("" when this worker already holds it).
    """

    key: str
    run_id: int
    fn_id: str
    payload: bytes
    priority: list[int]
    deps: list[str] = attrs.Factory(list)
    dep_inline: list[bytes | None] = attrs.Factory(list)
    dep_holders: list[str] = attrs.Factory(list)
    is_async: bool = False
    #: the task needs abstract resources: it takes them again before it rejoins
    has_resources: bool = False


@message("steal-tasks")
class StealTasks:
    """Give these runs back if they have not started yet."""

    keys: list[str]
    run_ids: list[int]


@message("free-keys")
class FreeKeys:
    """Drop these results from memory."""

    keys: list[str]


@message("expect-data")
class ExpectData:
    """A client will upload these scattered keys here: accept them, and let runs and
    peers that need them wait for them rather than fail."""

    keys: list[str]


@message("wait-failed")
class WaitFailed:
    """A run's wait can never finish: raise ``kind`` (e.g. "deadlock") with ``report``."""

    run_key: str
    run_id: int
    kind: str
    report: str


# --------------------------------------------------------------------- scheduler -> client


@message("scatter-to")
class ScatterTo:
    """Upload the value scattered as ``key`` to the worker serving bulk data at
    ``address`` (again, when the first worker given was lost)."""

    key: str
    address: str


@message("key-finished")
class KeyFinished:
    """A key the receiver holds a future for is done."""

    key: str
    nbytes: int
    inline: bytes | None
    type_name: str = ""


@message("key-erred")
class KeyErred:
    """A key the receiver holds a future for failed.

    ``kind`` is "" for an exception the task raised (``error`` is it, pickled), or one of
    "killed-worker", "cancelled", "lost", "deadlock", "no-workers" for failures the
    scheduler decided (then ``text`` is the message and ``error`` is empty: the
    scheduler never pickles).
    """

    key: str
    kind: str
    error: bytes
    type_name: str
    text: str
    traceback: str = ""
    workers: list[str] = attrs.Factory(list)


@message("key-restarted")
class KeyRestarted:
    """A finished key's only copy was lost with its worker; it is being recomputed."""

    key: str


@message("status-request")
class StatusRequest:
    """Ask the scheduler for a snapshot of the cluster."""

    request_id: int
    #: also list the keys each worker holds (``who_has``/``has_what``)
    with_keys: bool = False


@message("status-reply")
class StatusReply:
    """A cluster snapshot: workers as maps, task counts by state."""

    request_id: int
    workers: list[Any]
    tasks: Any


@message("runs-request")
class RunsRequest:
    """Ask for the scheduler's record of finished runs, from run number ``since`` on
    (runs are numbered from 0 in the order they finished), at most ``limit`` of them."""

    request_id: int
    since: int
    limit: int


@message("runs-reply")
class RunsReply:
    """Finished runs ``start`` to ``end - 1`` (``start > since`` when older ones were
    forgotten), each [key, worker name, thread, start, duration, nbytes, parent key,
    depth, returned (false: raised)]; ``total`` runs have finished so far."""

    request_id: int
    start: int
    end: int
    total: int
    runs: list[Any]


@message("worker-threads")
class WorkerThreads:
    """A worker's task threads and memory, for the dashboard (sent when they change,
    at most once a second): threads alive, of them idle, started beyond the cap to avoid
    a deadlock (overflow), and the process's resident memory in bytes (0: unknown)."""

    threads: int
    idle: int
    overflow: int
    rss: int
@message("why-request")
class WhyRequest:
    """Ask the scheduler why ``key`` has not finished (``Client.why``)."""

    request_id: int
    key: str


@message("why-reply")
class WhyReply:
    """The chain of reasons ``key`` waits, as text the scheduler built from its own
    records (see ``core/scheduler/explain.py``)."""

    request_id: int
    key: str
    text: str


@message("task-placed")
class TaskPlaced:
    """Worker -> scheduler: a task running here submitted ``key``, and this worker
    queued it on itself as run ``run_id`` (always 1: the first run of a new key).

    It replaces ``SubmitTask`` + ``ComputeTask`` for a child placed on its parent's
    worker; the scheduler records it as if it had assigned it there. ``payload`` travels
    so the scheduler can run it elsewhere (stolen back, retried, its worker lost).
    """

    key: str
    run_id: int
    fn_id: str
    payload: bytes
    parent: str  # the submitting run's key: the scheduler derives the depth from it
    is_async: bool = False
    retries: int = 0
    priority: int = 0
    run_once: bool = False


# --------------------------------------------------------------------- coordination primitives
# (Lock, Semaphore, Queue, Event, Variable; the scheduler keeps their state as opaque
# bytes: see ``core/scheduler/coordination.py``)


@message("primitive-request")
class PrimitiveRequest:
    """One operation on a named primitive; answered by one ``PrimitiveReply``.

    ``kind`` is "lock", "semaphore", "queue", "event" or "variable"; ``op`` one of the
    operations of that kind (``acquire``, ``put``, ``wait``, ...). ``holder`` names the
    client-side object (leases belong to it); ``value`` is a pickled item or value;
    ``number`` is ``max_leases`` or ``maxsize``. A request from a running task carries
    its run (``run_key``, ``run_id``), so a blocking one is part of the wait-for graph;
    ``has_timeout`` waits never count as blocked, ``nowait`` ones never wait.
    """

    request_id: int
    kind: str
    name: str
    op: str
    holder: str = ""
    value: bytes | None = None
    number: int = 0
    has_timeout: bool = False
    nowait: bool = False
    run_key: str = ""
    run_id: int = 0


@message("primitive-cancel")
class PrimitiveCancel:
    """The sender stopped waiting for request ``request_id`` (its timeout passed, or it
    was cancelled): if it still waits, answer it with status "timeout"."""

    request_id: int


@message("primitive-handles")
class PrimitiveHandles:
    """The sender's number of live client-side objects for a primitive changed by
    ``delta``: a client holding one may still put, set or get it (deadlock rule)."""

    kind: str
    name: str
    delta: int


@message("primitive-reply")
class PrimitiveReply:
    """The answer to a ``PrimitiveRequest``: ``status`` "ok", "timeout", "deadlock",
    "error" or "invalid" (``text`` says why); ``values`` the pickled items got;
    ``number`` a count (``qsize``, held leases) or a flag (``is_set``, ``released``)."""

    request_id: int
    status: str
    values: list[bytes] = attrs.Factory(list)
    number: int = 0
    text: str = ""


# ------------------------------------------------------------------ replicas (Client.replicate)


@message("replicate-request")
class ReplicateRequest:
    """Client -> scheduler: have ``n`` workers (0: every one) among ``workers`` (empty:
    all) hold each of ``keys``; answered by ``ReplicateReply`` once they do."""

    request_id: int
    keys: list[str]
    n: int
    workers: list[str]


@message("replicate-reply")
class ReplicateReply:
    """The end of a ``ReplicateRequest``: ``kind`` "" (done), "value" (bad input:
    unknown worker, key not in memory) or "lost" (a copy could not be made); ``text``
    says which and why."""

    request_id: int
    kind: str
    text: str


@message("fetch-replicas")
class FetchReplicas:
    """Scheduler -> worker: fetch ``keys[i]`` from the bulk data address ``holders[i]``
    and keep it; answer ``ReplicasFetched``."""

    keys: list[str]
    holders: list[str]


@message("replicas-fetched")
class ReplicasFetched:
    """Worker -> scheduler: the keys of a ``FetchReplicas`` now held here, and those
    that could not be fetched."""

    keys: list[str]
    failed: list[str]


# ------------------------------------------------------------------ restart (Client.restart)


@message("restart-request")
class RestartRequest:
    """Client -> scheduler: cancel every task and restart every worker."""

    request_id: int


@message("restart-reply")
class RestartReply:
    """The tasks are cancelled and the workers told to restart (``kind`` ""), or
    nothing was done (``kind`` "refused", ``text`` says why); ``workers`` are the ids
    of the workers restarting (the client waits for as many new ones)."""

    request_id: int
    kind: str
    text: str
    workers: list[str]


@message("restart-worker")
class RestartWorker:
    """Scheduler -> worker: exit now with ``config.EXIT_RESTART``; the nanny starts a
    fresh process."""
