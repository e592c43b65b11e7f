"""dask.distributed spellings a user brings along, each with dask's meaning: the
keywords dask's calls take (``wait_for_workers(n_workers=)``, ``cancel(force=, msg=)``,
``gather(direct=)``, ``run(wait=, on_error=)``), ``Future.cancelled``/``traceback``,
``futures_of``, ``as_completed(raise_errors=False)``, ``client.compute`` of a
``trioflow.delayed`` call, ``as_current``, ``id`` and ``shutdown``; ``ncores``,
``processing``, ``get_versions``, ``get_task_stream``, ``Future.type``,
``default_client`` and ``trioflow.TimeoutError``."""

import time
import traceback

import pytest
import trio

import trioflow

from .conftest import cluster_client
from .tasks import inc


def fails(x):
    raise ValueError(f"bad {x}")


async def test_waits_and_cancels_take_dasks_keywords():
    async with cluster_client(2, 1) as (_, client):
        await client.wait_for_workers(n_workers=2, timeout=30)
        await client.wait_for_workers(n=2)  # trioflow's own spelling still works
        with pytest.raises(ValueError, match="number of workers"):
            await client.wait_for_workers(n_workers=-1)
        with pytest.raises(TimeoutError):
            await client.wait_for_workers(n_workers=3, timeout=0.2)
        f = client.submit(inc, 1)
        assert await client.gather([f], direct=True) == [2]
        assert not f.cancelled()
        client.cancel([f], force=True, msg="no longer needed")
        with pytest.raises(trioflow.CancelledError, match="no longer needed"):
            await f
        assert f.cancelled() and f.status == "cancelled"


async def test_failed_futures_give_their_worker_traceback_and_can_be_yielded():
    async with cluster_client(1, 1) as (_, client):
        bad, good = client.submit(fails, 3), client.submit(inc, 3)
        await trioflow.wait_async([bad, good])
        tb = await trio.to_thread.run_sync(bad.traceback)
        lines = traceback.format_tb(tb)
        assert any("in fails" in line and "raise ValueError" in line for line in lines), lines
        assert await trio.to_thread.run_sync(good.traceback) is None
        assert not bad.cancelled()
        got = {}
        async for fut, value in trioflow.as_completed([bad, good], with_results=True,
                                                      raise_errors=False):
            got[fut.key] = value
        assert got[good.key] == 4
        assert isinstance(got[bad.key], ValueError) and "bad 3" in str(got[bad.key])
        with pytest.raises(ValueError, match="bad 3"):
            async for _ in trioflow.as_completed([bad], with_results=True):
                pass


async def test_run_waits_or_not_and_reports_failures_as_asked():
    async with cluster_client(2, 1) as (_, client):
        assert await client.run(inc, 1) == {"worker-0": 2, "worker-1": 2}
        returned = await client.run(fails, 1, on_error="return")
        assert set(returned) == {"worker-0", "worker-1"}
        assert all(isinstance(e, ValueError) for e in returned.values())
        assert await client.run(fails, 1, on_error="ignore") == {}
        with pytest.raises(ValueError, match="bad 1"):
            await client.run(fails, 1)
        assert await client.run(inc, 1, wait=False) is None
        with pytest.raises(ValueError, match="on_error"):
            await client.run(inc, 1, on_error="shrug")
        with pytest.raises(NotImplementedError, match="nanny"):
            await client.run(inc, 1, nanny=True)


async def test_futures_of_finds_each_future_once_in_any_shape():
    async with cluster_client(1, 1) as (_, client):
        a, b = client.submit(inc, 1), client.submit(inc, 2)
        assert trioflow.futures_of([a, {"x": (b, a)}, {b}, 7]) == [a, b]
        assert trioflow.futures_of("no futures") == []


def _blocking_habits():
    with trioflow.Client(n_workers=1, threads_per_worker=1, processes=False) as client:
        assert client.id and client.id in repr(client)
        lazy = trioflow.delayed(inc)(trioflow.delayed(inc)(1))
        fut = client.compute(lazy)
        assert isinstance(fut, trioflow.Future) and fut.result(30) == 3
        assert client.compute(lazy, sync=True) == 3
        both = client.compute([lazy, trioflow.delayed(inc)(10)])
        assert [f.result(30) for f in both] == [3, 11]
        other = trioflow.Client(client.scheduler_info()["address"])
        try:
            assert trioflow.get_client() is other  # the newest client is the current one
            with client.as_current():
                assert trioflow.get_client() is client
            assert trioflow.get_client() is other
            with pytest.raises(RuntimeError, match="remote scheduler"):
                other.shutdown()  # not its cluster to stop: only this client closes
            assert other.closed
        finally:
            other.close()
        client.shutdown()
        assert client.closed


async def test_blocking_client_compute_as_current_and_shutdown():
    await trio.to_thread.run_sync(_blocking_habits)


async def test_client_asynchronous_true_is_an_async_client_to_enter_or_await():
    async with cluster_client(1, 1) as (cluster, _):
        async with trioflow.Client(cluster.address, asynchronous=True) as client:
            assert isinstance(client, trioflow.AsyncClient)
            assert await client.submit(inc, 1) == 2
        awaited = await trioflow.Client(cluster.address, asynchronous=True)
        try:
            assert await awaited.submit(inc, 2) == 3
        finally:
            await awaited.close()
        with pytest.raises(TypeError, match="not \\['workers'\\]"):
            trioflow.Client(cluster.address, asynchronous=True, workers=2)


class Point:
    def __init__(self, x):
        self.x = x


def make_point(x):
    return Point(x)


async def test_cluster_views_versions_and_result_types():
    async with cluster_client(2, 1) as (_, client):
        assert await client.ncores() == await client.nthreads() == {"worker-0": 1, "worker-1": 1}
        gate, started = trioflow.Event("processing-gate"), trioflow.Event("started")
        held = client.submit(_signals_then_waits, "started", "processing-gate",
                             workers=["worker-1"])
        await started.wait_async()
        assert (await client.processing()) == {"worker-0": [], "worker-1": [held.key]}
        assert await client.processing(workers=["worker-0"]) == {"worker-0": []}
        await gate.set_async()
        assert await held == "opened"
        found = await client.get_versions(check=True, packages=["json"])
        assert set(found) == {"scheduler", "workers", "client"}
        assert sorted(found["workers"]) == ["worker-0", "worker-1"]
        assert found["scheduler"]["packages"]["trioflow"] == trioflow.__version__
        assert found["workers"]["worker-0"]["packages"]["cloudpickle"]
        assert found["client"]["host"]["python-bits"] in (32, 64)
        point, number = client.submit(make_point, 1), client.submit(inc, 1)
        never = trioflow.Event("never-set")  # (held here: waiting on it is no deadlock)
        pending = client.submit(_waits_for, "never-set")
        await trioflow.wait_async([point, number])
        assert number.type is int and point.type is Point
        assert pending.type is None
        client.cancel([pending])
        await never.set_async()  # (a running sync task is not interrupted by cancel)
        stream = await client.get_task_stream(count=2)
        assert len(stream) == 2 and {r["status"] for r in stream} == {"OK"}
        assert {number.key, point.key} <= {r["key"] for r in await client.get_task_stream()}
        assert await client.get_task_stream(start=time.time() + 3600) == []
        with pytest.raises(ValueError, match="bokeh"):
            await client.get_task_stream(plot=True)


def _signals_then_waits(started, gate):
    trioflow.Event(started).set()
    return _waits_for(gate)


def _waits_for(name):
    trioflow.Event(name).wait()
    return "opened"


def _blocking_defaults(address):
    with trioflow.Client(address) as client:
        assert trioflow.default_client() is client
        assert trioflow.default_client(client) is client
        never = trioflow.Event("never-opened")  # (held here: waiting on it is no deadlock)
        f = client.submit(_waits_for, never.name)
        with pytest.raises(trioflow.TimeoutError):
            f.result(timeout=0.05)
        client.cancel([f])
        never.set()  # (a running sync task is not interrupted by cancel)


async def test_default_client_and_timeout_error_as_in_dask():
    assert trioflow.TimeoutError is TimeoutError
    async with cluster_client(1, 1) as (cluster, _):
        await trio.to_thread.run_sync(_blocking_defaults, cluster.address)


def evil_name(x):
    return x


async def test_notebook_views_escape_and_futures_lists_what_the_client_holds():
    async with cluster_client(1, 1) as (_, client):
        assert client.futures == {}
        f = client.submit(evil_name, 1, key="<script>alert(1)</script>")
        await f
        assert list(client.futures) == [f.key]
        page = f._repr_html_()
        assert "<script>" not in page and "&lt;script&gt;" in page and "finished" in page
        board = client._repr_html_()
        assert "trioflow AsyncClient" in board and "<th>futures</th><td>1</td>" in board
        del f, page  # (the last reference: released at once, on this loop)
        assert client.futures == {}


def keeps_its_slot(n):
    with trioflow.worker_client(separate_thread=False, timeout=5) as c:
        seceded = trioflow.get_worker().key  # (still a task of its own, slot held)
        value = c.submit(inc, n).result()
    trioflow.get_worker().log_event("kept", {"n": n, "key": seceded})
    return value


def gives_its_slot(n):
    with trioflow.worker_client(separate_thread=True) as c:
        return c.submit(inc, n).result()


async def test_worker_client_takes_dasks_arguments():
    async with cluster_client(2, 1) as (_, client):
        # on 2 one-slot workers, the child runs in the other worker's free slot
        assert await client.submit(keeps_its_slot, 1) == 2
        (_, msg), = await client.get_events("kept")
        assert msg["n"] == 1
        assert await client.submit(gives_its_slot, 2) == 3
    async with cluster_client(1, 1) as (_, client):
        # one slot, held while waiting on a child that needs it: the deadlock rule says so
        with pytest.raises(trioflow.DeadlockError, match="without seceding"):
            await client.submit(keeps_its_slot, 3)
