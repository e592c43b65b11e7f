"""``why`` in the core: exact text from the records, and the timed-deadlock warning."""

from trioflow import protocol as p
from trioflow.core.events import MessagesReceived, PeerJoined, Send
from trioflow.core.scheduler import Scheduler
from trioflow.core.scheduler.explain import explain


def join(sched, peer, role="client", nthreads=0):
    return sched.handle(PeerJoined(peer, p.Hello(role, peer, [1], "", nthreads, f"ws://{peer}")))


def recv(sched, peer, *messages):
    return sched.handle(MessagesReceived(peer, list(messages)))


def submit(key, deps=(), parent=""):
    return p.SubmitTask(key, "f", b"x", list(deps), parent)


def cluster():
    s = Scheduler()
    join(s, "c")
    join(s, "w", "worker", 1)
    recv(s, "c", p.RegisterFunction("f", b"fn"))
    return s


def test_running_queued_waiting_finished_unknown():
    s = cluster()
    recv(s, "c", submit("a"), submit("b"), submit("c", deps=["b"]))
    assert explain(s.state, "a") == "'a' is running on worker 'w'"
    assert explain(s.state, "b") == ("'b' is queued on worker 'w' behind 1 task(s) (1 slot(s))\n"
                                     "  the 1 slot(s) are held by running tasks")
    assert explain(s.state, "c").splitlines()[0] == "'c' waits for its input 'b'"
    recv(s, "w", p.TaskFinished("a", 1, 1, b"v", 0.01, "builtins.int"))
    assert explain(s.state, "a") == "'a' is finished: its result is held by 'w'"
    assert "not known to the scheduler" in explain(s.state, "nope")


def test_timed_wait_that_would_deadlock_is_explained_and_warned_once():
    s = cluster()
    recv(s, "c", submit("parent"))
    run_id = s.state.tasks["parent"].run_id
    recv(s, "w", submit("child", parent="parent"),
         p.WaitKeys("parent", run_id, ["child"], has_timeout=True))
    text = explain(s.state, "parent")
    assert text.startswith("'parent' runs on worker 'w', waits for 'child' with a timeout: "
                           "without the timeout this would be a deadlock")
    assert len(s.state.warnings) == 1 and "'parent'" in s.state.warnings[0]
    s.state.warnings.clear()
    recv(s, "c", submit("other"))  # another event: the same wait is not warned again
    assert s.state.warnings == []
    # the wait ends (it timed out): a new one is a new would-be deadlock, warned again
    recv(s, "w", p.WaitEnded("parent", run_id))
    assert "with a timeout" not in explain(s.state, "parent")
    recv(s, "w", p.WaitKeys("parent", run_id, ["child"], has_timeout=True))
    assert len(s.state.warnings) == 1


def test_why_request_is_answered():
    s = cluster()
    recv(s, "c", submit("a"))
    out = recv(s, "c", p.WhyRequest(7, "a"))
    assert out == [Send("c", p.WhyReply(7, "a", "'a' is running on worker 'w'"))]
    # in the frame that submits it, placement has not run yet: queued at the scheduler
    out = recv(s, "c", submit("b"), p.WhyRequest(8, "b"))
    assert "'b' is queued at the scheduler" in out[0].message.text
