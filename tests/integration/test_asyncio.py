"""An asyncio program uses trioflow without running Trio itself (issue 14): submit,
``await future``, gather, ``async for ... as_completed``, failures, cancellation.

Each program runs under ``asyncio.run`` in a thread of its own, against a cluster on
the test's Trio loop; the client's Trio loop runs in its own background thread.
"""

import asyncio
import io

import pytest
import trio

import trioflow
from trioflow.engine.asyncio_waits import running_asyncio

from .conftest import cluster_client
from .tasks import GATE, boom, inc, wait_gate


async def run_asyncio(program, *args):
    return await trio.to_thread.run_sync(lambda: asyncio.run(program(*args)))


async def _basics(address, report):
    assert running_asyncio()
    async with trioflow.AsyncClient(address) as client:
        out = {"one": await client.submit(inc, 1)}
        out["gather"] = await client.gather(client.map(inc, range(5)))
        out["dict"] = await client.gather({"a": client.submit(inc, 10)})
        out["as_completed"] = sorted(
            [await f async for f in trioflow.as_completed(client.map(inc, range(4)))])
        pairs = trioflow.as_completed([client.submit(inc, 7)], with_results=True)
        out["with_results"] = [v async for _, v in pairs]
        out["large"] = len(await client.submit(bytes, 400_000))  # fetched, not inline
        scattered = await client.scatter([1, 2])
        out["scatter"] = await client.gather(client.submit(sum, scattered))
        batches = trioflow.as_completed(client.map(inc, range(3)), with_results=True)
        out["batches"] = sorted([v async for batch in batches.batches() for _, v in batch])
        fs = client.map(inc, range(3))
        done, not_done = await trioflow.wait_async(fs)
        out["wait"] = (len(done), len(not_done))
        out["wait_one"] = len((await trioflow.wait_async(
            [client.submit(boom), client.submit(inc, 1)],
            return_when="FIRST_EXCEPTION")).done) >= 1
        out["nthreads"] = await client.nthreads()
        out["status"] = len((await client.status())["workers"])
        async with client.performance_report(report):
            await client.submit(inc, 5)
        out["report"] = report.exists()
        await trioflow.progress(client.map(inc, range(3)), file=io.StringIO())
        with pytest.raises(ValueError, match="boom") as info:
            await client.submit(boom)
        out["raised_here"] = info.traceback[0].name
        with pytest.raises(ValueError, match="boom"):
            await client.gather([client.submit(boom)])
        return out


async def test_asyncio_program_submits_awaits_gathers_iterates(tmp_path):
    async with cluster_client(2, 1) as (cluster, _):
        out = await run_asyncio(_basics, cluster.address, tmp_path / "report.json")
    assert out == {"one": 2, "gather": [1, 2, 3, 4, 5], "dict": {"a": 11},
                   "as_completed": [1, 2, 3, 4], "with_results": [8],
                   "batches": [1, 2, 3], "wait": (3, 0), "wait_one": True, "large": 400_000,
                   "scatter": 3, "nthreads": {"worker-0": 1, "worker-1": 1}, "status": 2,
                   "report": True,
                   "raised_here": "_basics"}


async def _cancel_and_timeout(address):
    async with trioflow.AsyncClient(address) as client:
        blocked = client.submit(wait_gate)
        # an asyncio timeout cancels the wait, not the task
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(blocked, 0.05)
        with pytest.raises(TimeoutError):
            async for _ in trioflow.as_completed([blocked], timeout=0.05):
                pass
        assert blocked.status == "pending"
        GATE.set()
        return await blocked


async def test_asyncio_cancelled_waits_leave_the_tasks_alone():
    GATE.clear()
    try:
        async with cluster_client(1, 2) as (cluster, _):
            assert await run_asyncio(_cancel_and_timeout, cluster.address) == "gate"
    finally:
        GATE.set()


async def test_trio_client_stays_native():
    async with cluster_client(1, 1) as (_, client):
        assert client._background is None
        assert await client.submit(inc, 1) == 2
