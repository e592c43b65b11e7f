"""dask collections on trioflow (issue 14): Client.get/compute/persist, the current
Client as dask's default scheduler, dask.compute inside a task, 10k-task graphs.

The expected values are computed with dask's own synchronous scheduler, so each test
compares trioflow with dask on the same graph.
"""

import pytest
import trio

import trioflow
from trioflow import dask_integration

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
db = pytest.importorskip("dask.bag")
dd = pytest.importorskip("dask.dataframe")
np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")


def local(x):
    """The value dask computes on its own synchronous scheduler."""
    return dask.compute(x, scheduler="sync")[0]


async def in_client(body, **shape):
    """Run ``body(client)`` in a thread with a blocking in-process Client."""
    shape = {"workers": 2, "threads_per_worker": 1, "processes": False, **shape}

    def run():
        with trioflow.Client(**shape) as client:
            return body(client)

    return await trio.to_thread.run_sync(run)


def _collections(client):
    x = da.arange(400, chunks=40).reshape(20, 20).rechunk(5)
    y = (x + x.T).sum()
    expected = local(y)
    # the current Client is dask's default scheduler, as with dask.distributed
    assert y.compute() == expected
    assert dask.compute(y, scheduler=client.get) == (expected,)
    assert dask.compute(y, scheduler=client) == (expected,)
    f = client.compute(y)
    assert isinstance(f, trioflow.Future) and f.result(30) == expected
    fs = client.compute([y, 5])
    assert client.gather(fs) == [expected, 5]
    assert f.key.startswith("finalize-")  # dask's key is the task's key
    # persist: the result stays on the cluster, computing it later only gathers
    p = client.persist(x + 1)
    assert isinstance(p, da.Array)
    held = dict(p.__dask_graph__())  # graph keys became task keys
    assert len(held) == 16 and all(v.key == str(k) for k, v in held.items())
    assert (p.sum().compute() == local((x + 1).sum()))
    np.testing.assert_array_equal(p.compute(), local(x + 1))
    # trioflow.compute takes dask collections instead of returning them unchanged
    assert trioflow.compute(dask.delayed(sum)([1, 2, 3])) == (6,)
    assert trioflow.compute(y, trioflow.delayed(len)("ab")) == (expected, 2)
    # bag and dataframe
    b = db.from_sequence(range(1000), npartitions=20).map(lambda v: v * 2).filter(
        lambda v: v % 3).sum()
    assert b.compute() == local(b)
    df = dd.from_pandas(pd.DataFrame({"a": range(500), "b": [i % 7 for i in range(500)]}),
                        npartitions=10)
    grouped = df.groupby("b").a.sum()
    pd.testing.assert_series_equal(grouped.compute(), local(grouped))


async def test_collections_compute_persist_get_and_default_scheduler():
    await in_client(_collections)


async def test_without_a_client_dask_uses_its_own_scheduler_again():
    await in_client(lambda client: None)
    x = da.ones(10, chunks=5).sum()
    assert x.compute() == 10  # no trioflow client current: dask's threaded scheduler


def _ten_thousand(client):
    x = da.ones((2000, 2000), chunks=(20, 20))  # 10,000 chunks
    y = (x + x.T).sum()  # over 13k tasks
    assert y.compute() == 8_000_000


@pytest.mark.slow
async def test_graphs_of_more_than_ten_thousand_tasks():
    await in_client(_ten_thousand)


def dask_in_a_task(n):
    # a sync task: dask.compute runs on the task's own cluster and gives the slot back
    # while it waits (with one slot in the cluster, holding it would deadlock)
    x = da.arange(n, chunks=n // 4)
    return int(x.sum().compute())


async def test_dask_compute_inside_a_task_gives_the_slot_back():
    def body(client):
        return client.submit(dask_in_a_task, 100).result(30)

    assert await in_client(body, workers=1, threads_per_worker=1) == sum(range(100))


async def test_dask_compute_inside_a_task_on_a_worker_process():
    def body(client):
        return client.submit(dask_in_a_task, 100).result(50)

    assert await in_client(body, workers=1, threads_per_worker=1,
                           processes=True) == sum(range(100))


async def test_dask_get_on_the_event_loop_says_what_to_do_instead():
    async with trioflow.open_local_cluster(1, 1) as cluster:
        async with trioflow.AsyncClient(cluster.address) as client:
            x = da.ones(10, chunks=5).sum()
            f = client.compute(x)
            assert await f == 10
            with pytest.raises(RuntimeError, match=r"await client\.gather"):
                dask_integration.get(client._session, dict(x.__dask_graph__()),
                                              x.__dask_keys__())
            p = client.persist(da.ones(10, chunks=5))
            assert await client.gather(client.compute(p.sum())) == 10

