"""Named datasets across clients (``Client.publish_dataset`` and friends), as in dask:
the results stay alive after the publishing client has gone, another client gets them
by name, and unpublishing releases them."""

import os
import signal

import pytest
import trio

import trioflow

from .conftest import cluster_client, quiesce
from .tasks import inc


def made_here():
    """Large (held by its worker, not the scheduler), and says which process made it."""
    return os.getpid(), bytes(300_000)


def big(n):
    return bytes(n)  # larger than the inline limit: held by a worker, not the scheduler


async def test_a_dataset_outlives_its_publisher_and_is_released_when_unpublished():
    async with trioflow.open_local_cluster(2, 1) as cluster:
        async with trioflow.AsyncClient(cluster.address) as first:
            x, y = first.submit(inc, 1), first.submit(big, 300_000)
            await first.publish_dataset(numbers={"x": x, "y": [y]})
            await first.publish_dataset(x, name="x-alone")
            with pytest.raises(KeyError, match="exists already"):
                await first.publish_dataset(numbers=1)
            assert await first.list_datasets() == ["numbers", "x-alone"]
        # the publisher is gone: the results are held for the datasets
        state = cluster.scheduler.state
        assert {x.key, y.key} <= set(state.tasks)
        async with trioflow.AsyncClient(cluster.address) as second:
            data = await second.get_dataset("numbers")
            assert data["x"]._session is second._session  # this client's futures now
            assert await second.gather(data) == {"x": 2, "y": [bytes(300_000)]}
            assert await second.get_dataset("missing", default=None) is None
            with pytest.raises(KeyError, match="no dataset named 'missing'"):
                await second.get_dataset("missing")
            key_y = data["y"][0].key
            del data
            await second.unpublish_dataset("numbers")
            await second.unpublish_dataset("x-alone")
            with pytest.raises(KeyError):
                await second.unpublish_dataset("numbers")
            assert await second.list_datasets() == []
            await quiesce(cluster)
            await cluster.scheduler.wait_for(lambda: key_y not in state.tasks)
            assert not state.datasets and not state.dataset_holds


def _blocking_mapping(address):
    with trioflow.Client(address) as client:
        client.datasets["answer"] = client.submit(inc, 41)
        assert "answer" in client.datasets and list(client.datasets) == ["answer"]
        assert len(client.datasets) == 1
        assert client.datasets["answer"].result(30) == 42
        client.datasets["answer"] = 7  # assignment replaces, as in dask
        assert client.get_dataset("answer") == 7
        del client.datasets["answer"]
        assert "answer" not in client.datasets
        with pytest.raises(ValueError, match="needs names"):
            client.publish_dataset(client.submit(inc, 1))


async def test_the_blocking_clients_datasets_mapping():
    async with cluster_client(1, 1) as (cluster, _):
        await trio.to_thread.run_sync(_blocking_mapping, cluster.address)


async def test_a_persisted_dask_collection_as_a_dataset():
    da = pytest.importorskip("dask.array")
    async with cluster_client(2, 1) as (cluster, client):
        arr = client.persist(da.arange(12, chunks=4) * 2)
        await client.publish_dataset(arr=arr)
        held = trioflow.futures_of(arr)
        assert len(held) == 3 and all(f.key in cluster.scheduler.state.tasks for f in held)
        back = await client.get_dataset("arr")
        assert await client.gather(client.compute(back.sum())) == 132
        await client.unpublish_dataset("arr")


async def test_a_datasets_result_lost_with_its_worker_is_computed_again():
    async with trioflow.open_local_cluster(1, 1, processes=True) as cluster:
        async with trioflow.AsyncClient(cluster.address) as first:
            made = first.submit(made_here)
            maker, _ = await made
            await first.publish_dataset(held=made)
        # the publisher is gone; the only copy dies with its worker (its nanny restarts it)
        os.kill(maker, signal.SIGKILL)
        await cluster.scheduler.wait_for(lambda: cluster.nannies[0].restarts == 1)
        async with trioflow.AsyncClient(cluster.address) as second:
            again = await second.get_dataset("held")
            remaker, data = await again
            assert remaker != maker and data == bytes(300_000)
