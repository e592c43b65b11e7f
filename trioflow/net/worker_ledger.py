"""The worker's ledger behind a lock: the one place task threads touch the slot state.

The loop feeds the ledger every event but one: a task thread whose run ended takes the
next queued run itself (``hand_over``), or passes its slot to a sync run waiting to
rejoin (``pass_to_rejoiner``). Both go through ``LockedLedger``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .. import protocol as p
from ..core import worker as wcore


class LockedLedger:
    """The worker's ``WorkerState`` behind a lock.

    Task threads call ``end_on_thread`` while the loop calls everything else, so every
    event takes the lock. The reads ``runs`` and ``holding`` take no lock and are for the
    loop: a task thread only changes the run that just ended on it and the queued or
    rejoining run it passes the slot to, never what the loop reads.
    """

    def __init__(self, state: wcore.WorkerState) -> None:
        self.state = state
        self.lock = threading.Lock()

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

    def task_assigned(self, spec: p.ComputeTask, needs_fetch: bool) -> list[Any]:
        with self.lock:
            return self.state.task_assigned(spec, needs_fetch)

    def task_placed(self, spec: p.ComputeTask, report: p.TaskPlaced) -> list[Any] | None:
        with self.lock:
            return self.state.task_placed(spec, report)

    def close(self) -> None:
        """The worker drains: nothing more is placed here."""
        with self.lock:
            self.state.closing = True

    def inputs_arrived(self, run: wcore.LocalRun) -> list[Any]:
        with self.lock:
            return self.state.inputs_arrived(run)

    def run_ended(self, run: wcore.LocalRun, report: Any) -> list[Any]:
        with self.lock:
            return self.state.run_ended(run, report)

    def hand_over(self, run: wcore.LocalRun, report: Any,
                  may_take: Callable[[wcore.LocalRun], bool],
                  ) -> tuple[wcore.LocalRun | None, list[Any]]:
        with self.lock:
            return self.state.hand_over(run, report, may_take)

    def end_on_thread(self, run: wcore.LocalRun, report: Any,
                      may_take: Callable[[wcore.LocalRun], bool],
                      may_grant: Callable[[wcore.LocalRun], bool],
                      ) -> tuple[wcore.LocalRun | None, bool, list[Any]]:
        """A task thread's run ended: under one lock, ``hand_over`` its slot to the best
        queued run, else ``pass_to_rejoiner``. Returns (the run that has the slot now,
        whether it is a rejoiner, the commands); (None, False, []) if neither."""
        with self.lock:
            state = self.state
            nxt, commands = state.hand_over(run, report, may_take)
            if nxt is not None:
                return nxt, False, commands
            nxt, commands = state.pass_to_rejoiner(run, report, may_grant)
            return nxt, nxt is not None, commands

    def secede(self, run: wcore.LocalRun) -> list[Any]:
        with self.lock:
            return self.state.secede(run)

    def rejoin(self, run: wcore.LocalRun) -> list[Any]:
        with self.lock:
            return self.state.rejoin(run)

    def steal(self, keys: list[str], run_ids: list[int]) -> list[Any]:
        with self.lock:
            return self.state.steal(keys, run_ids)

    def counts(self) -> dict[str, int]:
        with self.lock:
            return self.state.counts()

    def check(self) -> None:
        with self.lock:
            self.state.check()
