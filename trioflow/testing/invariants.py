"""Invariants of a simulated cluster, checked after every action.

Each machine's own invariants are checked by :mod:`trioflow.core.validate`; this
module adds what only the whole simulated cluster can compare.

Three views of each worker's slots must agree:

1. the worker's ledger (``WorkerState``): ``holding`` == its RUNNING runs <= ``nthreads``;
2. the mirror of its slot limiter (``SimWorker.tokens``): exactly the RUNNING runs;
3. the scheduler's ``WorkerRecord``: ``occupying`` counts the worker's non-seceded runs,
   ``blocked`` those of them blocked in a wait. These lag behind the worker by the
   messages in flight, so they are compared only when both of the worker's links are
   empty ("drained").

And every task is in exactly one place: at most one worker runs it, the scheduler's
records point at the worker that has it, and (once drained) a worker's ledger holds
exactly the runs the scheduler gave it, with the same run ids.

The scheduler is the authority of record even for children a worker placed on itself:
every run in a worker's ledger is the scheduler's current run of its key on that
worker, or its ``TaskPlaced`` is still on the worker's link (``check_on_record``).
(That each run starts once in the world is checked by the simulator after every
action.)
"""

from __future__ import annotations

from typing import Any, NoReturn

from .. import protocol as p
from ..core import worker as wcore
from ..core.validate import check_scheduler, check_worker
from ..errors import InvalidTransition
from .simulate import SCHEDULER, Simulator
from .truth import HarnessViolation
from .workers import SimWorker

_STARTED = (wcore.RunState.RUNNING, wcore.RunState.SECEDED, wcore.RunState.REJOINING)
_SECEDED = (wcore.RunState.SECEDED, wcore.RunState.REJOINING)


def check_invariants(sim: Simulator) -> None:
    """Raise ``HarnessViolation`` if any invariant of the module docstring is broken."""
    for worker in sim.workers.values():
        check_worker_slots(worker)
    check_scheduler_records(sim)
    check_one_place(sim)
    check_on_record(sim)
    for worker in sim.workers.values():
        if is_drained(sim, worker.id):
            check_drained_view(sim, worker)


def _fail(message: str) -> NoReturn:
    raise HarnessViolation(message)


def is_drained(sim: Simulator, worker_id: str) -> bool:
    """Both links between ``worker_id`` and the scheduler are empty."""
    return not sim.links[(worker_id, SCHEDULER)] and not sim.links[(SCHEDULER, worker_id)]


def check_worker_slots(worker: SimWorker) -> None:
    """Ledger (``core.validate``), limiter mirror and the runs' own view of secession agree."""
    ledger = worker.ledger
    try:
        check_worker(ledger)
    except InvalidTransition as exc:
        _fail(f"{worker.id}: {exc}")
    running = {(k, r.run_id) for k, r in ledger.runs.items() if r.state is wcore.RunState.RUNNING}
    if worker.tokens != running:
        _fail(f"{worker.id}: limiter borrowers {sorted(worker.tokens)} != running runs "
              f"{sorted(running)}")
    for key, run in worker.runs.items():
        local = ledger.runs.get(key)
        if local is not run.local or local.state not in _STARTED:
            _fail(f"{worker.id}: {run!r} executes but the ledger has {local!r}")
        if run.seceded != (local.state in _SECEDED):
            _fail(f"{worker.id}: {run!r} believes seceded={run.seceded} but the ledger "
                  f"says {local.state.value}")
    for key, local in ledger.runs.items():
        if local.state in _STARTED and key not in worker.runs:
            _fail(f"{worker.id}: the ledger's {local!r} started but nothing executes it")


def check_scheduler_records(sim: Simulator) -> None:
    """The scheduler's counters agree with its own records (``core.validate``)."""
    try:
        check_scheduler(sim.scheduler.state)
    except InvalidTransition as exc:
        _fail(str(exc))


def check_one_place(sim: Simulator) -> None:
    """No task executes twice at once; every started run is the scheduler's current one
    or one the scheduler has not heard the end of."""
    where: dict[str, str] = {}
    for w in sim.workers.values():
        for key in w.runs:
            if key in where:
                _fail(f"{key} executes on {where[key]} and on {w.id} at once")
            where[key] = w.id


def _blocked_on_primitive(run: Any, worker: SimWorker) -> bool:
    wait = run.prim_wait or run.resources_wait
    return bool(wait) and wait not in worker.session.replies


def check_on_record(sim: Simulator) -> None:
    """Every run a worker has is on the scheduler's record, or about to be: the
    scheduler's current run of its key is that run on that worker, or the worker's
    ``TaskPlaced`` for it is in flight."""
    tasks = sim.scheduler.state.tasks
    for w in sim.workers.values():
        in_flight = {m.key for m in sim.links[(w.id, SCHEDULER)] if type(m) is p.TaskPlaced}
        for key, local in w.ledger.runs.items():
            task = tasks.get(key)
            if task is not None and task.worker == w.id and task.run_id == local.run_id:
                continue
            if key in in_flight and local.run_id == 1:
                continue
            _fail(f"{w.id} has {local!r}, which the scheduler does not record there "
                  f"(its record: {task!r}) and whose placement is not in flight")


def check_drained_view(sim: Simulator, worker: SimWorker) -> None:
    """With nothing in flight, the scheduler's record of a worker equals the worker."""
    record = sim.scheduler.state.workers.get(worker.id)
    if record is None:
        _fail(f"{worker.id} is connected but the scheduler has no record of it")
        return
    ledger = worker.ledger
    ours = {k: r.run_id for k, r in ledger.runs.items()}
    theirs = {k: t.run_id for k, t in record.processing.items()}
    if ours != theirs:
        _fail(f"{worker.id} drained: the ledger has runs {ours}, the scheduler {theirs}")
    occupying = sum(1 for r in ledger.runs.values() if r.state not in _SECEDED)
    blocked = sum(1 for r in worker.runs.values()
                  if not r.seceded and (r.blocked_in_wait(worker.session)
                                        or _blocked_on_primitive(r, worker)))
    if (record.occupying, record.blocked) != (occupying, blocked):
        _fail(f"{worker.id} drained: scheduler says occupying={record.occupying} "
              f"blocked={record.blocked}, the worker has {occupying} non-seceded runs, "
              f"{blocked} of them blocked")
    for key, local in ledger.runs.items():
        task = record.processing[key]
        if task.seceded != (local.state in _SECEDED):
            _fail(f"{worker.id} drained: {task!r} seceded={task.seceded}, ledger {local!r}")
        if task.rejoin_pending != (local.state is wcore.RunState.REJOINING):
            _fail(f"{worker.id} drained: {task!r} rejoin_pending={task.rejoin_pending}, "
                  f"ledger {local!r}")
        run = worker.runs.get(key)
        pending = set(worker.session.pending(run.futures)) if run and run.waiting and \
            run.wait_failure is None else set()
        marked = {k for k in task.blocked_on or () if k.startswith("\x00")}
        if bool(marked) != (run is not None and _blocked_on_primitive(run, worker)):
            _fail(f"{worker.id} drained: the scheduler thinks {key} waits on a primitive: "
                  f"{bool(marked)}; the run: {run!r}")
        if (task.blocked_on or set()) - marked != pending:
            _fail(f"{worker.id} drained: the scheduler thinks {key} waits on "
                  f"{sorted(task.blocked_on or ())}, the run waits on {sorted(pending)}")
