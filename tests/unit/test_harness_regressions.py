"""Core bugs the deadlock harness found, as minimal failing tests.

Each was found by the harness; while a bug was open its test was ``xfail(strict=True)``, so the
fix turned it into a failure and the marker was removed with the fix. The tests stay as
regressions.
"""

from __future__ import annotations

from trioflow import protocol as p
from trioflow.core.events import MessagesReceived, PeerJoined, Send
from trioflow.core.scheduler import Scheduler
from trioflow.testing import (
    ClusterShape,
    Program,
    Simulator,
    Submit,
    Wait,
    lazy_threads,
    random_chooser,
    run_until_quiet,
    simulate_program,
)
from trioflow.testing.scheduling import outcomes_under, standard_choosers


def _steals(out):
    return [c.message for c in out if type(c) is Send and type(c.message) is p.StealTasks]


def _busy_worker_and_idle_worker():
    """w2 runs root B and has B's (deeper, so more urgent) child D queued; w1 is idle."""
    sched = Scheduler()
    sched.handle(PeerJoined("c", p.Hello("client", "c", [1])))
    sched.handle(PeerJoined("w2", p.Hello("worker", "w2", [1], "", 1, "ws://w2")))
    sched.handle(MessagesReceived("c", [p.RegisterFunction("f", b"f"),
                                        p.SubmitTask("B", "f", b"", [])]))
    # B runs on w2 and submits D through w2's in-task client; prefetch queues D there too
    out = sched.handle(MessagesReceived("w2", [p.RegisterFunction("f", b"f"),
                                               p.SubmitTask("D", "f", b"", [], "B")]))
    assert sched.state.tasks["D"].worker == "w2", out
    out = sched.handle(PeerJoined("w1", p.Hello("worker", "w1", [1], "", 1, "ws://w1")))
    return sched, out


def test_idle_steal_does_not_ping_pong_on_a_running_task():
    sched, out = _busy_worker_and_idle_worker()
    (steal,) = _steals(out)
    # The scheduler cannot tell whether D started (B did: it submitted D), so it asks
    # for D; suppose the worker had started it and gives nothing back.
    assert steal.keys == ["D"]
    out = sched.handle(MessagesReceived("w2", [p.TasksReturned([], [])]))
    # Nothing changed: asking again at once would be a storm (on a real cluster,
    # 2 workers x 1 slot and a 1 s task, ~1400 StealTasks per second before the fix).
    assert _steals(out) == []


def test_idle_worker_gets_the_queued_task():
    sched, out = _busy_worker_and_idle_worker()
    for _ in range(5):  # a few round trips: w2 returns whatever had not started
        stolen = [k for m in _steals(out) for k in m.keys if k == "D"]
        returned = ["D"] if stolen else []
        out = sched.handle(MessagesReceived("w2", [
            p.TasksReturned(returned, [sched.state.tasks[k].run_id for k in returned])]))
        if sched.state.tasks["D"].worker == "w1":
            break
    assert sched.state.tasks["D"].worker == "w1"


def test_simulator_finds_the_steal_storm():
    # root secedes and waits on [A, I]; I secedes and waits on two leaves. On 2 workers
    # with 1 slot, A runs on w2 with I's leaf queued behind it while w1 sits idle.
    program = Program(wait=Wait.SECEDE, children=(
        Program(), Program(wait=Wait.SECEDE, children=(Program(), Program()))))
    sim = Simulator.for_shape(ClusterShape(workers=2, slots=1))
    sim.apply(Submit(program))
    # deliver everything before threads move (A is a slow task): the links must settle
    run_until_quiet(sim, lazy_threads(patience=10_000), storm_limit=500)


def _inc(x: int) -> int:
    return x + 1


async def test_concurrent_clients_in_one_process_get_their_own_results():
    # Found by fuzz/test_live_programs.py: on an in-process cluster the client and the
    # worker's in-task client share a pid, and about 1 cluster in 300 gives them the same
    # key prefix. Then the worker's first in-task submit of `f` is keyed like the client's
    # first `f`: the scheduler treats it as the same task. A recursive task (fib) then
    # waits on itself (a silent hang: no DeadlockError), and `submit(inc, 100)` inside a
    # task can return the client's earlier `inc(1)` == 2. Many live sessions make it
    # certain: with 128 clients, several collided. Fixed: prefixes are 40 random bits.
    import contextlib

    import trio

    import trioflow

    n = 128
    with trio.fail_after(60):
        async with trioflow.open_local_cluster(1, 2, processes=False) as cluster:
            async with contextlib.AsyncExitStack() as stack:
                clients = [await stack.enter_async_context(trioflow.AsyncClient(cluster.address))
                           for _ in range(n)]
                futures = [c.submit(_inc, i) for i, c in enumerate(clients)]
                results = [await f for f in futures]
    assert results == [i + 1 for i in range(n)]


def test_a_rejoin_waiting_for_a_free_slot_is_no_deadlock():
    """Found by fuzz/test_live_programs.py (fuzz profile): the root waits on its async
    child without seceding, on one worker with two slots. The child's await ends and it
    asks to rejoin; the other slot is free. Rule 1' (free slots that no pending task can
    use) took the free slot for useless and reported a deadlock, though the rejoin was
    about to take it. 48 of the first 400 random schedules hit it."""
    prog = Program(children=(Program(wait=Wait.ASYNC, children=(Program(),)), Program()))
    shape = ClusterShape(workers=1, slots=2)
    for seed in range(400):
        outcome = simulate_program(prog, shape, random_chooser(seed), invariants=False).outcome
        assert outcome.summary()[0] == "value", (seed, outcome)


def test_victims_on_one_worker_are_failed_together():
    """Found by the full depth-3 exhaustive sweep (453 of 572,886 runs; the strided sweeps
    skipped them): on one worker with three slots, the root, a child and a grandchild
    each hold a slot and wait, and a seceded grandchild cannot rejoin. The detector told
    all three, one WaitFailed each. The simulator delivered them one at a time (as a
    frame split at the writer's batch limit would): the grandchild's failure freed its
    slot, the seceded run rejoined and finished, and the child, woken on the worker with
    no scheduler message in between, returned before its own WaitFailed arrived. Fixed:
    one WaitFailed per worker lists every victim there, failed in one step."""
    prog = Program(children=(
        Program(children=(Program(wait=Wait.SECEDE, children=(Program(),)),)),
        Program(wait=Wait.SECEDE, children=(
            Program(children=(Program(),)),
            Program(wait=Wait.SECEDE, children=(Program(), Program())),
        )),
    ))
    # (the canonical schedule no longer gets there since a seceding run's slot is kept
    # until it waits, WorkerState.secede; about half of random schedules do)
    runs = [simulate_program(prog, ClusterShape(workers=1, slots=3), random_chooser(seed))
            for seed in range(40)]
    deadlocked = [run for run in runs if run.detections]
    assert len(deadlocked) >= 5
    for run in deadlocked:
        assert run.deadlocked_paths == {"0", "0.0", "0.1.0"}
        (detection,) = run.detections
        assert sorted(detection.victim_paths) == ["0", "0.0", "0.1.0"]


def test_the_scheduler_tells_each_worker_its_victims_in_one_message():
    sched = Scheduler()
    sched.handle(PeerJoined("c", p.Hello("client", "c", list(p.SUPPORTED_VERSIONS))))
    sched.handle(PeerJoined("w", p.Hello("worker", "w", list(p.SUPPORTED_VERSIONS), "", 2,
                                         "ws://w")))
    sched.handle(MessagesReceived("c", [p.RegisterFunction("f", b"f"),
                                        p.SubmitTask("a", "f", b"", []),
                                        p.SubmitTask("b", "f", b"", [])]))
    sched.handle(MessagesReceived("w", [p.RegisterFunction("f", b"f"),
                                        p.SubmitTask("a1", "f", b"", [], "a"),
                                        p.SubmitTask("b1", "f", b"", [], "b"),
                                        p.WaitKeys("a", 1, ["a1"])]))
    out = sched.handle(MessagesReceived("w", [p.WaitKeys("b", 1, ["b1"])]))
    for steal in _steals(out):  # the blocked-worker steal: nowhere to go, so handed back
        out = sched.handle(MessagesReceived("w", [p.TasksReturned(steal.keys, steal.run_ids)]))
    fails = [c.message for c in out if type(c) is Send and type(c.message) is p.WaitFailed]
    assert len(fails) == 1 and sorted(fails[0].run_keys) == ["a", "b"], out
    assert fails[0].run_ids == [1, 1]


def test_a_child_can_start_before_its_async_parents_next_submit():
    """Found by the fuzz profile (``test_real_cluster_outcome_is_reachable_in_simulator``):
    on 1 worker x 2 slots, an async root with two slot-holding children that each wait on
    a leaf finished on the real cluster (value 5), while the simulator reached only a
    deadlock under every schedule. On a worker a sync child placed in a free slot starts
    on its thread at once and can submit its own, deeper child before the async parent's
    next submit; that grandchild then takes the slot the parent gives back. The simulator
    submitted an async run's children and gave its slot back in one step; its submits
    are separate steps now (``ops.ops_for``)."""
    program = Program(wait=Wait.ASYNC, children=(Program(children=(Program(),)),
                                                  Program(children=(Program(),))))
    shape = ClusterShape(workers=1, slots=2)
    reached = {o.summary() for o in outcomes_under(program, shape, standard_choosers(16))}
    assert ("value", 5) in reached, reached
