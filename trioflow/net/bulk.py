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
import mmap
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, Protocol

import msgpack
import trio

from ..errors import AuthenticationError, RemoteProtocolError
from ..serialize import RAW_BYTES
from . import cma, shm

logger = logging.getLogger(__name__)

VERSION = 1
#: a header larger than this is a protocol error (headers hold keys and frame lengths)
MAX_HEADER = 16 * 1024 * 1024
#: before the hello is checked, a peer may send only this much (its header; a hello
#: that declares frames is refused unread)
MAX_HELLO = 4096
#: seconds from the TCP accept to a checked hello (a TLS handshake included)
HANDSHAKE_TIMEOUT = 5.0
#: per-read inactivity limit: a peer silent this long mid-transfer is gone
IDLE_TIMEOUT = 60.0
_LEN = struct.Struct("!I")
#: frames this large are received into an anonymous mmap rather than a bytearray
MMAP_MIN = 1 << 20
_MMAP_FLAGS = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)
#: operations whose header ends with the lengths of the frames that follow it
_WITH_FRAMES = ("data", "put", "shmdata", "vmput")

#: what a data server needs from its owner: ``get(keys) -> (keys, frames per key,
#: missing)``, ``put(key -> frames)`` (raising ValueError to refuse), and optionally
#: ``receiving(keys, True/False)`` around the transfer of an upload's frames
Getter = Callable[[list[str]], Awaitable[tuple[list[str], list[list[Any]], list[str]]]]
Putter = Callable[[dict[str, list[Any]]], Awaitable[None]]
Receiving = Callable[[list[str], bool], None]


class SegmentCache(Protocol):
    """Optionally, a data server's owner keeps one segment per key (until the key goes)."""

    async def segment(self, key: str, frames: list[Any]) -> tuple[str, list[int]]:
        """The segment holding ``key``'s ``frames`` (written now if there is none):
        its name and frame lengths. Raises OSError if it cannot."""

    #: the space its published segments are named in (``shm.published_name``)
    space: str

    def cached_segment(self, key: str) -> tuple[str, list[int]] | None:
        """The segment of ``key`` if it has one already."""

    def adopted(self, key: str, name: str, lengths: list[int]) -> None:
        """Segment ``name`` holds the frames just stored for ``key``: keep it as the
        key's (or unlink it)."""


class BulkStream:
    """One bulk connection: framed messages over a Trio stream, read with ``recv_into``."""

    def __init__(self, stream: trio.abc.Stream, *, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.stream = stream
        self.idle_timeout = idle_timeout
        #: the peer is on this host (same ``shm.host_identity()``): use shared memory
        self.local = False
        #: segments this side wrote for the peer, unlinked once the next request (or
        #: the connection's end) shows the peer is done with them
        self.segments: list[str] = []
        #: this side can copy from the peer's memory with ``process_vm_readv``
        #: (``net/cma.py``, checked at the hello), and the peer's pid; and the reverse
        self.reads_peer = False
        self.peer_pid = 0
        #: (client side) the server speaks this release's same-host extensions (its
        #: hello answer says where its published segments are; it takes ``vmput``)
        self.extended = False
        #: ``bytes`` objects the peer is reading from our memory: kept alive until the
        #: next request (or the connection's end) shows it is done
        self.pinned: list[Any] = []
        # plain TCP: read straight into our buffers; TLS decrypts into its own first
        self._sock = stream.socket if isinstance(stream, trio.SocketStream) else None

    async def _read_into(self, view: memoryview, timeout: float) -> None:
        got, n = 0, len(view)
        while got < n:
            with trio.fail_after(timeout):
                if self._sock is not None:
                    k = await self._sock.recv_into(view[got:])
                else:
                    data = await self.stream.receive_some(min(n - got, 1 << 20))
                    k = len(data)
                    view[got:got + k] = data
            if k == 0:
                raise trio.BrokenResourceError("the peer closed the bulk connection")
            got += k

    async def _read(self, n: int, timeout: float | None = None) -> Any:
        # Large frames go into anonymous mmaps, not bytearrays: a bytearray is zero-filled
        # first (a pass over 100 MB, ~60 ms here). MAP_POPULATE maps every page in one
        # call instead of one page fault per 4 KiB during the receive: 0.8 -> 1.3+ GB/s
        # for 100 MB between two processes here.
        buf = mmap.mmap(-1, n, flags=_MMAP_FLAGS) if n >= MMAP_MIN else bytearray(n)
        if n:
            await self._read_into(memoryview(buf), timeout or self.idle_timeout)
        return buf

    async def receive_header(self, max_header: int = MAX_HEADER, *,
                             wait: float | None = None) -> list[Any]:
        """One message's header, without reading the frames it declares (the caller
        must call ``receive_frames`` next, or close). A server reads a peer's hello this
        way: nothing it declares is allocated before its token is checked.

        Raises:
            RemoteProtocolError: a malformed header.
            trio.BrokenResourceError / trio.TooSlowError: the peer went away or stalled.
        """
        (size,) = _LEN.unpack(await self._read(4, wait))
        if size > max_header:
            raise RemoteProtocolError(f"bulk header of {size} bytes (limit {max_header})")
        raw = await self._read(size)
        try:
            header = msgpack.unpackb(raw, use_list=True)
        except Exception as exc:
            raise RemoteProtocolError(f"undecodable bulk header: {exc}") from None
        if type(header) is not list or not header or type(header[0]) is not str:
            raise RemoteProtocolError("a bulk header must be a list starting with its op")
        lengths = header[-1] if header[0] in _WITH_FRAMES else []
        if type(lengths) is not list or not all(type(n) is int and n >= 0 for n in lengths):
            raise RemoteProtocolError("bad frame lengths in bulk header")
        return header

    async def receive_frames(self, header: list[Any]) -> list[memoryview]:
        """The frames ``header`` (from ``receive_header``) declares, each in its own buffer.

        The data frame of a plain ``bytes`` value (after the ``RAW_BYTES`` marker) is
        received into a new ``bytes`` object itself (``cma.new_bytes``), so the value is
        rebuilt without another copy.
        """
        lengths = header[-1] if header[0] in _WITH_FRAMES else []
        frames: list[memoryview] = []
        for n in lengths:
            if n >= MMAP_MIN and frames and frames[-1] == RAW_BYTES and cma.available():
                data, view = cma.new_bytes(n)
                await self._read_into(view, self.idle_timeout)
                del view
                frames.append(memoryview(data))
            else:
                frames.append(memoryview(await self._read(n)))
        return frames

    async def receive(self, max_header: int = MAX_HEADER, *, wait: float | None = None,
                      on_header: Callable[[list[Any]], None] | None = None,
                      ) -> tuple[list[Any], list[memoryview]]:
        """One message: its header and its frames (each in a buffer of its own).

        Args:
            wait: how long to wait for the message to start (default: idle_timeout).
            on_header: called with the header before the frames are read.

        Raises:
            RemoteProtocolError: a malformed header.
            trio.BrokenResourceError / trio.TooSlowError: the peer went away or stalled.
        """
        header = await self.receive_header(max_header, wait=wait)
        if on_header is not None:
            on_header(header)
        return header, await self.receive_frames(header)

    async def send(self, header: list[Any], frames: list[Any] | None = None) -> None:
        """Send one message; frames go out from their own memory, uncopied.

        Cancellation: the connection is left mid-message and must be closed.
        """
        if header[0] in _WITH_FRAMES:
            frames = frames or []
            header = [*header, [memoryview(f).nbytes for f in frames]]
        head = msgpack.packb(header)
        await self.stream.send_all(_LEN.pack(len(head)) + head)
        for f in frames or ():
            if memoryview(f).nbytes:
                await self.stream.send_all(f)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self.stream)


def _split(counts: list[Any], frames: list[memoryview], keys: list[Any]) -> list[list[Any]]:
    if (len(counts) != len(keys) or not all(type(c) is int and c >= 1 for c in counts)
            or sum(counts) != len(frames)):
        raise RemoteProtocolError("frame counts do not match the frames sent")
    out, i = [], 0
    for c in counts:
        out.append(list(frames[i:i + c]))
        i += c
    return out


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
            placed = [_readable(conn, fs) if reads_us else None for fs in blobs]
            placed = [seg or await _in_segment(conn, k, fs, segments)
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
        await _copy_upload(conn, header, frames, put)
    elif header[0] == "shmput" and put is not None and len(header) == 5 and conn.local:
        await _accept_segment(conn, header, put, receiving, segments)
    elif header[0] == "put" and put is not None and len(header) == 4:
        keys = header[1]
        if type(keys) is not list or not all(type(k) is str for k in keys):
            raise RemoteProtocolError("put: keys must be strings")
        try:
            await put(dict(zip(keys, _split(header[2], frames, keys))))
        except ValueError as exc:
            await conn.send(["error", str(exc)])
        else:
            await conn.send(["ok"])
    else:
        raise RemoteProtocolError(f"unknown bulk request {header[0]!r}")


def _readable(conn: BulkStream, frames: list[Any]) -> list[Any] | None:
    """``["vm", length, address]`` for a large plain ``bytes`` value the peer copies
    from our memory itself (``net/cma.py``; pinned until its next request), or None."""
    if len(frames) != 2 or frames[0] != RAW_BYTES:
        return None
    data = frames[1]
    if type(data) is memoryview and type(data.obj) is bytes and data.nbytes == len(data.obj):
        data = data.obj  # (received into a bytes object of its own)
    if type(data) is not bytes or len(data) < shm.SHM_MIN:
        return None
    conn.pinned.append(data)
    return ["vm", len(data), cma.address_of(data)]


async def _in_segment(conn: BulkStream, key: str, frames: list[Any],
                      segments: SegmentCache | None) -> list[Any] | None:
    """``[segment, lengths, kept]`` holding a large value's frames, or None (small, or no
    room in /dev/shm: it goes over the socket)."""
    if sum(memoryview(f).nbytes for f in frames) < shm.SHM_MIN:
        return None
    try:
        if segments is not None:
            name, lengths = await segments.segment(key, frames)
            return [name, lengths, True]
        name, lengths = await trio.to_thread.run_sync(shm.write_segment, frames)
    except OSError as exc:
        logger.info("bulk: shared memory unavailable (%s); sending over TCP", exc)
        return None
    conn.segments.append(name)
    return [name, lengths, False]


async def _copy_upload(conn: BulkStream, header: list[Any], frames: list[Any],
                       put: Putter) -> None:
    """An upload whose large ``bytes`` values we copy from the client's memory ourselves
    (``net/cma.py``): one copy each, straight into the ``bytes`` object we keep."""
    _, keys, counts, entries, pid, address, nonce, _ = header
    if not conn.reads_peer:  # the first one on this connection: prove we can read it
        conn.reads_peer = await trio.to_thread.run_sync(cma.probe, pid, address, nonce)
        if not conn.reads_peer:
            await conn.send(["error", _UNREADABLE, "process_vm_readv is not allowed"])
            return
        conn.peer_pid = pid
    if (type(keys) is not list or not all(type(k) is str for k in keys)
            or type(counts) is not list or type(entries) is not list
            or len(entries) != len(keys) or len(counts) != len(keys)):
        raise RemoteProtocolError("vmput: malformed header")
    rest = iter(frames)
    values: dict[str, list[Any]] = {}
    for key, count, entry in zip(keys, counts, entries):
        if entry is None:
            if type(count) is not int or count < 1:
                raise RemoteProtocolError("vmput: bad frame count")
            values[key] = [next(rest, b"") for _ in range(count)]
            continue
        if (count != 2 or type(entry) is not list or len(entry) != 2
                or not all(type(x) is int and x >= 0 for x in entry)):
            raise RemoteProtocolError("vmput: malformed entry")
        try:
            data = await trio.to_thread.run_sync(cma.read, conn.peer_pid, entry[1], entry[0])
        except OSError as exc:  # the client retries over TCP
            await conn.send(["error", _UNREADABLE, str(exc)])
            return
        values[key] = [memoryview(RAW_BYTES), memoryview(data)]
    try:
        await put(values)
    except ValueError as exc:
        await conn.send(["error", str(exc)])
    else:
        await conn.send(["ok"])


async def _accept_segment(conn: BulkStream, header: list[Any], put: Putter,
                          receiving: Receiving | None, segments: SegmentCache | None) -> None:
    """An upload through shared memory: map the segment, then store its frames.

    With a segment cache, the segment of one pickled value (arrays) is adopted (renamed
    ours, mapped copy-on-write, ``SegmentCache.adopted``): readers on this host map the
    client's one copy later, with no second copy written for them."""
    _, keys, counts, name, lengths = header
    if (type(keys) is not list or not all(type(k) is str for k in keys)
            or type(counts) is not list or type(name) is not str or type(lengths) is not list
            or not all(type(c) is int and c >= 0 for c in counts)):
        raise RemoteProtocolError("shmput: malformed header")
    if receiving is not None:
        receiving(keys, True)
    own = None
    try:
        try:
            if (segments is not None and len(keys) == 1 and lengths
                    and type(lengths[0]) is int and lengths[0] != 1):
                own = await trio.to_thread.run_sync(shm.adopt, name)
                frames = await trio.to_thread.run_sync(
                    partial(shm.read_segment, own, lengths, counts, kept=True))
            else:
                frames = await trio.to_thread.run_sync(shm.read_segment, name, lengths, counts)
        except OSError as exc:  # (e.g. another user's segment): the client retries on TCP
            await conn.send(["error", _UNREADABLE, str(exc)])
            return
        await put(dict(zip(keys, _split(counts, frames, keys))))
        if own is not None and segments is not None:
            segments.adopted(keys[0], own, lengths)
            own = None
    except ValueError as exc:
        await conn.send(["error", str(exc)])
    else:
        await conn.send(["ok"])
    finally:
        if own is not None:  # (not stored)
            shm.unlink(own)
        if receiving is not None:
            receiving(keys, False)


# ------------------------------------------------------------------ client


#: the error a server answers when it cannot open an upload's segment
_UNREADABLE = "unreadable segment"


class _NoSharedMemory(Exception):
    """A segment could not be opened: the request is sent again, over TCP."""


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
            except _NoSharedMemory as exc:
                failed: BaseException = exc.__cause__ or exc
                continue
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                if not pooled:
                    raise
        raise trio.BrokenResourceError(f"could not read the shared memory segments of "
                                       f"{address}: {failed}")

    async def _copy_from(self, conn: BulkStream, seg: list[Any], count: int) -> list[Any]:
        """The frames of a ``bytes`` value the server left in its memory for us to copy."""
        n, address = seg[1], seg[2]
        if not conn.reads_peer or count != 2 or type(n) is not int or type(address) is not int:
            raise RemoteProtocolError("malformed shmdata vm entry")
        try:
            data = await trio.to_thread.run_sync(cma.read, conn.peer_pid, address, n)
        except OSError as exc:  # (allowed at the hello, so unexpected): segments from now
            logger.warning("bulk: process_vm_readv failed (%s); using shared memory", exc)
            self.cross_memory = False
            raise _NoSharedMemory() from exc
        return [memoryview(RAW_BYTES), memoryview(data)]

    async def _from_segments(self, conn: BulkStream, header: list[Any],
                             frames: list[Any]) -> list[Any]:
        """The frames of a ``shmdata`` reply: from its segments, and from the socket for
        the values sent over it."""
        counts, placed = header[2], header[4]
        if (type(counts) is not list or type(placed) is not list or len(placed) != len(counts)
                or not all(type(c) is int and c >= 0 for c in counts)):
            raise RemoteProtocolError("malformed shmdata reply")
        out: list[Any] = []
        rest = iter(frames)
        for count, seg in zip(counts, placed):
            if seg is None:
                out.extend(next(rest, b"") for _ in range(count))
                continue
            if type(seg) is list and len(seg) == 3 and seg[0] == "vm":
                out += await self._copy_from(conn, seg, count)
                continue
            if (type(seg) is not list or len(seg) != 3 or type(seg[0]) is not str
                    or type(seg[1]) is not list):
                raise RemoteProtocolError("malformed shmdata segment")
            read = partial(shm.read_segment, seg[0], seg[1], [count], kept=bool(seg[2]))
            try:
                if seg[2] and seg[1] and seg[1][0] != 1:
                    # a holder's segment of a pickled value (its head is a pickle stream,
                    # never 1 byte long like the plain-bytes marker): only mapped, a few
                    # cheap system calls, so here rather than a thread hop (two wake-ups
                    # on a busy machine)
                    out += read()
                else:  # (copied into a bytes object, or mapped and populated)
                    out += await trio.to_thread.run_sync(read)
            except PermissionError as exc:  # another user's data server: use TCP from now
                logger.warning("bulk: cannot open shared memory segment %s (%s); using TCP",
                               seg[0], exc)
                self.shared_memory = False
                raise _NoSharedMemory() from exc
            except OSError as exc:  # (a kept segment whose key went meanwhile): ask again
                raise _NoSharedMemory() from exc
        return out

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
                return ["data", *header[1:4], None], await self._from_segments(
                    conn, header, frames)
            return header, frames

        header, frames = await self._request(address, exchange)
        if header[0] != "data" or len(header) != 5:
            raise RemoteProtocolError(f"unexpected bulk reply {header[0]!r}")
        _, got, counts, missing, _ = header
        return dict(zip(got, _split(counts, frames, got))), [str(k) for k in missing]

    async def put(self, address: str, values: dict[str, list[Any]]) -> None:
        """Store frames under keys on the server at ``address``.

        Raises:
            ValueError: the server refused (e.g. it did not expect these keys).
        """
        keys = list(values)
        counts = [len(values[k]) for k in keys]
        flat = [f for k in keys for f in values[k]]

        async def exchange(conn: BulkStream) -> tuple[list[Any], list[Any]]:
            vm = conn.extended and self.cross_memory and cma.available()
            entries = [_readable(conn, values[k]) if vm else None for k in keys]
            rest = [f for k, e in zip(keys, entries) if e is None for f in values[k]]
            if any(entries) and sum(memoryview(f).nbytes for f in rest) < shm.SHM_MIN:
                # the server copies the large bytes from our memory itself
                # shielded (bounded): our memory must stay as it is until the server has
                # copied it, or it could store what the memory held after we let go
                with trio.CancelScope(shield=True), trio.fail_after(self.idle_timeout):
                    await conn.send(["vmput", keys, counts, [e and e[1:] for e in entries],
                                     *cma.shown(), cma.NONCE], rest)
                    reply = await conn.receive()
                conn.pinned.clear()
                if reply[0][:2] == ["error", _UNREADABLE]:
                    logger.warning("bulk: %s cannot copy from our memory (%s); using "
                                   "shared memory", address, reply[0][2:])
                    self.cross_memory = False
                    raise _NoSharedMemory()
                return reply
            if conn.local and sum(memoryview(f).nbytes for f in flat) >= shm.SHM_MIN:
                try:
                    name, lengths = await trio.to_thread.run_sync(shm.write_segment, flat)
                except OSError as exc:  # no room in /dev/shm: the socket will do
                    logger.info("bulk: shared memory unavailable (%s); sending over TCP", exc)
                else:
                    try:
                        await conn.send(["shmput", keys, counts, name, lengths])
                        reply = await conn.receive()
                        if reply[0][:2] == ["error", _UNREADABLE]:
                            logger.warning("bulk: %s cannot open our shared memory (%s); "
                                           "using TCP", address, reply[0][2:])
                            self.shared_memory = False
                            raise _NoSharedMemory()
                        return reply
                    finally:
                        with trio.CancelScope(shield=True):
                            await trio.to_thread.run_sync(shm.unlink, name)
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
