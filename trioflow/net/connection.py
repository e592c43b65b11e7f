"""One peer connection over WebSocket: a batching writer and a decoding reader.

``send()`` never blocks: it appends to an outbox and wakes the writer task, which sends
everything queued since its last send as **one** frame. Under load frames grow, so the
per-message cost of WebSocket framing, syscalls and wake-ups falls; when idle a message
goes out at once. There are no timers.

Cancellation: cancelling ``run_writer`` drops whatever is still queued. ``aclose``
flushes first, then closes the WebSocket with a close code.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, open_websocket_url

from ..errors import AuthenticationError, ClientClosedError, LocalProtocolError
from ..protocol import PROTOCOL_VERSION, Heartbeat, decode_frame, encode_frame

logger = logging.getLogger(__name__)

#: Largest WebSocket message either side accepts (configurable per node).
DEFAULT_MAX_MESSAGE_SIZE = 512 * 1024 * 1024
#: Bytes read from the socket at a time (trio-websocket reads 4 KiB by default, which
#: costs a syscall per 4 KiB of a large frame).
RECEIVE_BUFFER_SIZE = 256 * 1024
#: Longest a writer holds a frame back for messages that are about to come (seconds),
#: and how many messages are worth waiting for. Frames, not messages, are what cost:
#: each one is a wake-up, a syscall and a WebSocket parse on both ends.
LINGER_MAX = 0.0005
#: A connection quiet for this long sends a Heartbeat (seconds), so the other side can
#: tell a silent peer (cut link, frozen host) from an idle one.
HEARTBEAT_INTERVAL = 1.0
#: A peer that does not take a frame within this many seconds is disconnected.
SEND_TIMEOUT = 30.0
#: Seconds allowed to open a WebSocket, and to close one gracefully.
CONNECT_TIMEOUT = 10.0
DISCONNECT_TIMEOUT = 2.0
#: WebSocket close code for a peer too slow to read what we send.
CLOSE_TOO_SLOW = 4008
LINGER_MESSAGES = 256


class PeerConnection:
    """A WebSocket plus an outbox. Owned by one Trio task pair (reader, writer)."""

    def __init__(self, ws: WebSocketConnection, *, name: str = "peer",
                 version: int = PROTOCOL_VERSION,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.ws = ws
        self.name = name
        self.version = version
        self.max_message_size = max_message_size
        self._outbox: list[Any] = []
        self._unread: list[Any] = []
        self._wakeup = trio.Event()
        self.closed = False
        self.frames_sent = 0
        self.messages_sent = 0
        #: optional hook: True while more messages are about to be queued (a worker
        #: with short tasks running); the writer then waits for them, briefly
        self.linger: Callable[[], bool] | None = None
        self.heartbeat_interval = HEARTBEAT_INTERVAL
        self.send_timeout = SEND_TIMEOUT
        self.last_received = trio.current_time()
        self.last_sent = trio.current_time()

    def __repr__(self) -> str:
        return f"<PeerConnection {self.name} queued={len(self._outbox)} closed={self.closed}>"

    def send(self, message: Any) -> None:
        """Queue ``message``; the writer sends it with whatever else is queued."""
        if self.closed:
            return
        self._outbox.append(message)
        self._wakeup.set()

    async def receive(self) -> list[Any]:
        """The next frame's messages.

        Raises:
            RemoteProtocolError: the frame was not valid.
            trio_websocket.ConnectionClosed: the peer went away.
        """
        if self._unread:
            messages, self._unread = self._unread, []
            return messages
        data = await self.ws.get_message()
        self.last_received = trio.current_time()
        return decode_frame(data, self.version)

    def unread(self, messages: list[Any]) -> None:
        """Give messages back: the next ``receive()`` returns them first (the handshake
        reads a frame that may carry more than the Welcome)."""
        self._unread = list(messages) + self._unread

    def _encode(self, messages: list[Any]) -> list[bytes]:
        frame = encode_frame(messages, self.version)
        if len(frame) <= self.max_message_size:
            return [frame]
        if len(messages) == 1:
            raise LocalProtocolError(
                f"one {type(messages[0]).__name__} message is {len(frame)} bytes, over the "
                f"{self.max_message_size}-byte frame limit"
            )
        half = len(messages) // 2
        return self._encode(messages[:half]) + self._encode(messages[half:])

    async def _linger(self) -> None:
        """Hold the frame while ``linger()`` says more is coming, up to LINGER_MAX."""
        deadline = trio.current_time() + LINGER_MAX
        while self.linger() and len(self._outbox) < LINGER_MESSAGES:  # type: ignore[misc]
            self._wakeup = trio.Event()
            with trio.move_on_at(deadline) as scope:
                await self._wakeup.wait()
            if scope.cancelled_caught:
                return

    async def run_writer(self) -> None:
        """Send queued messages until the connection closes. Run it in a nursery."""
        try:
            while True:
                await self._wakeup.wait()
                # one scheduling round before sending: whatever else is runnable now
                # (other readers, task completions) adds to this frame instead of the next
                await trio.lowlevel.cancel_shielded_checkpoint()
                if self.linger is not None:
                    await self._linger()
                self._wakeup = trio.Event()
                batch, self._outbox = self._outbox, []
                if not batch:
                    continue
                # a peer that does not read cannot stall us: past the timeout it is dropped
                with trio.fail_after(self.send_timeout):
                    for frame in self._encode(batch):
                        await self.ws.send_message(frame)
                self.frames_sent += 1
                self.messages_sent += len(batch)
                self.last_sent = trio.current_time()
        except ConnectionClosed:
            self.closed = True
        except trio.TooSlowError:
            logger.warning("%s: not reading for %ss; dropping it", self.name, self.send_timeout)
            self.closed = True
            await self.ws.aclose(CLOSE_TOO_SLOW, "too slow")
        except LocalProtocolError:
            logger.exception("%s: cannot send a message", self.name)
            raise

    async def run_heartbeats(self) -> None:
        """Send a Heartbeat whenever nothing was sent for ``heartbeat_interval`` seconds,
        so the other side can tell a silent peer (cut link, frozen host) from an idle
        one. A task of its own: a timeout around every writer wake-up costs a cancel
        scope per frame on the hot path."""
        while not self.closed:
            quiet = trio.current_time() - self.last_sent
            if quiet >= self.heartbeat_interval:
                self.send(Heartbeat())
                quiet = 0.0
            await trio.sleep(self.heartbeat_interval - quiet)

    async def flush(self) -> None:
        """Send whatever is queued now (used before closing)."""
        batch, self._outbox = self._outbox, []
        if batch and not self.closed:
            try:
                for frame in self._encode(batch):
                    await self.ws.send_message(frame)
            except ConnectionClosed:
                self.closed = True

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Flush, then close with ``code``. Never raises for an already-closed socket."""
        if not self.closed:
            with trio.move_on_after(2):
                await self.flush()
        self.closed = True
        with trio.move_on_after(2):
            try:
                await self.ws.aclose(code, reason[:120])
            except Exception:  # the socket may already be broken; closing is best effort
                logger.debug("%s: error while closing", self.name, exc_info=True)


@contextlib.asynccontextmanager
async def open_connection(address: str, *, name: str, ssl_context: ssl.SSLContext | None = None,
                          max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
                          ) -> AsyncIterator[PeerConnection]:
    """Open a WebSocket to ``address`` (ws:// or wss://) as a PeerConnection.

    Raises:
        AuthenticationError: the server's TLS certificate is not trusted (retrying
            cannot help; trio-websocket alone would only time out).
        ClientClosedError: nothing answers at ``address``.
    """
    ctx = None
    if address.startswith("wss://"):
        ctx = ssl_context or ssl.create_default_context()
        await _check_tls(address, ctx)
    try:
        async with open_websocket_url(address, ctx, max_message_size=max_message_size,
                                      receive_buffer_size=RECEIVE_BUFFER_SIZE,
                                      connect_timeout=CONNECT_TIMEOUT,
                                      disconnect_timeout=DISCONNECT_TIMEOUT) as ws:
            yield PeerConnection(ws, name=name, max_message_size=max_message_size)
    except (OSError, HandshakeError) as exc:
        raise ClientClosedError(f"cannot connect to {address}: {exc!r}") from exc


async def _check_tls(address: str, ctx: ssl.SSLContext) -> None:
    url = urllib.parse.urlsplit(address)
    host, port = url.hostname or "", url.port or 443
    try:
        with trio.fail_after(CONNECT_TIMEOUT):
            stream = await trio.open_ssl_over_tcp_stream(host, port, ssl_context=ctx)
            await stream.do_handshake()
            await stream.aclose()
    except trio.BrokenResourceError as exc:
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise AuthenticationError(
                f"the TLS certificate of {address} is not trusted ({cause.verify_message}): "
                "pass the CA that signed it (--tls-ca, or ssl_context=)"
            ) from exc
        raise ClientClosedError(f"TLS handshake with {address} failed: {cause!r}") from exc
    except OSError as exc:
        raise ClientClosedError(f"cannot connect to {address}: {exc!r}") from exc
