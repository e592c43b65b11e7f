"""Ground truth for deadlocks, computed without trusting trioflow's detector.

The scheduler's detector (``trioflow.core.scheduler.deadlock``) reasons over the scheduler's view
of the cluster. The harness checks it against the *world*:

* **No false positives.** When the detector reports (the scheduler sends
  ``WaitFailed``), the harness rebuilds the world as it would be had the detector
  stayed silent: it replays the simulator's action log into a fresh world whose
  scheduler is a :class:`BlindScheduler` (identical, except that its detector never
  runs). It then searches every continuation of that world — every order of every
  pending delivery and every run's next op, exhaustively and with memoisation — for one
  in which some run ends. If one exists, progress was possible and the report was false.
* **No false negatives.** A world in which nothing is enabled will never change again
  (the simulator has no clock and no timeouts), so a quiescent world that still has
  runs or unanswered roots is a true deadlock the detector missed
  (:meth:`Simulator.stuck`).

"Some run ends" is the right measure: every program is finite, so a run that cannot
end is blocked in a wait or a rejoin, and if no run anywhere can ever end, nothing can
unblock any of them.

This module sits below the simulator: it searches any :class:`World` (in practice a
:class:`~.simulate.Simulator`, which calls :func:`audit_detection` on each report) and
imports nothing of it.
"""

from __future__ import annotations

import hashlib
import pickle
from typing import Any, Protocol

import attrs

from .. import protocol as p
from ..core.events import Send
from ..core.scheduler import Scheduler


class HarnessViolation(AssertionError):
    """The simulated cluster broke a property the harness checks (a bug in the core)."""


class World(Protocol):
    """What ground truth needs of a simulated world (``simulate.Simulator``)."""

    config: Any  # a SimConfig: truth_budget bounds the search
    scheduler: Scheduler
    #: every action applied, in order (replaying it into ``blank()`` rebuilds the world)
    log: list[Any]
    #: runs that ended anywhere so far (the measure of progress)
    runs_ended: int
    detections: list[Detection]

    def blank(self, scheduler: Scheduler | None = None) -> World: ...

    def enabled(self, *, batches: bool = False) -> list[Any]: ...

    def apply(self, action: Any) -> None: ...

    def run_path(self, worker: str, key: str) -> str | None: ...

    def primitive_waiter(self, worker: str, request_id: int) -> tuple[str, int] | None: ...

    def stuck(self) -> bool: ...

    def starved(self) -> bool: ...

    def describe(self) -> str: ...


class BlindScheduler(Scheduler):
    """A ``Scheduler`` whose deadlock detector never runs.

    ``Scheduler.handle`` runs the detector (``check_deadlock``) only when
    ``deadlock_dirty`` is set; here it does nothing. Everything else (placement,
    stealing, the task lifecycle) is the real core.
    """

    def check_deadlock(self) -> None:
        pass


class GroundTruthUnknown(RuntimeError):
    """The ground-truth search ran out of budget before it could decide."""


@attrs.frozen(kw_only=True)
class Detection:
    """One deadlock report of the detector, and what ground truth says about it.

    Attributes:
        action: index in the simulator's log of the delivery that triggered it.
        victims: ``(run key, run id)`` of every run told its wait failed.
        victim_paths: the program paths of those runs.
        report: the detector's human report.
        truly_stuck: ground truth: no continuation lets any run end.
        visited: worlds the ground-truth search visited.
    """

    action: int
    victims: tuple[tuple[str, int], ...]
    victim_paths: tuple[str, ...]
    report: str
    truly_stuck: bool
    visited: int


def replay(sim: World, actions: list[Any], scheduler: Scheduler | None = None,
           *, last_blind: bool = False) -> World:
    """A fresh world built by applying ``actions`` with ``sim``'s config, without audits.

    Args:
        scheduler: the scheduler core to start from (default: a new ``Scheduler``).
        last_blind: switch the detector off just before the last action.
    """
    world = sim.blank(scheduler)
    for i, action in enumerate(actions):
        if last_blind and i == len(actions) - 1:
            world.scheduler.__class__ = BlindScheduler
        world.apply(action)
    return world


def counterfactual(sim: World) -> World:
    """``sim`` as it would be had the detector not run during its last action."""
    return replay(sim, sim.log, last_blind=True)


def can_progress(world: World, budget: int) -> tuple[bool | None, int]:
    """Whether some continuation of ``world`` lets a run end.

    Searches depth-first (steps before deliveries, so a false report is usually refuted
    in a few moves), remembering worlds already seen.

    Returns:
        ``(answer, visited)``; ``answer`` is None when ``budget`` worlds did not decide.
    """
    start = world.runs_ended
    world.log = []
    seen: set[bytes] = set()
    stack = [pickle.dumps(world, pickle.HIGHEST_PROTOCOL)]
    visited = 0
    while stack:
        blob = stack.pop()
        digest = hashlib.blake2b(blob, digest_size=16).digest()
        if digest in seen:
            continue
        seen.add(digest)
        visited += 1
        if visited > budget:
            return None, visited
        actions = pickle.loads(blob).enabled(batches=True)
        for action in reversed(actions):
            child = pickle.loads(blob)
            child.apply(action)
            if child.runs_ended > start:
                return True, visited
            child.log = []
            stack.append(pickle.dumps(child, pickle.HIGHEST_PROTOCOL))
    return False, visited


def audit_detection(sim: World, commands: list[Any]) -> Detection:
    """Check the detector's report in ``commands`` (just emitted by ``sim``'s last action).

    Raises:
        HarnessViolation: the report is false: some continuation lets a run end.
        GroundTruthUnknown: the search budget was exhausted.
    """
    victims: list[tuple[str, int]] = []
    paths: list[str] = []
    reports: list[str] = []
    for c in commands:
        if type(c) is Send and type(c.message) is p.WaitFailed:
            for key, run_id in zip(c.message.run_keys, c.message.run_ids):
                victims.append((key, run_id))
                paths.append(sim.run_path(c.to, key) or "?")
            reports.append(c.message.report)
    for c in commands:  # waits on primitives are told in their PrimitiveReply
        if is_primitive_deadlock(c):
            run = sim.primitive_waiter(c.to, c.message.request_id)
            victims.append((run[0], run[1]) if run else ("?", 0))
            paths.append(sim.run_path(c.to, run[0]) or "?" if run else "?")
            reports.append(c.message.text)
    answer, visited = can_progress(counterfactual(sim), sim.config.truth_budget)
    detection = Detection(
        action=len(sim.log) - 1,
        victims=tuple(victims),
        victim_paths=tuple(paths),
        report=reports[0],
        truly_stuck=answer is False,
        visited=visited,
    )
    sim.detections.append(detection)
    if answer is None:
        raise GroundTruthUnknown(
            f"ground truth undecided after {visited} worlds for the report:\n"
            f"{detection.report}\n{sim.describe()}")
    if answer:
        raise HarnessViolation(
            "false deadlock report: the detector fired although some run could still "
            f"end (found in {visited} worlds).\nReport:\n{detection.report}\n"
            f"World:\n{sim.describe()}\nActions: {sim.log!r}")
    return detection


def is_primitive_deadlock(command: Any) -> bool:
    """Whether ``command`` tells a primitive wait it is part of a deadlock."""
    return (type(command) is Send and type(command.message) is p.PrimitiveReply
            and command.message.status == "deadlock")


def check_no_missed_deadlock(sim: World) -> None:
    """At quiescence: nothing may be stuck (else the detector missed a true deadlock).

    Raises:
        HarnessViolation: the world is quiescent with runs blocked or roots unanswered.
    """
    if sim.stuck() and not sim.starved():
        raise HarnessViolation(
            "missed deadlock: nothing can happen any more, yet work is left and the "
            f"detector did not report.\n{sim.describe()}\nActions: {sim.log!r}")

