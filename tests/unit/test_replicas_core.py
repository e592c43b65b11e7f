"""``Client.replicate`` and ``Client.restart`` in the scheduler core: which workers are
told to copy what, what the client is answered when copies fail or workers leave, and
when a restart is refused."""

from trioflow import protocol as p
from trioflow.core.events import MessagesReceived, PeerJoined, PeerLeft, Send
from trioflow.core.scheduler import Scheduler
from trioflow.core.scheduler.records import TaskStatus


def join(sched, peer, role="client", nthreads=0, restartable=False):
    hello = p.Hello(role, peer, [1], "", nthreads, f"tcp://{peer}", restartable=restartable)
    return sched.handle(PeerJoined(peer, hello))


def recv(sched, peer, *messages):
    return sched.handle(MessagesReceived(peer, list(messages)))


def sent(out, kind):
    return [(c.to, c.message) for c in out if isinstance(c, Send) and type(c.message) is kind]


def cluster(workers=3, restartable=False):
    s = Scheduler()
    join(s, "c")
    for i in range(workers):
        join(s, f"w{i}", "worker", 1, restartable)
    recv(s, "c", p.RegisterFunction("f", b"fn"), p.SubmitTask("a", "f", b"x", [], ""))
    worker = s.state.tasks["a"].worker
    recv(s, worker, p.TaskFinished("a", 1, 1, None, 0.01, "builtins.bytes"))
    assert s.state.tasks["a"].who_has == {worker}
    return s, worker


def test_copies_go_to_the_workers_lacking_it_and_are_recorded_when_reported():
    s, holder = cluster()
    out = recv(s, "c", p.ReplicateRequest(1, ["a"], 0, []))
    fetches = sent(out, p.FetchReplicas)
    assert sorted(to for to, _ in fetches) == sorted({"w0", "w1", "w2"} - {holder})
    assert all(m.keys == ["a"] and m.holders == [f"tcp://{holder}"] for _, m in fetches)
    assert sent(out, p.ReplicateReply) == []  # not before the copies exist
    first, second = (to for to, _ in fetches)
    assert sent(recv(s, first, p.ReplicasFetched(["a"], [])), p.ReplicateReply) == []
    out = recv(s, second, p.ReplicasFetched(["a"], []))
    assert sent(out, p.ReplicateReply) == [("c", p.ReplicateReply(1, "", ""))]
    assert s.state.tasks["a"].who_has == {"w0", "w1", "w2"}
    # a smaller n frees the extras (as dask), keeping one
    out = recv(s, "c", p.ReplicateRequest(2, ["a"], 1, []))
    assert len(s.state.tasks["a"].who_has) == 1
    assert len(sent(out, p.FreeKeys)) == 2
    assert sent(out, p.ReplicateReply) == [("c", p.ReplicateReply(2, "", ""))]


def test_a_worker_lost_or_a_failed_copy_answers_lost_and_bad_input_value():
    s, holder = cluster()
    out = recv(s, "c", p.ReplicateRequest(1, ["a"], 0, []))
    first, second = (to for to, _ in sent(out, p.FetchReplicas))
    recv(s, first, p.ReplicasFetched([], ["a"]))
    out = s.handle(PeerLeft(second))
    [(to, reply)] = sent(out, p.ReplicateReply)
    assert to == "c" and reply.kind == "lost" and "'a'" in reply.text
    assert s.state.tasks["a"].who_has == {holder} and not s.state.replications
    out = recv(s, "c", p.ReplicateRequest(2, ["a"], 0, ["nope"]))
    assert sent(out, p.ReplicateReply)[0][1].kind == "value"
    out = recv(s, "c", p.ReplicateRequest(3, ["gone"], 0, []))
    assert "'gone' has no result" in sent(out, p.ReplicateReply)[0][1].text
    # a copy reported after its key was released is freed again
    recv(s, "c", p.ReleaseKeys(["a"]))
    assert "a" not in s.state.tasks
    out = recv(s, first, p.ReplicasFetched(["a"], []))
    assert sent(out, p.FreeKeys) == [(first, p.FreeKeys(["a"]))]


def test_restart_cancels_everything_or_is_refused_without_nannies():
    s, _ = cluster(restartable=False)
    out = recv(s, "c", p.RestartRequest(1))
    [(_, reply)] = sent(out, p.RestartReply)
    assert reply.kind == "refused" and "w0" in reply.text and not sent(out, p.RestartWorker)
    assert s.state.tasks["a"].status is TaskStatus.MEMORY  # nothing was cancelled

    s, _ = cluster(restartable=True)
    recv(s, "c", p.SubmitTask("b", "f", b"x", ["a"], ""))
    out = recv(s, "c", p.RestartRequest(2))
    assert sorted(to for to, _ in sent(out, p.RestartWorker)) == ["w0", "w1", "w2"]
    erred = {m.key: m for to, m in sent(out, p.KeyErred) if to == "c"}
    assert set(erred) == {"a", "b"}
    assert all(m.type_name == "trioflow.errors.CancelledError" for m in erred.values())
    assert sent(out, p.RestartReply) == [("c", p.RestartReply(2, "", "", ["w0", "w1", "w2"]))]
