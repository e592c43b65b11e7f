"""SlotThreads: which thread runs a job. A waiting task's thread runs a job of a key it
waits on (and only such a job, below the cap); everything else goes to an idle or a new
thread. Real threads; every wait is bounded so a broken build fails, not hangs."""

import threading

from trioflow.engine.keys import SyncWaiter
from trioflow.net.slots import SlotThreads

WAIT = 10


def _wait_in_pool(pool, waiter, ran_on, done):
    """A task thread: wait on ``waiter`` helping, then record that it returned."""

    def job():
        ran_on["waiting"] = threading.get_ident()
        assert pool.wait_helping(waiter, WAIT)
        done.set()

    return job


def _registered(pool, waiter):
    """Block until ``waiter`` is a helper of ``pool`` (it registers just before sleeping)."""
    for _ in range(10_000):
        with pool._lock:
            if waiter in pool._helpers:
                return
        threading.Event().wait(0.001)
    raise AssertionError("the waiting thread never registered as a helper")


def _parent_waiting(pool, depth, awaits):
    """A parent task ``depth`` deep waiting (helping) on ``awaits`` in ``pool``, once it
    is registered as a helper: (its waiter, thread idents by job, set when it returned)."""
    waiter = SyncWaiter(1, depth=depth, awaits=frozenset(awaits))
    ran_on: dict[str, int] = {}
    done = threading.Event()
    pool.submit(_wait_in_pool(pool, waiter, ran_on, done), depth=depth, key="parent")
    _registered(pool, waiter)
    return waiter, ran_on, done


def test_a_job_the_waiting_task_waits_on_runs_on_its_thread():
    pool = SlotThreads(8)
    waiter, ran_on, done = _parent_waiting(pool, 1, {"child"})

    def child():
        ran_on["child"] = threading.get_ident()
        waiter.key_done()  # its end completes the wait: no other thread to wake

    pool.submit(child, depth=2, key="child")
    assert done.wait(WAIT)
    assert ran_on["child"] == ran_on["waiting"]
    assert pool.helped == 1 and pool.threads == 1


def test_a_deeper_job_it_does_not_wait_on_goes_to_another_thread():
    # (it could wait on something only the waiting task's continuation produces)
    pool = SlotThreads(8)
    waiter, ran_on, done = _parent_waiting(pool, 1, {"child"})
    other_ran = threading.Event()

    def other():
        ran_on["other"] = threading.get_ident()
        other_ran.set()

    pool.submit(other, depth=5, key="someone-else")
    assert other_ran.wait(WAIT)
    assert ran_on["other"] != ran_on["waiting"] and pool.helped == 0
    waiter.key_done()
    assert done.wait(WAIT)


def test_a_job_of_an_awaited_key_that_is_not_deeper_goes_to_another_thread():
    # (helping only deeper work keeps the nesting on a stack bounded by the tree's depth)
    pool = SlotThreads(8)
    waiter, ran_on, done = _parent_waiting(pool, 3, {"shallow"})

    def shallow():
        ran_on["shallow"] = threading.get_ident()
        waiter.key_done()

    pool.submit(shallow, depth=2, key="shallow")
    assert done.wait(WAIT)
    assert ran_on["shallow"] != ran_on["waiting"] and pool.helped == 0


def test_at_the_cap_any_deeper_job_is_helped_rather_than_a_thread_started():
    pool = SlotThreads(1)
    waiter, ran_on, done = _parent_waiting(pool, 1, {"child"})
    other_ran = threading.Event()

    def other():
        ran_on["other"] = threading.get_ident()
        other_ran.set()
        waiter.key_done()

    pool.submit(other, depth=2, key="someone-else")
    assert other_ran.wait(WAIT) and done.wait(WAIT)
    assert ran_on["other"] == ran_on["waiting"] and pool.overflow == 0
