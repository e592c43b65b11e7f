"""core.validate: the machines' invariants hold on real states and catch corrupted ones."""

import pytest

from trioflow import protocol as p
from trioflow.core import worker as w
from trioflow.core.events import MessagesReceived, PeerJoined
from trioflow.core.scheduler import Scheduler
from trioflow.core.validate import check_scheduler, check_worker
from trioflow.errors import InvalidTransition


def busy_scheduler():
    sched = Scheduler()
    sched.handle(PeerJoined("c", p.Hello("client", "c", [1])))
    sched.handle(PeerJoined("w", p.Hello("worker", "w", [1], "", 1, "ws://w")))
    sched.handle(MessagesReceived("c", [p.RegisterFunction("f", b"f"),
                                        p.SubmitTask("a", "f", b"", []),
                                        p.SubmitTask("b", "f", b"", [])]))
    sched.handle(MessagesReceived("w", [p.WaitKeys("a", 1, ["b"])]))
    return sched


def test_a_real_scheduler_state_passes():
    check_scheduler(busy_scheduler().state)


@pytest.mark.parametrize("corrupt, match", [
    (lambda s: setattr(s.workers["w"], "occupying", 5), "counted occupying"),
    (lambda s: (s.workers["w"].processing.pop("b"), setattr(s.workers["w"], "occupying", 1)),
     "not in its worker's processing"),
    (lambda s: s.seceded.update(b=s.tasks["b"]), "disagrees with the seceded table"),
    (lambda s: s.tasks["b"].waiters.clear(), "not among its waiters"),
])
def test_a_corrupted_scheduler_state_is_caught(corrupt, match):
    sched = busy_scheduler()
    corrupt(sched.state)
    with pytest.raises(InvalidTransition, match=match):
        check_scheduler(sched.state)


def spec(key, run_id=1):
    return p.ComputeTask(key, run_id, "f", b"", [0, 0, 1], [], [], [], False)


def test_a_worker_ledger_with_a_rejoiner_passes_and_a_broken_line_is_caught():
    ledger = w.WorkerState(1)
    (start,) = ledger.task_assigned(spec("a"), False)
    ledger.secede(start.run)
    ledger.task_assigned(spec("b"), False)
    ledger.rejoin(start.run)
    check_worker(ledger)
    ledger._rejoining.clear()
    with pytest.raises(InvalidTransition, match="rejoin line"):
        check_worker(ledger)
