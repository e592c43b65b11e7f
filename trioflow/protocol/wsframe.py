"""RFC 6455 framing after the upgrade: a sans-IO reader and writer of WebSocket frames.

trioflow's own connections exchange one binary WebSocket message per batch of protocol
messages, most of them small. Per message, trio-websocket (a reader task, a memory
channel, a send lock) over wsproto's general frame machinery cost several times what
the bytes themselves do; this module is the steady-state part of the protocol done in a
few struct operations per frame. The HTTP upgrade before it stays wsproto's
(``wsproto.handshake.H11Handshake``, in ``net/websocket.py``), so what is on the wire is
unchanged: any RFC 6455 client or server interoperates.

What the reader accepts, and what it refuses with which close code (``WebSocketError``):

* data frames, binary or text, fragmented or not; text must be UTF-8 (else 1007);
* ping, pong and close frames, also between the fragments of a message; a control
  frame is at most 125 bytes and never fragmented (else 1002);
* frames from a client must be masked, frames from a server must not be (else 1002);
* reserved bits (no extension is negotiated) and unknown opcodes: 1002;
* a message longer than ``max_message_size`` is refused with 1009 as soon as a frame
  header announces it, before its payload is buffered.

The module does no I/O and keeps no clock; it never raises anything but
``WebSocketError`` for bad input.
"""

from __future__ import annotations

import functools
import os
import struct
from typing import Any

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
_KNOWN = frozenset((OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG))

#: close codes (RFC 6455 section 7.4.1)
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL = 1002
CLOSE_NO_STATUS = 1005  # never sent: "the close frame had no code"
CLOSE_ABNORMAL = 1006  # never sent: "the connection ended without a close frame"
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009

MAX_CONTROL_PAYLOAD = 125

_H2 = struct.Struct("!BB")
_H2_16 = struct.Struct("!BBH")
_H2_64 = struct.Struct("!BBQ")
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")


class WebSocketError(Exception):
    """The peer broke RFC 6455 (or our size limit): close the connection with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{reason} (close code {code})")
        self.code = code
        self.reason = reason


#: below this many bytes one big-integer XOR is faster than four translations
_INT_MASK_MAX = 1024
_IDENTITY = bytes(range(256))


def _int_mask(key: bytes, data: bytes | bytearray | memoryview) -> bytes:
    n = len(data)
    keys = (key * (n // 4 + 1))[:n]
    value = int.from_bytes(data, "little") ^ int.from_bytes(keys, "little")
    return value.to_bytes(n, "little")


@functools.lru_cache(maxsize=256)
def _xor_table(k: int) -> bytes:
    """Each byte value XOR ``k``, for ``bytes.translate`` (built on first use: all 256
    at import would cost milliseconds of every process's start)."""
    return _int_mask(bytes((k, k, k, k)), _IDENTITY)


def mask(key: bytes, data: bytes | bytearray | memoryview) -> bytes:
    """``data`` XOR the 4-byte ``key`` repeated (masking and unmasking are the same).

    Both ways run in C with no per-byte Python loop: a big-integer XOR for short
    payloads, and for long ones a ``translate`` of every fourth byte (about 1 GB/s)."""
    n = len(data)
    if n == 0:
        return b""
    if n < _INT_MASK_MAX:
        return _int_mask(key, data)
    out = bytearray(data)
    for i in range(4):
        out[i::4] = out[i::4].translate(_xor_table(key[i]))
    return bytes(out)


def _close_code_ok(code: int) -> bool:
    """Whether a peer may send ``code`` in a close frame (RFC 6455 section 7.4)."""
    if 1000 <= code <= 1003 or 1007 <= code <= 1014:  # 1012-1014: IANA registry
        return True
    return 3000 <= code <= 4999


def encode_close(code: int, reason: str = "") -> bytes:
    """The payload of a close frame: the code, then the reason cut to fit 125 bytes."""
    data = reason.encode("utf-8")[:MAX_CONTROL_PAYLOAD - 2]
    # never cut inside a UTF-8 sequence: the receiver must be able to decode it
    reason_bytes = data.decode("utf-8", "ignore").encode("utf-8")
    return _U16.pack(code) + reason_bytes


def decode_close(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a close frame's payload.

    Raises:
        WebSocketError: a one-byte payload, a code a peer may not send, or a reason that
            is not UTF-8.
    """
    if not payload:
        return CLOSE_NO_STATUS, ""
    if len(payload) == 1:
        raise WebSocketError(CLOSE_PROTOCOL, "a close frame with a 1-byte payload")
    (code,) = _U16.unpack_from(payload)
    if not _close_code_ok(code):
        raise WebSocketError(CLOSE_PROTOCOL, f"close code {code} may not be sent")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise WebSocketError(CLOSE_INVALID_DATA, "a close reason that is not UTF-8") from None
    return code, reason


def frame_header(opcode: int, n: int, *, masked: bool = False, fin: bool = True) -> bytes:
    """The header of a frame of ``n`` payload bytes (without the mask key)."""
    first = (0x80 if fin else 0) | opcode
    bit = 0x80 if masked else 0
    if n < 126:
        return _H2.pack(first, bit | n)
    if n < 65536:
        return _H2_16.pack(first, bit | 126, n)
    return _H2_64.pack(first, bit | 127, n)


def encode_frame(opcode: int, payload: bytes, *, masked: bool, fin: bool = True) -> bytes:
    """One whole frame. A client masks (``masked=True``) with a fresh random key."""
    header = frame_header(opcode, len(payload), masked=masked, fin=fin)
    if masked:
        key = os.urandom(4)
        return header + key + mask(key, payload)
    return header + payload


class FrameReader:
    """Bytes from the socket in, whole messages and control frames out.

    ``feed(data)`` returns a list of events, each a tuple ``(opcode, value)``:
    ``(OP_BINARY, bytes)``, ``(OP_TEXT, str)``, ``(OP_PING, bytes)``,
    ``(OP_PONG, bytes)`` or ``(OP_CLOSE, (code, reason))``. Fragments are joined: a
    message event is a whole message. After a close event, or once it raised, the
    reader must not be fed again.

    Args:
        client: True if this end is the client (frames it reads must be unmasked),
            False for a server (frames must be masked).
        max_message_size: the longest message accepted; may be changed between feeds
            (a server raises it once the peer has authenticated).

    Raises (from ``feed``):
        WebSocketError: the bytes break RFC 6455 or the size limit; its ``code`` is
            the close code to answer with.
    """

    def __init__(self, *, client: bool, max_message_size: int) -> None:
        self.client = client
        self.max_message_size = max_message_size
        self._buf = bytearray()
        #: opcode of the fragmented message under way (None: none), and its parts
        self._fragment_op: int | None = None
        self._parts: list[bytes] = []
        self._parts_size = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not yet part of a returned event."""
        return len(self._buf) + self._parts_size

    def feed(self, data: bytes | bytearray) -> list[tuple[int, Any]]:
        if self._buf:
            self._buf += data
            src: bytes | bytearray = self._buf
        else:
            src = data  # the common case: parse the chunk as it came, no copy
        events: list[tuple[int, Any]] = []
        pos = 0
        end = len(src)
        client = self.client
        while end - pos >= 2:
            b0 = src[pos]
            b1 = src[pos + 1]
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if end - pos < 4:
                    break
                (n,) = _U16.unpack_from(src, pos + 2)
                head = 4
            elif n == 127:
                if end - pos < 10:
                    break
                (n,) = _U64.unpack_from(src, pos + 2)
                head = 10
            is_masked = b1 & 0x80
            if is_masked:
                head += 4
            opcode = b0 & 0x0F
            # checked on the header, before the payload is waited for: an oversized
            # or malformed frame costs its header, not its announced length
            self._check_header(b0, opcode, n, bool(is_masked), client)
            if end - pos < head + n:
                break
            start = pos + head
            with memoryview(src) as view:
                if is_masked:
                    payload = mask(bytes(view[start - 4:start]), view[start:start + n])
                else:
                    payload = bytes(view[start:start + n])
            pos = start + n
            event = self._frame(b0 & 0x80, opcode, payload)
            if event is not None:
                events.append(event)
                if event[0] == OP_CLOSE:
                    break
        if src is self._buf:
            if pos:
                del self._buf[:pos]
        elif pos < end:
            self._buf = bytearray(src[pos:])
        return events

    def _check_header(self, b0: int, opcode: int, n: int, is_masked: bool,
                      client: bool) -> None:
        if b0 & 0x70:
            raise WebSocketError(CLOSE_PROTOCOL, "reserved bits set (no extension agreed)")
        if opcode not in _KNOWN:
            raise WebSocketError(CLOSE_PROTOCOL, f"unknown opcode {opcode:#x}")
        if is_masked == client:
            raise WebSocketError(CLOSE_PROTOCOL, "a masked frame from the server"
                                 if client else "an unmasked frame from a client")
        if opcode >= OP_CLOSE:
            if n > MAX_CONTROL_PAYLOAD:
                raise WebSocketError(CLOSE_PROTOCOL, f"a control frame of {n} bytes")
            if not b0 & 0x80:
                raise WebSocketError(CLOSE_PROTOCOL, "a fragmented control frame")
        elif self._parts_size + n > self.max_message_size:
            raise WebSocketError(CLOSE_TOO_BIG, f"a message of more than "
                                 f"{self.max_message_size} bytes")

    def _frame(self, fin: int, opcode: int, payload: bytes) -> tuple[int, Any] | None:
        if opcode >= OP_CLOSE:
            if opcode == OP_CLOSE:
                return OP_CLOSE, decode_close(payload)
            return opcode, payload
        if opcode == OP_CONTINUATION:
            if self._fragment_op is None:
                raise WebSocketError(CLOSE_PROTOCOL, "a continuation frame with no "
                                     "message under way")
        elif self._fragment_op is not None:
            raise WebSocketError(CLOSE_PROTOCOL, "a new message before the last one's "
                                 "final fragment")
        if not fin:
            if opcode != OP_CONTINUATION:
                self._fragment_op = opcode
            self._parts.append(payload)
            self._parts_size += len(payload)
            return None
        if opcode == OP_CONTINUATION:
            opcode = self._fragment_op  # type: ignore[assignment]
            self._parts.append(payload)
            payload = b"".join(self._parts)
            self._parts = []
            self._parts_size = 0
            self._fragment_op = None
        if opcode == OP_TEXT:
            try:
                return OP_TEXT, payload.decode("utf-8")
            except UnicodeDecodeError:
                raise WebSocketError(CLOSE_INVALID_DATA, "a text message that is not "
                                     "UTF-8") from None
        return OP_BINARY, payload
