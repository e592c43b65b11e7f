"""What a peer may cost a server before it has proved who it is, and the per-peer boundary.

Before its Hello is accepted, a peer is anybody who can reach the port. It must not be
able to make us hold much memory, or a descriptor for long, and nothing it does may stop
the server. This module holds the limits and the WebSocket server that enforces them:

* **Time.** The HTTP upgrade request must arrive within ``UPGRADE_TIMEOUT`` of the TCP
  accept (a TLS handshake included), and the Hello within ``HELLO_TIMEOUT`` of the
  upgrade. A peer that goes away before sending its request releases its descriptor at
  once.
* **Memory.** Until ``open_limits`` is called, a WebSocket message may be at most
  ``MAX_HELLO_SIZE`` bytes and the socket is read ``PREAUTH_RECEIVE_BUFFER`` bytes at a
  time. The frame reader checks the limit on each frame's header, so an oversized first
  frame is refused (close code 1009) before its payload is buffered. h11 bounds the HTTP
  request (16 KiB).
* **Failures.** ``GuardedWebSocketServer`` serves each connection inside a boundary that
  logs whatever escapes (computing the peer's address once, defensively: a reset socket
  has none) and closes that connection only.

The upgrade is wsproto's; the frames after it are ``protocol.wsframe``'s, read in the
handler's own task (``net/websocket.py``).
"""

from __future__ import annotations

import functools
import logging
import ssl
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import trio

from ..config import MAX_HELLO_SIZE, UPGRADE_TIMEOUT
from ..errors import InternalError
from .websocket import WebSocket
from .ws_upgrade import UpgradeRequest, read_upgrade_request

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

logger = logging.getLogger(__name__)

#: Bytes read from the socket at a time before the peer is authenticated.
PREAUTH_RECEIVE_BUFFER = 16 * 1024


def peer_address(obj: Any) -> str:
    """``host:port`` of the other end of a stream, a WebSocket or a WebSocket request,
    or ``"?"``: never raises (``getpeername`` fails with ENOTCONN once a peer reset)."""
    try:
        stream = getattr(obj, "_stream", obj)  # an UpgradeRequest's or WebSocket's stream
        stream = getattr(stream, "transport_stream", stream)  # under TLS
        host, port, *_ = stream.socket.getpeername()
        return f"{host}:{port}"
    except Exception:
        return "?"


def open_limits(ws: WebSocket, max_message_size: int, receive_buffer_size: int) -> None:
    """Raise an authenticated peer's limits to the documented ones (from the next read
    on)."""
    ws.max_message_size = max_message_size
    ws.receive_buffer_size = receive_buffer_size


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


@attrs.define
class GuardedWebSocketServer:
    """A WebSocket server whose connections cannot hurt the server.

    Each connection starts with the pre-authentication limits (``MAX_HELLO_SIZE``,
    ``PREAUTH_RECEIVE_BUFFER``); the handler raises them with ``open_limits`` once it
    trusts the peer. The upgrade request must come within ``connect_timeout``, and a
    peer that leaves before sending it is closed at once. Anything the handler raises,
    except cancellation and ``InternalError``, is logged and closes that connection only.

    Cancellation (the server stopping) closes the connection without a close handshake.
    """

    handler: Callable[[UpgradeRequest], Awaitable[None]]
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]]
    max_message_size: int
    connect_timeout: float = UPGRADE_TIMEOUT

    @property
    def port(self) -> int:
        """The port of the first listener (the one a caller asked for with port 0)."""
        listener: Any = self.listeners[0]
        listener = getattr(listener, "transport_listener", listener)  # under TLS
        return int(listener.socket.getsockname()[1])

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
        request: UpgradeRequest | None = None
        with trio.move_on_after(self.connect_timeout):
            try:
                request = await read_upgrade_request(
                    stream, max_message_size=min(self.max_message_size, MAX_HELLO_SIZE),
                    receive_buffer_size=PREAUTH_RECEIVE_BUFFER)
            except trio.BrokenResourceError:  # e.g. a failed TLS handshake
                logger.debug("peer %s: connection ended before its request", remote)
        if request is None:
            return
        await self.handler(request)


async def serve_guarded_websocket(
    handler: Callable[[UpgradeRequest], Awaitable[None]], host: str, port: int,
    ssl_context: ssl.SSLContext | None, *, handler_nursery: trio.Nursery,
    max_message_size: int, connect_timeout: float = UPGRADE_TIMEOUT,
    task_status: trio.TaskStatus[GuardedWebSocketServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``host:port`` and serve WebSocket peers with ``handler`` until
    cancelled; ``task_status.started(server)``.

    ``max_message_size`` is the limit after ``open_limits``; before, ``MAX_HELLO_SIZE``.
    """
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]]
    if ssl_context is None:
        listeners = await trio.open_tcp_listeners(port, host=host)
    else:
        listeners = await trio.open_ssl_over_tcp_listeners(port, ssl_context, host=host,
                                                           https_compatible=True)
    server = GuardedWebSocketServer(handler, listeners, max_message_size, connect_timeout)
    async with trio.open_nursery() as nursery:
        serve: Callable[..., Awaitable[None]] = trio.serve_listeners
        await nursery.start(functools.partial(
            serve, server._handle_connection, listeners, handler_nursery=handler_nursery))
        task_status.started(server)
