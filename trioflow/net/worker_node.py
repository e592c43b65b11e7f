"""The worker's Trio shell: scheduler connection, slots, task runs, data for peers.

Theory of operation:

* One Trio task reads the scheduler connection and feeds ``WorkerState`` (the ledger)
  what the scheduler says; a run's own events (secede, rejoin, a child placed, its
  end) reach the ledger on the run's thread (the loop for async runs), where they
  happen. The ledger sits behind a lock (``LockedLedger``) and its commands are carried
  out here (this class is their ``CommandSink``) under that lock, on whichever thread:
  messages go out in ledger order (``Session.send_in_order``), slot tokens move at once,
  sync runs start on a task thread at once; what only the loop may do (start an async
  run, wake an async rejoiner, fetch inputs) goes to the loop in order. An unknown
  command is a bug and raises. So a child placed by a task thread starts on an idle
  thread, and a parent whose child ended wakes on that child's thread, without a loop
  round trip; the loop only does I/O for them.
* Slots are a ``trio.CapacityLimiter(nthreads)`` (in ``SlotTokens``, the ledger's mirror,
  checked by tests) moved under the ledger's lock on any thread; each run
  is its own borrower, so a run gives back exactly its own token.
* Runs execute in a ``RunExecutor`` (``worker_runs.py``): sync tasks on
  ``SlotThreads``, ``async def`` tasks as Trio tasks here, giving their slot back
  whenever they await futures.
* The node is the runs' ``HostWorker`` (``engine/protocols.py``): their secede and
  rejoin reach the ledger through ``secede_run`` and ``rejoin_run``.
* The same connection serves the worker's in-task clients (``self.session``): a task
  submitting children or waiting on them costs no new connection.
* Results stay here; small ones (pickled) also travel inline to the scheduler.

Cancellation: cancelling ``serve`` stops reading, cancels async runs, and closes the
connection; threads still running sync tasks are daemons and die with the process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import threading
from collections.abc import Callable, Mapping
from typing import Any

import trio
from trio_websocket import ConnectionClosed

from .. import config
from .. import protocol as p
from ..core import fold, resource_spec
from ..core import worker as wcore
from ..engine.protocols import Wakeup
from ..engine.session import Session
from ..errors import ClientClosedError, DeadlockError, RemoteProtocolError
from . import handshake
from .connection import PeerConnection, open_connection
from .slots import SlotThreads
from .worker_data import DataStore
from .worker_ledger import LockedLedger, SlotTokens
from .worker_plugins import PluginWorker, WorkerPlugins
from .worker_runs import RunExecutor
from .worker_threads import report_threads

logger = logging.getLogger(__name__)


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
        memory_limit: bytes; above its fractions values spill to ``local_directory``,
            runs pause, and ``on_memory_terminate`` is called (``net/memory.py``).
        on_restart: called when the scheduler restarts the cluster (``Client.restart``):
            a worker run by a nanny exits there with ``config.EXIT_RESTART``. None: the
            worker cannot be restarted (the scheduler refuses restarts).
    """

    def __init__(
        self,
        scheduler_address: str,
        *,
        nthreads: int = 1,
        name: str | None = None,
        token: str | None = None,
        max_parked_threads: int = config.MAX_PARKED_THREADS,
        auto_secede: bool = False,
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
        data_ssl_context: ssl.SSLContext | None = None,
        inline_limit: int = config.INLINE_LIMIT,
        max_message_size: int = config.MAX_MESSAGE_SIZE,
        peer_timeout: float = config.PEER_TIMEOUT,
        memory_limit: int | None = None,
        local_directory: str | None = None,
        on_memory_terminate: Callable[[], None] | None = None,
        resources: Mapping[str, float] | None = None,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        self.on_restart = on_restart
        #: abstract resources offered (``--resources "GPU=2"``); checked here, at the call
        self.resources = resource_spec.check_resources(resources)
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
        self.ledger = LockedLedger(wcore.WorkerState(nthreads), self._execute)
        self.limiter: SlotTokens | None = None
        self.threads = SlotThreads(nthreads + max_parked_threads, name=f"trioflow-{self.name}")
        #: results and scattered values held here, and the bulk data path
        self.store = DataStore(name=self.name, token=token, ssl_context=ssl_context,
                               data_ssl_context=data_ssl_context,
                               idle_timeout=max(2 * peer_timeout, 10.0),
                               on_never_arrived=self._never_arrived,
                               memory_limit=memory_limit, local_directory=local_directory,
                               on_memory_terminate=on_memory_terminate,
                               notify=self._notify)
        self.data = self.store.data  # values by key
        #: ``Client.register_plugin``'s plugins; runs wait at its gate while one sets up
        self.plugins = WorkerPlugins(self._as_plugins_see_it)
        self.runs = RunExecutor(name=self.name, host=self, ledger=self.ledger,
                                threads=self.threads, store=self.store,
                                call_on_loop=self.call_on_loop, inline_limit=inline_limit,
                                plugins=self.plugins)
        self.session: Session | None = None
        self.conn: PeerConnection | None = None
        self.peer_id = ""
        self.data_address = ""
        self._nursery: trio.Nursery | None = None
        #: ``serve`` has ended: nothing starts any more (late thread callbacks included)
        self._stopped = False
        self._token: trio.lowlevel.TrioToken | None = None
        self._loop_thread = 0
        self._idle = trio.Event()
        #: set while ``_tick_kept_slots`` is parked (the worker had no runs)
        self._ticks_parked: trio.Event | None = None
        #: tasks in ``wait_idle`` now: only for them does a run's end wake the loop
        self._idle_waiters = 0

    def __repr__(self) -> str:
        return f"<WorkerNode {self.name!r} {self.ledger.counts()}>"

    # ------------------------------------------------------------------ lifecycle

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until the scheduler connection closes or this is cancelled."""
        self.limiter = SlotTokens(self.nthreads)
        self._token = trio.lowlevel.current_trio_token()
        self._loop_thread = threading.get_ident()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.data_address = await nursery.start(self.store.serve, self.host)
                await self._connect_and_run(task_status)
                nursery.cancel_scope.cancel()
        finally:
            if self.plugins.installed:  # (their teardowns run even when cancelled)
                with trio.CancelScope(shield=True), trio.move_on_after(
                        config.PLUGIN_TEARDOWN_TIMEOUT):
                    await self.plugins.teardown_all()
            # from here on no run may start: thread runs that finish now still call back
            # to the loop, and the ledger would start queued runs in a closed nursery
            self._stopped = True
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
                endpoint = conn.ws.local
                local = endpoint if isinstance(endpoint, str) else endpoint.address
                shown = f"[{local}]" if ":" in str(local) else local
                self.data_address = f"{scheme}://{shown}:{port}"
            conn.send(handshake.hello("worker", self.name, self.token, nthreads=self.nthreads,
                                      data_address=self.data_address,
                                      resources=self.resources,
                                      restartable=self.on_restart is not None))
            await conn.flush()
            welcome = await handshake.expect_welcome(conn)
            self.conn = conn
            conn.linger = self._linger
            if welcome.folds_slot_reports:
                conn.fold = fold.fold
            conn.silence_timeout = self.peer_timeout
            self.peer_id = welcome.peer_id
            self.session = Session(conn, welcome.peer_id, worker=self,
                                   scheduler_id=welcome.scheduler_id)
            assert self._nursery is not None
            self.session.start(self._nursery, self.store.pool, welcome.inline_limit)
            self.runs.attach(self.session, self._nursery)
            logger.info("worker %s joined %s as %s with %d slot(s)", self.name,
                        self.scheduler_address, self.peer_id, self.nthreads)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(conn.run_writer)
                nursery.start_soon(conn.run_heartbeats)
                nursery.start_soon(report_threads, self.threads, conn)  # for the dashboard
                nursery.start_soon(self._tick_kept_slots)
                task_status.started()
                try:
                    await self._read(conn)
                finally:
                    nursery.cancel_scope.cancel()
        logger.info("worker %s: scheduler connection closed", self.name)

    async def _tick_kept_slots(self) -> None:
        """The clock of the slots kept free for seceded runs (``WorkerState.lapse``):
        a tick every ``KEPT_SLOT_TICK`` seconds while the worker has runs; parked while
        it has none (an assignment wakes it: a placed run needs a run here first).

        Cancellation: ends with the connection's nursery."""
        ledger = self.ledger
        while True:
            if not ledger.runs:
                self._ticks_parked = trio.Event()
                await self._ticks_parked.wait()
            await trio.sleep(config.KEPT_SLOT_TICK)
            ledger.lapse()

    def _wake_ticks(self) -> None:
        parked, self._ticks_parked = self._ticks_parked, None
        if parked is not None:
            parked.set()

    async def _read(self, conn: PeerConnection) -> None:
        handlers: dict[type, Callable[[Any], None]] = {
            p.ComputeTask: self._compute_task,
            p.Function: self.runs.add_function,
            p.StealTasks: lambda m: self.ledger.steal(m.keys, m.run_ids),
            p.FreeKeys: self._free_keys,
            p.ExpectData: lambda m: self.store.expect(m.keys),
            p.FetchReplicas: self._fetch_replicas,
            p.RestartWorker: self._restart,
            p.WaitFailed: self._wait_failed,
            p.InstallPlugin: lambda m: self._install_plugin(conn, m),
            p.RemovePlugin: self._remove_plugin,
        }
        session = self.session
        assert session is not None
        while True:
            try:
                # the heartbeat task drops a scheduler silent for peer_timeout (a
                # timeout here would cost a cancel scope per frame)
                messages = await conn.receive()
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

    # ------------------------------------------------------------------ plugins

    def _as_plugins_see_it(self) -> PluginWorker:
        return PluginWorker(self.name, self.peer_id, self.nthreads, self.data_address)

    def _install_plugin(self, conn: PeerConnection, msg: p.InstallPlugin) -> None:
        assert self._nursery is not None
        self.plugins.install(self._nursery, msg, conn.send)

    def _remove_plugin(self, msg: p.RemovePlugin) -> None:
        assert self._nursery is not None
        self.plugins.remove(self._nursery, msg.name)

    # ------------------------------------------------------------------ loop-side helpers

    def call_on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the worker's loop: now if we are on it, else soon."""
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            assert self._token is not None
            self._token.run_sync_soon(fn, *args)

    async def drain(self, grace: float = config.DRAIN_TIMEOUT) -> None:
        """Stop taking work, hand queued runs back, let running ones finish (``grace`` s).

        Cancellation: whatever still runs is abandoned; the scheduler re-runs it.
        """
        if self.conn is None:
            return
        self.runs.closing = True
        # (under the ledger's lock: after every TaskPlaced a task thread sent before)
        self.ledger.close(then=lambda: self.send_message(p.WorkerClosing()))
        self.ledger.steal_queued()  # (task threads may take queued runs meanwhile)
        with trio.move_on_after(grace):
            await self.wait_idle()
        await self.conn.flush()

    async def wait_idle(self) -> None:
        """Return once this worker has no runs at all (for tests and draining)."""
        # (counted before the runs are read: a thread ending the last run reads the
        # count after emptying them, so one of the two sees the other)
        self._idle_waiters += 1
        try:
            while self.ledger.runs:
                await self._idle.wait()
        finally:
            self._idle_waiters -= 1

    def _execute(self, commands: list[Any]) -> None:
        """Carry out ledger commands (``LockedLedger`` calls this under its lock, on the
        thread of the event).

        A command that raises leaves the ledger and the slot tokens out of step for
        good (the event has changed the ledger already): the worker must stop. On the
        loop the exception does that itself; on a task thread, where it would only
        end the thread's job, it is handed to the loop and raised there."""
        on_loop = threading.get_ident() == self._loop_thread
        # (the state's own dict: this runs per event; and a task thread wakes the loop
        # for it only when someone waits: a worker going idle after each task would
        # otherwise pay a loop wake-up per task, after its result)
        if self._idle_waiters and not self.ledger.state.runs:
            if on_loop:
                self._set_idle()
            else:
                self._on_loop(self._set_idle)
        try:
            wcore.execute(commands, self)
        except BaseException as exc:
            if not on_loop:
                self._on_loop(self._broken, exc)
            raise

    def _broken(self, exc: BaseException) -> None:
        """A ledger event's commands failed on a task thread (see ``_execute``): stop
        the worker with that error (its runs are requeued elsewhere by the scheduler,
        a nanny starts a new worker)."""
        if self._stopped or self._nursery is None:
            return
        logger.critical("worker %s: a ledger event failed on a task thread; stopping",
                        self.name, exc_info=exc)
        self._stopped = True  # (nothing starts any more; later failures are its echoes)
        with contextlib.suppress(RuntimeError):  # (the nursery is closing already)
            self._nursery.start_soon(_raise, exc)

    def _set_idle(self) -> None:
        if not self.ledger.runs and not self._idle.is_set():
            self._idle.set()
            self._idle = trio.Event()

    def _on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop behind everything sent so far (from a task
        thread carrying out commands); dropped once the worker has stopped."""
        session = self.session
        try:
            if session is not None and session.closed is None:
                session.call_in_order(fn, *args)
            elif self._token is not None:
                self._token.run_sync_soon(fn, *args)
        except (trio.RunFinishedError, ClientClosedError):
            pass  # the worker stopped: nobody is left to do it for

    # ------------------------------------------------------------------ CommandSink (any thread)

    def send_message(self, message: Any) -> None:
        session = self.session
        if session is not None:
            session.send_in_order(message)
        elif self.conn is not None:
            self.conn.send(message)

    def acquire_slot(self, run: wcore.LocalRun) -> None:
        assert self.limiter is not None
        self.limiter.acquire_on_behalf_of_nowait(run)

    def release_slot(self, run: wcore.LocalRun) -> None:
        assert self.limiter is not None
        self.limiter.release_on_behalf_of(run)

    def start_run(self, run: wcore.LocalRun) -> None:
        if self._stopped:
            return
        if run.spec.is_async and threading.get_ident() != self._loop_thread:
            self._on_loop(self._start_async, run)  # a Trio task: started on the loop
        else:
            self.runs.start(run)

    def _start_async(self, run: wcore.LocalRun) -> None:
        if not self._stopped and self.ledger.current(run, wcore.RunState.RUNNING,
                                                     wcore.RunState.SECEDED,
                                                     wcore.RunState.REJOINING):
            self.runs.start(run)

    def wake_rejoin(self, run: wcore.LocalRun) -> None:
        ctx = self.runs.contexts.get(run.key)
        if ctx is None or ctx.rejoin_event is None:
            return
        if run.spec.is_async and threading.get_ident() != self._loop_thread:
            self._on_loop(ctx.rejoin_event.set)  # (an async run's grant: loop only)
        else:
            ctx.rejoin_event.set()

    def fetch_inputs(self, run: wcore.LocalRun) -> None:
        if self._stopped:
            return
        if threading.get_ident() != self._loop_thread:  # (the loop's events only, today)
            self._on_loop(self.fetch_inputs, run)
            return
        assert self._nursery is not None
        try:
            self._nursery.start_soon(self.runs.fetch_inputs, run)
        except RuntimeError:  # closed to new arrivals: see RunExecutor.start
            pass

    def _restart(self, msg: p.RestartWorker) -> None:
        logger.warning("worker %s: restarting (the cluster is restarted)", self.name)
        if self.on_restart is not None:
            self.on_restart()

    def _fetch_replicas(self, msg: p.FetchReplicas) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(self._copy_replicas, msg)

    async def _copy_replicas(self, msg: p.FetchReplicas) -> None:
        """Make the copies the scheduler asked for, then say which exist."""
        held, failed = await self.store.replicate(msg.keys, msg.holders)
        self.send_message(p.ReplicasFetched(held, failed))

    def _linger(self) -> bool:
        """More results are microseconds away: worth holding the frame for them. So are
        more reports while runs are queued here (children placed here start as soon as
        a slot frees, and nothing they report is awaited by the scheduler)."""
        return self.runs.short_running > 0 or self.ledger.state.queued > 0

    # ------------------------------------------------------------------ HostWorker

    def secede_run(self, run: wcore.LocalRun, reserve: bool = False) -> None:
        """``run`` gives its slot back (on its own thread, or the loop for async runs,
        after what it posted before); kept for it until its next event, with
        ``reserve`` (``WorkerState.secede``)."""
        self.runs.seceding(run)
        self.ledger.secede(run, reserve)

    def unreserve_run(self, run: wcore.LocalRun) -> None:
        """The slot kept for ``run``, if any, is filled now (its wait begins)."""
        self.ledger.unreserve(run)

    def rejoin_run(self, run: wcore.LocalRun, wakeup: Wakeup) -> None:
        """``run`` asks for a slot back; ``wakeup.set()`` is called when it has one,
        in this call if a slot is free (on the run's own thread, or the loop)."""
        ctx = self.runs.contexts.get(run.key)
        if ctx is not None:
            ctx.rejoin_event = wakeup  # (before the ledger may grant: wake_rejoin reads it)
        self.ledger.rejoin(run)

    def place_child(self, msg: p.TaskPlaced, depth: int, fn_blob: bytes) -> None:
        """A run here submitted a child: queue it here as run 1 and report it, or send
        the ``SubmitTask`` instead when the ledger declines (draining, queue full).

        On the submitting run's thread (the loop for async runs), after what it posted
        before: the ``TaskPlaced`` goes out before anything the child or the parent
        sends next, and the child starts at once if a slot is free.
        """
        self.runs.fn_blobs.setdefault(msg.fn_id, fn_blob)
        if self.runs.closing or not self.ledger.task_placed(wcore.placed_spec(msg, depth), msg):
            self.send_message(wcore.submit_equivalent(msg))

    # ------------------------------------------------------------------ messages

    def _compute_task(self, msg: p.ComputeTask) -> None:
        if self.runs.closing:  # assigned before the scheduler saw WorkerClosing: hand it back
            self.send_message(p.TasksReturned([msg.key], [msg.run_id]))
            return
        store = self.store
        needs_fetch = any(
            (holder and not store.holds(dep)) or dep in store.arriving
            for dep, holder in zip(msg.deps, msg.dep_holders)
        )
        self.ledger.task_assigned(msg, needs_fetch)
        if self._ticks_parked is not None:
            self._wake_ticks()


    def _notify(self, msg: Any) -> None:
        """A message from the data store for the scheduler (dropped if disconnected)."""
        if self.conn is not None:
            self.conn.send(msg)

    def _never_arrived(self, key: str) -> None:
        if self.conn is not None:
            self.conn.send(p.ScatterFailed(key, self.data_address, "its upload never arrived "
                                           "(the client that scattered it may have left)"))

    def _free_keys(self, msg: p.FreeKeys) -> None:
        self.store.free(msg.keys)

    async def wait_for_data(self, predicate: Callable[[dict[str, Any]], bool]) -> None:
        """Return once ``predicate(self.data)`` holds, re-checked whenever results are
        freed (for tests and tools: no polling)."""
        await self.store.wait_for(predicate)

    def _wait_failed(self, msg: p.WaitFailed) -> None:
        # every victim here in one loop step: none can be woken by another's end before
        # its own failure (see p.WaitFailed)
        for key, run_id in zip(msg.run_keys, msg.run_ids):
            ctx = self.runs.contexts.get(key)
            if ctx is not None and ctx.run.run_id == run_id:
                ctx.fail_wait(DeadlockError(msg.report))

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


async def _raise(exc: BaseException) -> None:
    """Raise ``exc`` in a task of the worker's nursery, which then stops (``_broken``)."""
    raise exc

