"""The bulk data path's framing: one connection's messages, read with ``recv_into``.

On the wire, after an optional TLS handshake, each message is::

    u32 header length | msgpack header | frame 1 | frame 2 | ...

The header names the operation and, for the operations in ``WITH_FRAMES``, ends with
the lengths of the frames that follow, so a receiver allocates a buffer per frame and
reads into it (no intermediate copies), and a sender writes each frame straight from
the value's own memory (pickle protocol 5 out-of-band buffers, see
``serialize.dumps_frames``). The requests themselves are in ``net/bulk.py``; the
same-host ones in ``net/bulk_local.py``.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgpack
import trio

from ..errors import RemoteProtocolError
from ..serialize import RAW_BYTES
from . import cma

VERSION = 1
#: a header larger than this is a protocol error (headers hold keys and frame lengths)
MAX_HEADER = 16 * 1024 * 1024
#: per-read inactivity limit: a peer silent this long mid-transfer is gone
IDLE_TIMEOUT = 60.0
_LEN = struct.Struct("!I")
#: frames this large are received into an anonymous mmap rather than a bytearray
MMAP_MIN = 1 << 20
_MMAP_FLAGS = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)
#: operations whose header ends with the lengths of the frames that follow it
WITH_FRAMES = ("data", "put", "shmdata", "vmput")

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
        lengths = header[-1] if header[0] in WITH_FRAMES else []
        if type(lengths) is not list or not all(type(n) is int and n >= 0 for n in lengths):
            raise RemoteProtocolError("bad frame lengths in bulk header")
        return header

    async def receive_frames(self, header: list[Any]) -> list[memoryview]:
        """The frames ``header`` (from ``receive_header``) declares, each in its own buffer.

        The data frame of a plain ``bytes`` value (after the ``RAW_BYTES`` marker) is
        received into a new ``bytes`` object itself (``cma.new_bytes``), so the value is
        rebuilt without another copy.
        """
        lengths = header[-1] if header[0] in WITH_FRAMES else []
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
        if header[0] in WITH_FRAMES:
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


def split_frames(counts: list[Any], frames: list[memoryview], keys: list[Any]) -> list[list[Any]]:
    if (len(counts) != len(keys) or not all(type(c) is int and c >= 1 for c in counts)
            or sum(counts) != len(frames)):
        raise RemoteProtocolError("frame counts do not match the frames sent")
    out, i = [], 0
    for c in counts:
        out.append(list(frames[i:i + c]))
        i += c
    return out
