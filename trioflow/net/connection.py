"""One peer connection over WebSocket: a batching writer and a decoding reader.

``send()`` never blocks: it appends to an outbox and wakes the writer task, which sends
everything queued since its last send as **one** frame. Under load frames grow, so the
per-message cost of WebSocket framing, syscalls and wake-ups falls; when idle a message
goes out at once. There are no timers.

Cancellation: cancelling ``run_writer`` drops whatever is still queued. ``aclose``
flushes first, then closes the WebSocket with a close code.
"""

from __future__ import annotations

import logging
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from ..errors import LocalProtocolError
from ..protocol import PROTOCOL_VERSION, decode_frame, encode_frame

logger = logging.getLogger(__name__)

#: Largest WebSocket message either side accepts (configurable per node).
DEFAULT_MAX_MESSAGE_SIZE = 512 * 1024 * 1024
#: Writers start a new frame past this many encoded bytes of queued messages.
FRAME_SOFT_LIMIT = 16 * 1024 * 1024


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
        self._wakeup = trio.Event()
        self.closed = False
        self.frames_sent = 0
        self.messages_sent = 0

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
        data = await self.ws.get_message()
        return decode_frame(data, self.version)

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

    async def run_writer(self) -> None:
        """Send queued messages until the connection closes. Run it in a nursery."""
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup = trio.Event()
                batch, self._outbox = self._outbox, []
                if not batch:
                    continue
                for frame in self._encode(batch):
                    await self.ws.send_message(frame)
                self.frames_sent += 1
                self.messages_sent += len(batch)
        except ConnectionClosed:
            self.closed = True
        except LocalProtocolError:
            logger.exception("%s: cannot send a message", self.name)
            raise

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
