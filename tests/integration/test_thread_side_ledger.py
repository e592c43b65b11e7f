"""A run's own ledger events happen on its thread (``net/worker_ledger.py``), on real
clusters: what a task thread's event must hand to the loop still happens there, and in
order.

* an ``async def`` child placed by a sync parent's thread into the free slot starts on
  the loop;
* an async run waiting to rejoin, granted the slot by a sync run ending on its thread,
  is woken on the loop;
* an async run awaiting a sync child placed here is woken when the child ends on its
  thread;
* a sync parent rejoins at once, on its thread, when a slot is free.

``cluster_client`` checks on exit that every ledger, its slot tokens and the scheduler
agree (all slots free, nothing processing). Gates are ``threading.Event``s shared with
the in-process clusters; their waits time out only so a broken build fails.
"""

from __future__ import annotations

import threading

import trioflow

from .conftest import cluster_client

_GATES: dict[str, threading.Event] = {}


async def async_leaf(x: int) -> int:
    return x + 1


def sync_parent_of_async_children(n: int) -> int:
    with trioflow.worker_client() as client:
        return sum(client.gather([client.submit(async_leaf, i) for i in range(n)]))


async def test_an_async_child_placed_by_a_thread_starts_on_the_loop():
    async with cluster_client(1, 1) as (cluster, client):
        assert await client.submit(sync_parent_of_async_children, 20) == sum(range(1, 21))
        assert cluster.workers[0].statistics()["overflow_threads"] == 0


def quick(x: int) -> int:
    return x


def gated(name: str) -> int:
    if not _GATES[name].wait(30):
        raise AssertionError("the gate was never opened")
    return 7


async def async_parent_rejoining_behind_a_thread(name: str) -> int:
    client = trioflow.get_client()
    assert isinstance(client, trioflow.AsyncClient)
    first = client.submit(quick, 1)
    # placed after ``first``: the thread that ends ``first`` takes it next and blocks
    # in it, holding the only slot, while this run asks for the slot back
    held = client.submit(gated, name)
    value = await first
    return value + await held


async def test_an_async_rejoiner_granted_by_a_thread_wakes_on_the_loop():
    _GATES["rejoin"] = threading.Event()
    async with cluster_client(1, 1) as (cluster, client):
        fut = client.submit(async_parent_rejoining_behind_a_thread, "rejoin")
        state = cluster.scheduler.state
        # the async parent waits to rejoin while ``gated`` holds the slot
        await cluster.scheduler.wait_for(
            lambda: any(t.rejoin_pending for t in state.tasks.values()))
        _GATES["rejoin"].set()  # ``gated`` ends on its thread, which grants the slot
        assert await fut == 8


async def awaits_sync_children(n: int) -> int:
    client = trioflow.get_client()
    assert isinstance(client, trioflow.AsyncClient)
    return sum(await client.gather([client.submit(quick, i) for i in range(n)]))


async def test_an_async_waiter_is_woken_by_a_sync_child_ending_on_its_thread():
    async with cluster_client(1, 1) as (_, client):
        for _ in range(5):
            assert await client.submit(awaits_sync_children, 30) == sum(range(30))


def rejoins_in_a_free_slot(n: int) -> int:
    with trioflow.worker_client() as client:
        total = sum(client.gather([client.submit(quick, i) for i in range(n)]))
    return total


def fib_wc(n: int) -> int:
    if n < 2:
        return n
    with trioflow.worker_client() as client:
        a, b = client.gather([client.submit(fib_wc, n - 1), client.submit(fib_wc, n - 2)])
    return a + b


async def test_fib_with_worker_client_on_two_threads_keeps_tokens_and_scheduler_in_step():
    # two slots: thread-side events of two runs race each other and the loop's
    async with cluster_client(2, 2) as (_, client):
        assert await client.submit(fib_wc, 14) == 377
        assert await client.submit(rejoins_in_a_free_slot, 10) == 45


def seceding_gated(first: str, then: str) -> int:
    """Holds the slot until ``first`` opens, then gives it back (so the slot's next
    run starts while the parent waits) and waits for ``then``."""
    if not _GATES[first].wait(30):
        raise AssertionError("the gate was never opened")
    trioflow.secede()
    if not _GATES[then].wait(30):
        raise AssertionError("the gate was never opened")
    trioflow.rejoin()
    return 1


def gated_returns(name: str) -> int:
    """Returns once its gate opens, or after 20 s: run on the parent's thread by a timed
    wait, it would make that wait return its value instead of timing out."""
    _GATES[name].wait(20)
    return 7


def times_out_on_a_child_that_starts_while_it_waits(name: str) -> str:
    client = trioflow.get_client()
    holder = client.submit(seceding_gated, f"{name}-1", f"{name}-3")
    child = client.submit(gated_returns, f"{name}-2")  # queued behind the holder
    trioflow.secede()  # the holder takes the slot; the child stays queued
    try:
        child.result(timeout=5)
        outcome = "returned"
    except TimeoutError:
        outcome = "timed out"
    # the child holds the slot until its gate opens; the holder waits for its own
    _GATES[f"{name}-2"].set()
    _GATES[f"{name}-3"].set()
    trioflow.rejoin()
    del holder
    return outcome


async def test_a_timed_wait_does_not_run_the_child_it_waits_on_and_ends_on_time():
    # the child starts (the holder secedes) while the parent's timed wait is under
    # way: run on the parent's thread, it would hold the wait past its timeout
    name = "timed"
    for i in (1, 2, 3):
        _GATES[f"{name}-{i}"] = threading.Event()
    async with cluster_client(1, 1) as (cluster, client):
        fut = client.submit(times_out_on_a_child_that_starts_while_it_waits, name)
        state = cluster.scheduler.state
        await cluster.scheduler.wait_for(
            lambda: any(t.blocked_on for t in state.tasks.values()))
        _GATES[f"{name}-1"].set()
        try:
            assert await fut == "timed out"
        finally:
            _GATES[f"{name}-2"].set()
            _GATES[f"{name}-3"].set()
