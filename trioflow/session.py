"""The client engine: one per scheduler connection, shared by every client object on it.

A ``Session`` lives on a Trio loop (the client's, or a worker's for in-task clients) and
is used from that loop *and* from other threads (sync ``Client`` calls, task threads):

* Sending is thread-safe and never blocks: messages go to an ordered queue under a lock
  and are flushed to the connection on the loop (``TrioToken.run_sync_soon``), so a
  ``submit`` from a thread costs a pickle and a lock, not a round trip to the loop.
* Key states change only on the loop, under the same lock; a waiting thread registers
  a ``SyncWaiter`` under the lock and sleeps on it, Trio tasks await a ``trio.Event``.
* Values are unpickled in the thread that asks for them, never on the loop.

On a worker, waits made from a task are reported to the scheduler (``WaitKeys``) so it
keeps the wait-for graph that deadlock detection needs.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import logging
import secrets
import threading
from collections.abc import Callable, Iterable
from typing import Any

import trio

from . import protocol as p
from . import serialize
from .errors import (
    ClientClosedError,
)
from .futures import Future
from .keys import (
    ERRED,
    FINISHED,
    PENDING,
    KeyState,
    SyncWaiter,
)
from .values import ValueTransfers

logger = logging.getLogger(__name__)



class Session(ValueTransfers):
    """Futures, functions sent and pending requests of one scheduler connection.

    Args:
        conn: the connection (its ``send`` is only called on the loop).
        peer_id: our id as the scheduler knows it.
        worker: the WorkerNode when this session serves in-task clients.
    """

    def __init__(self, conn: Any, peer_id: str, *, worker: Any = None) -> None:
        self.conn = conn
        self.peer_id = peer_id
        self.worker = worker
        self.lock = threading.Lock()
        self.keys: dict[str, KeyState] = {}
        self.fn_sent: set[str] = set()
        self.closed: str | None = None
        self.trio_token = trio.lowlevel.current_trio_token()
        self.loop_thread = threading.get_ident()
        self._queue: list[Any] = []
        self._flush_scheduled = False
        #: keys whose last Future died, to release in one message (in order)
        self._releases: dict[str, KeyState] = {}
        self._release_scheduled = False
        self._requests: dict[int, dict[str, Any]] = {}
        self._request_ids = itertools.count(1)
        self._status_waiters: dict[int, Any] = {}
        #: serialized large scatters waiting for the scheduler's ScatterTo, by key
        self._uploads: dict[str, list[Any]] = {}
        #: set by ``start``: where bulk transfers run, and how
        self.nursery: trio.Nursery | None = None
        self.pool: Any = None
        self.inline_limit = 64 * 1024
        # unique across sessions, processes and hosts: clients share one key space
        self._prefix = secrets.token_hex(5)
        self._counter = itertools.count(1)

    def start(self, nursery: trio.Nursery, pool: Any, inline_limit: int) -> None:
        """Bulk transfers (gathers of large results, scatter uploads) run in ``nursery``
        through ``pool`` (a ``net.bulk.BulkPool``); the scheduler's ``inline_limit``
        decides which values travel inline."""
        self.nursery = nursery
        self.pool = pool
        self.inline_limit = inline_limit

    # ------------------------------------------------------------------ sending

    def on_loop(self) -> bool:
        return threading.get_ident() == self.loop_thread

    def post(self, *messages: Any) -> None:
        """Send messages, in order, from any thread. Never blocks."""
        on_loop = self.on_loop()
        with self.lock:
            if self.closed is not None:
                raise ClientClosedError(f"the client is closed: {self.closed}")
            self._queue.extend(messages)
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
            if not on_loop:
                # scheduled under the lock: a thread that sees the flag set and then
                # calls run_sync_soon itself (WorkerNode._run_done) is queued behind
                # this flush, so what it posted before still goes first
                try:
                    self.trio_token.run_sync_soon(self._flush)
                except trio.RunFinishedError:
                    raise ClientClosedError("the client's event loop has stopped") from None
        if on_loop:
            self._flush()

    def call_in_order(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop after everything posted before (any thread).

        Slot changes (secede, rejoin) go through here so the scheduler sees them in the
        order the task made them relative to its messages (a Seceded must precede the
        WaitKeys that follows it, or the scheduler would count a slot that is free).
        """
        self.post(_Call(fn, args))

    def _flush(self) -> None:
        with self.lock:
            batch, self._queue = self._queue, []
            self._flush_scheduled = False
        send = self.conn.send
        for item in batch:
            if type(item) is _Call:
                item.fn(*item.args)
            else:
                send(item)

    # ------------------------------------------------------------------ futures

    def future(self, ks: KeyState) -> Future:
        return Future(self, ks)

    def incref(self, ks: KeyState) -> None:
        with self.lock:
            ks.refs += 1

    def decref(self, ks: KeyState) -> None:
        """A Future died (any thread, also during garbage collection)."""
        with self.lock:
            ks.refs -= 1
            if ks.refs > 0 or self.closed is not None:
                return
            if self.keys.get(ks.key) is ks:
                del self.keys[ks.key]
            # futures die in bursts (a list going out of scope): collect the keys and
            # send one ReleaseKeys for all of them on the loop's next turn
            self._releases[ks.key] = ks
            if self._release_scheduled:
                return
            self._release_scheduled = True
        try:
            self.trio_token.run_sync_soon(self._flush_releases)
        except trio.RunFinishedError:
            pass

    def _flush_releases(self) -> None:
        with self.lock:
            keys = list(self._releases)
            self._releases.clear()
            self._release_scheduled = False
            for key in keys:  # a scatter released before its upload: drop the frames
                self._uploads.pop(key, None)
        if keys:
            try:
                self.post(p.ReleaseKeys(keys))
            except ClientClosedError:
                pass

    def adopt(self, key: str) -> KeyState:
        """A future for ``key`` arrived from elsewhere (inside data): hold it here too."""
        with self.lock:
            ks = self.keys.get(key) or self._releases.pop(key, None)
            if ks is not None:
                self.keys[key] = ks
                return ks
            ks = self.keys[key] = KeyState(key)
        self.post(p.AcquireKeys([key]))
        return ks

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], *,
               key: str | None = None, pure: bool = False, retries: int = 0,
               workers: Iterable[str] | None = None, priority: int = 0,
               run_once: bool = False) -> Future:
        """Pickle and send one task; returns its Future at once (any thread)."""
        if not callable(fn):
            raise TypeError(f"submit needs a callable, got {type(fn).__name__}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        fn_id, blob = serialize.dumps_function(fn)
        payload, deps = serialize.dumps_payload(args, kwargs, _is_future)
        if key is None:
            name = getattr(fn, "__name__", None) or type(fn).__name__
            if pure:
                digest = hashlib.blake2b(fn_id.encode() + payload, digest_size=10).hexdigest()
                key = f"{name}-{digest}"
            else:
                key = f"{name}-{self._prefix}-{next(self._counter)}"
        ctx = _current_run()
        parent = ctx.run.key if ctx is not None and ctx.worker is self.worker else ""
        msgs: list[Any] = []
        with self.lock:
            ks = self.keys.get(key)
            fresh = ks is None
            if fresh:
                ks = self._releases.pop(key, None)
                if ks is not None:  # wanted again before its release went out: keep it
                    fresh = False
                    self.keys[key] = ks
                else:
                    ks = self.keys[key] = KeyState(key)
            if fn_id not in self.fn_sent:
                self.fn_sent.add(fn_id)
                msgs.append(p.RegisterFunction(fn_id, blob))
        if fresh:
            msgs.append(p.SubmitTask(key, fn_id, payload, deps, parent,
                                     inspect.iscoroutinefunction(fn), retries, priority,
                                     list(workers or ()), run_once))
        fut = Future(self, ks)
        if msgs:
            self.post(*msgs)
        return fut

    # ------------------------------------------------------------------ incoming (loop)

    def handle(self, msg: Any) -> None:
        """Apply a scheduler message meant for clients (on the loop)."""
        t = type(msg)
        if t is p.KeyFinished:
            with self.lock:
                ks = self.keys.get(msg.key)
                if ks is None or ks.status is not PENDING:
                    return
                ks.status = FINISHED
                if msg.inline is not None:
                    ks.inline = msg.inline
                ks.nbytes = msg.nbytes
                ks.type_name = msg.type_name
                self._notify(ks)
        elif t is p.KeyErred:
            with self.lock:
                ks = self.keys.get(msg.key)
                if ks is None or ks.status is not PENDING:
                    return
                ks.status = ERRED
                ks.error = msg
                self._notify(ks)
        elif t is p.KeyRestarted:
            with self.lock:
                ks = self.keys.get(msg.key)
                if ks is not None and ks.status is FINISHED:
                    ks.status = PENDING  # recomputed elsewhere: wait for it again
                    ks.inline = None
                    if ks.event is not None and ks.event.is_set():
                        ks.event = None
        elif t is p.DataReply:
            self._data_reply(msg)
        elif t is p.ScatterTo:
            self._upload(msg)
        elif t is p.StatusReply:
            waiter = self._status_waiters.pop(msg.request_id, None)
            if waiter is not None:
                waiter["reply"] = msg
                waiter["event"].set()

    def finished_here(self, key: str, report: p.TaskFinished) -> None:
        """A task of this (worker) session's futures finished on this very worker."""
        with self.lock:
            ks = self.keys.get(key)
            if ks is None or ks.status is not PENDING:
                return
            ks.status = FINISHED
            ks.nbytes = report.nbytes
            ks.type_name = report.type_name
            self._notify(ks)

    def _notify(self, ks: KeyState) -> None:
        if ks.event is not None:
            ks.event.set()
        waiters, ks.waiters = ks.waiters, []
        for w in waiters:
            w.key_done()

    def close(self, reason: str) -> None:
        """The connection is gone: every pending key fails, every waiter wakes (loop)."""
        with self.lock:
            if self.closed is not None:
                return
            self.closed = reason
            for ks in self.keys.values():
                if ks.status is PENDING:
                    ks.status = ERRED
                    ks.error = ClientClosedError(f"lost the scheduler: {reason}")
                    self._notify(ks)
            requests = list(self._requests.values())
            self._requests.clear()
        for req in requests:
            req["error"] = ClientClosedError(f"lost the scheduler: {reason}")
            req["done"]()
        self._wake_status_waiters(reason)

    def _wake_status_waiters(self, reason: str) -> None:
        """``status()`` calls in flight fail now with ClientClosedError: no reply can
        come any more (they used to wait out their timeout)."""
        waiters, self._status_waiters = self._status_waiters, {}
        for waiter in waiters.values():
            waiter["error"] = ClientClosedError(f"lost the scheduler: {reason}")
            waiter["event"].set()

    # ------------------------------------------------------------------ waiting

    def wait_sync(self, states: list[KeyState], timeout: float | None = None) -> None:
        """Block this (non-loop) thread until every state is done.

        In a task thread the wait is reported to the scheduler; with ``auto_secede`` the
        slot is given back while waiting.

        Raises:
            TimeoutError: not done within ``timeout`` seconds.
            DeadlockError: the scheduler found this wait can never finish.
        """
        if self.on_loop():
            raise RuntimeError("a blocking wait on the event loop thread would hang it; "
                               "use `await` (AsyncClient) instead")
        with self.lock:
            pending = [ks for ks in states if ks.status is PENDING]
            if not pending:
                return
            ctx = _current_run()
            depth = -ctx.run.priority[1] if ctx is not None else 0
            waiter = SyncWaiter(len(pending), depth)
            for ks in pending:
                ks.waiters.append(waiter)
        if ctx is not None and ctx.worker is not self.worker:
            ctx = None
        auto = ctx is not None and ctx.worker.auto_secede and not ctx.seceded
        normal = False
        try:
            if ctx is not None:
                if auto:
                    ctx.secede()
                ctx.waiter = waiter
                self.post(p.WaitKeys(ctx.run.key, ctx.run.run_id, [k.key for k in pending],
                                     timeout is not None))
            if ctx is not None and ctx.seceded:
                done = ctx.worker.threads.wait_helping(waiter, timeout)
            else:
                done = waiter.wait(timeout)
            if waiter.failure is not None:
                failure, waiter.failure = waiter.failure, None
                try:
                    raise failure
                finally:
                    del failure  # no cycle: traceback -> this frame -> the exception
            if not done:
                raise TimeoutError(f"{len(pending)} key(s) not done after {timeout}s")
            normal = True
        finally:
            with self.lock:
                for ks in pending:
                    if waiter in ks.waiters:
                        ks.waiters.remove(waiter)
            if ctx is not None:
                ctx.waiter = None
                if not normal and waiter.failure is None:
                    self.post(p.WaitEnded(ctx.run.key, ctx.run.run_id))
                if auto:
                    ctx.rejoin()

    async def wait_async(self, states: list[KeyState]) -> None:
        """Wait on the loop until every state is done. In an async task the slot is given
        back while waiting and taken again after (no thread, no slot held).

        Cancellation: the wait simply stops; the slot is taken back before returning.
        """
        with self.lock:
            pending = [ks for ks in states if ks.status is PENDING]
            for ks in pending:
                if ks.event is None:
                    ks.event = trio.Event()
        if not pending:
            return
        ctx = _current_run()
        if ctx is not None and ctx.worker is not self.worker:
            ctx = None
        if ctx is None:
            for ks in pending:
                await ks.event.wait()
            return
        await ctx.wait_async(pending, self)

    async def status(self) -> p.StatusReply:
        """The scheduler's StatusReply.

        Raises:
            ClientClosedError: the session is closed, or closes before the reply.

        Cancellation: the request is forgotten (a late reply is ignored).
        """
        rid = next(self._request_ids)
        waiter = {"event": trio.Event(), "reply": None, "error": None}
        self._status_waiters[rid] = waiter
        try:
            self.post(p.StatusRequest(rid))  # raises ClientClosedError once closed
            await waiter["event"].wait()
        finally:
            self._status_waiters.pop(rid, None)
        if waiter["error"] is not None:
            raise waiter["error"]
        return waiter["reply"]


def _current_run() -> Any:
    from .tasks import _current  # tasks imports client, which imports this module

    global _current_run
    _current_run = _current.get
    return _current.get()


class _Call:
    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args


def _is_future(obj: Any) -> bool:
    return type(obj) is Future
