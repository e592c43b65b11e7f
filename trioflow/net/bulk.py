"""The bulk data path: large values between clients and workers over plain TCP (or TLS).

Control messages travel over WebSocket; large values do not. WebSocket framing costs a
copy per frame on both ends, and a client masks every byte it sends in pure Python
(wsproto): about 140 MB/s client to server here, against more than 1 GB/s for a
socket reading straight into a preallocated buffer. So each worker also serves a
bulk port, and values of more than ``inline_limit`` bytes move over it, worker to
worker (task inputs), client to worker (scatter) and worker to client (gather). The
scheduler never sees them: it only says where they are.

On the wire, after an optional TLS handshake, each message is::

    u32 header length | msgpack header | frame 1 | frame 2 | ...

The header names the operation and lists the frame lengths, so a receiver allocates a
buffer per frame and reads into it (``recv_into``: no intermediate copies), and a
sender writes each frame straight from the value's own memory (pickle protocol 5
out-of-band buffers, see ``serialize.dumps_frames``). Requests:

* ``["hello", version, token, host]`` first, answered ``["ok", host]`` or
  ``["error", text]``; ``host`` is the peer's ``shm.host_identity()`` ("" for none);
* ``["get", keys]`` -> ``["data", keys, frame-counts, missing]`` + frames;
* ``["put", keys, frame-counts]`` + frames -> ``["ok"]`` or ``["error", text]``.

When both hosts are the same (not ""), large values go through shared memory
(``net/shm.py``) or are copied process to process (``net/cma.py``) instead:

* the hello's answer is ``["ok", host, pid, address, nonce, space]``: the server's pid
  and a nonce at that address (the client reads it to prove ``process_vm_readv`` works)
  and the space its published segments are named in (``shm.published_name``: a client
  maps those directly, without asking). A client of an earlier release takes this
  answer for "not local" (TCP); a server of an earlier release answers ``["ok", host]``,
  and a client then uses only ``shmdata``/``shmput``;
* ``["get", keys(, True: the client can read us)]`` -> ``["shmdata", keys, counts,
  missing, entries]`` + frames; per key ``[segment, lengths, kept]`` (kept: the holder's
  copy, mapped copy-on-write and left in place), ``["vm", length, address]`` (a plain
  ``bytes`` value the client copies from our memory; pinned until its next request) or
  None (its frames follow, as with ``data``);
* ``["shmput", keys, counts, segment, lengths]`` -> ``["ok"]`` or ``["error", text]``;
  the segment of one pickled value is adopted as the holder's copy;
* ``["vmput", keys, counts, entries, pid, address, nonce]`` + frames: per key
  ``[length, address]`` of a plain ``bytes`` value the server copies from the client's
  memory, or None; the first on a connection has the server read the client's nonce
  first (``["error", "unreadable segment", ...]`` if it cannot: the client falls back).

The server side never unpickles what it receives: it stores frames as they came.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import trio

from ..errors import AuthenticationError, RemoteProtocolError
from . import bulk_local, cma, shm
from .bulk_stream import (
    IDLE_TIMEOUT,
    MAX_HEADER,
    VERSION,
    BulkStream,
    Getter,
    Putter,
    Receiving,
    SegmentCache,
    split_frames,
)

__all__ = ["HANDSHAKE_TIMEOUT", "IDLE_TIMEOUT", "MAX_HEADER", "MAX_HELLO", "VERSION",
           "BulkPool", "BulkStream", "Getter", "Putter", "Receiving", "SegmentCache",
           "serve_bulk"]

logger = logging.getLogger(__name__)

#: before the hello is checked, a peer may send only this much (its header; a hello
#: that declares frames is refused unread)
MAX_HELLO = 4096
#: seconds from the TCP accept to a checked hello (a TLS handshake included)
HANDSHAKE_TIMEOUT = 5.0


# ------------------------------------------------------------------ server


async def serve_bulk(get: Getter, put: Putter | None, host: str, *, token: str | None,
                     ssl_context: ssl.SSLContext | None, receiving: Receiving | None = None,
                     segments: SegmentCache | None = None,
                     task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve values on ``host`` (any free port); ``task_status.started(address)``.

    ``address`` is ``tcp://host:port`` (``tls://`` with ``ssl_context``). One bad peer
    (wrong token, garbage, a stall) loses its connection and nothing else.
    Cancellation: stops listening and drops every connection.
    """

    async def handler(stream: trio.SocketStream) -> None:
        peer = _peer_address(stream)  # now: once the peer resets, it has none
        try:
            space = segments.space if segments is not None else ""
            conn = await _accept(stream, token, ssl_context, space)
            if conn is not None:
                await _serve_requests(conn, get, put, receiving, segments)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError,
                ssl.SSLError, OSError):
            pass
        except Exception as exc:  # one bad peer must not stop the server
            with contextlib.suppress(Exception):
                logger.warning("bulk data server: dropping %s: %s", peer, exc)
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host=host))
        port = listeners[0].socket.getsockname()[1]
        scheme = "tls" if ssl_context else "tcp"
        shown = host if ":" not in host else f"[{host}]"
        task_status.started(f"{scheme}://{shown}:{port}")


def _peer_address(stream: trio.SocketStream) -> str:
    try:
        return str(stream.socket.getpeername())
    except OSError:
        return "?"


async def _accept(stream: trio.SocketStream, token: str | None,
                  ssl_context: ssl.SSLContext | None, space: str = "") -> BulkStream | None:
    """TLS handshake and hello within HANDSHAKE_TIMEOUT; the connection, or None after
    refusing it. Before the token is checked only MAX_HELLO bytes are read: a hello
    declaring frames is refused without reading (or allocating) them."""
    with trio.fail_after(HANDSHAKE_TIMEOUT):
        s: trio.abc.Stream = stream
        if ssl_context is not None:
            s = trio.SSLStream(stream, ssl_context, server_side=True)
            await s.do_handshake()
        conn = BulkStream(s)
        hello = await conn.receive_header(max_header=MAX_HELLO)
        if (len(hello) not in (3, 4) or hello[0] != "hello" or type(hello[2]) is not str or (
                token is not None
                and not hmac.compare_digest(hello[2].encode(), token.encode()))):
            await conn.send(["error", "wrong or missing token"])
            return None
        host = shm.host_identity()
        conn.local = len(hello) == 4 and bool(host) and hello[3] == host
        if conn.local:
            # our pid and a nonce (the client proves process_vm_readv works by reading
            # it), and where our published segments are; a client of an earlier release
            # takes this for "not local" and uses TCP
            await conn.send(["ok", host, *cma.shown(), cma.NONCE, space])
        else:
            await conn.send(["ok", host])
    return conn


async def _serve_requests(conn: BulkStream, get: Getter, put: Putter | None,
                          receiving: Receiving | None,
                          segments: SegmentCache | None = None) -> None:
    """Answer an authenticated peer's requests until it leaves."""
    uploading: list[str] = []

    def started(header: list[Any]) -> None:
        if header[0] in ("put", "vmput") and receiving is not None and type(header[1]) is list:
            uploading[:] = [k for k in header[1] if type(k) is str]
            receiving(uploading, True)

    try:
        while True:
            await _serve_one(conn, get, put, receiving, uploading, started, segments)
    finally:
        for name in conn.segments:  # the peer left before saying it was done with them
            shm.unlink(name)
        conn.pinned.clear()


async def _serve_one(conn: BulkStream, get: Getter, put: Putter | None,
                     receiving: Receiving | None, uploading: list[str],
                     started: Callable[[list[Any]], None],
                     segments: SegmentCache | None) -> None:
    # a pooled connection may sit idle between requests for any time
    try:
        header, frames = await conn.receive(wait=float("inf"), on_header=started)
    finally:
        if uploading and receiving is not None:
            receiving(uploading, False)
            uploading.clear()
    for name in conn.segments:  # a new request: the peer has read the last ones
        shm.unlink(name)
    conn.segments.clear()
    conn.pinned.clear()
    if header[0] == "get" and len(header) in (2, 3) and type(header[1]) is list:
        wanted = [str(k) for k in header[1]]
        # values already in a segment of their own: named at once, without asking the
        # owner for (or serializing) anything
        ready = {} if not conn.local or segments is None else {
            k: c for k in wanted if (c := segments.cached_segment(k)) is not None}
        keys, blobs, missing = await get([k for k in wanted if k not in ready])
        counts = [len(fs) for fs in blobs]
        if conn.local:
            reads_us = len(header) == 3 and header[2] is True
            placed = [bulk_local.readable(conn, fs) if reads_us else None for fs in blobs]
            placed = [seg or await bulk_local.in_segment(conn, k, fs, segments)
                      for k, fs, seg in zip(keys, blobs, placed)]
            if any(placed) or ready:
                rest = [f for fs, seg in zip(blobs, placed) if seg is None for f in fs]
                keys += ready
                counts += [len(lengths) for _, lengths in ready.values()]
                placed += [[name, lengths, True] for name, lengths in ready.values()]
                await conn.send(["shmdata", keys, counts, missing, placed], rest)
                return
        await conn.send(["data", keys, counts, missing], [f for fs in blobs for f in fs])
    elif header[0] == "vmput" and put is not None and len(header) == 8 and conn.local:
        await bulk_local.copy_upload(conn, header, frames, put)
    elif header[0] == "shmput" and put is not None and len(header) == 5 and conn.local:
        await bulk_local.accept_segment(conn, header, put, receiving, segments)
    elif header[0] == "put" and put is not None and len(header) == 4:
        keys = header[1]
        if type(keys) is not list or not all(type(k) is str for k in keys):
            raise RemoteProtocolError("put: keys must be strings")
        try:
            await put(dict(zip(keys, split_frames(header[2], frames, keys))))
        except ValueError as exc:
            await conn.send(["error", str(exc)])
        else:
            await conn.send(["ok"])
    else:
        raise RemoteProtocolError(f"unknown bulk request {header[0]!r}")


# ------------------------------------------------------------------ client


class BulkPool:
    """Reusable bulk connections to data servers, per address (one loop only).

    A connection serves one request at a time; concurrent requests to one address open
    more connections, and idle ones are kept for the next request.
    """

    def __init__(self, *, token: str | None, ssl_context: ssl.SSLContext | None,
                 idle_timeout: float = IDLE_TIMEOUT, max_idle: int = 4,
                 shared_memory: bool = True) -> None:
        self.token = token
        self.ssl_context = ssl_context
        self.idle_timeout = idle_timeout
        self.max_idle = max_idle
        #: offer shared memory to data servers on this host (``net/shm.py``)
        self.shared_memory = shared_memory
        #: copy ``bytes`` values across processes with ``process_vm_readv`` where the
        #: kernel allows it (``net/cma.py``); turned off if a read ever fails
        self.cross_memory = shared_memory
        self._idle: dict[str, list[BulkStream]] = {}
        self.closed = False
        #: (pid, space) of data servers on this host that publish segments, by address
        #: (from their hello)
        self._published: dict[str, tuple[int, str]] = {}

    def __repr__(self) -> str:
        return f"<BulkPool idle={sum(map(len, self._idle.values()))}>"

    async def _open(self, address: str) -> BulkStream:
        scheme, _, rest = address.partition("://")
        host, _, port = rest.rpartition(":")
        host = host.strip("[]")
        if scheme not in ("tcp", "tls") or not port.isdigit():
            raise ValueError(f"not a bulk data address: {address!r}")
        with trio.fail_after(self.idle_timeout):
            stream: trio.abc.Stream = await trio.open_tcp_stream(host, int(port))
            if scheme == "tls":
                ctx = self.ssl_context or ssl.create_default_context()
                stream = trio.SSLStream(stream, ctx, server_hostname=host)
                try:
                    await stream.do_handshake()
                except trio.BrokenResourceError as exc:
                    await trio.aclose_forcefully(stream)
                    if isinstance(exc.__cause__, ssl.SSLCertVerificationError):
                        raise AuthenticationError(
                            f"the certificate of data server {address} is not trusted: "
                            f"{exc.__cause__.verify_message}; pass an ssl_context that "
                            "trusts it (--tls-ca)") from None
                    raise
            conn = BulkStream(stream, idle_timeout=self.idle_timeout)
            host = shm.host_identity() if self.shared_memory else ""
            await conn.send(["hello", VERSION, self.token or "", host])
            reply, _ = await conn.receive()
            if reply[0] != "ok":
                await conn.aclose()
                raise AuthenticationError(f"data server {address} refused us: {reply[1:]}")
            # (["ok", host] from a server of an earlier release: segments only)
            conn.local = bool(host) and len(reply) in (2, 6) and reply[1] == host
            conn.extended = conn.local and len(reply) == 6
            if conn.extended and type(reply[2]) is int and type(reply[5]) is str and reply[5]:
                self._published[address] = (reply[2], reply[5])  # (see get)
            if conn.extended and self.cross_memory:
                conn.reads_peer = cma.probe(*reply[2:5])  # (16 bytes)
                conn.peer_pid = reply[2] if conn.reads_peer else 0
        return conn

    @contextlib.asynccontextmanager
    async def connection(self, address: str, *, fresh: bool = False
                         ) -> AsyncIterator[BulkStream]:
        """A connection to ``address`` for one request; back to the pool if it ends clean.

        Cancellation: the connection is closed (it may be mid-message), never reused.
        """
        idle = self._idle.get(address)
        conn = idle.pop() if idle and not fresh else await self._open(address)
        try:
            yield conn
        except BaseException:
            await conn.aclose()
            raise
        if self.closed or len(self._idle.setdefault(address, [])) >= self.max_idle:
            await conn.aclose()
        else:
            self._idle[address].append(conn)

    async def _request(self, address: str,
                       exchange: Callable[[BulkStream], Awaitable[tuple[list[Any], list[Any]]]],
                       ) -> tuple[list[Any], list[Any]]:
        # a pooled connection may have gone stale (the server restarted): once more, fresh;
        # and a segment we could not open: once more, fresh (over TCP if it was refused)
        for fresh in (False, True, True):
            pooled = not fresh and bool(self._idle.get(address))
            try:
                async with self.connection(address, fresh=fresh) as conn:
                    return await exchange(conn)
            except bulk_local.NoSharedMemory as exc:
                if exc.off:
                    setattr(self, exc.off, False)
                failed: BaseException = exc.__cause__ or exc
                continue
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                if not pooled:
                    raise
        raise trio.BrokenResourceError(f"could not read the shared memory segments of "
                                       f"{address}: {failed}")

    async def get(self, address: str, keys: list[str]) -> tuple[dict[str, list[Any]], list[str]]:
        """Frames of ``keys`` from the server at ``address``, and the keys it lacked.

        From a server on this host met before, values it keeps in a published segment
        (``shm.open_published``) are mapped straight away, with no request at all.
        """
        where = self._published.get(address) if self.shared_memory else None
        if where is not None:
            mapped = {k: fs for k in keys
                      if (fs := shm.open_published(*where, k)) is not None}
            if mapped:
                if len(mapped) == len(keys):
                    return mapped, []
                got, missing = await self.get(address, [k for k in keys if k not in mapped])
                return {**mapped, **got}, missing

        async def exchange(conn: BulkStream) -> tuple[list[Any], list[Any]]:
            await conn.send(["get", keys, True] if conn.reads_peer else ["get", keys])
            header, frames = await conn.receive()
            if header[0] == "shmdata" and len(header) == 6 and conn.local:
                return ["data", *header[1:4], None], await bulk_local.read_reply(
                    conn, header, frames)
            return header, frames

        header, frames = await self._request(address, exchange)
        if header[0] != "data" or len(header) != 5:
            raise RemoteProtocolError(f"unexpected bulk reply {header[0]!r}")
        _, got, counts, missing, _ = header
        return dict(zip(got, split_frames(counts, frames, got))), [str(k) for k in missing]

    async def put(self, address: str, values: dict[str, list[Any]]) -> None:
        """Store frames under keys on the server at ``address``.

        Raises:
            ValueError: the server refused (e.g. it did not expect these keys).
        """
        keys = list(values)
        counts = [len(values[k]) for k in keys]
        flat = [f for k in keys for f in values[k]]

        async def exchange(conn: BulkStream) -> tuple[list[Any], list[Any]]:
            if conn.local:
                reply = await bulk_local.put_locally(
                    conn, address, values, cross_memory=self.cross_memory,
                    idle_timeout=self.idle_timeout)
                if reply is not None:
                    return reply
            await conn.send(["put", keys, counts], flat)
            return await conn.receive()

        reply, _ = await self._request(address, exchange)
        if reply[0] != "ok":
            raise ValueError(f"data server {address} refused the data: {reply[1:]}")

    async def aclose(self) -> None:
        """Close every idle connection (in-flight ones close when their request ends)."""
        self.closed = True
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                await conn.aclose()
