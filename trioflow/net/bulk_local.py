"""The bulk data path between two processes on one host (``net/bulk.py``'s same-host
requests): values through ``/dev/shm`` segments (``net/shm.py``) or copied process to
process (``net/cma.py``), for both the data server and ``BulkPool``.

* ``get`` answered ``shmdata``: per value a segment (``in_segment``: written, or the
  holder's kept one), a ``["vm", length, address]`` entry for a plain ``bytes`` value
  the reader copies from our memory (``readable``: pinned on the connection until the
  reader's next request), or its frames on the socket; the reader side is
  ``read_reply``.
* ``shmput``: the client's segment, mapped (and adopted by the holder when it holds one
  pickled value: ``accept_segment``); ``vmput``: the server copies large ``bytes`` from
  the client's memory (``copy_upload``); the client side is ``put_locally``.

Whatever cannot be done this way (no room in /dev/shm, another user, a refused
``process_vm_readv``) raises ``NoSharedMemory`` for the pool to ask again, or returns
None for the caller to use the socket.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import trio

from ..errors import RemoteProtocolError
from ..serialize import RAW_BYTES
from . import cma, shm
from .bulk_stream import BulkStream, Putter, Receiving, SegmentCache, split_frames

logger = logging.getLogger(__name__)

#: the error a server answers when it cannot open an upload's segment (or copy from
#: the client's memory)
UNREADABLE = "unreadable segment"


class NoSharedMemory(Exception):
    """A segment could not be opened (or a copy was refused): the request is sent again,
    on a fresh connection; ``off`` names the pool's switch to turn off first
    ("shared_memory": TCP from now on; "cross_memory": segments from now on; "")."""

    def __init__(self, off: str = "") -> None:
        super().__init__(off)
        self.off = off


# ------------------------------------------------------------------ server

def readable(conn: BulkStream, frames: list[Any]) -> list[Any] | None:
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


async def in_segment(conn: BulkStream, key: str, frames: list[Any],
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


async def copy_upload(conn: BulkStream, header: list[Any], frames: list[Any],
                       put: Putter) -> None:
    """An upload whose large ``bytes`` values we copy from the client's memory ourselves
    (``net/cma.py``): one copy each, straight into the ``bytes`` object we keep."""
    _, keys, counts, entries, pid, address, nonce, _ = header
    if not conn.reads_peer:  # the first one on this connection: prove we can read it
        conn.reads_peer = await trio.to_thread.run_sync(cma.probe, pid, address, nonce)
        if not conn.reads_peer:
            await conn.send(["error", UNREADABLE, "process_vm_readv is not allowed"])
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
            await conn.send(["error", UNREADABLE, str(exc)])
            return
        values[key] = [memoryview(RAW_BYTES), memoryview(data)]
    try:
        await put(values)
    except ValueError as exc:
        await conn.send(["error", str(exc)])
    else:
        await conn.send(["ok"])


async def accept_segment(conn: BulkStream, header: list[Any], put: Putter,
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
            await conn.send(["error", UNREADABLE, str(exc)])
            return
        await put(dict(zip(keys, split_frames(counts, frames, keys))))
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


async def _copy_from(conn: BulkStream, seg: list[Any], count: int) -> list[Any]:
    """The frames of a ``bytes`` value the server left in its memory for us to copy."""
    n, address = seg[1], seg[2]
    if (not conn.reads_peer or count != 2 or type(n) is not int or n < 0
            or type(address) is not int):
        raise RemoteProtocolError("malformed shmdata vm entry")
    try:
        data = await trio.to_thread.run_sync(cma.read, conn.peer_pid, address, n)
    except OSError as exc:  # (allowed at the hello, so unexpected): segments from now
        logger.warning("bulk: process_vm_readv failed (%s); using shared memory", exc)
        raise NoSharedMemory("cross_memory") from exc
    return [memoryview(RAW_BYTES), memoryview(data)]


async def read_reply(conn: BulkStream, header: list[Any], frames: list[Any]) -> list[Any]:
    """The frames of a ``shmdata`` reply: from its segments, from the server's memory,
    and from the socket for the values sent over it.

    Raises:
        NoSharedMemory: a segment could not be opened, or a copy failed.
    """
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
            out += await _copy_from(conn, seg, count)
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
            raise NoSharedMemory("shared_memory") from exc
        except OSError as exc:  # (a kept segment whose key went meanwhile): ask again
            raise NoSharedMemory() from exc
    return out


async def put_locally(conn: BulkStream, address: str, values: dict[str, list[Any]], *,
                      cross_memory: bool, idle_timeout: float) -> tuple[list[Any], list[Any]] | None:
    """An upload to a server on this host: large ``bytes`` copied by the server from our
    memory (``vmput``), else everything in one segment (``shmput``); the reply, or None
    if the socket must do (small, or no room in /dev/shm).

    Raises:
        NoSharedMemory: the server could not read our segment or our memory.
    """
    keys = list(values)
    counts = [len(values[k]) for k in keys]
    flat = [f for k in keys for f in values[k]]
    vm = conn.extended and cross_memory and cma.available()
    entries = [readable(conn, values[k]) if vm else None for k in keys]
    rest = [f for k, e in zip(keys, entries) if e is None for f in values[k]]
    if any(entries) and sum(memoryview(f).nbytes for f in rest) < shm.SHM_MIN:
        # the server copies the large bytes from our memory itself; shielded (bounded):
        # our memory must stay as it is until the server has copied it, or it could
        # store what the memory held after we let go
        with trio.CancelScope(shield=True), trio.fail_after(idle_timeout):
            await conn.send(["vmput", keys, counts, [e and e[1:] for e in entries],
                             *cma.shown(), cma.NONCE], rest)
            reply = await conn.receive()
        conn.pinned.clear()
        if reply[0][:2] == ["error", UNREADABLE]:
            logger.warning("bulk: %s cannot copy from our memory (%s); using shared "
                           "memory", address, reply[0][2:])
            raise NoSharedMemory("cross_memory")
        return reply
    if sum(memoryview(f).nbytes for f in flat) < shm.SHM_MIN:
        return None
    try:
        name, lengths = await trio.to_thread.run_sync(shm.write_segment, flat)
    except OSError as exc:  # no room in /dev/shm: the socket will do
        logger.info("bulk: shared memory unavailable (%s); sending over TCP", exc)
        return None
    try:
        await conn.send(["shmput", keys, counts, name, lengths])
        reply = await conn.receive()
        if reply[0][:2] == ["error", UNREADABLE]:
            logger.warning("bulk: %s cannot open our shared memory (%s); using TCP",
                           address, reply[0][2:])
            raise NoSharedMemory("shared_memory")
        return reply
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(shm.unlink, name)
