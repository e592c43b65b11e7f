"""Schedules: who decides what the simulated cluster does next, and running to the end.

A *chooser* picks one action among :meth:`Simulator.enabled` ones. Three kinds:

* :class:`Schedule` — a script of choice indices (what Hypothesis draws and shrinks; an
  empty script is the canonical schedule), then the canonical order;
* :func:`random_chooser` — seeded, uniformly random among enabled actions;
* :data:`CANONICAL` / :func:`lazy_threads` — fixed policies: task threads run until
  they block before anything is delivered (what a fast task looks like), or messages
  are delivered before threads move (what a slow task looks like; fair: a thread moves
  after a bounded number of deliveries).

:func:`reachable_outcomes` explores every schedule of one small program exactly.

:func:`simulate_program` checks the property every program must have, whatever the schedule:
it ends (every root answered, nothing stuck), every deadlock report is a true deadlock
(audited as it happens, see :mod:`.truth`), no true deadlock goes unreported, exactly the
runs the detector named raise ``DeadlockError`` from their wait, the root's
outcome is what the program semantics predict given which waits failed, and programs
whose waits all give their slot back never deadlock at all.
"""

from __future__ import annotations

import hashlib
import pickle
import random
from collections.abc import Callable, Sequence

import attrs

from .invariants import check_invariants
from .program import ClusterShape, Outcome, Program, expected_outcome
from .simulate import Action, Deliver, SimConfig, Simulator, Submit
from .truth import Detection, HarnessViolation, check_no_missed_deadlock

Chooser = Callable[[Simulator, list[Action]], Action]

#: most actions a simulation may take before it is declared livelocked
DEFAULT_MAX_ACTIONS = 20_000


def canonical(sim: Simulator, actions: list[Action]) -> Action:
    """Threads first (steps come first in ``enabled``), then whole frames."""
    return actions[0]


class LazyThreads:
    """Deliver what is in flight before threads move, but let a thread move after
    ``patience`` deliveries in a row (a thread that never runs is not a fair schedule)."""

    def __init__(self, patience: int = 64) -> None:
        self.patience = patience
        self.streak = 0

    def __call__(self, sim: Simulator, actions: list[Action]) -> Action:
        if self.streak < self.patience:
            for action in actions:
                if type(action) is Deliver:
                    self.streak += 1
                    return action
        self.streak = 0
        return actions[0]


CANONICAL: Chooser = canonical


def lazy_threads(patience: int = 64) -> Chooser:
    """A fresh :class:`LazyThreads` chooser."""
    return LazyThreads(patience)


def random_chooser(seed: int) -> Chooser:
    """A chooser picking uniformly among enabled actions, from ``random.Random(seed)``."""
    rng = random.Random(seed)

    def choose(sim: Simulator, actions: list[Action]) -> Action:
        return actions[rng.randrange(len(actions))]

    return choose


@attrs.frozen
class Schedule:
    """A script of choices: the i-th action taken is ``enabled[choices[i] % n]``; once the
    script runs out, the canonical order. ``Schedule()`` is the canonical schedule."""

    choices: tuple[int, ...] = ()

    def chooser(self) -> Chooser:
        it = iter(self.choices)

        def choose(sim: Simulator, actions: list[Action]) -> Action:
            return actions[next(it, 0) % len(actions)]

        return choose


def run_until_quiet(sim: Simulator, choose: Chooser, *, invariants: bool = True,
                    max_actions: int = DEFAULT_MAX_ACTIONS,
                    storm_limit: int | None = None) -> int:
    """Apply chosen actions until nothing is enabled; return how many were applied.

    Args:
        storm_limit: if set, more than this many deliveries in a row while some thread
            could have moved is a violation: the cores keep messaging each other
            without any task making progress (a message storm).

    Raises:
        HarnessViolation: an invariant broke, a deadlock report was false, the world
            did not settle within ``max_actions`` (a livelock), or a message storm.
    """
    streak = 0
    for n in range(max_actions):
        actions = sim.enabled(batches=True)
        if not actions:
            return n
        action = choose(sim, actions)
        if type(action) is Deliver and type(actions[0]) is not Deliver:
            streak += 1
            if storm_limit is not None and streak > storm_limit:
                raise HarnessViolation(
                    f"message storm: {streak} deliveries in a row while threads could "
                    f"have moved, and the links never emptied\n{sim.describe()}")
        else:
            streak = 0
        sim.apply(action)
        if invariants:
            check_invariants(sim)
    raise HarnessViolation(f"no quiescence after {max_actions} actions (livelock?)\n"
                           f"{sim.describe()}")


@attrs.frozen(kw_only=True)
class ProgramRun:
    """The result of running one program on one simulated cluster under one schedule."""

    program: Program
    shape: ClusterShape
    outcome: Outcome
    expected: Outcome
    detections: tuple[Detection, ...]
    deadlocked_paths: frozenset[str]
    actions: int

    @property
    def deadlocked(self) -> bool:
        """Whether the detector reported (and ground truth confirmed) a deadlock."""
        return bool(self.detections)


class Starved(Exception):
    """The program is stuck only behind a Queue ``get`` nobody feeds, with a slot free:
    a later task could still put (``Simulator.starved``). Not a property violation."""


def simulate_program(program: Program, shape: ClusterShape, choose: Chooser = CANONICAL, *,
                     config: SimConfig | None = None, invariants: bool = True,
                     max_actions: int = DEFAULT_MAX_ACTIONS,
                     storm_limit: int | None = None) -> ProgramRun:
    """Run ``program`` as one root on a fresh simulated cluster and check it ends well.

    See the module docstring for what is checked.

    Args:
        storm_limit: also fail on a message storm (see :func:`run_until_quiet`); use
            with a chooser that delivers before threads move, e.g.
            ``lazy_threads(patience=10**9)``.

    Raises:
        HarnessViolation: a property broke (the message shows the world and actions).
    """
    sim = Simulator.for_shape(shape, config)
    sim.apply(Submit(program))
    n = run_until_quiet(sim, choose, invariants=invariants, max_actions=max_actions,
                        storm_limit=storm_limit)
    check_no_missed_deadlock(sim)
    (key,) = sim.roots
    outcome = sim.root_outcomes.get(key)
    if outcome is None and sim.starved():
        raise Starved(f"{program!r} on {shape!r}: a Queue get nobody feeds holds up the "
                      f"root, with a slot free (not a deadlock the rule reports)")
    if outcome is None:  # pragma: no cover - stuck() covers it
        raise HarnessViolation(f"root {key} never answered\n{sim.describe()}")
    deadlocked = frozenset(sim.deadlocked_paths)
    expected = expected_outcome(program, "0", deadlocked)
    if outcome != expected:
        raise HarnessViolation(
            f"{program!r} on {shape!r} ended with {outcome!r}; the program semantics, "
            f"given the deadlocked waits {sorted(deadlocked)}, say {expected!r}\n"
            f"Actions: {sim.log!r}")
    told = {path for d in sim.detections for path in d.victim_paths}
    if told != deadlocked:
        raise HarnessViolation(
            f"the detector told {sorted(told)} their wait failed, but DeadlockError was "
            f"raised in {sorted(deadlocked)}\nActions: {sim.log!r}")
    if not program.holds_slots_while_waiting() and sim.detections:
        raise HarnessViolation(f"{program!r} never holds a slot while waiting, yet a "
                               f"deadlock was reported:\n{sim.detections[0].report}")
    return ProgramRun(program=program, shape=shape, outcome=outcome, expected=expected,
                      detections=tuple(sim.detections), deadlocked_paths=deadlocked,
                      actions=n)


def outcomes_under(program: Program, shape: ClusterShape, choosers: Sequence[Chooser], *,
                   config: SimConfig | None = None) -> set[Outcome]:
    """The root outcomes ``program`` reaches under each of ``choosers`` (each checked)."""
    return {simulate_program(program, shape, c, config=config, invariants=False).outcome
            for c in choosers}


def schedule_independent(program: Program, shape: ClusterShape) -> bool:
    """Whether ``program``'s outcome on ``shape`` is the same under every schedule, by a
    rule simple enough to trust (and cross-checked against exhaustive search in fuzz/):

    * every wait gives its slot back (secede, worker_client, async): slots are only held
      by tasks that compute, so every task gets one in the end and the program finishes
      with the value (or failure) its semantics give; or
    * the cluster has one slot in all: a task that waits without seceding holds the only
      slot, its children can never run, so it always deadlocks; every other task's
      outcome follows from its children's.

    Anything else (a secede-less wait with two or more slots) may deadlock or not
    depending on which tasks happen to hold slots at once.
    """
    if program.uses_primitives():
        return False  # who takes the lock (or the item) first depends on the schedule
    return not program.holds_slots_while_waiting() or shape.total_slots == 1


def standard_choosers(random_schedules: int = 8) -> list[Chooser]:
    """Canonical, lazy-threads, and ``random_schedules`` seeded random choosers."""
    return [CANONICAL, lazy_threads(), *(random_chooser(s) for s in range(random_schedules))]


def reachable_outcomes(program: Program, shape: ClusterShape, *,
                       budget: int = 20_000) -> set[tuple[object, ...]] | None:
    """Every root outcome (``Outcome.summary()``) ``program`` can reach on ``shape``,
    over *all* schedules: an exhaustive, memoised search of every interleaving.

    Exact, but only affordable for small programs (a few tasks); ``("stuck",)`` in the
    result would be a missed deadlock. (Ground truth's search, ``truth.can_progress``,
    asks a narrower question of one world: can any run still end.)

    Returns:
        the set, or None if more than ``budget`` distinct worlds were visited.
    """
    world = Simulator.for_shape(shape, SimConfig(audit=False, check_codec=False))
    world.apply(Submit(program))
    world.log = []
    (root,) = world.roots
    outcomes: set[tuple[object, ...]] = set()
    seen: set[bytes] = set()
    stack = [pickle.dumps(world, pickle.HIGHEST_PROTOCOL)]
    while stack:
        blob = stack.pop()
        digest = hashlib.blake2b(blob, digest_size=16).digest()
        if digest in seen:
            continue
        seen.add(digest)
        if len(seen) > budget:
            return None
        current = pickle.loads(blob)
        actions = current.enabled(batches=True)
        if not actions:
            outcome = current.root_outcomes.get(root)
            outcomes.add(outcome.summary() if outcome is not None else ("stuck",))
            continue
        for action in actions:
            child = pickle.loads(blob)
            child.apply(action)
            child.log = []
            stack.append(pickle.dumps(child, pickle.HIGHEST_PROTOCOL))
    return outcomes


def check_releasing_program(program: Program, shape: ClusterShape,
                            choose: Chooser = CANONICAL) -> None:
    """Property (a): a program whose waits all give the slot back finishes, with the
    right value, and the detector never fires. Raises AssertionError otherwise."""
    run = simulate_program(program, shape, choose)
    assert not run.detections, run.detections
    assert run.outcome == expected_outcome(program), (run.outcome, expected_outcome(program))


def check_secede_less_program(program: Program, shape: ClusterShape,
                              choose: Chooser = CANONICAL) -> None:
    """Property (b): every deadlock report is confirmed by ground truth (checked while
    simulating, as is the absence of missed deadlocks), only secede-less waiters with
    children are ever deadlocked, and on a single slot a root with children always is."""
    from .program import Wait

    run = simulate_program(program, shape, choose)
    assert all(d.truly_stuck for d in run.detections)
    nodes = dict(program.nodes())
    for path in run.deadlocked_paths:
        assert nodes[path].wait is Wait.NONE and nodes[path].children
    if shape.total_slots == 1 and program.children:
        assert run.deadlocked  # the root holds the only slot and waits on its children

