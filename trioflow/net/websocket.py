"""A WebSocket over a Trio stream, once upgraded (``ws_upgrade.py``): ``protocol.wsframe``.

The wire is standard RFC 6455, so any WebSocket client can talk to a trioflow scheduler
and trioflow's clients can talk to any WebSocket server. What differs from
trio-websocket is the cost per message, the one thing trioflow's control path pays for
on every batch (``python -m benchmarks.wire``: ~76 us of CPU per message there, ~30 us
here, ~24 us for the bare bytes on a Trio stream):

* the frames are read **in the caller's task**: ``get_message`` reads the socket and
  parses in place, with no background reader task and no memory channel to hand each
  message through (two task switches per message);
* a frame is parsed by ``FrameReader`` in a few struct operations, not by wsproto's
  general frame machinery (which stays in charge of the HTTP upgrade, where its
  checks matter and its cost is paid once);
* sending takes the send lock without a checkpoint when nobody holds it (always, but
  for a pong or a close racing the writer);
* on a plain TCP stream the socket is read and written directly, without
  ``SocketStream``'s wrappers, and a frame the kernel takes whole costs no loop turn
  (``_receive_some``, ``_send_bytes``; TLS and other streams use the stream's methods);
  ``send_message_nowait`` even writes one from a synchronous caller, on the loop or on
  another thread (the tail the kernel does not take goes first in the next send, or in
  ``drain``; a lock keeps a thread's frame and the loop's apart).

Errors are trio-websocket's ``ConnectionClosed`` with a ``CloseReason``, so callers
catch one type whichever library made the connection (tests still use trio-websocket
as an independent client and server).

Cancellation: a cancelled ``get_message`` loses nothing (the frame reader keeps the
bytes it has; Trio's ``receive_some`` consumes none when cancelled), unless it was
answering a ping. A ``send_message`` cancelled mid-frame leaves the connection
unusable (half a frame is on the wire); the owner then closes it, as it would on any
error. ``aclose`` is bounded by ``DISCONNECT_TIMEOUT``.
"""

from __future__ import annotations

import collections
import logging
import socket
import threading
from typing import Any

import trio
from trio_websocket import CloseReason, ConnectionClosed

from ..protocol import wsframe
from ..protocol.wsframe import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameReader,
    WebSocketError,
)

logger = logging.getLogger(__name__)

#: Seconds a close handshake may take before the socket is simply closed.
DISCONNECT_TIMEOUT = 2.0
#: Payloads at least this long are written after their header, not copied behind it.
_SEPARATE_PAYLOAD = 64 * 1024


class WebSocket:
    """One open WebSocket on ``stream``, after the upgrade.

    One task at a time may call ``get_message`` and one ``send_message`` (PeerConnection
    has a reader and a writer); ``aclose`` may come from either, or a third.

    Args:
        client: whether this end opened the connection (its frames are masked).
        trailing: bytes that arrived behind the upgrade, already read off the stream.
        max_message_size, receive_buffer_size: the limits; plain attributes a server
            raises once the peer has authenticated (``handshake_limits.open_limits``).
    """

    def __init__(self, stream: trio.abc.Stream, *, client: bool, max_message_size: int,
                 receive_buffer_size: int, trailing: bytes = b"") -> None:
        self._stream = stream
        self._client = client
        self._reader = FrameReader(client=client, max_message_size=max_message_size)
        self.receive_buffer_size = receive_buffer_size
        self._events: collections.deque[tuple[int, Any]] = collections.deque()
        self._trailing = trailing
        self._send_lock = trio.StrictFIFOLock()
        self._close_sent = False
        #: why the connection ended, once it has (then every call raises)
        self._close_reason: CloseReason | None = None
        #: set when the peer's close frame (or the end of the stream) has been read
        self._peer_done = trio.Event()
        self._receiving = False
        #: the stdlib socket under a plain ``trio.SocketStream`` (None under TLS, or for
        #: any other stream): read and written directly, see ``_receive_some``
        self._raw = _raw_socket(stream)
        #: the tail of a frame ``send_message_nowait`` wrote only in part: the next
        #: send (or ``drain``) writes it first
        self._unsent: memoryview | None = None
        #: held by whoever writes to the socket at this moment: the loop, or another
        #: thread in ``send_message_nowait``. A thread writes only while the loop's
        #: send lock is free, and the loop waits for a thread's write before its own,
        #: so the bytes of two frames never interleave
        self._wlock = threading.Lock()
        #: the stream is closing or closed: no thread writes to it any more
        self._shut = False

    def __repr__(self) -> str:
        side = "client" if self._client else "server"
        return f"<WebSocket {side} closed={self._close_reason}>"

    @property
    def max_message_size(self) -> int:
        return self._reader.max_message_size

    @max_message_size.setter
    def max_message_size(self, value: int) -> None:
        self._reader.max_message_size = value

    @property
    def closed(self) -> CloseReason | None:
        """Why the connection ended, or None while it is open (trio-websocket's name)."""
        return self._close_reason

    @property
    def local(self) -> str:
        """The local IP address of the socket ("" if it has none)."""
        return _sockname(self._stream)

    async def get_message(self) -> bytes | str:
        """The next whole message (bytes, or str for a text message).

        Pings are answered here, pongs dropped, and a close frame is answered and ends
        the connection.

        Raises:
            ConnectionClosed: the connection ended (its ``reason`` says how: the peer's
                close code, 1006 for a stream that ended without one, or the code we
                closed with after the peer broke the protocol: 1002, 1007, 1009).
        """
        events = self._events
        while True:
            while events:
                op, value = events.popleft()
                if op == OP_BINARY or op == OP_TEXT:
                    return value  # type: ignore[no-any-return,unused-ignore]
                if op == OP_PING:
                    await self._send_control(OP_PONG, value)
                elif op == OP_CLOSE:
                    await self._peer_closed(*value)
            if self._close_reason is not None:
                raise ConnectionClosed(self._close_reason)
            data: bytes | bytearray = self._trailing
            if data:
                self._trailing = b""
            else:
                self._receiving = True
                try:
                    data = await self._receive_some()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                finally:
                    self._receiving = False
                if not data:
                    self._ended(wsframe.CLOSE_ABNORMAL, "the stream ended without a close")
                    continue
            try:
                events.extend(self._reader.feed(data))
            except WebSocketError as exc:
                await self._fail(exc)

    def get_message_nowait(self) -> bytes | str | None:
        """The next whole message if it has been read off the socket already, else None
        (also when a ping or a close comes first: ``get_message`` handles those)."""
        events = self._events
        if events and (events[0][0] == OP_BINARY or events[0][0] == OP_TEXT):
            return events.popleft()[1]  # type: ignore[no-any-return,unused-ignore]
        return None

    def send_message_nowait(self, message: bytes) -> bool:
        """Write a binary message now, from the calling task or from any other thread,
        without waiting or a checkpoint; True if it went, False if nothing was written
        (send it with ``send_message`` then, on the loop).

        Only on a plain TCP stream, with no send under way (the loop's or another
        thread's) and nothing left over. If the kernel takes part of the frame, the
        rest is kept (``unsent``) and written before anything else: by the next send,
        or by ``drain``, which the loop must then await. Callers on several threads
        order their messages themselves; this only keeps their frames whole.
        """
        raw = self._raw
        if raw is None or not self._wlock.acquire(blocking=False):
            return False
        try:
            if (self._unsent is not None or self._send_lock.locked() or self._shut
                    or self._close_sent or self._close_reason is not None):
                return False
            data = wsframe.encode_frame(OP_BINARY, message, masked=self._client)
            try:
                sent = raw.send(data)
            except OSError:  # (full, or broken: the next send_message finds out which)
                return False
            if sent < len(data):
                self._unsent = memoryview(data)[sent:]
            return True
        finally:
            self._wlock.release()

    @property
    def unsent(self) -> bool:
        """Whether part of a frame written by ``send_message_nowait`` is still to go."""
        return self._unsent is not None

    async def drain(self) -> None:
        """Write what ``send_message_nowait`` left over (waits for room).

        Raises:
            ConnectionClosed: the stream broke.
        """
        if self._unsent is not None:
            await self._send_bytes(b"")

    async def send_message(self, message: bytes | str) -> None:
        """Send one message (binary for bytes, text for str).

        Raises:
            ConnectionClosed: the connection is closed or closing, or broke now.
        """
        if self._close_sent or self._close_reason is not None:
            raise ConnectionClosed(self._close_reason or CloseReason(1000, "closing"))
        if isinstance(message, str):
            await self._send_bytes(wsframe.encode_frame(OP_TEXT, message.encode(),
                                                        masked=self._client))
        elif self._client or len(message) < _SEPARATE_PAYLOAD:
            await self._send_bytes(wsframe.encode_frame(OP_BINARY, message,
                                                        masked=self._client))
        else:  # a large server frame: no copy of the payload behind its header
            await self._send_bytes(wsframe.frame_header(OP_BINARY, len(message)), message)

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code``: send a close frame, wait (bounded) for the peer's, then
        close the stream. Never raises for a connection that is already closed."""
        try:
            with trio.move_on_after(DISCONNECT_TIMEOUT):
                if not self._close_sent and self._close_reason is None:
                    await self._send_control(OP_CLOSE, wsframe.encode_close(code, reason))
                    if self._close_reason is None:
                        self._close_reason = CloseReason(code, reason or None)
                    await self._await_peer_close()
        finally:
            if self._close_reason is None:
                self._close_reason = CloseReason(code, reason or None)
            await self._close_stream()

    async def abort(self) -> None:
        """Close the stream without a close handshake (a peer presumed dead): a pending
        ``get_message`` raises ConnectionClosed (1006)."""
        self._ended(wsframe.CLOSE_ABNORMAL, "aborted")
        await self._close_stream()

    # ------------------------------------------------------------------ internals

    async def _await_peer_close(self) -> None:
        """Wait for the peer's close frame: read it ourselves unless a reader is."""
        if self._receiving:
            await self._peer_done.wait()
            return
        while not self._peer_done.is_set():
            while self._events:
                op, _ = self._events.popleft()
                if op == OP_CLOSE:
                    self._peer_done.set()
                    return
            try:
                data = await self._stream.receive_some(self.receive_buffer_size)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self._peer_done.set()
                return
            try:
                self._events.extend(self._reader.feed(data))
            except WebSocketError:
                self._peer_done.set()
                return

    async def _peer_closed(self, code: int, reason: str) -> None:
        """The peer sent a close frame: answer it (unless ours went first) and end."""
        if self._close_reason is None:
            self._close_reason = CloseReason(code, reason or None)
        if not self._close_sent:
            payload = b"" if code == wsframe.CLOSE_NO_STATUS else wsframe.encode_close(code)
            try:
                await self._send_control(OP_CLOSE, payload)
            except ConnectionClosed:
                pass
        self._peer_done.set()
        if not self._client:  # RFC 6455 7.1.1: the server closes the TCP connection
            await self._close_stream()

    async def _close_stream(self) -> None:
        """Close the stream, once no thread writes to it (nor will)."""
        with self._wlock:
            self._shut = True
        await trio.aclose_forcefully(self._stream)

    def _ended(self, code: int, reason: str) -> None:
        if self._close_reason is None:
            self._close_reason = CloseReason(code, reason)
        self._peer_done.set()

    async def _fail(self, exc: WebSocketError) -> None:
        """The peer broke the protocol: say why in a close frame, and drop the stream
        (a broken peer is not waited for)."""
        logger.debug("closing a WebSocket: %s", exc)
        self._ended(exc.code, exc.reason)
        if not self._close_sent:
            with trio.move_on_after(DISCONNECT_TIMEOUT):
                try:
                    await self._send_control(OP_CLOSE, wsframe.encode_close(exc.code,
                                                                            exc.reason))
                except ConnectionClosed:
                    pass
        await self._close_stream()

    async def _send_control(self, opcode: int, payload: bytes) -> None:
        if self._close_sent:
            return
        if opcode == OP_CLOSE:
            self._close_sent = True
        await self._send_bytes(wsframe.encode_frame(opcode, payload, masked=self._client))

    async def _receive_some(self) -> bytes | bytearray:
        """The next bytes off the stream (b"" once it ended or broke).

        On a plain TCP stream the socket is read directly: what
        ``SocketStream.receive_some`` does (try, and wait for readability only if nothing
        is there; a cancellation before anything was read), without its layers of
        wrappers and context managers, which cost more than the frame parsing on a
        small control frame. The Trio checkpoint is kept: a read that found data
        yields once (cancel-shielded, so nothing read is lost), so a peer that keeps
        the socket full cannot starve the loop.

        Raises:
            trio.ClosedResourceError: the stream was closed while we waited.
        """
        raw = self._raw
        if raw is None:
            return await self._stream.receive_some(self.receive_buffer_size)
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            data = raw.recv(self.receive_buffer_size)
        except BlockingIOError:
            pass
        except OSError:  # reset, or closed under us: the stream ended
            return b""
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        while True:
            await trio.lowlevel.wait_readable(raw)
            try:
                return raw.recv(self.receive_buffer_size)
            except BlockingIOError:  # a spurious wake-up
                continue
            except OSError:
                return b""

    async def _send_bytes(self, data: bytes, more: bytes | None = None) -> None:
        """Write ``data`` (then ``more``) under the send lock.

        On a plain TCP stream a frame the kernel takes whole is written with one
        ``send`` and no loop turn (``SocketStream.send_all`` always yields after
        sending): the writer has just had its own scheduling round (``run_writer``), and a
        turn per frame is a wake-up's worth of CPU on each side of every hop. What the
        kernel does not take is written by ``send_all``, which waits for room.
        """
        lock = self._send_lock
        if lock.locked():
            await lock.acquire()
        else:
            lock.acquire_nowait()  # no checkpoint: send_all is one
        # a thread that found the send lock free just before may be writing its frame
        # (``send_message_nowait``: one non-blocking send); none starts one after this
        self._wlock.acquire()
        self._wlock.release()
        try:
            unsent = self._unsent
            if unsent is not None:  # (send_message_nowait's frame goes first)
                self._unsent = None  # (cancelled half-way, the connection is unusable)
                await self._stream.send_all(unsent)
                if not data:
                    return
            raw = self._raw
            if raw is not None and more is None:
                await trio.lowlevel.checkpoint_if_cancelled()
                try:
                    sent = raw.send(data)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    raise trio.BrokenResourceError from None
                if sent < len(data):
                    await self._stream.send_all(memoryview(data)[sent:])
                return
            await self._stream.send_all(data)
            if more is not None:
                await self._stream.send_all(more)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._ended(wsframe.CLOSE_ABNORMAL, "the stream broke while sending")
            raise ConnectionClosed(self._close_reason) from None
        finally:
            lock.release()


def _raw_socket(stream: Any) -> socket.socket | None:
    """The stdlib socket of a plain ``trio.SocketStream``, or None.

    (``trio.socket.SocketType`` keeps it as ``_sock``: private, so anything else, a
    future Trio included, falls back to the stream's own methods.)
    """
    if type(stream) is not trio.SocketStream:
        return None
    raw = getattr(stream.socket, "_sock", None)
    return raw if type(raw) is socket.socket else None


def _sockname(stream: Any) -> str:
    stream = getattr(stream, "transport_stream", stream)  # under TLS
    try:
        return str(stream.socket.getsockname()[0])
    except Exception:
        return ""
