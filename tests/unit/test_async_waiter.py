"""``AsyncWaiter``: the one wake-up of an async gather, parked without a trio.Event
(``engine/keys.py``), and ``Session.post``'s direct send on the loop."""

import threading

import pytest
import trio

from trioflow.engine.keys import AsyncWaiter
from trioflow.engine.session import Session
from trioflow.errors import ClientClosedError, DeadlockError


def _waiter(n):
    return AsyncWaiter(n, trio.lowlevel.current_trio_token(), threading.get_ident())


async def _parked(waiter, out):
    await waiter.wait()
    out.append("woken")


async def test_wakes_once_every_key_is_done_and_not_before():
    waiter = _waiter(2)
    out = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_parked, waiter, out)
        await trio.testing.wait_all_tasks_blocked()
        waiter.key_done()
        await trio.testing.wait_all_tasks_blocked()
        assert out == [] and not waiter.done
        waiter.key_done()
    assert out == ["woken"] and waiter.done and waiter.failure is None


async def test_a_key_done_on_another_thread_wakes_it_on_the_loop():
    waiter = _waiter(1)
    out = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_parked, waiter, out)
        await trio.testing.wait_all_tasks_blocked()
        await trio.to_thread.run_sync(waiter.key_done)  # (hands the count to the loop)
    assert out == ["woken"] and waiter.remaining == 0


async def test_a_failure_wakes_it_with_the_failure_kept():
    waiter = _waiter(3)
    out = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_parked, waiter, out)
        await trio.testing.wait_all_tasks_blocked()
        waiter.fail(DeadlockError("never"))
        waiter.key_done()  # (a later wake finds nobody parked: no double reschedule)
    assert out == ["woken"] and isinstance(waiter.failure, DeadlockError)


async def test_cancelling_the_wait_unparks_it_and_a_later_wake_is_harmless():
    waiter = _waiter(1)
    with trio.CancelScope() as scope:
        scope.cancel()
        await waiter.wait()
    assert scope.cancelled_caught and not waiter.done
    waiter.key_done()  # nobody parked any more: nothing rescheduled
    assert waiter.done
    await waiter.wait()  # done: returns at once (after a checkpoint)


async def test_a_done_waiter_still_checkpoints():
    waiter = _waiter(1)
    waiter.key_done()
    with trio.CancelScope() as scope:
        scope.cancel()
        await waiter.wait()
    assert scope.cancelled_caught


class Conn:
    def __init__(self):
        self.sent = []

    def send(self, message):
        self.sent.append(message)

    def send_many(self, messages):
        self.sent.extend(messages)


async def test_post_on_the_loop_with_nothing_queued_sends_at_once():
    conn = Conn()
    session = Session(conn, "me")
    session.post("a")
    assert conn.sent == ["a"]  # in the call: no flush round
    session.post("b", "c")  # several: through the queue, flushed in the call too
    assert conn.sent == ["a", "b", "c"]


async def test_post_on_the_loop_goes_behind_what_a_thread_queued():
    conn = Conn()
    session = Session(conn, "me")
    loop_thread, session.loop_thread = session.loop_thread, -1  # (as if from a thread)
    session.send_in_order("thread-1")
    session.loop_thread = loop_thread
    assert conn.sent == []
    session.post("loop-1")  # must not overtake thread-1: queued behind it
    assert conn.sent == []
    await trio.testing.wait_all_tasks_blocked()
    assert conn.sent == ["thread-1", "loop-1"]
    session.post("loop-2")  # nothing queued and no flush under way any more
    assert conn.sent == ["thread-1", "loop-1", "loop-2"]


async def test_post_inside_a_flushed_item_goes_behind_the_rest_of_the_batch():
    conn = Conn()
    session = Session(conn, "me")

    def item():
        session.post("from-item")  # on the loop, while a flush runs: queued

    loop_thread, session.loop_thread = session.loop_thread, -1  # (as if from a thread)
    session.call_in_order(item)
    session.send_in_order("after-item")
    session.loop_thread = loop_thread
    await trio.testing.wait_all_tasks_blocked()
    assert conn.sent == ["after-item", "from-item"]


async def test_post_after_close_raises():
    session = Session(Conn(), "me")
    session.close("gone")
    with pytest.raises(ClientClosedError):
        session.post("late")


async def test_futures_dying_on_the_loop_are_released_by_the_releases_task_in_one_message():
    conn = Conn()
    session = Session(conn, "me")
    async with trio.open_nursery() as nursery:
        session.start(nursery, None, 1000)  # type: ignore[arg-type]
        await trio.testing.wait_all_tasks_blocked()  # (the releases task is parked)
        states = [session.adopt(k) for k in ("a", "b", "c")]
        for ks in states:
            ks.refs = 1
        del conn.sent[:]
        for ks in states:  # a burst, in one step of this task
            session.decref(ks)
        assert conn.sent == []  # not in the call: after the burst
        await trio.testing.wait_all_tasks_blocked()
        (release,) = conn.sent
        assert release.keys == ["a", "b", "c"]
        nursery.cancel_scope.cancel()
    # the releases task is gone: a decref on the loop still releases (run_sync_soon)
    late = session.adopt("d")
    late.refs = 1
    del conn.sent[:]
    session.decref(late)
    await trio.testing.wait_all_tasks_blocked()
    assert [m.keys for m in conn.sent] == [["d"]]
