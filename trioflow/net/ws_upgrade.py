"""The HTTP upgrade that opens a trioflow WebSocket, on both sides: wsproto's
``H11Handshake`` reads and writes the request and the answer (its checks matter here,
and their cost is paid once per connection); what follows is ``websocket.WebSocket``.

* server side: ``read_upgrade_request`` reads a peer's request into an
  ``UpgradeRequest``, which the caller accepts (101 and a ``WebSocket``) or rejects
  with an HTTP error (a wrong path, a bad token: ``net/handshake_limits.py`` and the
  scheduler decide);
* client side: ``client_upgrade`` sends the request and returns the ``WebSocket`` once
  answered 101, or raises ``UpgradeRefused`` with the server's status.

Bytes the peer sent right behind the upgrade (its first frames, if it was quick) are
handed to the ``WebSocket``, not lost (``_trailing``).

Cancellation: none of these bound their own time; the caller does (a cancelled upgrade
leaves the stream half-negotiated, and the caller closes it).
"""

from __future__ import annotations

import logging

import trio
from trio_websocket import CloseReason, ConnectionClosed
from wsproto import ConnectionType
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request
from wsproto.handshake import H11Handshake
from wsproto.utilities import LocalProtocolError as WsprotoLocalError
from wsproto.utilities import RemoteProtocolError as WsprotoRemoteError

from ..protocol import wsframe
from .websocket import WebSocket

logger = logging.getLogger(__name__)


class UpgradeRefused(Exception):
    """The server answered the upgrade request with something other than 101."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"the server refused the WebSocket upgrade with HTTP {status_code}")
        self.status_code = status_code


def _trailing(handshake: H11Handshake) -> bytes:
    """The bytes read past the HTTP upgrade (the first frames, if the peer was quick).

    wsproto hands them to its own frame machinery; this reads them from h11's public
    ``trailing_data`` (``tests/unit/test_websocket.py`` pins the attribute name)."""
    data, _closed = handshake._h11_connection.trailing_data
    return bytes(data)



class UpgradeRequest:
    """A peer's HTTP upgrade request, read and not yet answered (server side).

    ``accept()`` answers 101 and returns the ``WebSocket``; ``reject()`` answers with an
    HTTP error. One of the two, once.
    """

    def __init__(self, stream: trio.abc.Stream, handshake: H11Handshake, request: Request,
                 *, max_message_size: int, receive_buffer_size: int) -> None:
        self._stream = stream
        self._handshake = handshake
        self.request = request
        self.path = request.target
        #: the request's headers other than the WebSocket ones, as (name, value) bytes
        self.headers: list[tuple[bytes, bytes]] = [
            (bytes(k), bytes(v)) for k, v in request.extra_headers]
        self._max_message_size = max_message_size
        self._receive_buffer_size = receive_buffer_size

    async def accept(self) -> WebSocket:
        await self._stream.send_all(self._handshake.send(AcceptConnection()))
        return WebSocket(self._stream, client=False, trailing=_trailing(self._handshake),
                         max_message_size=self._max_message_size,
                         receive_buffer_size=self._receive_buffer_size)

    async def reject(self, status_code: int, *, body: bytes = b"") -> None:
        headers = [(b"content-length", str(len(body)).encode())]
        data = self._handshake.send(RejectConnection(status_code=status_code,
                                                     headers=headers, has_body=bool(body)))
        if body:
            data += self._handshake.send(RejectData(data=body))
        await self._stream.send_all(data)


async def read_upgrade_request(stream: trio.abc.Stream, *, max_message_size: int,
                               receive_buffer_size: int) -> UpgradeRequest | None:
    """Read a peer's upgrade request (the caller bounds the time).

    Returns None if the peer left first, or sent something other than a WebSocket
    upgrade request (it has then been answered with an HTTP error, as wsproto advises).
    h11 bounds the request's size (16 KiB).
    """
    handshake = H11Handshake(ConnectionType.SERVER)
    while True:
        for event in handshake.events():
            if isinstance(event, Request):
                return UpgradeRequest(stream, handshake, event,
                                      max_message_size=max_message_size,
                                      receive_buffer_size=receive_buffer_size)
        try:
            data = await stream.receive_some(receive_buffer_size)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None
        if not data:
            return None
        try:
            handshake.receive_data(bytes(data))
        except WsprotoRemoteError as exc:
            logger.debug("bad upgrade request: %s", exc)
            hint = exc.event_hint
            if isinstance(hint, RejectConnection):
                try:
                    await stream.send_all(handshake.send(hint))
                except (trio.BrokenResourceError, trio.ClosedResourceError,
                        WsprotoLocalError):
                    pass
            return None


async def client_upgrade(stream: trio.abc.Stream, *, host: str, target: str,
                         max_message_size: int, receive_buffer_size: int) -> WebSocket:
    """Send the upgrade request on ``stream`` and read the answer (the caller bounds
    the time).

    Raises:
        UpgradeRefused: the server answered with an HTTP error.
        ConnectionClosed: the server closed the connection first, or answered
            something that is not HTTP.
    """
    handshake = H11Handshake(ConnectionType.CLIENT)
    await stream.send_all(handshake.send(Request(host=host, target=target)))
    while True:
        data = await stream.receive_some(receive_buffer_size)
        if not data:
            raise ConnectionClosed(CloseReason(wsframe.CLOSE_ABNORMAL,
                                               "the server closed before answering"))
        try:
            handshake.receive_data(bytes(data))
        except WsprotoRemoteError as exc:
            raise ConnectionClosed(CloseReason(wsframe.CLOSE_PROTOCOL,
                                               f"bad upgrade answer: {exc}")) from None
        for event in handshake.events():
            if isinstance(event, AcceptConnection):
                return WebSocket(stream, client=True, trailing=_trailing(handshake),
                                 max_message_size=max_message_size,
                                 receive_buffer_size=receive_buffer_size)
            if isinstance(event, RejectConnection):
                raise UpgradeRefused(event.status_code)
