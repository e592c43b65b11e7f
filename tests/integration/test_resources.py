"""Abstract resources on real clusters: exclusive use, secede gives them back (the
recursive GPU case of dask issue 6565), deadlocks through them, and bad input."""

import sys

import pytest
import trio

import trioflow

from .conftest import cluster_client


def exclusive(i):
    # with one GPU per worker, two GPU tasks never run at once on it
    worker = trioflow.get_client()._session.peer_id  # (which worker this is)
    lock = trioflow.Lock(f"gpu-of-{worker}")
    assert lock.acquire(blocking=False), "two GPU tasks ran at once on one worker"
    try:
        trioflow.Event("never-set").wait(timeout=0.01)
    finally:
        lock.release()
    return i


async def test_tasks_run_only_where_their_resources_are_free():
    async with cluster_client(workers=2, threads=3, resources={"GPU": 1}) as (cluster, client):
        futures = client.map(exclusive, range(8), resources={"GPU": 1})
        assert sorted(await client.gather(futures)) == list(range(8))
        used = [w.used for w in cluster.scheduler.state.workers.values()]
        assert used == [{}, {}]
        status = await client.status()
        assert [w["resources"] for w in status["workers"]] == [{"GPU": 1.0}] * 2
        assert [w["resources_used"] for w in status["workers"]] == [{}, {}]


def recursive_gpu(n):
    if n == 0:
        return 1
    with trioflow.worker_client() as client:  # secedes: gives the GPU back
        return 1 + client.submit(recursive_gpu, n - 1, resources={"GPU": 1}).result()


async def gpu_async(n):
    if n == 0:
        return 1
    child = trioflow.get_client().submit(gpu_async, n - 1, resources={"GPU": 1})
    return 1 + await child  # an async wait gives the slot and the GPU back


async def test_a_seceded_task_gives_its_resources_back_and_takes_them_again():
    async with cluster_client(workers=1, threads=2, resources="GPU=1") as (cluster, client):
        assert await client.submit(recursive_gpu, 4, resources={"GPU": 1}) == 5
        assert await client.submit(gpu_async, 4, resources={"GPU": 1}) == 5
        assert not cluster.scheduler.state.deadlocks


def holds_gpu_and_waits():
    client = trioflow.get_client()
    return client.submit(lambda: "child", resources={"GPU": 1}).result()


async def test_a_parent_holding_the_gpu_its_child_needs_is_a_reported_deadlock():
    async with cluster_client(workers=1, threads=2, resources={"GPU": 1}) as (_, client):
        with pytest.raises(trioflow.DeadlockError, match=r"needs resources GPU=1, held by "
                                                         r"holds_gpu_and_waits"):
            await client.submit(holds_gpu_and_waits, resources={"GPU": 1})


async def test_bad_resources_fail_at_the_call():
    async with cluster_client(workers=1, threads=1) as (_, client):
        with pytest.raises(ValueError, match=r"resources\['GPU'\] must be a finite amount"):
            client.submit(abs, 1, resources={"GPU": -1})
        with pytest.raises(TypeError, match="must be a number"):
            client.map(abs, [1], resources={"GPU": "one"})
        with pytest.raises(TypeError, match="mapping"):
            client.submit(abs, 1, resources="GPU=1")
    with pytest.raises(ValueError, match="NAME=AMOUNT"):
        async with trioflow.open_local_cluster(1, 1, resources="GPU"):
            pass
    with pytest.raises(TypeError, match="resourcez"):
        async with trioflow.open_local_cluster(1, 1, resourcez="GPU=1"):
            pass


async def test_worker_command_line_refuses_malformed_resources():
    proc = await trio.run_process(
        [sys.executable, "-m", "trioflow.cli", "worker", "ws://127.0.0.1:1",
         "--resources", "GPU=lots"], capture_stdout=True, capture_stderr=True, check=False)
    assert proc.returncode == 2 and b"--resources" in proc.stderr
    assert b"not a number" in proc.stderr


async def test_process_workers_get_the_resources_option():
    async with trioflow.open_local_cluster(1, 1, processes=True,
                                           resources={"GPU": 2, "MEM": 16e9}) as cluster:
        (worker,) = cluster.scheduler.state.workers.values()
        assert worker.resources == {"GPU": 2.0, "MEM": 16e9}


async def test_a_resource_no_worker_offers_is_explained_then_fails_with_no_workers_error():
    async with cluster_client(workers=1, threads=1, no_workers_timeout=0.5) as (_, client):
        future = client.submit(abs, -1, resources={"GPU": 1})
        why = await client.why(future)
        assert "needs resources GPU=1, which no connected worker offers" in why
        with pytest.raises(trioflow.NoWorkersError, match="needs resources GPU=1"):
            await future
