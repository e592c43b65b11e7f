"""The worker's Trio shell: scheduler connection, slots, task runs, data for peers.

Theory of operation:

* One Trio task reads the scheduler connection and feeds ``WorkerState`` (the ledger);
  the commands that come back are executed here, in order, on the loop. The ledger sits
  behind a lock (``_LockedLedger``) for one thread-side event: a task thread whose run
  ended takes the next queued run itself (``hand_over``), so a stream of short tasks
  costs no loop round trip per task; the loop applies the commands of that event later,
  in order with everything else the thread sent (``Session.call_in_order``). Every
  other event reaches the ledger on the loop.
* Slots are one ``trio.CapacityLimiter(nthreads)``; each run is its own borrower, so
  ``secede()`` from the task's thread can give back exactly that run's token.
* Sync tasks run on ``SlotThreads``; ``async def`` tasks run as Trio tasks here and
  give their slot back whenever they await futures.
* The same connection serves the worker's in-task clients (``self.session``): a task
  submitting children or waiting on them costs no new connection.
* Results stay here; small ones (pickled) also travel inline to the scheduler.

Cancellation: cancelling ``serve`` stops reading, cancels async runs, and closes the
connection; threads still running sync tasks are daemons and die with the process.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from functools import partial
from typing import Any

import trio
from trio_websocket import ConnectionClosed

from .. import protocol as p
from .. import serialize
from ..core import worker as wcore
from ..errors import (
    AuthenticationError,
    DeadlockError,
    ProtocolVersionError,
    RemoteProtocolError,
    SlotAccountingError,
    WorkerLost,
)
from ..session import Session
from ..tasks import RunContext, _current
from .connection import DEFAULT_MAX_MESSAGE_SIZE, PeerConnection, open_connection
from .slots import SlotThreads
from .worker_data import DataStore

logger = logging.getLogger(__name__)

DEFAULT_INLINE_LIMIT = 64 * 1024
DEFAULT_MAX_PARKED_THREADS = 256
#: runs of functions whose mean duration is below this (seconds) count as "short": the
#: connection holds a frame back briefly for their results (see PeerConnection.linger)
SHORT_RUN = 0.0002


class WorkerNode:
    """A worker: connect to ``scheduler_address`` and run what it assigns.

    Args:
        nthreads: slots (tasks running at once).
        max_parked_threads: seceded threads allowed on top of the slots.
        auto_secede: every wait inside a sync task gives the slot back (like async tasks).
        host: interface for the bulk data server (loopback by default).
        ssl_context: client TLS context to verify a wss:// scheduler and tls:// peers.
        data_ssl_context: server TLS context for our own bulk data server (else plain
            tcp://, still token-checked).
    """

    def __init__(
        self,
        scheduler_address: str,
        *,
        nthreads: int = 1,
        name: str | None = None,
        token: str | None = None,
        max_parked_threads: int = DEFAULT_MAX_PARKED_THREADS,
        auto_secede: bool = False,
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
        data_ssl_context: ssl.SSLContext | None = None,
        inline_limit: int = DEFAULT_INLINE_LIMIT,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        peer_timeout: float = 30.0,
    ) -> None:
        if nthreads < 1:
            raise ValueError(f"nthreads must be >= 1, got {nthreads}")
        if max_parked_threads < 0:
            raise ValueError(f"max_parked_threads must be >= 0, got {max_parked_threads}")
        self.scheduler_address = scheduler_address
        self.nthreads = nthreads
        self.name = name or f"worker-{os.getpid()}"
        self.token = token
        self.auto_secede = auto_secede
        self.host = host
        self.ssl_context = ssl_context  # to verify the scheduler and peers (wss://)
        self.data_ssl_context = data_ssl_context  # to serve our results over wss://
        self.inline_limit = inline_limit
        self.max_message_size = max_message_size
        self.peer_timeout = peer_timeout
        self.ledger = _LockedLedger(wcore.WorkerState(nthreads))
        #: nesting of sync runs on this thread (a helping thread runs jobs inside a run)
        self._thread_runs = threading.local()
        self.limiter: trio.CapacityLimiter | None = None
        self.threads = SlotThreads(nthreads + max_parked_threads, name=f"trioflow-{self.name}")
        #: results and scattered values held here, and the bulk data path
        self.store = DataStore(name=self.name, token=token, ssl_context=ssl_context,
                               data_ssl_context=data_ssl_context,
                               idle_timeout=max(2 * peer_timeout, 10.0),
                               on_never_arrived=self._never_arrived)
        self.data = self.store.data  # values by key
        self.blobs = self.store.blobs  # their serialized forms, when made
        self.fn_blobs: dict[str, bytes] = {}
        self._functions: dict[str, Any] = {}
        #: key -> RunContext of every run that started and has not ended
        self.contexts: dict[str, RunContext] = {}
        #: inputs fetched from peers for runs that have not started, by run key
        self._fetched: dict[str, dict[str, Any]] = {}
        self.session: Session | None = None
        self.conn: PeerConnection | None = None
        self.peer_id = ""
        self.data_address = ""
        self._nursery: trio.Nursery | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._loop_thread = 0
        self._idle = trio.Event()
        #: mean run time by function id, and how many short sync runs are running now
        self._durations: dict[str, float] = {}
        self._short_running = 0
        self.closing = False

    def __repr__(self) -> str:
        return f"<WorkerNode {self.name!r} {self.ledger.counts()}>"

    # ------------------------------------------------------------------ lifecycle

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until the scheduler connection closes or this is cancelled."""
        self.limiter = trio.CapacityLimiter(self.nthreads)
        self._token = trio.lowlevel.current_trio_token()
        self._loop_thread = threading.get_ident()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.data_address = await nursery.start(self.store.serve, self.host)
                await self._connect_and_run(task_status)
                nursery.cancel_scope.cancel()
        finally:
            self.threads.close()
            if self.session is not None:
                self.session.close("the worker stopped")

    async def _connect_and_run(self, task_status: trio.TaskStatus[None]) -> None:
        async with open_connection(self.scheduler_address, ssl_context=self.ssl_context,
                                   name=f"scheduler ({self.scheduler_address})",
                                   max_message_size=self.max_message_size) as conn:
            if self.host in ("0.0.0.0", "::", ""):
                # serving on every interface: tell peers the address we reach the
                # scheduler from (0.0.0.0 would point them at themselves)
                scheme, _, rest = self.data_address.partition("://")
                port = rest.rsplit(":", 1)[1]
                local = conn.ws.local.address
                shown = f"[{local}]" if ":" in str(local) else local
                self.data_address = f"{scheme}://{shown}:{port}"
            conn.send(p.Hello("worker", self.name, list(p.SUPPORTED_VERSIONS), self.token or "",
                              self.nthreads, self.data_address, os.getpid()))
            await conn.flush()
            welcome = await _expect_welcome(conn)
            self.conn = conn
            conn.linger = self._linger
            self.peer_id = welcome.peer_id
            self.session = Session(conn, welcome.peer_id, worker=self)
            assert self._nursery is not None
            self.session.start(self._nursery, self.store.pool, welcome.inline_limit)
            logger.info("worker %s joined %s as %s with %d slot(s)", self.name,
                        self.scheduler_address, self.peer_id, self.nthreads)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(conn.run_writer)
                nursery.start_soon(conn.run_heartbeats)
                task_status.started()
                try:
                    await self._read(conn)
                finally:
                    nursery.cancel_scope.cancel()
        logger.info("worker %s: scheduler connection closed", self.name)

    async def _read(self, conn: PeerConnection) -> None:
        handlers = {
            p.ComputeTask: self._compute_task,
            p.Function: self._function_msg,
            p.StealTasks: lambda m: self._execute(self.ledger.steal(m.keys, m.run_ids)),
            p.FreeKeys: self._free_keys,
            p.ExpectData: lambda m: self.store.expect(m.keys),
            p.WaitFailed: self._wait_failed,
        }
        session = self.session
        assert session is not None
        while True:
            try:
                with trio.fail_after(self.peer_timeout):
                    messages = await conn.receive()
            except trio.TooSlowError:
                logger.warning("%s: the scheduler has been silent for %ss; disconnecting",
                               self.name, self.peer_timeout)
                return
            except ConnectionClosed:
                return
            except RemoteProtocolError as exc:
                logger.error("scheduler sent an invalid frame: %s; disconnecting", exc)
                return
            for msg in messages:
                handler = handlers.get(type(msg))
                if handler is not None:
                    handler(msg)
                else:
                    session.handle(msg)

    # ------------------------------------------------------------------ loop-side helpers

    def call_on_loop(self, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` on the worker's loop: now if we are on it, else soon."""
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            assert self._token is not None
            self._token.run_sync_soon(fn, *args)

    async def drain(self, grace: float = 30.0) -> None:
        """Stop taking work, hand queued runs back, let running ones finish (``grace`` s).

        Cancellation: whatever still runs is abandoned; the scheduler re-runs it.
        """
        if self.conn is None:
            return
        self.closing = True
        self.conn.send(p.WorkerClosing())
        with self.ledger.lock:  # task threads may take queued runs meanwhile
            queued = [r for r in self.ledger.runs.values()
                      if r.state in (wcore.RunState.QUEUED, wcore.RunState.FETCHING)]
        self._execute(self.ledger.steal([r.key for r in queued], [r.run_id for r in queued]))
        with trio.move_on_after(grace):
            await self.wait_idle()
        await self.conn.flush()

    async def wait_idle(self) -> None:
        """Return once this worker has no runs at all (for tests and draining)."""
        while self.ledger.runs:
            await self._idle.wait()

    def _execute(self, commands: list[Any]) -> None:
        limiter = self.limiter
        assert limiter is not None
        if not self.ledger.runs and not self._idle.is_set():
            self._idle.set()
            self._idle = trio.Event()
        for cmd in commands:
            t = type(cmd)
            if t is wcore.SendMessage:
                if self.conn is not None:
                    self.conn.send(cmd.message)
            elif t is wcore.StartRun:
                self._acquire(cmd.run)
                self._start(cmd.run)
            elif t is wcore.ReleaseSlot:
                limiter.release_on_behalf_of(cmd.run)
            elif t is wcore.PassSlot:  # the new run is already running on the old one's thread
                limiter.release_on_behalf_of(cmd.old)
                self._acquire(cmd.new)
            elif t is wcore.GrantRejoin:
                self._acquire(cmd.run)
                ctx = self.contexts.get(cmd.run.key)
                if ctx is not None and ctx.rejoin_event is not None:
                    ctx.rejoin_event.set()
            elif t is wcore.FetchInputs:
                assert self._nursery is not None
                self._nursery.start_soon(self._fetch_inputs, cmd.run)

    def _acquire(self, run: wcore.LocalRun) -> None:
        assert self.limiter is not None
        try:
            self.limiter.acquire_on_behalf_of_nowait(run)
        except trio.WouldBlock:
            raise SlotAccountingError(
                f"the ledger granted a slot to {run!r} but the limiter has none "
                f"({self.limiter.borrowed_tokens}/{self.limiter.total_tokens} borrowed)"
            ) from None

    def _linger(self) -> bool:
        """More results are microseconds away: worth holding the frame for them."""
        return self._short_running > 0

    def do_secede(self, run: wcore.LocalRun) -> None:
        ctx = self.contexts.get(run.key)
        if ctx is not None and ctx.short:
            ctx.short = False  # it waits on other tasks: not short any more
            self._short_running -= 1
        if self.ledger.runs.get(run.key) is run and run.state is wcore.RunState.RUNNING:
            self._execute(self.ledger.secede(run))

    def do_rejoin(self, run: wcore.LocalRun, wakeup: Any) -> None:
        """``run`` asks for a slot back; ``wakeup.set()`` is called when it has one."""
        ctx = self.contexts.get(run.key)
        if ctx is not None:
            ctx.rejoin_event = wakeup  # set here, on the loop, in order with the grants
        if self.ledger.runs.get(run.key) is run and run.state is wcore.RunState.SECEDED:
            self._execute(self.ledger.rejoin(run))

    def do_cancel_rejoin(self, run: wcore.LocalRun) -> None:
        if self.ledger.runs.get(run.key) is run and run.state in (
            wcore.RunState.REJOINING, wcore.RunState.RUNNING
        ):
            self._execute(self.ledger.cancel_rejoin(run))

    # ------------------------------------------------------------------ messages

    def _compute_task(self, msg: p.ComputeTask) -> None:
        if self.closing:  # assigned before the scheduler saw WorkerClosing: hand it back
            assert self.conn is not None
            self.conn.send(p.TasksReturned([msg.key], [msg.run_id]))
            return
        store = self.store
        needs_fetch = any(
            (holder and not store.holds(dep)) or dep in store.arriving
            for dep, holder in zip(msg.deps, msg.dep_holders)
        )
        self._execute(self.ledger.task_assigned(msg, needs_fetch))

    def _function_msg(self, msg: p.Function) -> None:
        self.fn_blobs[msg.fn_id] = msg.blob

    def _never_arrived(self, key: str) -> None:
        if self.conn is not None:
            self.conn.send(p.ScatterFailed(key, self.data_address, "its upload never arrived "
                                           "(the client that scattered it may have left)"))

    def _free_keys(self, msg: p.FreeKeys) -> None:
        self.store.free(msg.keys)

    async def wait_for_data(self, predicate: Any) -> None:
        """Return once ``predicate(self.data)`` holds, re-checked whenever results are
        freed (for tests and tools: no polling)."""
        await self.store.wait_for(predicate)

    def _wait_failed(self, msg: p.WaitFailed) -> None:
        ctx = self.contexts.get(msg.run_key)
        if ctx is not None and ctx.run.run_id == msg.run_id:
            ctx.fail_wait(DeadlockError(msg.report))

    # ------------------------------------------------------------------ runs

    def _start(self, run: wcore.LocalRun) -> None:
        spec = run.spec
        ctx = RunContext(self, run, spec.is_async)
        self.contexts[run.key] = ctx
        if spec.is_async:
            assert self._nursery is not None
            self._nursery.start_soon(self._run_async, ctx, name=f"task {run.key}")
        else:
            if self._durations.get(spec.fn_id, 1.0) < SHORT_RUN:
                ctx.short = True
                self._short_running += 1
            self.threads.submit(partial(self._run_sync, ctx), -run.priority[1])

    def _function(self, fn_id: str) -> Any:
        fn = self._functions.get(fn_id)
        if fn is None:
            fn = self._functions[fn_id] = serialize.loads_function(self.fn_blobs[fn_id])
        return fn

    def _inputs(self, spec: p.ComputeTask) -> dict[str, Any]:
        if not spec.deps:
            return {}
        fetched = self._fetched.pop(spec.key, {})
        values = {}
        for dep, inline in zip(spec.deps, spec.dep_inline):
            if inline is not None:
                values[dep] = serialize.loads_value(inline)
            elif self.store.holds(dep):
                values[dep] = self.store.value(dep)
            elif dep in fetched:
                values[dep] = serialize.loads_value(fetched[dep])
            else:
                raise WorkerLost(f"input {dep!r} of {spec.key!r} is not on this worker")
        return values

    def _pack(self, spec: p.ComputeTask, value: Any, duration: float) -> tuple[Any, bytes | None]:
        """The TaskFinished report for ``value`` and its pickled form (if made)."""
        size = None
        if isinstance(value, bytes | bytearray | memoryview):
            size = len(value)
        else:
            nb = getattr(value, "nbytes", None)
            size = nb if isinstance(nb, int) else None
        if size is not None and size > self.inline_limit:
            return p.TaskFinished(spec.key, spec.run_id, size, None, duration,
                                  serialize.type_name(value)), None
        blob = serialize.dumps_value(value)
        inline = blob if len(blob) <= self.inline_limit else None
        return p.TaskFinished(spec.key, spec.run_id, len(blob), inline, duration,
                              serialize.type_name(value)), blob

    def _erred(self, spec: p.ComputeTask, exc: BaseException) -> Any:
        blob, tname, text, tb = serialize.dumps_exception(exc)
        return p.TaskErred(spec.key, spec.run_id, blob, tname, text, tb)

    def _run_sync(self, ctx: RunContext) -> None:
        """A sync run on a task thread, then the queued runs it hands its slot to.

        At the top of a thread's stack, a run that ends takes the best queued run itself
        (``hand_over``) instead of a round trip through the loop per task. Not while
        helping (a job run inside a waiting task): that thread must return to its own
        wait, and helping is limited to deeper work.
        """
        nesting = self._thread_runs
        depth = nesting.depth = getattr(nesting, "depth", 0) + 1
        try:
            next_ctx: RunContext | None = ctx
            while next_ctx is not None:
                next_ctx = self._run_one_sync(next_ctx, depth == 1)
        finally:
            nesting.depth = depth - 1

    def _run_one_sync(self, ctx: RunContext, may_hand_over: bool) -> RunContext | None:
        """Run ``ctx``'s task; return the context of the run taken next, if any."""
        spec = ctx.run.spec
        reset = _current.set(ctx)
        value = blob = None
        ok = False
        report: Any = p.TaskErred(spec.key, spec.run_id, b"", "builtins.RuntimeError",
                                  "the worker failed while running this task")
        try:
            fn = self._function(spec.fn_id)
            args, kwargs = serialize.loads_payload(spec.payload, self._inputs(spec))
            t0 = time.perf_counter()
            value = fn(*args, **kwargs)
            report, blob = self._pack(spec, value, time.perf_counter() - t0)
            ok = True
        except BaseException as exc:
            report, ok = self._erred(spec, exc), False
        finally:
            _current.reset(reset)
        if may_hand_over:
            next_ctx = self._hand_over(ctx, ok, value, blob, report)
            if next_ctx is not None:
                return next_ctx
        try:
            self.call_on_loop(self._run_done, ctx, ok, value, blob, report)
        except trio.RunFinishedError:
            pass  # the worker stopped while this thread ran
        return None

    def _hand_over(self, ctx: RunContext, ok: bool, value: Any, blob: bytes | None,
                   report: Any) -> RunContext | None:
        """On ``ctx``'s thread: end its run and start the best queued sync run on its
        slot, if the ledger allows. The loop learns of both in order with what the run
        sent (``_handed_over``), so the scheduler sees the report after the run's own
        messages, as with ``_run_done``."""
        session = self.session
        if session is None or session.closed is not None or self.closing:
            return None
        run = ctx.run
        nxt, commands = self.ledger.hand_over(run, report, _may_take)
        if nxt is None:
            return None
        next_ctx = RunContext(self, nxt, False)
        self.contexts[nxt.key] = next_ctx
        try:
            session.call_in_order(self._handed_over, ctx, ok, value, blob, commands, next_ctx)
        except Exception:  # the connection closed: the worker is stopping
            return None
        return next_ctx

    def _handed_over(self, ctx: RunContext, ok: bool, value: Any, blob: bytes | None,
                     commands: list[Any], next_ctx: RunContext) -> None:
        """On the loop: ``ctx``'s run ended and ``next_ctx``'s started on its slot."""
        self._ended(ctx, ok, value, blob, commands[0].message)
        self._execute(commands)
        if ok and self.session is not None:
            self.session.finished_here(ctx.run.key, commands[0].message)
        if self._durations.get(next_ctx.run.spec.fn_id, 1.0) < SHORT_RUN:
            next_ctx.short = True
            self._short_running += 1

    async def _run_async(self, ctx: RunContext) -> None:
        spec = ctx.run.spec
        _current.set(ctx)
        value = blob = None
        try:
            fn = self._function(spec.fn_id)
            args, kwargs = serialize.loads_payload(spec.payload, self._inputs(spec))
            t0 = time.perf_counter()
            value = await fn(*args, **kwargs)
            report, blob = self._pack(spec, value, time.perf_counter() - t0)
            ok = True
        except Exception as exc:
            report, ok = self._erred(spec, exc), False
        self._run_done(ctx, ok, value, blob, report)

    def _run_done(self, ctx: RunContext, ok: bool, value: Any, blob: bytes | None,
                  report: Any) -> None:
        run = ctx.run
        self._ended(ctx, ok, value, blob, report)
        if self.ledger.runs.get(run.key) is run:
            self._execute(self.ledger.run_ended(run, report))
            if ok and self.session is not None:
                # a task here waiting on this one wakes now, not a scheduler round trip
                # later; the scheduler still sees TaskFinished before anything the waiter
                # does next (same connection, queued first), so its wait-for graph holds
                self.session.finished_here(run.key, report)

    def _ended(self, ctx: RunContext, ok: bool, value: Any, blob: bytes | None,
               report: Any) -> None:
        """Loop-side bookkeeping of a run that returned or raised (before the ledger)."""
        run = ctx.run
        if ctx.short:
            ctx.short = False
            self._short_running -= 1
        if ok and type(report) is p.TaskFinished:
            old = self._durations.get(run.spec.fn_id)
            d = report.duration
            self._durations[run.spec.fn_id] = d if old is None else 0.8 * old + 0.2 * d
        if ok:
            self.data[run.key] = value
            if blob is not None:
                self.blobs[run.key] = blob
        if self.contexts.get(run.key) is ctx:
            del self.contexts[run.key]

    async def _fetch_inputs(self, run: wcore.LocalRun) -> None:
        """Get a run's inputs that are not here yet: from their holders over the bulk
        data path, or (scattered to us) by waiting for their upload."""
        spec = run.spec
        store = self.store
        by_holder: dict[str, list[str]] = {}
        for dep, holder in zip(spec.deps, spec.dep_holders):
            if holder and not store.holds(dep) and dep not in store.arriving:
                by_holder.setdefault(holder, []).append(dep)
        fetched: dict[str, Any] = {}
        try:
            await store.local_arrival(list(spec.deps))
            absent = [d for d, h, i in zip(spec.deps, spec.dep_holders, spec.dep_inline)
                      if not h and i is None and not store.holds(d)]
            if absent:
                # scattered to us but the upload failed (or timed out): hand the run
                # back; the scheduler places it again once the input is somewhere
                logger.info("%s: inputs %s of %s never arrived; returning it",
                            self.name, absent[:3], run.key)
                if self.ledger.runs.get(run.key) is run:
                    self._execute(self.ledger.steal([run.key], [run.run_id]))
                return
            fetched = await store.fetch(by_holder)
        except Exception as exc:
            logger.warning("%s: fetching inputs of %s failed: %s", self.name, run.key, exc)
            if self.ledger.runs.get(run.key) is run:
                err = WorkerLost(f"could not fetch the inputs of {run.key!r}: {exc}")
                self._execute(self.ledger.run_ended(run, self._erred(spec, err)))
            return
        if self.ledger.runs.get(run.key) is run:
            self._fetched[run.key] = fetched
            self._execute(self.ledger.inputs_arrived(run))

    def statistics(self) -> dict[str, Any]:
        assert self.limiter is not None
        return {
            **self.ledger.counts(),
            "borrowed_tokens": self.limiter.borrowed_tokens,
            "threads": self.threads.threads,
            "peak_threads": self.threads.peak_threads,
            "helped": self.threads.helped,
            "overflow_threads": self.threads.overflow,
            "data": len(self.data),
        }


def _may_take(run: wcore.LocalRun) -> bool:
    """A task thread may start ``run`` itself: sync runs only (async ones run on the loop)."""
    return not run.spec.is_async


class _LockedLedger:
    """The worker's ``WorkerState`` behind a lock.

    Task threads call ``hand_over`` while the loop calls everything else, so every event
    takes the lock. Attribute reads (``runs``, ``holding``) pass through unlocked: a
    task thread only changes the run that just ended on it and the queued run it takes.
    """

    def __init__(self, state: wcore.WorkerState) -> None:
        self.state = state
        self.lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.state, name)

    def __repr__(self) -> str:
        return f"<locked {self.state!r}>"

    def task_assigned(self, spec: p.ComputeTask, needs_fetch: bool) -> list[Any]:
        with self.lock:
            return self.state.task_assigned(spec, needs_fetch)

    def inputs_arrived(self, run: wcore.LocalRun) -> list[Any]:
        with self.lock:
            return self.state.inputs_arrived(run)

    def run_ended(self, run: wcore.LocalRun, report: Any) -> list[Any]:
        with self.lock:
            return self.state.run_ended(run, report)

    def hand_over(self, run: wcore.LocalRun, report: Any,
                  may_take: Any) -> tuple[wcore.LocalRun | None, list[Any]]:
        with self.lock:
            return self.state.hand_over(run, report, may_take)

    def secede(self, run: wcore.LocalRun) -> list[Any]:
        with self.lock:
            return self.state.secede(run)

    def rejoin(self, run: wcore.LocalRun) -> list[Any]:
        with self.lock:
            return self.state.rejoin(run)

    def cancel_rejoin(self, run: wcore.LocalRun) -> list[Any]:
        with self.lock:
            return self.state.cancel_rejoin(run)

    def steal(self, keys: list[str], run_ids: list[int]) -> list[Any]:
        with self.lock:
            return self.state.steal(keys, run_ids)

    def counts(self) -> dict[str, int]:
        with self.lock:
            return self.state.counts()

    def check(self) -> None:
        with self.lock:
            self.state.check()


async def _expect_welcome(conn: PeerConnection) -> Any:
    from ..errors import ClientClosedError

    try:
        with trio.fail_after(30):
            messages = await conn.receive()
    except ConnectionClosed as exc:
        reason = exc.reason
        text = f"the scheduler refused us: {reason.reason or reason.name} (code {reason.code})"
        if reason.code == p.CLOSE_AUTH_FAILED:
            raise AuthenticationError(text) from None
        if reason.code == p.CLOSE_VERSION_MISMATCH:
            raise ProtocolVersionError(text) from None
        raise ClientClosedError(text) from None
    if not messages or not isinstance(messages[0], p.Welcome):
        raise RemoteProtocolError("the scheduler did not answer with Welcome")
    # work may share the Welcome's frame (tasks waiting for a worker to join)
    conn.unread(messages[1:])
    return messages[0]
