"""Large task arguments and functions travel out of band, never through the scheduler."""

from __future__ import annotations

import pytest
import trio

import trioflow
from trioflow.config import INLINE_LIMIT

from .clihelpers import cli_scheduler, start_worker, stop
from .conftest import cluster_client

MB = 1_000_000
MiB = 1 << 20


def size(data, extra=0):
    return len(data) + extra


def total(parts):
    return sum(len(p) for p in parts)


async def asize(data):
    await trio.sleep(0)
    return len(data)


def closure_over(data):
    return lambda: len(data)


def _rss_mib(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for {pid}")


def _scheduler_payload_bytes(cluster) -> int:
    tasks = cluster.scheduler.state.tasks.values()
    return max([len(t.payload) for t in tasks] + [len(t.inline or b"") for t in tasks] + [0])


async def test_large_arguments_and_functions_bypass_the_scheduler():
    async with cluster_client(2, 1) as (cluster, client):
        big = bytes(range(256)) * 4000  # 1 MB: one argument, scattered on its own
        fut = client.submit(size, big, extra=1)
        assert _scheduler_payload_bytes(cluster) <= INLINE_LIMIT
        assert await fut == len(big) + 1
        # many small pieces: the pickled arguments together are large (packed)
        parts = [bytes(1000)] * 300
        assert await client.submit(total, parts) == 300_000
        # a function whose closure is large is scattered too
        assert await client.submit(closure_over(bytes(500_000))) == 500_000
        # async functions, and large arguments mixed with futures
        dep = client.submit(size, b"abc")
        assert await client.submit(asize, big) == len(big)
        assert await client.submit(total, [big, bytes(200_000)]) == len(big) + 200_000
        assert await client.submit(size, big, extra=dep) == len(big) + 3
        assert _scheduler_payload_bytes(cluster) <= INLINE_LIMIT
        # pure keys are named by their arguments: the same call shares one key
        a = client.submit(size, big, pure=True)
        b = client.submit(size, big, pure=True)
        assert a.key == b.key and a.key.startswith("size-") and await a == len(big)
        # the arguments' scatters live while the task's future does, then leave
        del fut, a, b
        await cluster.scheduler.wait_for(
            lambda: all(t.fn_id for t in cluster.scheduler.state.tasks.values()))


def submit_inside(data):
    """From a task: a child whose argument is large stays on this worker's data path."""
    client = trioflow.get_client()
    return client.submit(size, data).result()


async def test_large_arguments_from_inside_a_task():
    async with cluster_client(2, 1) as (cluster, client):
        assert await client.submit(submit_inside, bytes(300_000)) == 300_000
        assert _scheduler_payload_bytes(cluster) <= INLINE_LIMIT


def first(data, i=0):
    return int(data[i])


def at(i, data):
    return int(data[i])


async def test_the_same_large_argument_is_uploaded_once():
    np = pytest.importorskip("numpy")
    async with cluster_client(2, 1) as (cluster, client):
        def scatters():
            return sum(1 for t in cluster.scheduler.state.tasks.values() if not t.fn_id)

        big = bytes([7]) * 1_000_000
        futures = client.map(first, [big] * 3)
        futures += [client.submit(first, big), client.submit(first, big, i=1)]
        assert await client.gather(futures) == [7] * 5
        assert scatters() == 1  # bytes cannot change: one upload for all five tasks
        array = np.zeros(200_000, dtype="int64")
        mapped = client.map(at, range(4), data=array)
        assert await client.gather(mapped) == [0] * 4
        assert scatters() == 2  # one map call: one upload
        array[0] = 9  # changed between calls: uploaded again, and the task sees it
        assert await client.submit(first, array) == 9
        assert scatters() == 3


async def test_scatter_returns_finished_futures():
    async with cluster_client(1, 1) as (_, client):
        small, large = await client.scatter([1, bytes(300_000)])
        assert small.done() and large.done() and large.status == "finished"
        assert await client.gather([small, large]) == [1, bytes(300_000)]
        assert await client.submit(size, large) == 300_000


async def test_200mb_argument_leaves_scheduler_memory_alone_and_560mib_works():
    """A real scheduler process: its peak RSS barely moves for a 200 MB argument, and an
    argument larger than the WebSocket message limit (512 MiB) works."""
    async with cli_scheduler() as (address, sched):
        worker = await start_worker(address, "--nthreads", "1")
        try:
            async with trioflow.AsyncClient(address) as client:
                await client.wait_for_workers(1, timeout=30)
                assert await client.submit(size, b"warm-up") == 7
                before = _rss_mib(sched.pid, "VmRSS")
                data = b"\x01" * (200 * MB)
                assert await client.submit(size, data) == 200 * MB
                del data
                grown = _rss_mib(sched.pid, "VmHWM") - before
                assert grown <= 20, f"the scheduler's peak RSS grew by {grown:.0f} MiB"
                data = b"\x02" * (560 * MiB)
                assert await client.submit(size, data) == 560 * MiB
                del data
                grown = _rss_mib(sched.pid, "VmHWM") - before
                assert grown <= 20, f"the scheduler's peak RSS grew by {grown:.0f} MiB"
        finally:
            await stop(worker)
