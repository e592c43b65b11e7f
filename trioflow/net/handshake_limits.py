"""What a peer may cost a server before it has proved who it is, and the per-peer boundary.

Before its Hello is accepted, a peer is anybody who can reach the port. It must not be
able to make us hold much memory, or a descriptor for long, and nothing it does may stop
the server. This module holds the limits and the WebSocket server that enforces them:

* **Time.** The HTTP upgrade request must arrive within ``UPGRADE_TIMEOUT`` of the TCP
  accept (a TLS handshake included), and the Hello within ``HELLO_TIMEOUT`` of the
  upgrade. A peer that goes away before sending its request releases its descriptor at
  once: trio-websocket alone would hold it for the whole connect timeout.
* **Memory.** Until ``open_limits`` is called, a WebSocket message may be at most
  ``MAX_HELLO_SIZE`` bytes and the socket is read ``PREAUTH_RECEIVE_BUFFER`` bytes at a
  time. trio-websocket checks its message size limit on every chunk wsproto hands it, so
  an oversized first frame is refused (close code 1009) after at most one read past the
  limit, not after it has been buffered whole. h11 bounds the HTTP request (16 KiB).
* **Failures.** ``GuardedWebSocketServer`` serves each connection inside a boundary that
  logs whatever escapes (computing the peer's address once, defensively: a reset socket
  has none) and closes that connection only. trio-websocket lets an exception from a
  connection's tasks take the whole server down.

The server reuses trio-websocket's connection class and its reader task; only the
per-connection setup of ``WebSocketServer`` is replaced.
"""

from __future__ import annotations

import logging
import ssl
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio
import wsproto.utilities
from trio_websocket import WebSocketConnection, WebSocketRequest, WebSocketServer
from wsproto import ConnectionType, WSConnection

from ..config import MAX_HELLO_SIZE, UPGRADE_TIMEOUT
from ..errors import InternalError

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

logger = logging.getLogger(__name__)

#: Bytes read from the socket at a time before the peer is authenticated.
PREAUTH_RECEIVE_BUFFER = 16 * 1024


def peer_address(obj: Any) -> str:
    """``host:port`` of the other end of a stream, a WebSocket or a WebSocket request,
    or ``"?"``: never raises (``getpeername`` fails with ENOTCONN once a peer reset)."""
    try:
        stream = getattr(obj, "_connection", obj)  # a WebSocketRequest's connection
        stream = getattr(stream, "_stream", stream)  # a WebSocketConnection's stream
        stream = getattr(stream, "transport_stream", stream)  # under TLS
        host, port, *_ = stream.socket.getpeername()
        return f"{host}:{port}"
    except Exception:
        return "?"


def open_limits(ws: WebSocketConnection, max_message_size: int, receive_buffer_size: int
                ) -> None:
    """Raise an authenticated peer's limits to the documented ones.

    trio-websocket reads both attributes afresh for every chunk, so they apply from the
    next read on. It has no public setter; ``tests/unit/test_handshake_limits.py`` pins
    the attributes so that an upgrade renaming them fails loudly.
    """
    ws._max_message_size = max_message_size
    ws._receive_buffer_size = receive_buffer_size


def is_internal(exc: BaseException) -> bool:
    """Whether ``exc`` is, or (in exception groups) contains, an ``InternalError``: a
    bug in trioflow, which no per-peer boundary may swallow."""
    if isinstance(exc, InternalError):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(is_internal(e) for e in exc.exceptions)
    return False


def log_peer_failure(text: str, remote: str) -> None:
    """Log an unexpected error from serving one peer (with its traceback). Never raises:
    the boundary that calls it must close this peer and nothing else."""
    try:
        logger.exception("%s %s", text, remote)
    except Exception:  # pragma: no cover - a broken logging handler
        pass


class GuardedWebSocketServer(WebSocketServer):
    """A ``trio_websocket.WebSocketServer`` whose connections cannot hurt the server.

    Each connection starts with the pre-authentication limits (``MAX_HELLO_SIZE``,
    ``PREAUTH_RECEIVE_BUFFER``); the handler raises them with ``open_limits`` once it
    trusts the peer. The upgrade request must come within ``connect_timeout``, and a
    peer that leaves before sending it is closed at once. Anything the connection's
    tasks or the handler raise, except cancellation, is logged and closes that
    connection only.

    Cancellation (the server stopping) closes the connection without a close handshake.
    """

    async def _handle_connection(self, stream: trio.abc.Stream) -> None:
        remote = peer_address(stream)  # now: once the peer resets, it has no address
        try:
            await self._serve_connection(stream, remote)
        except Exception as exc:
            if is_internal(exc):
                raise  # a bug of ours: the handler logged it; it must stop the server
            log_peer_failure("error while serving a peer from", remote)
        finally:
            await trio.aclose_forcefully(stream)

    async def _serve_connection(self, stream: trio.abc.Stream, remote: str) -> None:
        async with trio.open_nursery() as nursery:
            connection = WebSocketConnection(
                stream, WSConnection(ConnectionType.SERVER),
                message_queue_size=self._message_queue_size,
                max_message_size=min(self._max_message_size, MAX_HELLO_SIZE),
                receive_buffer_size=PREAUTH_RECEIVE_BUFFER)
            waiting = trio.CancelScope(deadline=trio.current_time() + self._connect_timeout)

            async def read() -> None:
                try:
                    await connection._reader_task()
                except wsproto.utilities.LocalProtocolError as exc:
                    # trio-websocket answering a peer in a state where wsproto forbids
                    # it (e.g. a 1009 close while our own close is under way; found by
                    # fuzz/test_live_scheduler.py; trio-websocket issue 175): the peer
                    # misbehaved, the connection is over, nothing is wrong here
                    logger.debug("peer %s: connection ended: %s", remote, exc)
                finally:
                    waiting.cancel()  # the peer left before (or after) its request

            nursery.start_soon(read)
            request: WebSocketRequest | None = None
            with waiting:
                request = await connection._get_request()
            if request is None:
                nursery.cancel_scope.cancel()
                return
            try:
                await self._handler(request)
            finally:
                with trio.move_on_after(self._disconnect_timeout):
                    await connection.aclose()  # also ends the reader task


async def serve_guarded_websocket(
    handler: Callable[[WebSocketRequest], Awaitable[None]], host: str, port: int,
    ssl_context: ssl.SSLContext | None, *, handler_nursery: trio.Nursery,
    max_message_size: int, disconnect_timeout: float,
    connect_timeout: float = UPGRADE_TIMEOUT,
    task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """``trio_websocket.serve_websocket`` with ``GuardedWebSocketServer``: listen on
    ``host:port`` and serve until cancelled; ``task_status.started(server)``.

    ``max_message_size`` is the limit after ``open_limits``; before, ``MAX_HELLO_SIZE``.
    """
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]]
    if ssl_context is None:
        listeners = await trio.open_tcp_listeners(port, host=host)
    else:
        listeners = await trio.open_ssl_over_tcp_listeners(port, ssl_context, host=host,
                                                           https_compatible=True)
    server = GuardedWebSocketServer(
        handler, listeners, handler_nursery=handler_nursery,
        max_message_size=max_message_size, receive_buffer_size=PREAUTH_RECEIVE_BUFFER,
        connect_timeout=connect_timeout, disconnect_timeout=disconnect_timeout)
    await server.run(task_status=task_status)
