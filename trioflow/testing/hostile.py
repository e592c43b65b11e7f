"""Hostile peers over raw sockets: connections that die at any handshake step, oversized
and slow unauthenticated frames, descriptor floods (for tests and fuzzers; loopback only).

An attack is a list of steps run in order on one TCP connection to a scheduler (or, with
the ``bulk_*`` steps, a worker's bulk port). It ends with a reset (``SO_LINGER`` 0: the
kernel sends RST, the way a killed host's connection ends) or a close, or by waiting
for the server to close: ``run_steps`` returns how the connection ended.

Cancellation: the socket is closed (reset) and the cancellation propagates.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
from collections.abc import Iterator, Sequence
from typing import Any

import msgpack
import trio

from .. import protocol as p

__all__ = ["STEPS", "UPGRADE_REQUEST", "bulk_message", "flood", "hello_frame",
           "logged_errors", "reset", "run_steps", "ws_frame", "ws_frame_header"]



class _Recorder(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.ERROR)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def logged_errors(name: str = "trioflow") -> Iterator[list[logging.LogRecord]]:
    """The ERROR (and worse) records logged under ``name`` inside the block: what a
    server that survived an attack must not have had to say."""
    records: list[logging.LogRecord] = []
    handler = _Recorder(records)
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


#: a complete WebSocket upgrade request, as a client would send it
UPGRADE_REQUEST = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   b"Sec-WebSocket-Version: 13\r\n\r\n")


def ws_frame_header(n: int, opcode: int = 0x2, fin: bool = True) -> bytes:
    """A masked client frame header announcing ``n`` payload bytes (zero mask: the
    payload goes out as it is)."""
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        length = bytes([0x80 | n])
    elif n < 1 << 16:
        length = bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        length = bytes([0x80 | 127]) + struct.pack("!Q", n)
    return bytes([first]) + length + b"\0\0\0\0"


def ws_frame(payload: bytes, opcode: int = 0x2) -> bytes:
    """A whole masked client frame."""
    return ws_frame_header(len(payload), opcode) + payload


def hello_frame(role: str = "client", token: str = "") -> bytes:
    """A WebSocket frame holding one Hello."""
    return ws_frame(p.encode_frame([p.Hello(role, "hostile", list(p.SUPPORTED_VERSIONS), token, 1,
                                            "tcp://127.0.0.1:9")]))


def bulk_message(header: list[Any]) -> bytes:
    """A bulk-port message header (``u32 length | msgpack``), without its frames."""
    head = msgpack.packb(header)
    return struct.pack("!I", len(head)) + head


def reset(stream: trio.SocketStream) -> None:
    """Close with RST instead of FIN (``SO_LINGER`` on, 0 s), as a dead host would."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


#: step name -> what it sends (bytes), or an action handled by ``run_steps``
STEPS: dict[str, bytes | str] = {
    "partial_request": UPGRADE_REQUEST[:30],
    "request": UPGRADE_REQUEST,
    "read_upgrade": "read_upgrade",  # wait for the 101 response
    "hello": hello_frame("client"),
    "worker_hello": hello_frame("worker"),
    "partial_frame": ws_frame_header(1000) + b"\x93\x01",  # 2 of 1,000 bytes
    "oversized_frame": "oversized_frame",  # announce 64 MB, send until refused
    "slow_frame": "slow_frame",  # announce a small frame, trickle it
    "garbage": b"\xff" * 64,
    "bulk_hello_no_token": bulk_message(["hello", 1, ""]),
    "bulk_put_128mb": bulk_message(["put", ["k"], [1], [128 * 1024 * 1024]]) + b"x" * 100,
    "bulk_huge_header": struct.pack("!I", 1 << 30),
    "bulk_partial_header": struct.pack("!I", 100) + b"\x93",
}


async def _read_upgrade(stream: trio.SocketStream) -> bool:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(4096)
        if not chunk:
            return False
        data += chunk
    return data.startswith(b"HTTP/1.1 101")


async def _send_until_refused(stream: trio.SocketStream, total: int) -> int:
    """Send ``total`` zero bytes in 1 MiB chunks; how many went out before the server
    closed the connection."""
    chunk = bytes(1 << 20)
    sent = 0
    try:
        while sent < total:
            await stream.send_all(chunk)
            sent += len(chunk)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    return sent


async def run_steps(port: int, steps: Sequence[str], end: str = "reset", *,
                    slow_delay: float = 0.01) -> dict[str, Any]:
    """Run ``steps`` on a new connection to ``127.0.0.1:port``, then end it: ``"reset"``,
    ``"close"``, or ``"wait"`` (until the server closes it).

    Returns what happened: ``{"ended": "reset" | "close" | "server_closed", "upgraded":
    bool, "sent_oversized": bytes}``. A step the server refused by closing ends the
    attack early with ``ended="server_closed"``.
    """
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    outcome: dict[str, Any] = {"ended": end, "upgraded": False, "sent_oversized": 0}
    try:
        for step in steps:
            what = STEPS[step]
            if what == "read_upgrade":
                outcome["upgraded"] = await _read_upgrade(stream)
            elif what == "oversized_frame":
                size = 64 * 1024 * 1024
                await stream.send_all(ws_frame_header(size))
                outcome["sent_oversized"] = await _send_until_refused(stream, size)
                if outcome["sent_oversized"] < size:
                    outcome["ended"] = "server_closed"
                    return outcome
            elif what == "slow_frame":
                frame = ws_frame(os.urandom(40))
                for i in range(len(frame)):
                    await stream.send_all(frame[i:i + 1])
                    await trio.sleep(slow_delay)
            else:
                assert isinstance(what, bytes)
                await stream.send_all(what)
        if end == "wait":
            while await stream.receive_some(65536):
                pass
            outcome["ended"] = "server_closed"
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        outcome["ended"] = "server_closed"
    finally:
        if end == "close" or outcome["ended"] == "server_closed":
            await trio.aclose_forcefully(stream)
        else:
            reset(stream)
    return outcome


async def flood(port: int, n: int, *, end: str = "close") -> None:
    """Open ``n`` connections that never send a request, then end them all (``"close"``,
    ``"reset"``), or with ``"wait"`` wait until the server has closed every one."""
    streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(n)]
    if end == "wait":
        async with trio.open_nursery() as nursery:
            for s in streams:
                nursery.start_soon(_wait_closed, s)
        return
    for s in streams:
        if end == "reset":
            reset(s)
        else:
            await trio.aclose_forcefully(s)


async def _wait_closed(stream: trio.SocketStream) -> None:
    try:
        while await stream.receive_some(4096):
            pass
    except trio.BrokenResourceError:
        pass
    finally:
        await trio.aclose_forcefully(stream)
