"""Messages of the cluster's services beside running tasks: status, run history and
``why`` queries, coordination primitives, replicas and restarts. Same rules as
:mod:`.messages`."""

from __future__ import annotations

from typing import Any

import attrs

from .registry import message

# --------------------------------------------------------------------- queries (status, runs, why)


@message("status-request")
class StatusRequest:
    """Ask the scheduler for a snapshot of the cluster."""

    request_id: int
    #: also list the keys each worker holds (``who_has``/``has_what``)
    with_keys: bool = False
    #: answer once at least this many workers are connected (0: at once); how
    #: ``wait_for_workers`` waits without polling
    min_workers: int = 0


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


# ------------------------------------------------------------------ datasets (Client.publish_dataset)


@message("dataset-request")
class DatasetRequest:
    """Client -> scheduler: one operation on the cluster's named datasets. ``op`` is
    "publish" (``blob``: the pickled data, opaque here; ``keys``: the futures inside it,
    which the scheduler holds from then on, until the dataset is deleted; ``override``:
    replace a dataset of that name), "get", "delete" or "list"."""

    request_id: int
    op: str
    name: str = ""
    blob: bytes = b""
    keys: list[str] = attrs.Factory(list)
    override: bool = False


@message("dataset-reply")
class DatasetReply:
    """The answer to a ``DatasetRequest``: ``status`` "ok", "missing" (no dataset of
    that name), "exists" (a publish without ``override``) or "invalid" (``text`` says
    why); ``blob``: the data of a "get"; ``names``: the datasets of a "list"."""

    request_id: int
    status: str
    text: str = ""
    blob: bytes = b""
    names: list[str] = attrs.Factory(list)


# ------------------------------------------------------------------ retry (Client.retry)


@message("retry-request")
class RetryRequest:
    """Client -> scheduler: run these failed tasks again, and the failed tasks they
    depend on; answered by ``RetryReply`` after the ``KeyRestarted`` of each."""

    request_id: int
    keys: list[str]


@message("retry-reply")
class RetryReply:
    """The end of a ``RetryRequest``: ``retried`` the keys running again; ``refused``
    those that cannot (``text`` says why for each, one per line)."""

    request_id: int
    retried: list[str]
    refused: list[str] = attrs.Factory(list)
    text: str = ""


# ------------------------------------------------------------------ worker plugins (Client.register_plugin)


@message("plugin-request")
class PluginRequest:
    """Client -> scheduler: ``op`` "register" (``blob``: the pickled plugin, opaque here;
    every worker, and every worker that joins later, sets it up; ``idempotent``: keep a
    plugin already registered under ``name``) or "unregister"; answered by one
    ``PluginReply``."""

    request_id: int
    op: str
    name: str
    blob: bytes = b""
    idempotent: bool = False


@message("plugin-reply")
class PluginReply:
    """The answer to a ``PluginRequest``: ``status`` "ok", "missing" (no plugin of that
    name) or "invalid" (``text`` says why). A registration is answered once every worker
    connected at the time has set the plugin up or left: ``results`` holds [worker
    name, error text ("" when its setup returned)] for each."""

    request_id: int
    status: str
    text: str = ""
    results: list[Any] = attrs.Factory(list)


@message("install-plugin")
class InstallPlugin:
    """Scheduler -> worker: set up plugin ``name`` (``blob``: pickled by the client),
    replacing one of that name, before any run starts; answer ``PluginInstalled``."""

    name: str
    blob: bytes


@message("remove-plugin")
class RemovePlugin:
    """Scheduler -> worker: tear plugin ``name`` down and forget it."""

    name: str


@message("plugin-installed")
class PluginInstalled:
    """Worker -> scheduler: plugin ``name`` is set up (``error`` empty), or its setup
    failed (``error``: what it raised, as text)."""

    name: str
    error: str = ""


# ------------------------------------------------------------------ metadata and events (dask's)


@message("metadata-request")
class MetadataRequest:
    """Client -> scheduler: ``op`` "set" stores ``value`` (plain msgpack data, never a
    pickle) at the path ``keys`` of the cluster's metadata tree, making the dicts on the
    way; "get" reads the value there (``Client.set_metadata``/``get_metadata``)."""

    request_id: int
    op: str
    keys: list[str]
    value: Any = None


@message("metadata-reply")
class MetadataReply:
    """The answer to a ``MetadataRequest``: ``status`` "ok" (``value``: what a "get"
    found), "missing" or "invalid" (``text`` says why)."""

    request_id: int
    status: str
    value: Any = None
    text: str = ""


@message("event-request")
class EventRequest:
    """Client -> scheduler: ``op`` "log" appends ``[stamp, msg]`` (``msg`` plain msgpack
    data, ``stamp`` the logger's clock) to each of ``topics``; "get" reads the events of
    ``topics`` (none given: every topic) (``Client.log_event``/``get_events``)."""

    request_id: int
    op: str
    topics: list[str]
    msg: Any = None
    stamp: float = 0.0


@message("event-reply")
class EventReply:
    """The answer to an ``EventRequest``: ``status`` "ok" or "invalid" (``text`` says
    why); ``events``: for a "get", ``{topic: [[stamp, msg], ...]}``, oldest first."""

    request_id: int
    status: str
    events: Any = None
    text: str = ""
