"""WorkerState: the slot ledger, driven directly."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trioflow import protocol as p
from trioflow.core import worker as w
from trioflow.core.events import Match
from trioflow.errors import InvalidTransition


def spec(key, prio=0, run_id=1):
    return p.ComputeTask(key, run_id, "f", b"", [0, 0, prio])


def run(key):
    """A pattern for the LocalRun of ``key`` (runs compare by identity)."""
    return Match(w.LocalRun, key=key)


def test_start_up_to_nthreads_in_priority_order():
    ws = w.WorkerState(2)
    assert ws.task_assigned(spec("c", 3), False) == [w.StartRun.match(run=run("c"))]
    assert ws.task_assigned(spec("b", 2), False) == [w.StartRun.match(run=run("b"))]
    ws.task_assigned(spec("z", 9), False)
    ws.task_assigned(spec("a", 1), False)
    run_c = ws.runs["c"]
    cmds = ws.run_ended(run_c, "report")
    assert cmds == [w.ReleaseSlot(run_c), w.SendMessage("report"), w.StartRun(ws.runs["a"])]
    ws.check()


def test_secede_frees_slot_and_rejoiners_go_first():
    ws = w.WorkerState(1)
    ws.task_assigned(spec("a"), False)
    ws.task_assigned(spec("b"), False)
    ws.task_assigned(spec("c"), False)
    a = ws.runs["a"]
    cmds = ws.secede(a)
    assert cmds == [w.ReleaseSlot(a), w.SendMessage(p.Seceded("a", 1)), w.StartRun.match(run=run("b"))]
    cmds = ws.rejoin(a)  # no free slot: asks, waits
    assert cmds == [w.SendMessage(p.RejoinRequested("a", 1))]
    cmds = ws.run_ended(ws.runs["b"], "done-b")
    # the freed slot goes to the rejoiner, not to the queued c
    assert cmds[:3] == [w.ReleaseSlot.match(run=run("b")), w.SendMessage("done-b"), w.GrantRejoin(a)]
    assert ws.runs["c"].state is w.RunState.QUEUED
    ws.check()


def test_bad_transitions_raise():
    ws = w.WorkerState(1)
    ws.task_assigned(spec("a"), False)
    a = ws.runs["a"]
    with pytest.raises(InvalidTransition):
        ws.rejoin(a)
    ws.secede(a)
    with pytest.raises(InvalidTransition):
        ws.secede(a)
    with pytest.raises(ValueError, match="nthreads must be >= 1, got 0"):
        w.WorkerState(0)


def test_steal_returns_only_unstarted_runs():
    ws = w.WorkerState(1)
    ws.task_assigned(spec("a"), False)
    ws.task_assigned(spec("b"), False)
    cmds = ws.steal(["a", "b", "gone"], [1, 1, 1])
    assert cmds == [w.SendMessage(p.TasksReturned(["b"], [1]))]
    assert list(ws.runs) == ["a"]


def test_hand_over_passes_the_slot_to_the_best_queued_run():
    ws = w.WorkerState(1)
    ws.task_assigned(spec("a"), False)
    ws.task_assigned(spec("late", 5), False)
    ws.task_assigned(spec("best", 1), False)
    a = ws.runs["a"]
    nxt, cmds = ws.hand_over(a, "done-a", lambda run: True)
    assert nxt is ws.runs["best"] and nxt.state is w.RunState.RUNNING
    assert cmds == [w.SendMessage("done-a"), w.PassSlot(a, nxt)]
    assert "a" not in ws.runs and ws.holding == 1
    ws.check()


def test_hand_over_declines_and_changes_nothing():
    ws = w.WorkerState(1)
    ws.task_assigned(spec("a"), False)
    a = ws.runs["a"]
    assert ws.hand_over(a, "r", lambda run: True) == (None, [])  # nothing queued
    ws.task_assigned(spec("b"), False)
    assert ws.hand_over(a, "r", lambda run: False) == (None, [])  # not allowed to take it
    assert ws.runs["b"].state is w.RunState.QUEUED
    # a rejoiner waits: the slot must go to it, through run_ended
    ws.task_assigned(spec("c"), False)
    ws.secede(a)  # b starts
    ws.rejoin(a)
    b = ws.runs["b"]
    assert ws.hand_over(b, "r", lambda run: True) == (None, [])
    assert ws.run_ended(b, "r")[2] == w.GrantRejoin(a)
    # a seceded run has no slot to pass
    ws.secede(a)
    assert ws.hand_over(a, "r", lambda run: True) == (None, [])
    ws.check()


def test_a_run_ending_on_its_thread_passes_the_slot_to_the_first_sync_rejoiner():
    ws = w.WorkerState(1)
    for key in "abcq":
        ws.task_assigned(spec(key), False)
    a, b, c = ws.runs["a"], ws.runs["b"], ws.runs["c"]
    ws.secede(a)  # b starts
    ws.secede(b)  # c starts
    ws.rejoin(a)
    ws.rejoin(b)
    assert ws.hand_over(c, "done-c", lambda run: True) == (None, [])  # rejoiners first
    assert ws.pass_to_rejoiner(c, "done-c", lambda run: False) == (None, [])  # not allowed
    nxt, cmds = ws.pass_to_rejoiner(c, "done-c", lambda run: True)
    assert nxt is a and a.state is w.RunState.RUNNING  # the oldest rejoiner
    # what run_ended then the GrantRejoin of _fill would say, with the token passed on
    assert cmds == [w.SendMessage("done-c"), w.PassSlot(c, a), w.SendMessage(p.Rejoined("a", 1))]
    assert "c" not in ws.runs and ws.holding == 1 and b.state is w.RunState.REJOINING
    assert ws.runs["q"].state is w.RunState.QUEUED
    ws.check()
    sink = RecordingSink()
    w.execute(cmds, sink)
    assert sink.calls == [("send", "str"), ("release", "c"), ("acquire", "a"), ("send", "Rejoined")]


def test_passing_to_a_rejoiner_declines_and_changes_nothing():
    ws = w.WorkerState(1)
    ws.task_assigned(spec("a"), False)
    ws.task_assigned(spec("b"), False)
    a = ws.runs["a"]
    assert ws.pass_to_rejoiner(a, "r", lambda run: True) == (None, [])  # nobody rejoins
    ws.secede(a)  # b starts
    b = ws.runs["b"]
    ws.rejoin(a)
    ws.secede(b)  # (the slot it gave back went to the rejoiner a)
    assert ws.pass_to_rejoiner(b, "r", lambda run: True) == (None, [])  # b holds no slot
    ws.check()


@given(st.integers(1, 4), st.lists(st.tuples(st.sampled_from("asSrehpEul"), st.integers(0, 7)),
                                   max_size=60))
def test_ledger_never_oversubscribes(nthreads, ops):
    """Random assign/secede/rejoin/end sequences, with slots kept for seceded runs and
    their clock, keep holding == running and holding + kept <= nthreads."""
    ws = w.WorkerState(nthreads)
    n = 0
    for op, i in ops:
        runs = list(ws.runs.values())
        if op == "a":
            n += 1
            ws.task_assigned(spec(f"t{n}", i), False)
        elif op == "l":
            ws.lapse(everything=i % 2 == 0)
        elif runs:
            run = runs[i % len(runs)]
            seceded = [r for r in runs if r.state is w.RunState.SECEDED and r is not run]
            if op in "sS" and run.state is w.RunState.RUNNING:
                ws.secede(run, reserve=op == "S")
            elif op == "u":
                ws.unreserve(run)
            elif op == "E" and run.state is w.RunState.RUNNING and seceded:
                ws.run_ended(run, "r", reserve_for=seceded[i % len(seceded)])
            elif op == "r" and run.state is w.RunState.SECEDED:
                ws.rejoin(run)
            elif op == "e" and run.state in (w.RunState.RUNNING, w.RunState.SECEDED):
                ws.run_ended(run, "r")
            elif op == "h" and run.state is w.RunState.RUNNING:
                allowed = i % 2 == 0
                if ws.hand_over(run, "r", lambda r, allowed=allowed: allowed)[0] is None:
                    ws.run_ended(run, "r")
            elif op == "p" and run.state is w.RunState.RUNNING:
                allowed = i % 2 == 0
                if ws.pass_to_rejoiner(run, "r", lambda r, allowed=allowed: allowed)[0] is None:
                    ws.run_ended(run, "r")
        ws.check()
        queued = sum(r.state is w.RunState.QUEUED for r in ws.runs.values())
        rejoining = sum(r.state is w.RunState.REJOINING for r in ws.runs.values())
        # queued work waits only while every slot is held or kept, rejoiners only while
        # every slot is held (they go first, even into a kept slot)
        assert queued == 0 or ws.holding + ws.reserved == nthreads
        assert rejoining == 0 or ws.holding == nthreads


class RecordingSink:
    """A CommandSink that records what the shell is asked to do."""

    def __init__(self):
        self.calls = []

    def send_message(self, message):
        self.calls.append(("send", type(message).__name__))

    def acquire_slot(self, run):
        self.calls.append(("acquire", run.key))

    def release_slot(self, run):
        self.calls.append(("release", run.key))

    def start_run(self, run):
        self.calls.append(("start", run.key))

    def wake_rejoin(self, run):
        self.calls.append(("wake", run.key))

    def fetch_inputs(self, run):
        self.calls.append(("fetch", run.key))


def test_execute_takes_a_token_before_starting_and_passes_it_on_a_hand_over():
    ws = w.WorkerState(1)
    sink = RecordingSink()
    w.execute(ws.task_assigned(spec("a"), False), sink)
    w.execute(ws.task_assigned(spec("b"), False), sink)
    nxt, cmds = ws.hand_over(ws.runs["a"], p.TaskErred("a", 1, b"", "E", ""), w.thread_may_take)
    w.execute(cmds, sink)
    assert nxt is ws.runs["b"]
    assert sink.calls == [("acquire", "a"), ("start", "a"), ("send", "TaskErred"),
                          ("release", "a"), ("acquire", "b")]


def test_execute_fails_loudly_on_an_unknown_command():
    with pytest.raises(TypeError, match="unknown ledger command"):
        w.execute([object()], RecordingSink())


def test_async_runs_are_never_taken_by_a_thread():
    assert w.thread_may_take(w.LocalRun("a", 1, spec("a"), (0,)))
    async_spec = p.ComputeTask("b", 1, "f", b"", [0, 0, 0], is_async=True)
    assert not w.thread_may_take(w.LocalRun("b", 1, async_spec, (0,)))


# ------------------------------------------------------------------ children placed here


def child(key, depth=1, prio=0):
    msg = p.TaskPlaced(key, 1, "f", b"", "parent", False, 0, prio)
    return w.placed_spec(msg, depth), msg


def test_a_placed_child_is_reported_before_it_can_start():
    ws = w.WorkerState(1)
    ws.task_assigned(spec("parent"), False)
    parent = ws.runs["parent"]
    ws.secede(parent)
    cmds = ws.task_placed(*child("k"))
    assert cmds == [w.SendMessage(child("k")[1]), w.StartRun.match(run=run("k"))]
    assert ws.runs["k"].run_id == 1 and ws.queued == 0
    ws.check()


def test_placed_children_go_before_assigned_runs_of_their_depth_and_after_deeper_ones():
    ws = w.WorkerState(1)
    ws.task_assigned(spec("parent"), False)
    ws.task_assigned(p.ComputeTask("same", 1, "f", b"", [0, -1, 5]), False)
    ws.task_assigned(p.ComputeTask("deeper", 1, "f", b"", [0, -2, 9]), False)
    ws.task_placed(*child("k1"))
    ws.task_placed(*child("k2"))
    order = []
    current = ws.runs["parent"]
    while True:
        cmds = ws.run_ended(current, "done")
        started = [c.run for c in cmds if type(c) is w.StartRun]
        if not started:
            break
        current = started[0]
        order.append(current.key)
    assert order == ["deeper", "k1", "k2", "same"]
    ws.check()


def test_placing_is_declined_at_the_limit_and_while_draining():
    ws = w.WorkerState(1, local_limit=2)
    ws.task_assigned(spec("parent"), False)  # running: the children queue behind it
    assert ws.task_placed(*child("k1")) is not None
    assert ws.task_placed(*child("k2")) is not None
    assert ws.task_placed(*child("k3")) is None and "k3" not in ws.runs
    ws.steal(["k1"], [1])
    assert ws.queued == 1 and ws.task_placed(*child("k3")) is not None
    ws.closing = True
    assert ws.task_placed(*child("k4")) is None
    ws.check()


def test_a_steal_that_races_the_start_of_a_placed_child_gets_nothing():
    ws = w.WorkerState(1)
    ws.task_assigned(spec("a"), False)
    ws.task_placed(*child("k"))
    a = ws.runs["a"]
    nxt, _ = ws.hand_over(a, "done-a", w.thread_may_take)  # a's thread takes k at once
    assert nxt is ws.runs["k"] and nxt.state is w.RunState.RUNNING
    assert ws.steal(["k"], [1]) == [w.SendMessage(p.TasksReturned([], []))]
    ws.check()
    # the other order: the steal comes first and k never starts here
    ws2 = w.WorkerState(1)
    ws2.task_assigned(spec("a"), False)
    ws2.task_placed(*child("k"))
    assert ws2.steal(["k"], [1]) == [w.SendMessage(p.TasksReturned(["k"], [1]))]
    assert ws2.hand_over(ws2.runs["a"], "done-a", w.thread_may_take) == (None, [])
    ws2.check()


def test_the_fallback_submit_says_what_the_placement_said():
    spec_, msg = child("k", prio=3)
    sub = w.submit_equivalent(msg)
    assert (sub.key, sub.fn_id, sub.parent, sub.priority, sub.deps) == ("k", "f", "parent", 3, [])
    assert spec_.priority == [-3, -1, 0] and spec_.run_id == 1


# ---------------------------------------------------------------------- kept slots


def test_a_slot_given_back_with_reserve_is_kept_until_the_run_waits():
    ws = w.WorkerState(1)
    ws.task_assigned(spec("parent"), False)
    ws.task_assigned(spec("other", 5), False)
    parent = ws.runs["parent"]
    # the scheduler hears Seceded (the slot is free), but nothing queued starts in it
    assert ws.secede(parent, reserve=True) == [w.ReleaseSlot(parent),
                                               w.SendMessage(p.Seceded("parent", 1))]
    assert ws.task_placed(*child("k", depth=1)) == [w.SendMessage.match()]
    assert ws.runs["k"].state is w.RunState.QUEUED and ws.reserved == 1
    ws.check()
    # its wait begins: the slot goes to the best queued run, its child
    assert ws.unreserve(parent) == [w.StartRun(ws.runs["k"])]
    assert ws.reserved == 0 and ws.unreserve(parent) == []
    ws.check()


def test_a_run_that_rejoins_takes_its_kept_slot_without_asking():
    ws = w.WorkerState(1)
    ws.task_assigned(spec("parent"), False)
    ws.task_assigned(spec("other"), False)
    parent = ws.runs["parent"]
    ws.secede(parent, reserve=True)
    # no RejoinRequested: a slot was free (kept for it), and it is granted at once
    assert ws.rejoin(parent) == [w.GrantRejoin(parent), w.SendMessage(p.Rejoined("parent", 1))]
    assert ws.runs["other"].state is w.RunState.QUEUED
    ws.check()


def test_a_childs_end_keeps_the_slot_for_the_parent_it_wakes():
    ws = w.WorkerState(1)
    ws.task_assigned(spec("parent"), False)
    parent = ws.runs["parent"]
    ws.secede(parent)
    ws.task_placed(*child("k", depth=1))  # starts in the free slot
    ws.task_assigned(spec("next", 9), False)
    k = ws.runs["k"]
    assert ws.run_ended(k, "done-k", reserve_for=parent) == [w.ReleaseSlot(k),
                                                              w.SendMessage("done-k")]
    assert ws.runs["next"].state is w.RunState.QUEUED and parent.reserving
    ws.check()
    assert ws.rejoin(parent)[0] == w.GrantRejoin(parent)  # ... and it has it back
    ws.check()


def test_runs_waiting_to_rejoin_go_first_even_into_a_kept_slot():
    ws = w.WorkerState(1)
    ws.task_assigned(spec("parent"), False)
    parent = ws.runs["parent"]
    ws.secede(parent)
    ws.task_assigned(spec("r"), False)
    r = ws.runs["r"]
    ws.secede(r)
    ws.task_placed(*child("k", depth=1))
    k = ws.runs["k"]
    assert ws.rejoin(r) == [w.SendMessage(p.RejoinRequested("r", 1))]
    # k's end wakes parent, but r asked first: r gets the slot, nothing is kept
    cmds = ws.run_ended(k, "done-k", reserve_for=parent)
    assert w.GrantRejoin(r) in cmds and not parent.reserving
    ws.check()
    # and a slot kept for a run that secedes goes to a rejoiner that comes later
    ws.secede(r, reserve=True)
    assert r.reserving
    assert ws.rejoin(parent) == [w.GrantRejoin(parent), w.SendMessage(p.Rejoined("parent", 1))]
    assert not r.reserving and ws.reserved == 0
    ws.check()


def test_the_clock_fills_slots_kept_for_longer_than_a_tick():
    ws = w.WorkerState(2)
    ws.task_assigned(spec("a"), False)
    ws.task_assigned(spec("b"), False)
    a, b = ws.runs["a"], ws.runs["b"]
    ws.secede(a, reserve=True)
    ws.task_assigned(spec("q1"), False)
    ws.task_assigned(spec("q2"), False)
    assert ws.lapse() == []  # kept during this tick: still kept
    ws.secede(b, reserve=True)
    # a's slot was kept since before the previous tick: filled; b's is still kept
    assert ws.lapse() == [w.StartRun(ws.runs["q1"])]
    assert not a.reserving and b.reserving
    assert ws.lapse(everything=True) == [w.StartRun(ws.runs["q2"])]
    ws.check()


def test_check_sees_a_kept_slot_count_that_lies():
    ws = w.WorkerState(1)
    ws.task_assigned(spec("a"), False)
    ws.secede(ws.runs["a"], reserve=True)
    ws.reserved = 0
    with pytest.raises(InvalidTransition, match="keeps 0 slots free"):
        ws.check()
