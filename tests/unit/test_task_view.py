"""The in-task protocol (core/session.py): exact command lists for each way a task
secedes, rejoins and waits. The deadlock rule rests on this ordering."""

import pytest

from trioflow import protocol as p
from trioflow.core.session import GiveSlot, Post, TakeSlot, TaskView, WaitEnd
from trioflow.errors import NotInTaskError


def view() -> TaskView:
    return TaskView("parent-1", 7, depth=2)


def test_secede_then_rejoin():
    v = view()
    assert v.secede() == [GiveSlot()]
    assert v.seceded
    assert v.rejoin() == [TakeSlot()]
    assert v.seceded  # until the worker grants the slot
    v.rejoined()
    assert not v.seceded


def test_secede_twice_and_rejoin_without_secede_are_refused():
    v = view()
    with pytest.raises(NotInTaskError, match="rejoin\\(\\) without secede"):
        v.rejoin()
    v.secede()
    with pytest.raises(NotInTaskError, match="already seceded"):
        v.secede()


def test_a_wait_holding_its_slot_reports_only_the_wait():
    v = view()
    assert v.begin_wait(["a", "b"]) == [Post(p.WaitKeys("parent-1", 7, ["a", "b"], False, False))]
    assert v.end_wait(WaitEnd.DONE) == []
    assert not v.waiting and not v.seceded


def test_a_wait_that_gives_its_slot_gives_it_before_the_wait_and_takes_it_after():
    v = view()
    assert v.begin_wait(["a"], give_slot=True) == [
        GiveSlot(), Post(p.WaitKeys("parent-1", 7, ["a"], False, False))]
    assert v.seceded
    assert v.end_wait(WaitEnd.DONE) == [TakeSlot()]
    v.rejoined()
    assert not v.seceded


def test_a_seceded_task_has_no_slot_to_give_for_a_wait():
    v = view()
    v.secede()
    assert v.begin_wait(["a"], give_slot=True) == [
        Post(p.WaitKeys("parent-1", 7, ["a"], False, False))]
    assert v.end_wait(WaitEnd.DONE) == []  # still seceded: rejoin() is the task's own call
    assert v.seceded


@pytest.mark.parametrize("give_slot", [False, True])
def test_an_abandoned_wait_is_withdrawn_before_the_slot_is_asked_for(give_slot):
    v = view()
    v.begin_wait(["a"], timed=True, give_slot=give_slot)
    expected = [Post(p.WaitEnded("parent-1", 7))] + ([TakeSlot()] if give_slot else [])
    assert v.end_wait(WaitEnd.ABANDONED) == expected


def test_a_wait_the_scheduler_failed_needs_no_withdrawal():
    v = view()
    v.begin_wait(["a"], give_slot=True)
    assert v.end_wait(WaitEnd.FAILED) == [TakeSlot()]


def test_any_of_and_timed_waits_say_so():
    v = view()
    assert v.begin_wait(["a", "b"], timed=True, any_of=True) == [
        Post(p.WaitKeys("parent-1", 7, ["a", "b"], True, True))]


def test_ending_a_wait_twice_sends_nothing_more():
    v = view()
    v.begin_wait(["a"], give_slot=True)
    v.end_wait(WaitEnd.ABANDONED)
    assert v.end_wait(WaitEnd.ABANDONED) == []


def test_overlapping_waits_give_the_slot_once_and_take_it_after_the_last():
    """An async task awaiting from two Trio tasks of its own at once."""
    v = view()
    assert v.begin_wait(["a"], give_slot=True) == [
        GiveSlot(), Post(p.WaitKeys("parent-1", 7, ["a"], False, False))]
    assert v.begin_wait(["b"], give_slot=True) == [
        Post(p.WaitKeys("parent-1", 7, ["b"], False, False))]
    assert v.end_wait(WaitEnd.DONE) == []
    assert v.waiting
    assert v.end_wait(WaitEnd.ABANDONED) == [Post(p.WaitEnded("parent-1", 7)), TakeSlot()]
    assert not v.waiting
