"""A deterministic cluster simulator over the pure cores: one scheduler, N workers, links.

Theory of operation:

* The world is one :class:`~trioflow.core.scheduler.Scheduler`, one
  :class:`~trioflow.core.worker.WorkerState` per worker (with a mirror of its slot
  limiter: ``tokens``), a top-level client session, and FIFO *links* carrying protocol
  message objects: client -> scheduler, scheduler -> client, and both directions per
  worker. A worker's in-task client shares the worker's link, as in the real shell (a
  worker is a client peer too; its peer id is the worker id).
* The real protocol code runs, not a copy of it. Runs (:mod:`.runs`) produce their
  secede, rejoin and wait messages with ``core.session.TaskView``, the machine the real
  ``RunContext`` drives. Workers carry out ledger commands with ``core.worker.execute``,
  the real node's executor (:class:`SimWorker` is its sink), and end sync runs as the
  node does: the ending run's thread takes the best queued sync run itself when the
  ledger allows (``hand_over``, ``PassSlot``).
* Workers fold their slot reports into the message before them on their link, as a
  real worker's connection does for a scheduler that applies folds (``core.fold``):
  anything not yet delivered may carry them, so the folded and the separate streams
  are both explored (a delivery of one message leaves the next report on its own).
* Nothing happens by itself. An :class:`Action` says what happens next: a link delivers
  its next ``count`` messages (to the scheduler: as one frame), a run does its next op
  (see :mod:`.runs`), a root program is submitted, a worker joins or leaves.
  :meth:`Simulator.enabled` lists the deliveries and steps possible now; whoever drives
  the simulator (a Hypothesis schedule, a seeded random schedule, an exhaustive search)
  picks one. Given the same actions, the world is the same: the log replays exactly.
* Every frame to the scheduler can round-trip through the wire codec
  (``check_codec``), so everything the simulator sends is also encodable.
* When the scheduler's deadlock detector reports (it sends ``WaitFailed``), the
  simulator asks :mod:`.truth` whether progress was really impossible, by replaying the
  log into a world whose detector is switched off (:meth:`Simulator.blank`) and
  searching it. A report without a true deadlock raises :class:`HarnessViolation` at
  once. (:mod:`.truth` knows the world only as its ``World`` protocol, so it sits below
  this module.)

Worlds are copied with pickle (much faster than ``copy.deepcopy``), so everything here
must stay picklable: no lambdas, no closures.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import attrs

from .. import protocol as p
from ..core import worker as wcore
from ..core.events import Close, MessagesReceived, PeerJoined, PeerLeft, Send
from ..core.scheduler import Scheduler
from .ops import Op
from .program import ClusterShape, Outcome, Program
from .runs import SimRun
from .sessions import SimSession
from .truth import Detection, HarnessViolation, audit_detection, is_primitive_deadlock
from .workers import SimWorker

SCHEDULER = "scheduler"
CLIENT = "c0"

Link = tuple[str, str]


# ----------------------------------------------------------------------------- actions


@attrs.frozen
class Deliver:
    """Link ``(src, dst)`` delivers its next ``count`` messages (as one frame)."""

    src: str
    dst: str
    count: int = 1


@attrs.frozen
class Step:
    """Run ``key``/``run_id`` on ``worker`` performs its next op."""

    worker: str
    key: str
    run_id: int


@attrs.frozen
class Submit:
    """The top-level client submits ``program`` as a root task."""

    program: Program


@attrs.frozen
class AddWorker:
    """A worker with ``slots`` slots joins."""

    slots: int = 1


@attrs.frozen
class RemoveWorker:
    """A worker's connection is lost (its runs die with it)."""

    worker: str


@attrs.frozen
class Lapse:
    """``worker``'s clock ticks: the slots it keeps for seceded runs are filled now
    (``WorkerState.lapse``; the real worker's ticks come every ``KEPT_SLOT_TICK``)."""

    worker: str


Action = Deliver | Step | Submit | AddWorker | RemoveWorker | Lapse


@attrs.frozen(kw_only=True)
class SimConfig:
    """Knobs of a simulation.

    Attributes:
        check_codec: round-trip every delivered frame through ``encode_frame``/
            ``decode_frame``.
        audit: check every deadlock report against ground truth (see :mod:`.truth`).
        duration: the run duration workers report (it drives prefetch on the scheduler;
            0.0 is what fast real tasks look like).
        truth_budget: most worlds the ground-truth search may visit per report.
        placement: where children of running tasks go: ``"local"`` (the product:
            queued on the parent's worker, ``TaskPlaced``), ``"window1"`` (local, but a
            worker places only while no run is queued there, so small programs also
            take the ``SubmitTask`` fallback), or ``"scheduler"`` (every task is
            submitted to the scheduler, as before local placement).
    """

    check_codec: bool = True
    audit: bool = True
    duration: float = 0.0
    truth_budget: int = 20_000
    #: abstract resource "GPU" each worker offers (programs' ``uses="gpu"`` tasks need 1)
    gpus: int = 0
    placement: str = attrs.field(default="local")

    @placement.validator
    def _check_placement(self, attribute: Any, value: str) -> None:
        if value not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {value!r}")


#: the values of ``SimConfig.placement``
PLACEMENTS = ("local", "window1", "scheduler")


# ----------------------------------------------------------------------------- the world


class Simulator:
    """The whole simulated cluster; see the module docstring.

    Args:
        config: simulation knobs.
        scheduler: the scheduler core to drive (ground truth passes one whose detector
            is off).
    """

    def __init__(self, config: SimConfig | None = None,
                 scheduler: Scheduler | None = None) -> None:
        self.config = config or SimConfig()
        self.scheduler = scheduler if scheduler is not None else Scheduler()
        self.links: dict[Link, deque[Any]] = {}
        #: link -> log index of its latest delivery (orders ``enabled``)
        self.last_delivery: dict[Link, int] = {}
        self.workers: dict[str, SimWorker] = {}
        self.worker_counter = 0
        #: every action applied so far, in order (replaying it rebuilds this world)
        self.log: list[Action] = []
        #: root task key -> program, in submission order
        self.roots: dict[str, Program] = {}
        #: root task key -> its outcome, once the client heard of it
        self.root_outcomes: dict[str, Outcome] = {}
        #: deadlock reports, each with its ground-truth verdict (see .truth.Detection)
        self.detections: list[Detection] = []
        #: paths of tasks whose wait raised DeadlockError
        self.deadlocked_paths: set[str] = set()
        #: runs that ended anywhere (ground truth's measure of progress)
        self.runs_ended = 0
        #: highest run id seen per key, on the scheduler and per worker
        self.max_run_id: dict[tuple[str, str], int] = {}
        #: (key, run id) -> the worker that started that run: each starts once at most
        self.started: dict[tuple[str, int], str] = {}
        self.client = SimSession(CLIENT, self._link(CLIENT, SCHEDULER))
        self._link(SCHEDULER, CLIENT)
        self._scheduler_handle(PeerJoined(CLIENT, p.Hello("client", "client", list(p.SUPPORTED_VERSIONS))))

    @classmethod
    def for_shape(cls, shape: ClusterShape, config: SimConfig | None = None) -> Simulator:
        """A simulator with ``shape.workers`` workers of ``shape.slots`` slots each."""
        sim = cls(config)
        for _ in range(shape.workers):
            sim.apply(AddWorker(shape.slots))
        return sim

    def __repr__(self) -> str:
        return (f"<Simulator workers={list(self.workers)} roots={len(self.roots)} "
                f"actions={len(self.log)}>")

    # -------------------------------------------------------------- choosing

    def enabled(self, *, batches: bool = False) -> list[Action]:
        """Every delivery and step possible now: steps first, then the links, least
        recently delivered first (so always taking the first action is fair to links),
        then the ticks of workers that keep a slot free (``Lapse``).

        Args:
            batches: also offer delivering a whole scheduler-bound link as one frame.
        """
        actions: list[Action] = []
        for w in self.workers.values():
            for run in w.runs.values():
                if run.can_step(w.session):
                    actions.append(Step(w.id, run.key, run.run_id))
        busy = [link for link, q in self.links.items() if q]
        busy.sort(key=lambda link: self.last_delivery.get(link, -1))
        for src, dst in busy:
            q = self.links[(src, dst)]
            if q:
                if batches and dst == SCHEDULER and len(q) > 1:
                    actions.append(Deliver(src, dst, len(q)))
                actions.append(Deliver(src, dst, 1))
        for w in self.workers.values():
            if w.ledger.reserved:
                actions.append(Lapse(w.id))
        return actions

    def quiescent(self) -> bool:
        """Nothing can happen any more without a new submission or worker."""
        return not self.enabled()

    # -------------------------------------------------------------- applying

    def apply(self, action: Action) -> None:
        """Make ``action`` happen (and log it)."""
        self.log.append(action)
        if isinstance(action, Deliver):
            self._deliver(action)
        elif isinstance(action, Step):
            w = self.workers[action.worker]
            run = w.runs[action.key]
            assert run.run_id == action.run_id and run.can_step(w.session), (run, action)
            ended = w.ended
            run.step(w)
            self.runs_ended += w.ended - ended
            if run.error is not None and run.error.deadlocked and run.error.text == run.path:
                self.deadlocked_paths.add(run.path)
        elif isinstance(action, Submit):
            key = self.client.submit(action.program, str(len(self.roots)))
            self.roots[key] = action.program
        elif isinstance(action, AddWorker):
            self._add_worker(action.slots)
        elif isinstance(action, RemoveWorker):
            self._remove_worker(action.worker)
        elif isinstance(action, Lapse):
            self.workers[action.worker].lapse()
        else:  # pragma: no cover
            raise TypeError(f"not an action: {action!r}")
        self._note_run_ids()

    def blank(self, scheduler: Scheduler | None = None) -> Simulator:
        """A new, empty world with this one's config, never audited (ground truth
        replays into it)."""
        return Simulator(attrs.evolve(self.config, audit=False), scheduler)

    def _link(self, src: str, dst: str) -> deque[Any]:
        q: deque[Any] = deque()
        self.links[(src, dst)] = q
        return q

    def _add_worker(self, slots: int) -> str:
        self.worker_counter += 1
        wid = f"w{self.worker_counter}"
        up = self._link(wid, SCHEDULER)
        self._link(SCHEDULER, wid)
        session = SimSession(wid, up)
        placement = self.config.placement
        ledger = wcore.WorkerState(slots, 1 if placement == "window1" else None)
        worker = SimWorker(wid, slots, ledger, session, up, duration=self.config.duration)
        session.local_data = worker.data
        if placement != "scheduler":
            session.placer = worker
        self.workers[wid] = worker
        hello = p.Hello("worker", f"worker-{self.worker_counter}", list(p.SUPPORTED_VERSIONS), "", slots, f"sim://{wid}",
                        0, ["GPU"] if self.config.gpus else [],
                        [float(self.config.gpus)] if self.config.gpus else [])
        self._scheduler_handle(PeerJoined(wid, hello))
        return wid

    def _remove_worker(self, wid: str) -> None:
        del self.workers[wid]
        del self.links[(wid, SCHEDULER)]
        del self.links[(SCHEDULER, wid)]
        self._scheduler_handle(PeerLeft(wid, "simulated connection loss"))

    def _deliver(self, action: Deliver) -> None:
        q = self.links[(action.src, action.dst)]
        self.last_delivery[(action.src, action.dst)] = len(self.log)
        msgs = [q.popleft() for _ in range(min(action.count, len(q)))]
        if self.config.check_codec:
            decoded = p.decode_frame(p.encode_frame(msgs))
            if decoded != msgs:
                raise HarnessViolation(f"codec round trip changed {msgs!r} into {decoded!r}")
        if action.dst == SCHEDULER:
            out = self._scheduler_handle(MessagesReceived(action.src, msgs))
            if self.config.audit and any(
                    (type(c) is Send and type(c.message) is p.WaitFailed)
                    or is_primitive_deadlock(c) for c in out):
                audit_detection(self, out)
        elif action.dst == CLIENT:
            for msg in msgs:
                self.client.handle(msg)
                self._note_root(msg)
        else:
            worker = self.workers[action.dst]
            for msg in msgs:
                ended = worker.ended
                worker.receive(msg)
                self.runs_ended += worker.ended - ended

    def _scheduler_handle(self, event: Any) -> list[Any]:
        out = self.scheduler.handle(event)
        for cmd in out:
            if type(cmd) is Send:
                q = self.links.get((SCHEDULER, cmd.to))
                if q is not None:
                    q.append(cmd.message)
            elif type(cmd) is Close:
                raise HarnessViolation(f"the scheduler closed {cmd.to}: {cmd.reason}")
        return out

    def _note_root(self, msg: Any) -> None:
        if msg.key in self.roots and msg.key not in self.root_outcomes:
            sk = self.client.keys.get(msg.key)
            if sk is not None and sk.outcome is not None:
                self.root_outcomes[msg.key] = sk.outcome

    def _note_run_ids(self) -> None:
        """Run ids only ever increase, on the scheduler and on each worker; and each run
        (key and run id) starts once in the whole world, whoever placed it."""
        started = self.started
        for w in self.workers.values():
            for start in w.starts:
                if start in started:
                    raise HarnessViolation(f"run {start[1]} of {start[0]} started on "
                                           f"{started[start]} and again on {w.id}")
                started[start] = w.id
            w.starts.clear()
        seen = self.max_run_id
        for key, task in self.scheduler.state.tasks.items():
            _increase(seen, (SCHEDULER, key), task.run_id)
        for w in self.workers.values():
            for key, run in w.ledger.runs.items():
                _increase(seen, (w.id, key), run.run_id)

    # -------------------------------------------------------------- reading

    def runs(self) -> list[SimRun]:
        """Every started run that has not ended, on every worker."""
        return [r for w in self.workers.values() for r in w.runs.values()]

    def run_path(self, worker: str, key: str) -> str | None:
        """The program path of the run of ``key`` on ``worker``, if it executes there."""
        w = self.workers.get(worker)
        run = w.runs.get(key) if w is not None else None
        return run.path if run is not None else None

    def primitive_waiter(self, worker: str, request_id: int) -> tuple[str, int] | None:
        """The run (key, run id) on ``worker`` blocked on primitive request ``request_id``."""
        w = self.workers.get(worker)
        for run in (w.runs.values() if w is not None else ()):
            if run.prim_wait == request_id:
                return run.key, run.run_id
        return None

    def unfinished_roots(self) -> list[str]:
        return [k for k in self.roots if k not in self.root_outcomes]

    def stuck(self) -> bool:
        """Quiescent with work left: a run that never ends or a root never answered.

        In a quiescent world nothing will ever happen again, so this is a true deadlock
        (given at least one worker: with none, a joining worker would unblock it).
        """
        return self.quiescent() and bool(self.workers) and bool(
            self.runs() or self.unfinished_roots())

    def starved(self) -> bool:
        """Stuck while a run waits on a Queue ``get`` and a slot is free somewhere: a task
        submitted later could use that slot to put, so the deadlock rule (1') declines
        to report this (docs/coordination.md), and ground truth agrees that the world
        may still move. It happens when a deadlock report cancels the producers of a
        consumer already running (whatever waits behind that consumer is stuck too)."""
        if not self.stuck():
            return False
        if not any(r.prim_wait and r.ops[r.pc - 1] is Op.GET for r in self.runs()):
            return False
        return any(w.ledger.counts()["holding"] < w.nthreads for w in self.workers.values())

    def describe(self) -> str:
        """A multi-line picture of the world, for failure messages."""
        lines = [repr(self)]
        for w in self.workers.values():
            lines.append(f"  {w.id}: slots={w.nthreads} {w.ledger.counts()} tokens={sorted(w.tokens)}")
            for run in w.runs.values():
                lines.append(f"    {run!r} state={run.local.state.value} waiting={run.waiting} "
                             f"futures={run.futures}")
        for (src, dst), q in self.links.items():
            if q:
                lines.append(f"  link {src}->{dst}: {list(q)!r}")
        for key in self.unfinished_roots():
            lines.append(f"  root {key} unfinished: {self.roots[key]!r}")
        return "\n".join(lines)


def _increase(seen: dict[tuple[str, str], int], where: tuple[str, str], run_id: int) -> None:
    old = seen.get(where, 0)
    if run_id < old:
        raise HarnessViolation(f"run id of {where[1]} went back from {old} to {run_id} "
                               f"on {where[0]}")
    seen[where] = run_id


__all__ = [
    "CLIENT",
    "SCHEDULER",
    "Action",
    "AddWorker",
    "Deliver",
    "HarnessViolation",
    "Lapse",
    "Link",
    "RemoveWorker",
    "SimConfig",
    "SimWorker",
    "Simulator",
    "Step",
    "Submit",
]
