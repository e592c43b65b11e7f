"""How a worker executes one run: from its inputs to its report.

``RunExecutor`` is built by ``WorkerNode`` with what it uses: the locked ledger, the
slot threads, the data store, the function that carries out ledger commands and the
one that runs a call on the loop. It owns the runs' contexts, the functions received
and the inputs fetched for queued runs.

* ``_start`` begins a run the ledger started: on a slot thread for sync functions, as a
  Trio task for ``async def`` ones. Functions are unpickled once per worker.
* Inputs come from the message (small results), this worker's memory, or were fetched
  from their holders before the run was queued (``_fetch_inputs``: run state FETCHING).
* A sync run ends on its own thread (``_end_on_thread``): the ledger's end happens
  there, under its lock, and the thread may start the next queued sync run right
  there (a stream of short tasks costs no loop round trip per task). If a sync run
  waits to rejoin, it gets the slot instead, and this thread wakes it; and a task here
  waiting on the result is woken from this thread (``finished_here``). The loop only
  sends what the ledger queued.
* The result is kept here; ``_pack`` pickles it for the scheduler when it is small.

Cancellation: async runs are cancelled with the worker's nursery; a sync run's thread
cannot be stopped, and its end is dropped if the worker has stopped.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import trio

from .. import protocol as p
from .. import serialize
from ..core import worker as wcore
from ..engine.context import RunContext, current_run, enter_run, leave_run
from ..engine.protocols import HostWorker
from ..engine.session import Session
from ..errors import ClientClosedError, WorkerLost
from .slots import SlotThreads
from .worker_data import DataStore
from .worker_ledger import LockedLedger
from .worker_plugins import WorkerPlugins

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

logger = logging.getLogger(__name__)

#: runs of functions whose mean duration is below this (seconds) count as "short": the
#: connection holds a frame back briefly for their results (see PeerConnection.linger)
SHORT_RUN = 0.0002

#: a run whose inputs cannot be fetched is handed back to the scheduler this often
#: (per worker) before it fails with WorkerLost
FETCH_HANDBACKS = 3
#: seconds before the first hand-back, doubling for each next one
FETCH_HANDBACK_DELAY = 0.05

Report = p.TaskFinished | p.TaskErred


class RunExecutor:
    """Executes the runs a worker's ledger starts (see the module doc).

    Args:
        name: the worker's name, for logs.
        host: the worker, as its runs' contexts see it.
        ledger: the worker's ledger behind its lock.
        threads: where sync runs execute.
        store: results kept here, and the bulk data path for inputs.
        call_on_loop: runs a call on the worker's loop, from any thread.
        inline_limit: results up to this many bytes travel inline.
        plugins: the worker's plugins; a run waits at their gate while one sets up.
    """

    def __init__(self, *, name: str, host: HostWorker, ledger: LockedLedger,
                 threads: SlotThreads, store: DataStore,
                 call_on_loop: Callable[..., None], inline_limit: int,
                 plugins: WorkerPlugins) -> None:
        self.name = name
        self.plugins = plugins
        self.host = host
        self.ledger = ledger
        self.threads = threads
        self.store = store
        self.call_on_loop = call_on_loop
        self.inline_limit = inline_limit
        #: key -> RunContext of every run that started and has not ended
        self.contexts: dict[str, RunContext] = {}
        self.fn_blobs: dict[str, bytes] = {}
        self._functions: dict[str, Any] = {}
        #: inputs fetched from peers for runs that have not started, by run key
        self._fetched: dict[str, dict[str, Any]] = {}
        #: failed input fetches per key (a holder that died before the scheduler knew)
        self._fetch_failures: dict[str, int] = {}
        #: mean run time by function id, and how many short sync runs are running now
        #: (changed from task threads too: under ``_short_lock``)
        self._durations: dict[str, float] = {}
        self.short_running = 0
        self._short_lock = threading.Lock()
        #: nesting of sync runs on this thread (a helping thread runs jobs inside a run)
        self._thread_runs = threading.local()
        #: set while connected: the session runs post through, and the nursery async
        #: runs and fetches live in
        self.session: Session | None = None
        self.nursery: trio.Nursery | None = None
        #: the worker is draining: a run that ends takes no queued run itself
        self.closing = False
        #: run key -> times its inputs could not be fetched and it was handed back
        self._fetch_handbacks: dict[str, int] = {}
        #: the loop thread's name, where async runs run (for their reports; ``attach``)
        self._loop_thread_name = ""

    def attach(self, session: Session, nursery: trio.Nursery) -> None:
        """A connection is up: runs post through ``session`` and live in ``nursery``
        (on the loop)."""
        self.session = session
        self.nursery = nursery
        self._loop_thread_name = threading.current_thread().name

    def add_function(self, msg: p.Function) -> None:
        self.fn_blobs[msg.fn_id] = msg.blob

    def seceding(self, run: wcore.LocalRun) -> None:
        """``run`` waits on other tasks: it is not short any more (its thread)."""
        ctx = self.contexts.get(run.key)
        if ctx is not None:
            self._not_short(ctx)

    def _not_short(self, ctx: RunContext) -> None:
        if ctx.short:
            with self._short_lock:
                if ctx.short:
                    ctx.short = False
                    self.short_running -= 1

    def _maybe_short(self, ctx: RunContext) -> None:
        if self._durations.get(ctx.run.spec.fn_id, 1.0) < SHORT_RUN:
            with self._short_lock:
                ctx.short = True
                self.short_running += 1

    def start(self, run: wcore.LocalRun) -> None:
        """Begin a run the ledger started: a thread job for sync (from any thread), a
        Trio task for async (loop)."""
        spec = run.spec
        assert self.session is not None
        ctx = RunContext(self.host, self.session, run, spec.is_async)
        self.contexts[run.key] = ctx
        if spec.is_async:
            assert self.nursery is not None
            try:
                self.nursery.start_soon(self._run_async, ctx, name=f"task {run.key}")
            except RuntimeError:
                # "closed to new arrivals": the worker is stopping, and a thread run that
                # ended just now made the ledger start this queued one (a callback can
                # come between the nursery closing and serve's finally): nobody is left
                # to run it for
                del self.contexts[run.key]
        else:
            self._maybe_short(ctx)
            self.threads.submit(partial(self._run_sync, ctx), ctx.depth, run.key)

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

    def _pack(self, spec: p.ComputeTask, value: Any, duration: float,
              thread: str | None = None) -> tuple[p.TaskFinished, bytes | None]:
        """The TaskFinished report for ``value`` and its pickled form (if made);
        ``thread``: the name of the thread it ran on (default: this one's)."""
        size = serialize.buffer_size(value)
        # when and where it ran, for the dashboard's task stream (called on the run's
        # own thread: a slot thread, or the loop's for async runs)
        start = time.time() - duration
        if thread is None:
            thread = threading.current_thread().name
        if size is not None and size > self.inline_limit:
            return p.TaskFinished(spec.key, spec.run_id, size, None, duration,
                                  serialize.type_name(value), start, thread), None
        blob = serialize.dumps_value(value)
        inline = blob if len(blob) <= self.inline_limit else None
        return p.TaskFinished(spec.key, spec.run_id, len(blob), inline, duration,
                              serialize.type_name(value), start, thread), blob

    def erred(self, spec: p.ComputeTask, exc: BaseException,
              t0: float | None = None) -> p.TaskErred:
        """The TaskErred report; with ``t0`` (``perf_counter`` when the function was
        called, on this thread) it says when and where the run ran."""
        blob, tname, text, tb = serialize.dumps_exception(exc)
        if t0 is None:
            return p.TaskErred(spec.key, spec.run_id, blob, tname, text, tb)
        duration = time.perf_counter() - t0
        return p.TaskErred(spec.key, spec.run_id, blob, tname, text, tb,
                           time.time() - duration, duration, threading.current_thread().name)

    def _run_sync(self, ctx: RunContext) -> None:
        """A sync run on a task thread, then the queued runs it hands its slot to.

        A run that ends takes the best queued sync run itself (``hand_over``) instead of
        a round trip through the loop per task. At the top of a thread's stack any; in
        a job run by a waiting task (helping), only a deeper run of a key that task
        waits on (so the nesting on a stack stays bounded by the depth of the tree, and
        the thread runs nothing else that could wait on the task below it: see
        ``SlotThreads.submit``).
        """
        nesting = self._thread_runs
        depth = nesting.depth = getattr(nesting, "depth", 0) + 1
        helped = current_run() if depth > 1 else None  # (the task waiting below this job)
        waiter = helped.waiter if helped is not None else None
        may_take = (wcore.thread_may_take if helped is None
                    else partial(_awaited_by, getattr(waiter, "awaits", frozenset()),
                                 helped.depth))
        try:
            next_ctx: RunContext | None = ctx
            while next_ctx is not None:
                next_ctx = self._run_one_sync(next_ctx, may_take)
        finally:
            nesting.depth = depth - 1

    def _run_one_sync(self, ctx: RunContext,
                      may_take: Callable[[wcore.LocalRun], bool]) -> RunContext | None:
        """Run ``ctx``'s task; return the context of the run taken next, if any."""
        spec = ctx.run.spec
        reset = enter_run(ctx)
        value = blob = None
        ok = False
        # (every way out of the try sets it: no default report built per task)
        report: Report
        t0: float | None = None
        try:
            self.store.gate_sync()  # (memory: no new work while paused)
            if self.plugins.pending:  # (a plugin is setting up: it comes first)
                self.plugins.gate_sync()
            fn = self._function(spec.fn_id)
            args, kwargs = serialize.loads_payload(spec.payload, self._inputs(spec))
            t0 = time.perf_counter()
            value = fn(*args, **kwargs)
            report, blob = self._pack(spec, value, time.perf_counter() - t0)
            if blob is None:  # large: into shared memory before it is reported
                value = self.store.share_result(spec.key, value)
            ok = True
        except BaseException as exc:
            report, ok = self.erred(spec, exc, t0), False
        finally:
            leave_run(reset)
        return self._end_on_thread(ctx, ok, value, blob, report, may_take)

    def _end_on_thread(self, ctx: RunContext, ok: bool, value: Any, blob: bytes | None,
                       report: Report,
                       may_take: Callable[[wcore.LocalRun], bool] | None,
                       ) -> RunContext | None:
        """On ``ctx``'s thread: end its run in the ledger, and go on from there. The
        ledger sends the report behind what the run posted; then its slot goes to the
        best queued run (returned: this thread runs it next) if ``may_take(it)``,
        else to a sync run waiting to rejoin (woken here), else back to the ledger;
        and a task here waiting on the result is woken here (``finished_here``)."""
        run = ctx.run
        session = self.session
        live = session is not None and session.closed is None
        if not live or self.closing:
            may_take = None
        self._ended(ctx, ok, value, blob, report)  # (the value first: a waiter reads it)
        memory = self.store.memory
        if memory is not None and ok and type(report) is p.TaskFinished:
            # counted before the ledger ends the run: a run started next, on this thread
            # or another, meets the memory gate closed if this result put the worker
            # over its target (the rest of ``stored`` follows on the loop)
            memory.count(run.key, report.nbytes)
        woken = self._woken(run.key) if ok and type(report) is p.TaskFinished else None
        try:
            nxt, rejoiner, current = self.ledger.end_on_thread(
                run, report, may_take, self._may_wake, woken)
        except (trio.RunFinishedError, ClientClosedError):
            return None  # the worker stopped while this thread ran
        if not current or session is None:
            return None
        if ok and type(report) is p.TaskFinished:
            # a task here waiting on this one wakes now, from this thread: the
            # scheduler still sees TaskFinished before anything the waiter does next
            # (the ledger queued it first), so its wait-for graph holds
            session.finished_here(run.key, report)
            if self.store.stored_needs_loop(run.key, report.nbytes):
                with contextlib.suppress(trio.RunFinishedError, ClientClosedError):
                    session.call_in_order(self.store.stored, run.key, report.nbytes)
        if nxt is None:
            return None
        if rejoiner:
            # (_may_wake saw its waiter under the ledger's lock; the messages of the
            # grant are queued, so what the rejoiner posts next follows them)
            waiter = self.contexts[nxt.key].rejoin_event
            assert waiter is not None
            waiter.set()
            return None
        next_ctx = RunContext(self.host, session, nxt, False)
        self.contexts[nxt.key] = next_ctx
        self._maybe_short(next_ctx)
        return next_ctx

    def _woken(self, key: str) -> wcore.LocalRun | None:
        """The run here whose wait ``key``'s end completes, if any: the slot the end
        frees is kept for it (it takes it back, or waits again, next), instead of a
        queued run starting there while it has to ask to rejoin.

        Read before the ledger ends the run and without the session's lock: a count
        that changes meanwhile only makes a slot kept for a run that still waits,
        which the ledger's clock fills soon (``WorkerState.lapse``)."""
        session = self.session
        ks = session.table.lookup(key) if session is not None else None
        if ks is not None:
            for waiter in ks.waiters:
                if waiter.remaining == 1 and waiter.owner is not None:
                    return waiter.owner
        return None

    def _may_wake(self, run: wcore.LocalRun) -> bool:
        """Whether this thread may grant the rejoining ``run`` its slot and wake it: a
        sync run whose rejoin() sleeps on a waiter (set before it asked the ledger)."""
        if not wcore.thread_may_grant(run):
            return False
        ctx = self.contexts.get(run.key)
        return ctx is not None and ctx.run is run and ctx.rejoin_event is not None

    async def _run_async(self, ctx: RunContext) -> None:
        spec = ctx.run.spec
        enter_run(ctx)  # this Trio task's own context: nothing to reset
        value = blob = None
        report: Report
        t0: float | None = None
        try:
            await self.store.gate_async()  # (memory: no new work while paused)
            if self.plugins.pending:
                await self.plugins.gate_async()
            fn = self._function(spec.fn_id)
            args, kwargs = serialize.loads_payload(spec.payload, self._inputs(spec))
            t0 = time.perf_counter()
            value = await fn(*args, **kwargs)
            report, blob = self._pack(spec, value, time.perf_counter() - t0,
                                      self._loop_thread_name)
            ok = True
        except BaseException as exc:
            if _cancelled_by_us(exc):
                raise  # the worker is stopping: not the task's doing
            # SystemExit, KeyboardInterrupt, asyncio.CancelledError, a bare
            # BaseException: the task's own ending, reported as its error (the client
            # receives it as TaskFailed); the worker goes on serving
            report, ok = self.erred(spec, exc, t0), False
        self._run_done(ctx, ok, value, blob, report)

    def _run_done(self, ctx: RunContext, ok: bool, value: Any, blob: bytes | None,
                  report: Report) -> None:
        """An async run ended (loop).

        Lighter than a sync run's ``_ended``: an async run is never "short" (no frame
        is held back for it) and its mean duration is never read (``_maybe_short`` is
        for sync runs, and a function is either), so neither is kept; ``stored`` runs
        only when it has something to do (``stored_needs_loop``)."""
        run = ctx.run
        key = run.key
        if ok:
            store = self.store
            store.data[key] = value
            if blob is not None:
                store.blobs[key] = blob
            if type(report) is p.TaskFinished and store.stored_needs_loop(key, report.nbytes):
                store.stored(key, report.nbytes)
        contexts = self.contexts
        if contexts.get(key) is ctx:
            del contexts[key]
        woken = self._woken(key) if ok and type(report) is p.TaskFinished else None
        if self.ledger.run_ended(run, report, woken):
            if ok and type(report) is p.TaskFinished and self.session is not None:
                # a task here waiting on this one wakes now, not a scheduler round trip
                # later; the scheduler still sees TaskFinished before anything the waiter
                # does next (queued first), so its wait-for graph holds
                self.session.finished_here(run.key, report)

    def _ended(self, ctx: RunContext, ok: bool, value: Any, blob: bytes | None,
               report: Report) -> None:
        """Bookkeeping of a run that returned or raised, before the ledger ends it (on
        its thread, or the loop): its value is kept here first (a woken waiter reads
        it). ``DataStore.stored``, loop-only, is the caller's."""
        run = ctx.run
        self._not_short(ctx)
        if ok and type(report) is p.TaskFinished:
            old = self._durations.get(run.spec.fn_id)
            d = report.duration
            self._durations[run.spec.fn_id] = d if old is None else 0.8 * old + 0.2 * d
        if ok:
            self.store.data[run.key] = value
            if blob is not None:
                self.store.blobs[run.key] = blob
        if self.contexts.get(run.key) is ctx:
            del self.contexts[run.key]

    async def fetch_inputs(self, run: wcore.LocalRun) -> None:
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
            await store.arrival(list(spec.deps))
            absent = [d for d, h, i in zip(spec.deps, spec.dep_holders, spec.dep_inline)
                      if not h and i is None and not store.holds(d)]
            if absent:
                # scattered to us but the upload failed (or timed out): hand the run
                # back; the scheduler places it again once the input is somewhere
                logger.info("%s: inputs %s of %s never arrived; returning it",
                            self.name, absent[:3], run.key)
                if self.ledger.runs.get(run.key) is run:
                    self.ledger.steal([run.key], [run.run_id])
                return
            fetched = await store.fetch(by_holder)
        except Exception as exc:
            if self.ledger.runs.get(run.key) is not run:
                return
            handed = self._fetch_handbacks.get(run.key, 0)
            if handed < FETCH_HANDBACKS:
                # most often the holder just died and the scheduler has not heard yet:
                # hand the run back; once it knows, the input is recomputed (or moved)
                # and the run placed again. Bounded, for a holder that is alive but
                # unreachable (a firewall), which must end in WorkerLost.
                self._fetch_handbacks[run.key] = handed + 1
                logger.info("%s: fetching inputs of %s failed (%s); handing it back",
                            self.name, run.key, exc)
                # give the scheduler a moment to hear of the death first (else it may
                # place the run again with the same holder at once)
                await trio.sleep(FETCH_HANDBACK_DELAY * 2**handed)
                if self.ledger.runs.get(run.key) is run:
                    self.ledger.steal([run.key], [run.run_id])
                return
            self._fetch_handbacks.pop(run.key, None)
            logger.warning("%s: fetching inputs of %s failed: %s", self.name, run.key, exc)
            err = WorkerLost(f"could not fetch the inputs of {run.key!r}: {exc}")
            self.ledger.run_ended(run, self.erred(spec, err))
            return
        self._fetch_handbacks.pop(run.key, None)
        if self.ledger.runs.get(run.key) is run:
            self._fetched[run.key] = fetched
            self.ledger.inputs_arrived(run)



def _awaited_by(awaits: frozenset[str], depth: int, run: wcore.LocalRun) -> bool:
    """Whether a thread helping a waiting task (``depth`` deep, waiting on ``awaits``)
    may take ``run`` next: a sync run of a key it waits on, deeper in the tree
    (``RunContext.depth`` is ``-priority[1]``)."""
    return (run.key in awaits and -run.priority[1] > depth
            and wcore.thread_may_take(run))


def _cancelled_by_us(exc: BaseException) -> bool:
    """Whether ``exc`` is Trio cancelling this run (the worker stops), as opposed to
    an ending the task chose. A ``trio.Cancelled`` the task raised itself while not
    cancelled is still its own."""
    if not isinstance(exc, trio.Cancelled | BaseExceptionGroup):
        return False
    if isinstance(exc, BaseExceptionGroup):
        rest = exc.split(trio.Cancelled)[1]
        if rest is not None:
            return False
    return trio.current_effective_deadline() == float("-inf")
