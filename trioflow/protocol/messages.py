"""Every message that crosses a connection, as immutable attrs classes (frozen for the
type checker; see ``registry.message``).

Theory of operation:

* A message class is ``<Verb><Noun>`` with a kebab-case wire tag (``SubmitTask`` is
  ``submit-task``), registered with :func:`.registry.message`.
* The messages of the cluster's services beside running tasks (status, ``why``,
  primitives, replicas, restarts) are in :mod:`.services`.
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

from typing import Any

import attrs

from ..config import INLINE_LIMIT
from .registry import message

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
    #: the scheduler applies slot reports folded into other messages
    #: (``slot_reports``); a worker folds only when this is True
    folds_slot_reports: bool = False
    #: the scheduler process's host and package versions (``Client.get_versions``)
    versions: Any = attrs.Factory(dict)


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
    #: slot reports (Seceded/RejoinRequested/Rejoined) that followed this message in
    #: the worker's stream, folded in: (kind, key, run_id) triples, applied after it
    #: in order (``core.fold``; only to a scheduler that ``folds_slot_reports``)
    slot_reports: list[int | str] = attrs.Factory(list)


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
    #: names of the workers a large value may be uploaded to (empty: any)
    workers: list[str] = attrs.Factory(list)


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
    #: slot reports (Seceded/RejoinRequested/Rejoined) that followed this message in
    #: the worker's stream, folded in: (kind, key, run_id) triples, applied after it
    #: in order (``core.fold``; only to a scheduler that ``folds_slot_reports``)
    slot_reports: list[int | str] = attrs.Factory(list)


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
    #: slot reports (Seceded/RejoinRequested/Rejoined) that followed this message in
    #: the worker's stream, folded in: (kind, key, run_id) triples, applied after it
    #: in order (``core.fold``; only to a scheduler that ``folds_slot_reports``)
    slot_reports: list[int | str] = attrs.Factory(list)


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
    #: not a run's error: the finished value of ``key`` the sender held is gone for
    #: good (its spill write failed: a full disk), so the key fails with this error
    #: unless a copy is left elsewhere, and is never recomputed (``run_id`` is unused)
    dropped: bool = False


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
    """These runs' waits can never finish: raise ``kind`` (e.g. "deadlock") with ``report``.

    One message per worker and detection, listing every victim there, so the worker fails
    them all at once: failed one by one, the first victim's end could free the slot that
    lets a later victim's wait finish before its failure arrives (children placed on
    their parent's worker wake it there, with no scheduler message in between).
    """

    run_keys: list[str]
    run_ids: list[int]
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
    #: a worker holding the value when it is not inline (its bulk data address), so a
    #: client fetches it from there without asking the scheduler first ("": ask)
    holder: str = ""


@message("key-erred")
class KeyErred:
    """A key the receiver holds a future for failed.

    ``kind`` is "" for an exception the task raised (``error`` is it, pickled), or one of
    "killed-worker", "cancelled", "lost", "deadlock", "no-workers" for failures the
    scheduler decided (then ``text`` is the message and ``error`` is empty: the
    scheduler never pickles), or "discarded": a finished key whose value a worker had
    to drop (``TaskErred.dropped``; ``error`` is the worker's exception, pickled).
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
    #: slot reports (Seceded/RejoinRequested/Rejoined) that followed this message in
    #: the worker's stream, folded in: (kind, key, run_id) triples, applied after it
    #: in order (``core.fold``; only to a scheduler that ``folds_slot_reports``)
    slot_reports: list[int | str] = attrs.Factory(list)
