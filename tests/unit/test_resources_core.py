"""Abstract resources in the scheduler core: placement where they are free, given back
on secede and taken again before rejoin, and the deadlock rule through them."""

import pytest

from trioflow import protocol as p
from trioflow.core.events import PeerJoined
from trioflow.core.resource_spec import check_resources, parse_resources
from trioflow.core.scheduler import Scheduler, TaskStatus
from trioflow.core.validate import check_scheduler

from .test_scheduler_core import join, recv, sent


def gpu_worker(s, peer, nthreads=1, **res):
    names, amounts = list(res), [float(v) for v in res.values()]
    return s.handle(PeerJoined(peer, p.Hello("worker", peer, [1], "", nthreads, f"ws://{peer}",
                                             0, names, amounts)))


def task(key, parent="", **res):
    return p.SubmitTask(key, "f", b"x", [], parent, False, 0, 0, [], False, list(res),
                        [float(v) for v in res.values()])


@pytest.fixture
def s():
    s = Scheduler()
    join(s, "c")
    recv(s, "c", p.RegisterFunction("f", b"fn"))
    s.state.durations["f"] = 10.0  # (no prefetch: one run per slot)
    return s


def test_parse_and_check():
    assert parse_resources("GPU=2, MEM=16e9") == {"GPU": 2.0, "MEM": 16e9}
    assert parse_resources("") == {}
    with pytest.raises(ValueError, match="NAME=AMOUNT"):
        parse_resources("GPU")
    with pytest.raises(ValueError, match="not a number"):
        parse_resources("GPU=two")
    with pytest.raises(ValueError, match=">= 0"):
        check_resources({"GPU": -1})
    with pytest.raises(TypeError, match="must be a number"):
        check_resources({"GPU": "1"})
    with pytest.raises(TypeError, match="mapping"):
        check_resources(["GPU"])


def test_a_task_runs_only_where_its_resources_are_free(s):
    gpu_worker(s, "cpu", nthreads=4)
    gpu_worker(s, "gpu", nthreads=4, GPU=1)
    recv(s, "c", task("a", GPU=1), task("b", GPU=1), task("plain"))
    a, b = s.state.tasks["a"], s.state.tasks["b"]
    assert a.worker == "gpu" and a.holds_resources
    assert b.worker is None and b.key in s.state.unplaceable  # the one GPU is taken
    assert s.state.workers["gpu"].used == {"GPU": 1.0}
    recv(s, "gpu", p.TaskFinished("a", 1, 1, b"1", 0.1, "int"))
    assert b.worker == "gpu" and s.state.workers["gpu"].used == {"GPU": 1.0}
    check_scheduler(s.state)


def test_secede_gives_resources_back_and_rejoin_takes_them_first(s):
    gpu_worker(s, "gpu", nthreads=2, GPU=1)
    recv(s, "c", task("parent", GPU=1))
    recv(s, "gpu", p.RegisterFunction("f", b"fn"), task("child", parent="parent", GPU=1))
    assert s.state.tasks["child"].worker is None
    recv(s, "gpu", p.Seceded("parent", 1))  # gives the GPU back: the child gets it
    child = s.state.tasks["child"]
    assert child.worker == "gpu" and child.holds_resources
    out = recv(s, "gpu", p.PrimitiveRequest(5, "resources", "", "acquire",
                                            run_key="parent", run_id=1))
    assert not sent(out, kind=p.PrimitiveReply)  # waits: the child holds it
    recv(s, "c", task("other", GPU=1))
    out = recv(s, "gpu", p.TaskFinished("child", 1, 1, b"1", 0.1, "int"))
    (reply,) = sent(out, kind=p.PrimitiveReply)
    assert reply.request_id == 5 and reply.status == "ok"  # before the new task
    assert s.state.tasks["parent"].holds_resources
    assert s.state.tasks["other"].worker is None
    check_scheduler(s.state)


def test_a_parent_holding_the_gpu_its_child_needs_is_a_deadlock(s):
    gpu_worker(s, "gpu", nthreads=2, GPU=1)
    recv(s, "c", task("parent", GPU=1))
    recv(s, "gpu", p.RegisterFunction("f", b"fn"), task("child", parent="parent", GPU=1))
    out = recv(s, "gpu", p.WaitKeys("parent", 1, ["child"]))
    (fail,) = sent(out, kind=p.WaitFailed)
    assert fail.run_keys == ["parent"]
    assert "child (needs resources GPU=1, held by parent)" in fail.report
    check_scheduler(s.state)


def test_no_deadlock_while_a_worker_with_the_resource_may_join_or_a_slot_can_run_it(s):
    gpu_worker(s, "cpu", nthreads=2)  # (a free slot: with none, as ever, it is a deadlock)
    recv(s, "c", task("parent"))
    recv(s, "cpu", p.RegisterFunction("f", b"fn"), task("child", parent="parent", GPU=1))
    out = recv(s, "cpu", p.WaitKeys("parent", 1, ["child"]))
    assert not sent(out, kind=p.WaitFailed)  # no worker has a GPU: one may join
    gpu_worker(s, "gpu", nthreads=1, GPU=1)
    assert s.state.tasks["child"].worker == "gpu"
    assert s.state.tasks["child"].status is TaskStatus.PROCESSING


def test_the_seceded_run_waiting_for_its_resources_is_in_the_wait_for_graph(s):
    gpu_worker(s, "gpu", nthreads=1, GPU=1)
    recv(s, "c", task("parent", GPU=1))
    recv(s, "gpu", p.RegisterFunction("f", b"fn"), task("child", parent="parent", GPU=1))
    recv(s, "gpu", p.Seceded("parent", 1))
    # the child takes the GPU and waits on the parent's... sibling, a task that needs a slot
    recv(s, "gpu", task("sibling", parent="parent"))
    out = recv(s, "gpu", p.PrimitiveRequest(5, "resources", "", "acquire",
                                            run_key="parent", run_id=1),
               p.WaitKeys("child", 1, ["sibling"]))
    replies = sent(out, kind=p.PrimitiveReply)
    fails = sent(out, kind=p.WaitFailed)
    assert [k for f in fails for k in f.run_keys] == ["child"] and not replies
    assert "its resources back, to rejoin (held by child" in fails[0].report
    check_scheduler(s.state)


def test_a_resource_no_worker_has_is_explained_then_fails_with_no_workers_error():
    from trioflow.core.events import TimePassed
    from trioflow.core.scheduler.explain import explain

    s = Scheduler(no_workers_timeout=10.0)
    join(s, "c")
    recv(s, "c", p.RegisterFunction("f", b"fn"))
    gpu_worker(s, "cpu", nthreads=2, MEM=4)
    recv(s, "c", task("train", GPU=1), task("big", MEM=8), task("fits", MEM=2))
    s.handle(TimePassed(0.0))
    why = explain(s.state, "train")
    assert "cannot run: it needs resources GPU=1, which no connected worker offers" in why
    assert "'worker' has MEM=4" in why or "has MEM=4" in why
    assert "NoWorkersError in about 10s" in why
    assert s.state.tasks["fits"].worker == "cpu"
    out = s.handle(TimePassed(11.0))
    errors = {m.key: m for m in sent(out, kind=p.KeyErred)}
    assert errors["train"].type_name == "trioflow.errors.NoWorkersError"
    assert "needs resources GPU=1" in errors["train"].text
    assert errors["big"].type_name == "trioflow.errors.NoWorkersError"  # 8 > 4: never fits


def test_why_a_task_waits_for_resources_held_by_another(s):
    from trioflow.core.scheduler.explain import explain

    gpu_worker(s, "gpu", nthreads=2, GPU=1)
    recv(s, "c", task("a", GPU=1), task("b", GPU=1))
    assert "'b' is queued for resources GPU=1, held now by 'a'" in explain(s.state, "b")
