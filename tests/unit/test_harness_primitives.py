"""The harness with coordination primitives: the simulator runs the real scheduler core
on programs that take a lock or use a queue, ground truth audits every report.

* The exhaustive sweep (bounded here: depth <= 2 with one child, or depth 1 with two)
  finds 0 false and 0 missed deadlock reports. ``python -m trioflow.testing`` style
  runs of depth 2, fan-out 2 are in docs/testing.md.
* The same for programs whose tasks need a GPU (every worker offers one): a task that
  gives its slot back gives its GPU back, so those never deadlock.
* Hypothesis mixes the lock, the queue and GPUs into recursive programs and into the
  state machine (workers joining and leaving included).
"""

from hypothesis import HealthCheck, given, note, settings

from trioflow.testing import cluster_shapes, schedules, simulate_program
from trioflow.testing.exhaustive import sweep_programs
from trioflow.testing.machine import PrimitiveClusterMachine
from trioflow.testing.program import (
    ClusterShape,
    Program,
    Wait,
    decode_payload,
    encode_payload,
    enumerate_primitive_programs,
)
from trioflow.testing.scheduling import CANONICAL, Starved
from trioflow.testing.simulate import SimConfig
from trioflow.testing.strategies import primitive_programs

SMALL = settings(max_examples=40, derandomize=True, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def bounded(primitive):
    return [*enumerate_primitive_programs(2, 1, primitive),
            *enumerate_primitive_programs(1, 2, primitive)]


def test_exhaustive_lock_programs_have_no_false_or_missed_reports():
    report = sweep_programs(bounded("lock"))
    assert report.programs == 166 and report.runs == 996
    assert report.violation_count == 0, report.violations[:3]
    assert report.deadlocked > 0 and report.finished > 0, report.summary()


def test_exhaustive_queue_programs_have_no_false_or_missed_reports():
    report = sweep_programs(bounded("queue"))
    assert report.programs == 262 and report.runs == 1572
    assert report.violation_count == 0, report.violations[:3]
    assert report.deadlocked > 0 and report.finished > 0, report.summary()


def test_exhaustive_gpu_programs_have_no_false_or_missed_reports():
    # every worker offers GPU=1; "gpu" tasks need it; releasing programs must finish
    report = sweep_programs(bounded("gpu"), config=SimConfig(gpus=1))
    assert report.programs == 166 and report.runs == 996
    assert report.violation_count == 0, report.violations[:3]
    assert report.deadlocked > 0 and report.releasing > 0, report.summary()


def test_recursive_gpu_work_that_secedes_finishes_on_one_gpu():
    # dask issue 6565: a seceded task keeps its resources there, and this deadlocks
    tree = Program(uses="gpu", wait=Wait.WORKER_CLIENT, children=(
        Program(uses="gpu", wait=Wait.ASYNC, children=(Program(uses="gpu"),)),
        Program(uses="gpu")))
    for shape in (ClusterShape(workers=1, slots=1), ClusterShape(workers=1, slots=3)):
        run = simulate_program(tree, shape, CANONICAL, config=SimConfig(gpus=1))
        assert run.outcome.value == 4 and not run.detections
    # holding the GPU while waiting on a child that needs it: reported, free slots or not
    held = Program(uses="gpu", children=(Program(uses="gpu"),))
    run = simulate_program(held, ClusterShape(workers=1, slots=3), CANONICAL,
                           config=SimConfig(gpus=1))
    assert run.outcome.deadlocked and "needs resources GPU=1" in run.detections[0].report


def test_the_textbook_cycles_are_reported():
    lock = Program(uses="lock", children=(Program(uses="lock"),))  # parent holds L
    run = simulate_program(lock, ClusterShape(workers=1, slots=2), CANONICAL)
    assert run.outcome.deadlocked and "Lock 'L'" in run.detections[0].report
    # consumer on the only slot, its producer queued behind it
    queue = Program(wait=Wait.SECEDE, children=(Program(uses="get"), Program(uses="put")))
    run = simulate_program(queue, ClusterShape(workers=1, slots=1), CANONICAL)
    assert run.outcome.deadlocked and "Queue 'Q'" in run.detections[0].report
    # with a second slot the producer runs: no report
    run = simulate_program(queue, ClusterShape(workers=1, slots=2), CANONICAL)
    assert run.outcome.value == 3 and not run.detections


def test_uses_round_trips_through_the_payload():
    program = Program(wait=Wait.ASYNC, children=(Program(uses="get"), Program(uses="put")),
                      uses="lock")
    assert decode_payload(encode_payload(program, "0")) == ("0", program)
    assert eval(repr(program)) == program


@SMALL
@given(program=primitive_programs(), shape=cluster_shapes(), schedule=schedules())
def test_primitive_programs_under_any_schedule(program, shape, schedule):
    note(repr(program))
    try:
        simulate_program(program, shape, schedule.chooser())
    except Starved:
        pass  # a deadlock report cancelled a producer: not a deadlock, not a violation


TestPrimitiveClusterMachine = PrimitiveClusterMachine.TestCase
TestPrimitiveClusterMachine.settings = settings(
    max_examples=15, stateful_step_count=40, derandomize=True, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
