"""The deadlock properties over random programs, clusters and schedules (small budgets;
fuzz/test_program_properties.py runs the same properties with the fuzz profiles).

(a) programs whose waits all give the slot back always finish, with the right value;
(b) secede-less programs deadlock exactly when ground truth says so, and then the
    waiting runs get DeadlockError (simulate_program audits every report and every
    quiescent state; see trioflow.testing.truth);
(c) Hypothesis shrinks a secede-less deadlock to the textbook one, printable as code.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, note, settings

from trioflow.testing import (
    ClusterShape,
    Program,
    Wait,
    cluster_shapes,
    programs,
    releasing_programs,
    render_program,
    schedules,
    secede_less_programs,
    simulate_program,
)
from trioflow.testing.__main__ import find_minimal_deadlock
from trioflow.testing.scheduling import check_releasing_program, check_secede_less_program

SMALL = settings(max_examples=40, derandomize=True, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow])


@SMALL
@given(program=releasing_programs(), shape=cluster_shapes(), schedule=schedules())
def test_releasing_programs_always_finish(program, shape, schedule):
    note(render_program(program, shape))
    check_releasing_program(program, shape, schedule.chooser())


@SMALL
@given(program=secede_less_programs(failures=True), shape=cluster_shapes(),
       schedule=schedules())
def test_secede_less_programs_deadlock_exactly_when_stuck(program, shape, schedule):
    note(render_program(program, shape))
    check_secede_less_program(program, shape, schedule.chooser())


@SMALL
@given(program=programs(), shape=cluster_shapes(), schedule=schedules())
def test_mixed_programs_keep_every_property(program, shape, schedule):
    simulate_program(program, shape, schedule.chooser())


def test_secede_less_deadlock_shrinks_to_one_slot_one_child():
    program, shape, largest = find_minimal_deadlock(seed=0)
    assert program == Program(wait=Wait.NONE, children=(Program(),))
    assert shape == ClusterShape(workers=1, slots=1)
    assert largest.size() >= program.size()
    script = render_program(program, shape)
    assert "values = client.gather(futures)  # holds the slot while waiting" in script
    assert "trioflow.run(main, workers=1, threads_per_worker=1)" in script


def test_a_failing_property_prints_the_minimal_program_as_code():
    @settings(max_examples=200, derandomize=True, database=None, deadline=None,
              print_blob=False)
    @given(program=secede_less_programs(), shape=cluster_shapes())
    def secede_less_programs_never_deadlock(program, shape):  # false, on purpose
        note(render_program(program, shape, prediction="DeadlockError"))
        assert not simulate_program(program, shape).deadlocked

    with pytest.raises(AssertionError) as info:
        secede_less_programs_never_deadlock()
    printed = "\n".join(getattr(info.value, "__notes__", []))
    assert "program=Program(children=(Program(),))" in printed
    assert "shape=ClusterShape(workers=1, slots=1)" in printed
    assert "def task_0():" in printed and "trioflow.run(main, workers=1" in printed
