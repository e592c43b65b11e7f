"""A worker's values: what it holds, what it serves to peers, what it fetches from them.

Values live in ``data`` as Python objects; ``blobs`` caches their serialized forms
(pickled bytes for small results, ``serialize.dumps_frames`` frames for large ones) so
that a value asked for by several peers is serialized once. Large values move over the
bulk data path (``net/bulk.py``): this module is both its server (peers and clients get
results, clients put scattered data) and, through a ``BulkPool``, its client (a run's
inputs held elsewhere).

A scattered key is *expected* (``ExpectData``) before its bytes arrive from the
client; a run or a peer that needs it meanwhile waits for it instead of failing.
Nothing here unpickles what arrives: values are rebuilt by the run that uses them.
"""

from __future__ import annotations

import logging
import secrets
import ssl
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import trio

from .. import protocol as p
from .. import serialize
from ..errors import SpillError
from . import shm
from .bulk import BulkPool, serve_bulk
from .memory import MemoryManager

logger = logging.getLogger(__name__)

#: how long an upload or a reader waits for an expected scattered key
ARRIVAL_TIMEOUT = 60.0


class DataStore:
    """The values one worker holds, and its side of the bulk data path (one loop)."""

    def __init__(self, *, name: str, token: str | None, ssl_context: ssl.SSLContext | None,
                 data_ssl_context: ssl.SSLContext | None, idle_timeout: float = 60.0,
                 on_never_arrived: Callable[[str], None] | None = None,
                 memory_limit: int | None = None, local_directory: str | None = None,
                 on_memory_terminate: Callable[[], None] | None = None,
                 notify: Callable[[Any], None] | None = None) -> None:
        self.name = name
        self.token = token
        self.data_ssl_context = data_ssl_context
        #: values held here, by key
        self.data: dict[str, Any] = {}
        #: serialized forms of values, when we have them (bytes or a list of frames)
        self.blobs: dict[str, Any] = {}
        #: scattered keys announced but not uploaded yet -> set when they arrive or go
        self.arriving: dict[str, trio.Event] = {}
        #: keys whose upload is being received right now (how many uploads of each)
        self.uploading: dict[str, int] = {}
        #: an announced key that has not started arriving after this long is given up
        #: on, and ``on_never_arrived(key)`` tells the scheduler (its client may be gone)
        self.arrival_timeout = ARRIVAL_TIMEOUT
        self.on_never_arrived = on_never_arrived
        self._nursery: trio.Nursery | None = None
        self.pool = BulkPool(token=token, ssl_context=ssl_context, idle_timeout=idle_timeout)
        self._changed = trio.Event()
        #: shared-memory copies of large values served to peers on this host (net/shm.py),
        #: by key: written at the first such request, mapped by every reader after it,
        #: unlinked when the key goes
        self.segments: dict[str, tuple[str, list[int]]] = {}
        self._segment_locks: dict[str, trio.Lock] = {}
        #: segments run threads wrote for results not stored yet (``share_result``)
        self._made: dict[str, tuple[str, list[int]]] = {}
        self._made_lock = threading.Lock()
        #: names this store's published segments apart from other stores' in this
        #: process (in-process workers): ``shm.published_name``
        self.space = secrets.token_hex(4)
        #: the memory limit, spilling to disk (``net/memory.py``), if one is set
        self.memory = None if memory_limit is None else MemoryManager(
            memory_limit, self.data, self.blobs, name=name, directory=local_directory,
            on_terminate=on_memory_terminate, on_drop=self._drop_segment,
            on_unwritable=self._unwritable)
        #: how this store tells the scheduler of a value it had to drop (``TaskErred`` with ``dropped``)
        self.notify = notify

    def __repr__(self) -> str:
        return f"<DataStore {self.name!r} values={len(self.data)} arriving={len(self.arriving)}>"

    def holds(self, key: str) -> bool:
        return key in self.data or key in self.blobs or (
            self.memory is not None and key in self.memory.on_disk)

    def stored_needs_loop(self, key: str, nbytes: int) -> bool:
        """Whether ``stored`` has anything to do for this result (a task thread that
        stored a small result with no memory limit set does not wake the loop for it)."""
        return self.memory is not None or nbytes >= shm.SHM_MIN or key in self._made

    def stored(self, key: str, nbytes: int) -> None:
        """A result was put in ``data`` (loop): counted against the memory limit, and
        moved into shared memory if it is a large array (``_share``)."""
        if self.memory is not None:
            self.memory.track(key, nbytes)
        with self._made_lock:
            made = self._made.pop(key, None)
        if made is not None:  # moved into shared memory by its run's thread
            cached = self.segments.get(key)
            if cached is not None and cached[0] != made[0]:
                self._drop_segment(key)
            self.segments[key] = made
        elif nbytes >= shm.SHM_MIN and self._nursery is not None and shm.host_identity():
            self._nursery.start_soon(self._share, key)

    def share_result(self, key: str, value: Any) -> Any:
        """A large array result moved into its shared-memory segment by the thread of
        the run that made it, before the run is reported finished (as Ray puts a result
        in its store): the one copy is paid there, and a reader on this host (a peer's
        run, a client's gather) only maps the segment, with no copy and no wait. The
        value returned is rebuilt on a copy-on-write mapping of the segment (so the
        private copy goes, and a write by a task here never reaches the segment).

        Anything else (small, plain ``bytes``: readers copy those from the object itself,
        ``net/cma.py``; no out-of-band buffers; no room in /dev/shm) is returned as is.
        """
        if (self._nursery is None or isinstance(value, bytes | bytearray | memoryview)
                or (serialize.buffer_size(value) or 0) < shm.SHM_MIN
                or not shm.host_identity()):
            return value
        try:
            frames = serialize.dumps_frames(value)
            if len(frames) < 2:
                return value
            name, lengths = shm.write_segment(frames, key=key, space=self.space)
        except Exception as exc:
            logger.debug("%s: %s stays in private memory: %s", self.name, key, exc)
            return value
        try:
            shared = serialize.loads_frames(
                shm.read_segment(name, lengths, [len(lengths)], kept=True))
        except Exception as exc:
            shm.unlink(name)
            logger.debug("%s: %s stays in private memory: %s", self.name, key, exc)
            return value
        with self._made_lock:
            old = self._made.get(key)
            self._made[key] = (name, lengths)
        if old is not None and old[0] != name:  # (an earlier run of it, never stored)
            shm.unlink(old[0])
        return shared

    async def _share(self, key: str) -> None:
        """Move a large result whose data are out-of-band buffers (arrays) into its
        shared-memory segment now, off the loop, as Ray's store does: readers on this host
        then map it instead of waiting for a copy. The worker's own value is rebuilt on
        the segment (copy-on-write), so its private copy goes and memory is not doubled.
        Plain ``bytes`` are left alone (they cannot live on foreign memory: sharing them
        would double them). Failures only mean the value stays as it was."""
        value = self.data.get(key)
        if value is None or isinstance(value, bytes | bytearray | memoryview):
            return
        try:
            frames = await trio.to_thread.run_sync(serialize.dumps_frames, value)
            if len(frames) < 2:  # no out-of-band buffers: nothing to gain
                return
            name, lengths = await self.segment(key, frames)
            del frames
            mapped = await trio.to_thread.run_sync(
                partial(shm.read_segment, name, lengths, [len(lengths)], kept=True))
            shared = serialize.loads_frames(mapped)
        except Exception as exc:
            logger.debug("%s: %s stays in private memory: %s", self.name, key, exc)
            return
        if self.data.get(key) is value:  # (not freed or replaced meanwhile)
            self.data[key] = shared
            self.blobs.pop(key, None)  # frames over the private copy
        del value
        self._wake()

    def gate_sync(self) -> None:
        """Block a task thread while the worker takes no new work (memory)."""
        if self.memory is not None:
            self.memory.gate_sync()

    async def gate_async(self) -> None:
        if self.memory is not None:
            await self.memory.gate_async()

    async def serve(self, host: str, *,
                    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve our values (and accept expected uploads) on ``host``; started(address).

        Cancellation: stops serving and closes pooled connections to peers.
        """
        # segments a killed process left in /dev/shm (net/shm.py): removed at every start
        await trio.to_thread.run_sync(shm.remove_stale)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if self.memory is not None:
                    nursery.start_soon(self.memory.run)
                await serve_bulk(self.frames_for, self.accept, host, token=self.token,
                                 ssl_context=self.data_ssl_context,
                                 receiving=self._receiving, segments=self,
                                 task_status=task_status)
        finally:
            self._nursery = None
            with self._made_lock:
                made, self._made = self._made, {}
            for name, _ in [*self.segments.values(), *made.values()]:
                shm.unlink(name)
            self.segments.clear()
            await self.pool.aclose()

    # ------------------------------------------------------------------ scheduler orders

    def expect(self, keys: list[str]) -> None:
        for key in keys:
            if not self.holds(key) and key not in self.arriving:
                event = self.arriving[key] = trio.Event()
                if self._nursery is not None:
                    self._nursery.start_soon(self._expire, key, event)
        self._wake()

    async def _expire(self, key: str, event: trio.Event) -> None:
        """Give up on an announced upload that has not even started for a while."""
        while True:
            with trio.move_on_after(self.arrival_timeout):
                await event.wait()
                return
            if self.arriving.get(key) is not event:
                return
            if not self.uploading.get(key):
                break  # (a slow upload in progress is left alone: idle timeouts cover it)
        del self.arriving[key]
        event.set()
        logger.warning("%s: scattered %s never arrived", self.name, key)
        if self.on_never_arrived is not None:
            self.on_never_arrived(key)

    def _receiving(self, keys: list[str], started: bool) -> None:
        for key in keys:
            n = self.uploading.get(key, 0) + (1 if started else -1)
            if n > 0:
                self.uploading[key] = n
            else:
                self.uploading.pop(key, None)

    def free(self, keys: list[str]) -> None:
        for key in keys:
            self.data.pop(key, None)
            self.blobs.pop(key, None)
            self._drop_segment(key)
            if self.memory is not None:
                self.memory.forget(key)
            event = self.arriving.pop(key, None)
            if event is not None:
                event.set()  # whoever waits finds it gone
        self._wake()

    async def segment(self, key: str, frames: list[Any]) -> tuple[str, list[int]]:
        """The shared-memory copy of ``key`` (written now if there is none yet).

        Raises:
            OSError: no room in /dev/shm, or the key went meanwhile (send it over TCP).
        """
        if key not in self.data and key not in self.blobs:
            # spilled: a copy in /dev/shm would undo the spill (memory); the socket will do
            raise OSError(f"{key!r} is spilled to disk")
        lock = self._segment_locks.setdefault(key, trio.Lock())
        try:
            async with lock:
                cached = self.segments.get(key)
                if cached is not None:
                    return cached
                name, lengths = await trio.to_thread.run_sync(
                    partial(shm.write_segment, frames, key=key, space=self.space))
                if not self.holds(key):  # freed while it was written
                    shm.unlink(name)
                    raise OSError(f"{key!r} was freed")
                self.segments[key] = (name, lengths)
                return name, lengths
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._segment_locks.pop(key, None)

    def _unwritable(self, key: str, text: str) -> None:
        """A value could not be spilled and was dropped (``MemoryManager``): its key
        fails on the scheduler with ``SpillError(text)``."""
        self.blobs.pop(key, None)
        self.data.pop(key, None)
        if self.notify is not None:
            blob, type_name, text, tb = serialize.dumps_exception(SpillError(text))
            self.notify(p.TaskErred(key, 0, blob, type_name, text, tb, dropped=True))
        self._wake()

    def adopted(self, key: str, name: str, lengths: list[int]) -> None:
        """An upload's segment, renamed ours, holds the frames just stored for ``key``
        (loop): kept as its copy for readers on this host, or unlinked if the key has
        one already or went."""
        if key in self.blobs and key not in self.segments:
            self.segments[key] = (name, lengths)
        else:
            shm.unlink(name)

    def cached_segment(self, key: str) -> tuple[str, list[int]] | None:
        """The shared-memory copy of ``key`` if there is one (loop). Also one its run's
        thread made for a result the loop has not taken in yet (``stored`` comes after
        the run's end, which a task thread reports first): a reader in between maps it
        too, rather than getting another copy."""
        found = self.segments.get(key)
        if found is None:
            with self._made_lock:
                found = self._made.get(key)
        return found

    def _drop_segment(self, key: str) -> None:
        cached = self.segments.pop(key, None)
        if cached is not None:
            shm.unlink(cached[0])

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, predicate: Any) -> None:
        """Return once ``predicate(self.data)`` holds, re-checked whenever values are
        freed (for tests and tools: no polling)."""
        while not predicate(self.data):
            await self._changed.wait()

    # ------------------------------------------------------------------ serving

    async def arrival(self, keys: list[str]) -> None:
        """Wait (bounded) for the expected ones among ``keys`` (a run's inputs, a peer's
        request) to be uploaded, or given up on."""
        with trio.move_on_after(self.arrival_timeout):
            for key in keys:
                event = self.arriving.get(key)
                if event is not None:
                    await event.wait()

    async def frames_for(self, keys: list[str]) -> tuple[list[str], list[list[Any]], list[str]]:
        """Serialized forms of ``keys`` (serializing large values off the loop)."""
        await self.arrival(keys)
        found, frames, missing = [], [], []
        for key in keys:
            blob = self.blobs.get(key)
            if blob is None and key not in self.data and self.memory is not None:
                try:  # spilled: served from its file, never unpickled
                    blob = await trio.to_thread.run_sync(self.memory.read_frames, key)
                except OSError as exc:
                    logger.error("%s: cannot send %s: %s", self.name, key, exc)
            elif blob is None and key in self.data:
                value = self.data[key]
                try:
                    if type(value) is bytes or type(value) is bytearray:
                        blob = serialize.dumps_frames(value)  # (no work: no thread hop)
                    else:
                        blob = await trio.to_thread.run_sync(serialize.dumps_frames, value)
                except Exception as exc:
                    logger.warning("%s: cannot send %s: %s", self.name, key, exc)
                    # the asker is told why when it rebuilds the value (not "missing",
                    # which it would retry as a lost worker)
                    found.append(key)
                    frames.append(serialize.refusal_frames(
                        f"the result {key!r} on worker {self.name} cannot be sent: {exc}"))
                    continue
                else:
                    if key in self.data:  # not freed meanwhile
                        self.blobs[key] = blob
            if blob is None:
                missing.append(key)
            else:
                found.append(key)
                frames.append(blob if type(blob) is list else [blob])
        return found, frames, missing

    async def accept(self, values: dict[str, list[Any]]) -> None:
        """An upload of scattered keys; only keys the scheduler announced are taken.

        The announcement (``ExpectData``) and the upload come over different
        connections, so the upload may win the race: it waits for the announcement.

        Raises:
            ValueError: a key was never announced (or was released before it arrived).
        """
        with trio.move_on_after(self.arrival_timeout):
            while not all(k in self.arriving for k in values):
                await self._changed.wait()
        unknown = [k for k in values if k not in self.arriving]
        if unknown:
            raise ValueError(f"worker {self.name} was not told to expect {unknown[:3]}")
        for key, frames in values.items():
            self.blobs[key] = frames
            self.stored(key, serialize.frames_nbytes(frames))
            self.arriving.pop(key).set()

    # ------------------------------------------------------------------ fetching

    async def fetch(self, by_holder: dict[str, list[str]]) -> dict[str, Any]:
        """Frames of keys held elsewhere, from each holder's bulk address.

        A holder that stops sending for the pool's idle timeout counts as gone.

        Raises:
            KeyError: a holder no longer has a key; or transport errors.
        """
        fetched: dict[str, Any] = {}
        for holder, keys in by_holder.items():
            got, missing = await self.pool.get(holder, keys)
            if missing:
                raise KeyError(f"peer {holder} no longer holds {missing[:3]}")
            fetched.update(got)
        return fetched

    async def replicate(self, keys: list[str], holders: list[str]) -> tuple[list[str], list[str]]:
        """Fetch ``keys[i]`` from the peer at ``holders[i]`` and keep it here (a copy the
        scheduler asked for, ``FetchReplicas``); the keys now held and those not fetched.
        Nothing is unpickled: the frames are kept as they came.

        Cancellation: keys fetched so far are kept; the scheduler is not told of them.
        """
        by_holder: dict[str, list[str]] = {}
        for key, holder in zip(keys, holders):
            if not self.holds(key):
                by_holder.setdefault(holder, []).append(key)
        failed: list[str] = []
        for holder, wanted in by_holder.items():
            try:
                got, missing = await self.pool.get(holder, wanted)
            except Exception as exc:  # the holder went: the scheduler hears it failed
                logger.info("%s: cannot copy %s from %s: %s", self.name, wanted[:3], holder, exc)
                failed.extend(wanted)
                continue
            failed.extend(missing)
            for key, frames in got.items():
                if not self.holds(key):
                    self.blobs[key] = frames
                    self.stored(key, serialize.frames_nbytes(frames))
        self._wake()
        bad = set(failed)
        return [k for k in keys if k not in bad], failed

    def put_local(self, key: str, value: Any) -> None:
        """A value scattered from a task on this worker, to be kept here (no copy)."""
        event = self.arriving.pop(key, None)
        if event is None:
            return  # released before it arrived
        self.data[key] = value
        self.stored(key, serialize.buffer_size(value) or 0)
        event.set()

    def value(self, key: str) -> Any:
        """The value of a key held here, rebuilt from its blob if need be (any thread)."""
        if self.memory is not None:
            self.memory.touch(key)
        try:
            return self.data[key]
        except KeyError:
            pass
        try:
            blob = self.blobs[key]
        except KeyError:
            if self.memory is None:
                raise
            return self.memory.load(key)  # spilled
        value = self.data[key] = serialize.loads_value(blob)
        return value
