"""The scheduler core driven directly: events in, exact commands out. No trio, no sockets."""

import pytest

from trioflow import protocol as p
from trioflow.core.events import Close, Match, MessagesReceived, PeerJoined, PeerLeft, Send
from trioflow.core.scheduler import Scheduler, TaskStatus


def sent(commands, to=None, kind=None):
    """The messages of ``commands`` (to ``to``, of type ``kind``), to pick fields from;
    to compare whole command lists, use ``Send.match``/``Match`` patterns instead."""
    return [c.message for c in commands if isinstance(c, Send)
            and (to is None or c.to == to) and (kind is None or isinstance(c.message, kind))]


def join(sched, peer, role="client", nthreads=0):
    return sched.handle(PeerJoined(peer, p.Hello(role, peer, [1], "", nthreads, f"ws://{peer}")))


def recv(sched, peer, *messages):
    return sched.handle(MessagesReceived(peer, list(messages)))


def submit(key, deps=(), parent="", fn="f", priority=0):
    return p.SubmitTask(key, fn, b"payload-" + key.encode(), list(deps), parent, False, 0, priority)


def finish(key, run_id=1, inline=b"v"):
    return p.TaskFinished(key, run_id, len(inline or b"xx"), inline, 0.001, "builtins.int")


def with_worker():
    """A scheduler with client "c" (function "f" registered) and a 1-slot worker "w"."""
    s = Scheduler()
    join(s, "c")
    join(s, "w", role="worker", nthreads=1)
    recv(s, "c", p.RegisterFunction("f", b"fn-blob"))
    return s


@pytest.fixture
def sched():
    s = Scheduler()
    join(s, "c")
    recv(s, "c", p.RegisterFunction("f", b"fn-blob"))
    return s


def test_submit_assigns_with_function_first(sched):
    join(sched, "w", "worker", 1)
    out = recv(sched, "c", submit("a"))
    assert out == [
        Send("w", p.Function("f", b"fn-blob")),
        Send("w", p.ComputeTask("a", 1, "f", b"payload-a", [0, 0, 1], [], [], [], False)),
    ]
    # a second task of the same function does not resend it
    out = recv(sched, "c", submit("b"))
    assert out == [Send.match(to="w", message=Match(p.ComputeTask, key="b"))]


def test_finish_forwards_inline_and_frees_on_release(sched):
    join(sched, "w", "worker", 1)
    recv(sched, "c", submit("a"))
    out = recv(sched, "w", finish("a", inline=b"42"))
    assert out == [Send("c", p.KeyFinished("a", 2, b"42", "builtins.int"))]
    assert sched.state.tasks["a"].status is TaskStatus.MEMORY
    out = recv(sched, "c", p.ReleaseKeys(["a"]))
    assert out == [Send("w", p.FreeKeys(["a"]))]
    assert "a" not in sched.state.tasks and not sched.state.workers["w"].has_what


def test_releasing_many_keys_frees_them_in_one_message_per_worker(sched):
    join(sched, "w", "worker", 1)
    join(sched, "v", "worker", 1)
    keys = [f"k{i}" for i in range(6)]
    recv(sched, "c", *[submit(k) for k in keys])
    for k in keys:
        task = sched.state.tasks.get(k)
        if task is not None and task.worker is not None:
            recv(sched, task.worker, finish(k, task.run_id))
    holders = {k: next(iter(sched.state.tasks[k].who_has)) for k in keys}
    assert set(holders.values()) == {"w", "v"}
    out = recv(sched, "c", p.ReleaseKeys(keys))
    frees = [c for c in out if isinstance(c, Send) and isinstance(c.message, p.FreeKeys)]
    assert sorted(c.to for c in frees) == ["v", "w"]
    for c in frees:
        assert c.message.keys == [k for k in keys if holders[k] == c.to]


def test_a_free_does_not_jump_over_another_message_to_the_same_peer(sched):
    join(sched, "w", "worker", 1)
    sched.state.send("w", p.FreeKeys(["a"]))
    sched.state.send("w", p.StealTasks(["x"], [1]))
    sched.state.send("w", p.FreeKeys(["b"]))
    sched.state.send("w", p.FreeKeys(["c"]))
    out = recv(sched, "c")
    assert sent(out, "w") == [p.FreeKeys(["a"]), p.StealTasks(["x"], [1]), p.FreeKeys(["b", "c"])]


def test_dependency_waits_then_gets_inline_value(sched):
    join(sched, "w", "worker", 1)
    recv(sched, "c", submit("a"), submit("b", deps=["a"]))
    assert sched.state.tasks["b"].status is TaskStatus.WAITING
    out = recv(sched, "w", finish("a", inline=b"A"))
    compute = sent(out, kind=p.ComputeTask)
    assert compute == [p.ComputeTask("b", 1, "f", b"payload-b", [0, 0, 2], ["a"], [None], [""],
                                     False)]  # same worker: no copy, no fetch
    # the dependency stays while wanted by the client, even after b finishes
    recv(sched, "w", finish("b"))
    assert "a" in sched.state.tasks


def test_dependency_on_other_worker_is_fetched_from_holder(sched):
    s = Scheduler(inline_limit=0)
    join(s, "c")
    recv(s, "c", p.RegisterFunction("f", b"fn"))
    join(s, "w1", "worker", 1)
    recv(s, "c", submit("a"))
    recv(s, "w1", finish("a", inline=None))
    join(s, "w2", "worker", 1)
    # w1 busy with a long task, so b must go to w2 and fetch a from w1
    recv(s, "c", submit("long"))
    s.state.durations["f"] = 10.0  # long tasks: no prefetch
    out = recv(s, "c", submit("b", deps=["a"]))
    assert out[-1] == Send.match(
        to="w2", message=Match(p.ComputeTask, key="b", dep_holders=["ws://w1"]))


def test_errors_propagate_to_dependents(sched):
    join(sched, "w", "worker", 1)
    recv(sched, "c", submit("a"), submit("b", deps=["a"]))
    out = recv(sched, "w", p.TaskErred("a", 1, b"exc", "builtins.ValueError", "bad", "tb"))
    errs = sent(out, kind=p.KeyErred)
    assert [(e.key, e.type_name, e.text) for e in errs] == [
        ("a", "builtins.ValueError", "bad"), ("b", "builtins.ValueError", "bad")]


def test_retries_rerun(sched):
    join(sched, "w", "worker", 1)
    recv(sched, "c", p.SubmitTask("a", "f", b"x", [], "", False, 1))
    out = recv(sched, "w", p.TaskErred("a", 1, b"", "E", "once", ""))
    assert out == [Send.match(to="w", message=Match(p.ComputeTask, key="a", run_id=2))]
    out = recv(sched, "w", p.TaskErred("a", 2, b"", "E", "twice", ""))
    assert out == [Send.match(to="c", message=Match(p.KeyErred, key="a", text="twice"))]


def test_children_before_older_roots(sched):
    join(sched, "w", "worker", 1)
    sched.state.durations["f"] = 10.0  # no prefetch: one task at a time
    recv(sched, "c", submit("root1"), submit("root2"))
    # root1 runs and submits a child: the child outranks root2
    recv(sched, "w", p.RegisterFunction("f", b"fn-blob"), submit("child", parent="root1"))
    recv(sched, "w", p.Seceded("root1", 1))  # frees the slot
    assert sched.state.workers["w"].processing.keys() == {"root1", "child"}


def test_secede_lets_one_more_task_in(sched):
    join(sched, "w", "worker", 1)
    sched.state.durations["f"] = 10.0
    recv(sched, "c", submit("a"), submit("b"))
    assert sched.state.tasks["b"].status is TaskStatus.QUEUED
    out = recv(sched, "w", p.Seceded("a", 1))
    assert out == [Send.match(to="w", message=Match(p.ComputeTask, key="b"))]
    recv(sched, "w", p.Rejoined("a", 1))
    assert sched.state.workers["w"].occupying == 2  # a rejoined on top of b: over by one, briefly


def deadlock_setup(nslots=1, nworkers=1):
    s = Scheduler()
    join(s, "c")
    recv(s, "c", p.RegisterFunction("f", b"fn"))
    for i in range(nworkers):
        join(s, f"w{i}", "worker", nslots)
    s.state.durations["f"] = 10.0
    return s


def test_secede_less_wait_on_one_slot_is_a_deadlock():
    s = deadlock_setup()
    recv(s, "c", submit("parent"))
    recv(s, "w0", p.RegisterFunction("f", b"fn"), submit("child", parent="parent"))
    out = recv(s, "w0", p.WaitKeys("parent", 1, ["child"]))
    fails = sent(out, kind=p.WaitFailed)
    assert len(fails) == 1 and fails[0].run_keys == ["parent"] and fails[0].kind == "deadlock"
    assert "task parent holds a slot on worker 'w0'" in fails[0].report
    assert "child (queued: no free slot)" in fails[0].report
    assert "secede()" in fails[0].report and len(s.state.deadlocks) == 1
    # the parent's wait ends; its slot is no longer counted as blocked
    assert s.state.workers["w0"].blocked == 0


def test_no_deadlock_while_a_slot_can_still_free_up():
    s = deadlock_setup(nslots=2)
    recv(s, "c", submit("parent"))
    recv(s, "w0", p.RegisterFunction("f", b"fn"), submit("child", parent="parent"))
    out = recv(s, "w0", p.WaitKeys("parent", 1, ["child"]))
    assert not sent(out, kind=p.WaitFailed)
    assert s.state.tasks["child"].status is TaskStatus.PROCESSING  # runs in the other slot


def test_no_deadlock_when_waiting_with_a_timeout_or_seceded():
    s = deadlock_setup()
    recv(s, "c", submit("parent"))
    recv(s, "w0", p.RegisterFunction("f", b"fn"), submit("child", parent="parent"))
    assert not sent(recv(s, "w0", p.WaitKeys("parent", 1, ["child"], True)), kind=p.WaitFailed)
    s2 = deadlock_setup()
    recv(s2, "c", submit("parent"))
    recv(s2, "w0", p.RegisterFunction("f", b"fn"), submit("child", parent="parent"))
    out = recv(s2, "w0", p.Seceded("parent", 1), p.WaitKeys("parent", 1, ["child"]))
    assert not sent(out, kind=p.WaitFailed)
    assert s2.state.tasks["child"].status is TaskStatus.PROCESSING


def test_deadlock_across_two_workers_and_a_late_join_does_not_undo_the_report():
    s = deadlock_setup(nworkers=2)
    recv(s, "c", submit("a"), submit("b"))
    recv(s, "w0", p.RegisterFunction("f", b"fn"), submit("a1", parent="a"))
    assert not sent(recv(s, "w0", p.WaitKeys("a", 1, ["a1"])), kind=p.WaitFailed)
    recv(s, "w1", p.RegisterFunction("f", b"fn"), submit("b1", parent="b"))
    out = recv(s, "w1", p.WaitKeys("b", 1, ["b1"]))
    assert sorted(k for f in sent(out, kind=p.WaitFailed) for k in f.run_keys) == ["a", "b"]


def test_blocked_worker_gives_back_queued_work():
    s = Scheduler()
    join(s, "c")
    recv(s, "c", p.RegisterFunction("f", b"fn"))
    join(s, "w0", "worker", 1)
    recv(s, "c", submit("a"), submit("b"))  # unknown duration: one queued behind a
    assert s.state.workers["w0"].processing.keys() == {"a", "b"}
    recv(s, "w0", p.RegisterFunction("f", b"fn"), submit("a1", parent="a"))
    out = recv(s, "w0", p.WaitKeys("a", 1, ["a1"]))
    assert sent(out, kind=p.StealTasks) == [p.StealTasks(["b"], [1])]
    assert not sent(out, kind=p.WaitFailed)  # a steal is in flight: not decided yet
    out = recv(s, "w0", p.TasksReturned(["b"], [1]))
    assert sent(out, kind=p.WaitFailed)  # now nothing can run: a real deadlock


def test_worker_loss_reruns_then_kills():
    s = Scheduler(allowed_failures=2)
    join(s, "c")
    recv(s, "c", p.RegisterFunction("f", b"fn"))
    join(s, "w0", "worker", 1)
    recv(s, "c", submit("a"))
    s.handle(PeerLeft("w0"))
    assert s.state.tasks["a"].status is TaskStatus.QUEUED
    join(s, "w1", "worker", 1)
    assert s.state.tasks["a"].worker == "w1"
    out = s.handle(PeerLeft("w1"))
    err = sent(out, kind=p.KeyErred)[0]
    assert err.kind == "killed-worker" and err.workers == ["w0", "w1"]


def test_lost_result_is_recomputed_if_wanted():
    s = Scheduler(inline_limit=0)
    join(s, "c")
    recv(s, "c", p.RegisterFunction("f", b"fn"))
    join(s, "w0", "worker", 1)
    recv(s, "c", submit("a"))
    recv(s, "w0", finish("a", inline=None))
    join(s, "w1", "worker", 1)
    out = s.handle(PeerLeft("w0"))
    assert [m.key for m in sent(out, to="w1", kind=p.ComputeTask)] == ["a"]


def test_client_leaving_releases_everything(sched):
    join(sched, "w", "worker", 1)
    recv(sched, "c", submit("a"), submit("b"))
    recv(sched, "w", finish("a"))
    out = sched.handle(PeerLeft("c"))
    assert out == [Send("w", p.FreeKeys(["a"]))]
    assert list(sched.state.tasks) == ["b"]  # b is still running; dropped when it ends
    recv(sched, "w", finish("b"))
    assert sched.state.tasks == {}


def test_cancel_queued_task(sched):
    recv(sched, "c", submit("a"))  # no workers: stays queued
    out = recv(sched, "c", p.CancelKeys(["a"]))
    assert out == [Send("c", p.KeyErred("a", "cancelled", b"", "trioflow.errors.CancelledError",
                                         "cancelled"))]


def test_stale_results_are_dropped(sched):
    join(sched, "w", "worker", 1)
    recv(sched, "c", submit("a"))
    assert recv(sched, "w", finish("a", run_id=7)) == []
    assert sched.state.tasks["a"].status is TaskStatus.PROCESSING
    assert recv(sched, "w", finish("zzz")) == [Send("w", p.FreeKeys(["zzz"]))]


def test_unknown_function_closes_the_peer(sched):
    out = recv(sched, "c", p.SubmitTask("x", "nope", b"", []))
    assert out[0] == Close.match(to="c", code=p.CLOSE_PROTOCOL_ERROR)


def test_lost_input_and_its_dependent_on_the_same_worker():
    # a's result (too big to keep inline) and b = f(a)'s run were both on w0
    s = Scheduler(inline_limit=0)
    join(s, "c")
    recv(s, "c", p.RegisterFunction("f", b"fn"))
    join(s, "w0", "worker", 1)
    recv(s, "c", submit("b0"), submit("a"), submit("b", deps=["a"]))
    recv(s, "w0", finish("b0", inline=None), finish("a", inline=None))
    assert s.state.tasks["b"].worker == "w0"
    join(s, "w1", "worker", 1)
    out = s.handle(PeerLeft("w0"))  # must not place b with an input nobody holds
    # both lost results are recomputed (w1 takes one and prefetches the other)
    assert {m.key for m in sent(out, to="w1", kind=p.ComputeTask)} == {"a", "b0"}
    assert s.state.tasks["b"].status is TaskStatus.WAITING and s.state.tasks["b"].waiting_on == {"a"}
    recv(s, "w1", finish("a", 2, inline=None))
    assert s.state.tasks["b"].worker == "w1" and s.state.tasks["b"].run_id == 2


def test_run_once_result_is_not_recomputed():
    s = Scheduler(inline_limit=0)
    join(s, "c")
    recv(s, "c", p.RegisterFunction("f", b"fn"))
    join(s, "w0", "worker", 1)
    recv(s, "c", p.SubmitTask("a", "f", b"", [], "", False, 0, 0, [], True))
    recv(s, "w0", finish("a", inline=None))
    join(s, "w1", "worker", 1)
    out = s.handle(PeerLeft("w0"))
    assert not sent(out, kind=p.ComputeTask)
    (err,) = sent(out, kind=p.KeyErred)
    assert err.kind == "lost" and "run_once" in err.text


def test_restricted_task_waits_for_its_busy_worker_not_for_a_new_one():
    s = deadlock_setup(nworkers=2)
    recv(s, "c", submit("long"))
    assert s.state.tasks["long"].worker == "w0"
    recv(s, "c", p.SubmitTask("pinned", "f", b"", [], "", False, 0, 0, ["w0"]))
    assert s.state.tasks["pinned"].worker is None  # w0 is full; w1 is not allowed
    out = recv(s, "w0", finish("long"))
    assert [m.key for m in sent(out, to="w0", kind=p.ComputeTask)] == ["pinned"]


def _run_batch(s, n, *, deps_every=0, release_batch=500):
    """Submit ``n`` tasks in frames, let w0/w1 finish them all, release them in batches.

    Task ``i`` depends on task ``i - 1`` when ``deps_every`` divides ``i``. Returns the
    FreeKeys messages the workers got.
    """
    inbox = {"w0": [], "w1": []}
    frees = []

    def route(out):
        for cmd in out:
            if cmd.to in inbox:
                inbox[cmd.to].append(cmd.message)

    for start in range(0, n, 250):
        frame = [submit(f"t{i}", deps=[f"t{i - 1}"] if deps_every and i % deps_every == 0
                        and i > start else [])
                 for i in range(start, min(n, start + 250))]
        route(recv(s, "c", *frame))
    # a queued task holds none of the per-task sets that are allocated on first use
    # (but the one another task depends on has its ``dependents``)
    queued = [t for t in s.state.tasks.values() if t.status is TaskStatus.QUEUED]
    assert queued and all(t._waiting_on is None and t._waiters is None and t._who_has is None
                          and t._deaths is None for t in queued)
    needed = {d for t in s.state.tasks.values() for d in t.deps}
    assert all((t._dependents is None) == (t.key not in needed) for t in queued)
    finished = []
    while len(finished) < n:
        progressed = False
        for w, msgs in inbox.items():
            runs = [(m.key, m.run_id) for m in msgs if isinstance(m, p.ComputeTask)]
            frees += [m for m in msgs if isinstance(m, p.FreeKeys)]
            msgs.clear()
            if runs:
                progressed = True
                finished += [k for k, _ in runs]
                route(recv(s, w, *[finish(k, r) for k, r in runs]))
        while len(finished) >= release_batch or (finished and not progressed):
            batch, finished[:release_batch] = finished[:release_batch], []
            n -= len(batch)
            route(recv(s, "c", p.ReleaseKeys(batch)))
        assert progressed or not finished
    for msgs in inbox.values():
        frees += [m for m in msgs if isinstance(m, p.FreeKeys)]
    return frees


def test_nothing_is_left_after_a_batch_is_finished_and_released(sched):
    """Structural: every container of the state is empty (or bounded) after a big batch."""
    import sys

    join(sched, "w0", "worker", 1)
    join(sched, "w1", "worker", 1)
    # above machine.COMPACT_MIN, so the key containers are rebuilt on the way down
    frees = _run_batch(sched, 6000, deps_every=7)
    assert sched.state.tasks == {}
    assert sched.state.ready == [] and sched.state.unplaceable == {} and sched.state.seceded == {}
    assert sched.state.scatters == [] and sched.state.deadlocks == [] and sched.state._freeing == {}
    assert all(not w.processing and not w.has_what and w.occupying == 0 and w.blocked == 0
               for w in sched.state.workers.values())
    assert all(not peer.wants for peer in sched.state.peers.values())
    assert list(sched.state.functions) == ["f"] and list(sched.state.durations) == ["f"]
    # dict and set tables do not shrink by themselves: they were rebuilt, so they are
    # sized for what was left at the last rebuild, not for the 6000 keys of the peak
    assert sys.getsizeof(sched.state.tasks) < sys.getsizeof({i: i for i in range(2000)})
    assert sys.getsizeof(sched.state.peers["c"].wants) < sys.getsizeof(set(range(2000)))
    # a release of 500 keys frees them with one FreeKeys per holder, not one per key
    # (plus the inputs freed when their last dependent finishes, in the workers' frames)
    assert sum(len(m.keys) for m in frees) == 6000
    assert len(frees) < 6000 // 100


def test_frees_of_one_event_keep_their_order_with_other_messages(sched):
    join(sched, "w", "worker", 1)
    recv(sched, "c", submit("a"), submit("b"))
    recv(sched, "w", finish("a"), finish("b"))
    recv(sched, "c", submit("x"))
    assert sched.state.tasks["x"].worker == "w"
    # release a, cancel x (asks w for it back), release b
    out = recv(sched, "c", p.ReleaseKeys(["a"]), p.CancelKeys(["x"]), p.ReleaseKeys(["b"]))
    assert [c for c in out if c.to == "w"] == [
        Send("w", p.FreeKeys(["a"])), Send.match(to="w", message=Match(p.StealTasks, keys=["x"])),
        Send("w", p.FreeKeys(["b"]))]
    # without a message in between, they are one
    recv(sched, "c", submit("y"), submit("z"))
    recv(sched, "w", finish("x"), finish("y"), finish("z"))
    out = recv(sched, "c", p.ReleaseKeys(["y"]), p.ReleaseKeys(["z"]))
    assert [c for c in out if c.to == "w"] == [Send("w", p.FreeKeys(["y", "z"]))]


def test_match_is_a_partial_pattern():
    cmd = Send("w", p.FreeKeys(["a"]))
    assert cmd == Send.match(to="w")
    assert cmd == Send.match(message=Match(p.FreeKeys, keys=["a"]))
    assert cmd != Send.match(to="x")
    assert cmd != Send.match(message=Match(p.StealTasks))
    assert cmd != Close.match(to="w")
    assert repr(Send.match(to="w")) == "Send.match(to='w')"


# --------------------------------------------------------------- children placed on their worker


def placed(key, parent="", run_id=1, fn="f"):
    return p.TaskPlaced(key, run_id, fn, b"payload-" + key.encode(), parent)


def _parent_running_on_w(sched):
    join(sched, "w", "worker", 1)
    recv(sched, "c", submit("root"))
    recv(sched, "w", p.Seceded("root", 1))  # gives its slot to the child it places
    return sched


def test_a_placed_child_is_recorded_as_assigned_without_a_message(sched):
    _parent_running_on_w(sched)
    out = recv(sched, "w", p.RegisterFunction("f", b"fn-blob"), placed("k", "root"))
    assert out == []  # no ComputeTask: the worker queued it already
    task, worker = sched.state.tasks["k"], sched.state.workers["w"]
    assert task.status is TaskStatus.PROCESSING and task.worker == "w" and task.run_id == 1
    assert task.depth == 1 and task.priority[:2] == (0, -1)
    assert worker.processing["k"] is task and worker.occupying == 1 and worker.placed == 1
    assert task.wanted_by == {"w"} and "f" in worker.fn_ids
    # its result goes to every wanter but the worker that ran it (its session knew first)
    recv(sched, "c", p.AcquireKeys(["k"]))
    out = recv(sched, "w", finish("k", inline=b"7"))
    assert out == [Send("c", p.KeyFinished("k", 1, b"7", "builtins.int"))]


def test_a_stolen_placed_child_runs_elsewhere_as_run_two(sched):
    _parent_running_on_w(sched)
    recv(sched, "w", placed("j", "root"), placed("k", "root"))
    recv(sched, "w", p.WaitKeys("root", 1, ["j", "k"], False, False))
    out = join(sched, "v", "worker", 1)  # an idle worker: w gives back what it has queued
    (steal,) = sent(out, "w", p.StealTasks)
    # one of the two has started on w's slot (which, the scheduler cannot tell): it asks
    # for both, newest first, and w returns the one it had not started
    assert steal.keys == ["k", "j"] and steal.run_ids == [1, 1]
    out = recv(sched, "w", p.TasksReturned(["k"], [1]))
    assert sent(out, "v", p.ComputeTask) == [Match(p.ComputeTask, key="k", run_id=2)]
    # a late report of run 1 from w is dropped; run 2's result reaches the parent's worker
    assert recv(sched, "w", finish("k", 1)) == []
    out = recv(sched, "v", finish("k", 2, inline=b"3"))
    assert Send("w", p.KeyFinished("k", 1, b"3", "builtins.int")) in out


def test_a_placed_child_of_a_lost_worker_is_released_with_its_wanter(sched):
    _parent_running_on_w(sched)
    recv(sched, "w", placed("k", "root"))
    sched.handle(PeerLeft("w", "gone"))
    assert "k" not in sched.state.tasks  # only w's in-task client wanted it
    assert sched.state.tasks["root"].status is TaskStatus.QUEUED  # the parent runs again


@pytest.mark.parametrize("sender, message, why", [
    ("c", placed("k"), "only workers"),
    ("w", placed("root"), "already exists"),
    ("w", placed("k", run_id=2), "must be run 1"),
    ("w", placed("k", fn="g"), "unregistered function"),
])
def test_a_placement_no_correct_worker_sends_closes_the_peer(sched, sender, message, why):
    _parent_running_on_w(sched)
    out = recv(sched, sender, message)
    assert [type(c) for c in out] == [Close] and why in out[0].reason
    assert out[0].code == p.CLOSE_PROTOCOL_ERROR


def test_a_status_request_for_more_workers_waits_for_them_to_join(sched):
    # (how wait_for_workers waits without polling: StatusRequest.min_workers)
    assert sent(recv(sched, "c", p.StatusRequest(1, False, 2)), kind=p.StatusReply) == []
    assert sent(recv(sched, "c", p.StatusRequest(2)), kind=p.StatusReply)[0].request_id == 2
    assert sent(join(sched, "w1", "worker", 1), kind=p.StatusReply) == []  # one of two
    replies = sent(join(sched, "w2", "worker", 1), to="c", kind=p.StatusReply)
    assert [r.request_id for r in replies] == [1]
    assert [w["name"] for w in replies[0].workers] == ["w1", "w2"]
    assert sched.state.status_waits == []
    # enough workers already: answered at once
    assert sent(recv(sched, "c", p.StatusRequest(3, False, 2)), kind=p.StatusReply)


def test_a_waiting_status_request_goes_with_its_peer(sched):
    join(sched, "c2")
    recv(sched, "c", p.StatusRequest(1, False, 1))
    recv(sched, "c2", p.StatusRequest(1, False, 1))
    sched.handle(PeerLeft("c"))
    assert [peer for peer, _ in sched.state.status_waits] == ["c2"]
    out = join(sched, "w", "worker", 1)
    assert [c.to for c in out if isinstance(c, Send) and isinstance(c.message, p.StatusReply)] == ["c2"]
