"""The async task path's wait and report on real clusters (``engine/keys.AsyncWaiter``,
``net/worker_runs._run_done``)."""

import threading

import trio

import trioflow

from .conftest import cluster_client
from .tasks import inc


async def ainc(x):
    return x + 1


async def cancels_its_first_gather(x):
    client = trioflow.get_client()
    child = client.submit(ainc, x)
    with trio.CancelScope() as scope:
        scope.cancel()  # the child cannot have run yet: one slot, and this task holds it
        await client.gather(child)
    assert scope.cancelled_caught
    # the abandoned wait left nothing behind: the same key is awaited again
    return (await client.gather(child)) + 100


async def test_an_async_task_cancels_its_gather_and_waits_again():
    async with cluster_client(1, 1) as (_, client):
        assert await client.submit(cancels_its_first_gather, 1) == 102


async def afib(n):
    if n < 2:
        return n
    client = trioflow.get_client()
    a, b = await client.gather([client.submit(afib, n - 1), client.submit(afib, n - 2)])
    return a + b


async def test_async_reports_name_the_loop_thread_and_sync_ones_their_thread():
    async with cluster_client(2, 1) as (_, client):
        async with trioflow.get_task_stream(client) as ts:
            assert await client.submit(afib, 7) == 13
            assert await client.submit(inc, 1) == 2
        assert len(ts.data) == 41 + 1
        afib_threads = {r["thread"] for r in ts.data if r["key"].startswith("afib-")}
        inc_threads = {r["thread"] for r in ts.data if r["key"].startswith("inc-")}
        # the in-process cluster's loops run on this test's thread
        assert afib_threads == {threading.current_thread().name}
        assert len(inc_threads) == 1 and inc_threads != afib_threads and "" not in inc_threads
