"""Slot reports folded into the message before them (``core.fold``): the fold itself,
its wire form, and that the scheduler core ends in the same state, frame by frame,
whether a worker's reports come folded or on their own."""

from __future__ import annotations

import pytest

from trioflow import protocol as p
from trioflow.core import fold
from trioflow.core.events import Close, MessagesReceived, PeerJoined
from trioflow.core.scheduler import Scheduler
from trioflow.testing import (
    CANONICAL,
    AddWorker,
    ClusterShape,
    Program,
    SimConfig,
    Simulator,
    Submit,
    Wait,
    lazy_threads,
    random_chooser,
    run_until_quiet,
)
from trioflow.testing.truth import check_no_missed_deadlock

DONE = p.TaskFinished("a", 1, 0, None)


def test_a_report_folds_into_the_carrier_before_it_and_chains():
    one = fold.fold(DONE, p.Seceded("b", 2))
    assert one is not None and one.slot_reports == [fold.SECEDED, "b", 2]
    two = fold.fold(one, p.Rejoined("c", 1))
    assert two.slot_reports == [fold.SECEDED, "b", 2, fold.REJOINED, "c", 1]
    assert DONE.slot_reports == [] and one.slot_reports == [fold.SECEDED, "b", 2]  # no aliasing
    assert fold.unfold(two) == [DONE, p.Seceded("b", 2), p.Rejoined("c", 1)]


@pytest.mark.parametrize("prev, msg", [
    (p.SubmitTask("k", "f", b"", []), p.Seceded("a", 1)),  # not a carrier
    (p.Seceded("a", 1), p.Rejoined("a", 1)),  # a report carries nothing
    (DONE, p.WaitKeys("a", 1, ["b"])),  # not a report
])
def test_what_does_not_fold(prev, msg):
    assert fold.fold(prev, msg) is None
    queue = [prev]
    fold.append_folded(queue, msg)
    assert queue == [prev, msg]


def test_append_folded_folds_only_into_the_last_unsent_message():
    queue: list = []
    fold.append_folded(queue, p.Seceded("a", 1))  # nothing before it: on its own
    fold.append_folded(queue, p.WaitKeys("a", 1, ["b"]))
    fold.append_folded(queue, p.RejoinRequested("a", 1))
    assert queue == [p.Seceded("a", 1),
                     p.WaitKeys("a", 1, ["b"], slot_reports=[fold.REJOIN_REQUESTED, "a", 1])]


def test_folded_reports_survive_the_codec_and_unfolded_ones_cost_nothing():
    folded = fold.fold(p.TaskPlaced("k", 1, "f", b"x", "parent"), p.Seceded("parent", 3))
    assert p.decode_frame(p.encode_frame([folded, DONE])) == [folded, DONE]
    assert p.encode_frame([DONE]) == p.encode_frame([p.TaskFinished("a", 1, 0, None, 0.0)])


@pytest.mark.parametrize("reports", [[1, "a"], [9, "a", 1], [1, 2, 3], [1, "a", "1"]])
def test_a_malformed_fold_closes_the_worker(reports):
    s = Scheduler()
    s.handle(PeerJoined("w1", p.Hello("worker", "w", [p.PROTOCOL_VERSION], "", 1)))
    out = s.handle(MessagesReceived("w1", [p.ReleaseKeys([], slot_reports=reports)]))
    (close,) = [c for c in out if type(c) is Close]
    assert close.to == "w1" and close.code == p.CLOSE_PROTOCOL_ERROR
    with pytest.raises(ValueError, match=r"slot.report"):
        fold.reports_of(reports)


# ----------------------------------------------------------------- the core's view


class Recording(Scheduler):
    """A scheduler core that keeps every event it handled (module level: picklable)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list = []

    def handle(self, event):  # type: ignore[no-untyped-def]
        self.events.append(event)
        return super().handle(event)


def _view(s: Scheduler) -> tuple:
    """What slot accounting and the deadlock rule read, plus every task's status."""
    st = s.state
    tasks = {k: (t.status, t.worker, t.run_id, t.seceded, t.rejoin_pending,
                 frozenset(t.blocked_on) if t.blocked_on is not None else None)
             for k, t in st.tasks.items()}
    workers = {w: (r.occupying, r.blocked) for w, r in st.workers.items()}
    return tasks, workers, sorted(st.seceded)


def _unfolded(event):  # type: ignore[no-untyped-def]
    if type(event) is not MessagesReceived:
        return event
    return MessagesReceived(event.peer_id, [m for msg in event.messages for m in fold.unfold(msg)])


WC = Wait.WORKER_CLIENT
PROGRAMS = [
    Program(wait=WC, children=(Program(wait=WC, children=(Program(), Program())), Program())),
    Program(wait=Wait.ASYNC, children=(Program(wait=Wait.ASYNC, children=(Program(),)), Program())),
    Program(wait=Wait.SECEDE, children=(Program(wait=WC, children=(Program(),)), Program())),
    Program(wait=WC, children=(Program(wait=Wait.NONE, children=(Program(),)),)),  # deadlocks on 1 slot
]


@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("shape", [ClusterShape(workers=1, slots=1), ClusterShape(workers=1, slots=2),
                                   ClusterShape(workers=2, slots=1)])
def test_the_core_applies_folded_reports_as_the_messages_they_stand_for(program, shape):
    """Each simulated world (folding as a worker does) is replayed into two fresh cores,
    one fed the frames as they were, one fed every folded report as its own message
    right after its carrier: same commands for every event, same records after it."""
    folded_seen = 0
    for choose in (CANONICAL, lazy_threads(), random_chooser(1), random_chooser(2)):
        rec = Recording()
        sim = Simulator(SimConfig(), rec)
        for _ in range(shape.workers):
            sim.apply(AddWorker(shape.slots))
        sim.apply(Submit(program))
        run_until_quiet(sim, choose)
        check_no_missed_deadlock(sim)
        assert sim.root_outcomes, sim.describe()
        as_sent, plain = Scheduler(), Scheduler()
        for event in rec.events:
            if type(event) is MessagesReceived:
                folded_seen += sum(len(m.slot_reports) // 3 for m in event.messages
                                   if type(m) in fold.CARRIERS)
            assert as_sent.handle(event) == plain.handle(_unfolded(event))
            assert _view(as_sent) == _view(plain)
    if program is not PROGRAMS[-1]:  # (the deadlock happens before any report)
        assert folded_seen > 0  # these do fold: the comparison compares something
