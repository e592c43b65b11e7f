"""Moving values between a session and the cluster: results in, large scatters out.

Two objects a ``Session`` is built from, each given what it uses by its constructor
(the session's lock, its ``post``, its waits) and the nursery and ``BulkTransport``
once the connection is up (``start``):

* A result comes inline with ``KeyFinished`` when small; else from this worker's own
  memory (in-task clients); else from the holder ``KeyFinished`` named, over the bulk
  data path (``net/bulk.py``), or, when that holder no longer has it (or none was
  named), ``GetData`` asks the scheduler where it is now. A fetch that fails
  because the holder vanished is retried with backoff: by then the scheduler either
  knows (the key is pending again, being recomputed) or says where else it is.
* A large ``scatter`` is serialized at once (errors surface in the caller) and uploaded
  in the background to the worker the scheduler names (``ScatterTo``); a failed upload
  is reported (``ScatterFailed``) so the scheduler can place it again.
* Values are unpickled in the thread that asks for them; from the loop, large ones are
  unpickled in a worker thread.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from .. import protocol as p
from .. import serialize
from ..config import FETCH_ATTEMPTS, INLINE_LIMIT
from ..errors import ClientClosedError, WorkerLost
from .keys import ERRED, FINISHED, NO_VALUE, PENDING, KeyState, error_to_exception
from .protocols import BulkTransport, HostWorker

logger = logging.getLogger(__name__)


@attrs.define(eq=False)
class _Request:
    """One GetData in flight: the keys still missing, what came, how to wake the asker."""

    keys: set[str]
    done: Callable[[], None]
    blobs: dict[str, Any] = attrs.Factory(dict)
    error: BaseException | None = None


class DataPath:
    """Where background transfers run, once the session is connected (``start``)."""

    def __init__(self) -> None:
        self.nursery: trio.Nursery | None = None
        self.pool: BulkTransport | None = None
        self.inline_limit = INLINE_LIMIT

    def start(self, nursery: trio.Nursery, pool: BulkTransport, inline_limit: int) -> None:
        self.nursery = nursery
        self.pool = pool
        self.inline_limit = inline_limit


class Scatterer:
    """Places values on the cluster: inline when small, uploaded when large.

    Args:
        lock: the session's lock (key states change under it).
        keys: the session's key states.
        lookup: finds a key state by key, also one whose release is pending.
        post: the session's ordered, thread-safe send.
        host: the worker, for in-task clients (a scatter from a task stays there).
        bulk: where uploads run.
    """

    def __init__(self, *, lock: threading.Lock, keys: dict[str, KeyState],
                 lookup: Callable[[str], KeyState | None], post: Callable[..., None],
                 host: HostWorker | None, bulk: DataPath) -> None:
        self.lock = lock
        self.keys = keys
        self.lookup = lookup
        self.post = post
        self.host = host
        self.bulk = bulk
        #: serialized large scatters waiting for the scheduler's ScatterTo, by key
        self.uploads: dict[str, list[Any]] = {}

    def scatter_one(self, value: Any, key: str, workers: tuple[str, ...] = ()) -> KeyState:
        """Place ``value`` on the cluster under a new key (any thread).

        Small values travel inside the message to the scheduler. Large ones are
        serialized here (so an unpicklable value fails now), then uploaded over the
        bulk data path to the worker the scheduler names (``ScatterTo``), one of
        ``workers`` when given.

        Raises:
            SerializationError: ``value`` cannot be pickled; says where.
        """
        limit = self.bulk.inline_limit
        size = serialize.buffer_size(value)
        frames = None
        msg = None
        if size is None or size <= limit:
            blob = serialize.dumps_value(value)
            if len(blob) <= limit:
                msg = p.ScatterData(key, blob, len(blob))
            else:
                frames = [blob]  # a plain pickle is a valid one-frame serialization
        if msg is None:
            frames = frames or serialize.dumps_frames(value)
            msg = p.ScatterData(key, b"", serialize.frames_nbytes(frames), list(workers))
        with self.lock:
            ks = self.keys.get(key)
            if ks is None:
                ks = self.keys[key] = KeyState(key)
            ks.value = value  # we have it already; no need to fetch it back
            # finished at once, as dask's are: the value exists; the scheduler makes
            # tasks that need it wait for the upload, not the client's future
            ks.status = FINISHED
            ks.nbytes = msg.nbytes
            ks.type_name = serialize.type_name(value)
            if frames is not None:
                self.uploads[key] = frames
        self.post(msg)
        return ks

    def released(self, key: str) -> None:
        """A scatter released before its upload: drop its frames (under the lock)."""
        self.uploads.pop(key, None)

    def upload(self, msg: p.ScatterTo) -> None:
        """The scheduler says where a large scatter goes (loop)."""
        with self.lock:
            frames = self.uploads.pop(msg.key, None)
            ks = self.lookup(msg.key)
            value = ks.value if ks is not None else NO_VALUE
        if frames is None and value is NO_VALUE:
            self.post(p.ScatterFailed(msg.key, msg.address, "the client no longer holds the "
                                      "value (all its futures were released)"))
            return
        host = self.host
        if host is not None and msg.address == host.data_address:
            if value is NO_VALUE:
                assert frames is not None
                value = serialize.loads_frames(frames)
            host.store.put_local(msg.key, value)  # scattered from a task here: no copy
            return
        assert self.bulk.nursery is not None
        self.bulk.nursery.start_soon(self._upload_to, msg.key, msg.address, frames, value)

    async def _upload_to(self, key: str, address: str, frames: list[Any] | None,
                         value: Any) -> None:
        try:
            if frames is None:  # a re-upload after its first worker was lost
                frames = await trio.to_thread.run_sync(serialize.dumps_frames, value)
            assert self.bulk.pool is not None
            await self.bulk.pool.put(address, {key: frames})
        except Exception as exc:
            logger.warning("scatter of %s to %s failed: %s", key, address, exc)
            try:
                self.post(p.ScatterFailed(key, address, f"{type(exc).__name__}: {exc}"))
            except ClientClosedError:
                pass


class Fetcher:
    """Brings the values of done keys to whoever asks: from the message they came with,
    from this worker's memory, or from their holder over the bulk data path.

    Args:
        lock: the session's lock.
        post: the session's ordered, thread-safe send.
        call: runs a function on the loop, in order with ``post`` (from any thread).
        wait_sync, wait_async: the session's waits (a lost value being recomputed is
            waited for again).
        store: the worker's values, for in-task clients (read in place, no copy).
        bulk: where fetches run.
    """

    def __init__(self, *, lock: threading.Lock, post: Callable[..., None],
                 call: Callable[..., None],
                 wait_sync: Callable[[list[KeyState]], None],
                 wait_async: Callable[[list[KeyState]], Awaitable[None]],
                 on_loop: Callable[[], bool], host: HostWorker | None,
                 bulk: DataPath) -> None:
        self.lock = lock
        self.on_loop = on_loop
        self.post = post
        self.call = call
        self.wait_sync = wait_sync
        self.wait_async = wait_async
        self.host = host
        self.bulk = bulk
        self._requests: dict[int, _Request] = {}
        self._request_ids = itertools.count(1)

    def value(self, ks: KeyState) -> Any:
        """The value of a done key (any thread but the loop for large data).

        Raises:
            the task's exception, or CancelledError/KilledWorker/WorkerLost/... .
        """
        for attempt in range(FETCH_ATTEMPTS):
            if ks.status is ERRED:
                raise error_to_exception(ks.error)
            v = ks.value
            if v is not NO_VALUE:
                return v
            if ks.inline is not None:
                v = serialize.loads_value(ks.inline)
            elif self.host is not None and self.host.store.holds(ks.key):
                return self.host.store.value(ks.key)
            else:
                try:
                    v = serialize.loads_value(self._fetch_sync([ks])[ks.key])
                except WorkerLost:
                    if ks.status is FINISHED and attempt + 1 < FETCH_ATTEMPTS:
                        # its holder died and the scheduler may not know yet: ask again
                        time.sleep(_backoff(attempt))
                    elif ks.status is PENDING:
                        self.wait_sync([ks])  # lost, and being recomputed
                    elif ks.status is FINISHED:
                        raise
                    continue
            ks.value = v
            ks.inline = None
            return v
        raise WorkerLost(f"could not fetch {ks.key!r}")  # pragma: no cover

    async def value_async(self, ks: KeyState) -> Any:
        """Like ``value``, from a Trio task: large values are rebuilt in a thread."""
        if not self.on_loop():  # another loop (see Session.wait_async): fetch from a thread
            return await trio.to_thread.run_sync(self.value, ks, abandon_on_cancel=True)
        for attempt in range(FETCH_ATTEMPTS):
            if ks.status is ERRED or ks.value is not NO_VALUE or ks.inline is not None or (
                    self._held_here(ks.key)):
                return self.value(ks)
            try:
                blob = (await self._fetch_async([ks]))[ks.key]
            except WorkerLost:
                if ks.status is FINISHED and attempt + 1 < FETCH_ATTEMPTS:
                    await trio.sleep(_backoff(attempt))
                elif ks.status is PENDING:
                    await self.wait_async([ks])
                elif ks.status is FINISHED:
                    raise
                continue
            ks.value = await _loads_off_loop(blob)
            return ks.value
        raise WorkerLost(f"could not fetch {ks.key!r}")  # pragma: no cover

    def _held_here(self, key: str) -> bool:
        return self.host is not None and self.host.store.holds(key)

    def _far(self, states: list[KeyState]) -> list[KeyState]:
        """Finished keys whose values must be fetched (not here, not inline)."""
        return [ks for ks in states if ks.status is FINISHED and ks.value is NO_VALUE
                and ks.inline is None and not self._held_here(ks.key)]

    def prefetch_sync(self, states: list[KeyState]) -> None:
        """Fetch the values of many keys in one request (best effort: ``value`` retries
        and reports failures per key)."""
        far = self._far(states)
        if len(far) > 1:
            try:
                blobs = self._fetch_sync(far)
            except WorkerLost:
                return
            for ks in far:
                ks.value = serialize.loads_value(blobs[ks.key])

    async def prefetch_async(self, states: list[KeyState]) -> None:
        far = self._far(states)
        if len(far) > 1:
            try:
                blobs = await self._fetch_async(far)
            except WorkerLost:
                return
            for ks in far:
                ks.value = await _loads_off_loop(blobs[ks.key])

    # ------------------------------------------------------------------ fetching large results

    def _request(self, states: list[KeyState], done: Callable[[], None]) -> _Request:
        keys = [ks.key for ks in states]
        rid = next(self._request_ids)
        req = _Request(set(keys), done)
        with self.lock:
            self._requests[rid] = req
        holders = {ks.holder for ks in states}
        if len(holders) == 1 and "" not in holders:
            # the holder KeyFinished named: no round trip to the scheduler first
            self.call(self._fetch_named, rid, holders.pop(), keys)
        else:
            self.post(p.GetData(rid, keys))
        return req

    def _fetch_named(self, rid: int, address: str, keys: list[str]) -> None:
        """On the loop: fetch ``keys`` from ``address``; whatever it lacks, ask for."""
        if self.bulk.nursery is None:
            self.post(p.GetData(rid, keys))
        else:
            self.bulk.nursery.start_soon(self._fetch_far, rid, address, keys, True)

    def fail_all(self, error: BaseException) -> None:
        """The connection is gone: every fetch in flight fails with ``error``."""
        with self.lock:
            requests = list(self._requests.values())
            self._requests.clear()
        for req in requests:
            req.error = error
            req.done()

    def data_reply(self, msg: p.DataReply) -> None:
        """Small values came inline; large ones are fetched from their holders (loop)."""
        if msg.missing:
            self._request_got(msg.request_id, {}, WorkerLost(
                f"result(s) {msg.missing[:3]} are gone (released, or their worker left)"))
        self._request_got(msg.request_id, dict(zip(msg.keys, msg.blobs)), None)
        by_address: dict[str, list[str]] = {}
        for key, address in zip(msg.far_keys, msg.far_addresses):
            by_address.setdefault(address, []).append(key)
        for address, keys in by_address.items():
            if self.bulk.nursery is None:
                self._request_got(msg.request_id, {}, WorkerLost("no bulk data path"))
            else:
                self.bulk.nursery.start_soon(self._fetch_far, msg.request_id, address, keys)

    async def _fetch_far(self, rid: int, address: str, keys: list[str],
                         ask_if_missing: bool = False) -> None:
        """Fetch ``keys`` from their holder at ``address``. With ``ask_if_missing`` (the
        holder came with KeyFinished and may be out of date: the value moved, its worker
        left), what it cannot give is asked of the scheduler (``GetData``) instead of
        failing."""
        try:
            assert self.bulk.pool is not None
            got, missing = await self.bulk.pool.get(address, keys)
        except Exception as exc:
            if ask_if_missing:
                self.post(p.GetData(rid, keys))
                return
            self._request_got(rid, {}, WorkerLost(f"could not fetch {keys[:3]} from {address}: "
                                                  f"{type(exc).__name__}: {exc}"))
            return
        error = None
        if missing and ask_if_missing:
            self.post(p.GetData(rid, missing))
        elif missing:
            error = WorkerLost(f"worker {address} no longer holds {missing[:3]}")
        self._request_got(rid, got, error)

    def _request_got(self, rid: int, blobs: dict[str, Any], error: BaseException | None) -> None:
        with self.lock:
            req = self._requests.get(rid)
            if req is None:
                return
            req.blobs.update(blobs)
            req.keys.difference_update(blobs)
            if error is not None:
                req.error = error
                req.keys.clear()
            if req.keys:
                return
            del self._requests[rid]
        req.done()

    def _fetch_sync(self, states: list[KeyState]) -> dict[str, Any]:
        """Serialized values (bytes or frames) of ``states``, from this thread."""
        event = threading.Event()
        req = self._request(states, event.set)
        event.wait()
        if req.error is not None:
            raise req.error
        return req.blobs

    async def _fetch_async(self, states: list[KeyState]) -> dict[str, Any]:
        event = trio.Event()
        req = self._request(states, event.set)
        await event.wait()
        if req.error is not None:
            raise req.error
        return req.blobs


async def _loads_off_loop(blob: Any) -> Any:
    """Unpickle from the loop: large values (frames) in a worker thread."""
    if type(blob) is list:
        return await trio.to_thread.run_sync(serialize.loads_value, blob)
    return serialize.loads_value(blob)


def _backoff(attempt: int) -> float:
    return min(0.05 * 2 ** attempt, 2.0)
