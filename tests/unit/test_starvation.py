"""The no-workers timeout in the core: driven by TimePassed, no clock of its own."""

from trioflow import protocol as p
from trioflow.core.events import MessagesReceived, PeerJoined, PeerLeft, Send, TimePassed
from trioflow.core.scheduler import Scheduler, TaskStatus


def join(sched, peer, role="client", nthreads=0):
    return sched.handle(PeerJoined(peer, p.Hello(role, peer, [1], "", nthreads, f"ws://{peer}")))


def recv(sched, peer, *messages):
    return sched.handle(MessagesReceived(peer, list(messages)))


def submit(key, deps=(), workers=()):
    return p.SubmitTask(key, "f", b"x", list(deps), workers=list(workers))


def erred(commands):
    return {c.message.key: c.message for c in commands
            if isinstance(c, Send) and isinstance(c.message, p.KeyErred)}


def fresh(timeout=10.0):
    s = Scheduler(no_workers_timeout=timeout)
    join(s, "c")
    recv(s, "c", p.RegisterFunction("f", b"fn"))
    return s


def test_no_worker_at_all_fails_after_the_timeout_with_its_dependents():
    s = fresh()
    recv(s, "c", submit("a"), submit("b", deps=["a"]))
    assert erred(s.handle(TimePassed(100.0))) == {}  # first seen unrunnable now
    assert erred(s.handle(TimePassed(109.9))) == {}
    out = erred(s.handle(TimePassed(110.0)))
    assert set(out) == {"a", "b"} and out["a"].kind == "no-workers"
    assert "no worker is connected" in out["a"].text and "'a'" in out["b"].text
    assert s.state.tasks["a"].status is TaskStatus.ERRED


def test_a_worker_joining_in_time_resets_the_clock():
    s = fresh()
    recv(s, "c", submit("a", workers=["ghost"]))
    s.handle(TimePassed(0.0))
    join(s, "w", "worker", 1)  # named "w", not "ghost": still unrunnable
    s.handle(TimePassed(5.0))
    join(s, "ghost", "worker", 1)  # takes it
    assert s.state.tasks["a"].status is TaskStatus.PROCESSING
    assert erred(s.handle(TimePassed(50.0))) == {}
    s.handle(PeerLeft("ghost"))  # gone again: a new clock starts at the next tick
    s.handle(TimePassed(60.0))
    out = erred(s.handle(TimePassed(70.0)))
    assert "restricted to worker 'ghost', which is not connected (connected: 'w')" in out["a"].text


def test_busy_workers_are_not_starvation_and_none_means_never():
    s = fresh(timeout=1.0)
    join(s, "w", "worker", 1)
    recv(s, "c", *[submit(f"k{i}") for i in range(40)])  # most wait for the one slot
    s.handle(TimePassed(0.0))
    assert erred(s.handle(TimePassed(100.0))) == {}
    never = Scheduler()
    join(never, "c")
    recv(never, "c", p.RegisterFunction("f", b"fn"), submit("a"))
    never.handle(TimePassed(0.0))
    assert erred(never.handle(TimePassed(1e9))) == {}
