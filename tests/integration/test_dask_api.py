"""The rest of dask's futures API on trioflow (issue 14), with dask's semantics:
callbacks, release, fire_and_forget, wait options, as_completed extras, cluster queries,
run/upload_file, get_worker, the executor, LocalCluster(n_workers=...).
"""

import concurrent.futures
import gc
import threading

import pytest
import trio

import trioflow

from .conftest import cluster_client
from .tasks import GATE, boom, inc, wait_gate

RAN = threading.Event()


def mark_ran(_):
    RAN.set()
    return "ran"


def where():
    return trioflow.get_worker()


@pytest.fixture
def gate():
    GATE.clear()
    RAN.clear()
    yield GATE
    GATE.set()


async def test_add_done_callback_runs_in_a_thread_also_when_done_already():
    async with cluster_client(1, 1) as (_, client):
        seen = []
        called = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def callback(fut):
            seen.append((fut, fut.status, threading.current_thread().name))
            if len(seen) == 2:
                token.run_sync_soon(called.set)

        f = client.submit(inc, 1)
        f.add_done_callback(callback)
        await f
        f.add_done_callback(callback)  # already done: called soon anyway
        await called.wait()
        assert [s[:2] for s in seen] == [(f, "finished"), (f, "finished")]
        assert all(s[2].startswith("future-callbacks") for s in seen)


async def test_release_lets_go_at_once():
    async with cluster_client(1, 1) as (cluster, client):
        f = client.submit(inc, 1)
        assert await f == 2
        key = f.key
        f.release()
        f.release()  # idempotent
        assert f.status == "cancelled"
        with pytest.raises(trioflow.CancelledError, match="released"):
            await f
        await cluster.scheduler.wait_for(lambda: key not in cluster.scheduler.state.tasks)


async def test_fire_and_forget_runs_a_task_nobody_holds(gate):
    async with cluster_client(1, 2) as (_, client):
        blocker = client.submit(wait_gate)
        f = client.submit(mark_ran, blocker)
        trioflow.fire_and_forget(f)
        del f, blocker
        gc.collect()
        gate.set()
        await trio.to_thread.run_sync(RAN.wait, 30)
        assert RAN.is_set()
        with pytest.raises(TypeError):
            trioflow.fire_and_forget([1])


async def test_wait_first_exception_and_on_a_single_future(gate):
    async with cluster_client(2, 1) as (_, client):
        blocked = client.submit(wait_gate)
        bad = client.submit(boom)
        done, not_done = await trioflow.wait_async([blocked, bad],
                                                   return_when="FIRST_EXCEPTION")
        assert done == {bad} and not_done == {blocked}
        gate.set()
        one = client.submit(inc, 1)
        assert await trioflow.wait_async(one) == ({one}, set())

        def blocking():
            good = [client.submit(inc, i) for i in range(3)]
            result = trioflow.wait(good, return_when="FIRST_EXCEPTION", timeout=30)
            assert result.done == set(good)  # no failure: all of them
            assert trioflow.wait(good[0]).done == {good[0]}

        await trio.to_thread.run_sync(blocking)


async def test_as_completed_update_batches_count_is_empty():
    async with cluster_client(2, 1) as (_, client):
        ac = trioflow.as_completed([client.submit(inc, 1)], with_results=True)
        ac.update([client.submit(inc, 2), client.submit(inc, 3)])
        assert ac.count() == 3 and not ac.is_empty()
        got = []
        async for batch in ac.batches():
            assert batch
            got.extend(value for _, value in batch)
        assert sorted(got) == [2, 3, 4] and ac.is_empty()

        def blocking():
            ac2 = trioflow.as_completed([client.submit(inc, i) for i in range(4)])
            batches = list(ac2.batches())
            assert sum(map(len, batches)) == 4

        await trio.to_thread.run_sync(blocking)


async def test_cluster_queries_run_get_worker_and_run_on_scheduler(tmp_path):
    async with cluster_client(2, 2) as (_, client):
        assert await client.nthreads() == {"worker-0": 2, "worker-1": 2}
        info = await client.scheduler_info()
        assert info["id"].startswith("scheduler-") and set(info["workers"]) == {
            "worker-0", "worker-1"} and info["total_threads"] == 4
        big = client.submit(bytes, 300_000)  # large: stays on its worker
        await big
        who = await client.who_has(big)
        assert len(who[big.key]) == 1
        assert big.key in (await client.has_what())[who[big.key][0]]
        ran = await client.run(inc, 1)
        assert ran == {"worker-0": 2, "worker-1": 2}
        w = await client.submit(where)
        assert isinstance(w, trioflow.WorkerInfo) and w.name in ran and w.nthreads == 2
        with pytest.raises(trioflow.NotInTaskError):
            trioflow.get_worker()
        with pytest.raises(RuntimeError, match="never runs or unpickles"):
            client.run_on_scheduler(inc, 1)
        module = tmp_path / "uploaded_mod_14.py"
        module.write_text("VALUE = 41\n")
        saved = await client.upload_file(module)
        assert set(saved) == set(ran)

        def use_upload():
            import uploaded_mod_14

            return uploaded_mod_14.VALUE + 1

        assert await client.submit(use_upload) == 42


def _executor_and_local_cluster():
    with trioflow.LocalCluster(n_workers=2, threads_per_worker=1,
                               processes=False) as cluster:
        with trioflow.Client(cluster) as client:
            assert client.nthreads() == {"worker-0": 1, "worker-1": 1}
            assert client.run(inc, 1) == {"worker-0": 2, "worker-1": 2}
            with client.get_executor() as ex:
                futures = [ex.submit(inc, i) for i in range(5)]
                assert all(type(f) is not trioflow.Future for f in futures)
                assert all(isinstance(f, concurrent.futures.Future) for f in futures)
                done, _ = concurrent.futures.wait(futures, timeout=30)
                assert sorted(f.result() for f in done) == [1, 2, 3, 4, 5]
                assert list(ex.map(inc, [10, 20], timeout=30)) == [11, 21]
                bad = ex.submit(boom)
                assert isinstance(bad.exception(timeout=30), ValueError)
    with trioflow.Client(n_workers=1, threads_per_worker=1, processes=False) as client:
        assert client.nthreads() == {"worker-0": 1}
    with pytest.raises(TypeError, match="spellings"):
        trioflow.Client(n_workers=1, workers=2, processes=False)


async def test_executor_local_cluster_and_n_workers():
    await trio.to_thread.run_sync(_executor_and_local_cluster)


def _retire():
    with trioflow.LocalCluster(n_workers=2, threads_per_worker=1) as cluster:  # processes
        with trioflow.Client(cluster) as client:
            assert client.cluster is cluster
            assert client.retire_workers(["worker-1"], timeout=30) == ["worker-1"]
            assert client.nthreads() == {"worker-0": 1}
            assert client.submit(inc, 1).result(30) == 2  # the cluster goes on
            with pytest.raises(ValueError, match="worker-7"):
                client.retire_workers(["worker-7"])
    with trioflow.Client(workers=1, threads_per_worker=1, processes=False) as client:
        with pytest.raises(RuntimeError, match="SIGTERM"):
            client.retire_workers(["worker-0"])


@pytest.mark.slow
async def test_retire_workers_of_a_local_process_cluster():
    await trio.to_thread.run_sync(_retire)
