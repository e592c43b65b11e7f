"""A Hypothesis state machine over the simulated cluster (imports Hypothesis).

Hypothesis chooses, one rule at a time, what the cluster does next: the client submits
a program, a link delivers (any number of its messages, as one frame), a run does its
next op, a worker joins or leaves. After every rule the invariants of
:mod:`.invariants` hold and run ids only increase; every deadlock report is audited
against ground truth as it happens (:mod:`.truth`). At the end the machine drains the
world (fairly: threads first, links least recently delivered first) within a step
bound, and then:

* nothing is stuck: every root program has an outcome and no run is left (a stuck
  world would be a true deadlock the detector missed);
* every root's outcome is one its program allows: its value when it succeeds, else a
  failure of one of its failing tasks or a ``DeadlockError`` of one of its secede-less
  waits (exactly the semantics' prediction when no worker left).

Use it as ``TestCluster = ClusterMachine.TestCase``; subclass it and override
:attr:`ClusterMachine.program_strategy` (or the class attributes) to drive your own
task shapes.
"""

from __future__ import annotations

from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from .invariants import check_invariants
from .program import ClusterShape, Outcome, Program, Wait, expected_outcome
from .scheduling import CANONICAL, run_until_quiet
from .simulate import (
    AddWorker,
    Deliver,
    HarnessViolation,
    RemoveWorker,
    SimConfig,
    Simulator,
    Step,
    Submit,
)
from .strategies import cluster_shapes, primitive_programs, programs
from .truth import check_no_missed_deadlock

__all__ = ["ClusterMachine", "PrimitiveClusterMachine", "allowed_outcome"]


class ClusterMachine(RuleBasedStateMachine):
    """The cluster, step by step, with Hypothesis choosing every step."""

    #: the programs the client submits
    program_strategy: ClassVar[st.SearchStrategy[Program]] = programs(max_depth=2, max_fanout=2)
    #: the cluster at the start
    shape_strategy: ClassVar[st.SearchStrategy[ClusterShape]] = cluster_shapes()
    max_roots: ClassVar[int] = 3
    max_workers: ClassVar[int] = 3
    #: worker departures per run (3 would let KilledWorker end programs)
    max_removals: ClassVar[int] = 2
    #: actions the final drain may take
    drain_bound: ClassVar[int] = 20_000
    config: ClassVar[SimConfig] = SimConfig()

    def __init__(self) -> None:
        super().__init__()
        self.sim = Simulator(self.config)
        self.removals = 0

    # -------------------------------------------------------------- rules

    @initialize(data=st.data())
    def start_cluster(self, data: st.DataObject) -> None:
        shape = data.draw(self.shape_strategy, label="shape")
        for _ in range(shape.workers):
            self.sim.apply(AddWorker(shape.slots))

    @precondition(lambda self: len(self.sim.roots) < self.max_roots)
    @rule(data=st.data())
    def submit(self, data: st.DataObject) -> None:
        self.sim.apply(Submit(data.draw(self.program_strategy, label="program")))

    @precondition(lambda self: any(self.sim.links.values()))
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        busy = [link for link, q in self.sim.links.items() if q]
        src, dst = data.draw(st.sampled_from(busy), label="link")
        count = data.draw(st.integers(1, len(self.sim.links[(src, dst)])), label="count")
        self.sim.apply(Deliver(src, dst, count))

    @precondition(lambda self: any(type(a) is Step for a in self.sim.enabled()))
    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        steps = [a for a in self.sim.enabled() if type(a) is Step]
        self.sim.apply(data.draw(st.sampled_from(steps), label="run"))

    @precondition(lambda self: len(self.sim.workers) < self.max_workers)
    @rule(slots=st.integers(1, 3))
    def add_worker(self, slots: int) -> None:
        self.sim.apply(AddWorker(slots))

    @precondition(lambda self: self.sim.workers and self.removals < self.max_removals)
    @rule(data=st.data())
    def remove_worker(self, data: st.DataObject) -> None:
        worker = data.draw(st.sampled_from(sorted(self.sim.workers)), label="worker")
        self.removals += 1
        self.sim.apply(RemoveWorker(worker))

    @rule()
    def settle(self) -> None:
        """Nothing happens (the world has no clock); keeps a rule enabled when all is quiet."""

    # -------------------------------------------------------------- checks

    @invariant()
    def invariants_hold(self) -> None:
        check_invariants(self.sim)

    def teardown(self) -> None:
        sim = self.sim
        if not sim.workers:
            sim.apply(AddWorker(1))  # a cluster with no worker is not deadlocked: it waits
        run_until_quiet(sim, CANONICAL, max_actions=self.drain_bound)
        check_no_missed_deadlock(sim)
        for i, (key, program) in enumerate(sim.roots.items()):
            outcome = sim.root_outcomes.get(key)
            if outcome is None and sim.starved():
                continue  # behind a Queue get nobody feeds (a later task could still put)
            assert outcome is not None, (key, sim.describe())
            if not allowed_outcome(program, str(i), outcome, sim.deadlocked_paths,
                                   exact=self.removals == 0):
                raise HarnessViolation(
                    f"root {key} {program!r} ended with {outcome!r}, which its program "
                    f"does not allow (deadlocked waits: {sorted(sim.deadlocked_paths)})\n"
                    f"Actions: {sim.log!r}")


def allowed_outcome(program: Program, path: str, outcome: Outcome, deadlocked: Any, *,
                    exact: bool) -> bool:
    """Whether ``outcome`` is one the root ``program`` at ``path`` may end with.

    Args:
        deadlocked: paths of tasks whose wait raised ``DeadlockError``.
        exact: no task ran twice (no worker left), so the semantics predict the outcome.
    """
    mine = frozenset(d for d in deadlocked if d == path or d.startswith(path + "."))
    if exact:
        return outcome == expected_outcome(program, path, mine)
    if outcome.ok:
        return outcome == expected_outcome(program, path)
    nodes = dict(program.nodes(path))
    node = nodes.get(outcome.text)
    if node is None:
        return False
    if outcome.deadlocked:  # a secede-less wait, or a wait on the lock or the queue
        return (node.wait is Wait.NONE and bool(node.children)) or node.uses in ("lock", "get")
    return node.fail


class PrimitiveClusterMachine(ClusterMachine):
    """The same machine, submitting programs whose tasks take the lock, put to and get
    from the queue (every get fed) and need a GPU (each worker offers one), mixed into
    recursive programs."""

    program_strategy: ClassVar[st.SearchStrategy[Program]] = primitive_programs(
        uses=("", "lock", "put", "get", "gpu"))
    config: ClassVar[SimConfig] = SimConfig(gpus=1)
