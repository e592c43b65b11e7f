"""dask's replica calls on trioflow (issue 14): ``Client.replicate`` and
``scatter(broadcast=True)``, on real clusters: the copies are made worker to worker,
recorded by the scheduler, and used by tasks.
"""

import asyncio

import pytest
import trio

import trioflow

from .conftest import cluster_client
from .tasks import boom

BIG = 300_000  # pickled larger than the inline limit: kept by workers, not the scheduler


def holders(cluster, key):
    """Names of the workers whose store holds ``key`` (the workers' own view)."""
    return sorted(node.name for node in cluster.workers if node.store.holds(key))


async def test_replicate_copies_to_n_then_to_every_worker():
    async with cluster_client(3, 1) as (cluster, client):
        big = client.submit(bytes, BIG)
        await big
        assert len((await client.who_has(big))[big.key]) == 1
        await client.replicate(big, n=2, branching_factor=2)  # dask's option: no effect
        who = (await client.who_has(big))[big.key]
        assert len(who) == 2 and holders(cluster, big.key) == sorted(who)
        await client.replicate([big], n=1)  # fewer than there are: extras are freed
        assert len((await client.who_has(big))[big.key]) == 1
        await client.replicate(big)  # n=None: every worker
        assert sorted((await client.who_has(big))[big.key]) == [
            "worker-0", "worker-1", "worker-2"]
        assert holders(cluster, big.key) == ["worker-0", "worker-1", "worker-2"]
        for name in ("worker-0", "worker-1", "worker-2"):  # each copy is usable there
            assert await client.submit(len, big, workers=[name]) == BIG

        other = client.submit(bytes, BIG + 1)
        await other
        first = (await client.who_has(other))[other.key]
        target = next(n for n in ("worker-0", "worker-1", "worker-2") if n not in first)
        await client.replicate(other, workers=[target])  # every one of these workers
        assert sorted((await client.who_has(other))[other.key]) == sorted([*first, target])

        key = big.key
        del big
        state = cluster.scheduler.state
        await cluster.scheduler.wait_for(lambda: key not in state.tasks)  # released


async def test_replicate_bad_input_says_what_is_wrong():
    async with cluster_client(2, 1) as (_, client):
        big = client.submit(bytes, BIG)
        await big
        with pytest.raises(ValueError, match="n=0"):
            await client.replicate(big, n=0)
        with pytest.raises(ValueError, match=r"no connected worker named \['nope'\]"):
            await client.replicate(big, workers=["nope"])
        with pytest.raises(TypeError, match="takes futures"):
            await client.replicate([42])
        with pytest.raises(TypeError, match="worker names"):
            await client.replicate(big, workers=[1])
        bad = client.submit(boom)
        with pytest.raises(ValueError, match="did not finish"):
            await client.replicate(bad)
        small = client.submit(len, "abc")  # the scheduler keeps it: no copies needed
        await small
        before = (await client.who_has(small))[small.key]
        await client.replicate(small)
        assert (await client.who_has(small))[small.key] == before
        await client.replicate([])


async def test_scatter_broadcast_puts_data_on_every_worker():
    async with cluster_client(3, 1) as (cluster, client):
        [f] = await client.scatter([b"x" * BIG], broadcast=True)
        assert holders(cluster, f.key) == ["worker-0", "worker-1", "worker-2"]
        assert sorted((await client.who_has(f))[f.key]) == holders(cluster, f.key)
        for name in ("worker-0", "worker-1", "worker-2"):
            assert await client.submit(len, f, workers=[name]) == BIG
        d = await client.scatter({"a": b"y" * BIG, "b": 1}, broadcast=True)
        assert len(holders(cluster, d["a"].key)) == 3 and await d["b"] == 1
        assert await client.gather(d["a"]) == b"y" * BIG


def _blocking_and_asyncio(address):
    with trioflow.Client(address) as client:
        one = client.scatter(b"z" * BIG, broadcast=True)
        assert len(client.who_has(one)[one.key]) == 2
        big = client.submit(bytes, BIG)
        client.replicate(big, n=2)
        assert len(client.who_has(big)[big.key]) == 2
        with pytest.raises(ValueError, match="n=-1"):
            client.replicate(big, n=-1)

    async def under_asyncio():
        async with trioflow.AsyncClient(address) as client:
            big = client.submit(bytes, BIG + 2)
            await client.replicate(big)
            assert len((await client.who_has(big))[big.key]) == 2
            [f] = await client.scatter([b"w" * BIG], broadcast=True)
            assert len((await client.who_has(f))[f.key]) == 2

    asyncio.run(under_asyncio())


async def test_blocking_and_asyncio_clients_replicate_too():
    async with trioflow.open_local_cluster(2, 1) as cluster:
        await trio.to_thread.run_sync(_blocking_and_asyncio, cluster.address)


# ------------------------------------------------------------------ Client.restart


def block_forever():
    import threading

    threading.Event().wait(120)  # until the worker is restarted under it


def _restart_a_process_cluster():
    with trioflow.LocalCluster(n_workers=2, threads_per_worker=1) as cluster:  # nannies
        with trioflow.Client(cluster) as client:
            before = client.scheduler_info()["workers"]
            done = client.submit(bytes, BIG)
            assert len(done.result(30)) == BIG
            stuck = client.submit(block_forever)
            queued = client.submit(len, stuck)
            client.restart(timeout=30)
            for f in (done, stuck, queued):
                assert f.status == "cancelled"
                with pytest.raises(trioflow.CancelledError, match=r"Client\.restart"):
                    f.result(5)
            after = client.scheduler_info()["workers"]
            assert sorted(after) == sorted(before)  # the same names, fresh processes
            assert {w["id"] for w in after.values()}.isdisjoint(
                w["id"] for w in before.values())
            assert client.has_what() == {name: [] for name in after}
            assert client.submit(len, b"abc").result(30) == 3  # the cluster goes on

            async def under_asyncio():
                async with trioflow.AsyncClient(cluster.scheduler_address) as aclient:
                    f = aclient.submit(bytes, BIG)
                    await f
                    await aclient.restart(timeout=30)
                    assert f.status == "cancelled"
                    assert len(await aclient.nthreads()) == 2
                    assert await aclient.submit(len, b"ab") == 2
                    g = aclient.submit(bytes, BIG)
                    await g
                    # without waiting: returns once the workers are told (the old ones
                    # may still be listed); work submitted meanwhile runs on the new ones
                    await aclient.restart(timeout=30, wait_for_workers=False)
                    assert g.status == "cancelled"
                    assert await aclient.submit(len, b"abc") == 3

            asyncio.run(under_asyncio())


@pytest.mark.slow
async def test_restart_cancels_everything_and_restarts_the_workers():
    await trio.to_thread.run_sync(_restart_a_process_cluster)


async def test_restart_is_refused_without_nannies():
    async with cluster_client(2, 1) as (_, client):  # in-process workers
        f = client.submit(len, b"abc")
        assert await f == 3
        with pytest.raises(RuntimeError, match=r"without a nanny.*nothing was cancelled"):
            await client.restart()
        assert f.status == "finished" and await client.submit(len, b"ab") == 2


async def test_scatter_to_named_workers_and_broadcast_among_them():
    async with cluster_client(3, 1) as (cluster, client):
        await client.wait_for_workers(3)
        big = await client.scatter(b"x" * BIG, workers=["worker-2"], hash=False)
        assert (await client.who_has(big))[big.key] == ["worker-2"]
        assert await client.submit(len, big, workers=["worker-2"]) == BIG  # (uploaded by now)
        assert holders(cluster, big.key) == ["worker-2"]
        many = await client.scatter([b"a" * BIG, b"b" * BIG], workers="worker-1")
        for f in many:
            assert (await client.who_has(f))[f.key] == ["worker-1"]
        pair = await client.scatter(b"y" * BIG, workers=["worker-0", "worker-1"],
                                    broadcast=True)
        assert sorted((await client.who_has(pair))[pair.key]) == ["worker-0", "worker-1"]
        assert await client.submit(len, big, workers=["worker-0"]) == BIG  # fetched there
        small = await client.scatter(3, workers=["worker-0"])  # kept by the scheduler
        assert await client.submit(lambda v: v + 1, small) == 4
        with pytest.raises(TypeError, match="worker names"):
            await client.scatter(1, workers=[0])
