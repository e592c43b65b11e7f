"""Same-host reads of another process's ``bytes``: cross-memory attach (``process_vm_readv``).

A ``bytes`` object owns its memory (CPython keeps the data inside the object), so a
reader on the same host needs a copy of its own whatever the path: over a socket it
costs two (into the kernel and out), through a ``/dev/shm`` segment two as well (the
holder's write, the reader's read), and the segment doubles the holder's memory while it
lives. ``process_vm_readv(2)`` copies straight from the holder's object into a new
``bytes`` object of the reader, once, with one system call: the floor. The holder only
says where its object is (its pid, the address, the length) and keeps the object alive
until the reader's next request on that connection (``BulkStream.pinned``).

The kernel allows it only where ``ptrace`` would be allowed (same user, no stricter
Yama or seccomp policy): :func:`probe` checks it once per bulk connection against a
nonce the server shows, which also proves the pid is that server's and not a process
of the same number in another pid namespace. Anywhere it fails, the peers fall back to
shared-memory segments (``net/shm.py``).

A new ``bytes`` object written before anyone else holds a reference is what C code
does with ``PyBytes_FromStringAndSize(NULL, n)``; the object is returned only when
filled (its hash is never computed before).

A large new object's memory is fresh: filling it costs a page fault per 4 KiB page
(25,000 for 100 MB, about three quarters of the copy's time here). Its 2 MiB-aligned
middle is ``madvise(MADV_HUGEPAGE)``d first, so it faults in 2 MiB pages (a 100 MB copy
into a new object: 48 -> 11 ms here). The kernel may compact memory to find huge pages
when it is fragmented; ``TRIOFLOW_HUGE_PAGES=0`` turns this off.

Every function here blocks (a copy of the whole value): callers run them in a thread.
"""

from __future__ import annotations

import ctypes
import functools
import os
import secrets
import sys
from typing import Any

#: what this process shows a reader to prove its reads reach this process
NONCE = secrets.token_bytes(16)
#: one system call copies at most this much (the kernel's limit is about 2 GiB)
_CHUNK = 1 << 30
#: new objects at least this large ask for huge pages (see the module docstring)
_HUGE_MIN = 8 << 20
_HUGE = 1 << 21
_MADV_HUGEPAGE = 14


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


@functools.cache
def _calls() -> tuple[Any, Any] | None:
    """libc's ``process_vm_readv`` and CPython's uninitialized-bytes constructor, or
    None where there are none (not Linux, not CPython)."""
    if not sys.platform.startswith("linux") or sys.implementation.name != "cpython":
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        readv = libc.process_vm_readv
    except (OSError, AttributeError):
        return None
    readv.argtypes = [ctypes.c_int, ctypes.POINTER(_IoVec), ctypes.c_ulong,
                      ctypes.POINTER(_IoVec), ctypes.c_ulong, ctypes.c_ulong]
    readv.restype = ctypes.c_ssize_t
    new = ctypes.pythonapi.PyBytes_FromStringAndSize
    new.argtypes = [ctypes.c_char_p, ctypes.c_ssize_t]
    new.restype = ctypes.py_object
    return readv, new


@functools.cache
def _madvise() -> Any:
    """libc's ``madvise``, or None (off, or not there)."""
    if os.environ.get("TRIOFLOW_HUGE_PAGES", "1") == "0":
        return None
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


def _fresh(new: Any, n: int) -> bytes:
    """A new, uninitialized ``bytes`` of ``n`` bytes, in huge pages where it is large."""
    out: bytes = new(None, n)
    madvise = _madvise() if n >= _HUGE_MIN else None
    if madvise is not None:
        base = address_of(out)
        start, end = (base + _HUGE - 1) & -_HUGE, (base + n) & -_HUGE
        if end > start:
            madvise(start, end - start, _MADV_HUGEPAGE)  # advice: a failure changes nothing
    return out


def available() -> bool:
    return _calls() is not None


def address_of(data: bytes) -> int:
    """Where the data of ``data`` sit in this process (valid while it lives)."""
    address = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value
    assert address is not None
    return address


def shown() -> tuple[int, int]:
    """What a server puts in its hello: its pid and the address of :data:`NONCE`."""
    return os.getpid(), address_of(NONCE)


def new_bytes(n: int) -> tuple[bytes, memoryview]:
    """A new ``bytes`` object of ``n`` bytes, not initialized, and a writable view of its
    data to fill it through (drop the view once it is filled; then the object is an
    ordinary ``bytes``). For receiving a ``bytes`` value straight into its object."""
    calls = _calls()
    if calls is None:
        raise OSError(38, "uninitialized bytes are not available here")
    out = _fresh(calls[1], n)
    if n == 0:
        return out, memoryview(bytearray())
    view = memoryview((ctypes.c_char * n).from_address(address_of(out))).cast("B")
    return out, view


def read(pid: int, address: int, n: int) -> bytes:
    """``n`` bytes at ``address`` in process ``pid``, as a new ``bytes`` object.

    Raises:
        OSError: the kernel refused (EPERM: not allowed; ESRCH: no such process;
            EFAULT: not mapped there), or it is not available here (ENOSYS).
    """
    calls = _calls()
    if calls is None:
        raise OSError(38, "process_vm_readv is not available here")
    readv, new = calls
    out = _fresh(new, n)
    if n == 0:
        return out
    base = address_of(out)
    got = 0
    while got < n:
        step = min(n - got, _CHUNK)
        local = _IoVec(base + got, step)
        remote = _IoVec(address + got, step)
        k = readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
        if k <= 0:
            err = ctypes.get_errno() if k < 0 else 14  # (0 bytes: EFAULT)
            raise OSError(err, f"process_vm_readv from pid {pid}: {os.strerror(err)}")
        got += k
    return out


def probe(pid: Any, address: Any, nonce: Any) -> bool:
    """Whether reads from ``pid`` work and reach the process that showed ``nonce`` at
    ``address`` (checked once per connection)."""
    if type(pid) is not int or type(address) is not int or type(nonce) is not bytes or (
            len(nonce) != len(NONCE)) or not available():
        return False
    try:
        return read(pid, address, len(nonce)) == nonce
    except OSError:
        return False
