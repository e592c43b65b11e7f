"""Core bugs the deadlock harness found, as minimal failing tests.

Each is ``xfail(strict=True)``: CI stays green until the core is fixed, then the test
starts passing, ``strict`` turns that into a failure, and whoever fixed it removes the
marker.
"""

from __future__ import annotations

import pytest

from trioflow import protocol as p
from trioflow.core.events import MessagesReceived, PeerJoined, Send
from trioflow.core.scheduler import SchedulerState
from trioflow.testing import (
    ClusterShape,
    Program,
    Simulator,
    Submit,
    Wait,
    lazy_threads,
    run_until_quiet,
)


def _steals(out):
    return [c.message for c in out if type(c) is Send and type(c.message) is p.StealTasks]


def _busy_worker_and_idle_worker():
    """w2 runs root B and has B's (deeper, so more urgent) child D queued; w1 is idle."""
    state = SchedulerState()
    state.handle(PeerJoined("c", p.Hello("client", "c", [1])))
    state.handle(PeerJoined("w2", p.Hello("worker", "w2", [1], "", 1, "ws://w2")))
    state.handle(MessagesReceived("c", [p.RegisterFunction("f", b"f"),
                                        p.SubmitTask("B", "f", b"", [])]))
    # B runs on w2 and submits D through w2's in-task client; prefetch queues D there too
    out = state.handle(MessagesReceived("w2", [p.RegisterFunction("f", b"f"),
                                               p.SubmitTask("D", "f", b"", [], "B")]))
    assert state.tasks["D"].worker == "w2", out
    out = state.handle(PeerJoined("w1", p.Hello("worker", "w1", [1], "", 1, "ws://w1")))
    return state, out


@pytest.mark.xfail(strict=True, reason="core bug: idle-steal re-sends StealTasks for a "
                   "running task forever (placement._steal picks started runs)")
def test_idle_steal_does_not_ping_pong_on_a_running_task():
    state, out = _busy_worker_and_idle_worker()
    (steal,) = _steals(out)
    # The idle-steal victims are the *least* urgent runs, which here is B: but B is
    # running, so w2 cannot give it back and answers with nothing.
    assert steal.keys == ["B"]
    out = state.handle(MessagesReceived("w2", [p.TasksReturned([], [])]))
    # Nothing changed, yet the scheduler asks again at once: on a real cluster
    # (2 workers x 1 slot, a 1 s task) this is ~1400 StealTasks per second.
    assert _steals(out) == []


@pytest.mark.xfail(strict=True, reason="core bug: idle-steal never moves the queued "
                   "task to the idle worker while the busy worker's task runs")
def test_idle_worker_gets_the_queued_task():
    state, out = _busy_worker_and_idle_worker()
    for _ in range(5):  # a few round trips: w2 returns whatever had not started
        stolen = [k for m in _steals(out) for k in m.keys if k == "D"]
        returned = ["D"] if stolen else []
        out = state.handle(MessagesReceived("w2", [
            p.TasksReturned(returned, [state.tasks[k].run_id for k in returned])]))
        if state.tasks["D"].worker == "w1":
            break
    assert state.tasks["D"].worker == "w1"


@pytest.mark.xfail(strict=True, reason="core bug: scheduler and worker exchange "
                   "StealTasks/TasksReturned without end while a task runs")
def test_simulator_finds_the_steal_storm():
    # root secedes and waits on [A, I]; I secedes and waits on two leaves. On 2 workers
    # with 1 slot, A runs on w2 with I's leaf queued behind it while w1 sits idle.
    program = Program(wait=Wait.SECEDE, children=(
        Program(), Program(wait=Wait.SECEDE, children=(Program(), Program()))))
    sim = Simulator.for_shape(ClusterShape(workers=2, slots=1))
    sim.apply(Submit(program))
    # deliver everything before threads move (A is a slow task): the links must settle
    run_until_quiet(sim, lazy_threads(patience=10_000), storm_limit=500)
