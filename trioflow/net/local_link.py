"""The in-process link between a client and a scheduler on the same Trio loop.

A local cluster's own client (``trioflow.run``, ``Client(workers=...)``,
``open_local_cluster`` through ``open_client``) talks to its scheduler over a pair of
``LocalConnection`` ends (``SchedulerServer.open_local_peer``) instead of a loopback
WebSocket: the same messages and handshake, no socket, framing or codec.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import trio
from trio_websocket import CloseReason, ConnectionClosed

from ..config import HEARTBEAT_INTERVAL
from ..protocol import PROTOCOL_VERSION, Heartbeat, decode_frame, encode_frame
from ..protocol.registry import SPECS
from .connection import PeerConnection


class LocalConnection:
    """One end of an in-process link: a client talking to a scheduler on its own loop.

    It has ``PeerConnection``'s interface without a socket, WebSocket framing or codec:
    ``send`` appends the message to the other end's inbox, and ``receive`` returns
    everything queued there since the last call (one "frame", one scheduler event). A
    local cluster's own client thus skips two encodes, two decodes, two WebSocket
    frames and two system calls per round trip.

    Messages are immutable values on both sides and are passed as they are. A message
    with free-form (``Any``) fields goes through the codec anyway, so the receiver sees
    exactly what a socket would deliver (lists, not tuples).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.version = PROTOCOL_VERSION
        self.peer: LocalConnection | None = None
        self.closed = False
        self._inbox: list[Any] = []
        self._arrived = trio.Event()
        #: set when the other end closed: (code, reason)
        self._close_reason: CloseReason | None = None
        self.linger: Callable[[], bool] | None = None
        self._lingering = False  # the writer is in _linger: send wakes it less often
        self.frames_sent = 0
        self.messages_sent = 0
        self.heartbeat_interval = HEARTBEAT_INTERVAL
        self.last_received = trio.current_time()
        self.last_sent = trio.current_time()
        self._sending_since: float | None = None  # never: send() delivers at once

    def __repr__(self) -> str:
        return f"<LocalConnection {self.name} closed={self.closed}>"

    def send(self, message: Any) -> None:
        if self.closed:
            return
        peer = self.peer
        assert peer is not None
        if peer.closed:
            return
        if type(message) in _COPIED:
            message = decode_frame(encode_frame([message], self.version), self.version)[0]
        peer._inbox.append(message)
        peer._arrived.set()
        self.messages_sent += 1

    def send_many(self, messages: list[Any]) -> None:
        """``send`` each of ``messages`` (PeerConnection's interface)."""
        for message in messages:
            self.send(message)

    async def receive(self) -> list[Any]:
        while not self._inbox:
            if self._close_reason is not None:
                raise ConnectionClosed(self._close_reason)
            if self.closed:
                raise ConnectionClosed(CloseReason(1000, "closed here"))
            await self._arrived.wait()
            self._arrived = trio.Event()
        messages, self._inbox = self._inbox, []
        self.last_received = trio.current_time()
        return messages

    def unread(self, messages: list[Any]) -> None:
        self._inbox = list(messages) + self._inbox
        if self._inbox:
            self._arrived.set()

    async def run_writer(self) -> None:
        """Nothing to write (``send`` delivers): sleeps until cancelled."""
        await trio.sleep_forever()

    async def run_heartbeats(self) -> None:
        """A Heartbeat every ``heartbeat_interval``: the other end's silence timeout
        holds for in-process peers too."""
        while not self.closed:
            await trio.sleep(self.heartbeat_interval)
            self.send(Heartbeat())

    async def flush(self) -> None:
        """Nothing is ever held back."""
        await trio.lowlevel.checkpoint()

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close both ends: the other one's ``receive`` raises ConnectionClosed with
        ``code`` once it has taken what was sent before."""
        self.close(code, reason)
        await trio.lowlevel.checkpoint()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """``aclose`` without a checkpoint (usable while being cancelled)."""
        if self.closed:
            return
        self.closed = True
        self._arrived.set()
        peer = self.peer
        if peer is not None and peer._close_reason is None and not peer.closed:
            peer._close_reason = CloseReason(code, reason[:120])
            peer._arrived.set()


#: either kind of scheduler connection: the two have the same interface
AnyConnection = PeerConnection | LocalConnection


def local_pair(name_a: str, name_b: str) -> tuple[LocalConnection, LocalConnection]:
    """Two connected ends of an in-process link."""
    a, b = LocalConnection(name_a), LocalConnection(name_b)
    a.peer, b.peer = b, a
    return a, b


def _has_free_form_fields(cls: type) -> bool:
    return any("Any" in repr(f.type) for f in attrs.fields(cls))


#: message types that a LocalConnection copies through the codec
_COPIED = frozenset(cls for cls in SPECS if _has_free_form_fields(cls))
