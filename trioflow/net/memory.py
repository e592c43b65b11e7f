"""A worker's memory limit: spilling least-recently-used values to disk, pausing, exiting.

``--memory-limit`` (dask's spelling: ``"4GiB"``, ``"500MB"``, a byte count, a fraction
of the machine's memory such as ``0.5``, or ``"auto"``) and the fractions in
``config.py`` decide, as in dask:

* **target** (0.6): when the values this worker holds (their ``nbytes``) pass
  ``target x limit``, least-recently-used values are written to a spill directory and
  dropped from memory, until they are back under it. While they are above it and
  something can still be spilled, no new run starts (so a stream of large results
  cannot outrun the disk; dask has no such wait, and can overshoot).
* **spill** (0.7): when the process's resident memory passes it, values are spilled
  the same way.
* **pause** (0.8): while the resident memory is above it, no new run starts.
* **terminate** (0.95): above it, the worker process exits with
  ``config.EXIT_RESTART`` ("restart me" to a supervisor).

Spilling runs in a Trio task, serializing and writing in a worker thread, so the loop
keeps serving while 100 MB go to disk. Why not zict (dask's choice): its ``Buffer``
evicts synchronously inside ``__setitem__``, in whatever thread stores the value, and
reports failures as a boolean; here a store must never block the loop, values live in
two forms (objects and serialized frames, ``DataStore.data``/``blobs``) and a spilled
value is served to peers straight from its file, without unpickling.

Bad cases: a value that cannot be pickled stays in memory, is logged and listed in
``unspillable``; a failed write (a full disk) drops the value and fails its key with a
message naming the key, the directory and the reason, and what to do
(``on_unwritable``; the worker goes on serving, and the key is not recomputed); a
spilled value that cannot be read back fails the run that needed it, saying so.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from typing import Any

import attrs
import trio

from .. import config, serialize

logger = logging.getLogger(__name__)

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6,
          "mib": 2**20, "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12,
          "tib": 2**40}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*$")
SPILL_PREFIX = "trioflow-spill-"


def system_memory() -> int:
    """Memory this process may use at most: the machine's, or its cgroup's if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            with open(path) as f:
                total = min(total, int(f.read().strip()))
    return total


def parse_memory_limit(spec: str | float | None, *, workers: int = 1) -> int | None:
    """Bytes for a ``--memory-limit`` value, or None for no limit.

    ``None``, ``0`` and ``"0"`` mean no limit; ``"auto"`` the machine's (or cgroup's)
    memory shared by ``workers``; a number in (0, 1] a fraction of it; larger numbers
    bytes; a string with a unit ``kB``/``MB``/``GB``/``TB`` (powers of 1000) or
    ``KiB``/``MiB``/``GiB``/``TiB`` (powers of 1024).

    Raises:
        ValueError: anything else, saying what is accepted.
    """
    if spec is None or spec == 0 or spec == "0":
        return None
    if isinstance(spec, str) and spec.strip().lower() == "auto":
        return system_memory() // max(1, workers)
    number: float
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        number, unit = float(spec), ""
    else:
        m = _SIZE.match(str(spec).lower())
        if m is None or m.group(2) not in _UNITS:
            raise ValueError(
                f"memory limit {spec!r}: give bytes with a unit (\"4GiB\", \"500MB\"), a "
                "fraction of the machine's memory (0.5), \"auto\", or 0 for none")
        number, unit = float(m.group(1)), m.group(2)
    if number <= 0:
        raise ValueError(f"memory limit {spec!r} must be positive (0 for none)")
    if not unit and number <= 1:
        return int(system_memory() * number)
    return int(number * _UNITS[unit])


def process_rss() -> int:
    """This process's resident memory in bytes (``/proc/self/statm``), 0 if unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def remove_stale_spill_dirs(base: str) -> None:
    """Remove spill directories under ``base`` of processes that no longer exist."""
    with contextlib.suppress(OSError):
        for entry in os.listdir(base):
            m = re.match(rf"^{SPILL_PREFIX}(\d+)-", entry)
            if m is None:
                continue
            try:
                os.kill(int(m.group(1)), 0)
            except ProcessLookupError:
                shutil.rmtree(os.path.join(base, entry), ignore_errors=True)
            except PermissionError:
                pass


@attrs.define(eq=False)
class _OnDisk:
    path: str
    lengths: list[int]
    nbytes: int


class MemoryManager:
    """One worker's memory limit: which values are held, spilled, or cannot be.

    ``data``/``blobs`` are the owning ``DataStore``'s dicts; this object adds their
    sizes, their use order, and the copies on disk. Loop-side methods change state;
    ``load``, ``gate_sync`` and ``touch`` may be called from task threads.

    Args:
        limit: bytes.
        directory: where spill directories go (default: the system's temp directory).
        on_drop: called with a key dropped from memory (after spilling it).
        on_terminate: called once above the terminate fraction (the CLI's worker exits).
            Given only when the process is the worker's own: then its resident memory
            is watched (spill, pause, terminate); a worker inside another process (a
            local cluster's, ``processes=False``) spills by its values' sizes only.
    """

    def __init__(self, limit: int, data: dict[str, Any], blobs: dict[str, Any], *,
                 name: str, directory: str | None = None,
                 on_terminate: Callable[[], None] | None = None,
                 on_drop: Callable[[str], None] | None = None,
                 on_unwritable: Callable[[str, str], None] | None = None,
                 target: float = config.MEMORY_TARGET, spill: float = config.MEMORY_SPILL,
                 pause: float = config.MEMORY_PAUSE,
                 terminate: float = config.MEMORY_TERMINATE) -> None:
        if limit <= 0:
            raise ValueError(f"memory limit must be positive, got {limit}")
        self.limit = limit
        self.data = data
        self.blobs = blobs
        self.name = name
        self.target, self.spill, self.pause, self.terminate = target, spill, pause, terminate
        self.base = directory or tempfile.gettempdir()
        self.directory = ""
        self.on_terminate = on_terminate
        self.on_drop = on_drop
        #: ``on_unwritable(key, text)``: a value whose spill write failed was dropped;
        #: its key must fail with ``text`` (without it, the value stays in memory)
        self.on_unwritable = on_unwritable
        self.lock = threading.Lock()
        #: in-memory values' sizes, least recently used first
        self.sizes: collections.OrderedDict[str, int] = collections.OrderedDict()
        self.held = 0  # sum of sizes
        self.on_disk: dict[str, _OnDisk] = {}
        self.unspillable: set[str] = set()
        self.unwritable: set[str] = set()
        self.paused = False
        self.rss = 0
        #: sync runs waiting at the gate now
        self.held_runs = 0
        self._cond = threading.Condition(self.lock)
        self._resumed = trio.Event()
        self._wake = trio.Event()
        self._changed = trio.Event()
        self._counter = 0

    def __repr__(self) -> str:
        return (f"<MemoryManager limit={self.limit} held={self.held} "
                f"spilled={len(self.on_disk)} paused={self.paused}>")

    @property
    def spilled_bytes(self) -> int:
        return sum(d.nbytes for d in self.on_disk.values())

    # ------------------------------------------------------------------ bookkeeping

    def track(self, key: str, nbytes: int) -> None:
        """A value is now held in memory (loop): counted, and the spiller woken if it
        is over the target."""
        self.count(key, nbytes)
        if self.held > self.target * self.limit:
            self._wake.set()

    def count(self, key: str, nbytes: int) -> None:
        """Count a value held in memory now (any thread; ``track`` again later is a
        no-op for it). A task thread counts its run's result before the run ends, so a
        run it starts next meets the gate closed when that result is over the target;
        waking the spiller is left to ``track`` on the loop."""
        with self.lock:
            old = self.sizes.pop(key, 0)
            self.sizes[key] = nbytes
            self.held += nbytes - old

    def touch(self, key: str) -> None:
        """``key`` was used: the last to be spilled (any thread)."""
        with self.lock:
            if key in self.sizes:
                self.sizes.move_to_end(key)

    def forget(self, key: str) -> None:
        """A value was freed (loop)."""
        with self._cond:
            self.held -= self.sizes.pop(key, 0)
            self._cond.notify_all()
        self.unspillable.discard(key)
        self.unwritable.discard(key)
        gone = self.on_disk.pop(key, None)
        if gone is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(gone.path)
        self._update_gate()

    # ------------------------------------------------------------------ reading back

    def read_frames(self, key: str) -> list[Any] | None:
        """The frames of a spilled value, read from its file (any thread); None if not
        spilled.

        Raises:
            OSError: the file cannot be read (the run needing it fails, saying so).
        """
        where = self.on_disk.get(key)
        if where is None:
            return None
        frames: list[Any] = []
        with open(where.path, "rb") as f:
            for n in where.lengths:
                buf = bytearray(n)
                if f.readinto(buf) != n:
                    raise OSError(f"spill file {where.path} of {key!r} is truncated")
                frames.append(memoryview(buf))
        return frames

    def load(self, key: str) -> Any:
        """The value of a spilled key, rebuilt from disk (any thread; not kept in memory:
        the run holds it while it needs it)."""
        try:
            frames = self.read_frames(key)
        except OSError as exc:
            raise OSError(f"worker {self.name}: the spilled value {key!r} could not be "
                          f"read back from disk: {exc}") from exc
        if frames is None:
            raise KeyError(key)
        return serialize.loads_frames(frames)

    # ------------------------------------------------------------------ the gate

    def _blocked(self) -> bool:
        # the spiller is behind: a run started now could stack another value on top
        backlog = self.held > self.target * self.limit and any(
            k not in self.unspillable and k not in self.unwritable for k in self.sizes)
        return self.paused or backlog

    def _update_gate(self) -> None:
        with self._cond:
            blocked = self._blocked()
            if not blocked:
                self._cond.notify_all()
        if not blocked:
            self._resumed.set()

    def gate_sync(self) -> None:
        """Block the calling task thread while the worker takes no new work."""
        with self._cond:
            if not self._blocked():
                return
            self.held_runs += 1
            self._cond.notify_all()
            logger.info("worker %s: a run waits to start (%s)", self.name,
                        "paused" if self.paused else "spilling")
            try:
                while self._blocked():
                    self._cond.wait()
            finally:
                self.held_runs -= 1

    def wait_held(self) -> None:
        """Block until a run is held at the gate (for tests and tools, from a thread)."""
        with self._cond:
            while not self.held_runs:
                self._cond.wait()

    async def gate_async(self) -> None:
        """The same for an ``async def`` run (cancellation: as any wait)."""
        while self._blocked():
            if self._resumed.is_set():
                self._resumed = trio.Event()
            await self._resumed.wait()

    # ------------------------------------------------------------------ the loop side

    async def run(self) -> None:
        """Watch the resident memory and spill; until cancelled (then the spill directory
        is removed)."""
        await trio.to_thread.run_sync(remove_stale_spill_dirs, self.base)
        self.directory = tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}{os.getpid()}-",
                                          dir=self.base)
        try:
            async with trio.open_nursery() as nursery:
                if self.on_terminate is not None:
                    nursery.start_soon(self._monitor)
                await self._spill_loop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    async def _monitor(self) -> None:
        terminated = warned = False
        while True:
            self.rss = process_rss()
            if self.rss > self.terminate * self.limit and not terminated:
                terminated = True
                logger.critical("worker %s: resident memory %d MB is above %d%% of its "
                                "limit (%d MB): exiting to be restarted", self.name,
                                self.rss // 10**6, self.terminate * 100, self.limit // 10**6)
                if self.on_terminate is not None:
                    self.on_terminate()
            paused = self.rss > self.pause * self.limit
            if paused != self.paused:
                self.paused = paused
                # (a worker at its limit may flip every tick: one warning, then info)
                level = logging.WARNING if paused and not warned else logging.INFO
                warned = warned or paused
                logger.log(level, "worker %s: %s (resident memory %d MB, limit %d MB)",
                           self.name, "paused: no new runs" if paused else "resumed",
                           self.rss // 10**6, self.limit // 10**6)
                self._update_gate()
                self._changed.set()
                self._changed = trio.Event()
            if self.rss > self.spill * self.limit:
                self._wake.set()
            await trio.sleep(config.MEMORY_MONITOR_INTERVAL)

    def _over(self) -> bool:
        return self.held > self.target * self.limit or (
            self.on_terminate is not None and process_rss() > self.spill * self.limit)

    async def wait_for(self, predicate: Callable[[MemoryManager], bool]) -> None:
        """Return once ``predicate(self)`` holds, re-checked after every spill attempt
        and pause or resume (for tests and tools: no polling)."""
        while not predicate(self):
            await self._changed.wait()

    def _next_victim(self) -> str | None:
        with self.lock:
            for key in self.sizes:  # least recently used first
                if key not in self.unspillable and key not in self.unwritable:
                    return key
        return None

    async def _spill_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._over():
                key = self._next_victim()
                if key is None:
                    break
                await self._spill(key)
                await trio.lowlevel.checkpoint()  # (a spill that awaited nothing: yield)
                self._update_gate()
                self._changed.set()
                self._changed = trio.Event()

    async def _spill(self, key: str) -> None:
        """Write one value to disk and drop it from memory (loop)."""
        nbytes = self.sizes.get(key, 0)
        if key in self.on_disk:  # read back and kept since: the file is still good
            self._drop(key)
            return
        blob = self.blobs.get(key)
        frames: list[Any]
        try:
            if blob is None:
                frames = await trio.to_thread.run_sync(serialize.dumps_frames, self.data[key])
            else:  # a pickled small value is a one-frame serialization
                frames = blob if type(blob) is list else [blob]
        except KeyError:
            # freed meanwhile, or counted after its value was freed (a task thread
            # counts a result before the ledger ends its run, and a FreeKeys may come
            # between): forget it, or the loop would pick it again at once, forever
            self.forget(key)
            return
        except Exception as exc:
            self.unspillable.add(key)
            logger.warning("worker %s: value %s cannot be spilled (it stays in memory, "
                           "unspillable): %s", self.name, key, exc)
            return
        self._counter += 1
        path = os.path.join(self.directory, f"{self._counter}")
        try:
            lengths = await trio.to_thread.run_sync(_write, path, frames)
        except OSError as exc:
            self._unwritable(key, nbytes, exc)
            return
        if key not in self.sizes:  # freed while it was written
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        self.on_disk[key] = _OnDisk(path, lengths, nbytes)
        self._drop(key)

    def _unwritable(self, key: str, nbytes: int, exc: OSError) -> None:
        """A spill write failed (a full disk, most often). The worker is over its memory
        target, so keeping the value would only move the failure to the whole process:
        the value is dropped and its key fails, saying why and what to do (with no
        ``on_unwritable``, it stays in memory instead, listed in ``unwritable``)."""
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            advice = ("free space there, or start the worker with --local-directory on a "
                      "disk with room (local_directory= for a local cluster)")
        else:
            advice = "check that directory, or point --local-directory elsewhere"
        text = (f"worker {self.name} is over its memory target and could not spill "
                f"{key!r} ({nbytes} bytes) to {self.directory}: {reason}; the value was "
                f"dropped and {key!r} failed: {advice}")
        if self.on_unwritable is None or key not in self.sizes:
            self.unwritable.add(key)
            logger.error("%s (kept in memory instead)", text)
            return
        logger.error("%s", text)
        self._drop(key)
        self.on_unwritable(key, text)

    def _drop(self, key: str) -> None:
        self.data.pop(key, None)
        self.blobs.pop(key, None)
        if self.on_drop is not None:
            self.on_drop(key)  # (its shared-memory copy too)
        with self._cond:
            self.held -= self.sizes.pop(key, 0)


def _write(path: str, frames: list[Any]) -> list[int]:
    """Write frames to a new file; their lengths. A failed write leaves no file."""
    lengths = []
    try:
        with open(path, "wb") as f:
            for frame in frames:
                view = memoryview(frame)
                lengths.append(view.nbytes)
                f.write(view)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
    return lengths
