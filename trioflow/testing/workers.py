"""A simulated worker: the ledger core, a mirror of its slot limiter, and its runs.

:class:`SimWorker` stands for ``net/worker_node.py`` and ``net/worker_runs.py``. It
carries out the ledger's commands through the real node's executor
(``core.worker.execute``; the worker is its ``CommandSink``) and ends runs the way the
node does; its runs (:mod:`.runs`) reach the ledger through it (``RunHost``).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import attrs

from .. import protocol as p
from ..core import fold
from ..core import worker as wcore
from ..errors import SlotAccountingError
from .runs import SimRun
from .sessions import SimSession


@attrs.define(eq=False)
class SimWorker:
    """One simulated worker: its ledger, slot tokens, in-task client, runs and data.

    It carries out the ledger's commands through the same executor as the real node
    (``core.worker.execute``; this class is its ``CommandSink``), and ends runs the way
    ``net/worker_runs.py`` does: a sync run ends on its thread, which takes the best
    queued sync run itself when the ledger allows (``WorkerState.hand_over``:
    ``PassSlot``), or else passes the slot to a sync run waiting to rejoin and wakes it
    (``WorkerState.pass_to_rejoiner``); otherwise, and for async runs, the ledger ends it
    (``run_ended``). Every simulated thread is at the top of its stack (nothing helps),
    so a sync run may always try to hand over.
    """

    id: str
    nthreads: int
    ledger: wcore.WorkerState
    session: SimSession
    link: deque[Any]  # worker -> scheduler
    duration: float = 0.0
    #: mirror of the slot limiter: (key, run_id) of every borrower
    tokens: set[tuple[str, int]] = attrs.Factory(set)
    #: runs that started and have not ended, by key (the shell's ``contexts``)
    runs: dict[str, SimRun] = attrs.Factory(dict)
    #: results held here
    data: dict[str, int] = attrs.Factory(dict)
    #: runs that ended here (for the simulator's bookkeeping)
    ended: int = 0
    #: runs that took over the thread of a run that ended (``PassSlot``)
    handed_over: int = 0
    #: slots a thread whose run ended passed to a sync run waiting to rejoin
    passed_to_rejoiner: int = 0
    #: (key, run id) of every run started here since the simulator last looked
    starts: list[tuple[str, int]] = attrs.Factory(list)

    def execute(self, commands: list[Any]) -> None:
        """Carry out ledger commands, like ``WorkerNode._execute``."""
        wcore.execute(commands, self)

    # -------------------------------------------------------------- CommandSink

    def send_message(self, message: Any) -> None:
        fold.append_folded(self.link, message)  # as the real worker's connection does

    def acquire_slot(self, run: wcore.LocalRun) -> None:
        token = (run.key, run.run_id)
        if len(self.tokens) >= self.nthreads or token in self.tokens:
            raise SlotAccountingError(
                f"{self.id}: the ledger granted a slot to {run!r} but the limiter has none "
                f"({len(self.tokens)}/{self.nthreads} borrowed)")
        self.tokens.add(token)

    def release_slot(self, run: wcore.LocalRun) -> None:
        token = (run.key, run.run_id)
        if token not in self.tokens:
            raise SlotAccountingError(f"{self.id}: {run!r} released a slot it does not hold")
        self.tokens.remove(token)

    def start_run(self, run: wcore.LocalRun) -> None:
        self.runs[run.key] = SimRun.start(self.id, run)
        self.starts.append((run.key, run.run_id))

    def wake_rejoin(self, run: wcore.LocalRun) -> None:
        sim_run = self.runs.get(run.key)
        if sim_run is not None and sim_run.local is run:
            sim_run.granted()

    def place_child(self, msg: p.TaskPlaced, depth: int) -> None:
        """``WorkerNode.place_child``: queue a child of a run here, or submit it."""
        commands = self.ledger.task_placed(wcore.placed_spec(msg, depth), msg)
        if commands is None:
            fold.append_folded(self.link, wcore.submit_equivalent(msg))
        else:
            self.execute(commands)

    def fetch_inputs(self, run: wcore.LocalRun) -> None:
        raise AssertionError("simulated programs have no dependencies to fetch")

    # -------------------------------------------------------------- RunHost

    def secede(self, run: wcore.LocalRun, reserve: bool = False) -> None:
        """``WorkerNode.secede_run``."""
        if self.ledger.runs.get(run.key) is run and run.state is wcore.RunState.RUNNING:
            self.execute(self.ledger.secede(run, reserve))

    def unreserve(self, run: wcore.LocalRun) -> None:
        """``WorkerNode.unreserve_run``: the run's wait begins."""
        if self.ledger.runs.get(run.key) is run:
            self.execute(self.ledger.unreserve(run))

    def lapse(self) -> None:
        """The worker's clock ticked (``WorkerNode._tick_kept_slots``): every kept slot
        is filled (a tick may come at any moment, so the simulator lapses them all)."""
        self.execute(self.ledger.lapse(everything=True))

    def _woken(self, key: str) -> wcore.LocalRun | None:
        """``RunExecutor._woken`` and ``LockedLedger.end_on_thread``'s check: the sync
        run here whose wait ``key``'s end completes, if a slot would be kept for it
        (current, seceded, keeping none yet)."""
        for sim_run in self.runs.values():
            local = sim_run.local
            if (not sim_run.program.is_async and sim_run.view.waiting
                    and sim_run.wait_failure is None
                    and self.session.pending(sim_run.futures) == [key]
                    and self.ledger.may_keep_for(local)):
                return local
        return None

    def rejoin(self, run: wcore.LocalRun) -> None:
        """``WorkerNode.rejoin_run``: the grant reaches the run through ``wake_rejoin``."""
        if self.ledger.runs.get(run.key) is run and run.state is wcore.RunState.SECEDED:
            self.execute(self.ledger.rejoin(run))

    def run_done(self, run: SimRun, value: int | None, report: Any) -> None:
        """A run returned or raised (``RunExecutor._run_one_sync``/``_run_async``)."""
        woken = self._woken(run.key) if value is not None else None
        if not run.program.is_async:
            nxt, commands = (self.ledger.hand_over(run.local, report, wcore.thread_may_take)
                             if woken is None else (None, []))
            if nxt is not None:
                # the thread goes on with the next run (_hand_over), then the loop learns
                # of both in order (_handed_over): the old run ended, its slot passed
                self.runs[nxt.key] = SimRun.start(self.id, nxt)
                self.starts.append((nxt.key, nxt.run_id))
                self.handed_over += 1
                self._ended(run, value)
                self.execute(commands)
                if value is not None:
                    self.session.finished_here(report)
                return
            nxt, commands = self.ledger.pass_to_rejoiner(run.local, report,
                                                         wcore.thread_may_grant)
            if nxt is not None:
                # the slot goes to a sync run waiting to rejoin, which the thread wakes
                # itself (_passed); the loop learns of both in order (_handed_over)
                self.passed_to_rejoiner += 1
                self._ended(run, value)
                self.execute(commands)
                if value is not None:
                    self.session.finished_here(report)
                rejoiner = self.runs.get(nxt.key)
                if rejoiner is not None and rejoiner.local is nxt:
                    rejoiner.granted()
                return
        self._ended(run, value)
        if self.ledger.runs.get(run.key) is run.local:
            self.execute(self.ledger.run_ended(run.local, report, woken))
            if value is not None:
                # a task here waiting on this one wakes now (Session.finished_here); the
                # scheduler still sees TaskFinished before what the waiter does next
                self.session.finished_here(report)

    def _ended(self, run: SimRun, value: int | None) -> None:
        """Bookkeeping of a run that returned or raised (``RunExecutor._ended``)."""
        if value is not None:
            self.data[run.key] = value
        if self.runs.get(run.key) is run:
            del self.runs[run.key]
        self.ended += 1

    # -------------------------------------------------------------- messages

    def receive(self, msg: Any) -> None:
        """One message from the scheduler, as ``WorkerNode._read`` dispatches it."""
        t = type(msg)
        if t is p.ComputeTask:
            self.execute(self.ledger.task_assigned(msg, False))
        elif t is p.StealTasks:
            self.execute(self.ledger.steal(msg.keys, msg.run_ids))
        elif t is p.FreeKeys:
            for key in msg.keys:
                self.data.pop(key, None)
        elif t is p.WaitFailed:
            for key, run_id in zip(msg.run_keys, msg.run_ids):
                run = self.runs.get(key)
                if run is not None and run.run_id == run_id and run.waiting:
                    run.wait_failure = msg.report
        elif t in (p.Function, p.ExpectData):
            pass  # functions are data here; scattered values are not used by programs
        else:
            self.session.handle(msg)
