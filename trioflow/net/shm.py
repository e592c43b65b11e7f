"""Same-host transfers through shared memory: segments in ``/dev/shm``.

Between two processes on one host, a large value on the bulk data path need not cross
a socket (a copy into the kernel and one out of it, in chunks, with a system call per
chunk). The sender writes the value's frames into a file in ``/dev/shm`` (tmpfs:
memory, not disk) with one ``pwrite`` per frame, and names it over the bulk connection;
the receiver maps it (arrays are rebuilt on the mapping) and reads a plain ``bytes``
value with one ``pread`` into the ``bytes`` object itself. Two peers use it when their
bulk hello shows the same *host identity*: the same kernel boot, network namespace and
``/dev/shm`` (so peers in different network namespaces, as in the multi-host tests, use
TCP like peers on different machines).

Segments never outlive their use:

* A worker keeps one segment per value it served this way (``DataStore.segment``), for
  every later reader, and unlinks it when the key goes; readers map it copy-on-write.
* An upload's segment is unlinked by the receiver as soon as it has opened it, and by
  the sender when the exchange ends, whatever happened.
* A process killed in between leaves files named ``trioflow-<pid>-...``:
  :func:`remove_stale` (run at every worker start) removes those of dead processes, and
  :func:`remove_of` lets a supervisor remove a dead worker's at once.

Every function here blocks (file I/O, page population): callers run them in a thread.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import itertools
import logging
import mmap
import os
import re
import secrets
import struct
from collections.abc import Sequence
from typing import Any

import msgpack

from ..errors import RemoteProtocolError
from ..serialize import RAW_BYTES

logger = logging.getLogger(__name__)

SHM_DIR = "/dev/shm"
PREFIX = "trioflow-"
#: requests with fewer bytes than this go over the socket (a segment costs a few
#: system calls and a page-table setup; for small values the socket is as fast)
SHM_MIN = 1 << 20
#: frames start at multiples of this in a segment (arrays rebuilt on it stay aligned)
_ALIGN = 64
_NAME = re.compile(r"^trioflow-(\d+)-(?:\d+-[0-9a-f]{8}|k-[0-9a-f]{24})$")
#: a published segment (one kept for a key, named after it: ``published_name``) starts
#: with this, then a u32 length and msgpack ``[key, frame lengths]``; frames at ``_BASE``
_MAGIC = b"TFSEG001"
_BASE = 4096
_counter = itertools.count()
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)


@functools.cache
def host_identity() -> str:
    """What two processes must share to use shared memory: the boot, the network
    namespace and the ``/dev/shm`` file system; "" (never shared) if any is unknown,
    or if ``$TRIOFLOW_SHARED_MEMORY`` is ``0`` (read once per process)."""
    if os.environ.get("TRIOFLOW_SHARED_MEMORY", "1") == "0":
        return ""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        netns = os.stat("/proc/self/ns/net").st_ino
        shm = os.stat(SHM_DIR)
        if not os.access(SHM_DIR, os.W_OK):
            return ""
    except OSError:
        return ""
    return f"{boot}:{netns}:{shm.st_dev}:{shm.st_ino}"


def published_name(pid: int, space: str, key: str) -> str:
    """The name of the segment process ``pid`` keeps for ``key`` in ``space`` (one per
    data store: in-process workers share a pid) (``write_segment(..., key=key)``): a
    reader on this host that knows the holder's pid and space opens it directly, with no
    request to the holder (``open_published``)."""
    digest = hashlib.sha256(f"{space}\0{key}".encode("utf-8", "surrogatepass")
                            ).hexdigest()[:24]
    return f"{PREFIX}{pid}-k-{digest}"


def _offsets(lengths: Sequence[int], base: int = 0) -> tuple[list[int], int]:
    offsets, at = [], base
    for n in lengths:
        offsets.append(at)
        at += -(-n // _ALIGN) * _ALIGN
    return offsets, at


def write_segment(frames: Sequence[Any], key: str | None = None,
                  space: str = "") -> tuple[str, list[int]]:
    """A new segment holding ``frames``; its name and the frames' lengths.

    With ``key``, the segment is *published*: named ``published_name(our pid, space, key)``,
    with a header naming the key and the lengths, and renamed to that name only once
    complete (a reader opening it by name never sees it half-written).

    Raises:
        OSError: no room in ``/dev/shm`` (ENOSPC), or it is unusable; nothing is left
            behind, and the caller sends over the socket instead.
    """
    views = [_flat(memoryview(f)) for f in frames]
    lengths = [v.nbytes for v in views]
    head = b""
    if key is not None:
        meta = msgpack.packb([key, lengths])
        head = _MAGIC + struct.pack("!I", len(meta)) + meta
    if len(head) > _BASE:  # (a huge key or thousands of frames): not published
        key, head = None, b""
    offsets, total = _offsets(lengths, _BASE if key is not None else 0)
    # a small /dev/shm (Docker's is 64 MB): refuse at once rather than fill it, fail at
    # the end, and leave other programs short meanwhile
    st = os.statvfs(SHM_DIR)
    if st.f_bavail * st.f_frsize < total + (1 << 20):
        raise OSError(errno.ENOSPC, f"{SHM_DIR} has no room for {total} bytes")
    name = f"{PREFIX}{os.getpid()}-{next(_counter)}-{secrets.token_hex(4)}"
    path = os.path.join(SHM_DIR, name)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, total)
        if head:
            os.pwrite(fd, head, 0)
        for view, at in zip(views, offsets):
            done = 0
            while done < view.nbytes:
                done += os.pwrite(fd, view[done:done + (1 << 30)], at + done)
        if key is not None:
            published = published_name(os.getpid(), space, key)
            os.rename(path, os.path.join(SHM_DIR, published))
            name = published
    except BaseException:
        unlink(name)
        raise
    finally:
        os.close(fd)
    return name, lengths


def adopt(name: str) -> str:
    """Make segment ``name`` (an upload another process wrote) this process's own: renamed
    to a name of ours, so it lives as long as we keep it (a dead writer's segments are
    removed by :func:`remove_stale`); the new name.

    Raises:
        RemoteProtocolError: a bad name.
        OSError: it is not there (any more).
    """
    if not _NAME.match(name):
        raise RemoteProtocolError(f"bad shared-memory segment {name!r}")
    own = f"{PREFIX}{os.getpid()}-{next(_counter)}-{secrets.token_hex(4)}"
    os.rename(os.path.join(SHM_DIR, name), os.path.join(SHM_DIR, own))
    return own


def _flat(view: memoryview) -> memoryview:
    return view if view.ndim == 1 and view.format == "B" else view.cast("B")


def read_segment(name: str, lengths: Sequence[int], counts: Sequence[int], *,
                 kept: bool = False) -> list[Any]:
    """The frames of segment ``name``, for values of ``counts`` frames each. Buffers are
    mapped in place; the first frame of each value (a pickle stream, or a marker) and a
    plain ``bytes`` value are read into ``bytes`` objects (one copy, the one a ``bytes``
    value costs anyway, and no page-table setup).

    A segment the writer ``kept`` (a holder's cached copy of a value, which other
    readers map too) is mapped copy-on-write and left in place; any other is ours to
    unlink at once, and is mapped shared and populated.

    Raises:
        RemoteProtocolError: a bad name, or a segment not of the size announced.
        OSError: it cannot be opened.
    """
    if not _NAME.match(name) or sum(counts) != len(lengths) or not all(
            type(n) is int and n >= 0 for n in lengths):
        raise RemoteProtocolError(f"bad shared-memory segment {name!r}")
    path = os.path.join(SHM_DIR, name)
    fd = os.open(path, (os.O_RDONLY if kept else os.O_RDWR) | os.O_CLOEXEC)
    try:
        return _read_open(fd, name, lengths, counts, kept=kept)
    finally:
        os.close(fd)


def open_published(pid: int, space: str, key: str) -> list[Any] | None:
    """The frames of the segment process ``pid`` published for ``key`` (mapped
    copy-on-write, as ``read_segment(kept=True)``), or None if it has none (then ask it):
    not there, not ours (another user could have put a file of that name in the
    world-writable /dev/shm: only our own user's segments are trusted), not for this
    key, or a plain-bytes value (read into a bytes object: a copy, for a thread).
    A few system calls; no copy."""
    try:
        name = published_name(pid, space, key)
        fd = os.open(os.path.join(SHM_DIR, name),
                     os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid() or st.st_size < _BASE:
            return None
        head = os.pread(fd, _BASE, 0)
        if head[:len(_MAGIC)] != _MAGIC:
            return None
        (n,) = struct.unpack_from("!I", head, len(_MAGIC))
        at = len(_MAGIC) + 4
        meta = msgpack.unpackb(head[at:at + n])
        if (type(meta) is not list or len(meta) != 2 or meta[0] != key
                or type(meta[1]) is not list or not meta[1] or meta[1][0] == 1):
            return None
        lengths = meta[1]
        return _read_open(fd, name, lengths, [len(lengths)], kept=True)
    except (OSError, ValueError, RemoteProtocolError, msgpack.UnpackException):
        return None
    finally:
        os.close(fd)


def _read_open(fd: int, name: str, lengths: Sequence[int], counts: Sequence[int], *,
               kept: bool) -> list[Any]:
    """``read_segment`` on the open segment ``fd``."""
    offsets, total = _offsets(lengths, _BASE if "-k-" in name else 0)
    if not kept:
        os.unlink(os.path.join(SHM_DIR, name))  # ours now: gone, alive while mapped
    if os.fstat(fd).st_size != total:
        raise RemoteProtocolError(f"segment {name} is not of the announced size {total}")
    mapping: memoryview | None = None
    frames: list[Any] = []
    i = 0
    for count in counts:
        head = _pread(fd, lengths[i], offsets[i])
        frames.append(memoryview(head))
        for j in range(i + 1, i + count):
            n, at = lengths[j], offsets[j]
            if head == RAW_BYTES:
                frames.append(memoryview(_pread(fd, n, at)))
            else:
                if mapping is None:
                    # (copy-on-write: arrays rebuilt on it are writable, as over TCP,
                    # and a write never reaches the holder's copy)
                    mapping = memoryview(mmap.mmap(
                        fd, total, flags=mmap.MAP_PRIVATE,
                        prot=mmap.PROT_READ | mmap.PROT_WRITE) if kept
                        else mmap.mmap(fd, total, flags=_MAP_FLAGS))
                frames.append(mapping[at:at + n])
        i += count
    return frames


def _pread(fd: int, n: int, at: int) -> bytes:
    data = os.pread(fd, n, at)
    if len(data) == n:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = os.pread(fd, n - got, at + got)
        if not more:
            raise RemoteProtocolError("segment shorter than announced")
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def unlink(name: str) -> None:
    """Remove segment ``name`` if it is still there."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(SHM_DIR, name))


def _segments() -> list[tuple[str, int]]:
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return []
    out = []
    for name in names:
        m = _NAME.match(name)
        if m:
            out.append((name, int(m.group(1))))
    return out


def remove_of(pid: int) -> int:
    """Remove the segments process ``pid`` left (it is dead); how many there were."""
    found = [name for name, owner in _segments() if owner == pid]
    for name in found:
        unlink(name)
    return len(found)


def remove_stale() -> int:
    """Remove the segments of processes that no longer exist; how many there were."""
    removed = 0
    for name, pid in _segments():
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            unlink(name)
            removed += 1
        except PermissionError:
            pass  # alive, someone else's
    if removed:
        logger.info("removed %d shared-memory segment(s) of dead processes", removed)
    return removed
