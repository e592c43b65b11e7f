"""The worker's state machine: its runs and the slot ledger. Events in, commands out.

Theory of operation:

* A worker has ``nthreads`` slots. The shell mirrors them with one
  ``trio.CapacityLimiter(nthreads)``: every ``StartRun``/``GrantRejoin`` command is
  preceded by a ledger increment and executed by ``acquire_on_behalf_of_nowait(run)``;
  every slot given back is a ``ReleaseSlot``. So ``ledger.holding`` always equals
  ``limiter.borrowed_tokens`` once commands are executed (checked by tests).
* Every transition of a LocalRun is in this file:

      FETCHING -> QUEUED -> RUNNING <-> SECEDED -> REJOINING -> RUNNING
                       \\-> (stolen back)          ... -> done (removed)

* A slot freed goes first to a run waiting to rejoin, then to the best queued run
  (scheduler priority order). Rejoiners before new work keeps recursion shallow.
* A run may also be *placed* here by one of this worker's own runs (a child submitted
  from a task, :meth:`WorkerState.task_placed`): it is queued at once as run 1 of its
  key, and the ``TaskPlaced`` that tells the scheduler comes out before any command
  that could start it, so nothing the run sends can reach the scheduler first. Placed
  runs sort before assigned ones of the same depth (their parent waits here).
* What each command means for the shell is written once, in :func:`execute`: the real
  worker and the simulator both carry commands out through it, each with its own
  :class:`CommandSink`.
"""

from __future__ import annotations

import enum
import heapq
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from .. import config
from .. import protocol as p
from ..errors import InvalidTransition
from .events import Matchable


class RunState(enum.Enum):
    FETCHING = "fetching"  # inputs are being fetched from other workers
    QUEUED = "queued"  # ready, waiting for a slot
    RUNNING = "running"  # holds a slot
    SECEDED = "seceded"  # gave its slot back, still running
    REJOINING = "rejoining"  # seceded, waiting for a slot to come back to


@attrs.define(eq=False, repr=False)
class LocalRun:
    """One run of a task on this worker. It is also the limiter's borrower object."""

    key: str
    run_id: int
    spec: p.ComputeTask
    priority: tuple[int, ...]
    state: RunState = RunState.QUEUED
    #: a free slot is kept for this (seceded) run until its next event (``kept_at``:
    #: the ledger's tick then; see ``WorkerState.secede``)
    reserving: bool = False
    kept_at: int = 0

    def __repr__(self) -> str:
        return f"<LocalRun {self.key!r}#{self.run_id} {self.state.value}>"


@attrs.frozen
class StartRun(Matchable):
    """Acquire a slot token for ``run`` and start it."""

    run: LocalRun


@attrs.frozen
class GrantRejoin(Matchable):
    """Acquire a slot token for ``run`` and wake its rejoin()."""

    run: LocalRun


@attrs.frozen
class ReleaseSlot(Matchable):
    """Give ``run``'s slot token back to the limiter."""

    run: LocalRun


@attrs.frozen
class PassSlot(Matchable):
    """``old`` ended and ``new`` started on its slot, in ``old``'s thread: the token
    changes borrower (release for ``old``, acquire for ``new``); ``new`` is running."""

    old: LocalRun
    new: LocalRun


@attrs.frozen
class FetchInputs(Matchable):
    """Fetch ``run``'s missing inputs from other workers."""

    run: LocalRun


@attrs.frozen
class SendMessage(Matchable):
    """Send ``message`` (a protocol message) to the scheduler."""

    message: Any


#: what the ledger's event methods return a list of, for the shell to execute in order
WorkerCommand = StartRun | GrantRejoin | ReleaseSlot | PassSlot | FetchInputs | SendMessage
#: how a run reports its end to the scheduler
RunReport = p.TaskFinished | p.TaskErred


class CommandSink(Protocol):
    """What a worker shell provides to carry out the ledger's commands (:func:`execute`).

    ``acquire_slot``/``release_slot`` move one token of the shell's slot limiter to or
    from a run; they must raise ``SlotAccountingError`` when the limiter disagrees.
    """

    def send_message(self, message: Any) -> None: ...

    def acquire_slot(self, run: LocalRun) -> None: ...

    def release_slot(self, run: LocalRun) -> None: ...

    def start_run(self, run: LocalRun) -> None: ...

    def wake_rejoin(self, run: LocalRun) -> None: ...

    def fetch_inputs(self, run: LocalRun) -> None: ...


def execute(commands: list[WorkerCommand], sink: CommandSink) -> None:
    """Carry out ledger ``commands`` in order through ``sink``.

    Raises:
        TypeError: a command this function does not know (a bug: fail loudly).
    """
    for cmd in commands:
        if type(cmd) is SendMessage:
            sink.send_message(cmd.message)
        elif type(cmd) is StartRun:
            sink.acquire_slot(cmd.run)
            sink.start_run(cmd.run)
        elif type(cmd) is ReleaseSlot:
            sink.release_slot(cmd.run)
        elif type(cmd) is PassSlot:  # the new run already runs on the old one's thread
            sink.release_slot(cmd.old)
            sink.acquire_slot(cmd.new)
        elif type(cmd) is GrantRejoin:
            sink.acquire_slot(cmd.run)
            sink.wake_rejoin(cmd.run)
        elif type(cmd) is FetchInputs:
            sink.fetch_inputs(cmd.run)
        else:
            raise TypeError(f"unknown ledger command {cmd!r}")


#: placed runs sort before assigned ones of the same user priority and depth: their
#: third priority element counts up from here (assigned runs use the scheduler's
#: counter, which is positive)
PLACED_BASE = -(1 << 62)


def placed_spec(msg: p.TaskPlaced, depth: int) -> p.ComputeTask:
    """The run spec of a placed child: what the scheduler's ``ComputeTask`` for it
    would say (it has no dependencies)."""
    return p.ComputeTask(msg.key, msg.run_id, msg.fn_id, msg.payload,
                         [-msg.priority, -depth, 0], [], [], [], msg.is_async)


def submit_equivalent(msg: p.TaskPlaced) -> p.SubmitTask:
    """The ``SubmitTask`` to send for a child the ledger would not place."""
    return p.SubmitTask(msg.key, msg.fn_id, msg.payload, [], msg.parent, msg.is_async,
                        msg.retries, msg.priority, [], msg.run_once)


def thread_may_take(run: LocalRun) -> bool:
    """Whether a task thread whose run ended may start ``run`` itself
    (:meth:`WorkerState.hand_over`): sync runs only, async ones run on the loop."""
    return not run.spec.is_async


def thread_may_grant(run: LocalRun) -> bool:
    """Whether a task thread whose run ended may pass its slot to the rejoining ``run``
    and wake it (:meth:`WorkerState.pass_to_rejoiner`): sync runs only (they sleep on a
    lock any thread can release; async ones await a trio.Event, loop only)."""
    return not run.spec.is_async


class WorkerState:
    """Runs and slots of one worker.

    Args:
        nthreads: number of slots.
        local_limit: most runs queued here (assigned or placed) for
            :meth:`task_placed` still to place one more; None: ``config``'s default.
    """

    def __init__(self, nthreads: int, local_limit: int | None = None) -> None:
        if nthreads < 1:
            raise ValueError(f"nthreads must be >= 1, got {nthreads}")
        self.nthreads = nthreads
        self.local_limit = (config.LOCAL_QUEUE_PER_SLOT * nthreads if local_limit is None
                            else local_limit)
        #: runs in state QUEUED (kept exact: placement reads it)
        self.queued = 0
        #: placed runs so far, numbering their priority (FIFO among equals)
        self._placed_seq = 0
        #: the worker is draining: nothing more is placed here
        self.closing = False
        #: every run this worker has, by key
        self.runs: dict[str, LocalRun] = {}
        #: runs in state QUEUED, as (priority, key); entries may be stale
        self._ready: list[tuple[tuple[int, ...], str]] = []
        #: all and only runs in state REJOINING, oldest first
        self._rejoining: deque[LocalRun] = deque()
        #: runs holding a slot (state RUNNING)
        self.holding = 0
        #: free slots kept unfilled, one for each run in ``_kept`` (``secede`` with
        #: ``reserve``, ``run_ended`` with ``reserve_for``), and the shell's clock
        #: that bounds how long (``lapse``)
        self.reserved = 0
        self._kept: list[LocalRun] = []
        self.tick = 0
        self._out: list[WorkerCommand] = []

    # ------------------------------------------------------------------ events

    def task_assigned(self, spec: p.ComputeTask, needs_fetch: bool) -> list[WorkerCommand]:
        """The scheduler sent a ComputeTask."""
        old = self.runs.get(spec.key)
        if old is not None:
            if old.run_id >= spec.run_id:
                return []  # duplicate or stale
            raise InvalidTransition(f"{spec.key!r} assigned again while {old!r} exists")
        run = LocalRun(spec.key, spec.run_id, spec, tuple(spec.priority))
        self.runs[spec.key] = run
        if needs_fetch:
            run.state = RunState.FETCHING
            self._out.append(FetchInputs(run))
        else:
            self._enqueue(run)
        return self._fill()

    def task_placed(self, spec: p.ComputeTask, report: p.TaskPlaced) -> list[WorkerCommand] | None:
        """A run here submitted a child, to be queued here as ``spec`` (run 1).

        Returns None, changing nothing, if it is not placed: the worker is draining, the
        queue is at ``local_limit``, or the key is known here (the caller then sends the
        ``SubmitTask`` instead). Otherwise the commands, ``SendMessage(report)`` first:
        the scheduler learns of the run before anything the run itself sends.
        """
        if self.closing or self.queued >= self.local_limit or spec.key in self.runs:
            return None
        self._placed_seq += 1
        prio = (spec.priority[0], spec.priority[1], PLACED_BASE + self._placed_seq)
        run = LocalRun(spec.key, spec.run_id, spec, prio)
        self.runs[spec.key] = run
        self._out.append(SendMessage(report))
        self._enqueue(run)
        return self._fill()

    def inputs_arrived(self, run: LocalRun) -> list[WorkerCommand]:
        """All inputs of a FETCHING run are here."""
        if self.runs.get(run.key) is run and run.state is RunState.FETCHING:
            self._enqueue(run)
        return self._fill()

    def run_ended(self, run: LocalRun, report: RunReport,
                  reserve_for: LocalRun | None = None) -> list[WorkerCommand]:
        """A run finished or raised; ``report`` is its TaskFinished/TaskErred.

        ``reserve_for``: a seceded run here that this end wakes (its wait is over); if
        no run waits to rejoin, the slot freed is kept for it (see ``secede``)."""
        if self.runs.get(run.key) is not run:
            raise InvalidTransition(f"{run!r} ended but is not current")
        del self.runs[run.key]
        if run.reserving:
            self._unreserve(run)
        if run.state is RunState.RUNNING:
            self.holding -= 1
            self._out.append(ReleaseSlot(run))
        elif run.state is RunState.REJOINING:
            self._rejoining.remove(run)
        elif run.state is RunState.QUEUED:
            self.queued -= 1
        # SECEDED: nothing held; FETCHING/QUEUED: it never started (inputs lost)
        self._out.append(SendMessage(report))
        if reserve_for is not None and not self._rejoining:
            self._reserve(reserve_for)
        return self._fill()

    def hand_over(
        self, run: LocalRun, report: RunReport, may_take: Callable[[LocalRun], bool]
    ) -> tuple[LocalRun | None, list[WorkerCommand]]:
        """A RUNNING ``run`` ended, and its thread could start the next run at once.

        If no run waits to rejoin (those come first) and the best queued run satisfies
        ``may_take(run)``, the slot passes to it: ``run`` is done, the next run is
        RUNNING, ``holding`` is unchanged, and the commands are ``SendMessage(report)``
        then ``PassSlot``. Otherwise nothing changes and ``(None, [])`` is returned: end
        ``run`` with ``run_ended`` as usual. Same outcome as ``run_ended`` followed by
        the ``StartRun`` its ``_fill`` would give, without a trip through the shell.
        """
        if self.runs.get(run.key) is not run or run.state is not RunState.RUNNING or self._rejoining:
            return None, []
        ready = self._ready
        while ready:
            _, key = ready[0]
            nxt = self.runs.get(key)
            if nxt is not None and nxt.state is RunState.QUEUED:
                break
            heapq.heappop(ready)  # stale entry
        else:
            return None, []
        if not may_take(nxt):
            return None, []
        heapq.heappop(ready)
        del self.runs[run.key]
        self.queued -= 1
        nxt.state = RunState.RUNNING
        self._out.append(SendMessage(report))
        self._out.append(PassSlot(run, nxt))
        return nxt, self._flush()

    def pass_to_rejoiner(
        self, run: LocalRun, report: RunReport, may_grant: Callable[[LocalRun], bool]
    ) -> tuple[LocalRun | None, list[WorkerCommand]]:
        """A RUNNING ``run`` ended on its thread while runs wait to rejoin: its slot goes
        to the first of them, if ``may_grant(it)`` (its thread can be woken from here).

        Then ``run`` is done, the rejoiner is RUNNING, ``holding`` is unchanged, and the
        commands are ``SendMessage(report)``, ``PassSlot(run, rejoiner)``,
        ``SendMessage(Rejoined)``: the messages and order of ``run_ended`` followed by
        the ``GrantRejoin`` its ``_fill`` would give; the caller wakes the rejoiner.
        Otherwise nothing changes and ``(None, [])`` is returned.
        """
        if (self.runs.get(run.key) is not run or run.state is not RunState.RUNNING
                or not self._rejoining or not may_grant(self._rejoining[0])):
            return None, []
        nxt = self._rejoining.popleft()
        del self.runs[run.key]
        nxt.state = RunState.RUNNING
        self._out.append(SendMessage(report))
        self._out.append(PassSlot(run, nxt))
        self._out.append(SendMessage(p.Rejoined(nxt.key, nxt.run_id)))
        return nxt, self._flush()

    def secede(self, run: LocalRun, reserve: bool = False) -> list[WorkerCommand]:
        """``run`` gives its slot back (secede(), worker_client(), an async wait).

        With ``reserve``, the slot stays unfilled until the run's next event
        (``unreserve``, ``rejoin``, its end): the children it is about to submit and
        wait on can then start in it, on its own thread."""
        if run.state is not RunState.RUNNING:
            raise InvalidTransition(f"cannot secede {run!r}")
        run.state = RunState.SECEDED
        self.holding -= 1
        self._out.append(ReleaseSlot(run))
        self._out.append(SendMessage(p.Seceded(run.key, run.run_id)))
        if reserve:
            self._reserve(run)
        return self._fill()

    def unreserve(self, run: LocalRun) -> list[WorkerCommand]:
        """The slot kept for ``run``, if any, is filled now (its wait began)."""
        self._unreserve(run)
        return self._fill()

    def lapse(self, everything: bool = False) -> list[WorkerCommand]:
        """The shell's clock ticked: slots kept since before the previous tick (or all,
        with ``everything``) are filled. A run that keeps a slot and then does
        something else than wait (sleeps, computes, waits on a socket) holds up the
        queued runs here for two ticks at most."""
        self.tick += 1
        if not self._kept:
            return []
        for run in [r for r in self._kept if everything or r.kept_at < self.tick - 1]:
            self._unreserve(run)
        return self._fill()

    def rejoin(self, run: LocalRun) -> list[WorkerCommand]:
        """``run`` wants a slot again; granted now if one is free, else queued first in line."""
        if run.state is not RunState.SECEDED:
            raise InvalidTransition(f"cannot rejoin {run!r}")
        if run.reserving:
            self._unreserve(run)  # (the slot kept for it: granted below)
        run.state = RunState.REJOINING
        self._rejoining.append(run)
        if self.holding >= self.nthreads:
            self._out.append(SendMessage(p.RejoinRequested(run.key, run.run_id)))
        return self._fill()

    def cancel_rejoin(self, run: LocalRun) -> list[WorkerCommand]:
        """A run waiting to rejoin steps out of the line (its thread has other work)."""
        if run.state is RunState.REJOINING:
            self._rejoining.remove(run)
            run.state = RunState.SECEDED
            return self._flush()
        if run.state is RunState.RUNNING:  # the grant came first: give the slot back
            return self.secede(run)
        raise InvalidTransition(f"cannot cancel the rejoin of {run!r}")

    def steal(self, keys: list[str], run_ids: list[int]) -> list[WorkerCommand]:
        """The scheduler wants these runs back if they have not started."""
        returned_keys: list[str] = []
        returned_ids: list[int] = []
        for key, run_id in zip(keys, run_ids):
            run = self.runs.get(key)
            if run is not None and run.run_id == run_id and run.state in (
                RunState.QUEUED,
                RunState.FETCHING,
            ):
                if run.state is RunState.QUEUED:
                    self.queued -= 1
                del self.runs[key]
                returned_keys.append(key)
                returned_ids.append(run_id)
        self._out.append(SendMessage(p.TasksReturned(returned_keys, returned_ids)))
        return self._flush()

    # ------------------------------------------------------------------ internals

    def may_keep_for(self, run: LocalRun) -> bool:
        """Whether a slot could be kept for ``run``: it is this worker's current run of
        its key, seceded, and keeps none yet."""
        return (not run.reserving and run.state is RunState.SECEDED
                and self.runs.get(run.key) is run)

    def _reserve(self, run: LocalRun) -> None:
        """Keep a free slot for the seceded ``run`` (nothing queued starts in it)."""
        if self.may_keep_for(run) and self.holding + self.reserved < self.nthreads:
            run.reserving = True
            run.kept_at = self.tick
            self.reserved += 1
            self._kept.append(run)

    def _unreserve(self, run: LocalRun) -> None:
        if run.reserving:
            run.reserving = False
            self.reserved -= 1
            self._kept.remove(run)

    def _enqueue(self, run: LocalRun) -> None:
        run.state = RunState.QUEUED
        self.queued += 1
        heapq.heappush(self._ready, (run.priority, run.key))

    def _fill(self) -> list[WorkerCommand]:
        while self.holding < self.nthreads:
            if self._rejoining:
                if self.holding + self.reserved >= self.nthreads:
                    self._unreserve(self._kept[0])  # (rejoiners first, even so)
                run = self._rejoining.popleft()
                run.state = RunState.RUNNING
                self.holding += 1
                self._out.append(GrantRejoin(run))
                self._out.append(SendMessage(p.Rejoined(run.key, run.run_id)))
                continue
            if self.holding + self.reserved >= self.nthreads:
                break
            ready = self._pop_ready()
            if ready is None:
                break
            ready.state = RunState.RUNNING
            self.holding += 1
            self._out.append(StartRun(ready))
        out, self._out = self._out, []  # (_flush, inlined: once per ledger event)
        return out

    def _pop_ready(self) -> LocalRun | None:
        while self._ready:
            _, key = heapq.heappop(self._ready)
            run = self.runs.get(key)
            if run is not None and run.state is RunState.QUEUED:
                self.queued -= 1
                return run
        return None

    def _flush(self) -> list[WorkerCommand]:
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------------ introspection

    def counts(self) -> dict[str, int]:
        """Runs by state, and slots held."""
        counts = {s.value: 0 for s in RunState}
        for run in self.runs.values():
            counts[run.state.value] += 1
        counts["holding"] = self.holding
        return counts

    def check(self) -> None:
        """Raise InvalidTransition if the ledger contradicts the runs (for tests)."""
        running = sum(1 for r in self.runs.values() if r.state is RunState.RUNNING)
        reserving = [r for r in self.runs.values() if r.reserving]
        if len(reserving) != self.reserved or any(
                r.state is not RunState.SECEDED for r in reserving):
            raise InvalidTransition(f"ledger keeps {self.reserved} slots free, for {reserving}")
        if running != self.holding or self.holding + self.reserved > self.nthreads:
            raise InvalidTransition(
                f"ledger holds {self.holding} of {self.nthreads} slots, {running} runs running"
            )
        queued = sum(1 for r in self.runs.values() if r.state is RunState.QUEUED)
        if queued != self.queued:
            raise InvalidTransition(f"ledger counts {self.queued} queued runs, {queued} are")
