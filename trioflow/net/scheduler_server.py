"""The scheduler's Trio shell: a WebSocket server feeding the core ``Scheduler``.

Each peer gets a handler task (reader) and a writer task. The reader decodes a frame,
hands it to the core as one event, and executes the commands that come back: a
``Send`` appends to that peer's outbox (the writer batches), a ``Close`` closes it.
The core is only ever called from handler tasks of one Trio thread and never awaits,
so it needs no lock and no queue.

Robustness: every connection is served inside a boundary (``handshake_limits``) that logs
whatever it raises and closes only that peer. Bad frames, wrong versions, wrong tokens
and browser-origin requests close one connection with a 4xxx code; everyone else keeps
being served. Until its Hello is accepted a peer gets small limits (a 64 KiB message,
5 s for the upgrade and 5 s for the Hello); then the documented ones. The exception is
a bug in the core (an ``InternalError``, after which the core refuses every event):
that one stops the scheduler, with one critical log line, rather than serve everyone
from a state that may be corrupt.

This module never imports ``serialize``: payloads stay opaque bytes here.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import secrets
import ssl
from collections.abc import AsyncIterator
from typing import Any

import trio
from trio_websocket import ConnectionClosed

from .. import config
from .. import protocol as p
from ..config import HELLO_TIMEOUT, MAX_HELLO_SIZE, UPGRADE_TIMEOUT
from ..core.events import Close, MessagesReceived, PeerJoined, PeerLeft, Send, TimePassed
from ..core.scheduler import Scheduler
from ..errors import (
    AuthenticationError,
    InternalError,
    RemoteProtocolError,
)
from ..versions import versions
from . import handshake
from .connection import RECEIVE_BUFFER_SIZE, PeerConnection
from .handshake_limits import (
    log_peer_failure,
    open_limits,
    peer_address,
    serve_guarded_websocket,
)
from .local_link import AnyConnection, LocalConnection, local_pair
from .ws_upgrade import UpgradeRequest

logger = logging.getLogger(__name__)

#: A peer must complete its Hello within this many seconds of the WebSocket upgrade
#: (which itself must come within ``UPGRADE_TIMEOUT`` of connecting).
HANDSHAKE_TIMEOUT = HELLO_TIMEOUT


class SchedulerServer:
    """Serve the scheduler on ``host:port``.

    Args:
        token: if set, every peer must present it in its Hello.
        ssl_context: serve ``wss://`` with this context.
        inline_limit: see ``Scheduler``.
        max_message_size: frame size limit, both directions.

    Use ``await nursery.start(server.serve, host, port)``; it returns the address.
    Cancellation closes every connection and stops listening.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        inline_limit: int = config.INLINE_LIMIT,
        allowed_failures: int = config.ALLOWED_FAILURES,
        max_message_size: int = config.MAX_MESSAGE_SIZE,
        peer_timeout: float = config.PEER_TIMEOUT,
        no_workers_timeout: float | None = config.NO_WORKERS_TIMEOUT,
    ) -> None:
        if no_workers_timeout is not None and not 0 < no_workers_timeout < float("inf"):
            no_workers_timeout = None  # 0 or inf: wait for workers forever
        #: the sans-IO core; ``state`` is its records (read by tests and ``wait_for``)
        # a unique id: a client can tell a future of another cluster from a released one
        self.core = Scheduler(inline_limit=inline_limit, allowed_failures=allowed_failures,
                              no_workers_timeout=no_workers_timeout,
                              scheduler_id=f"scheduler-{secrets.token_hex(6)}")
        self.state = self.core.state
        self._versions = versions()  # (sent in each Welcome: Client.get_versions)
        self.token = token
        self.ssl_context = ssl_context
        self.max_message_size = max_message_size
        self.peer_timeout = peer_timeout
        self.conns: dict[str, PeerConnection] = {}
        #: cancel scope of each peer's handler, to drop a silent peer
        self._scopes: dict[str, trio.CancelScope] = {}
        self.address = ""
        self._ids = itertools.count(1)
        self._changed = trio.Event()
        self._watchers = 0
        self._nursery: trio.Nursery | None = None
        self._internal_error_logged = False
        #: ``http://host:port`` of the dashboard serving this scheduler ("" if none); set
        #: by whoever starts it (``trioflow.dashboard``), told to peers in the Welcome
        self.dashboard_address = ""

    def __repr__(self) -> str:
        return f"<SchedulerServer {self.address} peers={len(self.conns)}>"

    async def serve(self, host: str = "127.0.0.1", port: int = 0, *,
                    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled; ``task_status.started(address)``."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            server = await nursery.start(
                lambda task_status: serve_guarded_websocket(
                    self._handle, host, port, self.ssl_context,
                    handler_nursery=nursery,
                    max_message_size=self.max_message_size,
                    connect_timeout=UPGRADE_TIMEOUT,
                    task_status=task_status,
                )
            )
            scheme = "wss" if self.ssl_context else "ws"
            shown = host if ":" not in host else f"[{host}]"
            self.address = f"{scheme}://{shown}:{server.port}"
            logger.info("scheduler listening on %s", self.address)
            nursery.start_soon(self._drop_silent_peers)
            if no_workers := self.state.no_workers_timeout:
                nursery.start_soon(self._tick, min(config.TICK_INTERVAL, no_workers / 4))
            task_status.started(self.address)

    async def _tick(self, interval: float) -> None:
        """Feed the core our clock (``TimePassed``) every ``interval`` seconds: its
        timers (the no-workers timeout) run on it. A task then fails between the
        timeout and the timeout plus one interval after it became unrunnable."""
        while True:
            await trio.sleep(interval)
            try:
                self._execute(self.core.handle(TimePassed(trio.current_time())))
            except InternalError:
                self._stop_on_internal_error(self.core.failure or InternalError("tick"))
                raise

    async def _drop_silent_peers(self) -> None:
        """Disconnect peers we have heard nothing from (not even a heartbeat) for
        ``peer_timeout`` seconds: a cut link or a frozen host never closes its socket."""
        while True:
            await trio.sleep(self.peer_timeout / 4)
            now = trio.current_time()
            for peer_id, conn in list(self.conns.items()):
                if now - conn.last_received > self.peer_timeout:
                    logger.warning("%s silent for %.1fs; dropping it", conn.name,
                                   now - conn.last_received)
                    scope = self._scopes.get(peer_id)
                    if scope is not None:
                        scope.cancel()

    async def wait_for_workers(self, n: int) -> None:
        """Return once at least ``n`` workers are connected."""
        await self.wait_for(lambda: len(self.state.workers) >= n)

    async def wait_for(self, predicate: Any) -> None:
        """Return once ``predicate()`` holds; re-checked after every event the core
        handles (for tests and tools: no polling)."""
        self._watchers += 1
        try:
            while not predicate():
                await self._changed.wait()
        finally:
            self._watchers -= 1

    def _changed_now(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _stop_on_internal_error(self, failure: InternalError) -> None:
        """The core broke an invariant: log it once; the caller re-raises, which ends
        ``serve`` (every peer's handler then fails the same way, without a log).

        Callers test ``core.failure`` rather than the exception's type: the error may
        arrive inside an ExceptionGroup (raised in a nursery's body), or as the core's
        refusal of the PeerLeft that ``_run_peer`` sends on the way out."""
        if not self._internal_error_logged:
            self._internal_error_logged = True
            logger.critical("internal error in the scheduler core; stopping the scheduler",
                            exc_info=failure)

    # ------------------------------------------------------------------ per peer

    async def _handle(self, request: UpgradeRequest) -> None:
        """Serve one WebSocket peer; whatever happens, only this peer is affected."""
        # the address once, now: a peer that resets has none, and asking again while
        # logging an error is what once let one reset stop the whole server
        remote = peer_address(request)
        try:
            await self._serve_peer(request, remote)
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except Exception:
            if self.core.failure is not None:
                self._stop_on_internal_error(self.core.failure)
                raise
            # never let one peer's failure stop the server
            log_peer_failure("error while serving a peer from", remote)

    async def _serve_peer(self, request: UpgradeRequest, remote: str) -> None:
        if any(name.lower() == b"origin" for name, _ in request.headers):
            # browsers always send Origin; our peers never do. Refusing it blocks
            # cross-site WebSocket hijacking and DNS rebinding from a web page.
            await request.reject(403, body=b"browser origins are not allowed\n")
            logger.warning("refused a browser-origin connection from %s", remote)
            return
        conn: PeerConnection | None = None
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                ws = await request.accept()
                conn = PeerConnection(ws, name=remote, max_message_size=self.max_message_size)
                hello = await self._handshake(conn)
        except (RemoteProtocolError, AuthenticationError) as exc:
            logger.warning("refused peer %s: %s", remote, exc)
            assert conn is not None  # only the Hello is refused
            await conn.aclose(handshake.close_code(exc), str(exc))
            return
        except trio.TooSlowError:
            logger.warning("peer %s sent no Hello in %ss", remote, HANDSHAKE_TIMEOUT)
            if conn is not None:  # else the server closes the socket
                await conn.aclose(p.CLOSE_PROTOCOL_ERROR, "no hello in time")
            return
        # authenticated: from now on the documented limits apply
        open_limits(ws, self.max_message_size, RECEIVE_BUFFER_SIZE)
        await self._run_peer(conn, hello, remote)

    @contextlib.asynccontextmanager
    async def open_local_peer(self, name: str = "local") -> AsyncIterator[LocalConnection]:
        """An in-process connection to this scheduler, for a client on the same Trio
        loop (a local cluster's own client): the same handshake and the same per-peer
        handling as over WebSocket, without sockets, framing or codec. Closes on exit."""
        if self._nursery is None:
            raise RuntimeError("the scheduler is not serving")
        here, there = local_pair(f"scheduler ({name})", name)
        self._nursery.start_soon(self._serve_local_peer, there)
        try:
            yield here
        finally:
            with trio.CancelScope(shield=True):
                await here.aclose(1000, "bye")

    async def _serve_local_peer(self, conn: LocalConnection) -> None:
        try:
            try:
                with trio.fail_after(HANDSHAKE_TIMEOUT):
                    messages = await conn.receive()
                if len(messages) != 1 or not isinstance(messages[0], p.Hello):
                    raise RemoteProtocolError("the first frame must hold exactly one hello")
                hello = self._check_hello(conn, messages[0])
            except (RemoteProtocolError, AuthenticationError) as exc:
                logger.warning("refused local peer: %s", exc)
                await conn.aclose(handshake.close_code(exc), str(exc))
                return
            await self._run_peer(conn, hello, "this process")
        except (ConnectionClosed, trio.TooSlowError):
            pass
        except Exception:
            if self.core.failure is not None:
                self._stop_on_internal_error(self.core.failure)
                raise
            logger.exception("error while serving a local peer")
        finally:
            conn.close(1001, "the scheduler stopped")  # as a socket would be, on shutdown

    async def _run_peer(self, conn: Any, hello: Any, remote: Any) -> None:
        """Serve one peer that has said Hello, until it leaves or is dropped."""
        peer_id = f"{hello.role[0]}{next(self._ids)}"
        conn.name = f"{hello.role} {hello.name or peer_id} ({peer_id})"
        self.conns[peer_id] = conn
        conn.send(p.Welcome(conn.version, peer_id, self.state.scheduler_id,
                            self.state.inline_limit, self.dashboard_address,
                            folds_slot_reports=True, versions=self._versions))
        logger.info("%s joined from %s", conn.name, remote)
        dropped = False
        try:
            with trio.CancelScope() as scope:
                self._scopes[peer_id] = scope
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(conn.run_writer)
                    nursery.start_soon(conn.run_heartbeats)
                    self._execute(self.core.handle(PeerJoined(peer_id, hello)))
                    self._changed_now()
                    await self._read(peer_id, conn)
                    nursery.cancel_scope.cancel()
            dropped = scope.cancelled_caught
        finally:
            self._scopes.pop(peer_id, None)
            # on cancellation (scheduler shutdown) the socket is simply dropped; a
            # graceful close would wait for peers that are shutting down too
            self.conns.pop(peer_id, None)
            self._execute(self.core.handle(PeerLeft(peer_id)))
            self._changed_now()
            logger.info("%s left", conn.name)
        if dropped and not isinstance(conn, LocalConnection):
            conn.closed = True  # its link is dead: a close handshake would only wait
        else:
            await conn.aclose(1000, "bye")

    async def _handshake(self, conn: PeerConnection) -> Any:
        # the frame reader refuses a longer message on its header (close code 1009):
        # until open_limits, its limit is MAX_HELLO_SIZE
        data = await conn.ws.get_message()
        if len(data) > MAX_HELLO_SIZE:
            raise RemoteProtocolError(f"hello of {len(data)} bytes is too large")
        messages = p.decode_frame(data, None)
        if len(messages) != 1 or not isinstance(messages[0], p.Hello):
            raise RemoteProtocolError("the first frame must hold exactly one hello")
        return self._check_hello(conn, messages[0])

    def _check_hello(self, conn: AnyConnection, hello: p.Hello) -> p.Hello:
        conn.version = handshake.check_hello(hello, self.token)
        return hello

    async def _read(self, peer_id: str, conn: Any) -> None:
        while True:
            try:
                messages = await conn.receive()
            except ConnectionClosed:
                return
            except RemoteProtocolError as exc:
                logger.warning("%s broke the protocol: %s; closing it", conn.name, exc)
                await conn.aclose(p.CLOSE_PROTOCOL_ERROR, str(exc))
                return
            self._execute(self.core.handle(MessagesReceived(peer_id, messages)))

    def _execute(self, commands: list[Any]) -> None:
        if self._watchers:
            self._changed_now()
        if self.state.warnings:
            for text in self.state.warnings:
                logger.warning("%s", text)
            self.state.warnings.clear()
        # each peer's messages of this event go to its connection together, as one
        # batch (``send_many``: at once, as one frame, when its writer is idle)
        conns = self.conns
        batches: dict[str, list[Any]] = {}
        for cmd in commands:
            if type(cmd) is Send:
                batch = batches.get(cmd.to)
                if batch is None:
                    batches[cmd.to] = [cmd.message]
                else:
                    batch.append(cmd.message)
            elif type(cmd) is Close:
                conn = conns.get(cmd.to)
                batch = batches.pop(cmd.to, None)
                if conn is not None and self._nursery is not None:
                    if batch:  # (what came before the Close goes first)
                        conn.send_many(batch)
                    logger.warning("closing %s: %s", conn.name, cmd.reason)
                    self._nursery.start_soon(conn.aclose, cmd.code, cmd.reason)
        for to, batch in batches.items():
            conn = conns.get(to)
            if conn is not None:
                conn.send_many(batch)
