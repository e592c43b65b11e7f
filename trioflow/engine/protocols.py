"""The seams between the engine and the layers around it, as ``typing.Protocol``s.

The engine (sessions, futures, the in-task context) is shared by clients and by the
worker's in-task clients. It never imports the network shell or the client classes;
what it needs from them is written here, and they satisfy it:

* ``Connection``: where a session's messages go (``net.connection.PeerConnection``,
  ``LocalConnection``).
* ``BulkTransport``: how large values move (``net.bulk.BulkPool``).
* ``HostWorker``: what a worker gives the tasks it runs (``net.worker_node.WorkerNode``)
  — its slots, its thread pool, the values it holds. This is dask's ``BaseWorker``
  contract turned around: the lower layer names what it needs, the upper one provides.
* ``BoundClient``: a client object that ``get_client()`` may hand out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

import trio

from .. import protocol as p
from ..core.worker import LocalRun
from .keys import HelpingPool, KeyState
from .replies import ReplyTable
from .services import ServiceCalls


class Connection(Protocol):
    """A scheduler connection as a session uses it (``send`` only on its loop)."""

    def send(self, message: Any) -> None: ...

    def send_many(self, messages: list[Any]) -> None:
        """``send`` each of ``messages``, in order (a connection may send them at once)."""

    async def flush(self) -> None: ...


class BulkTransport(Protocol):
    """The bulk data path: serialized values (frames) to and from a worker's data port."""

    async def get(self, address: str, keys: list[str]) -> tuple[dict[str, list[Any]], list[str]]:
        """The frames of ``keys`` held at ``address``, and the keys it does not hold."""
        ...

    async def put(self, address: str, values: dict[str, list[Any]]) -> None:
        """Upload serialized values to the worker at ``address``."""
        ...


class LocalStore(Protocol):
    """The values a worker holds, as its in-task clients reach them (no copy)."""

    def holds(self, key: str) -> bool: ...

    def value(self, key: str) -> Any: ...

    def put_local(self, key: str, value: Any) -> None: ...


class Wakeup(Protocol):
    """What a rejoin waits on: a ``trio.Event`` or a ``SyncWaiter``."""

    def set(self) -> None: ...


class HostWorker(Protocol):
    """What a worker provides to the runs it executes.

    ``secede_run``, ``rejoin_run`` and ``place_child`` are called by the run itself, on
    its own thread (the loop for async runs), after the messages it posted before: the
    worker's ledger sends what they cause behind those (``Session.send_in_order``), so
    the scheduler sees a ``Seceded`` before the ``WaitKeys`` that follows it.
    """

    @property
    def auto_secede(self) -> bool:
        """Every wait inside a sync task gives the slot back."""
        ...

    @property
    def data_address(self) -> str:
        """Where this worker serves values over the bulk data path."""
        ...

    @property
    def store(self) -> LocalStore: ...

    @property
    def threads(self) -> HelpingPool: ...

    def secede_run(self, run: LocalRun, reserve: bool = False) -> None:
        """Give ``run``'s slot back (the run's thread); with ``reserve``, keep it free for
        the run until its next event: the children it waits on next start in it."""
        ...

    def unreserve_run(self, run: LocalRun) -> None:
        """The slot kept for ``run`` (``secede_run`` with ``reserve``, or kept for it
        when its wait ended here) is filled now: it begins to wait (the run's thread)."""
        ...

    def rejoin_run(self, run: LocalRun, wakeup: Wakeup) -> None:
        """``run`` wants a slot again; ``wakeup.set()`` once it has one, maybe in the
        call (the run's thread)."""
        ...

    def place_child(self, msg: p.TaskPlaced, depth: int, fn_blob: bytes) -> None:
        """Queue a child a run here submitted on this worker, and tell the scheduler
        (``msg``, in order with what the run posted before); or, when the worker will
        not take it, send the equivalent ``SubmitTask`` instead (the run's thread)."""
        ...


class BoundClient(Protocol):
    """A client ``get_client()`` may return: it knows whether it is closed."""

    @property
    def closed(self) -> bool: ...


class TaskSession(Protocol):
    """What a run's context needs of the worker's session: ordered posting."""

    def post(self, *messages: Any) -> None:
        """Send messages in order, from any thread; never blocks."""
        ...

    def call_in_order(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop after everything posted before."""
        ...


class FutureSession(TaskSession, Protocol):
    """What a ``Future`` needs of the session it belongs to (``engine.session.Session``)."""

    @property
    def lock(self) -> threading.Lock: ...

    @property
    def trio_token(self) -> trio.lowlevel.TrioToken: ...

    @property
    def worker(self) -> HostWorker | None: ...

    @property
    def replies(self) -> ReplyTable:
        """Requests waiting for their one answer (coordination primitives, resources)."""
        ...

    @property
    def services(self) -> ServiceCalls:
        """The scheduler's services (``Future.retry`` asks through them)."""
        ...

    def on_loop(self) -> bool: ...

    def incref(self, ks: KeyState) -> None: ...

    def decref(self, ks: KeyState) -> None: ...

    def adopt(self, key: str) -> KeyState: ...

    def cancel(self, states: list[KeyState], reason: str) -> None: ...

    def wait_sync(self, states: list[KeyState], timeout: float | None = None) -> None: ...

    async def wait_async(self, states: list[KeyState]) -> None: ...

    def value(self, ks: KeyState) -> Any: ...

    async def value_async(self, ks: KeyState) -> Any: ...
