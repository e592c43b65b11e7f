"""The deterministic simulator (trioflow.testing): worked examples, and checks that its
oracles catch what they must (a lying detector, a silent one, a broken ledger)."""

from __future__ import annotations

import pytest

from trioflow import protocol as p
from trioflow.core import worker as wcore
from trioflow.core.events import Send
from trioflow.core.scheduler import Scheduler
from trioflow.core.session import FINISHED
from trioflow.testing import (
    CANONICAL,
    AddWorker,
    BlindScheduler,
    ClusterShape,
    Deliver,
    HarnessViolation,
    Outcome,
    Program,
    SimConfig,
    Simulator,
    Submit,
    Wait,
    expected_outcome,
    lazy_threads,
    random_chooser,
    run_until_quiet,
    simulate_program,
)
from trioflow.testing.invariants import check_invariants, check_one_place, check_worker_slots
from trioflow.testing.program import DEADLOCK_TYPE, FAILURE_TYPE, decode_payload, encode_payload
from trioflow.testing.sessions import ASYNC_FN, SYNC_FN
from trioflow.testing.simulate import SCHEDULER, Step
from trioflow.testing.truth import check_no_missed_deadlock, replay

ONE = ClusterShape(workers=1, slots=1)
TWO = ClusterShape(workers=1, slots=2)
MINIMAL_DEADLOCK = Program(wait=Wait.NONE, children=(Program(),))


def test_a_leaf_returns_one_on_every_shape():
    for shape in (ONE, TWO, ClusterShape(workers=3, slots=1)):
        run = simulate_program(Program(), shape)
        assert run.outcome == Outcome(value=1)
        assert not run.detections


def test_minimal_secede_less_wait_deadlocks_on_one_slot_and_is_confirmed():
    run = simulate_program(MINIMAL_DEADLOCK, ONE)
    assert run.deadlocked
    (detection,) = run.detections
    assert detection.truly_stuck
    assert detection.victim_paths == ("0",)
    assert run.outcome.error == DEADLOCK_TYPE
    assert "waits on" in detection.report and "secede" in detection.report


def test_same_program_with_two_slots_finishes():
    run = simulate_program(MINIMAL_DEADLOCK, TWO)
    assert run.outcome == Outcome(value=2) and not run.detections


@pytest.mark.parametrize("wait", [Wait.SECEDE, Wait.WORKER_CLIENT, Wait.ASYNC])
def test_releasing_waits_finish_on_one_slot(wait):
    program = Program(wait=wait, children=(Program(wait=wait, children=(Program(),)),
                                           Program()))
    for choose in (CANONICAL, lazy_threads(), random_chooser(3)):
        run = simulate_program(program, ONE, choose)
        assert run.outcome == Outcome(value=4) and not run.detections


def test_first_failed_child_in_order_is_the_parents_error():
    program = Program(wait=Wait.SECEDE,
                      children=(Program(), Program(fail=True), Program(fail=True)))
    run = simulate_program(program, TWO)
    assert run.outcome == Outcome(error=FAILURE_TYPE, text="0.1")


def test_a_deadlocked_child_fails_its_seceded_parent():
    program = Program(wait=Wait.SECEDE, children=(MINIMAL_DEADLOCK,))
    run = simulate_program(program, ONE)
    assert run.deadlocked_paths == {"0.0"}
    assert run.outcome == expected_outcome(program, "0", frozenset({"0.0"}))


def test_payload_round_trip():
    program = Program(wait=Wait.ASYNC, children=(Program(fail=True), MINIMAL_DEADLOCK))
    assert decode_payload(encode_payload(program, "0.3")) == ("0.3", program)


def test_leaves_are_normalised_and_repr_is_python():
    assert Program(wait=Wait.SECEDE) == Program()
    program = Program(wait=Wait.WORKER_CLIENT, children=(Program(wait=Wait.ASYNC),), fail=True)
    assert eval(repr(program), {"Program": Program, "Wait": Wait}) == program


def test_replaying_the_log_rebuilds_the_same_world():
    sim = Simulator.for_shape(ClusterShape(workers=2, slots=1))
    sim.apply(Submit(Program(wait=Wait.SECEDE, children=(MINIMAL_DEADLOCK, Program()))))
    run_until_quiet(sim, random_chooser(11))
    again = replay(sim, sim.log)
    assert again.describe() == sim.describe()
    assert again.root_outcomes == sim.root_outcomes
    assert again.scheduler.state.deadlocks == sim.scheduler.state.deadlocks


# --------------------------------------------------------------- the oracles themselves


def test_a_silent_detector_is_caught_as_a_missed_deadlock():
    sim = Simulator(SimConfig(), scheduler=BlindScheduler())
    sim.apply(AddWorker(1))
    sim.apply(Submit(MINIMAL_DEADLOCK))
    run_until_quiet(sim, CANONICAL)
    assert sim.stuck()
    with pytest.raises(HarnessViolation, match="missed deadlock"):
        check_no_missed_deadlock(sim)


class LyingScheduler(Scheduler):
    """Reports a deadlock as soon as any run blocks, free slots or not."""

    def handle(self, event):
        out = super().handle(event)
        for task in list(self.state.tasks.values()):
            if task.blocked_on and task.worker is not None and not task.seceded:
                out.append(Send(task.worker, p.WaitFailed([task.key], [task.run_id], "deadlock",
                                                          "a lie")))
                task.blocked_on = None
                self.state.workers[task.worker].blocked -= 1
        return out


def test_a_lying_detector_is_caught_as_a_false_report():
    # children through the scheduler: placed locally, the child runs in the free slot
    # and the parent has ended before the scheduler sees its wait (the lie is then harmless)
    sim = Simulator(SimConfig(placement="scheduler"), scheduler=LyingScheduler())
    sim.apply(AddWorker(2))
    sim.apply(Submit(MINIMAL_DEADLOCK))
    with pytest.raises(HarnessViolation, match="false deadlock report"):
        run_until_quiet(sim, CANONICAL)


def test_invariants_catch_a_ledger_that_disagrees_with_the_limiter():
    sim = Simulator.for_shape(ONE)
    sim.apply(Submit(Program()))
    while not sim.workers["w1"].runs:
        sim.apply(sim.enabled()[0])
    check_invariants(sim)
    sim.workers["w1"].tokens.clear()
    with pytest.raises(HarnessViolation, match="limiter borrowers"):
        check_invariants(sim)


def test_drained_view_compares_scheduler_and_worker():
    sim = Simulator.for_shape(ONE)
    sim.apply(Submit(MINIMAL_DEADLOCK))
    run_until_quiet(sim, CANONICAL)
    check_invariants(sim)
    sim.scheduler.state.workers["w1"].occupying += 1
    with pytest.raises(HarnessViolation):
        check_invariants(sim)


def test_codec_round_trip_is_checked_on_every_frame():
    sim = Simulator.for_shape(ONE)
    sim.links[("w1", "scheduler")].append(p.Heartbeat())
    sim.apply(Deliver("w1", "scheduler"))  # encodes and decodes fine
    assert sim.log[-1] == Deliver("w1", "scheduler")


def test_importing_trioflow_testing_does_not_import_hypothesis():
    import subprocess
    import sys

    code = ("import sys, trioflow.testing as t; t.simulate_program(t.Program(), t.ClusterShape());"
            " assert 'hypothesis' not in sys.modules, 'imported hypothesis'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_cli_deadlocks_prints_the_minimal_program_report_and_script(capsys):
    from trioflow.testing.__main__ import main

    assert main(["deadlocks"]) == 0
    out = capsys.readouterr().out
    assert "Shrunk to:\n  Program(children=(Program(),))\n  on ClusterShape(workers=1, slots=1)" in out
    assert "trioflow detected a deadlock" in out
    assert "def task_0():" in out and "if __name__ == \"__main__\":" in out


def test_cli_exhaustive_counts(capsys):
    from trioflow.testing.__main__ import main

    assert main(["exhaustive", "--depth", "1", "--waits", "none,secede"]) == 0
    assert "5 programs, 30 runs" in capsys.readouterr().out


# --------------------------------------------------------------- the real shell's code paths


def _assign(worker, key, program, run_id=1):
    """The scheduler's ComputeTask for a leaf ``program``, delivered to ``worker``."""
    fn = ASYNC_FN if program.is_async else SYNC_FN
    worker.receive(p.ComputeTask(key, run_id, fn, encode_payload(program, key), [0, -1, 0],
                                 is_async=program.is_async))


def _check_worker_side(sim):
    """The invariants that hold for runs ``_assign`` gave a worker behind the scheduler's
    back (it has no record of them: ``check_on_record`` would rightly fail)."""
    for worker in sim.workers.values():
        check_worker_slots(worker)
    check_one_place(sim)


def _lone_worker(placement="scheduler"):
    # children through the scheduler unless asked: these tests hand-assign runs and
    # follow one mechanism each (local placement has its own tests below)
    sim = Simulator.for_shape(ONE, SimConfig(audit=False, placement=placement))
    return sim, sim.workers["w1"]


@pytest.mark.parametrize("next_is_async", [False, True])
def test_a_sync_run_that_ends_hands_its_thread_to_the_next_sync_run(next_is_async):
    sim, w = _lone_worker()
    _assign(w, "a", Program())
    _assign(w, "b", Program(wait=Wait.ASYNC) if next_is_async else Program())
    assert list(w.runs) == ["a"] and w.ledger.runs["b"].state is wcore.RunState.QUEUED
    first = w.runs["a"]
    sim.apply(Step("w1", "a", 1))  # a returns
    assert list(w.runs) == ["b"] and w.tokens == {("b", 1)}
    assert w.ledger.runs["b"].state is wcore.RunState.RUNNING and "a" not in w.ledger.runs
    assert w.handed_over == (0 if next_is_async else 1)  # async runs live on the loop
    link = list(sim.links[("w1", SCHEDULER)])
    assert [type(m) for m in link] == [p.TaskFinished]
    assert link[0].key == first.key
    _check_worker_side(sim)


def test_a_rejoiner_goes_before_a_hand_over():
    """A slot freed goes to a run waiting to rejoin first, so the thread does not take
    the queued run (the ledger refuses the hand-over)."""
    sim, w = _lone_worker()
    _assign(w, "r", Program(wait=Wait.SECEDE, children=(Program(),)))
    for _ in range(2):  # r submits its child and secedes
        sim.apply(Step("w1", "r", 1))
    _assign(w, "a", Program())
    _assign(w, "b", Program())
    w.runs["r"].step(w)  # r's wait: its child is pending
    w.session.keys[w.runs["r"].futures[0]].status = FINISHED  # the child is done ...
    w.runs["r"].step(w)  # ... r wakes
    w.runs["r"].step(w)  # and rejoins: no slot, it waits in line
    assert w.runs["r"].rejoin_pending and not w.runs["r"].was_granted
    sim.apply(Step("w1", "a", 1))  # a ends: the slot goes to r, not to b
    assert w.handed_over == 0 and w.runs["r"].was_granted and not w.runs["r"].seceded
    assert w.ledger.runs["b"].state is wcore.RunState.QUEUED
    _check_worker_side(sim)


def test_runs_produce_their_messages_with_the_shared_task_view():
    """An async wait gives its slot back before the scheduler hears of the wait, and
    takes it again after: the order core.session.TaskView produces."""
    sim, w = _lone_worker()
    _assign(w, "t", Program(wait=Wait.ASYNC, children=(Program(),)))
    sim.apply(Step("w1", "t", 1))  # the submit
    sim.apply(Step("w1", "t", 1))  # the wait
    kinds = [type(m) for m in sim.links[("w1", SCHEDULER)]]
    assert kinds == [p.RegisterFunction, p.SubmitTask, p.Seceded, p.WaitKeys]
    assert w.runs["t"].view.seceded and w.runs["t"].view.waiting


def test_the_simulator_keeps_no_copy_of_the_in_task_protocol():
    """testing/ never builds the messages core.session owns (TaskView's, and the key
    table's)."""
    import pathlib

    import trioflow.testing

    root = pathlib.Path(trioflow.testing.__file__).parent
    for path in root.glob("*.py"):
        text = path.read_text()
        for name in ("WaitKeys(", "WaitEnded(", "Seceded(", "RejoinRequested(",
                     "RegisterFunction(", "ReleaseKeys(", "AcquireKeys("):
            assert name not in text, f"{path.name} builds {name[:-1]} itself"


def test_a_result_finished_here_wakes_its_waiter_before_the_scheduler_answers():
    """As Session.finished_here does on a real worker: no KeyFinished round trip."""
    sim, w = _lone_worker()
    _assign(w, "r", Program(wait=Wait.SECEDE, children=(Program(),)))
    for _ in range(3):  # r submits its child, secedes and waits
        sim.apply(Step("w1", "r", 1))
    (child,) = w.runs["r"].futures
    _assign(w, child, Program())
    assert not w.runs["r"].can_step(w.session)
    sim.apply(Step("w1", child, 1))  # the child ends here
    assert w.runs["r"].can_step(w.session) and not sim.links[(SCHEDULER, "w1")]
    assert w.session.keys[child].outcome == Outcome(value=1)
