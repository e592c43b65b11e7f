"""Moving values between a session and the cluster: results in, large scatters out.

Mixed into ``Session`` (which owns the lock, the key states, ``post`` and the nursery
and ``BulkPool`` given to ``Session.start``):

* A result comes inline with ``KeyFinished`` when small; else from this worker's own
  memory (in-task clients); else ``GetData`` asks the scheduler where it is and it is
  fetched from the holder over the bulk data path (``net/bulk.py``). A fetch that fails
  because the holder vanished is retried with backoff: by then the scheduler either
  knows (the key is pending again, being recomputed) or says where else it is.
* A large ``scatter`` is serialized at once (errors surface in the caller) and uploaded
  in the background to the worker the scheduler names (``ScatterTo``); a failed upload
  is reported (``ScatterFailed``) so the scheduler can place it again.
* Values are unpickled in the thread that asks for them; from the loop, large ones are
  unpickled in a worker thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import trio

from . import protocol as p
from . import serialize
from .errors import ClientClosedError, WorkerLost
from .futures import Future
from .keys import ERRED, FINISHED, NO_VALUE, PENDING, KeyState, error_to_exception

logger = logging.getLogger(__name__)

#: a fetch that fails because a holder vanished is retried this often (the scheduler may
#: not have noticed yet; once it has, the key is recomputed or reported lost)
FETCH_ATTEMPTS = 6


class ValueTransfers:
    """Session methods that fetch results and upload scatters (see the module doc)."""

    # provided by Session
    lock: threading.Lock
    keys: dict[str, KeyState]
    worker: Any
    nursery: trio.Nursery | None
    pool: Any
    inline_limit: int
    _uploads: dict[str, list[Any]]
    _releases: dict[str, KeyState]
    _requests: dict[int, dict[str, Any]]
    _request_ids: Any
    _prefix: str
    _counter: Any
    post: Callable[..., None]
    wait_sync: Callable[..., None]
    wait_async: Callable[..., Any]

    def scatter_one(self, value: Any, key: str | None = None) -> Future:
        """Place ``value`` on the cluster under a new key (any thread).

        Small values travel inside the message to the scheduler. Large ones are
        serialized here (so an unpicklable value fails now), then uploaded over the
        bulk data path to the worker the scheduler names (``ScatterTo``).

        Raises:
            SerializationError: ``value`` cannot be pickled; says where.
        """
        key = key or f"{type(value).__name__}-{self._prefix}-{next(self._counter)}"
        size = serialize.buffer_size(value)
        frames = None
        if size is None or size <= self.inline_limit:
            blob = serialize.dumps_value(value)
            if len(blob) <= self.inline_limit:
                msg = p.ScatterData(key, blob, len(blob))
            else:
                frames = [blob]  # a plain pickle is a valid one-frame serialization
        if frames is not None or (size is not None and size > self.inline_limit):
            frames = frames or serialize.dumps_frames(value)
            msg = p.ScatterData(key, b"", serialize.frames_nbytes(frames))
        with self.lock:
            ks = self.keys.get(key)
            if ks is None:
                ks = self.keys[key] = KeyState(key)
            ks.value = value  # we have it already; no need to fetch it back
            if frames is not None:
                self._uploads[key] = frames
        fut = Future(self, ks)
        self.post(msg)
        return fut

    def _upload(self, msg: p.ScatterTo) -> None:
        """The scheduler says where a large scatter goes (loop)."""
        with self.lock:
            frames = self._uploads.pop(msg.key, None)
            ks = self.keys.get(msg.key) or self._releases.get(msg.key)
            value = ks.value if ks is not None else NO_VALUE
        if frames is None and value is NO_VALUE:
            self.post(p.ScatterFailed(msg.key, msg.address, "the client no longer holds the "
                                      "value (all its futures were released)"))
            return
        worker = self.worker
        if worker is not None and msg.address == worker.data_address:
            if value is NO_VALUE:
                value = serialize.loads_frames(frames)
            worker.store.put_local(msg.key, value)  # scattered from a task here: no copy
            return
        assert self.nursery is not None
        self.nursery.start_soon(self._upload_to, msg.key, msg.address, frames, value)

    async def _upload_to(self, key: str, address: str, frames: list[Any] | None,
                         value: Any) -> None:
        try:
            if frames is None:  # a re-upload after its first worker was lost
                frames = await trio.to_thread.run_sync(serialize.dumps_frames, value)
            await self.pool.put(address, {key: frames})
        except Exception as exc:
            logger.warning("scatter of %s to %s failed: %s", key, address, exc)
            try:
                self.post(p.ScatterFailed(key, address, f"{type(exc).__name__}: {exc}"))
            except ClientClosedError:
                pass

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
            elif self._held_here(ks.key):
                return self.worker.store.value(ks.key)
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
        """Like ``value``, from the loop: large values are rebuilt in a thread."""
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
        return self.worker is not None and self.worker.store.holds(key)

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

    def _request(self, keys: list[str], done: Callable[[], None]) -> dict[str, Any]:
        rid = next(self._request_ids)
        req = {"keys": set(keys), "blobs": {}, "error": None, "done": done}
        with self.lock:
            self._requests[rid] = req
        self.post(p.GetData(rid, keys))
        return req

    def _data_reply(self, msg: p.DataReply) -> None:
        """Small values came inline; large ones are fetched from their holders (loop)."""
        if msg.missing:
            self._request_got(msg.request_id, {}, WorkerLost(
                f"result(s) {msg.missing[:3]} are gone (released, or their worker left)"))
        self._request_got(msg.request_id, dict(zip(msg.keys, msg.blobs)), None)
        by_address: dict[str, list[str]] = {}
        for key, address in zip(msg.far_keys, msg.far_addresses):
            by_address.setdefault(address, []).append(key)
        for address, keys in by_address.items():
            if self.nursery is None:
                self._request_got(msg.request_id, {}, WorkerLost("no bulk data path"))
            else:
                self.nursery.start_soon(self._fetch_far, msg.request_id, address, keys)

    async def _fetch_far(self, rid: int, address: str, keys: list[str]) -> None:
        try:
            got, missing = await self.pool.get(address, keys)
        except Exception as exc:
            self._request_got(rid, {}, WorkerLost(f"could not fetch {keys[:3]} from {address}: "
                                                  f"{type(exc).__name__}: {exc}"))
            return
        error = None
        if missing:
            error = WorkerLost(f"worker {address} no longer holds {missing[:3]}")
        self._request_got(rid, got, error)

    def _request_got(self, rid: int, blobs: dict[str, Any], error: BaseException | None) -> None:
        with self.lock:
            req = self._requests.get(rid)
            if req is None:
                return
            req["blobs"].update(blobs)
            req["keys"].difference_update(blobs)
            if error is not None:
                req["error"] = error
                req["keys"].clear()
            if req["keys"]:
                return
            del self._requests[rid]
        req["done"]()

    def _fetch_sync(self, states: list[KeyState]) -> dict[str, Any]:
        """Serialized values (bytes or frames) of ``states``, from this thread."""
        event = threading.Event()
        req = self._request([ks.key for ks in states], event.set)
        event.wait()
        if req["error"] is not None:
            raise req["error"]
        return req["blobs"]

    async def _fetch_async(self, states: list[KeyState]) -> dict[str, Any]:
        event = trio.Event()
        req = self._request([ks.key for ks in states], event.set)
        await event.wait()
        if req["error"] is not None:
            raise req["error"]
        return req["blobs"]


async def _loads_off_loop(blob: Any) -> Any:
    """Unpickle from the loop: large values (frames) in a worker thread."""
    if type(blob) is list:
        return await trio.to_thread.run_sync(serialize.loads_value, blob)
    return serialize.loads_value(blob)


def _backoff(attempt: int) -> float:
    return min(0.05 * 2 ** attempt, 2.0)
