"""The worker's ledger behind a lock, and the slot tokens that mirror it.

Every ledger event, on the loop or on a task thread, goes through ``LockedLedger``,
which carries out the event's commands *under the lock*: so the messages of ledger
events reach the worker's ordered stream in ledger order (``Session.send_in_order``),
and the slot tokens (``SlotTokens``) move at the event, whichever thread it is on.

Task threads apply the events of their own runs where they happen: a secede or a
rejoin, a child placed here, a run's end (with the next queued run taken on the same
thread, or the slot passed to a sync run waiting to rejoin). The loop applies the
scheduler's (assignments, steals), and an async run's events, which happen on the loop.
What only the loop may do (start an async run, wake an async rejoiner) the command
sink defers to the loop, in order (``WorkerNode``'s ``CommandSink``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import trio

from .. import protocol as p
from ..core import worker as wcore
from ..errors import SlotAccountingError


class SlotTokens:
    """The worker's slots: a ``trio.CapacityLimiter`` of ``nthreads`` tokens, each held
    by one run (``secede`` gives its token back, ``rejoin`` takes one again), mirroring
    the ledger.

    Changed only by commands carried out under the ledger's lock, on whichever thread
    the event happens (the loop, or a task thread). That is safe for a Trio object here
    because no Trio task ever waits on this limiter: its ``*_on_behalf_of`` methods only
    touch its own sets then, and wake nobody (``ParkingLot.unpark`` of an empty lot), so
    the lock alone orders them. Every integration test checks that no task waits on it
    (``tests/integration/conftest.py``). A limiter moved only on the loop could not move
    at an event applied on a task thread: a release deferred to the loop let a loop-side
    grant find no token.

    The limiter's own errors become ``SlotAccountingError``: each means the ledger and
    the tokens disagree, a bug.
    """

    __slots__ = ("limiter",)

    def __init__(self, total_tokens: int) -> None:
        self.limiter = trio.CapacityLimiter(total_tokens)

    @property
    def total_tokens(self) -> int:
        return int(self.limiter.total_tokens)

    @property
    def borrowed_tokens(self) -> int:
        return self.limiter.borrowed_tokens

    def acquire_on_behalf_of_nowait(self, borrower: Any) -> None:
        """Raises ``SlotAccountingError`` if no token is free or ``borrower`` holds one."""
        try:
            self.limiter.acquire_on_behalf_of_nowait(borrower)
        except RecursionError:
            raise  # (a RuntimeError, but not the limiter's: no accounting error)
        except (trio.WouldBlock, RuntimeError):
            raise SlotAccountingError(
                f"the ledger granted a slot to {borrower!r} but the limiter has none for it "
                f"({self.limiter.borrowed_tokens}/{self.total_tokens} borrowed)") from None

    def release_on_behalf_of(self, borrower: Any) -> None:
        """Raises ``SlotAccountingError`` if ``borrower`` holds no token."""
        try:
            self.limiter.release_on_behalf_of(borrower)
        except RecursionError:
            raise
        except RuntimeError:
            raise SlotAccountingError(f"{borrower!r} released a slot it does not hold") from None


Execute = Callable[[list[Any]], None]


class LockedLedger:
    """The worker's ``WorkerState`` behind a lock; each event's commands are carried
    out by ``execute`` while the lock is held (see the module doc).

    The reads ``runs`` and ``holding`` take no lock and are for the loop's decisions
    that a thread cannot invalidate (a thread only changes its own run, the runs it
    starts or grants, and what it places).
    """

    def __init__(self, state: wcore.WorkerState, execute: Execute | None = None) -> None:
        self.state = state
        self.lock = threading.Lock()
        self.execute: Execute = execute if execute is not None else _drop

    def __repr__(self) -> str:
        return f"<locked {self.state!r}>"

    @property
    def runs(self) -> dict[str, wcore.LocalRun]:
        """Every run of the worker, by key (loop reads; see the class doc)."""
        return self.state.runs

    @property
    def holding(self) -> int:
        """Runs holding a slot (loop reads)."""
        return self.state.holding

    def current(self, run: wcore.LocalRun, *states: wcore.RunState) -> bool:
        """Whether ``run`` is still this worker's run of its key, in one of ``states``
        (any state if none is given)."""
        return self.state.runs.get(run.key) is run and (not states or run.state in states)

    def task_assigned(self, spec: p.ComputeTask, needs_fetch: bool) -> None:
        with self.lock:
            self.execute(self.state.task_assigned(spec, needs_fetch))

    def task_placed(self, spec: p.ComputeTask, report: p.TaskPlaced) -> bool:
        """Place a child here; False (nothing changed) if the ledger declines."""
        with self.lock:
            commands = self.state.task_placed(spec, report)
            if commands is None:
                return False
            self.execute(commands)
            return True

    def close(self, then: Callable[[], None] | None = None) -> None:
        """The worker drains: nothing more is placed here. ``then()`` runs under the
        lock, so what it sends follows every placement's report."""
        with self.lock:
            self.state.closing = True
            if then is not None:
                then()

    def inputs_arrived(self, run: wcore.LocalRun) -> None:
        with self.lock:
            self.execute(self.state.inputs_arrived(run))

    def run_ended(self, run: wcore.LocalRun, report: Any,
                  reserve_for: wcore.LocalRun | None = None) -> bool:
        """End ``run`` if it is still current (its slot kept for ``reserve_for``, the
        run its end wakes, if any); whether it was."""
        with self.lock:
            if self.state.runs.get(run.key) is not run:
                return False
            self.execute(self.state.run_ended(run, report, reserve_for))
            return True

    def end_on_thread(self, run: wcore.LocalRun, report: Any,
                      may_take: Callable[[wcore.LocalRun], bool] | None,
                      may_grant: Callable[[wcore.LocalRun], bool],
                      reserve_for: wcore.LocalRun | None = None,
                      ) -> tuple[wcore.LocalRun | None, bool, bool]:
        """A task thread's run ended: under one lock, ``hand_over`` its slot to the best
        queued run (unless ``may_take`` is None: a helping thread, or the end wakes a
        seceded run here, ``reserve_for``, which keeps the slot instead), else
        ``pass_to_rejoiner``, else ``run_ended``. Returns (the run that has the slot
        now and is this thread's to go on with or to wake, whether it is a rejoiner,
        whether ``run`` was current at all)."""
        with self.lock:
            state = self.state
            if state.runs.get(run.key) is not run:
                return None, False, False
            if reserve_for is not None and not state.may_keep_for(reserve_for):
                reserve_for = None  # (nothing would be kept: hand the slot on as usual)
            if may_take is not None and reserve_for is None:
                nxt, commands = state.hand_over(run, report, may_take)
                if nxt is not None:
                    self.execute(commands)
                    return nxt, False, True
            nxt, commands = state.pass_to_rejoiner(run, report, may_grant)
            if nxt is not None:
                self.execute(commands)
                return nxt, True, True
            self.execute(state.run_ended(run, report, reserve_for))
            return None, False, True

    def secede(self, run: wcore.LocalRun, reserve: bool = False) -> None:
        """``run`` gives its slot back, if it is current and RUNNING (kept for it until
        its next event, with ``reserve``: ``WorkerState.secede``)."""
        with self.lock:
            if self.state.runs.get(run.key) is run and run.state is wcore.RunState.RUNNING:
                self.execute(self.state.secede(run, reserve))

    def unreserve(self, run: wcore.LocalRun) -> None:
        """The slot kept for ``run``, if any, is filled now."""
        with self.lock:
            if run.reserving:
                self.execute(self.state.unreserve(run))

    def lapse(self) -> None:
        """The clock ticked: slots kept too long are filled (``WorkerState.lapse``)."""
        with self.lock:
            commands = self.state.lapse()
            if commands:
                self.execute(commands)

    def rejoin(self, run: wcore.LocalRun) -> None:
        """``run`` asks for a slot back, if it is current and SECEDED."""
        with self.lock:
            if self.state.runs.get(run.key) is run and run.state is wcore.RunState.SECEDED:
                self.execute(self.state.rejoin(run))

    def steal(self, keys: list[str], run_ids: list[int]) -> None:
        with self.lock:
            self.execute(self.state.steal(keys, run_ids))

    def steal_queued(self) -> None:
        """Hand back every run that has not started (draining)."""
        with self.lock:
            queued = [r for r in self.state.runs.values()
                      if r.state in (wcore.RunState.QUEUED, wcore.RunState.FETCHING)]
            self.execute(self.state.steal([r.key for r in queued], [r.run_id for r in queued]))

    def counts(self) -> dict[str, int]:
        with self.lock:
            return self.state.counts()

    def check(self) -> None:
        with self.lock:
            self.state.check()


def _drop(commands: list[Any]) -> None:
    raise AssertionError(f"a LockedLedger without an executor got {commands!r}")
