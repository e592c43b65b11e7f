"""The scheduler's coordination primitives driven directly: requests in, replies out.

Also the deadlock rule through primitives: a cycle through a Lock or a Queue is
reported, naming the primitive, its holders and its waiters; a wait a client or a
timeout could still end never is.
"""

from trioflow import protocol as p
from trioflow.core.events import PeerLeft
from trioflow.core.scheduler import Scheduler
from trioflow.core.validate import check_scheduler

from .test_scheduler_core import deadlock_setup, finish, join, recv, sent, submit


def req(rid, kind, name, op, **kw):
    return p.PrimitiveRequest(rid, kind, name, op, **kw)


def replies(out, to=None):
    return {m.request_id: m for m in sent(out, to=to, kind=p.PrimitiveReply)}


def test_lock_is_exclusive_fifo_and_released_too_often_is_an_error():
    s = Scheduler()
    for c in ("a", "b", "c"):
        join(s, c)
    assert replies(recv(s, "a", req(1, "lock", "L", "acquire", holder="x")))[1].status == "ok"
    assert not replies(recv(s, "b", req(1, "lock", "L", "acquire", holder="y")))
    assert not replies(recv(s, "c", req(1, "lock", "L", "acquire", holder="z")))
    # a non-blocking acquire does not wait
    assert replies(recv(s, "c", req(2, "lock", "L", "acquire", holder="w",
                                    nowait=True)))[2].status == "timeout"
    # the wrong object cannot release it
    out = recv(s, "b", req(3, "lock", "L", "release", holder="y"))
    assert replies(out)[3].status == "error" and "released too often" in replies(out)[3].text
    out = recv(s, "a", req(2, "lock", "L", "release", holder="x"))
    assert replies(out, "a")[2].status == "ok"
    assert replies(out, "b")[1].status == "ok" and not replies(out, "c")  # oldest first
    assert replies(recv(s, "c", req(3, "lock", "L", "value")))[3].number == 1


def test_semaphore_leases_and_a_leaving_holder_releases_them():
    s = Scheduler()
    join(s, "a")
    join(s, "b")
    for rid in (1, 2):
        out = recv(s, "a", req(rid, "semaphore", "S", "acquire", holder="x", number=2))
        assert replies(out)[rid].status == "ok"
    assert not replies(recv(s, "b", req(1, "semaphore", "S", "acquire", holder="y", number=2)))
    out = recv(s, "b", req(2, "semaphore", "S", "acquire", holder="y", number=3))
    assert replies(out)[2].status == "invalid" and "max_leases=2" in replies(out)[2].text
    out = s.handle(PeerLeft("a"))
    assert replies(out, "b")[1].status == "ok"
    assert len(s.state.primitives[("semaphore", "S")].leases) == 1


def test_timeout_cancel_answers_once():
    s = Scheduler()
    join(s, "a")
    join(s, "b")
    recv(s, "a", req(1, "lock", "L", "acquire", holder="x"))
    recv(s, "b", req(1, "lock", "L", "acquire", holder="y", has_timeout=True))
    assert replies(recv(s, "b", p.PrimitiveCancel(1)))[1].status == "timeout"
    assert not replies(recv(s, "b", p.PrimitiveCancel(1)))  # nothing waits: no answer
    out = recv(s, "a", req(2, "lock", "L", "release", holder="x"))
    assert not replies(out, "b")
    assert ("lock", "L") not in s.state.primitives  # nothing refers to it: forgotten


def test_queue_fifo_maxsize_batch_and_putback():
    s = Scheduler()
    join(s, "a")
    join(s, "b")
    recv(s, "a", req(0, "queue", "Q", "create", number=1))
    assert not replies(recv(s, "b", req(1, "queue", "Q", "get")))
    out = recv(s, "a", req(1, "queue", "Q", "put", value=b"1"))
    assert replies(out, "a")[1].status == "ok" and replies(out, "b")[1].values == [b"1"]
    recv(s, "a", req(2, "queue", "Q", "put", value=b"2"))
    assert not replies(recv(s, "a", req(3, "queue", "Q", "put", value=b"3")))  # full
    out = recv(s, "b", req(2, "queue", "Q", "get"))
    assert replies(out, "b")[2].values == [b"2"] and replies(out, "a")[3].status == "ok"
    recv(s, "b", req(3, "queue", "Q", "putback", value=b"0"))
    assert replies(recv(s, "b", req(4, "queue", "Q", "qsize")))[4].number == 2
    out = recv(s, "b", req(5, "queue", "Q", "get", nowait=True, number=1))
    assert replies(out)[5].values == [b"0", b"3"]


def test_event_and_variable():
    s = Scheduler()
    join(s, "a")
    join(s, "b")
    assert not replies(recv(s, "b", req(1, "event", "E", "wait")))
    assert not replies(recv(s, "b", req(2, "variable", "V", "get")))
    out = recv(s, "a", req(1, "event", "E", "set"), req(2, "variable", "V", "set", value=b"v"))
    assert replies(out, "b")[1].number == 1 and replies(out, "b")[2].values == [b"v"]
    assert replies(recv(s, "b", req(3, "event", "E", "is_set")))[3].number == 1
    recv(s, "a", req(3, "event", "E", "clear"), req(4, "variable", "V", "delete"))
    assert replies(recv(s, "b", req(4, "event", "E", "is_set")))[4].number == 0
    assert replies(recv(s, "b", req(5, "variable", "V", "get", nowait=True)))[5].status == "timeout"
    out = recv(s, "b", req(6, "variable", "V", "frobnicate"))
    assert replies(out)[6].status == "invalid"


# ---------------------------------------------------------------------- deadlocks


def _parent_holds_lock(nslots):
    """parent (on w0) holds Lock L and waits on child; child waits on L."""
    s = deadlock_setup(nslots=nslots)
    recv(s, "c", submit("parent"))
    out = recv(s, "w0", req(1, "lock", "L", "acquire", holder="h1", run_key="parent", run_id=1))
    assert replies(out)[1].status == "ok"
    recv(s, "w0", p.RegisterFunction("f", b"fn"), submit("child", parent="parent"))
    return s


def test_parent_holding_a_lock_and_waiting_on_its_child_that_wants_it_is_a_deadlock():
    s = _parent_holds_lock(nslots=2)
    assert s.state.tasks["child"].worker == "w0"
    out = recv(s, "w0", p.WaitKeys("parent", 1, ["child"]))
    assert not sent(out, kind=p.WaitFailed)  # the child can still run in the other slot
    out = recv(s, "w0", req(2, "lock", "L", "acquire", holder="h2", run_key="child", run_id=1))
    check_scheduler(s.state)
    fails, prim = sent(out, kind=p.WaitFailed), replies(out)
    assert [k for f in fails for k in f.run_keys] == ["parent"] and prim[2].status == "deadlock"
    report = prim[2].text
    assert "task child holds a slot on worker 'w0' and waits on Lock 'L'" in report
    assert "Lock 'L': 1 of 1 lease(s), held by task parent; waiting: task child (acquire)" \
        in report
    assert "release a Lock or Semaphore" in report
    assert s.state.workers["w0"].blocked == 0
    check_scheduler(s.state)


def test_no_lock_deadlock_when_a_client_holds_the_lease_or_the_wait_is_timed():
    s = deadlock_setup(nslots=1)
    recv(s, "c", req(1, "lock", "L", "acquire", holder="client-lock"))
    recv(s, "c", submit("t"))
    out = recv(s, "w0", req(1, "lock", "L", "acquire", holder="h", run_key="t", run_id=1))
    assert not replies(out, "w0") and not s.state.deadlocks  # the client may release it
    assert s.state.workers["w0"].blocked == 1
    out = recv(s, "c", req(2, "lock", "L", "release", holder="client-lock"))
    assert replies(out, "w0")[1].status == "ok" and s.state.workers["w0"].blocked == 0
    # a timed wait never counts
    s = _parent_holds_lock(nslots=2)
    recv(s, "w0", p.WaitKeys("parent", 1, ["child"]))
    out = recv(s, "w0", req(2, "lock", "L", "acquire", holder="h2", run_key="child", run_id=1,
                            has_timeout=True))
    assert not replies(out) and not s.state.deadlocks
    check_scheduler(s.state)


def test_consumers_on_every_slot_and_their_producer_queued_behind_them():
    s = deadlock_setup(nslots=2)
    recv(s, "c", submit("c1"), submit("c2"), submit("producer"))
    assert s.state.tasks["producer"].worker is None  # queued: no free slot
    recv(s, "w0", req(1, "queue", "Q", "get", run_key="c1", run_id=1))
    assert not s.state.deadlocks
    out = recv(s, "w0", req(2, "queue", "Q", "get", run_key="c2", run_id=1))
    prim = replies(out)
    assert sorted(m.status for m in prim.values()) == ["deadlock", "deadlock"]
    assert "Queue 'Q': 0 item(s); waiting: task c1 (get), task c2 (get)" in prim[1].text
    check_scheduler(s.state)


def test_a_client_holding_the_queue_may_still_put():
    s = deadlock_setup(nslots=1)
    recv(s, "c", p.PrimitiveHandles("queue", "Q", 1), submit("c1"))
    out = recv(s, "w0", req(1, "queue", "Q", "get", run_key="c1", run_id=1))
    assert not replies(out) and not s.state.deadlocks
    # the client drops its last Queue object: now only tasks could put, and none can run
    out = recv(s, "c", p.PrimitiveHandles("queue", "Q", -1))
    assert replies(out)[1].status == "deadlock"


def test_a_worker_dying_releases_its_tasks_locks():
    s = deadlock_setup(nslots=1, nworkers=2)
    recv(s, "c", submit("holder"))
    worker = s.state.tasks["holder"].worker
    recv(s, worker, req(1, "lock", "L", "acquire", holder="h", run_key="holder", run_id=1))
    out = recv(s, "c", req(1, "lock", "L", "acquire", holder="mine"))
    assert not replies(out, "c")
    out = s.handle(PeerLeft(worker))
    assert replies(out, "c")[1].status == "ok"
    check_scheduler(s.state)


def test_event_and_variable_waits_take_part_in_the_rule():
    s = deadlock_setup(nslots=1)
    recv(s, "c", p.PrimitiveHandles("event", "E", 1), submit("waiter"))
    out = recv(s, "w0", req(1, "event", "E", "wait", run_key="waiter", run_id=1))
    assert not replies(out)  # the client holds the Event: it may set it
    out = recv(s, "c", req(1, "event", "E", "set"))
    assert replies(out, "w0")[1].status == "ok"
    recv(s, "w0", finish("waiter"))
    # a Variable nobody outside the tasks holds, on the only slot: a deadlock
    recv(s, "c", submit("reader"))
    out = recv(s, "w0", req(2, "variable", "V", "get", run_key="reader", run_id=1))
    assert "Variable 'V' (for a value to be set" in replies(out)[2].text


def test_free_slots_are_never_useless_while_a_task_waits_on_a_queue():
    # one slot holds a consumer; the other is free: a task submitted later may put
    s = deadlock_setup(nslots=2)
    recv(s, "c", submit("consumer"))
    out = recv(s, "w0", req(1, "queue", "Q", "get", run_key="consumer", run_id=1))
    assert not replies(out) and not s.state.deadlocks
    # while one free slot next to a lock cycle is useless: no later task can release L
    s = _parent_holds_lock(nslots=3)
    recv(s, "w0", p.WaitKeys("parent", 1, ["child"]))
    out = recv(s, "w0", req(2, "lock", "L", "acquire", holder="h2", run_key="child", run_id=1))
    assert replies(out)[2].status == "deadlock"
