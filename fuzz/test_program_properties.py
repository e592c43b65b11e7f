"""Deadlock properties of task programs in the simulator, at fuzz-profile budgets.

(a) waits that give the slot back never deadlock, on any cluster, under any schedule;
(b) secede-less waits deadlock exactly when ground truth says so (every report is
    audited against an exhaustive search of the detector-less world; every quiescent
    world is checked for missed deadlocks), and DeadlockError reaches exactly the
    waiting runs the detector named;
plus mixed programs, several roots at once, and the schedule-independence rule the
real-cluster tests rely on, checked against exact (all-schedules) search.
"""

from __future__ import annotations

from hypothesis import given, note
from hypothesis import strategies as st

from trioflow.testing import (
    ClusterShape,
    Simulator,
    Submit,
    lazy_threads,
    reachable_outcomes,
    render_program,
    run_until_quiet,
    schedule_independent,
    simulate_program,
)
from trioflow.testing.profiles import fuzz_settings
from trioflow.testing.scheduling import check_releasing_program, check_secede_less_program
from trioflow.testing.strategies import (
    cluster_shapes,
    programs,
    releasing_programs,
    schedules,
    secede_less_programs,
)
from trioflow.testing.truth import check_no_missed_deadlock


@fuzz_settings(scale=2)
@given(program=releasing_programs(), shape=cluster_shapes(), schedule=schedules())
def test_releasing_programs_always_finish(program, shape, schedule):
    note(render_program(program, shape))
    check_releasing_program(program, shape, schedule.chooser())


@fuzz_settings(scale=2)
@given(program=secede_less_programs(failures=True), shape=cluster_shapes(),
       schedule=schedules())
def test_secede_less_programs_deadlock_exactly_when_stuck(program, shape, schedule):
    note(render_program(program, shape))
    check_secede_less_program(program, shape, schedule.chooser())


@fuzz_settings(scale=2)
@given(program=programs(), shape=cluster_shapes(), schedule=schedules())
def test_mixed_programs(program, shape, schedule):
    note(render_program(program, shape))
    simulate_program(program, shape, schedule.chooser())


@fuzz_settings(scale=1)
@given(program=programs(), shape=cluster_shapes())
def test_links_settle_while_threads_stall(program, shape):
    # deliver everything before any thread moves: the cores must stop messaging each
    # other (no StealTasks/TasksReturned ping-pong while a task runs)
    note(render_program(program, shape))
    simulate_program(program, shape, lazy_threads(patience=10**9), storm_limit=500)


@fuzz_settings(scale=1)
@given(roots=st.lists(programs(max_depth=2), min_size=2, max_size=4),
       shape=cluster_shapes(), schedule=schedules())
def test_several_roots_at_once(roots, shape, schedule):
    sim = Simulator.for_shape(shape)
    for program in roots:
        sim.apply(Submit(program))
    run_until_quiet(sim, schedule.chooser())
    check_no_missed_deadlock(sim)
    assert len(sim.root_outcomes) == len(roots)


@fuzz_settings(scale=0.15)
@given(program=programs(max_depth=1, max_fanout=2, failures=False),
       shape=st.sampled_from([ClusterShape(workers=1, slots=1),
                              ClusterShape(workers=1, slots=2),
                              ClusterShape(workers=2, slots=1)]))
def test_schedule_independence_rule_against_exact_search(program, shape):
    reachable = reachable_outcomes(program, shape, budget=5_000)
    if reachable is None:
        return  # too big to search exhaustively
    assert ("stuck",) not in reachable
    canonical = simulate_program(program, shape).outcome.summary()
    assert canonical in reachable
    if schedule_independent(program, shape):
        assert reachable == {canonical}
