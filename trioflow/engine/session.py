"""The client engine: one per scheduler connection, shared by every client object on it.

A ``Session`` lives on a Trio loop (the client's, or a worker's for in-task clients) and
is used from that loop *and* from other threads (sync ``Client`` calls, task threads):

* Sending is thread-safe and never blocks: messages go through the session's
  ``Outbox`` (``engine/outbox.py``), an ordered queue under the session's lock flushed on
  the loop, or written by the posting thread itself when nothing is queued.
* Key states change only on the loop, under the same lock; a waiting thread registers
  a ``SyncWaiter`` under the lock and sleeps on it, Trio tasks await a ``trio.Event``.
* Values are unpickled in the thread that asks for them, never on the loop.

On a worker, waits made from a task are reported to the scheduler (``WaitKeys``) so it
keeps the wait-for graph that deadlock detection needs; the run's ``RunContext``
(``engine/context.py``) produces those messages.

A session is composed of an ``Outbox``, a ``Fetcher`` and a ``Scatterer``
(``engine/transfers.py``), each given the lock, the key table and ``post`` they use.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import inspect
import itertools
import logging
import secrets
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import trio

from .. import protocol as p
from .. import serialize
from ..core import resource_spec
from ..core.session import SessionKeys
from ..errors import CancelledError, ClientClosedError
from . import large_args
from .context import RunContext, current_run
from .futures import Future
from .keys import ERRED, FINISHED, NO_VALUE, PENDING, AsyncWaiter, KeyState, SyncWaiter
from .outbox import Outbox
from .protocols import BulkTransport, Connection, HostWorker
from .replies import ReplyTable
from .services import ServiceCalls
from .transfers import DataPath, Fetcher, Scatterer

logger = logging.getLogger(__name__)


class Session:
    """Futures, functions sent and pending requests of one scheduler connection.

    Args:
        conn: the connection (its ``send`` is only called on the loop).
        peer_id: our id as the scheduler knows it.
        worker: the worker, when this session serves its in-task clients.
    """

    def __init__(self, conn: Connection, peer_id: str, *,
                 worker: HostWorker | None = None, scheduler_id: str = "") -> None:
        self.conn = conn
        self.peer_id = peer_id
        #: the scheduler's id from its Welcome: futures of another cluster are refused
        self.scheduler_id = scheduler_id
        self.worker = worker
        #: the scheduler's address and its dashboard's link, for ``repr(client)`` and
        #: ``client.dashboard_link`` (set by the client that opened the connection)
        self.address = ""
        self.dashboard_link = ""
        #: the scheduler's host and package versions, from its Welcome (get_versions)
        self.scheduler_versions: dict[str, Any] = {}
        self.lock = threading.Lock()
        #: the key table (pure; changed under ``lock``): futures' keys, functions sent,
        #: releases pending, and the messages they cost
        self.table: SessionKeys[KeyState] = SessionKeys(KeyState)
        self.keys = self.table.keys
        self.closed: str | None = None
        #: the ordered stream of messages to the scheduler, and the releases' batching
        self.outbox = Outbox(conn, self.lock, closed=lambda: self.closed,
                             take_releases=self._take_releases)
        self.trio_token = self.outbox.trio_token
        self.post = self.outbox.post
        self.send_in_order = self.outbox.send_in_order
        self.call_in_order = self.outbox.call_in_order
        #: decrefs that found the lock taken, for the loop to apply (``decref``)
        self._dying: collections.deque[KeyState] = collections.deque()
        #: requests waiting for their one answer: coordination primitives' and the
        #: services' (``services``)
        self.replies = ReplyTable()
        #: status, why, run history, replicas, restart (``engine/services.py``)
        self.services = ServiceCalls(self.post, self.replies)
        self.status = self.services.status
        self.runs = self.services.runs
        self.why = self.services.why
        self.replicate = self.services.replicate
        self.restart = self.services.restart
        # unique across sessions, processes and hosts: clients share one key space
        self._prefix = secrets.token_hex(5)
        self._counter = itertools.count(1)
        #: fn_id -> whether that function is ``async def`` (asked once per function)
        self._async_fns: dict[str, bool] = {}
        #: large ``bytes`` arguments scattered by submit, by id, while their futures live
        self._shared_args: weakref.WeakValueDictionary[int, Future[Any]] = (
            weakref.WeakValueDictionary())
        #: set by ``start``: where bulk transfers run, and how
        self.data_path = DataPath()
        self.fetcher = Fetcher(lock=self.lock, post=self.post, call=self.call_in_order,
                               wait_sync=self.wait_sync,
                               wait_async=self.wait_async, on_loop=self.on_loop, host=worker,
                               bulk=self.data_path)
        self.scatterer = Scatterer(lock=self.lock, keys=self.keys, lookup=self.table.lookup,
                                   post=self.post, host=worker, bulk=self.data_path)
        self.value = self.fetcher.value
        self.value_async = self.fetcher.value_async
        self.prefetch_sync = self.fetcher.prefetch_sync
        self.prefetch_async = self.fetcher.prefetch_async

    def start(self, nursery: trio.Nursery, pool: BulkTransport, inline_limit: int) -> None:
        """Bulk transfers (gathers of large results, scatter uploads) run in ``nursery``
        through ``pool``; the scheduler's ``inline_limit`` decides which values travel
        inline."""
        self.data_path.start(nursery, pool, inline_limit)
        self.outbox.start(nursery)

    @property
    def inline_limit(self) -> int:
        return self.data_path.inline_limit

    @property
    def loop_thread(self) -> int:
        """The ident of the loop's thread (the outbox's: it decides what runs there)."""
        return self.outbox.loop_thread

    @loop_thread.setter
    def loop_thread(self, ident: int) -> None:  # (tests post "as if from a thread")
        self.outbox.loop_thread = ident

    def on_loop(self) -> bool:
        return threading.get_ident() == self.outbox.loop_thread

    # ------------------------------------------------------------------ futures

    def incref(self, ks: KeyState) -> None:
        with self.lock:
            ks.refs += 1

    def decref(self, ks: KeyState) -> None:
        """A Future died (any thread, also during garbage collection).

        Never waits for the session's lock: the garbage collector may finalize a Future
        in a thread that holds it already (the loop thread in ``handle``, a cycle
        collected at an allocation), and the lock is not reentrant, so waiting would
        deadlock that thread. When the lock is taken, the decref is handed to the loop
        (``_decref_dying``, in order); the release it may cause is asynchronous anyway.
        """
        if not self.lock.acquire(blocking=False):
            self._dying.append(ks)
            with contextlib.suppress(trio.RunFinishedError):
                self.trio_token.run_sync_soon(self._decref_dying)
            return
        self.lock.release()  # (re-taken below: the common, uncontended case)
        self._decref(ks)

    def _decref_dying(self) -> None:
        """Apply the decrefs handed over by ``decref`` (loop, outside any lock)."""
        dying = self._dying
        while dying:
            self._decref(dying.popleft())

    def _decref(self, ks: KeyState) -> None:
        with self.lock:
            ks.refs -= 1
            if ks.refs > 0 or self.closed is not None:
                return
            # the futures of its out-of-band arguments die below, outside the lock
            held, ks.held = ks.held, None
            # futures die in bursts (a list going out of scope): collect the keys and
            # send one ReleaseKeys for all of them on the loop's next turn
            self.table.release(ks)
            wake = self.outbox.release_later()
        del held
        if wake:
            self.outbox.wake_releases()

    def _take_releases(self) -> p.ReleaseKeys | None:
        """Under the lock: the ``ReleaseKeys`` of the keys released since the last call
        (the outbox sends it), if any."""
        release = self.table.take_releases()
        if release is not None:
            for key in release.keys:  # a scatter released before its upload: drop the frames
                self.scatterer.released(key)
        return release

    def adopt(self, key: str) -> KeyState:
        """A future for ``key`` arrived from elsewhere (inside data): hold it here too."""
        with self.lock:
            ks, msgs = self.table.adopt(key)
        if msgs:
            self.post(*msgs)
        return ks

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], *,
               key: str | None = None, pure: bool = False, retries: int = 0,
               workers: Iterable[str] | None = None, priority: int = 0,
               run_once: bool = False,
               resources: Mapping[str, float] | None = None,
               _same_call: dict[int, Future[Any]] | None = None) -> Future[Any]:
        """Pickle and send one task; returns its Future at once (any thread).

        ``resources``: abstract resources the task needs (``{"GPU": 1}``), checked here.
        ``_same_call`` is shared by the submits of one ``map``: a large argument passed to
        all of them is uploaded once (``engine/large_args.py``)."""
        if not callable(fn):
            raise TypeError(f"submit needs a callable, got {type(fn).__name__}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        res_names, res_amounts = resource_spec.as_lists(
            resource_spec.check_resources(resources)) if resources is not None else ([], [])
        fn_id, blob = serialize.dumps_function(fn)
        limit = self.inline_limit
        held: list[Future[Any]] = []
        payload = serialize.dumps_scalars(args) if not kwargs else None
        if payload is not None:  # (most tasks: no future, nothing large, in the arguments)
            deps: list[str] = []
        else:
            if not pure:  # (a pure key is named by its arguments: they must stay in place)
                args, kwargs, held = large_args.scatter_large_args(
                    self.scatter_one, args, kwargs, limit, shared=self._shared_args,
                    this_call=_same_call)
            payload, deps = serialize.dumps_payload(args, kwargs, self._own_future)
        if key is None:
            name = getattr(fn, "__name__", None) or type(fn).__name__
            if pure:
                digest = hashlib.blake2b(fn_id.encode() + payload, digest_size=10).hexdigest()
                key = f"{name}-{digest}"
            else:
                key = f"{name}-{self._prefix}-{next(self._counter)}"
            generated = not pure
        else:
            generated = False
        ctx = current_run()
        here = ctx is not None and ctx.session is self
        parent = ctx.run.key if ctx is not None and here else ""
        is_async = self._async_fns.get(fn_id)
        if is_async is None:  # (inspect's answer costs a microsecond; one per function)
            is_async = self._async_fns[fn_id] = inspect.iscoroutinefunction(fn)
        if len(payload) > limit or len(blob) > limit:  # out of band: engine/large_args.py
            fn, payload, deps, more = large_args.pack(self.scatter_one, fn, blob, payload,
                                                      deps, self._own_future, limit, is_async)
            held += more
            fn_id, blob = serialize.dumps_function(fn)
        with self.lock:
            ks, msgs, fresh = self.table.submit(key, fn_id, blob)
            if held:
                ks.held = [*(ks.held or ()), *held]
        fut: Future[Any] = Future(self, ks)
        if (fresh and ctx is not None and here and generated and not deps and not workers
                and not res_names  # (resources are placed by the scheduler, which holds them)
                and self.worker is not None):
            # a child of a run here, new to everyone, needing no input (arguments sent
            # out of band are inputs): the worker queues it on itself (``place_child``),
            # on this thread, at once: the ledger sends the TaskPlaced behind what the
            # run posted before, and may start the child in a free slot right away
            placed = p.TaskPlaced(key, 1, fn_id, payload, parent, is_async, retries,
                                  priority, run_once)
            if msgs:
                self.post(*msgs)
            elif self.closed is not None:
                raise ClientClosedError(f"the client is closed: {self.closed}")
            self.worker.place_child(placed, ctx.depth + 1, blob)
            return fut
        if fresh:
            msgs.append(p.SubmitTask(key, fn_id, payload, deps, parent, is_async, retries,
                                     priority, list(workers or ()), run_once, res_names,
                                     res_amounts))
        if msgs:
            self.post(*msgs)
        return fut

    def scatter_one(self, value: Any, key: str | None = None,
                    workers: tuple[str, ...] = ()) -> Future[Any]:
        """Place ``value`` on the cluster under a new key (any thread), a large one on
        one of ``workers`` when given; see ``Scatterer``.

        Raises:
            SerializationError: ``value`` cannot be pickled; says where.
        """
        key = key or f"{type(value).__name__}-{self._prefix}-{next(self._counter)}"
        return Future(self, self.scatterer.scatter_one(value, key, workers))

    def _own_future(self, obj: object) -> bool:
        """Whether ``obj`` is a Future (a dependency); one of another cluster is refused."""
        if type(obj) is not Future:
            return False
        theirs = getattr(obj._session, "scheduler_id", "")
        if theirs and self.scheduler_id and theirs != self.scheduler_id:
            raise ValueError(
                f"future {obj.key!r} belongs to another cluster (scheduler "
                f"{theirs!r}; this client's is {self.scheduler_id!r}): a task "
                "can only depend on futures of its own cluster; pass the value instead "
                "(`other_client.gather(future)`, or scatter it here)")
        return True

    # ------------------------------------------------------------------ incoming (loop)

    def handle(self, msg: Any) -> None:
        """Apply a scheduler message meant for clients (on the loop)."""
        self.outbox.thread_wrote = False  # (the loop had a turn: a thread may write again)
        t = type(msg)
        if t is p.KeyFinished:
            with self.lock:
                ks = self.table.finished(msg)
                if ks is not None:
                    self._notify(ks)
        elif t is p.KeyErred:
            with self.lock:
                ks = self.table.erred(msg)
                if ks is not None:
                    ks.value = NO_VALUE  # a cancelled finished key: its value is gone
                    self._notify(ks)
        elif t is p.KeyRestarted:
            with self.lock:
                ks = self.table.restarted(msg)  # recomputed elsewhere: wait for it again
                if ks is not None and ks.event is not None and ks.event.is_set():
                    ks.event = None
        elif t is p.DataReply:
            self.fetcher.data_reply(msg)
        elif t is p.ScatterTo:
            self.scatterer.upload(msg)
        elif t in _ANSWERS:
            self.replies.reply(msg)

    def finished_here(self, key: str, report: p.TaskFinished) -> None:
        """A task of this (worker) session's futures finished on this very worker (any
        thread: a sync run's own thread wakes its waiters, after its ledger end put its
        ``TaskFinished`` in the stream)."""
        with self.lock:
            ks = self.table.finished_here(report)
            if ks is not None:
                self._notify(ks)

    def cancel(self, states: list[KeyState], reason: str) -> None:
        """Cancel keys, finished ones too (any thread): the scheduler fails their tasks
        and dependents. A finished key's futures fail with CancelledError at once, here
        (its value must not be read after the cancel); a pending key's when the
        scheduler's answer comes, so that once a future reads "cancelled" its queued
        task can no longer start (the scheduler has taken it back first).
        """
        if not states:
            return
        self.post(p.CancelKeys([ks.key for ks in states], reason))
        events = []
        with self.lock:
            for ks in states:
                if ks.status is not FINISHED:
                    continue
                ks.status = ERRED
                ks.error = CancelledError(ks.key, reason)
                ks.inline = None
                ks.value = NO_VALUE
                if ks.event is not None:
                    events.append(ks.event)
                for w in ks.take_waiters():  # thread-safe: condition variables
                    w.key_done()
        for event in events:  # a trio.Event is set on its loop only
            if self.on_loop():
                event.set()
            else:
                with contextlib.suppress(trio.RunFinishedError):
                    self.trio_token.run_sync_soon(event.set)

    def _notify(self, ks: KeyState) -> None:
        if ks.event is not None:
            if threading.get_ident() == self.loop_thread:
                ks.event.set()
            else:  # (a task thread's run ended here: finished_here) a trio.Event is loop-only
                with contextlib.suppress(trio.RunFinishedError):
                    self.trio_token.run_sync_soon(ks.event.set)
        for w in ks.take_waiters():
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
        self.fetcher.fail_all(ClientClosedError(f"lost the scheduler: {reason}"))
        self.replies.fail_all(ClientClosedError(f"lost the scheduler: {reason}"))

    # ------------------------------------------------------------------ waiting

    def _run_here(self) -> RunContext | None:
        """The run waiting, when it is a task of this (worker) session."""
        ctx = current_run()
        return ctx if ctx is not None and ctx.session is self else None

    def wait_sync(self, states: list[KeyState], timeout: float | None = None) -> None:
        """Block this (non-loop) thread until every state is done.

        In a task thread the wait is reported to the scheduler; with ``auto_secede`` the
        slot is given back while waiting (``RunContext.wait_sync``).

        Raises:
            TimeoutError: not done within ``timeout`` seconds.
            DeadlockError: the scheduler found this wait can never finish.
        """
        if self.on_loop():
            raise RuntimeError("a blocking wait on the event loop thread would hang it; "
                               "use `await` (AsyncClient) instead")
        ctx = self._run_here()
        with self.lock:
            pending = [ks for ks in states if ks.status is PENDING]
            if not pending:
                return
            # (a task waiting without a timeout may run the runs of these keys on its
            # own thread, SlotThreads.submit; a timed wait must end on time)
            waiter = (SyncWaiter(len(pending), ctx.depth,
                                 frozenset(k.key for k in pending) if timeout is None
                                 else frozenset(), ctx.run)
                      if ctx is not None else SyncWaiter(len(pending)))
            for ks in pending:
                ks.add_waiter(waiter)
        try:
            if ctx is not None:
                done = ctx.wait_sync(waiter, [k.key for k in pending], timeout)
            else:
                done = waiter.wait(timeout)
            if not done:
                raise TimeoutError(f"{len(pending)} key(s) not done after {timeout}s")
        finally:
            with self.lock:
                for ks in pending:
                    ks.drop_waiter(waiter)

    async def wait_async(self, states: list[KeyState]) -> None:
        """Wait on the loop until every state is done. In an async task the slot is given
        back while waiting and taken again after (no thread, no slot held).

        Cancellation: the wait simply stops; the slot is taken back before returning.
        """
        if not self.on_loop():
            # another Trio loop awaits a future of this session (a blocking Client's
            # loop runs in its own thread): its trio.Event cannot be set from here, so
            # the wait blocks a worker thread of the caller's loop instead
            await trio.to_thread.run_sync(self.wait_sync, states, abandon_on_cancel=True)
            return
        with self.lock:
            pending = [ks for ks in states if ks.status is PENDING]
            if pending:
                waiter = AsyncWaiter(len(pending), self.trio_token, self.loop_thread)
                for ks in pending:
                    ks.add_waiter(waiter)
        if not pending:
            return
        try:
            ctx = self._run_here()
            if ctx is None:
                await waiter.wait()
            else:
                await ctx.wait_keys_async([k.key for k in pending], waiter)
        finally:
            if waiter.remaining > 0:  # ended early (cancelled, failed): unregister
                with self.lock:
                    for ks in pending:
                        ks.drop_waiter(waiter)


#: the replies to requests of ``replies`` (primitives, services): matched by request id
_ANSWERS = frozenset({p.PrimitiveReply, p.StatusReply, p.WhyReply, p.RunsReply,
                      p.ReplicateReply, p.RestartReply, p.DatasetReply, p.RetryReply,
                      p.PluginReply, p.MetadataReply, p.EventReply})
